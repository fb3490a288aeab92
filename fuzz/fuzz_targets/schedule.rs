//! Fuzzes `Schedule::parse` and `Schedule::next_after`. The input is eight bytes of a time
//! (seconds since the epoch, folded into the range of `DateTime`) followed by the schedule.
//!
//! Checked: no panic; a schedule that parses displays as a string that parses back to an
//! equal schedule; an error names the input and points inside it; the next firing comes
//! after the given time (unless it saturates at the end of time), on a whole second, an
//! `@every` interval after the given second, and for cron schedules it is the first firing
//! after the second before it, and the one after it comes later still.
#![no_main]

use chrono::{DateTime, TimeDelta, Utc};
use keel_core::Error;
use keel_core::trigger::Schedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((time, text)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let schedule = match Schedule::parse(text) {
        Ok(schedule) => schedule,
        Err(Error::InvalidInput(e)) => {
            assert_eq!(e.input(), text);
            assert!(!e.reason().is_empty());
            if let Some((start, end)) = e.span() {
                assert!(
                    start <= end && end <= text.len(),
                    "{text:?}: span {start}..{end}"
                );
                assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            }
            return;
        }
        Err(other) => panic!("{text:?}: unexpected error {other:?}"),
    };
    let shown = schedule.to_string();
    let again = Schedule::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its display {shown:?} does not: {e}"));
    assert_eq!(again, schedule, "{text:?} -> {shown:?}");

    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    let secs = min + i64::from_le_bytes(*time).rem_euclid(max - min + 1);
    let nanos = u32::from(time[0]) * 3_900_000;
    let t = DateTime::from_timestamp(secs, nanos).expect("in range");
    let next = schedule.next_after(t);
    if next == DateTime::<Utc>::MAX_UTC {
        return;
    }
    assert!(next > t, "{shown}: next after {t} is {next}");
    assert_eq!(next.timestamp_subsec_nanos(), 0, "{shown}: {next}");
    match schedule.interval() {
        Some(interval) => {
            let interval = TimeDelta::from_std(interval).expect("interval fits");
            assert_eq!(next.timestamp() - t.timestamp(), interval.num_seconds());
        }
        None => {
            let before = next - TimeDelta::seconds(1);
            assert_eq!(schedule.next_after(before), next, "{shown}: after {before}");
            let after = schedule.next_after(next);
            assert!(after > next, "{shown}: after {next} comes {after}");
        }
    }
});
