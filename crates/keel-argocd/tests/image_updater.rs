//! Image Updater 1.x `ImageUpdater` objects in a real kube-apiserver (with the Application
//! and ImageUpdater CRDs of this crate), images in a real registry, and full passes of the
//! keel-core pipeline over the target.
//!
//! Needs `eval "$(scripts/envtest env)"` and `scripts/registry-server install`; without the
//! API server binaries the tests return early after saying so.

mod common;

use std::sync::Arc;

use common::{
    App, applied, apps, argocd_target, assert_applied, create_apps, helm_value, pipeline, problems,
    run_without_problems, source, updated, web_registry,
};
use keel_argocd::{ArgoCdTarget, IMAGE_UPDATER_CRD, image_updater_resource};
use keel_core::Pipeline;
use keel_testsupport::kube::argocd::helm_parameters;
use keel_testsupport::kube::install_crd;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The shared API server with both CRDs served, a fresh namespace and an admin client.
async fn argocd_namespace(prefix: &str) -> Option<(String, Client)> {
    let (server, ns, client) = common::argocd_namespace(prefix).await?;
    install_crd(
        server,
        IMAGE_UPDATER_CRD,
        "argocd-image-updater.argoproj.io/v1alpha1",
        "imageupdaters",
    )
    .await;
    Some((ns, client))
}

fn image_updaters(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &image_updater_resource())
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

async fn image_updater(client: &Client, ns: &str, name: &str) -> DynamicObject {
    image_updaters(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get imageupdater {ns}/{name}: {e}"))
}

/// The status of ImageUpdater `name`.
async fn image_updater_status(client: &Client, ns: &str, name: &str) -> Value {
    image_updater(client, ns, name).await.data["status"].clone()
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

/// Runs `pipeline` once and asserts that it failed nowhere, applied nothing, tracked
/// `tracked` images and wrote no Application or ImageUpdater.
async fn assert_pass_writes_nothing(admin: &Client, ns: &str, pipeline: &Pipeline, tracked: usize) {
    let versions = resource_versions(admin, ns).await;
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(report.tracked, tracked);
    assert_eq!(resource_versions(admin, ns).await, versions);
}

fn helm_tag(repository_parameter: &str, tag_parameter: &str, web: &str, tag: &str) -> Value {
    let parameters = helm_parameters(&[
        ("replicaCount", "2"),
        (repository_parameter, web),
        (tag_parameter, tag),
    ]);
    json!({ "helm": { "parameters": parameters } })
}

/// A Helm Application reading the parameters `image.name` and `image.tag`, at `tag`.
fn image_tag_app<'a>(name: &'a str, web: &str, tag: &str) -> App<'a> {
    App {
        name,
        source: helm_tag("image.name", "image.tag", web, tag),
        ..App::default()
    }
}

fn target(client: Client, ns: &str) -> Arc<ArgoCdTarget> {
    Arc::new(argocd_target(client, ns).with_image_updaters(true))
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

/// Asserts the whole condition `type_` of a status.
#[track_caller]
fn assert_condition(status: &Value, type_: &str, want: (&str, &str, &str)) {
    let (state, reason, message) = condition(status, type_);
    assert_eq!(
        (state.as_str(), reason.as_str(), message.as_str()),
        want,
        "{type_}"
    );
}

/// Asserts that a status reports a problem of its ImageUpdater: no Application matched, the
/// `Ready` condition `ready` and the `Error` condition `True` with `error` (reason, message).
#[track_caller]
fn assert_reports_problem(status: &Value, ready: (&str, &str, &str), error: (&str, &str)) {
    assert_eq!(status["applicationsMatched"], 0, "{status}");
    assert_condition(status, "Ready", ready);
    assert_condition(status, "Error", ("True", error.0, error.1));
}

#[tokio::test]
async fn an_image_updater_updates_exactly_the_applications_it_selects() {
    let Some((ns, admin)) = argocd_namespace("argo-iu").await else {
        return;
    };
    let (_registry, web) = web_registry(&["1.2.3", "1.2.9", "1.3.0", "2.0.0"]).await;

    // Selected by name: Helm, custom parameter names. web-1 also carries 0.x annotations
    // asking for ^2, which the ImageUpdater overrides.
    let list = format!("web={web}:^2");
    let custom = || helm_tag("app.repository", "app.version", &web, "1.2.3");
    create_apps(
        &admin,
        &ns,
        [
            App::new("web-1", &[("image-list", &list)], custom()),
            App::new("web-2", &[], custom()),
            // Selected by label: Kustomize, a name override, another strategy.
            App {
                name: "api",
                labels: &[("updates", "alphabetical")],
                source: json!({
                    "kustomize": { "images": ["redis:7", format!("acme/web={web}:1.2.3")] },
                }),
                ..App::default()
            },
            // Matched by neither rule: untouched.
            App {
                name: "other",
                labels: &[("updates", "none")],
                source: custom(),
                ..App::default()
            },
        ],
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
    let report = run_without_problems(&pipeline, &target).await;
    // semver ^1 without 1.3.* (the ImageUpdater-wide ignoreTags) → 1.2.9; alphabetical with
    // the image's empty ignoreTags → 2.0.0.
    assert_eq!(
        applied(&report),
        [
            updated(&ns, "api", &web, "1.2.3", "2.0.0"),
            updated(&ns, "web-1", &web, "1.2.3", "1.2.9"),
            updated(&ns, "web-2", &web, "1.2.3", "1.2.9"),
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
            "helm": { "parameters": helm_parameters(&[
                ("replicaCount", "2"),
                ("app.repository", &web),
                ("app.version", "1.2.3"),
            ])},
        })
    );

    let iu = image_updater(&admin, &ns, "web").await;
    let status = &iu.data["status"];
    assert_eq!(status["observedGeneration"], json!(iu.metadata.generation));
    assert_eq!(status["applicationsMatched"], 3);
    assert_eq!(status["imagesManaged"], 3);
    assert_condition(
        status,
        "Ready",
        (
            "True",
            "ReconcileSucceeded",
            "Reconciled 3 applications, 3 images managed.",
        ),
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
    assert_pass_writes_nothing(&admin, &ns, &pipeline, 3).await;
}

#[tokio::test]
async fn a_bad_image_updater_is_reported_and_updates_nothing_while_another_works() {
    let Some((ns, admin)) = argocd_namespace("argo-iu-bad").await else {
        return;
    };
    let (_registry, web) = web_registry(&["1.0.0", "1.1.0"]).await;
    let table = ["bad-1", "good-1"].map(|name| image_tag_app(name, &web, "1.0.0"));
    create_apps(&admin, &ns, table).await;
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
    assert_applied(&report, &[updated(&ns, "good-1", &web, "1.0.0", "1.1.0")]);
    let problems = problems(&target);
    let expected = format!(
        "imageupdater {ns}/broken: spec.applicationRefs[0].images[0].commonUpdateSettings\
         .updateStrategy = \"fastest\": expected `semver`, `newest-build` (or `latest`), \
         `digest` or `alphabetical` (or `name`)"
    );
    assert_eq!(problems, std::slice::from_ref(&expected));
    for (name, tag) in [("bad-1", "1.0.0"), ("good-1", "1.1.0")] {
        assert_eq!(helm_value(&admin, &ns, name, 2).await, tag, "{name}");
    }

    let broken = image_updater_status(&admin, &ns, "broken").await;
    let failed = format!("Reconciliation failed: {expected}");
    let ready = ("False", "ReconcileFailed", failed.as_str());
    assert_reports_problem(&broken, ready, ("ReconcileError", &expected));
    assert!(broken["recentUpdates"].is_null(), "{broken}");
    let working = image_updater_status(&admin, &ns, "working").await;
    assert_eq!(working["applicationsMatched"], 1);
    assert_eq!(condition(&working, "Ready").1, "ReconcileSucceeded");
    assert_eq!(working["recentUpdates"][0]["newVersion"], "1.1.0");
}

#[tokio::test]
async fn by_default_only_annotations_count() {
    let Some((ns, admin)) = argocd_namespace("argo-iu-off").await else {
        return;
    };
    let (_registry, web) = web_registry(&["1.0.0", "1.1.0"]).await;
    create_apps(&admin, &ns, [image_tag_app("web", &web, "1.0.0")]).await;
    create_image_updater(
        &admin,
        &ns,
        "web",
        json!({ "applicationRefs": [{ "namePattern": "*",
            "images": [{ "alias": "web", "imageName": web }] }] }),
    )
    .await;
    let target = Arc::new(ArgoCdTarget::new(admin.clone()).with_namespace(&ns));
    assert_pass_writes_nothing(&admin, &ns, &pipeline(&target), 0).await;
}

#[tokio::test]
async fn overlapping_image_updaters_and_use_annotations() {
    let Some((ns, admin)) = argocd_namespace("argo-iu-overlap").await else {
        return;
    };
    let (_registry, web) = web_registry(&["1.0.0", "1.1.0", "2.0.0"]).await;
    // Configured by its annotations through a `useAnnotations` rule.
    let list = format!("web={web}:^1");
    create_apps(
        &admin,
        &ns,
        [
            App {
                labels: &[("team", "legacy")],
                annotations: &[("image-list", &list)],
                ..image_tag_app("legacy", &web, "1.0.0")
            },
            // Selected by both ImageUpdaters: the first by name ("a-first") alone updates it.
            image_tag_app("shared", &web, "1.0.0"),
        ],
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
    // No 1.0.x after 1.0.0: `shared` stays; `legacy` follows its annotation's ^1.
    let report = pipeline(&target).run_once().await;
    assert_applied(&report, &[updated(&ns, "legacy", &web, "1.0.0", "1.1.0")]);
    assert_eq!(report.tracked, 2);
    let problems = problems(&target);
    let expected = format!(
        "imageupdater {ns}/b-second: spec.applicationRefs[0].namePattern = \"sha*\": \
         Application shared is selected by ImageUpdater {ns}/a-first already, which alone \
         updates it"
    );
    assert_eq!(problems, std::slice::from_ref(&expected));
    assert_eq!(helm_value(&admin, &ns, "shared", 2).await, "1.0.0");
    let first = image_updater_status(&admin, &ns, "a-first").await;
    assert_eq!(
        (
            first["applicationsMatched"].clone(),
            first["imagesManaged"].clone()
        ),
        (json!(2), json!(2))
    );
    let second = image_updater_status(&admin, &ns, "b-second").await;
    let ready = (
        "True",
        "ReconcileCompletedWithErrors",
        "Reconciled 0 applications with 1 errors, 0 images managed.",
    );
    assert_reports_problem(&second, ready, ("PartialErrors", &expected));
}
