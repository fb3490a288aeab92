//! Argo CD Applications in a real kube-apiserver (with the Application CRD of this crate),
//! images in a real registry, and full passes of the keel-core pipeline over the target.
//!
//! Needs `eval "$(scripts/envtest env)"` and `scripts/registry-server install`; without the
//! API server binaries the tests return early after saying so.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    App, PREFIX, app, applied, apps, argocd_namespace, argocd_target, assert_applied, helm_value,
    pipeline, problems, run_without_problems, source, updated, web_registry,
};
use keel_argocd::ArgoCdTarget;
use keel_core::{ApplyOutcome, Error, ImageRef, Target, UpdatePlan};
use keel_testsupport::kube::{ApiServer, create_docker_config_secret, create_secret};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::Client;
use kube::api::Patch;
use serde_json::{Value, json};

/// Creates the Applications of `table`, each source at `targetRevision` `HEAD`.
async fn create_apps(client: &Client, ns: &str, table: impl IntoIterator<Item = App<'_>>) {
    let table = table.into_iter().map(|mut app| {
        app.source["targetRevision"] = json!("HEAD");
        app
    });
    common::create_apps(client, ns, table).await;
}

fn helm(parameters: Value) -> Value {
    json!({ "helm": { "parameters": parameters } })
}

/// A Helm source with the one parameter `image.tag`.
fn helm_tag(tag: &str) -> Value {
    helm(json!([{ "name": "image.tag", "value": tag }]))
}

fn kustomize(images: &[&str]) -> Value {
    json!({ "kustomize": { "images": images } })
}

fn target(client: Client, ns: &str) -> Arc<ArgoCdTarget> {
    Arc::new(argocd_target(client, ns))
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[tokio::test]
async fn helm_applications_get_their_parameters_set_and_nothing_else() {
    let Some((_, ns, admin)) = argocd_namespace("argo-helm").await else {
        return;
    };
    let (_registry, web) = web_registry(&["1.2.3", "1.2.9", "1.3.0", "2.0.0", "1.2.10-rc.1"]).await;
    let list = format!("web={web}:~1.2");
    let helm_status =
        json!({ "sourceType": "Helm", "summary": { "images": [format!("{web}:1.2.3")] } });
    create_apps(
        &admin,
        &ns,
        [
            // Default parameter names, among others that must stay as they are.
            App::new(
                "default-names",
                &[("image-list", &list)],
                helm(json!([
                    { "name": "replicaCount", "value": "2" },
                    { "name": "image.name", "value": web },
                    { "name": "image.tag", "value": "1.2.3" },
                    { "name": "ingress.enabled", "value": "true", "forceString": false },
                ])),
            )
            .with_status(helm_status.clone()),
            // Custom names, the tag parameter not set yet: what runs comes from the status.
            App::new(
                "custom-names",
                &[
                    ("image-list", &format!("{web}:^1")),
                    ("web.helm.image-name", "app.repository"),
                    ("web.helm.image-tag", "app.version"),
                ],
                helm(json!([{ "name": "app.replicas", "value": "3" }])),
            )
            .with_status(helm_status),
            // One parameter with the whole reference.
            App::new(
                "image-spec",
                &[("image-list", &list), ("web.helm.image-spec", "app.image")],
                helm(json!([
                    { "name": "app.image", "value": format!("{web}:1.2.3") },
                    { "name": "app.port", "value": "8080" },
                ])),
            ),
        ],
    )
    .await;

    let target = target(admin.clone(), &ns);
    let pipeline = pipeline(&target);
    let report = run_without_problems(&pipeline, &target).await;
    assert_applied(
        &report,
        &[
            updated(&ns, "custom-names", &web, "1.2.3", "1.3.0"),
            updated(&ns, "default-names", &web, "1.2.3", "1.2.9"),
            updated(&ns, "image-spec", &web, "1.2.3", "1.2.9"),
        ],
    );
    for (name, parameters) in [
        (
            "default-names",
            json!([
                { "name": "replicaCount", "value": "2" },
                { "name": "image.name", "value": web, "forceString": true },
                { "name": "image.tag", "value": "1.2.9", "forceString": true },
                { "name": "ingress.enabled", "value": "true", "forceString": false },
            ]),
        ),
        (
            "custom-names",
            json!([
                { "name": "app.replicas", "value": "3" },
                { "name": "app.repository", "value": web, "forceString": true },
                { "name": "app.version", "value": "1.3.0", "forceString": true },
            ]),
        ),
    ] {
        let written = &source(&admin, &ns, name).await["helm"]["parameters"];
        assert_eq!(written, &parameters, "{name}");
    }
    let spec = source(&admin, &ns, "image-spec").await;
    assert_eq!(
        spec["helm"]["parameters"],
        json!([
            { "name": "app.image", "value": format!("{web}:1.2.9"), "forceString": true },
            { "name": "app.port", "value": "8080" },
        ])
    );
    // The rest of the source is untouched.
    assert_eq!(spec["repoURL"], "https://git.example/acme/deploy.git");
    assert_eq!(spec["path"], "apps/image-spec");
    let managers: Vec<String> = app(&admin, &ns, "default-names")
        .await
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "keel"), "{managers:?}");

    // A second pass finds nothing to do and writes nothing.
    let versions: Vec<Option<String>> = resource_versions(&admin, &ns).await;
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(report.tracked, 3);
    assert_eq!(resource_versions(&admin, &ns).await, versions);

    // Applying a plan that was applied already is idempotent.
    let plan = UpdatePlan {
        target: "argocd".into(),
        id: format!("application/{ns}/default-names/web"),
        current: image(&format!("{web}:1.2.3")),
        new: image(&format!("{web}:1.2.9")),
    };
    assert_eq!(
        target.apply(&plan).await.unwrap(),
        ApplyOutcome::AlreadyCurrent
    );
    assert_eq!(resource_versions(&admin, &ns).await, versions);
}

/// The resourceVersion of every Application in `ns`, by name.
async fn resource_versions(client: &Client, ns: &str) -> Vec<Option<String>> {
    let mut list: Vec<(String, Option<String>)> = apps(client, ns)
        .list(&Default::default())
        .await
        .expect("list applications")
        .items
        .into_iter()
        .map(|a| {
            (
                a.metadata.name.unwrap_or_default(),
                a.metadata.resource_version,
            )
        })
        .collect();
    list.sort();
    list.into_iter().map(|(_, v)| v).collect()
}

#[tokio::test]
async fn kustomize_applications_follow_every_strategy() {
    let Some((_, ns, admin)) = argocd_namespace("argo-kustomize").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "acme/names",
        &["build-a", "build-c", "build-b"],
    )
    .await;
    let addr = registry.addr().to_owned();
    registry
        .push_images(
            "acme/builds",
            &[
                ("main-1111", "2024-01-01T00:00:00Z"),
                ("main-3333", "2024-03-01T00:00:00Z"),
                ("main-2222", "2024-02-01T00:00:00Z"),
            ],
        )
        .await;
    let first = registry
        .push_tags("acme/stable", &["stable"])
        .await
        .remove(0);
    registry
        .push_tags("acme/api", &["1.0.0", "1.1.0", "2.0.0"])
        .await;

    let newest_status =
        json!({ "summary": { "images": [format!("{addr}/acme/builds:main-1111")] } });
    let renamed_status = json!({
        "sourceType": "Kustomize",
        "summary": { "images": [format!("{addr}/acme/api:1.0.0")] },
    });
    create_apps(
        &admin,
        &ns,
        [
            App::new(
                "alphabetical",
                &[
                    ("image-list", &format!("names={addr}/acme/names")),
                    ("names.update-strategy", "name"),
                ],
                kustomize(&[
                    "nginx:1.25",
                    &format!("{addr}/acme/names:build-a"),
                    "redis=redis:7",
                ]),
            ),
            // What runs only in the status: the override is added.
            App::new(
                "newest",
                &[
                    ("image-list", &format!("{addr}/acme/builds")),
                    ("builds.update-strategy", "latest"),
                ],
                json!({ "kustomize": {} }),
            )
            .with_status(newest_status),
            App::new(
                "digest",
                &[
                    ("image-list", &format!("s={addr}/acme/stable:stable")),
                    ("s.update-strategy", "digest"),
                ],
                kustomize(&[&format!("{addr}/acme/stable:stable")]),
            ),
            // The source type from the status alone, and an override of another image name.
            App::new(
                "renamed",
                &[
                    ("image-list", &format!("api={addr}/acme/api:1.x")),
                    ("api.kustomize.image-name", "acme/api-base"),
                ],
                json!({}),
            )
            .with_status(renamed_status),
        ],
    )
    .await;

    let target = target(admin.clone(), &ns);
    let pipeline = pipeline(&target);
    let report = run_without_problems(&pipeline, &target).await;
    assert_eq!(report.applied.len(), 4, "{:?}", applied(&report));
    let images = async |name: &str| source(&admin, &ns, name).await["kustomize"]["images"].clone();
    for (name, want) in [
        (
            "alphabetical",
            json!([
                "nginx:1.25",
                format!("{addr}/acme/names:build-c"),
                "redis=redis:7"
            ]),
        ),
        ("newest", json!([format!("{addr}/acme/builds:main-3333")])),
        (
            "digest",
            json!([format!("{addr}/acme/stable:stable@{first}")]),
        ),
        (
            "renamed",
            json!([format!("acme/api-base={addr}/acme/api:1.1.0")]),
        ),
    ] {
        assert_eq!(images(name).await, want, "{name}");
    }

    // Nothing moved: nothing to do. Then the followed tag is pushed again.
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.applied.is_empty(), "{:?}", applied(&report));
    let second = registry.push_tags("acme/stable", &["next"]).await.remove(0);
    assert_ne!(first, second);
    registry.retag("acme/stable", "next", "stable").await;
    // A fresh registry client: the first one may answer from its digest cache for a while.
    let report = self::pipeline(&target).run_once().await;
    assert_applied(
        &report,
        &[format!(
            "argocd application/{ns}/digest/s: {addr}/acme/stable:stable@{first} -> \
             {addr}/acme/stable:stable@{second}"
        )],
    );
    assert_eq!(
        images("digest").await,
        json!([format!("{addr}/acme/stable:stable@{second}")])
    );
}

#[tokio::test]
async fn allow_tags_and_ignore_tags_narrow_the_choice() {
    let Some((_, ns, admin)) = argocd_namespace("argo-filters").await else {
        return;
    };
    let (_registry, web) =
        web_registry(&["1.0.0", "1.2.0", "1.3.0", "1.3.1", "2.0.0", "1.4.0-debug"]).await;
    let list = format!("web={web}");
    create_apps(
        &admin,
        &ns,
        [
            App::new(
                "filtered",
                &[
                    ("image-list", &list),
                    ("web.allow-tags", r"regexp:^1\.[0-9]+\.[0-9]+"),
                    ("web.ignore-tags", "1.3.*, *-debug"),
                ],
                helm_tag("1.0.0"),
            ),
            App::new("unfiltered", &[("image-list", &list)], helm_tag("1.0.0")),
        ],
    )
    .await;
    let target = target(admin.clone(), &ns);
    let report = pipeline(&target).run_once().await;
    assert_applied(
        &report,
        &[
            updated(&ns, "filtered", &web, "1.0.0", "1.2.0"),
            updated(&ns, "unfiltered", &web, "1.0.0", "2.0.0"),
        ],
    );
}

#[tokio::test]
async fn platforms_leave_out_the_tags_not_built_for_them() {
    let Some((_, ns, admin)) = argocd_namespace("argo-platforms").await else {
        return;
    };
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    let created = "2024-03-01T10:00:00Z";
    for tag in ["1.0.0", "1.1.0"] {
        registry
            .push_index(
                "acme/web",
                tag,
                &[("linux/amd64", created), ("linux/arm64/v8", created)],
            )
            .await;
    }
    registry
        .push_index("acme/web", "1.2.0", &[("linux/amd64", created)])
        .await;
    registry
        .push_image("acme/web", "1.3.0", created, "linux/amd64")
        .await;
    let web = format!("{}/acme/web", registry.addr());
    let list = format!("web={web}");
    create_apps(
        &admin,
        &ns,
        [
            App::new(
                "arm",
                &[("image-list", &list), ("web.platforms", "linux/arm64")],
                helm_tag("1.0.0"),
            ),
            App::new(
                "either",
                &[
                    ("image-list", &list),
                    ("web.platforms", "linux/arm/v7, linux/amd64"),
                ],
                helm_tag("1.0.0"),
            ),
            App::new("any", &[("image-list", &list)], helm_tag("1.0.0")),
        ],
    )
    .await;
    let target = target(admin.clone(), &ns);
    let report = run_without_problems(&pipeline(&target), &target).await;
    assert_applied(
        &report,
        &[
            updated(&ns, "any", &web, "1.0.0", "1.3.0"),
            updated(&ns, "arm", &web, "1.0.0", "1.1.0"),
            updated(&ns, "either", &web, "1.0.0", "1.3.0"),
        ],
    );
}

/// An admin client whose first PATCH of application `name` is preceded by `patch`, written
/// by another client.
fn changed_before_first_patch(
    server: &ApiServer,
    admin: &Client,
    ns: &str,
    name: &str,
    patch: Value,
) -> (Client, Arc<AtomicUsize>) {
    server.racing_object_client(&apps(admin, ns), name, move |n| {
        (n == 0).then(|| Patch::Merge(patch.clone()))
    })
}

#[tokio::test]
async fn a_concurrent_change_is_read_again_and_a_moved_image_is_a_conflict() {
    let Some((server, ns, admin)) = argocd_namespace("argo-race").await else {
        return;
    };
    let web = "registry.example/acme/web";
    let list = format!("web={web}");
    let annotations = [("image-list", list.as_str())];
    let table = ["relabelled", "moved", "busy"].map(|name| App {
        name,
        annotations: &annotations,
        source: helm(json!([
            { "name": "image.tag", "value": "1.0.0" },
            { "name": "replicaCount", "value": "2" },
        ])),
        ..App::default()
    });
    create_apps(&admin, &ns, table).await;
    let plan = |name: &str| UpdatePlan {
        target: "argocd".into(),
        id: format!("application/{ns}/{name}/web"),
        current: image(&format!("{web}:1.0.0")),
        new: image(&format!("{web}:1.1.0")),
    };

    // Someone labels the Application between our read and our write: read again, write.
    let (client, patches) = changed_before_first_patch(
        server,
        &admin,
        &ns,
        "relabelled",
        json!({ "metadata": { "labels": { "team": "web" } } }),
    );
    let racing = target(client, &ns);
    assert_eq!(
        racing.apply(&plan("relabelled")).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(patches.load(Ordering::SeqCst), 2);
    let after = app(&admin, &ns, "relabelled").await;
    assert_eq!(
        after
            .metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(
        after.data["spec"]["source"]["helm"]["parameters"],
        json!([
            { "name": "image.tag", "value": "1.1.0", "forceString": true },
            { "name": "replicaCount", "value": "2" },
            { "name": "image.name", "value": web, "forceString": true },
        ])
    );

    // Someone moves the image meanwhile: what the plan expected no longer runs.
    let (client, _) = changed_before_first_patch(
        server,
        &admin,
        &ns,
        "moved",
        json!({ "spec": { "source": { "helm": { "parameters": [
            { "name": "image.tag", "value": "1.0.5" },
            { "name": "replicaCount", "value": "2" },
        ] } } } }),
    );
    let racing = target(client, &ns);
    let err = racing.apply(&plan("moved")).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("1.0.5"), "{err}");
    assert_eq!(helm_value(&admin, &ns, "moved", 0).await, "1.0.5");

    // An Application that changes at every write: a conflict after the attempts.
    let (client, patches) = server.racing_object_client(&apps(&admin, &ns), "busy", |n| {
        Some(Patch::Merge(
            json!({ "metadata": { "labels": { "n": n.to_string() } } }),
        ))
    });
    let racing = Arc::new(
        ArgoCdTarget::new(client)
            .with_namespace(&ns)
            .with_attempts(3),
    );
    let err = racing.apply(&plan("busy")).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(patches.load(Ordering::SeqCst), 3);
    assert_eq!(helm_value(&admin, &ns, "busy", 0).await, "1.0.0");

    // Unknown ids.
    let target = target(admin.clone(), &ns);
    for id in [
        format!("application/{ns}/missing/web"),
        format!("application/{ns}/moved/other"),
        "deployment/x/y/z".to_owned(),
    ] {
        let err = target
            .apply(&UpdatePlan {
                id: id.clone(),
                ..plan("moved")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{id}: {err:?}");
    }
}

#[tokio::test]
async fn a_bad_annotation_skips_only_its_application() {
    let Some((_, ns, admin)) = argocd_namespace("argo-bad").await else {
        return;
    };
    let (_registry, web) = web_registry(&["1.0.0", "1.1.0"]).await;
    let list = format!("web={web}");
    create_apps(
        &admin,
        &ns,
        [
            App::new("good", &[("image-list", &list)], helm_tag("1.0.0")),
            App::new(
                "bad",
                &[("image-list", &list), ("web.update-strategy", "bogus")],
                helm_tag("1.0.0"),
            ),
            // Nothing says what runs: that image alone is not tracked.
            App::new("unknown", &[("image-list", &list)], helm(json!([]))),
            // Not annotated: not looked at.
            App::new("plain", &[], helm_tag("1.0.0")),
        ],
    )
    .await;

    let target = target(admin.clone(), &ns);
    let report = pipeline(&target).run_once().await;
    assert_applied(&report, &[updated(&ns, "good", &web, "1.0.0", "1.1.0")]);
    assert_eq!(
        problems(&target),
        [
            format!(
                "application {ns}/bad: {PREFIX}web.update-strategy = \"bogus\": expected \
                 `semver`, `newest-build` (or `latest`), `digest` or `alphabetical` (or `name`)"
            ),
            format!(
                "application {ns}/unknown: {PREFIX}image-list = \"web\": no Helm parameter \
                 `image.tag` and no image of {web} in status.summary.images: what runs is not \
                 known"
            ),
        ]
    );
    for name in ["bad", "plain"] {
        assert_eq!(helm_value(&admin, &ns, name, 0).await, "1.0.0", "{name}");
    }
}

#[tokio::test]
async fn pull_secrets_reach_their_registry_and_a_wrong_one_updates_nothing() {
    let Some((_, ns, admin)) = argocd_namespace("argo-auth").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::htpasswd("bot", "s3cret"),
        "acme/private",
        &["1.0.0", "1.1.0"],
    )
    .await;
    registry.push_tags("acme/other", &["1.0.0", "1.1.0"]).await;
    let addr = registry.addr().to_owned();
    create_docker_config_secret(&admin, &ns, "regcred", &addr, "bot", "s3cret").await;
    create_secret(&admin, &ns, "wrong", &[("creds", "bot:not-the-password")]).await;
    let private = format!("p={addr}/acme/private");
    let other = format!("o={addr}/acme/other");
    create_apps(
        &admin,
        &ns,
        [
            App::new(
                "private",
                &[
                    ("image-list", &private),
                    ("p.pull-secret", &format!("pullsecret:{ns}/regcred")),
                ],
                helm_tag("1.0.0"),
            ),
            App::new(
                "wrong",
                &[
                    ("image-list", &other),
                    ("o.pull-secret", &format!("secret:{ns}/wrong#creds")),
                ],
                helm_tag("1.0.0"),
            ),
            App::new(
                "missing",
                &[
                    ("image-list", &other),
                    ("o.pull-secret", &format!("pullsecret:{ns}/absent")),
                ],
                helm_tag("1.0.0"),
            ),
        ],
    )
    .await;

    let target = target(admin.clone(), &ns);
    let report = pipeline(&target).run_once().await;
    assert_eq!(
        applied(&report),
        [format!(
            "argocd application/{ns}/private/p: {addr}/acme/private:1.0.0 -> \
             {addr}/acme/private:1.1.0"
        )]
    );
    let failures: Vec<(Option<String>, &Error)> = report
        .failures
        .iter()
        .map(|f| (f.id.clone(), &f.error))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, Some(format!("application/{ns}/wrong/o")));
    assert!(
        matches!(failures[0].1, Error::Unauthorized { .. }),
        "{:?}",
        failures[0].1
    );
    assert!(!format!("{:?}", report.failures).contains("not-the-password"));
    assert_eq!(helm_value(&admin, &ns, "wrong", 0).await, "1.0.0");
    let problems = problems(&target);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!(
            "application {ns}/missing: {PREFIX}o.pull-secret = \"pullsecret:{ns}/absent\": "
        )) && problems[0].contains("not found"),
        "{problems:?}"
    );
    assert_eq!(helm_value(&admin, &ns, "missing", 0).await, "1.0.0");
}
