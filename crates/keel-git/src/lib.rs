//! The Git write-back backend of keel-rs: GitOps image updates.
//!
//! This crate will hold a [`keel_core::Target`] implementation for manifests kept in a Git
//! repository, as Flux image automation and Argo CD Image Updater do it:
//!
//! - discovery of Flux setter markers (`# {"$imagepolicy": "ns:name"}`), Keel-annotated
//!   workload manifests, kustomization `images:` entries and marked Helm values;
//! - rewrites that change only the bytes of the tag or digest, so comments, quoting,
//!   indentation and line endings survive;
//! - one commit per run, pushed with bounded fetch-rebase-retry on non-fast-forward rejections.
//!
//! Until then it only re-exports the trait it implements.

pub use keel_core::Target;
