//! Lenient semantic versions, borrowed from the tag they were parsed from.

use std::cmp::Ordering;
use std::fmt;

use super::{cmp_digits, is_digits};

/// A version parsed leniently from a tag, as the policies `all`, `major`, `minor`, `patch`,
/// `semver:` and `force` read it.
///
/// Lenient means: an optional `v`/`V` prefix; one, two or three numeric parts (`1` is 1.0.0,
/// `1.2` is 1.2.0); leading zeros allowed; a pre-release after `-` and build metadata after `+`
/// as in semver 2.0.0. A single number of eight or more digits (`20240101`) is a date, not a
/// version. Parsing does not allocate: the pre-release and build metadata borrow from the input.
///
/// Ordering ([`Version::precedence`]) is semver precedence; build metadata is ignored, so
/// `1.2.3+a` and `1.2.3+b` are equal.
///
/// ```
/// use keel_core::version::Version;
///
/// let v = Version::parse("v1.2-rc.1").unwrap();
/// assert_eq!((v.major, v.minor, v.patch), (1, 2, 0));
/// assert_eq!(v.pre(), "rc.1");
/// assert_eq!(v.channel(), "rc");
/// assert!(Version::parse("20240101").is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// The major number.
    pub major: u64,
    /// The minor number (0 when not written).
    pub minor: u64,
    /// The patch number (0 when not written).
    pub patch: u64,
    pre: &'a str,
    build: &'a str,
    prefixed: bool,
}

/// The fewest digits a lone number has when it is taken for a date rather than a version.
const DATE_DIGITS: usize = 8;

impl<'a> Version<'a> {
    /// `0.0.0`.
    pub const ZERO: Version<'static> = Version {
        major: 0,
        minor: 0,
        patch: 0,
        pre: "",
        build: "",
        prefixed: false,
    };

    /// Parses `s` leniently; `None` when it is not a version under the rules above.
    pub fn parse(s: &'a str) -> Option<Version<'a>> {
        let bytes = s.as_bytes();
        let (prefixed, start) = match bytes.first() {
            Some(b'v' | b'V') => (true, 1),
            _ => (false, 0),
        };
        let mut i = start;
        let mut nums = [0u64; 3];
        let mut parts = 0;
        loop {
            let part_start = i;
            let mut n: u64 = 0;
            while let Some(&b) = bytes.get(i) {
                if !b.is_ascii_digit() {
                    break;
                }
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                i += 1;
            }
            if i == part_start {
                return None;
            }
            nums[parts] = n;
            parts += 1;
            if parts == 1 && i - part_start >= DATE_DIGITS && bytes.get(i) != Some(&b'.') {
                return None;
            }
            match bytes.get(i) {
                Some(b'.') if parts < 3 => i += 1,
                Some(b'-' | b'+') | None => break,
                _ => return None,
            }
        }
        let rest = &s[i..];
        let (pre, build) = match rest.as_bytes().first() {
            None => ("", ""),
            Some(b'+') => ("", &rest[1..]),
            Some(_) => match rest.find('+') {
                Some(plus) => (&rest[1..plus], &rest[plus + 1..]),
                None => (&rest[1..], ""),
            },
        };
        if rest.starts_with('-') && !valid_identifiers(pre) {
            return None;
        }
        if (rest.starts_with('+') || rest[1.min(rest.len())..].contains('+'))
            && !valid_identifiers(build)
        {
            return None;
        }
        Some(Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
            build,
            prefixed,
        })
    }

    /// The pre-release, without its `-`; empty for a release.
    pub fn pre(&self) -> &'a str {
        self.pre
    }

    /// The build metadata, without its `+`; empty when there is none.
    pub fn build(&self) -> &'a str {
        self.build
    }

    /// Whether the version is a pre-release.
    pub fn is_pre_release(&self) -> bool {
        !self.pre.is_empty()
    }

    /// Whether the tag was written with a `v`/`V` prefix.
    pub fn is_prefixed(&self) -> bool {
        self.prefixed
    }

    /// The pre-release channel: the pre-release with every purely numeric identifier removed
    /// and the rest joined by `.` (`rc.1` → `rc`, `alpine` → `alpine`, none → empty).
    pub fn channel(&self) -> String {
        channel_identifiers(self.pre).collect::<Vec<_>>().join(".")
    }

    /// Whether two versions are on the same pre-release channel, without allocating.
    pub fn same_channel(&self, other: &Version<'_>) -> bool {
        channel_identifiers(self.pre).eq(channel_identifiers(other.pre))
    }

    /// Semver precedence: numbers, then pre-release (a release ranks above its
    /// pre-releases); build metadata and the `v` prefix are ignored.
    pub fn precedence(&self, other: &Version<'_>) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| cmp_pre_release(self.pre, other.pre))
    }

    /// Semver precedence against a `semver` crate version (used by ranges).
    pub fn precedence_to(&self, other: &semver::Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| cmp_pre_release(self.pre, other.pre.as_str()))
    }
}

impl fmt::Display for Version<'_> {
    /// Prints the normalised form `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, without the prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`.
fn valid_identifiers(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn channel_identifiers(pre: &str) -> impl Iterator<Item = &str> {
    pre.split('.').filter(|id| !id.is_empty() && !is_digits(id))
}

/// Compares two pre-release strings by semver precedence; empty (a release) ranks highest.
/// Numeric identifiers compare as numbers of any length, below alphanumeric ones.
pub(crate) fn cmp_pre_release(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    if a == b {
        return Ordering::Equal;
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (is_digits(x), is_digits(y)) {
                    (true, true) => cmp_digits(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version<'_> {
        Version::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn lenient_forms() {
        assert_eq!(v("1").to_string(), "1.0.0");
        assert_eq!(v("1.2").to_string(), "1.2.0");
        assert_eq!(v("v1.2.3").to_string(), "1.2.3");
        assert_eq!(v("V1.2.3").to_string(), "1.2.3");
        assert!(v("v1.2.3").is_prefixed());
        assert_eq!(v("01.2.3").major, 1);
        assert_eq!(v("1.2.3-rc.1+build.5").pre(), "rc.1");
        assert_eq!(v("1.2.3-rc.1+build.5").build(), "build.5");
        assert_eq!(v("1.2.3+build").pre(), "");
        assert_eq!(v("1.2.3-alpha-1").pre(), "alpha-1");
        assert_eq!(v("3.11-slim").to_string(), "3.11.0-slim");
        assert_eq!(v("1234567").major, 1_234_567);
    }

    #[test]
    fn rejects_non_versions() {
        for s in [
            "",
            "v",
            "latest",
            "1.2.3.4",
            "1..2",
            "1.2.",
            ".1",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.3_1",
            "1.2.3-rc_1",
            "20240101",
            "v20240101",
            "20240101-rc",
            "vv1",
            "1a",
            "99999999999999999999.0.0",
            "1.2.3 ",
        ] {
            assert!(Version::parse(s).is_none(), "{s:?} should not parse");
        }
    }

    #[test]
    fn date_rule_only_for_a_lone_number() {
        assert!(Version::parse("20240101.1").is_some());
        assert!(Version::parse("2024010").is_some());
    }

    #[test]
    fn precedence_follows_semver() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                v(pair[0]).precedence(&v(pair[1])),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(v("1.2.3+a").precedence(&v("1.2.3+b")), Ordering::Equal);
        assert_eq!(v("v1.2.3").precedence(&v("1.2.3")), Ordering::Equal);
        assert_eq!(v("1.2").precedence(&v("1.2.0")), Ordering::Equal);
        assert_eq!(
            v("1.0.0-rc.99999999999999999999999").precedence(&v("1.0.0-rc.100")),
            Ordering::Greater
        );
    }

    #[test]
    fn channels() {
        for (version, channel) in [
            ("1.0.0-rc.1", "rc"),
            ("1.0.0-beta.2", "beta"),
            ("1.0-alpine", "alpine"),
            ("1.0.0", ""),
            ("1.0.0-1.rc.2.x", "rc.x"),
        ] {
            assert_eq!(v(version).channel(), channel, "the channel of {version}");
        }
        // (one version, another, whether they are on the same channel)
        for (one, other, same) in [
            ("1.0.0-rc.1", "2.0.0-rc.7", true),
            ("1.0.0-rc.1", "1.0.0-beta.1", false),
            ("1.0.0-rc.1", "1.0.0", false),
            ("1.0.0-5", "1.0.0", true),
        ] {
            assert_eq!(
                v(one).same_channel(&v(other)),
                same,
                "whether {one} and {other} are on the same channel"
            );
        }
    }

    #[test]
    fn compares_with_semver_crate() {
        let bound = semver::Version::parse("1.0.0-0").unwrap();
        assert_eq!(v("1.0.0-rc.1").precedence_to(&bound), Ordering::Greater);
        assert_eq!(v("1.0.0").precedence_to(&bound), Ordering::Greater);
        assert_eq!(v("0.9.9").precedence_to(&bound), Ordering::Less);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn version() -> impl Strategy<Value = String> {
        (
            prop::bool::ANY,
            0u8..3,
            0u8..3,
            0u8..3,
            prop::option::of("(alpha|beta|rc|0|1|11|a1)(\\.(alpha|0|1|11|x)){0,2}"),
            prop::option::of("[a-z0-9]{1,3}"),
        )
            .prop_map(|(v, a, b, c, pre, build)| {
                let mut s = format!("{}{a}.{b}.{c}", if v { "v" } else { "" });
                if let Some(p) = pre {
                    s = format!("{s}-{p}");
                }
                if let Some(b) = build {
                    s = format!("{s}+{b}");
                }
                s
            })
    }

    proptest! {
        #[test]
        fn precedence_is_a_total_order(a in version(), b in version(), c in version()) {
            let (x, y, z) = (
                Version::parse(&a).unwrap(),
                Version::parse(&b).unwrap(),
                Version::parse(&c).unwrap(),
            );
            prop_assert_eq!(x.precedence(&y), y.precedence(&x).reverse());
            if x.precedence(&y).is_le() && y.precedence(&z).is_le() {
                prop_assert!(x.precedence(&z).is_le());
            }
        }

        #[test]
        fn agrees_with_the_semver_crate(a in version(), b in version()) {
            let strict = |s: &str| semver::Version::parse(s.trim_start_matches('v'));
            if let (Ok(sa), Ok(sb)) = (strict(&a), strict(&b)) {
                let x = Version::parse(&a).unwrap();
                let y = Version::parse(&b).unwrap();
                prop_assert_eq!(x.precedence(&y), sa.cmp_precedence(&sb));
                prop_assert_eq!(x.precedence_to(&sb), sa.cmp_precedence(&sb));
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = Version::parse(&s);
        }
    }
}
