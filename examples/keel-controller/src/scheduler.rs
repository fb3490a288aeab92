//! Which poll-triggered images are due, per image and per schedule.
//!
//! The scheduler does no I/O and reads no clock: the worker tells it the time. A pass goes:
//!
//! 1. [`PollScheduler::take_due`] at time `now` returns the [`DueSet`] — every image whose next
//!    firing is at or before `now` — and moves their next firings past `now`;
//! 2. the pipeline runs one pass filtered by [`PollScheduler::observe`], which it calls for
//!    every tracked image it discovers: that answers whether the image is in this pass, and
//!    teaches the scheduler about images it has not seen and schedules that changed;
//! 3. [`PollScheduler::finish_pass`] forgets images that were not discovered any more.
//!
//! So one pass covers every due image, and the pipeline lists each repository once however
//! many due images use it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use keel_core::TrackedImage;
use keel_core::target::Trigger;
use keel_core::trigger::Schedule;
use tracing::warn;

/// Identifies a tracked image across passes: its id and its repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageKey {
    /// The tracked image's id within its target.
    pub id: String,
    /// The repository, `registry/repository`.
    pub repository: String,
}

impl ImageKey {
    /// The key of `image`.
    pub fn of(image: &TrackedImage) -> Self {
        ImageKey {
            id: image.id.clone(),
            repository: image.image.name(),
        }
    }
}

/// The images due in one pass.
#[derive(Clone, Debug)]
pub struct DueSet {
    now: DateTime<Utc>,
    keys: HashSet<ImageKey>,
}

impl DueSet {
    /// The time the set was taken at.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Whether `key` is due.
    pub fn contains(&self, key: &ImageKey) -> bool {
        self.keys.contains(key)
    }

    /// How many images are due (images seen for the first time in the pass come on top).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is due.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug)]
struct Entry {
    schedule: Schedule,
    next: DateTime<Utc>,
    seen: u64,
}

/// Keeps each poll-triggered image's schedule and next firing.
///
/// An image seen for the first time is checked in that very pass, then on its schedule. A
/// `keel.sh/pollSchedule` that does not parse falls back to Keel's default, `@every 1m`, with
/// a warning (once per value).
///
/// ```
/// use std::sync::Arc;
/// use chrono::{Duration, TimeZone, Utc};
/// use keel_controller::scheduler::PollScheduler;
/// use keel_core::target::Trigger;
/// use keel_core::{ImageRef, TrackedImage, VersionPolicy};
///
/// let image = TrackedImage::new(
///     "web",
///     ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
///     Arc::new("minor".parse::<VersionPolicy>().unwrap()),
/// )
/// .with_trigger(Trigger::Poll { schedule: "@every 5m".into() });
///
/// let mut scheduler = PollScheduler::new();
/// let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
/// let due = scheduler.take_due(t0);
/// assert!(scheduler.observe(&image, &due)); // first sight: checked now
/// scheduler.finish_pass(true);
/// assert_eq!(scheduler.next_due(), Some(t0 + Duration::minutes(5)));
///
/// let due = scheduler.take_due(t0 + Duration::minutes(1));
/// assert!(!scheduler.observe(&image, &due)); // not yet
/// let due = scheduler.take_due(t0 + Duration::minutes(5));
/// assert!(scheduler.observe(&image, &due));
/// ```
#[derive(Debug, Default)]
pub struct PollScheduler {
    entries: HashMap<ImageKey, Entry>,
    pass: u64,
    warned: HashSet<String>,
}

impl PollScheduler {
    /// A scheduler that knows no images yet.
    pub fn new() -> Self {
        PollScheduler::default()
    }

    /// Starts a pass at `now`: returns the images due by then, and schedules their next
    /// firings after `now` (a firing missed while a pass ran is not run twice).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> DueSet {
        self.pass += 1;
        let mut keys = HashSet::new();
        for (key, entry) in &mut self.entries {
            if entry.next <= now {
                keys.insert(key.clone());
                entry.next = entry.schedule.next_after(now);
            }
        }
        DueSet { now, keys }
    }

    /// Called for each tracked image a pass discovers; whether to check it in this pass.
    ///
    /// Images not triggered by polling are never checked here (webhooks cover them), and
    /// forgotten if they were polled before.
    pub fn observe(&mut self, image: &TrackedImage, due: &DueSet) -> bool {
        let key = ImageKey::of(image);
        let Trigger::Poll { schedule } = &image.trigger else {
            self.entries.remove(&key);
            return false;
        };
        let schedule = self.schedule(schedule);
        let pass = self.pass;
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.seen = pass;
                if entry.schedule != schedule {
                    // A changed schedule takes effect from now; a due image stays due.
                    entry.next = schedule.next_after(due.now);
                    entry.schedule = schedule;
                }
                due.contains(&key)
            }
            None => {
                let next = schedule.next_after(due.now);
                self.entries.insert(
                    key,
                    Entry {
                        schedule,
                        next,
                        seen: pass,
                    },
                );
                true
            }
        }
    }

    /// Ends a pass. When the pass discovered every target (`complete`), images it did not
    /// see are forgotten; after a failed discovery they are kept, as they may still run.
    pub fn finish_pass(&mut self, complete: bool) {
        if complete {
            let pass = self.pass;
            self.entries.retain(|_, e| e.seen == pass);
        }
    }

    /// The earliest next firing of any known image.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.entries.values().map(|e| e.next).min()
    }

    /// How many poll-triggered images the scheduler knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn schedule(&mut self, text: &str) -> Schedule {
        match text.parse::<Schedule>() {
            Ok(schedule) => schedule,
            Err(error) => {
                if self.warned.insert(text.to_owned()) {
                    warn!(%error, "poll schedule does not parse; polling every minute instead");
                }
                Schedule::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{Duration, TimeZone};
    use keel_core::{ImageRef, VersionPolicy};

    use super::*;

    fn image(id: &str, image: &str, schedule: Option<&str>) -> TrackedImage {
        let tracked = TrackedImage::new(
            id,
            ImageRef::parse(image).unwrap(),
            Arc::new("all".parse::<VersionPolicy>().unwrap()),
        );
        match schedule {
            Some(s) => tracked.with_trigger(Trigger::Poll {
                schedule: s.to_owned(),
            }),
            None => tracked,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap()
    }

    /// One pass over `images` at `now`; the ids checked.
    fn pass(s: &mut PollScheduler, images: &[TrackedImage], now: DateTime<Utc>) -> Vec<String> {
        let due = s.take_due(now);
        let ids = images
            .iter()
            .filter(|i| s.observe(i, &due))
            .map(|i| i.id.clone())
            .collect();
        s.finish_pass(true);
        ids
    }

    #[test]
    fn each_image_fires_on_its_own_schedule() {
        let images = [
            image("fast", "ghcr.io/a/x:1", Some("@every 1m")),
            image("slow", "ghcr.io/a/x:1", Some("@every 5m")),
            image("cron", "ghcr.io/a/y:1", Some("0 */2 * * * *")),
            image("hook", "ghcr.io/a/z:1", None),
        ];
        let mut s = PollScheduler::new();
        assert_eq!(pass(&mut s, &images, t0()), ["fast", "slow", "cron"]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.next_due(), Some(t0() + Duration::minutes(1)));
        assert!(pass(&mut s, &images, t0() + Duration::seconds(59)).is_empty());
        assert_eq!(pass(&mut s, &images, t0() + Duration::minutes(1)), ["fast"]);
        assert_eq!(
            pass(&mut s, &images, t0() + Duration::minutes(2)),
            ["fast", "cron"]
        );
        // The cron image's 12:04 firing passed without a tick: it is due at 12:05 too.
        assert_eq!(
            pass(&mut s, &images, t0() + Duration::minutes(5)),
            ["fast", "slow", "cron"]
        );
        assert_eq!(
            pass(&mut s, &images, t0() + Duration::minutes(6)),
            ["fast", "cron"]
        );
    }

    #[test]
    fn a_late_tick_fires_once_and_reschedules_from_then() {
        let images = [image("a", "ghcr.io/a/x:1", Some("@every 1m"))];
        let mut s = PollScheduler::new();
        pass(&mut s, &images, t0());
        // Ten minutes late (a long pass): fires once, next a minute after that.
        let late = t0() + Duration::minutes(10);
        assert_eq!(pass(&mut s, &images, late), ["a"]);
        assert_eq!(s.next_due(), Some(late + Duration::minutes(1)));
    }

    #[test]
    fn vanished_images_are_forgotten_unless_discovery_failed() {
        let mut s = PollScheduler::new();
        pass(
            &mut s,
            &[image("a", "ghcr.io/a/x:1", Some("@every 1m"))],
            t0(),
        );
        assert_eq!(s.len(), 1);
        let due = s.take_due(t0() + Duration::minutes(1));
        assert_eq!(due.len(), 1);
        s.finish_pass(false);
        assert_eq!(s.len(), 1);
        s.take_due(t0() + Duration::minutes(2));
        s.finish_pass(true);
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn trigger_and_schedule_changes_apply() {
        let mut s = PollScheduler::new();
        pass(
            &mut s,
            &[image("a", "ghcr.io/a/x:1", Some("@every 1m"))],
            t0(),
        );
        // Now hourly: the minute mark no longer fires.
        let hourly = [image("a", "ghcr.io/a/x:1", Some("@hourly"))];
        assert!(pass(&mut s, &hourly, t0() + Duration::seconds(30)).is_empty());
        assert_eq!(s.next_due(), Some(t0() + Duration::hours(1)));
        assert!(pass(&mut s, &hourly, t0() + Duration::minutes(1)).is_empty());
        assert_eq!(pass(&mut s, &hourly, t0() + Duration::hours(1)), ["a"]);
        // Webhook-triggered now: forgotten.
        pass(
            &mut s,
            &[image("a", "ghcr.io/a/x:1", None)],
            t0() + Duration::hours(2),
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_bad_schedule_polls_every_minute() {
        let images = [image("a", "ghcr.io/a/x:1", Some("every five minutes"))];
        let mut s = PollScheduler::new();
        assert_eq!(pass(&mut s, &images, t0()), ["a"]);
        assert_eq!(s.next_due(), Some(t0() + Duration::minutes(1)));
    }
}
