//! Discovery: the tracked containers of the cached workloads, and their problems.

use std::collections::HashMap;
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
pub(super) type Scan = crate::sync::Scan<WorkloadImage>;

impl KubeTarget {
    /// Waits until every cache has its initial list, or fails early on a watch that cannot
    /// succeed (RBAC) and late on the timeout.
    pub(super) async fn wait_synced(&self) -> Result<(), Error> {
        let caches: Vec<&dyn Cache> = self.inner.caches.iter().map(|c| c.as_ref()).collect();
        crate::sync::wait_synced(&caches, self.inner.settings.watch.sync_timeout()).await
    }

    pub(super) async fn scan(&self) -> Result<Scan, Error> {
        self.wait_synced().await?;
        let mut scan = Scan::default();
        let mut views = self.views();
        views.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        let streams = Streams {
            watched: self.watches_streams(),
            views: views
                .iter()
                .filter(|v| v.kind == WorkloadKind::ImageStream)
                .map(|v| ((v.namespace.clone(), v.name.clone()), v))
                .collect(),
            in_scope: &|ns: &str| self.in_scope(ns),
        };
        for view in &views {
            track_workload(view, &mut scan);
        }
        // After every tag with keys of its own is tracked, which then follows them; of several
        // workloads following one tag, the first by kind, namespace and name decides.
        for view in &views {
            track_followed_tags(view, &streams, &mut scan);
        }
        scan.tracked.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        scan.problems.sort_by(|a, b| {
            (&a.kind, &a.namespace, &a.name, &a.key).cmp(&(&b.kind, &b.namespace, &b.name, &b.key))
        });
        self.inner
            .problems
            .record(self.inner.settings.watch.name(), scan.problems.clone());
        Ok(scan)
    }

    /// Whether ImageStreams are watched (served, and not left out by the builder).
    pub(super) fn watches_streams(&self) -> bool {
        self.inner
            .settings
            .kinds
            .contains(&WorkloadKind::ImageStream)
    }

    /// `view` as OpenShift acts on it: where ImageStreams are not watched, the
    /// `image.openshift.io/triggers` annotation drives nothing.
    pub(super) fn effective(&self, view: WorkloadView) -> WorkloadView {
        if self.watches_streams() {
            view
        } else {
            view.without_annotation_triggers()
        }
    }

    /// The views of every cached object.
    pub(super) fn views(&self) -> Vec<WorkloadView> {
        self.inner
            .caches
            .iter()
            .flat_map(|c| c.views())
            .map(|v| self.effective(v))
            .collect()
    }

    /// See [`KubeTarget::image_triggers`].
    pub(super) async fn triggers(&self) -> Result<Vec<ImageTrigger>, Error> {
        let scan = self.scan().await?;
        let views = self.views();
        let mut triggers = Vec::new();
        for view in &views {
            for container in &view.containers {
                let Some(tag) = &container.driven_by else {
                    continue;
                };
                let stream = views.iter().find(|v| {
                    v.kind == WorkloadKind::ImageStream
                        && v.namespace == tag.namespace
                        && v.name == tag.stream
                });
                let source = stream
                    .and_then(|s| s.container(&tag.tag, false))
                    .and_then(|c| c.image.clone());
                let tag_id = tag.tracked_id();
                let tracked_id = scan
                    .tracked
                    .iter()
                    .any(|(t, _)| t.id == tag_id)
                    .then_some(tag_id);
                let image = container.image.as_deref().unwrap_or_default();
                triggers.push(ImageTrigger {
                    workload: WorkloadContainer::of(view, container, image),
                    image_stream_tag: tag.to_string(),
                    via: if container.driven_by_annotation {
                        crate::openshift::TRIGGERS_ANNOTATION.to_owned()
                    } else {
                        "ImageChange trigger".to_owned()
                    },
                    source,
                    tracked_id,
                });
            }
        }
        let key = |t: &ImageTrigger| {
            let w = &t.workload;
            (
                w.kind.clone(),
                w.namespace.clone(),
                w.name.clone(),
                w.container.clone(),
            )
        };
        triggers.sort_by_key(key);
        Ok(triggers)
    }

    pub(super) fn in_scope(&self, namespace: &str) -> bool {
        self.inner.settings.watch.scope().contains(namespace)
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

/// The ImageStreams discovery can resolve ImageStreamTags against.
pub(super) struct Streams<'a> {
    /// Whether ImageStreams are watched at all (served, and not left out by the builder).
    pub(super) watched: bool,
    pub(super) views: HashMap<(String, String), &'a WorkloadView>,
    pub(super) in_scope: &'a dyn Fn(&str) -> bool,
}

/// Adds, for each container of a tracked workload that an ImageStream tag drives (an automatic
/// `ImageChange` trigger or `image.openshift.io/triggers`), the tag it follows, tracked with
/// the workload's keys (OpenShift then rolls the workload out itself), unless the tag is
/// tracked already (by keys of its own, or for another workload); or the problem that says
/// why the tag cannot be updated.
pub(super) fn track_followed_tags(view: &WorkloadView, streams: &Streams<'_>, scan: &mut Scan) {
    let keys = Keys::new(Some(&view.annotations), Some(&view.labels));
    // Bad keys are reported by `track_workload`.
    let Ok(Some(config)) = KeelConfig::parse_tracked(|key| keys.get(key)) else {
        return;
    };
    for container in &view.containers {
        let Some(tag) = &container.driven_by else {
            continue;
        };
        if !config.monitors(&container.name, container.init) {
            continue;
        }
        let key = format!("image of container {}", container.name);
        let text = container.image.as_deref().unwrap_or_default();
        let via = trigger_name(container);
        let cannot = |why: String| {
            problem(
                view,
                &key,
                text,
                format!(
                    "driven by {via} from ImageStreamTag {tag}, so not patched (OpenShift \
                     would overwrite it), and {why}"
                ),
            )
        };
        if !streams.watched || !(streams.in_scope)(&tag.namespace) {
            scan.problems.push(cannot(format!(
                "ImageStreams in namespace {} are not watched (image.openshift.io/v1 not \
                 served, or left out)",
                tag.namespace
            )));
            continue;
        }
        let Some(stream) = streams
            .views
            .get(&(tag.namespace.clone(), tag.stream.clone()))
        else {
            scan.problems.push(cannot(format!(
                "ImageStream {}/{} was not found (or does not match the label selector)",
                tag.namespace, tag.stream
            )));
            continue;
        };
        let tag_id = tag.tracked_id();
        if scan.tracked.iter().any(|(t, _)| t.id == tag_id) {
            continue;
        }
        let Some(source) = stream
            .container(&tag.tag, false)
            .filter(|c| c.image.is_some())
        else {
            scan.problems.push(cannot(format!(
                "its tag {} has no external DockerImage source in spec.tags to update",
                tag.tag
            )));
            continue;
        };
        // The stream's tag, under the DeploymentConfig's keys (what it monitors was checked
        // above, by container name); the stream's own records of digests and failures.
        let mut annotations = view.annotations.clone();
        annotations.remove(crate::keys::MONITOR_CONTAINERS);
        for record in [crate::keys::DIGESTS, crate::avoid::FAILED_ANNOTATION] {
            annotations.remove(record);
            if let Some(value) = stream.annotations.get(record) {
                annotations.insert(record.to_owned(), value.clone());
            }
        }
        let mut labels = view.labels.clone();
        labels.remove(crate::keys::MONITOR_CONTAINERS);
        let mut tag_source = source.clone();
        tag_source.keys.clear();
        let followed = WorkloadView {
            annotations,
            labels,
            containers: vec![tag_source],
            pull_secrets: view.pull_secrets.clone(),
            ..(*stream).clone()
        };
        track_workload(&followed, scan);
    }
}

/// What drives `container`'s image, in words.
pub(super) fn trigger_name(container: &crate::workload::ContainerView) -> &'static str {
    if container.driven_by_annotation {
        "the image.openshift.io/triggers annotation"
    } else {
        "the automatic ImageChange trigger"
    }
}

/// Adds the tracked containers of one workload, or its problem. A container with keys of its
/// own (an ImageStream tag's annotations) is tracked with them over the workload's; one that
/// an `ImageChange` trigger drives is left to [`track_followed_tags`].
pub(super) fn track_workload(view: &WorkloadView, scan: &mut Scan) {
    if view.containers.iter().any(|c| !c.keys.is_empty()) {
        let mut rest = view.clone();
        rest.containers.retain(|c| c.keys.is_empty());
        for own in view.containers.iter().filter(|c| !c.keys.is_empty()) {
            let mut annotations = view.annotations.clone();
            annotations.extend(own.keys.clone());
            let mut container = own.clone();
            container.keys.clear();
            let single = WorkloadView {
                annotations,
                containers: vec![container],
                ..view.clone()
            };
            track_workload(&single, scan);
        }
        track_workload(&rest, scan);
        return;
    }
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
        if !config.monitors(&container.name, container.init) || container.driven_by.is_some() {
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
            .apply_to(TrackedImage::new(id.clone(), image, policy))
            .with_paused(config.is_paused(&container.name));
        let listing = WorkloadImage {
            id,
            workload: WorkloadContainer::of(view, container, text),
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
