//! What a pass reports.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::approval::{ApprovalRequest, ApprovalState};
use crate::error::Error;
use crate::target::UpdatePlan;

/// A repository whose tag list the registry's listing budget cut short; none of its
/// images was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedListing {
    /// The repository, e.g. `ghcr.io/acme/web`.
    pub repository: String,
    /// The registry backend's name.
    pub registry: String,
    /// How many tags the listing held when the budget stopped it.
    pub listed: usize,
    /// The tracked images held back, as `(target, id)`.
    pub images: Vec<(String, String)>,
}

impl fmt::Display for TruncatedListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the tag list of {} from {} stopped at the listing budget after {} tags; no \
             update of its {} image(s) is chosen from a partial list, since the newest tags \
             are the ones cut: raise the registry client's listing budget (pages and tags)",
            self.repository,
            self.registry,
            self.listed,
            self.images.len()
        )
    }
}

/// An update held back by its approval request: rejected, expired or superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedUpdate {
    /// The plan.
    pub plan: UpdatePlan,
    /// The approval request's id.
    pub request: String,
    /// Why: the request's state.
    pub state: ApprovalState,
}

/// An update a policy chose, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpdate {
    /// The plan.
    pub plan: UpdatePlan,
    /// Approvals it needs before it is applied (0: none).
    pub approvals: u32,
}

/// Something that went wrong for one tracked image or target; the rest of the pass went on.
#[derive(Debug)]
pub struct Failure {
    /// The target's name (the approval store's, when expiring approvals failed).
    pub target: String,
    /// The tracked image's id, or `None` when the whole target failed (discovery).
    pub id: Option<String>,
    /// What went wrong.
    pub error: Error,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// When the pass started.
    pub started: Option<DateTime<Utc>>,
    /// How many images the targets track.
    pub tracked: usize,
    /// How many repository listings the pass made.
    pub listings: usize,
    /// Every update a policy chose, in target and id order.
    pub planned: Vec<PlannedUpdate>,
    /// Plans applied (or already current) in the targets.
    pub applied: Vec<UpdatePlan>,
    /// Plans waiting for approvals.
    pub awaiting_approval: Vec<UpdatePlan>,
    /// Plans whose approval request was rejected, expired or superseded; not applied.
    pub refused: Vec<RefusedUpdate>,
    /// The approval requests the pass opened or consulted, as they stood then (with an
    /// approvals manager).
    pub approval_requests: Vec<ApprovalRequest>,
    /// Approval requests the pass found past their deadline and expired.
    pub expired: Vec<ApprovalRequest>,
    /// In a dry run: each target's preview of what it would change.
    pub previews: BTreeMap<String, String>,
    /// What went wrong, per target or tracked image.
    pub failures: Vec<Failure>,
    /// Repositories whose tag list was cut short by the listing budget; their images were
    /// not decided.
    pub truncated: Vec<TruncatedListing>,
    /// Tags left out of a decision because their metadata could not be read, as
    /// `(repository:tag, reason)`.
    pub skipped_tags: Vec<(String, String)>,
    /// How many notifications failed to deliver.
    pub notify_failures: usize,
}

impl RunReport {
    /// The exit status of a program that ran this one pass (a `--once` run, a CI step):
    /// success, or failure when anything failed.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.failures.is_empty() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }

    /// Logs what the pass did: one `pass done` line with the counts (and `pass`, what started
    /// it), and a warning for each failure.
    pub fn log(&self, pass: &str) {
        for failure in &self.failures {
            tracing::warn!(
                target_name = %failure.target,
                id = ?failure.id,
                error = %failure.error,
                "pass failure"
            );
        }
        tracing::info!(
            pass,
            tracked = self.tracked,
            listings = self.listings,
            planned = self.planned.len(),
            applied = self.applied.len(),
            awaiting_approval = self.awaiting_approval.len(),
            failures = self.failures.len(),
            "pass done"
        );
    }
}
