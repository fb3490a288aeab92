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
//! ```text
//! keel-gitops --repo https://git.example.com/org/fleet.git --branch main --interval 5m
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use keel_core::Pipeline;
use keel_core::trigger::{
    PollPass, PollScheduler, Poller, Schedule, default_poll_schedule, parse_interval,
};
use keel_git::{GitTargetBuilder, env};
use keel_registry::RegistryClientBuilder;
use tracing::{error, info, warn};

/// Keeps the images of a Git repository up to date.
#[derive(Debug, Parser)]
#[command(name = "keel-gitops", version, about)]
struct Args {
    /// The repository URL or local path.
    #[arg(long, env = "KEEL_REPO")]
    repo: String,

    /// The branch to update.
    #[arg(long, default_value = "main", env = "KEEL_BRANCH")]
    branch: String,

    /// Push to this branch instead (created from --branch when missing).
    #[arg(long, env = "KEEL_PUSH_BRANCH")]
    push_branch: Option<String>,

    /// Scan only these directories (repeatable).
    #[arg(long = "path")]
    paths: Vec<String>,

    /// How often to look for updates: `30s`, `5m`, `1h`.
    #[arg(long, default_value = "5m", value_parser = parse_interval, env = "KEEL_INTERVAL")]
    interval: Duration,

    /// Run one pass and exit.
    #[arg(long)]
    once: bool,

    /// Show what would change, never push.
    #[arg(long)]
    dry_run: bool,

    /// HTTPS user for the repository; the token comes from `KEEL_GIT_PASSWORD`. (An SSH key
    /// comes from `KEEL_SSH_KEY`, the commit author from `KEEL_GIT_AUTHOR`, the working copy's
    /// place from `KEEL_WORKDIR`: see `keel_git::env`.)
    #[arg(long, env = "KEEL_GIT_USERNAME")]
    git_username: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    // The flags stand for their `KEEL_*` variables; the rest (password, SSH key, author,
    // working copy) is read from the environment as every keel-git program reads it.
    let flag = |name: &str| match name {
        env::REPO => Some(args.repo.clone()),
        env::BRANCH => Some(args.branch.clone()),
        env::PUSH_BRANCH => args.push_branch.clone(),
        env::PATHS => (!args.paths.is_empty()).then(|| args.paths.join(",")),
        env::GIT_USERNAME => args.git_username.clone(),
        _ => None,
    };
    let target =
        match GitTargetBuilder::from_lookup(|name| flag(name).or_else(|| std::env::var(name).ok()))
        {
            Ok(target) => target,
            Err(e) => {
                error!(%e, "cannot set up the Git target");
                return std::process::ExitCode::from(2);
            }
        };
    // Keel's POLL_DEFAULTSCHEDULE for `trigger: poll` without a schedule; `--interval` for
    // the references that are not poll-triggered (no webhook reaches this program).
    let scheduler = match (
        default_poll_schedule(|name| std::env::var(name).ok()),
        Schedule::every(args.interval),
    ) {
        (Ok(default), Ok(interval)) => PollScheduler::new()
            .with_default_schedule(default.unwrap_or_default())
            .with_unpolled_schedule(interval),
        (Err(e), _) | (_, Err(e)) => {
            error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let poller = Poller::new(scheduler);
    // No tag list outlives the pass that read it (each pass lists a repository once): a
    // pass every few seconds must see a tag pushed a second ago, not one cached for 30 s.
    let registry = match RegistryClientBuilder::from_env()
        .map(|b| b.with_cache_ttl(Duration::ZERO))
        .and_then(|b| b.build())
    {
        Ok(r) => r,
        Err(e) => {
            error!(%e, "cannot set up the registry client");
            return std::process::ExitCode::from(2);
        }
    };
    let pipeline = Pipeline::new(Arc::new(registry))
        .with_target(Arc::new(target.build()))
        .with_dry_run(args.dry_run);

    loop {
        let now = Utc::now();
        let PollPass { report, .. } = poller.pass(&pipeline, now).await;
        info!(
            tracked = report.tracked,
            planned = report.planned.len(),
            applied = report.applied.len(),
            failures = report.failures.len(),
            "pass done"
        );
        for failure in &report.failures {
            warn!(id = ?failure.id, error = %failure.error, "update failed");
        }
        for diff in report.previews.values() {
            println!("{diff}");
        }
        if args.once {
            return if report.failures.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            };
        }
        // The next reference due, and one interval on at the latest, to find new ones.
        let wake = poller.next_pass(Some(now), args.interval, now);
        let sleep = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = tokio::signal::ctrl_c() => {
                info!("interrupted; stopping");
                return std::process::ExitCode::SUCCESS;
            }
        }
    }
}
