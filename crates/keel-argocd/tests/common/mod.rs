//! What the Application and ImageUpdater tests share: the API server with the Application
//! CRD, Applications created from tables, the target, the pipeline and what they report.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_argocd::{APPLICATION_CRD, ArgoCdTarget, application_resource};
use keel_core::{Pipeline, RunReport};
use keel_registry::RegistryClient;
use keel_testsupport::kube::argocd::create_application;
use keel_testsupport::kube::{ApiServer, install_crd, merge_status};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::DynamicObject;
use kube::{Api, Client};
use serde_json::{Value, json};

pub(crate) const PREFIX: &str = "argocd-image-updater.argoproj.io/";

/// The shared API server with the Application CRD served, a fresh namespace and an admin
/// client.
pub(crate) async fn argocd_namespace(prefix: &str) -> Option<(&'static ApiServer, String, Client)> {
    let (server, ns, client) = ApiServer::shared_namespace(prefix).await?;
    install_crd(
        server,
        APPLICATION_CRD,
        "argoproj.io/v1alpha1",
        "applications",
    )
    .await;
    Some((server, ns, client))
}

pub(crate) fn apps(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &application_resource())
}

/// An Application to create: its name, labels, annotations (keys without the prefix),
/// source (`repoURL` and `path` are added when it has none; one holding only `sources` makes a
/// multi-source Application) and, when given, status (written through the
/// status subresource, as Argo CD does).
#[derive(Default)]
pub(crate) struct App<'a> {
    pub(crate) name: &'a str,
    pub(crate) labels: &'a [(&'a str, &'a str)],
    pub(crate) annotations: &'a [(&'a str, &'a str)],
    pub(crate) source: Value,
    pub(crate) status: Option<Value>,
}

impl<'a> App<'a> {
    /// Application `name` with `annotations` and `source`, no labels and no status.
    pub(crate) fn new(name: &'a str, annotations: &'a [(&'a str, &'a str)], source: Value) -> Self {
        App {
            name,
            annotations,
            source,
            ..App::default()
        }
    }

    /// The same Application with `status`.
    #[allow(dead_code, reason = "the ImageUpdater tests set no status")]
    pub(crate) fn with_status(self, status: Value) -> Self {
        App {
            status: Some(status),
            ..self
        }
    }
}

/// Creates each Application of `table` in `ns`.
pub(crate) async fn create_apps<'a>(
    client: &Client,
    ns: &str,
    table: impl IntoIterator<Item = App<'a>>,
) {
    let api = apps(client, ns);
    for app in table {
        let name = app.name;
        let labels: BTreeMap<&str, &str> = app.labels.iter().copied().collect();
        let annotations: BTreeMap<String, &str> = app
            .annotations
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), *v))
            .collect();
        let metadata = json!({ "name": name, "labels": labels, "annotations": annotations });
        let mut source = app.source;
        // `sources` in the table: a multi-source Application, without `spec.source`.
        if let Some(sources) = source.as_object_mut().and_then(|o| o.remove("sources")) {
            create_application(&api, ns, metadata, None, json!({ "sources": sources })).await;
            continue;
        }
        if source["repoURL"].is_null() {
            source["repoURL"] = json!("https://git.example/acme/deploy.git");
        }
        if source["path"].is_null() {
            source["path"] = json!(format!("apps/{name}"));
        }
        create_application(&api, ns, metadata, Some("web"), json!({ "source": source })).await;
        if let Some(status) = app.status {
            merge_status(&api, name, status).await;
        }
    }
}

pub(crate) async fn app(client: &Client, ns: &str, name: &str) -> DynamicObject {
    apps(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get application {ns}/{name}: {e}"))
}

pub(crate) async fn source(client: &Client, ns: &str, name: &str) -> Value {
    app(client, ns, name).await.data["spec"]["source"].clone()
}

/// The value of the Helm parameter at `index` in the source of Application `name`.
#[allow(
    dead_code,
    reason = "the git write-back tests read files, not parameters"
)]
pub(crate) async fn helm_value(client: &Client, ns: &str, name: &str, index: usize) -> Value {
    source(client, ns, name).await["helm"]["parameters"][index]["value"].clone()
}

/// A registry serving `acme/web` with `tags`, and the name of that image in it.
pub(crate) async fn web_registry(tags: &[&str]) -> (RegistryServer, String) {
    let registry = RegistryServer::with_tags(ServerOptions::plain(), "acme/web", tags).await;
    let web = format!("{}/acme/web", registry.addr());
    (registry, web)
}

/// The target over `ns`, named `argocd`.
pub(crate) fn argocd_target(client: Client, ns: &str) -> ArgoCdTarget {
    ArgoCdTarget::new(client)
        .with_namespace(ns)
        .with_name("argocd")
}

/// A pipeline over `target` with a registry client that is not rate limited and takes the
/// target's pull secrets.
pub(crate) fn pipeline(target: &Arc<ArgoCdTarget>) -> Pipeline {
    let registry = RegistryClient::builder()
        .with_requests_per_second(0.0)
        .with_credential_source(Arc::new(target.credentials()))
        .build()
        .expect("registry client");
    Pipeline::new(Arc::new(registry)).with_target(target.clone())
}

/// Runs `pipeline` once and asserts that nothing failed and `target` has no problems.
pub(crate) async fn run_without_problems(pipeline: &Pipeline, target: &ArgoCdTarget) -> RunReport {
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(target.problems().is_empty(), "{:?}", target.problems());
    report
}

/// What a pass applied, sorted.
pub(crate) fn applied(report: &RunReport) -> Vec<String> {
    let mut applied: Vec<String> = report.applied.iter().map(ToString::to_string).collect();
    applied.sort();
    applied
}

/// What a pass reports when it updated image `web` of Application `ns/app`, alias `web`, from
/// tag `from` to tag `to`.
pub(crate) fn updated(ns: &str, app: &str, web: &str, from: &str, to: &str) -> String {
    format!("argocd application/{ns}/{app}/web: {web}:{from} -> {web}:{to}")
}

/// Asserts that `report` has no failures and applied exactly `want` (sorted).
#[track_caller]
pub(crate) fn assert_applied(report: &RunReport, want: &[String]) {
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(applied(report), want);
}

/// The target's problems, sorted.
pub(crate) fn problems(target: &ArgoCdTarget) -> Vec<String> {
    let mut problems: Vec<String> = target.problems().iter().map(ToString::to_string).collect();
    problems.sort();
    problems
}
