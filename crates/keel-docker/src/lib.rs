//! The Docker Engine backend of keel-rs: Watchtower's job, with policies, approvals and
//! rollback.
//!
//! [`DockerTarget`] is a [`keel_core::Target`] for the running containers of a Docker Engine,
//! reached through the Engine API (a unix socket, or TCP with TLS, as `DOCKER_HOST` says):
//!
//! - **What is tracked**, by Watchtower's rules ([`labels::Scope`]): every running container,
//!   or only those labelled `com.centurylinklabs.watchtower.enable=true`; `...enable=false`
//!   always opts out; names and scopes narrow it further.
//! - **How**: a container labelled `keel.sh/policy` follows that policy, with the other
//!   `keel.sh/*` labels (schedule, approvals, notification channels...) read as every
//!   keel-rs target reads them ([`keel_core::keel_keys`]). A container without one follows
//!   its own tag to new digests, as under Watchtower. Monitor-only containers are tracked
//!   with [`TrackedImage::report_only`](keel_core::TrackedImage::report_only): their updates
//!   are planned, notified and previewed, never applied.
//! - **Updates** recreate the container with the same configuration and keep the old one
//!   until the new one runs (and is healthy, when it has a healthcheck); otherwise the old
//!   one runs again under its name and the version is avoided later. See [`DockerTarget`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use keel_core::Pipeline;
//! use keel_core::memory::InMemoryRegistry;
//! use keel_docker::DockerTarget;
//! use keel_docker::labels::Scope;
//!
//! # async fn run() -> keel_core::Result<()> {
//! let connect = |e| keel_core::Error::backend("docker", "connect", e);
//! // Negotiated, so that an older engine is sent only what its API version knows.
//! let docker = bollard::Docker::connect_with_defaults()
//!     .map_err(connect)?
//!     .negotiate_version()
//!     .await
//!     .map_err(connect)?;
//! let target = DockerTarget::builder(docker)
//!     .scope(Scope { label_enable: true, ..Scope::default() })
//!     .cleanup(true)
//!     .build()?;
//! let registry = Arc::new(InMemoryRegistry::new("registry"));
//! let report = Pipeline::new(registry).with_target(Arc::new(target)).run_once().await;
//! println!("{} updated", report.applied.len());
//! # Ok(())
//! # }
//! ```

mod engine;
pub mod labels;
mod recreate;
mod target;

pub use bollard;
pub use target::{DockerTarget, DockerTargetBuilder, PullAuth, PullCredentials};
