//! What the controller reads from its environment besides flags: notifiers (Keel's own
//! variable names, so a Keel deployment's configuration carries over) and the credentials of
//! the approvals API.
//!
//! | variable | notifier |
//! |---|---|
//! | `SLACK_TOKEN`, `SLACK_CHANNELS` (comma-separated, default `general`) | Slack `chat.postMessage` with a bot token; approval requests get Approve/Reject buttons |
//! | `SLACK_WEBHOOK_URL` | Slack incoming webhook |
//! | `MATTERMOST_ENDPOINT`, `MATTERMOST_USERNAME` | Mattermost incoming webhook |
//! | `TEAMS_WEBHOOK_URL` | Microsoft Teams |
//! | `DISCORD_WEBHOOK_URL` | Discord |
//! | `WEBHOOK_ENDPOINT`, `WEBHOOK_SECRET` | the generic JSON webhook, HMAC-signed when a secret is set |
//! | `NOTIFICATION_LEVEL` | the least level told: `debug`, `info` (default), `success`, `warn`, `error` |
//!
//! The approvals API needs `KEEL_API_AUTH` (`basic:<user>:<password>`, `bearer:<name>:<token>`
//! or `delegate:<name>:<token>`, comma-separated) or Keel's `BASIC_AUTH_USER` and
//! `BASIC_AUTH_PASSWORD`; without any, the API is off (it is never open).
//!
//! | variable | what |
//! |---|---|
//! | `KEEL_API_AUTH` | the credentials, each `<kind>[/<role>]:<name>:<secret>`: the role is `reader` (GET only), `approver` (also votes) or `admin` (also deletes); basic and bearer default to `admin`, delegates to `approver`. E.g. `bearer/reader:dashboard:...,delegate:slack:...` |
//! | `KEEL_API_DELEGATE_VOTERS` | for each delegate, the voters it may vote for: `<delegate>=<pattern>,...`, delegates separated by `;`; a pattern is a voter (`T0001/U024BE7LH`, a Slack team and user as keel-bot sends them) or a prefix ending in `*` (`T0001/*`, a whole team). Required for every delegate, so a leaked delegate token cannot invent voters; a team-wide pattern still lets it vote as anyone of that team, so list users where it matters |
//! | `BASIC_AUTH_USER`, `BASIC_AUTH_PASSWORD` | Keel's admin user (role `admin`) |

use std::sync::Arc;

use keel_api::ApiAuth;
use keel_core::Notifier;
use keel_notify::{Discord, Level, Mattermost, Queued, SlackBot, SlackWebhook, Teams, Webhook};

/// How many events may wait for each notifier before new ones are counted as dropped.
const QUEUE: usize = 256;

/// The notifiers the environment configures, each behind its own bounded queue so that a
/// slow receiver never holds up a pass. Must run inside a Tokio runtime.
///
/// # Errors
/// A message naming the variable whose value is wrong (never the value: they hold secrets).
pub fn notifiers_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Arc<dyn Notifier>>, String> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let level: Level = match var("NOTIFICATION_LEVEL") {
        Some(level) => level
            .parse()
            .map_err(|e| format!("invalid NOTIFICATION_LEVEL: {e}"))?,
        None => Level::Info,
    };
    fn wrong(name: &'static str) -> impl Fn(keel_core::Error) -> String {
        move |e| format!("invalid {name}: {e}")
    }
    type Built = Result<Arc<dyn Notifier>, keel_core::Error>;
    // A notifier configured by `variable` (its URL), built from its value by `build`.
    let from_var = |variable: &'static str, build: &dyn Fn(String) -> Built| {
        var(variable)
            .map(|value| build(value).map_err(wrong(variable)))
            .transpose()
    };
    let slack_bot = var("SLACK_TOKEN")
        .map(|token| {
            let channels = var("SLACK_CHANNELS").unwrap_or_else(|| "general".to_owned());
            SlackBot::builder(token)
                .with_channels(channels.split(',').map(str::trim).filter(|c| !c.is_empty()))
                .with_approval_buttons(true)
                .with_level(level)
                .build()
                .map(|bot| Arc::new(bot) as Arc<dyn Notifier>)
                .map_err(wrong("SLACK_TOKEN/SLACK_CHANNELS"))
        })
        .transpose()?;
    let configured = [
        slack_bot,
        from_var("SLACK_WEBHOOK_URL", &|url| {
            Ok(Arc::new(
                SlackWebhook::builder(url).with_level(level).build()?,
            ))
        })?,
        from_var("MATTERMOST_ENDPOINT", &|url| {
            let mut builder = Mattermost::builder(url).with_level(level);
            if let Some(user) = var("MATTERMOST_USERNAME") {
                builder = builder.with_username(user);
            }
            Ok(Arc::new(builder.build()?))
        })?,
        from_var("TEAMS_WEBHOOK_URL", &|url| {
            Ok(Arc::new(Teams::builder(url).with_level(level).build()?))
        })?,
        from_var("DISCORD_WEBHOOK_URL", &|url| {
            Ok(Arc::new(Discord::builder(url).with_level(level).build()?))
        })?,
        from_var("WEBHOOK_ENDPOINT", &|url| {
            let mut builder = Webhook::builder(url).with_level(level);
            if let Some(secret) = var("WEBHOOK_SECRET") {
                builder = builder.with_secret(secret.into_bytes());
            }
            Ok(Arc::new(builder.build()?))
        })?,
    ];
    Ok(configured
        .into_iter()
        .flatten()
        .map(|n| Arc::new(Queued::from_arc(n, QUEUE)) as Arc<dyn Notifier>)
        .collect())
}

/// The credentials of the approvals API, or `None` when none are configured (the API is then
/// not served).
///
/// # Errors
/// A message naming the variable that is malformed.
pub fn api_auth_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<ApiAuth>, String> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let mut builder = ApiAuth::builder();
    let mut any = false;
    if let Some(spec) = var("KEEL_API_AUTH") {
        builder = builder
            .parse_spec(&spec)
            .map_err(|e| format!("invalid KEEL_API_AUTH: {e}"))?;
        any = true;
    }
    if let Some(spec) = var("KEEL_API_DELEGATE_VOTERS") {
        builder = builder
            .parse_delegate_voters(&spec)
            .map_err(|e| format!("invalid KEEL_API_DELEGATE_VOTERS: {e}"))?;
    }
    match (var("BASIC_AUTH_USER"), var("BASIC_AUTH_PASSWORD")) {
        (Some(user), Some(password)) => {
            builder = builder.basic_user(user, password);
            any = true;
        }
        (None, None) => {}
        _ => return Err("set both BASIC_AUTH_USER and BASIC_AUTH_PASSWORD, or neither".into()),
    }
    if !any {
        return Ok(None);
    }
    builder.build().map(Some).map_err(|e| {
        format!("invalid API credentials (KEEL_API_AUTH, KEEL_API_DELEGATE_VOTERS): {e}")
    })
}

#[cfg(test)]
mod tests {
    use keel_testsupport::env_lookup as env;

    use super::*;

    #[tokio::test]
    async fn notifiers_follow_keels_variables() {
        assert!(notifiers_from_env(env(&[])).unwrap().is_empty());
        let all = notifiers_from_env(env(&[
            ("SLACK_TOKEN", "xoxb-1-2-abc"),
            ("SLACK_CHANNELS", "deploys, ops"),
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/x",
            ),
            ("MATTERMOST_ENDPOINT", "https://chat.example.com/hooks/abc"),
            (
                "TEAMS_WEBHOOK_URL",
                "https://example.webhook.office.com/abc",
            ),
            (
                "DISCORD_WEBHOOK_URL",
                "https://discord.com/api/webhooks/1/abc",
            ),
            ("WEBHOOK_ENDPOINT", "https://hooks.example.com/keel"),
            ("WEBHOOK_SECRET", "s3cr3t"),
            ("NOTIFICATION_LEVEL", "warn"),
        ]))
        .unwrap();
        assert_eq!(all.len(), 6);

        let err = notifiers_from_env(env(&[("NOTIFICATION_LEVEL", "loud")])).unwrap_err();
        assert!(err.contains("NOTIFICATION_LEVEL"), "{err}");
        let err = notifiers_from_env(env(&[("WEBHOOK_ENDPOINT", "not a url s3cr3t")])).unwrap_err();
        assert!(err.contains("WEBHOOK_ENDPOINT"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn the_api_is_off_without_credentials_and_never_open() {
        assert!(api_auth_from_env(env(&[])).unwrap().is_none());
        assert!(
            api_auth_from_env(env(&[("KEEL_API_AUTH", "bearer:ops:tok-123")]))
                .unwrap()
                .is_some()
        );
        assert!(
            api_auth_from_env(env(&[
                ("BASIC_AUTH_USER", "admin"),
                ("BASIC_AUTH_PASSWORD", "pw")
            ]))
            .unwrap()
            .is_some()
        );
        let err = api_auth_from_env(env(&[("BASIC_AUTH_USER", "admin")])).unwrap_err();
        assert!(err.contains("BASIC_AUTH_PASSWORD"), "{err}");
        let err = api_auth_from_env(env(&[("KEEL_API_AUTH", "token-only")])).unwrap_err();
        assert!(err.contains("KEEL_API_AUTH"), "{err}");
        assert!(!err.contains("token-only"), "{err}");
    }

    #[test]
    fn roles_and_delegate_voters_come_from_the_environment() {
        let auth = api_auth_from_env(env(&[
            (
                "KEEL_API_AUTH",
                "bearer/reader:dash:tok-d,delegate:slack:tok-s",
            ),
            ("KEEL_API_DELEGATE_VOTERS", "slack=T0001/*"),
        ]))
        .unwrap()
        .unwrap();
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("dash (reader)")
                && shown.contains("slack (delegate, approver, for T0001/*)"),
            "{shown}"
        );
        // A delegate without voters would vote for anyone: refused.
        let err = api_auth_from_env(env(&[("KEEL_API_AUTH", "delegate:slack:tok-s")])).unwrap_err();
        assert!(err.contains("no voters"), "{err}");
        let err = api_auth_from_env(env(&[
            ("KEEL_API_AUTH", "delegate:slack:tok-s"),
            ("KEEL_API_DELEGATE_VOTERS", "slack=*"),
        ]))
        .unwrap_err();
        assert!(err.contains("KEEL_API_DELEGATE_VOTERS"), "{err}");
    }
}
