//! Helpers of the tests against the API server (`kube_target.rs`, `poll_cycle.rs`,
//! `openshift.rs`, `settings.rs`, `rollout.rs`). Each test file uses part of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use keel_core::{ApplyOutcome, Error, ImageRef, Target, TrackedImage, UpdatePlan};
use keel_k8s::KubeTarget;
use keel_testsupport::kube::{ApiServer, Workload};
use kube::Client;
use kube::api::{Api, Patch};
use serde_json::json;

/// The name of the target of the tests of the plain Kubernetes kinds.
pub(crate) const TARGET: &str = "test cluster";

/// The [`TARGET`] over namespace `ns`, as `client`.
pub(crate) async fn target_in(client: Client, ns: &str) -> KubeTarget {
    named_target(TARGET, client, ns).await
}

/// The plan of the [`TARGET`] that moves `id` from `current` to `new`.
pub(crate) fn plan(id: &str, current: &str, new: &str) -> UpdatePlan {
    plan_of(TARGET, id, current, new)
}

/// A fresh namespace of the shared API server holding `workloads`; `None` (the test skips)
/// without a server.
pub(crate) async fn namespace_with(
    prefix: &str,
    workloads: impl IntoIterator<Item = Workload>,
) -> Option<(&'static ApiServer, String, Client)> {
    let (server, ns, admin) = ApiServer::shared_namespace(prefix).await?;
    for workload in workloads {
        workload.create(&admin, &ns).await;
    }
    Some((server, ns, admin))
}

pub(crate) async fn get_deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get deployment")
}

/// An admin client before each PATCH of Deployment `name` in `ns` of which someone else sets
/// the label `(key, value)` that `label` makes of the number of such PATCHes before it
/// (nothing where it gives `None`); and that count, as it goes.
pub(crate) fn racing_deployment_client(
    server: &ApiServer,
    admin: &Client,
    ns: &str,
    name: &str,
    label: impl Fn(usize) -> Option<(&'static str, String)> + Send + Sync + 'static,
) -> (Client, Arc<AtomicUsize>) {
    let deployments = Api::<Deployment>::namespaced(admin.clone(), ns);
    server.racing_object_client(&deployments, name, move |n| {
        let (key, value) = label(n)?;
        Some(Patch::Merge(
            json!({ "metadata": { "labels": { key: value } } }),
        ))
    })
}

/// An admin client before each PATCH of Deployment `web` in `ns` of which someone else sets
/// the label `changed-by: someone` where `when` holds for the number of such PATCHes before it;
/// and that count, as it goes.
pub(crate) fn someone_labels_web(
    server: &ApiServer,
    admin: &Client,
    ns: &str,
    when: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> (Client, Arc<AtomicUsize>) {
    racing_deployment_client(server, admin, ns, "web", move |n| {
        when(n).then(|| ("changed-by", "someone".to_owned()))
    })
}

/// Asserts that the label of [`someone_labels_web`] is still on Deployment `web` of `ns`.
pub(crate) async fn assert_someones_label_kept(admin: &Client, ns: &str) {
    let after = get_deployment(admin, ns, "web").await;
    let labels = after.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("changed-by").map(String::as_str),
        Some("someone"),
        "the concurrent change survives"
    );
}

pub(crate) fn by_id<'a>(images: &'a [TrackedImage], id: &str) -> &'a TrackedImage {
    images.iter().find(|i| i.id == id).unwrap_or_else(|| {
        let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
        panic!("{id} not discovered; found {ids:?}")
    })
}

/// The target named `name` over namespace `ns`, as `client`, waiting at most 30 s for its
/// caches.
pub(crate) async fn named_target(name: &str, client: Client, ns: &str) -> KubeTarget {
    KubeTarget::builder(client)
        .with_name(name)
        .with_namespaces([ns])
        .with_sync_timeout(Duration::from_secs(30))
        .build()
        .await
        .expect("build the target")
}

pub(crate) fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("valid image")
}

/// The plan of the target named `target` that moves `id` from `current` to `new`.
pub(crate) fn plan_of(target: &str, id: &str, current: &str, new: &str) -> UpdatePlan {
    UpdatePlan {
        target: target.into(),
        id: id.into(),
        current: image(current),
        new: image(new),
    }
}

pub(crate) fn ids(images: &[TrackedImage]) -> Vec<String> {
    images.iter().map(|i| i.id.clone()).collect()
}

/// The outcome of applying `update` with `target`, which must not fail.
pub(crate) async fn outcome(target: &KubeTarget, update: &UpdatePlan) -> ApplyOutcome {
    target.apply(update).await.expect("apply")
}

/// The reason of the `Conflict` that `result` must be.
pub(crate) fn conflict_reason<T: Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Conflict { reason, .. }) => reason,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The action and reason of the `Unauthorized` that `result` must be.
pub(crate) fn unauthorized<T: Debug>(result: Result<T, Error>) -> (String, String) {
    match result {
        Err(Error::Unauthorized { action, reason }) => (action, reason),
        other => panic!("expected unauthorized, got {other:?}"),
    }
}

/// Discovers until `done` holds (watch events take a moment), or panics after 20 s naming
/// what was discovered last.
pub(crate) async fn discover_until(
    target: &KubeTarget,
    what: &str,
    done: impl Fn(&[TrackedImage]) -> bool,
) -> Vec<TrackedImage> {
    let started = Instant::now();
    loop {
        let images = target.discover().await.expect("discover");
        if done(&images) {
            return images;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}; discovered {:?}",
            ids(&images)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Discovers until some container runs `running` (watch events take a moment), as
/// [`discover_until`].
pub(crate) async fn discover_running(target: &KubeTarget, running: &str) -> Vec<TrackedImage> {
    let wanted = image(running);
    discover_until(target, &format!("{running} discovered"), |images| {
        images.iter().any(|i| i.image == wanted)
    })
    .await
}
