//! The approval rules of the manager: digest binding, one vote per voter, veto, deadlines,
//! supersession, idempotent requests, the audit log and the pending count.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use keel_core::approval::{
    ApprovalRequest, ApprovalState, ApprovalStore, Approvals, AuditAction, AuditEntry, AuditQuery,
    MemoryApprovalStore, VoteKind,
};
use keel_core::{Error, EventKind};
use keel_testsupport::pipeline::{
    ManualClock, RecordingNotifier, digest, memory_approvals, stored_requests, tracked, web_plan,
};

/// The kind and request id of every event `recorder` heard, in order.
fn kinds(recorder: &RecordingNotifier) -> Vec<(EventKind, String)> {
    recorder
        .events()
        .iter()
        .map(|e| {
            (
                e.kind,
                e.approval
                    .as_ref()
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

struct Fixture {
    approvals: Approvals,
    store: Arc<MemoryApprovalStore>,
    clock: ManualClock,
    recorder: Arc<RecordingNotifier>,
}

fn fixture() -> Fixture {
    let (store, clock, approvals) =
        memory_approvals(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
    let recorder = Arc::new(RecordingNotifier::default());
    let approvals = approvals.with_notifier(recorder.clone());
    Fixture {
        approvals,
        store,
        clock,
        recorder,
    }
}

impl Fixture {
    /// A request for `image` at `tag` (of `digest(n)`) needing `required` votes.
    async fn request(&self, image: &str, tag: &str, n: u64, required: u32) -> ApprovalRequest {
        self.approvals
            .request(&web_plan(image, tag), Some(digest(n)), required, None, None)
            .await
            .unwrap()
    }

    /// Like [`Fixture::request`], due `secs` seconds after it is made.
    async fn request_due_in(
        &self,
        image: &str,
        tag: &str,
        required: u32,
        secs: u64,
    ) -> ApprovalRequest {
        let deadline = Some(Duration::from_secs(secs));
        self.approvals
            .request(
                &web_plan(image, tag),
                Some(digest(1)),
                required,
                deadline,
                None,
            )
            .await
            .unwrap()
    }

    /// A counted vote of `voter` without a comment.
    async fn vote(&self, id: &str, voter: &str, kind: VoteKind) -> ApprovalRequest {
        self.approvals.vote(id, voter, kind, None).await.unwrap()
    }

    /// The error a refused vote of `voter` without a comment gets.
    async fn refused_vote(&self, id: &str, voter: &str, kind: VoteKind) -> Error {
        self.approvals
            .vote(id, voter, kind, None)
            .await
            .unwrap_err()
    }

    /// Where the stored request `id` stands.
    async fn state(&self, id: &str) -> ApprovalState {
        self.approvals.get(id).await.unwrap().unwrap().state
    }

    /// The audit log of request `id`.
    async fn log(&self, id: &str) -> Vec<AuditEntry> {
        self.store
            .audit(&AuditQuery {
                request: Some(id.to_owned()),
                ..AuditQuery::default()
            })
            .await
            .unwrap()
    }
}

async fn actions(store: &dyn ApprovalStore, request: &str) -> Vec<AuditAction> {
    store
        .audit(&AuditQuery {
            request: Some(request.into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn a_new_digest_of_the_same_tag_is_a_new_request_and_old_votes_do_not_count() {
    let f = fixture();
    let old = f.request("web", "1.1.0", 1, 2).await;
    f.vote(&old.id, "alice", VoteKind::Approve).await;

    let new = f.request("web", "1.1.0", 2, 2).await;
    assert_ne!(new.id, old.id, "a re-pushed tag must be a new request");
    assert_eq!(new.digest, Some(digest(2)));
    assert_eq!(new.state, ApprovalState::Pending);
    assert_eq!(new.approvals(), 0, "votes for the old digest counted");

    let old_now = f.approvals.get(&old.id).await.unwrap().unwrap();
    assert_eq!(old_now.state, ApprovalState::Superseded);
    assert_eq!(
        actions(&*f.store, &old.id).await,
        [
            AuditAction::Requested,
            AuditAction::Voted,
            AuditAction::Superseded
        ]
    );
    let late = f.refused_vote(&old.id, "bob", VoteKind::Approve).await;
    assert!(matches!(late, Error::Conflict { .. }), "{late:?}");
    assert!(late.to_string().contains("superseded"), "{late}");
    assert_eq!(f.approvals.pending().await.unwrap(), 1);
}

#[tokio::test]
async fn a_newer_version_supersedes_only_pending_requests_of_the_same_image() {
    let f = fixture();
    let v11 = f.request("web", "1.1.0", 1, 1).await;
    let other = f.request("worker", "1.1.0", 1, 1).await;
    let approved = f.request("api", "1.1.0", 1, 1).await;
    f.vote(&approved.id, "alice", VoteKind::Approve).await;

    f.request("web", "1.2.0", 3, 1).await;
    f.request("api", "1.2.0", 3, 1).await;
    let cases = [
        (
            "web 1.1.0, pending, superseded by 1.2.0",
            &v11,
            ApprovalState::Superseded,
        ),
        ("another image was touched", &other, ApprovalState::Pending),
        (
            "an approved request must not be superseded",
            &approved,
            ApprovalState::Approved,
        ),
    ];
    for (name, request, expected) in cases {
        assert_eq!(f.state(&request.id).await, expected, "{name}");
    }
}

#[tokio::test]
async fn one_vote_per_voter_and_the_required_count_approves() {
    let f = fixture();
    let r = f.request("web", "1.1.0", 1, 2).await;
    let once = f
        .approvals
        .vote(&r.id, "alice", VoteKind::Approve, Some("lgtm".into()))
        .await
        .unwrap();
    let twice = f.vote(&r.id, "alice", VoteKind::Approve).await;
    assert_eq!(once.approvals(), 1);
    assert_eq!(
        twice.approvals(),
        1,
        "a second approve of one voter counted"
    );
    assert_eq!(twice.state, ApprovalState::Pending);
    assert_eq!(twice.votes.len(), 1);
    assert_eq!(twice.votes[0].comment.as_deref(), Some("lgtm"));
    assert!(
        !kinds(&f.recorder)
            .iter()
            .any(|(k, _)| *k == EventKind::Approved)
    );

    let done = f.vote(&r.id, "bob", VoteKind::Approve).await;
    assert_eq!(done.state, ApprovalState::Approved);
    assert_eq!(done.info().voters, ["alice", "bob"]);
    assert_eq!(
        kinds(&f.recorder),
        [
            (EventKind::ApprovalRequested, r.id.clone()),
            (EventKind::Approved, r.id.clone())
        ]
    );
    let event = f.recorder.events()[1].clone();
    let info = event.approval.unwrap();
    assert_eq!((info.approvals, info.required), (2, 2));

    let after = f.refused_vote(&r.id, "carol", VoteKind::Approve).await;
    assert!(after.to_string().contains("approved"), "{after}");

    let log = f.log(&r.id).await;
    let actions: Vec<AuditAction> = log.iter().map(|e| e.action).collect();
    use AuditAction as A;
    assert_eq!(
        actions,
        [A::Requested, A::Voted, A::Voted, A::Voted, A::Approved]
    );
    assert!(
        log[2].message.contains("not counted twice"),
        "{}",
        log[2].message
    );
    assert_eq!(log[1].actor.as_deref(), Some("alice"));
    assert!(log[1].message.contains("lgtm"), "{}", log[1].message);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn a_reject_vetoes_even_after_approvals_and_a_voter_may_change_to_reject() {
    let f = fixture();
    let r = f.request("web", "1.1.0", 1, 3).await;
    f.vote(&r.id, "alice", VoteKind::Approve).await;
    f.vote(&r.id, "bob", VoteKind::Approve).await;
    let vetoed = f
        .approvals
        .vote(
            &r.id,
            "alice",
            VoteKind::Reject,
            Some("breaks the API".into()),
        )
        .await
        .unwrap();
    assert_eq!(vetoed.state, ApprovalState::Rejected);
    assert_eq!(
        vetoed.approvals(),
        1,
        "alice's approve was replaced by her reject"
    );
    assert!(vetoed.rejected());
    assert!(kinds(&f.recorder).contains(&(EventKind::Rejected, r.id.clone())));
    let e = f.refused_vote(&r.id, "carol", VoteKind::Approve).await;
    assert!(
        matches!(e, Error::Conflict { .. }) && e.to_string().contains("rejected"),
        "{e}"
    );
    assert_eq!(
        actions(&*f.store, &r.id).await.last(),
        Some(&AuditAction::Rejected)
    );
    // Asking again for the same update and digest does not reopen a vetoed request.
    let again = f.request("web", "1.1.0", 1, 3).await;
    assert_eq!((again.id, again.state), (r.id, ApprovalState::Rejected));
}

#[tokio::test]
async fn a_vote_after_the_deadline_expires_the_request() {
    let f = fixture();
    let r = f.request_due_in("web", "1.1.0", 1, 3600).await;
    assert_eq!(r.deadline - r.created, TimeDelta::hours(1));
    f.clock.advance(TimeDelta::minutes(61));
    assert_eq!(
        f.approvals.pending().await.unwrap(),
        0,
        "an overdue request counted"
    );
    let e = f.refused_vote(&r.id, "alice", VoteKind::Approve).await;
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert!(e.to_string().contains("expired"), "{e}");
    let stored = f.approvals.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.state, ApprovalState::Expired);
    assert!(stored.votes.is_empty(), "a late vote was recorded");
    assert_eq!(
        actions(&*f.store, &r.id).await,
        [AuditAction::Requested, AuditAction::Expired]
    );
    assert!(kinds(&f.recorder).contains(&(EventKind::Expired, r.id.clone())));
    assert!(f.approvals.expire_due().await.unwrap().is_empty());
}

#[tokio::test]
async fn expire_due_expires_overdue_requests_once() {
    let f = fixture().approvals_with_deadline(Duration::from_secs(600));
    let soon = f.request("web", "1.1.0", 1, 1).await;
    let later = f.request_due_in("api", "1.1.0", 1, 7200).await;
    assert_eq!(soon.deadline - soon.created, TimeDelta::minutes(10));
    assert_eq!(f.approvals.pending().await.unwrap(), 2);
    assert!(f.approvals.expire_due().await.unwrap().is_empty());

    f.clock.advance(TimeDelta::minutes(30));
    let expired = f.approvals.expire_due().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, soon.id);
    assert_eq!(expired[0].state, ApprovalState::Expired);
    assert!(
        f.approvals.expire_due().await.unwrap().is_empty(),
        "expired twice"
    );
    assert_eq!(f.approvals.pending().await.unwrap(), 1);
    let expired_events = kinds(&f.recorder)
        .into_iter()
        .filter(|(k, _)| *k == EventKind::Expired)
        .count();
    assert_eq!(expired_events, 1);
    assert_eq!(f.state(&later.id).await, ApprovalState::Pending);
}

impl Fixture {
    fn approvals_with_deadline(self, deadline: Duration) -> Self {
        Fixture {
            approvals: self.approvals.with_default_deadline(deadline),
            ..self
        }
    }
}

#[tokio::test]
async fn requesting_twice_is_one_request_one_audit_entry_one_notification() {
    let f = fixture();
    let first = f
        .approvals
        .request(
            &web_plan("web", "1.1.0"),
            Some(digest(1)),
            2,
            None,
            Some("https://notes".into()),
        )
        .await
        .unwrap();
    f.clock.advance(TimeDelta::minutes(5));
    let second = f.request("web", "1.1.0", 1, 2).await;
    assert_eq!(first, second, "the second request changed the first");
    assert_eq!(second.release_notes.as_deref(), Some("https://notes"));
    assert_eq!(stored_requests(&f.approvals).await, 1);
    assert_eq!(
        actions(&*f.store, &first.id).await,
        [AuditAction::Requested]
    );
    assert_eq!(
        kinds(&f.recorder),
        [(EventKind::ApprovalRequested, first.id.clone())]
    );
    let event = f.recorder.events()[0].clone();
    assert_eq!(event.release_notes.as_deref(), Some("https://notes"));
    assert_eq!(event.approval.unwrap().required, 2);
}

#[tokio::test]
async fn request_for_a_tracked_image_carries_its_settings_and_channels() {
    let f = fixture();
    let image = tracked("web", "ghcr.io/acme/web:1.0.0", "minor")
        .with_approvals(3)
        .with_approval_deadline(Duration::from_secs(90))
        .with_release_notes("https://example.com/notes")
        .with_notify(vec!["#prod-deploys".into()]);
    let r = f
        .approvals
        .request_for(&image, &web_plan("web", "1.1.0"), Some(digest(7)))
        .await
        .unwrap();
    assert_eq!(r.required, 3);
    assert_eq!(r.deadline - r.created, TimeDelta::seconds(90));
    assert_eq!(r.channels, ["#prod-deploys"]);
    f.vote(&r.id, "alice", VoteKind::Reject).await;
    let events = f.recorder.events();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.channels, ["#prod-deploys"], "{:?}", e.kind);
        assert_eq!(
            e.release_notes.as_deref(),
            Some("https://example.com/notes")
        );
    }
    assert_eq!(events[1].approval.as_ref().unwrap().voters, ["alice"]);
}

#[tokio::test]
async fn untrusted_input_is_refused_with_clear_errors() {
    let f = fixture();
    let r = f.request("web", "1.1.0", 1, 1).await;
    let cases = [
        ("../etc", "alice", None, "approval request id"),
        (r.id.as_str(), "", None, "voter"),
        (r.id.as_str(), "ali\u{1b}[31mce", None, "control characters"),
        (r.id.as_str(), "alice", Some("\u{0}"), "vote comment"),
    ];
    for (id, voter, comment, says) in cases {
        let e = f
            .approvals
            .vote(id, voter, VoteKind::Approve, comment.map(str::to_owned))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{id} {voter}: {e:?}");
        assert!(e.to_string().contains(says), "{e}");
    }
    let long = "x".repeat(2000);
    let e = f
        .approvals
        .vote(&r.id, "alice", VoteKind::Approve, Some(long))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("longer than 1024"), "{e}");
    let unknown = f
        .approvals
        .vote("0000000000000000", "alice", VoteKind::Approve, None)
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::NotFound { .. }), "{unknown:?}");
    assert!(
        unknown.to_string().contains("0000000000000000"),
        "{unknown}"
    );
    let zero = f
        .approvals
        .request(&web_plan("web", "1.2.0"), None, 0, None, None)
        .await
        .unwrap_err();
    assert!(matches!(zero, Error::InvalidInput(_)), "{zero:?}");
    assert_eq!(
        f.approvals.get(&r.id).await.unwrap().unwrap().votes,
        [],
        "a refused vote was recorded"
    );
}

#[tokio::test]
async fn delete_removes_audits_and_lets_the_update_be_asked_again() {
    let f = fixture();
    let p = web_plan("web", "1.1.0");
    let r = f
        .approvals
        .request(&p, Some(digest(1)), 1, None, None)
        .await
        .unwrap();
    f.vote(&r.id, "alice", VoteKind::Reject).await;
    let deleted = f.approvals.delete(&r.id, "admin").await.unwrap();
    assert_eq!(deleted.state, ApprovalState::Rejected);
    assert_eq!(f.approvals.get(&r.id).await.unwrap(), None);
    let log = f.log(&r.id).await;
    let last = log.last().unwrap();
    assert_eq!(last.action, AuditAction::Deleted);
    assert_eq!(last.actor.as_deref(), Some("admin"));
    assert!(matches!(
        f.approvals.delete(&r.id, "admin").await,
        Err(Error::NotFound { .. })
    ));
    let again = f
        .approvals
        .request(&p, Some(digest(1)), 1, None, None)
        .await
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.state),
        (r.id.as_str(), ApprovalState::Pending)
    );
    assert!(again.votes.is_empty());
}

#[tokio::test]
async fn applied_and_failed_updates_are_recorded() {
    let f = fixture();
    let r = f.request("web", "1.1.0", 1, 1).await;
    let early = f.approvals.mark_applied(&r.id).await.unwrap_err();
    assert!(early.to_string().contains("pending"), "{early}");
    f.vote(&r.id, "alice", VoteKind::Approve).await;
    f.approvals
        .mark_apply_failed(&r.id, "conflict: web runs 1.0.1 now")
        .await
        .unwrap();
    assert_eq!(
        f.state(&r.id).await,
        ApprovalState::Approved,
        "a failed apply must leave the request approved for the next pass"
    );
    f.approvals.mark_applied(&r.id).await.unwrap();
    assert_eq!(f.state(&r.id).await, ApprovalState::Applied);
    let log = f
        .approvals
        .audit_log(&AuditQuery {
            request: Some(r.id.clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<AuditAction> = log.iter().map(|e| e.action).collect();
    use AuditAction as A;
    assert_eq!(
        actions,
        [
            A::Requested,
            A::Voted,
            A::Approved,
            A::ApplyFailed,
            A::Applied
        ]
    );
    assert!(
        log[3].message.contains("web runs 1.0.1 now"),
        "{}",
        log[3].message
    );
    assert_eq!(log[4].image, "ghcr.io/acme/web:1.1.0");
}

#[tokio::test]
async fn pending_counts_what_waits_for_votes() {
    let f = fixture();
    assert_eq!(f.approvals.pending().await.unwrap(), 0);
    let mut ids = Vec::new();
    for image in ["a", "b", "c"] {
        let r = f
            .approvals
            .request(&web_plan(image, "1.1.0"), Some(digest(1)), 1, None, None)
            .await
            .unwrap();
        ids.push(r.id);
    }
    assert_eq!(f.approvals.pending().await.unwrap(), 3);
    f.vote(&ids[0], "alice", VoteKind::Approve).await;
    f.vote(&ids[1], "alice", VoteKind::Reject).await;
    assert_eq!(f.approvals.pending().await.unwrap(), 1);
}

#[test]
fn manager_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let f = fixture();
    send(
        f.approvals
            .request(&web_plan("web", "1.1.0"), None, 1, None, None),
    );
    send(f.approvals.vote("x", "y", VoteKind::Approve, None));
    send(f.approvals.expire_due());
}
