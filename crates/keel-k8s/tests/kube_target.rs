//! `KubeTarget` against a real API server: discovery from annotations and labels for every
//! kind, updates patched onto one container, conflicts, RBAC, idempotence and the cache's
//! request pattern. Poll cycles of the pipeline over it are in `poll_cycle.rs`.

mod support;
use support::{
    assert_someones_label_kept, by_id, conflict_reason, discover_running, discover_until,
    get_deployment, ids, image, namespace_with, outcome, plan, racing_deployment_client,
    someone_labels_web, target_in, unauthorized,
};

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use keel_core::target::Trigger;
use keel_core::{ApplyOutcome, Error, Target};
use keel_k8s::{KubeTarget, WorkloadKind};
use keel_testsupport::kube::openshift::triggers_annotation;
use keel_testsupport::kube::{ApiServer, Kind, Workload, deployment_images, granted_client};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Applies the plan moving `id` from `current` to `new` with `target`.
async fn apply(
    target: &KubeTarget,
    id: &str,
    current: &str,
    new: &str,
) -> Result<ApplyOutcome, Error> {
    target.apply(&plan(id, current, new)).await
}

/// Keys and values of annotations or labels.
type Keys<'a> = &'a [(&'a str, &'a str)];

/// The key and value a discovery problem names.
type Problem<'a> = (&'a str, &'a str);

/// One Deployment of a table: its name, annotations, labels and the image of its `app`
/// container.
type Row<'a> = (&'a str, Keys<'a>, Keys<'a>, &'a str);

/// The Deployment of a table row.
fn row_workload((name, annotations, labels, app): &Row<'_>) -> Workload {
    let mut workload = Workload::deployment(name);
    for (key, value) in *annotations {
        workload = workload.annotation(key, value);
    }
    for (key, value) in *labels {
        workload = workload.label(key, value);
    }
    workload.container("app", app)
}

/// The ids of the Deployment containers `workload/container` of `ns`.
fn deployment_ids(ns: &str, containers: &[&str]) -> Vec<String> {
    let id = |container: &&str| format!("deployment/{ns}/{container}");
    containers.iter().map(id).collect()
}

#[tokio::test]
async fn discovers_keys_from_annotations_and_labels_with_annotations_winning() {
    let rows: &[Row] = &[
        (
            "annotated",
            &[
                ("keel.sh/policy", "minor"),
                ("keel.sh/trigger", "poll"),
                ("keel.sh/pollSchedule", "@every 5m"),
                ("keel.sh/approvals", "2"),
                ("keel.sh/approvalDeadline", "6"),
                ("keel.sh/notify", "#ops, #web"),
                ("keel.sh/releaseNotes", "https://example.com/notes"),
            ],
            &[],
            "nginx:1.25.3",
        ),
        (
            "labelled",
            &[],
            &[("keel.sh/policy", "major"), ("keel.sh/trigger", "poll")],
            "ghcr.io/acme/api:2.0.0",
        ),
        (
            "both",
            &[("keel.sh/policy", "glob:1.2.*"), ("keel.sh/approvals", "3")],
            &[
                ("keel.sh/policy", "patch"),
                ("keel.sh/approvals", "1"),
                ("keel.sh/trigger", "poll"),
            ],
            "ghcr.io/acme/web:1.2.0",
        ),
        ("untracked", &[], &[("app", "plain")], "nginx:1.25.3"),
        ("never", &[("keel.sh/policy", "never")], &[], "nginx:1.25.3"),
    ];
    let workloads = rows.iter().map(row_workload);
    let Some((_, ns, admin)) = namespace_with("discover-keys", workloads).await else {
        return;
    };

    let target = target_in(admin, &ns).await;
    let images = target.discover().await.expect("discover");
    assert_eq!(
        ids(&images),
        deployment_ids(&ns, &["annotated/app", "both/app", "labelled/app"])
    );

    // Name, policy, approvals, trigger and approval deadline (`None`: not checked). No
    // schedule is the poller's default (Keel's `@every 1m`). Annotations win key by key; a key
    // only in the labels still counts.
    let every_5m = Trigger::Poll {
        schedule: Some("@every 5m".parse().unwrap()),
    };
    let no_schedule = Trigger::Poll { schedule: None };
    let expected = [
        ("annotated", "Minor", 2, every_5m, Some(6 * 3600)),
        ("labelled", "Major", 0, no_schedule.clone(), Some(24 * 3600)),
        ("both", "Glob", 3, no_schedule, None),
    ];
    for (name, policy, approvals, trigger, deadline) in expected {
        let tracked = by_id(&images, &format!("deployment/{ns}/{name}/app"));
        let found = format!("{:?}", tracked.policy);
        assert!(found.contains(policy), "{name}: {found}");
        assert_eq!(tracked.approvals, approvals, "{name}");
        assert_eq!(tracked.trigger, trigger, "{name}");
        if let Some(seconds) = deadline {
            let deadline = Some(Duration::from_secs(seconds));
            assert_eq!(tracked.approval_deadline, deadline, "{name}");
        }
    }
    let annotated = by_id(&images, &format!("deployment/{ns}/annotated/app"));
    assert_eq!(annotated.image, image("nginx:1.25.3"));
    assert_eq!(annotated.notify, ["#ops", "#web"]);
    assert_eq!(
        annotated.release_notes.as_deref(),
        Some("https://example.com/notes")
    );

    let listing = target.workloads().await.expect("workloads");
    let row = listing
        .iter()
        .find(|w| w.workload.name == "both")
        .expect("listed");
    assert_eq!(
        (
            row.workload.kind.as_str(),
            row.workload.container.as_str(),
            row.workload.image.as_str(),
            row.policy.as_str()
        ),
        ("deployment", "app", "ghcr.io/acme/web:1.2.0", "glob:1.2.*")
    );
    assert!(target.problems().is_empty(), "{:?}", target.problems());
}

#[tokio::test]
async fn discovers_every_workload_kind() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("discover-kinds").await else {
        return;
    };
    let has_cronjobs = server.serves("batch/v1", "cronjobs").await;
    let mut kinds = vec![Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet];
    if has_cronjobs {
        kinds.push(Kind::CronJob);
    } else {
        eprintln!("the API server has no batch/v1 CronJob; the CronJob part is skipped");
    }
    for (n, kind) in kinds.iter().enumerate() {
        Workload::new(*kind, &format!("w-{}", kind.id_prefix()))
            .annotation("keel.sh/policy", "patch")
            .container(
                "main",
                &format!("ghcr.io/acme/{}:1.0.{n}", kind.id_prefix()),
            )
            .create(&admin, &ns)
            .await;
    }
    let target = target_in(admin.clone(), &ns).await;
    assert_eq!(
        target.kinds().contains(&WorkloadKind::CronJob),
        has_cronjobs
    );
    let images = target.discover().await.expect("discover");
    assert_eq!(images.len(), kinds.len(), "{:?}", ids(&images));
    for (n, kind) in kinds.iter().enumerate() {
        let id = format!("{}/{ns}/w-{}/main", kind.id_prefix(), kind.id_prefix());
        let tracked = by_id(&images, &id);
        assert_eq!(
            tracked.image,
            image(&format!("ghcr.io/acme/{}:1.0.{n}", kind.id_prefix()))
        );
        // Every kind takes an update.
        let repo = format!("ghcr.io/acme/{}", kind.id_prefix());
        let outcome = apply(
            &target,
            &id,
            &format!("{repo}:1.0.{n}"),
            &format!("{repo}:1.0.9"),
        )
        .await
        .unwrap_or_else(|e| panic!("apply to {id}: {e}"));
        assert_eq!(outcome, ApplyOutcome::Applied);
    }
    if has_cronjobs {
        let cron = Api::<CronJob>::namespaced(admin, &ns)
            .get("w-cronjob")
            .await
            .expect("get cronjob");
        let image = cron
            .spec
            .unwrap()
            .job_template
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("ghcr.io/acme/cronjob:1.0.9"));
    }
}

#[tokio::test]
async fn monitor_containers_and_init_containers_choose_what_is_tracked() {
    let all_containers =
        Workload::keel_deployment("all-containers", "minor", "ghcr.io/acme/app:1.0.0")
            .container("sidecar", "ghcr.io/acme/proxy:2.0.0")
            .init_container("migrate", "ghcr.io/acme/migrate:3.0.0");
    let monitored = Workload::keel_deployment("monitored", "minor", "ghcr.io/acme/app:1.0.0")
        .annotation("keel.sh/monitorContainers", "^app")
        .annotation("keel.sh/initContainers", "true")
        .container("sidecar", "ghcr.io/acme/proxy:2.0.0")
        .init_container("app-init", "ghcr.io/acme/app-init:1.0.0")
        .init_container("migrate", "ghcr.io/acme/migrate:3.0.0");
    let Some((_, ns, admin)) =
        namespace_with("discover-containers", [all_containers, monitored]).await
    else {
        return;
    };
    let target = target_in(admin, &ns).await;
    let images = target.discover().await.expect("discover");
    let expected = [
        "all-containers/app",
        "all-containers/sidecar",
        "monitored/app",
        "monitored/init:app-init",
    ];
    assert_eq!(ids(&images), deployment_ids(&ns, &expected));
    assert_eq!(
        by_id(&images, &format!("deployment/{ns}/monitored/init:app-init")).image,
        image("ghcr.io/acme/app-init:1.0.0")
    );
}

#[tokio::test]
async fn bad_values_skip_only_their_workload_and_are_reported() {
    // Name, annotations, and the key and value reported as a problem.
    let cases: [(&str, Keys, Option<Problem>); 4] = [
        (
            "bad-policy",
            &[("keel.sh/policy", "minr")],
            Some(("keel.sh/policy", "minr")),
        ),
        (
            "bad-approvals",
            &[("keel.sh/policy", "minor"), ("keel.sh/approvals", "two")],
            Some(("keel.sh/approvals", "two")),
        ),
        (
            "bad-regex",
            &[
                ("keel.sh/policy", "minor"),
                ("keel.sh/monitorContainers", "app("),
            ],
            Some(("keel.sh/monitorContainers", "app(")),
        ),
        ("good", &[("keel.sh/policy", "minor")], None),
    ];
    let rows: Vec<Row> = cases
        .iter()
        .map(|(name, annotations, _)| (*name, *annotations, &[][..], "nginx:1.25.3"))
        .collect();
    let workloads = rows.iter().map(row_workload);
    let Some((_, ns, admin)) = namespace_with("discover-problems", workloads).await else {
        return;
    };
    let target = target_in(admin, &ns).await;
    let images = target.discover().await.expect("discovery goes on");
    assert_eq!(ids(&images), deployment_ids(&ns, &["good/app"]));
    let problems = target.problems();
    let seen: Vec<(&str, &str, &str)> = problems
        .iter()
        .map(|p| (p.name.as_str(), p.key.as_str(), p.value.as_str()))
        .collect();
    // Reported in the order of the workloads' names.
    let mut expected: Vec<(&str, &str, &str)> = cases
        .iter()
        .filter_map(|(name, _, problem)| problem.map(|(key, value)| (*name, key, value)))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    let text = problems[1].to_string();
    assert!(
        text.contains(&format!("deployment {ns}/bad-policy"))
            && text.contains("keel.sh/policy")
            && text.contains("minr")
            && text.contains("unknown policy"),
        "{text}"
    );
}

#[tokio::test]
async fn patches_one_container_of_two_and_is_idempotent() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3")
        .container("sidecar", "ghcr.io/acme/proxy:2.0.0");
    let Some((_, ns, admin)) = namespace_with("apply-one", [web]).await else {
        return;
    };
    let target = target_in(admin.clone(), &ns).await;
    let id = format!("deployment/{ns}/web/app");
    target.discover().await.expect("discover");
    let before = get_deployment(&admin, &ns, "web").await;

    let update = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0");
    assert_eq!(outcome(&target, &update).await, ApplyOutcome::Applied);
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await,
        [
            ("app".to_owned(), "ghcr.io/acme/web:1.3.0".to_owned()),
            ("sidecar".to_owned(), "ghcr.io/acme/proxy:2.0.0".to_owned()),
        ]
    );
    let after = get_deployment(&admin, &ns, "web").await;
    assert_ne!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    let annotations = after.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("kubernetes.io/change-cause")
            .map(String::as_str),
        Some("keel: app ghcr.io/acme/web:1.2.3 -> ghcr.io/acme/web:1.3.0")
    );
    let managers = after
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.as_deref());
    let managers: Vec<&str> = managers.collect();
    assert!(managers.contains(&"keel"), "{managers:?}");

    // The same plan again changes nothing.
    assert_eq!(
        outcome(&target, &update).await,
        ApplyOutcome::AlreadyCurrent
    );
    let again = get_deployment(&admin, &ns, "web").await;
    assert_eq!(
        again.metadata.resource_version,
        after.metadata.resource_version
    );

    // A plan from an older discovery is refused, naming the container.
    let stale = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.2.9");
    let reason = conflict_reason(target.apply(&stale).await);
    assert!(reason.contains(&id), "{reason}");
    assert!(reason.contains("ghcr.io/acme/web:1.3.0"), "{reason}");

    // Unknown ids, containers and workloads.
    for missing in [
        "web".to_owned(),
        format!("deployment/{ns}/web/nope"),
        format!("deployment/{ns}/gone/app"),
        "deployment/other-namespace/web/app".to_owned(),
    ] {
        let result = apply(
            &target,
            &missing,
            "ghcr.io/acme/web:1.2.3",
            "ghcr.io/acme/web:1.3.0",
        )
        .await;
        assert!(
            matches!(result, Err(Error::NotFound { .. })),
            "{missing}: {result:?}"
        );
    }
}

#[tokio::test]
async fn same_tag_digest_updates_roll_the_pods_and_stay_idempotent() {
    let latest = Workload::keel_deployment("latest", "force", "ghcr.io/acme/web:latest")
        .annotation("keel.sh/matchTag", "true");
    let pinned = Workload::keel_deployment("pinned", "force", "ghcr.io/acme/web:latest")
        .annotation("keel.sh/matchTag", "true");
    let Some((_, ns, admin)) = namespace_with("apply-digest", [latest, pinned]).await else {
        return;
    };
    let target = target_in(admin.clone(), &ns).await;
    let id = format!("deployment/{ns}/latest/app");
    target.discover().await.expect("discover");

    let pinned_a = format!("ghcr.io/acme/web:latest@{DIGEST_A}");
    let to_digest_a = |id: &str| plan(id, "ghcr.io/acme/web:latest", &pinned_a);
    let first = to_digest_a(&id);
    assert_eq!(outcome(&target, &first).await, ApplyOutcome::Applied);
    let after = get_deployment(&admin, &ns, "latest").await;
    let template_annotations = after
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let rolled_at = template_annotations
        .get("keel.sh/update-time")
        .cloned()
        .expect("the pod template is annotated so the pods roll");
    assert_eq!(
        deployment_images(&admin, &ns, "latest", false).await[0].1,
        "ghcr.io/acme/web:latest"
    );
    assert!(after.metadata.annotations.unwrap_or_default()["keel.sh/digests"].contains(DIGEST_A));
    assert_eq!(outcome(&target, &first).await, ApplyOutcome::AlreadyCurrent);

    // Discovery reports the recorded digest, so the policy sees what runs.
    let images = discover_until(&target, "the recorded digest", |images| {
        images
            .iter()
            .any(|i| i.id == id && i.image.digest().map(|d| d.as_str()) == Some(DIGEST_A))
    })
    .await;
    assert_eq!(by_id(&images, &id).image, image(&pinned_a));

    // The next digest moves on from the recorded one and rolls again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = plan(
        &id,
        &pinned_a,
        &format!("ghcr.io/acme/web:latest@{DIGEST_B}"),
    );
    assert_eq!(outcome(&target, &second).await, ApplyOutcome::Applied);
    let rolled_again = get_deployment(&admin, &ns, "latest")
        .await
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default()["keel.sh/update-time"]
        .clone();
    assert_ne!(rolled_again, rolled_at);
    // A plan based on the first digest is stale now.
    assert!(matches!(
        target.apply(&first).await,
        Err(Error::Conflict { .. })
    ));

    // With pinning, the digest goes into the image string.
    let pinning = KubeTarget::builder(admin.clone())
        .with_namespaces([ns.as_str()])
        .with_pin_digests(true)
        .build()
        .await
        .expect("build");
    let pinned_id = format!("deployment/{ns}/pinned/app");
    pinning.discover().await.expect("discover");
    let pin = to_digest_a(&pinned_id);
    assert_eq!(outcome(&pinning, &pin).await, ApplyOutcome::Applied);
    assert_eq!(
        deployment_images(&admin, &ns, "pinned", false).await[0].1,
        pinned_a
    );
    assert_eq!(outcome(&pinning, &pin).await, ApplyOutcome::AlreadyCurrent);
}

#[tokio::test]
async fn a_concurrent_change_between_read_and_patch_is_retried() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3");
    let Some((server, ns, admin)) = namespace_with("apply-conflict", [web]).await else {
        return;
    };

    // Before the first PATCH of the deployment goes out, someone else changes it.
    let (client, patches) = someone_labels_web(server, &admin, &ns, |n| n == 0);
    let target = target_in(client, &ns).await;
    target.discover().await.expect("discover");
    let id = format!("deployment/{ns}/web/app");
    let outcome = apply(
        &target,
        &id,
        "ghcr.io/acme/web:1.2.3",
        "ghcr.io/acme/web:1.3.0",
    )
    .await
    .expect("applied after re-reading");
    assert_eq!(outcome, ApplyOutcome::Applied);
    assert_eq!(patches.load(Ordering::SeqCst), 2, "one 409, one success");
    assert_someones_label_kept(&admin, &ns).await;
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await[0].1,
        "ghcr.io/acme/web:1.3.0"
    );

    // With no retries allowed, the same race is a Conflict.
    let (client, _) = racing_deployment_client(server, &admin, &ns, "web", |n| {
        Some(("stamp", format!("change-{n}")))
    });
    let impatient = KubeTarget::builder(client)
        .with_namespaces([ns.as_str()])
        .with_conflict_retries(0)
        .build()
        .await
        .expect("build");
    let result = apply(
        &impatient,
        &id,
        "ghcr.io/acme/web:1.3.0",
        "ghcr.io/acme/web:1.4.0",
    )
    .await;
    let reason = conflict_reason(result);
    assert!(reason.contains("409"), "{reason}");
    assert!(reason.contains(&format!("deployment {ns}/web")), "{reason}");
}

#[tokio::test]
async fn rbac_denials_are_reported_clearly() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3");
    let Some((server, ns, admin)) = namespace_with("rbac", [web]).await else {
        return;
    };
    // alice may read and watch deployments, not patch them.
    let read: &[(&[&str], &[&str], &[&str])] =
        &[(&["apps"], &["deployments"], &["get", "list", "watch"])];
    let alice = granted_client(server, &admin, &ns, "alice", read, async |alice| {
        let deployments = Api::<Deployment>::namespaced(alice.clone(), &ns);
        deployments.get("web").await.map(drop)
    })
    .await;

    let target = KubeTarget::builder(alice)
        .with_namespaces([ns.as_str()])
        .with_kinds(&[WorkloadKind::Deployment])
        .build()
        .await
        .expect("build");
    let images = target.discover().await.expect("alice may discover");
    assert_eq!(ids(&images), deployment_ids(&ns, &["web/app"]));
    let id = format!("deployment/{ns}/web/app");
    let (action, reason) = unauthorized(
        apply(
            &target,
            &id,
            "ghcr.io/acme/web:1.2.3",
            "ghcr.io/acme/web:1.3.0",
        )
        .await,
    );
    assert_eq!(action, format!("patch deployments {ns}/web"));
    assert!(
        reason.contains("`patch`") && reason.contains(&format!("`{ns}`")),
        "{reason}"
    );
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await[0].1,
        "ghcr.io/acme/web:1.2.3"
    );

    // bob may do nothing: discovery fails at once and says what is missing.
    let bob = KubeTarget::builder(server.client_as("bob"))
        .with_namespaces([ns.as_str()])
        .with_kinds(&[WorkloadKind::Deployment])
        .with_sync_timeout(Duration::from_secs(30))
        .build()
        .await
        .expect("build");
    let started = Instant::now();
    let (action, reason) = unauthorized(bob.discover().await);
    assert_eq!(action, format!("list deployments in namespace {ns}"));
    assert!(reason.contains("forbidden"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn steady_state_discovery_makes_no_list_calls() {
    let first = Workload::keel_deployment("first", "minor", "ghcr.io/acme/web:1.0.0");
    let Some((server, ns, admin)) = namespace_with("no-list", [first]).await else {
        return;
    };
    let (client, log) = server.counting_admin_client();
    let target = target_in(client, &ns).await;
    target.discover().await.expect("first discovery");
    let initial_lists = log.lists();
    assert!(
        !initial_lists.is_empty() && initial_lists.len() <= target.kinds().len(),
        "one initial LIST per watched kind: {initial_lists:?}"
    );
    log.clear();

    // New and changed workloads arrive through the watches.
    Workload::keel_deployment("second", "minor", "ghcr.io/acme/api:2.0.0")
        .create(&admin, &ns)
        .await;
    discover_until(&target, "the second deployment", |images| images.len() == 2).await;
    Api::<Deployment>::namespaced(admin.clone(), &ns)
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Strategic(json!({
                "spec": { "template": { "spec": { "containers": [
                    { "name": "app", "image": "ghcr.io/acme/web:1.1.0" }
                ] } } }
            })),
        )
        .await
        .expect("change by hand");
    discover_running(&target, "ghcr.io/acme/web:1.1.0").await;
    for _ in 0..20 {
        target.discover().await.expect("discover");
    }
    // An apply reads one object and patches it.
    let second = format!("deployment/{ns}/second/app");
    apply(
        &target,
        &second,
        "ghcr.io/acme/api:2.0.0",
        "ghcr.io/acme/api:2.1.0",
    )
    .await
    .expect("apply");

    let requests = log.all();
    assert!(
        log.lists().is_empty(),
        "LIST calls at steady state: {requests:?}"
    );
    let non_watch: Vec<_> = requests.iter().filter(|r| !r.is_watch()).collect();
    assert_eq!(
        non_watch
            .iter()
            .map(|r| r.method.as_str())
            .collect::<Vec<_>>(),
        ["GET", "PATCH"],
        "discovery made requests: {non_watch:?}"
    );
}

#[tokio::test]
async fn exposes_the_pull_secrets_of_each_tracked_image() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.0.0")
        .annotation("keel.sh/imagePullSecret", "extra, regcred")
        .pull_secret("regcred");
    let Some((_, ns, admin)) = namespace_with("pull-secrets", [web]).await else {
        return;
    };
    let target = target_in(admin, &ns).await;
    target.discover().await.expect("discover");
    assert_eq!(
        target.pull_secrets_of(&format!("deployment/{ns}/web/app")),
        [
            (ns.clone(), "regcred".to_owned()),
            (ns.clone(), "extra".to_owned())
        ]
    );
    assert!(
        target
            .pull_secrets_of("deployment/elsewhere/web/app")
            .is_empty()
    );
    assert!(target.pull_secrets_of("not an id").is_empty());
}

#[tokio::test]
async fn a_label_selector_limits_discovery() {
    let teams = [("a", "web"), ("b", "data")].map(|(name, team)| {
        Workload::keel_deployment(name, "minor", "ghcr.io/acme/web:1.0.0").label("team", team)
    });
    let Some((_, ns, admin)) = namespace_with("selector", teams).await else {
        return;
    };
    let selecting = async |selector: &str| {
        KubeTarget::builder(admin.clone())
            .with_namespaces([ns.as_str()])
            .with_label_selector(selector)
            .build()
            .await
            .expect("build")
    };
    let target = selecting("team=web").await;
    let images = target.discover().await.expect("discover");
    assert_eq!(ids(&images), deployment_ids(&ns, &["a/app"]));

    let bad = selecting("team in (web").await;
    let error = bad.discover().await.expect_err("a bad selector");
    assert!(error.to_string().contains("deployments"), "{error}");
}

#[tokio::test]
async fn a_server_without_openshift_groups_is_not_disturbed() {
    // Without OpenShift nothing acts on `image.openshift.io/triggers`: the container is
    // tracked and patched as usual.
    let triggers = triggers_annotation("app", "web:stable");
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3")
        .annotation("image.openshift.io/triggers", &triggers);
    let Some((server, ns, admin)) = namespace_with("no-openshift", [web]).await else {
        return;
    };
    let (client, log) = server.counting_admin_client();
    let target = target_in(client, &ns).await;
    assert!(!target.kinds().contains(&WorkloadKind::DeploymentConfig));
    assert!(!target.kinds().contains(&WorkloadKind::ImageStream));
    let images = target.discover().await.expect("discover");
    assert_eq!(ids(&images), [format!("deployment/{ns}/web/app")]);
    assert!(target.problems().is_empty(), "{:?}", target.problems());
    assert!(target.image_triggers().await.expect("triggers").is_empty());
    let id = format!("deployment/{ns}/web/app");
    assert_eq!(
        apply(
            &target,
            &id,
            "ghcr.io/acme/web:1.2.3",
            "ghcr.io/acme/web:1.3.0"
        )
        .await
        .expect("apply"),
        ApplyOutcome::Applied
    );
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await[0].1,
        "ghcr.io/acme/web:1.3.0"
    );
    // One discovery request per OpenShift group, and nothing else of theirs.
    let openshift: Vec<String> = log
        .all()
        .into_iter()
        .filter(|r| r.path.contains("openshift.io"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        openshift,
        [
            "GET /apis/apps.openshift.io/v1",
            "GET /apis/image.openshift.io/v1"
        ]
    );

    // Asked for the OpenShift kinds alone, a plain cluster has nothing to watch.
    let only = KubeTarget::builder(server.admin_client())
        .with_namespaces([ns.as_str()])
        .with_kinds(&[WorkloadKind::DeploymentConfig, WorkloadKind::ImageStream])
        .build()
        .await
        .expect("build");
    assert!(only.kinds().is_empty());
    assert!(only.discover().await.expect("discover").is_empty());
}
