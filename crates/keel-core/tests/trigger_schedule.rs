//! Keel's `keel.sh/pollSchedule` values through the public API.

use chrono::{DateTime, TimeZone, Utc};
use keel_core::Error;
use keel_core::trigger::{DEFAULT_POLL_SCHEDULE, Schedule};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn values_from_keels_documentation() {
    let t = at(2024, 3, 10, 10, 7, 12);
    for (value, expected) in [
        ("@every 1m", at(2024, 3, 10, 10, 8, 12)),
        ("@every 10m", at(2024, 3, 10, 10, 17, 12)),
        ("@every 1h30m", at(2024, 3, 10, 11, 37, 12)),
        ("@hourly", at(2024, 3, 10, 11, 0, 0)),
        ("@daily", at(2024, 3, 11, 0, 0, 0)),
        ("0 */10 * * * *", at(2024, 3, 10, 10, 10, 0)),
        ("30 * * * * *", at(2024, 3, 10, 10, 7, 30)),
        ("0 0 1 * * SUN", at(2024, 3, 17, 1, 0, 0)),
        ("0 15 10 ? * MON-FRI", at(2024, 3, 11, 10, 15, 0)),
        ("0 0 0 1 JAN-MAR/2 ?", at(2025, 1, 1, 0, 0, 0)),
    ] {
        let schedule: Schedule = value.parse().unwrap();
        assert_eq!(schedule.next_after(t), expected, "{value}");
        let again: Schedule = schedule.to_string().parse().unwrap();
        assert_eq!(again, schedule, "{value}");
    }
    assert_eq!(Schedule::default().to_string(), DEFAULT_POLL_SCHEDULE);
}

#[test]
fn firings_follow_one_another() {
    let schedule: Schedule = "0 0 12 * * MON,WED,FRI".parse().unwrap();
    let mut t = at(2024, 1, 1, 0, 0, 0);
    let mut seen = Vec::new();
    for _ in 0..6 {
        t = schedule.next_after(t);
        seen.push(t.format("%a %d %H:%M").to_string());
    }
    assert_eq!(
        seen,
        [
            "Mon 01 12:00",
            "Wed 03 12:00",
            "Fri 05 12:00",
            "Mon 08 12:00",
            "Wed 10 12:00",
            "Fri 12 12:00"
        ]
    );
}

#[test]
fn errors_are_invalid_input_naming_the_field() {
    let Err(Error::InvalidInput(e)) = "0 0 25 * * *".parse::<Schedule>() else {
        panic!("an hour of 25 must be refused");
    };
    assert_eq!(e.kind(), "poll schedule");
    assert_eq!(e.reason(), "hour field: 25 is out of range 0-23");
    assert_eq!(e.span(), Some((4, 6)));
    assert_eq!(
        e.to_string(),
        r#"invalid poll schedule "0 0 25 * * *": hour field: 25 is out of range 0-23 (at byte 4: "25")"#
    );
}
