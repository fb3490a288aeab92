//! Test support of keel-rs: the real servers the integration tests and benches run against,
//! each behind a cargo feature (the modules below exist with their features on).
//!
//! - `registry` (module `registry`): throw-away registries started by `scripts/registry-server`,
//!   a seeder, a token issuer and a fault-injection proxy.
//! - `git` (module `git`): throw-away `git daemon`s started by `scripts/git-server`, optionally with a
//!   smart-HTTP server, and an isolated `git` CLI.
//! - `kube` (module `kube`): a throw-away etcd + kube-apiserver from the envtest binaries, clients as
//!   chosen users, workload fixtures, and Flux's and Argo CD's objects (`kube::flux`,
//!   `kube::argocd`).
//! - `helm` (module `helm`, implies `kube`): a real `helm` from `scripts/helm` acting as a user of
//!   that API server with Helm homes of its own, and the test charts under `charts/`.
//! - `docker` (module `docker`): a throw-away Docker engine from `scripts/docker`, its CLI, and
//!   test images built from a static busybox and pushed to a local registry.
//! - `browser` (module `browser`): a headless chromium driven over WebDriver, its chromedriver
//!   started by `scripts/browser`, with screenshots under `target/screenshots/`.
//! - `pipeline` (module `pipeline`): a recording notifier and scenarios for tests of the keel-core
//!   pipeline.
//! - `receiver` (module `receiver`): serving an axum router on 127.0.0.1, and a receiver that
//!   records every request and answers from a script.
//! - `signing` (`hmac_sha256_hex`): signatures of webhooks and Slack requests, computed
//!   independently of the code under test.
//! - `tls` (module `tls`, implied by `registry` and `kube`): certificate authorities and certificates
//!   signed by them.
//! - `cli` (module `cli`): a program's clap command line checked, parsed, and refusing bad values
//!   by the name of their flag.
//!
//! [`yaml`] has YAML documents that cost far more to expand than to send.
//!
//! Servers started by the project's scripts go through one [`ScriptServer`], which parses the
//! JSON the script prints and stops the server on drop. Fake helpers and hooks that tests run
//! at once are written by [`write_shell_script`].

mod script;
mod shell_script;

pub use script::{ScriptServer, script};
pub use shell_script::write_shell_script;
#[cfg(feature = "signing")]
pub use signing::hmac_sha256_hex;

#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "helm")]
pub mod helm;
#[cfg(feature = "kube")]
pub mod kube;
#[cfg(feature = "pipeline")]
pub mod pipeline;
#[cfg(feature = "receiver")]
pub mod receiver;
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "signing")]
mod signing;
#[cfg(feature = "tls")]
pub mod tls;
pub mod yaml;

/// The root of the repository (where `scripts/` lives), found upwards from this crate.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/registry-server").is_file())
        .expect("keel-testsupport lies inside the keel-rs repository")
        .to_path_buf()
}

/// A lookup of environment variables that answers from `pairs` only, for code that reads its
/// settings through a lookup function instead of the process environment.
pub fn env_lookup(
    pairs: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + Clone + Send + Sync + 'static + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

/// A directory holding no Docker `config.json`: `DOCKER_CONFIG` of the example binaries under
/// test, so that they never read the machine's registry credentials.
pub fn no_docker_config() -> std::path::PathBuf {
    std::env::temp_dir().join("keel-no-docker-config")
}

/// What a finished process printed: its stdout, then its stderr, as one text.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Panics, showing all of `text`, unless it contains each of `parts`.
#[track_caller]
pub fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "no {part:?} in:\n{text}");
    }
}
