//! The parsers of what a registry sends, reachable from the fuzz targets in `fuzz/`. Not an
//! API: the client calls them itself, and they may change at any time.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, LINK};

use crate::auth::{Challenge, parse_challenge};

/// A `WWW-Authenticate` challenge as the client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WwwAuthenticate {
    /// `Basic ...`.
    Basic,
    /// `Bearer realm=..., service=..., scope=...`.
    Bearer {
        /// Where to ask for a token.
        realm: String,
        /// The `service` parameter, if any.
        service: Option<String>,
        /// The `scope` parameter, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value; `None` for schemes the client does not speak
/// and for a bearer challenge without a realm.
pub fn www_authenticate(header: &str) -> Option<WwwAuthenticate> {
    parse_challenge(header).map(|c| match c {
        Challenge::Basic => WwwAuthenticate::Basic,
        Challenge::Bearer {
            realm,
            service,
            scope,
        } => WwwAuthenticate::Bearer {
            realm,
            service,
            scope,
        },
    })
}

/// The `rel="next"` target among the `Link` header values `links` of the tag page at the
/// absolute URL `page`, resolved against it. Values a header cannot hold are left out, as
/// the HTTP layer would; `None` when `page` is not a URL.
pub fn next_link(links: &[&[u8]], page: &str) -> Option<String> {
    let page = reqwest::Url::parse(page).ok()?;
    let mut headers = HeaderMap::new();
    for link in links {
        if let Ok(value) = HeaderValue::from_bytes(link) {
            headers.append(LINK, value);
        }
    }
    crate::client::next_link(&headers, &page)
}

/// A `Retry-After` value (seconds, or an HTTP date counted from now) as the client honours it.
pub fn retry_after(value: &str) -> Option<Duration> {
    keel_core::retry::parse_retry_after(value, chrono::Utc::now())
}
