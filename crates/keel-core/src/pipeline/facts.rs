//! What a pass learns about a repository before its policies decide: the tag list, digests
//! and creation times, read once per repository and shared by its tracked images.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tracing::{debug, warn};

use super::Pipeline;
use crate::error::{Error, Result};
use crate::policy::{Candidate, Current, Decision, SelectInput};
use crate::reference::{Digest, ImageRef, Platform, Tag};
use crate::registry::{ImageMetadata, TagList};
use crate::target::TrackedImage;

/// Per-repository facts gathered once per pass, shared by all its tracked images.
#[derive(Debug, Default)]
pub(super) struct RepoFacts {
    pub(super) tags: TagList,
    /// Digests resolved (or confirmed) in this pass.
    pub(super) digests: HashMap<String, Digest>,
    pub(super) created: HashMap<String, DateTime<Utc>>,
    /// Tags whose metadata was looked up in this pass (cached, read or failed).
    pub(super) read: HashSet<String>,
    /// The digests the metadata of `created` was read from, where the backend said.
    pub(super) read_digests: HashMap<String, Digest>,
    /// Tags skipped because their metadata could not be read, with the reason.
    pub(super) unreadable: Vec<(String, String)>,
    /// The platforms each tag's image is built for, where its metadata was read (empty when
    /// the registry did not say).
    pub(super) platforms: HashMap<String, Vec<Platform>>,
}

impl RepoFacts {
    pub(super) fn learn(&mut self, tag: &str, meta: &ImageMetadata) {
        if let Some(created) = meta.created {
            self.created.insert(tag.to_owned(), created);
        }
        if let Some(digest) = &meta.digest {
            self.read_digests.insert(tag.to_owned(), digest.clone());
        }
        self.platforms
            .insert(tag.to_owned(), meta.platforms.clone());
    }

    /// Whether `tag`'s image is built for one of `wanted`: `None` while its platforms are not
    /// known (not read, or the registry did not say), which does not exclude it.
    pub(super) fn fits(&self, tag: &str, wanted: &[Platform]) -> Option<bool> {
        let built = self.platforms.get(tag).filter(|p| !p.is_empty())?;
        Some(built.iter().any(|b| wanted.iter().any(|w| w.matches(b))))
    }

    /// The tags left out for `image` because their image is built for none of the platforms
    /// it asks for, with the reason.
    pub(super) fn misfits(&self, image: &TrackedImage) -> Vec<(String, String)> {
        if image.platforms.is_empty() {
            return Vec::new();
        }
        let wanted = list(&image.platforms);
        self.tags
            .tags
            .iter()
            .filter(|t| self.fits(t, &image.platforms) == Some(false))
            .map(|t| {
                let built = list(self.platforms.get(t.as_str()).map_or(&[][..], |p| p));
                (
                    t.clone(),
                    format!("its image is built for {built}, not for {wanted}"),
                )
            })
            .collect()
    }
}

/// `linux/amd64, linux/arm64`.
fn list(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Image metadata by repository and tag, kept across passes: metadata is immutable per
/// digest, and the tag a policy chooses is confirmed to point at the same digest before it
/// is used ([`Pipeline::with_metadata_cache_ttl`]).
#[derive(Debug, Default)]
pub(super) struct MetadataCache {
    pub(super) entries: HashMap<(String, String), (Instant, ImageMetadata)>,
}

/// The most entries the metadata cache holds; past it, expired entries go, then all.
const METADATA_CACHE_ENTRIES: usize = 200_000;

/// How many tags' platforms are read for one image in one pass before it fails.
pub(super) const PLATFORM_READS: usize = 32;

/// The longest time metadata is reused, whatever lifetime was asked for: a century.
const LONGEST_METADATA_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

impl MetadataCache {
    pub(super) fn fresh(&self, repository: &str, tag: &str) -> Option<&ImageMetadata> {
        let (expires, meta) = self.entries.get(&(repository.to_owned(), tag.to_owned()))?;
        (Instant::now() < *expires).then_some(meta)
    }

    pub(super) fn insert(
        &mut self,
        repository: &str,
        tag: &str,
        meta: ImageMetadata,
        ttl: Duration,
    ) {
        if ttl.is_zero() {
            return;
        }
        // A lifetime past a century saturates there instead of overflowing the clock.
        let now = Instant::now();
        let Some(expires) = now.checked_add(ttl.min(LONGEST_METADATA_TTL)) else {
            return;
        };
        if self.entries.len() >= METADATA_CACHE_ENTRIES {
            self.entries.retain(|_, (e, _)| now < *e);
            if self.entries.len() >= METADATA_CACHE_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries
            .insert((repository.to_owned(), tag.to_owned()), (expires, meta));
    }
}

impl Pipeline {
    /// Lists a repository once and fetches what its tracked images' policies need; a
    /// truncated listing is returned as it is, since nothing is decided from it.
    pub(super) async fn gather(&self, images: &[(usize, TrackedImage)]) -> Result<RepoFacts> {
        let repo = &images[0].1.image;
        let tags = self.registry.list_tags(repo).await?;
        let mut facts = RepoFacts {
            tags,
            ..RepoFacts::default()
        };
        if facts.tags.truncated {
            return Ok(facts);
        }
        for (_, image) in images {
            let needs = image.policy.needs();
            let pinned = image.image.digest().is_some();
            let current_tag = image.image.tag().map(Tag::as_str);
            if (needs.current_tag_digest || pinned)
                && let Some(tag) = current_tag
            {
                self.fetch_digest(repo, tag, &mut facts).await?;
            }
            if needs.created {
                self.read_created(repo, image, &mut facts).await?;
            }
            if !image.platforms.is_empty() {
                self.confirm_platforms(repo, image, &mut facts).await?;
            }
            if needs.created {
                self.confirm_newest(repo, image, &mut facts).await?;
            }
            if pinned {
                // A pinned image stays pinned: resolve the chosen tag's digest too.
                let decision = decide(image, &facts, &facts.candidates(), false);
                if let Some(u) = decision.update.filter(|u| u.digest.is_none()) {
                    self.fetch_digest(repo, &u.tag, &mut facts).await?;
                }
            }
        }
        Ok(facts)
    }

    pub(super) fn lock_metadata(&self) -> std::sync::MutexGuard<'_, MetadataCache> {
        self.metadata.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creation times of the tags `image`'s policy admits (and of its current tag): from the
    /// metadata cache while fresh, else read from the registry, a few at a time. A tag whose
    /// metadata cannot be read is skipped, the reason kept in the report; only when every
    /// tag fails (or the backend reads no metadata at all) does the repository fail.
    pub(super) async fn read_created(
        &self,
        repo: &ImageRef,
        image: &TrackedImage,
        facts: &mut RepoFacts,
    ) -> Result<()> {
        let current_tag = image.image.tag().map(Tag::as_str);
        let RepoFacts { tags, read, .. } = facts;
        let wanted: Vec<Tag> = tags
            .tags
            .iter()
            .filter(|t| image.policy.admits(t) || Some(t.as_str()) == current_tag)
            .filter(|t| read.insert((*t).clone()))
            .filter_map(|t| Tag::new(t.as_str()).ok())
            .collect();
        let name = repo.name();
        let mut missing = Vec::new();
        {
            let cache = self.lock_metadata();
            for tag in wanted {
                match cache.fresh(&name, tag.as_str()) {
                    Some(meta) => facts.learn(tag.as_str(), meta),
                    None => missing.push(tag),
                }
            }
        }
        let asked = missing.len();
        let fetched: Vec<(Tag, Result<ImageMetadata>)> = stream::iter(missing)
            .map(|tag| async move {
                let result = self.registry.metadata(repo, &tag).await;
                (tag, result)
            })
            .buffer_unordered(self.metadata_concurrency)
            .collect()
            .await;
        let mut first_error = None;
        let mut cache = self.lock_metadata();
        for (tag, result) in fetched {
            match result {
                Ok(meta) => {
                    facts.learn(tag.as_str(), &meta);
                    cache.insert(&name, tag.as_str(), meta, self.metadata_ttl);
                }
                Err(error @ Error::NotSupported { .. }) => return Err(error),
                Err(error) => {
                    let reason =
                        format!("its metadata could not be read, so it is skipped: {error}");
                    warn!(repository = %name, tag = %tag, %error, "skipping a tag");
                    facts.unreadable.push((tag.to_string(), reason));
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) if facts.unreadable.len() == asked && asked > 0 => Err(error),
            _ => Ok(()),
        }
    }

    /// Confirms, with one fresh lookup, that the tag `image`'s policy chose by creation time
    /// still points at the image whose metadata decided it; when the tag moved, its metadata
    /// is read again and the policy decides anew. The confirmed digest goes with the plan.
    pub(super) async fn confirm_newest(
        &self,
        repo: &ImageRef,
        image: &TrackedImage,
        facts: &mut RepoFacts,
    ) -> Result<()> {
        const ATTEMPTS: usize = 3;
        let name = repo.name();
        for _ in 0..ATTEMPTS {
            let Some(tag) = facts.choice_to_confirm(image, &facts.digests)? else {
                return Ok(());
            };
            let now = self.registry.confirm_digest(repo, &tag).await?;
            let read = facts.read_digests.get(tag.as_str()).cloned();
            facts.digests.insert(tag.as_str().to_owned(), now.clone());
            if read.is_none_or(|d| d == now) {
                return Ok(());
            }
            // The tag moved since its metadata was read: read it again and decide anew.
            debug!(repository = %name, tag = %tag, "tag moved since its metadata was read");
            let meta = self.registry.metadata(repo, &tag).await?;
            facts.created.remove(tag.as_str());
            facts.learn(tag.as_str(), &meta);
            self.lock_metadata()
                .insert(&name, tag.as_str(), meta, self.metadata_ttl);
        }
        Err(Error::Conflict {
            action: format!("choose the newest build of {name}"),
            reason: format!("its tags kept moving while they were read ({ATTEMPTS} attempts)"),
        })
    }

    /// For an image that asks for platforms: reads the metadata of the tag its policy
    /// chooses until the choice is a tag whose image is built for one of them (or whose
    /// platforms the registry does not say), leaving out the others. At most
    /// [`PLATFORM_READS`] tags are read per image and pass.
    pub(super) async fn confirm_platforms(
        &self,
        repo: &ImageRef,
        image: &TrackedImage,
        facts: &mut RepoFacts,
    ) -> Result<()> {
        let name = repo.name();
        for _ in 0..PLATFORM_READS {
            // `decide` leaves out the tags known not to fit: a known one fits.
            let Some(tag) = facts.choice_to_confirm(image, &facts.platforms)? else {
                return Ok(());
            };
            let cached = self.lock_metadata().fresh(&name, tag.as_str()).cloned();
            let meta = match cached {
                Some(meta) => meta,
                None => {
                    let meta = self.registry.metadata(repo, &tag).await?;
                    self.lock_metadata().insert(
                        &name,
                        tag.as_str(),
                        meta.clone(),
                        self.metadata_ttl,
                    );
                    meta
                }
            };
            facts.learn(tag.as_str(), &meta);
        }
        Err(Error::Conflict {
            action: format!("choose an image of {name} for {}", list(&image.platforms)),
            reason: format!(
                "none of the {PLATFORM_READS} tags its policy preferred is built for them"
            ),
        })
    }

    pub(super) async fn fetch_digest(
        &self,
        repo: &ImageRef,
        tag: &str,
        facts: &mut RepoFacts,
    ) -> Result<()> {
        if facts.digests.contains_key(tag) || !facts.tags.tags.iter().any(|t| t == tag) {
            return Ok(());
        }
        let parsed = Tag::new(tag)?;
        let digest = self.registry.resolve_digest(repo, &parsed).await?;
        facts.digests.insert(tag.to_owned(), digest);
        Ok(())
    }
}

impl RepoFacts {
    /// The repository's tags with what is known of each, for policies to choose from.
    pub(super) fn candidates(&self) -> Vec<Candidate<'_>> {
        self.tags
            .tags
            .iter()
            .map(|t| Candidate {
                tag: t,
                digest: self.digests.get(t.as_str()),
                created: self.created.get(t.as_str()).copied(),
            })
            .collect()
    }

    /// The tag `image`'s policy chooses now, if that choice still needs reading: none when
    /// there is no update or when the chosen tag is already in `known` (by tag).
    fn choice_to_confirm<T>(
        &self,
        image: &TrackedImage,
        known: &HashMap<String, T>,
    ) -> Result<Option<Tag>> {
        let decision = decide(image, self, &self.candidates(), false);
        match decision.update {
            Some(update) if !known.contains_key(&update.tag) => {
                Ok(Some(Tag::new(update.tag.as_str())?))
            }
            _ => Ok(None),
        }
    }
}

/// Runs a tracked image's policy over its repository's candidates.
pub(super) fn decide(
    image: &TrackedImage,
    facts: &RepoFacts,
    candidates: &[Candidate<'_>],
    explain: bool,
) -> Decision {
    let tag = image.image.tag().map(Tag::as_str);
    let current = Current {
        tag,
        digest: image.image.digest(),
        created: tag.and_then(|t| facts.created.get(t).copied()),
    };
    let fitting: Vec<Candidate<'_>>;
    let candidates = if image.platforms.is_empty() {
        candidates
    } else {
        fitting = candidates
            .iter()
            .filter(|c| facts.fits(c.tag, &image.platforms) != Some(false))
            .copied()
            .collect();
        &fitting
    };
    let mut input = SelectInput::new(current, candidates);
    input.explain = explain;
    image.policy.select(&input)
}
