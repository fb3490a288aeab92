//! Keeping a version that failed to roll out from coming straight back.
//!
//! A target that rolls an update back (keel-k8s, keel-helm, keel-docker) records the image it
//! undid and wraps the image's policy in [`AvoidTag`] on later discoveries: that tag (or, for
//! a policy that follows one tag's digests, that digest) is never chosen again, while any
//! other newer version is chosen as usual, so the next release moves on.

use std::sync::Arc;

use super::{Candidate, Decision, Needs, Policy, SelectInput};
use crate::reference::Digest;

/// A policy that never chooses one version that failed to roll out, otherwise `inner`.
///
/// ```
/// use std::sync::Arc;
/// use keel_core::VersionPolicy;
/// use keel_core::policy::{AvoidTag, Candidate, Current, Policy, SelectInput};
///
/// let minor: Arc<dyn Policy> = Arc::new("minor".parse::<VersionPolicy>().unwrap());
/// let policy = AvoidTag::new(minor, "1.3.0");
/// let tags = ["1.2.3", "1.3.0", "1.3.1"].map(Candidate::new);
/// let decision = policy.select(&SelectInput::new(Current::tag("1.2.3"), &tags));
/// assert_eq!(decision.tag(), Some("1.3.1"));
/// ```
#[derive(Debug)]
pub struct AvoidTag {
    inner: Arc<dyn Policy>,
    tag: String,
    digest: Option<Digest>,
}

impl AvoidTag {
    /// `inner`, without `tag`.
    pub fn new(inner: Arc<dyn Policy>, tag: impl Into<String>) -> Self {
        AvoidTag {
            inner,
            tag: tag.into(),
            digest: None,
        }
    }

    /// `inner`, without `tag` at `digest` only: for a policy that follows one tag to new
    /// digests (`digest`, `force` with match-tag), where the failed version is a digest and
    /// the tag's next digest is welcome.
    pub fn at_digest(inner: Arc<dyn Policy>, tag: impl Into<String>, digest: Digest) -> Self {
        AvoidTag {
            inner,
            tag: tag.into(),
            digest: Some(digest),
        }
    }
}

impl Policy for AvoidTag {
    fn select(&self, input: &SelectInput<'_>) -> Decision {
        if let Some(avoided) = &self.digest {
            let decision = self.inner.select(input);
            let chose_avoided = decision
                .update
                .as_ref()
                .is_some_and(|u| u.tag == self.tag && u.digest.as_ref() == Some(avoided));
            return if chose_avoided {
                Decision::none().with_explanation(decision.explanation)
            } else {
                decision
            };
        }
        let kept: Vec<Candidate<'_>> = input
            .candidates
            .iter()
            .filter(|c| c.tag != self.tag)
            .copied()
            .collect();
        let mut narrowed = SelectInput::new(input.current, &kept);
        narrowed.explain = input.explain;
        self.inner.select(&narrowed)
    }

    fn needs(&self) -> Needs {
        self.inner.needs()
    }

    fn admits(&self, tag: &str) -> bool {
        (self.digest.is_some() || tag != self.tag) && self.inner.admits(tag)
    }

    fn summary(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{} (not {}@{digest})", self.inner.summary(), self.tag),
            None => format!("{} (not {})", self.inner.summary(), self.tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VersionPolicy;
    use crate::policy::{Current, PolicyOptions};

    #[test]
    fn the_failed_tag_is_skipped_and_newer_ones_are_not() {
        let minor: Arc<dyn Policy> = Arc::new("minor".parse::<VersionPolicy>().unwrap());
        let policy = AvoidTag::new(minor, "1.3.0");
        let tags = ["1.2.3", "1.3.0"].map(Candidate::new);
        let decision = policy.select(&SelectInput::new(Current::tag("1.2.3"), &tags));
        assert_eq!(decision.tag(), None);
        let tags = ["1.2.3", "1.3.0", "1.3.1"].map(Candidate::new);
        let decision = policy.select(&SelectInput::new(Current::tag("1.2.3"), &tags));
        assert_eq!(decision.tag(), Some("1.3.1"));
        assert!(!policy.admits("1.3.0"));
        assert!(policy.admits("1.3.1"));
        assert_eq!(policy.summary(), "minor (not 1.3.0)");
    }

    #[test]
    fn a_failed_digest_is_skipped_and_the_tags_next_digest_is_not() {
        let digest = |c: char| Digest::new(format!("sha256:{}", c.to_string().repeat(64))).unwrap();
        let follow: Arc<dyn Policy> =
            Arc::new(VersionPolicy::parse("digest", &PolicyOptions::default()).unwrap());
        let policy = AvoidTag::at_digest(follow, "latest", digest('b'));
        let (running, failed, next) = (digest('a'), digest('b'), digest('c'));
        let current = Current::tag("latest").with_digest(&running);
        let tags = [Candidate::new("latest").with_digest(&failed)];
        let decision = policy.select(&SelectInput::new(current, &tags));
        assert_eq!(decision.tag(), None);
        let tags = [Candidate::new("latest").with_digest(&next)];
        let decision = policy.select(&SelectInput::new(current, &tags));
        assert_eq!(decision.update.and_then(|u| u.digest), Some(next));
        assert!(policy.admits("latest"));
    }
}
