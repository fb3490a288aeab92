//! Passes over the engine's containers, one at a time: on the poll schedules, for a request
//! to `/v1/update`, or once with `--run-once`.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use keel_api::dashboard::Checks;
use keel_core::trigger::{ImageKey, PollPass, Poller, covering_pass};
use keel_core::{ImageRef, Pipeline, RunReport, UpdatePlan};
use serde::Serialize;

/// The pipeline over the engine, and the lock that keeps its passes apart.
#[derive(Debug)]
pub(crate) struct Updater {
    pipeline: Pipeline,
    poller: Poller,
    one_pass: tokio::sync::Mutex<()>,
    checks: Option<Arc<Checks>>,
}

impl Updater {
    /// Runs passes of `pipeline`; poll passes on `poller`'s schedules.
    pub(crate) fn new(pipeline: Pipeline, poller: Poller) -> Self {
        Updater {
            pipeline,
            poller,
            one_pass: tokio::sync::Mutex::new(()),
            checks: None,
        }
    }

    /// Records what each pass found for the containers it covered in `checks`, for the
    /// dashboard.
    pub(crate) fn with_checks(mut self, checks: Arc<Checks>) -> Self {
        self.checks = Some(checks);
        self
    }

    fn record(&self, report: &RunReport, covered: &HashSet<ImageKey>) {
        if let Some(checks) = &self.checks {
            checks.record(report, covered, Utc::now());
        }
    }

    /// The poll schedules.
    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    /// A poll pass at `now`: the containers whose schedule is due, and those seen for the
    /// first time. Waits for a pass under way to end first.
    pub(crate) async fn poll(&self, now: DateTime<Utc>) -> RunReport {
        let _one = self.one_pass.lock().await;
        let PollPass { report, covered } = self.poller.pass(&self.pipeline, now).await;
        self.record(&report, &covered);
        log(&report, "poll");
        report
    }

    /// A pass over every tracked container whose image repository is one of `images` (all
    /// of them when `images` is empty), whatever their schedules. Waits for a pass under way
    /// to end first.
    pub(crate) async fn pass(&self, images: &[ImageRef], why: &str) -> RunReport {
        let _one = self.one_pass.lock().await;
        let names: Vec<String> = images.iter().map(ImageRef::name).collect();
        let PollPass { report, covered } = covering_pass(&self.pipeline, |image| {
            names.is_empty() || names.contains(&image.image.name())
        })
        .await;
        self.record(&report, &covered);
        log(&report, why);
        report
    }
}

/// Logs what a pass did, and prints the previews of a monitor-only pass on stdout.
fn log(report: &RunReport, why: &str) {
    report.log(why);
    for diff in report.previews.values() {
        print!("{diff}");
    }
}

/// What a pass did, as `/v1/update` answers it.
#[derive(Debug, Serialize)]
pub(crate) struct PassReport {
    /// How many containers the pass looked at.
    pub(crate) scanned: usize,
    /// The updates it found (all of them, whether applied, previewed or held).
    pub(crate) planned: Vec<Change>,
    /// The containers it recreated.
    pub(crate) updated: Vec<Change>,
    /// The updates waiting for approvals.
    pub(crate) awaiting_approval: Vec<Change>,
    /// What failed.
    pub(crate) failed: Vec<Failed>,
}

/// One container's update.
#[derive(Debug, Serialize)]
pub(crate) struct Change {
    pub(crate) container: String,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// One failure: a container's update, or the discovery of the containers (`container`
/// `None`).
#[derive(Debug, Serialize)]
pub(crate) struct Failed {
    pub(crate) container: Option<String>,
    pub(crate) error: String,
}

/// The container name of a tracked id (`container/<name>`).
fn container(id: &str) -> String {
    id.strip_prefix("container/").unwrap_or(id).to_owned()
}

fn change(plan: &UpdatePlan) -> Change {
    Change {
        container: container(&plan.id),
        from: plan.current.familiar(),
        to: plan.new.familiar(),
    }
}

impl From<&RunReport> for PassReport {
    fn from(report: &RunReport) -> Self {
        PassReport {
            scanned: report.tracked,
            planned: report.planned.iter().map(|p| change(&p.plan)).collect(),
            updated: report.applied.iter().map(change).collect(),
            awaiting_approval: report.awaiting_approval.iter().map(change).collect(),
            failed: report
                .failures
                .iter()
                .map(|f| Failed {
                    container: f.id.as_deref().map(container),
                    error: f.error.to_string(),
                })
                .collect(),
        }
    }
}
