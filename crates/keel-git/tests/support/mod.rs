//! Test support for the integration tests of keel-git.
//!
//! - [`GitServer`]: a throw-away `git daemon` started by `scripts/git-server` (anonymous fetch
//!   and push over `git://`), optionally with a smart-HTTP server in front of the same
//!   repositories that runs `git http-backend` behind basic auth; stopped on drop. It creates
//!   and seeds bare repositories, plays a third party that pushes unrelated commits, and reads
//!   branches, files and logs back from the bare repositories.
//! - [`Git`]: runs the `git` CLI isolated from the machine (no system or global config, no
//!   prompts, no inherited `GIT_DIR` & co.), with a time limit.
//!
//! Everything here is blocking and safe to call from async tests of any runtime flavour: the
//! HTTP server runs on a runtime of its own thread, so a test that blocks its runtime on a
//! `git` command never starves the server that command talks to.
//!
//! Each test file uses it as `mod support;`, so helpers that one file does not use are fine.
#![allow(dead_code, unused_imports)]

mod git;
mod http;
mod server;

pub(crate) use git::{Git, GitOutput};
pub(crate) use http::HttpRequestRecord;
pub(crate) use server::GitServer;

/// The root of the repository (where `scripts/` lives), found upwards from the package that
/// includes this support code.
pub(crate) fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/git-server").is_file())
        .expect("the package lies inside the keel-rs repository")
        .to_path_buf()
}
