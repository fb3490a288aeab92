//! Approvals kept in redb survive a restart: requests, votes, states and the audit log.
#![cfg(feature = "redb")]

use std::sync::Arc;

use keel_core::approval::{
    ApprovalFilter, ApprovalState, ApprovalStore, Approvals, AuditAction, AuditQuery,
    RedbApprovalStore, VoteKind,
};
use keel_testsupport::pipeline::{digest, web_plan};

#[tokio::test]
async fn requests_votes_and_audit_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.redb");

    let (pending, approved, audit_before) = {
        let store = Arc::new(RedbApprovalStore::open(&path).unwrap());
        let approvals = Approvals::new(store.clone());
        let pending = approvals
            .request(&web_plan("web", "1.1.0"), Some(digest(1)), 2, None, None)
            .await
            .unwrap();
        approvals
            .vote(&pending.id, "alice", VoteKind::Approve, Some("ok".into()))
            .await
            .unwrap();
        let approved = approvals
            .request(&web_plan("api", "2.0.0"), Some(digest(2)), 1, None, None)
            .await
            .unwrap();
        approvals
            .vote(&approved.id, "bob", VoteKind::Approve, None)
            .await
            .unwrap();
        let pending = approvals.get(&pending.id).await.unwrap().unwrap();
        let approved = approvals.get(&approved.id).await.unwrap().unwrap();
        let audit = store.audit(&AuditQuery::default()).await.unwrap();
        assert_eq!(approvals.pending().await.unwrap(), 1);
        (pending, approved, audit)
        // Everything is dropped here: the file is closed.
    };
    assert_eq!(audit_before.len(), 5);

    let store = Arc::new(RedbApprovalStore::open(&path).unwrap());
    let approvals = Approvals::new(store.clone());
    assert_eq!(
        approvals.get(&pending.id).await.unwrap().as_ref(),
        Some(&pending)
    );
    assert_eq!(
        approvals.get(&approved.id).await.unwrap().as_ref(),
        Some(&approved)
    );
    assert_eq!(pending.votes[0].comment.as_deref(), Some("ok"));
    assert_eq!(approvals.pending().await.unwrap(), 1);
    assert_eq!(
        store
            .list(&ApprovalFilter::state(ApprovalState::Approved))
            .await
            .unwrap(),
        std::slice::from_ref(&approved)
    );
    assert_eq!(
        store.audit(&AuditQuery::default()).await.unwrap(),
        audit_before
    );

    // Voting goes on where it stopped, and the log keeps counting up.
    let done = approvals
        .vote(&pending.id, "carol", VoteKind::Approve, None)
        .await
        .unwrap();
    assert_eq!(done.state, ApprovalState::Approved);
    assert_eq!(done.info().voters, ["alice", "carol"]);
    let last_before = audit_before.last().unwrap().seq;
    let newer = store
        .audit(&AuditQuery {
            since_seq: Some(last_before),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<AuditAction> = newer.iter().map(|e| e.action).collect();
    assert_eq!(actions, [AuditAction::Voted, AuditAction::Approved]);
    assert!(newer.iter().all(|e| e.seq > last_before));
}
