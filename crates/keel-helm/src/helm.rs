//! The `helm` binary: found at start-up, run with a deadline, its own messages passed on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keel_core::Error;
use tokio::process::Command;

/// The backend name in errors of the helm binary.
pub const BACKEND: &str = "helm";

/// A `helm` binary that answered `helm version`, with the environment it runs in.
#[derive(Clone, derive_more::Debug)]
pub struct HelmBinary {
    path: PathBuf,
    version: String,
    /// May carry credentials: `Debug` shows only its names.
    #[debug("{:?}", env.iter().map(|(k, _)| k).collect::<Vec<_>>())]
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

/// What one helm run printed.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
}

impl HelmBinary {
    /// Finds `helm`: `path` when given, else the first `helm` on `PATH`; runs `helm version`
    /// to check that it works.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming where it looked when there is no such binary;
    /// [`Error::Backend`] when it does not run or does not answer as helm does.
    pub async fn locate(path: Option<&Path>) -> Result<HelmBinary, Error> {
        let path = match path {
            Some(path) => path.to_owned(),
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
        let mut helm = HelmBinary {
            path,
            version: String::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(120),
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
        Ok(helm)
    }

    /// The same binary, run with these extra environment variables (`KUBECONFIG`,
    /// `HELM_CONFIG_HOME`...).
    pub fn with_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The same binary, with runs killed after `timeout` (default two minutes).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `helm version --short` printed, e.g. `v4.1.4+g...`.
    pub fn version(&self) -> &str {
        &self.version
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_binary_is_a_clear_error() {
        let error = HelmBinary::locate(Some(Path::new("no/such/helm")))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
        assert!(error.to_string().contains("no/such/helm"), "{error}");
    }

    #[test]
    fn debug_output_names_the_environment_but_not_its_values() {
        let helm = HelmBinary {
            path: PathBuf::from("helm"),
            version: "v4.1.4".to_owned(),
            env: Vec::new(),
            timeout: Duration::from_secs(1),
        }
        .with_env([("HELM_REGISTRY_TOKEN", "s3cr3t-token")]);
        let text = format!("{helm:?}");
        assert!(text.contains("HELM_REGISTRY_TOKEN"), "{text}");
        assert!(!text.contains("s3cr3t-token"), "{text}");
    }

    #[tokio::test]
    async fn a_binary_that_is_not_helm_is_refused() {
        // `true` runs, prints nothing, and is no helm.
        let Some(true_bin) = find_on_path("true") else {
            return;
        };
        let error = HelmBinary::locate(Some(&true_bin)).await.unwrap_err();
        assert!(error.to_string().contains("not a version"), "{error}");
    }
}
