//! What was approved is what rolls out: the Kubernetes and Git targets, driven by the
//! pipeline over a real registry, never deploy a tag pushed again after the vote, and deploy
//! (or record) exactly the approved digest.

use std::sync::Arc;
use std::time::Duration;

use keel_core::approval::{Approvals, MemoryApprovalStore};
use keel_core::{Pipeline, Target};
use keel_git::GitTarget;
use keel_k8s::KubeTarget;
use keel_registry::RegistryClient;
use keel_testsupport::git::GitServer;
use keel_testsupport::kube::{ApiServer, Workload, deployment_images};
use keel_testsupport::pipeline::approved_digest_rolls_out;
use keel_testsupport::registry::{RegistryServer, ServerOptions};

/// A registry holding `team/web` at 1.0.0 and 1.1.0, and the image of a tag of it there.
async fn web_registry() -> (RegistryServer, impl Fn(&str) -> String) {
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "team/web", &["1.0.0", "1.1.0"]).await;
    let repo = format!("{}/team/web", registry.addr());
    (registry, move |tag: &str| format!("{repo}:{tag}"))
}

/// Runs the approved-digest scenario of the test support against `target` (request, vote,
/// push the tag again, no rollout, vote again, the new content rolls out) over `registry`.
/// Returns the approved digest of the new content.
async fn re_push_after_the_vote(
    registry: &RegistryServer,
    target: Arc<dyn Target>,
    assert_unchanged: impl AsyncFnOnce(),
) -> String {
    // The default client caches digests for 30 s, as a long-running updater's does: the
    // pass after the re-push still sees the approved digest in the cache.
    let client = Arc::new(RegistryClient::builder().build().unwrap());
    let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
    let pipeline = Pipeline::new(client)
        .with_target(target)
        .with_approvals(approvals.clone());
    approved_digest_rolls_out(
        &pipeline,
        &approvals,
        async || {
            registry
                .move_tag("team/web", "1.1.0", "2030-01-01T00:00:00Z")
                .await
        },
        assert_unchanged,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_never_rolls_out_a_tag_pushed_after_the_vote() {
    let Some((_, ns, client)) = ApiServer::shared_namespace("approved-digest").await else {
        return;
    };
    let (registry, image) = web_registry().await;
    Workload::keel_deployment("web", "minor", &image("1.0.0"))
        .annotation("keel.sh/approvals", "1")
        .create(&client, &ns)
        .await;
    let target = KubeTarget::builder(client.clone())
        .with_namespaces([ns.as_str()])
        .with_sync_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();

    let running = || async { deployment_images(&client, &ns, "web", false).await };
    let pushed = re_push_after_the_vote(&registry, Arc::new(target), async || {
        assert_eq!(
            running().await,
            [("app".to_owned(), image("1.0.0"))],
            "the target changed"
        );
    })
    .await;

    // The rollout names the tag and records exactly the approved digest.
    assert_eq!(running().await, [("app".to_owned(), image("1.1.0"))]);
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), &ns);
    let deployment = api.get("web").await.unwrap();
    let recorded = deployment
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("keel.sh/digests")
        .expect("keel.sh/digests recorded");
    assert!(recorded.contains(&pushed), "{recorded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_never_commits_a_tag_pushed_after_the_vote() {
    let (registry, image) = web_registry().await;
    let manifest = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    \
             keel.sh/policy: minor\n    keel.sh/approvals: \"1\"\nspec:\n  template:\n    spec:\n      \
             containers:\n        - name: app\n          image: {image}\n"
        )
    };
    let git = GitServer::start();
    git.create_repo(
        "fleet",
        &[("apps/web.yaml", &manifest(&image("1.0.0")))],
        "main",
    );
    let target = GitTarget::builder(git.git_url("fleet"))
        .with_workdir(git.scratch_dir("approved-digest"))
        .with_author("keel-test", "keel-test@example.invalid")
        .build();

    let read = || git.read_file("fleet", "main", "apps/web.yaml").unwrap();
    let pushed = re_push_after_the_vote(&registry, Arc::new(target), async || {
        assert_eq!(read(), manifest(&image("1.0.0")), "the target changed");
    })
    .await;

    // The commit pins exactly the approved digest.
    assert_eq!(read(), manifest(&format!("{}@{pushed}", image("1.1.0"))));
}
