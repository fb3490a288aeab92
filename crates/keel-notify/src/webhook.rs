//! A generic JSON webhook: a documented, versioned payload, signed with HMAC-SHA256.
//!
//! [`Webhook`] sends it; [`WebhookPayload`] parses it and [`verify_signature`] checks it on
//! the receiving side. What follows is the contract (also in `WEBHOOK.md` of this crate).
//!
#![doc = include_str!("../WEBHOOK.md")]
//!
//! ## Receiving in Rust
//!
//! ```
//! use std::time::Duration;
//! use chrono::Utc;
//! use keel_notify::webhook::{sign, verify_signature};
//!
//! let secret = b"s3cret";
//! let body = br#"{"version":"1"}"#;
//! let timestamp = Utc::now().timestamp();
//! let header = sign(secret, timestamp, body);
//! assert!(header.starts_with("sha256="));
//!
//! let window = Duration::from_secs(300);
//! verify_signature(secret, &timestamp.to_string(), &header, body, Utc::now(), window)?;
//! // A changed body, a wrong secret or an old timestamp fail.
//! assert!(verify_signature(secret, &timestamp.to_string(), &header, b"{}", Utc::now(), window).is_err());
//! assert!(verify_signature(b"other", &timestamp.to_string(), &header, body, Utc::now(), window).is_err());
//! let later = Utc::now() + chrono::Duration::minutes(10);
//! assert!(verify_signature(secret, &timestamp.to_string(), &header, body, later, window).is_err());
//! # Ok::<(), keel_core::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use keel_core::{Error, Event, ParseError};
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::common::{Base, Common, base_notifier, common_setters, parse_endpoint};
use crate::level::Level;
use crate::template::title;

/// The payload version this crate sends.
pub const PAYLOAD_VERSION: &str = "1";
/// The header carrying the event kind.
pub const EVENT_HEADER: &str = "x-keel-event";
/// The header carrying the delivery id, the same on every retry.
pub const DELIVERY_HEADER: &str = "x-keel-delivery";
/// The header carrying the attempt's Unix time in seconds, part of the signed content.
pub const TIMESTAMP_HEADER: &str = "x-keel-timestamp";
/// The header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-keel-signature-256";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Keel-Signature-256` value for `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and the lowercase hex HMAC-SHA256, keyed with `secret`, of
/// `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("sha256={}", hex::encode(digest))
}

/// Checks a received request: the `X-Keel-Signature-256` value `signature` must be the
/// HMAC-SHA256 (keyed with `secret`) of `"<timestamp>.<body>"`, compared in constant time,
/// and the `X-Keel-Timestamp` value `timestamp` must be within `tolerance` of `now`.
///
/// # Errors
/// [`Error::Unauthorized`] saying which check failed: a malformed header, a timestamp out
/// of the window (a replay or a skewed clock), or a signature that does not match.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), Error> {
    let refuse = |reason: &str| Error::Unauthorized {
        action: "accept a keel webhook request".into(),
        reason: reason.into(),
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| refuse("the X-Keel-Timestamp header is not a whole number of seconds"))?;
    let skew = now.timestamp().abs_diff(sent);
    if skew > tolerance.as_secs() {
        return Err(refuse(&format!(
            "the X-Keel-Timestamp is {skew}s away from now, more than the {}s allowed",
            tolerance.as_secs()
        )));
    }
    let hex = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| refuse("the X-Keel-Signature-256 header does not start with `sha256=`"))?;
    let expected = Some(hex)
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| refuse("the X-Keel-Signature-256 header is not 64 hex digits"))?;
    mac(secret, timestamp.trim(), body)
        .verify_slice(&expected)
        .map_err(|_| refuse("the signature does not match the body and timestamp"))
}

mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

/// The JSON document a [`Webhook`] sends, version [`PAYLOAD_VERSION`]; see the
/// [module docs](self) for every field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// The payload version, `"1"`.
    pub version: String,
    /// The delivery id, the same on every retry of one delivery.
    pub delivery_id: String,
    /// The event.
    pub event: WebhookEvent,
}

/// The event in a [`WebhookPayload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// The kind, kebab-case: `update-applied`. A string, so that kinds added later parse.
    pub kind: String,
    /// The level: `info`, `success`, `warn`, `error`.
    pub level: String,
    /// The kind for people: `Update applied`.
    pub title: String,
    /// The text rendered from the notifier's template.
    pub text: String,
    /// The event's own message; may be empty.
    pub message: String,
    /// The update.
    pub plan: WebhookPlan,
    /// When it happened (sent as RFC 3339 in UTC with milliseconds).
    #[serde(with = "millis")]
    pub time: DateTime<Utc>,
    /// The release-notes URL, if the workload has one.
    pub release_notes: Option<String>,
    /// The approval request, for approval events.
    pub approval: Option<WebhookApproval>,
    /// Extra channels the workload asks to be told on.
    pub channels: Vec<String>,
}

/// The update in a [`WebhookEvent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPlan {
    /// The target's name.
    pub target: String,
    /// The tracked image's id within the target.
    pub id: String,
    /// The running image, fully qualified.
    pub current: String,
    /// The image to run, fully qualified.
    pub new: String,
}

/// The approval request in a [`WebhookEvent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookApproval {
    /// The request's id.
    pub id: String,
    /// Approvals needed.
    pub required: u32,
    /// Approving votes so far.
    pub approvals: u32,
    /// Who voted, in vote order.
    pub voters: Vec<String>,
    /// When the request expires.
    #[serde(with = "millis")]
    pub deadline: DateTime<Utc>,
}

/// `update-applied` for [`EventKind::UpdateApplied`](keel_core::EventKind::UpdateApplied).
fn kind_name(event: &Event) -> String {
    match serde_json::to_value(event.kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => event.kind.to_string().replace(' ', "-"),
    }
}

impl WebhookPayload {
    /// The payload for `event`, with `text` rendered from a template and `delivery_id`.
    pub fn new(event: &Event, text: String, delivery_id: String) -> WebhookPayload {
        WebhookPayload {
            version: PAYLOAD_VERSION.into(),
            delivery_id,
            event: WebhookEvent {
                kind: kind_name(event),
                level: Level::of(event.kind).to_string(),
                title: title(event.kind),
                text,
                message: event.message.clone(),
                plan: WebhookPlan {
                    target: event.plan.target.clone(),
                    id: event.plan.id.clone(),
                    current: event.plan.current.to_string(),
                    new: event.plan.new.to_string(),
                },
                time: event.time,
                release_notes: event.release_notes.clone(),
                approval: event.approval.as_ref().map(|a| WebhookApproval {
                    id: a.id.clone(),
                    required: a.required,
                    approvals: a.approvals,
                    voters: a.voters.clone(),
                    deadline: a.deadline,
                }),
                channels: event.channels.clone(),
            },
        }
    }
}

/// Posts [`WebhookPayload`]s to a URL, signed when it has a secret; see the
/// [module docs](self) for the contract.
///
/// ```no_run
/// # async fn run(event: keel_core::Event) -> Result<(), keel_core::Error> {
/// use keel_core::Notifier;
/// use keel_notify::Webhook;
///
/// let hook = Webhook::builder("https://ci.example.com/hooks/keel")
///     .with_secret(std::env::var("KEEL_WEBHOOK_SECRET").unwrap_or_default())
///     .build()?;
/// hook.notify(&event).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Webhook {
    base: Base,
    url: Url,
    secret: Option<Vec<u8>>,
    headers: HeaderMap,
}

/// Builds a [`Webhook`].
#[derive(Clone)]
pub struct WebhookBuilder {
    url: String,
    common: Common,
    secret: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl Webhook {
    /// A builder for the receiver at `url`.
    pub fn builder(url: impl Into<String>) -> WebhookBuilder {
        WebhookBuilder {
            url: url.into(),
            common: Common::default(),
            secret: None,
            headers: Vec::new(),
        }
    }

    /// Whether requests are signed.
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }
}

/// 32 lowercase hex digits, random (not for cryptography: a receiver uses the id to drop
/// repeated deliveries).
fn new_delivery_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl WebhookBuilder {
    common_setters!("webhook <host>");

    /// Signs every request with HMAC-SHA256 keyed with `secret` (see the module docs).
    pub fn with_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Sends header `name: value` with every request, e.g. an `Authorization` the receiver
    /// wants. The value is treated as a secret: it never appears in errors or `Debug`.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The notifier.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a URL that is not http(s) (the error shows only its scheme
    /// and host), an empty secret, a header name that is not valid, one the notifier sets
    /// itself (`Content-Type`, `X-Keel-*`), or a value an HTTP header cannot carry (the error
    /// names the header, not the value).
    pub fn build(self) -> Result<Webhook, Error> {
        let url = parse_endpoint("webhook URL", &self.url)?;
        if self.secret.as_ref().is_some_and(Vec::is_empty) {
            return Err(ParseError::new(
                "webhook secret",
                "",
                "the secret is empty; leave it unset to send unsigned requests",
            )
            .into());
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                ParseError::new(
                    "webhook header name",
                    name.as_str(),
                    "not a valid HTTP header name",
                )
            })?;
            if header == CONTENT_TYPE || header.as_str().starts_with("x-keel-") {
                return Err(ParseError::new(
                    "webhook header name",
                    name.as_str(),
                    "the notifier sets this header itself",
                )
                .into());
            }
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                ParseError::new(
                    "webhook header value",
                    format!("{name}: (hidden)"),
                    "the value holds characters an HTTP header cannot carry",
                )
            })?;
            value.set_sensitive(true);
            headers.append(header, value);
        }
        let default_name = format!("webhook {}", url.host_str().unwrap_or(""));
        Ok(Webhook {
            base: self.common.build(default_name)?,
            url,
            secret: self.secret,
            headers,
        })
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.base
            .debug_struct(f, "Webhook", ("endpoint", &self.url))
            .field("signed", &self.secret.is_some())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common
            .debug_struct(f, "WebhookBuilder")
            .field("signed", &self.secret.is_some())
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Webhook {
    async fn deliver(&self, event: &Event) -> Result<(), Error> {
        let action = Base::action(event);
        let ctx = self.base.context(&action);
        let delivery_id = new_delivery_id();
        let text = self.base.templates.render(event);
        let payload = WebhookPayload::new(event, text, delivery_id.clone());
        let body = serde_json::to_vec(&payload).map_err(|e| ctx.backend(e.to_string(), false))?;
        let kind = payload.event.kind;
        self.base
            .delivery
            .send(
                ctx,
                || {
                    let timestamp = Utc::now().timestamp();
                    let mut request = self
                        .base
                        .delivery
                        .client
                        .post(self.url.clone())
                        .headers(self.headers.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .header(EVENT_HEADER, kind.as_str())
                        .header(DELIVERY_HEADER, delivery_id.as_str())
                        .header(TIMESTAMP_HEADER, timestamp.to_string());
                    if let Some(secret) = &self.secret {
                        request = request.header(SIGNATURE_HEADER, sign(secret, timestamp, &body));
                    }
                    request.body(body.clone())
                },
                |answer| ctx.check_status(answer),
            )
            .await
    }
}

base_notifier!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256(key = "key", message = "1.The quick brown fox jumps over the lazy dog")
        // computed independently with `openssl dgst -sha256 -hmac key`.
        let sig = sign(b"key", 1, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            sig,
            "sha256=3ff4d3cc115b639a16dc5b217aa5c89be41d1e4b54efc356d63d0cd2a65b30f1"
        );
        let now = DateTime::from_timestamp(1, 0).unwrap();
        verify_signature(
            b"key",
            "1",
            &sig,
            b"The quick brown fox jumps over the lazy dog",
            now,
            Duration::from_secs(300),
        )
        .unwrap();
    }

    #[test]
    fn verification_names_what_failed() {
        let now = Utc::now();
        let ts = now.timestamp();
        let sig = sign(b"k", ts, b"body");
        let window = Duration::from_secs(300);
        let err = |t: &str, s: &str, b: &[u8]| {
            verify_signature(b"k", t, s, b, now, window)
                .unwrap_err()
                .to_string()
        };
        assert!(err("soon", &sig, b"body").contains("not a whole number"));
        assert!(err(&(ts - 301).to_string(), &sig, b"body").contains("301s away"));
        assert!(err(&ts.to_string(), "md5=00", b"body").contains("sha256="));
        assert!(err(&ts.to_string(), "sha256=zz", b"body").contains("64 hex digits"));
        assert!(err(&ts.to_string(), &sig, b"bodx").contains("does not match"));
        // The timestamp is part of the signed content.
        let other = sign(b"k", ts + 1, b"body");
        assert!(err(&ts.to_string(), &other, b"body").contains("does not match"));
    }

    #[test]
    fn delivery_ids_are_32_hex_digits() {
        let id = new_delivery_id();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, new_delivery_id());
    }
}
