//! The Git write-back backend of keel-rs: GitOps image updates.
//!
//! A [`keel_core::Target`] for manifests kept in a Git repository, as Flux image automation
//! and Argo CD Image Updater do it:
//!
//! - discovery of Flux setter markers (`# {"$imagepolicy": "ns:name"}`), Keel-annotated
//!   workload manifests, kustomization `images:` entries and marked Helm values;
//! - rewrites that change only the bytes of the tag or digest, so comments, quoting,
//!   indentation and line endings survive;
//! - one commit per run, pushed with bounded fetch-rebase-retry on non-fast-forward rejections;
//!   each plan applied on its own, or all of them or none
//!   ([`GitTargetBuilder::with_all_or_nothing`]);
//! - releases: every other `image:` value and kustomization entry is found too, untracked, so
//!   a caller that names an image and its tag can set it wherever the repository references it
//!   ([`Reference::released`]);
//! - bounded work whatever the repository or server holds: fetch and push time out
//!   ([`GitTargetBuilder::with_server_timeout`]), files above a size limit and YAML whose
//!   aliases would expand beyond a budget are skipped and reported ([`GitTarget::scan`]), and
//!   credentials in remote URLs never reach an error, a log line or a name;
//! - SSH with a private key held in memory, offered only to a server that showed a host key
//!   pinned by `known_hosts` ([`GitAuth::SshKeyInMemory`], [`known_hosts::KnownHosts`]);
//! - for callers that know which files they change (Argo CD Image Updater's `git` write-back):
//!   [`BranchCommit`] runs an edit of given files on a branch head and pushes it as one
//!   commit, from a fresh fetch again when the branch moved, and [`manifest::edit`] sets one
//!   YAML value at a path, byte-exact.

mod branch;
pub mod env;
pub mod known_hosts;
pub mod manifest;
mod repo;
mod sign;
mod target;

pub use branch::{BranchCommit, CommitOutcome, RepoFiles};
pub use keel_core::Target;
pub use manifest::{Reference, RepoConfig};
pub use repo::GitAuth;
pub use sign::CommitSigner;
pub use target::{
    Checkout, DEFAULT_CHANGE_TEMPLATE, DEFAULT_MAX_FILE_SIZE, DEFAULT_MESSAGE_TEMPLATE, GitTarget,
    GitTargetBuilder,
};
