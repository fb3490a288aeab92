//! The bot's configuration, from flags or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keel_core::{Error, ParseError};

pub use keel_core::Secret;

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
            poll_interval: Duration::from_secs(15),
            state_file: None,
            max_body_bytes: 256 * 1024,
        }
    }

    /// Checks what flags cannot: the token's kind, the channel, the interval.
    pub fn validate(&self) -> Result<(), Error> {
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
        ])
        .unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        c.validate().unwrap();
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
