//! The ConfigMap-backed approval store against a real API server: the conformance suite of
//! every store, two replicas sharing state, and the audit log moving into chunks.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalState, ApprovalStore, AuditAction, AuditEntry,
    AuditQuery,
};
use keel_core::{ImageRef, UpdatePlan};
use keel_k8s::KubeApprovalStore;
use keel_k8s::approval_store::{KIND_LABEL, STATE_LABEL, STORE_LABEL};
use keel_testsupport::kube::ApiServer;
use kube::api::{Api, ListParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_passes_the_conformance_suite() {
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let ns = server.namespace("approvals-conformance").await;
    let store = KubeApprovalStore::new(server.admin_client(), &ns);
    keel_core::testkit::approval_store_conformance(Arc::new(store)).await;
}

fn request(id: &str, target: &str, state: ApprovalState) -> ApprovalRequest {
    let now = chrono::Utc::now();
    ApprovalRequest {
        id: id.to_owned(),
        plan: UpdatePlan {
            target: target.to_owned(),
            id: "deployment/shop/web/app".into(),
            current: ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
            new: ImageRef::parse("ghcr.io/acme/web:1.1.0").unwrap(),
        },
        digest: None,
        required: 1,
        votes: Vec::new(),
        state,
        created: now,
        updated: now,
        deadline: now + chrono::TimeDelta::hours(1),
        release_notes: None,
        channels: Vec::new(),
    }
}

#[tokio::test]
async fn two_replicas_share_requests_and_one_audit_sequence() {
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let ns = server.namespace("approvals-shared").await;
    let a = KubeApprovalStore::new(server.admin_client(), &ns);
    let b = KubeApprovalStore::new(server.admin_client(), &ns);

    // A target name with spaces and an id with upper case are not object names or label
    // values: they are hashed there and kept exactly in the data.
    let r = request(
        "Req_Upper.1",
        "cluster prod (eu-west)",
        ApprovalState::Pending,
    );
    let value = r.clone();
    a.update(&r.id, &mut |_| Ok(Some(value.clone())))
        .await
        .unwrap();
    assert_eq!(b.get(&r.id).await.unwrap().as_ref(), Some(&r));
    let by_target = ApprovalFilter {
        target: Some("cluster prod (eu-west)".into()),
        ..ApprovalFilter::default()
    };
    assert_eq!(b.list(&by_target).await.unwrap(), vec![r.clone()]);

    // A state change made by one replica is what the other's label filter sees.
    b.update(&r.id, &mut |current| {
        let mut current = current.expect("stored by the other replica");
        current.state = ApprovalState::Approved;
        Ok(Some(current))
    })
    .await
    .unwrap();
    assert!(
        a.list(&ApprovalFilter::state(ApprovalState::Pending))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.list(&ApprovalFilter::state(ApprovalState::Approved))
            .await
            .unwrap()
            .len(),
        1
    );
    let cms: Api<ConfigMap> = Api::namespaced(server.admin_client(), &ns);
    let object = cms.get(&a.object_name(&r.id)).await.unwrap();
    let labels = object.metadata.labels.unwrap();
    assert_eq!(labels[STATE_LABEL], "approved");
    assert_eq!(labels[STORE_LABEL], "keel");
    assert_eq!(labels[KIND_LABEL], "request");

    // Another prefix is another store in the same namespace.
    let other = KubeApprovalStore::new(server.admin_client(), &ns)
        .with_prefix("staging")
        .unwrap();
    assert!(
        other
            .list(&ApprovalFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(other.get(&r.id).await.unwrap().is_none());
    assert!(
        KubeApprovalStore::new(server.admin_client(), &ns)
            .with_prefix("Bad_Prefix")
            .is_err()
    );

    // Both replicas append to one log: numbers are distinct and increasing.
    let mut seqs = Vec::new();
    for (n, store) in [&a, &b, &a, &b].into_iter().enumerate() {
        let entry = AuditEntry::for_request(
            AuditAction::Voted,
            &r,
            Some(&format!("voter-{n}")),
            chrono::Utc::now(),
            "voted",
        );
        seqs.push(store.append_audit(entry).await.unwrap());
    }
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    let log = b.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_audit_log_moves_into_chunks_without_losing_order() {
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let ns = server.namespace("approvals-audit").await;
    let store = Arc::new(KubeApprovalStore::new(server.admin_client(), &ns));
    let r = request("chunked", "prod", ApprovalState::Pending);

    // More than one head's worth (256 entries), from concurrent writers.
    const WRITERS: usize = 4;
    const EACH: usize = 80;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..EACH {
                    let entry = AuditEntry::for_request(
                        AuditAction::Voted,
                        &r,
                        Some(&format!("writer-{w}")),
                        chrono::Utc::now(),
                        format!("entry {w}/{i}"),
                    );
                    seqs.push(store.append_audit(entry).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all_seqs = BTreeSet::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one writer's seqs go up"
        );
        all_seqs.extend(seqs);
    }
    let total = WRITERS * EACH;
    assert_eq!(all_seqs.len(), total, "no seq was handed out twice");

    let log = store.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(log.len(), total);
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<BTreeSet<_>>(),
        all_seqs,
        "every appended entry is in the log once"
    );
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    // Each writer's entries are in its own order.
    for w in 0..WRITERS {
        let mine: Vec<&str> = log
            .iter()
            .filter(|e| e.actor.as_deref() == Some(&format!("writer-{w}")))
            .map(|e| e.message.as_str())
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("entry {w}/{i}")).collect();
        assert_eq!(mine, want);
    }

    // The log did move into chunks.
    let cms: Api<ConfigMap> = Api::namespaced(server.admin_client(), &ns);
    let chunks = cms
        .list(&ListParams::default().labels(&format!("{KIND_LABEL}=audit-chunk")))
        .await
        .unwrap();
    assert!(!chunks.items.is_empty(), "no chunk after {total} entries");

    // Paging across chunk boundaries.
    let page = store
        .audit(&AuditQuery {
            since_seq: Some(250),
            limit: Some(10),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let want: Vec<u64> = all_seqs
        .iter()
        .copied()
        .filter(|s| *s > 250)
        .take(10)
        .collect();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
}
