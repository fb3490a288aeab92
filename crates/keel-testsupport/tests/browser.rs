//! The browser fixture against a real headless chromium: a tiny form served on 127.0.0.1 is
//! filled in and submitted, the server gets the value, the answer page shows it escaped (a
//! `<script>` in it is text, never run), and screenshots are PNGs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Form, State};
use axum::response::Html;
use axum::routing::get;
use keel_testsupport::browser::fantoccini::Locator;
use keel_testsupport::browser::{Browser, Window, screenshot_dir};
use keel_testsupport::receiver::serve_router;

/// What the form posted, in order.
type Received = Arc<Mutex<Vec<String>>>;

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>form</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<form method="post" action="/greet">
  <label>Name <input id="name" name="name"></label>
  <button id="send" type="submit">Send</button>
</form>
</body></html>"#;

/// The first bytes of every PNG file.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// `text` with the characters HTML gives a meaning escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn greet(
    State(received): State<Received>,
    Form(form): Form<HashMap<String, String>>,
) -> Html<String> {
    let name = form.get("name").cloned().unwrap_or_default();
    received.lock().unwrap().push(name.clone());
    Html(format!(
        "<!doctype html><html><head><title>greeted</title></head><body>\
         <p id=\"greeting\">Hello, {}!</p></body></html>",
        escape(&name)
    ))
}

/// Serves the form page at `/` and its answer at `/greet`; returns the base URL.
async fn serve_form(received: Received) -> String {
    let app = Router::new()
        .route("/", get(|| async { Html(FORM_PAGE) }))
        .route("/greet", axum::routing::post(greet))
        .with_state(received);
    format!("http://{}", serve_router(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_a_form_reads_escaped_text_and_takes_a_screenshot() {
    let received = Received::default();
    let base = serve_form(received.clone()).await;

    let started = Instant::now();
    let browser = Browser::start().await;
    eprintln!("browser started in {:?}", started.elapsed());
    let client = browser.client();

    browser.goto(&format!("{base}/")).await;
    assert_eq!(client.title().await.unwrap(), "form");
    let name = "<script>document.title = 'ran'</script>Ada & Bob";
    browser.type_into(Locator::Id("name"), name).await;
    browser.click(Locator::Id("send")).await;

    let greeting = client
        .wait()
        .for_element(Locator::Id("greeting"))
        .await
        .unwrap_or_else(|error| panic!("no greeting: {error}\n{}", browser.log()));
    assert_eq!(*received.lock().unwrap(), [name]);
    assert_eq!(greeting.text().await.unwrap(), format!("Hello, {name}!"));
    // The script is text of the paragraph, not an element, and never ran.
    assert!(
        greeting
            .find_all(Locator::Css("script"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(client.title().await.unwrap(), "greeted");

    let desktop = (Window::DESKTOP.width, Window::DESKTOP.height);
    assert_eq!(browser.viewport().await, desktop, "the viewport");

    let path = screenshot_dir().join("keel-testsupport-browser-desktop.png");
    let png = browser.screenshot(&path).await;
    assert!(png.starts_with(PNG_SIGNATURE), "not a PNG");
    assert_eq!(std::fs::read(&path).unwrap(), png);

    browser.close().await;
    eprintln!("test done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_window_has_a_phone_viewport() {
    // The page asks for the device's width (as the dashboard does); without that meta tag a
    // phone lays pages out 980 pixels wide.
    let base = serve_form(Received::default()).await;
    let browser = Browser::start_with(Window::PHONE).await;
    browser.goto(&format!("{base}/")).await;
    let phone = (Window::PHONE.width, Window::PHONE.height);
    assert_eq!(browser.viewport().await, phone, "the viewport");

    let path = screenshot_dir().join("keel-testsupport-browser-phone.png");
    let png = browser.screenshot(&path).await;
    assert!(png.starts_with(PNG_SIGNATURE), "not a PNG");
    // Dropped without close: the server stops and takes chromium with it.
}
