//! `keel-gitops` against a real git server and registry: with `--once`, a dry run shows the
//! diff and pushes nothing and a real run pushes the update; left running, a tag pushed
//! between passes is seen by the next pass, and a reference with `keel.sh/trigger: poll`
//! polls on its own `keel.sh/pollSchedule`, as in the cluster.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_testsupport::git::GitServer;
use keel_testsupport::registry::{RegistryServer, ServerOptions};

/// A repository `fleet` whose `values.yaml` (returned) marks `acme/api:2.0.0` of `registry`
/// for `semver:^2`.
fn fleet(git: &GitServer, registry: &RegistryServer) -> String {
    let image = format!("{}/acme/api", registry.addr());
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
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_dry_and_real() {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    registry
        .push_tags("acme/api", &["2.0.0", "2.1.0", "3.0.0"])
        .await;
    let git = GitServer::start();
    let values = fleet(&git, &registry);
    let head = git.head("fleet", "main");
    let run = |extra: &[&str]| {
        let mut command = gitops(&git, "fleet", &["--once"]);
        command.args(extra);
        tokio::task::block_in_place(|| command.output().expect("keel-gitops runs"))
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

/// `keel-gitops` on `repo` of `git` with `args`, away from any Docker config and
/// `POLL_DEFAULTSCHEDULE` of the machine.
fn gitops(git: &GitServer, repo: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel-gitops"));
    command
        .args(["--repo", &git.git_url(repo)])
        .args(args)
        .env("TMPDIR", git.scratch_dir("gitops"))
        .env("DOCKER_CONFIG", keel_testsupport::no_docker_config())
        .env_remove("POLL_DEFAULTSCHEDULE")
        .stdin(Stdio::null());
    command
}

/// A running `keel-gitops`; killed when dropped.
struct Updater(Child);

impl Updater {
    /// Started with `args`, serving `/healthz` on a free port of 127.0.0.1 (tests run side
    /// by side: the default `--listen` would be taken by the first).
    fn start(git: &GitServer, repo: &str, args: &[&str]) -> Updater {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let mut command = gitops(git, repo, args);
        command.args(["--listen", &listen]);
        Updater(command.spawn().expect("keel-gitops runs"))
    }
}

impl Drop for Updater {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `file` on `main` contains `want`, for `secs` seconds at most; how long that
/// took.
async fn wait_for(git: &GitServer, repo: &str, file: &str, want: &str, secs: u64) -> Duration {
    let within = Duration::from_secs(secs);
    let start = Instant::now();
    loop {
        let text = git.read_file(repo, "main", file).unwrap_or_default();
        if text.contains(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{file} did not get {want:?} within {within:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_pushed_between_passes_is_seen_by_the_next_pass() {
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/api", &["2.0.0", "2.1.0"]).await;
    let git = GitServer::start();
    fleet(&git, &registry);
    let _updater = Updater::start(&git, "fleet", &["--interval", "2s"]);
    wait_for(&git, "fleet", "values.yaml", "\"2.1.0\"", 30).await;

    // The registry client's own cache would hide this tag for 30 s.
    registry.push_tags("acme/api", &["2.2.0"]).await;
    let took = wait_for(&git, "fleet", "values.yaml", "\"2.2.0\"", 15).await;
    eprintln!("pushed tag to committed update: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_triggered_references_poll_on_their_own_schedule() {
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/web", &["1.0.0", "1.1.0"]).await;
    registry.push_tags("acme/api", &["2.0.0", "2.1.0"]).await;
    let web = format!("{}/acme/web", registry.addr());
    let api = format!("{}/acme/api", registry.addr());
    let git = GitServer::start();
    let workloads = format!(
        "\
kind: Deployment
metadata:
  name: web
  annotations:
    keel.sh/policy: minor
    keel.sh/trigger: poll
    keel.sh/pollSchedule: '@every 1s'
spec: {{template: {{spec: {{containers: [{{name: web, image: '{web}:1.0.0'}}]}}}}}}
---
kind: Deployment
metadata:
  name: api
  annotations:
    keel.sh/policy: minor
spec: {{template: {{spec: {{containers: [{{name: api, image: '{api}:2.0.0'}}]}}}}}}
"
    );
    git.create_repo("fleet", &[("apps.yaml", &workloads)], "main");
    // Everything is checked when first found; after that only `web` is due within the hour.
    let _updater = Updater::start(&git, "fleet", &["--interval", "1h"]);
    wait_for(&git, "fleet", "apps.yaml", "web:1.1.0", 30).await;
    wait_for(&git, "fleet", "apps.yaml", "api:2.1.0", 30).await;

    registry.push_tags("acme/web", &["1.2.0"]).await;
    registry.push_tags("acme/api", &["2.2.0"]).await;
    wait_for(&git, "fleet", "apps.yaml", "web:1.2.0", 15).await;
    // `api` waits for the interval.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = git.read_file("fleet", "main", "apps.yaml").unwrap();
    assert!(text.contains("api:2.1.0"), "{text}");
}
