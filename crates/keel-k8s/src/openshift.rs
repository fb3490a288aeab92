//! OpenShift's DeploymentConfig (`apps.openshift.io/v1`) and ImageStream
//! (`image.openshift.io/v1`), read through kube's dynamic objects: keel-k8s needs no
//! OpenShift API types, only the few fields below, each read leniently (a field of the wrong
//! shape counts as absent, never as a panic).
//!
//! - A DeploymentConfig is a workload like a Deployment: its pod template is `spec.template`.
//!   A container named by an automatic `ImageChange` trigger
//!   (`spec.triggers[].imageChangeParams`, `automatic: true`, `from.kind: ImageStreamTag`) is
//!   written by OpenShift whenever that tag moves, so keel-k8s never patches it: it updates
//!   the ImageStream tag instead.
//! - An ImageStream's "containers" are its `spec.tags` whose `from.kind` is `DockerImage`; an
//!   update writes `from.name`, and a new digest of the same tag sets the tag's `generation`
//!   to 0, which asks OpenShift to import the tag again.
//!
//! Both kinds use JSON patches (CustomResourceDefinitions and aggregated APIs need not take
//! strategic merge patches), guarded by `resourceVersion` like every other update.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use crate::workload::{ContainerId, ContainerView, Workload, WorkloadKind, WorkloadView};

/// One tag of one ImageStream: `namespace/stream:tag`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StreamTag {
    pub(crate) namespace: String,
    pub(crate) stream: String,
    pub(crate) tag: String,
}

impl StreamTag {
    /// The tag an `ImageStreamTag` reference names: `name` is `stream:tag` (`stream` alone
    /// means `latest`), `namespace` defaults to the referring object's.
    pub(crate) fn from_reference(name: &str, namespace: Option<&str>, own: &str) -> Option<Self> {
        let (stream, tag) = match name.rsplit_once(':') {
            Some((stream, tag)) => (stream, tag),
            None => (name, "latest"),
        };
        if stream.is_empty() || tag.is_empty() || stream.contains('/') {
            return None;
        }
        Some(StreamTag {
            namespace: namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or(own)
                .to_owned(),
            stream: stream.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl StreamTag {
    /// The id under which the Kubernetes target tracks this tag
    /// (`imagestream/<namespace>/<stream>/<tag>`).
    pub(crate) fn tracked_id(&self) -> String {
        ContainerId {
            kind: WorkloadKind::ImageStream,
            namespace: self.namespace.clone(),
            name: self.stream.clone(),
            container: self.tag.clone(),
            init: false,
        }
        .to_string()
    }
}

impl fmt::Display for StreamTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.stream, self.tag)
    }
}

/// A dynamic object of one fixed OpenShift kind, so that it can be watched, cached and
/// patched like the typed workloads.
macro_rules! openshift_object {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $group:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub(crate) struct $name(pub(crate) DynamicObject);

        impl kube::Resource for $name {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }

            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }

            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }

            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }

            fn meta(&self) -> &ObjectMeta {
                &self.0.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.0.metadata
            }
        }
    };
}

openshift_object!(
    /// An `apps.openshift.io/v1` DeploymentConfig.
    DeploymentConfig,
    "DeploymentConfig",
    "apps.openshift.io",
    "deploymentconfigs"
);

openshift_object!(
    /// An `image.openshift.io/v1` ImageStream.
    ImageStream,
    "ImageStream",
    "image.openshift.io",
    "imagestreams"
);

/// The string at `pointer` in `value`, if it is one.
fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The items of the array at `pointer` in `value`; none when it is not an array.
fn items_at<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

impl Workload for DeploymentConfig {
    const KIND: WorkloadKind = WorkloadKind::DeploymentConfig;

    fn view(&self) -> WorkloadView {
        let mut view = WorkloadView::new(Self::KIND, self, None);
        let data = &self.0.data;
        for (list, init) in [("containers", false), ("initContainers", true)] {
            for c in items_at(data, &format!("/spec/template/spec/{list}")) {
                let Some(name) = str_at(c, "/name").filter(|n| !n.is_empty()) else {
                    continue;
                };
                let image = str_at(c, "/image").map(str::to_owned);
                view.containers
                    .push(ContainerView::plain(name, image, init));
            }
        }
        view.pull_secrets = items_at(data, "/spec/template/spec/imagePullSecrets")
            .iter()
            .filter_map(|s| str_at(s, "/name"))
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        for (container, tag) in image_change_triggers(data, &view.namespace) {
            if let Some(c) = view
                .containers
                .iter_mut()
                .find(|c| c.name == container && !c.init)
            {
                c.driven_by = Some(tag);
            }
        }
        view
    }
}

/// The containers the automatic `ImageChange` triggers of a DeploymentConfig drive, with the
/// ImageStream tag each follows. Triggers that are not automatic, or that follow anything but
/// an `ImageStreamTag`, change nothing by themselves.
fn image_change_triggers(data: &Value, namespace: &str) -> Vec<(String, StreamTag)> {
    let mut driven = Vec::new();
    for trigger in items_at(data, "/spec/triggers") {
        if str_at(trigger, "/type") != Some("ImageChange") {
            continue;
        }
        let Some(params) = trigger.get("imageChangeParams") else {
            continue;
        };
        let automatic = params.get("automatic").and_then(Value::as_bool) == Some(true);
        if !automatic || str_at(params, "/from/kind") != Some("ImageStreamTag") {
            continue;
        }
        let Some(tag) = str_at(params, "/from/name").and_then(|name| {
            StreamTag::from_reference(name, str_at(params, "/from/namespace"), namespace)
        }) else {
            continue;
        };
        for name in items_at(params, "/containerNames")
            .iter()
            .filter_map(Value::as_str)
        {
            driven.push((name.to_owned(), tag.clone()));
        }
    }
    driven
}

/// The annotation by which OpenShift's image trigger controller writes the image of an
/// ImageStreamTag into a container of a Deployment, StatefulSet, DaemonSet or CronJob.
pub(crate) const TRIGGERS_ANNOTATION: &str = "image.openshift.io/triggers";

/// The containers `image.openshift.io/triggers` in `annotations` drives, as (container,
/// whether an init container, ImageStream tag): a JSON list of
/// `{"from": {"kind": "ImageStreamTag", "name": "web:stable", "namespace": ...},
/// "fieldPath": "spec.template.spec.containers[?(@.name==\"web\")].image", "paused": ...}`.
/// Paused triggers, other kinds of `from` and field paths that do not name a container by
/// name are left out; an annotation that does not parse drives nothing.
pub(crate) fn annotation_triggers(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
) -> Vec<(String, bool, StreamTag)> {
    let Some(list) = annotations
        .get(TRIGGERS_ANNOTATION)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return Vec::new();
    };
    let mut driven = Vec::new();
    for trigger in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let paused = match trigger.get("paused") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        if paused || str_at(trigger, "/from/kind").unwrap_or("ImageStreamTag") != "ImageStreamTag" {
            continue;
        }
        let Some(tag) = str_at(trigger, "/from/name").and_then(|name| {
            StreamTag::from_reference(name, str_at(trigger, "/from/namespace"), namespace)
        }) else {
            continue;
        };
        if let Some((container, init)) = str_at(trigger, "/fieldPath").and_then(container_of_path) {
            driven.push((container, init, tag));
        }
    }
    driven
}

/// The container a trigger's field path names: `...containers[?(@.name=="web")].image` (one
/// `=` and single quotes too), and whether it is an init container.
fn container_of_path(path: &str) -> Option<(String, bool)> {
    let start = path.find("ontainers[?(@.name=")?;
    let init = path[..start].ends_with("initC");
    let rest = path[start + "ontainers[?(@.name=".len()..].trim_start_matches('=');
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    let end = rest.find(quote)?;
    let name = &rest[..end];
    (!name.is_empty()).then(|| (name.to_owned(), init))
}

impl Workload for ImageStream {
    const KIND: WorkloadKind = WorkloadKind::ImageStream;

    fn view(&self) -> WorkloadView {
        let mut view = WorkloadView::new(Self::KIND, self, None);
        for tag in items_at(&self.0.data, "/spec/tags") {
            let Some(name) = str_at(tag, "/name").filter(|n| !n.is_empty()) else {
                continue;
            };
            // Only an external image has a version to choose; a tag that follows another tag
            // or an ImageStreamImage is OpenShift's business.
            let image = (str_at(tag, "/from/kind") == Some("DockerImage"))
                .then(|| str_at(tag, "/from/name").map(str::to_owned))
                .flatten();
            let mut container = ContainerView::plain(name, image, false);
            container.keys = tag
                .get("annotations")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("keel.sh/"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect::<BTreeMap<_, _>>();
            view.containers.push(container);
        }
        view
    }
}

/// The JSON patch (RFC 6902) that makes `object` what the merge patch `merge` would make it:
/// members are added or replaced one by one (a `null` removes one), and list items with a
/// `name` (containers, init containers, ImageStream tags) are matched by name.
///
/// # Errors
/// The name of a list item `merge` has that `object` lacks.
pub(crate) fn json_patch_of(object: &Value, merge: &Value) -> Result<Vec<Value>, String> {
    let mut ops = Vec::new();
    ops_of(Some(object), merge, "", &mut ops)?;
    Ok(ops)
}

fn ops_of(
    object: Option<&Value>,
    merge: &Value,
    path: &str,
    ops: &mut Vec<Value>,
) -> Result<(), String> {
    let Some(members) = merge.as_object() else {
        return Ok(());
    };
    for (key, value) in members {
        let here = object.and_then(|o| o.get(key));
        let at = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
        match (value, here) {
            (Value::Null, Some(_)) => ops.push(json!({ "op": "remove", "path": at })),
            (Value::Null, None) => {}
            (Value::Object(_), Some(existing)) if existing.is_object() => {
                ops_of(Some(existing), value, &at, ops)?;
            }
            (Value::Array(items), Some(Value::Array(existing)))
                if items.iter().all(|i| i.get("name").is_some()) =>
            {
                for item in items {
                    let name = item.get("name");
                    let index = existing
                        .iter()
                        .position(|e| e.get("name") == name)
                        .ok_or_else(|| format!("no item named {} in {at}", item["name"]))?;
                    let element = &existing[index];
                    let mut rest = item.clone();
                    if let Some(rest) = rest.as_object_mut() {
                        rest.remove("name");
                    }
                    // The name is tested so that the index cannot point at another item.
                    ops.push(json!({ "op": "test", "path": format!("{at}/{index}/name"), "value": name }));
                    ops_of(Some(element), &rest, &format!("{at}/{index}"), ops)?;
                }
            }
            _ => ops.push(json!({ "op": "add", "path": at, "value": value })),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dc(value: Value) -> WorkloadView {
        serde_json::from_value::<DeploymentConfig>(value)
            .expect("a DeploymentConfig")
            .view()
    }

    #[test]
    fn stream_tag_references() {
        let t = StreamTag::from_reference("web:1.2", None, "shop").unwrap();
        assert_eq!(t.to_string(), "shop/web:1.2");
        let t = StreamTag::from_reference("web", Some("base"), "shop").unwrap();
        assert_eq!(t.to_string(), "base/web:latest");
        for bad in ["", ":x", "web:", "a/b:c"] {
            assert_eq!(StreamTag::from_reference(bad, None, "shop"), None, "{bad}");
        }
    }

    #[test]
    fn deployment_configs_mark_the_containers_their_triggers_drive() {
        let view = dc(json!({
            "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
            "metadata": { "name": "web", "namespace": "shop", "resourceVersion": "3" },
            "spec": {
                "template": { "spec": {
                    "containers": [
                        { "name": "app", "image": "ghcr.io/acme/web:1.0.0" },
                        { "name": "proxy", "image": "nginx:1.25" },
                        { "image": "nameless:1" },
                        { "name": "odd", "image": 7 }
                    ],
                    "imagePullSecrets": [{ "name": "regcred" }, { "name": 1 }]
                }},
                "triggers": [
                    { "type": "ConfigChange" },
                    { "type": "ImageChange", "imageChangeParams": {
                        "automatic": true, "containerNames": ["app"],
                        "from": { "kind": "ImageStreamTag", "name": "web:stable" } } },
                    { "type": "ImageChange", "imageChangeParams": {
                        "automatic": false, "containerNames": ["proxy"],
                        "from": { "kind": "ImageStreamTag", "name": "proxy:1" } } },
                    { "type": "ImageChange", "imageChangeParams": "not an object" }
                ]
            }
        }));
        assert_eq!(view.resource_version.as_deref(), Some("3"));
        let names: Vec<&str> = view.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", "proxy", "odd"]);
        assert_eq!(
            view.container("app", false)
                .unwrap()
                .driven_by
                .as_ref()
                .map(ToString::to_string),
            Some("shop/web:stable".to_owned())
        );
        assert_eq!(view.container("proxy", false).unwrap().driven_by, None);
        assert_eq!(view.container("odd", false).unwrap().image, None);
        assert_eq!(view.pull_secrets, ["regcred"]);
    }

    #[test]
    fn the_triggers_annotation_names_containers_by_field_path() {
        let annotations = BTreeMap::from([(
            TRIGGERS_ANNOTATION.to_owned(),
            json!([
                { "from": { "kind": "ImageStreamTag", "name": "web:stable" },
                  "fieldPath": "spec.template.spec.containers[?(@.name==\"app\")].image" },
                { "from": { "kind": "ImageStreamTag", "name": "tools:1", "namespace": "base" },
                  "fieldPath": "spec.template.spec.initContainers[?(@.name='setup')].image",
                  "paused": "false" },
                { "from": { "kind": "ImageStreamTag", "name": "web:edge" },
                  "fieldPath": "spec.template.spec.containers[?(@.name==\"paused\")].image",
                  "paused": true },
                { "from": { "kind": "ImageStreamTag", "name": "web:x" },
                  "fieldPath": "spec.template.spec.containers[0].image" },
                { "from": { "kind": "DockerImage", "name": "nginx" },
                  "fieldPath": "spec.template.spec.containers[?(@.name==\"d\")].image" },
                "not an object",
                { "from": { "name": "web:y" }, "fieldPath": "containers[?(@.name==\"" }
            ])
            .to_string(),
        )]);
        let driven: Vec<String> = annotation_triggers(&annotations, "shop")
            .into_iter()
            .map(|(c, init, tag)| format!("{c} {init} {tag}"))
            .collect();
        assert_eq!(
            driven,
            ["app false shop/web:stable", "setup true base/tools:1"]
        );
        let broken = BTreeMap::from([(TRIGGERS_ANNOTATION.to_owned(), "{".to_owned())]);
        assert!(annotation_triggers(&broken, "shop").is_empty());
    }

    #[test]
    fn odd_field_paths_name_no_container() {
        for path in [
            "",
            "containers[?(@.name==",
            "containers[?(@.name==\"",
            "containers[?(@.name==\"\"",
            "containers[?(@.name==é\"x\")]",
            "containers[?(@.name=='ünï\"",
            "initContainers[?(@.name=",
        ] {
            assert_eq!(container_of_path(path), None, "{path}");
        }
        assert_eq!(
            container_of_path("x.containers[?(@.name==\"wéb\")].image"),
            Some(("wéb".to_owned(), false))
        );
    }

    #[test]
    fn odd_objects_have_no_containers() {
        for spec in [
            json!(null),
            json!("x"),
            json!({ "template": 3 }),
            json!({ "triggers": {} }),
        ] {
            let view = dc(json!({ "metadata": { "name": "w", "namespace": "n" }, "spec": spec }));
            assert!(view.containers.is_empty(), "{spec}");
        }
    }

    #[test]
    fn image_streams_list_their_external_tags_with_their_own_keys() {
        let stream: ImageStream = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "tags": [
                { "name": "stable", "from": { "kind": "DockerImage", "name": "ghcr.io/acme/web:1.0.0" },
                  "annotations": { "keel.sh/policy": "minor", "description": "x" } },
                { "name": "latest", "from": { "kind": "ImageStreamTag", "name": "web:stable" } },
                { "from": { "kind": "DockerImage", "name": "nameless:1" } }
            ]}
        }))
        .unwrap();
        let view = stream.view();
        assert_eq!(view.containers.len(), 2);
        let stable = view.container("stable", false).unwrap();
        assert_eq!(stable.image.as_deref(), Some("ghcr.io/acme/web:1.0.0"));
        assert_eq!(stable.keys.len(), 1);
        assert_eq!(stable.keys["keel.sh/policy"], "minor");
        assert_eq!(view.container("latest", false).unwrap().image, None);
    }

    #[test]
    fn merge_patches_become_guarded_json_patches() {
        let object = json!({
            "metadata": { "resourceVersion": "9", "annotations": { "a": "1", "keel.sh/digests": "{}" } },
            "spec": { "template": { "spec": { "containers": [
                { "name": "proxy", "image": "nginx:1" },
                { "name": "app", "image": "web:1" }
            ]}}}
        });
        let merge = json!({
            "metadata": { "resourceVersion": "9", "annotations": {
                "kubernetes.io/change-cause": "c", "keel.sh/digests": null } },
            "spec": { "template": {
                "metadata": { "annotations": { "keel.sh/update-time": "t" } },
                "spec": { "containers": [{ "name": "app", "image": "web:2" }] }
            }}
        });
        let ops = json_patch_of(&object, &merge).unwrap();
        assert_eq!(
            ops,
            vec![
                json!({ "op": "remove", "path": "/metadata/annotations/keel.sh~1digests" }),
                json!({ "op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": "c" }),
                json!({ "op": "add", "path": "/metadata/resourceVersion", "value": "9" }),
                json!({ "op": "add", "path": "/spec/template/metadata",
                        "value": { "annotations": { "keel.sh/update-time": "t" } } }),
                json!({ "op": "test", "path": "/spec/template/spec/containers/1/name", "value": "app" }),
                json!({ "op": "add", "path": "/spec/template/spec/containers/1/image", "value": "web:2" }),
            ]
        );
        let missing =
            json!({ "spec": { "template": { "spec": { "containers": [{ "name": "db" }] } } } });
        assert!(json_patch_of(&object, &missing).unwrap_err().contains("db"));
    }
}
