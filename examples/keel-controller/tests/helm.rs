//! `keel-controller --helm` against a real kube-apiserver, the real `helm` and a real
//! registry: a polled release and a webhook-triggered release each end in a new revision with
//! exactly the new tag, beside the workloads; a missing helm binary stops the start.

mod common;
use common::{Controller, env_refs, helm_env, lone_replica, server_with_helm};

use std::time::{Duration, Instant};

use keel_testsupport::helm::{Helm, chart_dir};
use keel_testsupport::kube::{ADMIN, ApiServer, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use serde_json::{Value, json};

/// Waits until `release`'s deployed revision is `revision`; how long that took.
async fn wait_for_revision(helm: &Helm, ns: &str, release: &str, revision: u64) -> Duration {
    let what = format!("{ns}/{release} at revision {revision}");
    wait_for(
        &what,
        (Duration::from_secs(60), Duration::from_millis(100)),
        async || helm.history(ns, release),
        |history| {
            let deployed = history
                .as_array()
                .and_then(|h| h.iter().find(|r| r["status"] == "deployed"))
                .and_then(|r| r["revision"].as_u64());
            deployed == Some(revision)
        },
    )
    .await
}

#[tokio::test]
async fn the_controller_upgrades_releases_on_polls_and_webhooks() {
    let Some((api, helm)) = server_with_helm().await else {
        return;
    };
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/web", &["1.0.0", "1.1.0"]).await;
    registry.push_tags("acme/api", &["2.0.0"]).await;
    registry.push_tags("acme/proxy", &["2.0.0"]).await;
    let repo = |name: &str| format!("{}/acme/{name}", registry.addr());
    let proxy = format!("{}:2.0.0", repo("proxy"));
    let ns = api.namespace("helm-controller").await;
    let own_ns = api.namespace("keel").await;
    helm.install(
        &ns,
        "polled",
        &chart_dir("web"),
        &[
            ("image.repository", &repo("web")),
            ("sidecar.image", &proxy),
            ("keel.pollSchedule", "@every 1s"),
        ],
    );
    helm.install(
        &ns,
        "pushed",
        &chart_dir("web"),
        &[
            ("image.repository", &repo("api")),
            ("image.tag", "2.0.0"),
            ("sidecar.image", &proxy),
            ("keel.policy", "major"),
            ("keel.trigger", "default"),
            ("replicas", "3"),
        ],
    );
    let env = helm_env(&helm);
    let env = env_refs(&env);
    let controller = Controller::start(
        api,
        ADMIN,
        &[
            &["--namespaces", &ns, "--resync", "1s"][..],
            &lone_replica(&own_ns),
        ]
        .concat(),
        &env,
    );
    controller.wait_until_serving().await;

    // The poll moves `polled` to 1.1.0 in one new revision, with nothing else changed.
    wait_for_revision(&helm, &ns, "polled", 2).await;
    let values = helm.get_values(&ns, "polled", false);
    assert_eq!(
        values["image"],
        json!({"repository": repo("web"), "tag": "1.1.0"})
    );
    assert_eq!(values["sidecar"], json!({"image": proxy}));
    assert_eq!(values["keel"], json!({"pollSchedule": "@every 1s"}));

    // A webhook for `pushed` (not polled) moves it to the announced major.
    registry.push_tags("acme/api", &["3.0.0"]).await;
    let sent = Instant::now();
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/v1/webhooks/native?token=hook-token",
            controller.base()
        ))
        .json(&json!({"name": repo("api"), "tag": "3.0.0"}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
    wait_for_revision(&helm, &ns, "pushed", 2).await;
    eprintln!("webhook to deployed revision: {:?}", sent.elapsed());
    let values: Value = helm.get_values(&ns, "pushed", false);
    assert_eq!(values["image"]["tag"], "3.0.0");
    assert_eq!(values["replicas"], 3);
    // Nothing more happens: no third revision of either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for release in ["polled", "pushed"] {
        assert_eq!(
            helm.history(&ns, release).as_array().unwrap().len(),
            2,
            "{release}"
        );
    }
}

#[tokio::test]
async fn a_missing_helm_binary_stops_the_start() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    let own_ns = api.namespace("keel").await;
    let mut controller = Controller::start(
        api,
        ADMIN,
        &[
            &["--helm", "--helm-binary", "no/such/helm"][..],
            &lone_replica(&own_ns),
        ]
        .concat(),
        &[("KEEL_WEBHOOK_TOKEN", "hook-token")],
    );
    let status = controller.child().wait().unwrap();
    assert_eq!(status.code(), Some(2));
}
