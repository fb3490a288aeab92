//! The reflector against a real kube-apiserver (Flux's CRDs from `crds/`) and real registries
//! when something is wrong: failures stay with their object, a `secretRef` is the
//! credentials of its repository only, and a reference to another namespace needs that
//! namespace's `accessFrom`.
//!
//! Run `eval "$(scripts/envtest env)"` first; without the API server binaries the tests skip.

mod common;
mod reflector_common;

use std::sync::Arc;
use std::time::Duration;

use common::{at, namespace};
use keel_flux::NamespaceScope;
use keel_flux::reflector::{Outcome, Reflector};
use keel_k8s::{PullSecrets, SecretRef};
use keel_testsupport::kube::flux::{
    assert_ready, create, create_all, delete, flux_namespace, get, patch_spec, ready, status,
};
use keel_testsupport::kube::{create_docker_config_secret, wait_until};
use keel_testsupport::registry::ServerOptions;
use kube::api::{Api, Patch, PatchParams};
use reflector_common::{
    POLICIES, REPOSITORIES, assert_latest_ref, assert_scan_failed, head_digest, outcome,
    ready_true, reflecting_digests, reflector_of, registry, registry_client, repository_spec,
    semver_policy, setup,
};
use serde_json::json;

#[tokio::test]
async fn failures_stay_with_their_object_and_keep_what_was_found() {
    let Some((ns, client, _registry, image)) =
        setup("flux-failures", "team/ok", &["1.0.0", "1.1.0"]).await
    else {
        return;
    };
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("127.0.0.1:{closed}/team/gone");

    let repositories = [
        ("ok", repository_spec(&image)),
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
    let policies = [
        ("ok", semver_policy("ok", "1.x")),
        ("missing", semver_policy("nowhere", "1.x")),
        ("unscanned", semver_policy("closed", "1.x")),
        ("bad-range", semver_policy("ok", ">=1.0 <abc")),
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

    let reflector = reflector_of(&client, &[&ns]);
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
    assert_scan_failed(&report, &ns, "closed");
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
    assert_scan_failed(&report, &ns, "ok");
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
    delete(&client, &ns, REPOSITORIES, "ok").await;
    reflector.reconcile(at("2026-03-01T10:00:30Z")).await;
    assert!(reflector.tags(&ns, "ok").is_none());
    let ok_policy = status(&client, &ns, POLICIES, "ok").await;
    assert_ready(&ok_policy, "False", "DependencyNotReady", "");
    assert_eq!(
        ok_policy["latestRef"]["tag"], "1.1.0",
        "the last choice stays"
    );
}

#[tokio::test]
async fn secret_refs_are_the_credentials_of_their_repository_only() {
    let Some((ns, client)) = namespace("flux-secrets").await else {
        return;
    };
    let options = ServerOptions::htpasswd("robot", "s3cret");
    let (registry, image) = registry(options, "private/app", &["1.0.0", "1.4.0"]).await;
    for (name, password) in [("good", "s3cret"), ("wrong", "guess")] {
        create_docker_config_secret(&client, &ns, name, registry.addr(), "robot", password).await;
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
        let mut spec = repository_spec(&image);
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
                reflecting_digests(semver_policy("good", "^1"), "IfNotPresent"),
            ),
        ],
    )
    .await;

    let reflector = Reflector::new(
        client.clone(),
        NamespaceScope::only([&ns]),
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
    assert_latest_ref(&policy, &image, "1.4.0", &digest);

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
    let blind = reflector_of(&client, &[&ns]);
    blind.reconcile(at("2026-03-01T10:00:00Z")).await;
    let good = status(&client, &ns, REPOSITORIES, "good").await;
    let (_, reason, message) = ready(&good);
    assert_eq!(reason, "AuthenticationFailed");
    assert!(message.contains("reads no pull secrets"), "{message}");
}

#[tokio::test]
async fn cross_namespace_references_need_access_from() {
    let Some((server, owner, client)) =
        flux_namespace("flux-acl-owner", &keel_flux::crds::ALL).await
    else {
        return;
    };
    let user = server.namespace("flux-acl-user").await;
    let (_registry, image) =
        registry(ServerOptions::plain(), "team/base", &["1.0.0", "1.5.0"]).await;
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
                repository_spec(&image),
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
    let reflector = reflector_of(&client, &[&owner, &user]);
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
