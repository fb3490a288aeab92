//! [`KubeTarget`]: Kubernetes workloads as a [`Target`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use keel_core::Error;
use keel_core::target::{ApplyOutcome, SettingsChange, Target, TrackedImage, UpdatePlan};
use kube::Client;
use serde::Serialize;
use tracing::{Instrument as _, info_span, warn};

use crate::keys::Problem;
use crate::openshift::{DeploymentConfig, ImageStream};
use crate::rollout::{RolloutStatus, rollback, watch_rollout};
use crate::sync::WatchSettings;
use crate::workload::{ContainerId, WorkloadKind, WorkloadView};

mod apply;
mod builder;
mod cache;
mod discovery;
mod settings;
#[cfg(test)]
mod tests;

pub use self::builder::KubeTargetBuilder;
use self::cache::Watched;
use self::cache::{Cache, Inner};
pub(crate) use self::discovery::pull_secret_names;

/// The field manager keel-k8s patches as.
pub const FIELD_MANAGER: &str = "keel";

/// Kubernetes Deployments, StatefulSets, DaemonSets and CronJobs, and OpenShift's
/// DeploymentConfigs and ImageStream tags, configured by Keel's `keel.sh/*` annotations and
/// labels, as a [`Target`].
///
/// Discovery reads caches that watches keep current: the first [`Target::discover`] waits
/// for the initial list of each watch, and later calls make no request at all. Updates patch
/// only the container's `image` (a strategic merge patch as field manager `keel`, guarded by
/// the object's `resourceVersion`, re-read and retried on a 409 Conflict). The OpenShift
/// kinds get the same change as a JSON patch that carries the `resourceVersion` read, and an
/// ImageStream tag's `from.name` is its image.
///
/// Ids of tracked images are `<kind>/<namespace>/<name>/<container>`, with
/// `init:<container>` for init containers (tracked when `keel.sh/initContainers` is true),
/// e.g. `deployment/shop/web/app`; an ImageStream tag's is `imagestream/shop/web/stable`.
///
/// ```no_run
/// use keel_k8s::KubeTarget;
/// use keel_core::Target as _;
/// # async fn demo() -> Result<(), keel_core::Error> {
/// let client = kube::Client::try_default().await.expect("a kubeconfig");
/// let target = KubeTarget::builder(client)
///     .with_name("cluster prod")
///     .with_namespaces(["shop", "payments"])
///     .build()
///     .await?;
/// for image in target.discover().await? {
///     println!("{} runs {}", image.id, image.image);
/// }
/// for problem in target.problems() {
///     eprintln!("skipped: {problem}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KubeTarget {
    inner: Arc<Inner>,
}

impl fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeTarget")
            .field("watch", &self.inner.settings.watch)
            .field("label_selector", &self.inner.settings.label_selector)
            .field("kinds", &self.inner.settings.kinds)
            .finish_non_exhaustive()
    }
}

/// A container of a workload and the image it has, as listings such as `keel check --kube`
/// show it; the part [`WorkloadImage`] and [`ImageTrigger`] share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkloadContainer {
    /// The workload's kind.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The container's name.
    pub container: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The image as written in the container (for a container an ImageStream tag drives:
    /// as OpenShift wrote it).
    pub image: String,
}

impl WorkloadContainer {
    /// `container` (with `image` as written) of the workload `view`.
    pub(crate) fn of(
        view: &WorkloadView,
        container: &crate::workload::ContainerView,
        image: &str,
    ) -> Self {
        WorkloadContainer {
            kind: view.kind.to_string(),
            namespace: view.namespace.clone(),
            name: view.name.clone(),
            container: container.name.clone(),
            init: container.init,
            image: image.to_owned(),
        }
    }

    /// The workload as listings name it: `namespace/kind/name`.
    pub fn workload(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }

    /// The container as listings name it: its name, with ` (init)` for an init container.
    pub fn container_label(&self) -> String {
        if self.init {
            format!("{} (init)", self.container)
        } else {
            self.container.clone()
        }
    }
}

/// One tracked container of a workload, for listings such as `keel check --kube`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkloadImage {
    /// The tracked image's id.
    pub id: String,
    /// The workload, the container and its image.
    #[serde(flatten)]
    pub workload: WorkloadContainer,
    /// The policy as written in `keel.sh/policy`.
    pub policy: String,
    /// `poll <schedule>` or `webhook`.
    pub trigger: String,
}

/// A container whose image OpenShift writes from an ImageStream tag, for listings such as
/// `keel check --kube`: the whole chain from the external image to the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageTrigger {
    /// The workload, the container and the image it has now (written by OpenShift).
    #[serde(flatten)]
    pub workload: WorkloadContainer,
    /// The ImageStreamTag that drives it, `namespace/stream:tag`.
    pub image_stream_tag: String,
    /// What drives it: `ImageChange trigger` (a DeploymentConfig's) or
    /// `image.openshift.io/triggers` (the annotation).
    pub via: String,
    /// The external image the tag follows (its `from.name`), when the stream is watched and
    /// the tag has one.
    pub source: Option<String>,
    /// The id of the tracked ImageStream tag, when keel-rs updates it (by the stream's keys or
    /// the workload's).
    pub tracked_id: Option<String>,
}

/// What [`KubeTarget::verify_rollout`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutVerdict {
    /// The new image rolled out in time.
    Complete(RolloutStatus),
    /// It did not; the container was set back to its previous image.
    RolledBack(RolloutStatus),
    /// The kind has no rollout to follow (a CronJob; an ImageStream, whose dependents
    /// OpenShift's own triggers roll out).
    NoRollout,
}

impl KubeTarget {
    /// A builder over `client`: all namespaces, every kind, no label selector, no digest
    /// pinning, named `kubernetes`.
    pub fn builder(client: Client) -> KubeTargetBuilder {
        KubeTargetBuilder {
            client,
            watch: WatchSettings::new("kubernetes"),
            label_selector: None,
            kinds: WorkloadKind::ALL.to_vec(),
            kinds_chosen: false,
            conflict_retries: 5,
        }
    }

    /// Marked changed whenever a watch sees a workload applied, changed or deleted (or
    /// finishes a list), so that an application can look at a new workload when its event
    /// arrives instead of at its next periodic pass. Changes that come while nobody looks
    /// are seen as one.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.inner.changes.subscribe()
    }

    /// The kinds being watched (CronJob is left out where the server lacks `batch/v1`, the
    /// OpenShift kinds where it lacks their API groups).
    pub fn kinds(&self) -> &[WorkloadKind] {
        &self.inner.settings.kinds
    }

    /// The workloads the last discovery skipped, one entry per bad key value (a bad policy, a
    /// bad regex, a non-numeric count...), naming the workload, the key and the value.
    pub fn problems(&self) -> Vec<Problem> {
        self.inner.problems.current()
    }

    /// Every tracked container with its image and policy as written, sorted by id. Waits for
    /// the caches like [`Target::discover`].
    ///
    /// # Errors
    /// As [`Target::discover`].
    pub async fn workloads(&self) -> Result<Vec<WorkloadImage>, Error> {
        let scan = self.scan().await?;
        Ok(scan.tracked.into_iter().map(|(_, w)| w).collect())
    }

    /// Every container, of any watched kind, whose image an OpenShift ImageStream tag drives
    /// (a DeploymentConfig's automatic `ImageChange` trigger, or the
    /// `image.openshift.io/triggers` annotation where ImageStreams are watched), with the tag,
    /// its external source and whether keel-rs tracks the tag; sorted by workload and
    /// container. Such containers are never patched directly. Waits for the caches like
    /// [`Target::discover`].
    ///
    /// # Errors
    /// As [`Target::discover`].
    pub async fn image_triggers(&self) -> Result<Vec<ImageTrigger>, Error> {
        self.triggers().await
    }

    /// The pull secrets the tracked image `tracked_id` is pulled with, as
    /// `(namespace, secret name)`: the pod template's `imagePullSecrets`, then those named in
    /// `keel.sh/imagePullSecret`. Empty for an unknown id or before the caches are synced.
    pub fn pull_secrets_of(&self, tracked_id: &str) -> Vec<(String, String)> {
        let Some(id) = ContainerId::parse(tracked_id) else {
            return Vec::new();
        };
        self.cached(&id)
            .map(|view| {
                pull_secret_names(&view)
                    .into_iter()
                    .map(|name| (view.namespace.clone(), name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Follows the rollout an applied `plan` started, up to `deadline`, and when it does not
    /// become available in time (or the Deployment reports `ProgressDeadlineExceeded`),
    /// rolls the container back to `plan.current`, leaving the `keel.sh/rollback`
    /// annotation that says why. CronJobs and ImageStream tags have no rollout of their own:
    /// [`RolloutVerdict::NoRollout`].
    ///
    /// # Errors
    /// [`Error::NotFound`] for an id that is not one of this target's; the server's answer
    /// when reading the status or patching fails; [`Error::Conflict`] when the container
    /// runs neither image any more (someone else changed it: nothing is undone).
    pub async fn verify_rollout(
        &self,
        plan: &UpdatePlan,
        deadline: Duration,
    ) -> Result<RolloutVerdict, Error> {
        let id = ContainerId::parse(&plan.id)
            .ok_or_else(|| Error::untracked(&plan.id, self.inner.settings.watch.name()))?;
        if matches!(id.kind, WorkloadKind::CronJob | WorkloadKind::ImageStream) {
            return Ok(RolloutVerdict::NoRollout);
        }
        let workload = id.workload_ref();
        let status = watch_rollout(&self.inner.settings.client, &workload, deadline).await?;
        if status.complete && !status.failed() {
            return Ok(RolloutVerdict::Complete(status));
        }
        let running = self
            .cached(&id)
            .and_then(|view| {
                view.containers
                    .into_iter()
                    .find(|c| c.name == id.container && c.init == id.init)
                    .and_then(|c| c.image)
            })
            .unwrap_or_else(|| plan.new.to_string());
        let why = status
            .failed_reason
            .clone()
            .unwrap_or_else(|| format!("not available within {deadline:?}"));
        let reason = format!("the rollout of {} failed: {why}", plan.new);
        warn!(workload = %workload, %reason, "rolling back");
        rollback(
            &self.inner.settings.client,
            &workload,
            &id.container,
            &running,
            &plan.current.to_string(),
            &reason,
        )
        .await?;
        Ok(RolloutVerdict::RolledBack(status))
    }

    /// The cached view of the workload holding `id`.
    pub(crate) fn cached(&self, id: &ContainerId) -> Option<WorkloadView> {
        self.inner
            .caches
            .iter()
            .filter(|c| c.kind() == id.kind)
            .filter(|c| c.namespace().is_none_or(|ns| ns == id.namespace))
            .find_map(|c| c.find(&id.namespace, &id.name))
    }
}

#[async_trait]
impl Target for KubeTarget {
    fn name(&self) -> &str {
        self.inner.settings.watch.name()
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>, Error> {
        self.inner.settings.watch.discover(self.scan()).await
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome, Error> {
        let id = self.container_id(&plan.id)?;
        let span = info_span!(
            "apply",
            target_name = %self.inner.settings.watch.name(),
            id = %plan.id,
            current = %plan.current,
            new = %plan.new
        );
        async {
            match id.kind {
                WorkloadKind::Deployment => self.apply_typed::<Deployment>(&id, plan).await,
                WorkloadKind::StatefulSet => self.apply_typed::<StatefulSet>(&id, plan).await,
                WorkloadKind::DaemonSet => self.apply_typed::<DaemonSet>(&id, plan).await,
                WorkloadKind::CronJob => self.apply_typed::<CronJob>(&id, plan).await,
                WorkloadKind::DeploymentConfig => {
                    self.apply_typed::<DeploymentConfig>(&id, plan).await
                }
                WorkloadKind::ImageStream => self.apply_typed::<ImageStream>(&id, plan).await,
            }
        }
        .instrument(span)
        .await
    }

    /// The workload's `keel.sh/*` labels and annotations (an annotation wins over a label).
    async fn settings(&self, id: &str) -> Result<BTreeMap<String, String>, Error> {
        let id = self.container_id(id)?;
        match id.kind {
            WorkloadKind::Deployment => self.settings_typed::<Deployment>(&id).await,
            WorkloadKind::StatefulSet => self.settings_typed::<StatefulSet>(&id).await,
            WorkloadKind::DaemonSet => self.settings_typed::<DaemonSet>(&id).await,
            WorkloadKind::CronJob => self.settings_typed::<CronJob>(&id).await,
            WorkloadKind::DeploymentConfig => self.settings_typed::<DeploymentConfig>(&id).await,
            WorkloadKind::ImageStream => self.settings_typed::<ImageStream>(&id).await,
        }
    }

    /// Writes the change as annotations of the workload (a JSON merge patch as field manager
    /// `keel`, guarded by the `resourceVersion` read). A key set as a label is overridden by
    /// the annotation; clearing one is refused, since the label would apply again.
    async fn change_settings(&self, id: &str, change: &SettingsChange) -> Result<(), Error> {
        let id = self.container_id(id)?;
        match id.kind {
            WorkloadKind::Deployment => self.change_settings_typed::<Deployment>(&id, change).await,
            WorkloadKind::StatefulSet => {
                self.change_settings_typed::<StatefulSet>(&id, change).await
            }
            WorkloadKind::DaemonSet => self.change_settings_typed::<DaemonSet>(&id, change).await,
            WorkloadKind::CronJob => self.change_settings_typed::<CronJob>(&id, change).await,
            WorkloadKind::DeploymentConfig => {
                self.change_settings_typed::<DeploymentConfig>(&id, change)
                    .await
            }
            WorkloadKind::ImageStream => {
                self.change_settings_typed::<ImageStream>(&id, change).await
            }
        }
    }
}
