//! The automation against a real kube-apiserver (Flux's CRDs from `crds/`) and a real Git
//! server (`git http-backend` behind basic authentication): the commits pushed and the
//! statuses Flux users read. The `ImagePolicy` statuses are written directly, as the
//! reflector would.
//!
//! Run `eval "$(scripts/envtest env)"` first; without the API server binaries the tests skip.

mod common;

use std::time::Duration;

use common::{assert_ready, at, ready};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_flux::automation::{Automation, AutomationReport};
use keel_flux::reflector::{GROUP, Namespaces, Outcome};
use keel_testsupport::git::{GitServer, SshServer};
use keel_testsupport::kube::{ApiServer, install_crd};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
const USER: &str = "flux-bot";
const PASSWORD: &str = "s3cret-t0ken";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn automations() -> ApiResource {
    resource(
        GROUP,
        "v1",
        "ImageUpdateAutomation",
        "imageupdateautomations",
    )
}

fn policies() -> ApiResource {
    resource(GROUP, "v1", "ImagePolicy", "imagepolicies")
}

fn git_repositories() -> ApiResource {
    resource(SOURCE_GROUP, "v1", "GitRepository", "gitrepositories")
}

static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

async fn install_crds(server: &ApiServer) {
    CRDS.get_or_init(|| async {
        let crds = [
            (
                keel_flux::crds::IMAGE_POLICY_CRD,
                GROUP,
                "imagepolicies",
                &["v1", "v1beta2"][..],
            ),
            (
                keel_flux::crds::IMAGE_UPDATE_AUTOMATION_CRD,
                GROUP,
                "imageupdateautomations",
                &["v1", "v1beta2"][..],
            ),
            (
                keel_flux::crds::GIT_REPOSITORY_CRD,
                SOURCE_GROUP,
                "gitrepositories",
                &["v1"][..],
            ),
        ];
        for (yaml, group, plural, versions) in crds {
            for version in versions {
                install_crd(server, yaml, &format!("{group}/{version}"), plural).await;
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

async fn create(client: &Client, ns: &str, ar: &ApiResource, name: &str, spec: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let mut object = DynamicObject::new(name, ar).within(ns);
    object.data = json!({ "spec": spec });
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {} {ns}/{name}: {e}", ar.plural));
}

async fn patch_status(client: &Client, ns: &str, ar: &ApiResource, name: &str, status: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch the status of {} {ns}/{name}: {e}", ar.plural));
}

async fn status(client: &Client, ns: &str, name: &str) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &automations());
    let object = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get automation {ns}/{name}: {e}"));
    object.data.get("status").cloned().unwrap_or(Value::Null)
}

fn outcome<'r>(report: &'r AutomationReport, ns: &str, name: &str) -> &'r Outcome {
    &report
        .automation(ns, name)
        .unwrap_or_else(|| panic!("{ns}/{name} not in the report: {report:?}"))
        .outcome
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn deployment(ns: &str) -> String {
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
fn updated_deployment(ns: &str) -> String {
    deployment(ns).replace(
        "registry/app:1.0.0",
        &format!("registry/app:1.1.0@{DIGEST}"),
    )
}

/// The file at `path` on branch `main` of the fleet repository.
fn fleet_file(server: &GitServer, path: &str) -> String {
    server.read_file("fleet", "main", path).unwrap()
}

fn values(ns: &str) -> String {
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
fn git_server(ns: &str) -> GitServer {
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

async fn credentials(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret)
        .await
        .expect("create the secret");
}

/// A `GitRepository` `fleet` over the server's `fleet` with the secret `name`.
async fn git_repository(client: &Client, ns: &str, server: &GitServer, secret: &str) {
    create(
        client,
        ns,
        &git_repositories(),
        "fleet",
        json!({
            "url": server.http_url("fleet"),
            "interval": "1m",
            "ref": {"branch": "main"},
            "secretRef": {"name": secret},
        }),
    )
    .await;
}

/// An `ImagePolicy` whose status says `latestRef`, ready or not.
async fn policy(client: &Client, ns: &str, name: &str, latest: Value, is_ready: bool) {
    create(
        client,
        ns,
        &policies(),
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
        &policies(),
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
async fn policies_with_choices(client: &Client, ns: &str) {
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

fn automation_spec(extra: Value) -> Value {
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
fn git_spec() -> Value {
    automation_spec(json!({}))["git"].clone()
}

/// Creates the `ImageUpdateAutomation` `name` of `automation_spec(extra)`.
async fn create_automation(client: &Client, ns: &str, name: &str, extra: Value) {
    create(client, ns, &automations(), name, automation_spec(extra)).await;
}

/// The credentials the Git server accepts.
const GOOD_CREDENTIALS: &[(&str, &str)] = &[("username", USER), ("password", PASSWORD)];

/// The Git server of `git_server` and, in `ns`, the secret `git` with the credentials it
/// accepts, the `GitRepository` `fleet` with the secret `secret`, and the policies of
/// `policies_with_choices`.
async fn fleet(client: &Client, ns: &str, secret: &str) -> GitServer {
    let server = git_server(ns);
    credentials(client, ns, "git", GOOD_CREDENTIALS).await;
    git_repository(client, ns, &server, secret).await;
    policies_with_choices(client, ns).await;
    server
}

/// The outcome of a run that found nothing to push.
fn up_to_date() -> Outcome {
    Outcome::Ready {
        message: "repository up-to-date".into(),
    }
}

fn automation(client: &Client, ns: &str, server: &GitServer) -> Automation {
    Automation::new(client.clone(), Namespaces::only([ns]))
        .with_workdir(server.scratch_dir("work"))
        .with_server_timeout(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_changes_only_the_markers_and_the_status_says_so() {
    let Some((ns, client)) = setup("auto-push").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    let main_head = server.head("fleet", "main").expect("main");
    let mut git = git_spec();
    git["commit"]["messageTemplate"] = json!(
        "Update by {{ .AutomationObject }}\n\n{{ range .Changed.Changes -}}\n- {{ .Setter }}: \
         {{ .OldValue }} -> {{ .NewValue }}\n{{ end -}}\nFiles:{{ range $f, $_ := \
         .Changed.FileChanges }} {{ $f }}{{ end }}\n"
    );
    create_automation(&client, &ns, "auto", json!({"git": git})).await;
    let automation = automation(&client, &ns, &server);

    let t0 = at("2026-03-01T10:00:00Z");
    let report = automation.reconcile(t0).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].0, main_head);
    let head = log[0].0.clone();
    assert_eq!(report.pushed.get(&format!("{ns}/auto")), Some(&head));
    let short = &head[..7];
    assert_eq!(
        outcome(&report, &ns, "auto"),
        &Outcome::Ready {
            message: format!("pushed commit '{short}' to branch 'main'")
        }
    );

    // The files differ only at the markers of ready policies.
    assert_eq!(
        fleet_file(&server, "apps/app.yaml"),
        updated_deployment(&ns)
    );
    assert_eq!(
        fleet_file(&server, "charts/api/values.yaml"),
        values(&ns).replace("\"2.0.0\"", "\"2.1.0\"")
    );
    assert_eq!(
        fleet_file(&server, "README.md"),
        "image: registry/app:1.0.0 # {\"$imagepolicy\": \"x:app\"}\n"
    );
    assert_eq!(
        server.show("fleet", &head, "%an <%ae>|%cn <%ce>"),
        "Flux Bot <flux@example.invalid>|Flux Bot <flux@example.invalid>\n"
    );
    assert_eq!(
        server.show("fleet", &head, "%B"),
        format!(
            "Update by {ns}/auto\n\n- {ns}:app: registry/app:1.0.0 -> \
             registry/app:1.1.0@{DIGEST}\n- {ns}:api:tag: 2.0.0 -> 2.1.0\nFiles: apps/app.yaml \
             charts/api/values.yaml\n\n"
        )
    );

    let written = status(&client, &ns, "auto").await;
    assert_eq!(written["lastAutomationRunTime"], "2026-03-01T10:00:00Z");
    assert_eq!(written["lastPushCommit"], json!(head));
    assert_eq!(written["lastPushTime"], "2026-03-01T10:00:00Z");
    assert_eq!(written["observedGeneration"], 1);
    assert_eq!(
        written["observedPolicies"],
        json!({
            "app": {"name": "registry/app", "tag": "1.1.0", "digest": DIGEST},
            "api": {"name": "registry/api", "tag": "2.1.0"},
        })
    );
    let message = assert_ready(&written, "True", "ReconciliationSucceeded", "");
    assert_eq!(message, format!("pushed commit '{short}' to branch 'main'"));

    // Not due before the interval has passed: nothing read, nothing written.
    let early = automation.reconcile(at("2026-03-01T10:00:30Z")).await;
    assert_eq!(outcome(&early, &ns, "auto"), &Outcome::NotDue);
    assert_eq!(status(&client, &ns, "auto").await, written);

    // Due again: nothing to push, and the status says the repository is up to date.
    let again = automation.reconcile(at("2026-03-01T10:01:00Z")).await;
    assert_eq!(outcome(&again, &ns, "auto"), &up_to_date());
    assert!(again.pushed.is_empty());
    assert_eq!(server.log("fleet", "main").len(), 2);
    let after = status(&client, &ns, "auto").await;
    assert_eq!(after["lastPushCommit"], json!(head));
    assert_eq!(after["lastPushTime"], "2026-03-01T10:00:00Z");
    assert_eq!(after["lastAutomationRunTime"], "2026-03-01T10:01:00Z");
    assert_eq!(ready(&after).2, "repository up-to-date");

    // A new generation is due at once, interval or not.
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &automations());
    api.patch(
        "auto",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"interval": "5m"}})),
    )
    .await
    .expect("change the spec");
    let changed = automation.reconcile(at("2026-03-01T10:01:10Z")).await;
    assert_ne!(outcome(&changed, &ns, "auto"), &Outcome::NotDue);
    let after = status(&client, &ns, "auto").await;
    assert_eq!(after["lastAutomationRunTime"], "2026-03-01T10:01:10Z");
    assert_eq!(after["observedGeneration"], 2);
    assert_eq!(server.log("fleet", "main").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_branch_gets_the_commit_and_the_checkout_branch_stays() {
    let Some((ns, client)) = setup("auto-branch").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    let main_head = server.head("fleet", "main").expect("main");
    let mut git = git_spec();
    git["push"] = json!({"branch": "image-updates"});
    create_automation(&client, &ns, "auto", json!({"git": git})).await;
    let automation = automation(&client, &ns, &server);

    let report = automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        server.head("fleet", "main").as_deref(),
        Some(main_head.as_str())
    );
    let updates = server.log("fleet", "image-updates");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1].0, main_head);
    assert_eq!(updates[0].1, "Update from image update automation");
    let (status_, _, message) = ready(&status(&client, &ns, "auto").await);
    assert_eq!(status_, "True");
    assert_eq!(
        message,
        format!(
            "pushed commit '{}' to branch 'image-updates'",
            &updates[0].0[..7]
        )
    );
    assert_eq!(
        server
            .read_file("fleet", "image-updates", "charts/api/values.yaml")
            .unwrap(),
        values(&ns).replace("\"2.0.0\"", "\"2.1.0\"")
    );
    // The next run builds on the push branch: nothing more to do.
    let again = automation.reconcile(at("2026-03-01T10:05:00Z")).await;
    assert_eq!(outcome(&again, &ns, "auto"), &up_to_date());
    assert_eq!(server.log("fleet", "image-updates").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_automation_pushes_nothing_and_keeps_its_status() {
    let Some((ns, client)) = setup("auto-suspend").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    let head = server.head("fleet", "main");
    create_automation(&client, &ns, "auto", json!({"suspend": true})).await;
    patch_status(
        &client,
        &ns,
        &automations(),
        "auto",
        json!({
            "lastAutomationRunTime": "2025-01-01T00:00:00Z",
            "lastPushCommit": "0123456789abcdef0123456789abcdef01234567",
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "ReconciliationSucceeded",
                "message": "repository up-to-date",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }],
        }),
    )
    .await;
    let before = status(&client, &ns, "auto").await;
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert_eq!(outcome(&report, &ns, "auto"), &Outcome::Suspended);
    assert_eq!(server.head("fleet", "main"), head);
    assert_eq!(status(&client, &ns, "auto").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_push_nothing_and_write_only_the_condition_and_run_time() {
    let Some((ns, client)) = setup("auto-fail").await else {
        return;
    };
    for (name, data) in [
        ("wrong", &[("username", USER), ("password", "nope")]),
        ("ssh", &[("identity", "KEY"), ("known_hosts", "HOSTS")]),
    ] {
        credentials(&client, &ns, name, data).await;
    }
    let server = fleet(&client, &ns, "wrong").await;
    let head = server.head("fleet", "main");
    let mut bad_template = git_spec();
    bad_template["commit"]["messageTemplate"] =
        json!("{{ range $r, $c := .Changed.Objects }}{{ $r.Kind }}{{ end }}");
    // The same repository with an SSH secret, which keel-flux refuses.
    create(
        &client,
        &ns,
        &git_repositories(),
        "over-ssh",
        json!({"url": server.http_url("fleet"), "interval": "1m", "secretRef": {"name": "ssh"}}),
    )
    .await;
    let source = |name: &str| json!({"sourceRef": {"kind": "GitRepository", "name": name}});
    for (name, extra) in [
        ("wrong-password", json!({})),
        ("no-source", source("missing")),
        ("template", json!({"git": bad_template})),
        ("ssh", source("over-ssh")),
    ] {
        create_automation(&client, &ns, name, extra).await;
    }

    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.pushed.is_empty(), "{:?}", report.pushed);
    assert_eq!(server.head("fleet", "main"), head, "a failed run pushed");
    for (name, reason, says) in [
        ("wrong-password", "GitOperationFailed", "refused"),
        ("no-source", "GitRepositoryNotFound", "does not exist"),
        ("template", "InvalidMessageTemplate", ".Changed.Objects"),
        ("ssh", "InvalidSourceConfiguration", "SSH"),
    ] {
        let written = status(&client, &ns, name).await;
        let message = assert_ready(&written, "False", reason, says);
        assert!(
            !message.contains(PASSWORD) && !message.contains("nope"),
            "{message}"
        );
        assert_eq!(
            written["lastAutomationRunTime"], "2026-03-01T10:00:00Z",
            "{name}"
        );
        for field in ["lastPushCommit", "lastPushTime", "observedPolicies"] {
            assert!(written.get(field).is_none(), "{name}: {field} in {written}");
        }
        assert_eq!(
            outcome(&report, &ns, name),
            &Outcome::NotReady {
                reason: reason.into(),
                message,
            }
        );
    }

    // With the right credentials the same automation pushes on its next run.
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &git_repositories());
    api.patch(
        "fleet",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"secretRef": {"name": "git"}}})),
    )
    .await
    .expect("point the GitRepository at the right secret");
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:01:00Z"))
        .await;
    assert!(
        report.pushed.contains_key(&format!("{ns}/wrong-password")),
        "{report:?}"
    );
    assert_eq!(server.log("fleet", "main").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_that_moves_under_the_run_gets_all_of_its_changes_or_none() {
    let Some((ns, client)) = setup("auto-race").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    let initial = server.head("fleet", "main").expect("main");
    create_automation(&client, &ns, "auto", json!({})).await;
    let automation = automation(&client, &ns, &server);

    // Another commit lands between the automation's fetch and its push, changing the line of
    // the app's marker: the values' change does not land without it.
    let pinned = deployment(&ns).replace("registry/app:1.0.0", "registry/app:1.0.5");
    let theirs = server.push_file("fleet", "theirs", "apps/app.yaml", &pinned, "Pin app");
    server.move_branch_on_next_push("fleet", "main", &theirs);
    let report = automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.pushed.is_empty(), "{:?}", report.pushed);
    assert_eq!(server.log("fleet", "main").len(), 2, "the run pushed");
    assert_eq!(
        server.head("fleet", "main").as_deref(),
        Some(theirs.as_str())
    );
    assert_eq!(fleet_file(&server, "charts/api/values.yaml"), values(&ns));
    let written = status(&client, &ns, "auto").await;
    let message = assert_ready(&written, "False", "UpdateFailed", "apps/app.yaml");
    assert!(message.contains("registry/app:1.0.5"), "{message}");
    assert!(message.contains("none"), "{message}");
    for field in ["lastPushCommit", "lastPushTime"] {
        assert!(written.get(field).is_none(), "{field} in {written}");
    }

    // The next run starts from the branch as it is: both changes, in one commit on theirs.
    let report = automation.reconcile(at("2026-03-01T10:01:00Z")).await;
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].0, theirs);
    assert_eq!(report.pushed.get(&format!("{ns}/auto")), Some(&log[0].0));

    // A commit to another file between fetch and push: the run's commit lands on top of it.
    server.set_branch("fleet", "main", Some(&initial));
    let docs = server.push_file("fleet", "docs", "README.md", "docs\n", "Docs");
    server.move_branch_on_next_push("fleet", "main", &docs);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &automations());
    api.patch(
        "auto",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"interval": "2m"}})),
    )
    .await
    .expect("change the spec");
    let report = automation.reconcile(at("2026-03-01T10:01:30Z")).await;
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].0, docs);
    assert_eq!(report.pushed.get(&format!("{ns}/auto")), Some(&log[0].0));
    assert_eq!(fleet_file(&server, "README.md"), "docs\n");
    assert_eq!(
        fleet_file(&server, "apps/app.yaml"),
        updated_deployment(&ns)
    );
    assert_ready(
        &status(&client, &ns, "auto").await,
        "True",
        "ReconciliationSucceeded",
        &log[0].0[..7],
    );
}

/// Sets the labels of the `ImagePolicy` `name`.
async fn label_policy(client: &Client, ns: &str, name: &str, labels: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &policies());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": labels}})),
    )
    .await
    .unwrap_or_else(|e| panic!("label the policy {ns}/{name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_selector_expressions_choose_the_policies_applied() {
    let Some((ns, client)) = setup("auto-select").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    label_policy(&client, &ns, "app", json!({"tier": "front", "team": "web"})).await;
    label_policy(&client, &ns, "api", json!({"tier": "back", "team": "web"})).await;
    let expressions = |list: Value| json!({"policySelector": {"matchExpressions": list}});
    for (name, extra) in [
        (
            "bad-operator",
            expressions(json!([{"key": "tier", "operator": "Equals", "values": ["front"]}])),
        ),
        (
            "no-values",
            expressions(json!([{"key": "tier", "operator": "In"}])),
        ),
        // Every automation below selects the app's policy alone.
        (
            "front",
            json!({"policySelector": {
                "matchLabels": {"team": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "NotIn", "values": ["back", "db"]},
                    {"key": "team", "operator": "Exists"},
                    {"key": "frozen", "operator": "DoesNotExist"},
                ],
            }}),
        ),
    ] {
        create_automation(&client, &ns, name, extra).await;
    }
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for (name, says) in [
        (
            "bad-operator",
            "spec.policySelector.matchExpressions[0].operator \"Equals\"",
        ),
        (
            "no-values",
            "spec.policySelector.matchExpressions[0].operator \"In\"",
        ),
    ] {
        let written = status(&client, &ns, name).await;
        assert_ready(&written, "False", "InvalidPolicySelector", says);
        assert!(written.get("lastPushCommit").is_none(), "{written}");
    }

    // Only the app's marker moved; the api's policy, labelled tier=back, was not applied.
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(report.pushed.get(&format!("{ns}/front")), Some(&log[0].0));
    assert_eq!(
        fleet_file(&server, "apps/app.yaml"),
        updated_deployment(&ns)
    );
    assert_eq!(fleet_file(&server, "charts/api/values.yaml"), values(&ns));
    assert_eq!(
        status(&client, &ns, "front").await["observedPolicies"],
        json!({"app": {"name": "registry/app", "tag": "1.1.0", "digest": DIGEST}})
    );

    // A label that now fails an expression deselects the policy: nothing more to push.
    label_policy(&client, &ns, "api", json!({"frozen": "yes"})).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &automations());
    api.patch(
        "front",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"policySelector": {"matchExpressions": [
            {"key": "frozen", "operator": "DoesNotExist"},
        ]}}})),
    )
    .await
    .expect("change the selector");
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:30Z"))
        .await;
    assert_eq!(outcome(&report, &ns, "front"), &up_to_date());
    assert_eq!(server.log("fleet", "main").len(), 2);
    assert_eq!(
        status(&client, &ns, "front").await["observedPolicies"],
        json!({"app": {"name": "registry/app", "tag": "1.1.0", "digest": DIGEST}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_that_are_not_a_branch_push_on_top_of_them_to_the_push_branch() {
    let Some((ns, client)) = setup("auto-checkout").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    let initial = server.head("fleet", "main").expect("main");
    let later = server.push_file("fleet", "main", "README.md", "later\n", "Later work");
    for (tag, commit) in [
        ("v1.0.0", &initial),
        ("v1.1.0", &later),
        ("v2.0.0", &initial),
    ] {
        server.bare("fleet", ["tag", tag, commit]).expect_success();
    }
    // A GitRepository that checks out a tag, for an automation without a checkout of its own.
    create(
        &client,
        &ns,
        &git_repositories(),
        "fleet-tag",
        json!({
            "url": server.http_url("fleet"),
            "interval": "1m",
            "ref": {"tag": "v1.0.0"},
            "secretRef": {"name": "git"},
        }),
    )
    .await;
    let git = |reference: Value, push: Option<&str>| {
        let mut git = git_spec();
        git["checkout"] = json!({"ref": reference});
        if let Some(push) = push {
            git["push"] = json!({"branch": push});
        }
        json!({"git": git})
    };
    let cases = [
        (
            "tag",
            git(json!({"tag": "v1.0.0"}), Some("from-tag")),
            &initial,
        ),
        (
            "semver",
            git(json!({"semver": ">=1.0.0 <2.0.0"}), Some("from-semver")),
            &later,
        ),
        (
            "name",
            git(json!({"name": "refs/tags/v1.0.0"}), Some("from-name")),
            &initial,
        ),
        (
            "commit",
            // The commit wins over the branch, as in Flux.
            git(
                json!({"commit": initial, "branch": "main"}),
                Some("from-commit"),
            ),
            &initial,
        ),
    ];
    for (name, extra, _) in &cases {
        create_automation(&client, &ns, name, extra.clone()).await;
    }
    let mut from_repository = git_spec();
    from_repository
        .as_object_mut()
        .expect("git")
        .remove("checkout");
    from_repository["push"] = json!({"branch": "from-repository"});
    create_automation(
        &client,
        &ns,
        "repository",
        json!({
            "sourceRef": {"kind": "GitRepository", "name": "fleet-tag"},
            "git": from_repository,
        }),
    )
    .await;
    create_automation(&client, &ns, "no-push", git(json!({"tag": "v1.0.0"}), None)).await;

    let automation = automation(&client, &ns, &server);
    let report = automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let expected_app = updated_deployment(&ns);
    let branches = cases
        .iter()
        .map(|(name, extra, base)| {
            let branch = extra["git"]["push"]["branch"].as_str().unwrap().to_owned();
            (name.to_string(), branch, (*base).clone())
        })
        .chain([(
            "repository".to_owned(),
            "from-repository".to_owned(),
            initial.clone(),
        )]);
    for (name, branch, base) in branches {
        let log = server.log("fleet", &branch);
        assert_eq!(
            server.show("fleet", &log[0].0, "%P").trim(),
            base,
            "{name}: not one commit on top of its checkout: {log:?}"
        );
        assert_eq!(report.pushed.get(&format!("{ns}/{name}")), Some(&log[0].0));
        assert_eq!(
            server.read_file("fleet", &branch, "apps/app.yaml").unwrap(),
            expected_app,
            "{name}"
        );
        assert_ready(
            &status(&client, &ns, &name).await,
            "True",
            "ReconciliationSucceeded",
            &format!("to branch '{branch}'"),
        );
    }
    assert_eq!(
        server.head("fleet", "main").as_deref(),
        Some(later.as_str())
    );
    assert_ready(
        &status(&client, &ns, "no-push").await,
        "False",
        "InvalidSourceConfiguration",
        "spec.git.push.branch is required",
    );

    // The next run finds the push branch as it would make it: nothing to push.
    let again = automation.reconcile(at("2026-03-01T10:01:00Z")).await;
    assert_eq!(outcome(&again, &ns, "tag"), &up_to_date());
    assert_eq!(server.log("fleet", "from-tag").len(), 2);

    // Commits of someone else on the push branch: the branch is made anew from the tag, as
    // Flux's default (GitForcePushBranch) does.
    let theirs = server.push_file("fleet", "from-tag", "NOTES.md", "x\n", "Notes");
    let report = automation.reconcile(at("2026-03-01T10:02:00Z")).await;
    let log = server.log("fleet", "from-tag");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].0, initial);
    assert!(log.iter().all(|(id, _)| *id != theirs), "{log:?}");
    assert_eq!(report.pushed.get(&format!("{ns}/tag")), Some(&log[0].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_secrets_push_only_to_the_host_known_hosts_pins() {
    let Some((ns, client)) = setup("auto-ssh").await else {
        return;
    };
    let server = git_server(&ns);
    let ssh = SshServer::start();
    policies_with_choices(&client, &ns).await;
    let head = server.head("fleet", "main");
    let client_key = ssh.client_key();
    let other_key = ssh.other_key();
    let wrong_host = format!("[127.0.0.1]:{} {}", ssh.port(), ssh.other_public_key());
    for (secret, data) in [
        (
            "good",
            vec![
                ("identity", client_key.as_str()),
                ("known_hosts", ssh.known_hosts()),
            ],
        ),
        (
            "wrong-host",
            vec![
                ("identity", client_key.as_str()),
                ("known_hosts", &wrong_host),
            ],
        ),
        (
            "wrong-identity",
            vec![
                ("identity", other_key.as_str()),
                ("known_hosts", ssh.known_hosts()),
            ],
        ),
        ("no-known-hosts", vec![("identity", client_key.as_str())]),
    ] {
        credentials(&client, &ns, secret, &data).await;
        create(
            &client,
            &ns,
            &git_repositories(),
            secret,
            json!({
                "url": ssh.url(&server, "fleet"),
                "interval": "1m",
                "ref": {"branch": "main"},
                "secretRef": {"name": secret},
            }),
        )
        .await;
        let mut git = git_spec();
        git.as_object_mut().expect("git").remove("checkout");
        create_automation(
            &client,
            &ns,
            secret,
            json!({"sourceRef": {"kind": "GitRepository", "name": secret}, "git": git}),
        )
        .await;
    }
    // The failures first, so that the good one's push does not make them up-to-date.
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &automations());
    api.patch(
        "good",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    let requests = || ssh.log().matches("userauth-request for user").count();
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.pushed.is_empty(), "{:?}", report.pushed);
    assert_eq!(server.head("fleet", "main"), head);
    let port = format!("[127.0.0.1]:{}", ssh.port());
    for (name, reason, says) in [
        ("wrong-host", "GitOperationFailed", port.as_str()),
        ("wrong-identity", "GitOperationFailed", "refused"),
        (
            "no-known-hosts",
            "InvalidSourceConfiguration",
            "without known_hosts",
        ),
    ] {
        let message = assert_ready(&status(&client, &ns, name).await, "False", reason, says);
        assert!(!message.contains("PRIVATE KEY"), "{message}");
    }
    // The server was asked to let the wrong identity in (keel-git's SSH test shows that a
    // server with a host key not pinned gets no request at all).
    assert!(requests() > 0, "{}", ssh.log());

    api.patch(
        "good",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:10Z"))
        .await;
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(report.pushed.get(&format!("{ns}/good")), Some(&log[0].0));
    assert_eq!(
        fleet_file(&server, "apps/app.yaml"),
        updated_deployment(&ns)
    );
}

/// Runs `gpg` with the key ring `home`, failing the test unless it succeeds.
fn gpg(home: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
        .args(args)
        .output()
        .expect("run gpg (Debian's gnupg)");
    assert!(
        output.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_signed_with_the_signing_key_and_verify_with_git() {
    let Some((ns, client)) = setup("auto-sign").await else {
        return;
    };
    let server = fleet(&client, &ns, "git").await;
    let head = server.head("fleet", "main");
    // A key made by GnuPG, as users make theirs.
    let home = server.scratch_dir("gnupg");
    let passphrase = "correct horse";
    gpg(
        &home,
        &[
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            "Flux Bot <flux@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let armored = String::from_utf8(gpg(
        &home,
        &[
            "--passphrase",
            passphrase,
            "--armor",
            "--export-secret-keys",
            "flux@example.invalid",
        ],
    ))
    .unwrap();
    credentials(
        &client,
        &ns,
        "signing",
        &[("git.asc", armored.as_str()), ("passphrase", passphrase)],
    )
    .await;
    credentials(
        &client,
        &ns,
        "wrong-passphrase",
        &[("git.asc", armored.as_str()), ("passphrase", "wrong")],
    )
    .await;
    credentials(&client, &ns, "not-a-key", &[("git.asc", "hello")]).await;
    for (name, secret) in [
        ("unlocked", "wrong-passphrase"),
        ("garbage", "not-a-key"),
        ("signed", "signing"),
    ] {
        let mut git = git_spec();
        git["commit"]["signingKey"] = json!({"secretRef": {"name": secret}});
        create_automation(&client, &ns, name, json!({"git": git})).await;
    }
    let mut git = git_spec();
    git["commit"]["signingKey"] = json!({"type": "ssh", "secretRef": {"name": "signing"}});
    create_automation(&client, &ns, "ssh-signing", json!({"git": git})).await;

    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for (name, says) in [
        ("unlocked", "cannot sign"),
        ("garbage", "not an ASCII-armored OpenPGP private key"),
        ("ssh-signing", "type 'ssh'"),
    ] {
        let message = assert_ready(
            &status(&client, &ns, name).await,
            "False",
            "InvalidSourceConfiguration",
            says,
        );
        assert!(!message.contains(passphrase), "{message}");
    }
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].0, head.unwrap());
    assert_eq!(report.pushed.get(&format!("{ns}/signed")), Some(&log[0].0));

    // git itself verifies the signature with the public key.
    let mut verify = server.git().command();
    verify
        .env("GNUPGHOME", &home)
        .arg("--git-dir")
        .arg(server.repo_path("fleet"))
        .args(["verify-commit", "--raw", &log[0].0]);
    let output = server.git().output(verify);
    assert!(output.success, "{}", output.stderr);
    let said = &output.stderr;
    assert!(said.contains("GOODSIG"), "{said}");
    // And refuses a commit that is not signed.
    let mut unsigned = server.git().command();
    unsigned
        .env("GNUPGHOME", &home)
        .arg("--git-dir")
        .arg(server.repo_path("fleet"))
        .args(["verify-commit", &log[1].0]);
    assert!(!server.git().output(unsigned).success);
    let _ = std::process::Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "gpg-agent"])
        .status();
}
