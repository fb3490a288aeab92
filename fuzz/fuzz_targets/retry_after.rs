//! Fuzzes the one `Retry-After` parser (keel-core's, which the registry client and the
//! notifiers call).
//!
//! Checked: no panic; digits alone are read as exactly that many seconds (the longest wait
//! when too many to count); an HTTP date is read as the time until then, never negative;
//! anything else (fractions, signs, words) is no wait at all; the registry client honours
//! what the parser reads.
#![no_main]

use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_core::retry::parse_retry_after;
use keel_registry::fuzzing::retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    let now = Utc::now();
    let parsed = parse_retry_after(value, now);
    // The registry client reads the clock itself, a moment later.
    let registry = retry_after(value);
    let trimmed = value.trim();

    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let secs = trimmed.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(parsed, Some(Duration::from_secs(secs)), "{value:?}");
        assert_eq!(registry, parsed, "{value:?}");
        return;
    }
    if let Ok(date) = DateTime::parse_from_rfc2822(trimmed) {
        let expected = (date.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO);
        assert_eq!(parsed, Some(expected), "{value:?}");
        let registry = registry.unwrap_or_else(|| panic!("{value:?}: a date, but not read"));
        assert!(
            registry <= expected && expected - registry < Duration::from_secs(5),
            "{value:?}: {registry:?} vs {expected:?}"
        );
        return;
    }
    // Fractions and signed numbers are not delay-seconds (RFC 9110).
    if trimmed.parse::<f64>().is_ok() {
        assert_eq!(parsed, None, "{value:?}");
    }
    assert_eq!(parsed.is_some(), registry.is_some(), "{value:?}");
});
