//! The `Registry` trait: where tags, digests and image metadata come from.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::reference::{Digest, ImageRef, Platform, Tag};

/// The tags of one repository, as listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagList {
    /// Tag names in the order the registry listed them.
    pub tags: Vec<String>,
    /// Whether the listing stopped at the backend's budget (pages or tags) before the end,
    /// so that callers can tell a short list from a cut one.
    pub truncated: bool,
}

/// What a registry knows about one image, for policies that need more than tag names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMetadata {
    /// When the image was created (from its config); for an index, the newest creation time
    /// among the platforms the backend was told to consider.
    pub created: Option<DateTime<Utc>>,
    /// The platforms of an index; one entry (or none, when unknown) for a single manifest.
    pub platforms: Vec<Platform>,
    /// The digest of the manifest (or index) the tag pointed at when it was read, when the
    /// backend knows it: metadata is immutable per digest, so callers may keep it as long as
    /// the tag still points there.
    pub digest: Option<Digest>,
}

/// A source of tags and digests: an OCI registry, or the in-memory one of the tests.
///
/// Contract:
/// - `list_tags` lists every tag of the repository named by `image` (its tag and digest are
///   ignored), bounded by the backend's budget, with [`TagList::truncated`] set when the
///   budget cut it. A repository that does not exist is [`Error::NotFound`].
/// - `resolve_digest` resolves a tag to the digest of the manifest (or index) it points at
///   now; a missing tag or repository is [`Error::NotFound`].
/// - `confirm_digest` is `resolve_digest` without any cache.
/// - `metadata` is optional: backends that cannot read it return [`Error::NotSupported`],
///   which is the default.
/// - Credentials never appear in errors, logs or `Debug` output.
///
/// The trait is object-safe; the pipeline holds an `Arc<dyn Registry>`.
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug {
    /// A short name for messages, e.g. `registry ghcr.io`.
    fn name(&self) -> &str;

    /// Lists the tags of the repository `image` names.
    async fn list_tags(&self, image: &ImageRef) -> Result<TagList>;

    /// Resolves `tag` in the repository `image` names to its current digest.
    async fn resolve_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest>;

    /// Resolves `tag` like [`resolve_digest`](Self::resolve_digest), but right now and never
    /// from a cache: the pipeline asks it right before applying an update bound to a digest
    /// (an approved one), so that a tag pushed again since the vote is not rolled out. The
    /// default calls `resolve_digest`, which is right for backends that do not cache.
    async fn confirm_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest> {
        self.resolve_digest(image, tag).await
    }

    /// Reads the metadata of `tag` in the repository `image` names.
    async fn metadata(&self, image: &ImageRef, tag: &Tag) -> Result<ImageMetadata> {
        let _ = (image, tag);
        Err(Error::not_supported("image metadata", self.name()))
    }
}

/// Conveniences on top of [`Registry`], for every implementation.
#[async_trait]
pub trait RegistryExt: Registry {
    /// The digest `image` runs: its own digest when it is pinned, else its tag's digest now.
    async fn digest_of(&self, image: &ImageRef) -> Result<Digest> {
        if let Some(d) = image.digest() {
            return Ok(d.clone());
        }
        match image.tag() {
            Some(tag) => self.resolve_digest(image, tag).await,
            None => Err(Error::not_found(format!("tag of {image}"))),
        }
    }
}

impl<R: Registry + ?Sized> RegistryExt for R {}

/// The format of a Docker credentials document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DockerConfigFormat {
    /// Docker's `config.json` (`{"auths": {...}}`), as in a `kubernetes.io/dockerconfigjson`
    /// secret's `.dockerconfigjson` key.
    ConfigJson,
    /// The legacy `.dockercfg` (`{"host": {"auth": ...}}`), as in a
    /// `kubernetes.io/dockercfg` secret.
    Dockercfg,
}

/// One Docker credentials document from outside the registry backend, e.g. the contents of a
/// Kubernetes pull secret.
#[derive(Clone, PartialEq, Eq, Hash, derive_more::Debug)]
pub struct DockerConfigDocument {
    /// Where it came from, for messages, e.g. `secret prod/regcred`. Never a credential.
    pub origin: String,
    /// How `json` is laid out.
    pub format: DockerConfigFormat,
    /// The document itself. It holds credentials: it is never logged or shown by `Debug`.
    #[debug(skip)]
    pub json: std::sync::Arc<str>,
}

/// A live source of registry credentials kept outside the registry backend: the pull secrets
/// of the Kubernetes workloads that run an image, say.
///
/// A registry backend that is given a source asks it, for every request about a repository,
/// which documents apply to that repository, and tries them in order (most specific first)
/// before its own static configuration. The answer may change at any time (a secret was
/// rotated); backends must not cache credentials beyond the documents' contents.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The documents that may hold credentials for the repository `image` names, most
    /// specific first; empty when none apply.
    fn docker_configs(&self, image: &ImageRef) -> Vec<DockerConfigDocument>;
}

/// Several [`CredentialSource`]s as one: the documents of each source for a repository, in
/// the order the sources were added (add the most specific first), e.g. the pull secrets an
/// Argo CD Application names for its image before the pull secrets of the cluster's
/// workloads.
///
/// ```
/// use std::sync::Arc;
/// use keel_core::registry::{CredentialChain, CredentialSource, DockerConfigDocument};
/// use keel_core::ImageRef;
///
/// #[derive(Debug)]
/// struct None;
/// impl CredentialSource for None {
///     fn docker_configs(&self, _: &ImageRef) -> Vec<DockerConfigDocument> {
///         Vec::new()
///     }
/// }
/// let chain = CredentialChain::default().with(Arc::new(None)).with(Arc::new(None));
/// assert!(chain.docker_configs(&ImageRef::parse("nginx").unwrap()).is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CredentialChain {
    sources: Vec<Arc<dyn CredentialSource>>,
}

impl CredentialChain {
    /// The chain with `source` asked after the sources already in it.
    pub fn with(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.sources.push(source);
        self
    }
}

impl CredentialSource for CredentialChain {
    fn docker_configs(&self, image: &ImageRef) -> Vec<DockerConfigDocument> {
        self.sources
            .iter()
            .flat_map(|s| s.docker_configs(image))
            .collect()
    }
}
