//! A bounded queue in front of a notifier, so that `notify` returns at once.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use keel_core::{Error, Event, Notifier};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{error, warn};

/// What a [`Queued`] notifier did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// How many events the queue holds at most.
    pub capacity: usize,
    /// Events accepted and not yet delivered or failed (waiting or being delivered).
    pub pending: usize,
    /// Events accepted into the queue.
    pub enqueued: u64,
    /// Events the wrapped notifier delivered.
    pub delivered: u64,
    /// Events the wrapped notifier failed to deliver (each logged with its error).
    pub failed: u64,
    /// Events not delivered because the queue was full or shut down, or still queued when
    /// [`Queued::shutdown`] gave up (each logged).
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    pending: AtomicUsize,
    enqueued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// Wraps a notifier with a bounded queue and a worker task: [`notify`](Notifier::notify)
/// only queues the event and returns, and the worker delivers queued events one at a time,
/// in order.
///
/// Nothing is lost silently. When the queue is full, the event is dropped, counted in
/// [`QueueStats::dropped`], logged with `tracing::warn!` naming the notifier and the
/// event, and `notify` returns an error saying so (so a pipeline counts it as a failed
/// notification). Failures of the wrapped notifier, which happen after `notify` returned,
/// are counted in [`QueueStats::failed`] and logged with their error.
///
/// Dropping a `Queued` lets the worker deliver what is queued and stop; to wait for that,
/// call [`shutdown`](Queued::shutdown).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), keel_core::Error> {
/// use std::time::Duration;
/// use keel_notify::{Queued, Webhook};
///
/// let hook = Webhook::builder("http://127.0.0.1:9/keel").build()?;
/// let queued = Queued::new(hook, 100);
/// assert_eq!(queued.stats().capacity, 100);
/// queued.shutdown(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
pub struct Queued {
    name: String,
    capacity: usize,
    sender: Mutex<Option<mpsc::Sender<Event>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    idle: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queued {
    /// Queues up to `capacity` events (at least 1) for `inner`.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as [`tokio::spawn`] does.
    pub fn new(inner: impl Notifier + 'static, capacity: usize) -> Queued {
        Queued::from_arc(Arc::new(inner), capacity)
    }

    /// [`new`](Queued::new) for a shared notifier.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as [`tokio::spawn`] does.
    pub fn from_arc(inner: Arc<dyn Notifier>, capacity: usize) -> Queued {
        let capacity = capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let idle = Arc::new(Notify::new());
        let name = inner.name().to_owned();
        let worker = tokio::spawn(work(inner, receiver, counters.clone(), idle.clone()));
        Queued {
            name,
            capacity,
            sender: Mutex::new(Some(sender)),
            worker: Mutex::new(Some(worker)),
            counters,
            idle,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> QueueStats {
        let c = &self.counters;
        QueueStats {
            capacity: self.capacity,
            pending: c.pending.load(Ordering::SeqCst),
            enqueued: c.enqueued.load(Ordering::SeqCst),
            delivered: c.delivered.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
            dropped: c.dropped.load(Ordering::SeqCst),
        }
    }

    /// How many events were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::SeqCst)
    }

    /// Waits until every event queued so far is delivered or failed, at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Backend`] (retryable) saying how many events are still pending.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        // A timeout too long for the clock (`Duration::MAX`: wait for good) saturates.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pending = self.counters.pending.load(Ordering::SeqCst);
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let pending = self.counters.pending.load(Ordering::SeqCst);
                if pending == 0 {
                    return Ok(());
                }
                return Err(self.error(
                    "flush the queue",
                    format!(
                        "{pending} event(s) still pending after {}",
                        crate::delivery::seconds(timeout)
                    ),
                    true,
                ));
            }
        }
    }

    /// Stops taking events, delivers what is queued, and stops the worker, waiting at most
    /// `timeout`; then events still queued are dropped (counted and logged). Later
    /// `notify` calls fail. Calling it again returns at once.
    ///
    /// # Errors
    /// [`Error::Backend`] saying how many events were dropped when the time ran out.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        drop(lock(&self.sender).take());
        let Some(mut worker) = lock(&self.worker).take() else {
            return Ok(());
        };
        if tokio::time::timeout(timeout, &mut worker).await.is_ok() {
            return Ok(());
        }
        worker.abort();
        let left = self.counters.pending.swap(0, Ordering::SeqCst);
        self.counters
            .dropped
            .fetch_add(left as u64, Ordering::SeqCst);
        self.idle.notify_waiters();
        warn!(
            notifier = %self.name,
            dropped = left,
            "notification queue shut down with events undelivered; they are dropped"
        );
        Err(self.error(
            "shut down the queue",
            format!(
                "{left} event(s) undelivered after {}; dropped",
                crate::delivery::seconds(timeout)
            ),
            false,
        ))
    }

    fn error(&self, action: &str, message: String, retryable: bool) -> Error {
        Error::Backend {
            backend: self.name.clone(),
            action: action.to_owned(),
            message,
            retryable,
            source: None,
        }
    }

    fn drop_event(&self, event: &Event, why: &str) -> Error {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::SeqCst) + 1;
        warn!(
            notifier = %self.name,
            kind = %event.kind,
            plan = %event.plan,
            capacity = self.capacity,
            dropped,
            "notification dropped: {why}"
        );
        self.error(
            &format!(
                "queue the {} event for {}/{}",
                event.kind, event.plan.target, event.plan.id
            ),
            format!("{why}; event dropped ({dropped} dropped so far)"),
            true,
        )
    }
}

async fn work(
    inner: Arc<dyn Notifier>,
    mut receiver: mpsc::Receiver<Event>,
    counters: Arc<Counters>,
    idle: Arc<Notify>,
) {
    while let Some(event) = receiver.recv().await {
        match AssertUnwindSafe(inner.notify(&event)).catch_unwind().await {
            Ok(Ok(())) => {
                counters.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(e)) => {
                counters.failed.fetch_add(1, Ordering::SeqCst);
                warn!(
                    notifier = inner.name(),
                    kind = %event.kind,
                    plan = %event.plan,
                    error = %e,
                    "queued notification failed"
                );
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::SeqCst);
                error!(
                    notifier = inner.name(),
                    kind = %event.kind,
                    plan = %event.plan,
                    "notifier panicked delivering a queued notification"
                );
            }
        }
        if counters.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            idle.notify_waiters();
        }
    }
}

impl fmt::Debug for Queued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queued")
            .field("name", &self.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for Queued {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, event: &Event) -> Result<(), Error> {
        let Some(sender) = lock(&self.sender).clone() else {
            return Err(self.drop_event(event, "the queue is shut down"));
        };
        // Counted before sending: the worker may finish the event before `try_send` returns.
        self.counters.pending.fetch_add(1, Ordering::SeqCst);
        match sender.try_send(event.clone()) {
            Ok(()) => {
                self.counters.enqueued.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(failed) => {
                self.counters.pending.fetch_sub(1, Ordering::SeqCst);
                let why = match failed {
                    mpsc::error::TrySendError::Full(_) => {
                        format!("the queue is full ({} events waiting)", self.capacity)
                    }
                    mpsc::error::TrySendError::Closed(_) => "the queue is shut down".into(),
                };
                Err(self.drop_event(event, &why))
            }
        }
    }
}
