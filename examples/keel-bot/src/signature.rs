//! Slack's request signing: `v0=` HMAC-SHA256 of `v0:<timestamp>:<body>` with the app's
//! signing secret.
//!
//! Every request the bot serves on `/slack/*` is checked here on its raw body, before
//! anything parses it. A request is refused when a header is missing, the timestamp is more
//! than five minutes away from now (in either direction), the signature does not match
//! (compared in constant time), or the very same signed request was already seen (a replay
//! inside the five minutes).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The header with the request's timestamp, seconds since the epoch.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// The header with the request's signature, `v0=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// How far a request's timestamp may be from now, in seconds.
pub const MAX_SKEW_SECS: i64 = 5 * 60;
/// How many signatures the replay guard remembers at most.
const MAX_REMEMBERED: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused. The message never holds the secret or the expected signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// A signing header is absent.
    Missing(&'static str),
    /// The timestamp is not an integer.
    BadTimestamp,
    /// The timestamp is too far from now.
    Stale {
        /// How many seconds it is off (positive: in the past).
        age_secs: i64,
    },
    /// The signature is not `v0=` and 64 hex digits.
    Malformed,
    /// The signature does not match the body.
    Mismatch,
    /// This exact signed request was already accepted.
    Replayed,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Missing(h) => write!(f, "the {h} header is missing"),
            SignatureError::BadTimestamp => {
                write!(
                    f,
                    "the {TIMESTAMP_HEADER} header is not a number of seconds"
                )
            }
            SignatureError::Stale { age_secs } if *age_secs >= 0 => write!(
                f,
                "the request is {age_secs}s old; at most {MAX_SKEW_SECS}s are accepted"
            ),
            SignatureError::Stale { age_secs } => write!(
                f,
                "the request is {}s in the future; at most {MAX_SKEW_SECS}s are accepted",
                -age_secs
            ),
            SignatureError::Malformed => {
                write!(f, "the {SIGNATURE_HEADER} header is not v0=<64 hex digits>")
            }
            SignatureError::Mismatch => write!(f, "the signature does not match the request"),
            SignatureError::Replayed => write!(f, "the request was already received"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// The signature Slack sends for `body` at `timestamp`: `v0=<hex of HMAC-SHA256>`.
///
/// ```
/// let sig = keel_bot::signature::sign("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, b"token=x");
/// assert!(sig.starts_with("v0=") && sig.len() == 67);
/// ```
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac_of(secret.as_bytes(), timestamp, body);
    let bytes = mac.finalize().into_bytes();
    format!("v0={}", hex::encode(bytes))
}

fn mac_of(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Checks signed requests with one signing secret and remembers the signatures it accepted
/// for five minutes, to refuse replays.
#[derive(derive_more::Debug)]
pub struct Verifier {
    secret: Secret,
    #[debug(skip)]
    seen: Mutex<HashMap<Vec<u8>, i64>>,
}

impl Verifier {
    /// A verifier for `secret`.
    pub fn new(secret: Secret) -> Self {
        Verifier {
            secret,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the signing headers of a request with raw `body`, now.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        self.verify_at(headers, body, chrono::Utc::now().timestamp())
    }

    /// Checks the signing headers of a request with raw `body` as if the time were `now`
    /// (seconds since the epoch).
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let timestamp = headers
            .get(TIMESTAMP_HEADER)
            .ok_or(SignatureError::Missing(TIMESTAMP_HEADER))?;
        let signature = headers
            .get(SIGNATURE_HEADER)
            .ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
        let timestamp: i64 = timestamp
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or(SignatureError::BadTimestamp)?;
        let age_secs = now.saturating_sub(timestamp);
        if age_secs.abs() > MAX_SKEW_SECS {
            return Err(SignatureError::Stale { age_secs });
        }
        let given = signature
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("v0="))
            .filter(|hex| hex.len() == 64)
            .and_then(|h| hex::decode(h).ok())
            .ok_or(SignatureError::Malformed)?;
        mac_of(self.secret.expose().as_bytes(), timestamp, body)
            .verify_slice(&given)
            .map_err(|_| SignatureError::Mismatch)?;
        self.remember(given, timestamp, now)
    }

    /// Accepts a valid signature once within the skew window.
    fn remember(&self, signature: Vec<u8>, timestamp: i64, now: i64) -> Result<(), SignatureError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED / 2 {
            seen.retain(|_, ts| now.saturating_sub(*ts).abs() <= MAX_SKEW_SECS);
        }
        if seen.contains_key(&signature) {
            return Err(SignatureError::Replayed);
        }
        if seen.len() >= MAX_REMEMBERED {
            // Only validly signed requests get here, so only Slack (or a holder of the
            // secret) can fill the guard; forgetting the oldest keeps it bounded.
            if let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, ts)| **ts)
                .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(signature, timestamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(ts).unwrap());
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn matches_slacks_documented_example() {
        // The example of Slack's "Verifying requests from Slack" guide.
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(SECRET, 1531420618, body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn accepts_a_signed_request_once() {
        let v = Verifier::new(Secret::new(SECRET));
        let body = b"command=%2Fkeel&text=list";
        let now = 1_700_000_000;
        let h = headers(&now.to_string(), &sign(SECRET, now, body));
        assert_eq!(v.verify_at(&h, body, now + 10), Ok(()));
        assert_eq!(
            v.verify_at(&h, body, now + 11),
            Err(SignatureError::Replayed)
        );
    }

    #[test]
    fn refuses_forged_stale_and_malformed() {
        let v = Verifier::new(Secret::new(SECRET));
        let body = b"text=approve+abc";
        let now = 1_700_000_000;
        let ok = sign(SECRET, now, body);

        let forged = sign("another-secret", now, body);
        let h = headers(&now.to_string(), &forged);
        assert_eq!(v.verify_at(&h, body, now), Err(SignatureError::Mismatch));
        // The right signature over another body.
        let h = headers(&now.to_string(), &ok);
        assert_eq!(
            v.verify_at(&h, b"text=approve+abd", now),
            Err(SignatureError::Mismatch)
        );
        // The right signature with another timestamp.
        let h = headers(&(now + 1).to_string(), &ok);
        assert_eq!(v.verify_at(&h, body, now), Err(SignatureError::Mismatch));

        let old = now - MAX_SKEW_SECS - 1;
        let h = headers(&old.to_string(), &sign(SECRET, old, body));
        assert_eq!(
            v.verify_at(&h, body, now),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        let future = now + MAX_SKEW_SECS + 1;
        let h = headers(&future.to_string(), &sign(SECRET, future, body));
        let e = v.verify_at(&h, body, now).unwrap_err();
        assert_eq!(e, SignatureError::Stale { age_secs: -301 });
        assert!(e.to_string().contains("in the future"));

        let h = headers("yesterday", &ok);
        assert_eq!(
            v.verify_at(&h, body, now),
            Err(SignatureError::BadTimestamp)
        );
        for bad in [
            "",
            "v0=",
            "v1=abc",
            &ok[..66],
            &ok.replace("v0=", "v1="),
            &format!("{}zz", &ok[..65]),
        ] {
            let h = headers(&now.to_string(), bad);
            assert_eq!(
                v.verify_at(&h, body, now),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        let mut h = headers(&now.to_string(), &ok);
        h.remove(SIGNATURE_HEADER);
        assert_eq!(
            v.verify_at(&h, body, now),
            Err(SignatureError::Missing(SIGNATURE_HEADER))
        );
        let mut h = headers(&now.to_string(), &ok);
        h.remove(TIMESTAMP_HEADER);
        assert_eq!(
            v.verify_at(&h, body, now),
            Err(SignatureError::Missing(TIMESTAMP_HEADER))
        );
        // After all the refusals the genuine request still passes.
        let h = headers(&now.to_string(), &ok);
        assert_eq!(v.verify_at(&h, body, now), Ok(()));
    }

    #[test]
    fn debug_hides_the_secret() {
        let v = Verifier::new(Secret::new(SECRET));
        assert!(!format!("{v:?}").contains("8f74"));
    }
}
