//! Stopping a server process cleanly: one signal (ctrl-c, or SIGTERM as `docker stop` and
//! Kubernetes send it) stops every task that waits on a [`Shutdown`].

use std::future::Future;

use axum::Router;
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
