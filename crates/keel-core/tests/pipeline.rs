//! One pass of the pipeline over in-memory parts.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
use keel_core::policy::{PolicyOptions, VersionPolicy};
use keel_core::{Error, Event, EventKind, ImageRef, Notifier, Pipeline, TrackedImage};

#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<(EventKind, String)>>,
    fail: bool,
}

#[async_trait]
impl Notifier for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn notify(&self, event: &Event) -> Result<(), Error> {
        self.events
            .lock()
            .unwrap()
            .push((event.kind, event.plan.id.clone()));
        if self.fail {
            return Err(Error::Backend {
                backend: "recorder".into(),
                action: "deliver".into(),
                message: "refused".into(),
                retryable: false,
                source: None,
            });
        }
        Ok(())
    }
}

/// A target `t` tracking `id`, running `image` under `policy`.
fn target_tracking(id: &str, image: &str, policy: &str) -> Arc<InMemoryTarget> {
    let target = Arc::new(InMemoryTarget::new("t"));
    target.track(id, image, policy).unwrap();
    target
}

fn registry() -> Arc<InMemoryRegistry> {
    let r = Arc::new(InMemoryRegistry::new("test registry"));
    r.push_tags("ghcr.io/acme/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"]);
    r.push_tags("redis", &["7.0.1", "7.2.4", "8.0.0"]);
    r
}

#[tokio::test]
async fn lists_each_repository_once_however_many_workloads_use_it() {
    let registry = registry();
    let a = Arc::new(InMemoryTarget::new("cluster-a"));
    let b = Arc::new(InMemoryTarget::new("cluster-b"));
    for i in 0..50 {
        a.track(&format!("web-{i}"), "ghcr.io/acme/web:1.2.3", "minor")
            .unwrap();
    }
    b.track("web", "ghcr.io/acme/web:1.2.3", "patch").unwrap();
    b.track("cache", "redis:7.0.1", "minor").unwrap();

    let report = Pipeline::new(registry.clone())
        .with_target(a.clone())
        .with_target(b.clone())
        .run_once()
        .await;

    assert_eq!(registry.list_calls(), 2);
    assert_eq!(report.listings, 2);
    assert_eq!(report.tracked, 52);
    assert_eq!(report.applied.len(), 52);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        a.image("web-7").unwrap().to_string(),
        "ghcr.io/acme/web:1.3.0"
    );
    assert_eq!(
        b.image("web").unwrap().to_string(),
        "ghcr.io/acme/web:1.2.4"
    );
    assert_eq!(
        b.image("cache").unwrap().to_string(),
        "docker.io/library/redis:7.2.4"
    );
    // Digests were not needed, so none were fetched.
    assert_eq!(registry.digest_calls(), 0);

    // A second pass finds nothing to do.
    let again = Pipeline::new(registry.clone())
        .with_target(a.clone())
        .run_once()
        .await;
    assert!(again.planned.is_empty());
}

#[tokio::test]
async fn dry_run_previews_without_applying() {
    let target = target_tracking("web", "ghcr.io/acme/web:1.2.3", "major");
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .with_dry_run(true)
        .run_once()
        .await;
    assert_eq!(report.planned.len(), 1);
    assert!(report.applied.is_empty());
    assert_eq!(
        report.previews["t"],
        "t web: ghcr.io/acme/web:1.2.3 -> ghcr.io/acme/web:2.0.0\n"
    );
    assert_eq!(
        target.image("web").unwrap().to_string(),
        "ghcr.io/acme/web:1.2.3"
    );
    assert!(target.applied().is_empty());
}

#[tokio::test]
async fn report_only_images_are_previewed_and_the_others_applied() {
    let target = target_tracking("web", "ghcr.io/acme/web:1.2.3", "major");
    let policy = Arc::new(VersionPolicy::parse("minor", &PolicyOptions::default()).unwrap());
    let watched = ImageRef::parse("redis:7.0.1").unwrap();
    target.track_with(TrackedImage::new("cache", watched, policy).with_report_only(true));
    let recorder = Arc::new(Recorder::default());
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .with_notifier(recorder.clone())
        .run_once()
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.planned.len(), 2);
    let applied: Vec<&str> = report.applied.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(applied, ["web"]);
    assert_eq!(
        report.previews["t"],
        "t cache: docker.io/library/redis:7.0.1 -> docker.io/library/redis:7.2.4\n"
    );
    assert_eq!(
        target.image("cache").unwrap().to_string(),
        "docker.io/library/redis:7.0.1"
    );
    let events = recorder.events.lock().unwrap().clone();
    assert!(
        events.contains(&(EventKind::UpdatePlanned, "cache".to_owned())),
        "{events:?}"
    );
    assert!(
        !events.contains(&(EventKind::UpdateApplied, "cache".to_owned())),
        "{events:?}"
    );
}

#[tokio::test]
async fn approvals_hold_updates_back_and_notifiers_hear_everything() {
    let target = target_tracking("web", "ghcr.io/acme/web:1.2.3", "minor");
    let gated =
        keel_testsupport::pipeline::tracked("cache", "redis:7.0.1", "minor").with_approvals(2);
    target.track_with(gated);
    let ok = Arc::new(Recorder::default());
    let failing = Arc::new(Recorder {
        fail: true,
        ..Recorder::default()
    });
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .with_notifier(ok.clone())
        .with_notifier(failing.clone())
        .run_once()
        .await;
    assert_eq!(report.awaiting_approval.len(), 1);
    assert_eq!(report.applied.len(), 1);
    assert_eq!(
        target.image("cache").unwrap().tag().unwrap().as_str(),
        "7.0.1"
    );
    let events = ok.events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            (EventKind::UpdatePlanned, "cache".to_owned()),
            (EventKind::UpdatePlanned, "web".to_owned()),
            (EventKind::ApprovalRequested, "cache".to_owned()),
            (EventKind::UpdateApplied, "web".to_owned()),
        ]
    );
    // The failing notifier got every event too, and its failures were counted.
    assert_eq!(failing.events.lock().unwrap().len(), 4);
    assert_eq!(report.notify_failures, 4);
}

#[tokio::test]
async fn a_missing_repository_fails_only_its_images() {
    let target = target_tracking("web", "ghcr.io/acme/web:1.2.3", "minor");
    target
        .track("ghost", "ghcr.io/acme/ghost:1.0.0", "minor")
        .unwrap();
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .run_once()
        .await;
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].id.as_deref(), Some("ghost"));
    assert!(matches!(report.failures[0].error, Error::NotFound { .. }));
}

#[tokio::test]
async fn digest_policy_pins_new_digests_and_pinned_images_stay_pinned() {
    let registry = registry();
    let first = registry.push("ghcr.io/acme/app", "stable", None);
    registry.push("ghcr.io/acme/app", "1.0.0", None);
    let target = target_tracking("app", &format!("ghcr.io/acme/app:stable@{first}"), "digest");
    let pinned_web = registry.push("ghcr.io/acme/web", "1.2.3", None);
    target
        .track(
            "web",
            &format!("ghcr.io/acme/web:1.2.3@{pinned_web}"),
            "minor",
        )
        .unwrap();

    let report = Pipeline::new(registry.clone())
        .with_target(target.clone())
        .run_once()
        .await;
    assert!(
        report.planned.iter().all(|p| p.plan.id == "web"),
        "{report:?}"
    );

    let second = registry.push("ghcr.io/acme/app", "stable", None);
    let report = Pipeline::new(registry.clone())
        .with_target(target.clone())
        .run_once()
        .await;
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert_eq!(
        target.image("app").unwrap().to_string(),
        format!("ghcr.io/acme/app:stable@{second}")
    );
    let web = target.image("web").unwrap();
    assert_eq!(web.tag().unwrap().as_str(), "1.3.0");
    assert!(web.digest().is_some(), "a pinned image lost its pin: {web}");
}

#[tokio::test]
async fn newest_build_fetches_metadata_only_for_admitted_tags() {
    let registry = Arc::new(InMemoryRegistry::new("r"));
    let t = |d| Some(Utc.with_ymd_and_hms(2024, 3, d, 12, 0, 0).unwrap());
    registry.push("ghcr.io/acme/api", "main-aaa", t(1));
    registry.push("ghcr.io/acme/api", "main-bbb", t(9));
    registry.push("ghcr.io/acme/api", "main-ccc", t(5));
    for i in 0..20 {
        registry.push("ghcr.io/acme/api", &format!("pr-{i}"), t(20));
    }
    let policy = VersionPolicy::parse(
        "newest-build",
        &PolicyOptions {
            filter: Some("^main-".into()),
            ..PolicyOptions::default()
        },
    )
    .unwrap();
    let target = Arc::new(InMemoryTarget::new("t"));
    target
        .track_policy("api", "ghcr.io/acme/api:main-aaa", Arc::new(policy))
        .unwrap();
    Pipeline::new(registry.clone())
        .with_target(target.clone())
        .run_once()
        .await;
    assert_eq!(
        target.image("api").unwrap().tag().unwrap().as_str(),
        "main-bbb"
    );
    assert_eq!(registry.metadata_calls(), 3);
}

/// `newest-build` over `main-*` tags, the image at `main-aaa`.
fn newest_main_build() -> Arc<VersionPolicy> {
    Arc::new(
        VersionPolicy::parse(
            "newest-build",
            &PolicyOptions {
                filter: Some("^main-".into()),
                ..PolicyOptions::default()
            },
        )
        .unwrap(),
    )
}

/// March 2024 at noon on day `d`.
fn march(d: u32) -> Option<chrono::DateTime<Utc>> {
    Some(Utc.with_ymd_and_hms(2024, 3, d, 12, 0, 0).unwrap())
}

/// Builds `main-aaa` (day 1), `main-bbb` (day 9) and `main-ccc` (day 5) of
/// `ghcr.io/acme/api`, tracked at `main-aaa` with [`newest_main_build`] as `api`.
fn three_main_builds() -> (Arc<InMemoryRegistry>, Arc<InMemoryTarget>) {
    let registry = Arc::new(InMemoryRegistry::new("r"));
    registry.push("ghcr.io/acme/api", "main-aaa", march(1));
    registry.push("ghcr.io/acme/api", "main-bbb", march(9));
    registry.push("ghcr.io/acme/api", "main-ccc", march(5));
    let target = Arc::new(InMemoryTarget::new("t"));
    target
        .track_policy("api", "ghcr.io/acme/api:main-aaa", newest_main_build())
        .unwrap();
    (registry, target)
}

#[tokio::test]
async fn newest_build_reads_each_tag_once_and_confirms_the_chosen_one() {
    let (registry, target) = three_main_builds();
    let pipeline = Pipeline::new(registry.clone())
        .with_target(target.clone())
        .with_dry_run(true);

    let first = pipeline.run_once().await;
    assert_eq!(first.planned.len(), 1);
    assert_eq!(
        first.planned[0].plan.new.tag().unwrap().as_str(),
        "main-bbb"
    );
    assert_eq!(registry.metadata_calls(), 3);
    assert_eq!(
        registry.digest_calls(),
        1,
        "one lookup confirms the chosen tag"
    );

    // A steady-state pass: the listing and one confirmation, no metadata.
    let second = pipeline.run_once().await;
    assert_eq!(second.planned.len(), 1);
    assert_eq!(registry.metadata_calls(), 3, "metadata read again");
    assert_eq!(registry.digest_calls(), 2);

    // A new build is read; the chosen tag moving to an older build is noticed.
    registry.push("ghcr.io/acme/api", "main-ddd", march(7));
    registry.push("ghcr.io/acme/api", "main-bbb", march(2));
    let third = pipeline.run_once().await;
    assert!(third.failures.is_empty(), "{:?}", third.failures);
    assert_eq!(
        third.planned[0].plan.new.tag().unwrap().as_str(),
        "main-ddd",
        "chose the moved tag from its stale creation time"
    );
    assert_eq!(
        registry.metadata_calls(),
        5,
        "main-ddd, then main-bbb again"
    );

    // Without a cache, every admitted tag is read on every pass; a lifetime too long for the
    // clock saturates: the metadata is kept, nothing panics.
    for (ttl, calls) in [
        (std::time::Duration::ZERO, 5 + 2 * 4),
        (std::time::Duration::MAX, 5 + 3 * 4),
    ] {
        let pipeline = Pipeline::new(registry.clone())
            .with_target(target.clone())
            .with_dry_run(true)
            .with_metadata_cache_ttl(ttl);
        pipeline.run_once().await;
        pipeline.run_once().await;
        assert_eq!(registry.metadata_calls(), calls, "cache lifetime {ttl:?}");
    }
}

/// A registry whose metadata of one tag always fails.
#[derive(Debug)]
struct BrokenMetadata {
    inner: Arc<InMemoryRegistry>,
    broken: &'static str,
}

#[async_trait]
impl keel_core::Registry for BrokenMetadata {
    fn name(&self) -> &str {
        "broken"
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<keel_core::TagList, Error> {
        self.inner.list_tags(image).await
    }

    async fn resolve_digest(
        &self,
        image: &ImageRef,
        tag: &keel_core::Tag,
    ) -> Result<keel_core::Digest, Error> {
        self.inner.resolve_digest(image, tag).await
    }

    async fn metadata(
        &self,
        image: &ImageRef,
        tag: &keel_core::Tag,
    ) -> Result<keel_core::ImageMetadata, Error> {
        if tag.as_str() == self.broken {
            return Err(Error::Backend {
                backend: "broken".into(),
                action: format!("read metadata of {tag}"),
                message: "500 Internal Server Error".into(),
                retryable: true,
                source: None,
            });
        }
        self.inner.metadata(image, tag).await
    }
}

#[tokio::test]
async fn newest_build_skips_a_tag_whose_metadata_fails_and_says_why() {
    let (registry, target) = three_main_builds();
    let broken = Arc::new(BrokenMetadata {
        inner: registry.clone(),
        broken: "main-bbb",
    });
    let report = Pipeline::new(broken)
        .with_target(target.clone())
        .run_once()
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        target.image("api").unwrap().tag().unwrap().as_str(),
        "main-ccc"
    );
    assert_eq!(report.skipped_tags.len(), 1);
    let (tag, reason) = &report.skipped_tags[0];
    assert_eq!(tag, "ghcr.io/acme/api:main-bbb");
    assert!(reason.contains("500 Internal Server Error"), "{reason}");

    // When every tag fails, the repository fails, naming the error.
    let all_broken = Arc::new(InMemoryRegistry::new("r2"));
    all_broken.push("ghcr.io/acme/solo", "main-bbb", march(9));
    let solo = Arc::new(InMemoryTarget::new("s"));
    solo.track_policy("solo", "ghcr.io/acme/solo:main-bbb", newest_main_build())
        .unwrap();
    let report = Pipeline::new(Arc::new(BrokenMetadata {
        inner: all_broken,
        broken: "main-bbb",
    }))
    .with_target(solo)
    .run_once()
    .await;
    assert_eq!(report.failures.len(), 1);
    assert!(report.failures[0].error.to_string().contains("500"));
}
