//! OpenShift's `apps.openshift.io/v1` DeploymentConfig and `image.openshift.io/v1`
//! ImageStream, served by the test kube-apiserver as CustomResourceDefinitions.
//!
//! No OpenShift API server runs here, so the tests that need these kinds install CRDs of the
//! same groups, versions and kinds, whose schemas are written from the OpenShift API reference
//! for the fields keel-rs uses (`crds/*.yaml`). A CRD is not OpenShift: no controller rolls a
//! DeploymentConfig out, fires its `ImageChange` triggers or imports an ImageStream tag; tests
//! write the status they need themselves. Install them into a server of the test binary's own
//! (one test binary, [`ApiServer::shared`]), never into one that must stay plain.
//!
//! The rest builds and reads the objects of these kinds as JSON: [`deployment_config`] with its
//! triggers, [`image_stream`] with its tags, and [`OpenShiftNs`] to create them in a namespace
//! and read back what a test checks.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PostParams};
use serde_json::{Value, json};

use super::{ApiServer, install_crd, merge_status};

/// The DeploymentConfig CRD (`deploymentconfigs.apps.openshift.io`), as YAML.
pub const DEPLOYMENT_CONFIG_CRD: &str =
    include_str!("crds/deploymentconfigs.apps.openshift.io.yaml");

/// The ImageStream CRD (`imagestreams.image.openshift.io`), as YAML.
pub const IMAGE_STREAM_CRD: &str = include_str!("crds/imagestreams.image.openshift.io.yaml");

/// Installs both CRDs into `server` (an existing one is left as it is) and waits until the
/// server serves `deploymentconfigs` in `apps.openshift.io/v1` and `imagestreams` in
/// `image.openshift.io/v1`. Panics, naming the CRD, when the server refuses one or does not
/// serve it within 30 s.
pub async fn install_openshift_crds(server: &ApiServer) {
    install_crd(
        server,
        DEPLOYMENT_CONFIG_CRD,
        "apps.openshift.io/v1",
        "deploymentconfigs",
    )
    .await;
    install_crd(
        server,
        IMAGE_STREAM_CRD,
        "image.openshift.io/v1",
        "imagestreams",
    )
    .await;
}

/// The API resource of OpenShift kind `kind`: `DeploymentConfig` or else `ImageStream`.
pub fn resource(kind: &str) -> ApiResource {
    let (group, plural) = match kind {
        "DeploymentConfig" => ("apps.openshift.io", "deploymentconfigs"),
        _ => ("image.openshift.io", "imagestreams"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

/// The API of OpenShift kind `kind` ([`resource`]) in namespace `ns`.
pub fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// Creates `object` (with `kind` and `metadata.name` set) in `ns`.
pub async fn create(client: &Client, ns: &str, object: Value) {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    api(client, ns, &kind)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

/// A DeploymentConfig `name` with containers `(name, image)`, annotations and triggers.
pub fn deployment_config(
    name: &str,
    annotations: Value,
    containers: &[(&str, &str)],
    triggers: Value,
) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({ "name": n, "image": i }))
        .collect();
    json!({
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "replicas": 1,
            "selector": { "app": name },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": containers }
            },
            "triggers": triggers
        }
    })
}

/// The triggers of a DeploymentConfig that rolls out on its own changes alone.
pub fn config_change() -> Value {
    json!([{ "type": "ConfigChange" }])
}

/// An automatic ImageChange trigger of `containers` from ImageStreamTag `from`.
pub fn image_change(containers: &[&str], from: &str) -> Value {
    json!({
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": true,
            "containerNames": containers,
            "from": { "kind": "ImageStreamTag", "name": from }
        }
    })
}

/// The `image.openshift.io/triggers` annotation driving container `container` of a
/// Deployment from ImageStreamTag `from`.
pub fn triggers_annotation(container: &str, from: &str) -> String {
    json!([{
        "from": { "kind": "ImageStreamTag", "name": from },
        "fieldPath": format!("spec.template.spec.containers[?(@.name==\"{container}\")].image"),
    }])
    .to_string()
}

/// An ImageStream `name` with annotations and tags ([`tag`], [`keyed_tag`], [`alias_tag`]).
pub fn image_stream(name: &str, annotations: Value, tags: &[Value]) -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "tags": tags }
    })
}

/// An ImageStream tag `name` from `kind` `from`, with the tag's own annotations.
fn stream_tag_spec(name: &str, kind: &str, from: &str, annotations: Value) -> Value {
    json!({
        "name": name,
        "from": { "kind": kind, "name": from },
        "annotations": annotations,
        "importPolicy": { "scheduled": true },
        "referencePolicy": { "type": "Source" }
    })
}

/// A tag `name` following the registry image `image`, with no annotations of its own.
pub fn tag(name: &str, image: &str) -> Value {
    keyed_tag(name, image, json!({}))
}

/// A tag `name` following the registry image `image`, with its own (keel) annotations.
pub fn keyed_tag(name: &str, image: &str, annotations: Value) -> Value {
    stream_tag_spec(name, "DockerImage", image, annotations)
}

/// A tag `name` that follows another ImageStreamTag, `from`.
pub fn alias_tag(name: &str, from: &str) -> Value {
    stream_tag_spec(name, "ImageStreamTag", from, json!({}))
}

/// A test's namespace and its admin client: the OpenShift objects the tests create and read
/// back there.
#[derive(Clone)]
pub struct OpenShiftNs {
    admin: Client,
    ns: String,
}

impl OpenShiftNs {
    /// The objects of namespace `ns`, as `admin`.
    pub fn new(admin: &Client, ns: &str) -> Self {
        Self {
            admin: admin.clone(),
            ns: ns.to_owned(),
        }
    }

    /// Creates [`deployment_config`] `name`.
    pub async fn create_dc(
        &self,
        name: &str,
        annotations: Value,
        containers: &[(&str, &str)],
        triggers: Value,
    ) {
        let dc = deployment_config(name, annotations, containers, triggers);
        create(&self.admin, &self.ns, dc).await;
    }

    /// Creates [`image_stream`] `name`.
    pub async fn create_stream(&self, name: &str, annotations: Value, tags: &[Value]) {
        create(&self.admin, &self.ns, image_stream(name, annotations, tags)).await;
    }

    /// The whole of `kind` `name`, as JSON.
    pub async fn get(&self, kind: &str, name: &str) -> Value {
        let object = api(&self.admin, &self.ns, kind)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get {kind} {name}: {e}"));
        serde_json::to_value(object).expect("JSON")
    }

    /// The image of container `container` of DeploymentConfig `name`.
    pub async fn dc_image(&self, name: &str, container: &str) -> String {
        let dc = self.get("DeploymentConfig", name).await;
        dc["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == container)
            .and_then(|c| c["image"].as_str())
            .expect("the container's image")
            .to_owned()
    }

    /// Tag `tag` of ImageStream `name`, the whole of it.
    pub async fn stream_tag(&self, name: &str, tag: &str) -> Value {
        let stream = self.get("ImageStream", name).await;
        stream["spec"]["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .find(|t| t["name"] == tag)
            .cloned()
            .expect("the tag")
    }

    /// The `from.name` of tag `tag` of ImageStream `name`: the image the tag follows.
    pub async fn tag_image(&self, name: &str, tag: &str) -> Value {
        self.stream_tag(name, tag).await["from"]["name"].clone()
    }

    /// A client of `server` whose PATCHes of `kind` `name` here each race someone else's
    /// change: before the `n`th of them (from 0) goes out, `change(n)`, unless `None`, is
    /// patched into the object as the admin, and must succeed. The counter counts the
    /// PATCHes (see [`ApiServer::racing_object_client`]).
    pub fn racing_client(
        &self,
        server: &ApiServer,
        kind: &str,
        name: &str,
        change: impl Fn(usize) -> Option<Patch<Value>> + Send + Sync + 'static,
    ) -> (Client, Arc<AtomicUsize>) {
        server.racing_object_client(&api(&self.admin, &self.ns, kind), name, change)
    }

    /// Writes the `/status` of DeploymentConfig `name` (no OpenShift controller does here),
    /// with `observedGeneration` set to its current generation.
    pub async fn set_dc_status(&self, name: &str, mut status: Value) {
        let dc = self.get("DeploymentConfig", name).await;
        status["observedGeneration"] = dc["metadata"]["generation"].clone();
        merge_status(
            &api(&self.admin, &self.ns, "DeploymentConfig"),
            name,
            status,
        )
        .await;
    }
}
