//! The HTTP front: `/healthz`, and keel-rs's approvals API and dashboard.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `200 ok` |
//! | `/api/v1/...` | the approvals API of `keel-api`, when its credentials are configured (`KEEL_API_AUTH`, `BASIC_AUTH_USER`/`BASIC_AUTH_PASSWORD`): list the updates held by `keel.sh/approvals`, approve or reject them, read the audit log |
//! | `/ui/` | the web dashboard of `keel-api` (the repository's tracked references with their last check and available update; each reference's page with the policy's reasons for each tag and the diff of its next update; approvals, audit log, activity), on the same credentials |
//!
//! Anything else answers `404` with a JSON error; without credentials that includes `/api`
//! and `/ui`: they are never served open.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_api::ApiAuth;
use keel_api::dashboard::{DashboardConfig, TargetImages};
use keel_core::approval::Approvals;

/// What the approvals API and the dashboard serve: the approvals, who may see and vote on
/// them, and the tracked references.
pub(crate) struct Api {
    /// The approval requests of the pipeline's held updates.
    pub(crate) approvals: Approvals,
    /// The credentials of the API and the dashboard.
    pub(crate) auth: ApiAuth,
    /// The references the dashboard lists, with what the passes last found.
    pub(crate) tracked: Arc<TargetImages>,
}

/// The router: `/healthz`, and the approvals API and the dashboard when `api` is given.
pub(crate) fn router(api: Option<Api>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { not_found() });
    if let Some(Api {
        approvals,
        auth,
        tracked,
    }) = api
    {
        let dashboard = DashboardConfig {
            tracked: Some(tracked),
            ..DashboardConfig::new(approvals, auth)
        };
        router = router.merge(keel_api::dashboard::router_with_api(dashboard));
    }
    router
}

/// The answer to a path that is not served.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "no such endpoint" })),
    )
        .into_response()
}
