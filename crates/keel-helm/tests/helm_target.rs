//! `HelmTarget` against a real API server and the real `helm`: discovery from chart defaults
//! and user values, upgrades of one path or a whole reference with nothing else changed,
//! idempotence, a release out of scope, a failed upgrade, a release mid-operation, RBAC, the
//! watch cache's request pattern and full pipeline passes against a real registry.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use keel_core::approval::{Approvals, MemoryApprovalStore};
use keel_core::target::Trigger;
use keel_core::{ApplyOutcome, Error, ImageRef, Pipeline, Target, TrackedImage, UpdatePlan};
use keel_helm::{HelmBinary, HelmTarget, HelmTargetBuilder, PROBLEM_KIND};
use keel_k8s::RolloutVerdict;
use keel_registry::RegistryClient;
use keel_testsupport::helm::{Helm, chart_dir, chart_registry, helm_bin};
use keel_testsupport::kube::{
    ADMIN, ApiServer, LIMITED_USERS, deployment_images, grant, mark_deployment_rolled_out, wait_for,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

const NAME: &str = "test helm";

/// A fresh namespace of the shared API server, with helm acting as the admin.
struct World {
    server: &'static ApiServer,
    ns: String,
    admin: Client,
    helm: Helm,
}

async fn world(prefix: &str) -> Option<World> {
    let (server, ns, admin) = ApiServer::shared_namespace(prefix).await?;
    let helm = Helm::new(server, ADMIN)?;
    Some(World {
        server,
        ns,
        admin,
        helm,
    })
}

impl World {
    fn install(&self, release: &str, set: &[(&str, &str)]) {
        self.helm.install(&self.ns, release, &chart_dir("web"), set);
    }

    async fn target_as(&self, client: Client, namespaces: &[&str]) -> Result<HelmTarget, Error> {
        self.builder(client, namespaces).build().await
    }

    fn builder(&self, client: Client, namespaces: &[&str]) -> HelmTargetBuilder {
        HelmTarget::builder(client)
            .with_name(NAME)
            .with_namespaces(namespaces.iter().copied())
            .with_helm(self.helm_binary())
            .with_sync_timeout(Duration::from_secs(30))
    }

    /// The real helm, acting as the admin.
    fn helm_binary(&self) -> HelmBinary {
        HelmBinary::at(helm_bin().expect("HELM_BIN is set")).with_env(self.helm.env())
    }

    async fn target(&self) -> HelmTarget {
        self.target_as(self.admin.clone(), &[&self.ns])
            .await
            .unwrap()
    }

    /// Installs `release` with `set` and a target that has discovered it.
    async fn discovered(&self, release: &str, set: &[(&str, &str)]) -> HelmTarget {
        self.install(release, set);
        let target = self.target().await;
        target.discover().await.unwrap();
        target
    }

    /// `web` installed with `set`, a target that has discovered it, and the plan that moves its
    /// app image from 1.0.0 to 1.1.0.
    async fn web_upgrade(&self, set: &[(&str, &str)]) -> (HelmTarget, UpdatePlan) {
        let target = self.discovered("web", set).await;
        (target, self.app_plan("web", "1.0.0", "1.1.0"))
    }

    fn id(&self, release: &str, path: &str) -> String {
        format!("helm/{}/{release}/{path}", self.ns)
    }

    /// The ids of the test chart's two images in `release`: the app's, then the sidecar's.
    fn chart_ids(&self, release: &str) -> [String; 2] {
        [
            self.id(release, "image.repository"),
            self.id(release, "sidecar.image"),
        ]
    }

    fn plan(&self, release: &str, path: &str, current: &str, new: &str) -> UpdatePlan {
        UpdatePlan {
            target: NAME.to_owned(),
            id: self.id(release, path),
            current: image(current),
            new: image(new),
        }
    }

    /// The plan that moves the `app` image of `release` (`image.repository` + `image.tag`,
    /// `registry.example/acme/web`) from tag `from` to tag `to`.
    fn app_plan(&self, release: &str, from: &str, to: &str) -> UpdatePlan {
        let web = |tag: &str| format!("registry.example/acme/web:{tag}");
        self.plan(release, "image.repository", &web(from), &web(to))
    }

    /// `(revision, status)` of each revision of `release`.
    fn revisions(&self, release: &str) -> Vec<(u64, String)> {
        self.helm
            .history(&self.ns, release)
            .as_array()
            .expect("history is a list")
            .iter()
            .map(|r| {
                (
                    r["revision"].as_u64().unwrap(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn images(&self, release: &str) -> Vec<(String, String)> {
        deployment_images(&self.admin, &self.ns, release, false).await
    }
}

/// What `target` finds of the rollout of `plan` within `secs` seconds.
async fn rollout_verdict(target: &HelmTarget, plan: &UpdatePlan, secs: u64) -> RolloutVerdict {
    let verdict = target.verify_rollout(plan, Duration::from_secs(secs)).await;
    verdict.expect("the rollout is verified")
}

/// `(container, image)` of the test chart's Deployment with the app at `app` and the sidecar
/// at `proxy`.
fn chart_images(app: &str, proxy: &str) -> [(String, String); 2] {
    [
        ("app".to_owned(), format!("registry.example/acme/web:{app}")),
        (
            "sidecar".to_owned(),
            format!("registry.example/acme/proxy:{proxy}"),
        ),
    ]
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn by_id<'a>(images: &'a [TrackedImage], id: &str) -> &'a TrackedImage {
    images
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{id} not among {:?}", ids(images)))
}

fn ids(images: &[TrackedImage]) -> Vec<String> {
    images.iter().map(|i| i.id.clone()).collect()
}

/// Discovers until `done` holds (the watch delivers changes a moment after they happen); panics
/// after 20 s showing what was discovered last.
async fn discover_until(target: &HelmTarget, what: &str, done: impl Fn(&[TrackedImage]) -> bool) {
    let limits = (Duration::from_secs(20), Duration::from_millis(50));
    let discover = async || target.discover().await.unwrap();
    wait_for(what, limits, discover, |images| done(images)).await;
}

#[tokio::test]
async fn discovers_from_chart_defaults_and_user_values() {
    let Some(w) = world("helm-discover").await else {
        return;
    };
    w.install("defaults", &[]);
    w.install(
        "custom",
        &[
            ("image.tag", "1.1.0"),
            ("keel.policy", "major"),
            ("keel.trigger", "default"),
            ("keel.approvals", "2"),
        ],
    );
    w.install("untracked", &[("keel.policy", "never")]);
    let target = w.target().await;
    let images = target.discover().await.unwrap();
    assert_eq!(
        ids(&images),
        [w.chart_ids("custom"), w.chart_ids("defaults")].concat()
    );
    let poll = Trigger::Poll {
        schedule: Some("@every 1m".parse().unwrap()),
    };
    for (release, tag, policy, trigger, approvals) in [
        ("defaults", "1.0.0", "Minor", poll, 0),
        ("custom", "1.1.0", "Major", Trigger::Webhook, 2),
    ] {
        let app = by_id(&images, &w.id(release, "image.repository"));
        let want = image(&format!("registry.example/acme/web:{tag}"));
        assert_eq!(app.image, want, "{release}");
        assert!(
            format!("{:?}", app.policy).contains(policy),
            "{release}: {:?}",
            app.policy
        );
        assert_eq!(app.trigger, trigger, "{release}");
        assert_eq!(app.approvals, approvals, "{release}");
    }
    let sidecar = by_id(&images, &w.id("defaults", "sidecar.image"));
    assert_eq!(sidecar.image, image("registry.example/acme/proxy:2.0.0"));

    let listing = target.releases().await.unwrap();
    let row = listing.iter().find(|r| r.release == "defaults").unwrap();
    assert_eq!(
        (
            row.revision,
            row.chart.as_str(),
            row.policy.as_str(),
            row.trigger.as_str()
        ),
        (1, "web-0.1.0", "minor", "poll @every 1m")
    );
    assert!(target.problems().is_empty(), "{:?}", target.problems());
}

#[tokio::test]
async fn a_bad_value_skips_only_its_release_naming_the_path_and_value() {
    let Some(w) = world("helm-bad").await else {
        return;
    };
    w.install("good", &[]);
    w.install("bad-approvals", &[("keel.approvals", "two")]);
    // `--set` of a list item replaces the whole list, as in Helm.
    w.install(
        "bad-path",
        &[
            ("keel.images[0].repository", "image.repository"),
            ("keel.images[0].tag", "image.nothing"),
        ],
    );
    let target = w.target().await;
    let images = target.discover().await.unwrap();
    assert_eq!(ids(&images), w.chart_ids("good"));
    let mut problems: Vec<(String, String, String)> = target
        .problems()
        .into_iter()
        .map(|p| {
            assert_eq!(
                (p.kind.as_str(), p.namespace.as_str()),
                (PROBLEM_KIND, w.ns.as_str())
            );
            assert!(!p.reason.is_empty());
            (p.name, p.key, p.value)
        })
        .collect();
    problems.sort();
    assert_eq!(
        problems,
        [
            (
                "bad-approvals".into(),
                "keel.approvals".into(),
                "two".into()
            ),
            ("bad-path".into(), "image.nothing".into(), "null".into()),
        ]
    );
}

#[tokio::test]
async fn upgrades_one_path_of_two_with_nothing_else_changed_and_is_idempotent() {
    let Some(w) = world("helm-apply").await else {
        return;
    };
    let (target, update) = w.web_upgrade(&[("replicas", "2")]).await;
    assert_eq!(target.apply(&update).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        w.revisions("web"),
        [(1, "superseded".to_owned()), (2, "deployed".to_owned())]
    );
    // The user's values are what they were, with only the tracked path changed.
    assert_eq!(
        w.helm.get_values(&w.ns, "web", false),
        json!({"replicas": 2, "image": {"tag": "1.1.0"}})
    );
    assert_eq!(w.images("web").await, chart_images("1.1.0", "2.0.0"));
    // The same plan again: nothing to do, no new revision.
    assert_eq!(
        target.apply(&update).await.unwrap(),
        ApplyOutcome::AlreadyCurrent
    );
    assert_eq!(w.revisions("web").len(), 2);
    // A plan made before the upgrade no longer fits.
    let stale = w.app_plan("web", "1.0.0", "1.2.0");
    let error = target.apply(&stale).await.unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error:?}");
    assert_eq!(w.revisions("web").len(), 2);
    // Discovery sees the new revision.
    discover_until(&target, "revision 2", |images| {
        images
            .iter()
            .any(|i| i.image == image("registry.example/acme/web:1.1.0"))
    })
    .await;
}

#[tokio::test]
async fn two_paths_of_one_release_go_into_one_revision() {
    let Some(w) = world("helm-whole").await else {
        return;
    };
    let target = w.discovered("web", &[]).await;
    let plans = [
        w.plan(
            "web",
            "sidecar.image",
            "registry.example/acme/proxy:2.0.0",
            "registry.example/acme/proxy:2.1.0",
        ),
        w.app_plan("web", "1.0.0", "1.0.1"),
    ];
    let outcomes: Vec<ApplyOutcome> = target
        .apply_all(&plans)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outcomes, [ApplyOutcome::Applied, ApplyOutcome::Applied]);
    assert_eq!(w.revisions("web").len(), 2, "one upgrade for both");
    assert_eq!(
        w.helm.get_values(&w.ns, "web", false),
        json!({"image": {"tag": "1.0.1"}, "sidecar": {"image": "registry.example/acme/proxy:2.1.0"}})
    );
    assert_eq!(w.images("web").await, chart_images("1.0.1", "2.1.0"));
}

#[tokio::test]
async fn a_release_in_another_namespace_is_out_of_scope() {
    let Some(w) = world("helm-scope").await else {
        return;
    };
    let Some((_, other_ns, _)) = ApiServer::shared_namespace("helm-other").await else {
        return;
    };
    w.install("web", &[]);
    w.helm.install(&other_ns, "outside", &chart_dir("web"), &[]);
    let target = w.target().await;
    let images = target.discover().await.unwrap();
    assert!(
        images
            .iter()
            .all(|i| i.id.starts_with(&format!("helm/{}/", w.ns)))
    );
    let outside = UpdatePlan {
        id: format!("helm/{other_ns}/outside/image.repository"),
        ..w.app_plan("outside", "1.0.0", "1.1.0")
    };
    let error = target.apply(&outside).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert_eq!(
        w.helm
            .history(&other_ns, "outside")
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_failed_upgrade_is_reported_with_helms_message_and_not_tried_again() {
    let Some(w) = world("helm-fail").await else {
        return;
    };
    let (target, update) = w.web_upgrade(&[("failOnTag", "1.1.0")]).await;
    let error = target.apply(&update).await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(
            error,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        text.contains("image tag 1.1.0 is refused by this chart"),
        "{text}"
    );
    assert!(text.contains(&format!("{}/web", w.ns)), "{text}");
    assert_eq!(w.revisions("web"), [(1, "deployed".to_owned())]);

    // The pipeline does not choose that version again; the next one is fine.
    let registry = Arc::new(keel_core::memory::InMemoryRegistry::new("test registry"));
    registry.push_tags("registry.example/acme/web", &["1.0.0", "1.1.0"]);
    registry.push_tags("registry.example/acme/proxy", &["2.0.0"]);
    let pipeline = Pipeline::new(registry.clone()).with_target(Arc::new(target.clone()));
    let report = pipeline.run_once().await;
    assert!(report.planned.is_empty(), "{:?}", report.planned);
    registry.push_tags("registry.example/acme/web", &["1.1.1"]);
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.applied.len(), 1, "{:?}", report.applied);
    assert_eq!(
        report.applied[0].new,
        image("registry.example/acme/web:1.1.1")
    );
}

#[tokio::test]
async fn a_release_mid_upgrade_is_not_touched() {
    let Some(w) = world("helm-pending").await else {
        return;
    };
    w.install("web", &[]);
    // Revision 2 pending, as helm leaves it while an upgrade runs (or when it was killed).
    let secrets: Api<Secret> = Api::namespaced(w.admin.clone(), &w.ns);
    let mut pending = secrets.get("sh.helm.release.v1.web.v1").await.unwrap();
    pending.metadata = kube::api::ObjectMeta {
        name: Some("sh.helm.release.v1.web.v2".to_owned()),
        labels: Some(
            [
                ("owner", "helm"),
                ("name", "web"),
                ("status", "pending-upgrade"),
                ("version", "2"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &pending)
        .await
        .unwrap();
    let target = w.target().await;
    assert!(target.discover().await.unwrap().is_empty());
    let update = w.app_plan("web", "1.0.0", "1.1.0");
    let error = target.apply(&update).await.unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error:?}");
    assert!(
        error.to_string().contains("revision 2 is pending"),
        "{error}"
    );
    assert_eq!(
        w.images("web").await[0].1,
        "registry.example/acme/web:1.0.0"
    );
}

#[tokio::test]
async fn rbac_denials_are_reported_clearly() {
    let Some(w) = world("helm-rbac").await else {
        return;
    };
    let user = LIMITED_USERS[2];
    // May read Secrets but not ConfigMaps.
    grant(
        &w.admin,
        &w.ns,
        user,
        &[(&[""], &["secrets"], &["get", "list", "watch"])],
    )
    .await;
    let target = w
        .target_as(w.server.client_as(user), &[&w.ns])
        .await
        .unwrap();
    let error = target.discover().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
    for part in ["configmaps", &w.ns, "`list`"] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
}

#[tokio::test]
async fn steady_state_discovery_makes_no_api_request() {
    let Some(w) = world("helm-steady").await else {
        return;
    };
    for i in 0..3 {
        w.install(&format!("web-{i}"), &[]);
    }
    let (client, log) = w.server.counting_admin_client();
    let target = w.target_as(client, &[&w.ns]).await.unwrap();
    assert_eq!(target.discover().await.unwrap().len(), 6);
    assert!(!log.lists().is_empty(), "the first discovery lists");
    log.clear();
    for _ in 0..10 {
        assert_eq!(target.discover().await.unwrap().len(), 6);
    }
    let requests: Vec<_> = log.all().into_iter().filter(|r| !r.is_watch()).collect();
    assert!(
        requests.is_empty(),
        "steady state made requests: {requests:?}"
    );
}

#[tokio::test]
async fn a_poll_pass_against_a_real_registry_ends_in_a_new_revision() {
    let Some(w) = world("helm-poll").await else {
        return;
    };
    let (_registry, web, proxy) = chart_registry().await;
    w.install(
        "web",
        &[
            ("image.repository", &web),
            ("sidecar.image", &format!("{proxy}:2.0.0")),
        ],
    );
    w.install(
        "gated",
        &[
            ("image.repository", &web),
            ("sidecar.image", &format!("{proxy}:2.0.0")),
            ("keel.approvals", "1"),
        ],
    );
    let target = Arc::new(w.target().await);
    let client = RegistryClient::builder()
        .with_requests_per_second(0.0)
        .build()
        .unwrap();
    let pipeline = Pipeline::new(Arc::new(client))
        .with_target(target.clone())
        .with_approvals(Approvals::new(Arc::new(MemoryApprovalStore::default())));
    let report = pipeline.run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let applied: Vec<String> = report.applied.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        applied,
        [format!(
            "{NAME} helm/{}/web/image.repository: {web}:1.0.0 -> {web}:1.1.0",
            w.ns
        )]
    );
    assert_eq!(report.awaiting_approval.len(), 1, "the gated release waits");
    assert_eq!(w.revisions("web").len(), 2);
    assert_eq!(w.revisions("gated").len(), 1);
    assert_eq!(
        w.helm.get_values(&w.ns, "web", false)["image"],
        json!({"repository": web, "tag": "1.1.0"})
    );
    assert_eq!(w.images("web").await[0].1, format!("{web}:1.1.0"));

    // Once the watch has seen revision 2, the next pass has nothing to do.
    discover_until(&target, "revision 2", |images| {
        images
            .iter()
            .any(|i| i.image == image(&format!("{web}:1.1.0")))
    })
    .await;
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(w.revisions("web").len(), 2);
}

#[tokio::test]
async fn a_missing_helm_binary_fails_at_start_up() {
    let Some(w) = world("helm-missing").await else {
        return;
    };
    let error = HelmTarget::builder(w.admin.clone())
        .with_helm(HelmBinary::at("no/such/helm"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("no/such/helm"), "{error}");
}

#[tokio::test]
async fn an_empty_namespace_list_fails_at_start_up() {
    let Some(w) = world("helm-no-namespaces").await else {
        return;
    };
    for list in [&[][..], &[""]] {
        let error = w.target_as(w.admin.clone(), list).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidInput(_)),
            "{list:?}: {error:?}"
        );
        assert!(error.to_string().contains("namespace list"), "{error}");
    }
}

#[tokio::test]
async fn a_rollout_that_never_becomes_available_is_rolled_back_and_avoided() {
    let Some(w) = world("helm-rollback").await else {
        return;
    };
    w.install("web", &[]);
    w.install("good", &[]);
    let target = w.target().await;
    target.discover().await.unwrap();

    // `good` rolls out (the test server runs no controller-manager: the test says so).
    let good = w.app_plan("good", "1.0.0", "1.1.0");
    assert_eq!(target.apply(&good).await.unwrap(), ApplyOutcome::Applied);
    mark_deployment_rolled_out(&w.admin, &w.ns, "good").await;
    let verdict = rollout_verdict(&target, &good, 5).await;
    assert!(
        matches!(verdict, RolloutVerdict::Complete(_)),
        "{verdict:?}"
    );
    assert_eq!(w.revisions("good").len(), 2);

    // `web` never becomes available: back to revision 1's values in a third revision.
    let update = w.app_plan("web", "1.0.0", "1.1.0");
    assert_eq!(target.apply(&update).await.unwrap(), ApplyOutcome::Applied);
    let verdict = rollout_verdict(&target, &update, 1).await;
    assert!(
        matches!(verdict, RolloutVerdict::RolledBack(_)),
        "{verdict:?}"
    );
    assert_eq!(
        w.revisions("web"),
        [
            (1, "superseded".to_owned()),
            (2, "superseded".to_owned()),
            (3, "deployed".to_owned())
        ]
    );
    assert_eq!(
        w.images("web").await[0].1,
        "registry.example/acme/web:1.0.0"
    );

    // The undone version is not chosen again; the next one is.
    let registry = Arc::new(keel_core::memory::InMemoryRegistry::new("test registry"));
    registry.push_tags("registry.example/acme/web", &["1.0.0", "1.1.0"]);
    registry.push_tags("registry.example/acme/proxy", &["2.0.0"]);
    discover_until(&target, "revision 3", |images| {
        images.iter().any(|i| {
            i.id == w.id("web", "image.repository")
                && i.image == image("registry.example/acme/web:1.0.0")
        }) && images
            .iter()
            .any(|i| i.image == image("registry.example/acme/web:1.1.0"))
    })
    .await;
    let pipeline = Pipeline::new(registry.clone()).with_target(Arc::new(target.clone()));
    let report = pipeline.run_once().await;
    assert!(report.planned.is_empty(), "{:?}", report.planned);
    registry.push_tags("registry.example/acme/web", &["1.1.1"]);
    let report = pipeline.run_once().await;
    let mut applied: Vec<String> = report.applied.iter().map(|p| p.new.to_string()).collect();
    applied.sort();
    assert_eq!(
        applied,
        [
            "registry.example/acme/web:1.1.1",
            "registry.example/acme/web:1.1.1"
        ],
        "both releases move on to 1.1.1"
    );
}

#[tokio::test]
async fn releases_stored_in_configmaps_are_tracked_and_upgraded_there() {
    let Some(w) = world("helm-configmap").await else {
        return;
    };
    let w = World {
        helm: w.helm.with_driver("configmap"),
        ..w
    };
    w.install("web", &[]);
    let target = w.target().await;
    let images = target.discover().await.unwrap();
    assert_eq!(ids(&images), w.chart_ids("web"));
    let update = w.plan(
        "web",
        "sidecar.image",
        "registry.example/acme/proxy:2.0.0",
        "registry.example/acme/proxy:2.0.1",
    );
    assert_eq!(target.apply(&update).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        w.revisions("web"),
        [(1, "superseded".to_owned()), (2, "deployed".to_owned())]
    );
    let secrets: Api<Secret> = Api::namespaced(w.admin.clone(), &w.ns);
    let stored = secrets
        .list(&kube::api::ListParams::default().labels("owner=helm"))
        .await
        .unwrap();
    assert!(
        stored.items.is_empty(),
        "the upgrade stayed with the configmap driver"
    );
}

#[tokio::test]
async fn a_storage_object_that_does_not_decode_skips_only_its_release() {
    let Some(w) = world("helm-corrupt").await else {
        return;
    };
    w.install("good", &[]);
    // What a broken or hostile writer could leave: Helm's labels over a value that is no
    // release.
    let broken: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "sh.helm.release.v1.broken.v1",
            "labels": {"owner": "helm", "name": "broken", "status": "deployed", "version": "1"},
        },
        "type": "helm.sh/release.v1",
        "stringData": {"release": "H4sIAAAAAAAA-not-base64-%%%"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.admin.clone(), &w.ns)
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    let target = w.target().await;
    let images = target.discover().await.unwrap();
    assert_eq!(ids(&images), w.chart_ids("good"));
    let problems = target.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (
            problems[0].name.as_str(),
            problems[0].key.as_str(),
            problems[0].value.as_str()
        ),
        ("broken", "release", "revision 1")
    );
    assert!(problems[0].reason.contains("not base64"), "{problems:?}");
    // An update of it is refused, naming the release and what is wrong.
    let update = w.app_plan("broken", "1.0.0", "1.1.0");
    let error = target.apply(&update).await.unwrap_err();
    assert!(error.to_string().contains("broken"), "{error}");
    assert!(error.to_string().contains("not base64"), "{error}");
}

#[tokio::test]
async fn with_pinned_digests_exactly_the_planned_digest_is_written() {
    pinned_digest_is_applied_once("helm-digest", "1.1.0").await;
}

/// The rule every target shares (`UpdatePlan::already_runs`): values that name a tag but no
/// digest do not run a digest planned for that tag, so the plan is applied, not taken as
/// already current.
#[tokio::test]
async fn a_digest_plan_for_the_running_tag_is_not_already_current_without_a_known_digest() {
    pinned_digest_is_applied_once("helm-same-tag", "1.0.0").await;
}

/// Installs `web` at 1.0.0 (values without digest), applies with pinned digests the plan to
/// `to_tag` at a digest, and checks that exactly that digest is written and runs, once.
async fn pinned_digest_is_applied_once(prefix: &str, to_tag: &str) {
    let Some(w) = world(prefix).await else {
        return;
    };
    w.install("web", &[]);
    let target = w
        .builder(w.admin.clone(), &[&w.ns])
        .with_pin_digests(true)
        .build()
        .await
        .unwrap();
    target.discover().await.unwrap();
    let digest = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let update = w.plan(
        "web",
        "image.repository",
        "registry.example/acme/web:1.0.0",
        &format!("registry.example/acme/web:{to_tag}@{digest}"),
    );
    assert_eq!(target.apply(&update).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        w.helm.get_values(&w.ns, "web", false),
        json!({"image": {"tag": format!("{to_tag}@{digest}")}})
    );
    assert_eq!(
        w.images("web").await[0].1,
        format!("registry.example/acme/web:{to_tag}@{digest}")
    );
    // The same plan again: nothing to do.
    assert_eq!(
        target.apply(&update).await.unwrap(),
        ApplyOutcome::AlreadyCurrent
    );
    assert_eq!(w.revisions("web").len(), 2);
}
