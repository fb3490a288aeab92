//! The OCI Distribution registry backend of keel-rs.
//!
//! [`RegistryClient`] implements [`keel_core::Registry`] for every registry that speaks the
//! OCI Distribution API: Docker Hub, GHCR, Quay, Harbor, ECR, GCR/GAR, ACR, GitLab and the
//! CNCF `distribution` server.
//!
//! - **Tags**: follows `Link` pagination (`n=` pages) within a budget of pages and tags; a cut
//!   listing is marked [`TagList::truncated`](keel_core::TagList), a link that repeats is an
//!   error rather than a hang.
//! - **Digests**: `HEAD` on the manifest (`Docker-Content-Digest`; a `HEAD` does not count
//!   against Docker Hub's pull limit), falling back to `GET` and hashing the body.
//! - **Metadata**, only when a policy or an image's platforms ask: creation time and platform
//!   from the image config; for an index, the platforms, and the newest creation time among
//!   those matching the configured platform.
//! - **Auth**: anonymous, basic, and the bearer-token flow (`WWW-Authenticate: Bearer`), with
//!   tokens reused until they expire; credentials from Docker's `config.json` (`auths`,
//!   `credHelpers`, `credsStore`) and `kubernetes.io/dockerconfigjson` secrets
//!   ([`DockerConfig`]). Credentials never appear in errors, logs or `Debug` output.
//!   Credentials and tokens go only to the registry's own origin (a `Link` to another origin
//!   is an error naming it) and to the token realm its challenge names, which must be `https`
//!   unless it is a loopback address or the registry is marked insecure. Credential helpers
//!   run as child processes awaited off the async threads, are stopped after a timeout, and
//!   their answers are reused for a few minutes.
//! - **Good citizenship**: a per-host limiter (requests per second and in flight), `Retry-After`
//!   on 429/503 with bounded exponential backoff and jitter, Docker Hub's
//!   `RateLimit-Remaining` surfaced, timeouts on every request, capped response bodies, and a
//!   TTL cache of tag lists and digests so that many tracked images of one repository cost one
//!   listing. Cached answers and bearer tokens are kept per set of credentials (by a salted
//!   hash, never shown): what one tenant's pull secret fetched never answers a request sent
//!   with another's, or with none. Every body (tag lists, manifests, token answers, error bodies) is read through
//!   keel-core's one bounded reader, and lifetimes a server sends saturate rather than
//!   overflow the clock.
//! - **Transport**: HTTPS with the system roots plus optional extra CAs; plain HTTP only for
//!   hosts marked insecure, and for `localhost`/`127.0.0.1`.
//!
//! The HTTP layer is written here on `reqwest` rather than taken from `oci-client`: that
//! crate's `list_tags` does not follow `Link` headers, it does not expose `Retry-After` or
//! `RateLimit-Remaining`, reads bodies without a cap and keeps its token cache to itself,
//! which are the parts this backend exists for.
//!
//! ```no_run
//! use keel_core::{ImageRef, Registry};
//! use keel_registry::RegistryClient;
//!
//! # async fn run() -> Result<(), keel_core::Error> {
//! let client = RegistryClient::builder().build()?;
//! let image = ImageRef::parse("ghcr.io/acme/web:1.2.3")?;
//! let tags = client.list_tags(&image).await?;
//! println!("{} tags{}", tags.tags.len(), if tags.truncated { " (truncated)" } else { "" });
//! # Ok(()) }
//! ```

mod auth;
mod cache;
mod client;
mod credentials;
#[doc(hidden)]
pub mod fuzzing;
mod limiter;

pub use client::{RegistryClient, RegistryClientBuilder, RequestStats};
pub use credentials::{
    Credentials, DEFAULT_HELPER_CACHE_TTL, DEFAULT_HELPER_TIMEOUT, DockerConfig, Secret,
    normalize_host,
};
pub use keel_core::Registry;
