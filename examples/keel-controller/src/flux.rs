//! `keel-controller --flux`: the job of Flux's image-reflector-controller, done by
//! [`keel_flux::reflector::Reflector`] on a tick, by the leader only.
//!
//! Every tick the reflector lists the `ImageRepository` and `ImagePolicy` objects of its
//! namespaces, scans the repositories that are due (each on its own `spec.interval`) and
//! writes the statuses Flux users read; the tick only bounds how late a due object is looked
//! at. With leader election, only the leading replica reconciles, so two replicas never
//! write the same status.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_flux::reflector::{Outcome, Reflector, ReflectorReport};
use tokio::sync::watch;
use tracing::{info, warn};

/// Runs `reflector` every `tick` until `stop` completes; while `leading` says `false`, it
/// waits. A pass under way ends before the loop does.
pub async fn reflect_until(
    reflector: Arc<Reflector>,
    leading: Option<watch::Receiver<bool>>,
    tick: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if leading.as_ref().is_none_or(|l| *l.borrow()) {
            log(&reflector.reconcile(Utc::now()).await);
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = &mut stop => return,
        }
    }
}

/// Logs what a pass changed: each object that became ready or not, and each failed request.
fn log(report: &ReflectorReport) {
    for object in report.repositories.iter().chain(&report.policies) {
        // Suspended, not due, unchanged: nothing happened to say.
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
    for error in &report.errors {
        warn!(%error, "flux reflector request failed");
    }
}
