//! The job of Flux's image-automation-controller: write the choices of the `ImagePolicy`
//! objects into a Git repository at Flux's setter markers, and push one commit.
//!
//! [`Automation::reconcile`] makes one pass over the `ImageUpdateAutomation` objects of its
//! [`NamespaceScope`]. Each one that is not suspended and is due (never run, its spec changed
//! since the generation its `Ready` condition or `status.observedGeneration` records, or
//! `status.lastAutomationRunTime + spec.interval` has come) is run:
//!
//! 1. Its `GitRepository` (`spec.sourceRef`, `kind: GitRepository`, in the automation's
//!    namespace unless `sourceRef.namespace` names another) gives the URL and, through
//!    `spec.secretRef`, the credentials: a secret with `username` and `password` is HTTPS
//!    basic authentication, sent to that repository only. A secret with `identity` (an SSH
//!    private key, PEM or OpenSSH format), optional `password` (its passphrase) and
//!    `known_hosts` is SSH authentication for an `ssh://` or `user@host:path` URL
//!    ([`keel_git::GitAuth::SshKeyInMemory`]): the key is offered only to a server that
//!    showed a host key `known_hosts` pins for its host and port, and without `known_hosts`
//!    the secret is refused. A `bearerToken` is refused.
//! 2. What is checked out is `spec.git.checkout.ref`, else the `GitRepository`'s `spec.ref`,
//!    read with Flux's precedence: `commit` (a full commit id, reachable from a branch or
//!    tag), then `name` (a full reference name such as `refs/tags/v1`; `refs/heads/X` is the
//!    branch `X`), then `semver` (the highest tag in the range, tags read leniently as
//!    Flux's source-controller reads them: an optional `v`, missing minor and patch numbers
//!    as 0; pre-releases only when the range names one), then `tag`, then
//!    `branch`, else the branch `master` (Flux's default). The branch pushed to is
//!    `spec.git.push.branch`, else the checkout branch; a checkout that is not a branch
//!    needs `spec.git.push.branch` (else `InvalidSourceConfiguration`). The commit is made
//!    on top of the commit checked out. A push branch other than the checkout branch is
//!    made anew from the checkout on each push, as Flux does by default (its
//!    `GitForcePushBranch` feature): should it exist, it is overwritten (force-pushed) with
//!    the checkout plus the run's changes, its own commits dropped; if it already holds
//!    exactly those files nothing is pushed. Commits are authored by
//!    `spec.git.commit.author` and, with `spec.git.commit.signingKey.secretRef`, signed as
//!    `git commit -S` signs them: the secret's `git.asc` is an ASCII-armored OpenPGP private
//!    key (its primary key signs), `passphrase` its passphrase; the signature is made with
//!    rPGP (the `pgp` crate) and `git verify-commit` checks it. A key that cannot sign is
//!    found before anything is committed (`signingKey.type: ssh` is refused).
//! 3. The `ImagePolicy` objects of the automation's namespace whose `Ready` is `True`, that
//!    have a `status.latestRef` and that `spec.policySelector` selects (all when unset;
//!    `matchLabels` and `matchExpressions` with `In`, `NotIn`, `Exists` and `DoesNotExist`,
//!    read and matched by [`keel_k8s::selector::LabelSelector`]) are the ones applied; each
//!    marker `# {"$imagepolicy": "NS:NAME"}` (and `:tag`, `:name`, `:digest`) under
//!    `spec.update.path` (default the repository root) that names one of them is set to its `latestRef`: `name:tag`, with
//!    `@digest` when the policy has a digest, and for a part marker the part it marks.
//!    Markers that name another policy, or a policy that is not ready, are left alone.
//! 4. The changes are pushed as one commit with keel-git ([`keel_git::GitTarget`]), all of
//!    them or none ([`keel_git::GitTargetBuilder::with_all_or_nothing`]): a branch that
//!    moved meanwhile is fetched and every change applied again on its new tip; should any
//!    change no longer apply there (the branch's new commits changed a marked line), nothing
//!    is pushed and `Ready` is `False` (`UpdateFailed`, naming the file). As with Flux, whose
//!    failed push fails the run, the next run starts again from the branch as it is then.
//!
//! Then the status is written as Flux writes it: `lastAutomationRunTime`, `observedPolicies`
//! (policy name → `{name, tag, digest}`), `observedGeneration`, and after a push
//! `lastPushCommit` and `lastPushTime`, with `Ready` `True`, reason `ReconciliationSucceeded`,
//! message `repository up-to-date` or `pushed commit '<short id>' to branch '<branch>'`. A run
//! that fails writes only `lastAutomationRunTime` and `Ready` `False` with the reason and the
//! error:
//!
//! | reason | when |
//! |---|---|
//! | `GitRepositoryNotFound` | the `GitRepository` does not exist |
//! | `InvalidSourceConfiguration` | `sourceRef.kind` is not `GitRepository`, the `GitRepository` has no URL, its secret is missing or of a kind keel-flux does not use (a `bearerToken`; an SSH `identity` without `known_hosts`, with unreadable `known_hosts` or for a URL that is not SSH), `spec.git.commit.author.email` is missing, `spec.update.path` leaves the repository, `spec.update.strategy` is not `Setters`, a checkout that is not a branch without `spec.git.push.branch`, a `semver` checkout range that does not parse, a signing key that is missing, not an ASCII-armored OpenPGP private key, cannot sign with its passphrase, or of `type` `ssh`, or the spec asks for what keel-flux does not do: push `refspec` or `options` |
//! | `InvalidPolicySelector` | `spec.policySelector` is malformed: an operator other than `In`, `NotIn`, `Exists` and `DoesNotExist`, `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values, a missing key, a value not a string (the message names the field) |
//! | `InvalidMessageTemplate` | `messageTemplate` uses what keel-flux does not render (see below) |
//! | `GitOperationFailed` | the fetch or push failed: credentials refused, an SSH host key that `known_hosts` does not pin, branch, tag, reference or commit missing, no tag in the `semver` range, server rejection, a branch that kept moving |
//! | `UpdateFailed` | a marker could not be rewritten (its line changed on the branch meanwhile, a value not an image); nothing of the run is pushed |
//! | `ReconciliationFailed` | the `ImagePolicy` objects of the namespace could not be listed |
//!
//! Every write is a JSON merge patch of the `status` subresource with the field manager
//! `keel`. A suspended automation (`spec.suspend: true`) is left alone: nothing read, nothing
//! written.
//!
//! # Commit messages
//!
//! Without `spec.git.commit.messageTemplate` the message is Flux's default, `Update from image
//! update automation`. A template is rendered with the part of Go's `text/template` that
//! messages use: `{{ .AutomationObject }}` (`namespace/name`), `{{ .Values.KEY }}`
//! (`messageTemplateValues`), `{{ range .Changed.Changes }}` with `{{ .OldValue }}`,
//! `{{ .NewValue }}` and `{{ .Setter }}`, `{{ range $file, $_ := .Changed.FileChanges }}`
//! (or `.Updated.Files`) with `{{ $file }}`, `{{ range .Updated.Images }}` with `{{ . }}`,
//! comments, and `{{-`/`-}}` trimming. Anything else (`.Changed.Objects`, `if`, functions) is
//! refused with `Ready` `False` (`InvalidMessageTemplate`) before anything is committed.
//!
//! ```no_run
//! use keel_flux::automation::Automation;
//! use keel_flux::NamespaceScope;
//!
//! # async fn demo() {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! let automation = Automation::new(client, NamespaceScope::only(["apps"]));
//! let report = automation.reconcile(chrono::Utc::now()).await;
//! for object in &report.automations {
//!     println!("{}/{}: {:?}", object.namespace, object.name, object.outcome);
//! }
//! # }
//! ```

mod credentials;
mod run;
mod signing;
mod spec;
mod status;
mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_core::Error;
use keel_k8s::sync::{NamespaceScope, list_in, sort_by_name};
use kube::Client;
use kube::api::ListParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use tracing::{Instrument as _, info_span, warn};

use crate::reflector::objects::Meta;
use crate::reflector::status::{conditions_with_ready, timestamp};
use crate::reflector::{GROUP, ObjectReport, Outcome, VERSION, patch_status};
use spec::due;
use status::{Ready, observed_patch};

/// The API group of Flux's `GitRepository`.
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
/// The version of `GitRepository` read.
pub const SOURCE_VERSION: &str = "v1";
/// Flux's default commit message.
pub const DEFAULT_MESSAGE: &str = "Update from image update automation";
/// The branch checked out when neither the automation nor the `GitRepository` names one, as
/// Flux's `GitRepository` defaults it.
const DEFAULT_BRANCH: &str = "master";

/// What one [`Automation::reconcile`] pass did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct AutomationReport {
    /// Every `ImageUpdateAutomation` of the scope, in namespace and name order.
    pub automations: Vec<ObjectReport>,
    /// The commits pushed by this pass: automation `namespace/name` → commit id.
    pub pushed: BTreeMap<String, String>,
    /// Requests to the API server that failed: a listing or a status write.
    pub errors: Vec<Error>,
}

impl AutomationReport {
    /// The report of the `ImageUpdateAutomation` `namespace/name`.
    pub fn automation(&self, namespace: &str, name: &str) -> Option<&ObjectReport> {
        self.automations
            .iter()
            .find(|r| r.namespace == namespace && r.name == name)
    }
}

/// Runs Flux's `ImageUpdateAutomation` objects; see the [module docs](self).
pub struct Automation {
    client: Client,
    namespaces: NamespaceScope,
    workdir: Option<PathBuf>,
    /// `None`: keel-git's default.
    server_timeout: Option<Duration>,
}

impl fmt::Debug for Automation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Automation")
            .field("namespaces", &self.namespaces)
            .field("workdir", &self.workdir)
            .finish_non_exhaustive()
    }
}

fn automation_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, "ImageUpdateAutomation"),
        "imageupdateautomations",
    )
}

fn git_repository_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(SOURCE_GROUP, SOURCE_VERSION, "GitRepository"),
        "gitrepositories",
    )
}

fn secret_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets")
}

fn str_at<'v>(value: Option<&'v Value>, path: &[&str]) -> Option<&'v str> {
    let mut at = value?;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().filter(|s| !s.is_empty())
}

impl Automation {
    /// An automation over the `ImageUpdateAutomation` objects of `namespaces`.
    pub fn new(client: Client, namespaces: NamespaceScope) -> Self {
        Automation {
            client,
            namespaces,
            workdir: None,
            server_timeout: None,
        }
    }

    /// Keeps the working copies under `dir`, one per automation (default: keel-git's
    /// directory per repository and branches under the system's temporary directory).
    pub fn with_workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// How long a fetch or push waits for each answer of the Git server (default: that of
    /// [`keel_git::GitTargetBuilder::with_server_timeout`], 60 s).
    pub fn with_server_timeout(mut self, timeout: Duration) -> Self {
        self.server_timeout = Some(timeout);
        self
    }

    /// One pass: runs every automation that is due and writes its status.
    pub async fn reconcile(&self, now: DateTime<Utc>) -> AutomationReport {
        let mut report = AutomationReport::default();
        if let Err(error) = self.namespaces.check() {
            report.errors.push(error);
            return report;
        }
        let resource = automation_resource();
        let params = ListParams::default();
        let mut objects = Vec::new();
        for namespace in self.namespaces.watched() {
            match list_in(&self.client, &resource, namespace, &params).await {
                Ok(items) => objects.extend(items),
                Err(error) => report.errors.push(error),
            }
        }
        sort_by_name(&mut objects);
        for object in &objects {
            let Some(meta) = Meta::read(object) else {
                continue;
            };
            let outcome = self.run(object, &meta, now, &mut report).await;
            report.automations.push(ObjectReport {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                outcome,
            });
        }
        report
    }

    async fn run(
        &self,
        object: &DynamicObject,
        meta: &Meta,
        now: DateTime<Utc>,
        report: &mut AutomationReport,
    ) -> Outcome {
        if meta.is_suspended() {
            return Outcome::Suspended;
        }
        let spec = object.data.get("spec");
        let status = object.data.get("status");
        if !due(meta, spec, status, now) {
            return Outcome::NotDue;
        }
        let span = info_span!("automation", automation = %meta.key());
        let result = self.update(meta, spec).instrument(span).await;
        let mut patch = serde_json::Map::new();
        patch.insert("lastAutomationRunTime".into(), json!(timestamp(now)));
        let ready = match result {
            Ok(success) => {
                patch.insert(
                    "observedPolicies".into(),
                    observed_patch(status, &success.observed),
                );
                patch.insert("observedGeneration".into(), json!(meta.generation));
                if let Some(commit) = &success.pushed {
                    patch.insert("lastPushCommit".into(), json!(commit));
                    patch.insert("lastPushTime".into(), json!(timestamp(now)));
                    report.pushed.insert(meta.key(), commit.clone());
                }
                Ready {
                    ok: true,
                    reason: "ReconciliationSucceeded",
                    message: success.message,
                }
            }
            Err(ready) => {
                warn!(automation = %meta.key(), reason = ready.reason, message = %ready.message, "automation failed");
                ready
            }
        };
        let conditions = conditions_with_ready(
            &meta.conditions,
            ready.ok,
            ready.reason,
            &ready.message,
            meta.generation,
            now,
        );
        patch.insert("conditions".into(), json!(conditions));
        if let Err(error) = patch_status(&self.client, &automation_resource(), meta, patch).await {
            report.errors.push(error);
        }
        if ready.ok {
            Outcome::Ready {
                message: ready.message,
            }
        } else {
            Outcome::NotReady {
                reason: ready.reason.to_owned(),
                message: ready.message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{ImageRef, PolicySpec};
    use keel_git::manifest::{MarkerPolicy, Reference, RepoConfig};

    use super::run::{describe, latest_image, target_image};
    use super::spec::{PolicySelector, highest_tag_in_range, update_path};
    use super::*;
    use crate::reflector::objects::LatestRef;

    #[tokio::test]
    async fn a_namespace_list_that_names_nothing_is_reported_and_nothing_runs() {
        let client = keel_testsupport::kube::unreachable_client();
        for list in [&[][..], &[""]] {
            let automation =
                Automation::new(client.clone(), NamespaceScope::only(list.iter().copied()));
            let report = automation.reconcile(Utc::now()).await;
            assert!(report.automations.is_empty(), "{list:?}: {report:?}");
            assert!(
                matches!(
                    report.errors.as_slice(),
                    [keel_core::Error::InvalidInput(_)]
                ),
                "{list:?}: {report:?}"
            );
        }
    }

    #[test]
    fn update_paths_stay_in_the_repository() {
        assert_eq!(update_path("./"), Ok(None));
        assert_eq!(update_path(""), Ok(None));
        assert_eq!(update_path("./apps//prod/"), Ok(Some("apps/prod".into())));
        assert!(update_path("apps/../../etc").is_err());
    }

    fn latest(name: &str, tag: &str, digest: &str) -> LatestRef {
        LatestRef {
            name: name.into(),
            tag: tag.into(),
            digest: digest.into(),
        }
    }

    /// The references of `text`, with `apps:NAME` markers known as keel-flux configures them.
    fn references(text: &str, names: &[(&str, &str)]) -> Vec<Reference> {
        let mut config = RepoConfig::default();
        for (name, image) in names {
            config = config.with_policy(
                format!("apps:{name}"),
                MarkerPolicy::new(PolicySpec::Never).with_image(*image),
            );
        }
        keel_git::manifest::scan("values.yaml", text, &config).references
    }

    #[test]
    fn markers_take_the_parts_they_mark() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let text = "a:\n  image: registry/a:1.0 # {\"$imagepolicy\": \"apps:a\"}\n\
                    b:\n  repository: registry/b # {\"$imagepolicy\": \"apps:b:name\"}\n  \
                    tag: \"1.0\" # {\"$imagepolicy\": \"apps:b:tag\"}\n\
                    c:\n  tag: 1.0 # {\"$imagepolicy\": \"apps:c:tag\"}\n";
        let found = references(
            text,
            &[
                ("a", "registry/a"),
                ("b", "registry/b"),
                ("c", "registry/c"),
            ],
        );
        assert_eq!(found.len(), 3, "{found:?}");
        let whole = target_image(&found[0], &latest("registry/a", "1.1", &digest)).unwrap();
        assert_eq!(
            whole,
            ImageRef::parse(&format!("registry/a:1.1@{digest}")).unwrap()
        );
        let changes = describe(
            &found[0],
            &whole,
            &latest("registry/a", "1.1", &digest),
            "apps:a",
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].setter, "apps:a");
        assert_eq!(changes[0].old_value, "registry/a:1.0");
        assert_eq!(changes[0].new_value, format!("registry/a:1.1@{digest}"));

        // Name and tag markers: the digest has no slot, so it is not written.
        let parts = target_image(&found[1], &latest("registry/b", "2.0", &digest)).unwrap();
        assert_eq!(parts, ImageRef::parse("registry/b:2.0").unwrap());
        let changes = describe(
            &found[1],
            &parts,
            &latest("registry/b", "2.0", &digest),
            "apps:b",
        );
        let shown: Vec<_> = changes
            .iter()
            .map(|c| format!("{} {} -> {}", c.setter, c.old_value, c.new_value))
            .collect();
        assert_eq!(shown, ["apps:b:tag 1.0 -> 2.0"]);

        // A tag marker alone: the repository is the policy's.
        let tag = target_image(&found[2], &latest("registry/c", "1.0", "")).unwrap();
        assert_eq!(tag, found[2].image, "already at the policy's choice");
    }

    #[test]
    fn policy_selectors_match_labels_and_expressions() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let selector = PolicySelector::read(Some(&json!({
            "matchLabels": {"team": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
        })))
        .unwrap();
        assert!(selector.matches(&labels(&[("team", "web"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("team", "web"), ("tier", "db")])));
        assert!(!selector.matches(&labels(&[("team", "db")])));
        assert!(!selector.matches(&labels(&[])));
        assert!(PolicySelector::read(None).unwrap().matches(&labels(&[])));
        let err = PolicySelector::read(Some(&json!({"matchExpressions": [
            {"key": "team", "operator": "Equals", "values": ["web"]}
        ]})))
        .unwrap_err();
        assert!(
            err.contains("spec.policySelector.matchExpressions[0].operator")
                && err.contains("Equals"),
            "{err}"
        );
        assert!(PolicySelector::read(Some(&json!({"matchLabels": {"a": 1}}))).is_err());
    }

    #[test]
    fn semver_checkouts_take_the_highest_tag_in_the_range() {
        let tags: Vec<String> = ["v1.0.0", "1.2", "v1.10.0-rc.1", "1.9.9", "2.0.0", "latest"]
            .map(String::from)
            .into();
        let pick = |range: &str| highest_tag_in_range(range, &tags).unwrap();
        assert_eq!(pick(">=1.0.0 <2.0.0").as_deref(), Some("1.9.9"));
        assert_eq!(pick("1.2.x").as_deref(), Some("1.2"));
        assert_eq!(pick(">=1.10.0-0 <2.0.0").as_deref(), Some("v1.10.0-rc.1"));
        assert_eq!(pick(">=3").as_deref(), None);
        assert!(highest_tag_in_range("not a range", &tags).is_err());
        let equal: Vec<String> = ["v1.0.0", "1.0.0"].map(String::from).into();
        assert_eq!(
            highest_tag_in_range("1.x", &equal).unwrap().as_deref(),
            Some("v1.0.0")
        );
    }

    #[test]
    fn latest_images_carry_their_digest() {
        let mut latest = LatestRef {
            name: "registry/app".into(),
            tag: "1.1.0".into(),
            digest: String::new(),
        };
        assert_eq!(latest_image(&latest), "registry/app:1.1.0");
        latest.digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            latest_image(&latest),
            format!("registry/app:1.1.0@sha256:{}", "a".repeat(64))
        );
    }
}
