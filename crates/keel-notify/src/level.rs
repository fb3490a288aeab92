//! Notification levels: which events a notifier delivers.

use std::fmt;
use std::str::FromStr;

use keel_core::{Error, EventKind, ParseError};
use serde::{Deserialize, Serialize};

/// How important an event is, from [`Debug`](Level::Debug) to [`Error`](Level::Error).
///
/// Each notifier delivers only events at or above its minimum level (default
/// [`Level::Info`]), like Keel's `NOTIFICATION_LEVEL`. [`Level::of`] maps event kinds to
/// levels:
///
/// | event kind | level |
/// |---|---|
/// | update planned | info |
/// | approval requested | info |
/// | update applied | success |
/// | approved | success |
/// | rejected | warn |
/// | expired | warn |
/// | update failed | error |
///
/// Levels parse from (and print as) `debug`, `info`, `success`, `warn` (or `warning`) and
/// `error`, case-insensitively:
///
/// ```
/// use keel_core::EventKind;
/// use keel_notify::Level;
///
/// let min: Level = "warn".parse()?;
/// assert!(min.allows(EventKind::UpdateFailed));
/// assert!(!min.allows(EventKind::UpdateApplied));
/// # Ok::<(), keel_core::Error>(())
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Diagnostic detail; no built-in event has this level.
    Debug,
    /// Something is about to happen or waits for someone.
    #[default]
    Info,
    /// Something went through.
    Success,
    /// Something did not go through, by someone's decision or a deadline.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Success,
        Level::Warn,
        Level::Error,
    ];

    /// The level of events of `kind` (see the table on [`Level`]); kinds added to
    /// [`EventKind`] later count as [`Level::Info`].
    pub fn of(kind: EventKind) -> Level {
        match kind {
            EventKind::UpdatePlanned | EventKind::ApprovalRequested => Level::Info,
            EventKind::UpdateApplied | EventKind::Approved => Level::Success,
            EventKind::Rejected | EventKind::Expired | EventKind::ListingTruncated => Level::Warn,
            EventKind::UpdateFailed => Level::Error,
            _ => Level::Info,
        }
    }

    /// Whether a notifier with minimum level `self` delivers events of `kind`.
    pub fn allows(self, kind: EventKind) -> bool {
        Level::of(kind) >= self
    }

    /// The level's name: `debug`, `info`, `success`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Success => "success",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// The colour chat messages of this level carry, as `#rrggbb`.
    pub fn color(self) -> &'static str {
        match self {
            Level::Debug => "#9e9e9e",
            Level::Info => "#439fe0",
            Level::Success => "#2eb886",
            Level::Warn => "#daa038",
            Level::Error => "#d40e0d",
        }
    }

    /// [`color`](Level::color) as a number, as Discord wants it.
    pub fn color_rgb(self) -> u32 {
        u32::from_str_radix(&self.color()[1..], 16).unwrap_or(0)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Level, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "success" => Ok(Level::Success),
            "warn" | "warning" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            _ => Err(ParseError::new(
                "notification level",
                s,
                "expected one of debug, info, success, warn, error",
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_print_and_order() {
        for level in Level::ALL {
            assert_eq!(level.to_string().parse::<Level>().unwrap(), level);
        }
        assert_eq!("WARNING".parse::<Level>().unwrap(), Level::Warn);
        let err = "loud".parse::<Level>().unwrap_err().to_string();
        assert!(err.contains("\"loud\""), "{err}");
        assert!(err.contains("debug, info, success, warn, error"), "{err}");
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
    }

    #[test]
    fn minimum_level_filters_kinds() {
        assert!(Level::Info.allows(EventKind::UpdatePlanned));
        assert!(!Level::Success.allows(EventKind::UpdatePlanned));
        assert!(Level::Success.allows(EventKind::Approved));
        assert!(Level::Warn.allows(EventKind::Expired));
        assert!(!Level::Error.allows(EventKind::Rejected));
        assert!(Level::Error.allows(EventKind::UpdateFailed));
        assert_eq!(Level::Success.color_rgb(), 0x2eb886);
    }
}
