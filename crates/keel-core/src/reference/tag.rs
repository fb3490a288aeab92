//! [`Tag`]: the tag grammar.

use super::{DEFAULT_TAG, MAX_TAG_LEN, TAG_KIND};
use crate::error::ParseError;

const TAG_FIRST: u8 = 1;
const TAG_REST: u8 = 2;

/// Per-byte classes of the tag grammar: `TAG_FIRST` for `[A-Za-z0-9_]`, `TAG_REST` for
/// `[A-Za-z0-9_.-]`. Non-ASCII bytes have no class.
static TAG_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            table[i] = TAG_FIRST | TAG_REST;
        } else if b == b'.' || b == b'-' {
            table[i] = TAG_REST;
        }
        i += 1;
    }
    table
};

/// Whether `s` is a valid tag, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, without allocating:
/// `v1.2.3-rc.1` is, `-bad` is not.
#[inline]
pub fn is_valid_tag(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.split_first() {
        Some((&first, rest)) if bytes.len() <= MAX_TAG_LEN => {
            TAG_CLASS[usize::from(first)] & TAG_FIRST != 0
                && rest
                    .iter()
                    .all(|&b| TAG_CLASS[usize::from(b)] & TAG_REST != 0)
        }
        _ => false,
    }
}

/// Explains why `s` is not a valid tag. Only called when [`is_valid_tag`] said no.
fn tag_error(s: &str) -> ParseError {
    let error = |reason: String, start: usize, end: usize| {
        ParseError::new(TAG_KIND, s, reason).at(start, end)
    };
    for (i, c) in s.char_indices() {
        let end = i + c.len_utf8();
        if i == 0 {
            if !(c.is_ascii_alphanumeric() || c == '_') {
                return error(
                    format!("tag must start with a letter, digit or '_', found {c:?}"),
                    0,
                    end,
                );
            }
        } else if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return error(
                format!("tag may contain only letters, digits, '_', '.' and '-', found {c:?}"),
                i,
                end,
            );
        }
    }
    if s.is_empty() {
        return ParseError::new(TAG_KIND, s, "tag must not be empty");
    }
    // Every character is ASCII here, so bytes are characters.
    error(
        format!(
            "tag must be at most {MAX_TAG_LEN} characters, got {}",
            s.len()
        ),
        MAX_TAG_LEN,
        s.len(),
    )
}

/// A validated image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, e.g. `1.25.3`, `latest`,
/// `v2-alpine`.
///
/// Ordering is plain byte-wise string order, not version order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `tag`.
    ///
    /// # Errors
    /// A [`ParseError`] naming the rule the tag breaks (empty, too long, bad first character,
    /// bad character), pointing at the offending part.
    pub fn new(tag: impl Into<String>) -> Result<Tag, ParseError> {
        let tag = tag.into();
        if is_valid_tag(&tag) {
            Ok(Tag(tag))
        } else {
            Err(tag_error(&tag))
        }
    }

    /// The tag `latest`, which references without tag or digest get.
    pub fn latest() -> Tag {
        Tag(DEFAULT_TAG.to_owned())
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl PartialEq<str> for Tag {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
