//! A real headless Chromium for browser tests of the web dashboard (feature `browser`).
//!
//! [`Browser::start`] starts a `chromedriver` with `scripts/browser` (run `scripts/browser
//! install` first: Debian's `chromium` and `chromium-driver`) and opens a WebDriver session on
//! it through [`fantoccini`] (re-exported, for [`fantoccini::Locator`] and friends). The
//! session's chromium runs with:
//!
//! - `--headless=new`: no display;
//! - `--no-sandbox`: chromium refuses to start as root with its sandbox, and the tests run as
//!   root in CI;
//! - `--disable-dev-shm-usage`: the `/dev/shm` of containers is too small for it;
//! - `--disable-gpu`: there is none;
//! - `--user-data-dir=DIR/profile`: a fresh profile in the server's directory, removed with it;
//! - `--window-size=W,H` of the [`Window`] asked for ([`Window::DESKTOP`] by default).
//!
//! The viewport itself is emulated (`goog:chromeOptions.mobileEmulation.deviceMetrics`, at a
//! device pixel ratio of 1): even headless, chromium's window has a toolbar eating into its
//! height, and it is at least 500 pixels wide. So the page and the screenshots see exactly
//! the [`Window`]'s size; with `mobile` set (like [`Window::PHONE`]) also touch events and a
//! phone's handling of `<meta name="viewport">` (without `width=device-width` a phone lays
//! pages out 980 pixels wide).
//!
//! chromedriver speaks plain HTTP on 127.0.0.1, so fantoccini is built without a TLS stack
//! (its `rustls-tls` would add hyper-rustls with aws-lc-rs for nothing).
//!
//! Closing: [`Browser::close`] ends the session and then stops the server. Dropping the
//! [`Browser`] stops the server too (`scripts/browser stop` kills chromedriver's process group,
//! chromium with it, and removes the profile), so a panicking test leaves nothing behind.

use std::path::{Path, PathBuf};

pub use fantoccini;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::ScriptServer;

/// The viewport the page's CSS sees (and screenshots show), emulated at that size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
    /// Whether it is a phone's: touch events, and the layout width set by
    /// `<meta name="viewport">`.
    pub mobile: bool,
}

impl Window {
    /// A laptop screen: 1280 x 800.
    pub const DESKTOP: Window = Window {
        width: 1280,
        height: 800,
        mobile: false,
    };

    /// A phone held upright: 390 x 844 (the viewport of a current mid-size phone).
    pub const PHONE: Window = Window {
        width: 390,
        height: 844,
        mobile: true,
    };
}

/// A WebDriver session on a headless chromium of its own (see the module docs).
#[derive(Debug)]
pub struct Browser {
    client: Option<Client>,
    window: Window,
    // Dropped after the client: stops chromedriver and everything it started.
    server: ScriptServer,
}

impl Browser {
    /// A browser with a [`Window::DESKTOP`] window; panics if chromedriver or the session
    /// cannot be started (with chromedriver's log).
    pub async fn start() -> Browser {
        Browser::start_with(Window::DESKTOP).await
    }

    /// A browser with a window of size `window` (e.g. [`Window::PHONE`]); panics like
    /// [`Browser::start`].
    pub async fn start_with(window: Window) -> Browser {
        let server = tokio::task::spawn_blocking(|| {
            ScriptServer::start("browser", std::iter::empty::<&str>())
        })
        .await
        .expect("scripts/browser start");
        let capabilities = capabilities(&server.dir().join("profile"), window);
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(server.field("url"))
            .await;
        let client = connected.unwrap_or_else(|error| {
            panic!(
                "no WebDriver session at {}: {error}\nchromedriver's log:\n{}",
                server.field("url"),
                log_tail(server.dir())
            )
        });
        Browser {
            client: Some(client),
            window,
            server,
        }
    }

    /// The WebDriver client, for everything beyond [`Browser::goto`] and
    /// [`Browser::screenshot`] (finding elements, typing, clicking, running scripts).
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until close")
    }

    /// The window size the browser was started with.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The server's directory (chromedriver's log, the profile), removed when it stops.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// The last lines of chromedriver's log (for failure messages).
    pub fn log(&self) -> String {
        log_tail(self.server.dir())
    }

    /// Opens `url` and waits until it has loaded; panics if it cannot.
    pub async fn goto(&self, url: &str) {
        if let Err(error) = self.client().goto(url).await {
            panic!("opening {url}: {error}");
        }
    }

    /// Clicks the first element of the open page that `locator` finds; panics if there is
    /// none or the click fails.
    pub async fn click(&self, locator: Locator<'_>) {
        self.find(locator)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("clicking {locator:?}: {error}"));
    }

    /// Types `text` into the first element of the open page that `locator` finds (a form's
    /// field); panics if there is none or it takes no text.
    pub async fn type_into(&self, locator: Locator<'_>, text: &str) {
        self.find(locator)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("typing into {locator:?}: {error}"));
    }

    /// The first element of the open page that `locator` finds; panics with chromedriver's
    /// log if there is none.
    async fn find(&self, locator: Locator<'_>) -> Element {
        self.client()
            .find(locator)
            .await
            .unwrap_or_else(|error| panic!("finding {locator:?}: {error}\n{}", self.log()))
    }

    /// The size of the viewport the open page lays out in, `(width, height)` in CSS pixels
    /// (`window.innerWidth` and `innerHeight`): the [`Window`] the browser was started with,
    /// unless the page misses `<meta name="viewport">` on a phone. Panics if the script fails
    /// or answers something else.
    pub async fn viewport(&self) -> (u32, u32) {
        let size = self
            .client()
            .execute(
                "return [window.innerWidth, window.innerHeight];",
                Vec::new(),
            )
            .await
            .unwrap_or_else(|error| panic!("reading the viewport's size: {error}"));
        serde_json::from_value(size.clone())
            .unwrap_or_else(|error| panic!("the viewport's size is {size}: {error}"))
    }

    /// Saves a PNG of the visible part of the page to `path` (creating its directory, e.g.
    /// under [`screenshot_dir`]); returns the PNG's bytes. Panics if it cannot.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Vec<u8> {
        let path = path.as_ref();
        let png =
            self.client().screenshot().await.unwrap_or_else(|error| {
                panic!("taking a screenshot for {}: {error}", path.display())
            });
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|error| panic!("creating {}: {error}", parent.display()));
        }
        std::fs::write(path, &png)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        png
    }

    /// Ends the WebDriver session (chromium quits), then stops chromedriver. Dropping the
    /// browser instead stops chromedriver and kills chromium without ending the session.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take()
            && let Err(error) = client.close().await
        {
            eprintln!("closing the WebDriver session: {error}");
        }
    }
}

/// Where tests save screenshots: `screenshots/` in cargo's target directory (`CARGO_TARGET_DIR`
/// when set, else `target/` of the repository). Never committed.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"))
        .join("screenshots")
}

/// The capabilities of a headless chromium with its profile in `profile` and a window of size
/// `window` (see the module docs for why each flag).
fn capabilities(profile: &Path, window: Window) -> fantoccini::wd::Capabilities {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-gpu".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={},{}", window.width, window.height),
    ];
    let options = serde_json::json!({
        "args": args,
        "mobileEmulation": {
            "deviceMetrics": {
                "width": window.width,
                "height": window.height,
                "pixelRatio": 1.0,
                "mobile": window.mobile,
                "touch": window.mobile,
            },
        },
    });
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": options,
    });
    match capabilities {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// The last 40 lines of chromedriver's log in `dir`.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
