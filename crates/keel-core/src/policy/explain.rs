//! Why a policy chose what it chose.

use std::fmt;

use serde::Serialize;

/// The reasons behind a [`Decision`](super::Decision): the chosen tag, and for each rejected
/// candidate the first rule that rejected it, in the order the rules apply (excluded,
/// filtered, unparsable, constrained, not newer, outranked).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The chosen tag, if any.
    pub chosen: Option<String>,
    /// A note on the decision as a whole, e.g. why no candidate could qualify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Every candidate that was not chosen, in the order the registry listed them.
    pub rejected: Vec<Rejection>,
}

impl fmt::Display for Explanation {
    /// One line per rejected candidate, then the outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rejected {
            writeln!(f, "rejected {}: {}", r.tag, r.reason)?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "note: {note}")?;
        }
        match &self.chosen {
            Some(tag) => writeln!(f, "chosen: {tag}"),
            None => writeln!(f, "chosen: nothing"),
        }
    }
}

/// One candidate that was not chosen, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The tag.
    pub tag: String,
    /// The first rule that rejected it.
    #[serde(flatten)]
    pub reason: Reason,
}

/// The rule that rejected a candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// Matched an exclude pattern.
    Excluded {
        /// The pattern it matched.
        pattern: String,
    },
    /// Did not match the filter.
    Filtered {
        /// The filter.
        pattern: String,
    },
    /// Does not parse in the policy's order.
    Unparsable {
        /// What the policy reads tags as, e.g. `a semver version`.
        expected: &'static str,
    },
    /// Did not match the policy's glob or regex.
    NoMatch {
        /// The pattern.
        pattern: String,
    },
    /// On another pre-release channel than the current tag.
    DifferentChannel {
        /// The candidate's channel.
        channel: String,
        /// The current tag's channel.
        current: String,
    },
    /// Another major version than the current tag (`minor`, `patch`).
    DifferentMajor {
        /// The candidate's major number.
        major: u64,
        /// The current tag's.
        current: u64,
    },
    /// Another minor version than the current tag (`patch`).
    DifferentMinor {
        /// The candidate's minor number.
        minor: u64,
        /// The current tag's.
        current: u64,
    },
    /// Outside the `semver:` range.
    OutOfRange {
        /// The range.
        range: String,
    },
    /// A pre-release, and the range names none.
    PreRelease {
        /// The range.
        range: String,
    },
    /// Another shape than the current tag under `docker`: number of parts or suffix.
    DifferentShape {
        /// The current tag, whose shape candidates must have.
        current: String,
    },
    /// Not the current tag (policies that only follow the current tag's digest).
    NotCurrentTag,
    /// Does not order above the current tag (no downgrade).
    NotNewer {
        /// The current tag.
        current: String,
    },
    /// Another candidate orders above it.
    Outranked {
        /// The tag that does.
        by: String,
    },
    /// Orders equal to the chosen tag, which won the tie (same `v` prefix as the current tag,
    /// then byte-wise greatest).
    LostTie {
        /// The tag that won.
        to: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Excluded { pattern } => write!(f, "excluded by /{pattern}/"),
            Reason::Filtered { pattern } => write!(f, "does not match filter /{pattern}/"),
            Reason::Unparsable { expected } => write!(f, "not {expected}"),
            Reason::NoMatch { pattern } => write!(f, "does not match {pattern}"),
            Reason::DifferentChannel { channel, current } => write!(
                f,
                "pre-release channel {channel:?} differs from the current {current:?}"
            ),
            Reason::DifferentMajor { major, current } => {
                write!(
                    f,
                    "major version {major} differs from the current {current}"
                )
            }
            Reason::DifferentMinor { minor, current } => {
                write!(
                    f,
                    "minor version {minor} differs from the current {current}"
                )
            }
            Reason::OutOfRange { range } => write!(f, "outside range {range}"),
            Reason::PreRelease { range } => {
                write!(f, "pre-release, and range {range} names no pre-release")
            }
            Reason::DifferentShape { current } => write!(
                f,
                "different number of parts or suffix than the current {current}"
            ),
            Reason::NotCurrentTag => write!(f, "not the current tag"),
            Reason::NotNewer { current } => write!(f, "not newer than the current {current}"),
            Reason::Outranked { by } => write!(f, "{by} is newer"),
            Reason::LostTie { to } => write!(f, "ties with {to}, which is preferred"),
        }
    }
}
