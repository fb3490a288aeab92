//! When the `keel-controller` binary polls, against a real kube-apiserver and a real registry
//! on 127.0.0.1: a new workload is looked at when its watch event arrives, and images without
//! a `keel.sh/pollSchedule` poll on Keel's `POLL_DEFAULTSCHEDULE`.

mod common;
use common::Controller;

use std::process::Command;
use std::time::{Duration, Instant};

use keel_testsupport::kube::{ADMIN, ApiServer, Workload, deployment_images};
use keel_testsupport::registry::{RegistryServer, ServerOptions};

/// Waits until `ns/name` runs `want`; how long that took.
async fn wait_for_image(
    client: &kube::Client,
    ns: &str,
    name: &str,
    want: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let images = deployment_images(client, ns, name, false).await;
        if images.iter().any(|(_, image)| image == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{ns}/{name} did not run {want} within {within:?}; it runs {images:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn new_workloads_are_checked_on_their_watch_event_and_poll_on_the_default_schedule() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    let server = RegistryServer::start(ServerOptions::plain()).await;
    server.push_tags("team/app", &["1.0.0", "1.1.0"]).await;
    let image = |tag: &str| format!("{}/team/app:{tag}", server.addr());
    let ns = api.namespace("polling").await;
    let client = api.admin_client();

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
    // The first pass (at start, over an empty namespace) is done once the controller answers.
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http
        .get(format!("{}/healthz", controller.base()))
        .send()
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    Workload::deployment("late")
        .annotation("keel.sh/policy", "minor")
        .annotation("keel.sh/trigger", "poll")
        .container("app", &image("1.0.0"))
        .create(&client, &ns)
        .await;
    let took = wait_for_image(
        &client,
        &ns,
        "late",
        &image("1.1.0"),
        Duration::from_secs(30),
    )
    .await;
    eprintln!("applied workload to updated: {took:?}");

    // No keel.sh/pollSchedule: POLL_DEFAULTSCHEDULE's two seconds, not Keel's minute.
    server.push_tags("team/app", &["1.2.0"]).await;
    wait_for_image(
        &client,
        &ns,
        "late",
        &image("1.2.0"),
        Duration::from_secs(30),
    )
    .await;
}

#[test]
fn a_bad_default_schedule_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keel-controller"))
        .args(["--listen", "127.0.0.1:0"])
        .env_clear()
        .env("HOME", dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("KEEL_WEBHOOK_TOKEN", "hook-token")
        .env("POLL_DEFAULTSCHEDULE", "every minute")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("POLL_DEFAULTSCHEDULE") && text.contains("every minute"),
        "{text}"
    );
    assert!(!text.contains("cannot reach the Kubernetes API"), "{text}");
}
