//! `keel-controller --flux`: the jobs of Flux's image-reflector-controller and
//! image-automation-controller, done by keel-flux's [`Reflector`] and [`Automation`] on a
//! tick, by the leader only.
//!
//! Every tick the reflector lists the `ImageRepository` and `ImagePolicy` objects of its
//! namespaces, scans the repositories that are due (each on its own `spec.interval`) and
//! writes the statuses Flux users read; then the automation runs the
//! `ImageUpdateAutomation`s that are due, writing the policies' choices at the setter markers
//! of their Git repositories and pushing one commit each. The tick only bounds how late a
//! due object is looked at. With leader election, only the leading replica reconciles, so two
//! replicas never write the same status or push the same change.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_flux::reflector::{ObjectReport, Outcome};
use keel_flux::{Automation, Reflector};
use tokio::sync::watch;
use tracing::{info, warn};

/// What `--flux` runs.
#[derive(Debug)]
pub struct FluxJobs {
    /// Scans repositories and resolves policies.
    pub reflector: Reflector,
    /// Writes the policies' choices into Git.
    pub automation: Automation,
}

/// Runs `jobs` every `tick` until `stop` completes; while `leading` says `false`, it waits.
/// A pass under way ends before the loop does, so no push is cut in half.
pub async fn run_until(
    jobs: Arc<FluxJobs>,
    leading: Option<watch::Receiver<bool>>,
    tick: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if leading.as_ref().is_none_or(|l| *l.borrow()) {
            let reflected = jobs.reflector.reconcile(Utc::now()).await;
            log(reflected.repositories.iter().chain(&reflected.policies));
            let automated = jobs.automation.reconcile(Utc::now()).await;
            log(&automated.automations);
            for (automation, commit) in &automated.pushed {
                info!(%automation, %commit, "flux automation pushed");
            }
            for error in reflected.errors.iter().chain(&automated.errors) {
                warn!(%error, "flux request failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = &mut stop => return,
        }
    }
}

/// Logs each object that became ready or not; suspended, not due and unchanged objects are
/// quiet.
fn log<'a>(objects: impl IntoIterator<Item = &'a ObjectReport>) {
    for object in objects {
        match &object.outcome {
            Outcome::Ready { message } => {
                info!(namespace = %object.namespace, name = %object.name, %message, "flux object ready");
            }
            Outcome::NotReady { reason, message } => {
                warn!(namespace = %object.namespace, name = %object.name, %reason, %message, "flux object not ready");
            }
            _ => {}
        }
    }
}
