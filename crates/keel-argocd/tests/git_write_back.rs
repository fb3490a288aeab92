//! The `git` write-back: Argo CD Applications in a real kube-apiserver, images in a real
//! registry, commits pushed to a real `git daemon` (and a smart-HTTP server behind basic
//! auth), by full passes of the keel-core pipeline.
//!
//! Needs `eval "$(scripts/envtest env)"`, `scripts/registry-server install` and
//! `scripts/git-server install`; without the API server binaries the tests return early
//! after saying so.

mod common;

use std::sync::Arc;

use common::{
    App, applied, argocd_namespace, argocd_target, assert_applied, create_apps, pipeline, problems,
    run_without_problems, source, updated, web_registry,
};
use keel_argocd::source::MULTI_SOURCE;
use keel_argocd::{ArgoCdTarget, IMAGE_UPDATER_CRD, image_updater_resource};
use keel_core::{ApplyOutcome, Error, ImageRef, Target, UpdatePlan};
use keel_testsupport::git::{GitServer, SshServer};
use keel_testsupport::kube::argocd::{create_repository_secret, create_ssh_known_hosts};
use keel_testsupport::kube::{create_secret, install_crd};
use keel_testsupport::registry::RegistryServer;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Image Updater's commit identity.
const AUTHOR: &str = "argocd-image-updater <noreply@argoproj.io>";

/// A Helm source of `repo` at `HEAD` with the one parameter `image.tag`.
fn helm_source(repo: &str, tag: &str) -> Value {
    json!({
        "repoURL": repo, "targetRevision": "HEAD",
        "helm": { "parameters": [{ "name": "image.tag", "value": tag }] },
    })
}

/// Creates Application `web` in `ns` with `annotations`, a Helm source of repository `url`
/// running tag 1.0.0.
async fn create_web_app(admin: &Client, ns: &str, url: &str, annotations: &[(&str, &str)]) {
    create_apps(
        admin,
        ns,
        [App::new("web", annotations, helm_source(url, "1.0.0"))],
    )
    .await;
}

/// Creates repository `deploy` of `server` with `files` on branch `main`, and returns its
/// commit and its `git://` URL.
fn deploy_repo(server: &GitServer, files: &[(&str, &str)]) -> (String, String) {
    let commit = server.create_repo("deploy", files, "main");
    (commit, server.git_url("deploy"))
}

/// The target over `ns`, cloning into a directory of `server`.
fn target(client: Client, ns: &str, server: &GitServer) -> Arc<ArgoCdTarget> {
    Arc::new(argocd_target(client, ns).with_git_workdir(server.scratch_dir("argocd-git")))
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The author and message of the commit at the tip of `branch`.
fn tip_commit(server: &GitServer, repo: &str, branch: &str) -> String {
    let head = server.head(repo, branch).expect("the branch");
    server
        .show(repo, &head, "%an <%ae>%n%B")
        .trim_end()
        .to_owned()
}

/// What most tests start from, for a test named `prefix`: a namespace with Argo CD's CRDs
/// and its admin client, the name of `acme/web` in a registry serving it with `tags`, a git
/// server, and the registry (to keep while it serves); `None` when the API server binaries
/// are not installed.
async fn world(
    prefix: &str,
    tags: &[&str],
) -> Option<(String, Client, String, GitServer, RegistryServer)> {
    let (_, ns, admin) = argocd_namespace(prefix).await?;
    let (registry, web) = web_registry(tags).await;
    Some((ns, admin, web, GitServer::start(), registry))
}

/// The tags most tests serve: the running one and the one to update to.
const TAGS: &[&str] = &["1.0.0", "1.1.0"];

/// A [`world`] serving [`TAGS`] whose repository `deploy` holds only a README.
struct ReadmeWorld {
    /// The namespace of the Applications.
    ns: String,
    /// Its admin client.
    admin: Client,
    /// The name of `acme/web` in the registry.
    web: String,
    /// The git server of `deploy`.
    server: GitServer,
    /// The commit `main` of `deploy` starts at.
    initial: String,
    /// The `git://` URL of `deploy`.
    url: String,
    /// The image list naming `web` alone: `web=<web>`.
    list: String,
    /// The registry, kept while it serves.
    _registry: RegistryServer,
}

impl ReadmeWorld {
    /// The annotations of a git write-back of the image list, with `more` after them.
    fn git_write_back<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut annotations = vec![
            ("image-list", self.list.as_str()),
            ("write-back-method", "git"),
        ];
        annotations.extend_from_slice(more);
        annotations
    }
}

/// The [`ReadmeWorld`] of a test named `prefix`; `None` when the API server binaries are not
/// installed.
async fn readme_world(prefix: &str) -> Option<ReadmeWorld> {
    let (ns, admin, web, server, _registry) = world(prefix, TAGS).await?;
    let (initial, url) = deploy_repo(&server, &[("README.md", "deploy\n")]);
    let list = format!("web={web}");
    Some(ReadmeWorld {
        ns,
        admin,
        web,
        server,
        initial,
        url,
        list,
        _registry,
    })
}

/// The annotations of a git write-back of the images of `list` to the Helm values file of
/// `write_back_target`, on branch `main`, at `image.repository` and `image.tag`.
fn helm_values_annotations<'a>(
    list: &'a str,
    write_back_target: &'a str,
) -> [(&'a str, &'a str); 6] {
    [
        ("image-list", list),
        ("write-back-method", "git"),
        ("git-branch", "main"),
        ("write-back-target", write_back_target),
        ("web.helm.image-name", "image.repository"),
        ("web.helm.image-tag", "image.tag"),
    ]
}

#[tokio::test]
async fn helm_applications_get_their_argocd_source_file_created_then_edited() {
    let Some((ns, admin, web, server, registry)) =
        world("git-helm", &["1.2.3", "1.2.9", "1.3.0"]).await
    else {
        return;
    };
    let (_, url) = deploy_repo(&server, &[("apps/web/Chart.yaml", "name: web\n")]);
    let list = format!("web={web}:~1.2");
    let annotations = [("image-list", list.as_str()), ("write-back-method", "git")];
    let mut app = App::new("web", &annotations, helm_source(&url, "1.2.3"));
    app.source["path"] = json!("apps/web");
    create_apps(&admin, &ns, [app]).await;
    let target = target(admin.clone(), &ns, &server);
    let pipeline = pipeline(&target);

    let report = run_without_problems(&pipeline, &target).await;
    assert_applied(&report, &[updated(&ns, "web", &web, "1.2.3", "1.2.9")]);
    let file = "apps/web/.argocd-source-web.yaml";
    let written = format!(
        "helm:\n  parameters:\n  - name: image.name\n    value: {web}\n    forcestring: true\n  \
         - name: image.tag\n    value: 1.2.9\n    forcestring: true\n"
    );
    assert_eq!(server.read_file("deploy", "main", file).unwrap(), written);
    assert_eq!(
        tip_commit(&server, "deploy", "main"),
        format!(
            "{AUTHOR}\nbuild: automatic update of web\n\nupdates image {web} tag '1.2.3' to '1.2.9'"
        )
    );
    // The Application itself is not changed: Argo CD reads the file.
    assert_eq!(
        source(&admin, &ns, "web").await["helm"]["parameters"],
        json!([{ "name": "image.tag", "value": "1.2.3" }])
    );

    // What runs now comes from the file: nothing to do, no empty commit.
    let report = run_without_problems(&pipeline, &target).await;
    assert_applied(&report, &[]);
    assert_eq!(server.log("deploy", "main").len(), 2);
    let id = format!("application/{ns}/web/web");
    let plan = |current: &str, new: &str| UpdatePlan {
        target: "argocd".into(),
        id: id.clone(),
        current: image(&format!("{web}:{current}")),
        new: image(&format!("{web}:{new}")),
    };
    let again = plan("1.2.3", "1.2.9");
    assert_eq!(
        target.apply(&again).await.unwrap(),
        ApplyOutcome::AlreadyCurrent
    );
    let stale = plan("1.2.3", "1.3.0");
    let err = target.apply(&stale).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "it runs {web}:1.2.9 now, not {web}:1.2.3 as planned"
        )),
        "{err}"
    );
    assert_eq!(server.log("deploy", "main").len(), 2);

    // Someone adds a parameter and comments; the next update changes only the tag's bytes.
    let by_hand = format!(
        "# kept by hand\nhelm:\n  parameters:\n  - name: replicaCount # scale\n    value: \"3\"\n{}",
        written.trim_start_matches("helm:\n  parameters:\n")
    );
    server.push_file("deploy", "main", file, &by_hand, "Scale web");
    registry.seeder().push_tags("acme/web", &["1.2.10"]).await;
    // A new pipeline: the registry client keeps tag lists for a while.
    let report = run_without_problems(&common::pipeline(&target), &target).await;
    assert_applied(&report, &[updated(&ns, "web", &web, "1.2.9", "1.2.10")]);
    assert_eq!(
        server.read_file("deploy", "main", file).unwrap(),
        by_hand.replace("value: 1.2.9", "value: 1.2.10")
    );
    assert_eq!(server.log("deploy", "main").len(), 4);
}

#[tokio::test]
async fn kustomization_and_helm_values_targets_are_edited_in_place() {
    let Some((ns, admin, web, server, _registry)) = world("git-targets", TAGS).await else {
        return;
    };
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- \
         deployment.yaml\nimages:\n- name: {web} # the web tier\n  newTag: 1.0.0\n- name: redis\n  \
         newTag: \"7\"\n"
    );
    let values = format!(
        "# web chart values\nreplicaCount: 2\nimage:\n  repository: {web}  # pinned\n  tag: \
         \"1.0.0\"\n  pullPolicy: IfNotPresent\n"
    );
    let files = [
        ("apps/kust/kustomization.yaml", kustomization.as_str()),
        ("charts/web/values.yaml", &values),
    ];
    let (_, url) = deploy_repo(&server, &files);
    let list = format!("web={web}");
    let kust_annotations = [
        ("image-list", list.as_str()),
        ("write-back-method", "git"),
        ("write-back-target", "kustomization"),
    ];
    let values_annotations = helm_values_annotations(&list, "helmvalues:/charts/web/values.yaml");
    create_apps(
        &admin,
        &ns,
        [
            App::new(
                "kust",
                &kust_annotations,
                json!({ "repoURL": url, "targetRevision": "main", "kustomize": {} }),
            ),
            App::new(
                "values",
                &values_annotations,
                json!({ "repoURL": url, "targetRevision": "v1.0", "path": "apps/values", "helm": {} }),
            ),
        ],
    )
    .await;
    let target = target(admin.clone(), &ns, &server);
    let pipeline = pipeline(&target);
    let report = run_without_problems(&pipeline, &target).await;
    assert_applied(
        &report,
        &[
            updated(&ns, "kust", &web, "1.0.0", "1.1.0"),
            updated(&ns, "values", &web, "1.0.0", "1.1.0"),
        ],
    );
    for (file, want) in [
        (
            "apps/kust/kustomization.yaml",
            kustomization.replace("newTag: 1.0.0", "newTag: 1.1.0"),
        ),
        (
            "charts/web/values.yaml",
            values.replace("tag: \"1.0.0\"", "tag: \"1.1.0\""),
        ),
    ] {
        assert_eq!(
            server.read_file("deploy", "main", file).unwrap(),
            want,
            "{file}"
        );
    }
    assert_eq!(server.log("deploy", "main").len(), 3);
    // Byte-stable: the next pass finds both current and commits nothing.
    let report = run_without_problems(&pipeline, &target).await;
    assert_applied(&report, &[]);
    assert_eq!(server.log("deploy", "main").len(), 3);
}

#[tokio::test]
async fn a_push_branch_of_git_branch_is_pushed_with_the_embedders_author_and_message() {
    let Some(w) = readme_world("git-branch").await else {
        return;
    };
    let annotations = w.git_write_back(&[(
        "git-branch",
        "main:image-updater-{{range .Images}}{{.Alias}}-{{.NewTag}}{{end}}",
    )]);
    create_web_app(&w.admin, &w.ns, &w.url, &annotations).await;
    // The author and message are the embedder's choice.
    let target = Arc::new(
        argocd_target(w.admin.clone(), &w.ns)
            .with_git_workdir(w.server.scratch_dir("argocd-git"))
            .with_git_author("ci-bot", "ci-bot@example.invalid")
            .with_git_message("chore({alias}): {image} {old} -> {new} in {app}"),
    );
    let report = run_without_problems(&pipeline(&target), &target).await;
    assert_eq!(applied(&report).len(), 1, "{:?}", report.applied);
    assert_eq!(w.server.head("deploy", "main"), Some(w.initial));
    assert_eq!(
        tip_commit(&w.server, "deploy", "image-updater-web-1.1.0"),
        format!(
            "ci-bot <ci-bot@example.invalid>\nchore(web): {web} 1.0.0 -> 1.1.0 in web",
            web = w.web
        )
    );
    let pushed = w
        .server
        .read_file(
            "deploy",
            "image-updater-web-1.1.0",
            "apps/web/.argocd-source-web.yaml",
        )
        .expect("the pushed branch has the file");
    assert!(pushed.contains("value: 1.1.0"), "{pushed}");
}

#[tokio::test]
async fn credentials_go_to_their_repository_only() {
    let Some((_, ns, admin)) = argocd_namespace("git-creds").await else {
        return;
    };
    let (_registry, web) = web_registry(TAGS).await;
    let server = GitServer::start_with_http("bot", "s3cret-token");
    for repo in ["deploy", "other", "wrong"] {
        server.create_repo(repo, &[("README.md", "x\n")], "main");
    }
    for (name, password) in [
        ("deploy-creds", "s3cret-token"),
        ("bad-creds", "not-the-token"),
    ] {
        create_secret(
            &admin,
            &ns,
            name,
            &[("username", "bot"), ("password", password)],
        )
        .await;
    }
    // Argo CD's repository credentials: for `deploy` only.
    let credentials = [("username", "bot"), ("password", "s3cret-token")];
    let deploy_url = server.http_url("deploy");
    create_repository_secret(&admin, &ns, "repo-deploy", &deploy_url, &credentials).await;
    let list = format!("web={web}");
    let with_secret = format!("git:secret:{ns}/deploy-creds");
    let wrong_secret = format!("git:secret:{ns}/bad-creds");
    let a = [
        ("image-list", list.as_str()),
        ("write-back-method", with_secret.as_str()),
    ];
    let b = [("image-list", list.as_str()), ("write-back-method", "git")];
    let c = [
        ("image-list", list.as_str()),
        ("write-back-method", wrong_secret.as_str()),
    ];
    let d = [
        ("image-list", list.as_str()),
        ("write-back-method", "git:repocreds"),
    ];
    create_apps(
        &admin,
        &ns,
        [
            App::new("a", &a, helm_source(&server.http_url("deploy"), "1.0.0")),
            App::new("b", &b, helm_source(&server.http_url("other"), "1.0.0")),
            App::new("c", &c, helm_source(&server.http_url("wrong"), "1.0.0")),
            App::new("d", &d, helm_source(&server.http_url("deploy"), "1.0.0")),
        ],
    )
    .await;
    let target = target(admin.clone(), &ns, &server);
    let report = pipeline(&target).run_once().await;
    // `a` with its secret, `d` with the repository credentials of `deploy`.
    assert_eq!(
        applied(&report),
        [
            updated(&ns, "a", &web, "1.0.0", "1.1.0"),
            updated(&ns, "d", &web, "1.0.0", "1.1.0"),
        ]
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        server
            .read_file("deploy", "main", "apps/a/.argocd-source-a.yaml")
            .is_some()
    );
    // `b` has no credentials for `other`, `c` wrong ones: nothing is read, nothing changes.
    let problems = problems(&target);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("application {ns}/b: ")),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!("application {ns}/c: ")),
        "{problems:?}"
    );
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("s3cret") || p.contains("not-the-token")),
        "{problems:?}"
    );
    assert_eq!(server.log("other", "main").len(), 1);
    assert_eq!(server.log("wrong", "main").len(), 1);
    // The secret's user was sent to `deploy` and `wrong` (its own secret), never to `other`.
    let log = server.http_log();
    assert!(
        log.iter()
            .filter(|r| r.path.contains("/other.git"))
            .all(|r| r.user.is_none()),
        "{log:?}"
    );
    assert!(
        log.iter().any(|r| r.path.contains("/deploy.git")
            && r.user.as_deref() == Some("bot")
            && r.status == 200),
        "{log:?}"
    );
}

#[tokio::test]
async fn an_image_updater_configures_the_same_write_back_as_annotations() {
    let Some((server_api, ns, admin)) = argocd_namespace("git-iu").await else {
        return;
    };
    install_crd(
        server_api,
        IMAGE_UPDATER_CRD,
        "argocd-image-updater.argoproj.io/v1alpha1",
        "imageupdaters",
    )
    .await;
    let (_registry, web) = web_registry(TAGS).await;
    let server = GitServer::start();
    let values = format!("image:\n  repository: {web}\n  tag: 1.0.0 # by hand\n");
    let (_, url) = deploy_repo(
        &server,
        &[
            ("apps/iu/values.yaml", &values),
            ("apps/annotated/values.yaml", &values),
        ],
    );
    let list = format!("web={web}");
    let annotations = helm_values_annotations(&list, "helmvalues:values.yaml");
    let source = json!({ "repoURL": url, "targetRevision": "HEAD", "helm": {} });
    create_apps(
        &admin,
        &ns,
        [
            App::new("annotated", &annotations, source.clone()),
            App::new("iu", &[], source),
        ],
    )
    .await;
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argocd-image-updater.argoproj.io/v1alpha1",
        "kind": "ImageUpdater",
        "metadata": { "name": "web", "namespace": ns },
        "spec": {
            "writeBackConfig": {
                "method": "git",
                "gitConfig": { "branch": "main", "writeBackTarget": "helmvalues:values.yaml" },
            },
            "applicationRefs": [{
                "namePattern": "iu",
                "images": [{
                    "alias": "web",
                    "imageName": web,
                    "manifestTargets": { "helm": { "name": "image.repository", "tag": "image.tag" } },
                }],
            }],
        },
    }))
    .expect("an ImageUpdater");
    Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &image_updater_resource())
        .create(&PostParams::default(), &object)
        .await
        .expect("create the ImageUpdater");
    let target = Arc::new(
        argocd_target(admin.clone(), &ns)
            .with_image_updaters(true)
            .with_git_workdir(server.scratch_dir("argocd-git")),
    );
    let report = run_without_problems(&pipeline(&target), &target).await;
    assert_applied(
        &report,
        &[
            updated(&ns, "annotated", &web, "1.0.0", "1.1.0"),
            updated(&ns, "iu", &web, "1.0.0", "1.1.0"),
        ],
    );
    let want = values.replace("tag: 1.0.0", "tag: 1.1.0");
    for app in ["iu", "annotated"] {
        let path = format!("apps/{app}/values.yaml");
        assert_eq!(server.read_file("deploy", "main", &path).unwrap(), want);
    }
}

#[tokio::test]
async fn a_push_race_keeps_both_commits() {
    let Some(w) = readme_world("git-race").await else {
        return;
    };
    let annotations = w.git_write_back(&[]);
    create_web_app(&w.admin, &w.ns, &w.url, &annotations).await;
    let theirs = w
        .server
        .push_file("deploy", "theirs", "README.md", "theirs\n", "Docs");
    w.server.move_branch_on_next_push("deploy", "main", &theirs);
    let target = target(w.admin.clone(), &w.ns, &w.server);
    let report = run_without_problems(&pipeline(&target), &target).await;
    assert_eq!(applied(&report).len(), 1);
    let log = w.server.log("deploy", "main");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].0, theirs);
    assert_eq!(
        w.server.read_file("deploy", "main", "README.md").unwrap(),
        "theirs\n"
    );
    assert!(
        w.server
            .read_file("deploy", "main", "apps/web/.argocd-source-web.yaml")
            .unwrap()
            .contains("value: 1.1.0")
    );
}

#[tokio::test]
async fn paths_leaving_the_repository_ssh_without_key_and_multi_source_are_refused_by_name() {
    let Some(w) = readme_world("git-paths").await else {
        return;
    };
    let up = w.git_write_back(&[("write-back-target", "kustomization:../../other")]);
    let git = w.git_write_back(&[]);
    let mut escaping = App::new("escaping", &git, helm_source(&w.url, "1.0.0"));
    escaping.source["path"] = json!("apps/../../etc");
    create_apps(
        &w.admin,
        &w.ns,
        [
            App::new("up", &up, helm_source(&w.url, "1.0.0")),
            escaping,
            App::new(
                "ssh",
                &git,
                helm_source("git@git.example:acme/deploy.git", "1.0.0"),
            ),
            App::new(
                "multi",
                &git,
                json!({ "sources": [helm_source(&w.url, "1.0.0")] }),
            ),
            App::new(
                "multi-argocd",
                &up[..1],
                json!({ "sources": [helm_source(&w.url, "1.0.0")] }),
            ),
        ],
    )
    .await;
    let target = target(w.admin.clone(), &w.ns, &w.server);
    let report = pipeline(&target).run_once().await;
    assert_applied(&report, &[]);
    let problems = problems(&target);
    let ns = &w.ns;
    assert_eq!(
        problems,
        [
            format!(
                "application {ns}/escaping: spec.source.path = \"apps/../../etc\": contains \
                 `..`: paths stay inside the repository"
            ),
            format!("application {ns}/multi-argocd: spec.sources = \"\": {MULTI_SOURCE}"),
            format!("application {ns}/multi: spec.sources = \"\": {MULTI_SOURCE}"),
            format!(
                "application {ns}/ssh: spec.source.repoURL = \"git@git.example:acme/deploy.git\": \
                 an SSH repository needs a private key: Argo CD's repository credentials or the \
                 Secret of git:secret:<ns>/<name> with `sshPrivateKey`"
            ),
            format!(
                "application {ns}/up: argocd-image-updater.argoproj.io/write-back-target = \
                 \"kustomization:../../other\": `../../other` contains `..`: paths stay inside \
                 the repository"
            ),
        ]
    );
    assert_eq!(w.server.head("deploy", "main"), Some(w.initial));
}

#[tokio::test]
async fn ssh_repositories_are_written_with_the_host_key_argocd_pins() {
    let Some((_, ns, admin)) = argocd_namespace("git-ssh").await else {
        return;
    };
    let (_registry, web) = web_registry(TAGS).await;
    let git = GitServer::start();
    let ssh = SshServer::start();
    for repo in ["deploy", "unpinned"] {
        git.create_repo(repo, &[("README.md", "x\n")], "main");
    }
    let key = ssh.client_key();
    let credentials = [("sshPrivateKey", key.as_str())];
    for (name, repo) in [("repo-deploy", "deploy"), ("repo-unpinned", "unpinned")] {
        create_repository_secret(&admin, &ns, name, &ssh.url(&git, repo), &credentials).await;
    }
    // Argo CD's known hosts pin the server's key for 127.0.0.1 at its port only.
    create_ssh_known_hosts(&admin, &ns, &format!("{}\n", ssh.known_hosts())).await;
    let list = format!("web={web}");
    let annotations = [("image-list", list.as_str()), ("write-back-method", "git")];
    // `unpinned` names the server as `localhost`, which known_hosts does not list.
    let unpinned_url = ssh.url(&git, "unpinned").replace("127.0.0.1", "localhost");
    create_repository_secret(&admin, &ns, "repo-localhost", &unpinned_url, &credentials).await;
    create_apps(
        &admin,
        &ns,
        [
            App::new(
                "web",
                &annotations,
                helm_source(&ssh.url(&git, "deploy"), "1.0.0"),
            ),
            App::new(
                "unpinned",
                &annotations,
                helm_source(&unpinned_url, "1.0.0"),
            ),
        ],
    )
    .await;
    let target = target(admin.clone(), &ns, &git);
    let report = pipeline(&target).run_once().await;
    assert_eq!(
        applied(&report),
        [updated(&ns, "web", &web, "1.0.0", "1.1.0")]
    );
    assert!(
        git.read_file("deploy", "main", "apps/web/.argocd-source-web.yaml")
            .unwrap()
            .contains("value: 1.1.0")
    );
    let problems = problems(&target);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("application {ns}/unpinned: ")),
        "{problems:?}"
    );
    assert!(problems[0].contains("host key"), "{problems:?}");
    assert!(!problems[0].contains("PRIVATE KEY"), "{problems:?}");
    assert_eq!(git.log("unpinned", "main").len(), 1);
}
