//! The bot's configuration, from flags or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keel_core::{Error, ParseError};

pub use keel_core::Secret;

/// Whether `id` can be a Slack team or user id: 1 to 32 ASCII letters and digits.
pub fn is_slack_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses `500ms`, `15s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        ParseError::new(
            "duration",
            s,
            "expected a number and a unit: 500ms, 15s, 2m, 1h",
        )
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(
                ParseError::new("duration", s, "the unit must be ms, s, m or h").at(split, s.len()),
            );
        }
    };
    Ok(d)
}

/// Everything the bot needs. Secrets are best given through the environment
/// (`SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN`, `KEEL_API_TOKEN`), which `--help` does not echo.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "keel-bot",
    about = "Posts keel approval requests to Slack and takes votes from buttons and /keel commands"
)]
pub struct Config {
    /// Address to serve Slack's requests on (`/slack/commands`, `/slack/interactions`).
    #[arg(long, env = "KEEL_BOT_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// The Slack app's signing secret.
    #[arg(long, env = "SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Secret,

    /// The Slack bot token (`xoxb-...`).
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true)]
    pub slack_bot_token: Secret,

    /// The channel to post approval requests in (an id such as `C0123456789`, or a name).
    #[arg(long, env = "SLACK_CHANNEL")]
    pub slack_channel: String,

    /// Base URL of Slack's Web API.
    #[arg(long, env = "SLACK_API_URL", default_value = "https://slack.com/api/")]
    pub slack_api_url: String,

    /// Prefixes a `response_url` from Slack must start with before the bot posts to it.
    #[arg(
        long = "response-url-prefix",
        env = "SLACK_RESPONSE_URL_PREFIXES",
        value_delimiter = ',',
        default_value = "https://hooks.slack.com/"
    )]
    pub response_url_prefixes: Vec<String>,

    /// Base URL of the keel API.
    #[arg(long, env = "KEEL_API_URL")]
    pub keel_api_url: String,

    /// The keel API token of the bot: a delegate token, so votes are recorded per Slack user.
    #[arg(long, env = "KEEL_API_TOKEN", hide_env_values = true)]
    pub keel_api_token: Secret,

    /// The Slack teams (workspace ids such as `T0123ABCD`, comma-separated) whose members may
    /// use the bot; anyone else is refused before the keel API is called. Required.
    #[arg(long, env = "KEEL_BOT_ALLOWED_TEAMS", value_delimiter = ',')]
    pub allowed_teams: Vec<String>,

    /// When set, only these Slack users (ids such as `U024BE7LH`, comma-separated) of the
    /// allowed teams may vote or list; otherwise every member of an allowed team may.
    #[arg(long, env = "KEEL_BOT_ALLOWED_USERS", value_delimiter = ',')]
    pub allowed_users: Vec<String>,

    /// How often to look for new approval requests (`15s`, `1m`, ...).
    #[arg(long, env = "KEEL_BOT_POLL_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// File remembering which requests were posted (and where), so a restart does not post
    /// them again. Without it, a restarted bot posts the pending requests once more.
    #[arg(long, env = "KEEL_BOT_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// Largest request body accepted from Slack, in bytes.
    #[arg(long, env = "KEEL_BOT_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
}

impl Config {
    /// A configuration with the defaults of the flags for everything not given.
    pub fn new(
        slack_signing_secret: Secret,
        slack_bot_token: Secret,
        slack_channel: impl Into<String>,
        keel_api_url: impl Into<String>,
        keel_api_token: Secret,
    ) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            slack_signing_secret,
            slack_bot_token,
            slack_channel: slack_channel.into(),
            slack_api_url: "https://slack.com/api/".into(),
            response_url_prefixes: vec!["https://hooks.slack.com/".into()],
            keel_api_url: keel_api_url.into(),
            keel_api_token,
            allowed_teams: Vec::new(),
            allowed_users: Vec::new(),
            poll_interval: Duration::from_secs(15),
            state_file: None,
            max_body_bytes: 256 * 1024,
        }
    }

    /// Whether a member of Slack team `team` with user id `user` may use the bot.
    pub fn admits(&self, team: &str, user: &str) -> bool {
        self.allowed_teams.iter().any(|t| t == team)
            && (self.allowed_users.is_empty() || self.allowed_users.iter().any(|u| u == user))
    }

    /// What the keel API server must accept for the bot's delegate token `name`, in the
    /// syntax of `KEEL_API_DELEGATE_VOTERS`: the voters the bot sends are `<team>/<user>`,
    /// so `T0001/*` for each allowed team, or `T0001/U024BE7LH` for each allowed user.
    ///
    /// ```
    /// use keel_bot::{Config, Secret};
    ///
    /// let mut config = Config::new(
    ///     Secret::new("signing"),
    ///     Secret::new("xoxb-1"),
    ///     "C1",
    ///     "http://keel:9300/api",
    ///     Secret::new("token"),
    /// );
    /// config.allowed_teams = vec!["T0001".into()];
    /// assert_eq!(config.server_voters("slack"), "slack=T0001/*");
    /// config.allowed_users = vec!["U1".into(), "U2".into()];
    /// assert_eq!(config.server_voters("slack"), "slack=T0001/U1,T0001/U2");
    /// ```
    pub fn server_voters(&self, name: &str) -> String {
        let patterns: Vec<String> = self
            .allowed_teams
            .iter()
            .flat_map(|team| {
                if self.allowed_users.is_empty() {
                    vec![format!("{team}/*")]
                } else {
                    self.allowed_users
                        .iter()
                        .map(|user| format!("{team}/{user}"))
                        .collect()
                }
            })
            .collect();
        format!("{name}={}", patterns.join(","))
    }

    /// Checks what flags cannot: the token's kind, the channel, the interval, the allow-list.
    pub fn validate(&self) -> Result<(), Error> {
        if self.allowed_teams.is_empty() {
            return Err(ParseError::new(
                "allowed Slack teams",
                "",
                "name at least one team id (--allowed-teams or KEEL_BOT_ALLOWED_TEAMS) whose \
                 members may vote",
            )
            .into());
        }
        for (kind, ids) in [
            ("allowed Slack team", &self.allowed_teams),
            ("allowed Slack user", &self.allowed_users),
        ] {
            if let Some(bad) = ids.iter().find(|id| !is_slack_id(id)) {
                return Err(ParseError::new(
                    kind,
                    bad.as_str(),
                    "a Slack id is 1 to 32 ASCII letters and digits, such as T0123ABCD or U024BE7LH",
                )
                .into());
            }
        }
        if !self.slack_bot_token.expose().starts_with("xoxb-") {
            return Err(ParseError::new(
                "Slack bot token",
                "***",
                "a bot token starts with xoxb- (find it under OAuth & Permissions)",
            )
            .into());
        }
        if self.slack_channel.trim().is_empty() {
            return Err(ParseError::new("Slack channel", "", "must not be empty").into());
        }
        if self.poll_interval < Duration::from_millis(10) {
            return Err(ParseError::new(
                "poll interval",
                format!("{:?}", self.poll_interval),
                "must be at least 10ms",
            )
            .into());
        }
        if self.max_body_bytes < 1024 {
            return Err(ParseError::new(
                "max body bytes",
                self.max_body_bytes.to_string(),
                "must be at least 1024",
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("20").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(
            parse_duration("2d")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn flags_parse_and_debug_hides_secrets() {
        let c = Config::try_parse_from([
            "keel-bot",
            "--slack-signing-secret",
            "signing-secret-value",
            "--slack-bot-token",
            "xoxb-bot-token-value",
            "--slack-channel",
            "C0123",
            "--keel-api-url",
            "http://127.0.0.1:8300",
            "--keel-api-token",
            "api-token-value",
            "--poll-interval",
            "2s",
            "--allowed-teams",
            "T0001,T0002",
        ])
        .unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        c.validate().unwrap();
        assert!(c.admits("T0002", "U1") && !c.admits("T0003", "U1"));
        let mut users = c.clone();
        users.allowed_users = vec!["U1".into()];
        assert!(users.admits("T0001", "U1") && !users.admits("T0001", "U2"));
        let mut none = c.clone();
        none.allowed_teams.clear();
        let e = none.validate().unwrap_err().to_string();
        assert!(e.contains("KEEL_BOT_ALLOWED_TEAMS"), "{e}");
        let mut odd = c.clone();
        odd.allowed_users = vec!["U1/*".into()];
        let e = odd.validate().unwrap_err().to_string();
        assert!(e.contains("U1/*"), "{e}");
        let d = format!("{c:?}");
        for secret in ["signing-secret-value", "xoxb-bot", "api-token-value"] {
            assert!(!d.contains(secret), "{d}");
        }
        let mut bad = c.clone();
        bad.slack_bot_token = Secret::new("xoxp-user-token");
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("xoxb-") && !e.contains("xoxp-user"), "{e}");
    }
}
