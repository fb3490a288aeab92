//! The routes: approvals, votes, the audit log and metrics, all behind [`ApiAuth`].

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Extension, Json, Router};
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalState, Approvals, AuditEntry, AuditQuery, VoteKind,
};
use keel_core::{Error, ParseError};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiAuth, Principal, Role, require_auth};
use crate::error::{ApiError, error_body};

/// Largest request body the API reads (a vote with its comment is far smaller).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Audit entries returned when the query names no `limit`, and the most it may name.
pub const DEFAULT_AUDIT_LIMIT: usize = 500;
/// The largest `limit` an audit query may ask for.
pub const MAX_AUDIT_LIMIT: usize = 5000;

#[derive(Clone)]
struct AppState {
    approvals: Approvals,
}

struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

fn routes() -> Vec<Route> {
    let r = |method: Method, path, handler| Route {
        method,
        path,
        handler,
    };
    vec![
        r(Method::GET, "/v1/approvals", get(list_approvals)),
        r(Method::GET, "/v1/approvals/{id}", get(get_approval)),
        r(
            Method::DELETE,
            "/v1/approvals/{id}",
            delete(delete_approval),
        ),
        r(
            Method::POST,
            "/v1/approvals/{id}/approve",
            vote(VoteKind::Approve),
        ),
        r(
            Method::POST,
            "/v1/approvals/{id}/reject",
            vote(VoteKind::Reject),
        ),
        r(Method::GET, "/v1/audit", get(audit)),
        r(Method::GET, "/metrics", get(metrics)),
    ]
}

/// Every route the router serves, as `(method, path)` with axum's `{param}` syntax, the same
/// syntax as the OpenAPI file.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|r| (r.method, r.path)).collect()
}

/// The API as an axum router: every route requires one of `auth`'s credentials; votes need
/// the role `approver` or `admin`, deletions `admin` (else 403).
///
/// | method | path | does |
/// |---|---|---|
/// | GET | `/v1/approvals?state=&target=&image=` | lists requests (`{"approvals": [...]}`) |
/// | GET | `/v1/approvals/{id}` | one request |
/// | POST | `/v1/approvals/{id}/approve` | votes yes (`{"voter", "comment"}`, both optional for non-delegates) |
/// | POST | `/v1/approvals/{id}/reject` | votes no |
/// | DELETE | `/v1/approvals/{id}?actor=` | deletes a request |
/// | GET | `/v1/audit?request=&target=&since=&limit=` | audit entries (`{"entries": [...], "next": seq}`) |
/// | GET | `/metrics` | Prometheus text: `keel_approvals_pending` |
///
/// The shapes are documented in `openapi.yaml` beside this crate's `Cargo.toml`.
///
/// ```no_run
/// use std::sync::Arc;
/// use keel_api::ApiAuth;
/// use keel_core::approval::{Approvals, MemoryApprovalStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
/// let auth = ApiAuth::builder().bearer_token("ops", "a-long-random-token").build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8300").await?;
/// axum::serve(listener, keel_api::router(approvals, auth)).await?;
/// # Ok(())
/// # }
/// ```
pub fn router(approvals: Approvals, auth: ApiAuth) -> Router {
    let mut router: Router<AppState> = Router::new();
    for route in routes() {
        router = router.route(route.path, route.handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(auth, require_auth))
        .with_state(AppState { approvals })
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(error_body("not_found", "no such route")),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(error_body(
            "method_not_allowed",
            "this route does not accept that method",
        )),
    )
        .into_response()
}

fn bad_query(kind: &'static str, rejection: QueryRejection) -> ApiError {
    ApiError(ParseError::new(kind, "", rejection.body_text()).into())
}

/// A request id in the path that is not one (percent-encoded bytes that are not UTF-8): an
/// error body like every other, not axum's plain text.
fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError(ParseError::new("approval request id", "", rejection.body_text()).into())
}

/// The query of `GET /v1/approvals`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    target: Option<String>,
    image: Option<String>,
}

/// The answer of `GET /v1/approvals`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ApprovalList {
    pub(crate) approvals: Vec<ApprovalRequest>,
}

async fn list_approvals(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ApprovalList>, ApiError> {
    let Query(params) = params.map_err(|r| bad_query("approval list query", r))?;
    let filter = ApprovalFilter {
        state: params
            .state
            .as_deref()
            .map(str::parse::<ApprovalState>)
            .transpose()
            .map_err(Error::from)?,
        target: params.target,
        id: params.image,
    };
    let approvals = state.approvals.list(&filter).await?;
    Ok(Json(ApprovalList { approvals }))
}

async fn get_approval(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ApprovalRequest>, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    match state.approvals.get(&id).await? {
        Some(r) => Ok(Json(r)),
        None => Err(Error::not_found(format!("approval request {id}")).into()),
    }
}

/// The body of a vote.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoteBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) voter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) comment: Option<String>,
}

fn parse_vote_body(body: &Bytes) -> Result<VoteBody, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(VoteBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ParseError::new(
            "vote body",
            String::from_utf8_lossy(&body[..body.len().min(200)]),
            format!("expected {{\"voter\": string, \"comment\": string}}: {e}"),
        )
        .into()
    })
}

/// The handler of `POST /v1/approvals/{id}/approve` (`kind` approve) or `…/reject`.
fn vote(kind: VoteKind) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              Extension(principal): Extension<Principal>,
              id: Result<Path<String>, PathRejection>,
              body: Bytes| cast(state, principal, id, body, kind),
    )
}

async fn cast(
    state: AppState,
    principal: Principal,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
    kind: VoteKind,
) -> Result<Json<ApprovalRequest>, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    let action = format!("{kind} request {id}");
    principal.require(Role::Approver, &action)?;
    let body = parse_vote_body(&body)?;
    let voter = principal.acting_as(body.voter.as_deref(), &action)?;
    let comment = body.comment.filter(|c| !c.trim().is_empty());
    let request = state.approvals.vote(&id, &voter, kind, comment).await?;
    tracing::info!(request = %id, %voter, %kind, state = %request.state, "vote via API");
    Ok(Json(request))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    actor: Option<String>,
}

async fn delete_approval(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Json<ApprovalRequest>, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    let action = format!("delete request {id}");
    principal.require(Role::Admin, &action)?;
    let Query(params) = params.map_err(|r| bad_query("delete query", r))?;
    let actor = principal.acting_as(params.actor.as_deref(), &action)?;
    let deleted = state.approvals.delete(&id, &actor).await?;
    Ok(Json(deleted))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    request: Option<String>,
    target: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

/// The answer of `GET /v1/audit`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AuditPage {
    pub(crate) entries: Vec<AuditEntry>,
    /// The `since` of the next page, when this one was cut at the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<u64>,
}

fn parse_number<T: std::str::FromStr>(kind: &'static str, s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|_| ParseError::new(kind, s, "expected a non-negative integer").into())
}

async fn audit(
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(params) = params.map_err(|r| bad_query("audit query", r))?;
    let since_seq = params
        .since
        .as_deref()
        .map(|s| parse_number::<u64>("audit `since`", s))
        .transpose()?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_AUDIT_LIMIT,
        Some(s) => {
            let n = parse_number::<usize>("audit `limit`", s)?;
            if n == 0 || n > MAX_AUDIT_LIMIT {
                return Err(Error::from(ParseError::new(
                    "audit `limit`",
                    s,
                    format!("must be between 1 and {MAX_AUDIT_LIMIT}"),
                ))
                .into());
            }
            n
        }
    };
    let query = AuditQuery {
        request: params.request,
        target: params.target,
        since_seq,
        limit: Some(limit),
    };
    let entries = state.approvals.audit_log(&query).await?;
    let next = if entries.len() == limit {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(AuditPage { entries, next }))
}

/// The metrics of the approvals in Prometheus text format (version 0.0.4, through
/// `prometheus-client`): `keel_approvals_pending`, a gauge without labels, the requests
/// waiting for votes now (pending and before their deadline), read from the store on every
/// call. The controller's metrics module documents it in the one table of every metric.
pub async fn metrics_text(approvals: &Approvals) -> Result<String, Error> {
    let pending = approvals.pending().await?;
    let mut registry = Registry::default();
    registry.register(
        "keel_approvals_pending",
        "Approval requests waiting for votes",
        ConstGauge::new(i64::try_from(pending).unwrap_or(i64::MAX)),
    );
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    Ok(text)
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = metrics_text(&state.approvals).await?;
    Ok(([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response())
}
