//! The conformance of an [`ApprovalStore`] implementation.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalState, ApprovalStore, AuditAction, AuditEntry,
    AuditQuery, Vote, VoteKind,
};
use crate::error::Error;
use crate::reference::ImageRef;
use crate::target::UpdatePlan;

/// Runs every check of the [`ApprovalStore`](crate::approval::ApprovalStore) contract on an
/// empty store: get/update/delete round trips, `list` filters and order, atomic
/// read-modify-write under concurrent updates from several tokio tasks, errors from the
/// update closure storing nothing, and the audit log's sequence numbers and queries.
///
/// Must run inside a tokio runtime (it spawns tasks); a multi-threaded one also exercises
/// parallel updates.
///
/// ```
/// use std::sync::Arc;
/// use keel_core::approval::MemoryApprovalStore;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// keel_core::testkit::approval_store_conformance(Arc::new(MemoryApprovalStore::new())).await;
/// # });
/// ```
pub async fn approval_store_conformance(store: Arc<dyn ApprovalStore>) {
    let name = store.name().to_owned();
    assert!(
        !name.is_empty(),
        "an approval store needs a name for messages"
    );
    approval_store_round_trips(&*store).await;
    approval_store_lists_by_filter(&*store).await;
    approval_store_update_errors_store_nothing(&*store).await;
    approval_store_updates_atomically(store.clone()).await;
    approval_store_audit_log(store).await;
}

fn conformance_request(
    key: &str,
    target: &str,
    image_id: &str,
    state: ApprovalState,
    created_offset: i64,
) -> ApprovalRequest {
    let base = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.123456789Z")
        .expect("valid time")
        .with_timezone(&chrono::Utc);
    let created = base + chrono::TimeDelta::seconds(created_offset);
    ApprovalRequest {
        id: key.to_owned(),
        plan: UpdatePlan {
            target: target.to_owned(),
            id: image_id.to_owned(),
            current: ImageRef::parse("ghcr.io/keel/conformance:1.0.0").expect("valid image"),
            new: ImageRef::parse("ghcr.io/keel/conformance:1.1.0").expect("valid image"),
        },
        digest: Some(
            format!("sha256:{:064x}", created_offset.unsigned_abs())
                .parse()
                .expect("valid digest"),
        ),
        required: 2,
        votes: Vec::new(),
        state,
        created,
        updated: created,
        deadline: created + chrono::TimeDelta::hours(24),
        release_notes: None,
        channels: Vec::new(),
    }
}

async fn put(store: &dyn ApprovalStore, request: &ApprovalRequest) {
    let value = request.clone();
    let stored = store
        .update(&request.id, &mut |_| Ok(Some(value.clone())))
        .await
        .unwrap_or_else(|e| panic!("{}: storing {} failed: {e}", store.name(), request.id));
    assert_eq!(
        stored.as_ref(),
        Some(request),
        "{}: update did not return what it stored",
        store.name()
    );
}

async fn get_request(store: &dyn ApprovalStore, id: &str) -> Option<ApprovalRequest> {
    store
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("{}: get {id} failed: {e}", store.name()))
}

/// Stored requests come back field for field; deleting by returning `None` removes them.
pub async fn approval_store_round_trips(store: &dyn ApprovalStore) {
    let name = store.name();
    assert_eq!(get_request(store, "conformance-missing").await, None);
    let absent = store
        .update("conformance-missing", &mut |r| {
            assert!(r.is_none(), "an absent request was passed as present");
            Ok(None)
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: a no-op update failed: {e}"));
    assert_eq!(absent, None, "{name}: a no-op update stored something");
    assert_eq!(get_request(store, "conformance-missing").await, None);

    let mut full = conformance_request("conformance-rt", "t-rt", "img", ApprovalState::Pending, 0);
    full.votes = vec![
        Vote {
            voter: "Ann Example <ann@example.com>".into(),
            kind: VoteKind::Approve,
            at: full.created,
            comment: Some("looks good\nship it".into()),
        },
        Vote {
            voter: "bob".into(),
            kind: VoteKind::Reject,
            at: full.created + chrono::TimeDelta::nanoseconds(1),
            comment: None,
        },
    ];
    full.release_notes = Some("https://example.com/notes?v=1.1.0".into());
    full.channels = vec!["#deploys".into(), "ops".into()];
    put(store, &full).await;
    assert_eq!(
        get_request(store, &full.id).await.as_ref(),
        Some(&full),
        "{name}: a request did not round-trip"
    );

    let mut bare =
        conformance_request("conformance-rt2", "t-rt", "img2", ApprovalState::Applied, 1);
    bare.digest = None;
    put(store, &bare).await;
    assert_eq!(get_request(store, &bare.id).await.as_ref(), Some(&bare));

    let mut seen = None;
    let deleted = store
        .update(&full.id, &mut |r| {
            seen = r;
            Ok(None)
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: deleting failed: {e}"));
    assert_eq!(deleted, None, "{name}: deleting returned a request");
    assert_eq!(
        seen.as_ref(),
        Some(&full),
        "{name}: update saw the wrong request"
    );
    assert_eq!(
        get_request(store, &full.id).await,
        None,
        "{name}: not deleted"
    );
    assert_eq!(
        get_request(store, &bare.id).await.as_ref(),
        Some(&bare),
        "{name}: deleting one request touched another"
    );
    store
        .update(&bare.id, &mut |_| Ok(None))
        .await
        .unwrap_or_else(|e| panic!("{name}: deleting failed: {e}"));
}

/// `list` filters by state, target and tracked image id, alone and combined, and orders by
/// creation time then id.
pub async fn approval_store_lists_by_filter(store: &dyn ApprovalStore) {
    let name = store.name();
    // Stored out of order on purpose; "b" and "a" share a creation time.
    let c = conformance_request(
        "conformance-c",
        "t-list-2",
        "web",
        ApprovalState::Pending,
        20,
    );
    let b = conformance_request(
        "conformance-b",
        "t-list-1",
        "web",
        ApprovalState::Pending,
        10,
    );
    let a = conformance_request(
        "conformance-a",
        "t-list-1",
        "db",
        ApprovalState::Approved,
        10,
    );
    let d = conformance_request(
        "conformance-d",
        "t-list-1",
        "web",
        ApprovalState::Expired,
        5,
    );
    for r in [&c, &b, &a, &d] {
        put(store, r).await;
    }
    let ids =
        |found: Vec<ApprovalRequest>| -> Vec<String> { found.into_iter().map(|r| r.id).collect() };
    let list = |filter: ApprovalFilter| async move {
        store
            .list(&filter)
            .await
            .unwrap_or_else(|e| panic!("{name}: list {filter:?} failed: {e}"))
    };
    assert_eq!(
        ids(list(ApprovalFilter::default()).await),
        [
            "conformance-d",
            "conformance-a",
            "conformance-b",
            "conformance-c"
        ],
        "{name}: list all: wrong requests or order"
    );
    assert_eq!(
        ids(list(ApprovalFilter::state(ApprovalState::Pending)).await),
        ["conformance-b", "conformance-c"],
        "{name}: list by state"
    );
    let by_target = ApprovalFilter {
        target: Some("t-list-1".into()),
        ..ApprovalFilter::default()
    };
    assert_eq!(
        ids(list(by_target.clone()).await),
        ["conformance-d", "conformance-a", "conformance-b"],
        "{name}: list by target"
    );
    let by_image = ApprovalFilter {
        id: Some("web".into()),
        ..ApprovalFilter::default()
    };
    assert_eq!(
        ids(list(by_image).await),
        ["conformance-d", "conformance-b", "conformance-c"],
        "{name}: list by tracked image id"
    );
    let all_three = ApprovalFilter {
        state: Some(ApprovalState::Pending),
        target: Some("t-list-1".into()),
        id: Some("web".into()),
    };
    assert_eq!(
        ids(list(all_three).await),
        ["conformance-b"],
        "{name}: list by state, target and image"
    );
    let none = ApprovalFilter {
        target: Some("t-list-none".into()),
        ..ApprovalFilter::default()
    };
    assert!(list(none).await.is_empty(), "{name}: list of no target");
    for r in [&a, &b, &c, &d] {
        store
            .update(&r.id, &mut |_| Ok(None))
            .await
            .unwrap_or_else(|e| panic!("{name}: deleting failed: {e}"));
    }
    assert!(
        list(ApprovalFilter::default()).await.is_empty(),
        "{name}: deleted requests are still listed"
    );
}

/// An error from the update closure is returned as is and stores nothing.
pub async fn approval_store_update_errors_store_nothing(store: &dyn ApprovalStore) {
    let name = store.name();
    let r = conformance_request("conformance-err", "t-err", "img", ApprovalState::Pending, 0);
    put(store, &r).await;
    let result = store
        .update(&r.id, &mut |current| {
            assert!(current.is_some(), "the stored request is passed in");
            Err(Error::Conflict {
                action: "conformance".into(),
                reason: "refused on purpose".into(),
            })
        })
        .await;
    match result {
        Err(Error::Conflict { reason, .. }) if reason == "refused on purpose" => {}
        other => panic!("{name}: a failing update gave {other:?}, expected its Conflict"),
    }
    assert_eq!(
        get_request(store, &r.id).await.as_ref(),
        Some(&r),
        "{name}: a failing update changed the request"
    );
    let result = store
        .update("conformance-err-absent", &mut |_| {
            Err(Error::not_found("conformance request"))
        })
        .await;
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "{name}: a failing update gave {result:?}"
    );
    assert_eq!(get_request(store, "conformance-err-absent").await, None);
    store
        .update(&r.id, &mut |_| Ok(None))
        .await
        .unwrap_or_else(|e| panic!("{name}: deleting failed: {e}"));
}

/// Concurrent read-modify-writes of one request from several tasks never lose a write.
pub async fn approval_store_updates_atomically(store: Arc<dyn ApprovalStore>) {
    const TASKS: usize = 8;
    const EACH: usize = 10;
    let name = store.name().to_owned();
    let r = conformance_request(
        "conformance-race",
        "t-race",
        "img",
        ApprovalState::Pending,
        0,
    );
    put(&*store, &r).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            let at = r.created;
            tokio::spawn(async move {
                for i in 0..EACH {
                    let voter = format!("voter-{t}-{i}");
                    store
                        .update("conformance-race", &mut |current| {
                            let mut current = current.expect("the request exists");
                            current.votes.push(Vote {
                                voter: voter.clone(),
                                kind: VoteKind::Approve,
                                at,
                                comment: None,
                            });
                            Ok(Some(current))
                        })
                        .await
                        .expect("concurrent update");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("{name}: an updating task failed: {e}"));
    }
    let stored = get_request(&*store, &r.id).await.expect("still stored");
    let voters: BTreeSet<&str> = stored.votes.iter().map(|v| v.voter.as_str()).collect();
    assert_eq!(
        (stored.votes.len(), voters.len()),
        (TASKS * EACH, TASKS * EACH),
        "{name}: concurrent updates lost or repeated writes"
    );
    store
        .update(&r.id, &mut |_| Ok(None))
        .await
        .unwrap_or_else(|e| panic!("{name}: deleting failed: {e}"));
}

/// The audit log numbers entries in increasing order (ignoring the given `seq`), keeps
/// them field for field, and filters by request, target and `since_seq` with a `limit`.
pub async fn approval_store_audit_log(store: Arc<dyn ApprovalStore>) {
    let name = store.name().to_owned();
    let time = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.5Z")
        .expect("valid time")
        .with_timezone(&chrono::Utc);
    let entry = |request: Option<&str>, target: &str, action: AuditAction, n: usize| AuditEntry {
        seq: 999_999,
        time,
        action,
        request: request.map(str::to_owned),
        actor: n.is_multiple_of(2).then(|| format!("voter-{n}")),
        target: target.to_owned(),
        image_id: "deployment/default/web/app".into(),
        image: "ghcr.io/keel/conformance:1.1.0".into(),
        message: format!("entry {n}: ünïcode ✓"),
    };
    let before = store
        .audit(&AuditQuery::default())
        .await
        .unwrap_or_else(|e| panic!("{name}: audit failed: {e}"));
    let last_before = before.last().map_or(0, |e| e.seq);
    let plan = [
        (Some("req-1"), "t-audit-1", AuditAction::Requested),
        (Some("req-1"), "t-audit-1", AuditAction::Voted),
        (Some("req-2"), "t-audit-2", AuditAction::Requested),
        (Some("req-1"), "t-audit-1", AuditAction::Approved),
        (None, "t-audit-2", AuditAction::ApplyFailed),
        (Some("req-1"), "t-audit-1", AuditAction::Applied),
    ];
    let mut written = Vec::new();
    for (n, (request, target, action)) in plan.into_iter().enumerate() {
        let e = entry(request, target, action, n);
        let seq = store
            .append_audit(e.clone())
            .await
            .unwrap_or_else(|err| panic!("{name}: append_audit failed: {err}"));
        written.push(AuditEntry { seq, ..e });
    }
    let seqs: Vec<u64> = written.iter().map(|e| e.seq).collect();
    assert!(
        seqs[0] > last_before && seqs.windows(2).all(|w| w[0] < w[1]),
        "{name}: audit seqs not increasing: {last_before} then {seqs:?}"
    );
    let query = |q: AuditQuery| {
        let store = store.clone();
        let name = name.clone();
        async move {
            store
                .audit(&q)
                .await
                .unwrap_or_else(|e| panic!("{name}: audit {q:?} failed: {e}"))
        }
    };
    let since = AuditQuery {
        since_seq: Some(last_before),
        ..AuditQuery::default()
    };
    assert_eq!(
        query(since.clone()).await,
        written,
        "{name}: audit entries differ"
    );
    let req1 = AuditQuery {
        request: Some("req-1".into()),
        ..since.clone()
    };
    let want: Vec<AuditEntry> = written
        .iter()
        .filter(|e| e.request.as_deref() == Some("req-1"))
        .cloned()
        .collect();
    assert_eq!(query(req1.clone()).await, want, "{name}: audit by request");
    let target2 = AuditQuery {
        target: Some("t-audit-2".into()),
        ..since.clone()
    };
    let want: Vec<AuditEntry> = written
        .iter()
        .filter(|e| e.target == "t-audit-2")
        .cloned()
        .collect();
    assert_eq!(query(target2).await, want, "{name}: audit by target");
    let page = AuditQuery {
        since_seq: Some(seqs[1]),
        limit: Some(2),
        ..AuditQuery::default()
    };
    assert_eq!(
        query(page).await,
        written[2..4].to_vec(),
        "{name}: audit since_seq with limit"
    );
    let limited = AuditQuery {
        limit: Some(2),
        ..req1
    };
    assert_eq!(
        query(limited)
            .await
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [seqs[0], seqs[1]],
        "{name}: audit by request with limit"
    );

    // Concurrent appends get distinct numbers.
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            let e = entry(Some("req-par"), "t-audit-par", AuditAction::Voted, t);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..5 {
                    got.push(store.append_audit(e.clone()).await.expect("append_audit"));
                }
                got
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        for seq in task.await.expect("appending task") {
            assert!(all.insert(seq), "{name}: audit seq {seq} given twice");
        }
    }
    let par = query(AuditQuery {
        request: Some("req-par".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(
        par.iter().map(|e| e.seq).collect::<BTreeSet<_>>(),
        all,
        "{name}: concurrent audit entries lost"
    );
}
