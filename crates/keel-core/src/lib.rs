//! keel-core: the domain types, version-selection engine, plugin traits and update pipeline
//! of keel-rs.
//!
//! keel-rs watches container registries, picks the right new version of each image by a
//! policy, and rolls it out to a target. This crate holds everything that does not talk to a
//! network:
//!
//! - [`reference`](mod@reference): [`ImageRef`], [`Tag`], [`Digest`], [`Platform`], parsed by the
//!   distribution grammar;
//! - [`version`] and [`policy`]: the version engine and every built-in policy
//!   ([`VersionPolicy`]), and the [`Policy`] trait for your own;
//! - the plugin traits [`Registry`], [`Target`] and [`Notifier`];
//! - [`pipeline`]: one pass of discover → list → select → apply → notify;
//! - [`supervise`]: running passes so that a panic or a hang is caught, counted and followed
//!   by the next pass, and knowing when the last one completed;
//! - [`trigger`]: poll schedules (cron with seconds, `@every 5m`) and the webhook payloads of
//!   registries (Docker Hub, Quay, ACR, GHCR, Harbor, JFrog, distribution);
//! - [`keel_keys`]: Keel's `keel.sh/*` annotations, labels and comments, read in one place
//!   for every target;
//! - [`approval`]: approval requests bound to image digests, votes, deadlines, an audit log,
//!   and the [`ApprovalStore`] trait with in-memory and (feature `redb`) embedded stores;
//! - [`body`]: the one bounded reader of response bodies every HTTP backend uses;
//! - [`retry`]: the one exponential backoff (with full jitter) and `Retry-After` parser;
//! - [`memory`]: an in-memory registry and target for tests and examples, and, with the
//!   `testkit` feature, the conformance suite every backend runs.
#![doc = ""]
#![doc = include_str!("../../../README.md")]

pub mod approval;
pub mod body;
pub mod error;
pub mod keel_keys;
pub mod policy;
pub mod reference;
pub mod secret;
pub mod version;

pub use approval::{ApprovalRequest, ApprovalState, ApprovalStore, Approvals};
pub use error::{Error, ParseError, Result};
pub use policy::{Decision, Policy, PolicyOptions, PolicySpec, VersionPolicy};
pub use reference::{Digest, ImageRef, Platform, Tag};
pub use secret::{Secret, redact_urls};

pub mod memory;
pub mod notify;
pub mod pipeline;
pub mod registry;
pub mod retry;
pub mod supervise;
pub mod target;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trigger;

pub use notify::{ApprovalInfo, Event, EventKind, Notifier};
pub use pipeline::{Pipeline, RunReport};
pub use registry::{
    CredentialSource, DockerConfigDocument, DockerConfigFormat, ImageMetadata, Registry,
    RegistryExt, TagList,
};
pub use target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};
