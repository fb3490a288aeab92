//! [`KubeTarget`]: Kubernetes workloads as a [`Target`].

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use keel_core::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};
use keel_core::{Error, ImageRef};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::Serialize;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::avoid::{AvoidTag, failed_images};
use crate::error::{self as kerr, Request};
use crate::keys::{self, Keys, Problem};
use crate::patch::{effective_image, image_patch, recorded_digests, runs};
use crate::rollout::{RolloutStatus, WorkloadRef, rollback, watch_rollout};
use crate::secrets::{PullSecrets, SecretRef};
use crate::workload::{ContainerId, Workload, WorkloadKind, WorkloadView, container_key};
use keel_core::keel_keys::KeelConfig;

/// The field manager keel-k8s patches as.
pub const FIELD_MANAGER: &str = "keel";

/// Which namespaces a [`KubeTarget`] watches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    All,
    Namespaces(Vec<String>),
}

/// Builds a [`KubeTarget`]; see [`KubeTarget::builder`].
#[derive(Clone)]
pub struct KubeTargetBuilder {
    client: Client,
    name: String,
    scope: Scope,
    label_selector: Option<String>,
    kinds: Vec<WorkloadKind>,
    pin_digests: bool,
    sync_timeout: Duration,
    conflict_retries: u32,
    pull_secrets: Option<PullSecrets>,
}

impl fmt::Debug for KubeTargetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeTargetBuilder")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("label_selector", &self.label_selector)
            .field("kinds", &self.kinds)
            .field("pin_digests", &self.pin_digests)
            .finish_non_exhaustive()
    }
}

impl KubeTargetBuilder {
    /// The target's name in plans, reports and notifications (default `kubernetes`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Watches every namespace (the default).
    pub fn all_namespaces(mut self) -> Self {
        self.scope = Scope::All;
        self
    }

    /// Watches only these namespaces (one watch per namespace and kind, for RBAC that grants
    /// Roles rather than a ClusterRole).
    pub fn with_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = Vec::new();
        for ns in namespaces {
            let ns = ns.into();
            if !list.contains(&ns) {
                list.push(ns);
            }
        }
        self.scope = Scope::Namespaces(list);
        self
    }

    /// Watches only workloads matching a label selector, e.g. `team=web,tier!=batch`.
    pub fn with_label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Watches only these kinds (default: all four; CronJobs only where the server serves
    /// `batch/v1`).
    pub fn with_kinds(mut self, kinds: &[WorkloadKind]) -> Self {
        let mut list = kinds.to_vec();
        list.sort();
        list.dedup();
        self.kinds = list;
        self
    }

    /// Whether updates write `image:tag@sha256:...` when the plan carries a digest
    /// (default false: the tag only, plus a `keel.sh/digests` record).
    pub fn pin_digests(mut self, pin: bool) -> Self {
        self.pin_digests = pin;
        self
    }

    /// How long the first [`Target::discover`] waits for the caches to fill (default 60 s).
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
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
        self.pull_secrets = Some(secrets);
        self
    }

    /// Checks the configuration, asks the server which kinds it serves (CronJobs need
    /// `batch/v1`) and starts the watches. Must run inside a Tokio runtime; the watches stop
    /// when the target is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty namespace list; the server's answer (e.g. [`Error::Unauthorized`]) when discovery of `batch/v1` fails.
    pub async fn build(self) -> Result<KubeTarget, Error> {
        match &self.scope {
            Scope::Namespaces(list)
                if list.is_empty() || list.iter().any(|ns| ns.trim().is_empty()) =>
            {
                return Err(keel_core::ParseError::new(
                    "namespace list",
                    list.join(","),
                    "name at least one namespace, none of them empty",
                )
                .into());
            }
            _ => {}
        }

        let mut kinds = self.kinds.clone();
        if kinds.contains(&WorkloadKind::CronJob) && !self.serves_cronjobs().await? {
            info!(
                target_name = %self.name,
                "the API server does not serve batch/v1 CronJobs; not watching them"
            );
            kinds.retain(|k| *k != WorkloadKind::CronJob);
        }

        let namespaces: Vec<Option<String>> = match &self.scope {
            Scope::All => vec![None],
            Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
        };
        let (changes, _) = tokio::sync::watch::channel(());
        let mut caches: Vec<Box<dyn Cache>> = Vec::new();
        for kind in &kinds {
            for ns in &namespaces {
                let ns = ns.clone();
                let tx = changes.clone();
                let cache: Box<dyn Cache> = match kind {
                    WorkloadKind::Deployment => Box::new(self.watch::<Deployment>(ns, tx)),
                    WorkloadKind::StatefulSet => Box::new(self.watch::<StatefulSet>(ns, tx)),
                    WorkloadKind::DaemonSet => Box::new(self.watch::<DaemonSet>(ns, tx)),
                    WorkloadKind::CronJob => Box::new(self.watch::<CronJob>(ns, tx)),
                };
                caches.push(cache);
            }
        }
        Ok(KubeTarget {
            inner: Arc::new(Inner {
                name: self.name,
                client: self.client,
                scope: self.scope,
                label_selector: self.label_selector,
                kinds,
                pin_digests: self.pin_digests,
                sync_timeout: self.sync_timeout,
                conflict_retries: self.conflict_retries,
                pull_secrets: self.pull_secrets,
                caches,
                changes,
                problems: Mutex::new(Vec::new()),
                warned: Mutex::new(HashSet::new()),
            }),
        })
    }

    async fn serves_cronjobs(&self) -> Result<bool, Error> {
        match self.client.list_api_group_resources("batch/v1").await {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == "cronjobs")),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(kerr::from_kube(
                e,
                &Request {
                    verb: "get",
                    resource: "API discovery of batch/v1",
                    namespace: None,
                    name: None,
                },
            )),
        }
    }

    fn watch<K: Workload>(
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
        let health = Arc::new(Health::default());
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
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(watcher::Event::InitDone) => {
                            task_health.ready.store(true, Ordering::Release);
                            task_health.set_error(None);
                            debug!("cache synced");
                            changes.send_replace(());
                        }
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                            task_health.set_error(None);
                            changes.send_replace(());
                        }
                        Ok(_) => task_health.set_error(None),
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

/// The state of one watch, shared with its task.
#[derive(Debug, Default)]
struct Health {
    ready: AtomicBool,
    last_error: Mutex<Option<watcher::Error>>,
}

impl Health {
    fn set_error(&self, error: Option<watcher::Error>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// One kind watched in one namespace (or all).
struct Watched<K: Workload> {
    kind: WorkloadKind,
    namespace: Option<String>,
    store: Store<K>,
    health: Arc<Health>,
    task: JoinHandle<()>,
}

/// The type-erased face of a [`Watched`] cache.
trait Cache: Send + Sync {
    fn kind(&self) -> WorkloadKind;
    fn namespace(&self) -> Option<&str>;
    fn is_ready(&self) -> bool;
    /// The last watch error as a keel error, and whether waiting longer cannot help.
    fn error(&self) -> Option<(Error, bool)>;
    fn views(&self) -> Vec<WorkloadView>;
    fn find(&self, namespace: &str, name: &str) -> Option<WorkloadView>;
    fn stop(&self);
}

impl<K: Workload> Cache for Watched<K> {
    fn kind(&self) -> WorkloadKind {
        self.kind
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn is_ready(&self) -> bool {
        self.health.ready.load(Ordering::Acquire)
    }

    fn error(&self) -> Option<(Error, bool)> {
        let guard = self
            .health
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let error = guard.as_ref()?;
        let verb = match error {
            watcher::Error::InitialListFailed(_) => "list",
            _ => "watch",
        };
        let request = Request {
            verb,
            resource: self.kind.plural(),
            namespace: self.namespace.as_deref(),
            name: None,
        };
        let converted = match error {
            watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            | watcher::Error::WatchFailed(kube::Error::Api(status)) => {
                kerr::from_status(status, &request)
            }
            watcher::Error::WatchError(status) => kerr::from_status(status, &request),
            other => Error::Backend {
                backend: kerr::BACKEND.to_owned(),
                action: request.action(),
                message: other.to_string(),
                retryable: true,
                source: None,
            },
        };
        // Waiting cannot fix refused credentials, a missing resource or a request the server
        // rejects (a bad label selector).
        let fatal = matches!(
            converted,
            Error::Unauthorized { .. }
                | Error::NotFound { .. }
                | Error::Backend {
                    retryable: false,
                    ..
                }
        );
        Some((converted, fatal))
    }

    fn views(&self) -> Vec<WorkloadView> {
        self.store.state().iter().map(|o| o.view()).collect()
    }

    fn find(&self, namespace: &str, name: &str) -> Option<WorkloadView> {
        let key = reflector::ObjectRef::<K>::new(name).within(namespace);
        self.store.get(&key).map(|o| o.view())
    }

    fn stop(&self) {
        self.task.abort();
    }
}

struct Inner {
    name: String,
    client: Client,
    scope: Scope,
    label_selector: Option<String>,
    kinds: Vec<WorkloadKind>,
    pin_digests: bool,
    sync_timeout: Duration,
    conflict_retries: u32,
    pull_secrets: Option<PullSecrets>,
    caches: Vec<Box<dyn Cache>>,
    /// Marked changed after each watch event that changed a cache.
    changes: tokio::sync::watch::Sender<()>,
    problems: Mutex<Vec<Problem>>,
    /// Problems already logged, so each is warned about once, not every discovery.
    warned: Mutex<HashSet<Problem>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for cache in &self.caches {
            cache.stop();
        }
    }
}

/// Kubernetes Deployments, StatefulSets, DaemonSets and CronJobs configured by Keel's
/// `keel.sh/*` annotations and labels, as a [`Target`].
///
/// Discovery reads caches that watches keep current: the first [`Target::discover`] waits
/// for the initial list of each watch, and later calls make no request at all. Updates patch
/// only the container's `image` (a strategic merge patch as field manager `keel`, guarded by
/// the object's `resourceVersion`, re-read and retried on a 409 Conflict).
///
/// Ids of tracked images are `<kind>/<namespace>/<name>/<container>`, with
/// `init:<container>` for init containers (tracked when `keel.sh/initContainers` is true),
/// e.g. `deployment/shop/web/app`.
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
            .field("name", &self.inner.name)
            .field("scope", &self.inner.scope)
            .field("label_selector", &self.inner.label_selector)
            .field("kinds", &self.inner.kinds)
            .field("pin_digests", &self.inner.pin_digests)
            .finish_non_exhaustive()
    }
}

/// One tracked container of a workload, for listings such as `keel check --kube`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkloadImage {
    /// The tracked image's id.
    pub id: String,
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
    /// The image as written in the container.
    pub image: String,
    /// The policy as written in `keel.sh/policy`.
    pub policy: String,
    /// `poll <schedule>` or `webhook`.
    pub trigger: String,
}

/// What [`KubeTarget::verify_rollout`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutVerdict {
    /// The new image rolled out in time.
    Complete(RolloutStatus),
    /// It did not; the container was set back to its previous image.
    RolledBack(RolloutStatus),
    /// The workload kind has no rollout to follow (CronJob).
    NoRollout,
}

/// What discovery found in the caches.
#[derive(Default)]
struct Scan {
    tracked: Vec<(TrackedImage, WorkloadImage)>,
    problems: Vec<Problem>,
    /// Each tracked image's pull secrets, `(id, image, secrets)`, for
    /// [`PullSecrets::replace_usage`]; only images that have some.
    pull_secrets: Vec<(String, ImageRef, Vec<SecretRef>)>,
}

impl KubeTarget {
    /// A builder over `client`: all namespaces, every kind, no label selector, no digest
    /// pinning, named `kubernetes`.
    pub fn builder(client: Client) -> KubeTargetBuilder {
        KubeTargetBuilder {
            client,
            name: "kubernetes".to_owned(),
            scope: Scope::All,
            label_selector: None,
            kinds: WorkloadKind::ALL.to_vec(),
            pin_digests: false,
            sync_timeout: Duration::from_secs(60),
            conflict_retries: 5,
            pull_secrets: None,
        }
    }

    /// Marked changed whenever a watch sees a workload applied, changed or deleted (or
    /// finishes a list), so that an application can look at a new workload when its event
    /// arrives instead of at its next periodic pass. Changes that come while nobody looks
    /// are seen as one.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.inner.changes.subscribe()
    }

    /// The kinds being watched (CronJob is left out where the server lacks `batch/v1`).
    pub fn kinds(&self) -> &[WorkloadKind] {
        &self.inner.kinds
    }

    /// The workloads the last discovery skipped, one entry per bad key value (a bad policy, a
    /// bad regex, a non-numeric count...), naming the workload, the key and the value.
    pub fn problems(&self) -> Vec<Problem> {
        self.inner
            .problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    /// annotation that says why. CronJobs have no rollout: [`RolloutVerdict::NoRollout`].
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
        let id = ContainerId::parse(&plan.id).ok_or_else(|| {
            Error::not_found(format!("tracked image {} in {}", plan.id, self.inner.name))
        })?;
        if id.kind == WorkloadKind::CronJob {
            return Ok(RolloutVerdict::NoRollout);
        }
        let workload = WorkloadRef::new(id.kind, id.namespace.clone(), id.name.clone());
        let status = watch_rollout(&self.inner.client, &workload, deadline).await?;
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
            &self.inner.client,
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

    /// Waits until every cache has its initial list, or fails early on a watch that cannot
    /// succeed (RBAC) and late on the timeout.
    async fn wait_synced(&self) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let mut pending = Vec::new();
            for cache in &self.inner.caches {
                if cache.is_ready() {
                    continue;
                }
                match cache.error() {
                    Some((error, true)) => return Err(error),
                    other => pending.push((cache, other.map(|(e, _)| e))),
                }
            }
            let Some((cache, last_error)) = pending.into_iter().next() else {
                return Ok(());
            };
            if started.elapsed() >= self.inner.sync_timeout {
                let scope = cache.namespace().map_or_else(
                    || "all namespaces".to_owned(),
                    |ns| format!("namespace {ns}"),
                );
                return Err(Error::Backend {
                    backend: kerr::BACKEND.to_owned(),
                    action: format!("sync the cache of {} in {scope}", cache.kind().plural()),
                    message: match last_error {
                        Some(e) => format!(
                            "no initial list after {}s; last error: {e}",
                            self.inner.sync_timeout.as_secs()
                        ),
                        None => format!(
                            "no initial list after {}s",
                            self.inner.sync_timeout.as_secs()
                        ),
                    },
                    retryable: true,
                    source: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn scan(&self) -> Result<Scan, Error> {
        self.wait_synced().await?;
        let mut scan = Scan::default();
        for cache in &self.inner.caches {
            for view in cache.views() {
                track_workload(&view, &mut scan);
            }
        }
        scan.tracked.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        scan.problems.sort_by(|a, b| {
            (&a.kind, &a.namespace, &a.name, &a.key).cmp(&(&b.kind, &b.namespace, &b.name, &b.key))
        });
        {
            let mut warned = self.inner.warned.lock().unwrap_or_else(|p| p.into_inner());
            for problem in &scan.problems {
                if warned.insert(problem.clone()) {
                    warn!(
                        target_name = %self.inner.name,
                        kind = %problem.kind,
                        namespace = %problem.namespace,
                        name = %problem.name,
                        key = %problem.key,
                        value = %problem.value,
                        "skipping workload: {problem}"
                    );
                }
            }
            // Forget fixed problems, so they are warned about again should they come back.
            warned.retain(|p| scan.problems.contains(p));
        }
        *self
            .inner
            .problems
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = scan.problems.clone();
        Ok(scan)
    }

    fn in_scope(&self, namespace: &str) -> bool {
        match &self.inner.scope {
            Scope::All => true,
            Scope::Namespaces(list) => list.iter().any(|ns| ns == namespace),
        }
    }

    async fn apply_typed<K: Workload>(
        &self,
        id: &ContainerId,
        plan: &UpdatePlan,
    ) -> Result<ApplyOutcome, Error> {
        let api: Api<K> = Api::namespaced(self.inner.client.clone(), &id.namespace);
        let resource = id.kind.plural();
        let request = |verb| Request {
            verb,
            resource,
            namespace: Some(&id.namespace),
            name: Some(&id.name),
        };
        let action = format!("apply {plan}");
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let mut attempt = 0;
        loop {
            let object = api
                .get(&id.name)
                .await
                .map_err(|e| kerr::from_kube(e, &request("get")))?;
            let view = object.view();
            let container = view.container(&id.container, id.init).ok_or_else(|| {
                Error::not_found(format!(
                    "{}container {} in {}",
                    if id.init { "init " } else { "" },
                    id.container,
                    id.workload()
                ))
            })?;
            let written_text = container.image.clone().unwrap_or_default();
            let written = ImageRef::parse(&written_text).map_err(|e| Error::Conflict {
                action: action.clone(),
                reason: format!("{id} runs an image that does not parse ({e})"),
            })?;
            let running = effective_image(&written, container, &recorded_digests(&view));
            if runs(&running, &plan.new) {
                debug!("already runs the new image");
                return Ok(ApplyOutcome::AlreadyCurrent);
            }
            // A plan that follows digests must know the digest that runs; without digests in
            // play, the repository and tag decide.
            let still_current = if plan.new.digest().is_some() && running.digest().is_some() {
                running == plan.current
            } else {
                runs(&running, &plan.current)
            };
            if !still_current {
                return Err(Error::Conflict {
                    action,
                    reason: format!(
                        "{id} runs {running} now, not {}; discover again",
                        plan.current
                    ),
                });
            }
            let patch = image_patch(
                &view,
                container,
                &written_text,
                &written,
                plan,
                self.inner.pin_digests,
                chrono::Utc::now(),
            );
            match api
                .patch(&id.name, &params, &Patch::Strategic(&patch.body))
                .await
            {
                Ok(_) => {
                    info!(
                        image = %patch.image,
                        rolls_by_annotation = patch.forces_roll,
                        "patched"
                    );
                    return Ok(ApplyOutcome::Applied);
                }
                Err(e) if kerr::is_conflict(&e) && attempt < self.inner.conflict_retries => {
                    attempt += 1;
                    debug!(attempt, "409 Conflict: the workload changed; re-reading");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(e) if kerr::is_conflict(&e) => {
                    return Err(Error::Conflict {
                        action,
                        reason: format!(
                            "{} kept changing: {} attempts met a 409 Conflict",
                            id.workload(),
                            attempt + 1
                        ),
                    });
                }
                Err(e) => return Err(kerr::from_kube(e, &request("patch"))),
            }
        }
    }
}

/// The pull secret names of a workload: the pod template's, then `keel.sh/imagePullSecret`'s.
pub(crate) fn pull_secret_names(view: &WorkloadView) -> Vec<String> {
    let mut names = view.pull_secrets.clone();
    let keys = Keys::new(Some(&view.annotations), Some(&view.labels));
    for name in keys
        .get(keys::IMAGE_PULL_SECRET)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

fn problem(view: &WorkloadView, key: &str, value: &str, reason: impl Into<String>) -> Problem {
    Problem {
        kind: view.kind.to_string(),
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Adds the tracked containers of one workload, or its problem.
fn track_workload(view: &WorkloadView, scan: &mut Scan) {
    let keys = Keys::new(Some(&view.annotations), Some(&view.labels));
    let parsed = KeelConfig::parse_tracked(|key| keys.get(key)).and_then(|config| {
        let policy = config
            .as_ref()
            .map(KeelConfig::version_policy)
            .transpose()?;
        Ok(config.zip(policy.flatten()))
    });
    let (config, base) = match parsed {
        Ok(Some((config, policy))) => (config, Arc::new(policy)),
        Ok(None) => return,
        Err(e) => {
            scan.problems
                .push(problem(view, &e.key, &e.value, e.reason));
            return;
        }
    };
    let recorded = recorded_digests(view);
    let failed = failed_images(&view.annotations);
    let needs_digest = keel_core::Policy::needs(base.as_ref()).current_tag_digest;
    let pull_secrets: Vec<SecretRef> = pull_secret_names(view)
        .into_iter()
        .map(|name| SecretRef::new(view.namespace.clone(), name))
        .collect();
    for container in &view.containers {
        if !config.monitors(&container.name, container.init) {
            continue;
        }
        let Some(text) = container.image.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let key = container_key(&container.name, container.init);
        let written = match ImageRef::parse(text) {
            Ok(image) => image,
            Err(e) => {
                scan.problems.push(problem(
                    view,
                    &format!("image of container {key}"),
                    text,
                    e.reason().to_owned(),
                ));
                continue;
            }
        };
        // A digest recorded by an earlier update is what the policy compares against when it
        // follows digests; other policies see the image as written.
        let image = if needs_digest {
            effective_image(&written, container, &recorded)
        } else {
            written
        };
        let id = ContainerId {
            kind: view.kind,
            namespace: view.namespace.clone(),
            name: view.name.clone(),
            container: container.name.clone(),
            init: container.init,
        }
        .to_string();
        // A version a rollback undid is not chosen again (a newer one is).
        let failed_tag = failed
            .get(&container.name)
            .and_then(|f| ImageRef::parse(f).ok())
            .filter(|f| f.name() == image.name())
            .and_then(|f| f.tag().map(|t| t.as_str().to_owned()));
        let policy: Arc<dyn keel_core::Policy> = match failed_tag {
            Some(tag) => Arc::new(AvoidTag::new(base.clone(), tag)),
            None => base.clone(),
        };
        let tracked = config
            .settings
            .apply_to(TrackedImage::new(id.clone(), image, policy));
        let listing = WorkloadImage {
            id,
            kind: view.kind.to_string(),
            namespace: view.namespace.clone(),
            name: view.name.clone(),
            container: container.name.clone(),
            init: container.init,
            image: text.to_owned(),
            policy: base.spec().to_string(),
            trigger: match &config.settings.trigger {
                keel_core::target::Trigger::Poll {
                    schedule: Some(schedule),
                } => format!("poll {schedule}"),
                keel_core::target::Trigger::Poll { schedule: None } => "poll".to_owned(),
                _ => "webhook".to_owned(),
            },
        };
        if !pull_secrets.is_empty() {
            scan.pull_secrets.push((
                tracked.id.clone(),
                tracked.image.clone(),
                pull_secrets.clone(),
            ));
        }
        scan.tracked.push((tracked, listing));
    }
}

#[async_trait]
impl Target for KubeTarget {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>, Error> {
        let scan = self
            .scan()
            .instrument(info_span!("discover", target_name = %self.inner.name))
            .await?;
        if let Some(secrets) = &self.inner.pull_secrets {
            secrets.replace_usage(scan.pull_secrets);
        }
        Ok(scan.tracked.into_iter().map(|(t, _)| t).collect())
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome, Error> {
        let unknown =
            || Error::not_found(format!("tracked image {} in {}", plan.id, self.inner.name));
        let id = ContainerId::parse(&plan.id).ok_or_else(unknown)?;
        if !self.in_scope(&id.namespace) || !self.inner.kinds.contains(&id.kind) {
            return Err(unknown());
        }
        let span = info_span!(
            "apply",
            target_name = %self.inner.name,
            id = %plan.id,
            current = %plan.current,
            new = %plan.new
        );
        match id.kind {
            WorkloadKind::Deployment => {
                self.apply_typed::<Deployment>(&id, plan)
                    .instrument(span)
                    .await
            }
            WorkloadKind::StatefulSet => {
                self.apply_typed::<StatefulSet>(&id, plan)
                    .instrument(span)
                    .await
            }
            WorkloadKind::DaemonSet => {
                self.apply_typed::<DaemonSet>(&id, plan)
                    .instrument(span)
                    .await
            }
            WorkloadKind::CronJob => {
                self.apply_typed::<CronJob>(&id, plan)
                    .instrument(span)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::workload::ContainerView;

    fn view(annotations: &[(&str, &str)], containers: &[(&str, &str, bool)]) -> WorkloadView {
        WorkloadView {
            kind: WorkloadKind::StatefulSet,
            namespace: "db".into(),
            name: "pg".into(),
            resource_version: Some("1".into()),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            labels: BTreeMap::new(),
            containers: containers
                .iter()
                .map(|(name, image, init)| ContainerView {
                    name: (*name).into(),
                    image: Some((*image).into()),
                    init: *init,
                })
                .collect(),
            pull_secrets: vec!["regcred".into()],
        }
    }

    fn scan_of(view: &WorkloadView) -> Scan {
        let mut scan = Scan::default();
        track_workload(view, &mut scan);
        scan
    }

    #[test]
    fn tracks_each_monitored_container_with_its_config() {
        let v = view(
            &[
                (keys::POLICY, "patch"),
                (keys::INIT_CONTAINERS, "true"),
                (keys::APPROVALS, "1"),
            ],
            &[
                ("pg", "postgres:16.1", false),
                ("exporter", "quay.io/prometheus/exporter:v0.15.0", false),
                ("init", "busybox:1.36", true),
            ],
        );
        let scan = scan_of(&v);
        assert!(scan.problems.is_empty());
        let ids: Vec<&str> = scan.tracked.iter().map(|(t, _)| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "statefulset/db/pg/pg",
                "statefulset/db/pg/exporter",
                "statefulset/db/pg/init:init"
            ]
        );
        assert!(scan.tracked.iter().all(|(t, _)| t.approvals == 1));
        assert_eq!(scan.tracked[0].1.image, "postgres:16.1");
        assert_eq!(scan.tracked[0].1.trigger, "webhook");
    }

    #[test]
    fn a_bad_image_skips_only_its_container() {
        let v = view(
            &[(keys::POLICY, "minor")],
            &[
                ("app", "Not/A:Valid:Image", false),
                ("ok", "nginx:1.25", false),
            ],
        );
        let scan = scan_of(&v);
        assert_eq!(scan.tracked.len(), 1);
        assert_eq!(scan.problems.len(), 1);
        let text = scan.problems[0].to_string();
        assert!(
            text.starts_with("statefulset db/pg: image of container app = \"Not/A:Valid:Image\""),
            "{text}"
        );
    }

    #[test]
    fn recorded_digests_show_only_to_digest_following_policies() {
        let digest = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
        let record = format!(r#"{{"app":"docker.io/library/nginx:1.25@{digest}"}}"#);
        let follow = view(
            &[
                (keys::POLICY, "force"),
                (keys::MATCH_TAG, "true"),
                (keys::DIGESTS, &record),
            ],
            &[("app", "nginx:1.25", false)],
        );
        let scan = scan_of(&follow);
        assert_eq!(
            scan.tracked[0].0.image.digest().map(|d| d.as_str()),
            Some(digest)
        );
        let minor = view(
            &[(keys::POLICY, "minor"), (keys::DIGESTS, &record)],
            &[("app", "nginx:1.25", false)],
        );
        assert_eq!(scan_of(&minor).tracked[0].0.image.digest(), None);
    }

    #[test]
    fn pull_secrets_merge_template_and_annotation() {
        let v = view(&[(keys::IMAGE_PULL_SECRET, "extra,regcred, more ")], &[]);
        assert_eq!(pull_secret_names(&v), ["regcred", "extra", "more"]);
    }
}
