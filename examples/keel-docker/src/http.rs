//! The HTTP front: Watchtower's update endpoint, `/healthz`, and keel-rs's approvals API.
//!
//! | route | what |
//! |---|---|
//! | `GET`/`POST /v1/update[?image=REPO,...]` | with `--http-api-update`: `Authorization: Bearer <token>` required (401 otherwise); runs a pass over every tracked container, or those whose image repository is listed, and answers `200` with what it did once it is done (a request that comes during a pass waits for it) |
//! | `GET /healthz` | `200 ok` |
//! | `/api/v1/...` | the approvals API of `keel-api`, when its credentials are configured (`KEEL_API_AUTH`, `BASIC_AUTH_USER`/`BASIC_AUTH_PASSWORD`) |
//! | `/ui/` | the web dashboard of `keel-api` (containers, approvals, audit log, activity), on the same credentials |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_api::dashboard::{DashboardConfig, TargetImages};
use keel_core::approval::Approvals;
use keel_core::{ImageRef, Secret};
use serde_json::json;

use crate::updater::{PassReport, Updater};

/// The path of Watchtower's update endpoint.
pub(crate) const UPDATE_PATH: &str = "/v1/update";

#[derive(Clone)]
struct UpdateState {
    updater: Arc<Updater>,
    token: Secret,
}

/// The router: the update endpoint when `update` carries its token, the approvals API when
/// `api` carries its credentials, and `/healthz`.
pub(crate) fn router(
    updater: Arc<Updater>,
    update: Option<Secret>,
    api: Option<(Approvals, keel_api::ApiAuth, Arc<TargetImages>)>,
) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") });
    if let Some(token) = update {
        let state = UpdateState { updater, token };
        router = router.route(
            UPDATE_PATH,
            get(update_handler).post(update_handler).with_state(state),
        );
    }
    if let Some((approvals, auth, tracked)) = api {
        let dashboard = DashboardConfig {
            tracked: Some(tracked),
            ..DashboardConfig::new(approvals, auth)
        };
        router = router.merge(keel_api::dashboard::router_with_api(dashboard));
    }
    router
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn update_handler(
    State(state): State<UpdateState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim())
        });
    if !bearer.is_some_and(|token| state.token.matches(token.as_bytes())) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the API token: Authorization: Bearer <token>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"keel-docker\""),
        );
        return response;
    }
    // Watchtower's `image` parameter: repositories, comma-separated, possibly repeated.
    // Read only once the request is authenticated.
    let query = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(query)) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid query: {e}")),
    };
    let mut images = Vec::new();
    for value in query
        .iter()
        .filter(|(key, _)| key == "image")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        match ImageRef::parse(value) {
            Ok(image) => images.push(image),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid image {value:?}: {e}"),
                );
            }
        }
    }
    let report = state.updater.pass(&images, "http").await;
    (StatusCode::OK, axum::Json(PassReport::from(&report))).into_response()
}
