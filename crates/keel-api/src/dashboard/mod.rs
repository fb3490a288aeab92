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

mod image;
mod pages;
mod tracked;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN,
    REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use keel_core::Error;
use keel_core::approval::{
    ApprovalFilter, ApprovalState, Approvals, AuditAction, AuditEntry, AuditQuery, VoteKind,
};
use keel_core::target::SettingsChange;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::auth::{ApiAuth, CredentialKind, Role};
use crate::error::status_of;

pub use image::{HISTORY_ENTRIES, ImageDetail, SHOWN_REJECTIONS};
pub use tracked::{Check, Checks, TargetImages};

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

/// Audit entries per page of `/ui/audit`.
pub const AUDIT_PAGE_SIZE: usize = 50;

/// Days shown by `/ui/activity`, today included.
pub const ACTIVITY_DAYS: usize = 30;

const SESSION_COOKIE: &str = "keel_session";

/// One tracked image as the tracked-images page shows it, provided by the application through
/// [`TrackedImages`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedRow {
    /// The target's name (a cluster, a Git repository, a Docker host).
    pub target: String,
    /// The kind of the tracked object, e.g. `deployment` or `git`.
    pub kind: String,
    /// The Kubernetes namespace, or the repository for Git targets.
    pub namespace_or_repo: String,
    /// The tracked image's id, as in [`keel_core::UpdatePlan::id`].
    pub id: String,
    /// The container (or file) the image is set in.
    pub container: String,
    /// The current image reference.
    pub image: String,
    /// The update policy, e.g. `minor`.
    pub policy: String,
    /// The trigger, e.g. `poll` with its schedule.
    pub trigger: String,
    /// The image an update would move to, if one is available.
    pub update: Option<String>,
    /// When the image was last checked for updates.
    pub last_checked: Option<DateTime<Utc>>,
    /// The last error met while checking or updating the image.
    pub last_error: Option<String>,
    /// Tracking is paused: no pass checks the image until it is resumed.
    #[serde(default)]
    pub paused: bool,
}

impl TrackedRow {
    /// The row's state as the page counts it: an error wins over a pause, a pause over an
    /// available update.
    pub fn state(&self) -> TrackedState {
        if self.last_error.is_some() {
            TrackedState::Error
        } else if self.paused {
            TrackedState::Paused
        } else if self.update.is_some() {
            TrackedState::UpdateAvailable
        } else {
            TrackedState::UpToDate
        }
    }
}

/// Where a tracked image stands, as counted on the tracked-images page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackedState {
    /// No update available and no error.
    UpToDate,
    /// A newer image is available.
    UpdateAvailable,
    /// The last check or update failed.
    Error,
    /// Tracking is paused.
    Paused,
}

impl TrackedState {
    /// Every state, in the order the page counts them.
    pub const ALL: [TrackedState; 4] = [
        TrackedState::UpToDate,
        TrackedState::UpdateAvailable,
        TrackedState::Paused,
        TrackedState::Error,
    ];
}

impl TrackedState {
    /// The state's label on the page.
    pub fn label(self) -> &'static str {
        match self {
            TrackedState::UpToDate => "up to date",
            TrackedState::UpdateAvailable => "update available",
            TrackedState::Error => "error",
            TrackedState::Paused => "paused",
        }
    }
}

/// What the application tracks, for the tracked-images page (`/ui/`) and the one-image page
/// (`/ui/image`).
///
/// Only [`snapshot`](Self::snapshot) is required; without the others the image page shows
/// the row alone and offers no settings. Object-safe: the dashboard holds an
/// `Arc<dyn TrackedImages>`.
#[async_trait]
pub trait TrackedImages: Send + Sync {
    /// Every tracked image of every target, as it stands now.
    async fn snapshot(&self) -> Vec<TrackedRow>;

    /// Image `id` of `target` in full, for its page; `None` when no target tracks it.
    /// Default: its row of the [`snapshot`](Self::snapshot), nothing more.
    async fn image(&self, target: &str, id: &str) -> Option<ImageDetail> {
        let row = self
            .snapshot()
            .await
            .into_iter()
            .find(|r| r.target == target && r.id == id)?;
        Some(ImageDetail::of(row))
    }

    /// The `keel.sh/*` settings of the object that holds image `id` of `target` (see
    /// [`Target::settings`](keel_core::Target::settings)). Default: none kept
    /// ([`Error::NotSupported`]).
    async fn settings(&self, target: &str, id: &str) -> Result<BTreeMap<String, String>, Error> {
        let _ = id;
        Err(Error::not_supported("reading settings", target))
    }

    /// Changes them (see [`Target::change_settings`](keel_core::Target::change_settings)).
    /// Default: [`Error::NotSupported`].
    async fn change_settings(
        &self,
        target: &str,
        id: &str,
        change: &SettingsChange,
    ) -> Result<(), Error> {
        let _ = (id, change);
        Err(Error::not_supported("changing settings", target))
    }
}

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

/// Who is looking at a page: from the session cookie or an `Authorization` header.
#[derive(Clone, Debug)]
pub(crate) struct Viewer {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
}

impl Viewer {
    pub(crate) fn may_vote(&self) -> bool {
        self.role >= Role::Approver
    }

    pub(crate) fn may_delete(&self) -> bool {
        self.role >= Role::Admin
    }
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
        .route("/ui/", get(tracked_page))
        .route("/ui/image", get(image::image_page))
        .route("/ui/image/settings", post(image::change_settings))
        .route("/ui/image/pause", post(image::pause))
        .route("/ui/approvals", get(approvals_page))
        .route("/ui/approvals/{id}/{action}", post(act_on_request))
        .route("/ui/audit", get(audit_page))
        .route("/ui/audit.json", get(audit_json))
        .route("/ui/activity", get(activity_page))
        .route("/ui/pending-count", get(pending_count))
        .route("/ui/logout", post(logout))
        .layer(from_fn_with_state(dash.clone(), require_viewer));
    Router::new()
        .route("/ui", get(|| async { see_other("/ui/") }))
        .route("/ui/login", get(login_form).post(login))
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

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.inner.key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    fn sign(&self, domain: &str, data: &str) -> String {
        let tag = self
            .mac(&[domain.as_bytes(), data.as_bytes()])
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// The cookie value of a new session: `base64(user|role|expiry).base64(hmac)`.
    fn session_value(&self, user: &str, role: Role, expiry: DateTime<Utc>) -> String {
        let payload = format!("{user}|{role}|{}", expiry.timestamp());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            self.sign("session", &payload)
        )
    }

    fn open_session(&self, value: &str, now: DateTime<Utc>) -> Option<Viewer> {
        let (payload, tag) = value.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(&[b"session", payload.as_bytes()])
            .verify_slice(&tag)
            .ok()?;
        let mut fields = payload.rsplitn(3, '|');
        let expiry: i64 = fields.next()?.parse().ok()?;
        let role: Role = fields.next()?.parse().ok()?;
        let name = fields.next()?.to_owned();
        if now.timestamp() >= expiry {
            return None;
        }
        Some(Viewer {
            name,
            role,
            csrf: self.sign("csrf", value),
        })
    }

    fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        if let Some(v) =
            cookie(headers, SESSION_COOKIE).and_then(|c| self.open_session(c, Utc::now()))
        {
            return Some(v);
        }
        let principal = self.config().auth.authenticate(headers)?;
        if principal.kind() == CredentialKind::Delegate {
            // A delegate acts only for the voters it names; the pages have no field for one.
            return None;
        }
        let name = principal.name().to_owned();
        let role = principal.role();
        let csrf = self.sign("csrf-header", &format!("{name}|{role}"));
        Some(Viewer { name, role, csrf })
    }

    fn cookie_header(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.config().secure_cookie {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={max_age}{secure}"
        ))
        .expect("the cookie value is base64 and ASCII")
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
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

/// Refuses a POST sent from another site: a browser's `Sec-Fetch-Site` other than
/// `same-origin` (or `none`) or, without it, an `Origin` whose host is not this one.
fn same_site(headers: &HeaderMap) -> bool {
    // A browser says where a request comes from: only this origin (or the user, `none`)
    // may post. Its `Origin` can be `null` under `Referrer-Policy: no-referrer`, so the
    // fetch metadata decides when present.
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        return site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none");
    }
    match headers.get(ORIGIN) {
        None => true,
        Some(origin) => {
            let origin = origin.to_str().unwrap_or_default();
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            !host.is_empty() && origin_host == Some(host)
        }
    }
}

fn forbidden(viewer: Option<&Viewer>, reason: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(pages::message_page(viewer, "Forbidden", reason).into_string()),
    )
        .into_response()
}

/// A form's CSRF field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CsrfForm {
    csrf: String,
}

/// Why a POST is refused, if it is: sent from another site, or without the viewer's CSRF
/// token.
fn post_refusal(viewer: &Viewer, headers: &HeaderMap, token: &str) -> Option<&'static str> {
    if !same_site(headers) {
        return Some("This form was sent from another site and was refused.");
    }
    if !bool::from(viewer.csrf.as_bytes().ct_eq(token.as_bytes())) {
        return Some(
            "The form's security token is missing or out of date; reload the page and try again.",
        );
    }
    None
}

/// Checks a form POST of `viewer` that changes something: refused, with the page that says
/// why, when it is not the dashboard's own form ([`post_refusal`]) or when the viewer's role
/// is not `permitted` to do it; `needs` then says what the action needs (`deleting needs
/// admin`).
fn refusal(
    viewer: &Viewer,
    headers: &HeaderMap,
    csrf: &str,
    permitted: bool,
    needs: &str,
) -> Option<Response> {
    if let Some(reason) = post_refusal(viewer, headers, csrf) {
        return Some(forbidden(Some(viewer), reason));
    }
    (!permitted).then(|| {
        forbidden(
            Some(viewer),
            &format!("You are logged in with the role {}; {needs}.", viewer.role),
        )
    })
}

fn core_error(viewer: &Viewer, action: &str, error: &Error) -> Response {
    let (status, _) = status_of(error);
    (
        status,
        Html(pages::message_page(Some(viewer), action, &error.to_string()).into_string()),
    )
        .into_response()
}

// --- login -----------------------------------------------------------------------------------

async fn login_form(State(dash): State<Dash>, headers: HeaderMap) -> Response {
    if dash.viewer(&headers).is_some() {
        return see_other("/ui/");
    }
    Html(pages::login_page(None).into_string()).into_response()
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(dash): State<Dash>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_site(&headers) {
        return forbidden(
            None,
            "This form was sent from another site and was refused.",
        );
    }
    let Some(principal) = dash.config().auth.check_basic(&form.user, &form.password) else {
        tracing::debug!("refused dashboard login");
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::login_page(Some("Wrong user name or password.")).into_string()),
        )
            .into_response();
    };
    let expiry = Utc::now() + SESSION_LIFETIME;
    let value = dash.session_value(principal.name(), principal.role(), expiry);
    let mut r = see_other("/ui/");
    r.headers_mut().insert(
        SET_COOKIE,
        dash.cookie_header(&value, SESSION_LIFETIME.num_seconds()),
    );
    r
}

async fn logout(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(reason) = post_refusal(&viewer, &headers, &form.csrf) {
        return forbidden(Some(&viewer), reason);
    }
    let mut r = see_other("/ui/login");
    r.headers_mut()
        .insert(SET_COOKIE, dash.cookie_header("", 0));
    r
}

// --- tracked images --------------------------------------------------------------------------

/// The query of the tracked-images page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TrackedQuery {
    pub(crate) ns: String,
    pub(crate) kind: String,
    pub(crate) policy: String,
    pub(crate) update: String,
    pub(crate) sort: String,
    pub(crate) desc: String,
}

/// The columns the tracked-images page sorts by, as named in `?sort=`.
pub(crate) const TRACKED_COLUMNS: [(&str, &str); 9] = [
    ("target", "Target"),
    ("kind", "Kind"),
    ("ns", "Namespace / repository"),
    ("container", "Container"),
    ("image", "Image"),
    ("policy", "Policy"),
    ("trigger", "Trigger"),
    ("update", "Update"),
    ("checked", "Last checked"),
];

fn sort_rows(rows: &mut [TrackedRow], column: &str, desc: bool) {
    rows.sort_by(|a, b| {
        let o = match column {
            "kind" => a.kind.cmp(&b.kind),
            "ns" => a.namespace_or_repo.cmp(&b.namespace_or_repo),
            "container" => a.container.cmp(&b.container),
            "image" => a.image.cmp(&b.image),
            "policy" => a.policy.cmp(&b.policy),
            "trigger" => a.trigger.cmp(&b.trigger),
            "update" => a.update.cmp(&b.update),
            "checked" => a.last_checked.cmp(&b.last_checked),
            _ => a.target.cmp(&b.target),
        }
        .then_with(|| a.id.cmp(&b.id));
        if desc { o.reverse() } else { o }
    });
}

async fn tracked_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(q): Query<TrackedQuery>,
) -> Response {
    let Some(provider) = &dash.config().tracked else {
        return Html(pages::tracked_page(&viewer, None, &q).into_string()).into_response();
    };
    let all = provider.snapshot().await;
    let mut counts = BTreeMap::new();
    for r in &all {
        *counts.entry(r.state().label()).or_insert(0usize) += 1;
    }
    let facets = pages::Facets::of(&all);
    let mut rows: Vec<TrackedRow> = all
        .into_iter()
        .filter(|r| q.ns.is_empty() || r.namespace_or_repo == q.ns)
        .filter(|r| q.kind.is_empty() || r.kind == q.kind)
        .filter(|r| q.policy.is_empty() || r.policy == q.policy)
        .filter(|r| match q.update.as_str() {
            "yes" => r.update.is_some(),
            "no" => r.update.is_none(),
            _ => true,
        })
        .collect();
    sort_rows(&mut rows, &q.sort, q.desc == "1");
    let view = pages::TrackedView {
        rows: &rows,
        counts: &counts,
        facets: &facets,
    };
    Html(pages::tracked_page(&viewer, Some(view), &q).into_string()).into_response()
}

// --- approvals -------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ApprovalsQuery {
    state: String,
}

async fn approvals_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(q): Query<ApprovalsQuery>,
) -> Response {
    let state = ApprovalState::ALL
        .into_iter()
        .find(|s| s.as_str() == q.state);
    let filter = ApprovalFilter {
        state,
        ..ApprovalFilter::default()
    };
    match dash.config().approvals.list(&filter).await {
        Ok(requests) => {
            Html(pages::approvals_page(&viewer, state, &requests).into_string()).into_response()
        }
        Err(e) => core_error(&viewer, "Approvals", &e),
    }
}

/// What a button of the approvals page does to a request (the last part of its path).
#[derive(Clone, Copy, Debug)]
enum RequestAction {
    Vote(VoteKind),
    Delete,
}

impl RequestAction {
    fn parse(text: &str) -> Option<RequestAction> {
        match text {
            "approve" => Some(RequestAction::Vote(VoteKind::Approve)),
            "reject" => Some(RequestAction::Vote(VoteKind::Reject)),
            "delete" => Some(RequestAction::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for RequestAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestAction::Vote(kind) => kind.fmt(f),
            RequestAction::Delete => f.write_str("delete"),
        }
    }
}

/// `POST /ui/approvals/{id}/{approve|reject|delete}`: a vote (approver or admin) or the
/// deletion (admin) of a request, then back to the approvals page.
async fn act_on_request(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(action) = RequestAction::parse(&action) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (permitted, needs) = match action {
        RequestAction::Vote(_) => (viewer.may_vote(), "voting needs approver or admin"),
        RequestAction::Delete => (viewer.may_delete(), "deleting needs admin"),
    };
    if let Some(refused) = refusal(&viewer, &headers, &form.csrf, permitted, needs) {
        return refused;
    }
    let approvals = &dash.config().approvals;
    let done = match action {
        RequestAction::Vote(kind) => approvals
            .vote(&id, &viewer.name, kind, None)
            .await
            .map(drop),
        RequestAction::Delete => approvals.delete(&id, &viewer.name).await.map(drop),
    };
    match done {
        Ok(()) => see_other("/ui/approvals"),
        Err(e) => core_error(&viewer, &format!("Could not {action} {id}"), &e),
    }
}

async fn pending_count(State(dash): State<Dash>) -> Response {
    match dash.config().approvals.pending().await {
        Ok(n) => Json(serde_json::json!({ "pending": n })).into_response(),
        Err(e) => (
            status_of(&e).0,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

// --- audit -----------------------------------------------------------------------------------

/// The filters and page of the audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditFilter {
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) image: String,
    pub(crate) page: Option<usize>,
}

/// Every audit action, for the filter's choices.
pub(crate) const AUDIT_ACTIONS: [AuditAction; 12] = [
    AuditAction::Requested,
    AuditAction::Voted,
    AuditAction::Approved,
    AuditAction::Rejected,
    AuditAction::Expired,
    AuditAction::Superseded,
    AuditAction::Deleted,
    AuditAction::Applied,
    AuditAction::ApplyFailed,
    AuditAction::SettingsChanged,
    AuditAction::Paused,
    AuditAction::Resumed,
];

/// The entries matching `f`, newest first.
async fn filtered_audit(dash: &Dash, f: &AuditFilter) -> Result<Vec<AuditEntry>, Error> {
    let query = AuditQuery {
        target: (!f.target.is_empty()).then(|| f.target.clone()),
        ..AuditQuery::default()
    };
    let mut entries: Vec<AuditEntry> = dash
        .config()
        .approvals
        .audit_log(&query)
        .await?
        .into_iter()
        .filter(|e| f.action.is_empty() || e.action.to_string() == f.action)
        .filter(|e| f.image.is_empty() || e.image_id.contains(&f.image))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
    Ok(entries)
}

async fn audit_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(f): Query<AuditFilter>,
) -> Response {
    match filtered_audit(&dash, &f).await {
        Ok(entries) => {
            let pages_total = entries.len().div_ceil(AUDIT_PAGE_SIZE).max(1);
            let page = f.page.unwrap_or(1).clamp(1, pages_total);
            let shown: Vec<&AuditEntry> = entries
                .iter()
                .skip((page - 1) * AUDIT_PAGE_SIZE)
                .take(AUDIT_PAGE_SIZE)
                .collect();
            let view = pages::AuditView {
                entries: &shown,
                total: entries.len(),
                page,
                pages: pages_total,
            };
            Html(pages::audit_page(&viewer, &f, view).into_string()).into_response()
        }
        Err(e) => core_error(&viewer, "Audit log", &e),
    }
}

async fn audit_json(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(f): Query<AuditFilter>,
) -> Response {
    match filtered_audit(&dash, &f).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => core_error(&viewer, "Audit log", &e),
    }
}

// --- activity --------------------------------------------------------------------------------

/// Updates of one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DayCounts {
    pub(crate) day: chrono::NaiveDate,
    pub(crate) applied: usize,
    pub(crate) failed: usize,
    pub(crate) rejected: usize,
}

/// Applied, failed and rejected updates per day over the [`ACTIVITY_DAYS`] days up to `today`.
pub(crate) fn activity(entries: &[AuditEntry], today: chrono::NaiveDate) -> Vec<DayCounts> {
    let first = today - chrono::Days::new(ACTIVITY_DAYS as u64 - 1);
    let mut days: Vec<DayCounts> = (0..ACTIVITY_DAYS)
        .map(|i| DayCounts {
            day: first + chrono::Days::new(i as u64),
            ..DayCounts::default()
        })
        .collect();
    for e in entries {
        let day = e.time.date_naive();
        if day < first || day > today {
            continue;
        }
        let Ok(i) = usize::try_from((day - first).num_days()) else {
            continue;
        };
        let d = &mut days[i];
        match e.action {
            AuditAction::Applied => d.applied += 1,
            AuditAction::ApplyFailed => d.failed += 1,
            AuditAction::Rejected => d.rejected += 1,
            _ => {}
        }
    }
    days
}

async fn activity_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
) -> Response {
    match dash
        .config()
        .approvals
        .audit_log(&AuditQuery::default())
        .await
    {
        Ok(entries) => {
            let days = activity(&entries, Utc::now().date_naive());
            Html(pages::activity_page(&viewer, &days).into_string()).into_response()
        }
        Err(e) => core_error(&viewer, "Activity", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _obj_safe(_: Arc<dyn TrackedImages>) {}

    fn dash() -> Dash {
        let approvals = Approvals::new(Arc::new(keel_core::approval::MemoryApprovalStore::new()));
        let auth = ApiAuth::builder().basic_user("a|b", "pw").build().unwrap();
        Dash {
            inner: Arc::new(Inner {
                config: DashboardConfig::new(approvals, auth),
                key: [7; 32],
            }),
        }
    }

    #[test]
    fn session_round_trips_and_refuses_tampering_and_expiry() {
        let d = dash();
        let now = Utc::now();
        let v = d.session_value("a|b", Role::Approver, now + Duration::hours(1));
        let viewer = d.open_session(&v, now).unwrap();
        assert_eq!(viewer.name, "a|b");
        assert_eq!(viewer.role, Role::Approver);
        assert!(d.open_session(&v, now + Duration::hours(2)).is_none());
        let forged = d.session_value("a|b", Role::Admin, now + Duration::hours(1));
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, tag) = v.split_once('.').unwrap();
        assert!(d.open_session(&format!("{payload}.{tag}"), now).is_none());
    }

    #[test]
    fn the_cookie_is_secure_when_configured() {
        let mut d = dash();
        let plain = d.cookie_header("v", 60);
        assert_eq!(
            plain.to_str().unwrap(),
            "keel_session=v; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=60"
        );
        let mut config = d.config().clone();
        config.secure_cookie = true;
        d.inner = Arc::new(Inner {
            config,
            key: d.inner.key,
        });
        assert!(
            d.cookie_header("v", 60)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }

    #[test]
    fn activity_counts_the_last_thirty_days() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let at = |d: u32, action| AuditEntry {
            seq: 0,
            time: chrono::NaiveDate::from_ymd_opt(2026, 3, d)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc(),
            action,
            request: None,
            actor: None,
            target: "t".into(),
            image_id: "i".into(),
            image: "x".into(),
            message: String::new(),
        };
        let entries = [
            at(1, AuditAction::Applied),
            at(2, AuditAction::Applied),
            at(31, AuditAction::ApplyFailed),
            at(31, AuditAction::Rejected),
            at(31, AuditAction::Voted),
        ];
        let days = activity(&entries, today);
        assert_eq!(days.len(), ACTIVITY_DAYS);
        assert_eq!(
            days[0].day,
            chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
        assert_eq!(days[0].applied, 1);
        let last = days[ACTIVITY_DAYS - 1];
        assert_eq!((last.applied, last.failed, last.rejected), (0, 1, 1));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_site(&h));
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_site(&h));
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_site(&h));
        h.remove(ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_site(&h));
        // A form posted under `Referrer-Policy: no-referrer` comes with `Origin: null`.
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_site(&h));
    }
}
