//! The `Notifier` trait and the events it delivers.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::warn;

use crate::error::Result;
use crate::target::UpdatePlan;

/// What happened to an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// A policy chose an update; it is about to be applied (or shown, in a dry run).
    UpdatePlanned,
    /// The target applied the update.
    UpdateApplied,
    /// Applying the update failed.
    UpdateFailed,
    /// The update waits for approvals.
    ApprovalRequested,
    /// The update got its approvals.
    Approved,
    /// The update was rejected.
    Rejected,
    /// The approval deadline passed.
    Expired,
    /// A repository's tag list was cut short by the registry's listing budget, so no update
    /// of its images was chosen (the plan's `new` is its `current`; the message says which
    /// budget to raise). Sent once until the listing is complete again.
    ListingTruncated,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::UpdatePlanned => "update planned",
            EventKind::UpdateApplied => "update applied",
            EventKind::UpdateFailed => "update failed",
            EventKind::ApprovalRequested => "approval requested",
            EventKind::Approved => "approved",
            EventKind::Rejected => "rejected",
            EventKind::Expired => "expired",
            EventKind::ListingTruncated => "tag list truncated",
        })
    }
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The update it happened to.
    pub plan: UpdatePlan,
    /// A human-readable sentence, e.g. the error of a failed update.
    pub message: String,
    /// A release-notes link, when the tracked image has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// For approval events: the approval request and its votes so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalInfo>,
    /// Extra channels the tracked image asks to be told on (Keel's `keel.sh/notify`), in
    /// addition to each notifier's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// The approval request an approval event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalInfo {
    /// The request's id, as used by the approval API and the bot (`/keel approve <id>`).
    pub id: String,
    /// Approvals needed.
    pub required: u32,
    /// Approving votes so far.
    pub approvals: u32,
    /// Who voted so far, in vote order.
    pub voters: Vec<String>,
    /// When the request expires.
    pub deadline: DateTime<Utc>,
}

impl Event {
    /// An event of `kind` for `plan`, now.
    pub fn new(kind: EventKind, plan: UpdatePlan, message: impl Into<String>) -> Self {
        Event {
            kind,
            plan,
            message: message.into(),
            release_notes: None,
            time: Utc::now(),
            approval: None,
            channels: Vec::new(),
        }
    }

    /// The same, with a release-notes link.
    pub fn with_release_notes(self, url: Option<String>) -> Self {
        Event {
            release_notes: url,
            ..self
        }
    }

    /// The same, about approval request `approval`.
    pub fn with_approval(self, approval: ApprovalInfo) -> Self {
        Event {
            approval: Some(approval),
            ..self
        }
    }

    /// The same, also to be told on `channels`.
    pub fn with_channels(self, channels: Vec<String>) -> Self {
        Event { channels, ..self }
    }
}

/// Delivers `event` to each of `notifiers` at once and logs every failure as `failed`; how
/// many failed. The pipeline and the approvals manager tell their notifiers through it.
pub(crate) async fn notify_each<'n>(
    notifiers: impl IntoIterator<Item = &'n Arc<dyn Notifier>>,
    event: &Event,
    failed: &str,
) -> usize {
    let results = futures::future::join_all(
        notifiers
            .into_iter()
            .map(|n| async move { (n.name(), n.notify(event).await) }),
    )
    .await;
    let mut failures = 0;
    for (name, result) in results {
        if let Err(error) = result {
            warn!(notifier = name, %error, kind = %event.kind, "{failed}");
            failures += 1;
        }
    }
    failures
}

/// Delivers events: a chat webhook, a generic JSON webhook, a log.
///
/// Contract: `notify` delivers one event or fails with an error saying why; it does not
/// panic and does not block other notifiers (the pipeline calls them concurrently and
/// counts failures). Retries, if any, happen inside, within a bounded time.
///
/// The trait is object-safe; the pipeline holds `Arc<dyn Notifier>`s.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// A short name for messages, e.g. `slack #deploys`.
    fn name(&self) -> &str;

    /// Delivers `event`.
    async fn notify(&self, event: &Event) -> Result<()>;
}
