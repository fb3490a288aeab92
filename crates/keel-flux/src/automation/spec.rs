//! What an automation's spec asks for: the checkout, the policy selector, the update path
//! and when it is due.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use keel_core::Error;
use keel_core::version::Version;
use keel_k8s::selector::LabelSelector;
use serde_json::Value;

use super::{DEFAULT_BRANCH, str_at};
use crate::policy::parse_range;
use crate::reflector::objects::{Meta, parse_duration};

/// A checkout reference (`spec.git.checkout.ref`, or the `GitRepository`'s `spec.ref`), by
/// Flux's precedence: `commit`, then `name`, then `semver`, then `tag`, then `branch`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum CheckoutRef {
    Branch(String),
    Tag(String),
    SemVer(String),
    Name(String),
    Commit(String),
}

impl CheckoutRef {
    pub(super) fn read(reference: Option<&Value>) -> CheckoutRef {
        let field = |key: &str| str_at(reference, &[key]).map(str::to_owned);
        if let Some(commit) = field("commit") {
            CheckoutRef::Commit(commit)
        } else if let Some(name) = field("name") {
            // A branch by its full name is that branch.
            match name.strip_prefix("refs/heads/") {
                Some(branch) if !branch.is_empty() => CheckoutRef::Branch(branch.to_owned()),
                _ => CheckoutRef::Name(name),
            }
        } else if let Some(range) = field("semver") {
            CheckoutRef::SemVer(range)
        } else if let Some(tag) = field("tag") {
            CheckoutRef::Tag(tag)
        } else {
            CheckoutRef::Branch(field("branch").unwrap_or_else(|| DEFAULT_BRANCH.to_owned()))
        }
    }
}

impl fmt::Display for CheckoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckoutRef::Branch(name) => write!(f, "branch '{name}'"),
            CheckoutRef::Tag(name) => write!(f, "tag '{name}'"),
            CheckoutRef::SemVer(range) => write!(f, "the highest tag in semver range '{range}'"),
            CheckoutRef::Name(name) => write!(f, "reference '{name}'"),
            CheckoutRef::Commit(id) => write!(f, "commit '{id}'"),
        }
    }
}

/// `spec.policySelector`: the labels a policy must carry to be applied (all, when unset).
#[derive(Debug, Default, PartialEq)]
pub(super) struct PolicySelector(Option<LabelSelector>);

impl PolicySelector {
    /// Reads `matchLabels` and `matchExpressions` as Kubernetes reads a label selector.
    pub(super) fn read(value: Option<&Value>) -> Result<PolicySelector, String> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(PolicySelector::default());
        };
        LabelSelector::from_json(value, "spec.policySelector")
            .map(|s| PolicySelector(Some(s)))
            .map_err(|e| e.to_string())
    }

    pub(super) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.as_ref().is_none_or(|s| s.matches(labels))
    }
}

/// Whether the automation is due now.
pub(super) fn due(
    meta: &Meta,
    spec: Option<&Value>,
    status: Option<&Value>,
    now: DateTime<Utc>,
) -> bool {
    let last_run = str_at(status, &["lastAutomationRunTime"])
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let Some(last_run) = last_run else {
        return true;
    };
    // The generation last run: the status's when the run succeeded, the condition's either way.
    let tried = meta
        .ready()
        .and_then(|c| c.observed_generation)
        .or(meta.observed_generation);
    if meta.generation.is_some() && meta.generation != tried {
        return true;
    }
    let interval = str_at(spec, &["interval"])
        .and_then(parse_duration)
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .unwrap_or_else(|| chrono::Duration::minutes(1));
    last_run
        .checked_add_signed(interval)
        .is_none_or(|next| next <= now)
}

/// `spec.update.path` as a repository path: `None` for the root; `Err` for a path that
/// leaves the repository.
pub(super) fn update_path(path: &str) -> Result<Option<String>, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!("spec.update.path '{path}' leaves the repository"));
            }
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The highest of `tags` in the semver `range`, as Flux's source-controller picks the tag of a
/// `semver` checkout: tags read leniently (an optional `v`, missing minor and patch numbers
/// taken as 0), pre-releases only when the range names one; of tags of equal precedence the
/// greatest name, so that the choice never depends on the server's order.
pub(super) fn highest_tag_in_range(range: &str, tags: &[String]) -> Result<Option<String>, Error> {
    let range = parse_range(range)?;
    Ok(tags
        .iter()
        .filter_map(|tag| Some((Version::parse(tag)?, tag)))
        .filter(|(version, _)| range.matches(version))
        .max_by(|(a, a_tag), (b, b_tag)| a.precedence(b).then_with(|| a_tag.cmp(b_tag)))
        .map(|(_, tag)| tag.clone()))
}
