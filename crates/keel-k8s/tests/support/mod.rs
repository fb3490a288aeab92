//! Helpers of the `KubeTarget` tests (`kube_target.rs`, `openshift.rs`).
//! Each test file uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use keel_core::{ApplyOutcome, ImageRef, Target, TrackedImage, UpdatePlan};
use keel_k8s::KubeTarget;
use kube::Client;

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
