//! The `keel-controller` binary against a real kube-apiserver and a real registry on
//! 127.0.0.1: a poll cycle through a pull secret, a webhook, an approval through the API,
//! metrics, leader election and a clean shutdown.

mod common;
use common::Controller;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use keel_testsupport::kube::{
    ADMIN, ApiServer, Workload, create_docker_config_secret, deployment_images, wait_for,
};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::Api;

/// Waits until `ns/name` runs `want`, for a minute at most; how long that took.
async fn wait_for_image(client: &kube::Client, ns: &str, name: &str, want: &str) -> Duration {
    wait_for_image_within(client, ns, name, want, 60).await
}

/// Waits until `ns/name` runs `want`, for `secs` seconds at most; how long that took.
async fn wait_for_image_within(
    client: &kube::Client,
    ns: &str,
    name: &str,
    want: &str,
    secs: u64,
) -> Duration {
    let every = Duration::from_millis(100);
    let what = format!("{ns}/{name} running {want}");
    wait_for(
        &what,
        (Duration::from_secs(secs), every),
        async || deployment_images(client, ns, name, false).await,
        |images| images.iter().any(|(_, image)| image == want),
    )
    .await
}

#[tokio::test]
async fn the_controller_polls_takes_webhooks_and_waits_for_approvals() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    let options = ServerOptions::htpasswd("puller", "pull-pw");
    let server = RegistryServer::with_tags(options, "team/polled", &["1.0.0", "1.1.0"]).await;
    server.push_tags("team/pushed", &["2.0.0"]).await;
    server.push_tags("team/gated", &["3.0.0", "3.0.1"]).await;
    let image = |repo: &str, tag: &str| format!("{}/team/{repo}:{tag}", server.addr());
    let ns = api.namespace("controller").await;
    let own_ns = api.namespace("keel").await;
    let client = api.admin_client();

    // The registry needs credentials; only the workloads' pull secret holds them.
    create_docker_config_secret(&client, &ns, "regcred", server.addr(), "puller", "pull-pw").await;
    Workload::keel_deployment("polled", "minor", &image("polled", "1.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .annotation("keel.sh/pollSchedule", "@every 1s")
        .pull_secret("regcred")
        .create(&client, &ns)
        .await;
    Workload::deployment("pushed")
        .label("keel.sh/policy", "major")
        .container("app", &image("pushed", "2.0.0"))
        .pull_secret("regcred")
        .create(&client, &ns)
        .await;
    Workload::keel_deployment("gated", "patch", &image("gated", "3.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .annotation("keel.sh/pollSchedule", "@every 1s")
        .annotation("keel.sh/approvals", "1")
        .pull_secret("regcred")
        .create(&client, &ns)
        .await;

    let mut controller = Controller::start(
        api,
        ADMIN,
        &[
            "--namespaces",
            &ns,
            "--controller-namespace",
            &own_ns,
            "--approval-store",
            "kubernetes",
            "--identity",
            "replica-a",
            "--resync",
            "1s",
        ],
        &[
            ("KEEL_WEBHOOK_TOKEN", "hook-token"),
            ("KEEL_API_AUTH", "bearer:ops:api-token"),
            ("RUST_LOG", "info"),
        ],
    );
    let base = controller.base().to_owned();
    let http = reqwest::Client::new();

    // The poll cycle moves `polled` to 1.1.0, reading tags with the pull secret.
    wait_for_image(&client, &ns, "polled", &image("polled", "1.1.0")).await;

    // A webhook for `pushed` (not polled) moves it to the announced major.
    server.push_tags("team/pushed", &["3.0.0"]).await;
    let sent = Instant::now();
    let answer = http
        .post(format!("{base}/v1/webhooks/native?token=hook-token"))
        .json(
            &serde_json::json!({"name": format!("{}/team/pushed", server.addr()), "tag": "3.0.0"}),
        )
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
    wait_for_image(&client, &ns, "pushed", &image("pushed", "3.0.0")).await;
    eprintln!("webhook to patched workload: {:?}", sent.elapsed());
    let refused = http
        .post(format!("{base}/v1/webhooks/native?token=wrong"))
        .json(&serde_json::json!({"name": "x", "tag": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // `gated` needs one approval: it waits, shows in the API, and moves once approved.
    let list = loop {
        let list: serde_json::Value = http
            .get(format!("{base}/api/v1/approvals?state=pending"))
            .bearer_auth("api-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list["approvals"].as_array().is_some_and(|a| !a.is_empty()) {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        deployment_images(&client, &ns, "gated", false).await,
        [("app".to_owned(), image("gated", "3.0.0"))]
    );
    let id = list["approvals"][0]["id"].as_str().unwrap().to_owned();
    let unauthenticated = http
        .post(format!("{base}/api/v1/approvals/{id}/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let approved = http
        .post(format!("{base}/api/v1/approvals/{id}/approve"))
        .bearer_auth("api-token")
        .json(&serde_json::json!({"comment": "ship it"}))
        .send()
        .await
        .unwrap();
    assert!(approved.status().is_success(), "{approved:?}");
    wait_for_image(&client, &ns, "gated", &image("gated", "3.0.1")).await;

    // The metrics count what happened (the pass that patched `gated` records it as it ends,
    // a moment after the patch is visible).
    let start = Instant::now();
    loop {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let applied = metrics
            .lines()
            .find(|l| l.starts_with("keel_updates_total{outcome=\"applied\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap());
        if applied.is_some_and(|n| n >= 3.0) {
            assert!(metrics.contains("keel_pending_approvals 0"), "{metrics}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "three applied updates never counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // It leads (one replica), and it hands the lease back when stopped.
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &own_ns);
    let lease = leases.get("keel-controller").await.unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-a")
    );
    let pid = controller.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = controller.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    let holder = leases
        .get("keel-controller")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(holder.is_empty(), "the lease still names {holder:?}");
}

/// Runs the binary with `args` and `env` and no cluster to reach; its exit code and output.
fn run_without_cluster(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keel-controller"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_clear()
        .env("HOME", dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("DOCKER_CONFIG", dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (output.status.code(), keel_testsupport::output_text(&output))
}

#[tokio::test]
async fn new_workloads_are_checked_on_their_watch_event_and_poll_on_the_default_schedule() {
    let Some((api, ns, client)) = ApiServer::shared_namespace("polling").await else {
        return;
    };
    let server =
        RegistryServer::with_tags(ServerOptions::plain(), "team/app", &["1.0.0", "1.1.0"]).await;
    let image = |tag: &str| format!("{}/team/app:{tag}", server.addr());

    // A resync of an hour: only the watch event can make the controller look in time.
    let controller = Controller::start(
        api,
        ADMIN,
        &[
            "--namespaces",
            &ns,
            "--leader-elect",
            "false",
            "--approval-store",
            "memory",
            "--resync",
            "1h",
        ],
        &[
            ("KEEL_WEBHOOK_TOKEN", "hook-token"),
            ("POLL_DEFAULTSCHEDULE", "@every 2s"),
            ("RUST_LOG", "info"),
        ],
    );
    // The first pass (at start, over an empty namespace) is over once the controller serves.
    controller.wait_until_serving().await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    Workload::keel_deployment("late", "minor", &image("1.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .create(&client, &ns)
        .await;
    let took = wait_for_image_within(&client, &ns, "late", &image("1.1.0"), 30).await;
    eprintln!("applied workload to updated: {took:?}");

    // No keel.sh/pollSchedule: POLL_DEFAULTSCHEDULE's two seconds, not Keel's minute.
    server.push_tags("team/app", &["1.2.0"]).await;
    wait_for_image_within(&client, &ns, "late", &image("1.2.0"), 30).await;
}

#[test]
fn a_bad_default_schedule_stops_the_start_naming_the_variable() {
    let (code, output) = run_without_cluster(
        &[],
        &[
            ("KEEL_WEBHOOK_TOKEN", "hook-token"),
            ("POLL_DEFAULTSCHEDULE", "every minute"),
        ],
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("POLL_DEFAULTSCHEDULE") && output.contains("every minute"),
        "{output}"
    );
    assert!(
        !output.contains("cannot reach the Kubernetes API"),
        "{output}"
    );
}

#[test]
fn open_webhook_endpoints_stop_the_start_unless_declared_unsafe() {
    let (code, output) = run_without_cluster(&[], &[]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("refusing to start")
            && output.contains("/v1/webhooks/dockerhub")
            && output.contains("--unsafe-unauthenticated-webhooks"),
        "{output}"
    );

    // One endpoint with credentials of its own: the others are still named.
    let (code, output) = run_without_cluster(&[], &[("KEEL_WEBHOOK_TOKEN_DOCKERHUB", "hub-token")]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("/v1/webhooks/native") && !output.contains("/v1/webhooks/dockerhub"),
        "{output}"
    );

    // With credentials, or with the flag (or its variable), start-up goes on to the cluster.
    for (args, env) in [
        (&[][..], &[("KEEL_WEBHOOK_TOKEN", "hook-token")][..]),
        (&["--unsafe-unauthenticated-webhooks"][..], &[][..]),
        (
            &[][..],
            &[("KEEL_UNSAFE_UNAUTHENTICATED_WEBHOOKS", "true")][..],
        ),
    ] {
        let (code, output) = run_without_cluster(args, env);
        assert_eq!(code, Some(2), "{output}");
        assert!(!output.contains("refusing to start"), "{output}");
        assert!(
            output.contains("cannot reach the Kubernetes API"),
            "{output}"
        );
    }
}
