//! `keel release` and `keel gitops plan|apply` against a real git server and registry.

mod common;
use common::{assert_says, keel, keel_with_env, stdout_of, text};

use keel_testsupport::git::GitServer;
use keel_testsupport::registry::{RegistryServer, ServerOptions};

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {image} # {{\"$imagepolicy\": \"flux-system:web\"}}\n"
    )
}

#[test]
fn release_sets_one_image_everywhere_and_pushes() {
    let server = GitServer::start();
    let web = deployment("ghcr.io/acme/web:1.2.3");
    let values = "image:\n  repository: ghcr.io/acme/web # {\"$imagepolicy\": \"flux-system:web:name\"}\n  tag: 1.2.3 # {\"$imagepolicy\": \"flux-system:web:tag\"}\n";
    let other =
        deployment("ghcr.io/acme/other:1.0.0").replace("flux-system:web", "flux-system:other");
    server.create_repo(
        "fleet",
        &[
            ("apps/web.yaml", &web),
            ("charts/web/values.yaml", values),
            ("apps/other.yaml", &other),
        ],
        "main",
    );
    let workdir = server.scratch_dir("cli-release");
    let o = keel(
        &[
            "release",
            "--repo",
            &server.git_url("fleet"),
            "--update-image",
            "ghcr.io/acme/web:1.4.2",
            "--workdir",
            workdir.to_str().unwrap(),
            "--author",
            "CI Bot <ci@example.invalid>",
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 2, "{}", text(&o.stdout));
    for (path, want) in [
        ("apps/web.yaml", web.replace("1.2.3", "1.4.2")),
        (
            "charts/web/values.yaml",
            values.replace("tag: 1.2.3", "tag: 1.4.2"),
        ),
        ("apps/other.yaml", other),
    ] {
        assert_eq!(
            server.read_file("fleet", "main", path).unwrap(),
            want,
            "{path}"
        );
    }
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 2);
    assert_eq!(server.show("fleet", &log[0].0, "%an"), "CI Bot\n");

    // The same step configured the way CI plugins pass settings: nothing left to change.
    let o = keel_with_env(
        &["release", "--workdir", workdir.to_str().unwrap()],
        "",
        &[
            ("PLUGIN_REPO", &server.git_url("fleet")),
            ("PLUGIN_UPDATE_IMAGE", "ghcr.io/acme/web:1.4.2"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_says(&o.stderr, "nothing to change");
    assert_eq!(server.log("fleet", "main").len(), 2);

    let o = keel(
        &[
            "release",
            "--repo",
            &server.git_url("fleet"),
            "--update-image",
            "ghcr.io/acme/web",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    assert_says(&o.stderr, "names no tag");
}

#[test]
fn release_sets_every_reference_and_fails_when_there_is_none() {
    let server = GitServer::start();
    // Nothing marked: plain workloads, a kustomization, Helm values, and look-alikes.
    let workloads = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: ghcr.io/acme/web:1.2.3}]
      containers:
        - name: web
          image: ghcr.io/acme/web:1.2.3@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        - name: sidecar
          image: ghcr.io/acme/web-sidecar:1.2.3
        - name: mirror
          image: registry.example.com/acme/web:1.2.3 # image: ghcr.io/acme/web:1.2.3
";
    let kustomization = "\
images:
  - name: ghcr.io/acme/web
    newTag: 1.2.3
  - name: ghcr.io/acme/web-sidecar
    newTag: 1.2.3
";
    let values = "web: {image: 'ghcr.io/acme/web:1.2.3', replicas: 2}\n";
    let template = "{{- if .Values.web.enabled }}\nimage: {{ .Values.web.image }}\n{{- end }}\n";
    server.create_repo(
        "fleet",
        &[
            ("apps/web.yaml", workloads),
            ("apps/kustomization.yaml", kustomization),
            ("charts/web/values.yaml", values),
            ("charts/web/templates/web.yaml", template),
        ],
        "main",
    );
    let workdir = server.scratch_dir("cli-release-every");
    let url = server.git_url("fleet");
    let release = |image: &str| {
        keel(
            &[
                "release",
                "--repo",
                &url,
                "--update-image",
                image,
                "--workdir",
                workdir.to_str().unwrap(),
            ],
            "",
        )
    };
    let o = release("ghcr.io/acme/web:1.4.2");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 4, "{}", text(&o.stdout));
    let read = |path| server.read_file("fleet", "main", path).unwrap();
    assert_eq!(
        read("apps/web.yaml"),
        workloads
            .replace(
                "init, image: ghcr.io/acme/web:1.2.3",
                "init, image: ghcr.io/acme/web:1.4.2"
            )
            .replace(
                &format!("ghcr.io/acme/web:1.2.3@sha256:{}", "a".repeat(64)),
                "ghcr.io/acme/web:1.4.2"
            )
    );
    assert_eq!(
        read("apps/kustomization.yaml"),
        kustomization.replacen("newTag: 1.2.3", "newTag: 1.4.2", 1)
    );
    assert_eq!(
        read("charts/web/values.yaml"),
        values.replace("1.2.3", "1.4.2")
    );
    assert_eq!(read("charts/web/templates/web.yaml"), template);
    assert_eq!(server.log("fleet", "main").len(), 2);

    // Again: already released, no commit, still a success.
    let o = release("ghcr.io/acme/web:1.4.2");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_says(&o.stderr, "already");
    assert_eq!(server.log("fleet", "main").len(), 2);

    // An image the repository does not reference: a failure, saying so, and no commit.
    let o = release("ghcr.io/acme/absent:1.0.0");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_says(&o.stderr, "ghcr.io/acme/absent nowhere");
    // What could not be read is named: the reference may hide there.
    assert_says(&o.stderr, "charts/web/templates/web.yaml:1: not valid YAML");
    assert_eq!(server.log("fleet", "main").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_plan_shows_and_apply_pushes() {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    registry
        .push_tags("acme/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"])
        .await;
    let image = format!("{}/acme/web", registry.addr());
    let git = GitServer::start();
    let web = deployment(&format!("{image}:1.2.3"));
    git.create_repo(
        "fleet",
        &[
            ("apps/web.yaml", &web),
            (".keel.yaml", "policies:\n  flux-system:web: minor\n"),
        ],
        "main",
    );
    let head = git.head("fleet", "main");
    let url = git.git_url("fleet");
    let workdir = git.scratch_dir("cli-gitops");
    let args = |verb: &'static str| {
        vec![
            "gitops".to_owned(),
            verb.to_owned(),
            "--repo".to_owned(),
            url.clone(),
            "--workdir".to_owned(),
            workdir.to_str().unwrap().to_owned(),
        ]
    };
    let run = |verb| {
        let a = args(verb);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        tokio::task::block_in_place(|| keel(&refs, ""))
    };

    let o = run("plan");
    let diff = stdout_of(&o).as_bytes();
    assert_says(diff, &format!("-          image: {image}:1.2.3"));
    assert_says(diff, &format!("+          image: {image}:1.3.0"));
    assert_eq!(git.head("fleet", "main"), head, "plan pushed");

    let o = run("apply");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        git.read_file("fleet", "main", "apps/web.yaml").unwrap(),
        web.replace("1.2.3", "1.3.0")
    );
    let o = run("plan");
    assert!(o.status.success());
    assert_eq!(text(&o.stdout), "", "nothing left to plan");
}
