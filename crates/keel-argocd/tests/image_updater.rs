//! Image Updater 1.x `ImageUpdater` objects in a real kube-apiserver (with the Application
//! and ImageUpdater CRDs of this crate), images in a real registry, and full passes of the
//! keel-core pipeline over the target.
//!
//! Needs `eval "$(scripts/envtest env)"` and `scripts/registry-server install`; without the
//! API server binaries the tests return early after saying so.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_argocd::{
    APPLICATION_CRD, ArgoCdTarget, IMAGE_UPDATER_CRD, application_resource, image_updater_resource,
};
use keel_core::{Pipeline, RunReport};
use keel_registry::RegistryClient;
use keel_testsupport::kube::{ApiServer, install_crd};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const PREFIX: &str = "argocd-image-updater.argoproj.io/";

/// The shared API server with both CRDs served, a fresh namespace and an admin client.
async fn argocd_namespace(prefix: &str) -> Option<(String, Client)> {
    let (server, ns, client): (&ApiServer, String, Client) =
        ApiServer::shared_namespace(prefix).await?;
    install_crd(
        server,
        APPLICATION_CRD,
        "argoproj.io/v1alpha1",
        "applications",
    )
    .await;
    install_crd(
        server,
        IMAGE_UPDATER_CRD,
        "argocd-image-updater.argoproj.io/v1alpha1",
        "imageupdaters",
    )
    .await;
    Some((ns, client))
}

fn apps(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &application_resource())
}

fn image_updaters(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &image_updater_resource())
}

/// Creates Application `name` with `labels`, `annotations` (keys without the prefix) and
/// `source`.
async fn create_app(
    client: &Client,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    source: Value,
) {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let annotations: BTreeMap<String, &str> = annotations
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), *v))
        .collect();
    let mut source = source;
    source["repoURL"] = json!("https://git.example/acme/deploy.git");
    source["path"] = json!(format!("apps/{name}"));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": { "name": name, "namespace": ns, "labels": labels, "annotations": annotations },
        "spec": {
            "project": "default",
            "destination": { "server": "https://kubernetes.default.svc", "namespace": "web" },
            "source": source,
        },
    }))
    .expect("an Application");
    apps(client, ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create application {ns}/{name}: {e}"));
}

async fn create_image_updater(client: &Client, ns: &str, name: &str, spec: Value) {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argocd-image-updater.argoproj.io/v1alpha1",
        "kind": "ImageUpdater",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    }))
    .expect("an ImageUpdater");
    image_updaters(client, ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create imageupdater {ns}/{name}: {e}"));
}

async fn source(client: &Client, ns: &str, name: &str) -> Value {
    apps(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get application {ns}/{name}: {e}"))
        .data["spec"]["source"]
        .clone()
}

async fn image_updater(client: &Client, ns: &str, name: &str) -> DynamicObject {
    image_updaters(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get imageupdater {ns}/{name}: {e}"))
}

/// The resourceVersion of every Application and ImageUpdater in `ns`, by name.
async fn resource_versions(client: &Client, ns: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (kind, api) in [
        ("application", apps(client, ns)),
        ("imageupdater", image_updaters(client, ns)),
    ] {
        for o in api.list(&Default::default()).await.expect("list").items {
            out.push((
                format!("{kind}/{}", o.metadata.name.unwrap_or_default()),
                o.metadata.resource_version,
            ));
        }
    }
    out.sort();
    out
}

fn helm_tag(repository_parameter: &str, tag_parameter: &str, web: &str, tag: &str) -> Value {
    json!({ "helm": { "parameters": [
        { "name": "replicaCount", "value": "2" },
        { "name": repository_parameter, "value": web },
        { "name": tag_parameter, "value": tag },
    ]}})
}

fn target(client: Client, ns: &str) -> Arc<ArgoCdTarget> {
    Arc::new(
        ArgoCdTarget::new(client)
            .with_namespace(ns)
            .with_name("argocd")
            .with_image_updaters(true),
    )
}

fn pipeline(target: &Arc<ArgoCdTarget>) -> Pipeline {
    let registry = RegistryClient::builder()
        .with_requests_per_second(0.0)
        .with_credential_source(Arc::new(target.credentials()))
        .build()
        .expect("registry client");
    Pipeline::new(Arc::new(registry)).with_target(target.clone())
}

fn applied(report: &RunReport) -> Vec<String> {
    let mut applied: Vec<String> = report.applied.iter().map(ToString::to_string).collect();
    applied.sort();
    applied
}

/// A condition of a status, as `(status, reason, message)`.
fn condition(status: &Value, type_: &str) -> (String, String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
    let s = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
    (s("status"), s("reason"), s("message"))
}

#[tokio::test]
async fn an_image_updater_updates_exactly_the_applications_it_selects() {
    let Some((ns, admin)) = argocd_namespace("argo-iu").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "acme/web",
        &["1.2.3", "1.2.9", "1.3.0", "2.0.0"],
    )
    .await;
    let web = format!("{}/acme/web", registry.addr());

    // Selected by name: Helm, custom parameter names. web-1 also carries 0.x annotations
    // asking for ^2, which the ImageUpdater overrides.
    let list = format!("web={web}:^2");
    create_app(
        &admin,
        &ns,
        "web-1",
        &[],
        &[("image-list", &list)],
        helm_tag("app.repository", "app.version", &web, "1.2.3"),
    )
    .await;
    create_app(
        &admin,
        &ns,
        "web-2",
        &[],
        &[],
        helm_tag("app.repository", "app.version", &web, "1.2.3"),
    )
    .await;
    // Selected by label: Kustomize, a name override, another strategy.
    create_app(
        &admin,
        &ns,
        "api",
        &[("updates", "alphabetical")],
        &[],
        json!({ "kustomize": { "images": ["redis:7", format!("acme/web={web}:1.2.3")] } }),
    )
    .await;
    // Matched by neither rule: untouched.
    create_app(
        &admin,
        &ns,
        "other",
        &[("updates", "none")],
        &[],
        helm_tag("app.repository", "app.version", &web, "1.2.3"),
    )
    .await;
    create_image_updater(
        &admin,
        &ns,
        "web",
        json!({
            "commonUpdateSettings": { "updateStrategy": "newest-build", "ignoreTags": ["1.3.*"] },
            "writeBackConfig": { "method": "argocd" },
            "applicationRefs": [
                {
                    "namePattern": "web-*",
                    "commonUpdateSettings": { "updateStrategy": "semver" },
                    "images": [{
                        "alias": "web",
                        "imageName": format!("{web}:^1"),
                        "manifestTargets": { "helm": { "name": "app.repository", "tag": "app.version" } },
                    }],
                },
                {
                    "namePattern": "*",
                    "labelSelectors": { "matchLabels": { "updates": "alphabetical" } },
                    "images": [{
                        "alias": "web",
                        "imageName": web,
                        "commonUpdateSettings": { "updateStrategy": "alphabetical", "ignoreTags": [] },
                        "manifestTargets": { "kustomize": { "name": "acme/web" } },
                    }],
                },
            ],
        }),
    )
    .await;

    let target = target(admin.clone(), &ns);
    let pipeline = pipeline(&target);
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(target.problems().is_empty(), "{:?}", target.problems());
    // semver ^1 without 1.3.* (the ImageUpdater-wide ignoreTags) → 1.2.9; alphabetical with
    // the image's empty ignoreTags → 2.0.0.
    assert_eq!(
        applied(&report),
        [
            format!("argocd application/{ns}/api/web: {web}:1.2.3 -> {web}:2.0.0"),
            format!("argocd application/{ns}/web-1/web: {web}:1.2.3 -> {web}:1.2.9"),
            format!("argocd application/{ns}/web-2/web: {web}:1.2.3 -> {web}:1.2.9"),
        ]
    );
    for name in ["web-1", "web-2"] {
        assert_eq!(
            source(&admin, &ns, name).await["helm"]["parameters"],
            json!([
                { "name": "replicaCount", "value": "2" },
                { "name": "app.repository", "value": web, "forceString": true },
                { "name": "app.version", "value": "1.2.9", "forceString": true },
            ]),
            "{name}"
        );
    }
    assert_eq!(
        source(&admin, &ns, "api").await["kustomize"]["images"],
        json!(["redis:7", format!("acme/web={web}:2.0.0")])
    );
    assert_eq!(
        source(&admin, &ns, "other").await,
        json!({
            "repoURL": "https://git.example/acme/deploy.git",
            "path": "apps/other",
            "helm": { "parameters": [
                { "name": "replicaCount", "value": "2" },
                { "name": "app.repository", "value": web },
                { "name": "app.version", "value": "1.2.3" },
            ]},
        })
    );

    let iu = image_updater(&admin, &ns, "web").await;
    let status = &iu.data["status"];
    assert_eq!(status["observedGeneration"], json!(iu.metadata.generation));
    assert_eq!(status["applicationsMatched"], 3);
    assert_eq!(status["imagesManaged"], 3);
    assert_eq!(
        condition(status, "Ready"),
        (
            "True".into(),
            "ReconcileSucceeded".into(),
            "Reconciled 3 applications, 3 images managed.".into()
        )
    );
    assert_eq!(condition(status, "Error").0, "False");
    assert!(status["lastUpdatedAt"].is_string(), "{status}");
    let mut recent: Vec<(String, String, String, i64)> = status["recentUpdates"]
        .as_array()
        .unwrap_or_else(|| panic!("no recentUpdates in {status}"))
        .iter()
        .map(|u| {
            (
                u["alias"].as_str().unwrap_or_default().to_owned(),
                u["image"].as_str().unwrap_or_default().to_owned(),
                u["newVersion"].as_str().unwrap_or_default().to_owned(),
                u["applicationsUpdated"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    recent.sort();
    assert_eq!(
        recent,
        [
            ("web".into(), web.clone(), "1.2.9".into(), 2),
            ("web".into(), web.clone(), "2.0.0".into(), 1),
        ]
    );
    // Written by the field manager `keel`, status fields only (a write to the main resource
    // would not have changed the status at all: the CRD has the status subresource).
    let managed = iu.metadata.managed_fields.unwrap_or_default();
    let keel: Vec<Vec<String>> = managed
        .iter()
        .filter(|f| f.manager.as_deref() == Some("keel"))
        .filter_map(|f| f.fields_v1.as_ref())
        .map(|f| {
            f.0.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(keel, [["f:status"]], "{managed:?}");

    // A second pass finds nothing to do and writes nothing, status included.
    let versions = resource_versions(&admin, &ns).await;
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(report.tracked, 3);
    assert_eq!(resource_versions(&admin, &ns).await, versions);
}

#[tokio::test]
async fn a_bad_image_updater_is_reported_and_updates_nothing_while_another_works() {
    let Some((ns, admin)) = argocd_namespace("argo-iu-bad").await else {
        return;
    };
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/web", &["1.0.0", "1.1.0"]).await;
    let web = format!("{}/acme/web", registry.addr());
    for name in ["bad-1", "good-1"] {
        create_app(
            &admin,
            &ns,
            name,
            &[],
            &[],
            helm_tag("image.name", "image.tag", &web, "1.0.0"),
        )
        .await;
    }
    let spec = |pattern: &str, strategy: &str| {
        json!({ "applicationRefs": [{
            "namePattern": pattern,
            "images": [{ "alias": "web", "imageName": web,
                         "commonUpdateSettings": { "updateStrategy": strategy } }],
        }]})
    };
    create_image_updater(&admin, &ns, "broken", spec("bad-*", "fastest")).await;
    create_image_updater(&admin, &ns, "working", spec("good-*", "semver")).await;

    let target = target(admin.clone(), &ns);
    let report = pipeline(&target).run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        applied(&report),
        [format!(
            "argocd application/{ns}/good-1/web: {web}:1.0.0 -> {web}:1.1.0"
        )]
    );
    let problems: Vec<String> = target.problems().iter().map(ToString::to_string).collect();
    let expected = format!(
        "imageupdater {ns}/broken: spec.applicationRefs[0].images[0].commonUpdateSettings\
         .updateStrategy = \"fastest\": expected `semver`, `newest-build` (or `latest`), \
         `digest` or `alphabetical` (or `name`)"
    );
    assert_eq!(problems, std::slice::from_ref(&expected));
    assert_eq!(
        source(&admin, &ns, "bad-1").await["helm"]["parameters"][2]["value"],
        "1.0.0"
    );
    assert_eq!(
        source(&admin, &ns, "good-1").await["helm"]["parameters"][2]["value"],
        "1.1.0"
    );

    let broken = image_updater(&admin, &ns, "broken").await.data["status"].clone();
    assert_eq!(broken["applicationsMatched"], 0);
    assert_eq!(
        condition(&broken, "Ready"),
        (
            "False".into(),
            "ReconcileFailed".into(),
            format!("Reconciliation failed: {expected}")
        )
    );
    assert_eq!(
        condition(&broken, "Error"),
        ("True".into(), "ReconcileError".into(), expected)
    );
    assert!(broken["recentUpdates"].is_null(), "{broken}");
    let working = image_updater(&admin, &ns, "working").await.data["status"].clone();
    assert_eq!(working["applicationsMatched"], 1);
    assert_eq!(condition(&working, "Ready").1, "ReconcileSucceeded");
    assert_eq!(working["recentUpdates"][0]["newVersion"], "1.1.0");
}

#[tokio::test]
async fn by_default_only_annotations_count() {
    let Some((ns, admin)) = argocd_namespace("argo-iu-off").await else {
        return;
    };
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/web", &["1.0.0", "1.1.0"]).await;
    let web = format!("{}/acme/web", registry.addr());
    create_app(
        &admin,
        &ns,
        "web",
        &[],
        &[],
        helm_tag("image.name", "image.tag", &web, "1.0.0"),
    )
    .await;
    create_image_updater(
        &admin,
        &ns,
        "web",
        json!({ "applicationRefs": [{ "namePattern": "*",
            "images": [{ "alias": "web", "imageName": web }] }] }),
    )
    .await;
    let target = Arc::new(ArgoCdTarget::new(admin.clone()).with_namespace(&ns));
    let versions = resource_versions(&admin, &ns).await;
    let report = pipeline(&target).run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.tracked, 0);
    assert_eq!(resource_versions(&admin, &ns).await, versions);
}

#[tokio::test]
async fn overlapping_image_updaters_and_use_annotations() {
    let Some((ns, admin)) = argocd_namespace("argo-iu-overlap").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "acme/web",
        &["1.0.0", "1.1.0", "2.0.0"],
    )
    .await;
    let web = format!("{}/acme/web", registry.addr());
    // Configured by its annotations through a `useAnnotations` rule.
    let list = format!("web={web}:^1");
    create_app(
        &admin,
        &ns,
        "legacy",
        &[("team", "legacy")],
        &[("image-list", &list)],
        helm_tag("image.name", "image.tag", &web, "1.0.0"),
    )
    .await;
    // Selected by both ImageUpdaters: the first by name ("a-first") alone updates it.
    create_app(
        &admin,
        &ns,
        "shared",
        &[],
        &[],
        helm_tag("image.name", "image.tag", &web, "1.0.0"),
    )
    .await;
    let image =
        |constraint: &str| json!([{ "alias": "web", "imageName": format!("{web}:{constraint}") }]);
    create_image_updater(
        &admin,
        &ns,
        "a-first",
        json!({ "applicationRefs": [
            { "namePattern": "shared", "images": image("~1.0") },
            { "namePattern": "*", "labelSelectors": { "matchLabels": { "team": "legacy" } },
              "useAnnotations": true },
        ]}),
    )
    .await;
    create_image_updater(
        &admin,
        &ns,
        "b-second",
        json!({ "applicationRefs": [{ "namePattern": "sha*", "images": image("^2") }] }),
    )
    .await;

    let target = target(admin.clone(), &ns);
    let report = pipeline(&target).run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // No 1.0.x after 1.0.0: `shared` stays; `legacy` follows its annotation's ^1.
    assert_eq!(
        applied(&report),
        [format!(
            "argocd application/{ns}/legacy/web: {web}:1.0.0 -> {web}:1.1.0"
        )]
    );
    assert_eq!(report.tracked, 2);
    let problems: Vec<String> = target.problems().iter().map(ToString::to_string).collect();
    let expected = format!(
        "imageupdater {ns}/b-second: spec.applicationRefs[0].namePattern = \"sha*\": \
         Application shared is selected by ImageUpdater {ns}/a-first already, which alone \
         updates it"
    );
    assert_eq!(problems, std::slice::from_ref(&expected));
    assert_eq!(
        source(&admin, &ns, "shared").await["helm"]["parameters"][2]["value"],
        "1.0.0"
    );
    let first = image_updater(&admin, &ns, "a-first").await.data["status"].clone();
    assert_eq!(
        (
            first["applicationsMatched"].clone(),
            first["imagesManaged"].clone()
        ),
        (json!(2), json!(2))
    );
    let second = image_updater(&admin, &ns, "b-second").await.data["status"].clone();
    assert_eq!(second["applicationsMatched"], 0);
    assert_eq!(
        condition(&second, "Ready"),
        (
            "True".into(),
            "ReconcileCompletedWithErrors".into(),
            "Reconciled 0 applications with 1 errors, 0 images managed.".into()
        )
    );
    assert_eq!(
        condition(&second, "Error"),
        ("True".into(), "PartialErrors".into(), expected)
    );
}
