//! `keel-docker`: keeps the containers of a Docker host up to date, in Watchtower's place.
//!
//! It takes Watchtower's flags and environment variables and reads Watchtower's labels, so a
//! Watchtower deployment moves over by changing the image:
//!
//! ```text
//! docker run -d --name keel-docker --restart unless-stopped \
//!   -v /var/run/docker.sock:/var/run/docker.sock \
//!   -v $HOME/.docker/config.json:/config.json:ro -e DOCKER_CONFIG=/ \
//!   -l com.centurylinklabs.watchtower=true \
//!   keel-docker --interval 300 --cleanup
//! ```
//!
//! (`keel-docker` there stands for an image holding this binary, which the project does not
//! publish; the binary runs just as well on the host, next to the engine. The
//! `com.centurylinklabs.watchtower=true` label keeps it from updating itself; the
//! `config.json` gives it the registry credentials of the host's users.)
//!
//! - **What is tracked**: every running container, or only those labelled
//!   `com.centurylinklabs.watchtower.enable=true` with `--label-enable`; `...enable=false`
//!   always opts out; container names given as arguments and `--scope` narrow it further.
//! - **How**: a container without a `keel.sh/policy` label follows its own tag to new
//!   digests, as under Watchtower; one labelled `keel.sh/policy: minor` (or any keel-rs
//!   policy) moves to new versions by that policy, with Keel's other `keel.sh/*` labels
//!   (`approvals`, `pollSchedule`, `notify`...).
//! - **When**: once at the start, then every `--interval` seconds or on the `--schedule`
//!   (cron with seconds: `0 0 4 * * *`); a container with `keel.sh/trigger: poll` and a
//!   `keel.sh/pollSchedule` keeps its own schedule. `--run-once` checks everything once and
//!   exits: 0, or 1 when an update or the discovery failed. With `--http-api-update`,
//!   `GET`/`POST /v1/update` (with `Authorization: Bearer <--http-api-token>`) runs a pass,
//!   optionally only for `?image=repo1,repo2`, and periodic polls stop unless
//!   `--http-api-periodic-polls` says otherwise, as in Watchtower.
//! - **Updates** pull the new image (with the credentials of `config.json` for its registry
//!   only), recreate the container with the same configuration under the same name, and keep
//!   the old one until the new one runs (and is healthy, when it has a healthcheck): otherwise
//!   the old one runs again and that version is avoided (in `--state-file`, across restarts).
//!   `--monitor-only` reports and notifies, and changes nothing.
//! - **Notifications and approvals**: Keel's variables (`SLACK_TOKEN`, `WEBHOOK_ENDPOINT`,
//!   `NOTIFICATION_LEVEL`...; see `keel_notify::env`); containers labelled
//!   `keel.sh/approvals: N` wait for N votes on the approvals API, served on `--listen` when
//!   `KEEL_API_AUTH` or `BASIC_AUTH_USER`/`BASIC_AUTH_PASSWORD` are set (see `keel_api::env`).
//! - The registry is read as every keel-rs program reads it: `DOCKER_CONFIG`,
//!   `KEEL_INSECURE_REGISTRIES` (`127.0.0.1` and `localhost` always may use plain HTTP).
//!
//! A bad flag or variable stops the start naming it, with exit code 2.

mod credentials;
mod http;
mod updater;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use clap::builder::BoolishValueParser;
use keel_api::Shutdown;
use keel_api::dashboard::{Checks, TargetImages};
use keel_core::approval::{self, Approvals};
use keel_core::trigger::{PollScheduler, Poller, Schedule, parse_interval};
use keel_core::{Pipeline, Secret, Target};
use keel_docker::DockerTarget;
use keel_docker::bollard::{API_DEFAULT_VERSION, Docker};
use keel_docker::labels::Scope;
use keel_registry::RegistryClientBuilder;
use tracing::{error, info};

use crate::credentials::ConfigCredentials;
use crate::updater::Updater;

/// How long one Engine API request may take (a pull of a large image is one request).
const ENGINE_TIMEOUT_SECS: u64 = 30 * 60;

/// Keeps the containers of a Docker host up to date: Watchtower's flags and labels, with
/// keel-rs's policies, approvals and rollback.
#[derive(Debug, Parser)]
#[command(name = "keel-docker", version, about)]
struct Args {
    /// Look for updates every SECONDS (default 86400, a day).
    #[arg(
        short = 'i',
        long,
        value_name = "SECONDS",
        env = "WATCHTOWER_POLL_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "schedule"
    )]
    interval: Option<u64>,

    /// Look for updates on this cron schedule, with seconds: `0 0 4 * * *` (04:00 UTC daily).
    #[arg(
        short = 's',
        long,
        value_name = "CRON",
        env = "WATCHTOWER_SCHEDULE",
        value_parser = Schedule::parse
    )]
    schedule: Option<Schedule>,

    /// Track only containers labelled `com.centurylinklabs.watchtower.enable=true`.
    #[arg(long, env = "WATCHTOWER_LABEL_ENABLE", value_parser = BoolishValueParser::new())]
    label_enable: bool,

    /// Report and notify updates, never apply them.
    #[arg(long, env = "WATCHTOWER_MONITOR_ONLY", value_parser = BoolishValueParser::new())]
    monitor_only: bool,

    /// Remove the old image after an update when no container uses it any more.
    #[arg(short = 'c', long, env = "WATCHTOWER_CLEANUP", value_parser = BoolishValueParser::new())]
    cleanup: bool,

    /// Check every container once and exit: 0, or 1 when anything failed.
    #[arg(short = 'R', long, env = "WATCHTOWER_RUN_ONCE", value_parser = BoolishValueParser::new())]
    run_once: bool,

    /// Track only containers labelled `com.centurylinklabs.watchtower.scope=SCOPE` (`none`:
    /// those without a scope label).
    #[arg(long, env = "WATCHTOWER_SCOPE")]
    scope: Option<String>,

    /// How long a container may take to stop before it is killed, unless its own
    /// configuration says: `10s`, `1m`.
    #[arg(long, default_value = "10s", env = "WATCHTOWER_TIMEOUT", value_parser = parse_interval)]
    stop_timeout: Duration,

    /// The Docker engine: `unix:///var/run/docker.sock`, `tcp://HOST:2376`.
    #[arg(
        short = 'H',
        long,
        default_value = "unix:///var/run/docker.sock",
        env = "DOCKER_HOST"
    )]
    host: String,

    /// Talk to a TCP engine over TLS, checking its certificate (the client's key.pem,
    /// cert.pem and ca.pem are read from DOCKER_CERT_PATH, else ~/.docker).
    #[arg(long, env = "DOCKER_TLS_VERIFY", value_parser = BoolishValueParser::new())]
    tlsverify: bool,

    /// Serve `/v1/update`, which runs a pass; stops periodic polls unless
    /// --http-api-periodic-polls.
    #[arg(long, env = "WATCHTOWER_HTTP_API_UPDATE", value_parser = BoolishValueParser::new())]
    http_api_update: bool,

    /// The bearer token `/v1/update` requires (required with --http-api-update).
    #[arg(long, env = "WATCHTOWER_HTTP_API_TOKEN", hide_env_values = true)]
    http_api_token: Option<String>,

    /// Keep polling on --interval or --schedule with --http-api-update.
    #[arg(long, env = "WATCHTOWER_HTTP_API_PERIODIC_POLLS", value_parser = BoolishValueParser::new())]
    http_api_periodic_polls: bool,

    /// Where `/v1/update`, `/healthz` and the approvals API listen.
    #[arg(long, default_value = "0.0.0.0:8080", env = "KEEL_LISTEN")]
    listen: SocketAddr,

    /// Keep the versions rolled back in this JSON file, so that they stay avoided after a
    /// restart.
    #[arg(long, env = "KEEL_STATE_FILE")]
    state_file: Option<PathBuf>,

    /// How long an updated container with a healthcheck has to become healthy: `60s`.
    #[arg(long, default_value = "60s", env = "KEEL_HEALTH_TIMEOUT", value_parser = parse_interval)]
    health_timeout: Duration,

    /// How long an updated container without a healthcheck must keep running to count as
    /// started: `3s`.
    #[arg(long, default_value = "3s", env = "KEEL_STARTUP_GRACE", value_parser = parse_interval)]
    startup_grace: Duration,

    /// Keep approval requests in this file (an embedded database); default: in memory.
    #[arg(long, env = "KEEL_APPROVALS_FILE")]
    approvals_file: Option<PathBuf>,

    /// Track only these containers.
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    /// The schedule of containers without one of their own.
    fn default_schedule(&self) -> Result<Schedule, String> {
        match &self.schedule {
            Some(schedule) => Ok(schedule.clone()),
            None => Schedule::every(Duration::from_secs(self.interval.unwrap_or(86_400)))
                .map_err(|e| format!("invalid --interval: {e}")),
        }
    }

    /// Whether passes run on the schedules (Watchtower's rule: not when the HTTP API
    /// triggers them, unless told to).
    fn periodic_polls(&self) -> bool {
        !self.http_api_update || self.http_api_periodic_polls
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    keel_api::start_then_run(App::start(&args), |app| app.run(&args)).await
}

/// The parts of a started updater.
struct App {
    updater: Arc<Updater>,
    default_schedule: Schedule,
    /// The listener and the router, when something is served.
    server: Option<(tokio::net::TcpListener, axum::Router)>,
}

impl App {
    async fn start(args: &Args) -> Result<App, String> {
        let default_schedule = args.default_schedule()?;
        let update_token = match (args.http_api_update, &args.http_api_token) {
            (true, Some(token)) if !token.trim().is_empty() => Some(Secret::new(token.trim())),
            (true, _) => {
                return Err("--http-api-update needs a token: set --http-api-token or \
                            WATCHTOWER_HTTP_API_TOKEN (the endpoint is never open)"
                    .into());
            }
            (false, _) => None,
        };
        // The API version both sides speak: an older engine then ignores nothing it is sent.
        let docker = connect(args)?.negotiate_version().await.map_err(|e| {
            format!(
                "cannot reach the Docker engine at {} (--host, DOCKER_HOST): {e}",
                args.host
            )
        })?;
        let credentials = ConfigCredentials::from_env()
            .map_err(|e| format!("cannot read the Docker config (DOCKER_CONFIG): {e}"))?;
        let mut target = DockerTarget::builder(docker)
            .scope(Scope {
                label_enable: args.label_enable,
                names: args.containers.clone(),
                scope: args.scope.clone(),
                monitor_only: args.monitor_only,
            })
            .stop_timeout(args.stop_timeout)
            .startup_grace(args.startup_grace)
            .health_timeout(args.health_timeout)
            .cleanup(args.cleanup)
            .credentials(Arc::new(credentials));
        if let Some(path) = &args.state_file {
            target = target.state_file(path);
        }
        let target: Arc<dyn Target> = Arc::new(
            target
                .build()
                .map_err(|e| format!("invalid --state-file: {e}"))?,
        );
        // A pass must see a tag pushed a second ago: no tag list outlives its pass.
        let registry = RegistryClientBuilder::from_env()
            .map(|b| b.with_cache_ttl(Duration::ZERO))
            .and_then(|b| b.build())
            .map_err(|e| format!("cannot set up the registry client: {e}"))?;

        let store = approval::store_in(args.approvals_file.as_deref())
            .map_err(|e| format!("invalid --approvals-file: {e}"))?;
        let notifiers = keel_notify::from_env(|name| std::env::var(name).ok())?;
        for notifier in &notifiers {
            info!(notifier = notifier.name(), "notifying");
        }
        let approvals = Approvals::new(store).with_notifiers(notifiers.iter().cloned());
        let registry: Arc<dyn keel_core::Registry> = Arc::new(registry);
        let pipeline = Pipeline::new(registry.clone())
            .with_target(target.clone())
            .with_dry_run(args.monitor_only)
            .with_notifiers(notifiers)
            .with_approvals(approvals.clone());
        let api_auth = keel_api::auth_from_env(|name| std::env::var(name).ok())?;

        // Docker hosts have no webhooks: every container polls, on the default schedule
        // unless it has its own.
        let scheduler = PollScheduler::new()
            .with_default_schedule(default_schedule.clone())
            .with_unpolled_schedule(default_schedule.clone());
        // What the dashboard lists: the containers, with what the passes last found.
        let checks = Arc::new(Checks::default());
        let tracked =
            Arc::new(TargetImages::new(vec![target], checks.clone()).with_registry(registry));
        let updater = Arc::new(Updater::new(pipeline, Poller::new(scheduler)).with_checks(checks));

        let server = if !args.run_once && (update_token.is_some() || api_auth.is_some()) {
            if api_auth.is_none() {
                info!("{}", keel_api::env::API_OFF);
            }
            let router = http::router(
                updater.clone(),
                update_token,
                api_auth.map(|auth| (approvals, auth, tracked)),
            );
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?;
            Some((listener, router))
        } else {
            None
        };
        Ok(App {
            updater,
            default_schedule,
            server,
        })
    }

    async fn run(mut self, args: &Args) -> ExitCode {
        if args.run_once {
            return self.updater.pass(&[], "run once").await.exit_code();
        }
        // One signal stops both the server and the polls.
        let shutdown = Shutdown::on_signal();
        let server = self.server.take();
        let passes = async {
            if args.periodic_polls() {
                info!(schedule = %self.default_schedule, "polling");
                // The default schedule brings the containers started since.
                let rescan = |last: DateTime<Utc>| {
                    (self.default_schedule.next_after(last) - last)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                };
                let poller = self.updater.poller();
                shutdown
                    .poll(poller, rescan, |now| self.updater.poll(now))
                    .await;
            } else {
                info!("no periodic polls: passes run on /v1/update");
                shutdown.wait().await;
            }
        };
        match shutdown.run(server, passes).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(%e, "HTTP server failed");
                ExitCode::FAILURE
            }
        }
    }
}

/// The client of the engine `--host` names (`unix://`, `tcp://`, `http://`, `https://`);
/// over TLS with `--tlsverify` or an `https://` host.
fn connect(args: &Args) -> Result<Docker, String> {
    let host = args.host.as_str();
    let wrong = |e: keel_docker::bollard::errors::Error| format!("invalid --host {host:?}: {e}");
    let tls = args.tlsverify || host.starts_with("https://");
    if host.starts_with("unix://") {
        return Docker::connect_with_unix(host, ENGINE_TIMEOUT_SECS, API_DEFAULT_VERSION)
            .map_err(wrong);
    }
    if !(host.starts_with("tcp://") || host.starts_with("http://") || host.starts_with("https://"))
    {
        return Err(format!(
            "invalid --host {host:?}: expected unix://PATH, tcp://HOST:PORT or https://HOST:PORT"
        ));
    }
    if !tls {
        return Docker::connect_with_http(host, ENGINE_TIMEOUT_SECS, API_DEFAULT_VERSION)
            .map_err(wrong);
    }
    let dir = std::env::var_os("DOCKER_CERT_PATH")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .ok_or("--tlsverify needs DOCKER_CERT_PATH (or a home directory with .docker/)")?;
    Docker::connect_with_ssl(
        host,
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
        &dir.join("ca.pem"),
        ENGINE_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
    .map_err(|e| {
        format!(
            "cannot set up TLS to {host} with the certificates in {} (DOCKER_CERT_PATH): {e}",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use keel_testsupport::cli::CommandLine;

    use super::*;

    /// What every command line of these tests starts with.
    const CLI: CommandLine<Args> = CommandLine::new(&["keel-docker"]);

    #[test]
    fn flags_are_consistent() {
        CLI.assert_consistent();
    }

    #[test]
    fn watchtowers_defaults_and_schedules() {
        let args = CLI.parse(&[]).unwrap();
        assert_eq!(args.default_schedule().unwrap().to_string(), "@every 24h");
        assert!(args.periodic_polls());
        let args = CLI.parse(&["-i", "300", "--cleanup", "web", "db"]).unwrap();
        assert_eq!(args.default_schedule().unwrap().to_string(), "@every 5m");
        assert!(args.cleanup);
        assert_eq!(args.containers, ["web", "db"]);
        let args = CLI.parse(&["--schedule", "0 0 4 * * *"]).unwrap();
        assert_eq!(args.default_schedule().unwrap().to_string(), "0 0 4 * * *");
        let args = CLI
            .parse(&["--http-api-update", "--http-api-token", "t"])
            .unwrap();
        assert!(!args.periodic_polls());
        let args = CLI
            .parse(&[
                "--http-api-update",
                "--http-api-token",
                "t",
                "--http-api-periodic-polls",
            ])
            .unwrap();
        assert!(args.periodic_polls());
    }

    #[test]
    fn bad_values_name_their_flag() {
        CLI.assert_refused(&[
            (&["--interval", "0"][..], "--interval"),
            (&["--interval", "5m"], "--interval"),
            (&["--schedule", "0 0 25 * * *"], "--schedule"),
            (&["--stop-timeout", "10"], "--stop-timeout"),
            (&["--label-enable=maybe"], "--label-enable"),
            (&["-i", "60", "-s", "0 0 4 * * *"], "--schedule"),
        ]);
    }
}
