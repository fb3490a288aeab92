//! The dashboard of the `keel-controller` binary in a real browser (headless chromium over
//! WebDriver, from `scripts/browser`), against a real kube-apiserver and registry: log in,
//! see a tracked Deployment with its update, approve it and see the workload patched and the
//! vote in the audit log; a read-only user gets no buttons; an admin changes a policy and
//! pauses an image from the image's page and sees the annotations change in the cluster; a
//! form posted from another site changes nothing; a policy holding `<script>` is shown as
//! text. Screenshots of each page go to `target/screenshots/` (not committed).

mod common;
use common::Controller;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use keel_testsupport::browser::fantoccini::{Client, Locator};
use keel_testsupport::browser::{Browser, Window, screenshot_dir};
use keel_testsupport::kube::{ADMIN, ApiServer, Workload, deployment_images, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::Api;

const WAIT: Duration = Duration::from_secs(60);

/// Logs in through the form as `user`.
async fn log_in(browser: &Browser, base: &str, user: &str, password: &str) {
    browser.goto(&format!("{base}/ui/login")).await;
    browser.type_into(Locator::Id("user"), user).await;
    browser.type_into(Locator::Id("password"), password).await;
    browser.click(Locator::Css("button[type=submit]")).await;
    let page = browser.client();
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

/// The controller over namespace `ns` (its own state in `own_ns`), resyncing every second,
/// with the API and dashboard credentials `auth`, once it serves.
async fn serving(api: &ApiServer, ns: &str, own_ns: &str, auth: &str) -> Controller {
    let controller = Controller::start(
        api,
        ADMIN,
        &[
            "--namespaces",
            ns,
            "--controller-namespace",
            own_ns,
            "--resync",
            "1s",
        ],
        &[
            ("KEEL_API_AUTH", auth),
            ("KEEL_WEBHOOK_TOKEN", "hook-token"),
            ("RUST_LOG", "info"),
        ],
    );
    controller.wait_until_serving().await;
    controller
}

async fn screenshot(browser: &Browser, name: &str) {
    browser
        .screenshot(screenshot_dir().join(format!("dashboard-{name}.png")))
        .await;
}

#[tokio::test]
async fn approve_a_held_update_in_the_browser_and_see_it_roll_out() {
    let Some((api, ns, client)) = ApiServer::shared_namespace("dashboard").await else {
        return;
    };
    let own_ns = api.namespace("keel-dash").await;
    let server =
        RegistryServer::with_tags(ServerOptions::plain(), "team/gated", &["1.0.0", "1.0.1"]).await;
    let image = |tag: &str| format!("{}/team/gated:{tag}", server.addr());
    Workload::keel_deployment("gated", "patch", &image("1.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .annotation("keel.sh/pollSchedule", "@every 1s")
        .annotation("keel.sh/approvals", "1")
        .create(&client, &ns)
        .await;
    let controller = serving(
        api,
        &ns,
        &own_ns,
        "basic/approver:ops:ops-pw,basic/reader:viewer:viewer-pw",
    )
    .await;
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
    browser.click(Locator::Css("button.approve")).await;

    // The workload rolls out the approved version, and the audit log shows the vote.
    let approved = image("1.0.1");
    wait_until_runs(&client, &ns, "gated", &approved).await;
    let audit = wait_for_text(&browser, &format!("{base}/ui/audit"), "ops").await;
    assert!(audit.contains("gated"), "{audit}");
    screenshot(&browser, "audit").await;
    browser.goto(&format!("{base}/ui/activity")).await;
    screenshot(&browser, "activity").await;
    browser.close().await;
}

/// The `keel.sh/*` annotations of Deployment `name`.
async fn keel_annotations(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get deployment");
    d.metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with("keel.sh/") && k != "keel.sh/digests")
        .collect()
}

/// `%XX` escapes of a query value decoded.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until Deployment `name` of `ns` runs `image` in one of its containers.
async fn wait_until_runs(client: &kube::Client, ns: &str, name: &str, image: &str) {
    wait_for(
        &format!("{name} to run {image}"),
        (WAIT, Duration::from_millis(200)),
        async || deployment_images(client, ns, name, false).await,
        |images| images.iter().any(|(_, i)| i == image),
    )
    .await;
}

/// Waits until Deployment `name` of `ns` carries the `keel.sh/*` annotation `(key, value)`.
async fn wait_for_annotation(
    client: &kube::Client,
    ns: &str,
    name: &str,
    (key, value): (&str, &str),
) {
    wait_for(
        &format!("{name}'s annotation {key}={value}"),
        (WAIT, Duration::from_millis(200)),
        async || keel_annotations(client, ns, name).await,
        |keys| keys.contains(&(key.to_owned(), value.to_owned())),
    )
    .await;
}

/// Serves, on another origin, a page whose script posts a form to `action` at once.
async fn cross_site_form(action: &str, fields: &[(&str, &str)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!(r#"<input type="hidden" name="{k}" value="{v}">"#))
        .collect();
    let page = format!(
        r#"<!doctype html><title>prize</title><form method="post" action="{action}">{inputs}</form><script>document.forms[0].submit()</script>"#
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    // `localhost` is another site than the controller's `127.0.0.1`.
    format!("http://localhost:{}/", addr.port())
}

#[tokio::test]
async fn an_admin_changes_a_policy_and_pauses_an_image_from_its_page() {
    let Some((api, ns, client)) = ApiServer::shared_namespace("dash-settings").await else {
        return;
    };
    let own_ns = api.namespace("keel-dash-settings").await;
    let server = RegistryServer::with_tags(
        ServerOptions::plain(),
        "team/web",
        &["1.0.0", "1.0.1", "2.0.0"],
    )
    .await;
    let image = |tag: &str| format!("{}/team/web:{tag}", server.addr());
    Workload::keel_deployment("web", "patch", &image("1.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .annotation("keel.sh/pollSchedule", "@every 1s")
        .create(&client, &ns)
        .await;
    Workload::keel_deployment("odd", "regexp:^<script>alert(1)</script>$", &image("1.0.0"))
        .create(&client, &ns)
        .await;
    let controller = serving(api, &ns, &own_ns, "basic/admin:root:root-pw").await;
    let base = controller.base().to_owned();
    let browser = Browser::start().await;
    log_in(&browser, &base, "root", "root-pw").await;

    // The policy with `<script>` is text on the page, and no script of it ran.
    let tracked = wait_for_text(&browser, &format!("{base}/ui/"), "alert(1)").await;
    assert!(
        tracked.contains("regexp:^<script>alert(1)</script>$"),
        "{tracked}"
    );
    let page = browser.client();
    assert!(page.get_alert_text().await.is_err(), "no alert is open");
    let scripts = page.find_all(Locator::Css("main script")).await.unwrap();
    assert!(
        scripts.is_empty(),
        "no script element in the page's content"
    );

    // `patch` moves web to 1.0.1; the image's page says why 2.0.0 is not taken.
    wait_until_runs(&client, &ns, "web", &image("1.0.1")).await;
    browser.goto(&format!("{base}/ui/")).await;
    let link = page
        .find(Locator::Css(&format!(r#"a[href*="{ns}%2Fweb%2Fapp"]"#)))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("a link to the image's page");
    let image_page = format!("{base}{link}");
    let text = wait_for_text(&browser, &image_page, "Candidate tags").await;
    assert!(text.contains("2.0.0"), "{text}");
    screenshot(&browser, "image").await;
    page.execute(
        "document.getElementById('candidates-title').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&browser, "image-candidates").await;

    // The admin sets the policy to `major`: the annotation changes, and 2.0.0 rolls out.
    let policy = page.find(Locator::Id("policy")).await.unwrap();
    policy.clear().await.unwrap();
    policy.send_keys("major").await.unwrap();
    browser
        .click(Locator::Css("form.settings button[type=submit]"))
        .await;
    wait_for_annotation(&client, &ns, "web", ("keel.sh/policy", "major")).await;
    wait_until_runs(&client, &ns, "web", &image("2.0.0")).await;

    // Pause: the annotation names the container, and the page offers to resume.
    browser.goto(&image_page).await;
    browser
        .click(Locator::Css(r#"form[action="/ui/image/pause"] button"#))
        .await;
    wait_for_annotation(&client, &ns, "web", ("keel.sh/paused", "app")).await;
    wait_for_text(&browser, &image_page, "Resume tracking").await;
    screenshot(&browser, "image-paused").await;

    // A page of another site posts a policy change with the admin's session open in the
    // same browser: refused, and the annotations stay as they are.
    let before = keel_annotations(&client, &ns, "web").await;
    let id = format!("deployment/{ns}/web/app");
    let target = link
        .split("target=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .map(percent_decoded)
        .unwrap_or_default();
    let evil = cross_site_form(
        &format!("{base}/ui/image/settings"),
        &[("target", &target), ("id", &id), ("policy", "all")],
    )
    .await;
    browser.goto(&evil).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(keel_annotations(&client, &ns, "web").await, before);

    let audit = wait_for_text(&browser, &format!("{base}/ui/audit"), "settings-changed").await;
    assert!(audit.contains("policy: patch → major"), "{audit}");
    assert!(
        audit.contains("paused tracking of container app"),
        "{audit}"
    );
    assert!(audit.contains("root"), "{audit}");
    screenshot(&browser, "audit-settings").await;
    browser.close().await;
}
