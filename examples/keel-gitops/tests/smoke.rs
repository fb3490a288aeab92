//! `keel-gitops --once` against a real git server and registry: a dry run shows the diff and
//! pushes nothing; a real run pushes the update.

use std::process::Command;

use keel_testsupport::git::GitServer;
use keel_testsupport::registry::{RegistryServer, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_dry_and_real() {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    registry
        .push_tags("acme/api", &["2.0.0", "2.1.0", "3.0.0"])
        .await;
    let image = format!("{}/acme/api", registry.addr());
    let git = GitServer::start();
    let values = format!(
        "image:\n  repository: {image} # {{\"$imagepolicy\": \"apps:api:name\"}}\n  tag: \"2.0.0\" # {{\"$imagepolicy\": \"apps:api:tag\"}}\n"
    );
    git.create_repo(
        "fleet",
        &[
            ("values.yaml", &values),
            (".keel.yaml", "policies:\n  apps:api: semver:^2\n"),
        ],
        "main",
    );
    let head = git.head("fleet", "main");
    let run = |extra: &[&str]| {
        let workdir = git.scratch_dir("gitops-smoke");
        let url = git.git_url("fleet");
        let mut args = vec!["--repo", url.as_str(), "--once"];
        args.extend_from_slice(extra);
        tokio::task::block_in_place(|| {
            Command::new(env!("CARGO_BIN_EXE_keel-gitops"))
                .args(&args)
                .env("TMPDIR", &workdir)
                .env(
                    "DOCKER_CONFIG",
                    std::env::temp_dir().join("keel-no-docker-config"),
                )
                .output()
                .expect("keel-gitops runs")
        })
    };

    let dry = run(&["--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let diff = String::from_utf8_lossy(&dry.stdout);
    assert!(diff.contains("+  tag: \"2.1.0\""), "{diff}");
    assert_eq!(git.head("fleet", "main"), head);

    let real = run(&[]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert_eq!(
        git.read_file("fleet", "main", "values.yaml").unwrap(),
        values.replace("\"2.0.0\"", "\"2.1.0\"")
    );
}
