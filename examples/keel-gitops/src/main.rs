//! `keel-gitops`: a long-running GitOps image updater.
//!
//! Every `--interval` it fetches the repository, finds the image references its manifests
//! mark (Flux setter markers, Keel annotations, kustomization images, `.keel.yaml`), asks the
//! registries for newer tags by each reference's policy, and commits and pushes the updates:
//! what Flux image automation or Argo CD Image Updater's git write-back do, as one small
//! program built from keel-rs.
//!
//! Polling is keel-core's, as in the cluster: a reference with `keel.sh/trigger: poll` is
//! checked on its own `keel.sh/pollSchedule` (without one, on Keel's `POLL_DEFAULTSCHEDULE`,
//! default `@every 1m`); every other reference every `--interval`. A reference is checked as
//! soon as it is first found, and a pass never decides from a tag list an earlier pass read.
//!
//! Approvals and the dashboard are keel-rs's, as in keel-controller: a reference annotated
//! `keel.sh/approvals: "N"` waits for N votes before its update is pushed (by the
//! reference's next pass after the last vote). When `KEEL_API_AUTH` or Keel's
//! `BASIC_AUTH_USER`/`BASIC_AUTH_PASSWORD` configure credentials (see `keel_api::env`),
//! `--listen` (default `0.0.0.0:9300`) serves the approvals API under `/api` and the web
//! dashboard under `/ui` (the repository's references, each with its last check and
//! available update, and on its own page the policy's reasons and the diff of its next
//! update), next to `/healthz`; the routes are in the `http` module. Requests
//! live in memory, or in `--approvals-file` across restarts. Keel's notification variables
//! (`SLACK_TOKEN`, `WEBHOOK_ENDPOINT`...; see `keel_notify::env`) announce updates and
//! approval requests. SIGTERM or ctrl-c stops the server and the polls once the pass under
//! way is done; `--once` serves nothing.
//!
//! ```text
//! BASIC_AUTH_USER=admin BASIC_AUTH_PASSWORD=... \
//!   keel-gitops --repo https://git.example.com/org/fleet.git --branch main --interval 5m
//! ```
//!
//! A bad flag or variable stops the start naming it, with exit code 2.

mod http;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use keel_api::Shutdown;
use keel_api::dashboard::{Checks, TargetImages};
use keel_core::approval::{self, Approvals};
use keel_core::trigger::{
    PollPass, PollScheduler, Poller, Schedule, default_poll_schedule, parse_interval,
};
use keel_core::{Pipeline, Registry, RunReport, Target};
use keel_git::env::GitArgs;
use keel_registry::RegistryClientBuilder;
use tokio::net::TcpListener;
use tracing::{error, info};

/// Keeps the images of a Git repository up to date.
#[derive(Debug, Parser)]
#[command(name = "keel-gitops", version, about)]
#[command(mut_arg("repo", |repo| repo.required(true)))]
struct Args {
    /// The repository and how to reach it: keel-git's flags, each standing for its `KEEL_*`
    /// variable (`--repo` is required).
    #[command(flatten)]
    git: GitArgs,

    /// How often to look for updates: `30s`, `5m`, `1h`.
    #[arg(long, default_value = "5m", value_parser = parse_interval, env = "KEEL_INTERVAL")]
    interval: Duration,

    /// Run one pass and exit (nothing is served).
    #[arg(long)]
    once: bool,

    /// Show what would change, never push.
    #[arg(long)]
    dry_run: bool,

    /// Where `/healthz`, the approvals API and the dashboard listen (nothing does with --once).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:9300",
        env = "KEEL_LISTEN"
    )]
    listen: SocketAddr,

    /// Keep approval requests in this file (an embedded database); default: in memory.
    #[arg(long, value_name = "PATH", env = "KEEL_APPROVALS_FILE")]
    approvals_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    keel_api::start_then_run(App::start(&args), |app| app.run(&args)).await
}

/// Logs to stderr, at `RUST_LOG`'s levels (default `info`), in colour on a terminal only:
/// stdout has the diffs of dry runs.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// The parts of a started updater.
struct App {
    /// The pipeline over the repository, holding updates that need approvals.
    pipeline: Pipeline,
    /// The poll schedules of the references.
    poller: Poller,
    /// What each pass found, for the dashboard.
    checks: Arc<Checks>,
    /// The listener and the router, unless `--once`.
    server: Option<(TcpListener, axum::Router)>,
}

impl App {
    /// Checks every setting and sets every part up: the Git target, the schedules, the
    /// registry client, the approvals and notifiers, and (unless `--once`) the listener.
    async fn start(args: &Args) -> Result<App, String> {
        let target = git_target(args)?;
        let poller = Poller::new(scheduler(args)?);
        let registry = registry()?;
        let store = approval::store_in(args.approvals_file.as_deref())
            .map_err(|e| format!("invalid --approvals-file: {e}"))?;
        let approvals = Approvals::new(store);
        let (pipeline, approvals) = pipeline(args, registry.clone(), target.clone(), approvals)?;
        let auth = keel_api::auth_from_env(|name| std::env::var(name).ok())?;
        let checks = Arc::new(Checks::default());
        let server = if args.once {
            None
        } else {
            let api = auth.map(|auth| http::Api {
                approvals,
                auth,
                tracked: Arc::new(
                    TargetImages::new(vec![target], checks.clone()).with_registry(registry),
                ),
            });
            if api.is_none() {
                info!("{}", keel_api::env::API_OFF);
            }
            let listener = TcpListener::bind(args.listen)
                .await
                .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?;
            Some((listener, http::router(api)))
        };
        Ok(App {
            pipeline,
            poller,
            checks,
            server,
        })
    }

    /// With `--once`, one pass: 0, or 1 when anything failed. Otherwise serves and polls
    /// until SIGTERM or ctrl-c.
    async fn run(mut self, args: &Args) -> ExitCode {
        if args.once {
            return self.pass(Utc::now()).await.exit_code();
        }
        // One signal stops both the server and the polls; a pass under way ends first, so
        // that no push is cut in half.
        let shutdown = Shutdown::on_signal();
        let server = self.server.take();
        let passes = shutdown.poll(&self.poller, |_| args.interval, |now| self.pass(now));
        match shutdown.run(server, passes).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(%e, "HTTP server failed");
                ExitCode::FAILURE
            }
        }
    }

    /// A pass at `now` over the references that are due, and those seen for the first time;
    /// recorded for the dashboard, and logged.
    async fn pass(&self, now: DateTime<Utc>) -> RunReport {
        let PollPass { report, covered } = self.poller.pass(&self.pipeline, now).await;
        self.checks.record(&report, &covered, now);
        log(&report);
        report
    }
}

/// The repository to update, read from the flags and the `KEEL_*` variables as every
/// keel-git program reads them (`keel_git::env::GitArgs`).
fn git_target(args: &Args) -> Result<Arc<dyn Target>, String> {
    let builder = args
        .git
        .to_builder()
        .map_err(|e| format!("cannot set up the Git target: {e}"))?;
    Ok(Arc::new(builder.build()))
}

/// The poll schedules: Keel's `POLL_DEFAULTSCHEDULE` for `trigger: poll` without a schedule;
/// `--interval` for the references that are not poll-triggered (no webhook reaches this
/// program).
fn scheduler(args: &Args) -> Result<PollScheduler, String> {
    let default =
        default_poll_schedule(|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    let interval =
        Schedule::every(args.interval).map_err(|e| format!("invalid --interval: {e}"))?;
    Ok(PollScheduler::new()
        .with_default_schedule(default.unwrap_or_default())
        .with_unpolled_schedule(interval))
}

/// The registry client, configured as every keel-rs program's (`DOCKER_CONFIG`,
/// `KEEL_INSECURE_REGISTRIES`...).
fn registry() -> Result<Arc<dyn Registry>, String> {
    // No tag list outlives the pass that read it (each pass lists a repository once): a
    // pass every few seconds must see a tag pushed a second ago, not one cached for 30 s.
    let registry = RegistryClientBuilder::from_env()
        .map(|b| b.with_cache_ttl(Duration::ZERO))
        .and_then(|b| b.build())
        .map_err(|e| format!("cannot set up the registry client: {e}"))?;
    Ok(Arc::new(registry))
}

/// The pipeline over `target` and `registry`, with the notifiers of Keel's variables on it
/// and on `approvals`, which then holds the updates that need votes; and those approvals,
/// for the API.
fn pipeline(
    args: &Args,
    registry: Arc<dyn Registry>,
    target: Arc<dyn Target>,
    approvals: Approvals,
) -> Result<(Pipeline, Approvals), String> {
    let notifiers = keel_notify::from_env(|name| std::env::var(name).ok())?;
    for notifier in &notifiers {
        info!(notifier = notifier.name(), "notifying");
    }
    let approvals = approvals.with_notifiers(notifiers.iter().cloned());
    let pipeline = Pipeline::new(registry)
        .with_target(target)
        .with_dry_run(args.dry_run)
        .with_notifiers(notifiers)
        .with_approvals(approvals.clone());
    Ok((pipeline, approvals))
}

/// Logs what a pass did, and prints the diffs of a dry run on stdout.
fn log(report: &RunReport) {
    report.log("poll");
    for diff in report.previews.values() {
        println!("{diff}");
    }
}

#[cfg(test)]
mod tests {
    use keel_testsupport::cli::CommandLine;

    use super::*;

    /// What every command line of these tests starts with: `--repo` is required.
    const CLI: CommandLine<Args> = CommandLine::new(&["keel-gitops", "--repo", "fleet"]);

    #[test]
    fn flags_are_consistent() {
        CLI.assert_consistent();
    }

    #[test]
    fn defaults_and_the_http_flags() {
        let args = CLI.parse(&[]).unwrap();
        assert_eq!(args.listen, "0.0.0.0:9300".parse::<SocketAddr>().unwrap());
        assert_eq!(args.approvals_file, None);
        assert_eq!(args.interval, Duration::from_secs(300));
        let args = CLI
            .parse(&[
                "--listen",
                "127.0.0.1:8081",
                "--approvals-file",
                "approvals.redb",
            ])
            .unwrap();
        assert_eq!(args.listen, "127.0.0.1:8081".parse::<SocketAddr>().unwrap());
        assert_eq!(args.approvals_file, Some(PathBuf::from("approvals.redb")));
    }

    #[test]
    fn bad_values_name_their_flag() {
        CLI.assert_refused(&[
            (&["--listen", "localhost"][..], "--listen"),
            (&["--listen", "127.0.0.1:99999"], "--listen"),
            (&["--interval", "5x"], "--interval"),
        ]);
    }

    #[test]
    fn the_repository_flags_are_keel_gits() {
        let args = CLI
            .parse(&["--ssh-key", "id", "--author", "Keel <keel@example.com>"])
            .unwrap();
        assert_eq!(args.git.var(keel_git::env::REPO).as_deref(), Some("fleet"));
        assert_eq!(args.git.var(keel_git::env::BRANCH).as_deref(), Some("main"));
        assert_eq!(args.git.var(keel_git::env::SSH_KEY).as_deref(), Some("id"));
        // `--repo` stays required here (unless `KEEL_REPO` sets it).
        if std::env::var_os(keel_git::env::REPO).is_none() {
            let e = Args::try_parse_from(["keel-gitops"]).unwrap_err();
            assert!(e.to_string().contains("--repo"), "{e}");
        }
    }
}
