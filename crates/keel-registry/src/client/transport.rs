//! Sending one request: the per-host limiter, the auth challenge loop, retries with backoff
//! (`keel_core::retry`) and `Retry-After`, redirects, and reading answers within their limits.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use keel_core::body::{BodyError, read_bounded};
use keel_core::retry::parse_retry_after;
use keel_core::{Error, ImageRef};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::auth::{Challenge, parse_challenge};
use crate::credentials::Credentials;

use super::{Fetched, Kind, RegistryClient, image_name, registry_failure, without_url};

/// The largest error body read for the registry's own message; a longer one is not shown.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// Manifest media types we accept, most specific first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

impl RegistryClient {
    /// Refuses `url` unless it is on the registry's own origin (scheme, host and port of
    /// [`base`](Self::base)), the only place its credentials and tokens go.
    pub(super) fn check_origin(
        &self,
        registry: &str,
        url: &str,
        action: &str,
    ) -> Result<(), Error> {
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

    /// Sends one request to `image`'s registry with auth, limits and retries, and reads the
    /// body within its cap.
    pub(super) async fn send(
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
                        source: Some(Arc::new(e.without_url())),
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

    pub(super) fn note_rate_limit(&self, registry: &str, headers: &HeaderMap) {
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

    pub(super) async fn read_capped(
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
}

/// The registry's own error message (`{"errors":[{"code":..,"message":..}]}`), if any.
pub(super) async fn registry_message(response: reqwest::Response) -> String {
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
pub(super) async fn read_body(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError<reqwest::Error>> {
    let announced = response.content_length();
    read_bounded(response.bytes_stream(), announced, limit).await
}

/// Why a redirect to `next` after `previous` is not followed, if it is not: after five, and
/// from `https` down to plain `http`, where the credentials on the request (which reqwest drops
/// only when the host or port changes) would cross the network in the clear.
pub(super) fn redirect_refusal(next: &reqwest::Url, previous: &[reqwest::Url]) -> Option<String> {
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
