//! The HTTP front: Keel's webhook endpoints, `/healthz` and `/metrics`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/webhooks/{source}` | `native`, `dockerhub`, `quay`, `azure`, `github`, `harbor`, `jfrog`, `registry`: reads the payload and queues its pushes |
//! | `GET /healthz` | `200 ok`, or `503 unhealthy: <why>` when no pipeline pass completed within the window given to [`HttpConfig::with_liveness`] (the controller: 3 × `--resync`) |
//! | `GET /metrics` | Prometheus text format, see [`crate::metrics`] |
//!
//! Webhook answers are JSON: `200 {"pushes": ["<image>", ...]}` (an empty list for a payload
//! without push), `400 {"error": "<why>"}` for a payload that does not parse, `401` without
//! valid credentials, `404` for an unknown source, `413` for a body over the limit, `503` when
//! the push queue is full.
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
        }
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
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
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
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = HttpConfig::new()
            .with_auth(Credential::Token(Secret::new("tok-123")))
            .with_auth(Credential::Basic {
                username: "ci".into(),
                password: Secret::new("pw-456"),
            })
            .with_auth(Credential::Bearer(Secret::new("bear-789")));
        let shown = format!("{config:?}");
        for secret in ["tok-123", "pw-456", "bear-789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("\"ci\""), "{shown}");
    }

    #[test]
    fn per_source_credentials_replace_the_common_ones() {
        let config = HttpConfig::new()
            .with_auth(Credential::Token(Secret::new("all")))
            .with_source_auth(
                WebhookSource::DockerHub,
                Credential::Token(Secret::new("hub")),
            );
        assert_eq!(config.credentials(WebhookSource::DockerHub).len(), 1);
        assert!(config.open_sources().is_empty());
        assert_eq!(HttpConfig::new().open_sources().len(), 8);
        let mut headers = HeaderMap::new();
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("all"));
        assert!(!header_auth(
            config.credentials(WebhookSource::DockerHub),
            &headers,
            None
        ));
        assert!(header_auth(
            config.credentials(WebhookSource::Quay),
            &headers,
            None
        ));
        assert!(header_auth(
            config.credentials(WebhookSource::DockerHub),
            &HeaderMap::new(),
            Some("hub")
        ));
    }

    #[test]
    fn credentials_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let config = HttpConfig::new()
            .with_env(env(&[
                ("KEEL_WEBHOOK_TOKEN", "t"),
                ("KEEL_WEBHOOK_BASIC_USER", "u"),
                ("KEEL_WEBHOOK_BASIC_PASSWORD", "p"),
                ("KEEL_WEBHOOK_TOKEN_REGISTRY", "r"),
            ]))
            .unwrap();
        assert_eq!(config.credentials(WebhookSource::Quay).len(), 2);
        assert_eq!(config.credentials(WebhookSource::Registry).len(), 1);
        let err = HttpConfig::new()
            .with_env(env(&[("KEEL_WEBHOOK_BASIC_USER", "u")]))
            .unwrap_err();
        assert!(err.contains("KEEL_WEBHOOK_BASIC_PASSWORD"), "{err}");
        assert_eq!(
            HttpConfig::new()
                .with_env(env(&[]))
                .unwrap()
                .open_sources()
                .len(),
            8
        );
    }

    #[test]
    fn signatures_must_be_whole_hex() {
        let credentials = [Credential::Token(Secret::new("hub"))];
        let body = b"{}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"hub").unwrap();
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(SIGNATURE_HEADER, value.parse().unwrap());
            signature_auth(&credentials, &headers, body)
        };
        assert!(with(&format!("sha256={good}")));
        assert!(!with(&format!("sha256={}", &good[1..])));
        assert!(!with("sha256=0af"));
        assert!(!with("sha256=zz"));
    }
}
