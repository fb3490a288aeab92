//! The reflector against a real kube-apiserver (Flux's CRDs from `crds/`) and real registries:
//! the statuses Flux users read after each pass, as tags and specs change.
//! `reflector_access.rs` has the failures, credentials and cross-namespace access.
//!
//! Run `eval "$(scripts/envtest env)"` first; without the API server binaries the tests skip.

mod common;
mod reflector_common;

use std::sync::Arc;
use std::time::Duration;

use common::at;
use keel_flux::NamespaceScope;
use keel_flux::reflector::{Outcome, Reflector};
use keel_registry::RegistryClient;
use keel_testsupport::kube::flux::{
    FluxKind, assert_ready, create, create_all, get, merge, patch_spec, ready, status,
};
use keel_testsupport::registry::RegistryServer;
use kube::Client;
use kube::core::DynamicObject;
use reflector_common::{
    POLICIES, REPOSITORIES, assert_latest_ref, assert_scan_failed, head_digest, outcome,
    ready_true, reflecting_digests, reflector_of, repository_spec, semver_policy, setup,
};
use serde_json::{Value, json};

/// What the tests of one tracked image begin with.
struct World {
    /// The namespace of a [`setup`].
    ns: String,
    /// Its admin client.
    client: Client,
    /// The registry serving the image.
    registry: RegistryServer,
    /// The name of the image in the registry.
    image: String,
}

impl World {
    /// The status of the object `name` of `kind`.
    async fn status(&self, kind: FluxKind, name: &str) -> Value {
        status(&self.client, &self.ns, kind, name).await
    }

    /// The object `name` of `kind`.
    async fn get(&self, kind: FluxKind, name: &str) -> DynamicObject {
        get(&self.client, &self.ns, kind, name).await
    }

    /// Merge-patches `spec` into the spec of the object `name` of `kind`.
    async fn patch_spec(&self, kind: FluxKind, name: &str, spec: Value) {
        patch_spec(&self.client, &self.ns, kind, name, spec).await;
    }

    /// Sets `suspend` of the `ImageRepository` and the `ImagePolicy` `name`, and the semver
    /// `range` of the policy.
    async fn set_suspended(&self, name: &str, suspend: bool, range: &str) {
        self.patch_spec(REPOSITORIES, name, json!({"suspend": suspend}))
            .await;
        let policy = json!({"suspend": suspend, "policy": {"semver": {"range": range}}});
        self.patch_spec(POLICIES, name, policy).await;
    }
}

/// The [`setup`] of a test named `prefix` whose registry serves `repository` with `tags`,
/// with the `ImageRepository` `name` of that image and the `ImagePolicy` `name` choosing its
/// latest tag in the semver `range`; `None` when the API server binaries are not installed.
async fn tracked(
    prefix: &str,
    repository: &str,
    tags: &[&str],
    name: &str,
    range: &str,
) -> Option<World> {
    let (ns, client, registry, image) = setup(prefix, repository, tags).await?;
    create_all(
        &client,
        &ns,
        [
            ("v1", REPOSITORIES, name, repository_spec(&image)),
            ("v1", POLICIES, name, semver_policy(name, range)),
        ],
    )
    .await;
    Some(World {
        ns,
        client,
        registry,
        image,
    })
}

#[tokio::test]
async fn repositories_are_scanned_and_policies_resolved_as_flux_reports_them() {
    let app_tags = [
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "2.0.0",
        "1.3.0-rc.1",
        "latest",
        "sha256-ab.sig",
    ];
    let Some((ns, client, registry, app)) = setup("flux-reflect", "team/app", &app_tags).await
    else {
        return;
    };
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
                reflecting_digests(semver_policy("app", ">=1.0.0 <2.0.0"), "IfNotPresent"),
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

    let reflector = reflector_of(&client, &[&ns]);
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
    assert_latest_ref(&semver, &app, "1.10.0", &digest_1_10);
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
    assert_latest_ref(&numerical, &builds, "main-ccc-300", &build_digests[2]);
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
    let Some((ns, client, registry, image)) =
        setup("flux-digests", "team/web", &["1.0.0", "1.1.0", "2.0.0"]).await
    else {
        return;
    };
    create(
        &client,
        &ns,
        "v1",
        REPOSITORIES,
        "web",
        repository_spec(&image),
    )
    .await;
    for (name, reflection) in [("keep", "IfNotPresent"), ("always", "Always")] {
        let mut spec = reflecting_digests(semver_policy("web", "1.x"), reflection);
        if reflection == "Always" {
            spec["interval"] = json!("10s");
        }
        create(&client, &ns, "v1", POLICIES, name, spec).await;
    }
    let reflector = reflector_of(&client, &[&ns]);
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
    assert_latest_ref(&always, &image, "1.1.0", &moved);
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
    let annotate =
        json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now-1"}}});
    merge(&client, &ns, REPOSITORIES, "web", annotate).await;
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
    let Some(w) = tracked("flux-suspend", "team/svc", &["1.0.0"], "svc", "*").await else {
        return;
    };
    // Suspended from the start: never scanned, never written.
    let spec = json!({"image": w.image, "interval": "1m", "suspend": true});
    create(&w.client, &w.ns, "v1", REPOSITORIES, "never", spec).await;
    let reflector = reflector_of(&w.client, &[&w.ns]);
    let report = reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert_eq!(
        outcome(&report, REPOSITORIES, &w.ns, "never"),
        &Outcome::Suspended
    );
    assert!(reflector.tags(&w.ns, "never").is_none());
    let never = w.status(REPOSITORIES, "never").await;
    assert!(
        never.get("lastScanResult").is_none() && never.get("conditions").is_none(),
        "{never}"
    );
    assert_eq!(w.status(POLICIES, "svc").await["latestRef"]["tag"], "1.0.0");

    // Both suspended, a new tag pushed, the interval past and the range changed: nothing moves.
    w.set_suspended("svc", true, "<1.0.0").await;
    w.registry.seeder().push_tags("team/svc", &["1.1.0"]).await;
    let repository_before = w.get(REPOSITORIES, "svc").await;
    let policy_before = w.get(POLICIES, "svc").await;
    let report = reflector.reconcile(at("2026-03-01T11:00:00Z")).await;
    assert_eq!(
        outcome(&report, REPOSITORIES, &w.ns, "svc"),
        &Outcome::Suspended
    );
    assert_eq!(
        outcome(&report, POLICIES, &w.ns, "svc"),
        &Outcome::Suspended
    );
    let repository_after = w.get(REPOSITORIES, "svc").await;
    let policy_after = w.get(POLICIES, "svc").await;
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
    assert_eq!(reflector.tags(&w.ns, "svc").unwrap(), ["1.0.0"]);

    // Resumed: scanned at once (new generation) and the policy follows.
    w.set_suspended("svc", false, "*").await;
    reflector.reconcile(at("2026-03-01T11:00:10Z")).await;
    assert_eq!(w.status(POLICIES, "svc").await["latestRef"]["tag"], "1.1.0");
}

#[tokio::test]
async fn a_tag_list_cut_short_by_the_listing_budget_decides_nothing() {
    let tags = ["1.0.0", "1.1.0", "1.2.0"];
    let Some(w) = tracked("flux-cut-short", "team/app", &tags, "app", "1.x").await else {
        return;
    };
    // A client that stops after two tags: the listing it returns is marked cut short.
    let cut_short = RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_listing_budget(1, 2)
        .build()
        .expect("registry client");
    let reflector = Reflector::new(
        w.client.clone(),
        NamespaceScope::only([&w.ns]),
        Arc::new(cut_short),
    );
    let report = reflector.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert_scan_failed(&report, &w.ns, "app");
    let repository = w.status(REPOSITORIES, "app").await;
    assert!(!ready_true(&repository));
    assert!(repository.get("lastScanResult").is_none(), "{repository}");
    let policy = w.status(POLICIES, "app").await;
    assert!(policy.get("latestRef").is_none(), "{policy}");
    assert!(!ready_true(&policy));
}
