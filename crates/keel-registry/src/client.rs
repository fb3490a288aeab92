//! The registry client: HTTP, auth, retries, limits, pagination and caching.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_core::body::{BodyError, read_bounded};
use keel_core::registry::{
    CredentialSource, DockerConfigDocument, ImageMetadata, Registry, TagList,
};
use keel_core::retry::{Backoff, parse_retry_after};
use keel_core::{Digest, Error, ImageRef, Platform, Tag};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tracing::{debug, warn};

use crate::auth::{Challenge, Token, parse_challenge};
use crate::cache::TtlCache;
use crate::credentials::{
    CredentialHelpers, Credentials, DEFAULT_HELPER_CACHE_TTL, DEFAULT_HELPER_TIMEOUT, DockerConfig,
    normalize_host,
};
use crate::limiter::{HostLimiter, MAX_INTERVAL};

/// The largest token answer read from an auth server.
const MAX_TOKEN_ANSWER_BYTES: usize = 1 << 20;

/// The largest error body read for the registry's own message; a longer one is not shown.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// Manifest media types we accept, most specific first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

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
    settings: Settings,
    config: DockerConfig,
    source: Option<Arc<dyn CredentialSource>>,
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
    /// 100,000); a listing cut by it is marked [`TagList::truncated`].
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
    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
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
        let http = http.build().map_err(|e| Error::Backend {
            backend: "registry client".into(),
            action: "build the HTTP client".into(),
            message: e.to_string(),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
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
                basic_hosts: Mutex::new(HashSet::new()),
                limiters: Mutex::new(HashMap::new()),
                stats: Stats::default(),
                rate_remaining: Mutex::new(HashMap::new()),
            }),
        })
    }
}

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

/// A [`Registry`] for any registry that speaks the OCI Distribution API.
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
    tokens: Mutex<HashMap<(String, String), Token>>,
    basic_hosts: Mutex<HashSet<String>>,
    limiters: Mutex<HashMap<String, Arc<HostLimiter>>>,
    tags: TtlCache<String, TagList>,
    digests: TtlCache<(String, String), Digest>,
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

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<PlatformField>,
}

#[derive(Deserialize)]
struct PlatformField {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
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

    /// Lists tags like [`Registry::list_tags`], reporting progress (tags so far) after each
    /// page, and bypassing the cache.
    pub async fn list_tags_with_progress(
        &self,
        image: &ImageRef,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<TagList, Error> {
        self.fetch_tags(image, progress).await
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

    /// Refuses a token realm that credentials must not go to: anything but `https`, except
    /// plain `http` to a loopback address or to a host marked insecure, or for a registry
    /// marked insecure. The realm may be another host than the registry (Docker Hub's is
    /// `auth.docker.io`): the registry's own challenge names it.
    fn check_realm(&self, registry: &str, realm: &reqwest::Url, action: &str) -> Result<(), Error> {
        let allowed = match realm.scheme() {
            "https" => true,
            "http" => {
                let host = realm.host_str().unwrap_or("");
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                let authority = match realm.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                loopback || self.marked_insecure(&authority) || self.marked_insecure(registry)
            }
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        Err(registry_failure(
            registry,
            action,
            format!(
                "the auth challenge names the token realm {}, which is not https: credentials \
                 go over plain http only to loopback addresses and to registries marked \
                 insecure",
                realm.origin().ascii_serialization()
            ),
            false,
        ))
    }

    /// Refuses `url` unless it is on the registry's own origin (scheme, host and port of
    /// [`base`](Self::base)), the only place its credentials and tokens go.
    fn check_origin(&self, registry: &str, url: &str, action: &str) -> Result<(), Error> {
        let base = self.base(registry);
        let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
        let target = origin(url);
        if target.is_some() && target == origin(&base) {
            return Ok(());
        }
        let named = target.map_or_else(|| url.to_owned(), |o| o.ascii_serialization());
        Err(registry_failure(
            registry,
            action,
            format!(
                "refusing to send a request for {base} to {named}, another origin: the \
                 registry's credentials go only to the registry"
            ),
            false,
        ))
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

    /// Sends one request to `image`'s registry with auth, limits and retries, and reads the
    /// body within its cap.
    async fn send(
        &self,
        image: &ImageRef,
        kind: Kind,
        url: &str,
        action: &str,
    ) -> Result<Fetched, Error> {
        let registry = image.registry();
        self.check_origin(registry, url, action)?;
        let scope = format!("repository:{}:pull", image.repository());
        let limiter = self.limiter(registry);
        let settings = &self.inner.settings;
        let method = if kind == Kind::ManifestHead {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut attempt = 0u32;
        let mut authenticated = false;
        loop {
            let permit = limiter.acquire().await;
            self.count(kind);
            let mut request = self.inner.http.request(method.clone(), url);
            if matches!(kind, Kind::ManifestHead | Kind::ManifestGet) {
                request = request.header(header::ACCEPT, MANIFEST_ACCEPT);
            }
            request = self.authorize(request, image, &scope).await?;
            let result = request.send().await;
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    drop(permit);
                    let retryable = e.is_timeout() || e.is_connect() || e.is_request();
                    if retryable && attempt < settings.max_retries {
                        attempt += 1;
                        self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                        let delay = settings.backoff.delay(attempt);
                        debug!(url, attempt, ?delay, error = %e, "retrying after a transport error");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    let what = if e.is_timeout() {
                        "timed out"
                    } else {
                        "could not connect"
                    };
                    return Err(Error::Backend {
                        backend: format!("registry {registry}"),
                        action: action.to_owned(),
                        message: format!("{what}: {}", without_url(&e)),
                        retryable,
                        source: Some(Box::new(e.without_url())),
                    });
                }
            };
            self.note_rate_limit(registry, response.headers());
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                authenticated = true;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                drop(permit);
                match challenge {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope: asked,
                    }) => {
                        let scope = asked.unwrap_or_else(|| scope.clone());
                        self.fetch_token(image, &realm, service.as_deref(), &scope, action)
                            .await?;
                        continue;
                    }
                    Some(Challenge::Basic) => {
                        if matches!(self.credentials(image).await?, Credentials::Basic { .. }) {
                            self.inner
                                .basic_hosts
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(registry.to_owned());
                            continue;
                        }
                        return Err(self.unauthorized(
                            registry,
                            action,
                            "the registry needs credentials and none are configured",
                        ));
                    }
                    None => {
                        return Err(self.unauthorized(
                            registry,
                            action,
                            "the registry refused the request without saying how to authenticate",
                        ));
                    }
                }
            }
            if status.is_success() {
                let headers = response.headers().clone();
                let url = response.url().clone();
                let body = if kind == Kind::ManifestHead {
                    Vec::new()
                } else {
                    self.read_capped(response, kind, registry, action).await?
                };
                drop(permit);
                return Ok(Fetched { headers, body, url });
            }
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            let detail = registry_message(response).await;
            drop(permit);
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let reason = format!(
                        "the registry refused {} ({}{detail})",
                        self.credentials(image)
                            .await
                            .map(|c| c.describe())
                            .unwrap_or_else(|_| "the credentials".into()),
                        status.as_u16()
                    );
                    return Err(self.unauthorized(registry, action, &reason));
                }
                StatusCode::NOT_FOUND => {
                    return Err(Error::NotFound {
                        what: format!("{} ({action})", image_name(image, kind, url)),
                    });
                }
                _ => {}
            }
            let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if transient && attempt < settings.max_retries {
                let too_long = retry_after.is_some_and(|d| d > settings.max_retry_after);
                if !too_long {
                    attempt += 1;
                    self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = retry_after.unwrap_or_else(|| settings.backoff.delay(attempt));
                    warn!(
                        url,
                        status = status.as_u16(),
                        attempt,
                        ?delay,
                        "registry asked to retry"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Error::RateLimited {
                    action: format!("{action} at registry {registry}"),
                    retry_after,
                });
            }
            return Err(registry_failure(
                registry,
                action,
                format!("HTTP {}{detail}", status.as_u16()),
                transient,
            ));
        }
    }

    /// The credentials for `image`'s repository: the first document of the credential source
    /// with an entry for its registry, else the static configuration.
    async fn credentials(&self, image: &ImageRef) -> Result<Credentials, Error> {
        let registry = image.registry();
        if let Some(source) = &self.inner.source {
            for document in source.docker_configs(image) {
                match self.parse_document(&document) {
                    Ok(config) => {
                        if let Some(credentials) = config.static_credentials(registry) {
                            return Ok(credentials);
                        }
                    }
                    // A broken secret must not hide the working ones after it.
                    Err(error) => warn!(origin = %document.origin, %error, "ignoring credentials"),
                }
            }
        }
        self.inner
            .config
            .credentials_with(registry, &self.inner.helpers)
            .await
    }

    fn parse_document(&self, document: &DockerConfigDocument) -> Result<Arc<DockerConfig>, Error> {
        let mut parsed = self.inner.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = parsed.get(&document.json) {
            return Ok(config.clone());
        }
        let config = Arc::new(DockerConfig::from_document(document)?);
        // Rotated secrets leave stale entries behind; start over rather than grow.
        if parsed.len() >= 256 {
            parsed.clear();
        }
        parsed.insert(document.json.clone(), config.clone());
        Ok(config)
    }

    fn unauthorized(&self, registry: &str, action: &str, reason: &str) -> Error {
        Error::Unauthorized {
            action: format!("{action} at registry {registry}"),
            reason: reason.to_owned(),
        }
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        image: &ImageRef,
        scope: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let registry = image.registry();
        let token = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(registry.to_owned(), scope.to_owned()))
            .filter(|t| t.is_fresh())
            .map(|t| t.value.clone());
        if let Some(token) = token {
            return Ok(request.bearer_auth(token));
        }
        let basic = self
            .inner
            .basic_hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(registry);
        match self.credentials(image).await? {
            Credentials::Basic { username, password } if basic => {
                Ok(request.basic_auth(username, Some(password.expose())))
            }
            Credentials::Bearer(token) => Ok(request.bearer_auth(token.expose())),
            _ => Ok(request),
        }
    }

    /// Gets a bearer token from the registry's auth server and keeps it until it expires.
    async fn fetch_token(
        &self,
        image: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        action: &str,
    ) -> Result<(), Error> {
        self.inner
            .stats
            .token_requests
            .fetch_add(1, Ordering::Relaxed);
        let registry = image.registry();
        let realm_url = reqwest::Url::parse(realm).map_err(|_| {
            registry_failure(
                registry,
                action,
                format!("the auth challenge names an invalid realm {realm:?}"),
                false,
            )
        })?;
        self.check_realm(registry, &realm_url, action)?;
        let credentials = self.credentials(image).await?;
        let mut params: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(service) = service {
            params.push(("service", service));
        }
        let request = match &credentials {
            Credentials::IdentityToken(refresh) => {
                params.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose()),
                    ("client_id", "keel-rs"),
                ]);
                self.inner.http.post(realm_url).form(&params)
            }
            Credentials::Basic { username, password } => self
                .inner
                .http
                .get(realm_url)
                .query(&params)
                .basic_auth(username, Some(password.expose())),
            _ => self.inner.http.get(realm_url).query(&params),
        };
        let failed = |message: String, retryable: bool| Error::Backend {
            backend: format!("auth server of {registry}"),
            action: format!("get a token to {action}"),
            message,
            retryable,
            source: None,
        };
        let response = request
            .send()
            .await
            .map_err(|e| failed(without_url(&e), e.is_timeout() || e.is_connect()))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(
                registry,
                action,
                &format!(
                    "the auth server refused {} ({})",
                    credentials.describe(),
                    status.as_u16()
                ),
            ));
        }
        if !status.is_success() {
            return Err(failed(
                format!("HTTP {}", status.as_u16()),
                status.is_server_error(),
            ));
        }
        let body = read_body(response, MAX_TOKEN_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => failed(
                    format!("the token answer is larger than the {limit}-byte limit"),
                    false,
                ),
                BodyError::Read(e) => failed(
                    format!("the token answer broke off: {}", without_url(&e)),
                    true,
                ),
            })?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the token answer is not valid JSON: {e}"), false))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("the token answer holds no token".into(), false))?;
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (registry.to_owned(), scope.to_owned()),
                Token::new(value, answer.expires_in),
            );
        Ok(())
    }

    fn note_rate_limit(&self, registry: &str, headers: &HeaderMap) {
        let Some(remaining) = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            return;
        };
        if remaining < 10 {
            warn!(registry, remaining, "registry rate limit almost used up");
        }
        self.inner
            .rate_remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_owned(), remaining);
    }

    async fn read_capped(
        &self,
        response: reqwest::Response,
        kind: Kind,
        registry: &str,
        action: &str,
    ) -> Result<Vec<u8>, Error> {
        read_body(response, self.body_limit(kind))
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => registry_failure(
                    registry,
                    action,
                    format!("the response is larger than the {limit}-byte limit"),
                    false,
                ),
                BodyError::Read(e) => registry_failure(
                    registry,
                    action,
                    format!("the response broke off: {}", without_url(&e)),
                    true,
                ),
            })
    }

    async fn fetch_tags(
        &self,
        image: &ImageRef,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<TagList, Error> {
        let settings = &self.inner.settings;
        let base = self.base(image.registry());
        let action = format!("list tags of {}", image.name());
        let mut url = format!(
            "{base}/v2/{}/tags/list?n={}",
            image.repository(),
            settings.page_size
        );
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        let mut pages = 0;
        loop {
            if !seen.insert(url.clone()) {
                return Err(Error::Backend {
                    backend: format!("registry {}", image.registry()),
                    action,
                    message: format!("pagination loops: the registry sent the link {url} twice"),
                    retryable: false,
                    source: None,
                });
            }
            let page = self.send(image, Kind::TagPage, &url, &action).await?;
            pages += 1;
            let parsed: TagPage =
                parse_json(&page.body, image.registry(), &action, "the tag list")?;
            tags.extend(parsed.tags.unwrap_or_default());
            progress(tags.len());
            let next = next_link(&page.headers, &page.url);
            if let Some(next) = &next
                && let Err(e) = self.check_origin(image.registry(), next, &action)
            {
                let message = match e {
                    Error::Backend { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(registry_failure(
                    image.registry(),
                    &action,
                    format!("the tag list links its next page to another origin: {message}"),
                    false,
                ));
            }
            if tags.len() > settings.max_tags {
                tags.truncate(settings.max_tags);
                return Ok(TagList {
                    tags,
                    truncated: true,
                });
            }
            // At exactly the budget a next page may still be empty: it is fetched (one page
            // over, bounded by the page size) so that "complete" is never guessed.
            match next {
                None => {
                    return Ok(TagList {
                        tags,
                        truncated: false,
                    });
                }
                Some(_) if pages >= settings.max_pages => {
                    return Ok(TagList {
                        tags,
                        truncated: true,
                    });
                }
                Some(next) => url = next,
            }
        }
    }

    async fn fetch_digest(&self, image: &ImageRef, reference: &str) -> Result<Digest, Error> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base(image.registry()),
            image.repository()
        );
        let action = format!("resolve {}:{reference}", image.name());
        let head = self.send(image, Kind::ManifestHead, &url, &action).await?;
        if let Some(digest) = head
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            return Ok(digest);
        }
        // No digest header: hash the manifest as served.
        let got = self.send(image, Kind::ManifestGet, &url, &action).await?;
        Ok(sha256_digest(&got.body))
    }

    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        action: &str,
    ) -> Result<(Manifest, String, Digest), Error> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base(image.registry()),
            image.repository()
        );
        let got = self.send(image, Kind::ManifestGet, &url, action).await?;
        let content_type = got
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let manifest: Manifest = parse_json(&got.body, image.registry(), action, "the manifest")?;
        let media_type = manifest.media_type.clone().unwrap_or(content_type);
        // The digest of the manifest as served: what the tag points at.
        let digest = sha256_digest(&got.body);
        Ok((manifest, media_type, digest))
    }

    async fn config_created(
        &self,
        image: &ImageRef,
        config_digest: &str,
        action: &str,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let url = format!(
            "{}/v2/{}/blobs/{config_digest}",
            self.base(image.registry()),
            image.repository()
        );
        let got = self.send(image, Kind::BlobGet, &url, action).await?;
        let config: ImageConfig =
            parse_json(&got.body, image.registry(), action, "the image config")?;
        Ok(config
            .created
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map(|c| c.with_timezone(&Utc)))
    }
}

#[async_trait]
impl Registry for RegistryClient {
    fn name(&self) -> &str {
        "OCI registry client"
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<TagList, Error> {
        self.inner
            .tags
            .get_or_fetch(&image.name(), || self.fetch_tags(image, &|_| {}))
            .await
    }

    async fn resolve_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest, Error> {
        let key = (image.name(), tag.as_str().to_owned());
        self.inner
            .digests
            .get_or_fetch(&key, || self.fetch_digest(image, tag.as_str()))
            .await
    }

    async fn confirm_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest, Error> {
        let digest = self.fetch_digest(image, tag.as_str()).await?;
        let key = (image.name(), tag.as_str().to_owned());
        self.inner.digests.put(&key, digest.clone()).await;
        Ok(digest)
    }

    async fn metadata(&self, image: &ImageRef, tag: &Tag) -> Result<ImageMetadata, Error> {
        let action = format!("read metadata of {}:{tag}", image.name());
        let (manifest, media_type, digest) =
            self.fetch_manifest(image, tag.as_str(), &action).await?;
        if let Some(entries) = manifest
            .manifests
            .filter(|_| media_type.contains("index") || media_type.contains("list"))
        {
            let mut platforms = Vec::new();
            let mut created: Option<DateTime<Utc>> = None;
            for entry in entries {
                let Some(p) = entry.platform else { continue };
                if p.os == "unknown" || p.architecture == "unknown" {
                    continue; // attestation manifests
                }
                let Ok(platform) = Platform::new(&p.os, &p.architecture, p.variant.as_deref())
                else {
                    continue;
                };
                if platform.matches(&self.inner.settings.platform) {
                    let (inner, ..) = self.fetch_manifest(image, &entry.digest, &action).await?;
                    if let Some(config) = inner.config {
                        let c = self.config_created(image, &config.digest, &action).await?;
                        created = created.max(c);
                    }
                }
                platforms.push(platform);
            }
            return Ok(ImageMetadata {
                created,
                platforms,
                digest: Some(digest),
            });
        }
        let created = match manifest.config {
            Some(config) => self.config_created(image, &config.digest, &action).await?,
            None => None,
        };
        Ok(ImageMetadata {
            created,
            platforms: Vec::new(),
            digest: Some(digest),
        })
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

fn sha256_digest(bytes: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
        .parse()
        .expect("a sha256 digest is valid")
}

/// The `rel="next"` target of a `Link` header, resolved against the page's URL.
pub(crate) fn next_link(headers: &HeaderMap, page: &reqwest::Url) -> Option<String> {
    for value in headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let Some((target, params)) = link.split_once(';') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                p.trim()
                    .replace(' ', "")
                    .eq_ignore_ascii_case("rel=\"next\"")
                    || p.trim().eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            return page.join(target).ok().map(String::from);
        }
    }
    None
}

/// The registry's own error message (`{"errors":[{"code":..,"message":..}]}`), if any.
async fn registry_message(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    // An error body past the limit (or broken off) is not shown rather than read on.
    let Ok(body) = read_body(response, MAX_ERROR_BODY_BYTES).await else {
        return String::new();
    };
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) if !e.errors.is_empty() => {
            let first = &e.errors[0];
            format!(": {} {}", first.code, first.message)
                .trim_end()
                .to_owned()
        }
        _ => String::new(),
    }
}

/// A response's body, read by the one bounded reader: at most `limit` bytes.
async fn read_body(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError<reqwest::Error>> {
    let announced = response.content_length();
    read_bounded(response.bytes_stream(), announced, limit).await
}

/// Why a redirect to `next` after `previous` is not followed, if it is not: after five, and
/// from `https` down to plain `http`, where the credentials on the request (which reqwest drops
/// only when the host or port changes) would cross the network in the clear.
fn redirect_refusal(next: &reqwest::Url, previous: &[reqwest::Url]) -> Option<String> {
    if previous.len() > 5 {
        return Some("more than 5 redirects".to_owned());
    }
    let downgrade = next.scheme() != "https" && previous.iter().any(|u| u.scheme() == "https");
    downgrade.then(|| {
        format!(
            "refusing a redirect from https down to {}",
            next.origin().ascii_serialization()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_budget_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let b = RegistryClientBuilder::from_lookup(env(&[])).unwrap();
        assert_eq!((b.settings.max_pages, b.settings.max_tags), (1000, 100_000));
        let b = RegistryClientBuilder::from_lookup(env(&[
            ("KEEL_LISTING_MAX_PAGES", "5000"),
            ("KEEL_LISTING_MAX_TAGS", " 500000 "),
        ]))
        .unwrap();
        assert_eq!((b.settings.max_pages, b.settings.max_tags), (5000, 500_000));
        for bad in ["0", "-1", "lots", ""] {
            let err = RegistryClientBuilder::from_lookup(move |name: &str| {
                (name == "KEEL_LISTING_MAX_TAGS").then(|| bad.to_owned())
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("KEEL_LISTING_MAX_TAGS"), "{err}");
        }
    }

    #[test]
    fn link_headers() {
        let page = reqwest::Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            r#"</v2/a/tags/list?last=b&n=2>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(
            next_link(&h, &page).as_deref(),
            Some("http://127.0.0.1:5000/v2/a/tags/list?last=b&n=2")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            r#"<https://r.example/v2/a/tags/list?last=c>; rel=next"#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h, &page).as_deref(),
            Some("https://r.example/v2/a/tags/list?last=c")
        );
        let mut h = HeaderMap::new();
        h.insert(header::LINK, r#"</x>; rel="prev""#.parse().unwrap());
        assert_eq!(next_link(&h, &page), None);
    }

    #[test]
    fn plain_http_only_where_allowed() {
        let c = RegistryClient::builder()
            .with_insecure_registry("registry.lan:5000")
            .build()
            .unwrap();
        assert_eq!(c.base("localhost:5000"), "http://localhost:5000");
        assert_eq!(c.base("127.0.0.1:41000"), "http://127.0.0.1:41000");
        assert_eq!(c.base("registry.lan:5000"), "http://registry.lan:5000");
        assert_eq!(c.base("registry.lan"), "https://registry.lan");
        assert_eq!(c.base("ghcr.io"), "https://ghcr.io");
        assert_eq!(c.base("docker.io"), "https://registry-1.docker.io");
    }

    #[test]
    fn token_realms_must_be_https_unless_loopback_or_insecure() {
        let c = RegistryClient::builder()
            .with_insecure_registry("registry.lan:5000")
            .with_insecure_registry("auth.lan")
            .build()
            .unwrap();
        let check = |registry: &str, realm: &str| {
            c.check_realm(registry, &reqwest::Url::parse(realm).unwrap(), "list tags")
        };
        for (registry, realm) in [
            ("ghcr.io", "https://ghcr.io/token"),
            ("docker.io", "https://auth.docker.io/token"),
            ("127.0.0.1:5000", "http://127.0.0.1:41000/token"),
            ("ghcr.io", "http://localhost:8080/token"),
            ("ghcr.io", "http://[::1]:8080/token"),
            ("ghcr.io", "http://127.8.9.10/token"),
            ("registry.lan:5000", "http://auth.example.com/token"),
            ("ghcr.io", "http://auth.lan:9000/token"),
        ] {
            assert!(check(registry, realm).is_ok(), "{registry} {realm}");
        }
        for (registry, realm) in [
            ("ghcr.io", "http://ghcr.io/token"),
            ("docker.io", "http://auth.docker.io/token"),
            // A loopback registry does not make a remote realm safe over plain http.
            ("127.0.0.1:5000", "http://auth.example.com/token"),
            ("registry.lan", "http://auth.example.com/token"),
            ("ghcr.io", "ftp://ghcr.io/token"),
        ] {
            let e = check(registry, realm).unwrap_err().to_string();
            assert!(e.contains("not https"), "{registry} {realm}: {e}");
            let origin = reqwest::Url::parse(realm).unwrap().origin();
            if origin.is_tuple() {
                assert!(e.contains(&origin.ascii_serialization()), "{e}");
            }
            assert!(e.contains(&format!("registry {registry}")), "{e}");
        }
    }

    #[test]
    fn only_the_registry_origin_gets_requests() {
        let c = RegistryClient::builder().build().unwrap();
        assert!(
            c.check_origin("ghcr.io", "https://ghcr.io/v2/a/tags/list?last=b", "x")
                .is_ok()
        );
        assert!(
            c.check_origin("docker.io", "https://registry-1.docker.io:443/v2/a", "x")
                .is_ok()
        );
        for url in [
            "https://evil.example/v2/a/tags/list",
            "http://ghcr.io/v2/a/tags/list",
            "https://ghcr.io:8443/v2/a/tags/list",
            "not a url",
        ] {
            let e = c.check_origin("ghcr.io", url, "list tags").unwrap_err();
            let text = e.to_string();
            assert!(text.contains("another origin"), "{url}: {text}");
            let named = reqwest::Url::parse(url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| url.to_owned());
            assert!(text.contains(&named), "{url}: {text}");
        }
    }

    #[test]
    fn redirects_never_downgrade_to_plain_http() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let tls = [url("https://r.example:8443/v2/a/tags/list")];
        let e = redirect_refusal(&url("http://r.example:8443/v2/a/tags/list"), &tls).unwrap();
        assert!(e.contains("http://r.example:8443"), "{e}");
        assert!(redirect_refusal(&url("http://cdn.example/blob"), &tls).is_some());
        assert_eq!(
            redirect_refusal(&url("https://cdn.example/blob"), &tls),
            None
        );
        let plain = [url("http://127.0.0.1:5000/v2/a/blobs/x")];
        assert_eq!(
            redirect_refusal(&url("http://127.0.0.1:9000/b"), &plain),
            None
        );
        let many: Vec<_> = (0..6)
            .map(|i| url(&format!("https://r.example/{i}")))
            .collect();
        assert!(redirect_refusal(&url("https://r.example/7"), &many).is_some());
        assert_eq!(
            redirect_refusal(&url("https://r.example/7"), &many[..5]),
            None
        );
    }

    #[test]
    fn rates_slower_than_one_per_hour_are_refused() {
        for rps in [1e-300, 1.0 / 7200.0] {
            let e = RegistryClient::builder()
                .with_requests_per_second(rps)
                .build()
                .unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
            assert!(e.to_string().contains("one request per hour"), "{e}");
            assert!(e.to_string().contains(&rps.to_string()), "{e}");
        }
        for rps in [0.0, 1.0 / 3600.0, 1e9, f64::INFINITY, f64::NAN, -1.0] {
            assert!(
                RegistryClient::builder()
                    .with_requests_per_second(rps)
                    .build()
                    .is_ok(),
                "{rps}"
            );
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RegistryClient::builder()
            .with_retries(5, Duration::from_millis(100), Duration::from_secs(1))
            .build()
            .unwrap();
        let backoff = c.inner.settings.backoff;
        for attempt in 1..8 {
            // Full jitter: anywhere from zero up to `base * 2^(attempt-1)`, capped.
            let d = backoff.delay(attempt);
            let ceiling =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert_eq!(backoff.ceiling(attempt), ceiling);
            assert!(d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn debug_hides_credentials() {
        let c = RegistryClient::builder()
            .with_credentials("ghcr.io", Credentials::basic("bot", "s3cr3t"))
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn sha256_of_bytes() {
        assert_eq!(
            sha256_digest(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
