//! The Kubernetes backend of keel-rs: Keel's pull mode.
//!
//! This crate will hold a [`keel_core::Target`] implementation for Deployments, StatefulSets,
//! DaemonSets and CronJobs configured by Keel's `keel.sh/*` annotations and labels
//! (`keel.sh/policy`, `trigger`, `pollSchedule`, `matchTag`, `approvals`, ...), so that a Keel
//! user can switch without changing a manifest:
//!
//! - discovery through watches and a local cache (no LIST calls in steady state);
//! - image pull secrets turned into registry credentials;
//! - updates patched onto the container `image` only, guarded by `resourceVersion`;
//! - rollout progress, optional rollback, and leader election on a `Lease`.
//!
//! Until then it only re-exports the trait it implements.

pub use keel_core::Target;
