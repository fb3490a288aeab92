//! Running the `keel-controller` binary against the test API server.
//! Each test file uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use keel_testsupport::helm::{Helm, helm_bin};
use keel_testsupport::kube::{ADMIN, ApiServer};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::Value;

/// A running controller; killed when dropped.
pub(crate) struct Controller {
    child: Child,
    base: String,
    /// Holds its kubeconfig and an empty Docker config directory.
    _dir: TempDir,
}

impl Controller {
    /// Starts the controller as `user` of `api`, listening on a free port of 127.0.0.1, with
    /// `args` and `env`, away from any Docker config of the machine.
    pub(crate) fn start(api: &ApiServer, user: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig_for(user)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_keel-controller"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("DOCKER_CONFIG", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("start keel-controller");
        Controller {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Its HTTP base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Waits until it answers HTTP (it has started, and run its first pass), for 30 s at most.
    pub(crate) async fn wait_until_serving(&self) {
        let http = reqwest::Client::new();
        let start = std::time::Instant::now();
        while http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "keel-controller never served at {}",
                self.base
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The process.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The arguments of a lone replica (no leader election) that keeps approvals in memory and
/// its own objects in namespace `own_ns`; [`Controller::start`] takes them after the test's
/// own, e.g. `&[&["--helm"][..], &lone_replica(&own_ns)].concat()`.
pub(crate) fn lone_replica(own_ns: &str) -> [&str; 6] {
    [
        "--controller-namespace",
        own_ns,
        "--approval-store",
        "memory",
        "--leader-elect",
        "false",
    ]
}

/// The shared API server and `helm` acting as its admin; `None` (the test is skipped, saying
/// why) where either is not installed.
pub(crate) async fn server_with_helm() -> Option<(&'static ApiServer, Helm)> {
    let api = ApiServer::shared().await?;
    let helm = Helm::new(api, ADMIN)?;
    Some((api, helm))
}

/// The environment of a controller running `--helm` as the user of its own kubeconfig: the
/// Helm homes of `helm` (not its kubeconfig), the helm binary, a webhook token, and
/// `HELM_PROVIDER=true`.
pub(crate) fn helm_env(helm: &Helm) -> Vec<(String, String)> {
    let mut env = helm.env();
    env.retain(|(k, _)| k != "KUBECONFIG");
    let bin = helm_bin().expect("HELM_BIN is set");
    env.extend([
        ("KEEL_HELM_BINARY".to_owned(), bin.display().to_string()),
        ("KEEL_WEBHOOK_TOKEN".to_owned(), "hook-token".to_owned()),
        ("HELM_PROVIDER".to_owned(), "true".to_owned()),
    ]);
    env
}

/// `env` as the pairs [`Controller::start`] takes.
pub(crate) fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The YAML documents of a manifest file of `deploy/`, as JSON values.
pub(crate) fn manifest(file: &str) -> Vec<Value> {
    let path = format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml_ng::from_value::<Value>(serde::Deserialize::deserialize(doc).unwrap())
                .unwrap()
        })
        .collect()
}

/// Creates the object `doc` describes, read as a `K`, through `api`.
async fn create<K>(api: Api<K>, doc: Value)
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: K = serde_json::from_value(doc).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// Applies `docs` with the subject swapped for test user `user`, names suffixed with `tag`
/// (cluster-wide objects are shared by every test of the server) and namespaces mapped.
pub(crate) async fn apply_rbac(
    admin: &Client,
    docs: Vec<Value>,
    user: &str,
    tag: &str,
    ns_map: &[(&str, &str)],
) {
    for mut doc in docs {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let name = format!("{}-{tag}", doc["metadata"]["name"].as_str().unwrap());
        doc["metadata"]["name"] = name.clone().into();
        if let Some(role) = doc.get_mut("roleRef") {
            role["name"] = format!("{}-{tag}", role["name"].as_str().unwrap()).into();
            doc["subjects"] = serde_json::json!([
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
            ]);
        }
        let ns = doc["metadata"]["namespace"].as_str().map(|ns| {
            ns_map
                .iter()
                .find(|(from, _)| *from == ns)
                .map_or(ns.to_owned(), |(_, to)| (*to).to_owned())
        });
        if let Some(ns) = &ns {
            doc["metadata"]["namespace"] = ns.clone().into();
        }
        match (kind.as_str(), ns) {
            ("ClusterRole", None) => create::<ClusterRole>(Api::all(admin.clone()), doc).await,
            ("ClusterRoleBinding", None) => {
                create::<ClusterRoleBinding>(Api::all(admin.clone()), doc).await;
            }
            ("Role", Some(ns)) => create::<Role>(Api::namespaced(admin.clone(), &ns), doc).await,
            ("RoleBinding", Some(ns)) => {
                create::<RoleBinding>(Api::namespaced(admin.clone(), &ns), doc).await;
            }
            other => panic!("unexpected object in the RBAC manifests: {other:?}"),
        }
    }
}
