//! The reflector against a real kube-apiserver (Flux's CRDs from `crds/`) and real registries:
//! the statuses Flux users read after each pass.
//!
//! Run `eval "$(scripts/envtest env)"` first; without the API server binaries the tests skip.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{assert_ready, at, ready};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_flux::reflector::{GROUP, Namespaces, Outcome, Reflector, ReflectorReport};
use keel_k8s::{PullSecrets, SecretRef};
use keel_registry::RegistryClient;
use keel_testsupport::kube::{ApiServer, install_crd, wait_until};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

const REPOSITORIES: &str = "imagerepositories";
const POLICIES: &str = "imagepolicies";

fn resource(version: &str, plural: &str) -> ApiResource {
    let kind = if plural == REPOSITORIES {
        "ImageRepository"
    } else {
        "ImagePolicy"
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, version, kind), plural)
}

static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Installs the CRDs of `keel_flux::crds` once per test binary and waits until both
/// versions are served.
async fn install_crds(server: &ApiServer) {
    CRDS.get_or_init(|| async {
        let crds = [
            (keel_flux::crds::IMAGE_REPOSITORY_CRD, REPOSITORIES),
            (keel_flux::crds::IMAGE_POLICY_CRD, POLICIES),
        ];
        for (yaml, plural) in crds {
            for version in ["v1", "v1beta2"] {
                install_crd(server, yaml, &format!("{GROUP}/{version}"), plural).await;
            }
        }
    })
    .await;
}

/// A fresh namespace with the CRDs installed, and an admin client.
async fn setup(prefix: &str) -> Option<(String, Client)> {
    let (server, namespace, client) = ApiServer::shared_namespace(prefix).await?;
    install_crds(server).await;
    Some((namespace, client))
}

/// A registry client for tests: no cache (each pass asks the registry) and one quick retry.
fn registry_client(secrets: Option<&PullSecrets>) -> Arc<RegistryClient> {
    let mut builder = RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_retries(1, Duration::from_millis(10), Duration::from_millis(50))
        .with_timeout(Duration::from_secs(10));
    if let Some(secrets) = secrets {
        builder = builder.with_credential_source(Arc::new(secrets.clone()));
    }
    Arc::new(builder.build().expect("registry client"))
}

/// Creates an object of `plural` in `version` from `spec` (and `metadata` extras).
async fn create(client: &Client, ns: &str, version: &str, plural: &str, name: &str, spec: Value) {
    let ar = resource(version, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let mut object = DynamicObject::new(name, &ar).within(ns);
    object.data = json!({ "spec": spec });
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {plural} {ns}/{name} ({version}): {e}"));
}

/// Creates each `(version, plural, name, spec)` in turn.
async fn create_all<'a>(
    client: &Client,
    ns: &str,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a str, Value)>,
) {
    for (version, plural, name, spec) in objects {
        create(client, ns, version, plural, name, spec).await;
    }
}

/// Merge-patches the spec of an object (a new generation).
async fn patch_spec(client: &Client, ns: &str, plural: &str, name: &str, spec: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource("v1", plural));
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch {plural} {ns}/{name}: {e}"));
}

/// The object as the API server serves it in v1.
async fn get(client: &Client, ns: &str, plural: &str, name: &str) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource("v1", plural));
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("get {plural} {ns}/{name}: {e}"))
}

async fn status(client: &Client, ns: &str, plural: &str, name: &str) -> Value {
    get(client, ns, plural, name)
        .await
        .data
        .get("status")
        .cloned()
        .unwrap_or(Value::Null)
}

fn outcome<'r>(report: &'r ReflectorReport, plural: &str, ns: &str, name: &str) -> &'r Outcome {
    let found = if plural == REPOSITORIES {
        report.repository(ns, name)
    } else {
        report.policy(ns, name)
    };
    &found
        .unwrap_or_else(|| panic!("{plural} {ns}/{name} not in the report: {report:?}"))
        .outcome
}

/// A registry without authentication serving `repository` with `tags`, and the name of that
/// image in it.
async fn plain_registry(repository: &str, tags: &[&str]) -> (RegistryServer, String) {
    let registry = RegistryServer::with_tags(ServerOptions::plain(), repository, tags).await;
    let image = format!("{}/{repository}", registry.addr());
    (registry, image)
}

/// The digest `repository:tag` has in the registry now.
async fn head_digest(registry: &RegistryServer, repository: &str, tag: &str) -> String {
    registry
        .seeder()
        .head_digest(repository, tag)
        .await
        .unwrap_or_else(|| panic!("no {repository}:{tag} in the registry"))
}

fn ready_true(status: &Value) -> bool {
    ready(status).0 == "True"
}

#[tokio::test]
async fn repositories_are_scanned_and_policies_resolved_as_flux_reports_them() {
    let Some((ns, client)) = setup("flux-reflect").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "team/app",
        &[
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0",
            "1.3.0-rc.1",
            "latest",
            "sha256-ab.sig",
        ],
    )
    .await;
    let app_digests = registry.seeder().push_tags("team/app", &["1.9.0"]).await;
    let build_tags = [
        "main-aaa-100",
        "main-bbb-20",
        "main-ccc-300",
        "feature-x-999",
        "tool.sig",
    ];
    let build_digests = registry
        .seeder()
        .push_tags("team/builds", &build_tags)
        .await;
    let app = format!("{}/team/app", registry.addr());
    let builds = format!("{}/team/builds", registry.addr());

    // One repository created as v1 (default exclusion list), one as v1beta2 (its own).
    create_all(
        &client,
        &ns,
        [
            (
                "v1",
                REPOSITORIES,
                "app",
                json!({"image": app, "interval": "5m"}),
            ),
            (
                "v1beta2",
                REPOSITORIES,
                "builds",
                json!({"image": builds, "interval": "5m", "exclusionList": ["^feature-"]}),
            ),
            (
                "v1",
                POLICIES,
                "semver",
                json!({
                    "imageRepositoryRef": {"name": "app"},
                    "policy": {"semver": {"range": ">=1.0.0 <2.0.0"}},
                    "digestReflectionPolicy": "IfNotPresent",
                }),
            ),
            (
                "v1",
                POLICIES,
                "alphabetical",
                json!({
                    "imageRepositoryRef": {"name": "app", "namespace": ns},
                    "policy": {"alphabetical": {"order": "desc"}},
                }),
            ),
            (
                "v1beta2",
                POLICIES,
                "numerical",
                json!({
                    "imageRepositoryRef": {"name": "builds"},
                    "policy": {"numerical": {}},
                    "filterTags": {"pattern": "^main-[a-z]+-(?P<ts>[0-9]+)$", "extract": "$ts"},
                    "digestReflectionPolicy": "Always",
                    "interval": "1m",
                }),
            ),
        ],
    )
    .await;

    let reflector = Reflector::new(
        client.clone(),
        Namespaces::only([&ns]),
        registry_client(None),
    );
    let now = at("2026-03-01T10:00:00Z");
    let report = reflector.reconcile(now).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let app_status = status(&client, &ns, REPOSITORIES, "app").await;
    let scan = &app_status["lastScanResult"];
    assert_eq!(scan["tagCount"], 7, "{app_status}");
    assert_eq!(scan["scanTime"], "2026-03-01T10:00:00Z");
    assert_eq!(
        scan["latestTags"],
        json!([
            "latest",
            "2.0.0",
            "1.9.0",
            "1.3.0-rc.1",
            "1.2.0",
            "1.10.0",
            "1.0.0"
        ])
    );
    assert!(scan["revision"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(app_status["canonicalImageName"], app);
    assert_eq!(app_status["observedExclusionList"], json!([r"^.*\.sig$"]));
    assert_eq!(app_status["observedGeneration"], 1);
    let message = assert_ready(&app_status, "True", "Succeeded", "");
    assert!(
        message.starts_with("successful scan: found 7 tags"),
        "{message}"
    );
    // Written by the field manager `keel`, status fields only (a write to the main resource
    // would not have changed the status at all: the CRD has the status subresource).
    let managed = get(&client, &ns, REPOSITORIES, "app")
        .await
        .metadata
        .managed_fields
        .unwrap_or_default();
    let keel: Vec<Value> = managed
        .iter()
        .filter(|f| f.manager.as_deref() == Some("keel"))
        .filter_map(|f| f.fields_v1.as_ref().map(|v| v.0.clone()))
        .collect();
    assert_eq!(keel.len(), 1, "{managed:?}");
    let fields: Vec<&String> = keel[0].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["f:status"], "{managed:?}");

    // The v1beta2 object is served and written in v1; its own exclusion list replaces the
    // default, so `tool.sig` stays.
    let builds_status = status(&client, &ns, REPOSITORIES, "builds").await;
    assert_eq!(
        builds_status["lastScanResult"]["tagCount"], 4,
        "{builds_status}"
    );
    assert_eq!(builds_status["observedExclusionList"], json!(["^feature-"]));
    assert_eq!(
        reflector.tags(&ns, "builds").unwrap(),
        ["tool.sig", "main-ccc-300", "main-bbb-20", "main-aaa-100"]
    );

    let semver = status(&client, &ns, POLICIES, "semver").await;
    let digest_1_10 = head_digest(&registry, "team/app", "1.10.0").await;
    assert_eq!(
        semver["latestRef"],
        json!({"name": app, "tag": "1.10.0", "digest": digest_1_10}),
        "{semver}"
    );
    assert!(semver.get("observedPreviousRef").is_none_or(Value::is_null));
    let message = assert_ready(&semver, "True", "Succeeded", "");
    assert_eq!(
        message,
        format!("Latest image tag for {app} resolved to 1.10.0 with digest {digest_1_10}")
    );

    // Never (the default): no digest.
    let alphabetical = status(&client, &ns, POLICIES, "alphabetical").await;
    assert_eq!(
        alphabetical["latestRef"],
        json!({"name": app, "tag": "1.0.0"})
    );

    let numerical = status(&client, &ns, POLICIES, "numerical").await;
    assert_eq!(
        numerical["latestRef"],
        json!({"name": builds, "tag": "main-ccc-300", "digest": build_digests[2]}),
        "{numerical}"
    );
    assert!(ready_true(&numerical));
    assert_ne!(app_digests[0], digest_1_10);

    // A minute later nothing is due and nothing changed: no write at all.
    let versions = |objects: Vec<DynamicObject>| -> Vec<Option<String>> {
        objects
            .into_iter()
            .map(|o| o.metadata.resource_version)
            .collect()
    };
    let mut before = Vec::new();
    for (plural, name) in [
        (REPOSITORIES, "app"),
        (REPOSITORIES, "builds"),
        (POLICIES, "semver"),
        (POLICIES, "alphabetical"),
        (POLICIES, "numerical"),
    ] {
        before.push(get(&client, &ns, plural, name).await);
    }
    let report = reflector.reconcile(at("2026-03-01T10:01:00Z")).await;
    for (plural, name, want) in [
        (REPOSITORIES, "app", Outcome::NotDue),
        (REPOSITORIES, "builds", Outcome::NotDue),
        (POLICIES, "semver", Outcome::Unchanged),
        (POLICIES, "alphabetical", Outcome::Unchanged),
        (POLICIES, "numerical", Outcome::Unchanged),
    ] {
        assert_eq!(outcome(&report, plural, &ns, name), &want, "{name}");
    }
    let mut after = Vec::new();
    for object in &before {
        let plural = if object
            .types
            .as_ref()
            .is_some_and(|t| t.kind == "ImageRepository")
        {
            REPOSITORIES
        } else {
            POLICIES
        };
        after.push(
            get(
                &client,
                &ns,
                plural,
                object.metadata.name.as_deref().unwrap(),
            )
            .await,
        );
    }
    assert_eq!(versions(before), versions(after));
}

#[tokio::test]
async fn digests_follow_the_reflection_policy_and_spec_changes_are_picked_up() {
    let Some((ns, client)) = setup("flux-digests").await else {
        return;
    };
    let (registry, image) = plain_registry("team/web", &["1.0.0", "1.1.0", "2.0.0"]).await;
    create(
        &client,
        &ns,
        "v1",
        REPOSITORIES,
        "web",
        json!({"image": image, "interval": "1m"}),
    )
    .await;
    for (name, reflection) in [("keep", "IfNotPresent"), ("always", "Always")] {
        let mut spec = json!({
            "imageRepositoryRef": {"name": "web"},
            "policy": {"semver": {"range": "1.x"}},
            "digestReflectionPolicy": reflection,
        });
        if reflection == "Always" {
            spec["interval"] = json!("10s");
        }
        create(&client, &ns, "v1", POLICIES, name, spec).await;
    }
    let reflector = Reflector::new(
        client.clone(),
        Namespaces::only([&ns]),
        registry_client(None),
    );
    reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    let first = head_digest(&registry, "team/web", "1.1.0").await;
    for name in ["keep", "always"] {
        let s = status(&client, &ns, POLICIES, name).await;
        assert_eq!(s["latestRef"]["tag"], "1.1.0", "{name}: {s}");
        assert_eq!(s["latestRef"]["digest"], first.as_str(), "{name}");
    }

    // 1.1.0 is pushed again: IfNotPresent keeps the digest it has, Always follows once its
    // interval (10s) has passed.
    let moved = registry
        .seeder()
        .move_tag("team/web", "1.1.0", "2026-02-01T00:00:00Z")
        .await;
    assert_ne!(moved, first);
    let report = reflector.reconcile(at("2026-03-01T10:00:05Z")).await;
    assert_eq!(
        outcome(&report, POLICIES, &ns, "always"),
        &Outcome::Unchanged
    );
    assert_eq!(
        status(&client, &ns, POLICIES, "always").await["latestRef"]["digest"],
        first.as_str()
    );
    let report = reflector.reconcile(at("2026-03-01T10:00:30Z")).await;
    assert_eq!(outcome(&report, REPOSITORIES, &ns, "web"), &Outcome::NotDue);
    assert_eq!(outcome(&report, POLICIES, &ns, "keep"), &Outcome::Unchanged);
    let keep = status(&client, &ns, POLICIES, "keep").await;
    assert_eq!(keep["latestRef"]["digest"], first.as_str());
    let always = status(&client, &ns, POLICIES, "always").await;
    assert_eq!(
        always["latestRef"],
        json!({"name": image, "tag": "1.1.0", "digest": moved})
    );
    assert_eq!(
        always["observedPreviousRef"],
        json!({"name": image, "tag": "1.1.0", "digest": first})
    );

    // A new tag shows after the interval; the previous choice is kept as observedPreviousRef.
    registry.seeder().push_tags("team/web", &["1.2.0"]).await;
    let report = reflector.reconcile(at("2026-03-01T10:00:59Z")).await;
    assert_eq!(outcome(&report, REPOSITORIES, &ns, "web"), &Outcome::NotDue);
    let report = reflector.reconcile(at("2026-03-01T10:01:00Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "web"),
        Outcome::Ready { .. }
    ));
    let keep = status(&client, &ns, POLICIES, "keep").await;
    assert_eq!(keep["latestRef"]["tag"], "1.2.0", "{keep}");
    assert_eq!(
        keep["observedPreviousRef"],
        json!({"name": image, "tag": "1.1.0", "digest": first})
    );
    let (_, _, message) = ready(&keep);
    assert!(
        message.ends_with(&format!("(previously {image}:1.1.0@{first})")),
        "{message}"
    );

    // A new range is a new generation, picked up on the next pass without a scan.
    patch_spec(
        &client,
        &ns,
        POLICIES,
        "keep",
        json!({"policy": {"semver": {"range": ">=2.0.0"}}}),
    )
    .await;
    let report = reflector.reconcile(at("2026-03-01T10:01:10Z")).await;
    assert_eq!(outcome(&report, REPOSITORIES, &ns, "web"), &Outcome::NotDue);
    let keep = get(&client, &ns, POLICIES, "keep").await;
    let keep_status = &keep.data["status"];
    assert_eq!(keep_status["latestRef"]["tag"], "2.0.0", "{keep_status}");
    assert_eq!(
        keep_status["observedGeneration"],
        json!(keep.metadata.generation)
    );
    assert_eq!(keep_status["observedGeneration"], 2);

    // A new exclusion list is a new generation of the repository: scanned at once.
    patch_spec(
        &client,
        &ns,
        REPOSITORIES,
        "web",
        json!({"exclusionList": ["^2\\."]}),
    )
    .await;
    let report = reflector.reconcile(at("2026-03-01T10:01:20Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "web"),
        Outcome::Ready { .. }
    ));
    let web = status(&client, &ns, REPOSITORIES, "web").await;
    assert_eq!(web["lastScanResult"]["tagCount"], 3, "{web}");
    assert_eq!(web["observedGeneration"], 2);
    // `flux reconcile image repository` (the requestedAt annotation) scans before the interval.
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("v1", REPOSITORIES));
    let annotate =
        json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now-1"}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(annotate))
        .await
        .unwrap();
    let report = reflector.reconcile(at("2026-03-01T10:01:25Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "web"),
        Outcome::Ready { .. }
    ));
    let web = status(&client, &ns, REPOSITORIES, "web").await;
    assert_eq!(web["lastHandledReconcileAt"], "now-1");
    assert_eq!(web["lastScanResult"]["scanTime"], "2026-03-01T10:01:25Z");
    let report = reflector.reconcile(at("2026-03-01T10:01:26Z")).await;
    assert_eq!(outcome(&report, REPOSITORIES, &ns, "web"), &Outcome::NotDue);

    // With 2.0.0 gone, the >=2.0.0 policy has no candidate: not ready, its tag kept.
    let keep = status(&client, &ns, POLICIES, "keep").await;
    assert_ready(
        &keep,
        "False",
        "Failure",
        "unable to determine latest version",
    );
    assert_eq!(keep["latestRef"]["tag"], "2.0.0");

    // Switched to Never: the digest is removed from latestRef, not left behind by the merge.
    patch_spec(
        &client,
        &ns,
        POLICIES,
        "always",
        json!({"digestReflectionPolicy": "Never", "interval": null}),
    )
    .await;
    reflector.reconcile(at("2026-03-01T10:01:30Z")).await;
    let always = status(&client, &ns, POLICIES, "always").await;
    assert_eq!(
        always["latestRef"],
        json!({"name": image, "tag": "1.2.0"}),
        "{always}"
    );
    assert_eq!(always["observedPreviousRef"]["tag"], "1.2.0");
    assert!(always["observedPreviousRef"]["digest"].is_string());
}

#[tokio::test]
async fn suspended_objects_keep_their_status_untouched() {
    let Some((ns, client)) = setup("flux-suspend").await else {
        return;
    };
    let (registry, image) = plain_registry("team/svc", &["1.0.0"]).await;
    create_all(
        &client,
        &ns,
        [
            (
                "v1",
                REPOSITORIES,
                "svc",
                json!({"image": image, "interval": "1m"}),
            ),
            (
                "v1",
                POLICIES,
                "svc",
                json!({"imageRepositoryRef": {"name": "svc"}, "policy": {"semver": {"range": "*"}}}),
            ),
            // Suspended from the start: never scanned, never written.
            (
                "v1",
                REPOSITORIES,
                "never",
                json!({"image": image, "interval": "1m", "suspend": true}),
            ),
        ],
    )
    .await;
    let reflector = Reflector::new(
        client.clone(),
        Namespaces::only([&ns]),
        registry_client(None),
    );
    let report = reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert_eq!(
        outcome(&report, REPOSITORIES, &ns, "never"),
        &Outcome::Suspended
    );
    assert!(reflector.tags(&ns, "never").is_none());
    let never = status(&client, &ns, REPOSITORIES, "never").await;
    assert!(
        never.get("lastScanResult").is_none() && never.get("conditions").is_none(),
        "{never}"
    );
    assert_eq!(
        status(&client, &ns, POLICIES, "svc").await["latestRef"]["tag"],
        "1.0.0"
    );

    // Both suspended, a new tag pushed, the interval past and the range changed: nothing moves.
    patch_spec(&client, &ns, REPOSITORIES, "svc", json!({"suspend": true})).await;
    patch_spec(
        &client,
        &ns,
        POLICIES,
        "svc",
        json!({"suspend": true, "policy": {"semver": {"range": "<1.0.0"}}}),
    )
    .await;
    registry.seeder().push_tags("team/svc", &["1.1.0"]).await;
    let repository_before = get(&client, &ns, REPOSITORIES, "svc").await;
    let policy_before = get(&client, &ns, POLICIES, "svc").await;
    let report = reflector.reconcile(at("2026-03-01T11:00:00Z")).await;
    assert_eq!(
        outcome(&report, REPOSITORIES, &ns, "svc"),
        &Outcome::Suspended
    );
    assert_eq!(outcome(&report, POLICIES, &ns, "svc"), &Outcome::Suspended);
    let repository_after = get(&client, &ns, REPOSITORIES, "svc").await;
    let policy_after = get(&client, &ns, POLICIES, "svc").await;
    assert_eq!(
        repository_before.data["status"],
        repository_after.data["status"]
    );
    assert_eq!(policy_before.data["status"], policy_after.data["status"]);
    assert_eq!(
        repository_before.metadata.resource_version,
        repository_after.metadata.resource_version
    );
    assert_eq!(
        policy_before.metadata.resource_version,
        policy_after.metadata.resource_version
    );
    assert_eq!(repository_after.data["status"]["observedGeneration"], 1);
    assert_eq!(reflector.tags(&ns, "svc").unwrap(), ["1.0.0"]);

    // Resumed: scanned at once (new generation) and the policy follows.
    patch_spec(&client, &ns, REPOSITORIES, "svc", json!({"suspend": false})).await;
    patch_spec(
        &client,
        &ns,
        POLICIES,
        "svc",
        json!({"suspend": false, "policy": {"semver": {"range": "*"}}}),
    )
    .await;
    reflector.reconcile(at("2026-03-01T11:00:10Z")).await;
    assert_eq!(
        status(&client, &ns, POLICIES, "svc").await["latestRef"]["tag"],
        "1.1.0"
    );
}

#[tokio::test]
async fn a_tag_list_cut_short_by_the_listing_budget_decides_nothing() {
    let Some((ns, client)) = setup("flux-cut-short").await else {
        return;
    };
    let (_registry, image) = plain_registry("team/app", &["1.0.0", "1.1.0", "1.2.0"]).await;
    create_all(
        &client,
        &ns,
        [
            (
                "v1",
                REPOSITORIES,
                "app",
                json!({"image": image, "interval": "1m"}),
            ),
            (
                "v1",
                POLICIES,
                "app",
                json!({"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "1.x"}}}),
            ),
        ],
    )
    .await;
    // A client that stops after two tags: the listing it returns is marked cut short.
    let cut_short = RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_listing_budget(1, 2)
        .build()
        .expect("registry client");
    let reflector = Reflector::new(client.clone(), Namespaces::only([&ns]), Arc::new(cut_short));
    let report = reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "app"),
        Outcome::NotReady { reason, .. } if reason == "ReadOperationFailed"
    ));
    let repository = status(&client, &ns, REPOSITORIES, "app").await;
    assert!(!ready_true(&repository));
    assert!(repository.get("lastScanResult").is_none(), "{repository}");
    let policy = status(&client, &ns, POLICIES, "app").await;
    assert!(policy.get("latestRef").is_none(), "{policy}");
    assert!(!ready_true(&policy));
}

#[tokio::test]
async fn failures_stay_with_their_object_and_keep_what_was_found() {
    let Some((ns, client)) = setup("flux-failures").await else {
        return;
    };
    let (_registry, image) = plain_registry("team/ok", &["1.0.0", "1.1.0"]).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("127.0.0.1:{closed}/team/gone");

    let repositories = [
        ("ok", json!({"image": image, "interval": "1m"})),
        (
            "closed",
            json!({"image": unreachable, "interval": "1m", "timeout": "20s"}),
        ),
        (
            "bad-regex",
            json!({"image": image, "interval": "1m", "exclusionList": ["^(unclosed"]}),
        ),
        (
            "tagged",
            json!({"image": format!("{image}:1.0.0"), "interval": "1m"}),
        ),
    ];
    let policy = |repository: &str, range: &str| json!({"imageRepositoryRef": {"name": repository}, "policy": {"semver": {"range": range}}});
    let policies = [
        ("ok", policy("ok", "1.x")),
        ("missing", policy("nowhere", "1.x")),
        ("unscanned", policy("closed", "1.x")),
        ("bad-range", policy("ok", ">=1.0 <abc")),
        (
            "two-choices",
            json!({
                "imageRepositoryRef": {"name": "ok"},
                "policy": {"semver": {"range": "1.x"}, "alphabetical": {}},
            }),
        ),
        (
            "bad-extract",
            json!({
                "imageRepositoryRef": {"name": "ok"},
                "policy": {"numerical": {}},
                "filterTags": {"pattern": "^(?P<v>.*)$", "extract": "$nope"},
            }),
        ),
        (
            "elsewhere",
            json!({"imageRepositoryRef": {"name": "ok", "namespace": "kube-system"}, "policy": {"alphabetical": {}}}),
        ),
    ];
    let repositories = repositories
        .into_iter()
        .map(|(name, spec)| ("v1", REPOSITORIES, name, spec));
    let policies = policies
        .into_iter()
        .map(|(name, spec)| ("v1", POLICIES, name, spec));
    create_all(&client, &ns, repositories.chain(policies)).await;

    let reflector = Reflector::new(
        client.clone(),
        Namespaces::only([&ns]),
        registry_client(None),
    );
    let report = reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let ok = status(&client, &ns, REPOSITORIES, "ok").await;
    assert_eq!(ok["lastScanResult"]["tagCount"], 2);
    assert!(ready_true(&ok));

    // A failed scan is not tried again on every pass: first after 10s.
    let written = get(&client, &ns, REPOSITORIES, "closed").await;
    let report = reflector.reconcile(at("2026-03-01T10:00:05Z")).await;
    assert_eq!(
        outcome(&report, REPOSITORIES, &ns, "closed"),
        &Outcome::NotDue
    );
    let report = reflector.reconcile(at("2026-03-01T10:00:10Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "closed"),
        Outcome::NotReady { reason, .. } if reason == "ReadOperationFailed"
    ));
    // The same failure again: the status already says so and is not written.
    assert_eq!(
        get(&client, &ns, REPOSITORIES, "closed")
            .await
            .metadata
            .resource_version,
        written.metadata.resource_version
    );

    let closed_status = status(&client, &ns, REPOSITORIES, "closed").await;
    let message = assert_ready(
        &closed_status,
        "False",
        "ReadOperationFailed",
        &format!("127.0.0.1:{closed}"),
    );
    assert!(message.starts_with("scan failed: "), "{message}");
    assert!(
        closed_status.get("lastScanResult").is_none(),
        "{closed_status}"
    );
    for (name, reason, says) in [
        (
            "bad-regex",
            "ReadOperationFailed",
            "failed to compile regex ^(unclosed",
        ),
        (
            "tagged",
            "ImageURLInvalid",
            "should not include a tag; remove ':1.0.0'",
        ),
    ] {
        let s = status(&client, &ns, REPOSITORIES, name).await;
        assert_ready(&s, "False", reason, says);
    }

    assert_eq!(
        status(&client, &ns, POLICIES, "ok").await["latestRef"]["tag"],
        "1.1.0"
    );
    for (name, want_reason, says) in [
        ("missing", "DependencyNotReady", "ImageRepository"),
        ("unscanned", "DependencyNotReady", "has not been scanned"),
        ("bad-range", "InvalidPolicy", "spec.policy.semver.range"),
        ("two-choices", "InvalidPolicy", "spec.policy"),
        ("bad-extract", "InvalidPolicy", "spec.filterTags.extract"),
        ("elsewhere", "AccessDenied", "kube-system/ok"),
    ] {
        let s = status(&client, &ns, POLICIES, name).await;
        assert_ready(&s, "False", want_reason, says);
        assert!(s.get("latestRef").is_none(), "{name}: {s}");
    }
    let missing = status(&client, &ns, POLICIES, "missing").await;
    assert!(ready(&missing).2.contains(&format!("{ns}/nowhere")));

    // A failed scan of a repository that had tags keeps them, and its policy keeps working.
    let previous_scan = ok["lastScanResult"].clone();
    patch_spec(
        &client,
        &ns,
        REPOSITORIES,
        "ok",
        json!({"image": unreachable, "timeout": "20s"}),
    )
    .await;
    let report = reflector.reconcile(at("2026-03-01T10:00:15Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "ok"),
        Outcome::NotReady { reason, .. } if reason == "ReadOperationFailed"
    ));
    let ok = status(&client, &ns, REPOSITORIES, "ok").await;
    assert!(!ready_true(&ok));
    assert_eq!(ok["lastScanResult"], previous_scan);
    assert_eq!(
        ok["observedGeneration"], 1,
        "a failed scan observes nothing: {ok}"
    );
    assert_eq!(reflector.tags(&ns, "ok").unwrap(), ["1.1.0", "1.0.0"]);
    let ok_policy = status(&client, &ns, POLICIES, "ok").await;
    assert!(ready_true(&ok_policy), "{ok_policy}");
    assert_eq!(ok_policy["latestRef"]["tag"], "1.1.0");

    // Repaired: the failing repository is scanned again on the next pass.
    patch_spec(&client, &ns, REPOSITORIES, "ok", json!({"image": image})).await;
    let report = reflector.reconcile(at("2026-03-01T10:00:20Z")).await;
    assert!(matches!(
        outcome(&report, REPOSITORIES, &ns, "ok"),
        Outcome::Ready { .. }
    ));
    assert!(ready_true(&status(&client, &ns, REPOSITORIES, "ok").await));

    // Deleted: its tags are forgotten and its policy waits for it again.
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("v1", REPOSITORIES));
    api.delete("ok", &Default::default()).await.unwrap();
    wait_until(
        "the repository is gone",
        (Duration::from_secs(10), Duration::from_millis(50)),
        async || match api.get_opt("ok").await.unwrap() {
            None => Ok(()),
            Some(_) => Err("still there"),
        },
    )
    .await;
    reflector.reconcile(at("2026-03-01T10:00:30Z")).await;
    assert!(reflector.tags(&ns, "ok").is_none());
    let ok_policy = status(&client, &ns, POLICIES, "ok").await;
    assert_ready(&ok_policy, "False", "DependencyNotReady", "");
    assert_eq!(
        ok_policy["latestRef"]["tag"], "1.1.0",
        "the last choice stays"
    );
}

fn docker_config_secret(name: &str, registry: &str, user: &str, password: &str) -> Secret {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(config.into_bytes()),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn secret_refs_are_the_credentials_of_their_repository_only() {
    let Some((ns, client)) = setup("flux-secrets").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::htpasswd("robot", "s3cret"),
        "private/app",
        &["1.0.0", "1.4.0"],
    )
    .await;
    let image = format!("{}/private/app", registry.addr());
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for secret in [
        docker_config_secret("good", registry.addr(), "robot", "s3cret"),
        docker_config_secret("wrong", registry.addr(), "robot", "guess"),
    ] {
        secrets_api
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let secrets = PullSecrets::in_namespaces(client.clone(), [ns.clone()]);
    assert!(secrets.ready_within(Duration::from_secs(30)).await);
    wait_until(
        "both secrets cached",
        (Duration::from_secs(10), Duration::from_millis(50)),
        async || {
            let cached = ["good", "wrong"]
                .iter()
                .all(|n| secrets.document(&SecretRef::new(ns.clone(), *n)).is_some());
            cached.then_some(()).ok_or("not yet")
        },
    )
    .await;

    // Three repositories of the same image: the good secret, the wrong one, none; and one
    // naming a secret that does not exist.
    let spec = |secret: Option<&str>| {
        let mut spec = json!({"image": image, "interval": "1m"});
        if let Some(secret) = secret {
            spec["secretRef"] = json!({"name": secret});
        }
        spec
    };
    for (name, secret) in [
        ("good", Some("good")),
        ("wrong", Some("wrong")),
        ("anonymous", None),
        ("absent", Some("absent")),
    ] {
        create(&client, &ns, "v1", REPOSITORIES, name, spec(secret)).await;
    }
    // The good secret named by a repository of another registry, which asks for basic auth
    // and records whether it gets any: the secret's credentials are for the first registry
    // only, so the scan is refused there.
    let seen: Arc<std::sync::Mutex<Vec<(String, bool)>>> = Arc::default();
    let recorder = seen.clone();
    let (other, _server) = keel_testsupport::registry::serve(move |request| {
        let recorder = recorder.clone();
        async move {
            let path = request.uri().path().to_owned();
            let authorized = request.headers().contains_key("authorization");
            recorder.lock().unwrap().push((path, authorized));
            if authorized {
                keel_testsupport::registry::respond(
                    200,
                    "application/json",
                    r#"{"name":"team/other","tags":["3.0.0"]}"#,
                )
            } else {
                http::Response::builder()
                    .status(401)
                    .header("www-authenticate", r#"Basic realm="other""#)
                    .body(keel_testsupport::registry::full("{}"))
                    .unwrap()
            }
        }
    })
    .await;
    create_all(
        &client,
        &ns,
        [
            (
                "v1",
                REPOSITORIES,
                "other-registry",
                json!({"image": format!("{other}/team/other"), "interval": "1m", "secretRef": {"name": "good"}}),
            ),
            (
                "v1",
                POLICIES,
                "good",
                json!({
                    "imageRepositoryRef": {"name": "good"},
                    "policy": {"semver": {"range": "^1"}},
                    "digestReflectionPolicy": "IfNotPresent",
                }),
            ),
        ],
    )
    .await;

    let reflector = Reflector::new(
        client.clone(),
        Namespaces::only([&ns]),
        registry_client(Some(&secrets)),
    )
    .with_pull_secrets(secrets.clone());
    let report = reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let good = status(&client, &ns, REPOSITORIES, "good").await;
    assert_eq!(good["lastScanResult"]["tagCount"], 2, "{good}");
    assert!(ready_true(&good));
    let policy = status(&client, &ns, POLICIES, "good").await;
    let digest = head_digest(&registry, "private/app", "1.4.0").await;
    assert_eq!(
        policy["latestRef"],
        json!({"name": image, "tag": "1.4.0", "digest": digest}),
        "{policy}"
    );

    let other_status = status(&client, &ns, REPOSITORIES, "other-registry").await;
    assert_eq!(
        ready(&other_status).1,
        "AuthenticationFailed",
        "{other_status}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|(_, authorized)| !authorized), "{seen:?}");

    for name in ["wrong", "anonymous"] {
        let s = status(&client, &ns, REPOSITORIES, name).await;
        let message = assert_ready(&s, "False", "AuthenticationFailed", "");
        assert!(
            message.starts_with("scan failed: unauthorized"),
            "{name}: {message}"
        );
        assert!(
            !message.contains("guess") && !message.contains("s3cret"),
            "{message}"
        );
        assert!(s.get("lastScanResult").is_none(), "{name}: {s}");
        assert!(reflector.tags(&ns, name).is_none(), "{name}");
    }
    let absent = status(&client, &ns, REPOSITORIES, "absent").await;
    assert_ready(
        &absent,
        "False",
        "AuthenticationFailed",
        &format!("secret {ns}/absent not found"),
    );
    // Nothing is left recorded for the registry client once the pass is over.
    assert!(
        secrets
            .secrets_for(&keel_core::ImageRef::parse(&image).unwrap())
            .is_empty()
    );

    // Without pull secrets, a secretRef is refused rather than scanned anonymously.
    let blind = Reflector::new(
        client.clone(),
        Namespaces::only([&ns]),
        registry_client(None),
    );
    blind.reconcile(at("2026-03-01T10:00:00Z")).await;
    let good = status(&client, &ns, REPOSITORIES, "good").await;
    let (_, reason, message) = ready(&good);
    assert_eq!(reason, "AuthenticationFailed");
    assert!(message.contains("reads no pull secrets"), "{message}");
}

#[tokio::test]
async fn cross_namespace_references_need_access_from() {
    let Some((server, owner, client)) = ApiServer::shared_namespace("flux-acl-owner").await else {
        return;
    };
    install_crds(server).await;
    let user = server.namespace("flux-acl-user").await;
    let (_registry, image) = plain_registry("team/base", &["1.0.0", "1.5.0"]).await;
    create_all(
        &client,
        &owner,
        [
            (
                "v1",
                REPOSITORIES,
                "shared",
                json!({
                    "image": image,
                    "interval": "1m",
                    "accessFrom": {"namespaceSelectors": [{"matchLabels": {"keel-test/flux-acl": user}}]},
                }),
            ),
            (
                "v1",
                REPOSITORIES,
                "private",
                json!({"image": image, "interval": "1m"}),
            ),
        ],
    )
    .await;
    for repository in ["shared", "private"] {
        create(
            &client,
            &user,
            "v1",
            POLICIES,
            repository,
            json!({
                "imageRepositoryRef": {"name": repository, "namespace": owner},
                "policy": {"semver": {"range": "1.x"}},
            }),
        )
        .await;
    }
    let reflector = Reflector::new(
        client.clone(),
        Namespaces::only([&owner, &user]),
        registry_client(None),
    );
    reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    for (name, says) in [
        (
            "shared",
            format!("ACL labels mismatch on namespace '{user}'"),
        ),
        ("private", "missing ACL labels on 'accessFrom'".to_owned()),
    ] {
        let s = status(&client, &user, POLICIES, name).await;
        assert_ready(&s, "False", "AccessDenied", &says);
    }

    // Labelled as `accessFrom` asks, the user's namespace may read `shared`, not `private`.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {"keel-test/flux-acl": user}}});
    namespaces
        .patch(&user, &PatchParams::default(), &Patch::Merge(label))
        .await
        .unwrap();
    reflector.reconcile(at("2026-03-01T10:00:10Z")).await;
    let shared = status(&client, &user, POLICIES, "shared").await;
    assert!(ready_true(&shared), "{shared}");
    assert_eq!(shared["latestRef"], json!({"name": image, "tag": "1.5.0"}));
    let private = status(&client, &user, POLICIES, "private").await;
    assert_eq!(ready(&private).1, "AccessDenied");
}
