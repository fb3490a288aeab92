//! `keel-controller`: Keel's webhook endpoints, polling and metrics in front of a keel-rs
//! pipeline.
//!
//! ```text
//! KEEL_WEBHOOK_TOKEN=... keel-controller --listen 0.0.0.0:9300
//! curl -X POST 'http://localhost:9300/v1/webhooks/native?token=...' \
//!      -d '{"name": "ghcr.io/acme/web", "tag": "1.4.2"}'
//! ```
//!
//! Webhook credentials come from the environment (never from flags, which other users of the
//! machine can read): see `HttpConfig::with_env`. The pipeline reads registries with the
//! credentials of Docker's `config.json` (`$DOCKER_CONFIG`); its targets are added where
//! marked below.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keel_controller::http::{self, HttpConfig};
use keel_controller::metrics::Metrics;
use keel_controller::shutdown_signal;
use keel_controller::worker::Worker;
use keel_core::Pipeline;
use keel_core::trigger::Schedule;
use keel_registry::RegistryClientBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Runs Keel's webhook endpoints, polling and metrics in front of a keel-rs pipeline.
#[derive(Debug, Parser)]
#[command(name = "keel-controller", version, about)]
struct Args {
    /// Where the HTTP server listens.
    #[arg(long, default_value = "0.0.0.0:9300", env = "KEEL_LISTEN")]
    listen: SocketAddr,

    /// The largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, env = "KEEL_WEBHOOK_BODY_LIMIT")]
    body_limit: usize,

    /// How many pushes may wait for the pipeline before webhooks get 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,

    /// How often to look for newly deployed images when nothing is due: `30s`, `5m`.
    #[arg(long, default_value = "1m", value_parser = parse_interval)]
    resync: Duration,

    /// Show what would change, never apply.
    #[arg(long)]
    dry_run: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    format!("@every {s}")
        .parse::<Schedule>()
        .ok()
        .and_then(|schedule| schedule.interval())
        .ok_or_else(|| format!("{s:?} is not a duration of whole seconds like 30s, 5m or 1h"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    let config = match HttpConfig::new()
        .with_body_limit(args.body_limit)
        .with_env(|name| std::env::var(name).ok())
    {
        Ok(config) => config,
        Err(e) => {
            error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let open = config.open_sources();
    if !open.is_empty() {
        let names: Vec<&str> = open.iter().map(|s| s.as_str()).collect();
        warn!(endpoints = ?names, "webhook endpoints accept requests without credentials");
    }

    // A webhook must see the tag it announces: no tag-list cache across passes (each pass
    // still lists a repository once).
    let registry = match RegistryClientBuilder::from_env()
        .map(|b| b.with_cache_ttl(Duration::ZERO))
        .and_then(|b| b.build())
    {
        Ok(registry) => registry,
        Err(e) => {
            error!(%e, "cannot set up the registry client");
            return std::process::ExitCode::from(2);
        }
    };
    let pipeline = Pipeline::new(Arc::new(registry.clone())).with_dry_run(args.dry_run);
    // Targets: the Kubernetes target (keel-k8s) is added here.
    warn!("no targets configured: webhooks and polls are accepted but update nothing yet");

    let metrics = Arc::new(Metrics::new());
    metrics.set_registry_requests(move || {
        let s = registry.stats();
        vec![
            ("tag_page", s.tag_pages),
            ("manifest_head", s.manifest_heads),
            ("manifest_get", s.manifest_gets),
            ("blob_get", s.blob_gets),
            ("token", s.token_requests),
            ("retry", s.retries),
        ]
    });
    let worker = Arc::new(Worker::new(pipeline, metrics.clone()).with_resync(args.resync));
    match worker.pipeline().approvals().cloned() {
        Some(approvals) => metrics.set_pending_approvals(move || {
            let approvals = approvals.clone();
            async move { approvals.pending().await }
        }),
        None => {
            let worker = worker.clone();
            metrics.set_pending_approvals(move || {
                let n = worker.awaiting_approvals();
                async move { Ok(n) }
            });
        }
    }

    // One signal stops both the server and the worker.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (pushes, queue) = tokio::sync::mpsc::channel(args.queue.max(1));
    let worker_task = tokio::spawn(worker.run(queue, stopped(stop_rx.clone())));

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            error!(listen = %args.listen, %e, "cannot listen");
            return std::process::ExitCode::from(2);
        }
    };
    info!(listen = %args.listen, "serving webhooks, /healthz and /metrics");
    let router = http::router(config, metrics, pushes);
    if let Err(e) = http::serve(listener, router, stopped(stop_rx)).await {
        error!(%e, "HTTP server failed");
        return std::process::ExitCode::FAILURE;
    }
    if let Err(e) = worker_task.await {
        error!(%e, "worker failed");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
