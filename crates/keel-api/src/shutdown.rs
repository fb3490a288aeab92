//! Stopping a server process cleanly: one signal (ctrl-c, or SIGTERM as `docker stop` and
//! Kubernetes send it) stops every task that waits on a [`Shutdown`]; and starting one:
//! [`start_then_run`] runs nothing until every part is set up.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use chrono::{DateTime, Utc};
use keel_core::trigger::Poller;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Completes on ctrl-c or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// A stop request shared by the tasks of a process: each waits on [`Shutdown::wait`], and
/// all of them stop when it comes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = keel_api::Shutdown::on(async {});
/// shutdown.wait().await; // at once: the stop future above is already done
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    stopped: watch::Receiver<bool>,
}

impl Shutdown {
    /// Stops when [`shutdown_signal`] completes. Must run inside a Tokio runtime.
    pub fn on_signal() -> Shutdown {
        Shutdown::on(shutdown_signal())
    }

    /// Stops when `stop` completes (a signal, the end of a test). Must run inside a Tokio
    /// runtime.
    pub fn on(stop: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, stopped) = watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = tx.send(true);
        });
        Shutdown { stopped }
    }

    /// Completes once the stop came.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            // An error: the sender is gone without sending, so no stop will come.
            if stopped.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Serves `router` on `listener` in a task of its own until the stop comes; requests
    /// under way finish first. [`Server::finish`] waits for it and says whether it failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let shutdown = keel_api::Shutdown::on(async {});
    /// let server = shutdown.serve(listener, axum::Router::new());
    /// assert_eq!(server.finish().await, Ok(()));
    /// # }
    /// ```
    pub fn serve(&self, listener: TcpListener, router: Router) -> Server {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, "serving");
        }
        let stop = self.wait();
        Server(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }))
    }
}

impl Shutdown {
    /// Serves `server` (when there is one: a listener and its router) and runs `work` until
    /// both end, then waits for the server: the shape of every long-running keel-rs program
    /// (serve the API and the dashboard, poll, stop on the signal). `work` is to end when the
    /// stop comes, as [`Shutdown::poll`] does.
    ///
    /// # Errors
    /// Why the server failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let shutdown = keel_api::Shutdown::on(async {});
    /// let served = shutdown
    ///     .run(Some((listener, axum::Router::new())), shutdown.wait())
    ///     .await;
    /// assert_eq!(served, Ok(()));
    /// # }
    /// ```
    pub async fn run(
        &self,
        server: Option<(TcpListener, Router)>,
        work: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let server = server.map(|(listener, router)| self.serve(listener, router));
        work.await;
        match server {
            Some(server) => server.finish().await,
            None => Ok(()),
        }
    }

    /// Runs poll passes until the stop comes: the first at once, then whenever `poller` has
    /// an image due, and `rescan(last)` after the last pass at the latest, so that images
    /// deployed since are found. `pass` runs (and records) one pass at the time it is given,
    /// usually with [`Poller::pass`](keel_core::trigger::Poller::pass). A pass under way ends before the loop does, so that no
    /// update is cut in half.
    pub async fn poll<P, F>(
        &self,
        poller: &Poller,
        rescan: impl Fn(DateTime<Utc>) -> Duration,
        mut pass: P,
    ) where
        P: FnMut(DateTime<Utc>) -> F,
        F: Future,
    {
        let stop = self.wait();
        tokio::pin!(stop);
        let mut last: Option<DateTime<Utc>> = None;
        loop {
            let now = Utc::now();
            let wake = poller.next_pass(last, last.map_or(Duration::ZERO, &rescan), now);
            let sleep = (wake - now).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = &mut stop => return,
            }
            let now = Utc::now();
            pass(now).await;
            last = Some(now);
        }
    }
}

/// Starts a long-running program, then runs it: `start` checks every setting and sets every
/// part up before anything runs, so that a bad flag or variable stops the program before it
/// acts, its error logged and with exit code 2 (as clap's own errors); otherwise `run` runs the
/// started parts, and its exit code is the program's.
///
/// ```
/// use std::process::ExitCode;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let started = async { Ok::<_, String>(ExitCode::SUCCESS) };
/// let code = keel_api::start_then_run(started, |code| async move { code }).await;
/// assert_eq!(code, ExitCode::SUCCESS);
/// let refused = async { Err::<ExitCode, _>("invalid --listen".to_owned()) };
/// let code = keel_api::start_then_run(refused, |code| async move { code }).await;
/// assert_eq!(code, ExitCode::from(2));
/// # }
/// ```
pub async fn start_then_run<T, R>(
    start: impl Future<Output = Result<T, String>>,
    run: impl FnOnce(T) -> R,
) -> ExitCode
where
    R: Future<Output = ExitCode>,
{
    match start.await {
        Ok(started) => run(started).await,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// A server started by [`Shutdown::serve`].
#[derive(Debug)]
pub struct Server(JoinHandle<std::io::Result<()>>);

impl Server {
    /// Waits until the server stopped: `Err` says why it failed.
    pub async fn finish(self) -> Result<(), String> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keel_core::trigger::PollScheduler;

    use super::*;

    #[tokio::test]
    async fn polls_at_once_then_on_the_rescan_interval_until_the_stop() {
        let shutdown = Shutdown::on(tokio::time::sleep(Duration::from_millis(300)));
        let poller = Poller::new(PollScheduler::new());
        let passes = AtomicUsize::new(0);
        let started = std::time::Instant::now();
        shutdown
            .poll(
                &poller,
                |_| Duration::from_millis(100),
                |_| async { passes.fetch_add(1, Ordering::SeqCst) },
            )
            .await;
        // At 0, 100 and 200 ms (give or take a slow machine), and none once stopped.
        let passes = passes.load(Ordering::SeqCst);
        assert!((2..=4).contains(&passes), "{passes} passes");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn run_serves_while_the_work_runs_and_then_waits_for_the_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::on(std::future::pending());
        let stopper = Shutdown::on(tokio::time::sleep(Duration::from_millis(200)));
        let served = async {
            let served = shutdown.run(Some((listener, Router::new())), stopper.wait());
            // Nothing stops the server but the stop of `shutdown`: run waits for it.
            tokio::time::timeout(Duration::from_millis(500), served).await
        };
        let reached = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tokio::net::TcpStream::connect(addr).await.is_ok()
        };
        let (served, reached) = tokio::join!(served, reached);
        assert!(reached, "the server listens while the work runs");
        assert!(
            served.is_err(),
            "run waits for the server, which had no stop"
        );
    }
}
