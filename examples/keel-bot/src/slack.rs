//! The two Slack Web API methods the bot calls (`chat.postMessage`, `chat.update`) and the
//! `response_url` replies.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_core::retry::parse_retry_after;
use keel_core::{Error, ParseError};
use reqwest::Url;
use reqwest::header::RETRY_AFTER;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Secret;

/// The largest answer of Slack's Web API the bot reads (its answers are a few KiB).
const MAX_SLACK_ANSWER: usize = 1 << 20;

/// Where a message was posted: what `chat.update` needs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PostedMessage {
    /// The channel id Slack answered with.
    pub channel: String,
    /// The message's timestamp, its id within the channel.
    pub ts: String,
}

/// A client of Slack's Web API with a bot token.
#[derive(Clone, derive_more::Debug)]
pub struct SlackClient {
    #[debug(skip)]
    http: reqwest::Client,
    #[debug("{:?}", base.as_str())]
    base: Url,
    #[debug(skip)]
    token: Secret,
}

#[derive(Deserialize)]
struct SlackAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

impl SlackClient {
    /// A client of the Web API at `base_url` (`https://slack.com/api/` in production).
    pub fn new(base_url: &str, token: Secret) -> Result<Self, Error> {
        let mut base = Url::parse(base_url)
            .map_err(|e| ParseError::new("Slack API URL", base_url, e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(
                ParseError::new("Slack API URL", base_url, "must be http:// or https://").into(),
            );
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| backend("build the HTTP client", e.to_string(), false))?;
        Ok(SlackClient { http, base, token })
    }

    /// Posts a message with `text` (the notification fallback) and Block Kit `blocks` to
    /// `channel`.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<PostedMessage, Error> {
        let body =
            json!({"channel": channel, "text": text, "blocks": blocks, "unfurl_links": false});
        let answer = self.call("chat.postMessage", &body).await?;
        match (answer.channel, answer.ts) {
            (Some(channel), Some(ts)) => Ok(PostedMessage { channel, ts }),
            _ => Err(backend(
                "call chat.postMessage",
                "the answer has no channel or ts".into(),
                false,
            )),
        }
    }

    /// Replaces the message `posted` with `text` and `blocks`.
    pub async fn update_message(
        &self,
        posted: &PostedMessage,
        text: &str,
        blocks: &Value,
    ) -> Result<(), Error> {
        let body =
            json!({"channel": posted.channel, "ts": posted.ts, "text": text, "blocks": blocks});
        self.call("chat.update", &body).await.map(|_| ())
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<SlackAnswer, Error> {
        let action = format!("call {method}");
        let url = self
            .base
            .join(method)
            .map_err(|e| backend(&action, e.to_string(), false))?;
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| transport(&action, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            return Err(Error::RateLimited {
                action,
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(backend(
                &action,
                format!("Slack answered {status}"),
                status.is_server_error(),
            ));
        }
        let body = keel_api::read_body(response, MAX_SLACK_ANSWER)
            .await
            .map_err(|e| {
                let retryable = matches!(e, keel_core::body::BodyError::Read(_));
                backend(&action, format!("reading Slack's answer: {e}"), retryable)
            })?;
        let answer: SlackAnswer = serde_json::from_slice(&body).map_err(|e| {
            backend(
                &action,
                format!("the answer is not Slack's JSON: {e}"),
                false,
            )
        })?;
        if answer.ok {
            return Ok(answer);
        }
        let code = answer.error.unwrap_or_else(|| "unknown_error".into());
        Err(match code.as_str() {
            "not_authed" | "invalid_auth" | "account_inactive" | "token_revoked"
            | "token_expired" | "missing_scope" | "not_in_channel" => Error::Unauthorized {
                action,
                reason: format!("Slack said {code}"),
            },
            "channel_not_found" | "message_not_found" => Error::NotFound {
                what: format!("Slack {} for {method} ({code})", code.replace('_', " ")),
            },
            "ratelimited" => Error::RateLimited {
                action,
                retry_after: None,
            },
            _ => backend(
                &action,
                format!("Slack said {code}"),
                code == "internal_error",
            ),
        })
    }

    /// Posts `message` to a `response_url` Slack gave with a command or an interaction.
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), Error> {
        let response = self
            .http
            .post(response_url)
            .json(message)
            .send()
            .await
            .map_err(|e| transport("answer on the response_url", e))?;
        if !response.status().is_success() {
            return Err(backend(
                "answer on the response_url",
                format!("Slack answered {}", response.status()),
                response.status().is_server_error(),
            ));
        }
        Ok(())
    }
}

fn backend(action: &str, message: String, retryable: bool) -> Error {
    Error::Backend {
        backend: "Slack".into(),
        action: action.to_owned(),
        message,
        retryable,
        source: None,
    }
}

fn transport(action: &str, e: reqwest::Error) -> Error {
    let retryable = e.is_timeout() || e.is_connect() || e.is_request();
    let e = e.without_url();
    Error::Backend {
        backend: "Slack".into(),
        action: action.to_owned(),
        message: e.to_string(),
        retryable,
        source: Some(Arc::new(e)),
    }
}
