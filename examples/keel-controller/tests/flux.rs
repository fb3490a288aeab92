//! `keel-controller --flux` against a real kube-apiserver serving Flux's image CRDs and a
//! real registry, running as a user bound only by `deploy/rbac-cluster.yaml`,
//! `deploy/rbac-flux.yaml` and `deploy/rbac-own-namespace.yaml`: an `ImageRepository` is
//! scanned and an `ImagePolicy` gets the tag Flux would pick in its status, and the same
//! user may not change either object's spec.

mod common;
use common::{Controller, apply_rbac, manifest};

use std::time::Duration;

use keel_flux::crds::{IMAGE_POLICY_CRD, IMAGE_REPOSITORY_CRD};
use keel_flux::reflector::GROUP;
use keel_testsupport::kube::{ApiServer, install_crd, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

fn api_of(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", kind), plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

async fn create(api: &Api<DynamicObject>, kind: &str, name: &str, spec: Value) {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
}

#[tokio::test]
async fn repositories_are_scanned_and_policies_resolved_by_the_controller() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    for (yaml, plural) in [
        (IMAGE_REPOSITORY_CRD, "imagerepositories"),
        (IMAGE_POLICY_CRD, "imagepolicies"),
    ] {
        install_crd(api, yaml, &format!("{GROUP}/v1"), plural).await;
    }
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

    let repositories = api_of(&admin, &ns, "ImageRepository", "imagerepositories");
    let policies = api_of(&admin, &ns, "ImagePolicy", "imagepolicies");
    create(
        &repositories,
        "ImageRepository",
        "web",
        json!({"image": image, "interval": "1m"}),
    )
    .await;
    create(
        &policies,
        "ImagePolicy",
        "web",
        json!({"imageRepositoryRef": {"name": "web"}, "policy": {"semver": {"range": ">=1.0.0"}}}),
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

    // Least privilege: the controller's user writes statuses, never specs.
    let as_user = api_of(&api.client_as(user), &ns, "ImagePolicy", "imagepolicies");
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
