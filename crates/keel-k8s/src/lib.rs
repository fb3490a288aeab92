//! The Kubernetes backend of keel-rs: Keel's pull mode.
//!
//! [`KubeTarget`] is a [`keel_core::Target`] for Deployments, StatefulSets, DaemonSets and
//! CronJobs (`batch/v1`), and on OpenShift and OKD for DeploymentConfigs and ImageStream tags,
//! configured by Keel's own `keel.sh/*` annotations and labels, so that a Keel user can switch
//! without changing a manifest:
//!
//! | key | meaning |
//! |---|---|
//! | `keel.sh/policy` | `all`, `major`, `minor`, `patch`, `force`, `glob:<pattern>`, `regexp:<re>`, `semver:<range>`, ... (`never`/`none`: not tracked) |
//! | `keel.sh/trigger` | `poll` to poll the registry; `default` (or absent): webhooks only |
//! | `keel.sh/pollSchedule` | cron or `@every 5m` (default `@every 1m`) |
//! | `keel.sh/matchTag` (`keel.sh/match-tag`) | with `force`: follow the current tag to new digests |
//! | `keel.sh/matchPreRelease` | keep to the current pre-release channel (default `true`) |
//! | `keel.sh/approvals` | approvals an update needs (default 0) |
//! | `keel.sh/approvalDeadline` | hours an approval request stays open (default 24) |
//! | `keel.sh/monitorContainers` | regex: only containers whose name matches are tracked |
//! | `keel.sh/initContainers` | `true`: track init containers too |
//! | `keel.sh/imagePullSecret` | extra pull secrets for the registry |
//! | `keel.sh/notify` | extra notification channels (comma-separated) |
//! | `keel.sh/releaseNotes` | a release-notes link for notifications |
//!
//! Every key is read from the annotations first and from the labels when the annotations do
//! not carry it. A workload with a bad value (a policy that does not parse, a bad regex, a
//! non-numeric count) is skipped with a warning naming the workload, the key and the value,
//! and listed by [`KubeTarget::problems`]; the others are tracked as usual.
//!
//! - OpenShift and OKD (where the server serves `apps.openshift.io/v1` and
//!   `image.openshift.io/v1`; elsewhere nothing is asked of these groups beyond one discovery
//!   request each):
//!   - a DeploymentConfig is one more workload kind, patched like a Deployment;
//!   - an ImageStream tag whose `from` is an external `DockerImage` is tracked like a
//!     container (id `imagestream/<namespace>/<stream>/<tag>`), with the keys of the
//!     ImageStream's annotations or of the tag's own `annotations`, which win; an update
//!     writes the tag's `from.name`, and a new digest of the same tag asks OpenShift to import
//!     it again (`generation: 0`), so that OpenShift's own triggers roll out what follows it;
//!   - a DeploymentConfig container driven by an automatic `ImageChange` trigger is never
//!     patched (OpenShift would write over it): its ImageStream tag is tracked instead, with
//!     the DeploymentConfig's keys unless the tag has keys of its own; when that is not
//!     possible (the stream is not watched or not found, the tag has no external source),
//!     [`KubeTarget::problems`] says why;
//!   - the same holds for a container of any kind named by the `image.openshift.io/triggers`
//!     annotation (where ImageStreams are not watched, the annotation is ignored), and
//!     [`KubeTarget::image_triggers`] lists every such chain, tag to container.
//! - Discovery runs on watches and local caches: after the first call, [`Target::discover`]
//!   makes no request (no LIST calls in steady state).
//! - Updates patch only the container's `image`, guarded by `resourceVersion`, retried after
//!   a 409 Conflict, idempotent; see [`KubeTarget`].
//! - [`PullSecrets`] turns image pull secrets into registry credentials;
//!   [`LeaderElector`] elects one active controller on a `Lease`.
//! - [`rollout`] reads rollout progress from a workload's status;
//!   [`KubeTarget::verify_rollout`] follows an applied update and rolls it back when it is
//!   not available in time, and [`avoid`] keeps the undone version from coming back.
//! - [`KubeApprovalStore`] keeps approval requests and the audit log in ConfigMaps, so that
//!   controller replicas share them.
//!
//! As kube's own crates do, keel-k8s leaves two choices to the application: the Kubernetes
//! version of the API types (a feature of `k8s-openapi`) and kube's TLS backend. An
//! application depends on both with its choice, for example:
//!
//! ```toml
//! k8s-openapi = { version = "0.29", features = ["v1_33"] }
//! kube = { version = "5", default-features = false, features = ["client", "runtime", "rustls-tls", "ring"] }
//! ```
//!
//! ```no_run
//! use std::sync::Arc;
//! use keel_core::memory::InMemoryRegistry;
//! use keel_core::Pipeline;
//! use keel_k8s::KubeTarget;
//! # async fn demo() -> Result<(), keel_core::Error> {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! let target = KubeTarget::builder(client).with_label_selector("team=web").build().await?;
//! let registry = Arc::new(InMemoryRegistry::new("demo"));
//! let report = Pipeline::new(registry).with_target(Arc::new(target)).run_once().await;
//! println!("{} update(s) applied", report.applied.len());
//! # Ok(())
//! # }
//! ```

pub mod avoid;
pub mod error;
pub mod keys;
mod openshift;
mod patch;
mod target;
mod workload;

pub use keel_core::Target;
pub use keys::{Problem, ProblemLog};
pub use target::{
    FIELD_MANAGER, ImageTrigger, KubeTarget, KubeTargetBuilder, RolloutVerdict, WorkloadContainer,
    WorkloadImage,
};
pub use workload::WorkloadKind;

pub mod secrets;
pub use secrets::{PullSecrets, SecretRef};
pub mod leader;
pub use leader::{LeaderElector, Leadership};
pub mod rollout;
pub mod selector;
pub mod sync;
pub use rollout::{RolloutStatus, WorkloadRef};
pub mod approval_store;
pub use approval_store::KubeApprovalStore;

/// `pairs` as a map of owned strings, as annotations and labels are held: for tests.
#[cfg(test)]
pub(crate) fn string_map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
