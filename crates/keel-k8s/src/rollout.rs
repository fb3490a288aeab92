//! Rollout progress from a workload's status, and rollback to the previous image.
//!
//! [`RolloutStatus`] reads the same fields and applies the same rules as `kubectl rollout
//! status`: the controller must have observed the current generation; every desired replica
//! must run the new template and be available (ready, for a StatefulSet) with no old replica
//! left; a Deployment whose `Progressing` condition says `ProgressDeadlineExceeded` has
//! failed. An OpenShift DeploymentConfig is read the same way from its own status and
//! conditions ([`RolloutStatus::of_deployment_config`]). [`watch_rollout`] follows one
//! workload with a watch until its rollout completes, fails or a deadline passes, and
//! [`rollback`] restores a container's previous image when it did not complete.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), keel_core::Error> {
//! use std::time::Duration;
//! use keel_k8s::rollout::{WorkloadRef, rollback, watch_rollout};
//! use keel_k8s::WorkloadKind;
//!
//! let web = WorkloadRef::new(WorkloadKind::Deployment, "shop", "web");
//! let status = watch_rollout(&client, &web, Duration::from_secs(300)).await?;
//! if !status.complete {
//!     let why = status.failed_reason.clone().unwrap_or_default();
//!     rollback(&client, &web, "app", "ghcr.io/acme/web:1.5.0", "ghcr.io/acme/web:1.4.2", &why)
//!         .await?;
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use keel_core::{ApplyOutcome, Error};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use crate::error::{BACKEND, Request, from_kube, from_status, is_conflict};
use crate::openshift::DeploymentConfig;
use crate::workload::{Workload, WorkloadKind};

/// The annotation a rollback leaves on the workload: when, what was restored, and why.
pub const ROLLBACK_ANNOTATION: &str = "keel.sh/rollback";

/// One workload by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadRef {
    /// Its kind; rollouts are tracked for Deployments, StatefulSets, DaemonSets and
    /// DeploymentConfigs.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl WorkloadRef {
    /// The workload `name` of `kind` in `namespace`.
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        WorkloadRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn request<'a>(&'a self, verb: &'a str) -> Request<'a> {
        Request::workload(verb, self.kind, &self.namespace, &self.name)
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// How far a workload's rollout got, as its status reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RolloutStatus {
    /// Replicas wanted (`spec.replicas`; for a DaemonSet, the nodes it should run on).
    pub desired: i32,
    /// Replicas running the current pod template.
    pub updated: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Replicas available (ready for `minReadySeconds`). StatefulSets on servers that do not
    /// report it count ready replicas.
    pub available: i32,
    /// Whether the controller has seen the latest spec (`observedGeneration >= generation`);
    /// until it has, the other numbers describe the previous spec.
    pub observed_generation_current: bool,
    /// Whether the rollout is done: every desired replica updated and available, none old.
    pub complete: bool,
    /// Why the rollout is considered failed: the Deployment exceeded its progress deadline,
    /// or [`watch_rollout`]'s own deadline passed. `None` while it may still complete.
    pub failed_reason: Option<String>,
    /// What the rollout waits for, in `kubectl rollout status` words; empty once complete.
    pub waiting_for: String,
}

impl RolloutStatus {
    /// Whether the rollout failed (see [`failed_reason`](Self::failed_reason)).
    pub fn failed(&self) -> bool {
        self.failed_reason.is_some()
    }

    /// The status of a rollout of `kind` with these `[desired, updated, ready, available]`
    /// replicas, before the checks of its kind; waiting for the controller to observe the spec
    /// while it has not (`observed` false), as the counts then describe the previous spec.
    fn counted(kind: &str, observed: bool, [desired, updated, ready, available]: [i32; 4]) -> Self {
        let base = RolloutStatus {
            desired,
            updated,
            ready,
            available,
            observed_generation_current: observed,
            ..Default::default()
        };
        if observed {
            base
        } else {
            base.waiting(format!("the {kind} spec update to be observed"))
        }
    }

    fn waiting(mut self, why: String) -> Self {
        self.waiting_for = why;
        self
    }

    fn done(mut self) -> Self {
        self.complete = true;
        self.waiting_for.clear();
        self
    }

    /// The rest of a Deployment-like rollout once the spec is observed and nothing failed:
    /// every desired replica updated, no old one left of the `total`, every updated one
    /// available.
    fn by_replicas(self, total: i32) -> Self {
        let (desired, updated, available) = (self.desired, self.updated, self.available);
        if updated < desired {
            self.waiting(format!("{updated} of {desired} new replicas to be updated"))
        } else if total > updated {
            self.waiting(format!("{} old replicas to terminate", total - updated))
        } else if available < updated {
            self.waiting(format!(
                "{available} of {updated} updated replicas to be available"
            ))
        } else {
            self.done()
        }
    }

    /// The status of a Deployment.
    pub fn of_deployment(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let status = d.status.clone().unwrap_or_default();
        let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
        let updated = status.updated_replicas.unwrap_or(0);
        let total = status.replicas.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        let observed = generation_observed(d.metadata.generation, status.observed_generation);
        let ready = status.ready_replicas.unwrap_or(0);
        let base =
            RolloutStatus::counted("deployment", observed, [desired, updated, ready, available]);
        if !observed {
            return base;
        }
        let deadline_exceeded = status.conditions.iter().flatten().find(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        if let Some(c) = deadline_exceeded {
            let message = c.message.clone().unwrap_or_default();
            return RolloutStatus {
                failed_reason: Some(format!(
                    "deployment {} exceeded its progress deadline: {message}",
                    d.name_any()
                )),
                ..base
            }
            .waiting("a rollout that exceeded its progress deadline".into());
        }
        base.by_replicas(total)
    }

    /// The status of an OpenShift DeploymentConfig (`apps.openshift.io/v1`), read from its
    /// own status as `oc rollout status` does: the controller must have observed the current
    /// generation; every desired replica must run the latest version and be available, with
    /// no old replica left; a `Progressing` condition with the reason
    /// `ProgressDeadlineExceeded` (or `RolloutCancelled`) means it failed. Fields of the
    /// wrong shape count as absent.
    pub fn of_deployment_config(dc: &DynamicObject) -> Self {
        let number = |pointer: &str| dc.data.pointer(pointer).and_then(serde_json::Value::as_i64);
        let count = |pointer: &str| {
            number(pointer)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0)
        };
        let desired = number("/spec/replicas")
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(1);
        let updated = count("/status/updatedReplicas");
        let total = count("/status/replicas");
        let available = count("/status/availableReplicas");
        let observed =
            generation_observed(dc.metadata.generation, number("/status/observedGeneration"));
        let ready = count("/status/readyReplicas");
        let base = RolloutStatus::counted(
            "deploymentconfig",
            observed,
            [desired, updated, ready, available],
        );
        if !observed {
            return base;
        }
        let conditions = dc
            .data
            .pointer("/status/conditions")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let failed = conditions.iter().find(|c| {
            c.get("type").and_then(serde_json::Value::as_str) == Some("Progressing")
                && matches!(
                    c.get("reason").and_then(serde_json::Value::as_str),
                    Some("ProgressDeadlineExceeded" | "RolloutCancelled")
                )
        });
        if let Some(c) = failed {
            let text = |key: &str| c.get(key).and_then(serde_json::Value::as_str).unwrap_or("");
            return RolloutStatus {
                failed_reason: Some(format!(
                    "deploymentconfig {} did not roll out ({}): {}",
                    dc.name_any(),
                    text("reason"),
                    text("message")
                )),
                ..base
            }
            .waiting("a rollout that failed".into());
        }
        base.by_replicas(total)
    }

    /// The status of a StatefulSet; `Err` names why its rollout cannot be tracked (the
    /// `OnDelete` update strategy, which rolls nothing out by itself).
    pub fn of_stateful_set(s: &StatefulSet) -> Result<Self, Error> {
        let spec = s.spec.clone().unwrap_or_default();
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        rolling_update(strategy.type_.as_deref(), || {
            format!("kubernetes statefulset {}", s.name_any())
        })?;
        let status = s.status.clone().unwrap_or_default();
        let desired = spec.replicas.unwrap_or(1);
        let updated = status.updated_replicas.unwrap_or(0);
        let ready = status.ready_replicas.unwrap_or(0);
        let observed = generation_observed(s.metadata.generation, status.observed_generation)
            && status.observed_generation.unwrap_or(0) > 0;
        let available = status.available_replicas.unwrap_or(ready);
        let base = RolloutStatus::counted(
            "statefulset",
            observed,
            [desired, updated, ready, available],
        );
        if !observed {
            return Ok(base);
        }
        if ready < desired {
            return Ok(base.waiting(format!("{ready} of {desired} pods to be ready")));
        }
        let partition = strategy
            .rolling_update
            .and_then(|r| r.partition)
            .unwrap_or(0);
        if partition > 0 {
            let want = (status.replicas - partition).max(0);
            return Ok(if updated < want {
                base.waiting(format!(
                    "{updated} of {want} partitioned pods to be updated"
                ))
            } else {
                base.done()
            });
        }
        if status.update_revision.is_some() && status.update_revision != status.current_revision {
            return Ok(base.waiting(format!(
                "{updated} of {desired} pods to run revision {}",
                status.update_revision.unwrap_or_default()
            )));
        }
        Ok(base.done())
    }

    /// The status of a DaemonSet; `Err` for the `OnDelete` update strategy.
    pub fn of_daemon_set(d: &DaemonSet) -> Result<Self, Error> {
        let strategy = d
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref());
        rolling_update(strategy, || {
            format!("kubernetes daemonset {}", d.name_any())
        })?;
        let status = d.status.clone().unwrap_or_default();
        let desired = status.desired_number_scheduled;
        let updated = status.updated_number_scheduled.unwrap_or(0);
        let available = status.number_available.unwrap_or(0);
        let observed = generation_observed(d.metadata.generation, status.observed_generation);
        let ready = status.number_ready;
        let base =
            RolloutStatus::counted("daemonset", observed, [desired, updated, ready, available]);
        if !observed {
            Ok(base)
        } else if updated < desired {
            Ok(base.waiting(format!(
                "{updated} of {desired} updated pods to be scheduled"
            )))
        } else if available < desired {
            Ok(base.waiting(format!(
                "{available} of {desired} updated pods to be available"
            )))
        } else {
            Ok(base.done())
        }
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.failed_reason {
            write!(f, "failed: {reason}")
        } else if self.complete {
            write!(
                f,
                "complete: {} of {} replicas available",
                self.available, self.desired
            )
        } else {
            write!(f, "waiting for {}", self.waiting_for)
        }
    }
}

/// `Err` unless the update strategy (`None`: the default) is `RollingUpdate`: `OnDelete`
/// rolls nothing out by itself, so there is no rollout to track; `workload` names it.
fn rolling_update(strategy: Option<&str>, workload: impl FnOnce() -> String) -> Result<(), Error> {
    match strategy.unwrap_or("RollingUpdate") {
        "RollingUpdate" => Ok(()),
        _ => Err(Error::not_supported(
            "rollout status with the OnDelete update strategy",
            workload(),
        )),
    }
}

fn generation_observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// The workloads rollouts are tracked for.
trait RolloutObject: Workload {
    fn rollout_status(&self) -> Result<RolloutStatus, Error>;
}

impl RolloutObject for Deployment {
    fn rollout_status(&self) -> Result<RolloutStatus, Error> {
        Ok(RolloutStatus::of_deployment(self))
    }
}

impl RolloutObject for StatefulSet {
    fn rollout_status(&self) -> Result<RolloutStatus, Error> {
        RolloutStatus::of_stateful_set(self)
    }
}

impl RolloutObject for DaemonSet {
    fn rollout_status(&self) -> Result<RolloutStatus, Error> {
        RolloutStatus::of_daemon_set(self)
    }
}

impl RolloutObject for DeploymentConfig {
    fn rollout_status(&self) -> Result<RolloutStatus, Error> {
        Ok(RolloutStatus::of_deployment_config(&self.0))
    }
}

fn unsupported(workload: &WorkloadRef, operation: &'static str) -> Error {
    Error::not_supported(operation, format!("kubernetes {}", workload.kind))
}

/// Reads the rollout status of `workload` once.
///
/// # Errors
/// [`Error::NotFound`] for a missing workload; [`Error::NotSupported`] for a CronJob or an
/// `OnDelete` update strategy; API errors as [`Error`] variants.
pub async fn rollout_status(
    client: &Client,
    workload: &WorkloadRef,
) -> Result<RolloutStatus, Error> {
    match workload.kind {
        WorkloadKind::Deployment => status_once::<Deployment>(client, workload).await,
        WorkloadKind::StatefulSet => status_once::<StatefulSet>(client, workload).await,
        WorkloadKind::DaemonSet => status_once::<DaemonSet>(client, workload).await,
        WorkloadKind::DeploymentConfig => status_once::<DeploymentConfig>(client, workload).await,
        _ => Err(unsupported(workload, "rollout status")),
    }
}

async fn status_once<K: RolloutObject>(
    client: &Client,
    workload: &WorkloadRef,
) -> Result<RolloutStatus, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), &workload.namespace);
    let object = api
        .get(&workload.name)
        .await
        .map_err(|e| from_kube(e, &workload.request("get")))?;
    object.rollout_status()
}

/// Follows the rollout of `workload` with a watch until it completes, fails (a Deployment's
/// progress deadline), or `deadline` passes; returns the last status seen. When the deadline
/// passed first, [`RolloutStatus::failed_reason`] says so and what the rollout waited for.
///
/// # Errors
/// [`Error::NotFound`] when the workload does not exist or is deleted meanwhile;
/// [`Error::NotSupported`] for a CronJob or an `OnDelete` update strategy;
/// [`Error::Unauthorized`] when the watch is refused; [`Error::Backend`] when no status could
/// be read at all before the deadline.
pub async fn watch_rollout(
    client: &Client,
    workload: &WorkloadRef,
    deadline: Duration,
) -> Result<RolloutStatus, Error> {
    let span = tracing::info_span!("watch rollout", workload = %workload);
    let status = async {
        match workload.kind {
            WorkloadKind::Deployment => follow::<Deployment>(client, workload, deadline).await,
            WorkloadKind::StatefulSet => follow::<StatefulSet>(client, workload, deadline).await,
            WorkloadKind::DaemonSet => follow::<DaemonSet>(client, workload, deadline).await,
            WorkloadKind::DeploymentConfig => {
                follow::<DeploymentConfig>(client, workload, deadline).await
            }
            _ => Err(unsupported(workload, "rollout status")),
        }
    }
    .instrument(span)
    .await?;
    if status.complete {
        tracing::info!(workload = %workload, "rollout complete");
    } else {
        tracing::warn!(workload = %workload, status = %status, "rollout did not complete");
    }
    Ok(status)
}

async fn follow<K: RolloutObject>(
    client: &Client,
    workload: &WorkloadRef,
    deadline: Duration,
) -> Result<RolloutStatus, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), &workload.namespace);
    let until = tokio::time::Instant::now() + deadline;
    let mut events = watcher::watch_object(api, &workload.name)
        .default_backoff()
        .boxed();
    let mut last: Option<RolloutStatus> = None;
    let mut last_error: Option<String> = None;
    loop {
        let event = match tokio::time::timeout_at(until, events.next()).await {
            Ok(Some(event)) => event,
            // The watch stream never ends by itself; treat an end like the deadline.
            Ok(None) | Err(_) => break,
        };
        match event {
            Ok(Some(object)) => {
                let status = object.rollout_status()?;
                tracing::debug!(workload = %workload, status = %status, "rollout progress");
                if status.complete || status.failed() {
                    return Ok(status);
                }
                last = Some(status);
            }
            Ok(None) => {
                return Err(Error::not_found(format!(
                    "{} {}/{}",
                    workload.kind.plural(),
                    workload.namespace,
                    workload.name
                )));
            }
            Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
            | Err(watcher::Error::WatchStartFailed(kube::Error::Api(status)))
                if matches!(status.code, 401 | 403 | 404) =>
            {
                return Err(from_status(&status, &workload.request("watch")));
            }
            Err(e) => {
                tracing::warn!(workload = %workload, error = %e, "watch of rollout failed; retrying");
                last_error = Some(e.to_string());
            }
        }
    }
    match last {
        Some(mut status) => {
            status.failed_reason = Some(format!(
                "{workload} did not complete its rollout within {}s, waiting for {}",
                deadline.as_secs_f64(),
                status.waiting_for
            ));
            Ok(status)
        }
        None => Err(Error::Backend {
            backend: BACKEND.into(),
            action: workload.request("watch").action(),
            message: format!(
                "no status within {}s{}",
                deadline.as_secs_f64(),
                last_error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
            retryable: true,
            source: None,
        }),
    }
}

/// Restores `previous_image` on `container` (or init container) of `workload`, which runs
/// `failed_image` now, and records why in the [`ROLLBACK_ANNOTATION`] annotation.
///
/// The patch carries the `resourceVersion` it was computed from, so it cannot overwrite a
/// change made meanwhile; on a conflict it re-reads and tries again. A container that
/// already runs `previous_image` is left alone ([`ApplyOutcome::AlreadyCurrent`]).
///
/// # Errors
/// [`Error::Conflict`] when the container runs neither image (someone else changed it; a
/// rollback would undo their change) or the workload kept changing under the patch;
/// [`Error::NotFound`] for a missing workload or container; [`Error::NotSupported`] for a
/// CronJob; API errors as [`Error`] variants.
pub async fn rollback(
    client: &Client,
    workload: &WorkloadRef,
    container: &str,
    failed_image: &str,
    previous_image: &str,
    reason: &str,
) -> Result<ApplyOutcome, Error> {
    let change = ImageChange {
        container,
        failed_image,
        previous_image,
        reason,
    };
    let outcome = match workload.kind {
        WorkloadKind::Deployment => restore::<Deployment>(client, workload, &change).await?,
        WorkloadKind::StatefulSet => restore::<StatefulSet>(client, workload, &change).await?,
        WorkloadKind::DaemonSet => restore::<DaemonSet>(client, workload, &change).await?,
        WorkloadKind::DeploymentConfig => {
            restore::<DeploymentConfig>(client, workload, &change).await?
        }
        _ => return Err(unsupported(workload, "rollback")),
    };
    if outcome == ApplyOutcome::Applied {
        tracing::warn!(workload = %workload, container, from = failed_image, to = previous_image,
            reason, "rolled back");
    }
    Ok(outcome)
}

struct ImageChange<'a> {
    container: &'a str,
    failed_image: &'a str,
    previous_image: &'a str,
    reason: &'a str,
}

/// How many times a rollback re-reads the workload after a conflicting write.
const CONFLICT_RETRIES: usize = 5;

async fn restore<K: RolloutObject>(
    client: &Client,
    workload: &WorkloadRef,
    change: &ImageChange<'_>,
) -> Result<ApplyOutcome, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), &workload.namespace);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let object = api
            .get(&workload.name)
            .await
            .map_err(|e| from_kube(e, &workload.request("get")))?;
        let view = object.view();
        let found = view
            .container(change.container, false)
            .or_else(|| view.container(change.container, true));
        let Some(found) = found else {
            return Err(Error::not_found(format!(
                "container {} of {workload}",
                change.container
            )));
        };
        let list = if found.init {
            "initContainers"
        } else {
            "containers"
        };
        let running = found.image.clone().unwrap_or_default();
        if running == change.previous_image {
            return Ok(ApplyOutcome::AlreadyCurrent);
        }
        if running != change.failed_image {
            return Err(Error::Conflict {
                action: format!("roll back container {} of {workload}", change.container),
                reason: format!(
                    "it runs {running}, not the failed image {}; not undoing that change",
                    change.failed_image
                ),
            });
        }
        let note = format!(
            "{}: container {} restored to {} (from {}): {}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            change.container,
            change.previous_image,
            change.failed_image,
            change.reason
        );
        let failed = crate::avoid::record_failed(
            object.annotations().get(crate::avoid::FAILED_ANNOTATION),
            change.container,
            change.failed_image,
        );
        let body = json!({
            "metadata": {
                "resourceVersion": object.resource_version(),
                "annotations": {
                    ROLLBACK_ANNOTATION: note,
                    crate::avoid::FAILED_ANNOTATION: failed,
                },
            },
            "spec": { "template": { "spec": {
                list: [{ "name": change.container, "image": change.previous_image }],
            }}},
        });
        let sent = if K::KIND.is_openshift() {
            // The same change as a JSON patch, with the `resourceVersion` read.
            let ops = serde_json::to_value(&object)
                .map_err(|e| e.to_string())
                .and_then(|current| crate::openshift::json_patch_of(&current, &body))
                .and_then(|ops| {
                    serde_json::from_value(serde_json::Value::Array(ops)).map_err(|e| e.to_string())
                })
                .map_err(|reason| Error::Conflict {
                    action: format!("roll back container {} of {workload}", change.container),
                    reason,
                })?;
            api.patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::<()>::Json(ops),
            )
            .await
        } else {
            api.patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::Strategic(&body),
            )
            .await
        };
        match sent {
            Ok(_) => return Ok(ApplyOutcome::Applied),
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => {
                tracing::debug!(workload = %workload, attempt, "rollback conflicted; re-reading");
            }
            Err(e) => return Err(from_kube(e, &workload.request("patch"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop", "generation": generation },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "spec": { "containers": [{ "name": "app", "image": "x:1" }] } },
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn deployment_follows_kubectl_rules() {
        let stale = deployment(
            2,
            3,
            json!({ "observedGeneration": 1, "replicas": 3,
            "updatedReplicas": 3, "availableReplicas": 3 }),
        );
        let s = RolloutStatus::of_deployment(&stale);
        assert!(!s.observed_generation_current && !s.complete);

        let partial = deployment(
            2,
            3,
            json!({ "observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1 }),
        );
        let s = RolloutStatus::of_deployment(&partial);
        assert!(!s.complete);
        assert_eq!(s.waiting_for, "1 of 3 new replicas to be updated");

        let old_left = deployment(
            2,
            3,
            json!({ "observedGeneration": 2, "replicas": 4,
            "updatedReplicas": 3, "availableReplicas": 3 }),
        );
        assert_eq!(
            RolloutStatus::of_deployment(&old_left).waiting_for,
            "1 old replicas to terminate"
        );

        let unavailable = deployment(
            2,
            3,
            json!({ "observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "availableReplicas": 2 }),
        );
        assert!(!RolloutStatus::of_deployment(&unavailable).complete);

        let done = deployment(
            2,
            3,
            json!({ "observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3 }),
        );
        let s = RolloutStatus::of_deployment(&done);
        assert!(s.complete && !s.failed(), "{s}");
        assert_eq!((s.desired, s.updated, s.ready, s.available), (3, 3, 3, 3));

        let stuck = deployment(
            2,
            3,
            json!({ "observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 1, "conditions": [{ "type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet web-2 has timed out" }] }),
        );
        let s = RolloutStatus::of_deployment(&stuck);
        assert!(s.failed() && !s.complete);
        assert!(s.to_string().contains("has timed out"), "{s}");
    }

    #[test]
    fn statefulset_waits_for_ready_pods_and_revision() {
        let set = |status: serde_json::Value, partition: Option<i32>| -> StatefulSet {
            serde_json::from_value(json!({
                "metadata": { "name": "db", "generation": 3 },
                "spec": {
                    "replicas": 2, "serviceName": "db",
                    "selector": { "matchLabels": { "app": "db" } },
                    "template": { "spec": { "containers": [] } },
                    "updateStrategy": { "type": "RollingUpdate",
                        "rollingUpdate": { "partition": partition } },
                },
                "status": status,
            }))
            .unwrap()
        };
        let rolling = set(
            json!({ "observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
            "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2" }),
            None,
        );
        let s = RolloutStatus::of_stateful_set(&rolling).unwrap();
        assert!(!s.complete);
        assert_eq!(s.available, 2, "ready replicas stand in for available ones");
        let done = set(
            json!({ "observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
            "updatedReplicas": 2, "currentRevision": "db-2", "updateRevision": "db-2" }),
            None,
        );
        assert!(RolloutStatus::of_stateful_set(&done).unwrap().complete);
        let partitioned = set(
            json!({ "observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
            "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2" }),
            Some(1),
        );
        assert!(
            RolloutStatus::of_stateful_set(&partitioned)
                .unwrap()
                .complete
        );
    }

    #[test]
    fn on_delete_strategies_are_not_supported() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": { "name": "agent" },
            "spec": { "selector": {}, "template": {}, "updateStrategy": { "type": "OnDelete" } },
        }))
        .unwrap();
        let e = RolloutStatus::of_daemon_set(&ds).unwrap_err();
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
        assert!(e.to_string().contains("OnDelete"), "{e}");
    }

    #[test]
    fn daemonset_counts_scheduled_pods() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": { "name": "agent", "generation": 1 },
            "spec": { "selector": {}, "template": {} },
            "status": { "observedGeneration": 1, "desiredNumberScheduled": 3,
                "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3,
                "updatedNumberScheduled": 3, "numberAvailable": 2 },
        }))
        .unwrap();
        let s = RolloutStatus::of_daemon_set(&ds).unwrap();
        assert!(!s.complete);
        assert_eq!(s.waiting_for, "2 of 3 updated pods to be available");
    }
}

#[cfg(test)]
mod deployment_config_tests {
    use super::*;

    fn dc(
        generation: i64,
        replicas: serde_json::Value,
        status: serde_json::Value,
    ) -> RolloutStatus {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
            "metadata": { "name": "web", "namespace": "shop", "generation": generation },
            "spec": { "replicas": replicas },
            "status": status,
        }))
        .unwrap();
        RolloutStatus::of_deployment_config(&object)
    }

    #[test]
    fn deployment_configs_follow_oc_rollout_status() {
        let unobserved = dc(2, json!(2), json!({ "observedGeneration": 1 }));
        assert!(!unobserved.complete && !unobserved.observed_generation_current);
        let rolling = dc(
            2,
            json!(2),
            json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2 }),
        );
        assert_eq!(rolling.waiting_for, "1 old replicas to terminate");
        let done = dc(
            2,
            json!(2),
            json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                    "conditions": [{ "type": "Progressing", "status": "True",
                                     "reason": "NewReplicationControllerAvailable" }] }),
        );
        assert!(done.complete && !done.failed(), "{done}");
        let failed = dc(
            2,
            json!(2),
            json!({ "observedGeneration": 2, "updatedReplicas": 0,
                    "conditions": [{ "type": "Progressing", "status": "False",
                                     "reason": "ProgressDeadlineExceeded", "message": "web-2 timed out" }] }),
        );
        assert!(!failed.complete);
        assert!(
            failed
                .failed_reason
                .as_deref()
                .unwrap()
                .contains("web-2 timed out")
        );
    }

    #[test]
    fn odd_statuses_are_not_complete_and_do_not_panic() {
        for status in [
            json!(null),
            json!("x"),
            json!({ "conditions": 3, "replicas": "two" }),
        ] {
            let s = dc(1, json!("many"), status.clone());
            assert!(!s.complete, "{status}");
        }
        let huge = dc(
            1,
            json!(1),
            json!({ "observedGeneration": 1, "updatedReplicas": i64::MAX }),
        );
        assert_eq!(huge.updated, 0);
    }
}
