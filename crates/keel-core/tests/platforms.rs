//! Images that ask for platforms move only to tags built for one of them.

use std::sync::Arc;

use async_trait::async_trait;
use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
use keel_core::registry::{Registry, TagList};
use keel_core::{
    Digest, Error, ImageRef, Pipeline, Platform, RunReport, Tag, TrackedImage, VersionPolicy,
};

const WEB: &str = "ghcr.io/acme/web";

/// `web` at 1.0.0 under `policy`, asking for `platforms`.
fn web(policy: &str, platforms: &[&str]) -> TrackedImage {
    let policy: VersionPolicy = policy.parse().unwrap();
    let platforms: Vec<Platform> = platforms.iter().map(|p| p.parse().unwrap()).collect();
    TrackedImage::new(
        "web",
        format!("{WEB}:1.0.0").parse().unwrap(),
        Arc::new(policy),
    )
    .with_platforms(platforms)
}

/// 1.0.0 and 1.1.0 for amd64 and arm64, 1.2.0 and 1.3.0 for amd64 only.
fn registry() -> Arc<InMemoryRegistry> {
    let registry = Arc::new(InMemoryRegistry::new("memory"));
    for tag in ["1.0.0", "1.1.0"] {
        registry.push_for(WEB, tag, &["linux/amd64", "linux/arm64/v8"]);
    }
    for tag in ["1.2.0", "1.3.0"] {
        registry.push_for(WEB, tag, &["linux/amd64"]);
    }
    registry
}

#[tokio::test]
async fn the_newest_tag_built_for_the_platform_is_chosen_and_the_others_say_why() {
    let registry = registry();
    let pipeline = Pipeline::new(registry.clone());

    let check = pipeline
        .check(&web("minor", &["linux/arm64"]), true)
        .await
        .unwrap();
    assert_eq!(check.decision.tag(), Some("1.1.0"));
    assert_eq!(
        check.skipped_tags(),
        [
            (
                "1.2.0".to_owned(),
                "its image is built for linux/amd64, not for linux/arm64".to_owned()
            ),
            (
                "1.3.0".to_owned(),
                "its image is built for linux/amd64, not for linux/arm64".to_owned()
            ),
        ]
    );
    // Read from the newest down until one fitted: 1.3.0, 1.2.0, 1.1.0.
    assert_eq!(registry.metadata_calls(), 3);

    // One of several platforms is enough, and the metadata is read from the cache.
    let check = pipeline
        .check(&web("minor", &["linux/arm/v7", "linux/amd64"]), false)
        .await
        .unwrap();
    assert_eq!(check.decision.tag(), Some("1.3.0"));
    assert_eq!(registry.metadata_calls(), 3);
}

#[tokio::test]
async fn without_platforms_nothing_is_read_and_any_tag_goes() {
    let registry = registry();
    let check = Pipeline::new(registry.clone())
        .check(&web("minor", &[]), false)
        .await
        .unwrap();
    assert_eq!(check.decision.tag(), Some("1.3.0"));
    assert_eq!(registry.metadata_calls(), 0);
    assert!(check.skipped_tags().is_empty());
}

#[tokio::test]
async fn a_tag_whose_platforms_the_registry_does_not_say_is_not_left_out() {
    let registry = registry();
    registry.push(WEB, "1.4.0", None);
    let check = Pipeline::new(registry)
        .check(&web("minor", &["linux/arm64"]), false)
        .await
        .unwrap();
    assert_eq!(check.decision.tag(), Some("1.4.0"));
}

#[tokio::test]
async fn no_tag_built_for_the_platform_is_no_update() {
    let registry = registry();
    let check = Pipeline::new(registry)
        .check(&web("minor", &["windows/amd64"]), false)
        .await
        .unwrap();
    assert_eq!(check.decision.tag(), None);
    assert_eq!(check.skipped_tags().len(), 3, "1.1.0, 1.2.0 and 1.3.0");
}

/// One pass on `registry` over a target tracking `web` under `minor` for linux/arm64: the
/// report and the image `web` runs after it.
async fn arm64_pass(registry: Arc<dyn Registry>) -> (RunReport, String) {
    let target = Arc::new(InMemoryTarget::new("memory"));
    target.track_with(web("minor", &["linux/arm64"]));
    let report = Pipeline::new(registry)
        .with_target(target.clone())
        .run_once()
        .await;
    (report, target.image("web").unwrap().to_string())
}

#[tokio::test]
async fn a_pass_applies_the_tag_built_for_the_platform() {
    let (report, running) = arm64_pass(registry()).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(running, format!("{WEB}:1.1.0"));
}

/// The in-memory registry without metadata, as a backend that cannot read it.
#[derive(Debug)]
struct TagsOnly(Arc<InMemoryRegistry>);

#[async_trait]
impl Registry for TagsOnly {
    fn name(&self) -> &str {
        "tags only"
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<TagList, Error> {
        self.0.list_tags(image).await
    }

    async fn resolve_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest, Error> {
        self.0.resolve_digest(image, tag).await
    }
}

#[tokio::test]
async fn a_registry_that_cannot_say_the_platforms_fails_the_image_and_applies_nothing() {
    let (report, running) = arm64_pass(Arc::new(TagsOnly(registry()))).await;
    assert!(report.applied.is_empty());
    assert_eq!(report.failures.len(), 1);
    assert!(
        matches!(report.failures[0].error, Error::NotSupported { .. }),
        "{:?}",
        report.failures[0].error
    );
    assert_eq!(running, format!("{WEB}:1.0.0"));
}
