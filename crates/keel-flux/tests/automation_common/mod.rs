//! What the automation's test binaries share: a [`namespace`] with the fleet repository
//! ([`fleet_namespace`]) on a Git server with its `GitRepository` and secret, `ImagePolicy`
//! objects whose statuses are written directly (as the reflector would), automations of that
//! repository and what a run reports.

use std::time::Duration;

use keel_flux::NamespaceScope;
use keel_flux::automation::{Automation, AutomationReport};
use keel_flux::reflector::Outcome;
use keel_testsupport::git::GitServer;
use keel_testsupport::kube::create_secret;
use keel_testsupport::kube::flux::{self, FluxKind, create, git_repository_spec, patch_status};
use kube::Client;
use serde_json::{Value, json};

use crate::common::namespace;

pub(crate) const AUTOMATIONS: FluxKind = FluxKind::ImageUpdateAutomation;
pub(crate) const POLICIES: FluxKind = FluxKind::ImagePolicy;
pub(crate) const GIT_REPOSITORIES: FluxKind = FluxKind::GitRepository;
/// The user the Git server accepts.
pub(crate) const USER: &str = "flux-bot";
/// The user's password, which no status message may show.
pub(crate) const PASSWORD: &str = "s3cret-t0ken";

/// The status of the `ImageUpdateAutomation` `name`.
pub(crate) async fn status(client: &Client, ns: &str, name: &str) -> Value {
    flux::status(client, ns, AUTOMATIONS, name).await
}

/// What the run of `report` did with the automation `name`.
pub(crate) fn outcome<'r>(report: &'r AutomationReport, ns: &str, name: &str) -> &'r Outcome {
    &report
        .automation(ns, name)
        .unwrap_or_else(|| panic!("{ns}/{name} not in the report: {report:?}"))
        .outcome
}

/// The digest of the app's policy choice.
pub(crate) const DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A Deployment of the app, its marker on the policy `app` of `ns`, and a sidecar.
pub(crate) fn deployment(ns: &str) -> String {
    [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        "  name: app # the web app",
        "spec:",
        "  template:",
        "    spec:",
        "      containers:",
        "        - name: app",
        &format!("          image: registry/app:1.0.0 # {{\"$imagepolicy\": \"{ns}:app\"}}"),
        "        - name: sidecar",
        "          image: registry/sidecar:0.1",
        "",
    ]
    .join("\n")
}

/// [`deployment`] with the app's marker set to its policy's choice: 1.1.0 with the digest.
pub(crate) fn updated_deployment(ns: &str) -> String {
    deployment(ns).replace(
        "registry/app:1.0.0",
        &format!("registry/app:1.1.0@{DIGEST}"),
    )
}

/// The file at `path` on branch `main` of the fleet repository.
pub(crate) fn fleet_file(server: &GitServer, path: &str) -> String {
    server.read_file("fleet", "main", path).unwrap()
}

/// Helm values with markers on the policies `api`, `worker` and `absent` of `ns`.
pub(crate) fn values(ns: &str) -> String {
    [
        "# Helm values",
        "api:",
        "  image:",
        &format!("    repository: registry/api # {{\"$imagepolicy\": \"{ns}:api:name\"}}"),
        &format!("    tag: \"2.0.0\" # {{\"$imagepolicy\": \"{ns}:api:tag\"}}"),
        "worker:",
        "  image:",
        "    repository: registry/worker",
        &format!("    tag: 3.0.0 # {{\"$imagepolicy\": \"{ns}:worker:tag\"}}"),
        "other:",
        &format!("  tag: 9.9.9 # {{\"$imagepolicy\": \"{ns}:absent:tag\"}}"),
        "",
    ]
    .join("\n")
}

/// A repository `fleet` with the Deployment and the Helm values on `main`, served over HTTP.
pub(crate) fn git_server(ns: &str) -> GitServer {
    let server = GitServer::start_with_http(USER, PASSWORD);
    let deployment = deployment(ns);
    let values = values(ns);
    server.create_repo(
        "fleet",
        &[
            ("apps/app.yaml", deployment.as_str()),
            ("charts/api/values.yaml", values.as_str()),
            (
                "README.md",
                "image: registry/app:1.0.0 # {\"$imagepolicy\": \"x:app\"}\n",
            ),
        ],
        "main",
    );
    server
}

/// An `ImagePolicy` whose status says `latestRef`, ready or not.
pub(crate) async fn policy(client: &Client, ns: &str, name: &str, latest: Value, is_ready: bool) {
    create(
        client,
        ns,
        "v1",
        POLICIES,
        name,
        json!({
            "imageRepositoryRef": {"name": name},
            "policy": {"semver": {"range": ">=1.0.0"}},
        }),
    )
    .await;
    let (status, reason) = if is_ready {
        ("True", "Succeeded")
    } else {
        ("False", "DependencyNotReady")
    };
    patch_status(
        client,
        ns,
        POLICIES,
        name,
        json!({
            "latestRef": latest,
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": "set by the test",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }],
        }),
    )
    .await;
}

/// The policies of the first test: `app` (with a digest) and `api` ready, `worker` not.
pub(crate) async fn policies_with_choices(client: &Client, ns: &str) {
    for (name, latest, is_ready) in [
        (
            "app",
            json!({"name": "registry/app", "tag": "1.1.0", "digest": DIGEST}),
            true,
        ),
        ("api", json!({"name": "registry/api", "tag": "2.1.0"}), true),
        (
            "worker",
            json!({"name": "registry/worker", "tag": "3.1.0"}),
            false,
        ),
    ] {
        policy(client, ns, name, latest, is_ready).await;
    }
}

/// The spec of an automation of the `GitRepository` `fleet` on `main`, with the top-level
/// fields of `extra` in place of its own.
pub(crate) fn automation_spec(extra: Value) -> Value {
    let mut spec = json!({
        "interval": "1m",
        "sourceRef": {"kind": "GitRepository", "name": "fleet"},
        "git": {
            "checkout": {"ref": {"branch": "main"}},
            "commit": {"author": {"name": "Flux Bot", "email": "flux@example.invalid"}},
        },
        "update": {"path": "./", "strategy": "Setters"},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    spec
}

/// The `git` part of `automation_spec`, for tests that change it.
pub(crate) fn git_spec() -> Value {
    automation_spec(json!({}))["git"].clone()
}

/// Creates the `ImageUpdateAutomation` `name` of `automation_spec(extra)`.
pub(crate) async fn create_automation(client: &Client, ns: &str, name: &str, extra: Value) {
    let spec = automation_spec(extra);
    create(client, ns, "v1", AUTOMATIONS, name, spec).await;
}

/// The credentials the Git server accepts.
pub(crate) const GOOD_CREDENTIALS: &[(&str, &str)] = &[("username", USER), ("password", PASSWORD)];

/// The Git server of `git_server` and, in `ns`, the secret `git` with the credentials it
/// accepts, the `GitRepository` `fleet` with the secret `secret`, and the policies of
/// `policies_with_choices`.
pub(crate) async fn fleet(client: &Client, ns: &str, secret: &str) -> GitServer {
    let server = git_server(ns);
    create_secret(client, ns, "git", GOOD_CREDENTIALS).await;
    let spec = git_repository_spec(&server.http_url("fleet"), secret);
    create(client, ns, "v1", GIT_REPOSITORIES, "fleet", spec).await;
    policies_with_choices(client, ns).await;
    server
}

/// A fresh namespace with Flux's CRDs, an admin client and the [`fleet`] of the secret `git`:
/// what most tests begin with.
pub(crate) async fn fleet_namespace(prefix: &str) -> Option<(String, Client, GitServer)> {
    let (ns, client) = namespace(prefix).await?;
    let server = fleet(&client, &ns, "git").await;
    Some((ns, client, server))
}

/// The log of `branch` of the fleet repository, newest first, after a run that pushed a commit
/// for the automation `name`: checked to hold `commits` commits, the newest the one `report`
/// says was pushed.
#[track_caller]
pub(crate) fn pushed_log(
    server: &GitServer,
    report: &AutomationReport,
    ns: &str,
    name: &str,
    branch: &str,
    commits: usize,
) -> Vec<(String, String)> {
    let log = server.log("fleet", branch);
    assert_eq!(log.len(), commits, "{name}: {log:?}");
    let pushed = report.pushed.get(&format!("{ns}/{name}"));
    assert_eq!(pushed, Some(&log[0].0), "{name}: {log:?}");
    log
}

/// The outcome of a run that found nothing to push.
pub(crate) fn up_to_date() -> Outcome {
    Outcome::Ready {
        message: "repository up-to-date".into(),
    }
}

/// An automation of the objects of `ns`, with its working copies in `server`'s scratch
/// directory.
pub(crate) fn automation(client: &Client, ns: &str, server: &GitServer) -> Automation {
    Automation::new(client.clone(), NamespaceScope::only([ns]))
        .with_workdir(server.scratch_dir("work"))
        .with_server_timeout(Duration::from_secs(20))
}
