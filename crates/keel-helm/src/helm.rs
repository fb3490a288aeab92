//! The `helm` binary: where it is and how it runs ([`HelmBinary`]), checked at start-up
//! ([`CheckedHelm`]), run with a deadline, its own messages passed on.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keel_core::Error;
use tokio::process::Command;

/// The backend name in errors of the helm binary.
pub const BACKEND: &str = "helm";

/// Which `helm` to run and how, not checked yet: the first `helm` on `PATH` or one path, the
/// environment it runs in, and how long one run may take. [`check`](Self::check) finds it and
/// runs `helm version`; a [`HelmTarget`](crate::HelmTarget) does that when it is built.
///
/// ```
/// use std::time::Duration;
///
/// use keel_helm::HelmBinary;
///
/// let helm = HelmBinary::at("/usr/local/bin/helm")
///     .with_env([("KUBECONFIG", "/etc/keel/kubeconfig")])
///     .with_timeout(Duration::from_secs(600));
/// ```
#[derive(Clone, Debug, Default)]
pub struct HelmBinary {
    /// `None`: the first `helm` on `PATH`.
    path: Option<PathBuf>,
    env: Environment,
    /// `None`: the default of whoever runs it ([`HelmBinary::DEFAULT_TIMEOUT`], or a
    /// target's own
    /// [`DEFAULT_RUN_TIMEOUT`](crate::HelmTargetBuilder::DEFAULT_RUN_TIMEOUT)).
    timeout: Option<Duration>,
}

/// A `helm` binary that answered `helm version`, with the environment it runs in: what
/// [`HelmBinary::check`] returns and what a [`HelmTarget`](crate::HelmTarget) runs.
#[derive(Clone, Debug)]
pub struct CheckedHelm {
    path: PathBuf,
    version: String,
    timeout: Duration,
    /// Goes to every run.
    env: Environment,
}

/// The extra environment variables helm runs with. They may carry credentials (a registry
/// token), so `Debug` shows only their names: every type that holds them prints them so.
#[derive(Clone, Default)]
struct Environment(Vec<(OsString, OsString)>);

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// What one helm run printed.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
}

impl HelmBinary {
    /// How long one run may take when [`with_timeout`](Self::with_timeout) was not given, for
    /// a binary checked on its own, and for the `helm version` of every check. The runs of a
    /// [`HelmTarget`](crate::HelmTarget) take
    /// [`HelmTargetBuilder::DEFAULT_RUN_TIMEOUT`](crate::HelmTargetBuilder::DEFAULT_RUN_TIMEOUT)
    /// instead (an upgrade waits for the chart's hooks).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// The first `helm` on `PATH` when it is checked (the default).
    pub fn on_path() -> Self {
        HelmBinary::default()
    }

    /// The `helm` binary at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        HelmBinary {
            path: Some(path.into()),
            ..HelmBinary::on_path()
        }
    }

    /// The same binary, run with these extra environment variables (`KUBECONFIG`,
    /// `HELM_CONFIG_HOME`...), `helm version` included. Without `KUBECONFIG`, helm finds the
    /// cluster as kubectl does (in a pod: its service account).
    pub fn with_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .0
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The same binary, with runs killed after `timeout`, `helm version` included (default
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT), or
    /// [`HelmTargetBuilder::DEFAULT_RUN_TIMEOUT`](crate::HelmTargetBuilder::DEFAULT_RUN_TIMEOUT)
    /// for the runs of a [`HelmTarget`](crate::HelmTarget)).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Finds the binary and runs `helm version` with its environment and timeout, to check
    /// that it works.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming where it looked when there is no such binary;
    /// [`Error::Backend`] when it does not run or does not answer as helm does.
    pub async fn check(self) -> Result<CheckedHelm, Error> {
        self.check_with_run_timeout(Self::DEFAULT_TIMEOUT).await
    }

    /// As [`check`](Self::check), for runs that take `run_timeout` when no timeout was given;
    /// `helm version` still waits [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT) then.
    pub(crate) async fn check_with_run_timeout(
        self,
        run_timeout: Duration,
    ) -> Result<CheckedHelm, Error> {
        let HelmBinary { path, env, timeout } = self;
        let path = match path {
            Some(path) => path,
            None => find_on_path("helm").ok_or_else(|| {
                Error::not_found(
                    "the helm binary on PATH (install Helm 3 or 4, or give its path with \
                     --helm-binary / KEEL_HELM_BINARY)",
                )
            })?,
        };
        if !path.is_file() {
            return Err(Error::not_found(format!(
                "the helm binary {}",
                path.display()
            )));
        }
        let mut helm = CheckedHelm {
            path,
            version: String::new(),
            timeout: timeout.unwrap_or(Self::DEFAULT_TIMEOUT),
            env,
        };
        let output = helm
            .run("check the helm binary", &["version", "--short"])
            .await?;
        let version = output.stdout.trim().to_owned();
        if !version.starts_with('v') {
            return Err(Error::Backend {
                backend: BACKEND.to_owned(),
                action: format!("check the helm binary {}", helm.path.display()),
                message: format!("`helm version --short` printed {version:?}, not a version"),
                retryable: false,
                source: None,
            });
        }
        helm.version = version;
        helm.timeout = timeout.unwrap_or(run_timeout);
        Ok(helm)
    }
}

impl CheckedHelm {
    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `helm version --short` printed, e.g. `v4.1.4+g...`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How long one run may take before it is killed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs helm with `args`, for `action` (in errors).
    ///
    /// # Errors
    /// [`Error::Backend`] with helm's own message when it exits with failure (not retryable:
    /// helm said why), or when it cannot start or runs past the timeout.
    pub(crate) async fn run(&self, action: &str, args: &[&str]) -> Result<Output, Error> {
        self.run_with(action, args, &[]).await
    }

    /// As [`run`](Self::run), with more environment for this run only.
    pub(crate) async fn run_with(
        &self,
        action: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Output, Error> {
        let failed = |message: String, retryable: bool| Error::Backend {
            backend: BACKEND.to_owned(),
            action: action.to_owned(),
            message,
            retryable,
            source: None,
        };
        let mut command = Command::new(&self.path);
        command
            .args(args)
            .envs(self.env.0.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| failed(format!("{} did not start: {e}", self.path.display()), false))?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| failed(format!("helm ran longer than {:?}", self.timeout), true))?
            .map_err(|e| failed(format!("reading helm's output: {e}"), true))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr.trim();
            return Err(failed(
                if message.is_empty() {
                    format!("helm exited with {}", output.status)
                } else {
                    message.to_owned()
                },
                false,
            ));
        }
        Ok(Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        })
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in for helm in a new directory: a shell script with `body`.
    pub(crate) fn fake_helm(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helm");
        keel_testsupport::write_shell_script(&path, body);
        (dir, path)
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_clear_error() {
        let error = HelmBinary::at("no/such/helm").check().await.unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
        assert!(error.to_string().contains("no/such/helm"), "{error}");
    }

    #[test]
    fn debug_output_names_the_environment_but_not_its_values() {
        let settings = HelmBinary::at("helm").with_env([("HELM_REGISTRY_TOKEN", "s3cr3t-token")]);
        let helm = CheckedHelm {
            path: PathBuf::from("helm"),
            version: "v4.1.4".to_owned(),
            timeout: Duration::from_secs(1),
            env: settings.env.clone(),
        };
        for text in [format!("{settings:?}"), format!("{helm:?}")] {
            assert!(text.contains("HELM_REGISTRY_TOKEN"), "{text}");
            assert!(!text.contains("s3cr3t-token"), "{text}");
        }
    }

    #[tokio::test]
    async fn a_binary_that_is_not_helm_is_refused() {
        // `true` runs, prints nothing, and is no helm.
        let Some(true_bin) = find_on_path("true") else {
            return;
        };
        let error = HelmBinary::at(true_bin).check().await.unwrap_err();
        assert!(error.to_string().contains("not a version"), "{error}");
    }

    #[tokio::test]
    async fn the_version_check_runs_with_the_environment() {
        let (_dir, path) = fake_helm(r#"[ "$KEEL_TEST_HELM" = yes ] && echo v4.1.4"#);
        let error = HelmBinary::at(&path).check().await.unwrap_err();
        assert!(matches!(error, Error::Backend { .. }), "{error:?}");
        let helm = HelmBinary::at(&path)
            .with_env([("KEEL_TEST_HELM", "yes")])
            .check()
            .await
            .unwrap();
        assert_eq!(helm.version(), "v4.1.4");
        assert_eq!(helm.path(), path);
    }

    #[tokio::test]
    async fn the_timeout_is_two_minutes_unless_given() {
        let (_dir, path) = fake_helm("echo v4.1.4");
        let helm = HelmBinary::at(&path).check().await.unwrap();
        assert_eq!(helm.timeout(), Duration::from_secs(120));
        let helm = HelmBinary::at(&path)
            .with_timeout(Duration::from_secs(7))
            .check_with_run_timeout(Duration::from_secs(300))
            .await
            .unwrap();
        assert_eq!(helm.timeout(), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn the_version_check_is_killed_after_the_timeout() {
        let (_dir, path) = fake_helm("exec sleep 10");
        let error = HelmBinary::at(&path)
            .with_timeout(Duration::from_millis(200))
            .check()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("ran longer than"), "{error}");
    }
}
