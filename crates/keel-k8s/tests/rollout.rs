//! Rollout tracking and rollback against a real API server. There is no controller-manager:
//! the tests write `/status` themselves to simulate a rollout that progresses or stalls.

mod support;
use support::namespace_with;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use keel_core::{ApplyOutcome, Error};
use keel_k8s::WorkloadKind;
use keel_k8s::rollout::{
    ROLLBACK_ANNOTATION, WorkloadRef, rollback, rollout_status, watch_rollout,
};
use keel_testsupport::kube::{
    ApiServer, Kind, Workload, deployment_images, mark_deployment_rolled_out, merge_status,
    patch_deployment_status,
};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const V1: &str = "registry.example.com/shop/web:1.0.0";
const V2: &str = "registry.example.com/shop/web:1.1.0";

/// [`updated_deployment`] `web` with `replicas`, in a namespace made from `ns_name`, with
/// the namespace and a client of it; `None` without an API server.
async fn updated_web(ns_name: &str, replicas: i32) -> Option<(String, Client, WorkloadRef, i64)> {
    let (_, ns, client) = ApiServer::shared_namespace(ns_name).await?;
    let (web, generation) = updated_deployment(&client, &ns, "web", replicas).await;
    Some((ns, client, web, generation))
}

/// Creates a Deployment of `replicas` running V1, rolled out, then moves it to V2 (the
/// update keel would apply); its status still describes the previous generation. Returns the
/// workload and its new generation.
async fn updated_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> (WorkloadRef, i64) {
    Workload::deployment(name)
        .container("app", V1)
        .container("sidecar", "registry.example.com/shop/proxy:2")
        .create(client, ns)
        .await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await
    .unwrap();
    mark_deployment_rolled_out(client, ns, name).await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({ "spec": { "template": { "spec": {
            "containers": [{ "name": "app", "image": V2 }] } } } })),
    )
    .await
    .unwrap();
    let generation = api.get(name).await.unwrap().metadata.generation.unwrap();
    (
        WorkloadRef::new(WorkloadKind::Deployment, ns, name),
        generation,
    )
}

#[tokio::test]
async fn a_progressing_deployment_is_followed_until_complete() {
    let Some((ns, client, web, generation)) = updated_web("rollout-progress", 2).await else {
        return;
    };

    let before = rollout_status(&client, &web).await.unwrap();
    assert!(
        !before.observed_generation_current && !before.complete,
        "{before:?}"
    );

    let watching = tokio::spawn({
        let (client, web) = (client.clone(), web.clone());
        async move { watch_rollout(&client, &web, Duration::from_secs(20)).await }
    });
    // The controller observes the new generation and rolls pods one by one.
    let steps = [
        json!({ "observedGeneration": generation, "replicas": 3, "updatedReplicas": 1,
                "readyReplicas": 2, "availableReplicas": 2 }),
        json!({ "observedGeneration": generation, "replicas": 3, "updatedReplicas": 2,
                "readyReplicas": 3, "availableReplicas": 3 }),
        json!({ "observedGeneration": generation, "replicas": 2, "updatedReplicas": 2,
                "readyReplicas": 2, "availableReplicas": 1 }),
    ];
    for step in steps {
        tokio::time::sleep(Duration::from_millis(300)).await;
        patch_deployment_status(&client, &ns, "web", step).await;
        assert!(
            !watching.is_finished(),
            "finished before the rollout completed"
        );
    }
    let midway = rollout_status(&client, &web).await.unwrap();
    assert_eq!(
        midway.waiting_for,
        "1 of 2 updated replicas to be available"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let finished_at = Instant::now();
    let status = json!({ "observedGeneration": generation, "replicas": 2, "updatedReplicas": 2,
        "readyReplicas": 2, "availableReplicas": 2 });
    patch_deployment_status(&client, &ns, "web", status).await;
    let status = watching.await.unwrap().unwrap();
    assert!(status.complete && !status.failed(), "{status:?}");
    assert!(status.observed_generation_current);
    assert_eq!(
        (
            status.desired,
            status.updated,
            status.ready,
            status.available
        ),
        (2, 2, 2, 2)
    );
    assert!(
        finished_at.elapsed() < Duration::from_secs(5),
        "the watch saw completion late"
    );
}

#[tokio::test]
async fn a_stalled_rollout_times_out_and_is_rolled_back() {
    let Some((ns, client, web, generation)) = updated_web("rollout-stall", 2).await else {
        return;
    };
    // Observed, one new pod that never becomes available.
    let status = json!({ "observedGeneration": generation, "replicas": 3, "updatedReplicas": 1,
        "readyReplicas": 2, "availableReplicas": 2 });
    patch_deployment_status(&client, &ns, "web", status).await;

    let started = Instant::now();
    let status = watch_rollout(&client, &web, Duration::from_secs(2))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(!status.complete);
    let reason = status
        .failed_reason
        .clone()
        .expect("a stalled rollout failed");
    assert!(
        reason.contains("did not complete its rollout within 2s"),
        "{reason}"
    );
    assert!(reason.contains("1 of 2 new replicas"), "{reason}");

    let outcome = rollback(&client, &web, "app", V2, V1, &reason)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Applied);
    let images = deployment_images(&client, &ns, "web", false).await;
    assert_eq!(
        images,
        vec![
            ("app".to_owned(), V1.to_owned()),
            (
                "sidecar".to_owned(),
                "registry.example.com/shop/proxy:2".to_owned()
            ),
        ]
    );
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = api.get("web").await.unwrap();
    let note = deployment.annotations()[ROLLBACK_ANNOTATION].clone();
    assert!(
        note.contains(&format!("container app restored to {V1} (from {V2})")),
        "{note}"
    );
    assert!(note.contains("did not complete its rollout"), "{note}");

    // Idempotent: a second rollback changes nothing.
    let rv = deployment.resource_version();
    let again = rollback(&client, &web, "app", V2, V1, &reason)
        .await
        .unwrap();
    assert_eq!(again, ApplyOutcome::AlreadyCurrent);
    assert_eq!(api.get("web").await.unwrap().resource_version(), rv);
}

#[tokio::test]
async fn an_exceeded_progress_deadline_fails_at_once() {
    let Some((ns, client, web, generation)) = updated_web("rollout-deadline", 1).await else {
        return;
    };
    let status = json!({ "observedGeneration": generation, "replicas": 2, "updatedReplicas": 1,
        "availableReplicas": 1, "conditions": [{
            "type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-2\" has timed out progressing." }] });
    patch_deployment_status(&client, &ns, "web", status).await;
    let started = Instant::now();
    let status = watch_rollout(&client, &web, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!status.complete);
    assert!(
        status.failed_reason.as_deref().is_some_and(|r| r
            .contains("exceeded its progress deadline")
            && r.contains("timed out")),
        "{status:?}"
    );
}

#[tokio::test]
async fn rollback_refuses_to_undo_someone_elses_change() {
    let Some((ns, client, web, _)) = updated_web("rollout-refuse", 1).await else {
        return;
    };

    // Running neither the failed nor the previous image: left alone.
    let e = rollback(
        &client,
        &web,
        "app",
        "registry.example.com/shop/web:9.9.9",
        V1,
        "test",
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    assert!(e.to_string().contains(V2), "{e}");
    assert_eq!(deployment_images(&client, &ns, "web", false).await[0].1, V2);

    let e = rollback(&client, &web, "nope", V2, V1, "test")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("container nope of deployment {ns}/web not found")
    );

    let missing = WorkloadRef::new(WorkloadKind::Deployment, &ns, "absent");
    let e = watch_rollout(&client, &missing, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");

    let job = WorkloadRef::new(WorkloadKind::CronJob, &ns, "nightly");
    let e = watch_rollout(&client, &job, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
}

#[tokio::test]
async fn a_statefulset_rollout_waits_for_its_update_revision() {
    let db =
        Workload::new(Kind::StatefulSet, "db").container("db", "registry.example.com/shop/db:14.1");
    let Some((_, ns, client)) = namespace_with("rollout-sts", [db]).await else {
        return;
    };
    let db = WorkloadRef::new(WorkloadKind::StatefulSet, &ns, "db");
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let set_status = |status: serde_json::Value| {
        let api = api.clone();
        async move { merge_status(&api, "db", status).await }
    };
    set_status(
        json!({ "observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
        "updatedReplicas": 0, "currentRevision": "db-1", "updateRevision": "db-2" }),
    )
    .await;
    let waiting = rollout_status(&client, &db).await.unwrap();
    assert!(!waiting.complete);
    assert!(waiting.waiting_for.contains("revision db-2"), "{waiting:?}");

    let watching = tokio::spawn({
        let (client, db) = (client.clone(), db.clone());
        async move { watch_rollout(&client, &db, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watching.is_finished());
    set_status(
        json!({ "observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
        "updatedReplicas": 1, "currentRevision": "db-2", "updateRevision": "db-2" }),
    )
    .await;
    let status = watching.await.unwrap().unwrap();
    assert!(status.complete, "{status:?}");
    assert_eq!((status.desired, status.updated, status.ready), (1, 1, 1));

    // Rollback works on StatefulSets too.
    let outcome = rollback(
        &client,
        &db,
        "db",
        "registry.example.com/shop/db:14.1",
        "registry.example.com/shop/db:14.0",
        "test",
    )
    .await
    .unwrap();
    assert_eq!(outcome, ApplyOutcome::Applied);
    let set = api.get("db").await.unwrap();
    let image = set.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("registry.example.com/shop/db:14.0"));
}
