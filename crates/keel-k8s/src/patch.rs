//! What a container runs now, and the strategic merge patch that moves it to a plan's image.
//!
//! A digest is not always in the image string: with `force` + match-tag, Keel's way is to keep
//! `app:latest` and roll the pods. keel-k8s records the digest each container was updated to
//! in the workload's `keel.sh/digests` annotation, so it can tell later what runs (for
//! idempotence and for the policy's "has the digest changed?") without pinning the string.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use keel_core::{ImageRef, UpdatePlan};
use serde_json::{Map, Value, json};

use crate::keys::{CHANGE_CAUSE, DIGESTS, UPDATE_TIME};
use crate::workload::{ContainerView, WorkloadKind, WorkloadView, container_key};

/// The digests recorded on a workload: container key → image reference with digest. An
/// annotation that does not parse counts as empty (it is rewritten on the next update).
pub(crate) fn recorded_digests(view: &WorkloadView) -> BTreeMap<String, String> {
    view.annotations
        .get(DIGESTS)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The image a container runs: the image string, with the recorded digest when the string
/// has none and the record is for the same repository and tag.
pub(crate) fn effective_image(
    written: &ImageRef,
    container: &ContainerView,
    recorded: &BTreeMap<String, String>,
) -> ImageRef {
    if written.digest().is_some() {
        return written.clone();
    }
    let key = container_key(&container.name, container.init);
    match recorded.get(&key).and_then(|r| ImageRef::parse(r).ok()) {
        Some(record) if record.digest().is_some() && record.without_digest() == *written => record,
        _ => written.clone(),
    }
}

/// The string to write for `new` in a container that has `written` now: the user's style
/// (short `nginx:1.2` or fully qualified) is kept, and a digest is written when the current
/// string pins one or `pin` asks for it.
pub(crate) fn render_image(
    new: &ImageRef,
    written_text: &str,
    written: &ImageRef,
    pin: bool,
) -> String {
    let keep_digest = (pin || written.digest().is_some()) && new.digest().is_some();
    let target = if keep_digest {
        new.clone()
    } else {
        new.without_digest()
    };
    let qualified = written_text.starts_with(&format!("{}/", written.registry()));
    if qualified {
        target.to_string()
    } else {
        target.familiar()
    }
}

/// A patch to send, and what it writes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ImagePatch {
    /// The image string written into the container.
    pub(crate) image: String,
    /// Whether the pod template gets a [`UPDATE_TIME`] annotation, or an ImageStream tag is
    /// imported again (the string is unchanged).
    pub(crate) forces_roll: bool,
    /// The strategic merge patch, with `metadata.resourceVersion` as precondition.
    pub(crate) body: Value,
}

/// Builds the patch that moves `container` of `view` to `plan.new`.
pub(crate) fn image_patch(
    view: &WorkloadView,
    container: &ContainerView,
    written_text: &str,
    written: &ImageRef,
    plan: &UpdatePlan,
    pin: bool,
    now: DateTime<Utc>,
) -> ImagePatch {
    let image = render_image(&plan.new, written_text, written, pin);
    let forces_roll = image == written_text;
    let key = container_key(&container.name, container.init);

    let mut recorded = recorded_digests(view);
    let had_record = view.annotations.contains_key(DIGESTS);
    match plan.new.digest() {
        Some(_) => {
            recorded.insert(key.clone(), plan.new.to_string());
        }
        None => {
            recorded.remove(&key);
        }
    }
    let mut annotations = Map::new();
    annotations.insert(
        CHANGE_CAUSE.to_owned(),
        json!(format!(
            "keel: {key} {} -> {}",
            plan.current.familiar(),
            plan.new.familiar()
        )),
    );
    if !recorded.is_empty() {
        annotations.insert(
            DIGESTS.to_owned(),
            json!(serde_json::to_string(&recorded).expect("a string map serializes")),
        );
    } else if had_record {
        annotations.insert(DIGESTS.to_owned(), Value::Null);
    }

    let mut body = json!({
        "metadata": {
            "resourceVersion": view.resource_version,
            "annotations": annotations,
        }
    });
    if view.kind == WorkloadKind::ImageStream {
        // A tag's new version is its new `from.name`; a new digest of the same tag is an
        // import of the tag again, which a `generation` of 0 asks OpenShift for.
        let tag = if forces_roll {
            json!({ "name": container.name, "generation": 0 })
        } else {
            json!({ "name": container.name, "from": { "name": image } })
        };
        at_path(&mut body, &["spec"]).insert("tags".to_owned(), json!([tag]));
        return ImagePatch {
            image,
            forces_roll,
            body,
        };
    }
    let list = if container.init {
        "initContainers"
    } else {
        "containers"
    };
    let pod_spec = at_path(&mut body, view.kind.pod_spec_path());
    pod_spec.insert(
        list.to_owned(),
        json!([{ "name": container.name, "image": image }]),
    );
    if forces_roll {
        let pod_meta = at_path(&mut body, view.kind.pod_metadata_path());
        pod_meta.insert(
            "annotations".to_owned(),
            json!({ UPDATE_TIME: now.to_rfc3339_opts(SecondsFormat::Secs, true) }),
        );
    }
    ImagePatch {
        image,
        forces_roll,
        body,
    }
}

/// The object at `path` in `root`, created as empty objects on the way.
fn at_path<'a>(root: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut node = root;
    for segment in path {
        let object = node.as_object_mut().expect("patch nodes are objects");
        node = object
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    node.as_object_mut().expect("patch nodes are objects")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn view(kind: WorkloadKind, annotations: &[(&str, &str)]) -> WorkloadView {
        let containers = [
            ("app", "nginx:1.2", false),
            ("migrate", "ghcr.io/o/m:1", true),
        ];
        let mut view = WorkloadView::for_test(kind, ("ns", "web"), annotations, &containers);
        view.resource_version = Some("42".into());
        view
    }

    fn plan(current: &str, new: &str) -> UpdatePlan {
        UpdatePlan {
            target: "t".into(),
            id: "deployment/ns/web/app".into(),
            current: image(current),
            new: image(new),
        }
    }

    /// The patch (not pinning digests) of container `index` of `v`, running `current`, to
    /// `new`; the image written in the manifest is the container's.
    fn patch(v: &WorkloadView, index: usize, current: &str, new: &str) -> ImagePatch {
        let container = &v.containers[index];
        let written = container.image.as_deref().unwrap();
        let plan = plan(current, new);
        image_patch(
            v,
            container,
            written,
            &image(written),
            &plan,
            false,
            Utc::now(),
        )
    }

    #[test]
    fn rendering_keeps_the_users_style() {
        let short = image("nginx:1.2");
        assert_eq!(
            render_image(&image("nginx:1.3"), "nginx:1.2", &short, false),
            "nginx:1.3"
        );
        let long = image("docker.io/library/nginx:1.2");
        assert_eq!(
            render_image(
                &image("nginx:1.3"),
                "docker.io/library/nginx:1.2",
                &long,
                false
            ),
            "docker.io/library/nginx:1.3"
        );
        let with_digest = image(&format!("nginx:1.3@{NEW}"));
        assert_eq!(
            render_image(&with_digest, "nginx:1.2", &short, false),
            "nginx:1.3"
        );
        assert_eq!(
            render_image(&with_digest, "nginx:1.2", &short, true),
            format!("nginx:1.3@{NEW}")
        );
        let pinned = image(&format!("nginx:1.2@{OLD}"));
        assert_eq!(
            render_image(&with_digest, &format!("nginx:1.2@{OLD}"), &pinned, false),
            format!("nginx:1.3@{NEW}")
        );
    }

    #[test]
    fn a_tag_update_patches_one_container_with_a_precondition() {
        let v = view(WorkloadKind::Deployment, &[]);
        let p = patch(&v, 0, "nginx:1.2", "nginx:1.3");
        assert_eq!(p.image, "nginx:1.3");
        assert!(!p.forces_roll);
        assert_eq!(p.body["metadata"]["resourceVersion"], "42");
        assert_eq!(
            p.body["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "app", "image": "nginx:1.3" }])
        );
        assert!(p.body["spec"]["template"].get("metadata").is_none());
        assert!(
            p.body["metadata"]["annotations"][CHANGE_CAUSE]
                .as_str()
                .unwrap()
                .contains("nginx:1.2 -> nginx:1.3")
        );
        assert!(p.body["metadata"]["annotations"].get(DIGESTS).is_none());
    }

    #[test]
    fn a_same_tag_digest_update_rolls_and_records_the_digest() {
        let v = view(WorkloadKind::CronJob, &[]);
        let p = patch(&v, 0, "nginx:1.2", &format!("nginx:1.2@{NEW}"));
        assert_eq!(p.image, "nginx:1.2");
        assert!(p.forces_roll);
        let template = &p.body["spec"]["jobTemplate"]["spec"]["template"];
        assert!(template["metadata"]["annotations"][UPDATE_TIME].is_string());
        let recorded: BTreeMap<String, String> =
            serde_json::from_str(p.body["metadata"]["annotations"][DIGESTS].as_str().unwrap())
                .unwrap();
        assert_eq!(
            recorded["app"],
            format!("docker.io/library/nginx:1.2@{NEW}")
        );

        // The record makes the digest visible afterwards.
        let after = view(
            WorkloadKind::CronJob,
            &[(DIGESTS, &serde_json::to_string(&recorded).unwrap())],
        );
        let running = effective_image(
            &image("nginx:1.2"),
            &after.containers[0],
            &recorded_digests(&after),
        );
        assert_eq!(running.digest().map(|d| d.as_str()), Some(NEW));
        // ... but not once the tag changed by hand.
        let moved = effective_image(
            &image("nginx:1.4"),
            &after.containers[0],
            &recorded_digests(&after),
        );
        assert_eq!(moved, image("nginx:1.4"));
    }

    /// The rule every target shares (`UpdatePlan::already_runs`): a container whose image
    /// string names no digest and whose workload records none does not run a digest planned
    /// for its tag; once the digest is recorded, it does.
    #[test]
    fn a_digest_plan_for_the_running_tag_is_already_current_only_once_its_digest_is_recorded() {
        let digest_plan = plan("nginx:1.2", &format!("nginx:1.2@{NEW}"));
        let before = view(WorkloadKind::Deployment, &[]);
        let unknown = effective_image(
            &image("nginx:1.2"),
            &before.containers[0],
            &recorded_digests(&before),
        );
        assert!(!digest_plan.already_runs(&unknown));
        assert!(digest_plan.still_current(&unknown));

        let record = format!(r#"{{"app":"docker.io/library/nginx:1.2@{NEW}"}}"#);
        let after = view(WorkloadKind::Deployment, &[(DIGESTS, &record)]);
        let recorded = effective_image(
            &image("nginx:1.2"),
            &after.containers[0],
            &recorded_digests(&after),
        );
        assert!(digest_plan.already_runs(&recorded));
    }

    #[test]
    fn init_containers_and_dropped_records() {
        let v = view(
            WorkloadKind::StatefulSet,
            &[(
                DIGESTS,
                &format!(r#"{{"init:migrate":"ghcr.io/o/m:1@{OLD}"}}"#),
            )],
        );
        let p = patch(&v, 1, &format!("ghcr.io/o/m:1@{OLD}"), "ghcr.io/o/m:2");
        assert_eq!(
            p.body["spec"]["template"]["spec"]["initContainers"],
            json!([{ "name": "migrate", "image": "ghcr.io/o/m:2" }])
        );
        assert_eq!(p.body["metadata"]["annotations"][DIGESTS], Value::Null);
    }
}
