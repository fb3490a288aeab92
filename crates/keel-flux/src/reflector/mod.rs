//! The job of Flux's image-reflector-controller: scan the registries that `ImageRepository`
//! objects name, and write the tag each `ImagePolicy` selects into its status.
//!
//! [`Reflector::reconcile`] makes one pass over the objects of its [`NamespaceScope`]:
//!
//! 1. Every `ImageRepository` that is not suspended and is due is scanned: never scanned (by
//!    this reflector: the tags live in its memory, so after a restart every repository is
//!    scanned once), its spec changed (`metadata.generation` differs from
//!    `status.observedGeneration`), `flux reconcile` asked for it
//!    (`reconcile.fluxcd.io/requestedAt`), its last scan failed (tried again after 10 s, then
//!    twice as long each time, up to the interval), or `lastScanResult.scanTime +
//!    spec.interval` has come. The tags matching `spec.exclusionList` (default `^.*\.sig$`) are
//!    dropped, the rest kept in memory, and the status written as Flux writes it:
//!    `lastScanResult` (`tagCount`, `scanTime`, `revision`, and `latestTags`, the first 10 in
//!    descending byte order), `canonicalImageName` (`index.docker.io/library/alpine` for
//!    `alpine`), `observedExclusionList`, `observedGeneration` and the condition `Ready`
//!    (`True`, reason `Succeeded`, message `successful scan: found N tags with checksum R`).
//!    A failed scan sets `Ready` `False` with the reason (`ImageURLInvalid`,
//!    `IntervalNotConfigured`, `AuthenticationFailed`, `ReadOperationFailed`) and the error,
//!    and keeps both the tags found before and `lastScanResult`. A tag list the registry
//!    client cut short at its listing budget is such a failure (`ReadOperationFailed`): no
//!    policy decides from a partial list.
//! 2. Every `ImagePolicy` that is not suspended is evaluated with [`FluxPolicy`] over the tags
//!    of its repository (`spec.imageRepositoryRef`, in the policy's namespace unless it names
//!    another), and its status written: `latestRef {name, tag, digest}` (`name` is the
//!    repository's `spec.image` as written, as in Flux), `observedPreviousRef` when the choice
//!    changed, `observedGeneration` and `Ready` (`True`, reason `Succeeded`, message `Latest
//!    image tag for <name> resolved to <tag>`). The digest follows
//!    `spec.digestReflectionPolicy`: `Never` (the default) writes none, `IfNotPresent` keeps
//!    the digest already written for the same name and tag and looks it up otherwise, `Always`
//!    looks it up again for a new tag or generation and once `spec.interval` (default 10m) has
//!    passed since it last did. `Ready` is `False` with reason `InvalidPolicy` for a spec that
//!    does not validate (the message names the field), `DependencyNotReady` when the repository
//!    does not exist or has no tags yet, `AccessDenied` for a repository in another namespace
//!    whose `spec.accessFrom` does not admit the policy's namespace (by its labels; reading them
//!    needs `get` on namespaces) or that this reflector does not read,
//!    `Failure` when no tag qualifies, `ReadOperationFailed` when the digest cannot be read.
//!    A status that already says what the pass found is not written again.
//!
//! A suspended object (`spec.suspend: true`) is left alone: neither scanned nor written. Every
//! write is a JSON merge patch of the `status` subresource with the field manager `keel`;
//! conditions other than `Ready`, `Reconciling` and `Stalled` (which Flux's controller owns,
//! and this reflector replaces) are kept. No object content makes the reflector panic or stop:
//! a bad object says so in its own status and the others go on.
//!
//! # Credentials
//!
//! An `ImageRepository`'s `spec.secretRef` names a `kubernetes.io/dockerconfigjson` (or
//! `dockercfg`) secret of its own namespace. Give the reflector the [`PullSecrets`] that the
//! registry client asks ([`Reflector::with_pull_secrets`]): while it talks to the registry
//! about a repository, the reflector records that secret, and only that one, as the
//! reflector's credentials for that repository, so the registry client uses it, and only for
//! the registry its `auths` name (keel-registry sends credentials to no other host). A
//! repository without `secretRef` gets no credentials from the reflector.
//!
//! Give the reflector a [`PullSecrets`] and a registry client of its own: keel-k8s's workload
//! sync replaces the whole usage map of the [`PullSecrets`] it is given (which would drop the
//! reflector's entry in the middle of a scan), and adds workloads' secrets for the same
//! repositories. The registry client keeps its cached tag lists and bearer tokens per set of
//! credentials, so a repository whose secret is wrong (or missing) is never answered from
//! what another repository's secret fetched a moment before.
//!
//! The `provider` field (`aws`, `azure`, `gcp`) gets no cloud identity: such repositories are
//! scanned with whatever the registry client is configured with (its Docker config and
//! credential helpers). `spec.insecure` is left to the registry client too, which speaks plain
//! HTTP to loopback addresses and to the hosts it is told are insecure.
//!
//! ```no_run
//! use std::sync::Arc;
//! use keel_flux::reflector::Reflector;
//! use keel_k8s::PullSecrets;
//! use keel_flux::NamespaceScope;
//! use keel_registry::RegistryClient;
//!
//! # async fn demo() -> Result<(), keel_core::Error> {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! let secrets = PullSecrets::in_namespaces(client.clone(), ["apps"]);
//! secrets.ready().await;
//! let registry = RegistryClient::builder()
//!     .with_credential_source(Arc::new(secrets.clone()))
//!     .build()?;
//! let reflector = Reflector::new(client, NamespaceScope::only(["apps"]), Arc::new(registry))
//!     .with_pull_secrets(secrets);
//! let report = reflector.reconcile(chrono::Utc::now()).await;
//! for repository in &report.repositories {
//!     println!("{}/{}: {:?}", repository.namespace, repository.name, repository.outcome);
//! }
//! # Ok(())
//! # }
//! ```

pub(crate) mod objects;
mod policies;
pub(crate) mod status;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_core::retry::Backoff;
use keel_core::{Error, ImageRef, Registry};
use keel_k8s::error::{Request, from_kube};
use keel_k8s::sync::{NamespaceScope, sort_by_name};
use keel_k8s::{PullSecrets, SecretRef};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use regex::Regex;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::policy::{FluxPolicy, ImagePolicyChoice, TagFilter};
use objects::{
    DigestReflection, LatestRef, Meta, Policy, Repository, access_allowed, parse_duration,
    parse_image,
};
use status::{conditions_with_ready, timestamp, truncate};

/// The API group of Flux's image automation objects.
pub const GROUP: &str = "image.toolkit.fluxcd.io";
/// The version the reflector reads and writes (Flux's storage version); objects created as
/// `v1beta2` are served in it too.
pub const VERSION: &str = "v1";
/// The field manager of the reflector's status writes.
pub const FIELD_MANAGER: &str = "keel";

/// How many tags `status.lastScanResult.latestTags` shows, as Flux.
const LATEST_TAGS: usize = 10;

/// The usage id under which the reflector records the secret of the repository it is talking
/// to in [`PullSecrets`]. The registry client takes the first document with an entry for the
/// registry, in the order of the usage ids; `!` sorts before the ids of workloads
/// (`deployment/...`), so an `ImageRepository`'s own secret comes first.
const CREDENTIAL_USER: &str = "!keel-flux/imagerepository";

/// What a pass did with one object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// `spec.suspend` is true: nothing read from the registry, nothing written.
    Suspended,
    /// An `ImageRepository` scanned recently with an unchanged spec, or waiting to retry a
    /// failed scan: nothing asked of the registry, nothing written.
    NotDue,
    /// An `ImagePolicy` whose status already said what this pass found: nothing written.
    Unchanged,
    /// `Ready` became (or stayed) `True` with this message.
    Ready {
        /// The condition's message.
        message: String,
    },
    /// `Ready` became (or stayed) `False`.
    NotReady {
        /// The condition's reason, e.g. `ReadOperationFailed`.
        reason: String,
        /// The condition's message, with the error.
        message: String,
    },
}

/// One object of a pass and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectReport {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// What the pass did.
    pub outcome: Outcome,
}

/// What one [`Reflector::reconcile`] pass did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReflectorReport {
    /// Every `ImageRepository` of the scope, in namespace and name order.
    pub repositories: Vec<ObjectReport>,
    /// Every `ImagePolicy` of the scope, in namespace and name order.
    pub policies: Vec<ObjectReport>,
    /// Requests to the API server that failed: a listing (the pass then evaluates no policy,
    /// so that none is marked not ready for want of its repository) or a status write.
    pub errors: Vec<Error>,
}

impl ReflectorReport {
    /// The report of the `ImageRepository` `namespace/name`.
    pub fn repository(&self, namespace: &str, name: &str) -> Option<&ObjectReport> {
        find(&self.repositories, namespace, name)
    }

    /// The report of the `ImagePolicy` `namespace/name`.
    pub fn policy(&self, namespace: &str, name: &str) -> Option<&ObjectReport> {
        find(&self.policies, namespace, name)
    }
}

fn find<'r>(reports: &'r [ObjectReport], namespace: &str, name: &str) -> Option<&'r ObjectReport> {
    reports
        .iter()
        .find(|r| r.namespace == namespace && r.name == name)
}

/// The first retry after a failed scan; each further failure doubles it, up to the
/// repository's interval.
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// A failed scan: of which generation and reconcile request, and when to try again.
#[derive(Clone, Debug)]
struct Retry {
    generation: Option<i64>,
    request: Option<String>,
    failures: u32,
    at: DateTime<Utc>,
}

/// The tags of one scanned repository.
#[derive(Clone, Debug)]
struct Scanned {
    /// The tags left by the exclusion list, in descending byte order.
    tags: Vec<String>,
}

/// Scans the repositories of Flux's `ImageRepository` objects and writes the choice of each
/// `ImagePolicy` into its status; see the [module docs](self).
///
/// The tags live in memory, keyed by object; one reflector per process, whose
/// [`reconcile`](Reflector::reconcile) is called on a schedule (every few seconds is fine:
/// a pass that has nothing to do makes no registry request and writes nothing).
pub struct Reflector {
    client: Client,
    namespaces: NamespaceScope,
    registry: Arc<dyn Registry>,
    pull_secrets: Option<PullSecrets>,
    tags: Mutex<HashMap<String, Scanned>>,
    /// Repositories whose last scan failed, by key: when to try again.
    retries: Mutex<HashMap<String, Retry>>,
    /// When each `Always` policy last read its digest, by key, for `spec.interval`.
    digests_read: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Passes run one at a time (the credentials recorded for a scan are the reflector's own).
    pass: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reflector")
            .field("namespaces", &self.namespaces)
            .field("registry", &self.registry.name())
            .field("pull_secrets", &self.pull_secrets.is_some())
            .finish_non_exhaustive()
    }
}

/// Records the secret of the repository being talked to for as long as it lives.
struct CredentialScope<'a>(Option<&'a PullSecrets>);

impl<'a> CredentialScope<'a> {
    fn new(secrets: Option<&'a PullSecrets>, image: &ImageRef, secret: Option<SecretRef>) -> Self {
        if let Some(secrets) = secrets {
            match secret {
                Some(secret) => secrets.set_usage(CREDENTIAL_USER, image, [secret]),
                None => secrets.remove_usage(CREDENTIAL_USER),
            }
        }
        CredentialScope(secrets)
    }
}

impl Drop for CredentialScope<'_> {
    fn drop(&mut self) {
        if let Some(secrets) = self.0 {
            secrets.remove_usage(CREDENTIAL_USER);
        }
    }
}

/// A `Ready` condition to write.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ready {
    ok: bool,
    reason: String,
    message: String,
}

impl Ready {
    fn yes(message: String) -> Ready {
        Ready {
            ok: true,
            reason: "Succeeded".to_owned(),
            message: truncate(&message),
        }
    }

    fn no(reason: &str, message: impl Into<String>) -> Ready {
        Ready {
            ok: false,
            reason: reason.to_owned(),
            message: truncate(&message.into()),
        }
    }

    fn outcome(&self) -> Outcome {
        if self.ok {
            Outcome::Ready {
                message: self.message.clone(),
            }
        } else {
            Outcome::NotReady {
                reason: self.reason.clone(),
                message: self.message.clone(),
            }
        }
    }
}

fn repository_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, "ImageRepository"),
        "imagerepositories",
    )
}

/// `ImagePolicy` in the version the reflector reads and writes.
pub(crate) fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, "ImagePolicy"),
        "imagepolicies",
    )
}

impl Reflector {
    /// A reflector over the objects of `namespaces`, listing tags and reading digests with
    /// `registry`. Without [`with_pull_secrets`](Self::with_pull_secrets), a repository with
    /// a `secretRef` is not scanned (its `Ready` says why).
    pub fn new(client: Client, namespaces: NamespaceScope, registry: Arc<dyn Registry>) -> Self {
        Reflector {
            client,
            namespaces,
            registry,
            pull_secrets: None,
            tags: Mutex::new(HashMap::new()),
            retries: Mutex::new(HashMap::new()),
            digests_read: Mutex::new(HashMap::new()),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads `secretRef` secrets from `secrets`, which must be the credential source of the
    /// registry client and watch the namespaces of the repositories.
    pub fn with_pull_secrets(mut self, secrets: PullSecrets) -> Self {
        self.pull_secrets = Some(secrets);
        self
    }

    /// The tags the last successful scan of the `ImageRepository` `namespace/name` kept (after
    /// the exclusion list), in descending byte order; `None` before its first successful scan.
    pub fn tags(&self, namespace: &str, name: &str) -> Option<Vec<String>> {
        self.tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&format!("{namespace}/{name}"))
            .map(|s| s.tags.clone())
    }

    /// One pass at time `now`: scans the repositories that are due, then evaluates every
    /// policy; see the [module docs](self).
    pub async fn reconcile(&self, now: DateTime<Utc>) -> ReflectorReport {
        let _pass = self.pass.lock().await;
        let mut report = ReflectorReport::default();

        let Some(repositories) = self
            .list_for_pass(
                &repository_resource(),
                "cannot list ImageRepositories; nothing reconciled",
                &mut report,
            )
            .await
        else {
            return report;
        };
        let repositories: Vec<Repository> =
            repositories.iter().filter_map(Repository::read).collect();
        // What deleted repositories left in memory goes.
        let listed: HashSet<String> = repositories.iter().map(|r| r.meta.key()).collect();
        forget_others(&self.tags, &listed);
        forget_others(&self.retries, &listed);
        for repository in &repositories {
            let outcome = self
                .reconcile_repository(repository, now, &mut report)
                .await;
            report.repositories.push(ObjectReport {
                namespace: repository.meta.namespace.clone(),
                name: repository.meta.name.clone(),
                outcome,
            });
        }

        let Some(policies) = self
            .list_for_pass(&policy_resource(), "cannot list ImagePolicies", &mut report)
            .await
        else {
            return report;
        };
        let policies: Vec<Policy> = policies.iter().filter_map(Policy::read).collect();
        let listed: HashSet<String> = policies.iter().map(|p| p.meta.key()).collect();
        forget_others(&self.digests_read, &listed);
        let by_key: HashMap<String, &Repository> =
            repositories.iter().map(|r| (r.meta.key(), r)).collect();
        for policy in &policies {
            let outcome = self
                .reconcile_policy(policy, &by_key, now, &mut report)
                .await;
            report.policies.push(ObjectReport {
                namespace: policy.meta.namespace.clone(),
                name: policy.meta.name.clone(),
                outcome,
            });
        }
        report
    }

    /// [`Self::list`] for a pass, which ends without the objects: `None` once the error is in
    /// `report` and logged with the warning `failed`.
    async fn list_for_pass(
        &self,
        resource: &ApiResource,
        failed: &'static str,
        report: &mut ReflectorReport,
    ) -> Option<Vec<DynamicObject>> {
        match self.list(resource).await {
            Ok(objects) => Some(objects),
            Err(error) => {
                warn!(%error, "{failed}");
                report.errors.push(error);
                None
            }
        }
    }

    /// Every object of `resource` in the scope, sorted by namespace and name.
    async fn list(&self, resource: &ApiResource) -> Result<Vec<DynamicObject>, Error> {
        let mut objects = self
            .namespaces
            .list_objects(&self.client, resource, &ListParams::default())
            .await?;
        sort_by_name(&mut objects);
        Ok(objects)
    }

    /// Whether `repository` must be scanned at `now`, and why.
    fn due(&self, repository: &Repository, now: DateTime<Utc>) -> Option<&'static str> {
        let meta = &repository.meta;
        // After a failure the same spec is tried again with backoff, not on every pass (a
        // registry answering 429 must not be asked more often for it).
        let retry = self
            .retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&meta.key())
            .cloned();
        if let Some(retry) = retry
            && retry.generation == meta.generation
            && retry.request == meta.reconcile_request
        {
            return (retry.at <= now).then_some("retrying a failed scan");
        }
        let scanned = self
            .tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&meta.key());
        if !scanned {
            return Some("no tags in memory");
        }
        let Some(last_scan) = repository.last_scan_time else {
            return Some("never scanned");
        };
        if meta.generation.is_some() && meta.generation != meta.observed_generation {
            return Some("new generation");
        }
        if meta.reconcile_request.is_some() && meta.reconcile_request != meta.last_handled_reconcile
        {
            return Some("reconcile requested");
        }
        if meta.ready().is_none_or(|c| c.status != "True") {
            return Some("not ready");
        }
        // An interval that does not parse is reported by the scan.
        let Some(interval) = repository.interval.as_deref().and_then(parse_duration) else {
            return Some("invalid interval");
        };
        let next = chrono::Duration::from_std(interval)
            .ok()
            .and_then(|i| last_scan.checked_add_signed(i))?;
        (next <= now).then_some("interval elapsed")
    }

    /// Records a failed scan of `repository` at `now` and when to try again.
    fn record_failure(&self, repository: &Repository, now: DateTime<Utc>) {
        let meta = &repository.meta;
        let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        let failures = retries
            .get(&meta.key())
            .filter(|r| r.generation == meta.generation)
            .map_or(1, |r| r.failures.saturating_add(1));
        let cap = repository
            .interval
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(Duration::from_secs(300))
            .max(FIRST_RETRY);
        // Doubling stops at 2^16 times the first retry.
        let wait = Backoff::new(FIRST_RETRY, cap).ceiling(failures.min(17));
        let at = chrono::Duration::from_std(wait)
            .ok()
            .and_then(|w| now.checked_add_signed(w))
            .unwrap_or(now);
        retries.insert(
            meta.key(),
            Retry {
                generation: meta.generation,
                request: meta.reconcile_request.clone(),
                failures,
                at,
            },
        );
    }

    async fn reconcile_repository(
        &self,
        repository: &Repository,
        now: DateTime<Utc>,
        report: &mut ReflectorReport,
    ) -> Outcome {
        let meta = &repository.meta;
        if meta.is_suspended() {
            debug!(repository = %meta.key(), "suspended");
            return Outcome::Suspended;
        }
        let Some(why) = self.due(repository, now) else {
            return Outcome::NotDue;
        };
        debug!(repository = %meta.key(), why, "scanning");
        let mut status = serde_json::Map::new();
        let ready = match self.scan(repository).await {
            Ok(scan) => {
                info!(repository = %meta.key(), tags = scan.tags.len(), "scanned");
                let revision = revision(&scan.tags);
                let message = format!(
                    "successful scan: found {} tags with checksum {revision}",
                    scan.tags.len()
                );
                let latest: Vec<&String> = scan.tags.iter().take(LATEST_TAGS).collect();
                let mut result = json!({
                    "revision": revision,
                    "tagCount": scan.tags.len(),
                    "scanTime": timestamp(now),
                });
                // Null removes the tags of an earlier scan from the merge.
                result["latestTags"] = if latest.is_empty() {
                    Value::Null
                } else {
                    json!(latest)
                };
                status.insert("lastScanResult".into(), result);
                status.insert("canonicalImageName".into(), json!(scan.canonical));
                status.insert("observedExclusionList".into(), json!(scan.exclusion_list));
                if let Some(generation) = meta.generation {
                    status.insert("observedGeneration".into(), json!(generation));
                }
                self.tags
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(meta.key(), Scanned { tags: scan.tags });
                self.retries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&meta.key());
                Ready::yes(message)
            }
            Err(ready) => {
                warn!(repository = %meta.key(), reason = %ready.reason, "{}", ready.message);
                self.record_failure(repository, now);
                let request_pending = meta.reconcile_request.is_some()
                    && meta.reconcile_request != meta.last_handled_reconcile;
                if same_ready(meta, &ready) && !request_pending {
                    return ready.outcome();
                }
                ready
            }
        };
        self.write_status(&repository_resource(), meta, status, &ready, now, report)
            .await;
        ready.outcome()
    }

    /// Lists and filters the tags of `repository`; `Err` is the `Ready` condition saying why
    /// not.
    async fn scan(&self, repository: &Repository) -> Result<ScanResult, Ready> {
        let meta = &repository.meta;
        let image = repository
            .image
            .as_deref()
            .ok_or_else(|| Ready::no("ImageURLInvalid", "spec.image is required"))?;
        let (reference, canonical) =
            parse_image(image).map_err(|e| Ready::no("ImageURLInvalid", e))?;
        let interval = repository
            .interval
            .as_deref()
            .and_then(parse_duration)
            .ok_or_else(|| {
                Ready::no(
                    "IntervalNotConfigured",
                    format!(
                        "spec.interval must be a duration such as 5m or 1h30m, got {}",
                        repository.interval.as_deref().unwrap_or("nothing")
                    ),
                )
            })?;
        let timeout = match repository.timeout.as_deref() {
            Some(text) => parse_duration(text).ok_or_else(|| {
                Ready::no(
                    "ReadOperationFailed",
                    format!("spec.timeout must be a duration such as 30s, got {text}"),
                )
            })?,
            None => interval,
        }
        .max(Duration::from_secs(1));
        let exclusion_list = repository
            .exclusion_list
            .clone()
            .map_err(|e| Ready::no("ReadOperationFailed", format!("scan failed: {e}")))?;
        let exclusions = exclusion_list
            .iter()
            .map(|pattern| {
                Regex::new(pattern).map_err(|e| {
                    Ready::no(
                        "ReadOperationFailed",
                        format!(
                            "scan failed: failed to compile regex {pattern}: {}",
                            one_line(&e.to_string())
                        ),
                    )
                })
            })
            .collect::<Result<Vec<Regex>, Ready>>()?;
        let secret = self.secret_of(repository)?;
        if repository.provider != "generic" {
            debug!(
                repository = %meta.key(),
                provider = %repository.provider,
                "no cloud identity: scanning with the registry client's own credentials"
            );
        }

        let listing = {
            let _credentials = CredentialScope::new(self.pull_secrets.as_ref(), &reference, secret);
            tokio::time::timeout(timeout, self.registry.list_tags(&reference)).await
        };
        let listing = match listing {
            Err(_) => {
                return Err(Ready::no(
                    "ReadOperationFailed",
                    format!(
                        "scan failed: no answer from the registry within {}s",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(error)) => return Err(registry_failure("scan failed", &error)),
            Ok(Ok(listing)) => listing,
        };
        // A list cut short may lack the newest tags: no policy decides from it, and the
        // tags of the last full scan are kept, as after any failed scan.
        if listing.truncated {
            return Err(Ready::no(
                "ReadOperationFailed",
                format!(
                    "scan failed: the registry client stopped listing at its budget after {} \
                     tags, and nothing is decided from a partial list",
                    listing.tags.len()
                ),
            ));
        }
        let mut tags: Vec<String> = listing
            .tags
            .into_iter()
            .filter(|tag| !exclusions.iter().any(|re| re.is_match(tag)))
            .collect();
        tags.sort_by(|a, b| b.cmp(a));
        tags.dedup();
        Ok(ScanResult {
            canonical,
            exclusion_list,
            tags,
        })
    }

    /// The secret `spec.secretRef` names, checked to be readable; `Err` when it cannot be used.
    fn secret_of(&self, repository: &Repository) -> Result<Option<SecretRef>, Ready> {
        let Some(name) = &repository.secret else {
            return Ok(None);
        };
        let secret = SecretRef::new(repository.meta.namespace.clone(), name.clone());
        let Some(secrets) = &self.pull_secrets else {
            return Err(Ready::no(
                "AuthenticationFailed",
                format!(
                    "failed to configure authentication options: spec.secretRef names the \
                     secret {secret}, but this reflector reads no pull secrets (build it with \
                     Reflector::with_pull_secrets)"
                ),
            ));
        };
        if secrets.document(&secret).is_none() {
            return Err(Ready::no(
                "AuthenticationFailed",
                format!(
                    "failed to configure authentication options: secret {secret} not found, or \
                     not of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg, or \
                     outside the namespaces the pull secrets are watched in"
                ),
            ));
        }
        Ok(Some(secret))
    }

    /// Merge-patches `status` plus the `Ready` condition (and `lastHandledReconcileAt`) into
    /// the status subresource of the object `meta` describes.
    async fn write_status(
        &self,
        resource: &ApiResource,
        meta: &Meta,
        mut status: serde_json::Map<String, Value>,
        ready: &Ready,
        now: DateTime<Utc>,
        report: &mut ReflectorReport,
    ) {
        let conditions = conditions_with_ready(
            &meta.conditions,
            ready.ok,
            &ready.reason,
            &ready.message,
            meta.generation,
            now,
        );
        status.insert("conditions".into(), json!(conditions));
        if let Some(request) = &meta.reconcile_request {
            status.insert("lastHandledReconcileAt".into(), json!(request));
        }
        if let Err(error) = patch_status(&self.client, resource, meta, status).await {
            warn!(object = %meta.key(), %error, "cannot write the status");
            report.errors.push(error);
        }
    }
}

/// Merge-patches `status` into the status subresource of the object `meta` describes, with
/// the field manager `keel`.
pub(crate) async fn patch_status(
    client: &Client,
    resource: &ApiResource,
    meta: &Meta,
    status: serde_json::Map<String, Value>,
) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &meta.namespace, resource);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({ "status": status }));
    match api.patch_status(&meta.name, &params, &patch).await {
        Ok(_) => Ok(()),
        Err(error) => Err(from_kube(
            error,
            &Request {
                verb: "patch",
                resource: &format!("{}/status", resource.plural),
                namespace: Some(&meta.namespace),
                name: Some(&meta.name),
            },
        )),
    }
}

/// The outcome of a successful scan.
struct ScanResult {
    canonical: String,
    exclusion_list: Vec<String>,
    tags: Vec<String>,
}

/// Drops the entries of `memory` whose keys are not `listed`.
fn forget_others<V>(memory: &Mutex<HashMap<String, V>>, listed: &HashSet<String>) {
    memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|key, _| listed.contains(key));
}

/// Whether the object's `Ready` condition already says what `ready` says.
fn same_ready(meta: &Meta, ready: &Ready) -> bool {
    meta.ready().is_some_and(|c| {
        (c.status == "True") == ready.ok && c.reason == ready.reason && c.message == ready.message
    })
}

/// The `Ready` condition for a registry error: credentials refused are
/// `AuthenticationFailed`, the rest `ReadOperationFailed`.
fn registry_failure(context: &str, error: &Error) -> Ready {
    let reason = match error {
        Error::Unauthorized { .. } => "AuthenticationFailed",
        _ => "ReadOperationFailed",
    };
    Ready::no(reason, format!("{context}: {error}"))
}

/// `text` with each run of whitespace (the line breaks of a regex error) as one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A stable checksum of the tags (in the order kept): Adler-32 of their JSON array, as Flux's
/// default tag database computes `lastScanResult.revision`.
fn revision(tags: &[String]) -> String {
    let json = serde_json::to_vec(tags).unwrap_or_default();
    let (mut a, mut b) = (1u32, 0u32);
    for byte in json {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    ((b << 16) | a).to_string()
}

#[cfg(test)]
mod tests {
    use super::policies::ready_message;
    use super::*;

    #[test]
    fn revision_is_adler32_of_the_json_array() {
        // Adler-32 of `["b","a"]`, computed independently.
        assert_eq!(revision(&["b".into(), "a".into()]), "183370288");
        assert_eq!(revision(&[]), revision(&[]));
        assert_ne!(revision(&["a".into()]), revision(&["b".into()]));
    }

    #[test]
    fn ready_message_names_the_previous_choice() {
        let old = LatestRef {
            name: "ghcr.io/acme/web".into(),
            tag: "1.0.0".into(),
            digest: String::new(),
        };
        let new = LatestRef {
            tag: "1.1.0".into(),
            digest: "sha256:ab".into(),
            ..old.clone()
        };
        assert_eq!(
            ready_message(&new, Some(&old)),
            "Latest image tag for ghcr.io/acme/web resolved to 1.1.0 with digest sha256:ab \
             (previously ghcr.io/acme/web:1.0.0)"
        );
        assert_eq!(
            ready_message(&old, Some(&old)),
            "Latest image tag for ghcr.io/acme/web resolved to 1.0.0"
        );
    }

    #[test]
    fn registry_errors_map_to_flux_reasons() {
        let denied = Error::Unauthorized {
            action: "list tags".into(),
            reason: "bad password".into(),
        };
        assert_eq!(
            registry_failure("scan failed", &denied).reason,
            "AuthenticationFailed"
        );
        let gone = Error::not_found("repository x");
        let ready = registry_failure("scan failed", &gone);
        assert_eq!(ready.reason, "ReadOperationFailed");
        assert_eq!(ready.message, "scan failed: repository x not found");
    }
}
