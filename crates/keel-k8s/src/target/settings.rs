//! A workload's `keel.sh/*` settings, read and changed for a dashboard: the annotations Keel's
//! own UI edits.

use std::collections::BTreeMap;

use keel_core::keel_keys::changed_settings;
use keel_core::target::SettingsChange;
use keel_core::{Error, ParseError};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};
use tracing::info;

use crate::error as kerr;
use crate::workload::{ContainerId, Workload};

use super::*;

/// The `keel.sh/*` entries of a map of annotations or labels.
fn keel_entries(map: &BTreeMap<String, String>) -> impl Iterator<Item = (String, String)> + '_ {
    map.iter()
        .filter(|(k, _)| k.starts_with("keel.sh/"))
        .map(|(k, v)| (k.clone(), v.clone()))
}

impl KubeTarget {
    /// The workload of tracked image `id`, when it is one this target tracks.
    pub(super) fn container_id(&self, id: &str) -> Result<ContainerId, Error> {
        let unknown = || Error::untracked(id, self.inner.settings.watch.name());
        let parsed = ContainerId::parse(id).ok_or_else(unknown)?;
        if !self.in_scope(&parsed.namespace) || !self.inner.settings.kinds.contains(&parsed.kind) {
            return Err(unknown());
        }
        Ok(parsed)
    }

    /// The workload's `keel.sh/*` labels and annotations, an annotation winning over a label
    /// of the same key as when they are read.
    pub(super) async fn settings_typed<K: Workload>(
        &self,
        id: &ContainerId,
    ) -> Result<BTreeMap<String, String>, Error> {
        let object = self.get_workload::<K>(id).await?;
        Ok(keel_entries(object.labels())
            .chain(keel_entries(object.annotations()))
            .collect())
    }

    /// Writes `change` as annotations, after checking the result; guarded by the
    /// `resourceVersion` read, so a concurrent change is a conflict, not lost.
    pub(super) async fn change_settings_typed<K: Workload>(
        &self,
        id: &ContainerId,
        change: &SettingsChange,
    ) -> Result<(), Error> {
        let object = self.get_workload::<K>(id).await?;
        let workload = id.workload();
        let labels: BTreeMap<String, String> = keel_entries(object.labels()).collect();
        let current: BTreeMap<String, String> = labels
            .clone()
            .into_iter()
            .chain(keel_entries(object.annotations()))
            .collect();
        let invalid = |key: &str, reason: String| {
            Error::InvalidInput(ParseError::new(
                "setting",
                format!("{workload} {key}"),
                reason,
            ))
        };
        let next = changed_settings(&current, change)
            .map_err(|e| invalid(&e.key, format!("{:?}: {}", e.value, e.reason)))?;
        let mut annotations = Map::new();
        for key in change.keys() {
            match next.get(key) {
                Some(value) => {
                    annotations.insert(key.clone(), Value::String(value.clone()));
                }
                None if labels.contains_key(key) => {
                    // The label would apply again: clearing it is the label's owner's call.
                    return Err(invalid(
                        key,
                        "set as a label of the workload; change the label instead".to_owned(),
                    ));
                }
                None => {
                    annotations.insert(key.clone(), Value::Null);
                }
            }
        }
        let body = json!({
            "metadata": {
                "resourceVersion": object.resource_version(),
                "annotations": annotations,
            }
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let api: Api<K> = Api::namespaced(self.inner.settings.client.clone(), &id.namespace);
        api.patch(&id.name, &params, &Patch::Merge(&body))
            .await
            .map_err(|e| {
                if kerr::is_conflict(&e) {
                    Error::Conflict {
                        action: format!("change the settings of {workload}"),
                        reason: "the workload changed since it was read; read it again".into(),
                    }
                } else {
                    kerr::from_kube(e, &id.request("patch"))
                }
            })?;
        info!(%workload, keys = ?change.keys().collect::<Vec<_>>(), "settings changed");
        Ok(())
    }

    async fn get_workload<K: Workload>(&self, id: &ContainerId) -> Result<K, Error> {
        let api: Api<K> = Api::namespaced(self.inner.settings.client.clone(), &id.namespace);
        api.get(&id.name)
            .await
            .map_err(|e| kerr::from_kube(e, &id.request("get")))
    }
}
