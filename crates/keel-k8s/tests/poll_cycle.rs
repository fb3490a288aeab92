//! Poll cycles of the pipeline over a `KubeTarget` against a real API server: a cycle that
//! patches Deployments and leaves a gated one waiting, a moving tag followed by digest, and a
//! rollout that never becomes available rolled back and not re-applied.

mod support;
use support::{
    by_id, discover_running, discover_until, get_deployment, namespace_with, plan, target_in,
};

use std::sync::Arc;
use std::time::Duration;

use keel_core::memory::InMemoryRegistry;
use keel_core::{Pipeline, Target, TrackedImage, UpdatePlan};
use keel_k8s::RolloutVerdict;
use keel_testsupport::kube::{Workload, deployment_images, mark_deployment_rolled_out};

/// What `deployment_images` reads of a workload whose one container `app` runs `image`.
fn app_runs(image: &str) -> [(String, String); 1] {
    [("app".to_owned(), image.to_owned())]
}

#[tokio::test]
async fn a_full_poll_cycle_ends_in_a_patched_deployment() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3")
        .annotation("keel.sh/trigger", "poll")
        .container("cache", "redis:7.0.1");
    let gated = Workload::keel_deployment("gated", "minor", "ghcr.io/acme/web:1.2.3")
        .annotation("keel.sh/approvals", "1");
    let Some((_, ns, admin)) = namespace_with("pipeline", [web, gated]).await else {
        return;
    };
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"]);
    registry.push_tags("redis", &["7.0.1", "7.2.4", "8.0.0"]);
    let target = Arc::new(target_in(admin.clone(), &ns).await);
    let pipeline = Pipeline::new(registry.clone()).with_target(target.clone());

    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.tracked, 3);
    assert_eq!(registry.list_calls(), 2, "one listing per repository");
    let mut applied: Vec<String> = report.applied.iter().map(|p| p.to_string()).collect();
    applied.sort();
    assert_eq!(
        applied,
        [
            format!(
                "test cluster deployment/{ns}/web/app: ghcr.io/acme/web:1.2.3 -> ghcr.io/acme/web:1.3.0"
            ),
            format!(
                "test cluster deployment/{ns}/web/cache: docker.io/library/redis:7.0.1 -> docker.io/library/redis:7.2.4"
            ),
        ]
    );
    assert_eq!(report.awaiting_approval.len(), 1);
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await,
        [
            ("app".to_owned(), "ghcr.io/acme/web:1.3.0".to_owned()),
            ("cache".to_owned(), "redis:7.2.4".to_owned()),
        ]
    );
    assert_eq!(
        deployment_images(&admin, &ns, "gated", false).await[0].1,
        "ghcr.io/acme/web:1.2.3"
    );

    // Once the watch has seen the change, the next cycle has nothing to do for `web`.
    discover_running(&target, "ghcr.io/acme/web:1.3.0").await;
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(report.awaiting_approval.len(), 1);
}

#[tokio::test]
async fn poll_cycles_follow_a_moving_tag_by_digest() {
    let follow = Workload::keel_deployment("follow", "force", "ghcr.io/acme/web:stable")
        .annotation("keel.sh/match-tag", "true")
        .annotation("keel.sh/trigger", "poll");
    let Some((_, ns, admin)) = namespace_with("pipeline-digest", [follow]).await else {
        return;
    };
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    let first = registry.push("ghcr.io/acme/web", "stable", None);
    let target = Arc::new(target_in(admin.clone(), &ns).await);
    let pipeline = Pipeline::new(registry.clone()).with_target(target.clone());
    let id = format!("deployment/{ns}/follow/app");
    let running_digest = |images: &[TrackedImage], digest: &keel_core::Digest| {
        images
            .iter()
            .any(|i| i.id == id && i.image.digest() == Some(digest))
    };

    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.applied.len(), 1, "{:?}", report.planned);
    assert_eq!(report.applied[0].new.digest(), Some(&first));
    assert_eq!(
        deployment_images(&admin, &ns, "follow", false).await[0].1,
        "ghcr.io/acme/web:stable",
        "the tag stays; the pods roll by annotation"
    );
    discover_until(&target, "the first digest", |i| running_digest(i, &first)).await;

    // Nothing new in the registry: nothing to do.
    let report = pipeline.run_once().await;
    assert!(report.planned.is_empty(), "{:?}", report.planned);

    // The tag moves: the next cycle follows it.
    let second = registry.push("ghcr.io/acme/web", "stable", None);
    let report = pipeline.run_once().await;
    assert_eq!(report.applied.len(), 1, "{:?}", report.failures);
    assert_eq!(report.applied[0].current.digest(), Some(&first));
    assert_eq!(report.applied[0].new.digest(), Some(&second));
    discover_until(&target, "the second digest", |i| running_digest(i, &second)).await;
}

#[tokio::test]
async fn a_rollout_that_never_becomes_available_is_rolled_back() {
    let both = ["good", "bad"]
        .map(|name| Workload::keel_deployment(name, "minor", "ghcr.io/acme/web:1.2.3"));
    let Some((_, ns, admin)) = namespace_with("verify", both).await else {
        return;
    };
    let target = target_in(admin.clone(), &ns).await;
    target.discover().await.expect("discover");
    let to_1_3_0 = |name: &str| {
        let id = format!("deployment/{ns}/{name}/app");
        plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0")
    };
    let (good, bad) = (to_1_3_0("good"), to_1_3_0("bad"));
    // The verdict on the rollout of `update` of `name` within `secs`, and what `name` then runs.
    let verify = async |update: &UpdatePlan, secs: u64, name: &str| {
        let within = Duration::from_secs(secs);
        let verdict = target.verify_rollout(update, within).await;
        (
            verdict.expect("verify"),
            deployment_images(&admin, &ns, name, false).await,
        )
    };
    target.apply(&good).await.expect("apply good");
    target.apply(&bad).await.expect("apply bad");

    // There is no controller-manager: the test reports the good rollout as done.
    mark_deployment_rolled_out(&admin, &ns, "good").await;
    let (verdict, running) = verify(&good, 10, "good").await;
    assert!(
        matches!(verdict, RolloutVerdict::Complete(_)),
        "{verdict:?}"
    );
    assert_eq!(running, app_runs("ghcr.io/acme/web:1.3.0"));

    // The bad one never becomes available: back to 1.2.3, with the reason recorded.
    let (verdict, running) = verify(&bad, 2, "bad").await;
    assert!(
        matches!(verdict, RolloutVerdict::RolledBack(_)),
        "{verdict:?}"
    );
    assert_eq!(running, app_runs("ghcr.io/acme/web:1.2.3"));
    let annotations = get_deployment(&admin, &ns, "bad")
        .await
        .metadata
        .annotations
        .unwrap_or_default();
    let why = annotations
        .get("keel.sh/rollback")
        .expect("rollback annotation");
    assert!(why.contains("ghcr.io/acme/web:1.3.0"), "{why}");

    // The failed version does not come straight back; the next one does.
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.3.0"]);
    let pipeline = Pipeline::new(registry.clone()).with_target(Arc::new(target.clone()));
    let bad_id = format!("deployment/{ns}/bad/app");
    discover_until(&target, "the rolled-back image", |images| {
        by_id(images, &bad_id).image.tag().map(|t| t.as_str()) == Some("1.2.3")
    })
    .await;
    let only_bad = |image: &TrackedImage| image.id == bad_id;
    let report = pipeline.run_filtered(&only_bad).await;
    assert!(report.planned.is_empty(), "{:?}", report.planned);
    registry.push_tags("ghcr.io/acme/web", &["1.3.1"]);
    let report = pipeline.run_filtered(&only_bad).await;
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert_eq!(
        deployment_images(&admin, &ns, "bad", false).await,
        app_runs("ghcr.io/acme/web:1.3.1")
    );
}
