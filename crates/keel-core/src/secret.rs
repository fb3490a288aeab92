//! `Secret`: a credential held as text that never shows itself.

use std::fmt;
use std::str::FromStr;

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
#[derive(Clone, PartialEq, Eq)]
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
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
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

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn matching_needs_every_byte_and_the_length() {
        let secret = Secret::new("abc");
        assert!(secret.matches(b"abc"));
        assert!(!secret.matches(b"abd"));
        assert!(!secret.matches(b"ab"));
        assert!(!secret.matches(b"abcd"));
    }
}
