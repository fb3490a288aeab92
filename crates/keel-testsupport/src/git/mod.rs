//! Git servers for the integration tests (feature `git`).
//!
//! - [`GitServer`]: a throw-away `git daemon` started by `scripts/git-server` (anonymous fetch
//!   and push over `git://`), optionally with a smart-HTTP server in front of the same
//!   repositories that runs `git http-backend` behind basic auth; stopped on drop. It creates
//!   and seeds bare repositories, plays a third party that pushes unrelated commits, and reads
//!   branches, files and logs back from the bare repositories.
//! - [`SshServer`]: a throw-away OpenSSH `sshd` started by `scripts/ssh-server`, serving the
//!   bare repositories of a [`GitServer`] over `ssh://` with a host key of its own and one
//!   accepted client key.
//! - [`Git`]: runs the `git` CLI isolated from the machine (no system or global config, no
//!   prompts, no inherited `GIT_DIR` & co.), with a time limit.
//!
//! Everything here is blocking and safe to call from async tests of any runtime flavour: the
//! HTTP server runs on a runtime of its own thread, so a test that blocks its runtime on a
//! `git` command never starves the server that command talks to.

mod cli;
mod http;
mod server;
mod ssh;

pub use cli::{GIT_TIMEOUT, Git, GitOutput};
pub use http::{HttpRequestRecord, REALM};
pub use server::{GitServer, THIRD_PARTY};
pub use ssh::SshServer;
