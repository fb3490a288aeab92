//! Workloads, RBAC grants, Secrets and status patches for the tests, written with the raw API
//! so the code under test does not set up its own fixtures.

use std::collections::BTreeMap;

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The kinds of workload the fixtures make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 CronJob.
    CronJob,
}

impl Kind {
    /// The id prefix keel-k8s uses: `deployment`, `statefulset`, `daemonset`, `cronjob`.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::CronJob => "cronjob",
        }
    }
}

/// A workload to create: name, kind, metadata and containers.
#[derive(Clone, Debug)]
pub struct Workload {
    kind: Kind,
    name: String,
    annotations: serde_json::Map<String, Value>,
    labels: serde_json::Map<String, Value>,
    containers: Vec<(String, String)>,
    init_containers: Vec<(String, String)>,
    pull_secrets: Vec<String>,
}

impl Workload {
    /// A workload of `kind` named `name`, without containers yet.
    pub fn new(kind: Kind, name: &str) -> Workload {
        Workload {
            kind,
            name: name.to_owned(),
            annotations: serde_json::Map::new(),
            labels: serde_json::Map::new(),
            containers: Vec::new(),
            init_containers: Vec::new(),
            pull_secrets: Vec::new(),
        }
    }

    /// A Deployment.
    pub fn deployment(name: &str) -> Workload {
        Workload::new(Kind::Deployment, name)
    }

    /// A Deployment that keel manages under `policy` (the `keel.sh/policy` annotation), with
    /// one container `app` running `image`.
    pub fn keel_deployment(name: &str, policy: &str, image: &str) -> Workload {
        Workload::deployment(name)
            .annotation("keel.sh/policy", policy)
            .container("app", image)
    }

    /// Adds an annotation on the workload's metadata.
    pub fn annotation(mut self, key: &str, value: &str) -> Workload {
        self.annotations.insert(key.to_owned(), json!(value));
        self
    }

    /// Adds a label on the workload's metadata.
    pub fn label(mut self, key: &str, value: &str) -> Workload {
        self.labels.insert(key.to_owned(), json!(value));
        self
    }

    /// Adds a container.
    pub fn container(mut self, name: &str, image: &str) -> Workload {
        self.containers.push((name.to_owned(), image.to_owned()));
        self
    }

    /// Adds an init container.
    pub fn init_container(mut self, name: &str, image: &str) -> Workload {
        self.init_containers
            .push((name.to_owned(), image.to_owned()));
        self
    }

    /// Adds an `imagePullSecrets` entry to the pod template.
    pub fn pull_secret(mut self, name: &str) -> Workload {
        self.pull_secrets.push(name.to_owned());
        self
    }

    /// The workload's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The workload's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn pod_spec(&self) -> Value {
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|(name, image)| json!({ "name": name, "image": image }))
            .collect();
        let mut spec = json!({ "containers": containers });
        if !self.init_containers.is_empty() {
            spec["initContainers"] = self
                .init_containers
                .iter()
                .map(|(name, image)| json!({ "name": name, "image": image }))
                .collect();
        }
        if !self.pull_secrets.is_empty() {
            spec["imagePullSecrets"] = self
                .pull_secrets
                .iter()
                .map(|name| json!({ "name": name }))
                .collect();
        }
        if self.kind == Kind::CronJob {
            spec["restartPolicy"] = json!("OnFailure");
        }
        spec
    }

    /// The whole object as JSON.
    pub fn to_json(&self) -> Value {
        let selector = json!({ "matchLabels": { "keel-test-app": self.name } });
        let template = json!({
            "metadata": { "labels": { "keel-test-app": self.name } },
            "spec": self.pod_spec(),
        });
        let (api_version, kind, spec) = match self.kind {
            Kind::Deployment => (
                "apps/v1",
                "Deployment",
                json!({ "replicas": 1, "selector": selector, "template": template }),
            ),
            Kind::StatefulSet => (
                "apps/v1",
                "StatefulSet",
                json!({
                    "replicas": 1,
                    "serviceName": self.name,
                    "selector": selector,
                    "template": template,
                }),
            ),
            Kind::DaemonSet => (
                "apps/v1",
                "DaemonSet",
                json!({ "selector": selector, "template": template }),
            ),
            Kind::CronJob => (
                "batch/v1",
                "CronJob",
                json!({
                    "schedule": "*/5 * * * *",
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "metadata": { "labels": { "keel-test-app": self.name } },
                                "spec": self.pod_spec(),
                            }
                        }
                    },
                }),
            ),
        };
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "name": self.name,
                "annotations": self.annotations,
                "labels": self.labels,
            },
            "spec": spec,
        })
    }

    /// Creates the workload in `namespace` (panics on failure).
    pub async fn create(&self, client: &Client, namespace: &str) {
        let value = self.to_json();
        let result = match self.kind {
            Kind::Deployment => create_as::<Deployment>(client, namespace, value).await,
            Kind::StatefulSet => create_as::<StatefulSet>(client, namespace, value).await,
            Kind::DaemonSet => create_as::<DaemonSet>(client, namespace, value).await,
            Kind::CronJob => create_as::<CronJob>(client, namespace, value).await,
        };
        result.unwrap_or_else(|e| panic!("create {:?} {namespace}/{}: {e}", self.kind, self.name));
    }
}

/// Creates the object `value` describes, read as a `K`, in `namespace`.
async fn create_as<K>(client: &Client, namespace: &str, value: Value) -> kube::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &from_json(value))
        .await
        .map(drop)
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture JSON has the object's shape")
}

/// The images of the containers (or init containers) of a Deployment, by container name.
pub async fn deployment_images(
    client: &Client,
    namespace: &str,
    name: &str,
    init: bool,
) -> Vec<(String, String)> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get deployment {namespace}/{name}: {e}"));
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("deployment has a pod spec");
    let containers = if init {
        pod.init_containers.unwrap_or_default()
    } else {
        pod.containers
    };
    containers
        .into_iter()
        .map(|c| (c.name, c.image.unwrap_or_default()))
        .collect()
}

/// Grants `user` in `namespace` a Role with `rules` (each `(api_groups, resources, verbs)`),
/// named `keel-test-<user>`.
pub async fn grant(
    admin: &Client,
    namespace: &str,
    user: &str,
    rules: &[(&[&str], &[&str], &[&str])],
) {
    let name = format!("keel-test-{user}");
    let rules: Vec<Value> = rules
        .iter()
        .map(|(groups, resources, verbs)| {
            json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
        })
        .collect();
    let role: Role = from_json(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": name },
        "rules": rules,
    }));
    let binding: RoleBinding = from_json(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
    }));
    let params = PostParams::default();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&params, &role)
        .await
        .unwrap_or_else(|e| panic!("create role {namespace}/{name}: {e}"));
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&params, &binding)
        .await
        .unwrap_or_else(|e| panic!("create role binding {namespace}/{name}: {e}"));
}

/// [`grant`]s `user` the `rules` in `namespace` and returns the user's client of `server` once
/// `works` succeeds with it: RBAC reaches the authorizer through its own cache, so a grant
/// takes a moment to be in force. Panics after 10 s.
pub async fn granted_client(
    server: &super::ApiServer,
    admin: &Client,
    namespace: &str,
    user: &str,
    rules: &[(&[&str], &[&str], &[&str])],
    works: impl AsyncFn(&Client) -> kube::Result<()>,
) -> Client {
    grant(admin, namespace, user, rules).await;
    let client = server.client_as(user);
    super::wait_until(
        &format!("the grant to {user} to work"),
        (Duration::from_secs(10), Duration::from_millis(50)),
        async || works(&client).await,
    )
    .await;
    client
}

/// Creates Secret `name` in `namespace` of the plain `(key, value)` pairs `data`, e.g. the
/// `username` and `password` of a Flux `GitRepository`'s `secretRef`, or the Secret of an
/// Argo CD `git:secret:<namespace>/<name>` write-back. Panics naming the Secret when the API
/// server refuses it.
pub async fn create_secret(client: &Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    create_secret_of(client, namespace, name, OPAQUE, &[], data).await;
}

/// Creates the `kubernetes.io/dockerconfigjson` Secret `name` in `namespace` with the
/// credentials `user` and `password` of `registry` (`host:port`): a pod's image pull secret,
/// or the `secretRef` of a Flux `ImageRepository`. Panics naming the Secret when the API
/// server refuses it.
pub async fn create_docker_config_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    registry: &str,
    user: &str,
    password: &str,
) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = json!({ "auths": { registry: { "auth": auth } } }).to_string();
    let data = [(".dockerconfigjson", config.as_str())];
    let kind = "kubernetes.io/dockerconfigjson";
    create_secret_of(client, namespace, name, kind, &[], &data).await;
}

/// The type of a Secret of arbitrary values, the API server's default.
pub(super) const OPAQUE: &str = "Opaque";

/// Creates Secret `name` of type `kind` in `namespace`, labelled with the `(key, value)` pairs
/// `labels`, of the plain `(key, value)` pairs `data`. Panics naming the Secret when the API
/// server refuses it.
pub(super) async fn create_secret_of(
    client: &Client,
    namespace: &str,
    name: &str,
    kind: &str,
    labels: &[(&str, &str)],
    data: &[(&str, &str)],
) {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let string_data: BTreeMap<&str, &str> = data.iter().copied().collect();
    let secret = json!({
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "type": kind,
        "stringData": string_data,
    });
    create_as::<Secret>(client, namespace, secret)
        .await
        .unwrap_or_else(|e| panic!("create secret {namespace}/{name}: {e}"));
}

/// Merge-patches the `/status` subresource of object `name` of `api` with `status`, as the
/// object's controller would (none runs beside the test API server); panics naming the
/// object if the API server refuses.
pub async fn merge_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let patch = Patch::Merge(json!({ "status": status }));
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        panic!("patch the status of {}/{name}: {e}", api.resource_url());
    }
}

/// Merge-patches the `/status` subresource of a Deployment (there is no controller-manager
/// to do it), e.g. `json!({"observedGeneration": 2, "updatedReplicas": 1, ...})`.
pub async fn patch_deployment_status(client: &Client, namespace: &str, name: &str, status: Value) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    merge_status(&api, name, status).await;
}

/// Marks a Deployment's current generation as fully rolled out (all replicas updated,
/// ready and available).
pub async fn mark_deployment_rolled_out(client: &Client, namespace: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get deployment {namespace}/{name}: {e}"));
    let generation = deployment.metadata.generation.unwrap_or(1);
    let replicas = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
    patch_deployment_status(
        client,
        namespace,
        name,
        json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": "rolled out by the test",
            }, {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "available",
            }],
        }),
    )
    .await;
}
