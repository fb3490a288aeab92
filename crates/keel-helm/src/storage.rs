//! Helm's storage objects as keel-helm sees them, whichever driver holds them.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

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
    fn new(driver: Driver, meta: ObjectMeta, data: Option<Vec<u8>>) -> Option<Stored> {
        let labels = meta.labels.unwrap_or_default();
        if labels.get("owner").map(String::as_str) != Some("helm") {
            return None;
        }
        Some(Stored {
            driver,
            namespace: meta.namespace.unwrap_or_default(),
            // As `ResourceExt::name_any` reads it.
            object: meta.name.or(meta.generate_name).unwrap_or_default(),
            release: labels.get("name")?.clone(),
            version: labels.get("version")?.parse().ok()?,
            status: Status::parse(labels.get("status").map_or("", String::as_str)),
            annotations: meta.annotations.unwrap_or_default(),
            data,
        })
    }
}

/// A kind of object Helm keeps revisions in (a [`Driver`]'s), read as a [`Stored`].
pub(crate) trait StorageObject:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + 'static
{
    /// The revision the object holds; `None` when it is not one.
    fn read(self) -> Option<Stored>;
}

impl StorageObject for Secret {
    fn read(self) -> Option<Stored> {
        let data = self.data.and_then(|mut d| d.remove("release"));
        Stored::new(Driver::Secret, self.metadata, data.map(|b| b.0))
    }
}

impl StorageObject for ConfigMap {
    fn read(self) -> Option<Stored> {
        let data = self.data.and_then(|mut d| d.remove("release"));
        Stored::new(
            Driver::ConfigMap,
            self.metadata,
            data.map(String::into_bytes),
        )
    }
}
