//! keel-api: the HTTP API of keel-rs, for the controller's operators and the chat bot.
//!
//! It serves the [approvals](keel_core::approval) of a running controller: list the
//! requests, approve, reject or delete one, and read the audit log, plus a metrics endpoint
//! with the real pending count. Every route sits behind authentication, HTTP basic or bearer
//! tokens ([`ApiAuth`]); there is no way to serve it open. Each credential has a [`Role`]:
//! `reader` (GET routes only), `approver` (also votes) or `admin` (also deletes); a delegate
//! token (the chat bot's) votes only for the voters the server accepts for it.
//!
//! - [`router`] builds the axum router to serve (`axum::serve`) or nest in your own;
//! - [`dashboard::router`] serves the web dashboard under `/ui` on the same credentials;
//! - [`ApiClient`] calls it, mapping every error answer back onto [`keel_core::Error`];
//! - [`auth_from_env`] reads the credentials an application's environment configures
//!   (`KEEL_API_AUTH`, Keel's `BASIC_AUTH_USER`/`BASIC_AUTH_PASSWORD`; see [`env`](mod@env));
//! - `openapi.yaml`, beside this crate's `Cargo.toml`, documents every route, request and
//!   answer; a test keeps it in step with [`route_table`].
//!
//! Errors are JSON, `{"error": "<code>", "reason": "<message>"}` ([`ErrorBody`]), with the
//! status [`status_of`] gives: 400 invalid input, 401 missing or wrong credentials (with
//! `WWW-Authenticate`), 403 a credential acting beyond its right (beyond its role, voting
//! under another name, a delegate naming a voter it may not), 404 unknown request, 409 a
//! request that is no longer pending.
//!
//! ```
//! use std::sync::Arc;
//! use keel_api::{ApiAuth, ApiClient};
//! use keel_core::approval::{ApprovalFilter, Approvals, ApprovalState, MemoryApprovalStore};
//! use keel_core::{ImageRef, UpdatePlan};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
//! let plan = UpdatePlan {
//!     target: "prod".into(),
//!     id: "deployment/default/web/app".into(),
//!     current: ImageRef::parse("ghcr.io/acme/web:1.2.3")?,
//!     new: ImageRef::parse("ghcr.io/acme/web:1.3.0")?,
//! };
//! let request = approvals.request(&plan, None, 1, None, None).await?;
//!
//! let auth = ApiAuth::builder().bearer_token("alice", "token-of-alice").build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! tokio::spawn(axum::serve(listener, keel_api::router(approvals, auth)).into_future());
//!
//! let client = ApiClient::new(&url)?.with_bearer_token("token-of-alice");
//! let pending = client.list(&ApprovalFilter::state(ApprovalState::Pending)).await?;
//! assert_eq!(pending.len(), 1);
//! let voted = client.approve(&request.id, None, Some("ship it")).await?;
//! assert_eq!(voted.state, ApprovalState::Approved);
//! assert_eq!(voted.votes[0].voter, "alice");
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
pub mod dashboard;
pub mod env;
mod error;
mod server;
mod shutdown;

pub use auth::{ApiAuth, ApiAuthBuilder, CredentialKind, Principal, Role};
pub use client::{ApiClient, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, read_body};
pub use env::auth_from_env;
pub use error::{ErrorBody, status_of};
pub use server::{
    DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, MAX_BODY_BYTES, metrics_text, route_table, router,
};
pub use shutdown::{Server, Shutdown, shutdown_signal, start_then_run};

/// The OpenAPI 3.0 description of the API (`openapi.yaml`).
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");
