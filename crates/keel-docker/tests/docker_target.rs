//! DockerTarget against a real Docker engine (a throw-away `dockerd`) pulling from a real
//! registry on 127.0.0.1: updates keep the configuration, failures roll back, Watchtower's
//! labels scope and order what is updated.

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use async_trait::async_trait;
use keel_core::approval::{
    ApprovalFilter, ApprovalState, Approvals, MemoryApprovalStore, VoteKind,
};
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_core::{Error, ImageRef, Pipeline, RunReport, Secret};
use keel_docker::bollard::Docker;
use keel_docker::labels::{self, Scope};
use keel_docker::{DockerTarget, DockerTargetBuilder, PullAuth, PullCredentials};
use keel_registry::RegistryClient;
use keel_testsupport::docker::{DockerEngine, ImageSpec};
use keel_testsupport::registry::{Fault, FaultProxy, FaultRule, RegistryServer, ServerOptions};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// An engine, a registry, and a target for the engine.
struct World {
    engine: DockerEngine,
    registry: RegistryServer,
}

impl World {
    async fn start() -> World {
        let engine = tokio::task::spawn_blocking(DockerEngine::start)
            .await
            .expect("engine");
        let registry = RegistryServer::start(ServerOptions::plain()).await;
        World { engine, registry }
    }

    /// A world whose registry has `acme/web` at `1.0.0` and `1.1.0` (servers printing their
    /// version in `/version`); returns it with the repository's name.
    async fn with_web_releases() -> (World, String) {
        let w = World::start().await;
        w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
        w.push("acme/web", "1.1.0", &ImageSpec::server("1.1.0"));
        let repo = w.repo("acme/web");
        (w, repo)
    }

    /// `127.0.0.1:PORT/<repo>`.
    fn repo(&self, repo: &str) -> String {
        format!("{}/{repo}", self.registry.addr())
    }

    /// Builds `spec` and pushes it as `<repo>:<tag>`; returns its digest.
    fn push(&self, repo: &str, tag: &str, spec: &ImageSpec) -> String {
        self.engine
            .build_and_push(self.registry.addr(), repo, tag, spec)
    }

    /// A client of the engine, at the API version both speak (as applications connect).
    async fn docker(&self) -> Docker {
        let socket = self.engine.host().trim_start_matches("unix://");
        Docker::connect_with_unix(socket, 60, keel_docker::bollard::API_DEFAULT_VERSION)
            .expect("a client of the test engine")
            .negotiate_version()
            .await
            .expect("the engine's API version")
    }

    async fn builder(&self) -> DockerTargetBuilder {
        DockerTarget::builder(self.docker().await)
            .name("test-engine")
            .stop_timeout(Duration::from_secs(5))
            .startup_grace(Duration::from_millis(1500))
            .health_timeout(Duration::from_secs(15))
    }

    async fn target(&self) -> DockerTarget {
        self.builder().await.build().expect("target")
    }

    /// `docker run -d --name NAME ARGS... IMAGE`, waiting until it runs.
    fn run(&self, name: &str, args: &[&str], image: &str) -> String {
        let mut all = vec!["--name", name];
        all.extend(args);
        all.push(image);
        let id = self.engine.run_container(&all);
        self.engine.wait_running(name, WAIT);
        id
    }

    /// Runs `web` on `acme/web:1.0.0` with `keel.sh/policy: minor`, waiting until it runs.
    fn run_web(&self) -> String {
        let image = format!("{}:1.0.0", self.repo("acme/web"));
        self.run("web", &flags("--label keel.sh/policy=minor"), &image)
    }

    fn version(&self, name: &str) -> String {
        self.engine.run(["exec", name, "cat", "/version"])
    }

    fn inspect(&self, name: &str) -> Value {
        self.engine.inspect_container(name)
    }

    /// One pipeline pass over `target` with a real registry client.
    async fn pass(&self, target: &DockerTarget) -> RunReport {
        self.pipeline(target).run_once().await
    }

    fn pipeline(&self, target: &DockerTarget) -> Pipeline {
        let client = RegistryClient::builder()
            .with_requests_per_second(0.0)
            .with_cache_ttl(Duration::ZERO)
            .build()
            .expect("registry client");
        Pipeline::new(Arc::new(client)).with_target(Arc::new(target.clone()))
    }
}

/// The arguments of a command line written as one string, split at white space (for
/// `docker run` flags whose values hold none).
fn flags(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn applied(report: &RunReport) -> Vec<String> {
    report.applied.iter().map(|p| p.to_string()).collect()
}

fn failures(report: &RunReport) -> Vec<String> {
    report
        .failures
        .iter()
        .map(|f| format!("{:?}: {}", f.id, f.error))
        .collect()
}

/// Asserts that the pass failed nowhere and applied exactly `expected` (plans as text).
fn assert_applied(report: &RunReport, expected: &[String]) {
    assert_eq!(failures(report), Vec::<String>::new());
    assert_eq!(applied(report), expected);
}

/// The names of the engine's containers, running or not.
fn names(world: &World) -> Vec<String> {
    let mut names: Vec<String> = world
        .engine
        .run(["ps", "--all", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_to_the_policys_version_keeps_the_configuration() {
    let w = World::start().await;
    let repo = w.repo("acme/web");
    let one = ImageSpec::server("1.0.0")
        .env("FROM_IMAGE", "one")
        .volume("/cache");
    w.push("acme/web", "1.0.0", &one);
    w.push(
        "acme/web",
        "1.1.0",
        &one.clone().version("1.1.0").env("FROM_IMAGE", "two"),
    );
    w.push("acme/web", "2.0.0", &ImageSpec::server("2.0.0"));
    w.engine.run(["network", "create", "appnet"]);
    w.engine.run(["volume", "create", "appdata"]);
    w.run(
        "web",
        &flags(
            "--label keel.sh/policy=minor --label com.docker.compose.project=demo \
         --label com.docker.compose.service=web --env MODE=prod --restart unless-stopped \
         --memory 64m --cpu-shares 512 --workdir /tmp --stop-timeout 4 \
         --network appnet --network-alias api --publish 127.0.0.1::8080 \
         --volume appdata:/data --tmpfs /run --hostname web-host",
        ),
        &format!("{repo}:1.0.0"),
    );
    w.engine.run([
        "exec",
        "web",
        "sh",
        "-c",
        "echo kept > /data/a; echo kept > /cache/b",
    ]);
    let before = w.inspect("web");

    let target = w.target().await;
    let report = w.pass(&target).await;
    assert_applied(
        &report,
        &[format!(
            "test-engine container/web: {repo}:1.0.0 -> {repo}:1.1.0"
        )],
    );
    let after = w.inspect("web");
    assert_ne!(after["Id"], before["Id"], "a new container");
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(w.version("web"), "1.1.0");
    assert_eq!(after["Config"]["Image"], format!("{repo}:1.1.0"));
    assert_eq!(names(&w), ["web"], "the old container is gone");

    // Field by field: what the container was given is kept...
    for field in [
        "Labels",
        "WorkingDir",
        "StopTimeout",
        "Hostname",
        "ExposedPorts",
    ] {
        assert_eq!(
            after["Config"][field], before["Config"][field],
            "Config.{field}"
        );
    }
    for field in [
        "RestartPolicy",
        "Memory",
        "CpuShares",
        "PortBindings",
        "Binds",
        "Tmpfs",
        "NetworkMode",
    ] {
        assert_eq!(
            after["HostConfig"][field], before["HostConfig"][field],
            "HostConfig.{field}"
        );
    }
    let env: Vec<&str> = after["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"MODE=prod"), "{env:?}");
    // ...and what came from the old image follows the new one.
    assert!(env.contains(&"FROM_IMAGE=two"), "{env:?}");
    assert!(!env.contains(&"FROM_IMAGE=one"), "{env:?}");
    let aliases = &after["NetworkSettings"]["Networks"]["appnet"]["Aliases"];
    assert!(
        aliases.as_array().unwrap().contains(&json!("api")),
        "{aliases}"
    );
    // The data of the named volume and of the image's anonymous volume is still there.
    assert_eq!(
        w.engine.run(["exec", "web", "cat", "/data/a", "/cache/b"]),
        "kept\nkept"
    );

    // Applied again, the plan changes nothing.
    let plan = report.applied[0].clone();
    assert_eq!(
        target.apply(&plan).await.unwrap(),
        ApplyOutcome::AlreadyCurrent
    );
    assert_eq!(w.inspect("web")["Id"], after["Id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_policy_a_container_follows_its_tags_digest() {
    let w = World::start().await;
    let repo = w.repo("acme/worker");
    let first = w.push("acme/worker", "latest", &ImageSpec::server("build-1"));
    w.run("worker", &[], &format!("{repo}:latest"));

    let target = w.target().await;
    let tracked = target.discover().await.unwrap();
    assert_eq!(tracked.len(), 1);
    assert_eq!(
        tracked[0].image.to_string(),
        format!("{repo}:latest@{first}")
    );
    let report = w.pass(&target).await;
    assert!(
        report.planned.is_empty(),
        "nothing new: {:?}",
        applied(&report)
    );

    let second = w.push("acme/worker", "latest", &ImageSpec::server("build-2"));
    let report = w.pass(&target).await;
    assert_applied(
        &report,
        &[format!(
            "test-engine container/worker: {repo}:latest@{first} -> {repo}:latest@{second}"
        )],
    );
    assert_eq!(w.version("worker"), "build-2");
    assert_eq!(
        w.inspect("worker")["Config"]["Image"],
        format!("{repo}:latest")
    );
}

/// Runs `web` at 1.0.0 with policy minor, pushes `bad` as 1.1.0 and makes one pass: the
/// update fails and is rolled back. Returns the world, the target and the old container id.
async fn rolled_back(bad: ImageSpec) -> (World, DockerTarget, Value) {
    let w = World::start().await;
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    w.push("acme/web", "1.1.0", &bad);
    w.run_web();
    let before = w.inspect("web");
    let target = w.target().await;
    let report = w.pass(&target).await;
    assert!(report.applied.is_empty(), "{:?}", applied(&report));
    let errors = failures(&report);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("rolled back"), "{errors:?}");

    let after = w.inspect("web");
    assert_eq!(
        after["Id"], before["Id"],
        "the old container, under its name"
    );
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(w.version("web"), "1.0.0");
    assert_eq!(names(&w), ["web"], "nothing left over");
    (w, target, before)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_that_exits_at_once_is_rolled_back_and_avoided() {
    let (w, target, before) = rolled_back(ImageSpec::exits_at_once("1.1.0")).await;
    let repo = w.repo("acme/web");
    assert_eq!(
        target.avoided().get("web").map(String::as_str),
        Some(format!("{repo}:1.1.0").as_str())
    );
    // The failed version is not tried again...
    let report = w.pass(&target).await;
    assert!(report.planned.is_empty(), "{:?}", failures(&report));
    assert_eq!(w.inspect("web")["Id"], before["Id"]);
    // ...and the next one is taken.
    w.push("acme/web", "1.1.1", &ImageSpec::server("1.1.1"));
    let report = w.pass(&target).await;
    assert_eq!(
        applied(&report),
        [format!(
            "test-engine container/web: {repo}:1.0.0 -> {repo}:1.1.1"
        )]
    );
    assert_eq!(w.version("web"), "1.1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_that_turns_unhealthy_is_rolled_back() {
    let (_w, target, _) = rolled_back(ImageSpec::unhealthy("1.1.0")).await;
    assert!(target.avoided().contains_key("web"));
}

#[tokio::test(flavor = "multi_thread")]
async fn avoided_versions_survive_a_restart_through_the_state_file() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("avoided.json");
    let w = World::start().await;
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    w.push("acme/web", "1.1.0", &ImageSpec::exits_at_once("1.1.0"));
    w.run_web();
    let first = w.builder().await.state_file(&file).build().unwrap();
    assert_eq!(w.pass(&first).await.failures.len(), 1);
    let restarted = w.builder().await.state_file(&file).build().unwrap();
    assert!(restarted.avoided().contains_key("web"));
    assert!(w.pass(&restarted).await.planned.is_empty());

    std::fs::write(&file, "not json").unwrap();
    let error = w
        .builder()
        .await
        .state_file(&file)
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("avoided.json"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn label_enable_tracks_only_opted_in_containers_and_false_opts_out() {
    let w = World::start().await;
    let image = format!("{}:1.0.0", w.repo("acme/web"));
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    w.run("plain", &[], &image);
    w.run(
        "in",
        &flags(&format!("--label {}=true", labels::ENABLE)),
        &image,
    );
    w.run(
        "out",
        &flags(&format!("--label {}=false", labels::ENABLE)),
        &image,
    );
    let ids = |target: DockerTarget| async move {
        let tracked = target.discover().await.unwrap();
        tracked.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(w.target().await).await,
        ["container/in", "container/plain"]
    );
    let label_enable = Scope {
        label_enable: true,
        ..Scope::default()
    };
    let target = w.builder().await.scope(label_enable).build().unwrap();
    assert_eq!(ids(target).await, ["container/in"]);
    let named = Scope {
        names: vec!["plain".into()],
        ..Scope::default()
    };
    assert_eq!(
        ids(w.builder().await.scope(named).build().unwrap()).await,
        ["container/plain"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_only_containers_are_reported_and_left_alone() {
    let (w, repo) = World::with_web_releases().await;
    let labels = flags("--label keel.sh/policy=minor");
    w.run("web", &labels, &format!("{repo}:1.0.0"));
    let before = w.inspect("web");
    let watching = Scope {
        monitor_only: true,
        ..Scope::default()
    };
    let target = w.builder().await.scope(watching).build().unwrap();
    let report = w.pass(&target).await;
    assert_eq!(report.planned.len(), 1, "the update is found");
    assert!(report.applied.is_empty());
    assert_eq!(failures(&report), Vec::<String>::new());
    assert_eq!(
        report.previews["test-engine"],
        format!("container web: recreate with {repo}:1.1.0 (was {repo}:1.0.0)\n")
    );
    assert_eq!(w.inspect("web")["Id"], before["Id"]);
    assert!(
        !w.engine.has_image(&format!("{repo}:1.1.0")),
        "not even pulled"
    );
    // Applied directly, the plan is refused.
    let error = target.apply(&report.planned[0].plan).await.unwrap_err();
    assert!(error.to_string().contains("monitor-only"), "{error}");

    // The label does the same for one container.
    let labelled = flags(
        "--label keel.sh/policy=minor --label com.centurylinklabs.watchtower.monitor-only=true",
    );
    w.run("watched", &labelled, &format!("{repo}:1.0.0"));
    let report = w.pass(&w.target().await).await;
    assert_applied(
        &report,
        &[format!(
            "test-engine container/web: {repo}:1.0.0 -> {repo}:1.1.0"
        )],
    );
    assert!(report.previews["test-engine"].contains("container watched"));
    assert_eq!(w.version("watched"), "1.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn dependencies_are_updated_first_and_dependents_follow() {
    let w = World::start().await;
    let (db, app) = (w.repo("acme/db"), w.repo("acme/app"));
    for repo in ["acme/db", "acme/app"] {
        w.push(repo, "1.0.0", &ImageSpec::server("1.0.0"));
        w.push(repo, "1.1.0", &ImageSpec::server("1.1.0"));
    }
    let policy = flags("--label keel.sh/policy=minor");
    w.run("db", &policy, &format!("{db}:1.0.0"));
    // `app` depends on `db` and comes first in name order.
    let depends = format!("{}=db", labels::DEPENDS_ON);
    w.run(
        "app",
        &flags(&format!("--label keel.sh/policy=minor --label {depends}")),
        &format!("{app}:1.0.0"),
    );
    // `sidecar` shares db's network namespace and is not tracked.
    w.run(
        "sidecar",
        &flags(&format!(
            "--network container:db --label {}=false",
            labels::ENABLE
        )),
        &format!("{db}:1.0.0"),
    );
    let sidecar_before = w.inspect("sidecar");
    // `client` depends on `db` by label and is not tracked: it is restarted after db.
    w.run(
        "client",
        &flags(&format!(
            "--label {depends} --label {}=false",
            labels::ENABLE
        )),
        &format!("{db}:1.0.0"),
    );
    let client_before = w.inspect("client");

    let report = w.pass(&w.target().await).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    let mut updated: Vec<&str> = report.applied.iter().map(|p| p.id.as_str()).collect();
    updated.sort();
    assert_eq!(updated, ["container/app", "container/db"]);
    let started = |name: &str| {
        w.inspect(name)["State"]["StartedAt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(started("db") < started("app"), "db runs before app starts");
    // The sidecar was recreated into the new db's network namespace, on its own image.
    let sidecar = w.engine.wait_running("sidecar", WAIT);
    assert_ne!(sidecar["Id"], sidecar_before["Id"]);
    let db_id = w.inspect("db")["Id"].as_str().unwrap().to_owned();
    assert_eq!(
        sidecar["HostConfig"]["NetworkMode"],
        format!("container:{db_id}")
    );
    assert_eq!(sidecar["Config"]["Image"], format!("{db}:1.0.0"));
    let client = w.inspect("client");
    assert_eq!(
        client["Id"], client_before["Id"],
        "restarted, not recreated"
    );
    assert!(
        client["State"]["StartedAt"].as_str() > client_before["State"]["StartedAt"].as_str(),
        "client restarted"
    );
    assert!(started("client") > started("db"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_and_unknown_plans_are_refused_without_a_change() {
    let (w, repo) = World::with_web_releases().await;
    w.run_web();
    let before = w.inspect("web");
    let target = w.target().await;
    let plan = |id: &str, current: &str| UpdatePlan {
        target: "test-engine".into(),
        id: id.into(),
        current: ImageRef::parse(&format!("{repo}:{current}")).unwrap(),
        new: ImageRef::parse(&format!("{repo}:1.1.0")).unwrap(),
    };
    let stale = target
        .apply(&plan("container/web", "0.9.0"))
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::Conflict { .. }), "{stale}");
    let unknown = target
        .apply(&plan("container/nope", "1.0.0"))
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::NotFound { .. }), "{unknown}");
    assert_eq!(w.inspect("web")["Id"], before["Id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_error_mid_update_leaves_the_container_running() {
    let (w, _) = World::with_web_releases().await;
    // The engine pulls through a proxy that fails the layers of the new image.
    let proxy = FaultProxy::start(w.registry.addr(), Vec::new()).await;
    let proxied = format!("{}/acme/web", proxy.addr());
    w.run(
        "web",
        &flags("--label keel.sh/policy=minor"),
        &format!("{proxied}:1.0.0"),
    );
    let before = w.inspect("web");
    proxy.set_faults(vec![
        FaultRule::new("/blobs/", Fault::status(500)).method("GET"),
    ]);
    let plan = |new: &str| UpdatePlan {
        target: "test-engine".into(),
        id: "container/web".into(),
        current: ImageRef::parse(&format!("{proxied}:1.0.0")).unwrap(),
        new: ImageRef::parse(&format!("{proxied}:{new}")).unwrap(),
    };
    let target = w.target().await;
    let error = target.apply(&plan("1.1.0")).await.unwrap_err().to_string();
    assert!(error.contains("pull"), "{error}");
    assert!(proxy.faults_applied() > 0, "the layers were asked for");
    // A version the registry does not have fails the same way.
    let error = target.apply(&plan("9.9.9")).await.unwrap_err().to_string();
    assert!(error.contains("pull"), "{error}");
    let after = w.inspect("web");
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(names(&w), ["web"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreation_cut_short_is_put_back_by_the_next_discovery() {
    let w = World::start().await;
    let repo = w.repo("acme/web");
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    let id = w.run(
        "web",
        &flags("--label keel.sh/policy=minor"),
        &format!("{repo}:1.0.0"),
    );
    // What an updater killed between renaming the old container aside and creating the new
    // one leaves behind.
    w.engine.run(["stop", "web"]);
    let aside = format!("web-keel-old-{}", &id[..12]);
    w.engine.run(["rename", "web", &aside]);

    let tracked = w.target().await.discover().await.unwrap();
    assert_eq!(tracked.len(), 1);
    assert_eq!(names(&w), ["web"]);
    let web = w.engine.wait_running("web", WAIT);
    assert_eq!(web["Id"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_engine_is_an_error_not_a_panic() {
    let w = World::start().await;
    let target = w.target().await;
    w.engine.kill_engine();
    let error = target.discover().await.unwrap_err();
    assert!(error.to_string().contains("list containers"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_keel_label_skips_only_that_container() {
    let w = World::start().await;
    let image = format!("{}:1.0.0", w.repo("acme/web"));
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    w.run("good", &flags("--label keel.sh/policy=minor"), &image);
    w.run(
        "bad",
        &flags("--label keel.sh/policy=minor --label keel.sh/approvals=two"),
        &image,
    );
    w.run("off", &flags("--label keel.sh/policy=never"), &image);
    let tracked = w.target().await.discover().await.unwrap();
    let ids: Vec<&str> = tracked.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["container/good"]);
}

/// Answers with `auth` for `host` only, and records every host it is asked about.
#[derive(Debug)]
struct OneRegistry {
    host: String,
    auth: (String, String),
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl PullCredentials for OneRegistry {
    async fn credentials(&self, host: &str) -> keel_core::Result<Option<PullAuth>> {
        self.asked.lock().unwrap().push(host.to_owned());
        Ok((host == self.host).then(|| PullAuth::Basic {
            username: self.auth.0.clone(),
            password: Secret::new(self.auth.1.clone()),
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_send_the_credentials_of_the_images_registry_only() {
    let engine = tokio::task::spawn_blocking(DockerEngine::start)
        .await
        .unwrap();
    let registry = RegistryServer::start(ServerOptions::htpasswd("ci", "s3cret")).await;
    let w = World { engine, registry };
    let addr = w.registry.addr().to_owned();
    w.engine
        .run(["login", "--username", "ci", "--password", "s3cret", &addr]);
    let repo = w.repo("acme/web");
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    w.push("acme/web", "1.1.0", &ImageSpec::server("1.1.0"));
    w.run_web();
    w.engine.run(["logout", &addr]);
    let plan = UpdatePlan {
        target: "test-engine".into(),
        id: "container/web".into(),
        current: ImageRef::parse(&format!("{repo}:1.0.0")).unwrap(),
        new: ImageRef::parse(&format!("{repo}:1.1.0")).unwrap(),
    };

    // Wrong credentials: the pull is refused and nothing changes.
    let wrong = Arc::new(OneRegistry {
        host: addr.clone(),
        auth: ("ci".into(), "wrong".into()),
        asked: Mutex::new(Vec::new()),
    });
    let target = w.builder().await.credentials(wrong).build().unwrap();
    let error = target.apply(&plan).await.unwrap_err().to_string();
    assert!(
        !error.contains("wrong"),
        "no credential in messages: {error}"
    );
    assert_eq!(w.version("web"), "1.0.0");

    let right = Arc::new(OneRegistry {
        host: addr.clone(),
        auth: ("ci".into(), "s3cret".into()),
        asked: Mutex::new(Vec::new()),
    });
    let target = w
        .builder()
        .await
        .credentials(right.clone())
        .build()
        .unwrap();
    assert_eq!(target.apply(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(w.version("web"), "1.1.0");
    assert_eq!(*right.asked.lock().unwrap(), [addr]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_commands_run_around_the_update_and_a_failing_one_cancels_it() {
    let (w, repo) = World::with_web_releases().await;
    w.engine.run(["volume", "create", "hooks"]);
    // The commands hold spaces: they are added as whole arguments.
    let mut args = flags("--label keel.sh/policy=minor --volume hooks:/hooks --label");
    let pre = format!(
        "{}=test ! -e /hooks/block && cat /version >> /hooks/log",
        labels::PRE_UPDATE
    );
    let post = format!("{}=cat /version >> /hooks/log", labels::POST_UPDATE);
    args.extend([pre.as_str(), "--label", post.as_str()]);
    w.run("web", &args, &format!("{repo}:1.0.0"));

    // A pre-update command that fails cancels the update before anything changes.
    w.engine.run(["exec", "web", "touch", "/hooks/block"]);
    let before = w.inspect("web");
    let report = w.pass(&w.target().await).await;
    assert!(
        failures(&report)[0].contains("pre-update"),
        "{:?}",
        failures(&report)
    );
    assert_eq!(w.inspect("web")["Id"], before["Id"]);

    w.engine.run(["exec", "web", "rm", "/hooks/block"]);
    let report = w.pass(&w.target().await).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert_eq!(w.version("web"), "1.1.0");
    // The pre-update command ran in the old container, the post-update one in the new.
    assert_eq!(
        w.engine.run(["exec", "web", "cat", "/hooks/log"]),
        "1.0.0\n1.1.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_the_old_image_once_nothing_uses_it() {
    let (w, repo) = World::with_web_releases().await;
    w.push("acme/other", "1.0.0", &ImageSpec::server("1.0.0"));
    let other = w.repo("acme/other");
    w.run_web();
    w.run(
        "keep",
        &flags("--label keel.sh/policy=minor"),
        &format!("{other}:1.0.0"),
    );
    w.run(
        "pinned",
        &flags("--label keel.sh/policy=never"),
        &format!("{other}:1.0.0"),
    );
    w.push("acme/other", "1.1.0", &ImageSpec::server("1.1.0"));
    let target = w.builder().await.cleanup(true).build().unwrap();
    let report = w.pass(&target).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert_eq!(report.applied.len(), 2);
    assert!(
        !w.engine.has_image(&format!("{repo}:1.0.0")),
        "unused: removed"
    );
    assert!(
        w.engine.has_image(&format!("{other}:1.0.0")),
        "still used by `pinned`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_approved_is_exactly_what_rolls_out() {
    let w = World::start().await;
    let repo = w.repo("acme/web");
    w.push("acme/web", "1.0.0", &ImageSpec::server("1.0.0"));
    let approved = w.push("acme/web", "1.1.0", &ImageSpec::server("1.1.0-approved"));
    w.run(
        "web",
        &flags("--label keel.sh/policy=minor --label keel.sh/approvals=1"),
        &format!("{repo}:1.0.0"),
    );
    let target = w.target().await;
    let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
    let pipeline = w.pipeline(&target).with_approvals(approvals.clone());
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty());
    assert_eq!(report.awaiting_approval.len(), 1);
    let requests = approvals.list(&ApprovalFilter::default()).await.unwrap();
    let request = &requests[0];
    assert_eq!(
        request.digest.as_ref().map(|d| d.as_str()),
        Some(approved.as_str())
    );

    // The tag moves after the vote was asked for: the approval does not carry over to
    // content nobody saw.
    let moved = w.push("acme/web", "1.1.0", &ImageSpec::server("1.1.0-moved"));
    approvals
        .vote(&request.id, "ops", VoteKind::Approve, None)
        .await
        .unwrap();
    let report = pipeline.run_once().await;
    assert!(report.applied.is_empty(), "{:?}", applied(&report));
    assert_eq!(w.version("web"), "1.0.0");
    let pending = approvals
        .list(&ApprovalFilter::state(ApprovalState::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].digest.as_ref().map(|d| d.as_str()),
        Some(moved.as_str())
    );

    // Approved in turn, exactly that digest is pulled and runs.
    approvals
        .vote(&pending[0].id, "ops", VoteKind::Approve, None)
        .await
        .unwrap();
    let report = pipeline.run_once().await;
    assert_applied(
        &report,
        &[format!(
            "test-engine container/web: {repo}:1.0.0 -> {repo}:1.1.0@{moved}"
        )],
    );
    assert_eq!(w.version("web"), "1.1.0-moved");
    let image = w.inspect("web")["Image"].as_str().unwrap().to_owned();
    let digests = w.engine.inspect_image(&image)["RepoDigests"].clone();
    assert!(
        digests
            .as_array()
            .unwrap()
            .contains(&json!(format!("{repo}@{moved}"))),
        "{digests}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stop_signal_label_stops_the_old_container() {
    let (w, repo) = World::with_web_releases().await;
    w.engine.run(["volume", "create", "signals"]);
    // Stops only on SIGUSR1 (and records it); SIGTERM is ignored.
    let script = "trap '' TERM; trap 'echo usr1 > /signals/got; exit 0' USR1; \
                  while true; do sleep 1 & wait $!; done";
    let signal = format!("{}=SIGUSR1", labels::STOP_SIGNAL);
    let args = [
        "--label",
        "keel.sh/policy=minor",
        "--label",
        signal.as_str(),
        "--volume",
        "signals:/signals",
        "--entrypoint",
        "/bin/sh",
    ];
    let mut all = vec!["--name", "web"];
    all.extend(args);
    let image = format!("{repo}:1.0.0");
    all.extend([image.as_str(), "-c", script]);
    w.engine.run_container(&all);
    w.engine.wait_running("web", WAIT);

    let target = w
        .builder()
        .await
        .stop_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let report = w.pass(&target).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped by the signal, not killed"
    );
    assert_eq!(w.engine.run(["exec", "web", "cat", "/signals/got"]), "usr1");
}
