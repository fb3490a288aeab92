//! [`Digest`]: content digests.

use super::{DIGEST_KIND, non_empty};
use crate::error::ParseError;

/// The minimum length of the encoded part for algorithms without a registered length.
const MIN_UNREGISTERED_ENCODED_LEN: usize = 32;

/// A content digest, `algorithm:encoded`, e.g. `sha256:` followed by 64 hex characters.
///
/// Grammar (OCI image spec): the algorithm is `[a-z0-9]+` components separated by one of
/// `+._-`; the encoded part is `[a-zA-Z0-9=_-]+`. The registered algorithms are checked
/// strictly: `sha256` needs exactly 64 and `sha512` exactly 128 lower-case hex characters.
/// Any other algorithm needs at least 32 characters of encoded part.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Validates `digest`.
    ///
    /// # Errors
    /// A [`ParseError`] naming the rule the digest breaks, e.g.
    /// `sha256 digest must be 64 lower-case hex characters, got 3`, pointing at the bad part.
    pub fn new(digest: impl Into<String>) -> Result<Digest, ParseError> {
        let digest = digest.into();
        check_digest(&digest)?;
        Ok(Digest(digest))
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        self.split().0
    }

    /// The encoded part after the `:`; hex for the registered algorithms.
    pub fn hex(&self) -> &str {
        self.split().1
    }

    /// The encoded part after the `:` (the OCI spec's name for [`Digest::hex`]).
    pub fn encoded(&self) -> &str {
        self.split().1
    }

    /// The whole digest, `algorithm:encoded`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn split(&self) -> (&str, &str) {
        // Validated at construction: there is a ':' and the algorithm has none.
        self.0.split_once(':').unwrap_or((&self.0, ""))
    }
}

fn check_digest(s: &str) -> Result<(), ParseError> {
    let error = |reason: String, start: usize, end: usize| {
        ParseError::new(DIGEST_KIND, s, reason).at(start, end)
    };
    non_empty(DIGEST_KIND, s)?;
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return Err(ParseError::new(
            DIGEST_KIND,
            s,
            "digest must be <algorithm>:<encoded>, found no ':'",
        ));
    };
    if algorithm.is_empty() {
        return Err(error("digest algorithm must not be empty".into(), 0, 0));
    }
    if !is_valid_algorithm(algorithm) {
        return Err(error(
            "digest algorithm must be lower-case letters and digits, \
             optionally separated by single '+', '.', '_' or '-'"
                .into(),
            0,
            algorithm.len(),
        ));
    }
    let off = algorithm.len() + 1;
    if encoded.is_empty() {
        return Err(error(
            format!("digest must have an encoded part after '{algorithm}:'"),
            off,
            off,
        ));
    }
    let registered_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(want) = registered_len {
        let rule = format!("{algorithm} digest must be {want} lower-case hex characters");
        let got = encoded.chars().count();
        if got != want {
            return Err(error(format!("{rule}, got {got}"), off, s.len()));
        }
        if let Some((i, c)) = encoded
            .char_indices()
            .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(error(
                format!("{rule}, found {c:?}"),
                off + i,
                off + i + c.len_utf8(),
            ));
        }
    } else {
        if let Some((i, c)) = encoded
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-')))
        {
            return Err(error(
                format!(
                    "digest encoded part may contain only letters, digits, '=', '_' and '-', \
                     found {c:?}"
                ),
                off + i,
                off + i + c.len_utf8(),
            ));
        }
        if encoded.len() < MIN_UNREGISTERED_ENCODED_LEN {
            return Err(error(
                format!(
                    "{algorithm} digest must have at least {MIN_UNREGISTERED_ENCODED_LEN} \
                     characters of encoded part, got {}",
                    encoded.len()
                ),
                off,
                s.len(),
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn is_valid_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '_', '-']).all(|component| {
        !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}
