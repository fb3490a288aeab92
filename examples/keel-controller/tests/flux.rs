//! `keel-controller --flux` against a real kube-apiserver serving Flux's CRDs, a real
//! registry and a real Git server, running as a user bound only by
//! `deploy/rbac-cluster.yaml`, `deploy/rbac-flux.yaml` and `deploy/rbac-own-namespace.yaml`:
//! an `ImageRepository` is scanned, an `ImagePolicy` gets the tag Flux would pick in its
//! status, and an `ImageUpdateAutomation` pushes that tag to the setter marker of a manifest
//! (HTTP with the credentials of the `GitRepository`'s secret), changing nothing else; the
//! same user may not change any object's spec.

mod common;
use common::{Controller, apply_rbac, manifest};

use std::time::Duration;

use keel_testsupport::git::GitServer;
use keel_testsupport::kube::flux::{FluxKind, create, git_repository_spec, install_flux_crds};
use keel_testsupport::kube::{ApiServer, create_secret, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::{Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn the_controller_scans_resolves_and_pushes_as_flux_does() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    install_flux_crds(api, &keel_flux::crds::ALL).await;
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "team/web",
        &["1.0.0", "1.4.2", "1.10.0", "2.0.0-rc.1", "1.187", "latest"],
    )
    .await;
    let image = format!("{}/team/web", registry.addr());
    let ns = api.namespace("flux").await;
    let own_ns = api.namespace("keel").await;
    let admin = api.admin_client();
    let user = "alice";
    let mut docs = manifest("rbac-cluster.yaml");
    docs.extend(manifest("rbac-flux.yaml"));
    docs.extend(manifest("rbac-own-namespace.yaml"));
    apply_rbac(&admin, docs, user, &ns, &[("keel", own_ns.as_str())]).await;

    // The fleet repository: a Deployment whose image carries a setter marker.
    let git = GitServer::start_with_http("flux-bot", "push-token");
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {image}:1.0.0 # {{\"$imagepolicy\": \"{ns}:web\"}}\n"
    );
    git.create_repo("fleet", &[("apps/web.yaml", deployment.as_str())], "main");
    create_secret(
        &admin,
        &ns,
        "fleet-auth",
        &[("username", "flux-bot"), ("password", "push-token")],
    )
    .await;

    let repositories = FluxKind::ImageRepository.api(&admin, &ns);
    let policies = FluxKind::ImagePolicy.api(&admin, &ns);
    let automations = FluxKind::ImageUpdateAutomation.api(&admin, &ns);
    create(
        &admin,
        &ns,
        "v1",
        FluxKind::ImageRepository,
        "web",
        json!({"image": image, "interval": "1m"}),
    )
    .await;
    create(
        &admin,
        &ns,
        "v1",
        FluxKind::ImagePolicy,
        "web",
        json!({"imageRepositoryRef": {"name": "web"}, "policy": {"semver": {"range": ">=1.0.0"}}}),
    )
    .await;
    let source = git_repository_spec(&git.http_url("fleet"), "fleet-auth");
    create(&admin, &ns, "v1", FluxKind::GitRepository, "fleet", source).await;
    create(
        &admin,
        &ns,
        "v1",
        FluxKind::ImageUpdateAutomation,
        "fleet",
        json!({
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "interval": "1m",
            "git": {
                "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"name": "Fleet Bot", "email": "fleet@example.com"}},
                "push": {"branch": "main"},
            },
            "update": {"path": "./apps", "strategy": "Setters"},
        }),
    )
    .await;

    let _controller = Controller::start(
        api,
        user,
        &[
            "--flux",
            "--flux-tick",
            "1s",
            "--namespaces",
            &ns,
            "--controller-namespace",
            &own_ns,
            "--identity",
            user,
        ],
        &[("KEEL_WEBHOOK_TOKEN", "hook-token")],
    );
    // Flux's semver admits strict versions only: not `1.187`, not the pre-release.
    wait_for(
        "the ImagePolicy's latestRef",
        (Duration::from_secs(60), Duration::from_millis(200)),
        async || policies.get("web").await.unwrap().data["status"].clone(),
        |status| status["latestRef"]["tag"] == "1.10.0",
    )
    .await;
    let policy = policies.get("web").await.unwrap().data;
    assert_eq!(policy["status"]["latestRef"]["name"], image.as_str());
    let ready = &policy["status"]["conditions"][0];
    assert_eq!(
        (ready["type"].as_str(), ready["status"].as_str()),
        (Some("Ready"), Some("True"))
    );
    let repository = repositories.get("web").await.unwrap().data;
    assert_eq!(repository["status"]["lastScanResult"]["tagCount"], 6);

    // The automation pushes the choice to the marker, and only there.
    wait_for(
        "the pushed manifest",
        (Duration::from_secs(60), Duration::from_millis(200)),
        async || git.read_file("fleet", "main", "apps/web.yaml"),
        |text| text.as_deref() != Some(deployment.as_str()),
    )
    .await;
    let text = git.read_file("fleet", "main", "apps/web.yaml").unwrap();
    assert_eq!(
        text,
        deployment.replace(&format!("{image}:1.0.0"), &format!("{image}:1.10.0"))
    );
    assert_eq!(
        git.show("fleet", "main", "%an <%ae>").trim(),
        "Fleet Bot <fleet@example.com>"
    );
    wait_for(
        "the automation's lastPushCommit",
        (Duration::from_secs(30), Duration::from_millis(200)),
        async || automations.get("fleet").await.unwrap().data["status"].clone(),
        |status| status["lastPushCommit"].is_string(),
    )
    .await;

    // Least privilege: the controller's user writes statuses, never specs.
    let as_user = FluxKind::ImagePolicy.api(&api.client_as(user), &ns);
    let err = as_user
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"policy": {"semver": {"range": "<1.0.0"}}}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
}
