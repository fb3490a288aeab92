//! The `Ready` condition, timestamps and `latestRef` patches as Kubernetes writes them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::objects::{Condition, LatestRef};

/// The conditions Flux's image-reflector-controller owns; the reflector writes `Ready` and
/// drops the other two, which only Flux's own progress reporting sets.
const OWNED: [&str; 3] = ["Ready", "Reconciling", "Stalled"];

/// The longest condition message written; the API server refuses longer than 32768 bytes, and
/// a registry's error body can be longer.
const MAX_MESSAGE: usize = 4096;

/// `metav1.Time` as the API server writes it: RFC 3339 in UTC, whole seconds.
pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `existing` with `Ready` set to `ok` for `reason` and `message` at `generation`, and without
/// `Reconciling` and `Stalled`; conditions of other owners are kept in their order. The
/// transition time changes only when the status does.
pub(crate) fn conditions_with_ready(
    existing: &[Condition],
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = existing
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status && !c.last_transition_time.is_empty())
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| timestamp(now));
    let mut conditions = vec![Condition {
        type_: "Ready".to_owned(),
        status: status.to_owned(),
        observed_generation: generation,
        last_transition_time,
        reason: reason.to_owned(),
        message: truncate(message),
    }];
    conditions.extend(
        existing
            .iter()
            .filter(|c| !OWNED.contains(&c.type_.as_str()))
            .cloned(),
    );
    conditions
}

/// A `latestRef` as a merge patch: a missing digest is removed, not left as it was.
pub(crate) fn ref_patch(reference: &LatestRef) -> Value {
    let digest = if reference.digest.is_empty() {
        Value::Null
    } else {
        json!(reference.digest)
    };
    json!({"name": reference.name, "tag": reference.tag, "digest": digest})
}

/// `message` cut to [`MAX_MESSAGE`] bytes at a character boundary, marked when cut.
pub(crate) fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(MAX_MESSAGE);
        let cut = truncate(&long);
        assert!(
            cut.len() <= MAX_MESSAGE + 3 && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }

    fn condition(type_: &str, status: &str, time: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            observed_generation: Some(1),
            last_transition_time: time.into(),
            reason: "R".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn ready_keeps_its_transition_time_while_its_status_holds() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let existing = vec![
            condition("Reconciling", "True", "2026-01-01T00:00:00Z"),
            condition("Ready", "True", "2026-01-01T00:00:00Z"),
            condition("Healthy", "True", "2026-01-01T00:00:00Z"),
        ];
        let same = conditions_with_ready(&existing, true, "Succeeded", "ok", Some(2), now);
        assert_eq!(same.len(), 2);
        assert_eq!(same[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(same[0].observed_generation, Some(2));
        assert_eq!(same[1].type_, "Healthy");
        let flipped = conditions_with_ready(&existing, false, "Failed", "no", Some(2), now);
        assert_eq!(flipped[0].status, "False");
        assert_eq!(flipped[0].last_transition_time, "2026-01-02T03:04:05Z");
    }
}
