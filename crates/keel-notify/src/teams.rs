//! Microsoft Teams: an [Adaptive Card] posted to a Teams incoming webhook (a "Post to a
//! channel when a webhook request is received" workflow, or a legacy connector URL).
//!
//! ```json
//! {
//!   "type": "message",
//!   "attachments": [{
//!     "contentType": "application/vnd.microsoft.card.adaptive",
//!     "contentUrl": null,
//!     "content": {
//!       "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
//!       "type": "AdaptiveCard",
//!       "version": "1.4",
//!       "body": [
//!         {"type": "TextBlock", "text": "Update applied", "weight": "Bolder",
//!          "size": "Medium", "color": "Good", "wrap": true},
//!         {"type": "TextBlock", "text": "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0).",
//!          "wrap": true},
//!         {"type": "FactSet", "facts": [
//!           {"title": "Target", "value": "prod"},
//!           {"title": "Workload", "value": "default/web"},
//!           {"title": "From", "value": "nginx:1.25.0"},
//!           {"title": "To", "value": "nginx:1.25.1"},
//!           {"title": "Time", "value": "2024-05-01T12:00:00Z"}
//!         ]}
//!       ],
//!       "actions": [{"type": "Action.OpenUrl", "title": "Release notes",
//!                    "url": "https://nginx.org/en/CHANGES"}]
//!     }
//!   }]
//! }
//! ```
//!
//! The title's colour follows the [`Level`]: `Good` for success, `Warning`,
//! `Attention` for errors, `Accent` for info. `actions` appears only with release notes.
//! Legacy connectors answer some failures with HTTP 200 and a body starting
//! `Webhook message delivery failed`; those count as failures (retryable when the body
//! names HTTP 429 or a 5xx).
//!
//! [Adaptive Card]: https://adaptivecards.io

use keel_core::{Error, Event};
use reqwest::Url;
use serde_json::{Value, json};

use crate::common::{Base, Common, common_setters, endpoint_build, json_notifier};
use crate::delivery::{Answer, Context};
use crate::level::Level;

/// Posts an Adaptive Card to a Microsoft Teams webhook; see the [module docs](self).
///
/// ```no_run
/// # async fn run(event: keel_core::Event) -> Result<(), keel_core::Error> {
/// use keel_core::Notifier;
/// use keel_notify::Teams;
///
/// let teams = Teams::builder("https://prod-00.westeurope.logic.azure.com/workflows/…")
///     .build()?;
/// teams.notify(&event).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Teams {
    base: Base,
    url: Url,
}

/// Builds a [`Teams`] notifier.
#[derive(Clone)]
pub struct TeamsBuilder {
    url: String,
    common: Common,
}

fn card_color(level: Level) -> &'static str {
    match level {
        Level::Debug => "Default",
        Level::Info => "Accent",
        Level::Success => "Good",
        Level::Warn => "Warning",
        Level::Error => "Attention",
    }
}

impl Teams {
    /// A builder for the webhook at `url`.
    pub fn builder(url: impl Into<String>) -> TeamsBuilder {
        TeamsBuilder {
            url: url.into(),
            common: Common::default(),
        }
    }

    fn payload(&self, event: &Event) -> Value {
        let rendered = self.base.render(event, &|s| s.into());
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": rendered.title, "weight": "Bolder",
                 "size": "Medium", "color": card_color(rendered.level), "wrap": true},
                {"type": "TextBlock", "text": rendered.text, "wrap": true},
                {"type": "FactSet", "facts": [
                    {"title": "Target", "value": event.plan.target},
                    {"title": "Workload", "value": event.plan.id},
                    {"title": "From", "value": event.plan.current.familiar()},
                    {"title": "To", "value": event.plan.new.familiar()},
                    {"title": "Time", "value":
                        event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
                ]},
            ],
        });
        if let Some(notes) = &event.release_notes {
            card["actions"] =
                json!([{"type": "Action.OpenUrl", "title": "Release notes", "url": notes}]);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        })
    }
}

fn check_teams(ctx: Context<'_>, answer: &Answer<'_>) -> Result<(), Error> {
    ctx.check_status(answer)?;
    let body = String::from_utf8_lossy(answer.body);
    if body
        .trim_start()
        .starts_with("Webhook message delivery failed")
    {
        let retryable = body.contains("HTTP error 429") || body.contains("HTTP error 5");
        return Err(ctx.backend(answer.excerpt(), retryable));
    }
    Ok(())
}

impl TeamsBuilder {
    common_setters!("teams");

    endpoint_build!(Teams, "teams", "teams webhook URL");
}

json_notifier!(Teams, TeamsBuilder, Teams::payload, check_teams);
