//! Test support for the integration tests of keel-registry.
//!
//! - [`RegistryServer`]: a throw-away registry started by `scripts/registry-server` (the CNCF
//!   distribution server, anonymous, with htpasswd basic auth or with bearer tokens; or a
//!   paginating ferro-oci-server), stopped on drop.
//! - [`Seeder`] (also reachable as methods of [`RegistryServer`]): pushes images, indexes,
//!   Docker schema 2 manifests and many tags over the distribution API.
//! - [`TokenIssuer`]: a token server signing ES256 JWTs with an `x5c` chain the registry trusts.
//! - [`FaultProxy`]: a forwarding proxy that injects faults (429, 5xx, delays, truncated or
//!   oversized bodies, looping `Link` headers) and counts requests.
//!
//! Each test file uses it as `mod support;`, so helpers that one file does not use are fine.
#![allow(dead_code, unused_imports)]

mod blob;
mod http;
mod proxy;
mod registry;
mod seed;
mod token;

pub(crate) use blob::Layer;
pub(crate) use http::{Body, BodyError, full, respond, serve};
pub(crate) use proxy::{Fault, FaultProxy, FaultRule};
pub(crate) use registry::{RegistryServer, ServerAuth, ServerOptions};
pub(crate) use seed::{Created, IndexDigests, Seeder, SeederAuth, media_type};
pub(crate) use token::{IssuedToken, TokenIssuer};

/// The media types the seeders push, for `Accept` headers in tests.
pub(crate) const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The root of the repository (where `scripts/` lives), found upwards from the package that
/// includes this support code (keel-registry, the CLI's tests, the benches).
pub(crate) fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/registry-server").is_file())
        .expect("the package lies inside the keel-rs repository")
        .to_path_buf()
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
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
