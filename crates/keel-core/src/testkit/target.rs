//! The conformance of a [`Target`] implementation.

use std::collections::BTreeSet;

use crate::error::Error;
use crate::reference::{ImageRef, Tag};
use crate::target::{ApplyOutcome, Target, UpdatePlan};

/// Runs every target check. The target must track at least one image; it is changed and
/// then put back as it was.
pub async fn target_conformance(target: &dyn Target) {
    let name = target.name();
    let images = target
        .discover()
        .await
        .unwrap_or_else(|e| panic!("{name}: discover failed: {e}"));
    assert!(!images.is_empty(), "{name}: tracks no image to test with");
    let ids: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        images.len(),
        "{name}: tracked image ids are not unique"
    );

    let tracked = &images[0];
    let original = tracked.image.clone();
    let moved = original.with_tag(Tag::new("keel-conformance-1").expect("valid tag"));
    let plan = UpdatePlan {
        target: name.to_owned(),
        id: tracked.id.clone(),
        current: original.clone(),
        new: moved.clone(),
    };

    let preview = target
        .preview(std::slice::from_ref(&plan))
        .await
        .unwrap_or_else(|e| panic!("{name}: preview failed: {e}"));
    assert!(!preview.is_empty(), "{name}: preview of a change is empty");
    assert_running(target, &tracked.id, &original, "preview changed the target").await;

    let first = target.apply(&plan).await;
    assert!(
        matches!(first, Ok(ApplyOutcome::Applied)),
        "{name}: apply gave {first:?}"
    );
    assert_running(target, &tracked.id, &moved, "apply did not take").await;

    let again = target.apply(&plan).await;
    assert!(
        matches!(again, Ok(ApplyOutcome::AlreadyCurrent)),
        "{name}: applying twice gave {again:?}, expected AlreadyCurrent"
    );

    let stale = UpdatePlan {
        new: original.with_tag(Tag::new("keel-conformance-2").expect("valid tag")),
        ..plan.clone()
    };
    match target.apply(&stale).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("{name}: a stale plan gave {other:?}, expected Conflict"),
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
        other => panic!("{name}: an unknown id gave {other:?}, expected NotFound"),
    }

    let back = UpdatePlan {
        current: moved,
        new: original.clone(),
        ..plan
    };
    let results = target.apply_all(std::slice::from_ref(&back)).await;
    assert!(
        matches!(results.as_slice(), [Ok(ApplyOutcome::Applied)]),
        "{name}: apply_all gave {results:?}"
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
