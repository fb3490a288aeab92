//! The HTTP front: Keel's webhook endpoints, `/healthz` and `/metrics`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/webhooks/{source}` | `native`, `dockerhub`, `quay`, `azure`, `github`, `harbor`, `jfrog`, `registry`: reads the payload and queues its pushes |
//! | `GET /healthz` | `200 ok`, or `503 unhealthy: <why>` when no pipeline pass completed within the window given to [`HttpConfig::with_liveness`] (the controller: 3 × `--resync`, or `--pass-timeout` + `--resync` when longer) |
//! | `GET /metrics` | Prometheus text format, see [`crate::metrics`] |
//!
//! Webhook answers are JSON: `200 {"pushes": ["<image>", ...]}` (an empty list for a payload
//! without push), `400 {"error": "<why>"}` for a payload that does not parse, `401` without
//! valid credentials, `404` for an unknown source, `409` for a replayed signed delivery, `413`
//! for a body over the limit, `503` when the push queue is full.
//!
//! # Credentials
//! Every endpoint — `registry` included, which Keel leaves open — can require credentials
//! ([`HttpConfig::with_auth`] for all, [`HttpConfig::with_source_auth`] for one); a request
//! passes if it presents any one of them:
//! - [`Credential::Token`]: a shared secret in the `X-Keel-Token` header or the `token` query
//!   parameter (for senders that cannot set headers, such as Docker Hub and Quay), or as the
//!   key of a GitHub-style `X-Hub-Signature-256: sha256=<HMAC of the body>`;
//! - [`Credential::Basic`]: `Authorization: Basic`;
//! - [`Credential::Bearer`]: `Authorization: Bearer`.
//!
//! Secrets are compared in constant time and never logged; query strings (which may carry a
//! token) are not logged either.
//!
//! An endpoint without credentials takes pushes from anyone who can reach it. The controller
//! refuses to start that way unless told to ([`HttpConfig::open_endpoints_error`]).
//!
//! # Replayed deliveries
//! A GitHub-style signature covers the body only, so a captured delivery stays valid forever.
//! A request admitted by its `X-Hub-Signature-256` is therefore refused with 409 when its
//! `X-GitHub-Delivery` id, or its signature (the same signed body under a fresh delivery
//! id), was already seen: see [`DeliveryLog`] for how many and how long are remembered.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use keel_core::Error;
use keel_core::supervise::PassSupervisor;
use keel_core::trigger::{PushEvent, WebhookSource};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::{Metrics, WebhookOutcome};

/// The header that carries a shared-secret token.
pub const TOKEN_HEADER: &str = "x-keel-token";

/// The header GitHub (and compatible senders) sign the body in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The header that carries the unique id of a GitHub delivery.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// The longest delivery id accepted (GitHub's are 36-character GUIDs).
const MAX_DELIVERY_ID: usize = 128;

/// Remembers the signed deliveries seen, to refuse replays: each delivery id and signature
/// for `ttl` (default 24 hours), at most `capacity` of these keys (default 10,000, i.e. 5,000
/// deliveries with an id, a few megabytes at most; the oldest are forgotten first). A replay that
/// comes after its keys were forgotten is no longer recognized. The log lives
/// in the process: each replica of a controller keeps its own (only the leader takes
/// webhooks), and a restart forgets it.
#[derive(Debug)]
pub struct DeliveryLog {
    capacity: usize,
    ttl: std::time::Duration,
    seen: std::sync::Mutex<SeenDeliveries>,
}

#[derive(Debug, Default)]
struct SeenDeliveries {
    order: std::collections::VecDeque<(std::time::Instant, String)>,
    keys: std::collections::HashSet<String>,
}

/// Why [`DeliveryLog::admit`] refused a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// A delivery with this id was already received.
    DeliveryId,
    /// A delivery with the same signature (so the same body) was already received.
    Signature,
}

impl Default for DeliveryLog {
    fn default() -> Self {
        DeliveryLog::new(10_000, std::time::Duration::from_secs(24 * 3600))
    }
}

impl DeliveryLog {
    /// A log remembering at most `capacity` keys (at least one) for `ttl` each.
    pub fn new(capacity: usize, ttl: std::time::Duration) -> Self {
        DeliveryLog {
            capacity: capacity.max(1),
            ttl,
            seen: std::sync::Mutex::new(SeenDeliveries::default()),
        }
    }

    /// Admits a delivery never seen before and remembers it; refuses one whose delivery id
    /// (when given) or signature was seen within the bounds.
    pub fn admit(&self, delivery: Option<&str>, signature: &str) -> Result<(), Replay> {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((at, _)) = seen.order.front() {
            if now.duration_since(*at) <= self.ttl {
                break;
            }
            if let Some((_, key)) = seen.order.pop_front() {
                seen.keys.remove(&key);
            }
        }
        let delivery = delivery.map(|id| format!("delivery {id}"));
        let signature = format!("signature {}", signature.trim().to_ascii_lowercase());
        if delivery.as_ref().is_some_and(|d| seen.keys.contains(d)) {
            return Err(Replay::DeliveryId);
        }
        if seen.keys.contains(&signature) {
            return Err(Replay::Signature);
        }
        for key in delivery.into_iter().chain([signature]) {
            seen.keys.insert(key.clone());
            seen.order.push_back((now, key));
        }
        while seen.order.len() > self.capacity {
            if let Some((_, key)) = seen.order.pop_front() {
                seen.keys.remove(&key);
            }
        }
        Ok(())
    }
}

pub use keel_core::Secret;
use keel_core::secret::constant_time_eq;

/// One accepted way to authenticate a webhook request.
#[derive(Clone)]
pub enum Credential {
    /// A shared secret: `X-Keel-Token` header, `token` query parameter, or HMAC key of
    /// `X-Hub-Signature-256`.
    Token(Secret),
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Credential::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// How the HTTP front behaves: credentials per endpoint and the body size limit.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    default_auth: Vec<Credential>,
    source_auth: HashMap<WebhookSource, Vec<Credential>>,
    body_limit: usize,
    liveness: Option<(Arc<PassSupervisor>, std::time::Duration)>,
    deliveries: Arc<DeliveryLog>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig::new()
    }
}

impl HttpConfig {
    /// Every endpoint open, bodies up to 1 MiB.
    pub fn new() -> Self {
        HttpConfig {
            default_auth: Vec::new(),
            source_auth: HashMap::new(),
            body_limit: 1024 * 1024,
            liveness: None,
            deliveries: Arc::new(DeliveryLog::default()),
        }
    }

    /// Remembers signed deliveries in `log` (default: [`DeliveryLog::default`]).
    pub fn with_delivery_log(mut self, log: DeliveryLog) -> Self {
        self.deliveries = Arc::new(log);
        self
    }

    /// Makes `/healthz` answer 503, with the reason, when `supervisor` saw no pass complete
    /// within `window` (see [`crate::worker::Worker::health_window`]). Without it, `/healthz`
    /// only says that the server answers.
    pub fn with_liveness(
        mut self,
        supervisor: Arc<PassSupervisor>,
        window: std::time::Duration,
    ) -> Self {
        self.liveness = Some((supervisor, window));
        self
    }

    /// Accepts `credential` on every endpoint that has no credentials of its own.
    pub fn with_auth(mut self, credential: Credential) -> Self {
        self.default_auth.push(credential);
        self
    }

    /// Accepts `credential` on `source`'s endpoint; an endpoint with credentials of its own
    /// no longer accepts the common ones.
    pub fn with_source_auth(mut self, source: WebhookSource, credential: Credential) -> Self {
        self.source_auth.entry(source).or_default().push(credential);
        self
    }

    /// Refuses webhook bodies over `bytes` with 413.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Adds the credentials named in the environment (read through `var`, so that tests can
    /// pass their own):
    ///
    /// | variable | credential |
    /// |---|---|
    /// | `KEEL_WEBHOOK_TOKEN` | a token for every endpoint |
    /// | `KEEL_WEBHOOK_BASIC_USER`, `KEEL_WEBHOOK_BASIC_PASSWORD` | basic auth for every endpoint |
    /// | `KEEL_WEBHOOK_BEARER_TOKEN` | a bearer token for every endpoint |
    /// | `KEEL_WEBHOOK_TOKEN_<SOURCE>`, e.g. `KEEL_WEBHOOK_TOKEN_DOCKERHUB` | a token for one endpoint only |
    ///
    /// # Errors
    /// A message naming the variable when only one of the basic-auth pair is set.
    pub fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(token) = var("KEEL_WEBHOOK_TOKEN") {
            self = self.with_auth(Credential::Token(Secret::new(token)));
        }
        match (
            var("KEEL_WEBHOOK_BASIC_USER"),
            var("KEEL_WEBHOOK_BASIC_PASSWORD"),
        ) {
            (Some(username), Some(password)) => {
                self = self.with_auth(Credential::Basic {
                    username,
                    password: Secret::new(password),
                });
            }
            (Some(_), None) => {
                return Err(
                    "KEEL_WEBHOOK_BASIC_USER is set without KEEL_WEBHOOK_BASIC_PASSWORD".into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "KEEL_WEBHOOK_BASIC_PASSWORD is set without KEEL_WEBHOOK_BASIC_USER".into(),
                );
            }
            (None, None) => {}
        }
        if let Some(token) = var("KEEL_WEBHOOK_BEARER_TOKEN") {
            self = self.with_auth(Credential::Bearer(Secret::new(token)));
        }
        for source in WebhookSource::ALL {
            let name = format!(
                "KEEL_WEBHOOK_TOKEN_{}",
                source.as_str().to_ascii_uppercase()
            );
            if let Some(token) = var(&name) {
                self = self.with_source_auth(source, Credential::Token(Secret::new(token)));
            }
        }
        Ok(self)
    }

    /// The credentials `source`'s endpoint accepts; empty when it is open.
    pub fn credentials(&self, source: WebhookSource) -> &[Credential] {
        self.source_auth
            .get(&source)
            .map_or(&self.default_auth[..], Vec::as_slice)
    }

    /// The endpoints that accept requests without credentials.
    pub fn open_sources(&self) -> Vec<WebhookSource> {
        WebhookSource::ALL
            .into_iter()
            .filter(|s| self.credentials(*s).is_empty())
            .collect()
    }

    /// Why the controller must not start with this configuration: some endpoints accept
    /// requests without credentials. The message names them and says how to configure
    /// credentials, or to pass `--unsafe-unauthenticated-webhooks` to serve them open anyway
    /// (as Keel does; for a migration). `None` when every endpoint needs credentials.
    pub fn open_endpoints_error(&self) -> Option<String> {
        let open = self.open_sources();
        if open.is_empty() {
            return None;
        }
        let paths: Vec<String> = open
            .iter()
            .map(|s| format!("/v1/webhooks/{}", s.as_str()))
            .collect();
        Some(format!(
            "refusing to start: the webhook endpoints {} would accept pushes from anyone. Set \
             KEEL_WEBHOOK_TOKEN (or KEEL_WEBHOOK_BASIC_USER and KEEL_WEBHOOK_BASIC_PASSWORD, or \
             KEEL_WEBHOOK_BEARER_TOKEN; KEEL_WEBHOOK_TOKEN_<SOURCE> for one endpoint), or pass \
             --unsafe-unauthenticated-webhooks (KEEL_UNSAFE_UNAUTHENTICATED_WEBHOOKS=true) to \
             serve them without credentials",
            paths.join(", ")
        ))
    }
}

#[derive(Clone)]
struct AppState {
    config: Arc<HttpConfig>,
    metrics: Arc<Metrics>,
    pushes: mpsc::Sender<PushEvent>,
}

/// The router of the HTTP front: webhooks queue their pushes on `pushes`, requests are
/// counted in `metrics`.
pub fn router(
    config: HttpConfig,
    metrics: Arc<Metrics>,
    pushes: mpsc::Sender<PushEvent>,
) -> Router {
    let limit = config.body_limit;
    let state = AppState {
        config: Arc::new(config),
        metrics,
        pushes,
    };
    Router::new()
        .route("/v1/webhooks/{source}", post(webhook))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: impl fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let stalled = state
        .config
        .liveness
        .as_ref()
        .and_then(|(supervisor, window)| supervisor.stalled(*window));
    match stalled {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(reason) => {
            warn!(%reason, "unhealthy");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {reason}\n"),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let text = state.metrics.render().await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

async fn webhook(
    State(state): State<AppState>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    let source: WebhookSource = match source.parse() {
        Ok(source) => source,
        Err(e) => {
            let reason = match &e {
                Error::InvalidInput(p) => format!("{}: {}", p.input(), p.reason()),
                other => other.to_string(),
            };
            return error(StatusCode::NOT_FOUND, reason);
        }
    };
    let (outcome, response) = handle(&state, source, request).await;
    state.metrics.webhook(source, outcome);
    response
}

async fn handle(
    state: &AppState,
    source: WebhookSource,
    request: Request,
) -> (WebhookOutcome, Response) {
    let credentials = state.config.credentials(source);
    let headers = request.headers().clone();
    let query_token = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(q)| q.get("token").cloned());
    let mut authorized =
        credentials.is_empty() || header_auth(credentials, &headers, query_token.as_deref());
    let signed = headers.contains_key(SIGNATURE_HEADER)
        && credentials
            .iter()
            .any(|c| matches!(c, Credential::Token(_)));
    if !authorized && !signed {
        return (WebhookOutcome::Unauthorized, unauthorized(credentials));
    }

    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            warn!(%source, limit = state.config.body_limit, "webhook body too large");
            let message = format!(
                "the body is larger than the limit of {} bytes",
                state.config.body_limit
            );
            return (
                WebhookOutcome::TooLarge,
                error(StatusCode::PAYLOAD_TOO_LARGE, message),
            );
        }
        Err(rejection) => {
            let message = format!("could not read the body: {}", rejection.body_text());
            return (
                WebhookOutcome::Invalid,
                error(StatusCode::BAD_REQUEST, message),
            );
        }
    };
    if !authorized {
        authorized = signature_auth(credentials, &headers, &body);
        if !authorized {
            return (WebhookOutcome::Unauthorized, unauthorized(credentials));
        }
        if let Some(refused) = replayed(state, source, &headers) {
            return refused;
        }
    }

    let pushes = match source.parse_payload(&body) {
        Ok(pushes) => pushes,
        Err(e) => {
            let reason = match &e {
                Error::InvalidInput(p) => p.reason().to_owned(),
                other => other.to_string(),
            };
            warn!(%source, %reason, "webhook payload refused");
            return (
                WebhookOutcome::Invalid,
                error(StatusCode::BAD_REQUEST, reason),
            );
        }
    };
    let images: Vec<String> = pushes.iter().map(|p| p.image.to_string()).collect();
    if pushes.is_empty() {
        info!(%source, "webhook without push");
        return (
            WebhookOutcome::Ignored,
            axum::Json(json!({ "pushes": images })).into_response(),
        );
    }
    // Reserve room for every push first, so that a payload is queued whole or not at all.
    let mut permits = Vec::with_capacity(pushes.len());
    for _ in &pushes {
        match state.pushes.try_reserve() {
            Ok(permit) => permits.push(permit),
            Err(e) => {
                warn!(%source, error = %e, "push queue unavailable");
                let mut response = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many pushes are waiting for the pipeline; retry later",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
                return (WebhookOutcome::Busy, response);
            }
        }
    }
    for (permit, push) in permits.into_iter().zip(pushes) {
        info!(%source, image = %push.image, "push queued");
        permit.send(push);
    }
    (
        WebhookOutcome::Accepted,
        axum::Json(json!({ "pushes": images })).into_response(),
    )
}

/// Refuses a delivery admitted by its signature when it was seen before (see
/// [`DeliveryLog`]); `None` when it is new.
fn replayed(
    state: &AppState,
    source: WebhookSource,
    headers: &HeaderMap,
) -> Option<(WebhookOutcome, Response)> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let delivery = match headers.get(DELIVERY_HEADER).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(id))
            if !id.trim().is_empty()
                && id.len() <= MAX_DELIVERY_ID
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(id)
        }
        Some(_) => {
            let message = format!(
                "the X-GitHub-Delivery header must be 1 to {MAX_DELIVERY_ID} visible ASCII \
                 characters"
            );
            return Some((
                WebhookOutcome::Invalid,
                error(StatusCode::BAD_REQUEST, message),
            ));
        }
    };
    let replay = state.config.deliveries.admit(delivery, signature).err()?;
    let named = match delivery {
        Some(id) => format!("delivery {id}"),
        None => "this delivery (no X-GitHub-Delivery id)".to_owned(),
    };
    let message = match replay {
        Replay::DeliveryId => format!("{named} was already received; replays are refused"),
        Replay::Signature => format!(
            "{named} repeats the signed body of a delivery already received; replays are refused"
        ),
    };
    warn!(%source, delivery = delivery.unwrap_or("-"), "replayed webhook delivery refused");
    Some((
        WebhookOutcome::Replayed,
        error(StatusCode::CONFLICT, message),
    ))
}

fn unauthorized(credentials: &[Credential]) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs credentials: a token (X-Keel-Token header or token query \
         parameter), basic or bearer authentication, as configured",
    );
    let challenge = if credentials
        .iter()
        .any(|c| matches!(c, Credential::Basic { .. }))
    {
        Some("Basic realm=\"keel\", charset=\"UTF-8\"")
    } else if credentials
        .iter()
        .any(|c| matches!(c, Credential::Bearer(_)))
    {
        Some("Bearer realm=\"keel\"")
    } else {
        None
    };
    if let Some(challenge) = challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

/// Whether the headers or the query carry one of `credentials`.
fn header_auth(credentials: &[Credential], headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let token_header = headers.get(TOKEN_HEADER).map(HeaderValue::as_bytes);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let scheme = |name: &str| {
        authorization.and_then(|a| {
            let (scheme, rest) = a.split_once(' ')?;
            scheme.eq_ignore_ascii_case(name).then(|| rest.trim())
        })
    };
    let basic = scheme("Basic").and_then(|encoded| {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    });
    let bearer = scheme("Bearer");
    credentials.iter().any(|credential| match credential {
        Credential::Token(secret) => {
            token_header.is_some_and(|t| secret.matches(t))
                || query_token.is_some_and(|t| secret.matches(t.as_bytes()))
        }
        Credential::Basic { username, password } => {
            basic.as_ref().is_some_and(|(u, p)| {
                // Both compared, so that a wrong user costs as long as a wrong password.
                let user_ok = constant_time_eq(username.as_bytes(), u.as_bytes());
                let password_ok = password.matches(p.as_bytes());
                user_ok & password_ok
            })
        }
        Credential::Bearer(secret) => bearer.is_some_and(|t| secret.matches(t.as_bytes())),
    })
}

/// Whether `X-Hub-Signature-256` is the HMAC-SHA256 of `body` under one of the tokens.
fn signature_auth(credentials: &[Credential], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(signature) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    credentials.iter().any(|credential| {
        let Credential::Token(secret) = credential else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    })
}

#[cfg(test)]
mod tests;
