//! A real Docker engine for the tests of the Docker-host backend (feature `docker`), and
//! runnable test images in a local registry.
//!
//! - [`DockerEngine`]: a throw-away `dockerd` started by `scripts/docker` (no default bridge,
//!   no iptables rules), stopped on drop, and a `docker` CLI pointed at it with a client
//!   configuration of its own (so the machine's `~/.docker` is never read).
//! - [`ImageSpec`]: a test image on top of a static busybox ([`DockerEngine::base_image`]):
//!   its configuration as Dockerfile instructions, and `/version` telling which version runs;
//!   presets for a server that stops at once on SIGTERM, a process that exits at once and a
//!   server that becomes unhealthy.
//! - [`DockerEngine::build_and_push`]: builds such an image, pushes it to a registry on
//!   127.0.0.1 (which the engine treats as insecure) and removes it locally, so that code
//!   under test has to pull it.
//!
//! The engine has no default bridge: containers started without `--network` have only a
//! loopback interface. User-defined bridge networks (`docker network create`) work, and so
//! does publishing ports of containers on them (`-p 127.0.0.1:PORT:PORT`, served by
//! `docker-proxy`); `--network host` works too. The fixture removes the networks before it
//! stops the engine, since `dockerd` leaves their bridge interfaces behind when it stops.
//!
//! Everything goes through `std::process` and the `docker` CLI: this is fixture code, and the
//! code under test talks to the engine by itself.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::ScriptServer;
use crate::script::run_script;

/// The shell script of [`ImageSpec::server`]: sleeps until SIGTERM (or SIGINT), then exits 0
/// at once (`wait` is interrupted by the signal, unlike a foreground `sleep`).
pub const SERVER_SCRIPT: &str = "trap 'exit 0' TERM INT; while true; do sleep 1 & wait $!; done";

/// The name and `docker save` archive of the base image, made once per process.
static BASE_IMAGE: OnceLock<(String, Vec<u8>)> = OnceLock::new();

/// What the legacy builder puts into `Env` of every image that sets no `PATH` (and so the
/// committed images too).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A throw-away Docker engine started by `scripts/docker start`; stopped (with its containers,
/// images and networks) on drop or by [`DockerEngine::kill_engine`].
#[derive(Debug)]
pub struct DockerEngine {
    server: Mutex<Option<ScriptServer>>,
    host: String,
    dir: std::path::PathBuf,
    config: tempfile::TempDir,
    base: OnceLock<String>,
}

impl DockerEngine {
    /// Starts an engine; panics with the script's stderr if it cannot (run
    /// `scripts/docker install` first; `dockerd` runs as root, through sudo if needed).
    pub fn start() -> DockerEngine {
        let server = ScriptServer::start("docker", std::iter::empty::<&str>());
        let host = server.field("host").to_owned();
        let dir = server.dir().to_path_buf();
        let config = tempfile::Builder::new()
            .prefix("keel-docker-config.")
            .tempdir()
            .expect("a temporary DOCKER_CONFIG");
        DockerEngine {
            server: Mutex::new(Some(server)),
            host,
            dir,
            config,
            base: OnceLock::new(),
        }
    }

    /// `unix://DIR/docker.sock`: the `DOCKER_HOST` of the engine.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The engine's directory (data root, socket, `dockerd.log`), removed when it stops.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The empty client configuration directory the CLI of [`DockerEngine::cli`] uses as
    /// `DOCKER_CONFIG`.
    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    /// `DOCKER_HOST` and `DOCKER_CONFIG` of this engine, for code under test that reads them
    /// (e.g. through [`crate::env_lookup`]).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DOCKER_HOST".to_owned(), self.host.clone()),
            (
                "DOCKER_CONFIG".to_owned(),
                self.config.path().display().to_string(),
            ),
        ]
    }

    /// The engine's log so far (for failure messages); empty once the engine has stopped.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// A `docker` command talking to this engine only: `DOCKER_HOST` set, `DOCKER_CONFIG` the
    /// empty [`DockerEngine::config_dir`], and no `DOCKER_CONTEXT` or TLS settings inherited.
    pub fn cli(&self) -> Command {
        let mut command = Command::new("docker");
        command
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        command
    }

    /// Runs `docker ARGS`; panics with its stderr unless it succeeds. Returns its stdout,
    /// trimmed.
    pub fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.cli();
        command.args(args);
        let output = checked(&mut command);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `docker inspect --type container NAME`: the container's JSON object.
    pub fn inspect_container(&self, name: &str) -> serde_json::Value {
        first(&self.run(["inspect", "--type", "container", name]))
    }

    /// `docker image inspect REFERENCE`: the image's JSON object.
    pub fn inspect_image(&self, reference: &str) -> serde_json::Value {
        first(&self.run(["image", "inspect", reference]))
    }

    /// Whether the engine holds an image for `reference` (tag, digest or id).
    pub fn has_image(&self, reference: &str) -> bool {
        self.cli()
            .args(["image", "inspect", reference])
            .output()
            .expect("running docker image inspect")
            .status
            .success()
    }

    /// The static-busybox base image of the test images (`keel-local/busybox:latest`), made
    /// on first use (once per engine): by `scripts/docker busybox-image` in the first engine
    /// of the process, by `docker load` of what `docker save` made of that one in the others.
    pub fn base_image(&self) -> &str {
        self.base.get_or_init(|| {
            let mut made_here = false;
            let (name, saved) = BASE_IMAGE.get_or_init(|| {
                made_here = true;
                let mut command = crate::script("docker");
                command.arg("busybox-image").arg(&self.dir);
                let output = checked(&mut command);
                let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                let saved = checked(self.cli().args(["save", &name])).stdout;
                (name, saved)
            });
            if !made_here {
                self.load(saved);
            }
            name.clone()
        })
    }

    /// `docker load` of the image archive `archive`.
    fn load(&self, archive: &[u8]) {
        let mut load = self.cli();
        load.args(["load", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = load
            .spawn()
            .unwrap_or_else(|error| panic!("running {load:?}: {error}"));
        let written = child
            .stdin
            .take()
            .expect("a piped stdin")
            .write_all(archive);
        let output = child.wait_with_output().expect("docker load ends");
        assert!(
            output.status.success() && written.is_ok(),
            "{load:?} failed ({}, writing: {written:?}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Makes the image of `spec` ([`DockerEngine::build`]) as `REGISTRY/REPO:TAG`, pushes it,
    /// removes the local image again (so that code under test has to pull it) and returns the
    /// pushed manifest's digest (`sha256:...`).
    ///
    /// `registry` is `127.0.0.1:PORT` (e.g. `RegistryServer::addr` of the `registry` feature),
    /// which the engine reaches over plain HTTP without configuration (127.0.0.0/8 is an
    /// insecure registry range by default).
    pub fn build_and_push(
        &self,
        registry: &str,
        repo: &str,
        tag: &str,
        spec: &ImageSpec,
    ) -> String {
        let reference = format!("{registry}/{repo}:{tag}");
        self.build(&reference, spec);
        let pushed = self.run(["push", &reference]);
        let digest = push_digest(&pushed, tag).unwrap_or_else(|| {
            panic!("no digest in the output of docker push {reference}:\n{pushed}")
        });
        self.run(["rmi", &reference]);
        digest
    }

    /// Makes the image of `spec`, on top of [`DockerEngine::base_image`], as the local image
    /// `reference`; returns its image id.
    ///
    /// Without [`ImageSpec::instructions`] the image is committed from a container created
    /// (not started) from the base, with `/version` copied in and the configuration given as
    /// `docker commit --change` (one layer, a few hundred milliseconds); otherwise
    /// [`ImageSpec::dockerfile`] is built with the legacy builder, without cache (a layer per
    /// instruction, about 0.2 s each).
    pub fn build(&self, reference: &str, spec: &ImageSpec) -> String {
        let context = tempfile::Builder::new()
            .prefix("keel-docker-build.")
            .tempdir()
            .expect("a temporary build context");
        let version = context.path().join("version");
        std::fs::write(&version, format!("{}\n", spec.version)).expect("version file");
        if !spec.instructions.is_empty() {
            let dockerfile = spec.dockerfile(self.base_image());
            std::fs::write(context.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
            let mut command = self.cli();
            command
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "--quiet", "--no-cache", "--tag", reference])
                .arg(context.path());
            let output = checked(&mut command);
            return String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }

        let mut create = vec!["create", "--env", DEFAULT_PATH];
        if let Some(signal) = &spec.stop_signal {
            create.extend(["--stop-signal", signal]);
        }
        create.push(self.base_image());
        let container = self.run(&create);
        // A failure leaves the container behind, in an engine that goes with the test.
        let mut copy = self.cli();
        copy.arg("cp")
            .arg(&version)
            .arg(format!("{container}:/version"));
        checked(&mut copy);
        let mut commit = self.cli();
        commit.arg("commit");
        for change in spec.config_changes() {
            assert!(!change.contains('\n'), "a line break in {change:?}");
            commit.args(["--change", &change]);
        }
        commit.args([container.as_str(), reference]);
        let committed = String::from_utf8_lossy(&checked(&mut commit).stdout)
            .trim()
            .to_owned();
        self.run(["rm", "--force", &container]);
        committed
    }

    /// `docker run --detach ARGS` (options, then the image, then its arguments): pulls the
    /// image if the engine lacks it; returns the container id.
    pub fn run_container(&self, args: &[&str]) -> String {
        self.run(["run", "--detach"].iter().chain(args))
    }

    /// Waits until container `name` runs (panics after `timeout`, with its state); returns its
    /// inspected JSON.
    pub fn wait_running(&self, name: &str, timeout: Duration) -> serde_json::Value {
        self.wait_state(name, timeout, "running", |state| {
            state["Running"] == true && state["Restarting"] == false
        })
    }

    /// Waits until the health status of container `name` is `status` (`starting`, `healthy`
    /// or `unhealthy`); panics after `timeout`, with its state. Returns its inspected JSON.
    pub fn wait_health(&self, name: &str, status: &str, timeout: Duration) -> serde_json::Value {
        self.wait_state(name, timeout, status, |state| {
            state["Health"]["Status"] == status
        })
    }

    /// Waits until container `name` has exited (panics after `timeout`, with its state);
    /// returns its exit code.
    pub fn wait_exited(&self, name: &str, timeout: Duration) -> i64 {
        let container =
            self.wait_state(name, timeout, "exited", |state| state["Status"] == "exited");
        container["State"]["ExitCode"]
            .as_i64()
            .expect("an exit code")
    }

    /// Polls `docker inspect NAME` until `done(State)` holds or `timeout` has passed.
    fn wait_state(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let container = self.inspect_container(name);
            if done(&container["State"]) {
                return container;
            }
            assert!(
                Instant::now() < deadline,
                "container {name} not {what} after {timeout:?}; its state: {:#}",
                container["State"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the engine now (`scripts/docker stop`: its containers, images and directory go
    /// with it), e.g. to test code that finds the engine gone mid-update. Afterwards
    /// [`DockerEngine::host`] names a socket nobody answers on; dropping the fixture does
    /// nothing more. Stopping twice does nothing.
    pub fn kill_engine(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if server.is_some() {
            self.remove_networks();
        }
        drop(server);
    }

    /// Removes the user-defined networks (and first all containers, which may be attached to
    /// them): a stopping `dockerd` leaves their bridge interfaces on the machine, and the
    /// engines' address pools would run out after a few dozen of them.
    fn remove_networks(&self) {
        let listed = self
            .cli()
            .args(["network", "ls", "--quiet", "--filter", "type=custom"])
            .output();
        let networks = match listed {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            _ => return,
        };
        if networks.is_empty() {
            return;
        }
        let containers = self.cli().args(["ps", "--all", "--quiet"]).output();
        if let Ok(output) = containers {
            let ids = String::from_utf8_lossy(&output.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _removed = self.cli().args(["rm", "--force"]).args(&ids).output();
            }
        }
        let _removed = self
            .cli()
            .args(["network", "rm"])
            .args(networks.split_whitespace())
            .output();
    }

    /// Whether the engine still runs (it has not been stopped by
    /// [`DockerEngine::kill_engine`]).
    pub fn is_running(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        self.kill_engine();
    }
}

/// Runs `command`; panics with its arguments and stderr unless it succeeds.
fn checked(command: &mut Command) -> Output {
    let what = format!("{command:?}");
    run_script(command, &what)
}

/// The only element of the JSON array `docker inspect` prints.
fn first(printed: &str) -> serde_json::Value {
    let mut all: serde_json::Value = serde_json::from_str(printed)
        .unwrap_or_else(|error| panic!("docker inspect printed {printed:?}: {error}"));
    all.get_mut(0)
        .map(serde_json::Value::take)
        .unwrap_or_else(|| panic!("docker inspect printed no object: {printed}"))
}

/// The digest in `docker push` output: `TAG: digest: sha256:... size: N`.
fn push_digest(printed: &str, tag: &str) -> Option<String> {
    let prefix = format!("{tag}: digest: ");
    printed.lines().find_map(|line| {
        let digest = line
            .trim()
            .strip_prefix(&prefix)?
            .split_whitespace()
            .next()?;
        digest.starts_with("sha256:").then(|| digest.to_owned())
    })
}

/// A health check of an [`ImageSpec`]: `HEALTHCHECK [options] CMD ["..."]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// The command, exec form (e.g. `["/bin/sh", "-c", "test -f /ready"]`).
    pub test: Vec<String>,
    /// Time between checks (`--interval`).
    pub interval: Duration,
    /// Time a check may take (`--timeout`).
    pub timeout: Duration,
    /// Failures in a row that make the container unhealthy (`--retries`).
    pub retries: u32,
    /// Time after the start during which failures do not count (`--start-period`).
    pub start_period: Duration,
}

impl Healthcheck {
    /// `/bin/sh -c SHELL` every second, with a timeout of a second, unhealthy after one
    /// failure, no start period.
    pub fn shell(shell: &str) -> Healthcheck {
        Healthcheck {
            test: vec!["/bin/sh".to_owned(), "-c".to_owned(), shell.to_owned()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 1,
            start_period: Duration::ZERO,
        }
    }
}

/// The Dockerfile of a test image built from [`DockerEngine::base_image`] (a static busybox:
/// `/bin/sh` and the busybox applets, `/tmp`, users `root` and `nobody`), with
/// [`ImageSpec::version`] in `/version`.
///
/// Built with the methods below, starting from [`ImageSpec::new`] or a preset; the fields are
/// public for tests that compare or adjust them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// Written (with a newline) to `/version` in the image.
    pub version: String,
    /// `ENTRYPOINT` (exec form); the base's `CMD ["/bin/sh"]` applies when both are `None`.
    pub entrypoint: Option<Vec<String>>,
    /// `CMD` (exec form).
    pub cmd: Option<Vec<String>>,
    /// `ENV` pairs.
    pub env: Vec<(String, String)>,
    /// `LABEL` pairs.
    pub labels: Vec<(String, String)>,
    /// `HEALTHCHECK`.
    pub healthcheck: Option<Healthcheck>,
    /// `STOPSIGNAL` (e.g. `SIGUSR1`).
    pub stop_signal: Option<String>,
    /// `WORKDIR`.
    pub workdir: Option<String>,
    /// `USER` (e.g. `nobody` or `65534:65534`).
    pub user: Option<String>,
    /// `EXPOSE` entries (e.g. `8080/tcp`).
    pub expose: Vec<String>,
    /// `VOLUME` paths.
    pub volumes: Vec<String>,
    /// Further Dockerfile lines, as they are, right after `FROM` and the `COPY` of `/version`
    /// (before all the other instructions: a `RUN` runs as root, in `/`, with `/bin/sh` of the
    /// base).
    pub instructions: Vec<String>,
}

impl ImageSpec {
    /// An image with only `/version` added to the base.
    pub fn new(version: &str) -> ImageSpec {
        ImageSpec {
            version: version.to_owned(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            labels: Vec::new(),
            healthcheck: None,
            stop_signal: None,
            workdir: None,
            user: None,
            expose: Vec::new(),
            volumes: Vec::new(),
            instructions: Vec::new(),
        }
    }

    /// A long-running process ([`SERVER_SCRIPT`]) that exits 0 promptly on `docker stop`.
    pub fn server(version: &str) -> ImageSpec {
        ImageSpec::new(version).entrypoint(&["/bin/sh", "-c", SERVER_SCRIPT])
    }

    /// A server whose health check always succeeds (healthy about a second after its start).
    pub fn healthy(version: &str) -> ImageSpec {
        ImageSpec::server(version).healthcheck_cmd("true")
    }

    /// A server whose health check always fails (every second, unhealthy after one failure:
    /// about a second after its start).
    pub fn unhealthy(version: &str) -> ImageSpec {
        ImageSpec::server(version).healthcheck_cmd("exit 1")
    }

    /// A process that exits 1 at once.
    pub fn exits_at_once(version: &str) -> ImageSpec {
        ImageSpec::new(version).entrypoint(&["/bin/sh", "-c", "exit 1"])
    }

    /// Sets the version written to `/version`.
    pub fn version(mut self, version: &str) -> ImageSpec {
        version.clone_into(&mut self.version);
        self
    }

    /// Sets `ENTRYPOINT`.
    pub fn entrypoint(mut self, entrypoint: &[&str]) -> ImageSpec {
        self.entrypoint = Some(strings(entrypoint));
        self
    }

    /// Sets `CMD`.
    pub fn cmd(mut self, cmd: &[&str]) -> ImageSpec {
        self.cmd = Some(strings(cmd));
        self
    }

    /// Adds `ENV KEY=VALUE`.
    pub fn env(mut self, key: &str, value: &str) -> ImageSpec {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `LABEL KEY=VALUE`.
    pub fn label(mut self, key: &str, value: &str) -> ImageSpec {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets `HEALTHCHECK`.
    pub fn healthcheck(mut self, healthcheck: Healthcheck) -> ImageSpec {
        self.healthcheck = Some(healthcheck);
        self
    }

    /// Sets `HEALTHCHECK` to [`Healthcheck::shell`] (`/bin/sh -c SHELL` every second).
    pub fn healthcheck_cmd(self, shell: &str) -> ImageSpec {
        self.healthcheck(Healthcheck::shell(shell))
    }

    /// Sets `STOPSIGNAL`.
    pub fn stop_signal(mut self, signal: &str) -> ImageSpec {
        self.stop_signal = Some(signal.to_owned());
        self
    }

    /// Sets `WORKDIR` (created if missing).
    pub fn workdir(mut self, dir: &str) -> ImageSpec {
        self.workdir = Some(dir.to_owned());
        self
    }

    /// Sets `USER`.
    pub fn user(mut self, user: &str) -> ImageSpec {
        self.user = Some(user.to_owned());
        self
    }

    /// Adds an `EXPOSE` entry (e.g. `8080/tcp`).
    pub fn expose(mut self, port: &str) -> ImageSpec {
        self.expose.push(port.to_owned());
        self
    }

    /// Adds a `VOLUME` path.
    pub fn volume(mut self, path: &str) -> ImageSpec {
        self.volumes.push(path.to_owned());
        self
    }

    /// Adds a Dockerfile line as it is (see [`ImageSpec::instructions`]).
    pub fn instruction(mut self, line: &str) -> ImageSpec {
        self.instructions.push(line.to_owned());
        self
    }

    /// The Dockerfile, `FROM base`: the `COPY` of `/version` (from the file `version` of the
    /// build context), [`ImageSpec::instructions`], then one instruction per field set.
    ///
    /// Panics on values a Dockerfile line cannot hold (line breaks; whitespace or `=` in an
    /// `ENV` key).
    pub fn dockerfile(&self, base: &str) -> String {
        let mut file = format!("FROM {base}\nCOPY version /version\n");
        let stop_signal = self
            .stop_signal
            .iter()
            .map(|signal| format!("STOPSIGNAL {signal}"));
        for line in self
            .instructions
            .iter()
            .cloned()
            .chain(self.config_changes())
            .chain(stop_signal)
        {
            assert!(!line.contains('\n'), "a line break in {line:?}");
            file.push_str(&line);
            file.push('\n');
        }
        file
    }

    /// The instructions setting the image's configuration, but for `STOPSIGNAL` (which
    /// `docker commit --change` does not take): `ENTRYPOINT`, `CMD`, `ENV`, `LABEL`,
    /// `HEALTHCHECK`, `WORKDIR`, `USER`, `EXPOSE` and `VOLUME`, each at most once.
    fn config_changes(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(entrypoint) = &self.entrypoint {
            lines.push(format!("ENTRYPOINT {}", json(entrypoint)));
        }
        if let Some(cmd) = &self.cmd {
            lines.push(format!("CMD {}", json(cmd)));
        }
        if !self.env.is_empty() {
            let pairs: Vec<String> = self
                .env
                .iter()
                .map(|(key, value)| {
                    assert!(
                        !key.is_empty() && !key.contains(|c: char| c.is_whitespace() || c == '='),
                        "ENV key {key:?}"
                    );
                    format!("{key}={}", quoted(value))
                })
                .collect();
            lines.push(format!("ENV {}", pairs.join(" ")));
        }
        if !self.labels.is_empty() {
            let pairs: Vec<String> = self
                .labels
                .iter()
                .map(|(key, value)| format!("{}={}", quoted(key), quoted(value)))
                .collect();
            lines.push(format!("LABEL {}", pairs.join(" ")));
        }
        if let Some(check) = &self.healthcheck {
            let mut text = String::from("HEALTHCHECK");
            for (flag, duration) in [
                ("interval", check.interval),
                ("timeout", check.timeout),
                ("start-period", check.start_period),
            ] {
                // Zero is the default, and the parser refuses anything below 1ms.
                if !duration.is_zero() {
                    write!(text, " --{flag}={}ms", duration.as_millis()).expect("a String");
                }
            }
            write!(
                text,
                " --retries={} CMD {}",
                check.retries,
                json(&check.test)
            )
            .expect("a String");
            lines.push(text);
        }
        if let Some(dir) = &self.workdir {
            lines.push(format!("WORKDIR {dir}"));
        }
        if let Some(user) = &self.user {
            lines.push(format!("USER {user}"));
        }
        if !self.expose.is_empty() {
            lines.push(format!("EXPOSE {}", self.expose.join(" ")));
        }
        if !self.volumes.is_empty() {
            lines.push(format!("VOLUME {}", json(&self.volumes)));
        }
        lines
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

/// A JSON array, the exec form of a Dockerfile instruction.
fn json(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}

/// `"TEXT"` with `\`, `"` and `$` escaped, as `ENV` and `LABEL` read it.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
