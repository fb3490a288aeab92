//! Discovery: the tracked containers of the cached workloads, and their problems.

use std::sync::Arc;

use keel_core::target::TrackedImage;
use keel_core::{Error, ImageRef};

use crate::avoid::{AvoidTag, failed_images};
use crate::keys::{Keys, Problem};
use crate::patch::{effective_image, recorded_digests};
use crate::secrets::SecretRef;
use crate::workload::{ContainerId, WorkloadView, container_key};
use keel_core::keel_keys::KeelConfig;

use super::*;

/// What discovery found in the caches.
#[derive(Default)]
pub(super) struct Scan {
    pub(super) tracked: Vec<(TrackedImage, WorkloadImage)>,
    pub(super) problems: Vec<Problem>,
    /// Each tracked image's pull secrets, `(id, image, secrets)`, for
    /// [`PullSecrets::replace_usage`]; only images that have some.
    pub(super) pull_secrets: Vec<(String, ImageRef, Vec<SecretRef>)>,
}

impl KubeTarget {
    /// Waits until every cache has its initial list, or fails early on a watch that cannot
    /// succeed (RBAC) and late on the timeout.
    pub(super) async fn wait_synced(&self) -> Result<(), Error> {
        let caches: Vec<&dyn Cache> = self.inner.caches.iter().map(|c| c.as_ref()).collect();
        crate::sync::wait_synced(&caches, self.inner.settings.sync_timeout).await
    }

    pub(super) async fn scan(&self) -> Result<Scan, Error> {
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
        self.inner
            .problems
            .record(&self.inner.settings.name, scan.problems.clone());
        Ok(scan)
    }

    pub(super) fn in_scope(&self, namespace: &str) -> bool {
        match &self.inner.settings.scope {
            Scope::All => true,
            Scope::Namespaces(list) => list.iter().any(|ns| ns == namespace),
        }
    }
}

/// The pull secret names of a workload: the pod template's, then `keel.sh/imagePullSecret`'s.
pub(crate) fn pull_secret_names(view: &WorkloadView) -> Vec<String> {
    let keys = Keys::new(Some(&view.annotations), Some(&view.labels));
    with_extra_secrets(
        view,
        keel_core::keel_keys::image_pull_secrets(|key| keys.get(key)),
    )
}

/// The pod template's pull secrets, then `extra` (already read from
/// `keel.sh/imagePullSecret`), each name once.
fn with_extra_secrets(view: &WorkloadView, extra: Vec<String>) -> Vec<String> {
    let mut names = view.pull_secrets.clone();
    for name in extra {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

pub(super) fn problem(
    view: &WorkloadView,
    key: &str,
    value: &str,
    reason: impl Into<String>,
) -> Problem {
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
pub(super) fn track_workload(view: &WorkloadView, scan: &mut Scan) {
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
    // The keys were read once above: the extra pull secrets come from the parsed config.
    let pull_secrets: Vec<SecretRef> = with_extra_secrets(view, config.image_pull_secrets.clone())
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
            trigger: config.settings.trigger.to_string(),
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
