//! The parts of `keel-controller`, a Keel-compatible image update controller built from
//! keel-rs:
//!
//! - [`http`]: Keel's webhook endpoints (`/v1/webhooks/{native,dockerhub,quay,azure,github,
//!   harbor,jfrog,registry}`) behind optional credentials, `/healthz` and `/metrics`;
//! - [`metrics`]: the counters and gauges `/metrics` shows;
//! - [`flux`]: runs the Flux reflector (keel-flux) on a tick, by the leader only;
//! - [`worker`]: runs a pipeline pass for each batch of pushes and whenever polled images are
//!   due (keel-core's [`Poller`](keel_core::trigger::Poller) knows which, per
//!   `keel.sh/pollSchedule`) or a workload changed.
//!
//! Webhooks and the worker meet on a `tokio::sync::mpsc` channel of
//! [`PushEvent`](keel_core::trigger::PushEvent)s:
//!
//! ```no_run
//! use std::sync::Arc;
//! use keel_controller::http::{self, Credential, HttpConfig, Secret};
//! use keel_controller::metrics::Metrics;
//! use keel_controller::worker::Worker;
//! use keel_core::Pipeline;
//! use keel_core::memory::InMemoryRegistry;
//!
//! # async fn run() -> std::io::Result<()> {
//! let metrics = Arc::new(Metrics::new());
//! let (pushes, queue) = tokio::sync::mpsc::channel(1024);
//! let pipeline = Pipeline::new(Arc::new(InMemoryRegistry::new("demo")));
//! let worker = Arc::new(Worker::new(pipeline, metrics.clone()));
//! tokio::spawn(worker.run(queue, keel_controller::shutdown_signal()));
//!
//! let config = HttpConfig::new().with_auth(Credential::Token(Secret::new("s3cret")));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:9300").await?;
//! http::serve(listener, http::router(config, metrics, pushes), keel_controller::shutdown_signal()).await
//! # }
//! ```

pub mod flux;
pub mod http;
pub mod metrics;
pub mod setup;
pub mod worker;

/// Completes on ctrl-c or, on Unix, SIGTERM (what Kubernetes sends to stop a pod).
pub use keel_api::shutdown_signal;
