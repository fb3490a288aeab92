//! What the reflector's test binaries share: the kinds it reads, a [`namespace`] with a
//! registry to scan ([`setup`]), registries, the specs of their objects, a registry client
//! and a reflector for tests, and the report's outcome of an object.

use std::sync::Arc;
use std::time::Duration;

use keel_flux::NamespaceScope;
use keel_flux::reflector::{Outcome, Reflector, ReflectorReport};
use keel_k8s::PullSecrets;
use keel_registry::RegistryClient;
use keel_testsupport::kube::flux::{FluxKind, ready};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::Client;
use serde_json::{Value, json};

use crate::common::namespace;

pub(crate) const REPOSITORIES: FluxKind = FluxKind::ImageRepository;
pub(crate) const POLICIES: FluxKind = FluxKind::ImagePolicy;

/// What most tests begin with: a fresh [`namespace`], an admin client, and a [`registry`]
/// without authentication serving `repository` with `tags`, with the name of that image.
pub(crate) async fn setup(
    prefix: &str,
    repository: &str,
    tags: &[&str],
) -> Option<(String, Client, RegistryServer, String)> {
    let (namespace, client) = namespace(prefix).await?;
    let (registry, image) = registry(ServerOptions::plain(), repository, tags).await;
    Some((namespace, client, registry, image))
}

/// A registry client for tests: no cache (each pass asks the registry) and one quick retry.
pub(crate) fn registry_client(secrets: Option<&PullSecrets>) -> Arc<RegistryClient> {
    let mut builder = RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_retries(1, Duration::from_millis(10), Duration::from_millis(50))
        .with_timeout(Duration::from_secs(10));
    if let Some(secrets) = secrets {
        builder = builder.with_credential_source(Arc::new(secrets.clone()));
    }
    Arc::new(builder.build().expect("registry client"))
}

/// A reflector over the objects of `namespaces` with the [`registry_client`] of no secrets.
pub(crate) fn reflector_of(client: &Client, namespaces: &[&str]) -> Reflector {
    let namespaces = NamespaceScope::only(namespaces.iter().copied());
    Reflector::new(client.clone(), namespaces, registry_client(None))
}

/// What the pass of `report` did with the object `name` of `kind`.
pub(crate) fn outcome<'r>(
    report: &'r ReflectorReport,
    kind: FluxKind,
    ns: &str,
    name: &str,
) -> &'r Outcome {
    let found = if kind == REPOSITORIES {
        report.repository(ns, name)
    } else {
        report.policy(ns, name)
    };
    &found
        .unwrap_or_else(|| panic!("{kind} {ns}/{name} not in the report: {report:?}"))
        .outcome
}

/// Asserts that the pass of `report` failed to scan the `ImageRepository` `name`: not ready,
/// for `ReadOperationFailed`.
#[track_caller]
pub(crate) fn assert_scan_failed(report: &ReflectorReport, ns: &str, name: &str) {
    let outcome = outcome(report, REPOSITORIES, ns, name);
    assert!(
        matches!(outcome, Outcome::NotReady { reason, .. } if reason == "ReadOperationFailed"),
        "{name}: {outcome:?}"
    );
}

/// A registry of `options` serving `repository` with `tags`, and the name of that image in it.
pub(crate) async fn registry(
    options: ServerOptions,
    repository: &str,
    tags: &[&str],
) -> (RegistryServer, String) {
    let registry = RegistryServer::with_tags(options, repository, tags).await;
    let image = format!("{}/{repository}", registry.addr());
    (registry, image)
}

/// The spec of an `ImageRepository` of `image`, scanned every minute.
pub(crate) fn repository_spec(image: &str) -> Value {
    json!({"image": image, "interval": "1m"})
}

/// The spec of an `ImagePolicy` choosing the greatest version in the semver `range` from the
/// tags of the `ImageRepository` `repository`.
pub(crate) fn semver_policy(repository: &str, range: &str) -> Value {
    json!({"imageRepositoryRef": {"name": repository}, "policy": {"semver": {"range": range}}})
}

/// `spec` of an `ImagePolicy` with `digestReflectionPolicy` set to `reflection`: `Never`,
/// `IfNotPresent` or `Always`.
pub(crate) fn reflecting_digests(mut spec: Value, reflection: &str) -> Value {
    spec["digestReflectionPolicy"] = json!(reflection);
    spec
}

/// The digest `repository:tag` has in the registry now.
pub(crate) async fn head_digest(registry: &RegistryServer, repository: &str, tag: &str) -> String {
    registry
        .seeder()
        .head_digest(repository, tag)
        .await
        .unwrap_or_else(|| panic!("no {repository}:{tag} in the registry"))
}

/// Asserts that the `latestRef` of the policy status `policy` is `image:tag` at `digest`.
#[track_caller]
pub(crate) fn assert_latest_ref(policy: &Value, image: &str, tag: &str, digest: &str) {
    assert_eq!(
        policy["latestRef"],
        json!({"name": image, "tag": tag, "digest": digest}),
        "{policy}"
    );
}

/// Whether the `Ready` condition of `status` is `True`.
pub(crate) fn ready_true(status: &Value) -> bool {
    ready(status).0 == "True"
}
