//! Retry with backoff: the one exponential backoff and the one `Retry-After` parser every
//! backend uses.
//!
//! A failed request that may succeed later is retried after a wait that doubles with each
//! failure up to a cap ([`Backoff::ceiling`]); the wait itself is drawn at random between zero
//! and that ceiling ("full jitter", [`Backoff::delay`]), so that many clients failing together
//! spread their retries out instead of coming back in step. When the server says how long to
//! wait (`Retry-After`, read by [`parse_retry_after`]), its word replaces the computed wait.
//!
//! The core does no I/O: the callers sleep (with their runtime's timer) for the durations
//! computed here.
//!
//! ```
//! use std::time::Duration;
//! use keel_core::retry::Backoff;
//!
//! let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
//! assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
//! assert_eq!(backoff.ceiling(3), Duration::from_millis(400));
//! assert_eq!(backoff.ceiling(20), Duration::from_secs(1));
//! let wait = backoff.delay(3);
//! assert!(wait <= Duration::from_millis(400));
//! ```

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Exponential backoff with a cap and full jitter.
///
/// The ceiling after the `n`-th failure (counting from 1) is `initial * 2^(n-1)`, never more
/// than `max`; the wait is a random duration between zero and the ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `max` (raised to `initial` if it is lower).
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        let max = if max.as_nanos() < initial.as_nanos() {
            initial
        } else {
            max
        };
        Backoff { initial, max }
    }

    /// The ceiling after the first failure.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap on every ceiling.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The longest wait after failure number `failure` (counting from 1; 0 counts as 1):
    /// `initial * 2^(failure-1)`, capped at `max`.
    pub fn ceiling(&self, failure: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failure.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait after failure number `failure`: a random duration between zero and
    /// [`ceiling`](Backoff::ceiling), both included.
    pub fn delay(&self, failure: u32) -> Duration {
        full_jitter(self.ceiling(failure))
    }
}

/// A random duration between zero and `ceiling`, both included, drawn uniformly from a
/// pseudo-random generator seeded per thread (not for cryptography).
///
/// Also the jitter to add to a fixed period, so that replicas started together do not act in
/// step: `period + full_jitter(period / 5)` is up to a fifth more than `period`.
///
/// ```
/// use std::time::Duration;
/// use keel_core::retry::full_jitter;
///
/// let period = Duration::from_secs(2);
/// let wait = period + full_jitter(period / 5);
/// assert!(wait >= period && wait <= Duration::from_millis(2400));
/// assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
/// ```
pub fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// How long a `Retry-After` header value asks to wait, counted from `now`.
///
/// By RFC 9110 (section 10.2.3) the value is either `delay-seconds`, a non-negative whole
/// number of seconds (digits only: `1.5`, `-1` and `+3` are not), or an HTTP date, in any of
/// the three forms a recipient must accept: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// the obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and C's asctime form
/// (`Sun Nov  6 08:49:37 1994`). A date in the past asks for no wait. Surrounding whitespace
/// is ignored; anything else is `None`. A number of seconds too large to count is read as
/// the longest wait there is.
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use keel_core::retry::parse_retry_after;
///
/// let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// let date = "Wed, 21 Oct 2015 07:28:00 GMT";
/// assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("1.5", now), None);
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = http_date(value)?;
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP date in any of its three forms (RFC 9110 section 5.6.7).
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = DateTime::parse_from_rfc2822(value) {
        return Some(date.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
        assert_eq!(b.ceiling(1), Duration::from_millis(500));
        assert_eq!(b.ceiling(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(6), Duration::from_secs(10));
        assert_eq!(b.ceiling(100), Duration::from_secs(10));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
        // A cap below the start is raised to it.
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.max(), Duration::from_secs(2));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_full_jitter_below_the_ceiling() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for failure in 1..8 {
            let ceiling = b.ceiling(failure);
            let delays: Vec<Duration> = (0..200).map(|_| b.delay(failure)).collect();
            assert!(
                delays.iter().all(|d| *d <= ceiling),
                "{failure}: {delays:?}"
            );
            // Full jitter reaches well below half the ceiling, where the old "equal jitter"
            // never went, and the draws are not all the same.
            assert!(
                delays.iter().any(|d| *d < ceiling / 2),
                "{failure}: {delays:?}"
            );
            assert!(
                delays.iter().any(|d| *d != delays[0]),
                "{failure}: {delays:?}"
            );
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
        assert!(full_jitter(Duration::MAX) <= Duration::MAX);
    }

    #[test]
    fn jitter_on_a_period_adds_at_most_a_fifth() {
        let base = Duration::from_secs(2);
        for _ in 0..100 {
            let j = base + full_jitter(base / 5);
            assert!(j >= base && j <= base + base / 5, "{j:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        let secs = |n| Some(Duration::from_secs(n));
        for (value, wait) in [
            ("3", secs(3)),
            (" 7 ", secs(7)),
            ("0", secs(0)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", secs(60)),
            // A date that has passed asks for no wait.
            ("Wed, 21 Oct 2015 07:00:00 GMT", secs(0)),
            ("99999999999999999999999", secs(u64::MAX)),
            ("soon", None),
            ("", None),
            ("-1", None),
            ("+3", None),
        ] {
            assert_eq!(parse_retry_after(value, now), wait, "{value:?}");
        }
    }

    /// RFC 9110 wins over the notifiers' old parser, which read fractions: `delay-seconds`
    /// is `1*DIGIT`, so `1.5` is no `Retry-After` (Discord's fractional wait comes in its
    /// JSON body, read by the Discord notifier itself).
    #[test]
    fn retry_after_fractions_are_not_delay_seconds() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        for value in ["1.5", "0.25", "1e3"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    /// A recipient must accept all three forms of an HTTP date (RFC 9110 section 5.6.7).
    #[test]
    fn retry_after_obsolete_date_forms() {
        let now = Utc.with_ymd_and_hms(1994, 11, 6, 8, 48, 37).unwrap();
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let wait = parse_retry_after(value, now);
            assert_eq!(wait, Some(Duration::from_secs(60)), "{value:?}");
        }
    }
}
