use chrono::{Datelike, Duration as TimeDelta, NaiveDate, TimeZone, Timelike};
use proptest::prelude::*;

use super::*;

fn has(mask: u64, v: u32) -> bool {
    v < 64 && mask & (1 << v) != 0
}

impl Cron {
    /// Cron's rule for the two day fields, written out for the oracle below.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = has(self.days, date.day());
        let dow = has(self.weekdays, date.weekday().num_days_from_sunday());
        if self.days_any || self.weekdays_any {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn next(schedule: &str, t: DateTime<Utc>) -> DateTime<Utc> {
    schedule.parse::<Schedule>().unwrap().next_after(t)
}

fn parse_err(schedule: &str) -> ParseError {
    match schedule.parse::<Schedule>() {
        Err(Error::InvalidInput(e)) => e,
        other => panic!("{schedule:?} should not parse, got {other:?}"),
    }
}

fn cron(s: &Schedule) -> &Cron {
    match &s.rule {
        Rule::Cron(c) => c,
        Rule::Every(_) => panic!("not a cron schedule"),
    }
}

#[test]
fn schedules_fire_at_the_expected_times() {
    // Half a second past noon.
    let half = at(2024, 1, 1, 12, 0, 0) + TimeDelta::milliseconds(500);
    #[rustfmt::skip]
    let cases = [
        // `@every` adds the interval to the truncated second.
        ("@every 1m",          half,                        at(2024, 1, 1, 12, 1, 0)),
        ("@every 5m30s",       half,                        at(2024, 1, 1, 12, 5, 30)),
        ("@every 1.5h",        half,                        at(2024, 1, 1, 13, 30, 0)),
        ("@every 90s",         half,                        at(2024, 1, 1, 12, 1, 30)),
        ("@every 2000ms",      half,                        at(2024, 1, 1, 12, 0, 2)),
        // Descriptors fire at their boundaries.
        ("@yearly",            at(2024, 5, 15, 10, 20, 30), at(2025, 1, 1, 0, 0, 0)),
        ("@annually",          at(2024, 5, 15, 10, 20, 30), at(2025, 1, 1, 0, 0, 0)),
        ("@monthly",           at(2024, 5, 15, 10, 20, 30), at(2024, 6, 1, 0, 0, 0)),
        // 2024-05-15 is a Wednesday; the next Sunday is the 19th.
        ("@weekly",            at(2024, 5, 15, 10, 20, 30), at(2024, 5, 19, 0, 0, 0)),
        ("@daily",             at(2024, 5, 15, 10, 20, 30), at(2024, 5, 16, 0, 0, 0)),
        ("@midnight",          at(2024, 5, 15, 10, 20, 30), at(2024, 5, 16, 0, 0, 0)),
        ("@hourly",            at(2024, 5, 15, 10, 20, 30), at(2024, 5, 15, 11, 0, 0)),
        // Cron fields: steps, ranges, lists and names.
        ("0 */5 * * * *",      at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 0, 5, 0)),
        ("*/15 * * * *",       at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 0, 15, 0)),
        ("10,40 * * * * *",    at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 0, 2, 40)),
        ("* * * * * *",        at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 0, 2, 31)),
        ("0 0 12 1 JAN,jul ?", at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 12, 0, 0)),
        ("0 0 12 1 JAN,jul ?", at(2024, 1, 1, 12, 0, 0),    at(2024, 7, 1, 12, 0, 0)),
        ("0 0 8-10/2 * * *",   at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 8, 0, 0)),
        ("0 0 8-10/2 * * *",   at(2024, 1, 1, 8, 0, 0),     at(2024, 1, 1, 10, 0, 0)),
        ("0 0 20/2 * * *",     at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 1, 20, 0, 0)),
        ("0 0 20/2 * * *",     at(2024, 1, 1, 22, 0, 0),    at(2024, 1, 2, 20, 0, 0)),
        // 2024-01-01 is a Monday; Saturday 6 and Sunday 7 (== 0) are the weekend.
        ("0 0 9 * * 6-7",      at(2024, 1, 1, 0, 2, 30),    at(2024, 1, 6, 9, 0, 0)),
        ("0 0 9 * * SAT-7",    at(2024, 1, 6, 9, 0, 0),     at(2024, 1, 7, 9, 0, 0)),
        ("0 30 9 * * MON-FRI", at(2024, 1, 5, 10, 0, 0),    at(2024, 1, 8, 9, 30, 0)),
        // Both day fields restricted means either: the 13th, or any Friday. From Monday
        // 2024-09-09 the first is Friday the 13th... and after it, Friday the 20th; in
        // October the 13th is a Sunday and still matches.
        ("0 0 0 13 * FRI",     at(2024, 9, 9, 0, 0, 0),     at(2024, 9, 13, 0, 0, 0)),
        ("0 0 0 13 * FRI",     at(2024, 9, 13, 0, 0, 0),    at(2024, 9, 20, 0, 0, 0)),
        ("0 0 0 13 * FRI",     at(2024, 10, 11, 0, 0, 0),   at(2024, 10, 13, 0, 0, 0)),
        // With one day field `*` or `?`, only the other counts.
        ("0 0 0 13 * ?",       at(2024, 9, 14, 0, 0, 0),    at(2024, 10, 13, 0, 0, 0)),
        ("0 0 0 * * FRI",      at(2024, 9, 14, 0, 0, 0),    at(2024, 9, 20, 0, 0, 0)),
        // Rare days are found.
        ("0 0 0 29 2 *",       at(2023, 3, 1, 0, 0, 0),     at(2024, 2, 29, 0, 0, 0)),
        // 2100 is not a leap year.
        ("0 0 0 29 2 *",       at(2096, 3, 1, 0, 0, 0),     at(2104, 2, 29, 0, 0, 0)),
        ("0 0 0 31 * *",       at(2024, 4, 1, 0, 0, 0),     at(2024, 5, 31, 0, 0, 0)),
        // The same days are fine when a weekday may match instead.
        ("0 0 0 30 2 MON",     at(2024, 1, 1, 0, 0, 0),     at(2024, 2, 5, 0, 0, 0)),
    ];
    for (schedule, after, want) in cases {
        assert_eq!(next(schedule, after), want, "{schedule:?} after {after}");
    }
}

#[test]
fn every_durations_print_canonically() {
    for (input, shown) in [
        ("@every 1m", "@every 1m"),
        ("@every 90s", "@every 1m30s"),
        ("  @EVERY   1h0m0s ", "@every 1h"),
        ("@every 1h30s", "@every 1h30s"),
        ("@every 3600000ms", "@every 1h"),
    ] {
        let s: Schedule = input.parse().unwrap();
        assert_eq!(s.to_string(), shown, "{input}");
        assert_eq!(s.to_string().parse::<Schedule>().unwrap(), s);
    }
    assert_eq!(
        "@every 1m30s".parse::<Schedule>().unwrap(),
        "@every 90s".parse::<Schedule>().unwrap()
    );
    assert_eq!(
        Schedule::default().interval(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(Schedule::default().to_string(), DEFAULT_POLL_SCHEDULE);
}

#[test]
fn every_rejects_short_fractional_and_malformed_durations() {
    for (input, needle) in [
        ("@every 500ms", "at least 1s"),
        ("@every 0s", "at least 1s"),
        ("@every 0", "at least 1s"),
        ("@every 1500ms", "whole number of seconds"),
        ("@every -5m", "negative"),
        ("@every 5x", "unknown unit \"x\""),
        ("@every 5", "missing unit"),
        ("@every", "needs a duration"),
        ("@every m", "expected a number"),
        ("@every 1..5s", "expected a number"),
        ("@every 99999999999999999999999h", "too long"),
    ] {
        let e = parse_err(input);
        assert!(e.reason().contains(needle), "{input}: {e}");
        assert!(e.span().is_some(), "{input}");
    }
    assert!(Schedule::every(Duration::from_millis(1500)).is_err());
    assert!(Schedule::every(Duration::ZERO).is_err());
}

#[test]
fn intervals_are_go_durations_of_whole_seconds() {
    for (input, secs) in [("30s", 30), ("5m", 300), ("1h30m", 5400), (" 2s ", 2)] {
        assert_eq!(parse_interval(input).unwrap(), Duration::from_secs(secs));
    }
    for (input, needle) in [
        ("30", "missing unit"),
        ("", "empty"),
        ("5x", "unknown unit"),
        ("0s", "at least 1s"),
        ("1500ms", "whole number"),
        ("-5m", "negative"),
    ] {
        let Err(Error::InvalidInput(e)) = parse_interval(input) else {
            panic!("{input:?} should not parse");
        };
        assert_eq!(e.kind(), "interval");
        assert!(e.reason().contains(needle), "{input:?}: {e}");
    }
}

#[test]
fn descriptors_fire_at_their_boundaries() {
    assert_eq!(
        "@Hourly".parse::<Schedule>().unwrap().to_string(),
        "@hourly"
    );
    let e = parse_err("@fortnightly");
    assert!(e.reason().contains("unknown descriptor"), "{e}");
    assert_eq!(e.span(), Some((0, 12)));
    let e = parse_err("@daily 5");
    assert!(e.reason().contains("takes no arguments"), "{e}");
}

#[test]
fn rare_days_are_found_and_impossible_ones_refused() {
    // February 30th never comes: an error, not an endless search.
    let e = parse_err("0 0 0 30 2 *");
    assert!(e.reason().contains("never occurs in February"), "{e}");
    assert_eq!(e.span(), Some((6, 8)));
    let e = parse_err("0 0 31 APR,JUN,SEP,NOV *");
    assert!(
        e.reason().contains("April, June, September, November"),
        "{e}"
    );
}

#[test]
fn cron_errors_name_the_field_and_point_at_it() {
    for (input, needle, span) in [
        (
            "61 * * * * *",
            "second field: 61 is out of range 0-59",
            (0, 2),
        ),
        (
            "0 60 * * * *",
            "minute field: 60 is out of range 0-59",
            (2, 4),
        ),
        (
            "0 0 24 * * *",
            "hour field: 24 is out of range 0-23",
            (4, 6),
        ),
        (
            "0 0 0 0 * *",
            "day-of-month field: 0 is out of range 1-31",
            (6, 7),
        ),
        (
            "0 0 0 * 13 *",
            "month field: 13 is out of range 1-12",
            (8, 10),
        ),
        (
            "0 0 0 * * 8",
            "day-of-week field: 8 is out of range 0-7",
            (10, 11),
        ),
        ("0 0 0 * FOO *", "month field: \"FOO\" is neither", (8, 11)),
        (
            "0 0 0 * * MONDAY",
            "day-of-week field: \"MONDAY\"",
            (10, 16),
        ),
        ("0 5-3 * * * *", "runs backwards", (2, 5)),
        ("0 */0 * * * *", "step must not be 0", (4, 5)),
        ("0 */x * * * *", "step \"x\"", (4, 5)),
        ("0 1,,2 * * * *", "empty list item", (4, 4)),
        ("0 1- * * * *", "expected a value", (4, 4)),
        (
            "0 JAN * * * *",
            "minute field: \"JAN\" is not a number",
            (2, 5),
        ),
    ] {
        let e = parse_err(input);
        assert!(e.reason().contains(needle), "{input}: {e}");
        assert_eq!(e.span(), Some(span), "{input}: {e}");
        assert_eq!(e.kind(), "poll schedule");
    }
    for input in ["* * * *", "* * * * * * *", "", "   "] {
        let e = parse_err(input);
        assert!(
            e.reason().contains("6 fields") || e.reason().contains("must not be empty"),
            "{input:?}: {e}"
        );
    }
}

#[test]
fn steps_near_the_top_of_u32_do_not_wrap() {
    // `5/4294967295`: 5, then nothing; adding the step must not wrap to 4, 3, ...
    let s: Schedule = "5/4294967295 * * * * *".parse().unwrap();
    assert_eq!(cron(&s).seconds, 1 << 5);
    let s: Schedule = "0 59/4294967295 23-23/4294967294 * * *".parse().unwrap();
    assert_eq!(cron(&s).minutes, 1 << 59);
    assert_eq!(cron(&s).hours, 1 << 23);
    assert_eq!(
        s.next_after(at(2024, 1, 1, 0, 0, 0)),
        at(2024, 1, 1, 23, 59, 0)
    );
    // The longest `@every` saturates instead of overflowing the time.
    let s: Schedule = "@every 5124095576030431h".parse().unwrap();
    assert_eq!(
        s.next_after(at(2024, 1, 1, 0, 0, 0)),
        DateTime::<Utc>::MAX_UTC
    );
    let s: Schedule = "*/4294967295 * * * * *".parse().unwrap();
    assert_eq!(cron(&s).seconds, 1);
    // A step past u32 is refused, naming it.
    let e = parse_err("*/4294967296 * * * * *");
    assert!(e.reason().contains("step \"4294967296\""), "{e}");
}

#[test]
fn far_future_saturates() {
    for schedule in ["@every 1h", "@yearly"] {
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(next(schedule, max), max, "{schedule}");
    }
}

/// The oracle: walks day by day, then every hour, minute and second of a matching day,
/// in order — slow, but obviously right.
fn brute_next(c: &Cron, t: DateTime<Utc>, max_days: i64) -> Option<DateTime<Utc>> {
    let mut date = t.date_naive();
    for _ in 0..max_days {
        if has(c.months, date.month()) && c.day_matches(date) {
            for h in (0..24).filter(|h| has(c.hours, *h)) {
                for mi in (0..60).filter(|m| has(c.minutes, *m)) {
                    for s in (0..60).filter(|s| has(c.seconds, *s)) {
                        let dt = date.and_hms_opt(h, mi, s)?.and_utc();
                        if dt > t {
                            return Some(dt);
                        }
                    }
                }
            }
        }
        date = date.succ_opt()?;
    }
    None
}

fn matches(c: &Cron, dt: DateTime<Utc>) -> bool {
    has(c.seconds, dt.second())
        && has(c.minutes, dt.minute())
        && has(c.hours, dt.hour())
        && has(c.months, dt.month())
        && c.day_matches(dt.date_naive())
        && dt.nanosecond() == 0
}

fn field_strategy(min: u32, max: u32) -> impl Strategy<Value = String> {
    let single = (min..=max).prop_map(|v| v.to_string());
    let range = (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b)));
    let step = (1u32..=(max - min + 1)).prop_map(|n| format!("*/{n}"));
    let from_step = (min..=max, 1u32..10).prop_map(|(a, n)| format!("{a}/{n}"));
    let item = prop_oneof![single, range, step, from_step];
    prop_oneof![
        2 => Just("*".to_owned()),
        1 => Just("?".to_owned()),
        6 => prop::collection::vec(item, 1..4).prop_map(|v| v.join(",")),
    ]
}

fn cron_strategy() -> impl Strategy<Value = String> {
    (
        field_strategy(0, 59),
        field_strategy(0, 59),
        field_strategy(0, 23),
        field_strategy(1, 31),
        field_strategy(1, 12),
        field_strategy(0, 7),
    )
        .prop_map(|(s, m, h, dom, mon, dow)| format!("{s} {m} {h} {dom} {mon} {dow}"))
}

fn time_strategy() -> impl Strategy<Value = DateTime<Utc>> {
    // 1990..2100, with sub-second parts.
    (631_152_000i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn cron_next_is_later_matches_and_agrees_with_the_oracle(
        expr in cron_strategy(),
        t in time_strategy(),
    ) {
        // Generated day fields may be impossible (30 in February only): those must be
        // refused, and everything else must fire.
        let Ok(schedule) = expr.parse::<Schedule>() else {
            let c = parse_cron_unchecked(&expr);
            prop_assert!(c.weekdays_any && !c.days_any);
            return Ok(());
        };
        let c = cron(&schedule);
        let n = schedule.next_after(t);
        prop_assert!(n > t);
        prop_assert!(matches(c, n), "{} does not match {}", n, expr);
        // Compare with the oracle where it finishes quickly enough.
        if let Some(oracle) = brute_next(c, t, 400) {
            prop_assert_eq!(n, oracle);
        } else {
            prop_assert!(n - t > TimeDelta::days(398));
        }
    }

    #[test]
    fn next_after_is_monotonic_and_stable_between_firings(
        expr in cron_strategy(),
        t in time_strategy(),
        frac in 0.0f64..1.0,
    ) {
        let Ok(schedule) = expr.parse::<Schedule>() else { return Ok(()) };
        let n = schedule.next_after(t);
        let n2 = schedule.next_after(n);
        prop_assert!(n2 > n);
        // Any time in [t, n) has the same next firing.
        let span = (n - t).num_milliseconds() as f64;
        let mid = t + TimeDelta::milliseconds((span * frac) as i64);
        if mid < n {
            prop_assert_eq!(schedule.next_after(mid), n);
            prop_assert!(schedule.next_after(mid) >= schedule.next_after(t));
        }
    }

    #[test]
    fn cron_round_trips_through_display(expr in cron_strategy()) {
        if let Ok(schedule) = expr.parse::<Schedule>() {
            let shown = schedule.to_string();
            prop_assert_eq!(&shown, &expr);
            prop_assert_eq!(shown.parse::<Schedule>().unwrap(), schedule);
        }
    }

    #[test]
    fn every_round_trips_and_adds_the_interval(
        secs in 1u64..10_000_000,
        t in time_strategy(),
    ) {
        let s = Schedule::every(Duration::from_secs(secs)).unwrap();
        let back: Schedule = s.to_string().parse().unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(back.interval(), Some(Duration::from_secs(secs)));
        let n = s.next_after(t);
        prop_assert!(n > t);
        prop_assert_eq!(n.timestamp() - t.timestamp(), secs as i64);
    }

    #[test]
    fn parse_never_panics(input in "\\PC{0,40}") {
        let _ = input.parse::<Schedule>();
    }

    #[test]
    fn parse_never_panics_on_cron_like_input(input in "[0-9*?/,A-Za-z@ -]{0,40}") {
        let span = match input.parse::<Schedule>() {
            Err(Error::InvalidInput(e)) => e.span(),
            _ => None,
        };
        if let Some((start, end)) = span {
            prop_assert!(start <= end && end <= input.len());
        }
    }
}

/// The field masks of an expression, without the check for days that never occur.
fn parse_cron_unchecked(expr: &str) -> Cron {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let specs = [&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK];
    let m: Vec<(u64, bool)> = fields
        .iter()
        .zip(specs)
        .map(|(f, spec)| parse_field(expr, spec, f, 0).unwrap())
        .collect();
    let mut weekdays = m[5].0;
    if weekdays & (1 << 7) != 0 {
        weekdays = (weekdays & !(1 << 7)) | 1;
    }
    Cron::new(
        [m[0].0, m[1].0, m[2].0, m[3].0, m[4].0, weekdays],
        m[3].1,
        m[5].1,
    )
    .unwrap()
}
