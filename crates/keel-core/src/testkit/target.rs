//! The conformance of a [`Target`] implementation.

use std::collections::BTreeSet;

use crate::error::Error;
use crate::reference::{ImageRef, Tag};
use crate::target::{ApplyOutcome, Target, UpdatePlan};

/// Runs every target check. The target must track at least one image; it is changed and
/// then put back as it was.
pub async fn target_conformance(target: &dyn Target) {
    let images = target
        .discover()
        .await
        .unwrap_or_else(|e| panic!("{}: discover failed: {e}", target.name()));
    assert!(
        !images.is_empty(),
        "{}: tracks no image to test with",
        target.name()
    );
    let ids: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        images.len(),
        "{}: tracked image ids are not unique",
        target.name()
    );

    let tracked = &images[0];
    let original = tracked.image.clone();
    let moved = original.with_tag(Tag::new("keel-conformance-1").expect("valid tag"));
    let plan = UpdatePlan {
        target: target.name().to_owned(),
        id: tracked.id.clone(),
        current: original.clone(),
        new: moved.clone(),
    };

    let preview = target
        .preview(std::slice::from_ref(&plan))
        .await
        .unwrap_or_else(|e| panic!("{}: preview failed: {e}", target.name()));
    assert!(
        !preview.is_empty(),
        "{}: preview of a change is empty",
        target.name()
    );
    assert_running(target, &tracked.id, &original, "preview changed the target").await;

    let first = target.apply(&plan).await;
    assert!(
        matches!(first, Ok(ApplyOutcome::Applied)),
        "{}: apply gave {first:?}",
        target.name()
    );
    assert_running(target, &tracked.id, &moved, "apply did not take").await;

    let again = target.apply(&plan).await;
    assert!(
        matches!(again, Ok(ApplyOutcome::AlreadyCurrent)),
        "{}: applying twice gave {again:?}, expected AlreadyCurrent",
        target.name()
    );

    let stale = UpdatePlan {
        new: original.with_tag(Tag::new("keel-conformance-2").expect("valid tag")),
        ..plan.clone()
    };
    match target.apply(&stale).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!(
            "{}: a stale plan gave {other:?}, expected Conflict",
            target.name()
        ),
    }
    assert_running(
        target,
        &tracked.id,
        &moved,
        "a refused plan changed the target",
    )
    .await;

    let unknown = UpdatePlan {
        id: "keel-conformance-no-such-id".into(),
        ..plan.clone()
    };
    match target.apply(&unknown).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!(
            "{}: an unknown id gave {other:?}, expected NotFound",
            target.name()
        ),
    }

    let back = UpdatePlan {
        current: moved,
        new: original.clone(),
        ..plan
    };
    let results = target.apply_all(std::slice::from_ref(&back)).await;
    assert!(
        matches!(results.as_slice(), [Ok(ApplyOutcome::Applied)]),
        "{}: apply_all gave {results:?}",
        target.name()
    );
    assert_running(target, &tracked.id, &original, "not restored").await;
}

/// Asserts that the tracked image `id` runs `expected`; `problem` says what it means if not.
async fn assert_running(target: &dyn Target, id: &str, expected: &ImageRef, problem: &str) {
    let running = target
        .discover()
        .await
        .unwrap_or_else(|e| panic!("{}: discover failed: {e}", target.name()))
        .into_iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{}: tracked image {id} disappeared", target.name()))
        .image;
    assert_eq!(&running, expected, "{}: {problem}", target.name());
}
