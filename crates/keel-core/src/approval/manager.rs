//! The approvals manager: the rules of requests and votes, the audit log and notifications.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::info;

use super::{
    ApprovalFilter, ApprovalRequest, ApprovalState, ApprovalStore, AuditAction, AuditEntry,
    AuditQuery, Vote, VoteKind, validate_comment, validate_request_id, validate_voter,
};
use crate::error::{Error, ParseError, Result};
use crate::notify::{Event, EventKind, Notifier, notify_each};
use crate::reference::Digest;
use crate::target::{TrackedImage, UpdatePlan};

/// Where the manager reads the time; tests inject their own to move past deadlines.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The default deadline of a request: 24 hours, as in Keel.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many times the same update (same image and digest) may be requested again after it
/// was applied and then rolled back by hand; past it, opening a request is an error.
const MAX_ROUNDS: u32 = 1000;

fn too_many_rounds(plan: &UpdatePlan) -> Error {
    Error::Conflict {
        action: format!("request approval for {plan}"),
        reason: format!(
            "the same update was applied and rolled back {MAX_ROUNDS} times; delete its \
             applied requests to ask again"
        ),
    }
}

/// Enforces the approval rules over an [`ApprovalStore`], keeps the audit log and tells
/// notifiers about requests, approvals, rejections and expiries.
///
/// - [`request`](Self::request) opens a request for an update bound to the new image's
///   digest, or returns the existing one (the id is derived, so asking twice is harmless), and
///   supersedes older pending requests of the same tracked image.
/// - [`vote`](Self::vote) records one vote per voter; the `required`-th distinct approval
///   approves, any reject vetoes, and a vote after the deadline expires the request.
/// - [`expire_due`](Self::expire_due) expires overdue requests; the pipeline calls it once
///   per pass.
/// - [`mark_applied`](Self::mark_applied) / [`mark_apply_failed`](Self::mark_apply_failed)
///   record what became of an approved update.
/// - [`pending`](Self::pending) counts the requests waiting for votes, for a gauge.
///
/// Every step is written to the store's audit log. To open a request again after it expired
/// or was rejected, [`delete`](Self::delete) it: the next pass asks anew.
#[derive(Clone, derive_more::Debug)]
pub struct Approvals {
    #[debug("{:?}", store.name())]
    store: Arc<dyn ApprovalStore>,
    #[debug("{:?}", notifiers.iter().map(|n| n.name()).collect::<Vec<_>>())]
    notifiers: Vec<Arc<dyn Notifier>>,
    default_deadline: Duration,
    #[debug(skip)]
    clock: Clock,
}

/// What a vote did, for the audit log and notifications.
enum VoteOutcome {
    Counted,
    Repeated,
    Expired,
}

/// What an approval request is opened with, besides its plan.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    /// The new image's digest, which the votes are for.
    pub(crate) digest: Option<Digest>,
    /// How many approvals it needs (at least 1).
    pub(crate) required: u32,
    /// How long it stays open (default: the manager's deadline).
    pub(crate) deadline: Option<Duration>,
    /// A release-notes link shown with it.
    pub(crate) release_notes: Option<String>,
    /// Extra notification channels for its events.
    pub(crate) channels: Vec<String>,
}

impl RequestSpec {
    /// The request an update of `image` needs: its approvals, deadline, release notes and
    /// channels, for the new image's `digest`.
    pub(crate) fn for_image(image: &TrackedImage, digest: Option<Digest>) -> Self {
        RequestSpec {
            digest,
            required: image.approvals,
            deadline: image.approval_deadline,
            release_notes: image.release_notes.clone(),
            channels: image.notify.clone(),
        }
    }
}

impl Approvals {
    /// A manager over `store`, with a 24-hour default deadline and no notifiers.
    pub fn new(store: Arc<dyn ApprovalStore>) -> Self {
        Approvals {
            store,
            notifiers: Vec::new(),
            default_deadline: DEFAULT_DEADLINE,
            clock: Arc::new(Utc::now),
        }
    }

    /// How long requests stay open when the caller gives no deadline.
    pub fn with_default_deadline(mut self, deadline: Duration) -> Self {
        self.default_deadline = deadline;
        self
    }

    /// Adds a notifier told about approval requests, approvals, rejections and expiries.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Adds each of `notifiers` ([`with_notifier`](Self::with_notifier)): a program gives its
    /// manager the notifiers it gives its pipeline ([`crate::Pipeline::with_notifiers`]).
    pub fn with_notifiers(self, notifiers: impl IntoIterator<Item = Arc<dyn Notifier>>) -> Self {
        notifiers.into_iter().fold(self, Self::with_notifier)
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.store
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Opens the request for `plan`, whose new image has `digest`, needing `required`
    /// approvals, open for `deadline` (default: the manager's), or returns the request already
    /// open under the same id in whatever state it is, except applied: an applied request is
    /// never returned, since the same update planned again means the workload was rolled
    /// back, and rolling it out again needs a new request (the next round's id,
    /// [`ApprovalRequest::derive_id_round`]).
    ///
    /// A new request is audited and announced ([`EventKind::ApprovalRequested`]) once, and
    /// supersedes the pending requests of the same target and tracked image for other
    /// images or digests. An existing pending request past its deadline is expired first.
    pub async fn request(
        &self,
        plan: &UpdatePlan,
        digest: Option<Digest>,
        required: u32,
        deadline: Option<Duration>,
        release_notes: Option<String>,
    ) -> Result<ApprovalRequest> {
        let spec = RequestSpec {
            digest,
            required,
            deadline,
            release_notes,
            channels: Vec::new(),
        };
        self.open(plan, spec, &[]).await.map(|(r, _)| r)
    }

    /// [`request`](Self::request) for an update of `image`, with its approvals, deadline,
    /// release notes and notification channels.
    pub async fn request_for(
        &self,
        image: &TrackedImage,
        plan: &UpdatePlan,
        digest: Option<Digest>,
    ) -> Result<ApprovalRequest> {
        let spec = RequestSpec::for_image(image, digest);
        self.open(plan, spec, &[]).await.map(|(r, _)| r)
    }

    /// Opens or returns the request, telling `extra` notifiers too; also returns how many
    /// notifications failed.
    pub(crate) async fn open(
        &self,
        plan: &UpdatePlan,
        spec: RequestSpec,
        extra: &[Arc<dyn Notifier>],
    ) -> Result<(ApprovalRequest, usize)> {
        let RequestSpec {
            digest,
            required,
            deadline,
            release_notes,
            channels,
        } = spec;
        if required == 0 {
            return Err(ParseError::new(
                "required approvals",
                "0",
                "an approval request needs at least 1 approval",
            )
            .into());
        }
        let open_for = deadline.unwrap_or(self.default_deadline);
        let open_for = TimeDelta::from_std(open_for).map_err(|_| {
            ParseError::new(
                "approval deadline",
                format!("{}s", open_for.as_secs()),
                "too far in the future",
            )
        })?;
        let now = self.now();
        let deadline = now.checked_add_signed(open_for).ok_or_else(|| {
            ParseError::new(
                "approval deadline",
                format!("{}s", open_for.num_seconds()),
                "too far in the future",
            )
        })?;
        let mut fresh = ApprovalRequest {
            id: String::new(),
            plan: plan.clone(),
            digest,
            required,
            votes: Vec::new(),
            state: ApprovalState::Pending,
            created: now,
            updated: now,
            deadline,
            release_notes,
            channels,
        };
        let mut created = false;
        let mut expired = false;
        // An applied request is never reused: the same update planned again (the workload
        // was rolled back by hand) opens the next round's request.
        let mut stored = None;
        for round in 0..MAX_ROUNDS {
            let id = ApprovalRequest::derive_id_round(plan, fresh.digest.as_ref(), round);
            fresh.id.clone_from(&id);
            let mut applied = false;
            let found = self
                .store
                .update(&id, &mut |existing| {
                    created = existing.is_none();
                    expired = false;
                    applied = false;
                    match existing {
                        None => Ok(Some(fresh.clone())),
                        Some(mut r) if r.state == ApprovalState::Pending && now >= r.deadline => {
                            expired = true;
                            r.state = ApprovalState::Expired;
                            r.updated = now;
                            Ok(Some(r))
                        }
                        Some(r) => {
                            applied = r.state == ApprovalState::Applied;
                            Ok(Some(r))
                        }
                    }
                })
                .await?
                .ok_or_else(|| self.vanished(&id))?;
            if !applied {
                stored = Some(found);
                break;
            }
        }
        let stored = stored.ok_or_else(|| too_many_rounds(plan))?;

        let mut failures = 0;
        if expired {
            failures += self.after_expiry(&stored, now, extra).await?;
        }
        if created {
            info!(request = %stored.id, plan = %stored.plan, "approval requested");
            let digest = stored
                .digest
                .as_ref()
                .map_or_else(|| "unknown digest".to_owned(), Digest::to_string);
            let msg = format!(
                "{} needs {} approval(s) for {} ({digest}) by {}",
                stored.plan.id, stored.required, stored.plan.new, stored.deadline
            );
            self.audit(AuditAction::Requested, &stored, None, now, &msg)
                .await?;
            self.supersede_older(&stored, now).await?;
            failures += self
                .tell(EventKind::ApprovalRequested, &stored, &msg, extra)
                .await;
        }
        Ok((stored, failures))
    }

    /// Marks the other pending requests of `newer`'s tracked image superseded.
    async fn supersede_older(&self, newer: &ApprovalRequest, now: DateTime<Utc>) -> Result<()> {
        let filter = ApprovalFilter {
            state: Some(ApprovalState::Pending),
            target: Some(newer.plan.target.clone()),
            id: Some(newer.plan.id.clone()),
        };
        for old in self.store.list(&filter).await? {
            if old.id == newer.id {
                continue;
            }
            let closed = self
                .close_pending(&old.id, ApprovalState::Superseded, now, &|_| true)
                .await?;
            if let Some(stored) = closed {
                let msg = format!("superseded by request {} for {}", newer.id, newer.plan.new);
                info!(request = %stored.id, by = %newer.id, "approval request superseded");
                self.audit(AuditAction::Superseded, &stored, None, now, &msg)
                    .await?;
            }
        }
        Ok(())
    }

    /// Records `voter`'s vote on request `id` and returns the request as it stands after it.
    ///
    /// Errors: [`Error::InvalidInput`] for a malformed id, voter or comment;
    /// [`Error::NotFound`] for an unknown id; [`Error::Conflict`] when the request is no longer
    /// pending (the message says its state), including when this vote came after the
    /// deadline, which expires the request.
    pub async fn vote(
        &self,
        id: &str,
        voter: &str,
        kind: VoteKind,
        comment: Option<String>,
    ) -> Result<ApprovalRequest> {
        validate_request_id(id)?;
        validate_voter(voter)?;
        if let Some(c) = &comment {
            validate_comment(c)?;
        }
        let now = self.now();
        let mut outcome = VoteOutcome::Counted;
        let mut before = ApprovalState::Pending;
        let stored = self
            .store
            .update(id, &mut |existing| {
                let Some(mut r) = existing else {
                    return Err(Error::not_found(format!("approval request {id}")));
                };
                before = r.state;
                if r.state != ApprovalState::Pending {
                    return Err(Error::Conflict {
                        action: format!("vote on approval request {id}"),
                        reason: format!("the request is {}", r.state),
                    });
                }
                if now >= r.deadline {
                    outcome = VoteOutcome::Expired;
                    r.state = ApprovalState::Expired;
                    r.updated = now;
                    return Ok(Some(r));
                }
                let previous = r.votes.iter().position(|v| v.voter == voter);
                outcome = match previous {
                    Some(i) if r.votes[i].kind == kind => VoteOutcome::Repeated,
                    Some(i) => {
                        r.votes.remove(i);
                        VoteOutcome::Counted
                    }
                    None => VoteOutcome::Counted,
                };
                if let VoteOutcome::Repeated = outcome {
                    return Ok(Some(r));
                }
                r.votes.push(Vote {
                    voter: voter.to_owned(),
                    kind,
                    at: now,
                    comment: comment.clone(),
                });
                r.updated = now;
                if r.rejected() {
                    r.state = ApprovalState::Rejected;
                } else if r.approvals() >= r.required {
                    r.state = ApprovalState::Approved;
                }
                Ok(Some(r))
            })
            .await?
            .ok_or_else(|| self.vanished(id))?;

        match outcome {
            VoteOutcome::Expired => {
                self.after_expiry(&stored, now, &[]).await?;
                Err(Error::Conflict {
                    action: format!("vote on approval request {id}"),
                    reason: format!("the request expired at {}", stored.deadline),
                })
            }
            VoteOutcome::Repeated => {
                let msg = format!("{voter} voted {kind} again; not counted twice");
                self.audit(AuditAction::Voted, &stored, Some(voter), now, &msg)
                    .await?;
                Ok(stored)
            }
            VoteOutcome::Counted => {
                let mut msg = format!(
                    "{voter} voted {kind} ({}/{} approvals)",
                    stored.approvals(),
                    stored.required
                );
                if let Some(c) = &comment {
                    msg.push_str(": ");
                    msg.push_str(c);
                }
                info!(request = %id, %voter, %kind, "vote recorded");
                self.audit(AuditAction::Voted, &stored, Some(voter), now, &msg)
                    .await?;
                if stored.state != before {
                    let (action, event) = match stored.state {
                        ApprovalState::Approved => (AuditAction::Approved, EventKind::Approved),
                        _ => (AuditAction::Rejected, EventKind::Rejected),
                    };
                    let msg = match stored.state {
                        ApprovalState::Approved => format!(
                            "{} approved with {} approval(s)",
                            stored.plan.new,
                            stored.approvals()
                        ),
                        _ => format!("{} rejected by {voter}", stored.plan.new),
                    };
                    info!(request = %id, state = %stored.state, "approval decided");
                    self.audit(action, &stored, Some(voter), now, &msg).await?;
                    self.tell(event, &stored, &msg, &[]).await;
                }
                Ok(stored)
            }
        }
    }

    /// Deletes request `id` on behalf of `actor` and returns it. The next pass that plans the
    /// same update opens it anew.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<ApprovalRequest> {
        validate_request_id(id)?;
        validate_voter(actor)?;
        let mut deleted = None;
        self.store
            .update(id, &mut |existing| match existing {
                None => Err(Error::not_found(format!("approval request {id}"))),
                Some(r) => {
                    deleted = Some(r);
                    Ok(None)
                }
            })
            .await?;
        let deleted = deleted.ok_or_else(|| self.vanished(id))?;
        let msg = format!("deleted by {actor} while {}", deleted.state);
        info!(request = %id, %actor, "approval request deleted");
        self.audit(
            AuditAction::Deleted,
            &deleted,
            Some(actor),
            self.now(),
            &msg,
        )
        .await?;
        Ok(deleted)
    }

    /// Expires every pending request past its deadline; returns them as expired.
    pub async fn expire_due(&self) -> Result<Vec<ApprovalRequest>> {
        self.expire_due_with(&[]).await.map(|(r, _)| r)
    }

    /// [`expire_due`](Self::expire_due), telling `extra` notifiers too; also returns how many
    /// notifications failed.
    pub(crate) async fn expire_due_with(
        &self,
        extra: &[Arc<dyn Notifier>],
    ) -> Result<(Vec<ApprovalRequest>, usize)> {
        let now = self.now();
        let mut failures = 0;
        let mut expired = Vec::new();
        for r in self
            .store
            .list(&ApprovalFilter::state(ApprovalState::Pending))
            .await?
        {
            if now < r.deadline {
                continue;
            }
            let closed = self
                .close_pending(&r.id, ApprovalState::Expired, now, &|r| now >= r.deadline)
                .await?;
            if let Some(stored) = closed {
                failures += self.after_expiry(&stored, now, extra).await?;
                expired.push(stored);
            }
        }
        Ok((expired, failures))
    }

    /// Moves request `id` from pending to `to` as of `now`, if it is still pending and `due`
    /// holds for it as stored; the request as stored when this call moved it, else `None`.
    async fn close_pending(
        &self,
        id: &str,
        to: ApprovalState,
        now: DateTime<Utc>,
        due: &(dyn Fn(&ApprovalRequest) -> bool + Sync),
    ) -> Result<Option<ApprovalRequest>> {
        let mut changed = false;
        let stored = self
            .store
            .update(id, &mut |r| {
                changed = false;
                Ok(r.map(|mut r| {
                    if r.state == ApprovalState::Pending && due(&r) {
                        changed = true;
                        r.state = to;
                        r.updated = now;
                    }
                    r
                }))
            })
            .await?;
        Ok(stored.filter(|_| changed))
    }

    async fn after_expiry(
        &self,
        r: &ApprovalRequest,
        now: DateTime<Utc>,
        extra: &[Arc<dyn Notifier>],
    ) -> Result<usize> {
        let msg = format!(
            "{} expired at {} with {}/{} approvals",
            r.plan.new,
            r.deadline,
            r.approvals(),
            r.required
        );
        info!(request = %r.id, "approval request expired");
        self.audit(AuditAction::Expired, r, None, now, &msg).await?;
        Ok(self.tell(EventKind::Expired, r, &msg, extra).await)
    }

    /// The request that [`request`](Self::request) would return for `plan` with `digest`,
    /// without opening one: the first round's request that was not applied, or `None` when
    /// none is stored (the next real pass opens it).
    pub async fn lookup(
        &self,
        plan: &UpdatePlan,
        digest: Option<&Digest>,
    ) -> Result<Option<ApprovalRequest>> {
        for round in 0..MAX_ROUNDS {
            let id = ApprovalRequest::derive_id_round(plan, digest, round);
            match self.store.get(&id).await? {
                Some(r) if r.state == ApprovalState::Applied => continue,
                found => return Ok(found),
            }
        }
        Err(too_many_rounds(plan))
    }

    /// Records that the approved update of request `id` was applied. Marking it applied again
    /// is recorded too; a request that is not approved is [`Error::Conflict`].
    pub async fn mark_applied(&self, id: &str) -> Result<()> {
        validate_request_id(id)?;
        let now = self.now();
        let stored = self
            .store
            .update(id, &mut |existing| {
                let Some(mut r) = existing else {
                    return Err(Error::not_found(format!("approval request {id}")));
                };
                if !matches!(r.state, ApprovalState::Approved | ApprovalState::Applied) {
                    return Err(Error::Conflict {
                        action: format!("mark approval request {id} applied"),
                        reason: format!("the request is {}", r.state),
                    });
                }
                r.state = ApprovalState::Applied;
                r.updated = now;
                Ok(Some(r))
            })
            .await?
            .ok_or_else(|| self.vanished(id))?;
        let msg = format!("{} applied in {}", stored.plan.new, stored.plan.target);
        self.audit(AuditAction::Applied, &stored, None, now, &msg)
            .await?;
        Ok(())
    }

    /// Records that applying the approved update of request `id` failed with `message`. The
    /// request stays approved, so the next pass tries again.
    pub async fn mark_apply_failed(&self, id: &str, message: &str) -> Result<()> {
        validate_request_id(id)?;
        let r = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("approval request {id}")))?;
        let msg = format!("applying {} failed: {message}", r.plan.new);
        self.audit(AuditAction::ApplyFailed, &r, None, self.now(), &msg)
            .await?;
        Ok(())
    }

    /// Records an update that needed no approval: applied (`Ok`), or failed with the error
    /// (`Err`), so that the audit log holds every update, not only the approved ones.
    pub async fn record_update(
        &self,
        plan: &UpdatePlan,
        outcome: std::result::Result<(), &str>,
    ) -> Result<()> {
        let (action, message) = match outcome {
            Ok(()) => (
                AuditAction::Applied,
                format!("{} applied in {}", plan.new, plan.target),
            ),
            Err(error) => (
                AuditAction::ApplyFailed,
                format!("applying {} failed: {error}", plan.new),
            ),
        };
        let entry = AuditEntry {
            seq: 0,
            time: self.now(),
            action,
            request: None,
            actor: None,
            target: plan.target.clone(),
            image_id: plan.id.clone(),
            image: plan.new.to_string(),
            message,
        };
        self.store.append_audit(entry).await.map(drop)
    }

    /// How many requests wait for votes now: pending and not past their deadline.
    pub async fn pending(&self) -> Result<usize> {
        let now = self.now();
        Ok(self
            .store
            .list(&ApprovalFilter::state(ApprovalState::Pending))
            .await?
            .iter()
            .filter(|r| now < r.deadline)
            .count())
    }

    /// The request `id`, if stored.
    pub async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>> {
        validate_request_id(id)?;
        self.store.get(id).await
    }

    /// The requests matching `filter`.
    pub async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRequest>> {
        self.store.list(filter).await
    }

    /// The audit entries matching `query`.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.store.audit(query).await
    }

    async fn audit(
        &self,
        action: AuditAction,
        r: &ApprovalRequest,
        actor: Option<&str>,
        now: DateTime<Utc>,
        message: &str,
    ) -> Result<u64> {
        self.store
            .append_audit(AuditEntry::for_request(action, r, actor, now, message))
            .await
    }

    /// Tells every notifier, and each of `extra` that is not one of them, once. A failed
    /// delivery is logged and counted, not returned: the decision stands.
    async fn tell(
        &self,
        kind: EventKind,
        r: &ApprovalRequest,
        message: &str,
        extra: &[Arc<dyn Notifier>],
    ) -> usize {
        let mut targets: Vec<&Arc<dyn Notifier>> = self.notifiers.iter().collect();
        for n in extra {
            if !targets.iter().any(|t| Arc::ptr_eq(t, n)) {
                targets.push(n);
            }
        }
        if targets.is_empty() {
            return 0;
        }
        let mut event = Event::new(kind, r.plan.clone(), message)
            .with_approval(r.info())
            .with_release_notes(r.release_notes.clone())
            .with_channels(r.channels.clone());
        event.time = self.now();
        notify_each(targets, &event, "approval notification failed").await
    }

    fn vanished(&self, id: &str) -> Error {
        Error::Backend {
            backend: self.store.name().to_owned(),
            action: format!("update approval request {id}"),
            message: "the store returned no request after writing one".into(),
            retryable: true,
            source: None,
        }
    }
}
