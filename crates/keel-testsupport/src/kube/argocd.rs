//! Argo CD's objects written with the raw API, as a user (or Argo CD) writes them: the
//! Applications, repository credentials and SSH known hosts that keel-argocd's tests and the
//! controller's Argo CD tests create.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::fixtures::{OPAQUE, create_secret_of};

/// Creates an Argo CD Application in `namespace` through `apps` (an API of Argo CD's
/// Application resource in that namespace): of project `default`, deploying to the cluster it
/// runs in (to namespace `destination` when given), with the `name`, `labels` and
/// `annotations` of `metadata` and the spec fields of `spec`, `{"source": …}` or
/// `{"sources": […]}`. Panics naming the Application when the API server refuses it.
pub async fn create_application(
    apps: &Api<DynamicObject>,
    namespace: &str,
    mut metadata: Value,
    destination: Option<&str>,
    mut spec: Value,
) {
    let name = metadata["name"].as_str().unwrap_or_default().to_owned();
    metadata["namespace"] = json!(namespace);
    spec["project"] = json!("default");
    spec["destination"] = json!({ "server": "https://kubernetes.default.svc" });
    if let Some(destination) = destination {
        spec["destination"]["namespace"] = json!(destination);
    }
    let application: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata,
        "spec": spec,
    }))
    .expect("an Application");
    apps.create(&PostParams::default(), &application)
        .await
        .unwrap_or_else(|e| panic!("create application {namespace}/{name}: {e}"));
}

/// The Helm parameters of an Application's source, `[{"name": …, "value": …}, …]`, from
/// `(name, value)` pairs in order.
pub fn helm_parameters(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// Creates Argo CD's repository credentials `name` in `namespace`: a Secret labelled
/// `argocd.argoproj.io/secret-type: repository` with the repository's `url` and
/// `credentials` (`username` and `password`, or `sshPrivateKey`). Panics naming the Secret
/// when the API server refuses it.
pub async fn create_repository_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    url: &str,
    credentials: &[(&str, &str)],
) {
    let mut string_data = vec![("url", url)];
    string_data.extend_from_slice(credentials);
    let labels = [("argocd.argoproj.io/secret-type", "repository")];
    create_secret_of(client, namespace, name, OPAQUE, &labels, &string_data).await;
}

/// Creates Argo CD's SSH known hosts in `namespace`, ConfigMap `argocd-ssh-known-hosts-cm`
/// with `known_hosts` in the format of an OpenSSH `known_hosts` file. Panics when the API
/// server refuses it.
pub async fn create_ssh_known_hosts(client: &Client, namespace: &str, known_hosts: &str) {
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "argocd-ssh-known-hosts-cm", "namespace": namespace },
        "data": { "ssh_known_hosts": known_hosts },
    }))
    .expect("a ConfigMap");
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap_or_else(|e| panic!("create argocd-ssh-known-hosts-cm in {namespace}: {e}"));
}
