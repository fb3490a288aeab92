//! The registry client: HTTP, auth, retries, limits, pagination and caching.
//!
//! One file per concern: [`builder`] (settings and construction), [`transport`] (sending,
//! retries, limits), [`token`] (credentials and bearer tokens) and [`oci`] (tags, digests,
//! manifests, the `Registry` implementation).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_core::registry::{CredentialSource, TagList};
use keel_core::{Digest, Error, ImageRef};
use reqwest::header::HeaderMap;

use crate::auth::Token;
use crate::cache::TtlCache;
use crate::credentials::{CredentialHelpers, DockerConfig, normalize_host};
use crate::limiter::HostLimiter;

mod builder;
mod oci;
#[cfg(test)]
mod tests;
mod token;
mod transport;

pub use builder::RegistryClientBuilder;
pub(crate) use builder::Settings;
pub(crate) use oci::next_link;

/// Counts of the HTTP requests a client made, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Tag-list pages fetched.
    pub tag_pages: u64,
    /// Manifest `HEAD`s.
    pub manifest_heads: u64,
    /// Manifest `GET`s.
    pub manifest_gets: u64,
    /// Blob `GET`s (image configs).
    pub blob_gets: u64,
    /// Token requests to an auth server.
    pub token_requests: u64,
    /// Requests repeated after a 429, 5xx or transport failure.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Stats {
    tag_pages: AtomicU64,
    manifest_heads: AtomicU64,
    manifest_gets: AtomicU64,
    blob_gets: AtomicU64,
    token_requests: AtomicU64,
    retries: AtomicU64,
}

/// A [`Registry`](keel_core::Registry) for any registry that speaks the OCI Distribution API.
///
/// Cheap to clone; clones share connections, tokens, limits and caches.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    http: reqwest::Client,
    config: DockerConfig,
    /// Runs the credential helpers of `config`, and keeps their answers for a while.
    helpers: CredentialHelpers,
    source: Option<Arc<dyn CredentialSource>>,
    /// Documents of the credential source, parsed, by their contents.
    parsed: Mutex<HashMap<Arc<str>, Arc<DockerConfig>>>,
    /// Bearer tokens by registry, scope and [identity](RegistryClient::identity).
    tokens: Mutex<HashMap<(String, String, String), Token>>,
    /// Salts the [identity](RegistryClient::identity) of credentials, per client.
    identity_salt: [u8; 16],
    basic_hosts: Mutex<HashSet<String>>,
    limiters: Mutex<HashMap<String, Arc<HostLimiter>>>,
    /// Tag lists by identity and repository.
    tags: TtlCache<(String, String), TagList>,
    /// Digests by identity, repository and tag.
    digests: TtlCache<(String, String, String), Digest>,
    stats: Stats,
    rate_remaining: Mutex<HashMap<String, u64>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials and tokens stay out of Debug output.
        f.debug_struct("RegistryClient")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// What kind of request, for counting and body limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TagPage,
    ManifestHead,
    ManifestGet,
    BlobGet,
}

/// A response read in full (within its cap).
struct Fetched {
    headers: HeaderMap,
    body: Vec<u8>,
    url: reqwest::Url,
}

impl RegistryClient {
    /// A builder with default settings and no credentials.
    pub fn builder() -> RegistryClientBuilder {
        RegistryClientBuilder::default()
    }

    /// How many requests of each kind this client (and its clones) made.
    pub fn stats(&self) -> RequestStats {
        let s = &self.inner.stats;
        RequestStats {
            tag_pages: s.tag_pages.load(Ordering::Relaxed),
            manifest_heads: s.manifest_heads.load(Ordering::Relaxed),
            manifest_gets: s.manifest_gets.load(Ordering::Relaxed),
            blob_gets: s.blob_gets.load(Ordering::Relaxed),
            token_requests: s.token_requests.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
        }
    }

    /// The last `RateLimit-Remaining` Docker Hub (or any registry sending it) reported for
    /// `host`.
    pub fn rate_limit_remaining(&self, host: &str) -> Option<u64> {
        self.inner
            .rate_remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&normalize_host(host))
            .copied()
    }

    fn scheme(&self, host: &str) -> &'static str {
        let local = matches!(bare_host(host), "localhost" | "127.0.0.1" | "[::1]");
        if local || self.marked_insecure(host) {
            "http"
        } else {
            "https"
        }
    }

    /// Whether `host` (`host` or `host:port`) was marked insecure by
    /// [`RegistryClientBuilder::with_insecure_registry`].
    fn marked_insecure(&self, host: &str) -> bool {
        let insecure = &self.inner.settings.insecure;
        let host = normalize_host(host);
        insecure.contains(&host) || insecure.contains(bare_host(&host))
    }

    /// The base URL of a registry's API: Docker Hub's API lives on `registry-1.docker.io`.
    fn base(&self, registry: &str) -> String {
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        format!("{}://{host}", self.scheme(registry))
    }

    fn limiter(&self, host: &str) -> Arc<HostLimiter> {
        let s = &self.inner.settings;
        self.inner
            .limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.to_owned())
            .or_insert_with(|| {
                Arc::new(HostLimiter::new(
                    s.requests_per_second,
                    s.concurrent_requests,
                ))
            })
            .clone()
    }

    fn count(&self, kind: Kind) {
        let s = &self.inner.stats;
        match kind {
            Kind::TagPage => &s.tag_pages,
            Kind::ManifestHead => &s.manifest_heads,
            Kind::ManifestGet => &s.manifest_gets,
            Kind::BlobGet => &s.blob_gets,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn body_limit(&self, kind: Kind) -> usize {
        let s = &self.inner.settings;
        match kind {
            Kind::TagPage => s.max_tag_list_bytes,
            Kind::ManifestHead | Kind::ManifestGet => s.max_manifest_bytes,
            Kind::BlobGet => s.max_config_bytes,
        }
    }
}

/// A failure of registry `registry` while doing `action`.
fn registry_failure(registry: &str, action: &str, message: String, retryable: bool) -> Error {
    Error::Backend {
        backend: format!("registry {registry}"),
        action: action.to_owned(),
        message,
        retryable,
        source: None,
    }
}

/// Parses a JSON answer, or says which document of which registry was not JSON.
fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    registry: &str,
    action: &str,
    what: &str,
) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| {
        registry_failure(
            registry,
            action,
            format!("{what} is not valid JSON: {e}"),
            false,
        )
    })
}

/// `host` without its `:port`.
fn bare_host(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(h, p)| {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

fn image_name(image: &ImageRef, kind: Kind, url: &str) -> String {
    match kind {
        Kind::TagPage => format!("repository {}", image.name()),
        _ => {
            let reference = url.rsplit('/').next().unwrap_or("");
            format!("{}:{reference}", image.name()).replace(":sha256:", "@sha256:")
        }
    }
}

/// A transport error's text without the URL (URLs may carry a token in a query).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the registry");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
