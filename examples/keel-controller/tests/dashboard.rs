//! The dashboard of the `keel-controller` binary in a real browser (headless chromium over
//! WebDriver, from `scripts/browser`), against a real kube-apiserver and registry: log in,
//! see a tracked Deployment with its update, approve it and see the workload patched and the
//! vote in the audit log; a read-only user gets no buttons. Screenshots of each page go to
//! `target/screenshots/` (not committed).

mod common;
use common::Controller;

use std::time::Duration;

use keel_testsupport::browser::fantoccini::{Client, Locator};
use keel_testsupport::browser::{Browser, Window, screenshot_dir};
use keel_testsupport::kube::{ADMIN, ApiServer, Workload, deployment_images, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};

const WAIT: Duration = Duration::from_secs(60);

/// Logs in through the form as `user`.
async fn log_in(browser: &Browser, base: &str, user: &str, password: &str) {
    browser.goto(&format!("{base}/ui/login")).await;
    let page = browser.client();
    page.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    page.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    page.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Logged in once the form has led to the tracked-images page.
    let start = std::time::Instant::now();
    while !page.current_url().await.unwrap().path().ends_with("/ui/") {
        if start.elapsed() > WAIT {
            panic!(
                "login as {user} never succeeded: {}\n{}",
                page.current_url().await.unwrap(),
                body(page).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the page's `<body>`.
async fn body(page: &Client) -> String {
    page.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Reloads `url` until the page's text contains `want`; panics with the text after
/// [`WAIT`].
async fn wait_for_text(browser: &Browser, url: &str, want: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        browser.goto(url).await;
        let text = body(browser.client()).await;
        if text.contains(want) {
            return text;
        }
        assert!(
            start.elapsed() < WAIT,
            "{url} never showed {want:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn screenshot(browser: &Browser, name: &str) {
    browser
        .screenshot(screenshot_dir().join(format!("dashboard-{name}.png")))
        .await;
}

#[tokio::test]
async fn approve_a_held_update_in_the_browser_and_see_it_roll_out() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    let server =
        RegistryServer::with_tags(ServerOptions::plain(), "team/gated", &["1.0.0", "1.0.1"]).await;
    let image = |tag: &str| format!("{}/team/gated:{tag}", server.addr());
    let ns = api.namespace("dashboard").await;
    let own_ns = api.namespace("keel-dash").await;
    let client = api.admin_client();
    Workload::keel_deployment("gated", "patch", &image("1.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .annotation("keel.sh/pollSchedule", "@every 1s")
        .annotation("keel.sh/approvals", "1")
        .create(&client, &ns)
        .await;
    let controller = Controller::start(
        api,
        ADMIN,
        &[
            "--namespaces",
            &ns,
            "--controller-namespace",
            &own_ns,
            "--resync",
            "1s",
        ],
        &[
            (
                "KEEL_API_AUTH",
                "basic/approver:ops:ops-pw,basic/reader:viewer:viewer-pw",
            ),
            ("KEEL_WEBHOOK_TOKEN", "hook-token"),
            ("RUST_LOG", "info"),
        ],
    );
    controller.wait_until_serving().await;
    let base = controller.base().to_owned();

    // A read-only user sees the request, without buttons.
    let browser = Browser::start_with(Window::PHONE).await;
    log_in(&browser, &base, "viewer", "viewer-pw").await;
    let approvals = format!("{base}/ui/approvals");
    wait_for_text(&browser, &approvals, &image("1.0.1")).await;
    let buttons = browser
        .client()
        .find_all(Locator::Css("button.approve"))
        .await
        .unwrap();
    assert!(buttons.is_empty(), "a reader gets no Approve button");
    screenshot(&browser, "approvals-reader-phone").await;
    browser.close().await;

    // The approver logs in, sees the Deployment with its update, and approves it.
    let browser = Browser::start().await;
    log_in(&browser, &base, "ops", "ops-pw").await;
    let tracked = wait_for_text(&browser, &format!("{base}/ui/"), &image("1.0.1")).await;
    assert!(tracked.contains("gated"), "{tracked}");
    assert!(tracked.contains(&ns), "{tracked}");
    screenshot(&browser, "tracked").await;
    browser.goto(&approvals).await;
    screenshot(&browser, "approvals").await;
    browser
        .client()
        .find(Locator::Css("button.approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The workload rolls out the approved version, and the audit log shows the vote.
    let approved = image("1.0.1");
    wait_for(
        "gated to run the approved image",
        (WAIT, Duration::from_millis(200)),
        async || deployment_images(&client, &ns, "gated", false).await,
        |images| images.iter().any(|(_, image)| *image == approved),
    )
    .await;
    let audit = wait_for_text(&browser, &format!("{base}/ui/audit"), "ops").await;
    assert!(audit.contains("gated"), "{audit}");
    screenshot(&browser, "audit").await;
    browser.goto(&format!("{base}/ui/activity")).await;
    screenshot(&browser, "activity").await;
    browser.close().await;
}
