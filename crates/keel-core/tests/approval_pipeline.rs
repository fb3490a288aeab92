//! The pipeline with an approvals manager: updates wait, approved ones apply, a new push of
//! the same tag needs new votes, refused ones stay refused, dry runs open nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalState, ApprovalStore, Approvals, AuditAction,
    AuditQuery, MemoryApprovalStore, VoteKind,
};
use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
use keel_core::{Error, Event, EventKind, ImageRef, Pipeline, Registry, Tag, TrackedImage};
use keel_testsupport::pipeline::{
    ManualClock, RecordingNotifier, audit_entries, memory_approvals, stored_requests,
};

const WEB: &str = "ghcr.io/acme/web";

struct Setup {
    registry: Arc<InMemoryRegistry>,
    target: Arc<InMemoryTarget>,
    store: Arc<MemoryApprovalStore>,
    approvals: Approvals,
    recorder: Arc<RecordingNotifier>,
    clock: ManualClock,
    pipeline: Pipeline,
}

fn tracked(id: &str, image: &str, approvals: u32) -> TrackedImage {
    keel_testsupport::pipeline::tracked(id, image, "minor").with_approvals(approvals)
}

fn setup() -> Setup {
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags(WEB, &["1.0.0", "1.1.0", "2.0.0"]);
    let target = Arc::new(InMemoryTarget::new("prod"));
    target.track_with(
        tracked("web", &format!("{WEB}:1.0.0"), 2)
            .with_approval_deadline(Duration::from_secs(3600))
            .with_notify(vec!["#prod".into()])
            .with_release_notes("https://example.com/web/1.1.0"),
    );
    let (store, clock, approvals) =
        memory_approvals(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
    let recorder = Arc::new(RecordingNotifier::default());
    let pipeline = Pipeline::new(registry.clone())
        .with_target(target.clone())
        .with_notifier(recorder.clone())
        .with_approvals(approvals.clone());
    Setup {
        registry,
        target,
        store,
        approvals,
        recorder,
        clock,
        pipeline,
    }
}

impl Setup {
    /// How many requests the store holds, whatever their state.
    async fn stored_requests(&self) -> usize {
        stored_requests(&self.approvals).await
    }

    /// Where the stored request `id` stands.
    async fn state(&self, id: &str) -> ApprovalState {
        self.approvals.get(id).await.unwrap().unwrap().state
    }

    /// Approves request `id` as each of `voters`.
    async fn approve(&self, id: &str, voters: &[&str]) {
        for voter in voters {
            self.approvals
                .vote(id, voter, VoteKind::Approve, None)
                .await
                .unwrap();
        }
    }

    /// Runs a pass that must roll nothing out (`why`, if it does) and leave one new pending
    /// request without votes, not `old`; returns it.
    async fn pass_waiting_anew(&self, old: &str, why: &str) -> ApprovalRequest {
        let report = self.pipeline.run_once().await;
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(report.applied.is_empty(), "{why}");
        assert_eq!(running(self), "ghcr.io/acme/web:1.0.0");
        assert_eq!(report.awaiting_approval.len(), 1);
        let request = report.approval_requests[0].clone();
        assert_ne!(request.id, old, "the update again needs a new request");
        assert_eq!(request.state, ApprovalState::Pending);
        assert_eq!(request.approvals(), 0);
        request
    }
}

fn running(s: &Setup) -> String {
    s.target.image("web").unwrap().to_string()
}

#[tokio::test]
async fn an_update_waits_for_approval_and_applies_once_approved() {
    let s = setup();
    let first = s.pipeline.run_once().await;
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(first.awaiting_approval.len(), 1);
    assert!(first.applied.is_empty());
    assert_eq!(running(&s), "ghcr.io/acme/web:1.0.0");
    assert_eq!(
        s.registry.digest_calls(),
        1,
        "one digest lookup for the new tag"
    );
    let request = first.approval_requests[0].clone();
    assert_eq!(request.state, ApprovalState::Pending);
    assert_eq!(request.required, 2);
    assert_eq!(request.plan.new.to_string(), "ghcr.io/acme/web:1.1.0");
    assert_eq!(request.deadline - request.created, TimeDelta::hours(1));
    assert_eq!(request.channels, ["#prod"]);
    let current = s
        .registry
        .resolve_digest(&ImageRef::parse(WEB).unwrap(), &Tag::new("1.1.0").unwrap())
        .await
        .unwrap();
    assert_eq!(
        request.digest,
        Some(current),
        "the request is not bound to the digest"
    );

    // The pipeline's notifier heard of the request, with the request and the channels.
    let requested: Vec<Event> = s
        .recorder
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::ApprovalRequested)
        .cloned()
        .collect();
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].approval.as_ref().unwrap().id, request.id);
    assert_eq!(requested[0].channels, ["#prod"]);
    assert_eq!(
        requested[0].release_notes.as_deref(),
        Some("https://example.com/web/1.1.0")
    );
    let planned = s.recorder.events()[0].clone();
    assert_eq!(planned.kind, EventKind::UpdatePlanned);
    assert_eq!(planned.channels, ["#prod"]);
}

#[tokio::test]
async fn approving_through_the_manager_lets_the_next_pass_apply_and_mark_it_applied() {
    let s = setup();
    let first = s.pipeline.run_once().await;
    let id = first.approval_requests[0].id.clone();

    let second = s.pipeline.run_once().await;
    assert_eq!(second.awaiting_approval.len(), 1);
    assert_eq!(
        second.approval_requests[0].id, id,
        "the same update opened a second request"
    );
    assert_eq!(s.stored_requests().await, 1);
    assert_eq!(
        s.recorder.count(EventKind::ApprovalRequested),
        1,
        "announced twice"
    );

    s.approve(&id, &["alice"]).await;
    s.approve(&id, &["bob"]).await;
    let third = s.pipeline.run_once().await;
    assert!(third.failures.is_empty(), "{:?}", third.failures);
    assert_eq!(third.applied.len(), 1);
    assert!(third.awaiting_approval.is_empty());
    let stored = s.approvals.get(&id).await.unwrap().unwrap();
    // What was approved rolls out: the tag pinned at the approved digest.
    assert_eq!(
        running(&s),
        format!("ghcr.io/acme/web:1.1.0@{}", stored.digest.clone().unwrap())
    );
    assert_eq!(stored.state, ApprovalState::Applied);
    let log = s
        .store
        .audit(&AuditQuery {
            request: Some(id.clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(log.last().unwrap().action, AuditAction::Applied);
    assert_eq!(s.approvals.pending().await.unwrap(), 0);

    // Nothing left to do.
    let fourth = s.pipeline.run_once().await;
    assert!(fourth.planned.is_empty() && fourth.applied.is_empty());
}

#[tokio::test]
async fn an_applied_request_does_not_apply_again_after_a_rollback_by_hand() {
    let s = setup();
    let id = s.pipeline.run_once().await.approval_requests[0].id.clone();
    s.approve(&id, &["alice", "bob"]).await;
    assert_eq!(s.pipeline.run_once().await.applied.len(), 1);
    assert_eq!(s.state(&id).await, ApprovalState::Applied);

    // Someone rolls the workload back by hand.
    s.target
        .track_with(tracked("web", &format!("{WEB}:1.0.0"), 2));
    let again = s
        .pass_waiting_anew(&id, "the applied request rolled the same version out again")
        .await;
    assert_eq!(
        s.state(&id).await,
        ApprovalState::Applied,
        "the applied request stays on record"
    );
    // A dry run finds the new round's request too, and opens nothing.
    let dry = s.pipeline.clone().with_dry_run(true).run_once().await;
    assert_eq!(dry.approval_requests[0].id, again.id);
    assert_eq!(s.stored_requests().await, 2);

    // Approved again, it applies once more.
    s.approve(&again.id, &["alice", "bob"]).await;
    assert_eq!(s.pipeline.run_once().await.applied.len(), 1);
    assert!(running(&s).starts_with("ghcr.io/acme/web:1.1.0"));
}

#[tokio::test]
async fn a_new_push_of_the_approved_tag_needs_new_votes() {
    let s = setup();
    let first = s.pipeline.run_once().await;
    let old = first.approval_requests[0].clone();
    s.approve(&old.id, &["alice", "bob"]).await;
    // Before the next pass, someone pushes different content under the approved tag.
    let pushed = s.registry.push(WEB, "1.1.0", None);

    let new = s
        .pass_waiting_anew(&old.id, "votes for the old digest applied the new one")
        .await;
    assert_eq!(new.digest, Some(pushed));
    assert_eq!(
        s.state(&old.id).await,
        ApprovalState::Approved,
        "the old approval stands for the old content only"
    );
}

#[tokio::test]
async fn a_new_push_of_a_pending_tag_supersedes_the_old_request() {
    let s = setup();
    let old = s.pipeline.run_once().await.approval_requests[0].clone();
    s.approve(&old.id, &["alice"]).await;
    s.registry.push(WEB, "1.1.0", None);
    let second = s.pipeline.run_once().await;
    let new = second.approval_requests[0].clone();
    assert_ne!(new.id, old.id);
    assert_eq!(s.state(&old.id).await, ApprovalState::Superseded);
    assert_eq!(s.approvals.pending().await.unwrap(), 1);
}

#[tokio::test]
async fn rejected_and_expired_updates_are_refused_not_applied() {
    let s = setup();
    let first = s.pipeline.run_once().await;
    let id = first.approval_requests[0].id.clone();
    s.approvals
        .vote(
            &id,
            "alice",
            VoteKind::Reject,
            Some("not on a Friday".into()),
        )
        .await
        .unwrap();
    let second = s.pipeline.run_once().await;
    assert!(second.applied.is_empty());
    assert!(second.awaiting_approval.is_empty());
    assert_eq!(second.refused.len(), 1);
    assert_eq!(second.refused[0].state, ApprovalState::Rejected);
    assert_eq!(second.refused[0].request, id);
    assert_eq!(running(&s), "ghcr.io/acme/web:1.0.0");

    // Another image whose request runs out of time.
    s.target.track_with(
        tracked("api", &format!("{WEB}:1.0.0"), 1).with_approval_deadline(Duration::from_secs(60)),
    );
    let third = s.pipeline.run_once().await;
    assert_eq!(third.awaiting_approval.len(), 1);
    s.clock.advance(TimeDelta::minutes(2));
    let fourth = s.pipeline.run_once().await;
    assert_eq!(
        fourth.expired.len(),
        1,
        "the pass did not expire the overdue request"
    );
    assert_eq!(fourth.expired[0].plan.id, "api");
    let states: Vec<(String, ApprovalState)> = fourth
        .refused
        .iter()
        .map(|r| (r.plan.id.clone(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("api".to_owned(), ApprovalState::Expired),
            ("web".to_owned(), ApprovalState::Rejected)
        ]
    );
    assert_eq!(s.recorder.count(EventKind::Expired), 1);
    assert!(s.target.applied().is_empty());
}

#[tokio::test]
async fn dry_runs_never_open_approval_requests() {
    let s = setup();
    let dry = s.pipeline.clone().with_dry_run(true);
    let report = dry.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.awaiting_approval.len(), 1);
    assert_eq!(s.stored_requests().await, 0);
    assert!(audit_entries(&s.approvals).await.is_empty());
    assert_eq!(s.recorder.count(EventKind::ApprovalRequested), 0);

    // Once approved for real, a dry run previews it without applying or marking it.
    let id = s.pipeline.run_once().await.approval_requests[0].id.clone();
    s.approve(&id, &["alice", "bob"]).await;
    let preview = dry.run_once().await;
    assert!(
        preview.previews["prod"].contains("1.1.0"),
        "{:?}",
        preview.previews
    );
    assert!(preview.applied.is_empty());
    assert_eq!(running(&s), "ghcr.io/acme/web:1.0.0");
    assert_eq!(s.state(&id).await, ApprovalState::Approved);
}

#[tokio::test]
async fn many_images_on_one_tag_cost_one_digest_lookup() {
    let s = setup();
    for i in 0..5 {
        s.target
            .track_with(tracked(&format!("web-{i}"), &format!("{WEB}:1.0.0"), 1));
    }
    let report = s.pipeline.run_once().await;
    assert_eq!(report.awaiting_approval.len(), 6);
    assert_eq!(s.registry.list_calls(), 1);
    assert_eq!(s.registry.digest_calls(), 1);
    let digests: std::collections::BTreeSet<_> = report
        .approval_requests
        .iter()
        .map(|r| r.digest.clone().unwrap())
        .collect();
    assert_eq!(digests.len(), 1);
    assert_eq!(s.approvals.pending().await.unwrap(), 6);
}

#[tokio::test]
async fn updates_without_approvals_open_no_request_resolve_no_digest_and_are_audited() {
    let s = setup();
    s.target.track_with(tracked("free", "redis:7.0.1", 0));
    s.registry.push_tags("redis", &["7.0.1", "7.2.0"]);
    let report = s.pipeline.run_once().await;
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.applied[0].id, "free");
    assert_eq!(
        s.registry.digest_calls(),
        1,
        "only the approval-bound update resolved a digest"
    );
    assert_eq!(s.stored_requests().await, 1);
    // The audit log holds every update, not only the approved ones.
    let applied: Vec<_> = audit_entries(&s.approvals)
        .await
        .into_iter()
        .filter(|e| e.action == AuditAction::Applied)
        .map(|e| (e.image_id, e.image, e.request, e.actor))
        .collect();
    assert_eq!(
        applied,
        [(
            "free".to_owned(),
            "docker.io/library/redis:7.2.0".to_owned(),
            None,
            None
        )]
    );
}

#[tokio::test]
async fn run_filtered_lists_and_decides_only_the_chosen_images() {
    let s = setup();
    s.registry.push_tags("redis", &["7.0.1", "7.2.0"]);
    s.target.track_with(tracked("cache-a", "redis:7.0.1", 0));
    s.target.track_with(tracked("cache-b", "redis:7.0.1", 0));
    let report = s
        .pipeline
        .run_filtered(&|image: &TrackedImage| image.image.repository() == "library/redis")
        .await;
    assert_eq!(report.tracked, 2);
    assert_eq!(report.listings, 1);
    assert_eq!(s.registry.list_calls(), 1);
    assert_eq!(report.applied.len(), 2);
    assert!(
        report.awaiting_approval.is_empty(),
        "web was decided though filtered out"
    );
    assert_eq!(running(&s), "ghcr.io/acme/web:1.0.0");
    assert_eq!(s.stored_requests().await, 0);

    let all = s.pipeline.run_once().await;
    assert_eq!(all.tracked, 3);
    assert_eq!(all.awaiting_approval.len(), 1);
}

#[tokio::test]
async fn without_a_manager_updates_that_need_approvals_only_wait() {
    let s = setup();
    let plain = Pipeline::new(s.registry.clone())
        .with_target(s.target.clone())
        .with_notifier(s.recorder.clone());
    for _ in 0..2 {
        let report = plain.run_once().await;
        assert_eq!(report.awaiting_approval.len(), 1);
        assert!(report.approval_requests.is_empty());
    }
    assert_eq!(s.recorder.count(EventKind::ApprovalRequested), 2);
    assert_eq!(s.registry.digest_calls(), 0);
}

#[tokio::test]
async fn a_store_failure_is_reported_for_the_image_and_nothing_applies() {
    #[derive(Debug)]
    struct Broken;
    #[async_trait]
    impl ApprovalStore for Broken {
        fn name(&self) -> &str {
            "broken store"
        }
        async fn get(
            &self,
            _: &str,
        ) -> Result<Option<keel_core::approval::ApprovalRequest>, Error> {
            Err(down())
        }
        async fn list(
            &self,
            _: &ApprovalFilter,
        ) -> Result<Vec<keel_core::approval::ApprovalRequest>, Error> {
            Err(down())
        }
        async fn update(
            &self,
            _: &str,
            _: &mut (
                     dyn FnMut(
                Option<keel_core::approval::ApprovalRequest>,
            )
                -> Result<Option<keel_core::approval::ApprovalRequest>, Error>
                         + Send
                 ),
        ) -> Result<Option<keel_core::approval::ApprovalRequest>, Error> {
            Err(down())
        }
        async fn append_audit(&self, _: keel_core::approval::AuditEntry) -> Result<u64, Error> {
            Err(down())
        }
        async fn audit(
            &self,
            _: &AuditQuery,
        ) -> Result<Vec<keel_core::approval::AuditEntry>, Error> {
            Err(down())
        }
    }
    fn down() -> Error {
        Error::Backend {
            backend: "broken store".into(),
            action: "anything".into(),
            message: "down".into(),
            retryable: true,
            source: None,
        }
    }
    let s = setup();
    let pipeline = Pipeline::new(s.registry.clone())
        .with_target(s.target.clone())
        .with_approvals(Approvals::new(Arc::new(Broken)));
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty());
    assert!(report.awaiting_approval.is_empty());
    // One failure for expiring, one for the image.
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    assert_eq!(report.failures[1].id.as_deref(), Some("web"));
    assert_eq!(running(&s), "ghcr.io/acme/web:1.0.0");
}

#[test]
fn run_filtered_is_send() {
    fn send<T: Send>(_: T) {}
    let s = setup();
    send(s.pipeline.run_filtered(&|_| true));
    send(s.pipeline.run_once());
}
