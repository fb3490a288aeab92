//! Helm's storage objects as keel-helm sees them, whichever driver holds them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt as _;

use crate::release::Status;

/// Where Helm keeps a release's revisions (its `HELM_DRIVER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Driver {
    /// Secrets of type `helm.sh/release.v1` (Helm's default).
    Secret,
    /// ConfigMaps.
    ConfigMap,
}

impl Driver {
    /// Both drivers.
    pub const ALL: [Driver; 2] = [Driver::Secret, Driver::ConfigMap];

    /// The value of `HELM_DRIVER` that selects it.
    pub fn helm_name(self) -> &'static str {
        match self {
            Driver::Secret => "secret",
            Driver::ConfigMap => "configmap",
        }
    }

    /// The Kubernetes resource (plural) it stores in.
    pub fn resource(self) -> &'static str {
        match self {
            Driver::Secret => "secrets",
            Driver::ConfigMap => "configmaps",
        }
    }
}

/// One revision's storage object, read from its labels, annotations and `release` value.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) driver: Driver,
    pub(crate) namespace: String,
    /// The object's own name, `sh.helm.release.v1.<release>.v<revision>`.
    pub(crate) object: String,
    pub(crate) release: String,
    pub(crate) version: u32,
    pub(crate) status: Status,
    pub(crate) annotations: BTreeMap<String, String>,
    /// The `release` value, as the object holds it.
    pub(crate) data: Option<Vec<u8>>,
}

impl Stored {
    /// `None` for an object that is not a Helm release (no `name` or `version` label).
    fn new(
        driver: Driver,
        namespace: Option<String>,
        object: String,
        labels: &BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        data: Option<Vec<u8>>,
    ) -> Option<Stored> {
        if labels.get("owner").map(String::as_str) != Some("helm") {
            return None;
        }
        Some(Stored {
            driver,
            namespace: namespace.unwrap_or_default(),
            object,
            release: labels.get("name")?.clone(),
            version: labels.get("version")?.parse().ok()?,
            status: Status::parse(labels.get("status").map_or("", String::as_str)),
            annotations,
            data,
        })
    }

    pub(crate) fn from_secret(mut secret: Secret) -> Option<Stored> {
        let data = secret
            .data
            .as_mut()
            .and_then(|d| d.remove("release"))
            .map(|b| b.0);
        Stored::new(
            Driver::Secret,
            secret.namespace(),
            secret.name_any(),
            &secret.metadata.labels.take().unwrap_or_default(),
            secret.metadata.annotations.take().unwrap_or_default(),
            data,
        )
    }

    pub(crate) fn from_config_map(mut map: ConfigMap) -> Option<Stored> {
        let data = map
            .data
            .as_mut()
            .and_then(|d| d.remove("release"))
            .map(String::into_bytes);
        Stored::new(
            Driver::ConfigMap,
            map.namespace(),
            map.name_any(),
            &map.metadata.labels.take().unwrap_or_default(),
            map.metadata.annotations.take().unwrap_or_default(),
            data,
        )
    }
}
