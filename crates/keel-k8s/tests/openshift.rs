//! `KubeTarget` on OpenShift's kinds: DeploymentConfigs (`apps.openshift.io/v1`) and
//! ImageStreams (`image.openshift.io/v1`).
//!
//! No OpenShift API server can run here, so this test binary's API server (a real
//! kube-apiserver) serves CustomResourceDefinitions of the same groups, versions and kinds,
//! with schemas written from the OpenShift API reference for the fields keel-rs uses
//! (`keel_testsupport::kube::install_openshift_crds`). Nothing plays OpenShift's controllers:
//! no trigger fires and no tag is imported, so the tests check what keel-rs writes. The
//! shared server of `kube_target.rs` has no such CRDs and shows that a plain cluster is not
//! disturbed.

mod support;
use support::{
    conflict_reason, discover_running, discover_until, ids, image, named_target, outcome, plan_of,
    unauthorized,
};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_core::{ApplyOutcome, Pipeline, Target, TrackedImage, UpdatePlan};
use keel_k8s::{KubeTarget, RolloutVerdict, WorkloadKind};
use keel_registry::RegistryClient;
use keel_testsupport::kube::openshift::{
    OpenShiftNs, alias_tag, api, config_change, create, image_change, keyed_tag, tag,
    triggers_annotation,
};
use keel_testsupport::kube::{
    ApiServer, Workload, deployment_images, granted_client, install_openshift_crds,
};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::Client;
use kube::api::{Api, Patch};
use serde_json::json;

/// What OpenShift's trigger writes into a container: the internal registry's image by digest.
const INTERNAL: &str = "image-registry.openshift-image-registry.svc:5000/ns/web@sha256:\
    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

const DIGEST: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// The verbs keel-rs needs on the kinds it tracks (its RBAC manifests grant these).
const VERBS: &[&str] = &["get", "list", "watch", "patch"];

/// The RBAC rules of one Role: `(API groups, resources, verbs)`.
type Rules<'a> = [(&'a [&'a str], &'a [&'a str], &'a [&'a str])];

/// The shared server with the OpenShift CRDs, a fresh namespace, an admin client and the
/// OpenShift objects there; `None` (the test skips) without a server.
async fn openshift_namespace(
    prefix: &str,
) -> Option<(&'static ApiServer, String, Client, OpenShiftNs)> {
    let server = ApiServer::shared().await?;
    install_openshift_crds(server).await;
    let ns = server.namespace(prefix).await;
    let admin = server.admin_client();
    let os = OpenShiftNs::new(&admin, &ns);
    Some((server, ns, admin, os))
}

/// The name of the target the tests build.
const TARGET: &str = "okd";

/// The target over namespace `ns`, as `client`.
async fn target_in(client: Client, ns: &str) -> KubeTarget {
    named_target(TARGET, client, ns).await
}

/// A target in `ns` that gives up at the first conflict (no retries).
async fn impatient_target(client: Client, ns: &str) -> KubeTarget {
    KubeTarget::builder(client)
        .with_namespaces([ns])
        .with_conflict_retries(0)
        .build()
        .await
        .expect("build")
}

/// A pipeline over `target` with a registry client that is not rate limited.
fn pipeline_over(target: Arc<KubeTarget>) -> Pipeline {
    let client = RegistryClient::builder()
        .with_requests_per_second(0.0)
        .build()
        .expect("registry client");
    Pipeline::new(Arc::new(client)).with_target(target)
}

fn plan(id: &str, current: &str, new: &str) -> UpdatePlan {
    plan_of(TARGET, id, current, new)
}

#[tokio::test]
async fn discovers_deployment_configs_and_image_stream_tags_from_annotations() {
    let Some((_, ns, admin, os)) = openshift_namespace("os-discover").await else {
        return;
    };
    os.create_dc(
        "web",
        json!({ "keel.sh/policy": "minor", "keel.sh/trigger": "poll" }),
        &[("app", "ghcr.io/acme/web:1.2.3"), ("proxy", "nginx:1.25.0")],
        config_change(),
    )
    .await;
    os.create_dc("plain", json!({}), &[("app", "nginx:1.25.0")], json!([]))
        .await;
    os.create_stream(
        "base",
        json!({ "keel.sh/policy": "patch" }),
        &[
            tag("stable", "quay.io/acme/base:2.0.0"),
            keyed_tag(
                "edge",
                "quay.io/acme/base:2.1.0",
                json!({ "keel.sh/policy": "major", "keel.sh/approvals": "1" }),
            ),
            alias_tag("latest", "base:stable"),
        ],
    )
    .await;
    // A stream without keys of its own tracks only the tag that has some.
    os.create_stream(
        "tools",
        json!({}),
        &[
            tag("a", "quay.io/acme/tools:1.0.0"),
            keyed_tag(
                "b",
                "quay.io/acme/tools:1.0.0",
                json!({ "keel.sh/policy": "semver:~1" }),
            ),
        ],
    )
    .await;

    let target = target_in(admin, &ns).await;
    assert!(target.kinds().contains(&WorkloadKind::DeploymentConfig));
    assert!(target.kinds().contains(&WorkloadKind::ImageStream));
    let images = target.discover().await.expect("discover");
    assert_eq!(
        ids(&images),
        [
            format!("deploymentconfig/{ns}/web/app"),
            format!("deploymentconfig/{ns}/web/proxy"),
            format!("imagestream/{ns}/base/edge"),
            format!("imagestream/{ns}/base/stable"),
            format!("imagestream/{ns}/tools/b"),
        ]
    );
    assert!(target.problems().is_empty(), "{:?}", target.problems());
    let listed = target.workloads().await.expect("workloads");
    let policy_of = |id: &str| {
        listed
            .iter()
            .find(|w| w.id == id)
            .map(|w| (w.policy.clone(), w.workload.image.clone()))
            .unwrap_or_else(|| panic!("{id} listed"))
    };
    assert_eq!(
        policy_of(&format!("imagestream/{ns}/base/stable")),
        ("patch".to_owned(), "quay.io/acme/base:2.0.0".to_owned())
    );
    assert_eq!(policy_of(&format!("imagestream/{ns}/base/edge")).0, "major");
    assert_eq!(
        policy_of(&format!("imagestream/{ns}/tools/b")).0,
        "semver:~1"
    );
    let edge = images
        .iter()
        .find(|i| i.id.ends_with("/base/edge"))
        .expect("edge");
    assert_eq!(
        edge.approvals, 1,
        "the tag's own keys win over the stream's"
    );
    let web = images
        .iter()
        .find(|i| i.id.ends_with("/web/app"))
        .expect("web");
    assert!(matches!(
        web.trigger,
        keel_core::target::Trigger::Poll { .. }
    ));
}

#[tokio::test]
async fn patches_a_deployment_config_container_idempotently_and_guarded() {
    let Some((server, ns, admin, os)) = openshift_namespace("os-patch").await else {
        return;
    };
    os.create_dc(
        "web",
        json!({ "keel.sh/policy": "minor" }),
        &[("proxy", "nginx:1.25.0"), ("app", "ghcr.io/acme/web:1.2.3")],
        config_change(),
    )
    .await;
    let target = target_in(admin.clone(), &ns).await;
    target.discover().await.expect("discover");
    let id = format!("deploymentconfig/{ns}/web/app");
    let update = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0");
    assert_eq!(outcome(&target, &update).await, ApplyOutcome::Applied);
    assert_eq!(os.dc_image("web", "app").await, "ghcr.io/acme/web:1.3.0");
    assert_eq!(os.dc_image("web", "proxy").await, "nginx:1.25.0");
    let dc = os.get("DeploymentConfig", "web").await;
    assert!(
        dc["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .is_some_and(|c| c.contains("1.2.3 -> ghcr.io/acme/web:1.3.0")),
        "{dc}"
    );
    assert_eq!(
        outcome(&target, &update).await,
        ApplyOutcome::AlreadyCurrent
    );

    // A same-tag digest update keeps the string and rolls through the pod template.
    let pinned = format!("ghcr.io/acme/web:1.3.0@{DIGEST}");
    let roll = plan(&id, "ghcr.io/acme/web:1.3.0", &pinned);
    assert_eq!(outcome(&target, &roll).await, ApplyOutcome::Applied);
    let dc = os.get("DeploymentConfig", "web").await;
    assert!(dc["spec"]["template"]["metadata"]["annotations"]["keel.sh/update-time"].is_string());
    assert!(
        dc["metadata"]["annotations"]["keel.sh/digests"]
            .as_str()
            .is_some_and(|d| d.contains(DIGEST))
    );

    // Someone else changes the DeploymentConfig between keel-rs's read and its patch, every
    // time: with no retries, the patch meets a 409 and nothing of it is applied.
    let (client, stamps) = os.racing_client(server, "DeploymentConfig", "web", |n| {
        let stamp = json!({ "metadata": { "labels": { "stamp": format!("change-{n}") } } });
        Some(Patch::Merge(stamp))
    });
    let impatient = impatient_target(client, &ns).await;
    let next = plan(&id, "ghcr.io/acme/web:1.3.0", "ghcr.io/acme/web:1.4.0");
    let reason = conflict_reason(impatient.apply(&next).await);
    assert!(reason.contains("409"), "{reason}");
    assert!(
        reason.contains(&format!("deploymentconfig {ns}/web")),
        "{reason}"
    );
    assert_eq!(stamps.load(Ordering::SeqCst), 1);
    assert_eq!(
        os.dc_image("web", "app").await,
        "ghcr.io/acme/web:1.3.0",
        "nothing of the refused patch is applied"
    );
    let dc = os.get("DeploymentConfig", "web").await;
    assert_eq!(
        dc["metadata"]["labels"]["stamp"], "change-0",
        "the concurrent change survives"
    );
    // With retries (the default), the same race is re-read and applied.
    assert_eq!(outcome(&target, &next).await, ApplyOutcome::Applied);
    assert_eq!(os.dc_image("web", "app").await, "ghcr.io/acme/web:1.4.0");
}

#[tokio::test]
async fn an_image_change_driven_container_is_left_alone_and_its_stream_tag_updated() {
    let Some((_, ns, admin, os)) = openshift_namespace("os-trigger").await else {
        return;
    };
    os.create_stream("web", json!({}), &[tag("stable", "ghcr.io/acme/web:1.2.3")])
        .await;
    os.create_dc(
        "web",
        json!({ "keel.sh/policy": "minor" }),
        &[("app", INTERNAL), ("proxy", "nginx:1.25.0")],
        json!([{ "type": "ConfigChange" }, image_change(&["app"], "web:stable")]),
    )
    .await;
    // A trigger from a stream that does not exist: said why, nothing tracked.
    os.create_dc(
        "orphan",
        json!({ "keel.sh/policy": "minor" }),
        &[("app", "ghcr.io/acme/orphan:1.0.0")],
        json!([image_change(&["app"], "missing:1")]),
    )
    .await;

    let target = target_in(admin.clone(), &ns).await;
    let images = target.discover().await.expect("discover");
    assert_eq!(
        ids(&images),
        [
            format!("deploymentconfig/{ns}/web/proxy"),
            format!("imagestream/{ns}/web/stable"),
        ]
    );
    let tag = images
        .iter()
        .find(|i| i.id.ends_with("/web/stable"))
        .expect("the tag");
    assert_eq!(tag.image, image("ghcr.io/acme/web:1.2.3"));
    let problems = target.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    for part in [
        format!("deploymentconfig {ns}/orphan"),
        format!("ImageStreamTag {ns}/missing:1"),
        "not found".to_owned(),
    ] {
        assert!(text.contains(&part), "{part} missing from {text}");
    }

    let id = format!("imagestream/{ns}/web/stable");
    let update = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0");
    assert_eq!(outcome(&target, &update).await, ApplyOutcome::Applied);
    let stable = os.stream_tag("web", "stable").await;
    assert_eq!(
        stable["from"],
        json!({ "kind": "DockerImage", "name": "ghcr.io/acme/web:1.3.0" })
    );
    assert_eq!(
        stable["importPolicy"]["scheduled"], true,
        "the rest of the tag is kept"
    );
    assert_eq!(
        os.dc_image("web", "app").await,
        INTERNAL,
        "OpenShift's trigger, not keel-rs, writes the container"
    );
    assert_eq!(
        outcome(&target, &update).await,
        ApplyOutcome::AlreadyCurrent
    );
    // A plan made from what the tag was before is refused: it is decided again from fresh data.
    let stale = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.4.0");
    let reason = conflict_reason(target.apply(&stale).await);
    assert!(
        reason.contains("runs ghcr.io/acme/web:1.3.0 now"),
        "{reason}"
    );
    assert_eq!(
        os.tag_image("web", "stable").await,
        "ghcr.io/acme/web:1.3.0"
    );

    // A plan for the driven container itself is refused with the way out.
    let direct = plan(
        &format!("deploymentconfig/{ns}/web/app"),
        INTERNAL,
        "ghcr.io/acme/web:1.3.0",
    );
    let reason = conflict_reason(target.apply(&direct).await);
    for part in [
        format!("ImageStreamTag {ns}/web:stable"),
        format!("imagestream/{ns}/web/stable"),
    ] {
        assert!(reason.contains(&part), "{part} missing from {reason}");
    }

    // A new digest of the same tag asks OpenShift to import the tag again.
    discover_running(&target, "ghcr.io/acme/web:1.3.0").await;
    let reimport = plan(
        &id,
        "ghcr.io/acme/web:1.3.0",
        &format!("ghcr.io/acme/web:1.3.0@{DIGEST}"),
    );
    assert_eq!(outcome(&target, &reimport).await, ApplyOutcome::Applied);
    let stable = os.stream_tag("web", "stable").await;
    assert_eq!(stable["generation"], 0);
    assert_eq!(stable["from"]["name"], "ghcr.io/acme/web:1.3.0");
    let stream = os.get("ImageStream", "web").await;
    assert!(
        stream["metadata"]["annotations"]["keel.sh/digests"]
            .as_str()
            .is_some_and(|d| d.contains(DIGEST))
    );
}

#[tokio::test]
async fn a_semver_policy_moves_a_stream_tag_from_the_registry_tags() {
    let Some((_, ns, admin, os)) = openshift_namespace("os-semver").await else {
        return;
    };
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "acme/web",
        &["1.2.3", "1.2.9", "1.3.0", "2.0.0", "1.4.0-rc.1"],
    )
    .await;
    let web = format!("{}/acme/web", registry.addr());
    let from = format!("{web}:1.2.3");
    os.create_stream(
        "web",
        json!({ "keel.sh/policy": "semver:~1.2", "keel.sh/trigger": "poll" }),
        &[
            tag("stable", &from),
            keyed_tag("next", &from, json!({ "keel.sh/policy": "semver:^1" })),
            keyed_tag("gated", &from, json!({ "keel.sh/approvals": "1" })),
        ],
    )
    .await;
    let target = Arc::new(target_in(admin.clone(), &ns).await);
    let pipeline = pipeline_over(target.clone());
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let mut applied: Vec<String> = report.applied.iter().map(|p| p.to_string()).collect();
    applied.sort();
    assert_eq!(
        applied,
        [
            format!("okd imagestream/{ns}/web/next: {web}:1.2.3 -> {web}:1.3.0"),
            format!("okd imagestream/{ns}/web/stable: {web}:1.2.3 -> {web}:1.2.9"),
        ]
    );
    assert_eq!(
        report.awaiting_approval.len(),
        1,
        "the gated tag waits for a vote"
    );
    assert_eq!(os.tag_image("web", "gated").await, format!("{web}:1.2.3"));
    assert_eq!(os.tag_image("web", "stable").await, format!("{web}:1.2.9"));
    assert_eq!(os.tag_image("web", "next").await, format!("{web}:1.3.0"));

    // Once the watch has seen the change, the next pass has nothing to do.
    discover_until(&target, "the moved tags", |images| {
        images
            .iter()
            .any(|i| i.image == image(&format!("{web}:1.3.0")))
            && images
                .iter()
                .any(|i| i.image == image(&format!("{web}:1.2.9")))
    })
    .await;
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

#[tokio::test]
async fn odd_objects_are_skipped_without_harm() {
    let Some((_, ns, admin, _)) = openshift_namespace("os-odd").await else {
        return;
    };
    // Fields the schema leaves open hold what keel-rs does not expect.
    create(
        &admin,
        &ns,
        json!({
            "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
            "metadata": { "name": "odd", "annotations": { "keel.sh/policy": "minor" } },
            "spec": { "template": { "spec": {
                "containers": [{ "name": "app" }, { "name": "x", "image": "" }],
                "initContainers": [{ "name": "i", "image": "Not A:Valid:Image" }]
            }}}
        }),
    )
    .await;
    let target = target_in(admin, &ns).await;
    let images = target.discover().await.expect("discover");
    assert!(images.is_empty(), "{:?}", ids(&images));
    assert!(
        target.problems().is_empty(),
        "init containers are not tracked by default"
    );
}

#[tokio::test]
async fn the_minimal_openshift_rules_are_enough_and_their_absence_is_named() {
    let Some((server, ns, admin, os)) = openshift_namespace("os-rbac").await else {
        return;
    };
    os.create_stream(
        "web",
        json!({ "keel.sh/policy": "minor" }),
        &[tag("stable", "ghcr.io/acme/web:1.2.3")],
    )
    .await;
    os.create_dc(
        "web",
        json!({ "keel.sh/policy": "minor" }),
        &[("app", "ghcr.io/acme/web:1.2.3")],
        json!([]),
    )
    .await;
    // The rules of examples/keel-controller/deploy/rbac-openshift.yaml, in a Role.
    let openshift: &Rules = &[
        (&["apps.openshift.io"], &["deploymentconfigs"], VERBS),
        (&["image.openshift.io"], &["imagestreams"], VERBS),
    ];
    let carol = granted_client(server, &admin, &ns, "carol", openshift, async |carol| {
        api(carol, &ns, "ImageStream").get("web").await.map(drop)
    })
    .await;
    let target = KubeTarget::builder(carol)
        .with_namespaces([ns.as_str()])
        .with_kinds(&[WorkloadKind::DeploymentConfig, WorkloadKind::ImageStream])
        .build()
        .await
        .expect("build");
    let images = target.discover().await.expect("carol may discover");
    assert_eq!(
        ids(&images),
        [
            format!("deploymentconfig/{ns}/web/app"),
            format!("imagestream/{ns}/web/stable"),
        ]
    );
    for id in ids(&images) {
        let update = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0");
        assert_eq!(
            target.apply(&update).await.expect("apply"),
            ApplyOutcome::Applied,
            "{id}"
        );
    }

    // erin has the rules of rbac-cluster.yaml alone (here in a Role): by default the
    // OpenShift kinds are left out, and the others work as before.
    let plain: &Rules = &[
        (
            &["apps"],
            &["deployments", "statefulsets", "daemonsets"],
            VERBS,
        ),
        (&["batch"], &["cronjobs"], VERBS),
    ];
    Workload::keel_deployment("plain", "minor", "ghcr.io/acme/web:1.2.3")
        .create(&admin, &ns)
        .await;
    let erin = granted_client(server, &admin, &ns, "erin", plain, async |erin| {
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(erin.clone(), &ns)
            .get("plain")
            .await
            .map(drop)
    })
    .await;
    let without = target_in(erin, &ns).await;
    assert!(!without.kinds().contains(&WorkloadKind::DeploymentConfig));
    assert!(!without.kinds().contains(&WorkloadKind::ImageStream));
    assert!(without.kinds().contains(&WorkloadKind::Deployment));
    let images = without.discover().await.expect("erin may discover");
    assert_eq!(ids(&images), [format!("deployment/{ns}/plain/app")]);

    // dave has no OpenShift rules but asks for DeploymentConfigs: discovery fails at once and
    // names what is missing.
    let dave = KubeTarget::builder(server.client_as("dave"))
        .with_namespaces([ns.as_str()])
        .with_kinds(&[WorkloadKind::DeploymentConfig])
        .build()
        .await
        .expect("build");
    let (action, _) = unauthorized(dave.discover().await);
    assert_eq!(action, format!("list deploymentconfigs in namespace {ns}"));
}

#[tokio::test]
async fn deployment_config_rollouts_are_followed_and_failed_ones_rolled_back() {
    let Some((_, ns, admin, os)) = openshift_namespace("os-rollout").await else {
        return;
    };
    for name in ["good", "bad"] {
        os.create_dc(
            name,
            json!({ "keel.sh/policy": "minor" }),
            &[("app", "ghcr.io/acme/web:1.2.3")],
            config_change(),
        )
        .await;
    }
    let target = target_in(admin.clone(), &ns).await;
    target.discover().await.expect("discover");
    let [good, bad] = ["good", "bad"].map(|name| {
        plan(
            &format!("deploymentconfig/{ns}/{name}/app"),
            "ghcr.io/acme/web:1.2.3",
            "ghcr.io/acme/web:1.3.0",
        )
    });
    for update in [&good, &bad] {
        assert_eq!(outcome(&target, update).await, ApplyOutcome::Applied);
    }
    os.set_dc_status(
        "good",
        json!({ "latestVersion": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                "conditions": [{ "type": "Progressing", "status": "True",
                                 "reason": "NewReplicationControllerAvailable" }] }),
    )
    .await;
    os.set_dc_status(
        "bad",
        json!({ "latestVersion": 2, "replicas": 1, "updatedReplicas": 0, "availableReplicas": 1,
                "conditions": [{ "type": "Progressing", "status": "False",
                                 "reason": "ProgressDeadlineExceeded",
                                 "message": "replication controller \"bad-2\" has failed progressing" }] }),
    )
    .await;
    match target.verify_rollout(&good, Duration::from_secs(10)).await {
        Ok(RolloutVerdict::Complete(status)) => assert_eq!(status.available, 1),
        other => panic!("expected a complete rollout, got {other:?}"),
    }
    assert_eq!(os.dc_image("good", "app").await, "ghcr.io/acme/web:1.3.0");

    // The watch must have seen the applied image before the rollback compares with it.
    discover_until(&target, "the applied images", |images| {
        images
            .iter()
            .filter(|i| i.image == image("ghcr.io/acme/web:1.3.0"))
            .count()
            == 2
    })
    .await;
    match target.verify_rollout(&bad, Duration::from_secs(10)).await {
        Ok(RolloutVerdict::RolledBack(status)) => {
            assert!(
                status
                    .failed_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("bad-2")),
                "{status:?}"
            );
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(os.dc_image("bad", "app").await, "ghcr.io/acme/web:1.2.3");
    let dc = os.get("DeploymentConfig", "bad").await;
    let note = dc["metadata"]["annotations"]["keel.sh/rollback"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("restored to ghcr.io/acme/web:1.2.3"), "{dc}");
}

#[tokio::test]
async fn the_triggers_annotation_shows_the_chain_and_moves_the_tag_not_the_container() {
    let Some((_, ns, admin, os)) = openshift_namespace("os-annotation").await else {
        return;
    };
    os.create_stream("web", json!({}), &[tag("stable", "ghcr.io/acme/web:1.2.3")])
        .await;
    Workload::keel_deployment("web", "minor", INTERNAL)
        .annotation(
            "image.openshift.io/triggers",
            &triggers_annotation("app", "web:stable"),
        )
        .container("proxy", "nginx:1.25.0")
        .create(&admin, &ns)
        .await;
    os.create_dc(
        "dc",
        json!({}),
        &[("app", INTERNAL)],
        json!([image_change(&["app"], "web:stable")]),
    )
    .await;
    let target = target_in(admin.clone(), &ns).await;
    let images = target.discover().await.expect("discover");
    assert_eq!(
        ids(&images),
        [
            format!("deployment/{ns}/web/proxy"),
            format!("imagestream/{ns}/web/stable"),
        ]
    );
    let chain: Vec<String> = target
        .image_triggers()
        .await
        .expect("triggers")
        .into_iter()
        .map(|t| {
            format!(
                "{} {}/{} {} <- {} ({}) <- {} tracked as {}",
                t.workload.kind,
                t.workload.namespace,
                t.workload.name,
                t.workload.container,
                t.image_stream_tag,
                t.via,
                t.source.unwrap_or_default(),
                t.tracked_id.unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            format!(
                "deployment {ns}/web app <- {ns}/web:stable (image.openshift.io/triggers) \
                 <- ghcr.io/acme/web:1.2.3 tracked as imagestream/{ns}/web/stable"
            ),
            format!(
                "deploymentconfig {ns}/dc app <- {ns}/web:stable (ImageChange trigger) \
                 <- ghcr.io/acme/web:1.2.3 tracked as imagestream/{ns}/web/stable"
            ),
        ]
    );
    let update = plan(
        &format!("imagestream/{ns}/web/stable"),
        "ghcr.io/acme/web:1.2.3",
        "ghcr.io/acme/web:1.3.0",
    );
    assert_eq!(outcome(&target, &update).await, ApplyOutcome::Applied);
    assert_eq!(
        os.tag_image("web", "stable").await,
        "ghcr.io/acme/web:1.3.0"
    );
    assert_eq!(
        deployment_images(&admin, &ns, "web", false).await[0],
        ("app".to_owned(), INTERNAL.to_owned()),
        "OpenShift's trigger controller, not keel-rs, writes the container"
    );
}

#[tokio::test]
async fn an_image_stream_changed_between_read_and_patch_is_not_overwritten() {
    let Some((server, ns, _, os)) = openshift_namespace("os-is-conflict").await else {
        return;
    };
    os.create_stream(
        "web",
        json!({ "keel.sh/policy": "minor" }),
        &[
            tag("stable", "ghcr.io/acme/web:1.2.3"),
            tag("other", "ghcr.io/acme/other:1.0.0"),
        ],
    )
    .await;
    // Before each of the first two PATCHes of the stream goes out, someone else moves its
    // other tag.
    let (client, changes) = os.racing_client(server, "ImageStream", "web", |n| {
        if n >= 2 {
            return None;
        }
        let to = format!("ghcr.io/acme/other:1.0.{}", n + 1);
        let patch = json!([
            { "op": "test", "path": "/spec/tags/1/name", "value": "other" },
            { "op": "replace", "path": "/spec/tags/1/from/name", "value": to },
        ]);
        Some(Patch::Json(
            serde_json::from_value(patch).expect("a JSON patch"),
        ))
    });
    let impatient = impatient_target(client.clone(), &ns).await;
    let id = format!("imagestream/{ns}/web/stable");
    let update = plan(&id, "ghcr.io/acme/web:1.2.3", "ghcr.io/acme/web:1.3.0");
    let reason = conflict_reason(impatient.apply(&update).await);
    assert!(reason.contains("409"), "{reason}");
    assert_eq!(
        os.tag_image("web", "stable").await,
        "ghcr.io/acme/web:1.2.3",
        "nothing of the refused patch is applied"
    );
    assert_eq!(
        os.tag_image("web", "other").await,
        "ghcr.io/acme/other:1.0.1"
    );

    // Retried (the default), it re-reads and keeps the other change.
    let patient = target_in(client, &ns).await;
    assert_eq!(outcome(&patient, &update).await, ApplyOutcome::Applied);
    assert_eq!(
        os.tag_image("web", "stable").await,
        "ghcr.io/acme/web:1.3.0"
    );
    assert_eq!(
        os.tag_image("web", "other").await,
        "ghcr.io/acme/other:1.0.2",
        "both concurrent changes survive"
    );
    assert_eq!(
        changes.load(Ordering::SeqCst),
        3,
        "two changes, then the applied patch"
    );
}

#[tokio::test]
async fn a_registry_webhook_moves_only_the_stream_tags_of_the_pushed_repository() {
    let Some((_, ns, admin, os)) = openshift_namespace("os-webhook").await else {
        return;
    };
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/web", &["1.0.0", "1.1.0"]).await;
    registry.push_tags("acme/api", &["2.0.0", "2.1.0"]).await;
    let web = format!("{}/acme/web", registry.addr());
    let api_image = format!("{}/acme/api", registry.addr());
    // The default trigger: webhooks only.
    os.create_stream(
        "apps",
        json!({ "keel.sh/policy": "minor" }),
        &[
            tag("web", &format!("{web}:1.0.0")),
            tag("api", &format!("{api_image}:2.0.0")),
        ],
    )
    .await;
    let target = Arc::new(target_in(admin.clone(), &ns).await);
    let pipeline = pipeline_over(target.clone());
    let body = json!({ "name": web, "tag": "1.1.0" }).to_string();
    let pushes = keel_core::trigger::WebhookSource::Native
        .parse_payload(body.as_bytes())
        .expect("a native payload");
    let pushed: Vec<String> = pushes.iter().map(|p| p.image.name()).collect();
    let report = pipeline
        .run_filtered(&|image: &TrackedImage| pushed.contains(&image.image.name()))
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let applied: Vec<String> = report.applied.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        applied,
        [format!(
            "okd imagestream/{ns}/apps/web: {web}:1.0.0 -> {web}:1.1.0"
        )]
    );
    assert_eq!(os.tag_image("apps", "web").await, format!("{web}:1.1.0"));
    assert_eq!(
        os.tag_image("apps", "api").await,
        format!("{api_image}:2.0.0"),
        "a repository nobody pushed to is left alone"
    );
}
