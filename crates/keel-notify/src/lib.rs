//! Notifiers of keel-rs: Slack, Mattermost, Microsoft Teams, Discord and a generic,
//! HMAC-signed JSON webhook.
//!
//! Each notifier implements [`keel_core::Notifier`] and is made by a builder from its
//! endpoint. Every builder has the same settings:
//!
//! - a **level** ([`Level`], like Keel's `NOTIFICATION_LEVEL`): events below it are not
//!   sent;
//! - **templates** ([`Templates`], see [`template`] for the syntax and variables): the
//!   message text per event kind, with defaults that mention the release notes when a
//!   workload has a link;
//! - a per-attempt **timeout** and a [`RetryPolicy`] (see [`delivery`]): connection
//!   failures, timeouts, 408, 429 and 5xx answers are retried with exponential backoff and
//!   jitter, honouring `Retry-After`, within a bound on the whole delivery; other 4xx
//!   answers fail at once with the status and the start of the body;
//! - a **name** for logs and errors. Endpoint URLs and tokens are secrets: they never
//!   appear in errors, logs or `Debug` output.
//!
//! | notifier | endpoint | payload |
//! |---|---|---|
//! | [`SlackWebhook`] | Slack incoming webhook | Block Kit ([`slack`]) |
//! | [`SlackBot`] | Slack `chat.postMessage`, bot token | Block Kit, approval buttons, per channel ([`slack`]) |
//! | [`Mattermost`] | Mattermost incoming webhook | attachment ([`mattermost`]) |
//! | [`Teams`] | Microsoft Teams webhook (workflow or connector) | Adaptive Card ([`teams`]) |
//! | [`Discord`] | Discord webhook | embed ([`discord`]) |
//! | [`Webhook`] | any URL | versioned JSON, HMAC-SHA256 signature ([`webhook`]) |
//!
//! Two wrappers compose them: [`Queued`] puts a bounded queue and a worker in front of a
//! notifier so that `notify` returns at once (overflow is counted and logged, never
//! silent), and [`FanOut`] delivers to several notifiers concurrently so that one failing
//! or hanging does not block the others.
//!
//! [`from_env`] builds the notifiers an application's environment configures, under Keel's
//! variable names (`SLACK_TOKEN`, `WEBHOOK_ENDPOINT`, `NOTIFICATION_LEVEL`...; see [`env`](mod@env)).
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_core::Error> {
//! use std::time::Duration;
//! use keel_core::{Event, EventKind, ImageRef, Notifier, UpdatePlan};
//! use keel_notify::{FanOut, Level, Queued, RetryPolicy, SlackWebhook, Templates, Webhook};
//!
//! let templates = Templates::new().with_source(
//!     EventKind::UpdateApplied,
//!     "{{image}} is now {{new_tag}} on {{target}}{{#release_notes}} (<{{release_notes}}|notes>){{/release_notes}}",
//! )?;
//! let slack = SlackWebhook::builder("https://hooks.slack.com/services/T000/B000/XXXX")
//!     .with_name("slack #deploys")
//!     .with_level(Level::Success)
//!     .with_templates(templates)
//!     .with_timeout(Duration::from_secs(5))
//!     .build()?;
//! let audit = Webhook::builder("https://audit.example.com/keel")
//!     .with_secret("s3cret")
//!     .with_retry(RetryPolicy::new().with_max_attempts(6))
//!     .build()?;
//! let notifier = Queued::new(FanOut::new().with(slack).with(audit), 1000);
//!
//! let plan = UpdatePlan {
//!     target: "prod".into(),
//!     id: "default/web".into(),
//!     current: ImageRef::parse("nginx:1.25.0")?,
//!     new: ImageRef::parse("nginx:1.25.1")?,
//! };
//! notifier.notify(&Event::new(EventKind::UpdateApplied, plan, "applied")).await?;
//! notifier.shutdown(Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

mod common;
pub mod delivery;
pub mod discord;
pub mod env;
mod fanout;
mod level;
pub mod mattermost;
mod queue;
pub mod slack;
pub mod teams;
pub mod template;
pub mod webhook;

pub use delivery::RetryPolicy;
pub use discord::{Discord, DiscordBuilder};
pub use env::from_env;
pub use fanout::FanOut;
pub use keel_core::Notifier;
pub use level::Level;
pub use mattermost::{Mattermost, MattermostBuilder};
pub use queue::{QueueStats, Queued};
pub use slack::{SlackBot, SlackBotBuilder, SlackWebhook, SlackWebhookBuilder};
pub use teams::{Teams, TeamsBuilder};
pub use template::{Template, Templates};
pub use webhook::{Webhook, WebhookBuilder, WebhookPayload};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn notifiers_are_object_safe() {
        fn _obj_safe(_: Arc<dyn Notifier>) {}
        fn _all(s: SlackWebhook, b: SlackBot, m: Mattermost, t: Teams, d: Discord, w: Webhook) {
            let _: Vec<Arc<dyn Notifier>> = vec![
                Arc::new(s),
                Arc::new(b),
                Arc::new(m),
                Arc::new(t),
                Arc::new(d),
                Arc::new(w),
            ];
        }
        fn _wrappers(q: Queued, f: FanOut) {
            _obj_safe(Arc::new(q));
            _obj_safe(Arc::new(f));
        }
    }
}
