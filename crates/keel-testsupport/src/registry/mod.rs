//! Registries for the integration tests (feature `registry`).
//!
//! - [`RegistryServer`]: a throw-away registry started by `scripts/registry-server` (the CNCF
//!   distribution server, anonymous, with htpasswd basic auth or with bearer tokens; or a
//!   paginating ferro-oci-server), stopped on drop.
//! - [`Seeder`] (also reachable as methods of [`RegistryServer`]): pushes images, indexes,
//!   Docker schema 2 manifests and many tags over the distribution API.
//! - [`TokenIssuer`]: a token server signing ES256 JWTs with an `x5c` chain the registry trusts.
//! - [`FaultProxy`]: a forwarding proxy that injects faults (429, 5xx, delays, truncated or
//!   oversized bodies, looping `Link` headers) and counts requests.

mod blob;
mod http;
mod proxy;
mod seed;
mod server;
mod token;

pub use http::{Body, BodyError, full, respond, serve};
pub use proxy::{Fault, FaultProxy, FaultRule};
pub use seed::{
    Created, DEFAULT_CREATED, IndexDigests, ListFormat, Seeder, SeederAuth, media_type,
};
pub use server::{RegistryServer, ServerAuth, ServerOptions};
pub use token::{ISSUER, IssuedToken, SERVICE, TokenIssuer, query_pairs, token_claims};

/// The media types the seeders push, for `Accept` headers in tests.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let hash = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
