//! Notifiers configured by the environment, under Keel's own variable names, so that a Keel
//! deployment's configuration carries over to every keel-rs application that notifies.
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

use std::sync::Arc;

use keel_core::Notifier;

use crate::{Discord, Level, Mattermost, Queued, SlackBot, SlackWebhook, Teams, Webhook};

/// How many events may wait for each notifier before new ones are counted as dropped.
pub const QUEUE_PER_NOTIFIER: usize = 256;

/// The notifiers the environment configures (see the [module docs](self) for the
/// variables), read through `var` (`|name| std::env::var(name).ok()`), each behind its own
/// bounded [`Queued`] so that a slow receiver never holds up a pass. An empty value counts
/// as unset. Must run inside a Tokio runtime.
///
/// # Errors
/// A message naming the variable whose value is wrong (never the value: they hold secrets).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let vars = |name: &str| match name {
///     "WEBHOOK_ENDPOINT" => Some("https://hooks.example.com/keel".to_owned()),
///     _ => None,
/// };
/// assert_eq!(keel_notify::from_env(vars).unwrap().len(), 1);
/// # }
/// ```
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Vec<Arc<dyn Notifier>>, String> {
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
        .map(|n| Arc::new(Queued::from_arc(n, QUEUE_PER_NOTIFIER)) as Arc<dyn Notifier>)
        .collect())
}

#[cfg(test)]
mod tests {
    use keel_testsupport::env_lookup as env;

    use super::*;

    #[tokio::test]
    async fn notifiers_follow_keels_variables() {
        assert!(from_env(env(&[])).unwrap().is_empty());
        let all = from_env(env(&[
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

        let err = from_env(env(&[("NOTIFICATION_LEVEL", "loud")])).unwrap_err();
        assert!(err.contains("NOTIFICATION_LEVEL"), "{err}");
        let err = from_env(env(&[("WEBHOOK_ENDPOINT", "not a url s3cr3t")])).unwrap_err();
        assert!(err.contains("WEBHOOK_ENDPOINT"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
