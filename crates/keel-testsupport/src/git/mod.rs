//! Git servers for the integration tests (feature `git`).
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

mod cli;
mod http;
mod server;

pub use cli::{GIT_TIMEOUT, Git, GitOutput};
pub use http::{HttpRequestRecord, REALM};
pub use server::{GitServer, THIRD_PARTY};
