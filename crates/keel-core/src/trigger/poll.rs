//! Poll scheduling: which poll-triggered images are due, each on its own schedule, and
//! passes of a [`Pipeline`] over them.
//!
//! [`PollScheduler`] does no I/O and reads no clock: the caller tells it the time. A pass
//! goes:
//!
//! 1. [`PollScheduler::take_due`] at time `now` returns the [`DueSet`] — every image whose
//!    next firing is at or before `now` — and moves their next firings past `now`;
//! 2. the pipeline runs one pass filtered by [`PollScheduler::observe`], which it calls for
//!    every tracked image it discovers: that answers whether the image is in this pass, and
//!    teaches the scheduler about images it has not seen and schedules that changed;
//! 3. [`PollScheduler::finish_pass`] forgets images that were not discovered any more.
//!
//! So one pass covers every due image, and the pipeline lists each repository once however
//! many due images use it. [`Poller`] runs those three steps over a [`Pipeline`], for every
//! application that polls (a cluster controller, a GitOps updater).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::error::{Error, ParseError};
use crate::pipeline::{Pipeline, RunReport};
use crate::target::{TrackedImage, Trigger};
use crate::trigger::Schedule;

/// Keel's environment variable for the schedule of images polled without a
/// `keel.sh/pollSchedule` of their own.
pub const POLL_DEFAULT_SCHEDULE_VAR: &str = "POLL_DEFAULTSCHEDULE";

/// The default poll schedule an application's environment sets, as Keel reads it:
/// [`POLL_DEFAULT_SCHEDULE_VAR`] through `lookup` (`|name| std::env::var(name).ok()`);
/// `Ok(None)` when it is unset or empty.
///
/// # Errors
/// [`Error::InvalidInput`] naming the variable when its value is not a schedule.
///
/// ```
/// use keel_core::trigger::default_poll_schedule;
///
/// let set = default_poll_schedule(|_| Some("@every 5m".to_owned())).unwrap();
/// assert_eq!(set.unwrap().to_string(), "@every 5m");
/// assert_eq!(default_poll_schedule(|_| None).unwrap(), None);
/// let bad = default_poll_schedule(|_| Some("every 5m".to_owned())).unwrap_err();
/// assert!(bad.to_string().contains("POLL_DEFAULTSCHEDULE"), "{bad}");
/// ```
pub fn default_poll_schedule(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Schedule>, Error> {
    let Some(value) = lookup(POLL_DEFAULT_SCHEDULE_VAR).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    value.parse::<Schedule>().map(Some).map_err(|e| {
        let reason = match &e {
            Error::InvalidInput(parse) => parse.reason().to_owned(),
            other => other.to_string(),
        };
        ParseError::new(POLL_DEFAULT_SCHEDULE_VAR, value, reason).into()
    })
}

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
/// An image seen for the first time is checked in that very pass, then on its schedule. An
/// image polled without a schedule of its own ([`Trigger::Poll`] with `None`) polls on the
/// scheduler's default: Keel's `@every 1m`, or what the application configures (Keel's
/// `POLL_DEFAULTSCHEDULE`) with [`with_default_schedule`](Self::with_default_schedule).
///
/// ```
/// use std::sync::Arc;
/// use chrono::{Duration, TimeZone, Utc};
/// use keel_core::target::Trigger;
/// use keel_core::trigger::PollScheduler;
/// use keel_core::{ImageRef, TrackedImage, VersionPolicy};
///
/// let image = TrackedImage::new(
///     "web",
///     ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
///     Arc::new("minor".parse::<VersionPolicy>().unwrap()),
/// )
/// .with_trigger(Trigger::Poll { schedule: Some("@every 5m".parse().unwrap()) });
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
    default_schedule: Schedule,
    unpolled: Option<Schedule>,
}

impl PollScheduler {
    /// A scheduler that knows no images yet, with Keel's default schedule, `@every 1m`.
    pub fn new() -> Self {
        PollScheduler::default()
    }

    /// The same, polling images without a schedule of their own on `schedule`.
    pub fn with_default_schedule(mut self, schedule: Schedule) -> Self {
        self.default_schedule = schedule;
        self
    }

    /// The same, polling images that are not poll-triggered on `schedule` too, for
    /// applications that no webhook reaches (a GitOps updater polls everything it tracks).
    pub fn with_unpolled_schedule(mut self, schedule: Schedule) -> Self {
        self.unpolled = Some(schedule);
        self
    }

    /// The schedule of images polled without one of their own.
    pub fn default_schedule(&self) -> &Schedule {
        &self.default_schedule
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
    /// forgotten if they were polled before, unless the scheduler has a
    /// [schedule for them](Self::with_unpolled_schedule).
    pub fn observe(&mut self, image: &TrackedImage, due: &DueSet) -> bool {
        let key = ImageKey::of(image);
        let schedule = match (&image.trigger, &self.unpolled) {
            (Trigger::Poll { schedule }, _) => schedule.as_ref().unwrap_or(&self.default_schedule),
            (_, Some(unpolled)) => unpolled,
            (_, None) => {
                self.entries.remove(&key);
                return false;
            }
        }
        .clone();
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
}

/// What one [`Poller::pass`] (or [`covering_pass`]) did.
#[derive(Debug, Default)]
pub struct PollPass {
    /// The pipeline's report.
    pub report: RunReport,
    /// The images the pass checked.
    pub covered: HashSet<ImageKey>,
}

/// One pass of `pipeline` over the tracked images `filter` admits (a webhook's
/// repositories, the images that are due), and which images those were.
pub async fn covering_pass(
    pipeline: &Pipeline,
    filter: impl Fn(&TrackedImage) -> bool + Sync,
) -> PollPass {
    let covered = Mutex::new(HashSet::new());
    let admit = |image: &TrackedImage| {
        let hit = filter(image);
        if hit {
            covered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ImageKey::of(image));
        }
        hit
    };
    let report = pipeline.run_filtered(&admit).await;
    PollPass {
        report,
        covered: covered.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

/// Runs poll passes of a [`Pipeline`] on a [`PollScheduler`]: each pass discovers every
/// target, checks the images that are due (and those seen for the first time), listing each
/// repository once, and forgets images that are gone.
///
/// Images that are not poll-triggered are left to webhooks, unless the scheduler has a
/// [schedule for them](PollScheduler::with_unpolled_schedule).
///
/// ```
/// use std::sync::Arc;
/// use chrono::Utc;
/// use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
/// use keel_core::target::Trigger;
/// use keel_core::trigger::{PollScheduler, Poller};
/// use keel_core::{ImageRef, Pipeline, TrackedImage, VersionPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = InMemoryRegistry::new("demo");
/// registry.push_tags("ghcr.io/acme/web", &["1.0.0", "1.1.0"]);
/// let target = InMemoryTarget::new("demo");
/// target.track_with(
///     TrackedImage::new(
///         "web",
///         ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
///         Arc::new("minor".parse::<VersionPolicy>().unwrap()),
///     )
///     .with_trigger(Trigger::Poll { schedule: None }),
/// );
/// let pipeline = Pipeline::new(Arc::new(registry)).with_target(Arc::new(target));
/// let poller = Poller::new(PollScheduler::new());
/// let pass = poller.pass(&pipeline, Utc::now()).await;
/// assert_eq!(pass.covered.len(), 1);
/// assert_eq!(pass.report.applied.len(), 1);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Poller {
    scheduler: Mutex<PollScheduler>,
}

impl Poller {
    /// Runs passes on `scheduler`.
    pub fn new(scheduler: PollScheduler) -> Self {
        Poller {
            scheduler: Mutex::new(scheduler),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PollScheduler> {
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass of `pipeline` at `now`.
    pub async fn pass(&self, pipeline: &Pipeline, now: DateTime<Utc>) -> PollPass {
        let due = self.lock().take_due(now);
        let pass = covering_pass(pipeline, |image| self.lock().observe(image, &due)).await;
        // A target whose discovery failed may still run its images: keep their schedules.
        let complete = !pass.report.failures.iter().any(|f| f.id.is_none());
        self.lock().finish_pass(complete);
        pass
    }

    /// The earliest next firing of any known poll-triggered image.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock().next_due()
    }

    /// When the next pass is due: `now` when there was none yet (`last` is `None`), else the
    /// earliest next firing, and `rescan` after `last` at the latest, so that images deployed
    /// since are found. A `rescan` too long for the calendar saturates at the end of time.
    pub fn next_pass(
        &self,
        last: Option<DateTime<Utc>>,
        rescan: std::time::Duration,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let Some(last) = last else {
            return now;
        };
        let rescan = chrono::Duration::from_std(rescan)
            .ok()
            .and_then(|interval| last.checked_add_signed(interval))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.next_due().map_or(rescan, |due| due.min(rescan))
    }

    /// How many poll-triggered images are known.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::{ImageRef, VersionPolicy};

    fn image(id: &str, image: &str, schedule: Option<&str>) -> TrackedImage {
        let tracked = TrackedImage::new(
            id,
            ImageRef::parse(image).unwrap(),
            Arc::new("all".parse::<VersionPolicy>().unwrap()),
        );
        match schedule {
            Some(s) => tracked.with_trigger(Trigger::Poll {
                schedule: Some(s.parse().unwrap()),
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

    /// A scheduler that has seen image `a`, polled every minute, in a pass at [`t0`].
    fn polling_a_every_minute() -> PollScheduler {
        let mut s = PollScheduler::new();
        pass(
            &mut s,
            &[image("a", "ghcr.io/a/x:1", Some("@every 1m"))],
            t0(),
        );
        s
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
        let mut s = polling_a_every_minute();
        // Ten minutes late (a long pass): fires once, next a minute after that.
        let late = t0() + Duration::minutes(10);
        assert_eq!(pass(&mut s, &images, late), ["a"]);
        assert_eq!(s.next_due(), Some(late + Duration::minutes(1)));
    }

    #[test]
    fn vanished_images_are_forgotten_unless_discovery_failed() {
        let mut s = polling_a_every_minute();
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
        let mut s = polling_a_every_minute();
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
    fn images_without_a_schedule_poll_on_the_default() {
        let unscheduled =
            [image("a", "ghcr.io/a/x:1", None).with_trigger(Trigger::Poll { schedule: None })];
        let mut s = PollScheduler::new();
        assert_eq!(pass(&mut s, &unscheduled, t0()), ["a"]);
        assert_eq!(s.next_due(), Some(t0() + Duration::minutes(1)));

        let mut s = PollScheduler::new().with_default_schedule("@every 10s".parse().unwrap());
        assert_eq!(s.default_schedule().to_string(), "@every 10s");
        assert_eq!(pass(&mut s, &unscheduled, t0()), ["a"]);
        assert_eq!(s.next_due(), Some(t0() + Duration::seconds(10)));
        // A schedule of its own wins over the default.
        let own = [image("a", "ghcr.io/a/x:1", Some("@every 1h"))];
        assert!(pass(&mut s, &own, t0() + Duration::seconds(5)).is_empty());
        assert_eq!(
            s.next_due(),
            Some(t0() + Duration::seconds(5) + Duration::hours(1))
        );
    }

    #[test]
    fn unpolled_images_poll_on_their_own_schedule_when_given() {
        let images = [
            image("hook", "ghcr.io/a/x:1", None),
            image("polled", "ghcr.io/a/y:1", Some("@every 1m")),
        ];
        let mut s = PollScheduler::new().with_unpolled_schedule("@every 5m".parse().unwrap());
        assert_eq!(pass(&mut s, &images, t0()), ["hook", "polled"]);
        assert_eq!(
            pass(&mut s, &images, t0() + Duration::minutes(1)),
            ["polled"]
        );
        assert_eq!(
            pass(&mut s, &images, t0() + Duration::minutes(5)),
            ["hook", "polled"]
        );
    }

    #[tokio::test]
    async fn a_pass_lists_each_repository_once_and_only_what_is_due() {
        use crate::memory::{InMemoryRegistry, InMemoryTarget};

        let registry = Arc::new(InMemoryRegistry::new("registry"));
        registry.push_tags("ghcr.io/a/x", &["1", "2"]);
        registry.push_tags("ghcr.io/a/y", &["1", "2"]);
        let target = Arc::new(InMemoryTarget::new("target"));
        target.track_with(image("x1", "ghcr.io/a/x:1", Some("@every 1m")));
        target.track_with(image("x2", "ghcr.io/a/x:1", Some("@every 1m")));
        target.track_with(image("y", "ghcr.io/a/y:1", Some("@hourly")));
        target.track_with(image("hook", "ghcr.io/a/y:1", None));
        let pipeline = Pipeline::new(registry.clone())
            .with_target(target.clone())
            .with_dry_run(true);
        let poller = Poller::new(PollScheduler::new());
        let first = poller.pass(&pipeline, t0()).await;
        assert_eq!(first.covered.len(), 3);
        assert_eq!(registry.list_calls(), 2);
        assert_eq!(poller.len(), 3);
        let second = poller.pass(&pipeline, t0() + Duration::minutes(1)).await;
        let mut ids: Vec<&str> = second.covered.iter().map(|k| k.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["x1", "x2"]);
        assert_eq!(registry.list_calls(), 3);
        assert_eq!(poller.next_due(), Some(t0() + Duration::minutes(2)));
        let minute = std::time::Duration::from_secs(60);
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(poller.next_pass(None, hour, t0()), t0());
        assert_eq!(
            poller.next_pass(Some(t0()), hour, t0()),
            t0() + Duration::minutes(2)
        );
        assert_eq!(
            poller.next_pass(Some(t0()), minute, t0()),
            t0() + Duration::minutes(1)
        );
        let forever = std::time::Duration::from_secs(u64::MAX);
        assert_eq!(
            Poller::default().next_pass(Some(t0()), forever, t0()),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
