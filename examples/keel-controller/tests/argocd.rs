//! `keel-controller --argocd` against a real kube-apiserver serving Argo CD's Application CRD
//! and a real registry, running as a user bound only by `deploy/rbac-cluster.yaml`,
//! `deploy/rbac-argocd.yaml` and `deploy/rbac-own-namespace.yaml`: an Application configured
//! by Argo CD Image Updater's annotations gets its Helm parameter patched to the version its
//! constraint picks, its other parameters untouched, and the same user may not delete it;
//! ones with the `git` write-back get a commit pushed to their repository, over HTTPS and
//! over SSH, with Argo CD's repository credentials and SSH known hosts, which that user may
//! read, and are not patched.

mod common;
use common::{Controller, apply_rbac, manifest};

use std::time::Duration;

use keel_argocd::{APPLICATION_CRD, application_resource};
use keel_testsupport::git::{GitServer, SshServer};
use keel_testsupport::kube::argocd::{
    create_application, create_repository_secret, create_ssh_known_hosts, helm_parameters,
};
use keel_testsupport::kube::{ApiServer, install_crd, wait_for};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client};
use serde_json::{Value, json};

const PREFIX: &str = "argocd-image-updater.argoproj.io/";

/// A namespace for Argo CD's Applications and the controller's own, with the controller's
/// RBAC (cluster, Argo CD and own-namespace manifests) applied for `user`; and the admin
/// client.
async fn argocd_namespaces(api: &ApiServer, user: &str) -> (String, String, Client) {
    let ns = api.namespace("argocd").await;
    let own_ns = api.namespace("keel").await;
    let admin = api.admin_client();
    let mut docs = manifest("rbac-cluster.yaml");
    docs.extend(manifest("rbac-argocd.yaml"));
    docs.extend(manifest("rbac-own-namespace.yaml"));
    apply_rbac(
        &admin,
        docs,
        user,
        &ns,
        &[("keel", own_ns.as_str()), ("argocd", ns.as_str())],
    )
    .await;
    (ns, own_ns, admin)
}

/// The controller as `user`, updating the Applications of `ns` every second, with `extra`
/// arguments.
fn start_controller(
    api: &ApiServer,
    user: &str,
    ns: &str,
    own_ns: &str,
    extra: &[&str],
) -> Controller {
    let mut args = vec!["--argocd", "--argocd-namespace", ns];
    args.extend(extra);
    args.extend([
        "--controller-namespace",
        own_ns,
        "--identity",
        user,
        "--resync",
        "1s",
    ]);
    Controller::start(
        api,
        user,
        &args,
        &[
            ("KEEL_WEBHOOK_TOKEN", "hook-token"),
            ("POLL_DEFAULTSCHEDULE", "@every 1s"),
        ],
    )
}

#[tokio::test]
async fn an_application_gets_the_version_its_constraint_picks() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    install_crd(api, APPLICATION_CRD, "argoproj.io/v1alpha1", "applications").await;
    let registry = RegistryServer::with_tags(
        ServerOptions::plain(),
        "team/api",
        &["1.0.0", "1.1.0", "1.2.0", "2.0.0"],
    )
    .await;
    let repo = format!("{}/team/api", registry.addr());
    let user = "alice";
    let (ns, own_ns, admin) = argocd_namespaces(api, user).await;

    let apps: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &ns, &application_resource());
    let annotations = json!({
        format!("{PREFIX}image-list"): format!("api={repo}:1.x"),
        format!("{PREFIX}api.helm.image-name"): "image.repository",
        format!("{PREFIX}api.helm.image-tag"): "image.tag",
    });
    let parameters = helm_parameters(&[
        ("replicaCount", "3"),
        ("image.repository", &repo),
        ("image.tag", "1.0.0"),
    ]);
    create_application(
        &apps,
        &ns,
        json!({ "name": "api", "annotations": annotations }),
        Some("api"),
        json!({ "source": {
            "repoURL": "https://git.example/acme/deploy.git",
            "path": "charts/api",
            "targetRevision": "HEAD",
            "helm": { "parameters": parameters },
        } }),
    )
    .await;

    let _controller = start_controller(api, user, &ns, &own_ns, &[]);
    let parameters =
        |app: &DynamicObject| -> Value { app.data["spec"]["source"]["helm"]["parameters"].clone() };
    wait_for(
        "the Application's image.tag to become 1.2.0",
        (Duration::from_secs(60), Duration::from_millis(200)),
        async || parameters(&apps.get("api").await.unwrap()),
        |parameters| parameters[2]["value"] == "1.2.0",
    )
    .await;
    // Only the tag changed: the other parameters, their order and values stay.
    let after = parameters(&apps.get("api").await.unwrap());
    let pairs: Vec<(&str, &str)> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("replicaCount", "3"),
            ("image.repository", repo.as_str()),
            ("image.tag", "1.2.0")
        ]
    );

    // Least privilege: the controller's user may patch Applications, not delete them.
    let as_user: Api<DynamicObject> =
        Api::namespaced_with(api.client_as(user), &ns, &application_resource());
    let err = as_user
        .delete("api", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn a_git_write_back_is_pushed_with_argocds_repository_credentials() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    install_crd(api, APPLICATION_CRD, "argoproj.io/v1alpha1", "applications").await;
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "team/web", &["1.0.0", "1.1.0"]).await;
    let repo = format!("{}/team/web", registry.addr());
    let git = GitServer::start_with_http("argocd-bot", "repo-token");
    git.create_repo("deploy", &[("apps/web/Chart.yaml", "name: web\n")], "main");
    git.create_repo("over-ssh", &[("README.md", "x\n")], "main");
    let ssh = SshServer::start();
    let user = "bob";
    let (ns, own_ns, admin) = argocd_namespaces(api, user).await;
    // Argo CD's repository credentials for the repository.
    let credentials = [("username", "argocd-bot"), ("password", "repo-token")];
    let deploy_url = git.http_url("deploy");
    create_repository_secret(&admin, &ns, "repo-deploy", &deploy_url, &credentials).await;
    // And for the repository over SSH, with the server's host key pinned as Argo CD pins it.
    let ssh_url = ssh.url(&git, "over-ssh");
    let key = ssh.client_key();
    let credentials = [("sshPrivateKey", key.as_str())];
    create_repository_secret(&admin, &ns, "repo-over-ssh", &ssh_url, &credentials).await;
    create_ssh_known_hosts(&admin, &ns, ssh.known_hosts()).await;
    let apps: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &ns, &application_resource());
    let git_write_back = json!({
        format!("{PREFIX}image-list"): format!("web={repo}:1.x"),
        format!("{PREFIX}write-back-method"): "git",
    });
    create_application(
        &apps,
        &ns,
        json!({ "name": "over-ssh", "annotations": git_write_back }),
        Some("web"),
        json!({ "source": {
            "repoURL": ssh_url, "path": "web", "targetRevision": "HEAD",
            "kustomize": { "images": [format!("{repo}:1.0.0")] },
        } }),
    )
    .await;
    create_application(
        &apps,
        &ns,
        json!({ "name": "web", "annotations": git_write_back }),
        Some("web"),
        json!({ "source": {
            "repoURL": git.http_url("deploy"),
            "path": "apps/web",
            "targetRevision": "main",
            "helm": { "parameters": [{ "name": "image.tag", "value": "1.0.0" }] },
        } }),
    )
    .await;
    let workdir = git.scratch_dir("controller-clones");
    let _controller = start_controller(
        api,
        user,
        &ns,
        &own_ns,
        &["--argocd-git-workdir", workdir.to_str().unwrap()],
    );
    let file = "apps/web/.argocd-source-web.yaml";
    wait_for(
        "the .argocd-source file to be pushed",
        (Duration::from_secs(60), Duration::from_millis(200)),
        async || git.read_file("deploy", "main", file),
        |content| content.is_some(),
    )
    .await;
    assert_eq!(
        git.read_file("deploy", "main", file).unwrap(),
        format!(
            "helm:\n  parameters:\n  - name: image.name\n    value: {repo}\n    forcestring: \
             true\n  - name: image.tag\n    value: 1.1.0\n    forcestring: true\n"
        )
    );
    wait_for(
        "the .argocd-source file to be pushed over SSH",
        (Duration::from_secs(60), Duration::from_millis(200)),
        async || git.read_file("over-ssh", "main", "web/.argocd-source-over-ssh.yaml"),
        |content| content.is_some(),
    )
    .await;
    assert_eq!(
        git.read_file("over-ssh", "main", "web/.argocd-source-over-ssh.yaml")
            .unwrap(),
        format!("kustomize:\n  images:\n  - {repo}:1.1.0\n")
    );
    // The Application is not patched: Argo CD reads the file.
    let app = apps.get("web").await.unwrap();
    assert_eq!(
        app.data["spec"]["source"]["helm"]["parameters"],
        json!([{ "name": "image.tag", "value": "1.0.0" }])
    );
}
