//! Supervision of pipeline passes, the loop every long-running embedder needs: a pass that
//! panics or runs past its time is caught, reported and counted, and the caller goes on to
//! the next pass instead of stopping in silence.
//!
//! [`PassSupervisor::run`] polls the pass future in place, catching a panic raised while it
//! is polled (`futures::FutureExt::catch_unwind`), and drops it when the `deadline` future
//! completes first. The deadline is any future, so this module needs no async runtime: with
//! Tokio it is `tokio::time::sleep(timeout)`.
//!
//! The supervisor also keeps the time of the last completed pass, which is what a liveness
//! check asks: [`PassSupervisor::stalled`] says whether none completed within a window.
//!
//! ```
//! use std::time::Duration;
//! use keel_core::supervise::{PassFailure, PassSupervisor};
//!
//! # futures::executor::block_on(async {
//! let supervisor = PassSupervisor::new();
//! let never = std::future::pending::<()>;
//!
//! assert_eq!(supervisor.run(async { 42 }, never()).await, Ok(42));
//!
//! let failed = supervisor.run(async { panic!("the registry sent nonsense") }, never()).await;
//! assert!(matches!(&failed, Err(PassFailure::Panicked { message }) if message == "the registry sent nonsense"));
//!
//! let hung = supervisor.run(std::future::pending::<()>(), async {}).await;
//! assert!(matches!(hung, Err(PassFailure::TimedOut)));
//!
//! assert_eq!((supervisor.completed(), supervisor.panics(), supervisor.timeouts()), (1, 1, 1));
//! assert!(supervisor.stalled(Duration::from_secs(60)).is_none());
//! # });
//! ```
//!
//! A panic is caught only when the program unwinds on panic (the default; not with
//! `panic = "abort"`), and a deadline cuts off only a pass that awaits: code that blocks
//! its thread without yielding cannot be interrupted from the same task. A pass cut off by
//! its deadline is dropped where it awaited, as any cancelled future.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{Either, select};

/// Why a supervised pass did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassFailure {
    /// The pass panicked; `message` is the panic's message when it was a string.
    Panicked {
        /// The panic message, or `"(not a string)"`.
        message: String,
    },
    /// The deadline came before the pass completed; the pass was dropped.
    TimedOut,
}

impl PassFailure {
    /// A short label for metrics and logs: `panic` or `timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            PassFailure::Panicked { .. } => "panic",
            PassFailure::TimedOut => "timeout",
        }
    }
}

impl fmt::Display for PassFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassFailure::Panicked { message } => write!(f, "the pass panicked: {message}"),
            PassFailure::TimedOut => f.write_str("the pass did not complete before its deadline"),
        }
    }
}

impl std::error::Error for PassFailure {}

#[derive(Debug)]
struct State {
    started: Instant,
    last_completed: Option<Instant>,
    completed: u64,
    panics: u64,
    timeouts: u64,
    last_failure: Option<PassFailure>,
}

/// Runs passes, catching panics and overruns, and remembers when one last completed.
/// Share it (`Arc`) between the loop that runs passes and the health check that reads it.
#[derive(Debug)]
pub struct PassSupervisor {
    state: Mutex<State>,
}

impl Default for PassSupervisor {
    fn default() -> Self {
        PassSupervisor::new()
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(not a string)".to_owned()
    }
}

impl PassSupervisor {
    /// A supervisor that has run nothing yet; [`stalled`](Self::stalled) measures from now
    /// until the first pass completes.
    pub fn new() -> Self {
        PassSupervisor {
            state: Mutex::new(State {
                started: Instant::now(),
                last_completed: None,
                completed: 0,
                panics: 0,
                timeouts: 0,
                last_failure: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `pass` until it completes or `deadline` does, whichever is first. A panic while
    /// `pass` is polled becomes [`PassFailure::Panicked`]; the deadline winning becomes
    /// [`PassFailure::TimedOut`] (and `pass` is dropped). Each outcome is counted.
    pub async fn run<T>(
        &self,
        pass: impl Future<Output = T>,
        deadline: impl Future<Output = ()>,
    ) -> Result<T, PassFailure> {
        let pass = AssertUnwindSafe(pass).catch_unwind();
        let outcome = match select(Box::pin(pass), Box::pin(deadline)).await {
            Either::Left((Ok(value), _)) => Ok(value),
            Either::Left((Err(payload), _)) => Err(PassFailure::Panicked {
                message: panic_message(payload.as_ref()),
            }),
            Either::Right(((), _)) => Err(PassFailure::TimedOut),
        };
        let mut state = self.lock();
        match &outcome {
            Ok(_) => {
                state.last_completed = Some(Instant::now());
                state.completed += 1;
            }
            Err(failure) => {
                match failure {
                    PassFailure::Panicked { .. } => state.panics += 1,
                    PassFailure::TimedOut => state.timeouts += 1,
                }
                state.last_failure = Some(failure.clone());
            }
        }
        outcome
    }

    /// When the last pass completed, if one did.
    pub fn last_completed(&self) -> Option<Instant> {
        self.lock().last_completed
    }

    /// How many passes completed.
    pub fn completed(&self) -> u64 {
        self.lock().completed
    }

    /// How many passes panicked.
    pub fn panics(&self) -> u64 {
        self.lock().panics
    }

    /// How many passes ran past their deadline.
    pub fn timeouts(&self) -> u64 {
        self.lock().timeouts
    }

    /// The last failure, if any pass failed.
    pub fn last_failure(&self) -> Option<PassFailure> {
        self.lock().last_failure.clone()
    }

    /// Why the passes look stuck, or `None` when one completed within `window` (counting from
    /// the supervisor's creation until the first one does). The reason says how long it has
    /// been and names the last failure.
    pub fn stalled(&self, window: Duration) -> Option<String> {
        let state = self.lock();
        let since = state.last_completed.unwrap_or(state.started);
        let age = since.elapsed();
        if age <= window {
            return None;
        }
        let what = match state.last_completed {
            Some(_) => format!("no pass has completed for {}s", age.as_secs()),
            None => format!("no pass has completed since start {}s ago", age.as_secs()),
        };
        let last = match &state.last_failure {
            Some(failure) => format!("; the last failure: {failure}"),
            None => String::new(),
        };
        Some(format!(
            "{what} (allowed: {}s){last}",
            window.as_secs_f64().ceil() as u64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_counted_and_a_panic_does_not_escape() {
        futures::executor::block_on(async {
            let s = PassSupervisor::new();
            assert_eq!(s.last_completed(), None);
            let never = std::future::pending::<()>;
            let err = s
                .run(async { panic!("{} broke", "discover") }, never())
                .await
                .unwrap_err();
            assert_eq!(
                err,
                PassFailure::Panicked {
                    message: "discover broke".into()
                }
            );
            assert_eq!(err.kind(), "panic");
            assert!(err.to_string().contains("discover broke"), "{err}");
            assert_eq!(s.last_completed(), None);
            assert_eq!(s.run(async { "next" }, never()).await, Ok("next"));
            assert!(s.last_completed().is_some());
            assert_eq!((s.completed(), s.panics(), s.timeouts()), (1, 1, 0));
        });
    }

    #[test]
    fn the_deadline_drops_a_hung_pass() {
        futures::executor::block_on(async {
            let s = PassSupervisor::new();
            let err = s
                .run(std::future::pending::<u8>(), async {})
                .await
                .unwrap_err();
            assert_eq!(err, PassFailure::TimedOut);
            assert_eq!(s.timeouts(), 1);
            assert_eq!(s.last_failure(), Some(PassFailure::TimedOut));
        });
    }

    #[test]
    fn stalled_after_the_window_with_the_last_failure() {
        futures::executor::block_on(async {
            let s = PassSupervisor::new();
            assert_eq!(s.stalled(Duration::from_secs(3600)), None);
            let _ = s
                .run(std::future::pending::<()>(), async {})
                .await
                .unwrap_err();
            std::thread::sleep(Duration::from_millis(20));
            let reason = s.stalled(Duration::from_millis(5)).unwrap();
            assert!(reason.contains("since start"), "{reason}");
            assert!(reason.contains("deadline"), "{reason}");
            s.run(async {}, std::future::pending()).await.unwrap();
            assert_eq!(s.stalled(Duration::from_millis(5)), None);
            std::thread::sleep(Duration::from_millis(20));
            let reason = s.stalled(Duration::from_millis(5)).unwrap();
            assert!(reason.starts_with("no pass has completed for"), "{reason}");
        });
    }
}
