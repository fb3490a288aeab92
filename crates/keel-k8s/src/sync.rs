//! Waiting for the initial lists of a target's watches, for every target built on watches
//! (the workload caches here, Helm's storage in keel-helm).

use std::time::{Duration, Instant};

use keel_core::Error;

use crate::error as kerr;

/// What a target waits on: one watch of one resource in one namespace (or all).
pub trait SyncState {
    /// Whether its initial list has arrived.
    fn is_ready(&self) -> bool;
    /// Its last error, and whether waiting longer cannot help.
    fn error(&self) -> Option<(Error, bool)>;
    /// The resource watched (plural), e.g. `deployments`.
    fn resource(&self) -> &str;
    /// The namespace watched; `None`: all namespaces.
    fn namespace(&self) -> Option<&str>;
}

/// Waits until every one of `watches` has its initial list, checking every 20 ms; fails at
/// once on a watch that cannot succeed (refused by RBAC, a missing resource), and after
/// `timeout` on one that has not, naming it and its last error.
///
/// # Errors
/// The fatal watch's error; [`Error::Backend`] (retryable) on the timeout.
pub async fn wait_synced<W: SyncState + ?Sized>(
    watches: &[&W],
    timeout: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let mut pending = Vec::new();
        for watch in watches {
            if watch.is_ready() {
                continue;
            }
            match watch.error() {
                Some((error, true)) => return Err(error),
                other => pending.push((watch, other.map(|(e, _)| e))),
            }
        }
        let Some((watch, last_error)) = pending.into_iter().next() else {
            return Ok(());
        };
        if started.elapsed() >= timeout {
            let scope = watch.namespace().map_or_else(
                || "all namespaces".to_owned(),
                |ns| format!("namespace {ns}"),
            );
            return Err(Error::Backend {
                backend: kerr::BACKEND.to_owned(),
                action: format!("sync the cache of {} in {scope}", watch.resource()),
                message: match last_error {
                    Some(e) => format!(
                        "no initial list after {}s; last error: {e}",
                        timeout.as_secs()
                    ),
                    None => format!("no initial list after {}s", timeout.as_secs()),
                },
                retryable: true,
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
