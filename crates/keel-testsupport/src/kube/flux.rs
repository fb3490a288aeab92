//! Flux's objects on the test kube-apiserver: the `ImageRepository`, `ImagePolicy`,
//! `ImageUpdateAutomation` and `GitRepository` kinds ([`FluxKind`]), served from Flux's CRDs
//! ([`install_flux_crds`], with the YAML keel-flux ships), and the fixtures that keel-flux's
//! tests and the controller's Flux test build alike: objects created, read and patched as JSON
//! ([`create`], [`get`], [`status`], [`merge`], [`patch_spec`], [`patch_status`],
//! [`delete`]), a `GitRepository` spec ([`git_repository_spec`]) and the `Ready` condition
//! Flux's statuses carry ([`ready`], [`assert_ready`]). The Secrets these objects name are
//! made with [`create_secret`] (a `GitRepository`'s `username` and `password`) and
//! [`create_docker_config_secret`] (an `ImageRepository`'s registry credentials).
//!
//! No Flux controller runs here: what a test does not write itself, only the code under test
//! writes.
//!
//! [`FluxKind`]: crate::kube::flux::FluxKind
//! [`install_flux_crds`]: crate::kube::flux::install_flux_crds
//! [`create`]: crate::kube::flux::create
//! [`get`]: crate::kube::flux::get
//! [`status`]: crate::kube::flux::status
//! [`merge`]: crate::kube::flux::merge
//! [`patch_spec`]: crate::kube::flux::patch_spec
//! [`patch_status`]: crate::kube::flux::patch_status
//! [`delete`]: crate::kube::flux::delete
//! [`git_repository_spec`]: crate::kube::flux::git_repository_spec
//! [`ready`]: crate::kube::flux::ready
//! [`assert_ready`]: crate::kube::flux::assert_ready
//! [`create_secret`]: crate::kube::create_secret
//! [`create_docker_config_secret`]: crate::kube::create_docker_config_secret

use std::fmt;
use std::time::Duration;

use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

use super::{ApiServer, install_crd, merge_status, wait_until};

/// The API group of Flux's image automation kinds.
pub const IMAGE_GROUP: &str = "image.toolkit.fluxcd.io";

/// The API group of Flux's sources (`GitRepository`).
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";

/// A kind of Flux object that keel-flux reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FluxKind {
    /// `image.toolkit.fluxcd.io` `ImageRepository`: an image to scan.
    ImageRepository,
    /// `image.toolkit.fluxcd.io` `ImagePolicy`: the tag chosen from a repository's tags.
    ImagePolicy,
    /// `image.toolkit.fluxcd.io` `ImageUpdateAutomation`: the choices pushed to Git.
    ImageUpdateAutomation,
    /// `source.toolkit.fluxcd.io` `GitRepository`: where an automation pushes.
    GitRepository,
}

impl FluxKind {
    /// Every kind keel-flux reads or writes.
    pub const ALL: [FluxKind; 4] = [
        FluxKind::ImageRepository,
        FluxKind::ImagePolicy,
        FluxKind::ImageUpdateAutomation,
        FluxKind::GitRepository,
    ];

    /// The kind's name, e.g. `ImagePolicy`.
    pub fn kind(self) -> &'static str {
        match self {
            FluxKind::ImageRepository => "ImageRepository",
            FluxKind::ImagePolicy => "ImagePolicy",
            FluxKind::ImageUpdateAutomation => "ImageUpdateAutomation",
            FluxKind::GitRepository => "GitRepository",
        }
    }

    /// The kind's resource, e.g. `imagepolicies`.
    pub fn plural(self) -> &'static str {
        match self {
            FluxKind::ImageRepository => "imagerepositories",
            FluxKind::ImagePolicy => "imagepolicies",
            FluxKind::ImageUpdateAutomation => "imageupdateautomations",
            FluxKind::GitRepository => "gitrepositories",
        }
    }

    /// The kind's API group: [`SOURCE_GROUP`] or [`IMAGE_GROUP`].
    pub fn group(self) -> &'static str {
        match self {
            FluxKind::GitRepository => SOURCE_GROUP,
            _ => IMAGE_GROUP,
        }
    }

    /// The versions its CRD serves: `v1`, and `v1beta2` for the image kinds.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            FluxKind::GitRepository => &["v1"],
            _ => &["v1", "v1beta2"],
        }
    }

    /// The API resource of the kind in `version`.
    pub fn resource(self, version: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), version, self.kind()),
            self.plural(),
        )
    }

    /// The objects of the kind in namespace `ns`, in `v1`.
    pub fn api(self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource("v1"))
    }
}

impl fmt::Display for FluxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Installs Flux's CRDs, given as `(name, yaml)` like `keel_flux::crds::ALL` (an existing one
/// is left as it is), and waits until `server` serves every version of each. Panics on a
/// name that is not one of [`FluxKind::ALL`]'s, or as [`install_crd`] does.
pub async fn install_flux_crds(server: &ApiServer, crds: &[(&str, &str)]) {
    for (name, yaml) in crds {
        let kind = FluxKind::ALL
            .into_iter()
            .find(|k| *name == format!("{}.{}", k.plural(), k.group()))
            .unwrap_or_else(|| panic!("{name} is not a CRD of Flux's kinds"));
        for version in kind.versions() {
            let group_version = format!("{}/{version}", kind.group());
            install_crd(server, yaml, &group_version, kind.plural()).await;
        }
    }
}

/// The shared server with Flux's CRDs `crds` installed ([`install_flux_crds`]; each once, as
/// [`install_crd`] does), a fresh namespace named after `prefix` and an admin client; `None`
/// as for [`ApiServer::shared`].
pub async fn flux_namespace(
    prefix: &str,
    crds: &[(&str, &str)],
) -> Option<(&'static ApiServer, String, Client)> {
    let (server, namespace, client) = ApiServer::shared_namespace(prefix).await?;
    install_flux_crds(server, crds).await;
    Some((server, namespace, client))
}

/// Creates the object `name` of `kind` in `version` with `spec` in `ns`.
pub async fn create(
    client: &Client,
    ns: &str,
    version: &str,
    kind: FluxKind,
    name: &str,
    spec: Value,
) {
    let resource = kind.resource(version);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let mut object = DynamicObject::new(name, &resource).within(ns);
    object.data = json!({ "spec": spec });
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {ns}/{name} ({version}): {e}"));
}

/// [`create`]s each `(version, kind, name, spec)` in turn.
pub async fn create_all<'a>(
    client: &Client,
    ns: &str,
    objects: impl IntoIterator<Item = (&'a str, FluxKind, &'a str, Value)>,
) {
    for (version, kind, name, spec) in objects {
        create(client, ns, version, kind, name, spec).await;
    }
}

/// The object `name` of `kind` as the API server serves it in `v1`.
pub async fn get(client: &Client, ns: &str, kind: FluxKind, name: &str) -> DynamicObject {
    kind.api(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {kind} {ns}/{name}: {e}"))
}

/// The `status` of the object `name` of `kind`, `null` when it has none.
pub async fn status(client: &Client, ns: &str, kind: FluxKind, name: &str) -> Value {
    let object = get(client, ns, kind, name).await;
    object.data.get("status").cloned().unwrap_or(Value::Null)
}

/// Merge-patches the object `name` of `kind` with `patch`, e.g.
/// `{"metadata": {"labels": ...}}`.
pub async fn merge(client: &Client, ns: &str, kind: FluxKind, name: &str, patch: Value) {
    let params = PatchParams::default();
    if let Err(e) = kind
        .api(client, ns)
        .patch(name, &params, &Patch::Merge(&patch))
        .await
    {
        panic!("patch {kind} {ns}/{name} with {patch}: {e}");
    }
}

/// Merge-patches the spec of the object `name` of `kind` with `spec`: a new generation.
pub async fn patch_spec(client: &Client, ns: &str, kind: FluxKind, name: &str, spec: Value) {
    merge(client, ns, kind, name, json!({ "spec": spec })).await;
}

/// Merge-patches the status subresource of the object `name` of `kind`: the status a Flux
/// controller would have written.
pub async fn patch_status(client: &Client, ns: &str, kind: FluxKind, name: &str, status: Value) {
    merge_status(&kind.api(client, ns), name, status).await;
}

/// Deletes the object `name` of `kind` and waits until it is gone (10 s at most).
pub async fn delete(client: &Client, ns: &str, kind: FluxKind, name: &str) {
    let api = kind.api(client, ns);
    api.delete(name, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("delete {kind} {ns}/{name}: {e}"));
    wait_until(
        &format!("{kind} {ns}/{name} gone"),
        (Duration::from_secs(10), Duration::from_millis(50)),
        async || match api.get_opt(name).await.expect("read it back") {
            None => Ok(()),
            Some(_) => Err("still there"),
        },
    )
    .await;
}

/// The spec of a `GitRepository` of `url` on branch `main`, every minute, with the
/// credentials of the Secret `secret`.
pub fn git_repository_spec(url: &str, secret: &str) -> Value {
    json!({
        "url": url,
        "interval": "1m",
        "ref": {"branch": "main"},
        "secretRef": {"name": secret},
    })
}

/// The `Ready` condition of a Flux status: (status, reason, message). Panics when there is
/// none.
pub fn ready(status: &Value) -> (String, String, String) {
    let condition = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition in {status}"));
    let text = |key: &str| condition[key].as_str().unwrap_or_default().to_owned();
    (text("status"), text("reason"), text("message"))
}

/// Asserts the `Ready` condition of a Flux status: its state, its reason and a part of its
/// message. Returns the message for further checks.
#[track_caller]
pub fn assert_ready(status: &Value, state: &str, reason: &str, part: &str) -> String {
    let (got_state, got_reason, message) = ready(status);
    assert_eq!(
        (got_state.as_str(), got_reason.as_str()),
        (state, reason),
        "{message}"
    );
    assert!(message.contains(part), "{message}");
    message
}
