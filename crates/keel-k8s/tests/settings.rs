//! A workload's `keel.sh/*` settings read and changed through `KubeTarget` against a real API
//! server: the annotations written, bad values refused with nothing written, a concurrent
//! change refused, and a paused container left out of passes.

mod support;
use support::{
    assert_someones_label_kept, discover_until, get_deployment, named_target, namespace_with,
    someone_labels_web,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use keel_core::keel_keys::{APPROVALS, PAUSED, POLICY, POLL_SCHEDULE, TRIGGER};
use keel_core::memory::InMemoryRegistry;
use keel_core::target::SettingsChange;
use keel_core::{Error, Pipeline, Target};
use keel_testsupport::kube::Workload;
use kube::Client;
use kube::api::{Api, Patch};
use serde_json::json;

const TARGET: &str = "settings cluster";

async fn annotations(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let d = get_deployment(client, ns, name).await;
    d.metadata.annotations.unwrap_or_default()
}

fn change(pairs: &[(&str, Option<&str>)]) -> SettingsChange {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect()
}

#[tokio::test]
async fn settings_are_read_from_labels_and_annotations_and_written_as_annotations() {
    let web = Workload::deployment("web")
        .annotation(POLICY, "patch")
        .annotation("team", "shop")
        .label(APPROVALS, "1")
        .container("app", "ghcr.io/acme/web:1.0.0");
    let Some((_, ns, admin)) = namespace_with("settings", [web]).await else {
        return;
    };
    let target = named_target(TARGET, admin.clone(), &ns).await;
    let id = format!("deployment/{ns}/web/app");

    let read = target.settings(&id).await.expect("settings");
    let pairs: Vec<(&str, &str)> = read.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(pairs, [(APPROVALS, "1"), (POLICY, "patch")]);

    target
        .change_settings(
            &id,
            &change(&[
                (POLICY, Some("minor")),
                (TRIGGER, Some("poll")),
                (POLL_SCHEDULE, Some("@every 5m")),
                (APPROVALS, Some("2")),
            ]),
        )
        .await
        .expect("change");
    let written = annotations(&admin, &ns, "web").await;
    assert_eq!(written[POLICY], "minor");
    assert_eq!(written[TRIGGER], "poll");
    assert_eq!(written[POLL_SCHEDULE], "@every 5m");
    assert_eq!(
        written[APPROVALS], "2",
        "the annotation wins over the label"
    );
    assert_eq!(written["team"], "shop", "other annotations stay");
    let images = discover_until(&target, "the new policy", |images| {
        images.iter().any(|i| i.approvals == 2)
    })
    .await;
    assert_eq!(images[0].trigger.to_string(), "poll @every 5m");

    // Clearing an annotation removes it; clearing a key only a label holds is refused.
    target
        .change_settings(&id, &change(&[(TRIGGER, None)]))
        .await
        .expect("clear");
    assert!(!annotations(&admin, &ns, "web").await.contains_key(TRIGGER));
    Api::<Deployment>::namespaced(admin.clone(), &ns)
        .patch(
            "web",
            &Default::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {APPROVALS: null}}})),
        )
        .await
        .unwrap();
    let e = target
        .change_settings(&id, &change(&[(APPROVALS, None)]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("label"), "{e}");
}

#[tokio::test]
async fn bad_values_and_unknown_images_change_nothing() {
    let web = Workload::keel_deployment("web", "patch", "ghcr.io/acme/web:1.0.0");
    let Some((_, ns, admin)) = namespace_with("settings-bad", [web]).await else {
        return;
    };
    let target = named_target(TARGET, admin.clone(), &ns).await;
    let id = format!("deployment/{ns}/web/app");
    let before = annotations(&admin, &ns, "web").await;
    for (key, value) in [
        (POLICY, "minr"),
        (APPROVALS, "two"),
        (POLL_SCHEDULE, "every minute"),
        (TRIGGER, "sometimes"),
        ("keel.sh/monitorContainers", "app"),
    ] {
        // The good key in the same change is not written either.
        let bad = change(&[(APPROVALS, Some("3")), (key, Some(value))]);
        let e = target.change_settings(&id, &bad).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains(key) && message.contains(value),
            "{message}"
        );
        assert_eq!(annotations(&admin, &ns, "web").await, before);
    }
    for unknown in [
        format!("deployment/{ns}/gone/app"),
        "deployment/elsewhere/web/app".to_owned(),
        "nonsense".to_owned(),
    ] {
        let e = target
            .change_settings(&unknown, &change(&[(POLICY, Some("minor"))]))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{unknown}: {e:?}");
    }
}

#[tokio::test]
async fn a_paused_container_is_discovered_but_not_updated() {
    let web = Workload::keel_deployment("web", "minor", "ghcr.io/acme/web:1.0.0")
        .container("sidecar", "ghcr.io/acme/proxy:1.0.0");
    let Some((_, ns, admin)) = namespace_with("settings-pause", [web]).await else {
        return;
    };
    let target = Arc::new(named_target(TARGET, admin.clone(), &ns).await);
    let app = format!("deployment/{ns}/web/app");
    target
        .change_settings(&app, &change(&[(PAUSED, Some("app"))]))
        .await
        .expect("pause");
    let images = discover_until(&target, "the pause", |images| {
        images.iter().any(|i| i.paused)
    })
    .await;
    let paused: Vec<(&str, bool)> = images.iter().map(|i| (i.id.as_str(), i.paused)).collect();
    assert_eq!(
        paused,
        [
            (app.as_str(), true),
            (format!("deployment/{ns}/web/sidecar").as_str(), false)
        ]
    );

    let registry = Arc::new(InMemoryRegistry::new("memory"));
    registry.push_tags("ghcr.io/acme/web", &["1.0.0", "1.1.0"]);
    registry.push_tags("ghcr.io/acme/proxy", &["1.0.0", "1.2.0"]);
    let pipeline = Pipeline::new(registry).with_target(target.clone());
    let report = pipeline.run_once().await;
    let applied: Vec<String> = report.applied.iter().map(|p| p.new.to_string()).collect();
    assert_eq!(applied, ["ghcr.io/acme/proxy:1.2.0"]);
    assert_eq!(report.tracked, 1, "the paused image is not counted");
}

#[tokio::test]
async fn a_change_that_races_another_writer_is_a_conflict_and_loses_nothing() {
    let web = Workload::keel_deployment("web", "patch", "ghcr.io/acme/web:1.0.0");
    let Some((server, ns, admin)) = namespace_with("settings-race", [web]).await else {
        return;
    };
    // Someone else labels the Deployment between keel's read and its patch.
    let (client, _) = someone_labels_web(server, &admin, &ns, |_| true);
    let target = named_target(TARGET, client, &ns).await;
    let e = target
        .change_settings(
            &format!("deployment/{ns}/web/app"),
            &change(&[(POLICY, Some("major"))]),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert_someones_label_kept(&admin, &ns).await;
    assert_eq!(annotations(&admin, &ns, "web").await[POLICY], "patch");
}
