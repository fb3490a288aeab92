//! A per-registry-host limiter: requests per second and requests in flight.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::cache::saturating_deadline;

/// The longest spacing of requests to one host: the slowest rate the client accepts is one
/// request per hour ([`RegistryClientBuilder::build`](crate::RegistryClientBuilder::build)
/// refuses slower ones).
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Spaces requests to one host at least `1/rps` apart and caps how many are in flight.
#[derive(Debug)]
pub(crate) struct HostLimiter {
    interval: Duration,
    next: Mutex<Instant>,
    in_flight: Semaphore,
}

impl HostLimiter {
    /// A limiter for `requests_per_second` (0 or less: no spacing; the spacing is capped at
    /// [`MAX_INTERVAL`]) and `concurrent` requests in flight.
    pub(crate) fn new(requests_per_second: f64, concurrent: usize) -> Self {
        let interval = if requests_per_second > 0.0 {
            Duration::try_from_secs_f64(1.0 / requests_per_second)
                .map_or(MAX_INTERVAL, |d| d.min(MAX_INTERVAL))
        } else {
            Duration::ZERO
        };
        HostLimiter {
            interval,
            next: Mutex::new(Instant::now()),
            in_flight: Semaphore::new(concurrent.max(1)),
        }
    }

    /// Waits for a slot; the permit holds one of the concurrent places until dropped.
    pub(crate) async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .in_flight
            .acquire()
            .await
            .expect("the limiter's semaphore is never closed");
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = saturating_deadline(slot, self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_by_rate() {
        let limiter = HostLimiter::new(10.0, 4);
        let start = Instant::now();
        for _ in 0..5 {
            drop(limiter.acquire().await);
        }
        // Five requests at 10/s: the fifth starts 400 ms after the first.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn tiny_rates_are_capped_instead_of_overflowing() {
        for rps in [1e-300, f64::MIN_POSITIVE, 1e-6] {
            let limiter = HostLimiter::new(rps, 1);
            assert_eq!(limiter.interval, MAX_INTERVAL, "{rps}");
            let start = Instant::now();
            drop(limiter.acquire().await);
            drop(limiter.acquire().await);
            assert_eq!(start.elapsed(), MAX_INTERVAL, "{rps}");
        }
        assert_eq!(HostLimiter::new(f64::INFINITY, 1).interval, Duration::ZERO);
        assert_eq!(HostLimiter::new(f64::NAN, 1).interval, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn caps_requests_in_flight() {
        let limiter = HostLimiter::new(0.0, 2);
        let a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        let third = tokio::time::timeout(Duration::from_secs(1), limiter.acquire()).await;
        assert!(
            third.is_err(),
            "a third request got through while two were in flight"
        );
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(1), limiter.acquire()).await;
        assert!(third.is_ok());
    }
}
