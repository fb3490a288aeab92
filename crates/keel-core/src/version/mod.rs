//! The orders that policies put tags in: lenient semver, natural order, decimal numbers and
//! Docker-style versions, plus `semver:` ranges. Everything here borrows from the tag and
//! compares without allocating, because selection runs over hundreds of thousands of tags.

mod docker;
mod natural;
mod numeric;
mod range;
mod semver;

pub use self::docker::DockerVersion;
pub use self::natural::natural_cmp;
pub use self::numeric::Decimal;
pub use self::range::VersionRange;
pub use self::semver::Version;

use std::cmp::Ordering;

/// Whether `s` is a non-empty run of ASCII digits.
pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `s` without a leading `prefix`, and whether it had one.
pub(crate) fn strip_marker(s: &str, prefix: char) -> (bool, &str) {
    match s.strip_prefix(prefix) {
        Some(rest) => (true, rest),
        None => (false, s),
    }
}

/// Compares two runs of ASCII digits as unbounded non-negative integers.
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_compare_as_numbers() {
        assert_eq!(cmp_digits("9", "10"), Ordering::Less);
        assert_eq!(cmp_digits("007", "7"), Ordering::Equal);
        assert_eq!(cmp_digits("0", "000"), Ordering::Equal);
        assert_eq!(
            cmp_digits("123456789012345678901234567890", "99"),
            Ordering::Greater
        );
    }
}
