//! The OCI Distribution registry backend of keel-rs.
//!
//! This crate will hold a [`keel_core::Registry`] implementation for every registry that speaks
//! the OCI Distribution API (Docker Hub, GHCR, Quay, Harbor, ECR, GCR/GAR, ACR, GitLab and the
//! CNCF `distribution` server):
//!
//! - tag listing that follows `Link` pagination within a page/tag budget and reports truncation;
//! - tag → digest resolution with `HEAD` (falling back to `GET` and hashing the body);
//! - image metadata (creation time, platforms of an index) for policies that need it;
//! - anonymous, basic and bearer-token auth, with credentials from Docker `config.json` and
//!   `kubernetes.io/dockerconfigjson` secrets;
//! - a per-host rate limiter, `Retry-After` handling, timeouts, capped bodies and a TTL cache.
//!
//! Until then it only re-exports the trait it implements.

pub use keel_core::Registry;
