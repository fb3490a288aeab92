//! Runs pipeline passes: for pushes the webhooks queued, and for poll-triggered images when
//! they are due.
//!
//! [`Worker::run`] runs every pass under a [`PassSupervisor`]: a pass that panics or runs
//! longer than the pass timeout (default twice the resync interval, at least a minute) is
//! logged, counted in `keel_pass_failures_total`, and followed by the next pass. The
//! supervisor's time of the last completed pass is what `/healthz` reads
//! ([`Worker::health_window`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_api::dashboard::Checks;
use keel_core::pipeline::RunReport;
use keel_core::supervise::PassSupervisor;
use keel_core::trigger::{ImageKey, PollPass, PollScheduler, Poller, PushEvent, covering_pass};
use keel_core::{Pipeline, UpdatePlan};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::metrics::Metrics;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the pipeline when webhooks report pushes and when polled images are due.
///
/// - A webhook pass covers every tracked image of the pushed repositories, whatever its
///   trigger (as in Keel, polling adds to webhooks, it does not replace them). Pushes that
///   queue up while a pass runs are covered together by the next one.
/// - A poll pass covers every poll-triggered image that is due, each repository listed once
///   (keel-core's [`Poller`]). When the target reports a change ([`Worker::with_changes`]:
///   a workload applied, changed or deleted), a pass runs at once, so a new workload is
///   checked when its watch event arrives; it lists nothing unless a new image turned up.
///   When nothing is due for `resync` (default one minute), a pass runs anyway.
pub struct Worker {
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    poller: Poller,
    changes: Option<tokio::sync::watch::Receiver<()>>,
    awaiting: Mutex<HashMap<ImageKey, UpdatePlan>>,
    resync: Duration,
    leader: Option<tokio::sync::watch::Receiver<bool>>,
    on_applied: Option<OnApplied>,
    supervisor: Arc<PassSupervisor>,
    pass_timeout: Option<Duration>,
    checks: Option<Arc<Checks>>,
}

/// `/healthz` fails when no pass completed within this many resync intervals (or within the
/// pass timeout plus one resync interval, when that is longer): see [`Worker::health_window`].
pub const HEALTH_RESYNC_MULTIPLE: u32 = 3;

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pipeline", &self.pipeline)
            .field("resync", &self.resync)
            .field("leader", &self.leader.as_ref().map(|l| *l.borrow()))
            .field("on_applied", &self.on_applied.is_some())
            .field("pass_timeout", &self.pass_timeout())
            .finish_non_exhaustive()
    }
}

/// Called with the plans each pass applied, e.g. to follow their rollouts.
pub type OnApplied = Arc<dyn Fn(Vec<UpdatePlan>) + Send + Sync>;

impl Worker {
    /// A worker running `pipeline`'s passes and counting them in `metrics`.
    pub fn new(pipeline: Pipeline, metrics: Arc<Metrics>) -> Self {
        Worker {
            pipeline,
            metrics,
            poller: Poller::new(PollScheduler::new()),
            changes: None,
            awaiting: Mutex::new(HashMap::new()),
            resync: Duration::from_secs(60),
            leader: None,
            on_applied: None,
            supervisor: Arc::new(PassSupervisor::new()),
            pass_timeout: None,
            checks: None,
        }
    }

    /// Records what each pass found for the images it covered in `checks` (the dashboard's
    /// last check, update and error of each image).
    pub fn with_checks(mut self, checks: Arc<Checks>) -> Self {
        self.checks = Some(checks);
        self
    }

    /// Cuts off a pass that runs longer than `timeout` (default: twice the resync interval,
    /// at least a minute; given here, at least a second). The pass is dropped where it waits,
    /// counted as a failure, and the next one runs as usual.
    pub fn with_pass_timeout(mut self, timeout: Duration) -> Self {
        self.pass_timeout = Some(timeout.max(Duration::from_secs(1)));
        self
    }

    /// How long a pass may run before it is cut off.
    pub fn pass_timeout(&self) -> Duration {
        self.pass_timeout.unwrap_or_else(|| {
            // A short resync (tests, small clusters) must not cut off a pass that is merely
            // slow on a busy machine.
            self.resync.saturating_mul(2).max(Duration::from_secs(60))
        })
    }

    /// Within what time some pass must complete for the worker to count as healthy:
    /// [`HEALTH_RESYNC_MULTIPLE`] × the resync interval, or the pass timeout plus one resync
    /// interval when that is longer (so that one slow but legitimate pass is not a failure).
    /// A standby replica completes its (empty) passes too, so it stays healthy.
    pub fn health_window(&self) -> Duration {
        self.resync
            .saturating_mul(HEALTH_RESYNC_MULTIPLE)
            .max(self.pass_timeout().saturating_add(self.resync))
    }

    /// The supervisor of the passes [`run`](Self::run) runs: when one last completed, how
    /// many failed.
    pub fn supervisor(&self) -> &Arc<PassSupervisor> {
        &self.supervisor
    }

    /// Calls `hook` with the plans each pass applied (not with those already current).
    pub fn with_on_applied(mut self, hook: OnApplied) -> Self {
        self.on_applied = Some(hook);
        self
    }

    /// Runs passes only while `leader` reads `true` (leader election: a standby replica
    /// neither polls nor applies; webhooks it receives are dropped with a warning, since the
    /// standby is not ready and a Service routes them to the leader).
    pub fn with_leadership(mut self, leader: tokio::sync::watch::Receiver<bool>) -> Self {
        self.leader = Some(leader);
        self
    }

    /// Whether this replica may run passes now.
    pub fn is_leader(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| *l.borrow())
    }

    /// How long at most between discoveries of new images (default one minute, at least a
    /// second).
    pub fn with_resync(mut self, resync: Duration) -> Self {
        self.resync = resync.max(Duration::from_secs(1));
        self
    }

    /// Polls images without a `keel.sh/pollSchedule` of their own on `scheduler`'s default
    /// schedule (Keel's `POLL_DEFAULTSCHEDULE`; otherwise `@every 1m`).
    pub fn with_scheduler(mut self, scheduler: PollScheduler) -> Self {
        self.poller = Poller::new(scheduler);
        self
    }

    /// Runs a poll pass whenever `changes` is marked changed (the target saw a workload
    /// applied, changed or deleted), instead of waiting for the next resync: images seen for
    /// the first time are checked in that pass.
    pub fn with_changes(mut self, changes: tokio::sync::watch::Receiver<()>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Updates waiting for approval as of the last pass that covered their image. With an
    /// approvals manager in the pipeline, ask it instead ([`keel_core::approval::Approvals::pending`]).
    pub fn awaiting_approvals(&self) -> usize {
        lock(&self.awaiting).len()
    }

    /// When the next poll pass is due: the earliest firing, or the resync interval after
    /// `last` (`None`: now).
    pub fn next_poll(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
        self.poller.next_pass(last, self.resync, now)
    }

    /// One pass over the images of the repositories `pushes` name.
    pub async fn webhook_pass(&self, pushes: &[PushEvent]) -> RunReport {
        let repositories: BTreeSet<String> = pushes.iter().map(|p| p.image.name()).collect();
        if !self.is_leader() {
            warn!(repositories = ?repositories, "not the leader: webhook pushes dropped");
            return RunReport::default();
        }
        info!(repositories = ?repositories, "webhook pass");
        let PollPass { report, covered } = covering_pass(&self.pipeline, |image| {
            repositories.contains(&image.image.name())
        })
        .await;
        self.record("webhook", &report, covered);
        report
    }

    /// One poll pass at `now`: every poll-triggered image that is due, and any seen for the
    /// first time.
    pub async fn poll_pass(&self, now: DateTime<Utc>) -> RunReport {
        if !self.is_leader() {
            debug!("not the leader: no poll pass");
            return RunReport::default();
        }
        let keel_core::trigger::PollPass { report, covered } =
            self.poller.pass(&self.pipeline, now).await;
        if !covered.is_empty() || !report.failures.is_empty() {
            self.record("poll", &report, covered);
        }
        report
    }

    /// Counts a pass and remembers which updates wait for approval.
    fn record(&self, trigger: &str, report: &RunReport, covered: HashSet<ImageKey>) {
        if let Some(hook) = &self.on_applied
            && !report.applied.is_empty()
        {
            hook(report.applied.clone());
        }
        let planned: HashSet<(&str, &str)> = report
            .planned
            .iter()
            .map(|p| (p.plan.target.as_str(), p.plan.id.as_str()))
            .collect();
        let failed = report
            .failures
            .iter()
            .filter(|f| {
                f.id.as_deref()
                    .is_some_and(|id| planned.contains(&(f.target.as_str(), id)))
            })
            .count();
        self.metrics.pass(
            trigger,
            report.applied.len(),
            failed,
            Utc::now().timestamp(),
        );
        if let Some(checks) = &self.checks {
            checks.record(report, &covered, Utc::now());
        }
        let mut awaiting = lock(&self.awaiting);
        awaiting.retain(|key, _| !covered.contains(key));
        for plan in &report.awaiting_approval {
            let key = ImageKey {
                id: plan.id.clone(),
                repository: plan.current.name(),
            };
            awaiting.insert(key, plan.clone());
        }
        for listing in &report.truncated {
            self.metrics.truncated_listing(&listing.repository);
        }
        report.log(trigger);
    }

    /// Runs `pass` under the supervisor; a panic or an overrun is logged and counted, and
    /// `None` returned.
    async fn supervised<T>(&self, trigger: &str, pass: impl Future<Output = T>) -> Option<T> {
        let deadline = tokio::time::sleep(self.pass_timeout());
        match self.supervisor.run(pass, deadline).await {
            Ok(value) => Some(value),
            Err(failure) => {
                error!(
                    trigger,
                    reason = failure.kind(),
                    timeout_seconds = self.pass_timeout().as_secs(),
                    "{failure}; the next pass runs as usual"
                );
                self.metrics.pass_failure(trigger, failure.kind());
                None
            }
        }
    }

    /// Runs passes until `shutdown` completes: a webhook pass for each batch of pushes from
    /// `pushes`, a poll pass whenever images are due. A pass that has started is finished
    /// before shutting down. Each pass is supervised: one that panics or overruns the pass
    /// timeout is counted and logged, and the loop goes on (the pushes of a failed webhook
    /// pass are not retried; polled images among them are checked again on their schedule).
    pub async fn run(
        self: Arc<Self>,
        mut pushes: mpsc::Receiver<PushEvent>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut last_poll = None;
        let mut pushes_open = true;
        let mut leader = self.leader.clone();
        let mut changes = self.changes.clone();
        loop {
            let now = Utc::now();
            let wake = self.next_poll(last_poll, now);
            let sleep = (wake - now).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                push = pushes.recv(), if pushes_open => match push {
                    Some(push) => {
                        let mut batch = vec![push];
                        while let Ok(more) = pushes.try_recv() {
                            batch.push(more);
                        }
                        self.supervised("webhook", self.webhook_pass(&batch)).await;
                    }
                    None => pushes_open = false,
                },
                () = tokio::time::sleep(sleep) => {
                    let now = Utc::now();
                    self.supervised("poll", self.poll_pass(now)).await;
                    last_poll = Some(now);
                }
                changed = async {
                    match changes.as_mut() {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if changed {
                        // A workload was applied, changed or deleted: a pass at once (it
                        // checks only what is new or due).
                        debug!("target changed: running a pass now");
                        last_poll = None;
                    } else {
                        changes = None;
                    }
                }
                changed = async {
                    match leader.as_mut() {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if !changed {
                        // The election ended (shutdown): no more changes to wait for.
                        leader = None;
                    } else if self.is_leader() {
                        // Newly leading: a pass at once, not at the next resync.
                        info!("leading: running a pass now");
                        last_poll = None;
                    }
                }
            }
        }
        info!("worker stopped");
    }
}
