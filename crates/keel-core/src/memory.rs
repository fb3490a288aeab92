//! An in-memory [`Registry`] and [`Target`], for tests, examples and dry experiments.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, ParseError, Result};
use crate::policy::{Policy, PolicyOptions, VersionPolicy};
use crate::reference::{Digest, ImageRef, Platform, Tag};
use crate::registry::{ImageMetadata, Registry, TagList};
use crate::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Debug)]
struct Entry {
    tag: String,
    digest: Digest,
    created: Option<DateTime<Utc>>,
    platforms: Vec<Platform>,
}

/// A registry kept in memory. Repositories are keyed by `registry/repository`
/// (`docker.io/library/nginx`); every push gets a fresh digest. It counts the calls made to
/// it, so tests can prove how many listings a pass costs.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    name: String,
    repos: Mutex<HashMap<String, Vec<Entry>>>,
    pushes: AtomicUsize,
    list_calls: AtomicUsize,
    digest_calls: AtomicUsize,
    metadata_calls: AtomicUsize,
}

impl InMemoryRegistry {
    /// An empty registry called `name` in messages.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryRegistry {
            name: name.into(),
            ..InMemoryRegistry::default()
        }
    }

    /// Pushes `tag` to `repository` (any reference; its tag and digest are ignored) with a
    /// new digest and creation time, moving the tag if it existed. Returns the digest.
    ///
    /// # Panics
    /// When `repository` or `tag` is not valid: this is a test helper.
    pub fn push(&self, repository: &str, tag: &str, created: Option<DateTime<Utc>>) -> Digest {
        let image = ImageRef::parse(repository).expect("valid repository reference");
        Tag::new(tag).expect("valid tag");
        let n = self.pushes.fetch_add(1, Ordering::Relaxed) + 1;
        let digest: Digest = format!("sha256:{n:064x}").parse().expect("valid digest");
        let mut repos = lock(&self.repos);
        let entries = repos.entry(image.name()).or_default();
        entries.retain(|e| e.tag != tag);
        entries.push(Entry {
            tag: tag.to_owned(),
            digest: digest.clone(),
            created,
            platforms: Vec::new(),
        });
        digest
    }

    /// Pushes `tag` to `repository` as [`InMemoryRegistry::push`] does, built for
    /// `platforms` (`os/architecture[/variant]`), which its metadata then lists.
    ///
    /// # Panics
    /// When an argument is not valid: this is a test helper.
    pub fn push_for(&self, repository: &str, tag: &str, platforms: &[&str]) -> Digest {
        let digest = self.push(repository, tag, None);
        let image = ImageRef::parse(repository).expect("valid repository reference");
        let mut repos = lock(&self.repos);
        let entry = repos
            .get_mut(&image.name())
            .and_then(|entries| entries.iter_mut().find(|e| e.tag == tag))
            .expect("just pushed");
        entry.platforms = platforms
            .iter()
            .map(|p| p.parse().expect("valid platform"))
            .collect();
        digest
    }

    /// Pushes each of `tags` to `repository`, without creation times.
    pub fn push_tags(&self, repository: &str, tags: &[&str]) {
        for tag in tags {
            self.push(repository, tag, None);
        }
    }

    /// How many times `list_tags` was called.
    pub fn list_calls(&self) -> usize {
        self.list_calls.load(Ordering::Relaxed)
    }

    /// How many times `resolve_digest` was called.
    pub fn digest_calls(&self) -> usize {
        self.digest_calls.load(Ordering::Relaxed)
    }

    /// How many times `metadata` was called.
    pub fn metadata_calls(&self) -> usize {
        self.metadata_calls.load(Ordering::Relaxed)
    }

    fn entry(&self, image: &ImageRef, tag: &Tag) -> Result<Entry> {
        let repos = lock(&self.repos);
        let entries = repos
            .get(&image.name())
            .ok_or_else(|| Error::not_found(format!("repository {}", image.name())))?;
        entries
            .iter()
            .find(|e| e.tag == tag.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found(format!("tag {tag} of {}", image.name())))
    }
}

#[async_trait]
impl Registry for InMemoryRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<TagList> {
        self.list_calls.fetch_add(1, Ordering::Relaxed);
        let repos = lock(&self.repos);
        let entries = repos
            .get(&image.name())
            .ok_or_else(|| Error::not_found(format!("repository {}", image.name())))?;
        Ok(TagList {
            tags: entries.iter().map(|e| e.tag.clone()).collect(),
            truncated: false,
        })
    }

    async fn resolve_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest> {
        self.digest_calls.fetch_add(1, Ordering::Relaxed);
        Ok(self.entry(image, tag)?.digest)
    }

    async fn metadata(&self, image: &ImageRef, tag: &Tag) -> Result<ImageMetadata> {
        self.metadata_calls.fetch_add(1, Ordering::Relaxed);
        let entry = self.entry(image, tag)?;
        Ok(ImageMetadata {
            created: entry.created,
            platforms: entry.platforms,
            digest: Some(entry.digest),
        })
    }
}

/// A target kept in memory: tracked images by id, updated in place by plans.
#[derive(Debug, Default)]
pub struct InMemoryTarget {
    name: String,
    images: Mutex<BTreeMap<String, TrackedImage>>,
    applied: Mutex<Vec<UpdatePlan>>,
}

impl InMemoryTarget {
    /// An empty target called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryTarget {
            name: name.into(),
            ..InMemoryTarget::default()
        }
    }

    /// Tracks `image` under `id` with a built-in `policy` string and default options.
    pub fn track(&self, id: &str, image: &str, policy: &str) -> Result<(), ParseError> {
        let policy = VersionPolicy::parse(policy, &PolicyOptions::default())?;
        self.track_with(TrackedImage::new(
            id,
            ImageRef::parse(image)?,
            Arc::new(policy),
        ));
        Ok(())
    }

    /// Tracks `image` under `id` with any policy.
    pub fn track_policy(
        &self,
        id: &str,
        image: &str,
        policy: Arc<dyn Policy>,
    ) -> Result<(), ParseError> {
        self.track_with(TrackedImage::new(id, ImageRef::parse(image)?, policy));
        Ok(())
    }

    /// Tracks a fully described image, replacing any with the same id.
    pub fn track_with(&self, image: TrackedImage) {
        lock(&self.images).insert(image.id.clone(), image);
    }

    /// The image `id` runs now.
    pub fn image(&self, id: &str) -> Option<ImageRef> {
        lock(&self.images).get(id).map(|t| t.image.clone())
    }

    /// Every plan that changed something, in order.
    pub fn applied(&self) -> Vec<UpdatePlan> {
        lock(&self.applied).clone()
    }
}

#[async_trait]
impl Target for InMemoryTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>> {
        Ok(lock(&self.images).values().cloned().collect())
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome> {
        let mut images = lock(&self.images);
        let tracked = images
            .get_mut(&plan.id)
            .ok_or_else(|| Error::untracked(&plan.id, &self.name))?;
        if tracked.image == plan.new {
            return Ok(ApplyOutcome::AlreadyCurrent);
        }
        if tracked.image != plan.current {
            return Err(Error::Conflict {
                action: format!("apply {plan}"),
                reason: format!("{} runs {} now", plan.id, tracked.image),
            });
        }
        tracked.image = plan.new.clone();
        lock(&self.applied).push(plan.clone());
        Ok(ApplyOutcome::Applied)
    }
}
