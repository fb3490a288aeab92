//! Triggers: when to look for updates.
//!
//! Keel looks for new tags in two ways, and so does keel-rs:
//!
//! - **Polling** on a [`Schedule`] (Keel's `keel.sh/pollSchedule`: a cron expression with
//!   seconds, a descriptor such as `@hourly`, or `@every 5m`), evaluated in UTC, each image
//!   on its own: [`PollScheduler`] knows which are due, and [`Poller`] runs pipeline passes
//!   over them, listing each repository once per pass;
//! - **Webhooks** from a registry: [`WebhookSource::parse_payload`] reads the payloads of
//!   Keel's endpoints (`native`, `dockerhub`, `quay`, `azure`, `github`, `harbor`, `jfrog`,
//!   `registry`) into [`PushEvent`]s.
//!
//! None of them reads a clock or does I/O of its own: an application runs the timer and the
//! HTTP server, and asks for a pass over the images that are due or were pushed.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use keel_core::trigger::{Schedule, WebhookSource};
//!
//! let schedule: Schedule = "@every 5m".parse().unwrap();
//! let t = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
//! assert_eq!(schedule.next_after(t), Utc.with_ymd_and_hms(2024, 1, 1, 12, 5, 0).unwrap());
//!
//! let body = br#"{"docker_url": "quay.io/acme/web", "updated_tags": ["1.4.2", "latest"]}"#;
//! let pushes = WebhookSource::Quay.parse_payload(body).unwrap();
//! assert_eq!(pushes.len(), 2);
//! assert_eq!(pushes[0].image.to_string(), "quay.io/acme/web:1.4.2");
//! ```

mod poll;
mod schedule;
mod webhook;

pub use self::poll::{
    DueSet, ImageKey, POLL_DEFAULT_SCHEDULE_VAR, PollPass, PollScheduler, Poller, covering_pass,
    default_poll_schedule,
};
pub use self::schedule::{DEFAULT_POLL_SCHEDULE, Schedule, parse_interval};
pub use self::webhook::{PushEvent, WebhookSource};
