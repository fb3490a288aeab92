//! The RBAC manifests of `deploy/` are enough for the controller, and no more: the
//! controller runs as a user bound only by them (cluster-wide and namespace-scoped variants)
//! against a real kube-apiserver and updates a workload; the same user may not delete or
//! create workloads, nor write secrets. The ConfigMaps of the approval store can be written
//! by the controller's ServiceAccount alone: the manifests grant it to no one else, and
//! another user of the server is refused. With `rbac-helm.yaml` added, the controller
//! upgrades a Helm release with the real `helm`.

mod common;
use common::{Controller, apply_rbac, env_refs, helm_env, manifest, server_with_helm};

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use keel_testsupport::helm::chart_dir;
use keel_testsupport::kube::{ApiServer, Workload, deployment_images, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::Value;

/// The verbs that change objects.
const WRITE_VERBS: [&str; 6] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
];

/// Whether `role` (a Role or ClusterRole document) lets its holders write ConfigMaps.
fn writes_configmaps(role: &Value) -> bool {
    let has = |list: &Value, wanted: &[&str]| {
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|v| wanted.contains(&v.as_str().unwrap_or_default()))
        })
    };
    role["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|rule| {
            has(&rule["apiGroups"], &["", "*"])
                && has(&rule["resources"], &["configmaps", "*"])
                && has(&rule["verbs"], &WRITE_VERBS)
        })
    })
}

/// `(binding, subjects)` of every binding in `docs` that grants ConfigMap writes.
fn configmap_writers(docs: &[Value]) -> Vec<(String, Value)> {
    let writers: Vec<(&str, &str)> = docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .filter(|d| writes_configmaps(d))
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    docs.iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            )
        })
        .filter(|d| {
            let role = (
                d["roleRef"]["kind"].as_str().unwrap_or_default(),
                d["roleRef"]["name"].as_str().unwrap_or_default(),
            );
            writers.contains(&role)
        })
        .map(|d| {
            (
                format!(
                    "{} {}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                ),
                d["subjects"].clone(),
            )
        })
        .collect()
}

#[test]
fn only_the_controllers_service_account_may_write_configmaps() {
    let files = [
        "rbac-cluster.yaml",
        "rbac-namespaced.yaml",
        "rbac-own-namespace.yaml",
        "rbac-helm-namespaced.yaml",
        "deployment.yaml",
        "serviceaccount.yaml",
        "namespace.yaml",
    ];
    let docs: Vec<Value> = files.iter().flat_map(|f| manifest(f)).collect();
    let controller = serde_json::json!([
        {"kind": "ServiceAccount", "name": "keel", "namespace": "keel"}
    ]);
    let writers = configmap_writers(&docs);
    assert!(
        !writers.is_empty(),
        "the controller needs ConfigMap writes for its approval store"
    );
    for (binding, subjects) in &writers {
        assert_eq!(
            subjects, &controller,
            "{binding} lets others write ConfigMaps"
        );
        assert!(
            binding.starts_with("RoleBinding "),
            "{binding} grants ConfigMap writes beyond the controller's namespace"
        );
    }
    // The pods run as that ServiceAccount.
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "keel"
    );
    // The check itself sees a grant to someone else.
    let mut widened = docs.clone();
    for doc in &mut widened {
        if doc["kind"] == "RoleBinding" && doc["metadata"]["name"] == "keel-self" {
            doc["subjects"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"kind": "Group", "name": "system:authenticated"}));
        }
    }
    assert!(
        configmap_writers(&widened)
            .iter()
            .any(|(_, subjects)| subjects != &controller)
    );
}

async fn run_as(
    api: &ApiServer,
    user: &str,
    registry: &RegistryServer,
    ns: &str,
    own_ns: &str,
    scope: &[&str],
) {
    let admin = api.admin_client();
    let image = |tag: &str| format!("{}/team/app:{tag}", registry.addr());
    Workload::keel_deployment("app", "minor", &image("1.0.0"))
        .annotation("keel.sh/trigger", "poll")
        .annotation("keel.sh/pollSchedule", "@every 1s")
        .create(&admin, ns)
        .await;
    let mut args = vec![
        "--controller-namespace",
        own_ns,
        "--identity",
        user,
        "--approval-store",
        "kubernetes",
        "--resync",
        "1s",
    ];
    args.extend_from_slice(scope);
    // The approval store's ConfigMaps: the controller's user may write them, another user of
    // the server may not.
    let configmap = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    };
    let own: Api<ConfigMap> = Api::namespaced(api.client_as(user), own_ns);
    own.create(&PostParams::default(), &configmap("keel-probe"))
        .await
        .unwrap();
    own.delete("keel-probe", &DeleteParams::default())
        .await
        .unwrap();
    let other = if user == "carol" { "alice" } else { "carol" };
    let err = Api::<ConfigMap>::namespaced(api.client_as(other), own_ns)
        .create(&PostParams::default(), &configmap("keel-approval-forged"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");

    let _controller = Controller::start(api, user, &args, &[("KEEL_WEBHOOK_TOKEN", "hook-token")]);
    let start = Instant::now();
    loop {
        let images = deployment_images(&admin, ns, "app", false).await;
        if images == [("app".to_owned(), image("1.1.0"))] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{user} never updated {ns}/app: {images:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Least privilege: no creating or deleting workloads, no writing secrets.
    let client = api.client_as(user);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let err = deployments
        .delete("app", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    let secret: Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
    let err = Api::<Secret>::namespaced(client, ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

/// Applies `file` and `rbac-own-namespace.yaml` for `user` in a namespace made from
/// `ns_name`, then runs the controller as `user`: over the whole cluster, or (`scoped`)
/// over that namespace only, whose `apps` placeholder the manifests name.
async fn run_with_manifests(ns_name: &str, file: &str, user: &str, scoped: bool) {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "team/app", &["1.0.0", "1.1.0"]).await;
    let ns = api.namespace(ns_name).await;
    let own_ns = api.namespace("keel").await;
    let admin = api.admin_client();
    let mut docs = manifest(file);
    docs.extend(manifest("rbac-own-namespace.yaml"));
    let (ns_map, scope) = if scoped {
        (
            vec![("apps", ns.as_str()), ("keel", &own_ns)],
            vec!["--namespaces", &ns],
        )
    } else {
        (vec![("keel", own_ns.as_str())], vec![])
    };
    apply_rbac(&admin, docs, user, &ns, &ns_map).await;
    run_as(api, user, &registry, &ns, &own_ns, &scope).await;
}

#[tokio::test]
async fn the_cluster_wide_manifests_are_enough() {
    run_with_manifests("rbac-cluster", "rbac-cluster.yaml", "alice", false).await;
}

#[tokio::test]
async fn the_namespace_scoped_manifests_are_enough() {
    run_with_manifests("rbac-ns", "rbac-namespaced.yaml", "bob", true).await;
}

/// Runs `keel-controller --helm` as `user`, bound only by `files` and
/// `rbac-own-namespace.yaml`: over the whole cluster, or (`scoped`) over one namespace that
/// the manifests' `apps` placeholder names; the controller upgrades a release there.
async fn run_helm_with_manifests(files: [&str; 2], user: &str, scoped: bool) {
    let Some((api, helm)) = server_with_helm().await else {
        return;
    };
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "team/web", &["1.0.0", "1.1.0"]).await;
    let ns = api.namespace("rbac-helm").await;
    let own_ns = api.namespace("keel").await;
    let repo = format!("{}/team/web", registry.addr());
    helm.install(
        &ns,
        "web",
        &chart_dir("web"),
        &[
            ("image.repository", &repo),
            ("keel.pollSchedule", "@every 1s"),
            ("keel.images[0].repository", "image.repository"),
            ("keel.images[0].tag", "image.tag"),
        ],
    );
    let mut docs: Vec<Value> = files.iter().flat_map(|f| manifest(f)).collect();
    docs.extend(manifest("rbac-own-namespace.yaml"));
    let ns_map = [("keel", own_ns.as_str()), ("apps", ns.as_str())];
    apply_rbac(&api.admin_client(), docs, user, &ns, &ns_map).await;
    let scope: Vec<&str> = if scoped {
        vec!["--namespaces", &ns]
    } else {
        vec![]
    };

    // helm runs as the controller's user, through the controller's kubeconfig.
    let env = helm_env(&helm);
    let env = env_refs(&env);
    let _controller = Controller::start(
        api,
        user,
        &[
            "--controller-namespace",
            &own_ns,
            "--identity",
            user,
            "--resync",
            "1s",
        ]
        .into_iter()
        .chain(scope)
        .collect::<Vec<_>>(),
        &env,
    );
    wait_for(
        "the release upgraded by the controller's user",
        (Duration::from_secs(60), Duration::from_millis(200)),
        async || helm.get_values(&ns, "web", false),
        |values| values["image"]["tag"] == "1.1.0",
    )
    .await;
    assert_eq!(
        deployment_images(&api.admin_client(), &ns, "web", false).await[0].1,
        format!("{repo}:1.1.0")
    );
}

// Users of their own: the other tests take `carol` as the one refused ConfigMap writes.
#[tokio::test]
async fn the_helm_manifests_are_enough_for_the_helm_provider() {
    run_helm_with_manifests(["rbac-cluster.yaml", "rbac-helm.yaml"], "dave", false).await;
}

#[tokio::test]
async fn the_namespaced_helm_manifests_are_enough_for_the_helm_provider() {
    run_helm_with_manifests(
        ["rbac-namespaced.yaml", "rbac-helm-namespaced.yaml"],
        "erin",
        true,
    )
    .await;
}
