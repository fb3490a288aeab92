//! Scenarios and helpers for tests of the keel-core pipeline (feature `pipeline`).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalState, Approvals, AuditAction, AuditEntry, AuditQuery,
    Clock, MemoryApprovalStore, VoteKind,
};
use keel_core::{
    Digest, Error, Event, EventKind, ImageRef, Notifier, Pipeline, TrackedImage, UpdatePlan,
    VersionPolicy,
};

/// A notifier that keeps every event it is handed, in order.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    events: Mutex<Vec<Event>>,
}

impl RecordingNotifier {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events lock").clone()
    }

    /// The events of `kind` so far.
    pub fn of(&self, kind: EventKind) -> Vec<Event> {
        let events = self.events.lock().expect("events lock");
        events.iter().filter(|e| e.kind == kind).cloned().collect()
    }

    /// How many events of `kind` arrived so far.
    pub fn count(&self, kind: EventKind) -> usize {
        let events = self.events.lock().expect("events lock");
        events.iter().filter(|e| e.kind == kind).count()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn notify(&self, event: &Event) -> Result<(), Error> {
        self.events.lock().expect("events lock").push(event.clone());
        Ok(())
    }
}

/// The plan of target `prod` to move image `image_id` from `ghcr.io/acme/web:1.0.0` to
/// `ghcr.io/acme/web:TAG`.
pub fn web_plan(image_id: &str, tag: &str) -> UpdatePlan {
    UpdatePlan {
        target: "prod".into(),
        id: image_id.into(),
        current: ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
        new: ImageRef::parse(&format!("ghcr.io/acme/web:{tag}")).unwrap(),
    }
}

/// The image `id` of a target, running `image` under the Keel policy `policy` (with default
/// options).
pub fn tracked(id: &str, image: &str, policy: &str) -> TrackedImage {
    TrackedImage::new(
        id,
        ImageRef::parse(image).unwrap(),
        Arc::new(policy.parse::<VersionPolicy>().unwrap()),
    )
}

/// A valid sha256 digest made from `n`: `sha256:000…0<n in hex>`.
pub fn digest(n: u64) -> Digest {
    format!("sha256:{n:064x}").parse().unwrap()
}

/// A clock the test moves by hand, for [`Approvals::with_clock`].
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `time`.
    pub fn at(time: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(time)))
    }

    /// The time it shows.
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().expect("clock lock") += by;
    }

    /// The clock to hand to [`Approvals::with_clock`].
    pub fn clock(&self) -> Clock {
        let clock = self.clone();
        Arc::new(move || clock.now())
    }
}

/// Approvals kept in a [`MemoryApprovalStore`] and timed by a [`ManualClock`] standing at
/// `time`: the store, the clock and the manager on both.
pub fn memory_approvals(time: DateTime<Utc>) -> (Arc<MemoryApprovalStore>, ManualClock, Approvals) {
    let store = Arc::new(MemoryApprovalStore::new());
    let clock = ManualClock::at(time);
    let approvals = Approvals::new(store.clone()).with_clock(clock.clock());
    (store, clock, approvals)
}

/// How many requests `approvals` holds, whatever their state.
pub async fn stored_requests(approvals: &Approvals) -> usize {
    let all = approvals.list(&ApprovalFilter::default()).await;
    all.expect("list the approval requests").len()
}

/// The request `id` as `approvals` stores it; panics when it cannot be read or is not there.
pub async fn stored_request(approvals: &Approvals, id: &str) -> ApprovalRequest {
    let stored = approvals.get(id).await.expect("read the approval request");
    stored.unwrap_or_else(|| panic!("no approval request {id}"))
}

/// The whole audit log of `approvals`.
pub async fn audit_entries(approvals: &Approvals) -> Vec<AuditEntry> {
    let log = approvals.audit_log(&AuditQuery::default()).await;
    log.expect("read the audit log")
}

/// How many entries of `action` the audit log of `approvals` holds.
pub async fn audited(approvals: &Approvals, action: AuditAction) -> usize {
    let log = audit_entries(approvals).await;
    log.iter().filter(|e| e.action == action).count()
}

/// What was approved is what rolls out. `pipeline` tracks one image that needs one approval
/// (through `approvals`) and has one newer tag. The scenario: a pass opens a request, `alice`
/// approves it, `re_push` pushes the tag again with other content (returning its digest); the
/// next pass rolls nothing out (`assert_unchanged` checks the target) and opens a request for
/// the new content; approving that one rolls out exactly the new digest, which is returned.
pub async fn approved_digest_rolls_out(
    pipeline: &Pipeline,
    approvals: &Approvals,
    re_push: impl AsyncFnOnce() -> String,
    assert_unchanged: impl AsyncFnOnce(),
) -> String {
    let first = pipeline.run_once().await;
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    let request = first.approval_requests[0].clone();
    assert_eq!(request.state, ApprovalState::Pending);
    let approved = request.digest.clone().expect("the request names a digest");
    approvals
        .vote(&request.id, "alice", VoteKind::Approve, None)
        .await
        .unwrap();

    // After the vote, someone pushes other content under the approved tag.
    let pushed = re_push().await;
    assert_ne!(pushed, approved.as_str());

    let second = pipeline.run_once().await;
    assert!(second.failures.is_empty(), "{:?}", second.failures);
    assert!(
        second.applied.is_empty(),
        "the re-pushed tag rolled out on the old approval: {:?}",
        second.applied
    );
    assert_unchanged().await;
    let reopened = second
        .approval_requests
        .iter()
        .find(|r| r.id != request.id)
        .expect("a request for the new content");
    assert_eq!(
        reopened.digest.as_ref().map(|d| d.as_str()),
        Some(pushed.as_str())
    );
    assert_eq!(reopened.state, ApprovalState::Pending);

    // Approving the new content rolls out exactly that digest.
    approvals
        .vote(&reopened.id, "alice", VoteKind::Approve, None)
        .await
        .unwrap();
    let third = pipeline.run_once().await;
    assert!(third.failures.is_empty(), "{:?}", third.failures);
    assert_eq!(third.applied.len(), 1);
    assert_eq!(
        third.applied[0].new.digest().map(|d| d.as_str()),
        Some(pushed.as_str())
    );
    pushed
}
