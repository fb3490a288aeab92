//! A real `helm` against the throw-away API server, for the tests of the Helm provider (feature
//! `helm`).
//!
//! - [`helm_bin`]: the binary from `HELM_BIN` (`scripts/helm install`, then
//!   `eval "$(scripts/helm env)"`); tests skip with [`HELM_SKIP_MESSAGE`] when it is not set.
//! - [`Helm`]: runs that binary as one user of an [`ApiServer`], through a kubeconfig file of
//!   its own and Helm config, cache and data directories of its own, so that nothing of the
//!   machine's Helm setup applies. [`Helm::env`] is that environment, for the code under test
//!   to run `helm` with.
//! - [`chart_dir`]: the test charts of this crate (`charts/`), e.g. `web`: one Deployment with
//!   an `app` container (`image.repository` + `image.tag`) and a `sidecar` container
//!   (`sidecar.image`), a `keel:` block in its values, and `failOnTag` to make an upgrade fail.
//!
//! Helm 4 needs no special flag against the 1.20 API server: it applies server-side, which
//! that server has on by default. No command here passes `--wait`, since the test server runs
//! no controller-manager and no Deployment ever becomes ready.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::kube::ApiServer;

/// What a test prints when it skips for want of `helm`.
pub const HELM_SKIP_MESSAGE: &str = "skipping: no helm for this test; set HELM_BIN (run \
    `scripts/helm install`, then `eval \"$(scripts/helm env)\"`)";

/// The `helm` binary named by `HELM_BIN`, when it is set and not empty.
pub fn helm_bin() -> Option<PathBuf> {
    std::env::var_os("HELM_BIN")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The directory of the test chart `name` (`charts/<name>` of keel-testsupport).
pub fn chart_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts")
        .join(name)
}

/// A plain registry serving the repositories of the `web` chart's two images, `acme/web`
/// (tags 1.0.0, 1.0.1, 1.1.0 and 2.0.0) and `acme/proxy` (2.0.0), with the two repositories
/// as images name them (`127.0.0.1:PORT/acme/web`, `.../acme/proxy`).
#[cfg(feature = "registry")]
pub async fn chart_registry() -> (crate::registry::RegistryServer, String, String) {
    use crate::registry::{RegistryServer, ServerOptions};
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    registry
        .push_tags("acme/web", &["1.0.0", "1.0.1", "1.1.0", "2.0.0"])
        .await;
    registry.push_tags("acme/proxy", &["2.0.0"]).await;
    let web = format!("{}/acme/web", registry.addr());
    let proxy = format!("{}/acme/proxy", registry.addr());
    (registry, web, proxy)
}

/// `helm` acting as one user of an [`ApiServer`], isolated from the machine's Helm and
/// Kubernetes configuration. Its directory (kubeconfig, Helm homes) is removed on drop.
#[derive(Debug)]
pub struct Helm {
    bin: PathBuf,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    driver: Option<String>,
}

impl Helm {
    /// `helm` as `user` (the admin or one of the limited users) of `server`; `None` (after
    /// printing [`HELM_SKIP_MESSAGE`]) when `HELM_BIN` is not set.
    pub fn new(server: &ApiServer, user: &str) -> Option<Helm> {
        let Some(bin) = helm_bin() else {
            eprintln!("{HELM_SKIP_MESSAGE}");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("keel-helm-")
            .tempdir()
            .expect("create the helm test directory");
        let kubeconfig = dir.path().join("kubeconfig");
        write_private(&kubeconfig, &server.kubeconfig_for(user));
        for home in ["config", "cache", "data", "kube-cache"] {
            let path = dir.path().join(home);
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        }
        Some(Helm {
            bin,
            dir,
            kubeconfig,
            driver: None,
        })
    }

    /// The same, storing releases with Helm's storage `driver` (`HELM_DRIVER`: `secret`,
    /// `configmap`).
    pub fn with_driver(mut self, driver: &str) -> Helm {
        self.driver = Some(driver.to_owned());
        self
    }

    /// The kubeconfig file `helm` runs with (the server's URL and CA, and the user's token).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The environment `helm` must run with to act as this user with these Helm homes: what
    /// the code under test sets when it runs `helm` (`KUBECONFIG`, `HELM_CONFIG_HOME`,
    /// `HELM_CACHE_HOME`, `HELM_DATA_HOME`, and `KUBECACHEDIR` so that the API discovery
    /// cache stays out of `~/.kube`).
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            (
                "KUBECONFIG".to_owned(),
                self.kubeconfig.display().to_string(),
            ),
            ("HELM_CONFIG_HOME".to_owned(), path("config")),
            ("HELM_CACHE_HOME".to_owned(), path("cache")),
            ("HELM_DATA_HOME".to_owned(), path("data")),
            ("KUBECACHEDIR".to_owned(), path("kube-cache")),
        ]
    }

    /// Runs `helm <args>` with [`Helm::env`] (and none of the test process's own `HELM_*`
    /// variables or `KUBECONFIG`), and returns what it did, successful or not.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.bin);
        command.args(args);
        let inherited: Vec<OsString> = std::env::vars_os()
            .map(|(key, _)| key)
            .filter(|key| {
                key.to_str()
                    .is_some_and(|k| k.starts_with("HELM_") || k == "KUBECONFIG")
            })
            .collect();
        for key in inherited {
            command.env_remove(key);
        }
        command.envs(self.env());
        if let Some(driver) = &self.driver {
            command.env("HELM_DRIVER", driver);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()))
    }

    /// Installs `chart` as `release` into `namespace` with `--set key=value` for each of
    /// `set`; panics with helm's output when that fails.
    pub fn install(&self, namespace: &str, release: &str, chart: &Path, set: &[(&str, &str)]) {
        let chart = chart.to_str().expect("chart path is UTF-8");
        let assignments: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["install", release, chart, "--namespace", namespace];
        for assignment in &assignments {
            args.extend(["--set", assignment.as_str()]);
        }
        self.succeed(&args);
    }

    /// The revisions of `release` in `namespace` (`helm history -o json`): an array of
    /// objects with `revision`, `status`, `chart`, `app_version`, `description`, `updated`.
    pub fn history(&self, namespace: &str, release: &str) -> serde_json::Value {
        self.json(&[
            "history",
            release,
            "--namespace",
            namespace,
            "--output",
            "json",
        ])
    }

    /// The values of the deployed revision of `release` (`helm get values -o json`): those
    /// the user supplied, or with `all` the computed values (the chart's defaults merged).
    /// `null` when no values were supplied.
    pub fn get_values(&self, namespace: &str, release: &str, all: bool) -> serde_json::Value {
        let mut args = vec![
            "get",
            "values",
            release,
            "--namespace",
            namespace,
            "--output",
            "json",
        ];
        if all {
            args.push("--all");
        }
        self.json(&args)
    }

    fn succeed(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "`helm {}` failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
        output
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let output = self.succeed(args);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "`helm {}` printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

/// Writes `contents` readable by the owner only (Helm warns about a group- or world-readable
/// kubeconfig).
fn write_private(path: &Path, contents: &str) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
