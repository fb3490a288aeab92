//! Policies: which tag, if any, an image should move to.
//!
//! A [`Policy`] looks at the tag an image runs now and the tags a registry lists and returns a
//! [`Decision`]. The built-in policies (`minor`, `semver:^1.2`, `glob:...`,
//! `regexp:...`, `numerical`, `docker`, `force`, `digest`, `newest-build`...) are one type,
//! [`VersionPolicy`], built from a [`PolicySpec`] parsed from its string and [`PolicyOptions`]
//! (exclude, filter, extract, pre-release matching, downgrades). Users implement [`Policy`] for
//! their own rules.
//!
//! ```
//! use keel_core::policy::{Candidate, Current, Policy, SelectInput, VersionPolicy};
//!
//! let policy: VersionPolicy = "minor".parse().unwrap();
//! let tags = ["1.2.4", "1.3.0", "2.0.0", "1.3.1-rc.1"].map(Candidate::new);
//! let decision = policy.select(&SelectInput::new(Current::tag("1.2.3"), &tags));
//! assert_eq!(decision.tag(), Some("1.3.0"));
//! ```
//!
#![doc = include_str!("RULES.md")]

mod avoid;
mod engine;
mod explain;
mod glob;
mod rankers;
mod spec;

pub use self::avoid::AvoidTag;
pub use self::engine::VersionPolicy;
pub use self::explain::{Explanation, Reason, Rejection};
pub use self::glob::Glob;
pub use self::spec::{PolicyOptions, PolicySpec, SortOrder, regex_reason};

#[cfg(test)]
mod rules_tests;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::reference::Digest;

/// One tag a registry lists, with what is known about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The tag.
    pub tag: &'a str,
    /// The digest the tag resolves to, when the policy asked for digests.
    pub digest: Option<&'a Digest>,
    /// When the image was created, when the policy asked for metadata.
    pub created: Option<DateTime<Utc>>,
}

impl<'a> Candidate<'a> {
    /// A candidate known only by its tag.
    pub fn new(tag: &'a str) -> Self {
        Candidate {
            tag,
            digest: None,
            created: None,
        }
    }

    /// The same candidate with its digest.
    pub fn with_digest(self, digest: &'a Digest) -> Self {
        Candidate {
            digest: Some(digest),
            ..self
        }
    }

    /// The same candidate with its creation time.
    pub fn with_created(self, created: DateTime<Utc>) -> Self {
        Candidate {
            created: Some(created),
            ..self
        }
    }
}

/// What an image runs now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Current<'a> {
    /// The current tag; `None` when unknown (then no-downgrade cannot apply).
    pub tag: Option<&'a str>,
    /// The digest the image runs, when known.
    pub digest: Option<&'a Digest>,
    /// When the running image was created, when known.
    pub created: Option<DateTime<Utc>>,
}

impl<'a> Current<'a> {
    /// Nothing is known about what runs now.
    pub fn none() -> Self {
        Current::default()
    }

    /// Runs `tag`.
    pub fn tag(tag: &'a str) -> Self {
        Current {
            tag: Some(tag),
            ..Current::default()
        }
    }

    /// The same, with the digest that runs.
    pub fn with_digest(self, digest: &'a Digest) -> Self {
        Current {
            digest: Some(digest),
            ..self
        }
    }

    /// The same, with the running image's creation time.
    pub fn with_created(self, created: DateTime<Utc>) -> Self {
        Current {
            created: Some(created),
            ..self
        }
    }
}

/// The question put to a policy: what runs now, what the registry lists, and whether the
/// caller wants the reasons.
#[derive(Clone, Copy, Debug)]
pub struct SelectInput<'a> {
    /// What runs now.
    pub current: Current<'a>,
    /// The tags the registry lists, in any order (the decision never depends on it).
    pub candidates: &'a [Candidate<'a>],
    /// Whether to fill [`Decision::explanation`]; selection stays allocation-light without it.
    pub explain: bool,
}

impl<'a> SelectInput<'a> {
    /// A question without explanation.
    pub fn new(current: Current<'a>, candidates: &'a [Candidate<'a>]) -> Self {
        SelectInput {
            current,
            candidates,
            explain: false,
        }
    }

    /// The same question, asking for the reasons.
    pub fn explained(self) -> Self {
        SelectInput {
            explain: true,
            ..self
        }
    }
}

/// What a policy needs to know beyond the tag names; the pipeline fetches only that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The digest of the current tag as the registry has it now (`digest`, `force` + match-tag).
    pub current_tag_digest: bool,
    /// The creation time of candidates (`newest-build`); fetched only for tags the policy
    /// [admits](Policy::admits).
    pub created: bool,
}

/// Decides which tag an image should move to.
///
/// Contract: `select` is a pure function of its input. It never returns the current tag
/// unless the digest changed (a digest update), the result does not depend on the order of
/// the candidates, and it returns [`Decision::none`] rather than an error when nothing
/// qualifies. Implementations must be cheap to call repeatedly and safe to share between
/// threads.
///
/// ```
/// use keel_core::policy::{Candidate, Current, Decision, Policy, SelectInput};
///
/// /// Moves to the lexically greatest tag that starts with "release-".
/// #[derive(Debug)]
/// struct Releases;
///
/// impl Policy for Releases {
///     fn select(&self, input: &SelectInput<'_>) -> Decision {
///         input
///             .candidates
///             .iter()
///             .map(|c| c.tag)
///             .filter(|t| t.starts_with("release-") && Some(*t) != input.current.tag)
///             .max()
///             .map_or_else(Decision::none, Decision::to_tag)
///     }
/// }
///
/// let tags = ["release-1", "release-3", "dev"].map(Candidate::new);
/// let d = Releases.select(&SelectInput::new(Current::tag("release-1"), &tags));
/// assert_eq!(d.tag(), Some("release-3"));
/// ```
pub trait Policy: Send + Sync + fmt::Debug {
    /// Decides, for one tracked image, the tag (and digest) to move to, or none.
    fn select(&self, input: &SelectInput<'_>) -> Decision;

    /// What the policy needs beyond tag names. Default: nothing.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// A cheap pre-filter on tag names, applied before fetching per-tag data such as creation
    /// times, so that a policy filtering to a few tags does not cost a request per tag.
    /// Default: every tag.
    fn admits(&self, tag: &str) -> bool {
        let _ = tag;
        true
    }

    /// The policy in a few words, for listings and dashboards, e.g. `minor` or
    /// `semver:^1.2`. Default: its `Debug` form.
    fn summary(&self) -> String {
        format!("{self:?}")
    }
}

/// What to move to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Update {
    /// The tag to run.
    pub tag: String,
    /// The digest to pin, for digest updates (`digest`, `force` with match-tag) or when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// A policy's answer: an update or none, and, when asked, why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Decision {
    /// The update, or `None` when there is nothing to move to.
    pub update: Option<Update>,
    /// The reasons, when the input asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

impl Decision {
    /// Nothing to move to.
    pub fn none() -> Self {
        Decision::default()
    }

    /// Move to `tag`.
    pub fn to_tag(tag: &str) -> Self {
        Decision {
            update: Some(Update {
                tag: tag.to_owned(),
                digest: None,
            }),
            explanation: None,
        }
    }

    /// The tag to move to, if any.
    pub fn tag(&self) -> Option<&str> {
        self.update.as_ref().map(|u| u.tag.as_str())
    }

    /// The same decision carrying `explanation`.
    pub fn with_explanation(self, explanation: Option<Explanation>) -> Self {
        Decision {
            explanation,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Compiles only while `Policy` is dyn-compatible and shareable across threads.
    #[test]
    fn policy_is_object_safe() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Policy>();
        let p: Arc<dyn Policy> = Arc::new("minor".parse::<VersionPolicy>().unwrap());
        let tags = [Candidate::new("1.0.1")];
        assert_eq!(
            p.select(&SelectInput::new(Current::tag("1.0.0"), &tags))
                .tag(),
            Some("1.0.1")
        );
    }
}
