//! The automation against a real kube-apiserver (Flux's CRDs from `crds/`) and a real Git
//! server (`git http-backend` behind basic authentication): the commits pushed and the
//! statuses Flux users read. The `ImagePolicy` statuses are written directly, as the
//! reflector would. `automation_git.rs` has the checkouts, SSH and signed commits.
//!
//! Run `eval "$(scripts/envtest env)"` first; without the API server binaries the tests skip.

mod automation_common;
mod common;

use automation_common::{
    AUTOMATIONS, DIGEST, GIT_REPOSITORIES, PASSWORD, POLICIES, USER, automation, create_automation,
    deployment, fleet, fleet_file, fleet_namespace, git_spec, outcome, pushed_log, status,
    up_to_date, updated_deployment, values,
};
use common::{at, namespace};
use keel_flux::automation::{Automation, AutomationReport};
use keel_flux::reflector::Outcome;
use keel_testsupport::git::GitServer;
use keel_testsupport::kube::create_secret;
use keel_testsupport::kube::flux::{assert_ready, create, merge, patch_spec, patch_status, ready};
use kube::Client;
use serde_json::{Value, json};

/// What the tests of the one automation `auto` begin with.
struct World {
    /// The namespace of a [`fleet_namespace`].
    ns: String,
    /// Its admin client.
    client: Client,
    /// The Git server of the fleet repository.
    server: GitServer,
    /// The commit `main` of the fleet repository was at before any run.
    main_head: String,
    /// An [`automation`] of the namespace.
    automation: Automation,
}

impl World {
    /// The status of `auto`.
    async fn status(&self) -> Value {
        status(&self.client, &self.ns, "auto").await
    }

    /// What the run of `report` did with `auto`.
    fn outcome<'r>(&self, report: &'r AutomationReport) -> &'r Outcome {
        outcome(report, &self.ns, "auto")
    }

    /// Merge-patches `spec` into the spec of `auto`.
    async fn patch_spec(&self, spec: Value) {
        patch_spec(&self.client, &self.ns, AUTOMATIONS, "auto", spec).await;
    }
}

/// The [`World`] of a test named `prefix`, with `extra` in the spec of `auto`; `None` when the
/// API server binaries are not installed.
async fn world(prefix: &str, extra: Value) -> Option<World> {
    let (ns, client, server) = fleet_namespace(prefix).await?;
    let main_head = server.head("fleet", "main").expect("main");
    create_automation(&client, &ns, "auto", extra).await;
    let automation = automation(&client, &ns, &server);
    Some(World {
        ns,
        client,
        server,
        main_head,
        automation,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_changes_only_the_markers_and_the_status_says_so() {
    let mut git = git_spec();
    git["commit"]["messageTemplate"] = json!(
        "Update by {{ .AutomationObject }}\n\n{{ range .Changed.Changes -}}\n- {{ .Setter }}: \
         {{ .OldValue }} -> {{ .NewValue }}\n{{ end -}}\nFiles:{{ range $f, $_ := \
         .Changed.FileChanges }} {{ $f }}{{ end }}\n"
    );
    let Some(w) = world("auto-push", json!({"git": git})).await else {
        return;
    };

    let t0 = at("2026-03-01T10:00:00Z");
    let report = w.automation.reconcile(t0).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let log = pushed_log(&w.server, &report, &w.ns, "auto", "main", 2);
    assert_eq!(log[1].0, w.main_head);
    let head = log[0].0.clone();
    let short = &head[..7];
    assert_eq!(
        w.outcome(&report),
        &Outcome::Ready {
            message: format!("pushed commit '{short}' to branch 'main'")
        }
    );

    // The files differ only at the markers of ready policies.
    assert_eq!(
        fleet_file(&w.server, "apps/app.yaml"),
        updated_deployment(&w.ns)
    );
    assert_eq!(
        fleet_file(&w.server, "charts/api/values.yaml"),
        values(&w.ns).replace("\"2.0.0\"", "\"2.1.0\"")
    );
    assert_eq!(
        fleet_file(&w.server, "README.md"),
        "image: registry/app:1.0.0 # {\"$imagepolicy\": \"x:app\"}\n"
    );
    assert_eq!(
        w.server.show("fleet", &head, "%an <%ae>|%cn <%ce>"),
        "Flux Bot <flux@example.invalid>|Flux Bot <flux@example.invalid>\n"
    );
    assert_eq!(
        w.server.show("fleet", &head, "%B"),
        format!(
            "Update by {ns}/auto\n\n- {ns}:app: registry/app:1.0.0 -> \
             registry/app:1.1.0@{DIGEST}\n- {ns}:api:tag: 2.0.0 -> 2.1.0\nFiles: apps/app.yaml \
             charts/api/values.yaml\n\n",
            ns = w.ns
        )
    );

    let written = w.status().await;
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
    let early = w.automation.reconcile(at("2026-03-01T10:00:30Z")).await;
    assert_eq!(w.outcome(&early), &Outcome::NotDue);
    assert_eq!(w.status().await, written);

    // Due again: nothing to push, and the status says the repository is up to date.
    let again = w.automation.reconcile(at("2026-03-01T10:01:00Z")).await;
    assert_eq!(w.outcome(&again), &up_to_date());
    assert!(again.pushed.is_empty());
    assert_eq!(w.server.log("fleet", "main").len(), 2);
    let after = w.status().await;
    assert_eq!(after["lastPushCommit"], json!(head));
    assert_eq!(after["lastPushTime"], "2026-03-01T10:00:00Z");
    assert_eq!(after["lastAutomationRunTime"], "2026-03-01T10:01:00Z");
    assert_eq!(ready(&after).2, "repository up-to-date");

    // A new generation is due at once, interval or not.
    w.patch_spec(json!({"interval": "5m"})).await;
    let changed = w.automation.reconcile(at("2026-03-01T10:01:10Z")).await;
    assert_ne!(w.outcome(&changed), &Outcome::NotDue);
    let after = w.status().await;
    assert_eq!(after["lastAutomationRunTime"], "2026-03-01T10:01:10Z");
    assert_eq!(after["observedGeneration"], 2);
    assert_eq!(w.server.log("fleet", "main").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_branch_gets_the_commit_and_the_checkout_branch_stays() {
    let mut git = git_spec();
    git["push"] = json!({"branch": "image-updates"});
    let Some(w) = world("auto-branch", json!({"git": git})).await else {
        return;
    };

    let report = w.automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        w.server.head("fleet", "main").as_deref(),
        Some(w.main_head.as_str())
    );
    let updates = w.server.log("fleet", "image-updates");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1].0, w.main_head);
    assert_eq!(updates[0].1, "Update from image update automation");
    let (status_, _, message) = ready(&w.status().await);
    assert_eq!(status_, "True");
    assert_eq!(
        message,
        format!(
            "pushed commit '{}' to branch 'image-updates'",
            &updates[0].0[..7]
        )
    );
    assert_eq!(
        w.server
            .read_file("fleet", "image-updates", "charts/api/values.yaml")
            .unwrap(),
        values(&w.ns).replace("\"2.0.0\"", "\"2.1.0\"")
    );
    // The next run builds on the push branch: nothing more to do.
    let again = w.automation.reconcile(at("2026-03-01T10:05:00Z")).await;
    assert_eq!(w.outcome(&again), &up_to_date());
    assert_eq!(w.server.log("fleet", "image-updates").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_automation_pushes_nothing_and_keeps_its_status() {
    let Some(w) = world("auto-suspend", json!({"suspend": true})).await else {
        return;
    };
    patch_status(
        &w.client,
        &w.ns,
        AUTOMATIONS,
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
    let before = w.status().await;
    let report = w.automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert_eq!(w.outcome(&report), &Outcome::Suspended);
    assert_eq!(w.server.head("fleet", "main").as_ref(), Some(&w.main_head));
    assert_eq!(w.status().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_push_nothing_and_write_only_the_condition_and_run_time() {
    let Some((ns, client)) = namespace("auto-fail").await else {
        return;
    };
    for (name, data) in [
        ("wrong", &[("username", USER), ("password", "nope")]),
        ("ssh", &[("identity", "KEY"), ("known_hosts", "HOSTS")]),
    ] {
        create_secret(&client, &ns, name, data).await;
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
        "v1",
        GIT_REPOSITORIES,
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
    patch_spec(
        &client,
        &ns,
        GIT_REPOSITORIES,
        "fleet",
        json!({"secretRef": {"name": "git"}}),
    )
    .await;
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
    let Some(w) = world("auto-race", json!({})).await else {
        return;
    };

    // Another commit lands between the automation's fetch and its push, changing the line of
    // the app's marker: the values' change does not land without it.
    let pinned = deployment(&w.ns).replace("registry/app:1.0.0", "registry/app:1.0.5");
    let theirs = w
        .server
        .push_file("fleet", "theirs", "apps/app.yaml", &pinned, "Pin app");
    w.server.move_branch_on_next_push("fleet", "main", &theirs);
    let report = w.automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.pushed.is_empty(), "{:?}", report.pushed);
    assert_eq!(w.server.log("fleet", "main").len(), 2, "the run pushed");
    assert_eq!(
        w.server.head("fleet", "main").as_deref(),
        Some(theirs.as_str())
    );
    assert_eq!(
        fleet_file(&w.server, "charts/api/values.yaml"),
        values(&w.ns)
    );
    let written = w.status().await;
    let message = assert_ready(&written, "False", "UpdateFailed", "apps/app.yaml");
    assert!(message.contains("registry/app:1.0.5"), "{message}");
    assert!(message.contains("none"), "{message}");
    for field in ["lastPushCommit", "lastPushTime"] {
        assert!(written.get(field).is_none(), "{field} in {written}");
    }

    // The next run starts from the branch as it is: both changes, in one commit on theirs.
    let report = w.automation.reconcile(at("2026-03-01T10:01:00Z")).await;
    let log = pushed_log(&w.server, &report, &w.ns, "auto", "main", 3);
    assert_eq!(log[1].0, theirs);

    // A commit to another file between fetch and push: the run's commit lands on top of it.
    w.server.set_branch("fleet", "main", Some(&w.main_head));
    let docs = w
        .server
        .push_file("fleet", "docs", "README.md", "docs\n", "Docs");
    w.server.move_branch_on_next_push("fleet", "main", &docs);
    w.patch_spec(json!({"interval": "2m"})).await;
    let report = w.automation.reconcile(at("2026-03-01T10:01:30Z")).await;
    let log = pushed_log(&w.server, &report, &w.ns, "auto", "main", 3);
    assert_eq!(log[1].0, docs);
    assert_eq!(fleet_file(&w.server, "README.md"), "docs\n");
    assert_eq!(
        fleet_file(&w.server, "apps/app.yaml"),
        updated_deployment(&w.ns)
    );
    assert_ready(
        &w.status().await,
        "True",
        "ReconciliationSucceeded",
        &log[0].0[..7],
    );
}

/// Sets the labels of the `ImagePolicy` `name`.
async fn label_policy(client: &Client, ns: &str, name: &str, labels: Value) {
    merge(
        client,
        ns,
        POLICIES,
        name,
        json!({"metadata": {"labels": labels}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_selector_expressions_choose_the_policies_applied() {
    let Some((ns, client, server)) = fleet_namespace("auto-select").await else {
        return;
    };
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
    pushed_log(&server, &report, &ns, "front", "main", 2);
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
    patch_spec(
        &client,
        &ns,
        AUTOMATIONS,
        "front",
        json!({"policySelector": {"matchExpressions": [
            {"key": "frozen", "operator": "DoesNotExist"},
        ]}}),
    )
    .await;
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
