//! Applying plans: one `helm upgrade` per release, from the deployed chart and values; and
//! following the rollout an upgrade started, with `helm rollback` when it fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use keel_core::target::{ApplyOutcome, UpdatePlan};
use keel_core::{Error, ImageRef};
use keel_k8s::RolloutVerdict;
use keel_k8s::WorkloadKind;
use keel_k8s::avoid::FAILED_ANNOTATION;
use keel_k8s::error::{self as kerr, Request};
use keel_k8s::rollout::{WorkloadRef, watch_rollout};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{HelmTarget, ReleaseId, tracked_id};
use crate::chart;
use crate::config;
use crate::helm::BACKEND;
use crate::release::{self, OWNER_SELECTOR, Release, Status};
use crate::storage::{Driver, StorageObject, Stored};

/// A release as its storage holds it now, read at apply time (not from the cache).
struct Fresh {
    driver: Driver,
    /// The deployed revision, decoded whole.
    deployed: Release,
    /// Its storage object.
    object: Stored,
    /// Every revision's storage object (status and version).
    all: Vec<Stored>,
}

impl Fresh {
    fn newer(&self, status: Status) -> Option<&Stored> {
        self.all
            .iter()
            .filter(|s| s.status == status && s.version > self.deployed.version)
            .max_by_key(|s| s.version)
    }
}

fn helm_error(action: &str, message: impl Into<String>) -> Error {
    Error::Backend {
        backend: BACKEND.to_owned(),
        action: action.to_owned(),
        message: message.into(),
        retryable: false,
        source: None,
    }
}

impl HelmTarget {
    /// Reads the storage objects of `release` in `namespace` and decodes the deployed one.
    async fn read_fresh(&self, namespace: &str, release: &str) -> Result<Fresh, Error> {
        let client = &self.inner.client;
        let params = ListParams::default().labels(&format!("{OWNER_SELECTOR},name={release}"));
        let mut all = Vec::new();
        for driver in &self.inner.drivers {
            let request = Request {
                verb: "list",
                resource: driver.resource(),
                namespace: Some(namespace),
                name: None,
            };
            let listed = match driver {
                Driver::Secret => list_stored::<Secret>(client, namespace, &params).await,
                Driver::ConfigMap => list_stored::<ConfigMap>(client, namespace, &params).await,
            };
            all.extend(listed.map_err(|e| kerr::from_kube(e, &request))?);
        }
        let mut object = all
            .iter()
            .filter(|s| s.status == Status::Deployed)
            .max_by_key(|s| s.version)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "a deployed revision of helm release {namespace}/{release}"
                ))
            })?;
        let data = object.data.take().unwrap_or_default();
        let deployed = release::decode(&data).map_err(|reason| {
            helm_error(
                &format!("read helm release {namespace}/{release}"),
                format!("revision {}: {reason}", object.version),
            )
        })?;
        for stored in &mut all {
            stored.data = None;
        }
        Ok(Fresh {
            driver: object.driver,
            deployed,
            object,
            all,
        })
    }

    /// Applies `plans`, one upgrade per release; one result per plan, in order.
    pub(super) async fn apply_plans(
        &self,
        plans: &[UpdatePlan],
    ) -> Vec<Result<ApplyOutcome, Error>> {
        let mut results: Vec<Option<Result<ApplyOutcome, Error>>> = vec![None; plans.len()];
        let mut by_release: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, plan) in plans.iter().enumerate() {
            match ReleaseId::parse(&plan.id) {
                Some(id)
                    if plan.target == self.inner.watch.name() && self.in_scope(id.namespace) =>
                {
                    by_release
                        .entry((id.namespace.to_owned(), id.release.to_owned()))
                        .or_default()
                        .push(i);
                }
                _ => {
                    results[i] = Some(Err(Error::untracked(&plan.id, self.inner.watch.name())));
                }
            }
        }
        for ((namespace, release), indices) in by_release {
            let group: Vec<&UpdatePlan> = indices.iter().map(|&i| &plans[i]).collect();
            let span = tracing::info_span!("apply", release = %format!("{namespace}/{release}"));
            let outcomes = tracing::Instrument::instrument(
                self.apply_release(&namespace, &release, &group),
                span,
            )
            .await;
            for (i, outcome) in indices.into_iter().zip(outcomes) {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every plan has a result"))
            .collect()
    }

    async fn apply_release(
        &self,
        namespace: &str,
        release: &str,
        plans: &[&UpdatePlan],
    ) -> Vec<Result<ApplyOutcome, Error>> {
        let all = |error: Error| plans.iter().map(|_| Err(error.clone())).collect();
        let action = format!("upgrade helm release {namespace}/{release}");
        let fresh = match self.read_fresh(namespace, release).await {
            Ok(fresh) => fresh,
            Err(e) => return all(e),
        };
        if let Some(pending) = fresh.newer(Status::Pending) {
            return all(Error::Conflict {
                action,
                reason: format!(
                    "an operation is under way (revision {} is pending); not touched",
                    pending.version
                ),
            });
        }
        let values = fresh.deployed.merged_values();
        let config = match config::read(&values) {
            Ok(Some(config)) => config,
            Ok(None) => {
                return all(Error::not_found(format!(
                    "Keel settings (`keel.policy`) in helm release {namespace}/{release}"
                )));
            }
            Err(e) => {
                return all(helm_error(
                    &action,
                    format!("{} = {:?}: {}", e.path, e.value, e.reason),
                ));
            }
        };
        let mut user = Value::Object(fresh.deployed.config.clone().unwrap_or_default());
        let mut results: Vec<Option<Result<ApplyOutcome, Error>>> = vec![None; plans.len()];
        let mut changes = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let entry = config
                .images
                .iter()
                .find(|e| tracked_id(namespace, release, e.key()) == plan.id);
            let result = match entry {
                None => Err(Error::untracked(&plan.id, self.inner.watch.name())),
                Some(entry) => self.plan_change(entry, &values, &mut user, plan),
            };
            match result {
                Ok(Some(change)) => changes.push((i, change)),
                Ok(None) => results[i] = Some(Ok(ApplyOutcome::AlreadyCurrent)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !changes.is_empty() {
            let description = changes
                .iter()
                .map(|(_, c)| c.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let outcome = self.upgrade(&fresh, &user, &description).await;
            for (i, _) in &changes {
                results[*i] = Some(match &outcome {
                    Ok(()) => Ok(ApplyOutcome::Applied),
                    Err(e) => {
                        self.refuse(&plans[*i].id, &plans[*i].new);
                        Err(e.clone())
                    }
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every plan has a result"))
            .collect()
    }

    /// Checks one plan against the deployed values and writes it into the user's values;
    /// `None` when the new image already runs, else what changes (`image.tag: a -> b`).
    fn plan_change(
        &self,
        entry: &config::ImageEntry,
        values: &Value,
        user: &mut Value,
        plan: &UpdatePlan,
    ) -> Result<Option<String>, Error> {
        let action = format!("apply {plan}");
        let current = entry.current(values).map_err(|e| Error::Conflict {
            action: action.clone(),
            reason: format!(
                "{} = {:?} does not parse now: {}",
                e.path, e.value, e.reason
            ),
        })?;
        if plan.already_runs(&current) {
            return Ok(None);
        }
        if !plan.still_current(&current) {
            return Err(Error::Conflict {
                action,
                reason: format!(
                    "{} holds {current} now, not {}; discover again",
                    entry.key(),
                    plan.current
                ),
            });
        }
        entry
            .write(user, &current, &plan.new, self.inner.watch.pin_digests())
            .map_err(|e| helm_error(&action, format!("{}: {}", e.path, e.reason)))?;
        Ok(Some(format!(
            "{}: {} -> {}",
            entry.key(),
            current,
            plan.new
        )))
    }

    /// Runs `helm upgrade` with the deployed chart and `user` values.
    async fn upgrade(&self, fresh: &Fresh, user: &Value, description: &str) -> Result<(), Error> {
        let release = &fresh.deployed;
        let namespace = &fresh.object.namespace;
        let action = format!("upgrade helm release {namespace}/{}", release.name);
        let dir = tempfile::tempdir()
            .map_err(|e| helm_error(&action, format!("creating a temporary directory: {e}")))?;
        let chart_dir = dir.path().join("chart");
        std::fs::create_dir(&chart_dir)
            .map_err(|e| helm_error(&action, format!("creating the chart directory: {e}")))?;
        let stored = release
            .chart
            .as_ref()
            .ok_or_else(|| helm_error(&action, "the deployed revision holds no chart"))?;
        chart::write(stored, &chart_dir).map_err(|reason| helm_error(&action, reason))?;
        let values_file = dir.path().join("values.json");
        std::fs::write(
            &values_file,
            serde_json::to_vec(user).expect("JSON values serialize"),
        )
        .map_err(|e| helm_error(&action, format!("writing the values: {e}")))?;
        let (chart_arg, values_arg) = (
            chart_dir.to_string_lossy().into_owned(),
            values_file.to_string_lossy().into_owned(),
        );
        let description = format!("keel: {description}");
        self.inner
            .helm
            .run_with(
                &action,
                &[
                    "upgrade",
                    &release.name,
                    &chart_arg,
                    "--namespace",
                    namespace,
                    "--values",
                    &values_arg,
                    "--reset-values",
                    "--description",
                    &description,
                ],
                &[("HELM_DRIVER", fresh.driver.helm_name())],
            )
            .await?;
        info!(revision = release.version + 1, %description, "upgraded");
        Ok(())
    }

    /// Remembers that helm refused `image` for `id`, so it is not tried again in a loop.
    fn refuse(&self, id: &str, image: &ImageRef) {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .insert(image.to_string());
    }

    /// Follows the rollout an applied `plan` started (the Deployments, StatefulSets and
    /// DaemonSets of the release's manifest), up to `deadline`; when one does not become
    /// available in time, rolls the release back to the revision before with
    /// `helm rollback`, and records the undone image on the new revision so that discovery
    /// avoids it ([`FAILED_ANNOTATION`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an id that is not one of this target's;
    /// [`Error::Conflict`] when the release no longer runs `plan.new` (someone else changed
    /// it: nothing is undone) or has no earlier revision; helm's message when the rollback
    /// fails; API errors reading the rollout.
    pub async fn verify_rollout(
        &self,
        plan: &UpdatePlan,
        deadline: Duration,
    ) -> Result<RolloutVerdict, Error> {
        let id = ReleaseId::parse(&plan.id)
            .filter(|id| self.in_scope(id.namespace))
            .ok_or_else(|| Error::untracked(&plan.id, self.inner.watch.name()))?;
        let action = format!("verify the rollout of {plan}");
        let fresh = self.read_fresh(id.namespace, id.release).await?;
        let values = fresh.deployed.merged_values();
        let runs_new = config::read(&values)
            .ok()
            .flatten()
            .and_then(|c| c.images.into_iter().find(|e| e.key() == id.path))
            .and_then(|e| e.current(&values).ok())
            .is_some_and(|image| plan.already_runs(&image));
        if !runs_new {
            return Err(Error::Conflict {
                action,
                reason: format!(
                    "helm release {}/{} no longer runs {}",
                    id.namespace, id.release, plan.new
                ),
            });
        }
        let workloads = manifest_workloads(&fresh.deployed.manifest, id.namespace);
        if workloads.is_empty() {
            return Ok(RolloutVerdict::NoRollout);
        }
        let started = Instant::now();
        let mut last = None;
        for workload in &workloads {
            let left = deadline.saturating_sub(started.elapsed());
            let status = watch_rollout(&self.inner.client, workload, left).await?;
            let failed = !status.complete || status.failed();
            last = Some(status);
            if failed {
                break;
            }
        }
        let status = last.expect("at least one workload");
        if status.complete && !status.failed() {
            return Ok(RolloutVerdict::Complete(status));
        }
        let previous = fresh
            .all
            .iter()
            .filter(|s| s.version < fresh.deployed.version && s.status == Status::Superseded)
            .max_by_key(|s| s.version)
            .ok_or_else(|| Error::Conflict {
                action: action.clone(),
                reason: "the rollout failed and there is no earlier revision to roll back to"
                    .to_owned(),
            })?;
        let why = status
            .failed_reason
            .clone()
            .unwrap_or_else(|| format!("not available within {deadline:?}"));
        warn!(release = %format!("{}/{}", id.namespace, id.release), reason = %why, revision = previous.version, "rolling back");
        let revision = previous.version.to_string();
        self.inner
            .helm
            .run_with(
                &format!("roll back helm release {}/{}", id.namespace, id.release),
                &[
                    "rollback",
                    id.release,
                    &revision,
                    "--namespace",
                    id.namespace,
                ],
                &[("HELM_DRIVER", fresh.driver.helm_name())],
            )
            .await?;
        self.record_rollback(id.namespace, id.release, id.path, &plan.new)
            .await?;
        Ok(RolloutVerdict::RolledBack(status))
    }

    /// Records on the now-deployed revision's storage object that `image` was undone at
    /// `path`.
    async fn record_rollback(
        &self,
        namespace: &str,
        release: &str,
        path: &str,
        image: &ImageRef,
    ) -> Result<(), Error> {
        let fresh = self.read_fresh(namespace, release).await?;
        let mut failed: BTreeMap<String, String> = fresh
            .object
            .annotations
            .get(FAILED_ANNOTATION)
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        failed.insert(path.to_owned(), image.to_string());
        let patch = json!({"metadata": {"annotations": {
            FAILED_ANNOTATION: serde_json::to_string(&failed).expect("a map of strings serializes"),
        }}});
        let client = self.inner.client.clone();
        let params = PatchParams::default();
        let request = Request {
            verb: "patch",
            resource: fresh.driver.resource(),
            namespace: Some(namespace),
            name: Some(&fresh.object.object),
        };
        let result = match fresh.driver {
            Driver::Secret => Api::<Secret>::namespaced(client, namespace)
                .patch(&fresh.object.object, &params, &Patch::Merge(&patch))
                .await
                .map(drop),
            Driver::ConfigMap => Api::<ConfigMap>::namespaced(client, namespace)
                .patch(&fresh.object.object, &params, &Patch::Merge(&patch))
                .await
                .map(drop),
        };
        result.map_err(|e| kerr::from_kube(e, &request))
    }
}

/// The storage objects of kind `K` in `namespace` that `params` select, as
/// [`StorageObject::read`] reads them.
async fn list_stored<K: StorageObject>(
    client: &kube::Client,
    namespace: &str,
    params: &ListParams,
) -> kube::Result<Vec<Stored>> {
    let list = Api::<K>::namespaced(client.clone(), namespace)
        .list(params)
        .await?;
    Ok(list.items.into_iter().filter_map(K::read).collect())
}

/// The Deployments, StatefulSets and DaemonSets a rendered manifest holds.
fn manifest_workloads(manifest: &str, namespace: &str) -> Vec<WorkloadRef> {
    use serde::Deserialize as _;
    let mut found = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(manifest) {
        // After a document that does not parse, the stream cannot go on (and the YAML
        // deserializer would report the same error forever).
        let Ok(value) = Value::deserialize(document) else {
            break;
        };
        let kind = match value.get("kind").and_then(Value::as_str) {
            Some("Deployment") => WorkloadKind::Deployment,
            Some("StatefulSet") => WorkloadKind::StatefulSet,
            Some("DaemonSet") => WorkloadKind::DaemonSet,
            _ => continue,
        };
        let meta = value.get("metadata");
        let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) else {
            continue;
        };
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        found.push(WorkloadRef::new(kind, ns, name));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_of_a_manifest() {
        let manifest = "---\n# Source: web/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: data\n---\n: not yaml [\n";
        let found = manifest_workloads(manifest, "shop");
        assert_eq!(
            found,
            [
                WorkloadRef::new(WorkloadKind::Deployment, "shop", "web"),
                WorkloadRef::new(WorkloadKind::StatefulSet, "data", "db"),
            ]
        );
    }
}
