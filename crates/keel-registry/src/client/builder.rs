//! Building a client: its settings, the builder's `with_*` setters and `from_env`, and the HTTP
//! client underneath (timeouts, redirects, extra CAs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::registry::CredentialSource;
use keel_core::retry::Backoff;
use keel_core::{Error, Platform};

use crate::cache::TtlCache;
use crate::credentials::{
    CredentialHelpers, Credentials, DEFAULT_HELPER_CACHE_TTL, DEFAULT_HELPER_TIMEOUT, DockerConfig,
    normalize_host,
};
use crate::limiter::MAX_INTERVAL;

use super::transport::redirect_refusal;
use super::{Inner, RegistryClient, Stats};

/// Tunables of a [`RegistryClient`], with defaults that are polite to public registries.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) insecure: HashSet<String>,
    pub(crate) extra_ca_pem: Vec<Vec<u8>>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) requests_per_second: f64,
    pub(crate) concurrent_requests: usize,
    pub(crate) page_size: usize,
    pub(crate) max_pages: usize,
    pub(crate) max_tags: usize,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_retry_after: Duration,
    pub(crate) cache_ttl: Duration,
    pub(crate) max_tag_list_bytes: usize,
    pub(crate) max_manifest_bytes: usize,
    pub(crate) max_config_bytes: usize,
    pub(crate) platform: Platform,
    pub(crate) helper_timeout: Duration,
    pub(crate) helper_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            insecure: HashSet::new(),
            extra_ca_pem: Vec::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            requests_per_second: 20.0,
            concurrent_requests: 8,
            page_size: 1000,
            max_pages: 1000,
            max_tags: 100_000,
            max_retries: 4,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            max_retry_after: Duration::from_secs(120),
            cache_ttl: Duration::from_secs(30),
            max_tag_list_bytes: 16 << 20,
            max_manifest_bytes: 4 << 20,
            max_config_bytes: 4 << 20,
            platform: "linux/amd64".parse().expect("valid platform"),
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
            helper_cache_ttl: DEFAULT_HELPER_CACHE_TTL,
        }
    }
}

/// Builds a [`RegistryClient`].
///
/// ```no_run
/// use std::time::Duration;
/// use keel_registry::{Credentials, RegistryClient};
///
/// let client = RegistryClient::builder()
///     .with_credentials("ghcr.io", Credentials::basic("bot", "token"))
///     .with_insecure_registry("registry.lan:5000")
///     .with_requests_per_second(5.0)
///     .with_timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Default)]
pub struct RegistryClientBuilder {
    pub(super) settings: Settings,
    pub(super) config: DockerConfig,
    pub(super) source: Option<Arc<dyn CredentialSource>>,
}

impl RegistryClientBuilder {
    /// Uses `config` for credentials (merged over what was there).
    pub fn with_docker_config(mut self, config: DockerConfig) -> Self {
        self.config.merge(config);
        self
    }

    /// Uses `credentials` for registry `host` (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub fn with_credentials(mut self, host: &str, credentials: Credentials) -> Self {
        self.config.insert(host, credentials);
        self
    }

    /// Asks `source` for credentials before the static configuration, on every request: the
    /// pull secrets of the workloads that run an image, say. Its documents are parsed for
    /// their `auths` only; credential helpers they name are never run, since their contents
    /// come from outside this process's configuration.
    pub fn with_credential_source(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Allows plain HTTP to `host` (`host` or `host:port`). `localhost`, `127.0.0.1` and
    /// `[::1]` are always allowed; every other host gets HTTPS.
    pub fn with_insecure_registry(mut self, host: &str) -> Self {
        self.settings.insecure.insert(normalize_host(host));
        self
    }

    /// Trusts the PEM certificates in `pem` besides the system roots.
    pub fn with_extra_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.extra_ca_pem.push(pem.into());
        self
    }

    /// The timeout of each request (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Requests per second to one registry host (default 20; 0 means no spacing). The
    /// slowest rate is one request per hour: [`build`](Self::build) refuses slower ones.
    pub fn with_requests_per_second(mut self, rps: f64) -> Self {
        self.settings.requests_per_second = rps.max(0.0);
        self
    }

    /// Requests in flight to one registry host (default 8).
    pub fn with_concurrent_requests(mut self, n: usize) -> Self {
        self.settings.concurrent_requests = n.max(1);
        self
    }

    /// Tags asked for per page (`n=`, default 1000).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.settings.page_size = n.max(1);
        self
    }

    /// The listing budget: at most `pages` pages and `tags` tags (defaults 1000 and
    /// 100,000); a listing cut by it is marked
    /// [`TagList::truncated`](keel_core::registry::TagList::truncated).
    pub fn with_listing_budget(mut self, pages: usize, tags: usize) -> Self {
        self.settings.max_pages = pages.max(1);
        self.settings.max_tags = tags.max(1);
        self
    }

    /// Retries of rate-limited and failed requests (default 4), with exponential backoff
    /// from `base` up to `max`, with jitter.
    pub fn with_retries(mut self, retries: u32, base: Duration, max: Duration) -> Self {
        self.settings.max_retries = retries;
        self.settings.backoff = Backoff::new(base, max);
        self
    }

    /// The longest `Retry-After` honoured by waiting (default 120 s); a registry asking for
    /// longer gets a [`Error::RateLimited`] back at once.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.settings.max_retry_after = max;
        self
    }

    /// How long tag lists and digests stay cached (default 30 s; zero disables the cache).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.settings.cache_ttl = ttl;
        self
    }

    /// Caps on response bodies: tag-list pages and manifests/configs (defaults 16 MiB and
    /// 4 MiB), so that a hostile registry cannot exhaust memory.
    pub fn with_body_limits(mut self, tag_list: usize, manifest: usize) -> Self {
        self.settings.max_tag_list_bytes = tag_list;
        self.settings.max_manifest_bytes = manifest;
        self.settings.max_config_bytes = manifest;
        self
    }

    /// How long a credential helper (`credHelpers`, `credsStore`) may run before it is
    /// stopped and the request fails (default
    /// [`DEFAULT_HELPER_TIMEOUT`](crate::DEFAULT_HELPER_TIMEOUT), 10 s).
    pub fn with_credential_helper_timeout(mut self, timeout: Duration) -> Self {
        self.settings.helper_timeout = timeout;
        self
    }

    /// How long a credential helper's answer for a registry is reused before the helper is
    /// asked again (default [`DEFAULT_HELPER_CACHE_TTL`](crate::DEFAULT_HELPER_CACHE_TTL),
    /// 5 minutes; zero asks on every request). At most 256 answers are kept.
    pub fn with_credential_helper_cache(mut self, ttl: Duration) -> Self {
        self.settings.helper_cache_ttl = ttl;
        self
    }

    /// The platform whose image `metadata` reads from an index (default `linux/amd64`).
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.settings.platform = platform;
        self
    }

    /// Settings from the environment: credentials from Docker's `config.json`
    /// (`$DOCKER_CONFIG` or `~/.docker`), plain-HTTP hosts from `KEEL_INSECURE_REGISTRIES`
    /// (comma-separated), and the listing budget from `KEEL_LISTING_MAX_PAGES` and
    /// `KEEL_LISTING_MAX_TAGS` (see [`with_listing_budget`](Self::with_listing_budget)).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the variable when a budget is not a whole number of at
    /// least 1; what [`DockerConfig::from_env`] returns for an unreadable `config.json`.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `var`.
    pub(super) fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut builder =
            RegistryClientBuilder::default().with_docker_config(DockerConfig::from_env()?);
        if let Some(hosts) = var("KEEL_INSECURE_REGISTRIES") {
            for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                builder = builder.with_insecure_registry(host);
            }
        }
        let budget = |name: &'static str, default: usize| -> Result<usize, Error> {
            let Some(value) = var(name) else {
                return Ok(default);
            };
            match value.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(keel_core::ParseError::new(
                    name,
                    value.clone(),
                    "the listing budget must be a whole number of at least 1",
                )
                .into()),
            }
        };
        let pages = budget("KEEL_LISTING_MAX_PAGES", builder.settings.max_pages)?;
        let tags = budget("KEEL_LISTING_MAX_TAGS", builder.settings.max_tags)?;
        Ok(builder.with_listing_budget(pages, tags))
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a request rate slower than one per hour, or an extra CA
    /// bundle that is not PEM; [`Error::Backend`] when the HTTP client cannot be set up.
    pub fn build(self) -> Result<RegistryClient, Error> {
        let rps = self.settings.requests_per_second;
        if rps > 0.0 && rps < 1.0 / MAX_INTERVAL.as_secs_f64() {
            return Err(keel_core::ParseError::new(
                "requests per second",
                rps.to_string(),
                "is below the slowest rate, one request per hour (1/3600); use 0 for no \
                 spacing",
            )
            .into());
        }
        let mut http = reqwest::Client::builder()
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.connect_timeout)
            .user_agent(concat!("keel-rs/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(
                |attempt| match redirect_refusal(attempt.url(), attempt.previous()) {
                    Some(reason) => attempt.error(reason),
                    None => attempt.follow(),
                },
            ));
        for pem in &self.settings.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                keel_core::ParseError::new("CA certificate", "extra CA bundle", e.to_string())
            })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| Error::backend("registry client", "build the HTTP client", e))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                tags: TtlCache::new(self.settings.cache_ttl),
                digests: TtlCache::new(self.settings.cache_ttl),
                helpers: CredentialHelpers::new(
                    self.settings.helper_timeout,
                    self.settings.helper_cache_ttl,
                ),
                settings: self.settings,
                http,
                config: self.config,
                source: self.source,
                parsed: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                identity_salt: random_salt(),
                basic_hosts: Mutex::new(HashSet::new()),
                limiters: Mutex::new(HashMap::new()),
                stats: Stats::default(),
                rate_remaining: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// 16 bytes no other client has: the keys of two fresh [`RandomState`]s, which the
/// standard library seeds from the operating system's random source.
///
/// [`RandomState`]: std::collections::hash_map::RandomState
fn random_salt() -> [u8; 16] {
    use std::hash::BuildHasher;
    let half = || std::collections::hash_map::RandomState::new().hash_one(0u8);
    let mut salt = [0; 16];
    salt[..8].copy_from_slice(&half().to_le_bytes());
    salt[8..].copy_from_slice(&half().to_le_bytes());
    salt
}
