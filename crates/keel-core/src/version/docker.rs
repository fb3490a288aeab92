//! Docker-style versions, as Renovate's `docker` versioning reads them.

use std::cmp::Ordering;

use super::{cmp_digits, is_digits, strip_marker};

/// A tag of the form `v?<n>(.<n>)*[-<suffix>]`, such as `3.11`, `3.11-slim` or
/// `1.25.3-alpine3.18`. The `docker` policy only compares tags with the same number of numeric
/// parts and the same suffix, part by part as numbers.
///
/// ```
/// use keel_core::version::DockerVersion;
///
/// let a = DockerVersion::parse("3.11-slim").unwrap();
/// let b = DockerVersion::parse("3.12-slim").unwrap();
/// assert!(a.is_compatible(&b));
/// assert!(a.numbers_cmp(&b).is_lt());
/// assert!(!a.is_compatible(&DockerVersion::parse("3.12.1-slim").unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DockerVersion<'a> {
    numbers: &'a str,
    parts: usize,
    suffix: &'a str,
    prefixed: bool,
}

impl<'a> DockerVersion<'a> {
    /// Parses `v?<n>(.<n>)*[-<suffix>]` with a non-empty suffix; `None` for anything else.
    pub fn parse(s: &'a str) -> Option<DockerVersion<'a>> {
        let (prefixed, body) = strip_marker(s, 'v');
        let (numbers, suffix) = match body.split_once('-') {
            Some((n, suf)) if !suf.is_empty() => (n, suf),
            Some(_) => return None,
            None => (body, ""),
        };
        let mut parts = 0;
        for part in numbers.split('.') {
            if !is_digits(part) {
                return None;
            }
            parts += 1;
        }
        Some(DockerVersion {
            numbers,
            parts,
            suffix,
            prefixed,
        })
    }

    /// How many numeric parts the tag has.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The suffix after the first `-`; empty when there is none.
    pub fn suffix(&self) -> &'a str {
        self.suffix
    }

    /// Whether the tag was written with a `v` prefix.
    pub fn is_prefixed(&self) -> bool {
        self.prefixed
    }

    /// Whether `other` may replace `self`: same number of parts, same suffix.
    pub fn is_compatible(&self, other: &DockerVersion<'_>) -> bool {
        self.parts == other.parts && self.suffix == other.suffix
    }

    /// Compares the numeric parts one by one as numbers; a missing part ranks lowest.
    pub fn numbers_cmp(&self, other: &DockerVersion<'_>) -> Ordering {
        let mut left = self.numbers.split('.');
        let mut right = other.numbers.split('.');
        loop {
            match (left.next(), right.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(a), Some(b)) => match cmp_digits(a, b) {
                    Ordering::Equal => {}
                    ord => return ord,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DockerVersion<'_> {
        DockerVersion::parse(s).unwrap()
    }

    #[test]
    fn parses_the_shapes() {
        assert_eq!(
            (d("3.11-slim").parts(), d("3.11-slim").suffix()),
            (2, "slim")
        );
        assert_eq!(d("1.25.3-alpine3.18").suffix(), "alpine3.18");
        assert_eq!(d("20240101").parts(), 1);
        assert!(d("v1.2").is_prefixed());
        for bad in ["", "latest", "1.", "1..2", "1-", "v", "1.2a", "-slim", "V1"] {
            assert!(DockerVersion::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn compares_numbers_part_by_part() {
        assert!(d("3.9").numbers_cmp(&d("3.10")).is_lt());
        assert!(d("3.10.0").numbers_cmp(&d("3.9.9")).is_gt());
        assert!(d("v3.10").numbers_cmp(&d("3.10")).is_eq());
        assert!(d("3.11-slim").is_compatible(&d("3.12-slim")));
        assert!(!d("3.11-slim").is_compatible(&d("3.12")));
        assert!(!d("3.11-slim").is_compatible(&d("3.13-alpine")));
    }
}
