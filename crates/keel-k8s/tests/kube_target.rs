//! `KubeTarget` against a real API server: discovery from annotations and labels for every
//! kind, updates patched onto one container, conflicts, RBAC, idempotence, the cache's
//! request pattern and a full poll cycle of the pipeline.

mod support;
use support::{discover_until, ids, image, named_target, outcome, plan_of};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use keel_core::memory::InMemoryRegistry;
use keel_core::target::Trigger;
use keel_core::{ApplyOutcome, Error, Pipeline, Target, TrackedImage, UpdatePlan};
use keel_k8s::{KubeTarget, RolloutVerdict, WorkloadKind};
use keel_testsupport::kube::{
    ADMIN, ApiServer, Hook, HookFuture, Kind, RecordedRequest, Workload, deployment_images, grant,
    mark_deployment_rolled_out,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// The name of the target the tests build.
const TARGET: &str = "test cluster";

/// The target over namespace `ns`, as `client`.
async fn target_in(client: Client, ns: &str) -> KubeTarget {
    named_target(TARGET, client, ns).await
}

fn by_id<'a>(images: &'a [TrackedImage], id: &str) -> &'a TrackedImage {
    images.iter().find(|i| i.id == id).unwrap_or_else(|| {
        let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
        panic!("{id} not discovered; found {ids:?}")
    })
}

fn plan(id: &str, current: &str, new: &str) -> UpdatePlan {
    plan_of(TARGET, id, current, new)
}

/// Applies the plan moving `id` from `current` to `new` with `target`.
async fn apply(
    target: &KubeTarget,
    id: &str,
    current: &str,
    new: &str,
) -> Result<ApplyOutcome, Error> {
    target.apply(&plan(id, current, new)).await
}

async fn get_deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get deployment")
}

/// Keys and values of annotations or labels.
type Keys<'a> = &'a [(&'a str, &'a str)];

/// The key and value a discovery problem names.
type Problem<'a> = (&'a str, &'a str);

/// One Deployment of a table: its name, annotations, labels and the image of its `app`
/// container.
type Row<'a> = (&'a str, Keys<'a>, Keys<'a>, &'a str);

/// A fresh namespace of the shared API server holding `workloads`; `None` (the test skips)
/// without a server.
async fn namespace_with(
    prefix: &str,
    workloads: impl IntoIterator<Item = Workload>,
) -> Option<(&'static ApiServer, String, Client)> {
    let (server, ns, admin) = ApiServer::shared_namespace(prefix).await?;
    for workload in workloads {
        workload.create(&admin, &ns).await;
    }
    Some((server, ns, admin))
}

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

/// What `deployment_images` reads of a workload whose one container `app` runs `image`.
fn app_runs(image: &str) -> [(String, String); 1] {
    [("app".to_owned(), image.to_owned())]
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
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "keel"), "{managers:?}");

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
    match target.apply(&stale).await {
        Err(Error::Conflict { reason, .. }) => {
            assert!(reason.contains(&id), "{reason}");
            assert!(reason.contains("ghcr.io/acme/web:1.3.0"), "{reason}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

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
        .pin_digests(true)
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
    let patches = Arc::new(AtomicUsize::new(0));
    let hook_patches = Arc::clone(&patches);
    let hook_admin = admin.clone();
    let hook_ns = ns.clone();
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
    let hook: Hook = Arc::new(move |request| {
        if request.method != "PATCH" || request.path != path {
            return None;
        }
        if hook_patches.fetch_add(1, Ordering::SeqCst) != 0 {
            return None;
        }
        let admin = hook_admin.clone();
        let ns = hook_ns.clone();
        let change: HookFuture = Box::pin(async move {
            Api::<Deployment>::namespaced(admin, &ns)
                .patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "metadata": { "labels": { "changed-by": "someone" } } })),
                )
                .await
                .expect("the concurrent change");
        });
        Some(change)
    });
    let client = server.intercepting_client_as(ADMIN, hook);
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
    let after = get_deployment(&admin, &ns, "web").await;
    assert_eq!(
        after
            .metadata
            .labels
            .unwrap_or_default()
            .get("changed-by")
            .map(String::as_str),
        Some("someone"),
        "the concurrent change survives"
    );
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await[0].1,
        "ghcr.io/acme/web:1.3.0"
    );

    // With no retries allowed, the same race is a Conflict.
    patches.store(0, Ordering::SeqCst);
    let impatient = KubeTarget::builder(server.intercepting_client_as(ADMIN, {
        let admin = admin.clone();
        let ns = ns.clone();
        let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
        let stamps = Arc::new(AtomicUsize::new(0));
        Arc::new(move |request: &RecordedRequest| {
            if request.method != "PATCH" || request.path != path {
                return None;
            }
            let admin = admin.clone();
            let ns = ns.clone();
            let stamp = format!("change-{}", stamps.fetch_add(1, Ordering::SeqCst));
            let change: HookFuture = Box::pin(async move {
                Api::<Deployment>::namespaced(admin, &ns)
                    .patch(
                        "web",
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "labels": { "stamp": stamp } } })),
                    )
                    .await
                    .expect("the concurrent change");
            });
            Some(change)
        })
    }))
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
    match result {
        Err(Error::Conflict { reason, .. }) => {
            assert!(reason.contains("409"), "{reason}");
            assert!(reason.contains(&format!("deployment {ns}/web")), "{reason}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn rbac_denials_are_reported_clearly() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3");
    let Some((server, ns, admin)) = namespace_with("rbac", [web]).await else {
        return;
    };
    // alice may read and watch deployments, not patch them.
    grant(
        &admin,
        &ns,
        "alice",
        &[(&["apps"], &["deployments"], &["get", "list", "watch"])],
    )
    .await;
    // RBAC reaches the authorizer through its own cache; wait for the grant to work.
    let alice = server.client_as("alice");
    let started = Instant::now();
    while Api::<Deployment>::namespaced(alice.clone(), &ns)
        .get("web")
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "grant not effective"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let target = KubeTarget::builder(alice)
        .with_namespaces([ns.as_str()])
        .with_kinds(&[WorkloadKind::Deployment])
        .build()
        .await
        .expect("build");
    let images = target.discover().await.expect("alice may discover");
    assert_eq!(ids(&images), deployment_ids(&ns, &["web/app"]));
    let id = format!("deployment/{ns}/web/app");
    match apply(
        &target,
        &id,
        "ghcr.io/acme/web:1.2.3",
        "ghcr.io/acme/web:1.3.0",
    )
    .await
    {
        Err(Error::Unauthorized { action, reason }) => {
            assert_eq!(action, format!("patch deployments {ns}/web"));
            assert!(
                reason.contains("`patch`") && reason.contains(&format!("`{ns}`")),
                "{reason}"
            );
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
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
    match bob.discover().await {
        Err(Error::Unauthorized { action, reason }) => {
            assert_eq!(action, format!("list deployments in namespace {ns}"));
            assert!(reason.contains("forbidden"), "{reason}");
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
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
    discover_until(&target, "the changed image", |images| {
        images
            .iter()
            .any(|i| i.image == image("ghcr.io/acme/web:1.1.0"))
    })
    .await;
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
async fn a_full_poll_cycle_ends_in_a_patched_deployment() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3")
        .annotation("keel.sh/trigger", "poll")
        .container("cache", "redis:7.0.1");
    let gated = Workload::keel_deployment("gated", "minor", "ghcr.io/acme/web:1.2.3")
        .annotation("keel.sh/approvals", "1");
    let Some((_, ns, admin)) = namespace_with("pipeline", [web, gated]).await else {
        return;
    };
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"]);
    registry.push_tags("redis", &["7.0.1", "7.2.4", "8.0.0"]);
    let target = Arc::new(target_in(admin.clone(), &ns).await);
    let pipeline = Pipeline::new(registry.clone()).with_target(target.clone());

    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.tracked, 3);
    assert_eq!(registry.list_calls(), 2, "one listing per repository");
    let mut applied: Vec<String> = report.applied.iter().map(|p| p.to_string()).collect();
    applied.sort();
    assert_eq!(
        applied,
        [
            format!(
                "test cluster deployment/{ns}/web/app: ghcr.io/acme/web:1.2.3 -> ghcr.io/acme/web:1.3.0"
            ),
            format!(
                "test cluster deployment/{ns}/web/cache: docker.io/library/redis:7.0.1 -> docker.io/library/redis:7.2.4"
            ),
        ]
    );
    assert_eq!(report.awaiting_approval.len(), 1);
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await,
        [
            ("app".to_owned(), "ghcr.io/acme/web:1.3.0".to_owned()),
            ("cache".to_owned(), "redis:7.2.4".to_owned()),
        ]
    );
    assert_eq!(
        deployment_images(&admin, &ns, "gated", false).await[0].1,
        "ghcr.io/acme/web:1.2.3"
    );

    // Once the watch has seen the change, the next cycle has nothing to do for `web`.
    discover_until(&target, "the patched images", |images| {
        images
            .iter()
            .any(|i| i.image == image("ghcr.io/acme/web:1.3.0"))
    })
    .await;
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(report.awaiting_approval.len(), 1);
}

#[tokio::test]
async fn poll_cycles_follow_a_moving_tag_by_digest() {
    let follow = Workload::keel_deployment("follow", "force", "ghcr.io/acme/web:stable")
        .annotation("keel.sh/match-tag", "true")
        .annotation("keel.sh/trigger", "poll");
    let Some((_, ns, admin)) = namespace_with("pipeline-digest", [follow]).await else {
        return;
    };
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    let first = registry.push("ghcr.io/acme/web", "stable", None);
    let target = Arc::new(target_in(admin.clone(), &ns).await);
    let pipeline = Pipeline::new(registry.clone()).with_target(target.clone());
    let id = format!("deployment/{ns}/follow/app");
    let running_digest = |images: &[TrackedImage], digest: &keel_core::Digest| {
        images
            .iter()
            .any(|i| i.id == id && i.image.digest() == Some(digest))
    };

    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.applied.len(), 1, "{:?}", report.planned);
    assert_eq!(report.applied[0].new.digest(), Some(&first));
    assert_eq!(
        deployment_images(&admin, &ns, "follow", false).await[0].1,
        "ghcr.io/acme/web:stable",
        "the tag stays; the pods roll by annotation"
    );
    discover_until(&target, "the first digest", |i| running_digest(i, &first)).await;

    // Nothing new in the registry: nothing to do.
    let report = pipeline.run_once().await;
    assert!(report.planned.is_empty(), "{:?}", report.planned);

    // The tag moves: the next cycle follows it.
    let second = registry.push("ghcr.io/acme/web", "stable", None);
    let report = pipeline.run_once().await;
    assert_eq!(report.applied.len(), 1, "{:?}", report.failures);
    assert_eq!(report.applied[0].current.digest(), Some(&first));
    assert_eq!(report.applied[0].new.digest(), Some(&second));
    discover_until(&target, "the second digest", |i| running_digest(i, &second)).await;
}

#[tokio::test]
async fn a_rollout_that_never_becomes_available_is_rolled_back() {
    let both = ["good", "bad"]
        .map(|name| Workload::keel_deployment(name, "minor", "ghcr.io/acme/web:1.2.3"));
    let Some((_, ns, admin)) = namespace_with("verify", both).await else {
        return;
    };
    let target = target_in(admin.clone(), &ns).await;
    target.discover().await.expect("discover");
    let to_1_3_0 = |name: &str| {
        let id = format!("deployment/{ns}/{name}/app");
        plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0")
    };
    let (good, bad) = (to_1_3_0("good"), to_1_3_0("bad"));
    // The verdict on the rollout of `update` of `name` within `secs`, and what `name` then runs.
    let verify = async |update: &UpdatePlan, secs: u64, name: &str| {
        let within = Duration::from_secs(secs);
        let verdict = target.verify_rollout(update, within).await;
        (
            verdict.expect("verify"),
            deployment_images(&admin, &ns, name, false).await,
        )
    };
    target.apply(&good).await.expect("apply good");
    target.apply(&bad).await.expect("apply bad");

    // There is no controller-manager: the test reports the good rollout as done.
    mark_deployment_rolled_out(&admin, &ns, "good").await;
    let (verdict, running) = verify(&good, 10, "good").await;
    assert!(
        matches!(verdict, RolloutVerdict::Complete(_)),
        "{verdict:?}"
    );
    assert_eq!(running, app_runs("ghcr.io/acme/web:1.3.0"));

    // The bad one never becomes available: back to 1.2.3, with the reason recorded.
    let (verdict, running) = verify(&bad, 2, "bad").await;
    assert!(
        matches!(verdict, RolloutVerdict::RolledBack(_)),
        "{verdict:?}"
    );
    assert_eq!(running, app_runs("ghcr.io/acme/web:1.2.3"));
    let annotations = get_deployment(&admin, &ns, "bad")
        .await
        .metadata
        .annotations
        .unwrap_or_default();
    let why = annotations
        .get("keel.sh/rollback")
        .expect("rollback annotation");
    assert!(why.contains("ghcr.io/acme/web:1.3.0"), "{why}");

    // The failed version does not come straight back; the next one does.
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.3.0"]);
    let pipeline = Pipeline::new(registry.clone()).with_target(Arc::new(target.clone()));
    let bad_id = format!("deployment/{ns}/bad/app");
    discover_until(&target, "the rolled-back image", |images| {
        by_id(images, &bad_id).image.tag().map(|t| t.as_str()) == Some("1.2.3")
    })
    .await;
    let only_bad = |image: &TrackedImage| image.id == bad_id;
    let report = pipeline.run_filtered(&only_bad).await;
    assert!(report.planned.is_empty(), "{:?}", report.planned);
    registry.push_tags("ghcr.io/acme/web", &["1.3.1"]);
    let report = pipeline.run_filtered(&only_bad).await;
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert_eq!(
        deployment_images(&admin, &ns, "bad", false).await,
        app_runs("ghcr.io/acme/web:1.3.1")
    );
}

#[tokio::test]
async fn a_server_without_openshift_groups_is_not_disturbed() {
    // Without OpenShift nothing acts on `image.openshift.io/triggers`: the container is
    // tracked and patched as usual.
    let triggers = json!([{
        "from": { "kind": "ImageStreamTag", "name": "web:stable" },
        "fieldPath": "spec.template.spec.containers[?(@.name==\"app\")].image",
    }]);
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.2.3")
        .annotation("image.openshift.io/triggers", &triggers.to_string());
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
