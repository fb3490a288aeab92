//! Discord [webhooks](https://discord.com/developers/docs/resources/webhook#execute-webhook).
//!
//! The message is one embed coloured by the event's [`Level`](crate::Level), its title
//! linking to the release notes when the workload has them:
//!
//! ```json
//! {
//!   "username": "keel",
//!   "embeds": [{
//!     "title": "Update applied",
//!     "description": "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0).",
//!     "url": "https://nginx.org/en/CHANGES",
//!     "color": 3061894,
//!     "timestamp": "2024-05-01T12:00:00Z",
//!     "footer": {"text": "prod/default/web"}
//!   }],
//!   "allowed_mentions": {"parse": []}
//! }
//! ```
//!
//! `username`, `avatar_url` and the embed's `url` appear only when set.
//! `allowed_mentions` is empty so that nothing in an event (an error message, a tag) can
//! ping `@everyone`. A 429 answer's JSON `retry_after` (seconds, with fractions) is honoured,
//! falling back to the `Retry-After` header.

use std::time::Duration;

use keel_core::{Error, Event};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use crate::common::{Base, Common, Poster, common_setters, endpoint_build, json_notifier};
use crate::delivery::{Answer, Context, truncate};

/// Discord's limit on an embed description.
const DESCRIPTION_MAX: usize = 4096;

/// Posts to a Discord webhook; see the [module docs](self) for the payload.
///
/// ```no_run
/// # async fn run(event: keel_core::Event) -> Result<(), keel_core::Error> {
/// use keel_core::Notifier;
/// use keel_notify::Discord;
///
/// let discord = Discord::builder("https://discord.com/api/webhooks/123/abc")
///     .with_username("keel")
///     .build()?;
/// discord.notify(&event).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Discord {
    base: Base,
    url: Url,
    poster: Poster,
}

/// Builds a [`Discord`] notifier.
#[derive(Clone)]
pub struct DiscordBuilder {
    url: String,
    common: Common,
    poster: Poster,
}

impl Discord {
    /// A builder for the webhook at `url`.
    pub fn builder(url: impl Into<String>) -> DiscordBuilder {
        DiscordBuilder {
            url: url.into(),
            common: Common::default(),
            poster: Poster::default(),
        }
    }

    fn payload(&self, event: &Event) -> Value {
        let rendered = self.base.render(event, &|s| s.into());
        let mut embed = json!({
            "title": rendered.title,
            "description": truncate(rendered.text, DESCRIPTION_MAX),
            "color": rendered.level.color_rgb(),
            "timestamp": event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "footer": {"text": format!("{}/{}", event.plan.target, event.plan.id)},
        });
        if let Some(notes) = &event.release_notes {
            embed["url"] = Value::String(notes.clone());
        }
        let mut payload = json!({
            "embeds": [embed],
            "allowed_mentions": {"parse": []},
        });
        self.poster.add_to(&mut payload, "avatar_url");
        payload
    }
}

fn check_discord(ctx: Context<'_>, answer: &Answer<'_>) -> Result<(), Error> {
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        let from_body = serde_json::from_slice::<Value>(answer.body)
            .ok()
            .and_then(|v| v.get("retry_after").and_then(Value::as_f64))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)));
        return Err(ctx.rate_limited(from_body.or_else(|| answer.retry_after())));
    }
    ctx.check_status(answer)
}

impl DiscordBuilder {
    common_setters!("discord");

    /// Posts as `username` instead of the webhook's name.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.poster.username = Some(username.into());
        self
    }

    /// Posts with the avatar at `url` instead of the webhook's.
    pub fn with_avatar_url(mut self, url: impl Into<String>) -> Self {
        self.poster.picture_url = Some(url.into());
        self
    }

    endpoint_build!(Discord, "discord", "discord webhook URL", poster);
}

json_notifier!(Discord, DiscordBuilder, Discord::payload, check_discord);
