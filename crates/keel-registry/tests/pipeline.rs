//! The pipeline over `RegistryClient` and a real registry on 127.0.0.1: no update from a tag
//! list cut short by the listing budget, and an approved update rolls out exactly the
//! approved digest even while the client's cache still holds the old one.

use std::sync::Arc;
use std::time::Duration;

use keel_core::approval::{Approvals, MemoryApprovalStore};
use keel_core::memory::InMemoryTarget;
use keel_core::{EventKind, Pipeline};
use keel_registry::{RegistryClient, RegistryClientBuilder};
use keel_testsupport::pipeline::{RecordingNotifier, approved_digest_rolls_out};
use keel_testsupport::registry::{RegistryServer, ServerOptions};

fn builder() -> RegistryClientBuilder {
    RegistryClient::builder()
        .with_requests_per_second(0.0)
        .with_retries(3, Duration::from_millis(10), Duration::from_millis(50))
}

#[tokio::test]
async fn no_update_is_chosen_from_a_truncated_tag_list() {
    let server = RegistryServer::start(ServerOptions::paginating()).await;
    // Listed lexically: 1.0.0, 1.1.0, 247 fillers (pre-releases of 1.1.0), then 1.2.0. A
    // budget of two pages of 100 ends the listing among the fillers, before 1.2.0.
    let mut tags = vec!["1.0.0".to_owned(), "1.1.0".to_owned(), "1.2.0".to_owned()];
    tags.extend((0..247).map(|i| format!("1.1.0-x{i:03}")));
    server.push_tags("team/many", &tags).await;
    let image = format!("{}/team/many", server.addr());

    let target = Arc::new(InMemoryTarget::new("mem"));
    target
        .track("web", &format!("{image}:1.0.0"), "minor")
        .unwrap();
    target
        .track("api", &format!("{image}:1.0.0"), "minor")
        .unwrap();
    let recorder = Arc::new(RecordingNotifier::default());
    let budgeted = builder()
        .with_page_size(100)
        .with_listing_budget(2, 100_000)
        .build()
        .unwrap();
    let pipeline = Pipeline::new(Arc::new(budgeted))
        .with_target(target.clone())
        .with_notifier(recorder.clone());

    for pass in 0..2 {
        let report = pipeline.run_once().await;
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(
            report.planned.is_empty() && report.applied.is_empty(),
            "pass {pass} chose {:?} from a partial list",
            report.planned
        );
        assert_eq!(report.truncated.len(), 1, "reported once per repository");
        let held = &report.truncated[0];
        assert_eq!(held.repository, image);
        assert_eq!(held.listed, 200);
        assert_eq!(
            held.images,
            [
                ("mem".to_owned(), "api".to_owned()),
                ("mem".into(), "web".into())
            ]
        );
        let message = held.to_string();
        assert!(
            message.contains("after 200 tags") && message.contains("listing budget"),
            "{message}"
        );
    }
    assert_eq!(
        target.image("web").unwrap().to_string(),
        format!("{image}:1.0.0")
    );
    let events = recorder.of(EventKind::ListingTruncated);
    assert_eq!(events.len(), 1, "announced again on the second pass");
    assert!(events[0].message.contains("raise"), "{}", events[0].message);
    assert!(recorder.of(EventKind::UpdatePlanned).is_empty());

    // With a budget that lists everything, the newest minor version is chosen.
    let complete = builder().with_page_size(100).build().unwrap();
    let report = Pipeline::new(Arc::new(complete))
        .with_target(target.clone())
        .run_once()
        .await;
    assert!(report.truncated.is_empty());
    assert_eq!(report.applied.len(), 2);
    assert_eq!(
        target.image("web").unwrap().to_string(),
        format!("{image}:1.2.0")
    );
}

#[tokio::test]
async fn an_approved_update_rolls_out_the_approved_digest_not_a_new_push() {
    let server =
        RegistryServer::with_tags(ServerOptions::plain(), "team/web", &["1.0.0", "1.1.0"]).await;
    let image = format!("{}/team/web", server.addr());
    let target = Arc::new(InMemoryTarget::new("mem"));
    target.track_with(
        keel_testsupport::pipeline::tracked("web", &format!("{image}:1.0.0"), "minor")
            .with_approvals(1),
    );
    // The default client caches digests for 30 s, as a controller's does: the pass after
    // the re-push still sees the approved digest in the cache.
    let client = Arc::new(builder().build().unwrap());
    let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
    let pipeline = Pipeline::new(client.clone())
        .with_target(target.clone())
        .with_approvals(approvals.clone());

    let pushed = approved_digest_rolls_out(
        &pipeline,
        &approvals,
        async || {
            server
                .move_tag("team/web", "1.1.0", "2030-01-01T00:00:00Z")
                .await
        },
        async || {
            assert_eq!(
                target.image("web").unwrap().to_string(),
                format!("{image}:1.0.0")
            );
        },
    )
    .await;
    assert_eq!(
        target.image("web").unwrap().to_string(),
        format!("{image}:1.1.0@{pushed}")
    );
}
