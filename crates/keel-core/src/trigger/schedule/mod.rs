//! Poll schedules: Keel's `keel.sh/pollSchedule` values and when they fire next.
//!
//! The `@every <duration>` and descriptor forms are read here; cron expressions are checked
//! field by field here too (so that an error names the field and points at it, and a day
//! that never occurs is refused), and the `croner` crate finds their next firing.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, ParseError};

const KIND: &str = "poll schedule";

/// The schedule Keel polls on when `keel.sh/pollSchedule` is not set.
pub const DEFAULT_POLL_SCHEDULE: &str = "@every 1m";

/// When to poll a registry: a cron expression, a descriptor such as `@hourly`, or a fixed
/// interval (`@every 5m`), as Keel's `keel.sh/pollSchedule` annotation takes them.
///
/// # Syntax
/// - Cron with seconds, six fields `sec min hour day-of-month month day-of-week`, or the
///   standard five fields without seconds (the second is then `0`). Each field is `*` (or `?`),
///   a value, a range `a-b`, a step `*/n`, `a/n` or `a-b/n`, or a comma-separated list of those.
///   Months take `JAN`..`DEC` and days of the week `SUN`..`SAT` (any case); Sunday is `0` or
///   `7`. When both day fields are restricted, a day matches if either matches (as in cron);
///   when one is `*` or `?`, only the other counts.
/// - Descriptors: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
///   `@hourly`.
/// - `@every <duration>` with a Go duration (`90s`, `5m30s`, `1h`, `1.5h`): a whole number of
///   seconds, at least one.
///
/// # Time zone
/// Every schedule is evaluated in **UTC**: `0 0 9 * * MON-FRI` fires at 09:00 UTC. (Keel
/// evaluates in the process's local time zone, which in a container is almost always UTC.)
///
/// [`Display`](fmt::Display) prints a form that parses back to an equal schedule: the cron
/// fields as written with single spaces, descriptors in lower case, `@every` with a canonical
/// duration (`@every 90s` prints as `@every 1m30s`).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use keel_core::trigger::Schedule;
///
/// let weekdays: Schedule = "0 30 9 * * MON-FRI".parse().unwrap();
/// let saturday = Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap();
/// assert_eq!(
///     weekdays.next_after(saturday),
///     Utc.with_ymd_and_hms(2024, 6, 3, 9, 30, 0).unwrap()
/// );
///
/// let every: Schedule = "@every 90s".parse().unwrap();
/// assert_eq!(every.to_string(), "@every 1m30s");
/// assert_eq!(Schedule::default().to_string(), "@every 1m");
///
/// let err = "0 0 0 30 2 *".parse::<Schedule>().unwrap_err();
/// assert!(err.to_string().contains("never"), "{err}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Schedule {
    text: String,
    rule: Rule,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Rule {
    /// A fixed interval in whole seconds, at least 1.
    Every(u64),
    Cron(Box<Cron>),
}

/// The set of matching values of each field, as bit masks (bit `n` set: value `n` matches),
/// and the `croner` schedule that finds the next firing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cron {
    /// The fields as explicit lists, in croner's six-field syntax (a field is `*` exactly
    /// where the expression said `*` or `?`, which matters to the day fields).
    engine: croner::Cron,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month was `*` or `?`: only the day of the week counts.
    days_any: bool,
    /// Day-of-week was `*` or `?`: only the day of the month counts.
    weekdays_any: bool,
}

impl Default for Schedule {
    /// Keel's default poll schedule, `@every 1m`.
    fn default() -> Self {
        Schedule::every(Duration::from_secs(60)).expect("one minute is a valid interval")
    }
}

impl Schedule {
    /// Parses a schedule; see the [type docs](Schedule) for the syntax.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field (`minute field`, `@every duration`...), what is
    /// wrong with it (out of range, unknown name, backwards range, zero step, a day that never
    /// occurs...) and the byte span of the bad part.
    pub fn parse(input: &str) -> Result<Schedule, Error> {
        parse(input).map_err(Error::from)
    }

    /// A schedule firing every `interval`, which must be a whole number of seconds, at least one.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a shorter or fractional interval.
    pub fn every(interval: Duration) -> Result<Schedule, Error> {
        let text = format!("@every {}", format_duration(interval.as_secs()));
        if interval.subsec_nanos() != 0 || interval.as_secs() == 0 {
            let reason = format!(
                "@every duration must be a whole number of seconds, at least 1s, got {}",
                format_go_nanos(interval.as_nanos())
            );
            return Err(ParseError::new(KIND, text, reason).into());
        }
        Ok(Schedule {
            text,
            rule: Rule::Every(interval.as_secs()),
        })
    }

    /// The fixed interval of an `@every` schedule; `None` for cron schedules and descriptors.
    pub fn interval(&self) -> Option<Duration> {
        match self.rule {
            Rule::Every(secs) => Some(Duration::from_secs(secs)),
            Rule::Cron(_) => None,
        }
    }

    /// The first time strictly after `t` at which the schedule fires, in UTC, to the second.
    ///
    /// For `@every d` that is `t` truncated to the second plus `d` (as Keel does); for cron
    /// schedules, the first whole second after `t` that matches every field. The answer never
    /// precedes `t`'s successor and grows with `t`. Schedules that can never fire are refused
    /// when parsed, so this always finds a time; only beyond the years a search covers (the
    /// end of [`DateTime`]'s range for `@every`, the year 5000 for cron) does it saturate at
    /// [`DateTime::<Utc>::MAX_UTC`].
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let next = match &self.rule {
            Rule::Every(secs) => i64::try_from(*secs)
                .ok()
                .and_then(|secs| t.timestamp().checked_add(secs))
                .and_then(|s| DateTime::from_timestamp(s, 0)),
            Rule::Cron(cron) => cron.next_after(t),
        };
        next.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl FromStr for Schedule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Schedule, Error> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Schedule {
    /// As its [`Display`](fmt::Display) form, e.g. `"@every 1m30s"`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An interval as command-line flags such as `--resync` and `--interval` take it: a Go
/// duration (`30s`, `5m`, `1h30m`) of whole seconds, at least one, the same as the duration
/// of `@every`.
///
/// # Errors
/// [`Error::InvalidInput`] (kind `interval`) saying what is wrong.
///
/// ```
/// use std::time::Duration;
/// use keel_core::trigger::parse_interval;
///
/// assert_eq!(parse_interval("1m30s").unwrap(), Duration::from_secs(90));
/// assert!(parse_interval("30").is_err()); // a Go duration needs its unit
/// assert!(parse_interval("500ms").is_err());
/// ```
pub fn parse_interval(text: &str) -> Result<Duration, Error> {
    let err = |reason: String| Error::from(ParseError::new("interval", text, reason));
    let nanos = parse_go_duration(text.trim())
        .map_err(|reason| err(format!("not a duration like 30s, 5m or 1h: {reason}")))?;
    if nanos < 1_000_000_000 || nanos % 1_000_000_000 != 0 {
        return Err(err(
            "must be a whole number of seconds, at least 1s".to_owned()
        ));
    }
    u64::try_from(nanos / 1_000_000_000)
        .map(Duration::from_secs)
        .map_err(|_| err("is too long".to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

fn parse(input: &str) -> Result<Schedule, ParseError> {
    let trimmed = input.trim();
    let lead = input.len() - input.trim_start().len();
    if trimmed.is_empty() {
        return Err(ParseError::new(
            KIND,
            input,
            "poll schedule must not be empty; use a cron expression, a descriptor such as \
             @hourly, or @every <duration>",
        ));
    }
    if trimmed.starts_with('@') {
        let (word, rest) = match trimmed.find(char::is_whitespace) {
            Some(i) => (&trimmed[..i], trimmed[i..].trim_start()),
            None => (trimmed, ""),
        };
        let lower = word.to_ascii_lowercase();
        if lower == "@every" {
            let offset = lead + (trimmed.len() - rest.len());
            return parse_every(input, rest, offset);
        }
        let expression = match lower.as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            _ => {
                return Err(ParseError::new(
                    KIND,
                    input,
                    format!(
                        "unknown descriptor {word:?}; expected @yearly, @annually, @monthly, \
                         @weekly, @daily, @midnight, @hourly or @every <duration>"
                    ),
                )
                .at(lead, lead + word.len()));
            }
        };
        if !rest.is_empty() {
            let at = lead + (trimmed.len() - rest.len());
            return Err(ParseError::new(
                KIND,
                input,
                format!("descriptor {lower} takes no arguments"),
            )
            .at(at, lead + trimmed.len()));
        }
        let cron = parse_cron(expression, expression)?;
        return Ok(Schedule {
            text: lower,
            rule: Rule::Cron(Box::new(cron)),
        });
    }
    let cron = parse_cron(input, input)?;
    let text = input.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Schedule {
        text,
        rule: Rule::Cron(Box::new(cron)),
    })
}

fn parse_every(input: &str, duration: &str, offset: usize) -> Result<Schedule, ParseError> {
    let span = (offset, offset + duration.len());
    let err = |reason: String| ParseError::new(KIND, input, reason).at(span.0, span.1);
    if duration.is_empty() {
        return Err(err(
            "@every needs a duration such as 30s, 5m or 1h30m".to_owned()
        ));
    }
    let nanos = parse_go_duration(duration).map_err(|reason| {
        err(format!(
            "@every duration {duration:?} is not a Go duration: {reason}"
        ))
    })?;
    if nanos < 1_000_000_000 {
        return Err(err(format!(
            "@every duration must be at least 1s, got {duration}"
        )));
    }
    if nanos % 1_000_000_000 != 0 {
        return Err(err(format!(
            "@every duration must be a whole number of seconds (schedules have one-second \
             resolution), got {duration}"
        )));
    }
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| err(format!("@every duration {duration} is too long")))?;
    Ok(Schedule {
        text: format!("@every {}", format_duration(secs)),
        rule: Rule::Every(secs),
    })
}

/// Parses Go's `time.ParseDuration` syntax into nanoseconds; negative durations are refused.
fn parse_go_duration(s: &str) -> Result<u128, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("it must not be negative".to_owned());
    }
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err("it is empty".to_owned());
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(format!("expected a number before {rest:?}"));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "missing unit after {number:?} (use ns, us, ms, s, m or h)"
                ));
            }
            _ => return Err(format!("unknown unit {unit:?} (use ns, us, ms, s, m or h)")),
        };
        let too_long = || "it is too long".to_owned();
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_long())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(too_long)?;
        // The fraction, digit by digit, exact to the nanosecond like Go.
        let mut place = scale;
        for digit in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            value += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(value).ok_or_else(too_long)?;
        if total > u128::from(u64::MAX) * 1_000_000_000 {
            return Err(too_long());
        }
    }
    Ok(total)
}

/// `5400` → `1h30m`, `90` → `1m30s`, `0` → `0s`: a Go duration that parses back the same.
fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn format_go_nanos(nanos: u128) -> String {
    let (secs, sub_second) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    let (millis, sub_milli) = (nanos / 1_000_000, nanos % 1_000_000);
    if sub_second == 0 {
        format_duration(u64::try_from(secs).unwrap_or(u64::MAX))
    } else if sub_milli == 0 {
        format!("{millis}ms")
    } else {
        format!("{nanos}ns")
    }
}

/// One cron field's rules.
struct Field {
    name: &'static str,
    min: u32,
    /// The end of `*` and of `a/n`.
    max: u32,
    /// The largest value accepted when written out (7 for Sunday in day-of-week).
    max_value: u32,
    /// Names of the values from `min` on (`JAN` is 1, `SUN` is 0).
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    max_value: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    max_value: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    max_value: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    max_value: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    max_value: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 6,
    max_value: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Parses the cron expression `expr`; errors name `input` (which differs for descriptors).
fn parse_cron(input: &str, expr: &str) -> Result<Cron, ParseError> {
    let mut fields: Vec<(usize, &str)> = Vec::with_capacity(6);
    let mut start = None;
    for (i, c) in expr.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                fields.push((s, &expr[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        fields.push((s, &expr[s..]));
    }
    let specs: &[&Field] = match fields.len() {
        6 => &[&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        5 => &[&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        n => {
            return Err(ParseError::new(
                KIND,
                input,
                format!(
                    "a cron expression has 6 fields (second minute hour day-of-month month \
                     day-of-week) or 5 (without the second), got {n}"
                ),
            ));
        }
    };
    let mut masks = Vec::with_capacity(6);
    if fields.len() == 5 {
        masks.push((1u64, false));
    }
    for ((offset, text), spec) in fields.iter().zip(specs) {
        masks.push(parse_field(input, spec, text, *offset)?);
    }
    let mut weekdays = masks[5].0;
    if weekdays & (1 << 7) != 0 {
        weekdays = (weekdays & !(1 << 7)) | 1;
    }
    let cron = Cron::new(
        [
            masks[0].0, masks[1].0, masks[2].0, masks[3].0, masks[4].0, weekdays,
        ],
        masks[3].1,
        masks[5].1,
    )
    .map_err(|e| ParseError::new(KIND, input, format!("cron expression: {e}")))?;
    // With the day of the week unrestricted only the day of the month counts, and it may
    // name days no selected month has: refuse those rather than search forever.
    if cron.weekdays_any && !cron.days_any {
        let possible = (1..=12u32)
            .filter(|m| cron.months & (1 << m) != 0)
            .any(|m| cron.days & mask_upto(max_days(m)) != 0);
        if !possible {
            let day_offset = fields[fields.len() - 3].0;
            let day_text = fields[fields.len() - 3].1;
            let months: Vec<&str> = (1..=12u32)
                .filter(|m| cron.months & (1 << m) != 0)
                .map(|m| MONTH_NAMES[m as usize - 1])
                .collect();
            return Err(ParseError::new(
                KIND,
                input,
                format!(
                    "day-of-month field {day_text:?} never occurs in {}, so the schedule \
                     would never fire",
                    months.join(", ")
                ),
            )
            .at(day_offset, day_offset + day_text.len()));
        }
    }
    Ok(cron)
}

/// Bits `1..=n`.
fn mask_upto(n: u32) -> u64 {
    ((1u64 << (n + 1)) - 1) & !1
}

/// The most days month `m` ever has (29 for February).
fn max_days(m: u32) -> u32 {
    match m {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// One field: its value mask, and whether it was `*`/`?` (matters for the day fields).
fn parse_field(
    input: &str,
    spec: &Field,
    text: &str,
    offset: usize,
) -> Result<(u64, bool), ParseError> {
    let mut mask = 0u64;
    let mut any = false;
    let mut item_start = 0;
    for item in text.split(',') {
        let at = offset + item_start;
        item_start += item.len() + 1;
        let err = |reason: String, s: usize, e: usize| {
            ParseError::new(KIND, input, format!("{} field: {reason}", spec.name)).at(s, e)
        };
        if item.is_empty() {
            return Err(err(format!("empty list item in {text:?}"), at, at));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let step_at = at + range.len() + 1;
        let step = match step {
            None => 1,
            Some(s) => match s.parse::<u32>() {
                Ok(0) => return Err(err("step must not be 0".into(), step_at, step_at + s.len())),
                Ok(n) => n,
                Err(_) => {
                    return Err(err(
                        format!("step {s:?} is not a positive whole number"),
                        step_at,
                        step_at + s.len(),
                    ));
                }
            },
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step == 1 {
                any = true;
            }
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = parse_value(spec, a).map_err(|r| err(r, at, at + a.len()))?;
            let b_at = at + a.len() + 1;
            let hi = parse_value(spec, b).map_err(|r| err(r, b_at, b_at + b.len()))?;
            if lo > hi {
                return Err(err(
                    format!("range {range:?} runs backwards ({lo} is after {hi})"),
                    at,
                    at + range.len(),
                ));
            }
            (lo, hi)
        } else {
            let v = parse_value(spec, range).map_err(|r| err(r, at, at + range.len()))?;
            if step > 1 {
                (v, spec.max.max(v))
            } else {
                (v, v)
            }
        };
        // Steps may be as large as a u32 holds: the walk ends when it passes `hi` or the
        // type, never wrapping around to small values again.
        let mut v = Some(lo);
        while let Some(value) = v.filter(|value| *value <= hi) {
            mask |= 1 << value;
            v = value.checked_add(step);
        }
    }
    Ok((mask, any))
}

fn parse_value(spec: &Field, s: &str) -> Result<u32, String> {
    if s.is_empty() {
        return Err("expected a value, found nothing".to_owned());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max_value).contains(&v) => Ok(v),
            _ => Err(format!(
                "{s} is out of range {}-{}",
                spec.min, spec.max_value
            )),
        };
    }
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(spec.min + i as u32);
    }
    Err(if spec.names.is_empty() {
        format!("{s:?} is not a number")
    } else {
        format!(
            "{s:?} is neither a number nor a name ({}-{})",
            spec.names[0],
            spec.names[spec.names.len() - 1]
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Next firing time
// ---------------------------------------------------------------------------------------------

impl Cron {
    /// The validated field masks, handed to `croner` as explicit lists.
    fn new(
        [seconds, minutes, hours, days, months, weekdays]: [u64; 6],
        days_any: bool,
        weekdays_any: bool,
    ) -> Result<Cron, croner::errors::CronError> {
        let list = |mask: u64, any: bool| {
            if any {
                return "*".to_owned();
            }
            (0..64u32)
                .filter(|v| mask & (1 << v) != 0)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let pattern = [
            list(seconds, false),
            list(minutes, false),
            list(hours, false),
            list(days, days_any),
            list(months, false),
            list(weekdays, weekdays_any),
        ]
        .join(" ");
        let engine = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&pattern)?;
        Ok(Cron {
            engine,
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })
    }

    /// The first whole second after `t` that matches every field; `None` past the years
    /// `croner` searches.
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = DateTime::from_timestamp(t.timestamp().checked_add(1)?, 0)?;
        self.engine.find_next_occurrence(&start, true).ok()
    }
}

#[cfg(test)]
mod tests;
