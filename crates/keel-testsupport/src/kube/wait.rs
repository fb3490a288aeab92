//! Waiting until the cluster, or something watching it, reaches a state.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Calls `check` every `every` until it gives `Ok`; returns how long that took. Panics once
/// `within` has passed, naming `what` and the last `Err` (what was seen instead).
pub async fn wait_until<E: Debug>(
    what: &str,
    (within, every): (Duration, Duration),
    mut check: impl AsyncFnMut() -> Result<(), E>,
) -> Duration {
    let started = Instant::now();
    loop {
        let seen = match check().await {
            Ok(()) => return started.elapsed(),
            Err(seen) => seen,
        };
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; seen {seen:?}"
        );
        tokio::time::sleep(every).await;
    }
}
