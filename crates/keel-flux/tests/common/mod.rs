//! What the reflector and automation tests share: the `Ready` condition of a status and the
//! times of the passes.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The `Ready` condition of a status: (status, reason, message).
pub(crate) fn ready(status: &Value) -> (String, String, String) {
    let condition = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition in {status}"));
    let text = |key: &str| condition[key].as_str().unwrap_or_default().to_owned();
    (text("status"), text("reason"), text("message"))
}

/// Asserts the `Ready` condition of a status: its state, its reason and a part of its message.
/// Returns the message for further checks.
#[track_caller]
pub(crate) fn assert_ready(status: &Value, state: &str, reason: &str, part: &str) -> String {
    let (got_state, got_reason, message) = ready(status);
    assert_eq!(
        (got_state.as_str(), got_reason.as_str()),
        (state, reason),
        "{message}"
    );
    assert!(message.contains(part), "{message}");
    message
}

/// A time of a pass, in RFC 3339.
pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a test time")
        .with_timezone(&Utc)
}
