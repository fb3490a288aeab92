//! The job of Flux's image-automation-controller: write the choices of the `ImagePolicy`
//! objects into a Git repository at Flux's setter markers, and push one commit.
//!
//! [`Automation::reconcile`] makes one pass over the `ImageUpdateAutomation` objects of its
//! [`Namespaces`]. Each one that is not suspended and is due (never run, its spec changed
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
//! use keel_flux::Namespaces;
//!
//! # async fn demo() {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! let automation = Automation::new(client, Namespaces::only(["apps"]));
//! let report = automation.reconcile(chrono::Utc::now()).await;
//! for object in &report.automations {
//!     println!("{}/{}: {:?}", object.namespace, object.name, object.outcome);
//! }
//! # }
//! ```

mod signing;
mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use keel_core::target::{ApplyOutcome, UpdatePlan};
use keel_core::version::Version;
use keel_core::{Error, ImageRef, PolicySpec, Secret, Target as _};
use keel_git::known_hosts::KnownHosts;
use keel_git::manifest::{MarkerPolicy, Part, Reference, ReferenceKind, RepoConfig};
use keel_git::{Checkout, GitAuth, GitTarget};
use keel_k8s::error::{Request, from_kube};
use keel_k8s::selector::LabelSelector;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use tracing::{Instrument as _, info, info_span, warn};

use crate::policy::parse_range;
use crate::reflector::objects::{LatestRef, Meta, parse_duration};
use crate::reflector::status::{conditions_with_ready, timestamp, truncate};
use crate::reflector::{FIELD_MANAGER, GROUP, Namespaces, ObjectReport, Outcome, VERSION};
use signing::OpenPgpSigner;
use template::{Change, TemplateData};

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
    namespaces: Namespaces,
    workdir: Option<PathBuf>,
    server_timeout: Duration,
}

impl fmt::Debug for Automation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Automation")
            .field("namespaces", &self.namespaces)
            .field("workdir", &self.workdir)
            .finish_non_exhaustive()
    }
}

/// A `Ready` condition to write.
struct Ready {
    ok: bool,
    reason: &'static str,
    message: String,
}

impl Ready {
    fn no(reason: &'static str, message: impl Into<String>) -> Ready {
        Ready {
            ok: false,
            reason,
            message: truncate(&message.into()),
        }
    }
}

/// What a successful run found and did.
struct Success {
    message: String,
    observed: BTreeMap<String, LatestRef>,
    pushed: Option<String>,
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
    pub fn new(client: Client, namespaces: Namespaces) -> Self {
        Automation {
            client,
            namespaces,
            workdir: None,
            server_timeout: Duration::from_secs(60),
        }
    }

    /// Keeps the working copies under `dir`, one per automation (default: keel-git's
    /// directory per repository and branches under the system's temporary directory).
    pub fn with_workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// How long a fetch or push waits for each answer of the Git server (default 60 s).
    pub fn with_server_timeout(mut self, timeout: Duration) -> Self {
        self.server_timeout = timeout;
        self
    }

    /// One pass: runs every automation that is due and writes its status.
    pub async fn reconcile(&self, now: DateTime<Utc>) -> AutomationReport {
        let mut report = AutomationReport::default();
        let resource = automation_resource();
        let mut objects = Vec::new();
        let scopes: Vec<Option<&str>> = match &self.namespaces {
            Namespaces::All => vec![None],
            Namespaces::Only(names) => names.iter().map(|n| Some(n.as_str())).collect(),
        };
        for namespace in scopes {
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            };
            match api.list(&ListParams::default()).await {
                Ok(list) => objects.extend(list.items),
                Err(error) => report.errors.push(from_kube(
                    error,
                    &Request {
                        verb: "list",
                        resource: "imageupdateautomations",
                        namespace,
                        name: None,
                    },
                )),
            }
        }
        objects.sort_by_key(|o| (o.metadata.namespace.clone(), o.metadata.name.clone()));
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
        if meta.suspend {
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
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &meta.namespace, &automation_resource());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        if let Err(error) = api
            .patch_status(
                &meta.name,
                &params,
                &Patch::Merge(json!({ "status": patch })),
            )
            .await
        {
            report.errors.push(from_kube(
                error,
                &Request {
                    verb: "patch",
                    resource: "imageupdateautomations/status",
                    namespace: Some(&meta.namespace),
                    name: Some(&meta.name),
                },
            ));
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

    /// One run of one automation, up to the push.
    async fn update(&self, meta: &Meta, spec: Option<&Value>) -> Result<Success, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let kind = str_at(spec, &["sourceRef", "kind"]).unwrap_or("GitRepository");
        if kind != "GitRepository" {
            return Err(config(format!(
                "source kind '{kind}' not supported: spec.sourceRef.kind must be GitRepository"
            )));
        }
        let source_name = str_at(spec, &["sourceRef", "name"])
            .ok_or_else(|| config("spec.sourceRef.name is required".into()))?;
        let source_namespace = str_at(spec, &["sourceRef", "namespace"]).unwrap_or(&meta.namespace);
        if let Some(strategy) = str_at(spec, &["update", "strategy"])
            && strategy != "Setters"
        {
            return Err(config(format!(
                "update strategy '{strategy}' not supported: spec.update.strategy must be Setters"
            )));
        }
        let path =
            update_path(str_at(spec, &["update", "path"]).unwrap_or("./")).map_err(config)?;
        let author_email = str_at(spec, &["git", "commit", "author", "email"])
            .ok_or_else(|| config("spec.git.commit.author.email is required".into()))?;
        let author_name =
            str_at(spec, &["git", "commit", "author", "name"]).unwrap_or(author_email);
        // What keel-flux cannot do is refused rather than silently left out.
        for (path, what) in [
            ("/git/push/refspec", "push refspecs (spec.git.push.refspec)"),
            ("/git/push/options", "push options (spec.git.push.options)"),
        ] {
            if spec
                .and_then(|s| s.pointer(path))
                .is_some_and(|v| !v.is_null())
            {
                return Err(config(format!("{what} is not supported by keel-flux")));
            }
        }
        if let Some(kind) = str_at(spec, &["git", "commit", "signingKey", "type"])
            && kind != "gpg"
        {
            return Err(config(format!(
                "spec.git.commit.signingKey.type '{kind}' is not supported by keel-flux: only \
                 gpg (OpenPGP) keys sign commits"
            )));
        }
        let signing_secret = match spec.and_then(|s| s.pointer("/git/commit/signingKey")) {
            Some(key) if !key.is_null() => {
                Some(str_at(Some(key), &["secretRef", "name"]).ok_or_else(|| {
                    config("spec.git.commit.signingKey.secretRef.name is required".into())
                })?)
            }
            _ => None,
        };
        let selector = PolicySelector::read(spec.and_then(|s| s.get("policySelector")))
            .map_err(|e| Ready::no("InvalidPolicySelector", e))?;

        // The GitRepository and its credentials.
        let repositories: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            source_namespace,
            &git_repository_resource(),
        );
        let source_key = format!("{source_namespace}/{source_name}");
        let repository = match repositories.get_opt(source_name).await {
            Ok(Some(repository)) => repository,
            Ok(None) => {
                return Err(Ready::no(
                    "GitRepositoryNotFound",
                    format!("referenced GitRepository '{source_key}' does not exist"),
                ));
            }
            Err(error) => {
                return Err(Ready::no(
                    "GitRepositoryNotFound",
                    format!("failed to get GitRepository '{source_key}': {error}"),
                ));
            }
        };
        let repository_spec = repository.data.get("spec");
        let url = str_at(repository_spec, &["url"])
            .ok_or_else(|| config(format!("GitRepository '{source_key}' has no spec.url")))?;
        let auth = match str_at(repository_spec, &["secretRef", "name"]) {
            None => GitAuth::None,
            Some(secret) => self.auth(source_namespace, secret, url).await?,
        };
        // The automation's checkout reference replaces the GitRepository's as a whole.
        let (reference, field) = match spec.and_then(|s| s.pointer("/git/checkout/ref")) {
            Some(reference) if !reference.is_null() => (Some(reference), "spec.git.checkout.ref"),
            _ => (
                repository_spec.and_then(|s| s.get("ref")),
                "the GitRepository's spec.ref",
            ),
        };
        let checkout = CheckoutRef::read(reference);
        let push = match (str_at(spec, &["git", "push", "branch"]), &checkout) {
            (Some(push), _) => push.to_owned(),
            (None, CheckoutRef::Branch(branch)) => branch.clone(),
            (None, other) => {
                return Err(config(format!(
                    "spec.git.push.branch is required: {field} checks out {other}, not a \
                     branch, and commits are pushed to a branch"
                )));
            }
        };

        // The ready policies of the automation's namespace.
        let observed = self.ready_policies(&meta.namespace, &selector).await?;
        let mut repo_config = RepoConfig::default();
        for (name, latest) in &observed {
            // A policy only so that keel-git reports the marker, with the repository a
            // tag-only marker belongs to; the plans below are the policies' choices.
            repo_config = repo_config.with_policy(
                format!("{}:{name}", meta.namespace),
                MarkerPolicy::new(PolicySpec::Never).with_image(latest.name.clone()),
            );
        }

        let signer = match signing_secret {
            Some(name) => Some(self.signer(&meta.namespace, name).await?),
            None => None,
        };
        let mut builder = GitTarget::builder(url)
            .with_push_branch(push.clone())
            .with_author(author_name, author_email)
            .with_auth(auth)
            .with_config(repo_config)
            .with_server_timeout(self.server_timeout)
            .with_max_push_attempts(3)
            .with_all_or_nothing(true);
        if let Some(path) = &path {
            builder = builder.with_paths([path.clone()]);
        }
        if let Some(signer) = signer {
            builder = builder.with_commit_signer(Arc::new(signer));
        }
        if let Some(dir) = &self.workdir {
            builder = builder.with_workdir(dir.join(&meta.namespace).join(&meta.name));
        }
        let checkout = match checkout {
            CheckoutRef::SemVer(range) => {
                let tags = builder
                    .clone()
                    .build()
                    .remote_tags()
                    .await
                    .map_err(|e| git_failure("failed to list the tags", &e))?;
                let tag = highest_tag_in_range(&range, &tags)
                    .map_err(|e| config(format!("{field}.semver '{range}': {e}")))?
                    .ok_or_else(|| {
                        Ready::no(
                            "GitOperationFailed",
                            format!("no tag of '{source_key}' is in the semver range '{range}'"),
                        )
                    })?;
                Checkout::Tag(tag)
            }
            CheckoutRef::Branch(branch) => Checkout::Branch(branch),
            CheckoutRef::Tag(tag) => Checkout::Tag(tag),
            CheckoutRef::Name(name) => Checkout::Reference(name),
            CheckoutRef::Commit(id) => Checkout::Commit(id),
        };
        // A push branch other than the checkout is made anew from the checkout on each push,
        // as Flux does by default (its GitForcePushBranch feature).
        let reset = checkout != Checkout::Branch(push.clone());
        builder = builder
            .with_checkout(checkout)
            .with_push_branch_reset(reset);
        let values: BTreeMap<String, String> = spec
            .and_then(|s| s.pointer("/git/commit/messageTemplateValues"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let template = str_at(spec, &["git", "commit", "messageTemplate"]);
        // Refuse a template keel-flux cannot render before touching the repository.
        if let Some(template) = template {
            template::render(template, &TemplateData::default()).map_err(|e| {
                Ready::no("InvalidMessageTemplate", format!("invalid template: {e}"))
            })?;
        }

        let scan = builder
            .clone()
            .build()
            .scan()
            .await
            .map_err(|e| git_failure("failed to check out the repository", &e))?;
        let mut plans = Vec::new();
        let mut changes = Vec::new();
        let mut images = Vec::new();
        for reference in &scan.references {
            let ReferenceKind::FluxMarker { policy_name } = &reference.kind else {
                continue;
            };
            let Some(name) = policy_name
                .strip_prefix(&meta.namespace)
                .and_then(|n| n.strip_prefix(':'))
            else {
                continue;
            };
            let Some(latest) = observed.get(name) else {
                continue;
            };
            let new = target_image(reference, latest).map_err(|e| {
                Ready::no(
                    "UpdateFailed",
                    format!(
                        "cannot set {} to the choice of {policy_name}: {e}",
                        reference.id()
                    ),
                )
            })?;
            if new == reference.image {
                continue;
            }
            changes.extend(describe(reference, &new, latest, policy_name));
            let shown = latest_image(latest);
            if !images.contains(&shown) {
                images.push(shown);
            }
            plans.push(UpdatePlan {
                target: String::new(),
                id: reference.id(),
                current: reference.image.clone(),
                new,
            });
        }
        if plans.is_empty() {
            return Ok(Success {
                message: "repository up-to-date".into(),
                observed,
                pushed: None,
            });
        }
        let data = TemplateData {
            automation_object: meta.key(),
            values,
            changes,
            images,
        };
        let message = match template {
            Some(template) => template::render(template, &data).map_err(|e| {
                Ready::no("InvalidMessageTemplate", format!("invalid template: {e}"))
            })?,
            None => DEFAULT_MESSAGE.to_owned(),
        };
        let target = builder.with_message(message).build();
        for plan in &mut plans {
            plan.target = target.name().to_owned();
        }
        let results = target.apply_all(&plans).await;
        let mut applied = false;
        for result in results {
            match result {
                Ok(ApplyOutcome::Applied) => applied = true,
                Ok(ApplyOutcome::AlreadyCurrent) => {}
                // All or nothing: every plan carries the same error, and nothing was pushed.
                Err(error) => return Err(apply_failure(&error)),
            }
        }
        let pushed = if applied {
            target.last_pushed_commit()
        } else {
            None
        };
        let message = match &pushed {
            Some(commit) => {
                info!(automation = %meta.key(), %commit, branch = push, "pushed");
                format!("pushed commit '{}' to branch '{push}'", short(commit))
            }
            None => "repository up-to-date".into(),
        };
        Ok(Success {
            message,
            observed,
            pushed,
        })
    }

    /// The signer of the signing-key secret `namespace/name`: `git.asc`, an ASCII-armored
    /// OpenPGP private key, with its `passphrase` if it has one.
    async fn signer(&self, namespace: &str, name: &str) -> Result<OpenPgpSigner, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &secret_resource());
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| config(format!("failed to get secret '{namespace}/{name}': {e}")))?
            .ok_or_else(|| {
                config(format!(
                    "signing-key secret '{namespace}/{name}' does not exist"
                ))
            })?;
        let data = secret.data.get("data").and_then(Value::as_object);
        let field = |key: &str| -> Result<Option<String>, Ready> {
            let Some(encoded) = data.and_then(|d| d.get(key)).and_then(Value::as_str) else {
                return Ok(None);
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| config(format!("secret '{namespace}/{name}': {key} is not base64")))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| config(format!("secret '{namespace}/{name}': {key} is not UTF-8")))
        };
        let armored = field("git.asc")?.ok_or_else(|| {
            config(format!(
                "signing-key secret '{namespace}/{name}' has no git.asc (an ASCII-armored \
                 OpenPGP private key)"
            ))
        })?;
        let passphrase = field("passphrase")?.map(Secret::from);
        OpenPgpSigner::new(
            &armored,
            passphrase,
            &format!("secret '{namespace}/{name}'"),
        )
        .map_err(config)
    }

    /// The credentials of the secret `namespace/name`, as Flux reads a `GitRepository`'s.
    async fn auth(&self, namespace: &str, name: &str, url: &str) -> Result<GitAuth, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &secret_resource());
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| config(format!("failed to get secret '{namespace}/{name}': {e}")))?
            .ok_or_else(|| config(format!("secret '{namespace}/{name}' does not exist")))?;
        let data = secret.data.get("data").and_then(Value::as_object);
        let field = |key: &str| -> Result<Option<String>, Ready> {
            let Some(encoded) = data.and_then(|d| d.get(key)).and_then(Value::as_str) else {
                return Ok(None);
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| config(format!("secret '{namespace}/{name}': {key} is not base64")))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| config(format!("secret '{namespace}/{name}': {key} is not UTF-8")))
        };
        if let Some(identity) = field("identity")? {
            if !is_ssh_url(url) {
                return Err(config(format!(
                    "secret '{namespace}/{name}' holds an SSH identity, but the GitRepository's \
                     URL '{}' is not an SSH URL (ssh://... or user@host:path)",
                    keel_core::redact_urls(url)
                )));
            }
            let known_hosts = field("known_hosts")?.ok_or_else(|| {
                config(format!(
                    "secret '{namespace}/{name}' holds an SSH identity without known_hosts: \
                     keel-flux does not use SSH without the server's host keys"
                ))
            })?;
            let known_hosts = KnownHosts::parse(&known_hosts).map_err(|e| {
                config(format!(
                    "secret '{namespace}/{name}': the known_hosts of its SSH identity: {e}"
                ))
            })?;
            return Ok(GitAuth::SshKeyInMemory {
                username: "git".into(),
                private_key: identity.into(),
                passphrase: field("password")?.map(Into::into),
                known_hosts,
            });
        }
        if field("bearerToken")?.is_some() {
            return Err(config(format!(
                "secret '{namespace}/{name}' holds a bearerToken, which keel-flux does not \
                 support; use username and password"
            )));
        }
        match (field("username")?, field("password")?) {
            (Some(username), Some(password)) => Ok(GitAuth::UserPassword {
                username,
                password: password.into(),
            }),
            _ => Err(config(format!(
                "secret '{namespace}/{name}' has neither username and password nor another \
                 kind of credentials keel-flux supports"
            ))),
        }
    }

    /// The `ImagePolicy` objects of `namespace` that are ready with a `latestRef`, by name.
    async fn ready_policies(
        &self,
        namespace: &str,
        selector: &PolicySelector,
    ) -> Result<BTreeMap<String, LatestRef>, Ready> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &crate::reflector::policy_resource(),
        );
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            Ready::no(
                "ReconciliationFailed",
                format!("failed to list the ImagePolicies of '{namespace}': {e}"),
            )
        })?;
        let mut ready = BTreeMap::new();
        for object in &list.items {
            let Some(meta) = Meta::read(object) else {
                continue;
            };
            let is_ready = meta.ready().is_some_and(|c| c.status == "True");
            let labels = object.metadata.labels.clone().unwrap_or_default();
            if !is_ready || !selector.matches(&labels) {
                continue;
            }
            let latest = object
                .data
                .pointer("/status/latestRef")
                .and_then(|r| serde_json::from_value::<LatestRef>(r.clone()).ok())
                .filter(|l| !l.name.is_empty() && !l.tag.is_empty());
            if let Some(latest) = latest {
                ready.insert(meta.name, latest);
            }
        }
        Ok(ready)
    }
}

/// A checkout reference (`spec.git.checkout.ref`, or the `GitRepository`'s `spec.ref`), by
/// Flux's precedence: `commit`, then `name`, then `semver`, then `tag`, then `branch`.
#[derive(Debug, Clone, PartialEq)]
enum CheckoutRef {
    Branch(String),
    Tag(String),
    SemVer(String),
    Name(String),
    Commit(String),
}

impl CheckoutRef {
    fn read(reference: Option<&Value>) -> CheckoutRef {
        let field = |key: &str| str_at(reference, &[key]).map(str::to_owned);
        if let Some(commit) = field("commit") {
            CheckoutRef::Commit(commit)
        } else if let Some(name) = field("name") {
            // A branch by its full name is that branch.
            match name.strip_prefix("refs/heads/") {
                Some(branch) if !branch.is_empty() => CheckoutRef::Branch(branch.to_owned()),
                _ => CheckoutRef::Name(name),
            }
        } else if let Some(range) = field("semver") {
            CheckoutRef::SemVer(range)
        } else if let Some(tag) = field("tag") {
            CheckoutRef::Tag(tag)
        } else {
            CheckoutRef::Branch(field("branch").unwrap_or_else(|| DEFAULT_BRANCH.to_owned()))
        }
    }
}

impl fmt::Display for CheckoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckoutRef::Branch(name) => write!(f, "branch '{name}'"),
            CheckoutRef::Tag(name) => write!(f, "tag '{name}'"),
            CheckoutRef::SemVer(range) => write!(f, "the highest tag in semver range '{range}'"),
            CheckoutRef::Name(name) => write!(f, "reference '{name}'"),
            CheckoutRef::Commit(id) => write!(f, "commit '{id}'"),
        }
    }
}

/// `spec.policySelector`: the labels a policy must carry to be applied (all, when unset).
#[derive(Debug, Default, PartialEq)]
struct PolicySelector(Option<LabelSelector>);

impl PolicySelector {
    /// Reads `matchLabels` and `matchExpressions` as Kubernetes reads a label selector.
    fn read(value: Option<&Value>) -> Result<PolicySelector, String> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(PolicySelector::default());
        };
        LabelSelector::from_json(value, "spec.policySelector")
            .map(|s| PolicySelector(Some(s)))
            .map_err(|e| e.to_string())
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.as_ref().is_none_or(|s| s.matches(labels))
    }
}

/// Whether the automation is due now.
fn due(meta: &Meta, spec: Option<&Value>, status: Option<&Value>, now: DateTime<Utc>) -> bool {
    let last_run = str_at(status, &["lastAutomationRunTime"])
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let Some(last_run) = last_run else {
        return true;
    };
    // The generation last run: the status's when the run succeeded, the condition's either way.
    let tried = meta
        .ready()
        .and_then(|c| c.observed_generation)
        .or(meta.observed_generation);
    if meta.generation.is_some() && meta.generation != tried {
        return true;
    }
    let interval = str_at(spec, &["interval"])
        .and_then(parse_duration)
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .unwrap_or_else(|| chrono::Duration::minutes(1));
    last_run
        .checked_add_signed(interval)
        .is_none_or(|next| next <= now)
}

/// `spec.update.path` as a repository path: `None` for the root; `Err` for a path that
/// leaves the repository.
fn update_path(path: &str) -> Result<Option<String>, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!("spec.update.path '{path}' leaves the repository"));
            }
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// `latestRef` as Flux writes it into a whole-image marker: `name:tag[@digest]`.
fn latest_image(latest: &LatestRef) -> String {
    if latest.digest.is_empty() {
        format!("{}:{}", latest.name, latest.tag)
    } else {
        format!("{}:{}@{}", latest.name, latest.tag, latest.digest)
    }
}

/// What `reference` holds once the parts its markers mark are set to `latest`.
fn target_image(reference: &Reference, latest: &LatestRef) -> Result<ImageRef, String> {
    let has = |part: Part| reference.slots.iter().any(|s| s.part == part);
    let whole = has(Part::Whole);
    let name = if whole || has(Part::Name) {
        latest.name.clone()
    } else {
        // The repository as written (or as the tag-only marker's policy names it).
        reference.image.name()
    };
    let tag = if whole || has(Part::Tag) {
        Some(latest.tag.clone())
    } else {
        reference.image.tag().map(ToString::to_string)
    };
    let digest = if whole {
        Some(latest.digest.clone()).filter(|d| !d.is_empty())
    } else if has(Part::Digest) && !latest.digest.is_empty() {
        Some(latest.digest.clone())
    } else {
        reference.image.digest().map(ToString::to_string)
    };
    let mut text = name;
    if let Some(tag) = tag {
        text.push(':');
        text.push_str(&tag);
    }
    if let Some(digest) = digest {
        text.push('@');
        text.push_str(&digest);
    }
    ImageRef::parse(&text).map_err(|e| e.to_string())
}

/// The changes of one reference, one per marked value, as Flux's `.Changed.Changes` lists
/// them.
fn describe(
    reference: &Reference,
    new: &ImageRef,
    latest: &LatestRef,
    marker: &str,
) -> Vec<Change> {
    let old = &reference.image;
    // Written with the policy's spelling of the name when it is the same repository.
    let shown_name = |image: &ImageRef| {
        let same = ImageRef::parse(&latest.name).is_ok_and(|l| l.name() == image.name());
        if same {
            latest.name.clone()
        } else {
            image.name()
        }
    };
    let show = |image: &ImageRef| {
        let mut text = shown_name(image);
        if let Some(tag) = image.tag() {
            text.push_str(&format!(":{tag}"));
        }
        if let Some(digest) = image.digest() {
            text.push_str(&format!("@{digest}"));
        }
        text
    };
    let mut changes = Vec::new();
    let mut push = |part: &str, old_value: String, new_value: String| {
        if old_value != new_value {
            changes.push(Change {
                file: reference.file.clone(),
                setter: if part.is_empty() {
                    marker.to_owned()
                } else {
                    format!("{marker}:{part}")
                },
                old_value,
                new_value,
            });
        }
    };
    let text = |v: Option<String>| v.unwrap_or_default();
    for slot in &reference.slots {
        match slot.part {
            Part::Whole | Part::InsertTag { .. } => push("", show(old), show(new)),
            Part::Name => push("name", shown_name(old), latest.name.clone()),
            Part::Tag => push(
                "tag",
                text(old.tag().map(ToString::to_string)),
                text(new.tag().map(ToString::to_string)),
            ),
            Part::Digest => push(
                "digest",
                text(old.digest().map(ToString::to_string)),
                text(new.digest().map(ToString::to_string)),
            ),
        }
    }
    changes
}

/// `status.observedPolicies` as a merge patch: the policies of this run, and `null` for the
/// ones observed before and gone now.
fn observed_patch(status: Option<&Value>, observed: &BTreeMap<String, LatestRef>) -> Value {
    let mut patch = serde_json::Map::new();
    if let Some(previous) = status
        .and_then(|s| s.get("observedPolicies"))
        .and_then(Value::as_object)
    {
        for name in previous.keys() {
            patch.insert(name.clone(), Value::Null);
        }
    }
    for (name, latest) in observed {
        let digest = if latest.digest.is_empty() {
            Value::Null
        } else {
            json!(latest.digest)
        };
        patch.insert(
            name.clone(),
            json!({"name": latest.name, "tag": latest.tag, "digest": digest}),
        );
    }
    Value::Object(patch)
}

/// The short form of a commit id, as `git log --oneline` shows it.
fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// The highest of `tags` in the semver `range`, as Flux's source-controller picks the tag of a
/// `semver` checkout: tags read leniently (an optional `v`, missing minor and patch numbers
/// taken as 0), pre-releases only when the range names one; of tags of equal precedence the
/// greatest name, so that the choice never depends on the server's order.
fn highest_tag_in_range(range: &str, tags: &[String]) -> Result<Option<String>, Error> {
    let range = parse_range(range)?;
    Ok(tags
        .iter()
        .filter_map(|tag| Some((Version::parse(tag)?, tag)))
        .filter(|(version, _)| range.matches(version))
        .max_by(|(a, a_tag), (b, b_tag)| a.precedence(b).then_with(|| a_tag.cmp(b_tag)))
        .map(|(_, tag)| tag.clone()))
}

/// Whether `url` is one keel-git reaches over SSH: `ssh://...` or scp-like `user@host:path`.
fn is_ssh_url(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return matches!(scheme, "ssh" | "git+ssh");
    }
    url.split_once(':')
        .is_some_and(|(authority, _)| !authority.is_empty() && !authority.contains('/'))
}

/// The `Ready` condition for a run whose changes were not pushed: `UpdateFailed` when a
/// change no longer applies to the branch as fetched (keel-git names the file in the
/// action), `GitOperationFailed` for the fetch or push.
fn apply_failure(error: &Error) -> Ready {
    match error {
        Error::Conflict { action, .. } if action.starts_with("update ") => Ready::no(
            "UpdateFailed",
            format!("failed to apply the changes, none was pushed: {error}"),
        ),
        _ => git_failure("failed to push", error),
    }
}

/// The `Ready` condition for a failed Git operation.
fn git_failure(context: &str, error: &Error) -> Ready {
    Ready::no("GitOperationFailed", format!("{context}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
