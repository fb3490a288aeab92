//! Self-tests of the Docker support: a throw-away engine from `scripts/docker`, test images built
//! from the static busybox, pushed to a local registry and pulled back from it, the presets,
//! the engine's networking and stopping the engine mid-test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use keel_testsupport::docker::{DockerEngine, ImageSpec};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(20);

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().expect("a string"))
        .collect()
}

#[tokio::test]
async fn images_are_pushed_to_the_registry_and_pulled_back_from_it() {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    let engine = DockerEngine::start();
    let addr = registry.addr();

    let spec = ImageSpec::server("1.0.0")
        .env("GREETING", r#"say "hi" to $HOME \ now"#)
        .env("MODE", "test")
        .label("org.example.role", "web server")
        .healthcheck_cmd("test -f /version")
        .stop_signal("SIGTERM")
        .workdir("/srv/app")
        .user("nobody")
        .expose("8080/tcp")
        .volume("/data");
    let started = Instant::now();
    let first = engine.build_and_push(addr, "team/app", "1.0.0", &spec);
    let second = engine.build_and_push(addr, "team/app", "2.0.0", &spec.clone().version("2.0.0"));
    let third = engine.build_and_push(addr, "team/app", "latest", &ImageSpec::server("2.1.0"));
    eprintln!(
        "three images committed and pushed in {:?}",
        started.elapsed()
    );
    // With a RUN the image is built from its Dockerfile, to the same configuration.
    let started = Instant::now();
    let with_run = spec
        .clone()
        .version("1.0.1")
        .instruction("RUN echo built > /built");
    let built = engine.build_and_push(addr, "team/app", "1.0.1", &with_run);
    eprintln!("one image built and pushed in {:?}", started.elapsed());
    for digest in [&first, &second, &third, &built] {
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
    }
    assert!(
        first != second && second != third,
        "{first} {second} {third}"
    );
    for tag in ["1.0.0", "2.0.0", "latest", "1.0.1"] {
        let reference = format!("{addr}/team/app:{tag}");
        assert!(!engine.has_image(&reference), "{reference} is still local");
    }

    let dockerfile_built = format!("{addr}/team/app:1.0.1");
    engine.run(["pull", "--quiet", &dockerfile_built]);
    let dockerfile_config = engine.inspect_image(&dockerfile_built)["Config"].clone();
    let one = format!("{addr}/team/app:1.0.0");
    engine.run_container(&["--name", "web", &one]);
    engine.wait_running("web", TIMEOUT);
    assert_eq!(engine.run(["exec", "web", "cat", "/version"]), "1.0.0");
    assert_eq!(engine.run(["exec", "web", "pwd"]), "/srv/app");
    assert_eq!(engine.run(["exec", "web", "id", "-un"]), "nobody");

    let image = engine.inspect_image(&one);
    assert_eq!(
        strings(&image["RepoDigests"]),
        [format!("{addr}/team/app@{first}")]
    );
    let config = &image["Config"];
    assert!(
        strings(&config["Env"]).contains(&r#"GREETING=say "hi" to $HOME \ now"#),
        "{config:#}"
    );
    assert_eq!(config["Labels"]["org.example.role"], "web server");
    assert_eq!(config["StopSignal"], "SIGTERM");
    assert_eq!(config["User"], "nobody");
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "{config:#}"
    );
    assert!(config["Volumes"].get("/data").is_some(), "{config:#}");
    assert_eq!(
        strings(&config["Entrypoint"]),
        ["/bin/sh", "-c", keel_testsupport::docker::SERVER_SCRIPT]
    );
    for key in [
        "Entrypoint",
        "Cmd",
        "Env",
        "Labels",
        "Healthcheck",
        "StopSignal",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
    ] {
        assert_eq!(config[key], dockerfile_config[key], "{key}");
    }
    assert_eq!(
        engine.run([
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            &dockerfile_built,
            "/built",
            "/version"
        ]),
        "built\n1.0.1"
    );
    engine.wait_health("web", "healthy", TIMEOUT);
    let container = engine.inspect_container("web");
    assert_eq!(container["Config"]["Image"], one.as_str());

    // The server stops at once on SIGTERM, well within docker stop's grace period.
    let stopping = Instant::now();
    engine.run(["stop", "--time", "10", "web"]);
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(engine.wait_exited("web", TIMEOUT), 0);

    let latest = format!("{addr}/team/app:latest");
    engine.run_container(&["--name", "web2", &latest]);
    engine.wait_running("web2", TIMEOUT);
    assert_eq!(engine.run(["exec", "web2", "cat", "/version"]), "2.1.0");
    engine.run(["rm", "--force", "web2"]);

    // A tag moved to another image is pulled anew.
    let moved = engine.build_and_push(addr, "team/app", "latest", &ImageSpec::server("2.2.0"));
    engine.run(["pull", "--quiet", &latest]);
    assert_eq!(
        strings(&engine.inspect_image(&latest)["RepoDigests"]),
        [format!("{addr}/team/app@{moved}")]
    );
}

#[tokio::test]
async fn presets_run_become_unhealthy_and_exit() {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    let engine = DockerEngine::start();
    let addr = registry.addr();
    engine.build_and_push(addr, "presets", "healthy", &ImageSpec::healthy("1"));
    engine.build_and_push(addr, "presets", "unhealthy", &ImageSpec::unhealthy("1"));
    engine.build_and_push(addr, "presets", "exits", &ImageSpec::exits_at_once("1"));

    engine.run_container(&["--name", "healthy", &format!("{addr}/presets:healthy")]);
    engine.run_container(&["--name", "unhealthy", &format!("{addr}/presets:unhealthy")]);
    engine.run_container(&["--name", "exits", &format!("{addr}/presets:exits")]);

    let started = Instant::now();
    let unhealthy = engine.wait_health("unhealthy", "unhealthy", TIMEOUT);
    eprintln!("unhealthy after {:?}", started.elapsed());
    assert_eq!(unhealthy["State"]["Running"], true);
    engine.wait_health("healthy", "healthy", TIMEOUT);
    assert_eq!(engine.wait_exited("exits", TIMEOUT), 1);
}

/// What the module docs say of the engine's networks: no default bridge, but user-defined
/// bridges with published ports and name resolution between containers.
#[test]
fn containers_get_user_defined_networks_and_published_ports() {
    let engine = DockerEngine::start();
    let base = engine.base_image().to_owned();

    // Without --network a container has only its loopback interface.
    let interfaces = engine.run(["run", "--rm", &base, "ls", "/sys/class/net"]);
    assert_eq!(interfaces, "lo");

    let network = engine.run(["network", "create", "keel-test"]);
    let bridge = format!("/sys/class/net/br-{}", &network[..12]);
    assert!(std::path::Path::new(&bridge).exists(), "{bridge}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:8080");
    engine.run_container(&[
        "--name",
        "httpd",
        "--network",
        "keel-test",
        "--publish",
        &publish,
        &base,
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    engine.wait_running("httpd", TIMEOUT);

    let deadline = Instant::now() + TIMEOUT;
    let answer = loop {
        match get(port, "/group") {
            Ok(answer) if answer.contains("nogroup") => break answer,
            other => assert!(Instant::now() < deadline, "no answer on {port}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Another container on the network reaches it by name (busybox wget crashes; nc works).
    let fetched = engine.run([
        "run",
        "--rm",
        "--network",
        "keel-test",
        &base,
        "sh",
        "-c",
        r"printf 'GET /passwd HTTP/1.0\r\n\r\n' | nc httpd 8080",
    ]);
    assert!(fetched.contains("nobody:x:65534"), "{fetched}");

    // Stopping the engine removes the network's bridge, which dockerd would leave behind.
    drop(engine);
    assert!(!std::path::Path::new(&bridge).exists(), "{bridge}");
}

/// `GET path` on 127.0.0.1:port, HTTP/1.0: the whole answer.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn a_killed_engine_stops_answering_and_drops_quietly() {
    let engine = DockerEngine::start();
    let base = engine.base_image().to_owned();
    let script = keel_testsupport::docker::SERVER_SCRIPT;
    engine.run_container(&[
        "--name",
        "sleeper",
        "--entrypoint",
        "/bin/sh",
        &base,
        "-c",
        script,
    ]);
    engine.wait_running("sleeper", TIMEOUT);
    assert!(engine.is_running());

    let started = Instant::now();
    engine.kill_engine();
    eprintln!("engine stopped in {:?}", started.elapsed());
    assert!(!engine.is_running());
    assert!(!engine.dir().exists(), "{}", engine.dir().display());
    let version = engine.cli().args(["version"]).output().unwrap();
    assert!(!version.status.success(), "{version:?}");
    engine.kill_engine();
}
