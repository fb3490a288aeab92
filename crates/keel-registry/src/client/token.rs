//! The token flow: credentials for a registry (static, credential helpers, a credential
//! source), `Authorization` for a request, and bearer tokens fetched from the realm a challenge
//! names.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use keel_core::body::BodyError;
use keel_core::registry::DockerConfigDocument;
use keel_core::{Error, ImageRef};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tracing::warn;

use crate::auth::Token;
use crate::credentials::{Credentials, DockerConfig};

use super::transport::read_body;
use super::{RegistryClient, registry_failure, without_url};

/// The largest token answer read from an auth server.
const MAX_TOKEN_ANSWER_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl RegistryClient {
    /// Refuses a token realm that credentials must not go to: anything but `https`, except
    /// plain `http` to a loopback address or to a host marked insecure, or for a registry
    /// marked insecure. The realm may be another host than the registry (Docker Hub's is
    /// `auth.docker.io`): the registry's own challenge names it.
    pub(super) fn check_realm(
        &self,
        registry: &str,
        realm: &reqwest::Url,
        action: &str,
    ) -> Result<(), Error> {
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

    /// The credentials for `image`'s repository: the first document of the credential source
    /// with an entry for its registry, else the static configuration.
    pub(super) async fn credentials(&self, image: &ImageRef) -> Result<Credentials, Error> {
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

    /// Who the client is at a registry when it sends `credentials`: `anonymous`, or a salted
    /// hash of the credentials (never shown). Tokens and cached answers are kept by it, so
    /// that what was got with one set of credentials never answers a request made with
    /// another: two tenants' pull secrets for one repository, a password rotated or revoked.
    pub(super) fn identity(&self, credentials: &Credentials) -> String {
        let (kind, user, secret) = match credentials {
            Credentials::Anonymous => return "anonymous".to_owned(),
            Credentials::Basic { username, password } => ("basic", username.as_str(), password),
            Credentials::IdentityToken(token) => ("identity-token", "", token),
            Credentials::Bearer(token) => ("bearer", "", token),
        };
        let mut hash = Sha256::new();
        hash.update(self.inner.identity_salt);
        for part in [kind, user, secret.expose()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        hex::encode(&hash.finalize()[..16])
    }

    /// The [identity](Self::identity) of the credentials a request for `image` sends now.
    pub(super) async fn identity_for(&self, image: &ImageRef) -> Result<String, Error> {
        Ok(self.identity(&self.credentials(image).await?))
    }

    pub(super) fn parse_document(
        &self,
        document: &DockerConfigDocument,
    ) -> Result<Arc<DockerConfig>, Error> {
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

    pub(super) fn unauthorized(&self, registry: &str, action: &str, reason: &str) -> Error {
        Error::Unauthorized {
            action: format!("{action} at registry {registry}"),
            reason: reason.to_owned(),
        }
    }

    pub(super) async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        image: &ImageRef,
        scope: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let registry = image.registry();
        let credentials = self.credentials(image).await?;
        let key = (
            registry.to_owned(),
            scope.to_owned(),
            self.identity(&credentials),
        );
        let token = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
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
        match credentials {
            Credentials::Basic { username, password } if basic => {
                Ok(request.basic_auth(username, Some(password.expose())))
            }
            Credentials::Bearer(token) => Ok(request.bearer_auth(token.expose())),
            _ => Ok(request),
        }
    }

    /// Gets a bearer token from the registry's auth server and keeps it until it expires.
    pub(super) async fn fetch_token(
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
                (
                    registry.to_owned(),
                    scope.to_owned(),
                    self.identity(&credentials),
                ),
                Token::new(value, answer.expires_in),
            );
        Ok(())
    }
}
