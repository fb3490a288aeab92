//! The orders of the built-in policies: one [`Ranker`] per policy family, reading a tag's
//! value into a key, comparing keys and guarding against downgrades.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use regex::Regex;

use super::{Candidate, PolicySpec, Reason, SortOrder};
use crate::version::{Decimal, DockerVersion, Version, natural_cmp};

/// One policy's order: how to read a value into a key (rejecting what does not parse or
/// breaks a constraint), how keys compare, and the no-downgrade guard.
pub(super) trait Ranker<'v> {
    type Key;

    /// Reads `value` into a key, or says cheaply why not (no allocation on the hot path).
    fn key(&self, value: &'v str, candidate: &Candidate<'_>) -> Result<Self::Key, Miss>;

    /// Spells out a miss of `value`, for explanations only.
    fn reason(&self, miss: Miss, value: &str) -> Reason {
        let _ = value;
        match miss {
            Miss::Unparsable(expected) => Reason::Unparsable { expected },
            other => unreachable!("{other:?} from a ranker without constraints"),
        }
    }

    fn cmp(&self, a: &Self::Key, b: &Self::Key) -> Ordering;

    /// Whether the chosen key may replace the current tag.
    fn guard(&self, key: &Self::Key) -> Result<(), Reason>;
}

/// Why a value was rejected before ordering; spelled out as a [`Reason`] only when explaining.
#[derive(Clone, Copy, Debug)]
pub(super) enum Miss {
    Unparsable(&'static str),
    NoMatch,
    Channel,
    Major(u64),
    Minor(u64),
    OutOfRange,
    PreRelease,
    Shape,
}

pub(super) fn not_newer(current: impl fmt::Display) -> Reason {
    Reason::NotNewer {
        current: current.to_string(),
    }
}

/// The common guard: strictly above the current key, when there is one.
pub(super) fn above<K>(
    allow_downgrade: bool,
    current: Option<&K>,
    key: &K,
    cmp: impl Fn(&K, &K) -> Ordering,
    shown: impl Fn(&K) -> String,
) -> Result<(), Reason> {
    match current {
        Some(cur) if !allow_downgrade && cmp(key, cur) != Ordering::Greater => {
            Err(not_newer(shown(cur)))
        }
        _ => Ok(()),
    }
}

/// The no-downgrade guard of the string orders: `key` must order after `current` by `cmp`.
fn above_str(
    allow_downgrade: bool,
    current: Option<&str>,
    key: &str,
    cmp: impl Fn(&str, &str) -> Ordering,
) -> Result<(), Reason> {
    above(
        allow_downgrade,
        current.as_ref(),
        &key,
        |a, b| cmp(a, b),
        |c| c.to_string(),
    )
}

pub(super) const SEMVER: &str = "a semver version";

/// The semver orders: `all`, `major`, `minor` and `patch` (constrained relative to the
/// current version) and `semver:` ranges (constrained by the range).
pub(super) struct SemverRanker<'s, 'c> {
    pub(super) spec: &'s PolicySpec,
    pub(super) current: Option<Version<'c>>,
    pub(super) match_channel: bool,
    pub(super) allow_downgrade: bool,
}

impl<'v> Ranker<'v> for SemverRanker<'_, '_> {
    type Key = Version<'v>;

    fn key(&self, value: &'v str, _: &Candidate<'_>) -> Result<Version<'v>, Miss> {
        let v = Version::parse(value).ok_or(Miss::Unparsable(SEMVER))?;
        if let PolicySpec::Semver(range) = self.spec {
            return if range.matches(&v) {
                Ok(v)
            } else if v.is_pre_release() && !range.admits_pre_releases() {
                Err(Miss::PreRelease)
            } else {
                Err(Miss::OutOfRange)
            };
        }
        let Some(cur) = &self.current else {
            return Ok(v);
        };
        if matches!(self.spec, PolicySpec::All) {
            return Ok(v);
        }
        if self.match_channel && !v.same_channel(cur) {
            return Err(Miss::Channel);
        }
        let minor = matches!(self.spec, PolicySpec::Minor | PolicySpec::Patch);
        if minor && v.major != cur.major {
            return Err(Miss::Major(v.major));
        }
        if matches!(self.spec, PolicySpec::Patch) && v.minor != cur.minor {
            return Err(Miss::Minor(v.minor));
        }
        Ok(v)
    }

    fn reason(&self, miss: Miss, value: &str) -> Reason {
        let current = self.current.unwrap_or(Version::ZERO);
        let range = || match self.spec {
            PolicySpec::Semver(range) => range.to_string(),
            other => unreachable!("a range miss from policy {other}"),
        };
        match miss {
            Miss::Channel => Reason::DifferentChannel {
                channel: Version::parse(value)
                    .map(|v| v.channel())
                    .unwrap_or_default(),
                current: current.channel(),
            },
            Miss::Major(major) => Reason::DifferentMajor {
                major,
                current: current.major,
            },
            Miss::Minor(minor) => Reason::DifferentMinor {
                minor,
                current: current.minor,
            },
            Miss::PreRelease => Reason::PreRelease { range: range() },
            Miss::OutOfRange => Reason::OutOfRange { range: range() },
            Miss::Unparsable(expected) => Reason::Unparsable { expected },
            other => unreachable!("{other:?} from a semver policy"),
        }
    }

    fn cmp(&self, a: &Version<'v>, b: &Version<'v>) -> Ordering {
        a.precedence(b)
    }

    fn guard(&self, key: &Version<'v>) -> Result<(), Reason> {
        above_version(self.allow_downgrade, self.current.as_ref(), key)
    }
}

/// The no-downgrade guard of the semver orders: `key` must take precedence over `current`.
fn above_version(
    allow_downgrade: bool,
    current: Option<&Version<'_>>,
    key: &Version<'_>,
) -> Result<(), Reason> {
    above(
        allow_downgrade,
        current,
        key,
        |a, b| a.precedence(b),
        |c| c.to_string(),
    )
}

/// `force`: any tag. Semver tags order above the rest (by precedence), the rest in natural
/// order; only when both the current tag and the result are semver must the result be
/// greater.
pub(super) struct ForceRanker<'c> {
    pub(super) current: Option<Version<'c>>,
    pub(super) allow_downgrade: bool,
}

impl<'v> Ranker<'v> for ForceRanker<'_> {
    type Key = (Option<Version<'v>>, &'v str);

    fn key(&self, value: &'v str, _: &Candidate<'_>) -> Result<Self::Key, Miss> {
        Ok((Version::parse(value), value))
    }

    fn cmp(&self, a: &Self::Key, b: &Self::Key) -> Ordering {
        match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.precedence(y),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => natural_cmp(a.1, b.1),
        }
    }

    fn guard(&self, key: &Self::Key) -> Result<(), Reason> {
        match (&self.current, &key.0) {
            (Some(cur), Some(v))
                if !self.allow_downgrade && v.precedence(cur) != Ordering::Greater =>
            {
                Err(not_newer(cur))
            }
            _ => Ok(()),
        }
    }
}

pub(super) enum Pattern<'s> {
    Glob(&'s super::Glob),
    /// The regex, and whether it has a `compare` group.
    Regex(&'s Regex, bool),
}

pub(super) fn has_compare_group(re: &Regex) -> bool {
    re.capture_names().flatten().any(|n| n == "compare")
}

/// The key of a value under `regexp:`: its `compare` group, or the whole value.
pub(super) fn regex_key<'v>(re: &Regex, compare: bool, value: &'v str) -> Option<&'v str> {
    if compare {
        re.captures(value)?.name("compare").map(|m| m.as_str())
    } else {
        re.is_match(value).then_some(value)
    }
}

/// `glob:` and `regexp:`: matching values in natural order.
pub(super) struct PatternRanker<'s, 'c> {
    pub(super) pattern: Pattern<'s>,
    pub(super) current: Option<&'c str>,
    pub(super) allow_downgrade: bool,
}

impl<'v> Ranker<'v> for PatternRanker<'_, '_> {
    type Key = &'v str;

    fn key(&self, value: &'v str, _: &Candidate<'_>) -> Result<&'v str, Miss> {
        let key = match &self.pattern {
            Pattern::Glob(g) => g.matches(value).then_some(value),
            Pattern::Regex(re, compare) => regex_key(re, *compare, value),
        };
        key.ok_or(Miss::NoMatch)
    }

    fn reason(&self, miss: Miss, _: &str) -> Reason {
        let pattern = match &self.pattern {
            Pattern::Glob(g) => format!("glob {}", g.as_str()),
            Pattern::Regex(re, _) => format!("regexp /{}/", re.as_str()),
        };
        match miss {
            Miss::NoMatch => Reason::NoMatch { pattern },
            Miss::Unparsable(expected) => Reason::Unparsable { expected },
            other => unreachable!("{other:?} from a pattern policy"),
        }
    }

    fn cmp(&self, a: &&'v str, b: &&'v str) -> Ordering {
        natural_cmp(a, b)
    }

    fn guard(&self, key: &&'v str) -> Result<(), Reason> {
        above_str(self.allow_downgrade, self.current, key, natural_cmp)
    }
}

pub(super) struct AlphabeticalRanker<'c> {
    pub(super) order: SortOrder,
    pub(super) current: Option<&'c str>,
    pub(super) allow_downgrade: bool,
}

pub(super) fn ordered(order: SortOrder, ord: Ordering) -> Ordering {
    match order {
        SortOrder::Asc => ord,
        SortOrder::Desc => ord.reverse(),
    }
}

impl<'v> Ranker<'v> for AlphabeticalRanker<'_> {
    type Key = &'v str;

    fn key(&self, value: &'v str, _: &Candidate<'_>) -> Result<&'v str, Miss> {
        Ok(value)
    }

    fn cmp(&self, a: &&'v str, b: &&'v str) -> Ordering {
        ordered(self.order, a.as_bytes().cmp(b.as_bytes()))
    }

    fn guard(&self, key: &&'v str) -> Result<(), Reason> {
        above_str(self.allow_downgrade, self.current, key, |a, b| {
            ordered(self.order, a.as_bytes().cmp(b.as_bytes()))
        })
    }
}

pub(super) struct NumericalRanker<'c> {
    pub(super) order: SortOrder,
    pub(super) current: Option<Decimal<'c>>,
    pub(super) allow_downgrade: bool,
}

impl<'v> Ranker<'v> for NumericalRanker<'_> {
    type Key = Decimal<'v>;

    fn key(&self, value: &'v str, _: &Candidate<'_>) -> Result<Decimal<'v>, Miss> {
        Decimal::parse(value).ok_or(Miss::Unparsable("a decimal number"))
    }

    fn cmp(&self, a: &Decimal<'v>, b: &Decimal<'v>) -> Ordering {
        ordered(self.order, a.cmp(b))
    }

    fn guard(&self, key: &Decimal<'v>) -> Result<(), Reason> {
        match &self.current {
            Some(cur) if !self.allow_downgrade && ordered(self.order, key.cmp(cur)).is_le() => {
                Err(not_newer(format!("{cur:?}")))
            }
            _ => Ok(()),
        }
    }
}

pub(super) struct DockerRanker<'c> {
    pub(super) current: DockerVersion<'c>,
    pub(super) current_tag: &'c str,
    pub(super) allow_downgrade: bool,
}

impl<'v> Ranker<'v> for DockerRanker<'_> {
    type Key = DockerVersion<'v>;

    fn key(&self, value: &'v str, _: &Candidate<'_>) -> Result<DockerVersion<'v>, Miss> {
        let v = DockerVersion::parse(value)
            .ok_or(Miss::Unparsable("a docker version v?<n>(.<n>)*[-<suffix>]"))?;
        if self.current.is_compatible(&v) {
            Ok(v)
        } else {
            Err(Miss::Shape)
        }
    }

    fn reason(&self, miss: Miss, _: &str) -> Reason {
        match miss {
            Miss::Shape => Reason::DifferentShape {
                current: self.current_tag.to_owned(),
            },
            Miss::Unparsable(expected) => Reason::Unparsable { expected },
            other => unreachable!("{other:?} from the docker policy"),
        }
    }

    fn cmp(&self, a: &DockerVersion<'v>, b: &DockerVersion<'v>) -> Ordering {
        a.numbers_cmp(b)
    }

    fn guard(&self, key: &DockerVersion<'v>) -> Result<(), Reason> {
        if !self.allow_downgrade && key.numbers_cmp(&self.current).is_le() {
            return Err(not_newer(self.current_tag));
        }
        Ok(())
    }
}

/// `newest-build`: by image creation time.
pub(super) struct CreatedRanker {
    pub(super) current: Option<DateTime<Utc>>,
    pub(super) allow_downgrade: bool,
}

impl<'v> Ranker<'v> for CreatedRanker {
    type Key = DateTime<Utc>;

    fn key(&self, _: &'v str, candidate: &Candidate<'_>) -> Result<DateTime<Utc>, Miss> {
        candidate
            .created
            .ok_or(Miss::Unparsable("an image with a known creation time"))
    }

    fn cmp(&self, a: &DateTime<Utc>, b: &DateTime<Utc>) -> Ordering {
        a.cmp(b)
    }

    fn guard(&self, key: &DateTime<Utc>) -> Result<(), Reason> {
        above(
            self.allow_downgrade,
            self.current.as_ref(),
            key,
            |a, b| a.cmp(b),
            |c| c.to_rfc3339(),
        )
    }
}
