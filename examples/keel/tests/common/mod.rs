//! Running the `keel` binary as a user would, for the CLI tests.
//! Each test file uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

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
