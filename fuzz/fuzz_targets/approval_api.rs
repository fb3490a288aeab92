//! Fuzzes the approvals API (`keel_api::router`) with whole requests: the first byte picks
//! the credentials (an operator, a delegate that names voters, or none), then a line
//! `<METHOD> <path and query>` (`{id}` stands for the id of an open request), then the body.
//! The store is in memory and holds one pending request that needs two approvals.
//!
//! Checked: no panic and no 5xx answer; every answer is JSON (text for `/metrics`) and every
//! error answer is an `ErrorBody` whose code matches its status; a refused request leaves
//! the requests and the audit log as they were.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use keel_api::{ApiAuth, ErrorBody};
use keel_core::approval::{ApprovalFilter, Approvals, AuditQuery, MemoryApprovalStore};
use keel_core::{ImageRef, UpdatePlan};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tower::ServiceExt;

const OPERATOR: &str = "operator-token-0123456789";
const DELEGATE: &str = "delegate-token-0123456789";

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

async fn snapshot(approvals: &Approvals) -> String {
    let requests = approvals.list(&ApprovalFilter::default()).await.unwrap();
    let audit = approvals.audit_log(&AuditQuery::default()).await.unwrap();
    format!("{requests:?}\n{audit:?}")
}

fuzz_target!(|data: &[u8]| {
    let Some((who, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let Some((method, uri)) = line.split_once(' ') else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };

    runtime().block_on(async {
        let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
        let plan = UpdatePlan {
            target: "prod".into(),
            id: "default/web".into(),
            current: ImageRef::parse("nginx:1.25.0").unwrap(),
            new: ImageRef::parse("nginx:1.25.1").unwrap(),
        };
        let open = approvals.request(&plan, None, 2, None, None).await.unwrap();
        let uri = uri.replace("{id}", &open.id);
        let auth = ApiAuth::builder()
            .bearer_token("ops", OPERATOR)
            .delegate_token("bot", DELEGATE)
            // A prefix, so that many fuzzed voters are accepted and many are refused (403).
            .delegate_voters("bot", ["U*"])
            .build()
            .unwrap();
        let mut request = Request::builder().method(method).uri(uri.as_str());
        match who % 3 {
            0 => request = request.header("authorization", format!("Bearer {OPERATOR}")),
            1 => request = request.header("authorization", format!("Bearer {DELEGATE}")),
            _ => {}
        }
        let Ok(request) = request.body(Body::from(body.to_owned())) else {
            return;
        };
        let before = snapshot(&approvals).await;
        let router = keel_api::router(approvals.clone(), auth);
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{uri}: the answer is over 1 MiB or broken: {e}"));
        assert!(!status.is_server_error(), "{uri}: {status} {bytes:?}");
        if status.is_success() {
            if uri.starts_with("/metrics") {
                assert!(std::str::from_utf8(&bytes).is_ok());
            } else {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("{uri}: {status} but not JSON ({e}): {bytes:?}"));
            }
            return;
        }
        let error: ErrorBody = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: {status} without an error body ({e}): {bytes:?}"));
        let expected = match error.error.as_str() {
            "invalid_input" => StatusCode::BAD_REQUEST,
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            "conflict" => StatusCode::CONFLICT,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            other => panic!("{uri}: {status} with the unexpected code {other:?}"),
        };
        assert_eq!(status, expected, "{uri}: {error:?}");
        assert_eq!(
            snapshot(&approvals).await,
            before,
            "{uri}: refused, but changed"
        );
    });
});
