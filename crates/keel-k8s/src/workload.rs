//! The workload kinds, one uniform view of a cached workload, and tracked-image ids.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodSpec;
use kube::ResourceExt;

use crate::rollout::WorkloadRef;

/// A kind of workload keel-k8s updates.
///
/// ```
/// use keel_k8s::WorkloadKind;
///
/// let kind: WorkloadKind = "CronJob".parse().unwrap();
/// assert_eq!(kind, WorkloadKind::CronJob);
/// assert_eq!((kind.as_str(), kind.group_version()), ("cronjob", "batch/v1"));
/// assert!("pod".parse::<WorkloadKind>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `batch/v1` CronJob.
    CronJob,
    /// OpenShift's `apps.openshift.io/v1` DeploymentConfig.
    DeploymentConfig,
    /// OpenShift's `image.openshift.io/v1` ImageStream: its "containers" are the tags of
    /// `spec.tags` whose `from` is an external `DockerImage`.
    ImageStream,
}

impl WorkloadKind {
    /// Every kind, in id order.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
        WorkloadKind::DeploymentConfig,
        WorkloadKind::ImageStream,
    ];

    /// The lower-case name used in ids: `deployment`, `statefulset`, `daemonset`, `cronjob`,
    /// `deploymentconfig`, `imagestream`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::CronJob => "cronjob",
            WorkloadKind::DeploymentConfig => "deploymentconfig",
            WorkloadKind::ImageStream => "imagestream",
        }
    }

    /// Whether the kind belongs to OpenShift's API groups, served only by OpenShift and OKD
    /// (or by CRDs standing in for them).
    pub fn is_openshift(self) -> bool {
        matches!(
            self,
            WorkloadKind::DeploymentConfig | WorkloadKind::ImageStream
        )
    }

    /// The API resource (plural), e.g. `deployments`.
    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::CronJob => "cronjobs",
            WorkloadKind::DeploymentConfig => "deploymentconfigs",
            WorkloadKind::ImageStream => "imagestreams",
        }
    }

    /// The API group and version, e.g. `apps/v1`.
    pub fn group_version(self) -> &'static str {
        match self {
            WorkloadKind::CronJob => "batch/v1",
            WorkloadKind::DeploymentConfig => "apps.openshift.io/v1",
            WorkloadKind::ImageStream => "image.openshift.io/v1",
            _ => "apps/v1",
        }
    }

    /// The JSON path of the pod spec within the object.
    pub(crate) fn pod_spec_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }

    /// The JSON path of the pod template's metadata within the object.
    pub(crate) fn pod_metadata_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "metadata"],
            _ => &["spec", "template", "metadata"],
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkloadKind {
    type Err = keel_core::ParseError;

    fn from_str(s: &str) -> Result<Self, keel_core::ParseError> {
        WorkloadKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                keel_core::ParseError::new(
                    "workload kind",
                    s,
                    "expected deployment, statefulset, daemonset, cronjob, deploymentconfig \
                     or imagestream",
                )
            })
    }
}

/// The id of one tracked container image: `<kind>/<namespace>/<name>/<container>`, with
/// `init:<container>` for init containers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ContainerId {
    pub(crate) kind: WorkloadKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) container: String,
    pub(crate) init: bool,
}

/// The prefix marking init containers in ids and in the digests annotation.
const INIT_PREFIX: &str = "init:";

impl ContainerId {
    /// Parses an id; `None` when it is not one of ours.
    pub(crate) fn parse(id: &str) -> Option<ContainerId> {
        let mut parts = id.splitn(4, '/');
        let kind = parts.next()?.parse().ok()?;
        let namespace = parts.next().filter(|s| !s.is_empty())?;
        let name = parts.next().filter(|s| !s.is_empty())?;
        let key = parts.next().filter(|s| !s.is_empty() && !s.contains('/'))?;
        let (container, init) = match key.strip_prefix(INIT_PREFIX) {
            Some(rest) if !rest.is_empty() => (rest, true),
            Some(_) => return None,
            None => (key, false),
        };
        Some(ContainerId {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            container: container.to_owned(),
            init,
        })
    }

    /// The container's key within its workload: `app` or `init:migrate`.
    pub(crate) fn container_key(&self) -> String {
        container_key(&self.container, self.init)
    }

    /// The container's workload.
    pub(crate) fn workload_ref(&self) -> WorkloadRef {
        WorkloadRef::new(self.kind, self.namespace.clone(), self.name.clone())
    }

    /// `deployment ns/name`.
    pub(crate) fn workload(&self) -> String {
        self.workload_ref().to_string()
    }

    /// A request `verb` about the container's workload, for error messages.
    pub(crate) fn request(&self, verb: &'static str) -> crate::error::Request<'_> {
        crate::error::Request::workload(verb, self.kind, &self.namespace, &self.name)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.kind,
            self.namespace,
            self.name,
            self.container_key()
        )
    }
}

/// `app` or `init:migrate`.
pub(crate) fn container_key(name: &str, init: bool) -> String {
    if init {
        format!("{INIT_PREFIX}{name}")
    } else {
        name.to_owned()
    }
}

/// One container of a workload (for an ImageStream, one tag of `spec.tags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerView {
    pub(crate) name: String,
    /// The image as written; `None` when the container has none.
    pub(crate) image: Option<String>,
    pub(crate) init: bool,
    /// The ImageStream tag whose automatic `ImageChange` trigger writes this container's image
    /// (DeploymentConfigs only): OpenShift overwrites a direct change.
    pub(crate) driven_by: Option<crate::openshift::StreamTag>,
    /// Whether `driven_by` comes from the `image.openshift.io/triggers` annotation, which only
    /// OpenShift acts on (it is ignored where ImageStreams are not watched).
    pub(crate) driven_by_annotation: bool,
    /// `keel.sh/*` keys of this container alone, over the workload's (an ImageStream tag's
    /// own annotations).
    pub(crate) keys: BTreeMap<String, String>,
}

impl ContainerView {
    /// A container with `image` that no trigger drives and that has no keys of its own.
    pub(crate) fn plain(name: &str, image: Option<String>, init: bool) -> ContainerView {
        ContainerView {
            name: name.to_owned(),
            image,
            init,
            driven_by: None,
            driven_by_annotation: false,
            keys: BTreeMap::new(),
        }
    }
}

/// The parts of a workload keel-k8s needs, the same for every kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkloadView {
    pub(crate) kind: WorkloadKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) resource_version: Option<String>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) containers: Vec<ContainerView>,
    /// `spec.template.spec.imagePullSecrets` names.
    pub(crate) pull_secrets: Vec<String>,
}

impl WorkloadView {
    /// A view of `kind` `namespace/name` for tests: resource version 1, no labels or pull
    /// secrets, with `annotations` and `containers` (name, image, whether an init container).
    #[cfg(test)]
    pub(crate) fn for_test(
        kind: WorkloadKind,
        (namespace, name): (&str, &str),
        annotations: &[(&str, &str)],
        containers: &[(&str, &str, bool)],
    ) -> WorkloadView {
        WorkloadView {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            resource_version: Some("1".into()),
            annotations: crate::string_map(annotations),
            labels: BTreeMap::new(),
            containers: containers
                .iter()
                .map(|(name, image, init)| ContainerView::plain(name, Some((*image).into()), *init))
                .collect(),
            pull_secrets: vec![],
        }
    }

    pub(crate) fn new<K: ResourceExt>(
        kind: WorkloadKind,
        object: &K,
        pod: Option<&PodSpec>,
    ) -> Self {
        let mut containers = Vec::new();
        let mut pull_secrets = Vec::new();
        if let Some(pod) = pod {
            for c in &pod.containers {
                containers.push(ContainerView::plain(&c.name, c.image.clone(), false));
            }
            for c in pod.init_containers.iter().flatten() {
                containers.push(ContainerView::plain(&c.name, c.image.clone(), true));
            }
            pull_secrets = pod
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty())
                .collect();
        }
        let namespace = object.namespace().unwrap_or_default();
        for (container, init, tag) in
            crate::openshift::annotation_triggers(object.annotations(), &namespace)
        {
            if let Some(c) = containers
                .iter_mut()
                .find(|c| c.name == container && c.init == init)
            {
                c.driven_by = Some(tag);
                c.driven_by_annotation = true;
            }
        }
        WorkloadView {
            kind,
            namespace,
            name: object.name_any(),
            resource_version: object.resource_version(),
            annotations: object.annotations().clone(),
            labels: object.labels().clone(),
            containers,
            pull_secrets,
        }
    }

    /// The view where OpenShift's `image.openshift.io/triggers` annotation does nothing
    /// (ImageStreams are not watched, or not served): its containers are not driven.
    pub(crate) fn without_annotation_triggers(mut self) -> Self {
        for c in &mut self.containers {
            if c.driven_by_annotation {
                c.driven_by = None;
                c.driven_by_annotation = false;
            }
        }
        self
    }

    /// The container with `name` (an init container when `init`).
    pub(crate) fn container(&self, name: &str, init: bool) -> Option<&ContainerView> {
        self.containers
            .iter()
            .find(|c| c.name == name && c.init == init)
    }
}

/// Turns a cached object into a [`WorkloadView`].
pub(crate) trait Workload:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: WorkloadKind;

    /// The uniform view.
    fn view(&self) -> WorkloadView;
}

/// [`Workload`] for the kinds whose spec holds the pod template itself (`spec.template`).
macro_rules! pod_template_workload {
    ($($kind:ident),*) => {$(
        impl Workload for $kind {
            const KIND: WorkloadKind = WorkloadKind::$kind;

            fn view(&self) -> WorkloadView {
                let pod = self.spec.as_ref().and_then(|s| s.template.spec.as_ref());
                WorkloadView::new(Self::KIND, self, pod)
            }
        }
    )*};
}

pod_template_workload!(Deployment, StatefulSet, DaemonSet);

impl Workload for CronJob {
    const KIND: WorkloadKind = WorkloadKind::CronJob;

    fn view(&self) -> WorkloadView {
        let pod = self
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .and_then(|j| j.template.spec.as_ref());
        WorkloadView::new(Self::KIND, self, pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in [
            "deployment/default/web/app",
            "statefulset/db/pg/init:migrate",
            "daemonset/kube-system/agent/agent",
            "cronjob/batch/nightly/job",
        ] {
            let parsed = ContainerId::parse(id).unwrap_or_else(|| panic!("{id}"));
            assert_eq!(parsed.to_string(), id);
        }
        let init = ContainerId::parse("statefulset/db/pg/init:migrate").unwrap();
        assert!(init.init);
        assert_eq!(init.container, "migrate");
    }

    #[test]
    fn foreign_ids_do_not_parse() {
        for id in [
            "",
            "web",
            "pod/default/web/app",
            "deployment/default/web",
            "deployment//web/app",
            "deployment/default/web/",
            "deployment/default/web/init:",
            "deployment/default/web/app/extra",
        ] {
            assert_eq!(ContainerId::parse(id), None, "{id}");
        }
    }

    #[test]
    fn views_of_every_kind_find_their_containers() {
        let pod = serde_json::json!({
            "containers": [{ "name": "app", "image": "nginx:1.25" }],
            "initContainers": [{ "name": "migrate", "image": "busybox:1.36" }],
            "imagePullSecrets": [{ "name": "regcred" }],
        });
        let meta = serde_json::json!({ "name": "w", "namespace": "ns", "resourceVersion": "7" });
        let template = serde_json::json!({ "spec": pod });
        let views = [
            serde_json::from_value::<Deployment>(serde_json::json!({
                "metadata": meta, "spec": { "selector": {}, "template": template }
            }))
            .unwrap()
            .view(),
            serde_json::from_value::<StatefulSet>(serde_json::json!({
                "metadata": meta, "spec": { "selector": {}, "template": template }
            }))
            .unwrap()
            .view(),
            serde_json::from_value::<DaemonSet>(serde_json::json!({
                "metadata": meta, "spec": { "selector": {}, "template": template }
            }))
            .unwrap()
            .view(),
            serde_json::from_value::<CronJob>(serde_json::json!({
                "metadata": meta,
                "spec": { "schedule": "* * * * *", "jobTemplate": { "spec": { "template": template } } }
            }))
            .unwrap()
            .view(),
        ];
        for view in views {
            assert_eq!(view.namespace, "ns");
            assert_eq!(view.resource_version.as_deref(), Some("7"));
            assert_eq!(
                view.container("app", false)
                    .and_then(|c| c.image.as_deref()),
                Some("nginx:1.25")
            );
            assert!(view.container("migrate", true).is_some());
            assert!(view.container("migrate", false).is_none());
            assert_eq!(view.pull_secrets, ["regcred"]);
        }
    }
}
