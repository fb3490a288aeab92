//! `keel-docker` in Watchtower's place, against a real Docker engine and registry (each test
//! starts its own): `--run-once` updates a container by its `keel.sh/policy` label under the
//! same name, `--monitor-only` changes nothing, `--label-enable` leaves unlabelled containers
//! alone, `/v1/update` needs its bearer token and honours `?image=`, and the approvals API
//! shares its listener.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_testsupport::docker::{DockerEngine, ImageSpec};
use keel_testsupport::output_text;
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use serde_json::Value;

/// A Docker host with a registry holding `app` at `1.0`, `1.1.0` and `2.0.0`.
struct Host {
    registry: RegistryServer,
    engine: DockerEngine,
}

impl Host {
    async fn start() -> Host {
        Host::with_images(ImageSpec::server).await
    }

    /// The same, with the images `spec` gives for each tag.
    async fn with_images(spec: impl Fn(&str) -> ImageSpec) -> Host {
        let registry = RegistryServer::start(ServerOptions::plain()).await;
        let engine = DockerEngine::start();
        for tag in ["1.0", "1.1.0", "2.0.0"] {
            engine.build_and_push(registry.addr(), "app", tag, &spec(tag));
        }
        Host { registry, engine }
    }

    /// `REGISTRY/app:TAG`.
    fn image(&self, tag: &str) -> String {
        format!("{}/app:{tag}", self.registry.addr())
    }

    /// Runs container `name` of `app:1.0` with `labels`; returns its id.
    fn run(&self, name: &str, labels: &[&str]) -> String {
        let mut args = vec!["--name", name];
        for label in labels {
            args.extend(["--label", label]);
        }
        let image = self.image("1.0");
        args.push(&image);
        let id = self.engine.run_container(&args);
        self.engine.wait_running(name, Duration::from_secs(20));
        id
    }

    /// The id, image and `/version` of container `name`.
    fn state(&self, name: &str) -> (String, String, String) {
        let container = self.engine.inspect_container(name);
        let id = container["Id"].as_str().expect("an id").to_owned();
        let image = container["Config"]["Image"]
            .as_str()
            .expect("an image")
            .to_owned();
        let version = self.engine.run(["exec", name, "cat", "/version"]);
        (id, image, version)
    }

    /// `keel-docker ARGS` for this engine, away from the machine's Docker and Watchtower
    /// settings, quick to accept a new container.
    fn keel_docker(&self, args: &[&str]) -> Command {
        let mut command = keel_docker(args);
        command
            .env("DOCKER_HOST", self.engine.host())
            .env("DOCKER_CONFIG", self.engine.config_dir())
            .args(["--startup-grace", "1s"]);
        command
    }

    /// Runs `keel-docker ARGS` to its end.
    fn run_keel_docker(&self, args: &[&str]) -> Output {
        let output = self.keel_docker(args).output().expect("keel-docker runs");
        eprintln!("{}", output_text(&output));
        output
    }
}

/// `keel-docker ARGS` with none of the machine's Watchtower or Docker variables.
fn keel_docker(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel-docker"));
    for (name, _) in std::env::vars() {
        if name.starts_with("WATCHTOWER_") || name.starts_with("DOCKER_") || name == "KEEL_LISTEN" {
            command.env_remove(name);
        }
    }
    command
        .env("DOCKER_CONFIG", keel_testsupport::no_docker_config())
        .env("RUST_LOG", "info")
        .args(args)
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn run_once_updates_by_policy_under_the_same_name() {
    let host = Host::start().await;
    let old = host.run("app", &["keel.sh/policy=minor"]);

    let started = Instant::now();
    let output = host.run_keel_docker(&["--run-once"]);
    eprintln!("keel-docker --run-once took {:?}", started.elapsed());
    assert!(output.status.success(), "{}", output_text(&output));

    let (id, image, version) = host.state("app");
    assert_ne!(id, old, "the container was recreated");
    assert_eq!(image, host.image("1.1.0"), "minor: 1.1.0, not 2.0.0");
    assert_eq!(version, "1.1.0");
    assert_eq!(
        host.engine.inspect_container("app")["State"]["Running"],
        true
    );
    // The old container is gone, not left aside.
    let names = host.engine.run(["ps", "--all", "--format", "{{.Names}}"]);
    assert_eq!(names, "app", "{names}");

    // Nothing more to do: a second pass changes nothing.
    let output = host.run_keel_docker(&["--run-once"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(host.state("app").0, id);
}

#[tokio::test]
async fn run_once_fails_when_an_update_is_rolled_back() {
    // 1.1.0 exits at once.
    let host = Host::with_images(|tag| match tag {
        "1.1.0" => ImageSpec::exits_at_once(tag),
        _ => ImageSpec::server(tag),
    })
    .await;
    let old = host.run("app", &["keel.sh/policy=minor"]);
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("avoided.json");
    let state_file = state_file.to_str().unwrap();

    let output = host.run_keel_docker(&["--run-once", "--state-file", state_file]);
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    assert_eq!(
        host.state("app"),
        (old.clone(), host.image("1.0"), "1.0".to_owned())
    );

    // The version rolled back is avoided by the next run: nothing left to do under minor.
    let output = host.run_keel_docker(&["--run-once", "--state-file", state_file]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(host.state("app").0, old);
}

#[tokio::test]
async fn monitor_only_changes_nothing() {
    let host = Host::start().await;
    let old = host.run("app", &["keel.sh/policy=minor"]);

    let output = host.run_keel_docker(&["--monitor-only", "--run-once"]);
    assert!(output.status.success(), "{}", output_text(&output));
    // The update is reported...
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("container app") && stdout.contains("app:1.1.0"),
        "{stdout}"
    );
    // ... and not applied.
    assert_eq!(
        host.state("app"),
        (old, host.image("1.0"), "1.0".to_owned())
    );
}

#[tokio::test]
async fn label_enable_leaves_unlabelled_containers_alone() {
    let host = Host::start().await;
    let plain = host.run("plain", &["keel.sh/policy=minor"]);
    let enabled = host.run(
        "enabled",
        &[
            "keel.sh/policy=minor",
            "com.centurylinklabs.watchtower.enable=true",
        ],
    );

    let output = host.run_keel_docker(&["--label-enable", "--run-once"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(
        host.state("plain"),
        (plain, host.image("1.0"), "1.0".to_owned())
    );
    let (id, image, version) = host.state("enabled");
    assert_ne!(id, enabled);
    assert_eq!((image, version), (host.image("1.1.0"), "1.1.0".to_owned()));
}

/// Stops the child on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn polls_at_the_start_then_on_each_containers_schedule() {
    let host = Host::start().await;
    let old = host.run(
        "app",
        &[
            "keel.sh/policy=minor",
            "keel.sh/trigger=poll",
            "keel.sh/pollSchedule=@every 2s",
        ],
    );
    // Left alone by the default schedule (a day), polled every 2 s by its own.
    let _child = Running(
        host.keel_docker(&["--interval", "86400"])
            .spawn()
            .expect("keel-docker starts"),
    );
    // The version container `app` runs, or `None` while it is being recreated.
    let version = || {
        let output = host
            .engine
            .cli()
            .args(["exec", "app", "cat", "/version"])
            .output()
            .expect("docker exec runs");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let runs = |expected: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let running = version();
            if running.as_deref() == Some(expected) {
                let (id, image, _) = host.state("app");
                return (id, image);
            }
            assert!(
                Instant::now() < deadline,
                "app still runs {running:?}, not {expected}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let (first, image) = runs("1.1.0");
    assert_ne!(first, old);
    assert_eq!(image, host.image("1.1.0"));
    host.engine.build_and_push(
        host.registry.addr(),
        "app",
        "1.2.0",
        &ImageSpec::server("1.2.0"),
    );
    let (second, image) = runs("1.2.0");
    assert_ne!(second, first);
    assert_eq!(image, host.image("1.2.0"));
}

#[tokio::test]
async fn the_http_api_needs_its_token() {
    let host = Host::start().await;
    let old = host.run("app", &["keel.sh/policy=minor"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Running(
        host.keel_docker(&[
            "--http-api-update",
            "--http-api-token",
            "T0ken",
            "--listen",
            &listen,
        ])
        .env("KEEL_API_AUTH", "bearer:ops:api-t0ken")
        .spawn()
        .expect("keel-docker starts"),
    );
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            child.0.try_wait().expect("keel-docker's status").is_none(),
            "keel-docker stopped"
        );
        assert!(Instant::now() < deadline, "keel-docker does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let update = format!("{base}/v1/update");

    // The approvals API shares the listener, behind its own credentials; the update token is
    // not an API credential, nor the other way round. Each row: method, URL, bearer token and
    // the status it gets.
    let approvals = format!("{base}/api/v1/approvals");
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    // A request of `method` to `url`, with `token` as its bearer credential if one is given.
    let send = async |method: &reqwest::Method, url: &str, token: Option<&str>| {
        let mut request = client.request(method.clone(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    };
    let credentials = [
        (&get, &approvals, Some("api-t0ken"), 200),
        (&get, &approvals, None, 401),
        (&get, &approvals, Some("T0ken"), 401),
        (&post, &update, Some("api-t0ken"), 401),
        (&post, &update, None, 401),
        (&post, &update, Some("T0ken-not"), 401),
    ];
    for (method, url, token, status) in credentials {
        let answer = send(method, url, token).await;
        assert_eq!(answer.status(), status, "{method} {url} with {token:?}");
    }
    // Without periodic polls, nothing ran on its own either.
    assert_eq!(host.state("app").0, old);

    // Another repository only: nothing to do.
    let others = format!("{update}?image=busybox,ghcr.io/acme/web");
    let other = send(&get, &others, Some("T0ken")).await;
    assert_eq!(other.status(), 200);
    let report: Value = other.json().await.unwrap();
    assert_eq!(report["scanned"], 0, "{report}");
    assert_eq!(host.state("app").0, old);

    let started = Instant::now();
    let app = format!("{update}?image={}/app", host.registry.addr());
    let ok = send(&post, &app, Some("T0ken")).await;
    eprintln!("/v1/update took {:?}", started.elapsed());
    assert_eq!(ok.status(), 200);
    let report: Value = ok.json().await.unwrap();
    assert_eq!(report["scanned"], 1, "{report}");
    assert_eq!(report["updated"][0]["container"], "app", "{report}");
    assert_eq!(
        report["updated"][0]["to"],
        host.image("1.1.0").as_str(),
        "{report}"
    );
    let (id, image, version) = host.state("app");
    assert_ne!(id, old);
    assert_eq!((image, version), (host.image("1.1.0"), "1.1.0".to_owned()));

    // The dashboard lists the container on the API's credentials, with its last check.
    let dashboard = format!("{base}/ui/");
    let page = send(&get, &dashboard, Some("api-t0ken")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<td>container</td><td></td><td>app</td>"),
        "{html}"
    );
    assert!(html.contains(&host.image("1.1.0")), "{html}");
    assert!(html.contains("<td>minor</td>"), "{html}");
    assert!(
        html.contains("up to date</span> <strong>1</strong>"),
        "{html}"
    );
    let anonymous = send(&get, &dashboard, None).await;
    assert_eq!(
        anonymous.url().path(),
        "/ui/login",
        "no session: the login page"
    );
    drop(child);
}

#[test]
fn bad_settings_stop_the_start_naming_them() {
    for (args, env, named) in [
        (&["--http-api-update"][..], None, "--http-api-token"),
        (
            &[],
            Some(("WATCHTOWER_LABEL_ENABLE", "maybe")),
            "--label-enable",
        ),
        (&[], Some(("WATCHTOWER_POLL_INTERVAL", "5m")), "--interval"),
        (&[], Some(("WATCHTOWER_TIMEOUT", "ten")), "--stop-timeout"),
        (&["--schedule", "0 0 4 * *  * *"], None, "--schedule"),
        (&["--host", "ftp://engine"], None, "--host"),
    ] {
        let mut command = keel_docker(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().expect("keel-docker runs");
        let text = output_text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {text}");
        assert!(text.contains(named), "{args:?} {env:?}: {text}");
    }
    // Watchtower's boolean variables take true and false: the start goes on to the engine.
    let output = keel_docker(&["--host", "ftp://engine"])
        .env("WATCHTOWER_LABEL_ENABLE", "false")
        .env("WATCHTOWER_CLEANUP", "true")
        .output()
        .expect("keel-docker runs");
    let text = output_text(&output);
    assert!(
        text.contains("invalid --host") && !text.contains("--label-enable"),
        "{text}"
    );
}
