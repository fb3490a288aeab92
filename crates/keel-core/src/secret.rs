//! `Secret`: a credential held as text that never shows itself, and [`redact_urls`], which
//! takes the credentials out of every URL in a text before it is shown.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq as _;

use crate::error::ParseError;

/// A secret string (a password, token, webhook or signing secret): `Debug` shows
/// `Secret(***)` and `Display` shows `***`, so it cannot leak through logs or errors.
///
/// ```
/// use keel_core::Secret;
///
/// let token: Secret = " s3cr3t\n".parse().unwrap();
/// assert_eq!(token.expose(), "s3cr3t");
/// assert_eq!(format!("{token:?} {token}"), "Secret(***) ***");
/// assert!(token.matches(b"s3cr3t"));
/// assert!("  ".parse::<Secret>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, derive_more::Debug)]
#[debug("Secret(***)")]
pub struct Secret(String);

impl Secret {
    /// Wraps `value` as it is.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends or uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared without an early exit on the first
    /// differing byte (only the length shows in the timing).
    pub fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), given)
    }
}

/// Whether `a` and `b` are equal, compared without an early exit on the first differing
/// byte (only the length shows in the timing): for secrets, and for names checked together
/// with a secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    /// Wraps `value` as it is ([`Secret::new`]).
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    /// Wraps `value` as it is ([`Secret::new`]).
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// A secret given as text (a flag, a variable, a file): surrounding whitespace, such as a
/// file's final newline, is dropped, and an empty secret is refused.
impl FromStr for Secret {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::new("secret", "", "must not be empty"));
        }
        Ok(Secret(s.to_owned()))
    }
}

/// Query parameters whose values are credentials when their lower-cased name contains one of
/// these (`access_token`, `private_token`, `api_key`, `X-Amz-Signature`, `sig`, `client_secret`,
/// `password`, ...).
const SECRET_QUERY_NAMES: [&str; 8] = [
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "sig",
    "credential",
    "auth",
];

/// Schemes whose user name is not a credential (`ssh://git@host/...`).
const SSH_SCHEMES: [&str; 3] = ["ssh", "git+ssh", "ssh+git"];

/// `text` with the credentials of every URL in it masked, for errors, log lines and
/// notifications: the password of `user:password@` becomes `***` (`user:***@`), a user
/// name alone (`https://TOKEN@host`, how tokens are often given) becomes `***` except for
/// SSH, and the values of token-like query parameters (`?access_token=`, `&sig=`,
/// `X-Amz-Signature=`, ...) become `***`. Everything else, and text without URLs, is kept.
///
/// ```
/// use keel_core::secret::redact_urls;
///
/// assert_eq!(
///     redact_urls("push to https://bot:hunter2@git.example.com/org/fleet.git failed"),
///     "push to https://bot:***@git.example.com/org/fleet.git failed"
/// );
/// assert_eq!(
///     redact_urls("https://ghp_abc@github.com/o/r.git?x=1&access_token=t0k"),
///     "https://***@github.com/o/r.git?x=1&access_token=***"
/// );
/// assert_eq!(redact_urls("ssh://git@host/o/r.git"), "ssh://git@host/o/r.git");
/// assert_eq!(redact_urls("git@host:o/r.git"), "git@host:o/r.git");
/// ```
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = rest[scheme_start..at].to_ascii_lowercase();
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let url_len = after.find(ends_url).unwrap_or(after.len());
        let (url, tail) = after.split_at(url_len);
        redact_one(&scheme, url, &mut out);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Where a URL written in running text ends.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

/// Appends `url` (what follows `scheme://`) with its credentials masked.
fn redact_one(scheme: &str, url: &str, out: &mut String) {
    let authority_len = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, rest) = url.split_at(authority_len);
    match authority.rfind('@') {
        Some(at) => {
            let user_info = &authority[..at];
            match user_info.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None if SSH_SCHEMES.contains(&scheme) => out.push_str(user_info),
                None => out.push_str("***"),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let Some(query_at) = rest.find('?') else {
        out.push_str(rest);
        return;
    };
    out.push_str(&rest[..=query_at]);
    let query = &rest[query_at + 1..];
    let (query, fragment) = match query.find('#') {
        Some(i) => query.split_at(i),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_QUERY_NAMES.iter().any(|n| lower.contains(n))
}

#[cfg(test)]
mod tests {
    use super::{Secret, redact_urls};

    #[test]
    fn matching_needs_every_byte_and_the_length() {
        let secret = Secret::new("abc");
        assert!(secret.matches(b"abc"));
        assert!(!secret.matches(b"abd"));
        assert!(!secret.matches(b"ab"));
        assert!(!secret.matches(b"abcd"));
    }

    #[test]
    fn urls_lose_their_credentials_and_nothing_else() {
        let cases = [
            (
                "fetch http://user:secret@127.0.0.1:9418/fleet.git: timed out",
                "fetch http://user:***@127.0.0.1:9418/fleet.git: timed out",
            ),
            // A password with `@` in it: the authority ends at the last `@`.
            ("https://u:p@ss@h.example/r", "https://u:***@h.example/r"),
            (
                "https://TOKEN@h.example/r.git",
                "https://***@h.example/r.git",
            ),
            ("https://h.example/a@b.git", "https://h.example/a@b.git"),
            ("git+ssh://git@h.example/r", "git+ssh://git@h.example/r"),
            ("ssh://git:pw@h.example/r", "ssh://git:***@h.example/r"),
            (
                "GET https://h.example/p?X-Amz-Signature=abc&page=2#top done",
                "GET https://h.example/p?X-Amz-Signature=***&page=2#top done",
            ),
            (
                "'https://a:b@x' and <http://c:d@y/?private_token=e>",
                "'https://a:***@x' and <http://c:***@y/?private_token=***>",
            ),
            ("no url here: a@b, ://", "no url here: a@b, ://"),
            ("ünïcödé https://ü:ß@h/ü", "ünïcödé https://ü:***@h/ü"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_urls(text), want, "{text}");
        }
    }
}
