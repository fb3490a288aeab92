//! The events the notifier tests deliver, and one helper for a delivery that must fail. The
//! receivers they deliver to are `keel_testsupport::receiver`'s.

#![allow(dead_code, unreachable_pub)]

use chrono::{TimeZone, Utc};
use keel_core::{ApprovalInfo, Error, Event, EventKind, ImageRef, Notifier, UpdatePlan};

/// The plan of the events: `nginx:1.25.0` to `1.25.1` in `default/web` of target `prod`.
pub fn plan() -> UpdatePlan {
    UpdatePlan {
        target: "prod".into(),
        id: "default/web".into(),
        current: ImageRef::parse("nginx:1.25.0").unwrap(),
        new: ImageRef::parse("nginx:1.25.1").unwrap(),
    }
}

/// An event of `kind` at 2024-05-01T12:00:00Z.
pub fn event(kind: EventKind) -> Event {
    let mut event = Event::new(kind, plan(), "");
    event.time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    event
}

pub fn approval() -> ApprovalInfo {
    ApprovalInfo {
        id: "a1b2".into(),
        required: 2,
        approvals: 0,
        voters: Vec::new(),
        deadline: Utc.with_ymd_and_hms(2024, 5, 2, 12, 0, 0).unwrap(),
    }
}

/// Delivers the `update applied` event with `notifier`, which must fail; the error.
pub async fn failure(notifier: &dyn Notifier) -> Error {
    notifier
        .notify(&event(EventKind::UpdateApplied))
        .await
        .unwrap_err()
}
