//! Mattermost [incoming webhooks](https://developers.mattermost.com/integrate/webhooks/incoming/).
//!
//! The message is one attachment coloured by the event's [`Level`](crate::Level), its title
//! linking to the release notes when the workload has them:
//!
//! ```json
//! {
//!   "channel": "deploys",
//!   "username": "keel",
//!   "attachments": [{
//!     "fallback": "Update applied: prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0).",
//!     "color": "#2eb886",
//!     "title": "Update applied",
//!     "title_link": "https://nginx.org/en/CHANGES",
//!     "text": "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0).",
//!     "footer": "prod/default/web · 2024-05-01T12:00:00Z"
//!   }]
//! }
//! ```
//!
//! `channel`, `username` and `icon_url` appear only when set. With channels (the
//! notifier's and the event's [`Event::channels`]) the message is posted once per channel;
//! without, once to the webhook's own channel.

use std::fmt;

use keel_core::{Error, Event};
use reqwest::Url;
use serde_json::{Value, json};

use crate::common::{
    Base, Common, Poster, base_notifier, channels_for, common_setters, endpoint_build,
};

/// Posts to a Mattermost incoming webhook; see the [module docs](self) for the payload.
///
/// ```no_run
/// # async fn run(event: keel_core::Event) -> Result<(), keel_core::Error> {
/// use keel_core::Notifier;
/// use keel_notify::Mattermost;
///
/// let mm = Mattermost::builder("https://chat.example.com/hooks/xxxxxxxxxxxxxxxx")
///     .with_username("keel")
///     .build()?;
/// mm.notify(&event).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Mattermost {
    base: Base,
    url: Url,
    channels: Vec<String>,
    poster: Poster,
}

/// Builds a [`Mattermost`] notifier.
#[derive(Clone)]
pub struct MattermostBuilder {
    url: String,
    common: Common,
    channels: Vec<String>,
    poster: Poster,
}

impl Mattermost {
    /// A builder for the webhook at `url`.
    pub fn builder(url: impl Into<String>) -> MattermostBuilder {
        MattermostBuilder {
            url: url.into(),
            common: Common::default(),
            channels: Vec::new(),
            poster: Poster::default(),
        }
    }

    fn payload(&self, event: &Event, channel: Option<&str>) -> Value {
        let rendered = self.base.render(event, &|s| s.into());
        let mut attachment = json!({
            "fallback": format!("{}: {}", rendered.title, rendered.text),
            "color": rendered.level.color(),
            "title": rendered.title,
            "text": rendered.text,
            "footer": format!(
                "{}/{} · {}",
                event.plan.target,
                event.plan.id,
                event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        });
        if let Some(notes) = &event.release_notes {
            attachment["title_link"] = Value::String(notes.clone());
        }
        let mut payload = json!({ "attachments": [attachment] });
        if let Some(channel) = channel {
            payload["channel"] = Value::String(channel.to_owned());
        }
        self.poster.add_to(&mut payload, "icon_url");
        payload
    }

    async fn post(&self, event: &Event, channel: Option<&str>) -> Result<(), Error> {
        let mut action = Base::action(event);
        if let Some(channel) = channel {
            action.push_str(&format!(" to {channel}"));
        }
        let payload = self.payload(event, channel);
        self.base
            .post_json(&action, &self.url, &payload, |ctx, answer| {
                ctx.check_status(answer)
            })
            .await
    }
}

impl MattermostBuilder {
    common_setters!("mattermost");

    /// Posts to `channel` (its name, e.g. `town-square`) instead of the webhook's own; call
    /// again for more channels.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Posts as `username` (the webhook must allow overriding it).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.poster.username = Some(username.into());
        self
    }

    /// Posts with the profile picture at `url` (the webhook must allow overriding it).
    pub fn with_icon_url(mut self, url: impl Into<String>) -> Self {
        self.poster.picture_url = Some(url.into());
        self
    }

    endpoint_build!(
        Mattermost,
        "mattermost",
        "mattermost webhook URL",
        channels,
        poster
    );
}

impl fmt::Debug for Mattermost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.base
            .debug_struct(f, "Mattermost", ("endpoint", &self.url))
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for MattermostBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common
            .debug_struct(f, "MattermostBuilder")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Mattermost {
    async fn deliver(&self, event: &Event) -> Result<(), Error> {
        let channels = channels_for(&self.channels, event, |c| c);
        if channels.is_empty() {
            return self.post(event, None).await;
        }
        self.base
            .to_each_channel(event, &channels, |c| self.post(event, Some(c)))
            .await
    }
}

base_notifier!(Mattermost);
