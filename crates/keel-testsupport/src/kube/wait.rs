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

/// Reads with `read` until `done` holds for what it read, `limits` being `(within, every)` as
/// for [`wait_until`]; returns how long that took. Panics once `within` has passed, naming
/// `what` and the last thing read.
pub async fn wait_for<T: Debug>(
    what: &str,
    limits: (Duration, Duration),
    mut read: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Duration {
    wait_until(what, limits, async || {
        let seen = read().await;
        if done(&seen) { Ok(()) } else { Err(seen) }
    })
    .await
}
