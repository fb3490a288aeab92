//! Errors on the wire: one JSON body for every failure, one status per error variant.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use keel_core::Error;
use serde::{Deserialize, Serialize};

/// The JSON body of every error answer: `{"error": "<code>", "reason": "<message>"}`, plus
/// `what` for `not_found` and `retryAfterSeconds` for `rate_limited`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A stable code: `invalid_input`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `rate_limited`, `not_supported`,
    /// `unavailable` or `internal`.
    pub error: String,
    /// What went wrong, for people.
    pub reason: String,
    /// For `not_found`: what was looked for, e.g. `approval request 0a1b2c3d4e5f6789`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// For `rate_limited`: how long to wait, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

pub(crate) fn error_body(code: &str, reason: impl Into<String>) -> ErrorBody {
    ErrorBody {
        error: code.to_owned(),
        reason: reason.into(),
        what: None,
        retry_after_seconds: None,
    }
}

/// The HTTP status and error code the API answers `error` with: invalid input 400, refused
/// (authenticated, but not allowed) 403, not found 404, conflict 409, rate limited 429, not
/// supported 501, a retryable backend failure 503 and any other 500.
pub fn status_of(error: &Error) -> (StatusCode, &'static str) {
    match error {
        Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
        Error::Unauthorized { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Error::NotSupported { .. } => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
        e if e.is_retryable() => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// A keel error as an HTTP answer.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = status_of(&self.0);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "API request failed");
        }
        let mut body = error_body(code, self.0.to_string());
        if let Error::NotFound { what } = &self.0 {
            body.what = Some(what.clone());
        }
        let retry = self.0.retry_after().map(|d| d.as_secs().max(1));
        body.retry_after_seconds = retry;
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry {
            response.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::ParseError;

    #[test]
    fn statuses() {
        let cases = [
            (Error::from(ParseError::new("x", "y", "z")), 400),
            (
                Error::Unauthorized {
                    action: "a".into(),
                    reason: "b".into(),
                },
                403,
            ),
            (Error::not_found("approval request x"), 404),
            (
                Error::Conflict {
                    action: "a".into(),
                    reason: "b".into(),
                },
                409,
            ),
            (Error::not_supported("op", "b"), 501),
            (
                Error::Backend {
                    backend: "b".into(),
                    action: "a".into(),
                    message: "m".into(),
                    retryable: true,
                    source: None,
                },
                503,
            ),
            (
                Error::Backend {
                    backend: "b".into(),
                    action: "a".into(),
                    message: "m".into(),
                    retryable: false,
                    source: None,
                },
                500,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(status_of(&e).0.as_u16(), status, "{e}");
        }
    }
}
