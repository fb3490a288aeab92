//! What the reflector and automation tests share: the times of the passes.

use chrono::{DateTime, Utc};

/// A time of a pass, in RFC 3339.
pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a test time")
        .with_timezone(&Utc)
}
