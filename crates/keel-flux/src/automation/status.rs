//! What a run of an automation writes back: its `Ready` condition and `observedPolicies`.

use std::collections::BTreeMap;

use keel_core::Error;
use serde_json::Value;

use crate::reflector::objects::LatestRef;
use crate::reflector::status::{ref_patch, truncate};

/// A `Ready` condition to write.
pub(super) struct Ready {
    pub(super) ok: bool,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl Ready {
    pub(super) fn no(reason: &'static str, message: impl Into<String>) -> Ready {
        Ready {
            ok: false,
            reason,
            message: truncate(&message.into()),
        }
    }
}

/// What a successful run found and did.
pub(super) struct Success {
    pub(super) message: String,
    pub(super) observed: BTreeMap<String, LatestRef>,
    pub(super) pushed: Option<String>,
}

/// `status.observedPolicies` as a merge patch: the policies of this run, and `null` for the
/// ones observed before and gone now.
pub(super) fn observed_patch(
    status: Option<&Value>,
    observed: &BTreeMap<String, LatestRef>,
) -> Value {
    let mut patch = serde_json::Map::new();
    if let Some(previous) = status
        .and_then(|s| s.get("observedPolicies"))
        .and_then(Value::as_object)
    {
        for name in previous.keys() {
            patch.insert(name.clone(), Value::Null);
        }
    }
    for (name, latest) in observed {
        patch.insert(name.clone(), ref_patch(latest));
    }
    Value::Object(patch)
}

/// The `Ready` condition for a run whose changes were not pushed: `UpdateFailed` when a
/// change no longer applies to the branch as fetched (keel-git names the file in the
/// action), `GitOperationFailed` for the fetch or push.
pub(super) fn apply_failure(error: &Error) -> Ready {
    match error {
        Error::Conflict { action, .. } if action.starts_with("update ") => Ready::no(
            "UpdateFailed",
            format!("failed to apply the changes, none was pushed: {error}"),
        ),
        _ => git_failure("failed to push", error),
    }
}

/// The `Ready` condition for a failed Git operation.
pub(super) fn git_failure(context: &str, error: &Error) -> Ready {
    Ready::no("GitOperationFailed", format!("{context}: {error}"))
}
