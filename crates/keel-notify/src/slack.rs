//! Slack: incoming webhooks ([`SlackWebhook`]) and `chat.postMessage` with a bot token
//! ([`SlackBot`]).
//!
//! Both send the same message, built from [Block Kit] blocks:
//!
//! ```json
//! {
//!   "text": "Update applied: prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0).",
//!   "blocks": [
//!     {"type": "section", "text": {"type": "mrkdwn",
//!       "text": "*Update applied*\nprod/default/web now runs nginx:1.25.1 (was nginx:1.25.0)."}},
//!     {"type": "context", "elements": [{"type": "mrkdwn",
//!       "text": "success · prod/default/web · 2024-05-01T12:00:00Z"}]}
//!   ]
//! }
//! ```
//!
//! `text` is what Slack shows in notifications; values in it are escaped (`&`, `<`, `>`) so
//! an error message cannot inject links or mentions. An approval request (an event with
//! [`Event::approval`]) also gets two buttons, whose `value` is the approval id, for the
//! Slack app's interactivity endpoint to turn into votes:
//!
//! ```json
//! {"type": "actions", "block_id": "keel_approval", "elements": [
//!   {"type": "button", "action_id": "keel_approve", "style": "primary",
//!    "text": {"type": "plain_text", "text": "Approve"}, "value": "<approval id>"},
//!   {"type": "button", "action_id": "keel_reject", "style": "danger",
//!    "text": {"type": "plain_text", "text": "Reject"}, "value": "<approval id>"}
//! ]}
//! ```
//!
//! [`SlackBot`] adds `"channel"` and posts once per channel: its own channels and those the
//! event asks for ([`Event::channels`], Keel's `keel.sh/notify`). Slack answers API errors
//! with HTTP 200 and `{"ok": false, "error": "..."}`; those are failures too, mapped by
//! the error code (`invalid_auth` → [`Error::Unauthorized`], `ratelimited` →
//! [`Error::RateLimited`], `internal_error` → retryable, others permanent).
//!
//! [Block Kit]: https://api.slack.com/block-kit

use std::fmt;

use keel_core::{Error, Event, EventKind, ParseError};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use crate::common::{
    Base, Common, base_notifier, channels_for, common_setters, endpoint_build, json_notifier,
    parse_endpoint,
};
use crate::delivery::{Answer, Context, escape_slack, truncate};

/// Slack's limit on a section block's text.
const SECTION_MAX: usize = 3000;

/// The `action_id` of the approve button.
pub const APPROVE_ACTION_ID: &str = "keel_approve";
/// The `action_id` of the reject button.
pub const REJECT_ACTION_ID: &str = "keel_reject";
/// The `block_id` of the block holding both buttons.
pub const APPROVAL_BLOCK_ID: &str = "keel_approval";

/// The message for `event`; approval buttons when `buttons` and the event is a request.
fn message(base: &Base, event: &Event, buttons: bool) -> Value {
    let rendered = base.render(event, &escape_slack);
    let heading = format!("*{}*\n", rendered.title);
    let body = truncate(rendered.text.clone(), SECTION_MAX - heading.chars().count());
    let context = format!(
        "{} · {}/{} · {}",
        rendered.level,
        escape_slack(&event.plan.target),
        escape_slack(&event.plan.id),
        event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{heading}{body}")}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}),
    ];
    if let (true, EventKind::ApprovalRequested, Some(approval)) =
        (buttons, event.kind, &event.approval)
    {
        blocks.push(json!({
            "type": "actions",
            "block_id": APPROVAL_BLOCK_ID,
            "elements": [
                {"type": "button", "action_id": APPROVE_ACTION_ID, "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}, "value": approval.id},
                {"type": "button", "action_id": REJECT_ACTION_ID, "style": "danger",
                 "text": {"type": "plain_text", "text": "Reject"}, "value": approval.id},
            ]
        }));
    }
    json!({
        "text": format!("{}: {}", rendered.title, rendered.text),
        "blocks": blocks,
    })
}

// ---------------------------------------------------------------------------------------------
// Incoming webhook
// ---------------------------------------------------------------------------------------------

/// Posts to a Slack [incoming webhook](https://api.slack.com/messaging/webhooks).
///
/// The webhook decides the channel; [`Event::channels`] is ignored (use [`SlackBot`] to
/// honour it). The URL is the webhook's secret: it never appears in errors, logs or `Debug`.
///
/// ```no_run
/// # async fn run(event: keel_core::Event) -> Result<(), keel_core::Error> {
/// use keel_core::Notifier;
/// use keel_notify::{Level, SlackWebhook};
///
/// let slack = SlackWebhook::builder("https://hooks.slack.com/services/T000/B000/XXXX")
///     .with_name("slack #deploys")
///     .with_level(Level::Success)
///     .build()?;
/// slack.notify(&event).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SlackWebhook {
    base: Base,
    url: Url,
    approval_buttons: bool,
}

/// Builds a [`SlackWebhook`].
#[derive(Clone)]
pub struct SlackWebhookBuilder {
    url: String,
    common: Common,
    approval_buttons: bool,
}

impl SlackWebhook {
    /// A builder for the webhook at `url`.
    pub fn builder(url: impl Into<String>) -> SlackWebhookBuilder {
        SlackWebhookBuilder {
            url: url.into(),
            common: Common::default(),
            approval_buttons: false,
        }
    }
}

impl SlackWebhookBuilder {
    common_setters!("slack webhook");

    /// Adds Approve/Reject buttons to approval requests (default off: they need a Slack app
    /// with interactivity, which a plain incoming webhook may not have).
    pub fn with_approval_buttons(mut self, on: bool) -> Self {
        self.approval_buttons = on;
        self
    }

    endpoint_build!(
        SlackWebhook,
        "slack webhook",
        "slack webhook URL",
        approval_buttons
    );
}

json_notifier!(
    SlackWebhook,
    SlackWebhookBuilder,
    |hook: &SlackWebhook, event| message(&hook.base, event, hook.approval_buttons),
    |ctx: Context<'_>, answer: &Answer<'_>| ctx.check_status(answer)
);

// ---------------------------------------------------------------------------------------------
// Bot token, chat.postMessage
// ---------------------------------------------------------------------------------------------

/// The Slack Web API base URL.
pub const SLACK_API_BASE: &str = "https://slack.com/api";

/// Posts with [`chat.postMessage`](https://api.slack.com/methods/chat.postMessage) and a bot
/// token (`xoxb-…`, scope `chat:write`), to its channels and those each event asks for.
///
/// Approval requests get Approve/Reject buttons (see the [module docs](self)). The token is
/// sent as `Authorization: Bearer …` and never appears in errors, logs or `Debug`.
///
/// ```no_run
/// # async fn run(event: keel_core::Event) -> Result<(), keel_core::Error> {
/// use keel_core::Notifier;
/// use keel_notify::SlackBot;
///
/// let bot = SlackBot::builder(std::env::var("SLACK_BOT_TOKEN").unwrap_or_default())
///     .with_channel("#deploys")
///     .build()?;
/// bot.notify(&event).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SlackBot {
    base: Base,
    endpoint: Url,
    auth: HeaderValue,
    channels: Vec<String>,
    approval_buttons: bool,
}

/// Builds a [`SlackBot`].
#[derive(Clone)]
pub struct SlackBotBuilder {
    token: String,
    api_base: String,
    channels: Vec<String>,
    common: Common,
    approval_buttons: bool,
}

impl SlackBot {
    /// A builder for a bot with `token`.
    pub fn builder(token: impl Into<String>) -> SlackBotBuilder {
        SlackBotBuilder {
            token: token.into(),
            api_base: SLACK_API_BASE.into(),
            channels: Vec::new(),
            common: Common::default(),
            approval_buttons: true,
        }
    }

    /// The channels every event goes to.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The channels `event` goes to: the bot's, then the event's, each once (`#a` and `a`
    /// count as the same).
    pub fn channels_for(&self, event: &Event) -> Vec<String> {
        channels_for(&self.channels, event, |c| c.trim_start_matches('#'))
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    async fn post(&self, event: &Event, message: &Value, channel: &str) -> Result<(), Error> {
        let mut payload = message.clone();
        payload["channel"] = Value::String(channel.to_owned());
        payload["unfurl_links"] = Value::Bool(false);
        let ctx_action = format!("{} to {channel}", Base::action(event));
        let ctx = self.base.context(&ctx_action);
        let body = serde_json::to_vec(&payload).map_err(|e| ctx.backend(e.to_string(), false))?;
        self.base
            .delivery
            .send(
                ctx,
                || {
                    self.base
                        .delivery
                        .client
                        .post(self.endpoint.clone())
                        .header(AUTHORIZATION, self.auth.clone())
                        .header(CONTENT_TYPE, "application/json; charset=utf-8")
                        .body(body.clone())
                },
                |answer| check_slack_api(ctx, answer),
            )
            .await
    }
}

/// Slack's Web API answers errors with HTTP 200 and `{"ok": false, "error": "<code>"}`.
fn check_slack_api(ctx: Context<'_>, answer: &Answer<'_>) -> Result<(), Error> {
    ctx.check_status(answer)?;
    let reply: Value = serde_json::from_slice(answer.body).map_err(|_| {
        ctx.backend(
            format!("the answer is not Slack API JSON: {:?}", answer.excerpt()),
            false,
        )
    })?;
    if reply.get("ok") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let code = reply
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let said = format!("Slack said `{code}`");
    Err(match code {
        "not_authed"
        | "invalid_auth"
        | "account_inactive"
        | "token_revoked"
        | "token_expired"
        | "no_permission"
        | "missing_scope"
        | "not_allowed_token_type"
        | "ekm_access_denied" => ctx.unauthorized(said),
        "ratelimited" | "rate_limited" => ctx.rate_limited(answer.retry_after()),
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            ctx.backend(said, true)
        }
        _ => ctx.backend(said, false),
    })
}

impl SlackBotBuilder {
    common_setters!("slack bot");

    /// Adds a channel every event goes to: a name (`#deploys`) or an id (`C0123456`).
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Adds channels every event goes to.
    pub fn with_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels.extend(channels.into_iter().map(Into::into));
        self
    }

    /// Talks to the Web API at `base` instead of [`SLACK_API_BASE`] (a proxy, a test
    /// server); requests go to `<base>/chat.postMessage`.
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }

    /// Whether approval requests get Approve/Reject buttons (default on).
    pub fn with_approval_buttons(mut self, on: bool) -> Self {
        self.approval_buttons = on;
        self
    }

    /// The notifier.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty token or one that cannot be an HTTP header (the
    /// error never shows it), no channel, an empty channel name, or a bad API base URL.
    pub fn build(self) -> Result<SlackBot, Error> {
        let token = self.token.trim();
        if token.is_empty() {
            return Err(ParseError::new("slack bot token", "", "the token is empty").into());
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ParseError::new(
                "slack bot token",
                "(hidden)",
                "the token holds characters an HTTP header cannot carry",
            )
        })?;
        auth.set_sensitive(true);
        if self.channels.is_empty() {
            return Err(ParseError::new(
                "slack channel list",
                "",
                "at least one channel is needed, e.g. with_channel(\"#deploys\")",
            )
            .into());
        }
        if let Some(bad) = self
            .channels
            .iter()
            .find(|c| c.trim().trim_start_matches('#').is_empty())
        {
            return Err(ParseError::new(
                "slack channel",
                bad.as_str(),
                "the channel name is empty",
            )
            .into());
        }
        let base = self.api_base.trim_end_matches('/');
        let endpoint = parse_endpoint("slack API base URL", &format!("{base}/chat.postMessage"))?;
        let default_name = format!("slack bot {}", self.channels.join(","));
        Ok(SlackBot {
            base: self.common.build(default_name)?,
            endpoint,
            auth,
            channels: self.channels,
            approval_buttons: self.approval_buttons,
        })
    }
}

impl fmt::Debug for SlackBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.base
            .debug_struct(f, "SlackBot", ("api", &self.endpoint))
            .field("channels", &self.channels)
            .field("token", &"(hidden)")
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SlackBotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common
            .debug_struct(f, "SlackBotBuilder")
            .field("channels", &self.channels)
            .field("token", &"(hidden)")
            .finish_non_exhaustive()
    }
}

impl SlackBot {
    async fn deliver(&self, event: &Event) -> Result<(), Error> {
        let message = message(&self.base, event, self.approval_buttons);
        let channels = self.channels_for(event);
        self.base
            .to_each_channel(event, &channels, |channel| {
                self.post(event, &message, channel)
            })
            .await
    }
}

base_notifier!(SlackBot);
