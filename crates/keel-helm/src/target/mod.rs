//! [`HelmTarget`]: Helm releases as a [`Target`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use keel_core::policy::Policy;
use keel_core::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};
use keel_core::{Error, ImageRef};
use keel_k8s::avoid::{AvoidTag, FAILED_ANNOTATION};
use keel_k8s::sync::WatchSettings;
use keel_k8s::{Problem, ProblemLog};
use serde::Serialize;
use tracing::debug;

use crate::config::{self, ImageEntry};
use crate::helm::CheckedHelm;
use crate::release::Status;
use crate::storage::Driver;

mod apply;
mod builder;
mod watch;

pub use self::builder::HelmTargetBuilder;
use self::watch::{Revision, Watch};

/// The kind named in a [`Problem`] about a release.
pub const PROBLEM_KIND: &str = "helm release";

/// Helm releases configured by Keel's `keel:` block in their values, as a [`Target`]: Keel's
/// Helm provider.
///
/// Discovery reads caches that watches of Helm's own storage keep current (objects labelled
/// `owner=helm`, Secrets and ConfigMaps): the first [`Target::discover`] waits for the
/// initial lists, and later calls make no request at all. Only deployed revisions are
/// tracked; a release with an operation under way (`pending-*`) is left alone.
///
/// An update runs `helm upgrade` with the chart the release was deployed from (written back
/// from Helm's storage, so the chart version does not change) and the values it had, with only
/// the tracked paths changed. Several updates of one release go into one upgrade
/// ([`Target::apply_all`]).
///
/// Ids of tracked images are `helm/<namespace>/<release>/<path>`, the path being the
/// image's repository or whole-reference value, e.g. `helm/shop/web/image.repository`.
///
/// ```no_run
/// use keel_helm::HelmTarget;
/// use keel_core::Target as _;
/// # async fn demo() -> Result<(), keel_core::Error> {
/// let client = kube::Client::try_default().await.expect("a kubeconfig");
/// let target = HelmTarget::builder(client).with_namespaces(["shop"]).build().await?;
/// for image in target.discover().await? {
///     println!("{} runs {}", image.id, image.image);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HelmTarget {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    watch: WatchSettings,
    drivers: Vec<Driver>,
    helm: CheckedHelm,
    watches: Vec<Watch>,
    changes: tokio::sync::watch::Sender<()>,
    problems: ProblemLog,
    /// Images helm refused to upgrade to without recording a revision (a chart that fails to
    /// render), by tracked id: not tried again while this target lives.
    refused: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl fmt::Debug for HelmTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelmTarget")
            .field("watch", &self.inner.watch)
            .field("drivers", &self.inner.drivers)
            .field("helm", &self.inner.helm)
            .finish_non_exhaustive()
    }
}

/// One tracked image of a release, for listings such as `keel check --helm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReleaseImage {
    /// The tracked image's id.
    pub id: String,
    /// The release's namespace.
    pub namespace: String,
    /// The release's name.
    pub release: String,
    /// Its deployed revision.
    pub revision: u32,
    /// The chart, `name-version`.
    pub chart: String,
    /// The path of the image in the values (repository or whole reference).
    pub path: String,
    /// The image the values hold.
    pub image: String,
    /// The policy as written in `keel.policy`.
    pub policy: String,
    /// `poll <schedule>` or `webhook`.
    pub trigger: String,
}

/// The parts of a tracked id.
pub(crate) struct ReleaseId<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) release: &'a str,
    pub(crate) path: &'a str,
}

impl<'a> ReleaseId<'a> {
    pub(crate) fn parse(id: &'a str) -> Option<ReleaseId<'a>> {
        let mut parts = id.strip_prefix("helm/")?.splitn(3, '/');
        let (namespace, release, path) = (parts.next()?, parts.next()?, parts.next()?);
        (!namespace.is_empty() && !release.is_empty() && !path.is_empty()).then_some(ReleaseId {
            namespace,
            release,
            path,
        })
    }
}

/// The tracked id of the image at `path` of a release.
pub(crate) fn tracked_id(namespace: &str, release: &str, path: &str) -> String {
    format!("helm/{namespace}/{release}/{path}")
}

/// Whether `image` may be what runs as `running`: the same repository and tag, and the same
/// digest where both name one. The tags to avoid leave out whatever may run now; whether a
/// plan is already applied is [`UpdatePlan::already_runs`](keel_core::target::UpdatePlan::already_runs),
/// stricter about digests.
fn may_run_as(running: &ImageRef, image: &ImageRef) -> bool {
    running.name() == image.name()
        && running.tag() == image.tag()
        && match (running.digest(), image.digest()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

type Scan = keel_k8s::sync::Scan<ReleaseImage>;

impl HelmTarget {
    /// A builder over `client`: all namespaces, both storage drivers, `helm` from `PATH`,
    /// named `helm`.
    pub fn builder(client: kube::Client) -> HelmTargetBuilder {
        HelmTargetBuilder::new(client)
    }

    /// The helm binary this target runs.
    pub fn helm(&self) -> &CheckedHelm {
        &self.inner.helm
    }

    /// Marked changed whenever a watch sees a release revision stored, changed or deleted.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.inner.changes.subscribe()
    }

    /// The releases the last discovery skipped, one entry per bad value, naming the release,
    /// the path and the value.
    pub fn problems(&self) -> Vec<Problem> {
        self.inner.problems.current()
    }

    /// Every tracked image with its release, path and policy as written, sorted by id. Waits
    /// for the caches like [`Target::discover`].
    ///
    /// # Errors
    /// As [`Target::discover`].
    pub async fn releases(&self) -> Result<Vec<ReleaseImage>, Error> {
        Ok(self
            .scan()
            .await?
            .tracked
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.inner.watch.scope().contains(namespace)
    }

    async fn wait_synced(&self) -> Result<(), Error> {
        let watches: Vec<&Watch> = self.inner.watches.iter().collect();
        keel_k8s::sync::wait_synced(&watches, self.inner.watch.sync_timeout()).await
    }

    async fn scan(&self) -> Result<Scan, Error> {
        self.wait_synced().await?;
        let mut releases: BTreeMap<(String, String), Vec<Arc<Revision>>> = BTreeMap::new();
        for watch in &self.inner.watches {
            for revision in watch.revisions() {
                let key = (
                    revision.stored.namespace.clone(),
                    revision.stored.release.clone(),
                );
                releases.entry(key).or_default().push(revision);
            }
        }
        let mut scan = Scan::default();
        for ((namespace, release), revisions) in releases {
            if let Err(problem) = self.scan_release(&namespace, &release, &revisions, &mut scan) {
                scan.problems.push(*problem);
            }
        }
        scan.tracked.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        self.inner
            .problems
            .record(self.inner.watch.name(), scan.problems.clone());
        Ok(scan)
    }

    fn scan_release(
        &self,
        namespace: &str,
        release: &str,
        revisions: &[Arc<Revision>],
        scan: &mut Scan,
    ) -> Result<(), Box<Problem>> {
        let problem = |key: &str, value: &str, reason: &str| {
            Box::new(Problem {
                kind: PROBLEM_KIND.to_owned(),
                namespace: namespace.to_owned(),
                name: release.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let Some(deployed) = revisions
            .iter()
            .filter(|r| r.stored.status == Status::Deployed)
            .max_by_key(|r| r.stored.version)
        else {
            return Ok(());
        };
        let newer = |status: Status| {
            revisions.iter().filter(move |r| {
                r.stored.status == status && r.stored.version > deployed.stored.version
            })
        };
        if let Some(pending) = newer(Status::Pending).next() {
            debug!(
                release = %format!("{namespace}/{release}"),
                revision = pending.stored.version,
                "an operation is under way; not tracked until it ends"
            );
            return Ok(());
        }
        let revision = format!("revision {}", deployed.stored.version);
        let values = deployed
            .values
            .as_ref()
            .map_err(|reason| problem("release", &revision, reason))?;
        let Some(config) =
            config::read(values).map_err(|e| problem(&e.path, &e.value, &e.reason))?
        else {
            return Ok(());
        };
        let spec = config
            .keel
            .tracked_policy()
            .map(ToString::to_string)
            .unwrap_or_default();
        let policy: Arc<dyn Policy> = match config.keel.version_policy() {
            Ok(Some(policy)) => Arc::new(policy),
            Ok(None) => return Ok(()),
            Err(e) => return Err(problem("keel.policy", &e.value, &e.reason)),
        };
        let rolled_back: BTreeMap<String, String> = deployed
            .stored
            .annotations
            .get(FAILED_ANNOTATION)
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        let mut images = Vec::new();
        for entry in &config.images {
            let current = entry
                .current(values)
                .map_err(|e| problem(&e.path, &e.value, &e.reason))?;
            images.push((entry, current));
        }
        let chart = deployed.chart.clone();
        for (entry, current) in images {
            let id = tracked_id(namespace, release, entry.key());
            let avoided = self.avoided(&id, entry, &current, &rolled_back, newer(Status::Failed));
            let mut image_policy = Arc::clone(&policy);
            for tag in avoided {
                image_policy = Arc::new(AvoidTag::new(image_policy, tag));
            }
            let mut tracked = config.keel.settings.apply_to(TrackedImage::new(
                id.clone(),
                current.clone(),
                image_policy,
            ));
            if let Some(notes) = &entry.release_notes {
                tracked = tracked.with_release_notes(notes.clone());
            }
            let secrets = entry.pull_secrets(values);
            if !secrets.is_empty() {
                scan.pull_secrets.push((
                    id.clone(),
                    current.clone(),
                    secrets
                        .into_iter()
                        .map(|name| keel_k8s::SecretRef::new(namespace, name))
                        .collect(),
                ));
            }
            let listing = ReleaseImage {
                id,
                namespace: namespace.to_owned(),
                release: release.to_owned(),
                revision: deployed.stored.version,
                chart: chart.clone(),
                path: entry.key().to_owned(),
                image: current.to_string(),
                policy: spec.clone(),
                trigger: tracked.trigger.to_string(),
            };
            scan.tracked.push((tracked, listing));
        }
        Ok(())
    }

    /// The tags this image must not move to: one a rollback undid, one a failed upgrade
    /// stored (newer than the deployed revision), one helm refused to render.
    fn avoided<'a>(
        &self,
        id: &str,
        entry: &ImageEntry,
        current: &ImageRef,
        rolled_back: &BTreeMap<String, String>,
        failed: impl Iterator<Item = &'a Arc<Revision>>,
    ) -> BTreeSet<String> {
        let mut images: BTreeSet<String> = BTreeSet::new();
        if let Some(image) = rolled_back.get(entry.key()) {
            images.insert(image.clone());
        }
        for revision in failed {
            if let Ok(values) = &revision.values
                && let Ok(image) = entry.current(values)
            {
                images.insert(image.to_string());
            }
        }
        if let Some(refused) = self
            .inner
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            images.extend(refused.iter().cloned());
        }
        images
            .iter()
            .filter_map(|text| ImageRef::parse(text).ok())
            .filter(|image| image.name() == current.name() && !may_run_as(current, image))
            .filter_map(|image| image.tag().map(|t| t.as_str().to_owned()))
            .collect()
    }
}

#[async_trait]
impl Target for HelmTarget {
    fn name(&self) -> &str {
        self.inner.watch.name()
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>, Error> {
        self.inner.watch.discover(self.scan()).await
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome, Error> {
        self.apply_all(std::slice::from_ref(plan))
            .await
            .pop()
            .expect("one result per plan")
    }

    async fn apply_all(&self, plans: &[UpdatePlan]) -> Vec<Result<ApplyOutcome, Error>> {
        self.apply_plans(plans).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = tracked_id("shop", "web", "image.repository");
        assert_eq!(id, "helm/shop/web/image.repository");
        let parsed = ReleaseId::parse(&id).unwrap();
        assert_eq!(
            (parsed.namespace, parsed.release, parsed.path),
            ("shop", "web", "image.repository")
        );
        for bad in [
            "deployment/shop/web/app",
            "helm/shop/web",
            "helm//web/x",
            "helm/a/b/",
        ] {
            assert!(ReleaseId::parse(bad).is_none(), "{bad}");
        }
    }
}
