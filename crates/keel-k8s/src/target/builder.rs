//! [`KubeTargetBuilder`]: the settings of a [`KubeTarget`], and the watches it starts.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::CronJob;
use keel_core::Error;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self};
use kube::runtime::{WatchStreamExt as _, watcher};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::error::{self as kerr, Request};
use crate::openshift::{DeploymentConfig, ImageStream};
use crate::secrets::PullSecrets;
use crate::sync::{NamespaceScope, WatchHealth, WatchSettings};
use crate::workload::{Workload, WorkloadKind};

use super::*;

/// Builds a [`KubeTarget`]; see [`KubeTarget::builder`].
#[derive(Clone, derive_more::Debug)]
pub struct KubeTargetBuilder {
    #[debug(skip)]
    pub(super) client: Client,
    pub(super) watch: WatchSettings,
    pub(super) label_selector: Option<String>,
    pub(super) kinds: Vec<WorkloadKind>,
    /// Whether [`KubeTargetBuilder::with_kinds`] chose the kinds (else: every kind).
    #[debug(skip)]
    pub(super) kinds_chosen: bool,
    #[debug(skip)]
    pub(super) conflict_retries: u32,
}

impl KubeTargetBuilder {
    /// The target's name in plans, reports and notifications (default `kubernetes`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.watch.set_name(name);
        self
    }

    /// Watches every namespace (the default).
    pub fn all_namespaces(mut self) -> Self {
        self.watch.set_scope(NamespaceScope::all());
        self
    }

    /// Watches only these namespaces (one watch per namespace and kind, for RBAC that grants
    /// Roles rather than a ClusterRole).
    pub fn with_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.watch.set_scope(NamespaceScope::only(namespaces));
        self
    }

    /// Watches only workloads matching a label selector, e.g. `team=web,tier!=batch`.
    pub fn with_label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Watches only these kinds (default: all; CronJobs only where the server serves
    /// `batch/v1`, DeploymentConfigs and ImageStreams only where it serves
    /// `apps.openshift.io/v1` and `image.openshift.io/v1`, as OpenShift and OKD do, and, unless
    /// chosen here, only where RBAC lets the client list and watch them: a controller
    /// deployed without the OpenShift RBAC keeps working on the other kinds).
    pub fn with_kinds(mut self, kinds: &[WorkloadKind]) -> Self {
        let mut list = kinds.to_vec();
        list.sort();
        list.dedup();
        self.kinds = list;
        self.kinds_chosen = true;
        self
    }

    /// Whether updates write `image:tag@sha256:...` when the plan carries a digest
    /// (default false: the tag only, plus a `keel.sh/digests` record).
    pub fn with_pin_digests(mut self, pin: bool) -> Self {
        self.watch.set_pin_digests(pin);
        self
    }

    /// How long the first [`Target::discover`] waits for the caches to fill (default 60 s).
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.watch.set_sync_timeout(timeout);
        self
    }

    /// How many times an update is re-read and tried again after a 409 Conflict (default 5).
    pub fn with_conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// Records, at every discovery, which pull secrets each tracked image is pulled with
    /// (its pod template's `imagePullSecrets`, then `keel.sh/imagePullSecret`) in `secrets`,
    /// so that a registry client given `secrets` as its
    /// [`CredentialSource`](keel_core::CredentialSource) uses them.
    pub fn with_pull_secrets(mut self, secrets: PullSecrets) -> Self {
        self.watch.set_pull_secrets(secrets);
        self
    }

    /// Checks the configuration, asks the server which kinds it serves (CronJobs need
    /// `batch/v1`, the OpenShift kinds their API groups) and starts the watches. Must run
    /// inside a Tokio runtime; the watches stop when the target is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty namespace list; the server's answer (e.g.
    /// [`Error::Unauthorized`]) when API discovery of an optional kind's group fails.
    pub async fn build(self) -> Result<KubeTarget, Error> {
        self.watch.scope().check()?;

        let mut kinds = self.kinds.clone();
        // CronJobs need `batch/v1`; DeploymentConfigs and ImageStreams need OpenShift's API
        // groups: a kind the server does not serve is not watched, and a plain cluster sees
        // no request for it but one discovery call.
        let mut served = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let optional = kind == WorkloadKind::CronJob || kind.is_openshift();
            if !optional || self.serves(kind).await? {
                served.push(kind);
            } else {
                info!(
                    target_name = %self.watch.name(),
                    "the API server does not serve {} in {}; not watching them",
                    kind.plural(),
                    kind.group_version()
                );
            }
        }
        kinds = served;
        if !self.kinds_chosen {
            let mut permitted = Vec::with_capacity(kinds.len());
            for kind in kinds {
                if !kind.is_openshift() || self.may_watch(kind).await {
                    permitted.push(kind);
                } else {
                    warn!(
                        target_name = %self.watch.name(),
                        "RBAC does not let this client list and watch {} ({}); not watching \
                         them (see rbac-openshift.yaml)",
                        kind.plural(),
                        kind.group_version()
                    );
                }
            }
            kinds = permitted;
        }

        let namespaces = self.watch.scope().watched();
        let (changes, _) = tokio::sync::watch::channel(());
        let mut caches: Vec<Box<dyn Cache>> = Vec::new();
        for kind in &kinds {
            for ns in &namespaces {
                let ns = ns.map(str::to_owned);
                let tx = changes.clone();
                let cache: Box<dyn Cache> = match kind {
                    WorkloadKind::Deployment => Box::new(self.watch::<Deployment>(ns, tx)),
                    WorkloadKind::StatefulSet => Box::new(self.watch::<StatefulSet>(ns, tx)),
                    WorkloadKind::DaemonSet => Box::new(self.watch::<DaemonSet>(ns, tx)),
                    WorkloadKind::CronJob => Box::new(self.watch::<CronJob>(ns, tx)),
                    WorkloadKind::DeploymentConfig => {
                        Box::new(self.watch::<DeploymentConfig>(ns, tx))
                    }
                    WorkloadKind::ImageStream => Box::new(self.watch::<ImageStream>(ns, tx)),
                };
                caches.push(cache);
            }
        }
        Ok(KubeTarget {
            inner: Arc::new(Inner {
                settings: KubeTargetBuilder { kinds, ..self },
                caches,
                changes,
                problems: Default::default(),
            }),
        })
    }

    /// Whether RBAC lets this client list and watch `kind` in every namespace of the scope,
    /// by SelfSubjectAccessReviews; `true` when the server does not answer them (the watch
    /// then says what is wrong).
    async fn may_watch(&self, kind: WorkloadKind) -> bool {
        let namespaces = self.watch.scope().watched();
        let group = kind
            .group_version()
            .split_once('/')
            .map_or("", |(group, _)| group);
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        for namespace in namespaces {
            for verb in ["list", "watch"] {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            group: Some(group.to_owned()),
                            resource: Some(kind.plural().to_owned()),
                            verb: Some(verb.to_owned()),
                            namespace: namespace.map(str::to_owned),
                            ..ResourceAttributes::default()
                        }),
                        ..SelfSubjectAccessReviewSpec::default()
                    },
                    ..SelfSubjectAccessReview::default()
                };
                match api.create(&PostParams::default(), &review).await {
                    Ok(answer) if !answer.status.as_ref().is_some_and(|s| s.allowed) => {
                        return false;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        debug!(%error, "no answer to a SelfSubjectAccessReview");
                        return true;
                    }
                }
            }
        }
        true
    }

    /// Whether the server serves `kind`, by API discovery of its group and version.
    pub(super) async fn serves(&self, kind: WorkloadKind) -> Result<bool, Error> {
        match self
            .client
            .list_api_group_resources(kind.group_version())
            .await
        {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural())),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(kerr::from_kube(
                e,
                &Request {
                    verb: "get",
                    resource: &format!("API discovery of {}", kind.group_version()),
                    namespace: None,
                    name: None,
                },
            )),
        }
    }

    pub(super) fn watch<K: Workload>(
        &self,
        namespace: Option<String>,
        changes: tokio::sync::watch::Sender<()>,
    ) -> Watched<K> {
        let api: Api<K> = match &namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut config = watcher::Config::default().any_semantic();
        if let Some(selector) = &self.label_selector {
            config = config.labels(selector);
        }
        let (store, writer) = reflector::store::<K>();
        let health = Arc::new(WatchHealth::default());
        let task_health = Arc::clone(&health);
        let span = info_span!(
            "watch",
            kind = %K::KIND,
            namespace = namespace.as_deref().unwrap_or("*")
        );
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|object: &mut K| {
                // Not needed here, and often the largest part of an object.
                object.meta_mut().managed_fields = None;
            })
            .reflect(writer);
        let task = tokio::spawn(
            async move {
                let mut stream = std::pin::pin!(stream);
                let mut seen = Fingerprints::default();
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(watcher::Event::InitDone) => {
                            task_health.mark_ready();
                            task_health.set_error(None);
                            debug!("cache synced");
                            changes.send_replace(());
                        }
                        Ok(watcher::Event::Init) => {
                            task_health.set_error(None);
                            seen.clear();
                        }
                        Ok(watcher::Event::InitApply(object)) => {
                            task_health.set_error(None);
                            seen.changed(&object);
                        }
                        Ok(watcher::Event::Apply(object)) => {
                            task_health.set_error(None);
                            // A status update (a rollout going on) changes nothing here.
                            if seen.changed(&object) {
                                changes.send_replace(());
                            }
                        }
                        Ok(watcher::Event::Delete(object)) => {
                            task_health.set_error(None);
                            seen.remove(&object);
                            changes.send_replace(());
                        }
                        Err(error) => {
                            warn!(%error, "watch failed; retrying with backoff");
                            task_health.set_error(Some(error));
                        }
                    }
                }
            }
            .instrument(span),
        );
        Watched {
            kind: K::KIND,
            namespace,
            store,
            health,
            task,
        }
    }
}

/// What of each watched object discovery reads: its generation (the spec, images included)
/// and its annotations and labels (the `keel.sh/*` keys), so that only changes to those
/// count as changes of the target.
#[derive(Default)]
struct Fingerprints(HashMap<String, (Option<i64>, u64)>);

impl Fingerprints {
    fn key<K: Workload>(object: &K) -> String {
        let meta = object.meta();
        meta.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// Records `object`; whether it is new or changed.
    fn changed<K: Workload>(&mut self, object: &K) -> bool {
        use std::hash::{Hash as _, Hasher as _};
        let meta = object.meta();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        meta.annotations.hash(&mut hasher);
        meta.labels.hash(&mut hasher);
        let print = (meta.generation, hasher.finish());
        self.0.insert(Self::key(object), print) != Some(print)
    }

    fn remove<K: Workload>(&mut self, object: &K) {
        self.0.remove(&Self::key(object));
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use k8s_openapi::api::apps::v1::Deployment;

    use super::Fingerprints;

    #[test]
    fn only_spec_annotation_and_label_changes_count() {
        let mut deployment = Deployment::default();
        deployment.metadata.uid = Some("u1".into());
        deployment.metadata.generation = Some(1);
        let mut seen = Fingerprints::default();
        assert!(seen.changed(&deployment), "a new workload");
        assert!(!seen.changed(&deployment), "the same again");
        // A status update (a rollout going on) is no change.
        deployment.status = Some(Default::default());
        assert!(!seen.changed(&deployment));
        deployment.metadata.generation = Some(2);
        assert!(seen.changed(&deployment), "a new spec");
        deployment.metadata.annotations =
            Some([("keel.sh/policy".to_owned(), "minor".to_owned())].into());
        assert!(seen.changed(&deployment), "a new annotation");
        seen.remove(&deployment);
        assert!(seen.changed(&deployment), "deleted and back");
    }
}
