//! The conformance of a [`Registry`] implementation.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::Error;
use crate::memory::InMemoryTarget;
use crate::pipeline::Pipeline;
use crate::reference::{ImageRef, Tag};
use crate::registry::Registry;

/// What a registry under test was seeded with.
#[derive(Clone, Debug)]
pub struct RegistryFixture {
    /// A repository holding exactly [`tags`](Self::tags), each pointing at distinct content.
    pub repository: ImageRef,
    /// Its tags.
    pub tags: Vec<String>,
    /// A repository that does not exist.
    pub missing_repository: ImageRef,
}

impl RegistryFixture {
    /// The standard fixture: [`standard_tags`](Self::standard_tags) in `repository`.
    ///
    /// # Panics
    /// When `repository` is not a valid reference.
    pub fn standard(repository: &str) -> Self {
        let repository = ImageRef::parse(repository).expect("valid repository");
        let missing = format!(
            "{}/{}-missing",
            repository.registry(),
            repository.repository()
        );
        RegistryFixture {
            repository,
            tags: Self::standard_tags()
                .iter()
                .map(|t| t.to_string())
                .collect(),
            missing_repository: ImageRef::parse(&missing).expect("valid repository"),
        }
    }

    /// The tags of the standard fixture: semver with and without `v`, a pre-release, a
    /// suffix, a build tag and `latest`.
    pub fn standard_tags() -> &'static [&'static str] {
        &[
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "v1.2.0",
            "2.0.0-rc.1",
            "1.1.0-alpine",
            "main-10-0a1b2c3",
            "latest",
        ]
    }

    /// The tags as `&str`s, for seeding.
    pub fn tag_strs(&self) -> Vec<&str> {
        self.tags.iter().map(String::as_str).collect()
    }
}

/// Runs every registry check.
pub async fn registry_conformance(registry: &dyn Registry, fixture: &RegistryFixture) {
    registry_lists_tags(registry, fixture).await;
    registry_missing_repository_is_not_found(registry, fixture).await;
    registry_resolves_digests(registry, fixture).await;
    registry_metadata_is_supported_or_says_not(registry, fixture).await;
}

/// `list_tags` returns exactly the seeded tags, not truncated, and ignores the reference's
/// own tag.
pub async fn registry_lists_tags(registry: &dyn Registry, fixture: &RegistryFixture) {
    let listed = registry
        .list_tags(&fixture.repository)
        .await
        .unwrap_or_else(|e| panic!("{}: list_tags failed: {e}", registry.name()));
    let got: BTreeSet<&str> = listed.tags.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = fixture.tags.iter().map(String::as_str).collect();
    assert_eq!(got, want, "{}: listed tags differ", registry.name());
    assert_eq!(
        listed.tags.len(),
        want.len(),
        "{}: a tag was listed twice",
        registry.name()
    );
    assert!(
        !listed.truncated,
        "{}: a short listing was marked truncated",
        registry.name()
    );
    let other_tag = fixture
        .repository
        .with_tag(Tag::new("no-such-tag").expect("valid tag"));
    let again = registry
        .list_tags(&other_tag)
        .await
        .unwrap_or_else(|e| panic!("{}: list_tags failed: {e}", registry.name()));
    assert_eq!(
        again.tags.len(),
        want.len(),
        "{}: listing depends on the tag",
        registry.name()
    );
}

/// A repository that does not exist is `NotFound`, not an empty list.
pub async fn registry_missing_repository_is_not_found(
    registry: &dyn Registry,
    fixture: &RegistryFixture,
) {
    match registry.list_tags(&fixture.missing_repository).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!(
            "{}: listing missing {} gave {other:?}, expected NotFound",
            registry.name(),
            fixture.missing_repository
        ),
    }
}

/// Every tag resolves to a stable digest, distinct tags of distinct content to distinct
/// digests, and a missing tag is `NotFound`.
pub async fn registry_resolves_digests(registry: &dyn Registry, fixture: &RegistryFixture) {
    let mut seen = BTreeSet::new();
    for tag in &fixture.tags {
        let tag = Tag::new(tag.as_str()).expect("fixture tags are valid");
        let first = registry
            .resolve_digest(&fixture.repository, &tag)
            .await
            .unwrap_or_else(|e| panic!("{}: resolving {tag} failed: {e}", registry.name()));
        let second = registry
            .resolve_digest(&fixture.repository, &tag)
            .await
            .unwrap_or_else(|e| panic!("{}: resolving {tag} failed: {e}", registry.name()));
        assert_eq!(
            first,
            second,
            "{}: digest of {tag} is not stable",
            registry.name()
        );
        assert!(
            seen.insert(first.to_string()),
            "{}: {tag} shares a digest with another fixture tag",
            registry.name()
        );
    }
    let missing = Tag::new("keel-no-such-tag").expect("valid tag");
    match registry.resolve_digest(&fixture.repository, &missing).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!(
            "{}: resolving a missing tag gave {other:?}, expected NotFound",
            registry.name()
        ),
    }
}

/// `metadata` either works or says `NotSupported`; it never fails otherwise for a seeded tag.
pub async fn registry_metadata_is_supported_or_says_not(
    registry: &dyn Registry,
    fixture: &RegistryFixture,
) {
    let tag = Tag::new(fixture.tags[0].as_str()).expect("fixture tags are valid");
    match registry.metadata(&fixture.repository, &tag).await {
        Ok(_) | Err(Error::NotSupported { .. }) => {}
        Err(e) => panic!("{}: metadata of {tag} failed: {e}", registry.name()),
    }
}

/// Drives a full pipeline pass against the registry through `Arc<dyn Registry>`: a tracked
/// image on `fixture.repository` at `1.0.0` under `minor` must be planned to `v1.2.0`.
pub async fn registry_drives_the_pipeline(registry: Arc<dyn Registry>, fixture: &RegistryFixture) {
    let target = Arc::new(InMemoryTarget::new("conformance target"));
    let current = fixture
        .repository
        .with_tag(Tag::new("1.0.0").expect("valid tag"));
    target
        .track("app", &current.to_string(), "minor")
        .expect("valid policy");
    let report = Pipeline::new(registry)
        .with_target(target.clone())
        .with_dry_run(true)
        .run_once()
        .await;
    assert!(
        report.failures.is_empty(),
        "pipeline failed: {:?}",
        report.failures
    );
    assert_eq!(report.planned.len(), 1, "one update expected: {report:?}");
    assert_eq!(
        report.planned[0].plan.new.tag().map(Tag::as_str),
        Some("v1.2.0")
    );
    assert_eq!(
        target.image("app"),
        Some(current),
        "a dry run changed the target"
    );
}
