//! Running the `keel` binary as a user would, for the CLI tests.
//! Each test file uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use keel_testsupport::kube::{ADMIN, ApiServer};

/// A process's output as text.
pub(crate) fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

/// The standard output of a run that must have succeeded (else its standard error fails
/// the test).
pub(crate) fn stdout_of(o: &Output) -> &str {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// Fails unless a run's output `bytes` (its standard output or error) contains `part`.
pub(crate) fn assert_says(bytes: &[u8], part: &str) {
    let text = text(bytes);
    assert!(text.contains(part), "{part:?} missing from:\n{text}");
}

/// Runs `keel ARGS` with `stdin` as its input, away from any Docker config of the machine.
pub(crate) fn keel(args: &[&str], stdin: &str) -> Output {
    keel_with_env(args, stdin, &[])
}

/// Runs `keel ARGS` with extra environment variables.
pub(crate) fn keel_with_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .envs(env.iter().copied())
        .env("DOCKER_CONFIG", keel_testsupport::no_docker_config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keel starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("keel reads its stdin");
    child.wait_with_output().expect("keel finishes")
}

/// A kubeconfig file that makes `keel` the admin of an API server; removed when dropped.
pub(crate) struct AdminKubeconfig {
    _dir: tempfile::TempDir,
    path: String,
}

impl AdminKubeconfig {
    pub(crate) fn of(api: &ApiServer) -> AdminKubeconfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, api.kubeconfig_for(ADMIN)).unwrap();
        let path = path.to_str().unwrap().to_owned();
        AdminKubeconfig { _dir: dir, path }
    }

    /// The environment for [`keel_with_env`]: `KUBECONFIG`.
    pub(crate) fn env(&self) -> [(&str, &str); 1] {
        [("KUBECONFIG", self.path.as_str())]
    }
}
