//! The web dashboard: server-rendered pages over the approvals, the audit log and the tracked
//! images, on the same credentials and roles as the API ([`ApiAuth`]).
//!
//! Everything lives under `/ui`:
//!
//! | path | shows or does |
//! |---|---|
//! | `GET /ui/login`, `POST /ui/login` | the login form; a basic-auth user and password of [`ApiAuth`] open a session |
//! | `POST /ui/logout` | ends the session |
//! | `GET /ui/` | the tracked images from [`TrackedImages`], filtered and sorted by query |
//! | `GET /ui/image?target=&id=` | one image: its settings, the candidate tags with why the policy chose or rejected each, what the next update changes (a Git target's diff), and its audit history |
//! | `POST /ui/image/settings` | sets or clears policy, trigger, schedule, approvals (admin); recorded in the audit log |
//! | `POST /ui/image/pause` | pauses or resumes tracking of the image (admin); recorded in the audit log |
//! | `GET /ui/approvals?state=` | approval requests; approve, reject (approver, admin) and delete (admin) |
//! | `GET /ui/audit?page=&action=&target=&image=` | the audit log, newest first, 50 per page |
//! | `GET /ui/audit.json` | the same filtered entries as JSON |
//! | `GET /ui/activity` | updates per day over 30 days (applied, failed, rejected), as SVG and a table |
//! | `GET /ui/pending-count` | `{"pending": n}`, polled by `/ui/refresh.js` |
//!
//! A session is a cookie (`HttpOnly; SameSite=Strict; Path=/ui`, and `Secure` when
//! [`DashboardConfig::secure_cookie`] is set) holding `user|role|expiry` signed with
//! HMAC-SHA256 under a key drawn at random when the router is built, so restarting the process
//! ends every session. A request with a valid `Authorization` header (basic or bearer, not a
//! delegate) may read pages without a session. Every form carries a CSRF token derived from the
//! session; a POST without it, with another one, or sent from another site (`Origin`,
//! `Sec-Fetch-Site`) is refused with 403 and changes nothing. Every `/ui` response carries a
//! strict Content-Security-Policy, `nosniff`, `no-referrer` and `no-store`. The templates
//! ([`maud`]) escape every value they show.
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use keel_api::ApiAuth;
//! use keel_api::dashboard::{DashboardConfig, TrackedImages, TrackedRow};
//! use keel_core::approval::{Approvals, MemoryApprovalStore};
//!
//! struct NoImages;
//!
//! #[async_trait]
//! impl TrackedImages for NoImages {
//!     async fn snapshot(&self) -> Vec<TrackedRow> {
//!         Vec::new()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
//! let auth = ApiAuth::builder().basic_user("admin", "change-me").build()?;
//! let mut config = DashboardConfig::new(approvals.clone(), auth.clone());
//! config.tracked = Some(Arc::new(NoImages));
//! config.secure_cookie = true;
//! let app = keel_api::router(approvals, auth).merge(keel_api::dashboard::router(config));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9300").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

mod approvals;
mod audit;
mod image;
mod listing;
mod pages;
mod session;
mod tracked;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Duration;
use keel_core::Error;
use keel_core::approval::Approvals;

use crate::auth::ApiAuth;
use crate::error::status_of;

pub use audit::{ACTIVITY_DAYS, AUDIT_PAGE_SIZE};
pub use image::{HISTORY_ENTRIES, ImageDetail, SHOWN_REJECTIONS};
pub use listing::{TrackedImages, TrackedRow, TrackedState};
pub use tracked::{Check, Checks, TargetImages};

pub(crate) use session::Viewer;

/// The stylesheet served at `/ui/style.css`.
pub const STYLESHEET: &str = include_str!("style.css");

/// The script served at `/ui/refresh.js`: polls `/ui/pending-count` every 5 seconds and shows a
/// banner when the number of pending approvals changed. The pages work without it.
pub const REFRESH_SCRIPT: &str = include_str!("refresh.js");

/// The Content-Security-Policy of every `/ui` response. `connect-src 'self'` lets the refresh
/// script poll the pending count; nothing else may be loaded from anywhere but the dashboard.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'self'; \
     script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// How long a session lasts after logging in.
pub const SESSION_LIFETIME: Duration = Duration::hours(8);

const SESSION_COOKIE: &str = "keel_session";

/// What [`router`] serves: the approvals, the credentials, the tracked images and the cookie
/// settings.
#[derive(Clone)]
pub struct DashboardConfig {
    /// The approvals and audit log shown and voted on.
    pub approvals: Approvals,
    /// Who may log in, and with which role; the same credentials as the API.
    pub auth: ApiAuth,
    /// The tracked images; without it the tracked-images page says none are known.
    pub tracked: Option<Arc<dyn TrackedImages>>,
    /// Whether the session cookie is marked `Secure` (set it when served over HTTPS).
    pub secure_cookie: bool,
}

impl DashboardConfig {
    /// A configuration with no tracked-images provider and a cookie without `Secure`.
    pub fn new(approvals: Approvals, auth: ApiAuth) -> Self {
        DashboardConfig {
            approvals,
            auth,
            tracked: None,
            secure_cookie: false,
        }
    }
}

#[derive(Clone)]
struct Dash {
    inner: Arc<Inner>,
}

struct Inner {
    config: DashboardConfig,
    key: [u8; 32],
}

/// The dashboard as an axum router, every path under `/ui`; merge it with [`crate::router`] or
/// serve it alone.
pub fn router(config: DashboardConfig) -> Router {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source is available");
    let dash = Dash {
        inner: Arc::new(Inner { config, key }),
    };
    let protected = Router::new()
        .route("/ui/", get(listing::tracked_page))
        .route("/ui/image", get(image::image_page))
        .route("/ui/image/settings", post(image::change_settings))
        .route("/ui/image/pause", post(image::pause))
        .route("/ui/approvals", get(approvals::approvals_page))
        .route(
            "/ui/approvals/{id}/{action}",
            post(approvals::act_on_request),
        )
        .route("/ui/audit", get(audit::audit_page))
        .route("/ui/audit.json", get(audit::audit_json))
        .route("/ui/activity", get(audit::activity_page))
        .route("/ui/pending-count", get(approvals::pending_count))
        .route("/ui/logout", post(session::logout))
        .layer(from_fn_with_state(dash.clone(), require_viewer));
    Router::new()
        .route("/ui", get(|| async { see_other("/ui/") }))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/style.css", get(stylesheet))
        .route("/ui/refresh.js", get(script))
        .merge(protected)
        .layer(map_response(security_headers))
        .with_state(dash)
}

/// The approvals API ([`crate::router`]) under `/api` and the dashboard under `/ui`, on the
/// credentials of `config`: what an application serving both merges into its router.
pub fn router_with_api(config: DashboardConfig) -> Router {
    let api = crate::router(config.approvals.clone(), config.auth.clone());
    Router::new().nest("/api", api).merge(router(config))
}

async fn require_viewer(State(dash): State<Dash>, mut request: Request, next: Next) -> Response {
    match dash.viewer(request.headers()) {
        Some(viewer) => {
            request.extensions_mut().insert(viewer);
            next.run(request).await
        }
        None => see_other("/ui/login"),
    }
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

async fn stylesheet() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET).into_response()
}

async fn script() -> Response {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
        REFRESH_SCRIPT,
    )
        .into_response()
}

impl Dash {
    fn config(&self) -> &DashboardConfig {
        &self.inner.config
    }
}

fn forbidden(viewer: Option<&Viewer>, reason: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(pages::message_page(viewer, "Forbidden", reason).into_string()),
    )
        .into_response()
}

fn core_error(viewer: &Viewer, action: &str, error: &Error) -> Response {
    let (status, _) = status_of(error);
    (
        status,
        Html(pages::message_page(Some(viewer), action, &error.to_string()).into_string()),
    )
        .into_response()
}
