//! Flux image automation, done by keel-rs.
//!
//! keel-flux reads the objects of Flux's image automation (`image.toolkit.fluxcd.io`:
//! `ImageRepository`, `ImagePolicy`, `ImageUpdateAutomation`) and does their job with keel-rs's
//! own engine, so that a cluster set up for Flux's image-reflector and image-automation
//! controllers can run keel-rs instead. It chooses what Flux would choose: where keel-rs's own
//! policies are more lenient than Flux (keel-core's `semver:` takes `1.187`, Flux does not),
//! keel-flux applies Flux's rules.
//!
//! It holds the version selection of an `ImagePolicy`, [`policy::FluxPolicy`], the reflector
//! that scans `ImageRepository` objects and writes `ImagePolicy` statuses, [`Reflector`], and
//! the automation that writes the policies' choices into Git for `ImageUpdateAutomation`
//! objects, [`Automation`].
//!
//! ```
//! use keel_flux::policy::{FluxPolicy, ImagePolicyChoice};
//!
//! let choice = ImagePolicyChoice::semver(">=1.0.0 <2.0.0");
//! let policy = FluxPolicy::new(choice, None).unwrap();
//! let latest = policy.latest(["1.2.3", "v1.4.0", "1.187", "2.0.0", "latest"]).unwrap();
//! assert_eq!(latest.as_deref(), Some("v1.4.0"));
//! ```
//!
//! # The reflector: Flux's image-reflector-controller
//!
//! [`Reflector`] does the job of Flux's image-reflector-controller over a `kube::Client`: each
//! [`reconcile`](Reflector::reconcile) pass scans the registries of the `ImageRepository`
//! objects that are due (never scanned, spec changed, or `spec.interval` elapsed since
//! `lastScanResult.scanTime`), drops the tags of `spec.exclusionList`, keeps the rest in memory
//! and writes the status Flux users read (`lastScanResult`, `canonicalImageName`, `Ready`);
//! then it evaluates every `ImagePolicy` with [`FluxPolicy`] over its repository's tags and
//! writes `status.latestRef` (with the digest `spec.digestReflectionPolicy` asks for) and
//! `Ready`. Suspended objects are left untouched; a bad object's own status says what is
//! wrong, and the others go on. `spec.secretRef` secrets are used through keel-k8s's
//! [`PullSecrets`](keel_k8s::PullSecrets), for the registry they name only. [`crds`] holds
//! the CustomResourceDefinitions, for clusters without Flux's own. Details in [`reflector`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use keel_flux::{NamespaceScope, Reflector};
//!
//! # async fn demo() -> Result<(), keel_core::Error> {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! let secrets = keel_k8s::PullSecrets::all_namespaces(client.clone());
//! secrets.ready().await;
//! let registry = keel_registry::RegistryClient::builder()
//!     .with_credential_source(Arc::new(secrets.clone()))
//!     .build()?;
//! let reflector = Reflector::new(client, NamespaceScope::all(), Arc::new(registry))
//!     .with_pull_secrets(secrets);
//! loop {
//!     let report = reflector.reconcile(chrono::Utc::now()).await;
//!     for error in &report.errors {
//!         eprintln!("{error}");
//!     }
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//! }
//! # }
//! ```
//!
//! # The automation: Flux's image-automation-controller
//!
//! [`Automation`] does the job of Flux's image-automation-controller over a `kube::Client`:
//! each [`reconcile`](Automation::reconcile) pass runs the `ImageUpdateAutomation` objects
//! that are due (never run, spec changed, or `spec.interval` elapsed since
//! `lastAutomationRunTime`). A run reads the `GitRepository` the automation names and its
//! HTTPS or SSH credentials (SSH only with the host keys of `known_hosts` pinned), checks out
//! its branch, tag, semver range, reference or commit, sets every setter marker
//! (`# {"$imagepolicy": "NS:NAME"}`, and `:tag`, `:name`, `:digest`) under
//! `spec.update.path` that names a ready `ImagePolicy` of the automation's namespace to the
//! policy's `latestRef`, byte-exactly with keel-git, and
//! pushes the changes as one commit, all of them or none, with Flux's message (or
//! `messageTemplate`, rendered for the variables listed in [`automation`]), signed when the
//! automation has a `signingKey`. The status says what happened as Flux writes it:
//! `lastAutomationRunTime`, `lastPushCommit`, `lastPushTime`, `observedPolicies` and `Ready`.
//!
//! ```no_run
//! use std::time::Duration;
//! use keel_flux::{Automation, NamespaceScope};
//!
//! # async fn demo() {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! let automation = Automation::new(client, NamespaceScope::all());
//! loop {
//!     let report = automation.reconcile(chrono::Utc::now()).await;
//!     for (automation, commit) in &report.pushed {
//!         println!("{automation}: pushed {commit}");
//!     }
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//! }
//! # }
//! ```
//!
//! # From Flux's fields to keel-rs
//!
//! | Flux (`ImagePolicy`, v1beta2 and v1) | keel-rs |
//! |---|---|
//! | `spec.policy.semver.range` | [`policy::SemVerPolicy::range`], parsed as a [`keel_core::version::VersionRange`]; tags admitted only when strict semver (see [`policy`]) |
//! | `spec.policy.alphabetical.order` | [`policy::AlphabeticalPolicy::order`], a [`keel_core::policy::SortOrder`]; byte-wise order |
//! | `spec.policy.numerical.order` | [`policy::NumericalPolicy::order`], a [`keel_core::policy::SortOrder`]; tags read as Go `strconv.ParseFloat` reads them |
//! | `spec.filterTags.pattern` | [`policy::TagFilter::pattern`], a `regex` crate regex (RE2 syntax, unanchored) |
//! | `spec.filterTags.extract` | [`policy::TagFilter::extract`], a template expanded on the match (`$1`, `$name`, `${name}`) |
//! | `status.latestRef.tag` (v1; the tag of `status.latestImage` in v1beta2) | [`policy::FluxPolicy::latest`], or the tag of the [`keel_core::Decision`] that [`keel_core::Policy::select`] returns |
//! | an invalid spec (`Ready=False`, reason `InvalidPolicy`) | [`keel_core::Error::InvalidInput`] from [`policy::FluxPolicy::new`], naming the field |
//!
//! Where keel-flux deliberately differs from Flux (ties between equal versions) and where it
//! cannot match it exactly (a few corners of Masterminds' range grammar) is listed in the
//! [`policy`] module.

pub mod automation;
pub mod crds;
pub mod policy;
pub mod reflector;

pub use automation::{Automation, AutomationReport};
/// Which namespaces the [`Reflector`] and the [`Automation`] read: keel-k8s's, as for every
/// Kubernetes backend of keel.
pub use keel_k8s::sync::NamespaceScope;
pub use policy::FluxPolicy;
pub use reflector::{Reflector, ReflectorReport};
