//! A client of the API, for the chat bot, CLIs and tests.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, AuditEntry, AuditQuery, VoteKind, validate_request_id,
};
use keel_core::body::{BodyError, read_bounded};
use keel_core::retry::parse_retry_after;
use keel_core::{Error, ParseError};
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::ErrorBody;
use crate::server::{ApprovalList, AuditPage, VoteBody};

/// How long one API call may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer the client reads by default (16 MiB); see
/// [`ApiClient::with_max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// The most of an error answer read for its reason; a longer one is reported by its status.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// Talks to a keel API server (see [`router`](crate::router)).
///
/// Every answer the server refuses maps back onto the [`Error`] variant it came from: 400 is
/// [`Error::InvalidInput`], 401 and 403 [`Error::Unauthorized`], 404 [`Error::NotFound`], 409
/// [`Error::Conflict`], 429 [`Error::RateLimited`], anything else [`Error::Backend`] (retryable
/// for 502, 503, 504 and transport failures). Credentials never appear in `Debug` or in
/// errors.
///
/// ```no_run
/// use keel_api::ApiClient;
/// use keel_core::approval::{ApprovalFilter, ApprovalState};
///
/// # async fn run() -> Result<(), keel_core::Error> {
/// let client = ApiClient::new("http://127.0.0.1:8300")?.with_bearer_token("a-long-random-token");
/// for request in client.list(&ApprovalFilter::state(ApprovalState::Pending)).await? {
///     println!("{} {}", request.id, request.plan);
/// }
/// client.approve("0a1b2c3d4e5f6789", None, Some("looks good")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, derive_more::Debug)]
pub struct ApiClient {
    #[debug(skip)]
    http: reqwest::Client,
    #[debug("{:?}", base.as_str())]
    base: Url,
    #[debug(skip)]
    auth: Option<HeaderValue>,
    auth_kind: &'static str,
    /// Set when the credentials cannot be sent; every call then fails with it.
    #[debug(skip)]
    auth_error: Option<&'static str>,
    timeout: Duration,
    max_body_bytes: usize,
}

impl ApiClient {
    /// A client of the API at `base_url` (`http://` or `https://`, optionally with a path
    /// prefix), without credentials until [`with_bearer_token`](Self::with_bearer_token) or
    /// [`with_basic_auth`](Self::with_basic_auth).
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let mut base = Url::parse(base_url)
            .map_err(|e| ParseError::new("keel API URL", base_url, e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(
                ParseError::new("keel API URL", base_url, "must be http:// or https://").into(),
            );
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ParseError::new(
                "keel API URL",
                base.host_str().unwrap_or_default(),
                "must not hold credentials; use a bearer token or basic auth instead",
            )
            .into());
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ParseError::new(
                "keel API URL",
                base.host_str().unwrap_or_default(),
                "must not have a query or fragment",
            )
            .into());
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            // Credentials go to the configured server only, never along a redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::backend("keel API client", "build the HTTP client", e))?;
        Ok(ApiClient {
            http,
            base,
            auth: None,
            auth_kind: "none",
            auth_error: None,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn with_bearer_token(mut self, token: &str) -> Self {
        self.set_auth("bearer", &format!("Bearer {token}"));
        self
    }

    /// Sends HTTP basic authentication.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let raw = format!("{user}:{password}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        self.set_auth("basic", &format!("Basic {encoded}"));
        self
    }

    fn set_auth(&mut self, kind: &'static str, value: &str) {
        self.auth_kind = kind;
        match HeaderValue::from_str(value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                self.auth = Some(v);
                self.auth_error = None;
            }
            Err(_) => {
                self.auth = None;
                self.auth_error =
                    Some("the credentials hold characters not allowed in an HTTP header");
            }
        }
    }

    /// Gives up on a call after `timeout` (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuses answers larger than `bytes` (default [`DEFAULT_MAX_BODY_BYTES`]): a call
    /// whose answer passes it fails with an [`Error::Backend`] naming the limit, having read
    /// no more than that.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The requests matching `filter`.
    pub async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRequest>, Error> {
        let mut url = self.url(&["v1", "approvals"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = filter.state {
                q.append_pair("state", s.as_str());
            }
            if let Some(t) = &filter.target {
                q.append_pair("target", t);
            }
            if let Some(i) = &filter.id {
                q.append_pair("image", i);
            }
        }
        let list: ApprovalList = self
            .call(Method::GET, url, None, "list approval requests".into())
            .await?;
        Ok(list.approvals)
    }

    /// The request `id`; [`Error::NotFound`] when there is none.
    pub async fn get(&self, id: &str) -> Result<ApprovalRequest, Error> {
        validate_request_id(id)?;
        let url = self.url(&["v1", "approvals", id]);
        self.call(Method::GET, url, None, format!("get approval request {id}"))
            .await
    }

    /// Votes yes on request `id`. `voter` is required with a delegate token and must be
    /// absent (or the credential's own name) otherwise.
    pub async fn approve(
        &self,
        id: &str,
        voter: Option<&str>,
        comment: Option<&str>,
    ) -> Result<ApprovalRequest, Error> {
        self.vote(id, VoteKind::Approve, voter, comment).await
    }

    /// Votes no on request `id`; see [`approve`](Self::approve).
    pub async fn reject(
        &self,
        id: &str,
        voter: Option<&str>,
        comment: Option<&str>,
    ) -> Result<ApprovalRequest, Error> {
        self.vote(id, VoteKind::Reject, voter, comment).await
    }

    /// Votes `kind` on request `id`; returns the request as it stands after the vote.
    pub async fn vote(
        &self,
        id: &str,
        kind: VoteKind,
        voter: Option<&str>,
        comment: Option<&str>,
    ) -> Result<ApprovalRequest, Error> {
        validate_request_id(id)?;
        let verb = match kind {
            VoteKind::Approve => "approve",
            VoteKind::Reject => "reject",
        };
        let url = self.url(&["v1", "approvals", id, verb]);
        let body = VoteBody {
            voter: voter.map(str::to_owned),
            comment: comment.map(str::to_owned),
        };
        let body = serde_json::to_vec(&body).map_err(|e| Error::Backend {
            backend: self.backend(),
            action: format!("{verb} approval request {id}"),
            message: format!("cannot encode the vote: {e}"),
            retryable: false,
            source: Some(Arc::new(e)),
        })?;
        self.call(
            Method::POST,
            url,
            Some(body),
            format!("{verb} approval request {id}"),
        )
        .await
    }

    /// Deletes request `id` and returns it; `actor` as for [`approve`](Self::approve)'s voter.
    pub async fn delete(&self, id: &str, actor: Option<&str>) -> Result<ApprovalRequest, Error> {
        validate_request_id(id)?;
        let mut url = self.url(&["v1", "approvals", id]);
        if let Some(a) = actor {
            url.query_pairs_mut().append_pair("actor", a);
        }
        self.call(
            Method::DELETE,
            url,
            None,
            format!("delete approval request {id}"),
        )
        .await
    }

    /// One page of the audit log: the entries matching `query`, at most its `limit` (the
    /// server's default and cap apply). Page on with `since_seq` = the last entry's `seq`.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        let mut url = self.url(&["v1", "audit"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(r) = &query.request {
                q.append_pair("request", r);
            }
            if let Some(t) = &query.target {
                q.append_pair("target", t);
            }
            if let Some(s) = query.since_seq {
                q.append_pair("since", &s.to_string());
            }
            if let Some(l) = query.limit {
                q.append_pair("limit", &l.to_string());
            }
        }
        let page: AuditPage = self
            .call(Method::GET, url, None, "read the audit log".into())
            .await?;
        Ok(page.entries)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn backend(&self) -> String {
        format!("keel API {}", self.base)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        action: String,
    ) -> Result<T, Error> {
        if let Some(reason) = self.auth_error {
            return Err(ParseError::new("keel API credentials", self.auth_kind, reason).into());
        }
        let mut request = self
            .http
            .request(method, url)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(&action, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let limit = if status.is_success() {
            self.max_body_bytes
        } else {
            self.max_body_bytes.min(MAX_ERROR_BODY_BYTES)
        };
        let bytes = match read_body(response, limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::Read(e)) => return Err(self.transport(&action, e)),
            Err(BodyError::TooLarge { limit }) if status.is_success() => {
                return Err(Error::Backend {
                    backend: self.backend(),
                    action,
                    message: format!("the answer is larger than the {limit}-byte limit"),
                    retryable: false,
                    source: None,
                });
            }
            // An error answer too long to read is reported by its status alone.
            Err(BodyError::TooLarge { .. }) => Vec::new(),
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| Error::Backend {
                backend: self.backend(),
                action,
                message: format!("the answer is not the expected JSON: {e}"),
                retryable: false,
                source: Some(Arc::new(e)),
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        Err(self.map_status(status, body, retry_after, action))
    }

    fn transport(&self, action: &str, e: reqwest::Error) -> Error {
        let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
        let e = e.without_url();
        Error::Backend {
            backend: self.backend(),
            action: action.to_owned(),
            message: e.to_string(),
            retryable,
            source: Some(Arc::new(e)),
        }
    }

    fn map_status(
        &self,
        status: StatusCode,
        body: Option<ErrorBody>,
        retry_after: Option<Duration>,
        action: String,
    ) -> Error {
        let reason = body
            .as_ref()
            .map(|b| b.reason.clone())
            .unwrap_or_else(|| format!("the server answered {status}"));
        match status {
            StatusCode::BAD_REQUEST => ParseError::new("keel API request", action, reason).into(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Error::Unauthorized { action, reason }
            }
            StatusCode::NOT_FOUND => Error::NotFound {
                what: body
                    .and_then(|b| b.what)
                    .unwrap_or_else(|| format!("the API route of {action} ({reason})")),
            },
            StatusCode::CONFLICT => Error::Conflict { action, reason },
            StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
                action,
                retry_after: retry_after.or_else(|| {
                    body.and_then(|b| b.retry_after_seconds)
                        .map(Duration::from_secs)
                }),
            },
            StatusCode::NOT_IMPLEMENTED => Error::Backend {
                backend: self.backend(),
                action,
                message: reason,
                retryable: false,
                source: None,
            },
            s => Error::Backend {
                backend: self.backend(),
                action,
                message: reason,
                retryable: matches!(s.as_u16(), 502..=504),
                source: None,
            },
        }
    }
}

/// A response's body, read by keel-core's one bounded reader: at most `limit` bytes (a body
/// announced or found larger is [`BodyError::TooLarge`]). For every HTTP client of the API
/// and its companions (the bot's Slack client), so that none reads an answer without bound.
///
/// # Errors
/// [`BodyError::TooLarge`] past `limit`; [`BodyError::Read`] when the body breaks off.
pub async fn read_body(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError<reqwest::Error>> {
    let announced = response.content_length();
    read_bounded(response.bytes_stream(), announced, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = ApiClient::new("http://127.0.0.1:1/prefix")
            .unwrap()
            .with_bearer_token("very-secret-token");
        let d = format!("{c:?}");
        assert!(!d.contains("very-secret"), "{d}");
        assert!(d.contains("bearer"), "{d}");
        assert_eq!(
            c.url(&["v1", "approvals", "abc"]).as_str(),
            "http://127.0.0.1:1/prefix/v1/approvals/abc"
        );
    }

    #[test]
    fn refuses_bad_urls() {
        assert!(ApiClient::new("ftp://x").is_err());
        assert!(ApiClient::new("not a url").is_err());
        let e = ApiClient::new("http://u:hunter2@host/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
