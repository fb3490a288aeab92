//! One image's decision with everything it was decided from, for tools that show it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::facts::{RepoFacts, decide};
use super::{Pipeline, new_image};
use crate::error::Result;
use crate::policy::{Candidate, Decision};
use crate::reference::Digest;
use crate::registry::TagList;
use crate::target::{TrackedImage, UpdatePlan};

/// What [`Pipeline::check`] found for one image: the repository's tags with the digests and
/// creation times its policy needed, and the policy's decision.
#[derive(Debug)]
pub struct Check {
    facts: RepoFacts,
    /// Unreadable tags and those built for none of the image's platforms, with the reason.
    skipped: Vec<(String, String)>,
    /// The policy's decision, with its explanation when one was asked for. No update when
    /// the tag list was cut short ([`Check::truncated`]).
    pub decision: Decision,
}

impl Check {
    /// The repository's tags, as listed.
    pub fn tags(&self) -> &TagList {
        &self.facts.tags
    }

    /// Whether the listing budget cut the tag list short; then nothing was decided.
    pub fn truncated(&self) -> bool {
        self.facts.tags.truncated
    }

    /// The candidates the policy chose from: every listed tag with what was read of it.
    pub fn candidates(&self) -> Vec<Candidate<'_>> {
        self.facts.candidates()
    }

    /// The digests resolved for the decision, by tag.
    pub fn digests(&self) -> &HashMap<String, Digest> {
        &self.facts.digests
    }

    /// The creation times read for the decision, by tag.
    pub fn created(&self) -> &HashMap<String, DateTime<Utc>> {
        &self.facts.created
    }

    /// Tags left out, with the reason: their metadata could not be read, or their image is
    /// built for none of the platforms the image asks for ([`TrackedImage::platforms`]).
    pub fn skipped_tags(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// The plan a pass would make for `image` of target `target` from this decision: what it
    /// moves to, with the digest pinned as a pass pins it. `None` without an update.
    ///
    /// # Errors
    /// The chosen tag is not a valid tag.
    pub fn plan(&self, target: &str, image: &TrackedImage) -> Result<Option<UpdatePlan>> {
        let Some(update) = self.decision.update.clone() else {
            return Ok(None);
        };
        let (new, _) = new_image(&image.image, update, &self.facts.digests)?;
        Ok(Some(UpdatePlan {
            target: target.to_owned(),
            id: image.id.clone(),
            current: image.image.clone(),
            new,
        }))
    }
}

impl Pipeline {
    /// Decides for one image as a pass would, without planning or applying anything: lists
    /// its repository, reads what its policy needs (digests, creation times, through the
    /// pipeline's metadata cache) and lets the policy decide, explaining itself when
    /// `explain` is set. A tag list cut short by the listing budget decides nothing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use keel_core::memory::InMemoryRegistry;
    /// use keel_core::pipeline::Pipeline;
    /// use keel_core::target::TrackedImage;
    /// use keel_core::VersionPolicy;
    /// # futures::executor::block_on(async {
    /// let registry = Arc::new(InMemoryRegistry::new("demo registry"));
    /// registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.3.0", "2.0.0"]);
    /// let policy: VersionPolicy = "minor".parse().unwrap();
    /// let image = TrackedImage::new("web", "ghcr.io/acme/web:1.2.3".parse().unwrap(), Arc::new(policy));
    ///
    /// let check = Pipeline::new(registry).check(&image, true).await.unwrap();
    /// assert_eq!(check.decision.tag(), Some("1.3.0"));
    /// assert_eq!(check.candidates().len(), 3);
    /// let plan = check.plan("demo", &image).unwrap().expect("an update");
    /// assert_eq!(plan.new.to_string(), "ghcr.io/acme/web:1.3.0");
    /// # });
    /// ```
    pub async fn check(&self, image: &TrackedImage, explain: bool) -> Result<Check> {
        let facts = self.gather(&[(0, image.clone())]).await?;
        let decision = if facts.tags.truncated {
            Decision::none()
        } else {
            decide(image, &facts, &facts.candidates(), explain)
        };
        let mut skipped = facts.unreadable.clone();
        skipped.extend(facts.misfits(image));
        Ok(Check {
            facts,
            skipped,
            decision,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::memory::InMemoryRegistry;
    use crate::policy::VersionPolicy;

    fn tracked(image: &str, policy: &str) -> TrackedImage {
        let policy: VersionPolicy = policy.parse().unwrap();
        TrackedImage::new("one", image.parse().unwrap(), Arc::new(policy))
    }

    #[test]
    fn newest_build_reads_creation_times_and_explains() {
        let registry = Arc::new(InMemoryRegistry::new("memory"));
        let day = |d| Some(Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap());
        registry.push("ghcr.io/acme/web", "main-a", day(1));
        let newest = registry.push("ghcr.io/acme/web", "main-c", day(3));
        registry.push("ghcr.io/acme/web", "main-b", day(2));
        let pipeline = Pipeline::new(registry.clone());
        let image = tracked("ghcr.io/acme/web:main-a", "newest-build");

        let check = futures::executor::block_on(pipeline.check(&image, true)).unwrap();
        assert_eq!(check.decision.tag(), Some("main-c"));
        // The chosen tag's digest was confirmed with a fresh lookup.
        assert_eq!(check.digests().get("main-c"), Some(&newest));
        assert_eq!(check.created().len(), 3);
        assert!(!check.truncated());
        assert_eq!(check.tags().tags.len(), 3);
        let explanation = check.decision.explanation.as_ref().unwrap();
        assert_eq!(explanation.chosen.as_deref(), Some("main-c"));
        assert_eq!(
            check
                .candidates()
                .iter()
                .filter(|c| c.created.is_some())
                .count(),
            3
        );
        // A second check reads the creation times from the pipeline's cache.
        let reads = registry.metadata_calls();
        futures::executor::block_on(pipeline.check(&image, false)).unwrap();
        assert_eq!(registry.metadata_calls(), reads);
    }

    /// The in-memory registry, with every listing reported as cut short by a budget.
    #[derive(Debug)]
    struct CutShort(InMemoryRegistry);

    #[async_trait::async_trait]
    impl crate::registry::Registry for CutShort {
        fn name(&self) -> &str {
            self.0.name()
        }

        async fn list_tags(&self, image: &crate::ImageRef) -> Result<TagList> {
            let mut tags = self.0.list_tags(image).await?;
            tags.truncated = true;
            Ok(tags)
        }

        async fn resolve_digest(
            &self,
            image: &crate::ImageRef,
            tag: &crate::Tag,
        ) -> Result<Digest> {
            self.0.resolve_digest(image, tag).await
        }
    }

    #[test]
    fn a_listing_cut_short_decides_and_plans_nothing() {
        let registry = InMemoryRegistry::new("memory");
        registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.3.0"]);
        let pipeline = Pipeline::new(Arc::new(CutShort(registry)));
        let image = tracked("ghcr.io/acme/web:1.2.3", "minor");

        let check = futures::executor::block_on(pipeline.check(&image, true)).unwrap();
        assert!(check.truncated());
        assert_eq!(
            check.tags().tags.len(),
            2,
            "the partial list is still shown"
        );
        assert_eq!(check.decision.tag(), None);
        assert_eq!(check.plan("t", &image).unwrap(), None);
    }
}
