//! Fuzzes the `Retry-After` parsers of the registry client and of the notifiers.
//!
//! Checked: no panic; a whole number of seconds is read as exactly that by both (the
//! notifiers cap it at 10^9 s); an HTTP date is read as the time until then, never
//! negative; the two parsers agree on every value both understand.
#![no_main]

use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_notify::delivery::parse_retry_after;
use keel_registry::fuzzing::retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    let now = Utc::now();
    let registry = retry_after(value);
    let notify = parse_retry_after(value, now);
    let trimmed = value.trim();

    if let Ok(secs) = trimmed.parse::<u64>() {
        assert_eq!(registry, Some(Duration::from_secs(secs)), "{value:?}");
        assert_eq!(
            notify,
            Some(Duration::from_secs(secs.min(1_000_000_000))),
            "{value:?}"
        );
        return;
    }
    if let Ok(date) = DateTime::parse_from_rfc2822(trimmed) {
        let expected = (date.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO);
        assert_eq!(notify, Some(expected), "{value:?}");
        // The registry client reads the clock itself, a moment later.
        let registry = registry.unwrap_or_else(|| panic!("{value:?}: a date, but not read"));
        assert!(
            registry <= expected && expected - registry < Duration::from_secs(5),
            "{value:?}: {registry:?} vs {expected:?}"
        );
        return;
    }
    assert_eq!(registry, None, "{value:?}");
    if let Some(wait) = notify {
        let secs: f64 = trimmed
            .parse()
            .unwrap_or_else(|_| panic!("{value:?}: neither seconds nor a date, read as {wait:?}"));
        assert!(secs.is_finite() && secs >= 0.0, "{value:?}");
        assert!(wait <= Duration::from_secs(1_000_000_000), "{value:?}");
    }
});
