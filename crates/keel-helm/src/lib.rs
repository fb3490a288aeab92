//! The Helm backend of keel-rs: Keel's Helm provider.
//!
//! [`HelmTarget`] is a [`keel_core::Target`] for Helm 3 and 4 releases whose values carry
//! Keel's `keel:` block, as Keel users write it:
//!
//! ```yaml
//! image:
//!   repository: ghcr.io/acme/web
//!   tag: "1.2.3"
//! keel:
//!   policy: minor            # every policy string keel-rs accepts
//!   trigger: poll            # default: webhooks only, as in Keel
//!   pollSchedule: "@every 5m"
//!   approvals: 1
//!   approvalDeadline: 24
//!   matchTag: false
//!   matchPreRelease: true
//!   notify: "#ops"           # or Keel's `notificationChannels: [...]`
//!   images:
//!     - repository: image.repository   # dotted paths into the release's values
//!       tag: image.tag
//!       imagePullSecret: image.pullSecret
//!     - image: sidecar.image           # a path whose value is a whole `repo:tag`
//! ```
//!
//! The block is read from the values as Helm merges them (chart defaults, then the user's
//! values) with keel-core's [`keel_keys`](keel_core::keel_keys) rules, the same as the
//! `keel.sh/*` keys of a workload. A value that does not parse skips only that release, with
//! a [`Problem`](keel_k8s::Problem) naming the release, the path and the value.
//!
//! - Releases are discovered from Helm's own storage ([`release`]: Secrets and ConfigMaps
//!   labelled `owner=helm`, decoded here), deployed revisions only, through watches: a
//!   steady-state discovery makes no API request.
//! - Updates run the real `helm` binary ([`HelmBinary`]: its path, environment and timeout,
//!   given with [`HelmTargetBuilder::with_helm`] and checked with `helm version` at start-up):
//!   `helm upgrade` with the deployed chart, the values the release had, and only the tracked
//!   paths changed.
//!   A release with an operation under way (`pending-*`) is not touched; helm's own message
//!   reports a failed upgrade, and the image it failed on is not tried again.
//! - [`HelmTarget::verify_rollout`] follows the release's workloads and runs `helm rollback`
//!   when they do not become available in time; the undone image is avoided afterwards.
//!
//! As keel-k8s, keel-helm leaves the Kubernetes version of the API types (a `k8s-openapi`
//! feature) and kube's TLS backend to the application.

mod chart;
pub mod config;
pub mod helm;
pub mod release;
mod storage;
mod target;

pub use helm::{CheckedHelm, HelmBinary};
pub use storage::Driver;
pub use target::{HelmTarget, HelmTargetBuilder, PROBLEM_KIND, ReleaseImage};
