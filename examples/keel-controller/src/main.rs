//! `keel-controller`: a Keel-compatible controller built from keel-rs. It tracks the
//! Deployments, StatefulSets, DaemonSets and CronJobs that carry Keel's `keel.sh/*`
//! annotations or labels, polls their registries on their `keel.sh/pollSchedule`, takes
//! Keel's webhooks, holds updates that need approvals, patches workloads and notifies.
//!
//! ```text
//! KEEL_WEBHOOK_TOKEN=... keel-controller --listen 0.0.0.0:9300
//! curl -X POST 'http://localhost:9300/v1/webhooks/native?token=...' \
//!      -d '{"name": "ghcr.io/acme/web", "tag": "1.4.2"}'
//! ```
//!
//! - The cluster comes from `KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
//! - Registry credentials: the workloads' pull secrets (`imagePullSecrets`,
//!   `keel.sh/imagePullSecret`), then Docker's `config.json` (`$DOCKER_CONFIG`).
//! - Webhook credentials come from the environment (never from flags, which other users of
//!   the machine can read): see `HttpConfig::with_env`. Without them for every endpoint the
//!   controller does not start, unless `--unsafe-unauthenticated-webhooks` says to serve the
//!   open ones anyway (Keel's behaviour, for a migration). Notifiers and the approvals API
//!   credentials come from the environment too: see `keel_controller::setup`.
//! - Images with `keel.sh/trigger: poll` and no `keel.sh/pollSchedule` poll on Keel's
//!   `POLL_DEFAULTSCHEDULE` (default `@every 1m`); a value that is not a schedule stops the
//!   start. A workload applied to the cluster is looked at when its watch event arrives.
//! - With several replicas, one leads (a `Lease`) and only it polls and applies; the others
//!   answer 503 on `/readyz`, so a Service sends webhooks to the leader.
//! - With `--helm` (or Keel's `HELM_PROVIDER=true`), Helm releases whose values carry Keel's
//!   `keel:` block are tracked beside the workloads (keel-helm), with the same polling,
//!   webhooks, approvals and notifications; updates run `helm upgrade` with the deployed
//!   chart. The `helm` binary (on `PATH`, or `--helm-binary`) is checked at start-up.
//! - With `--argocd`, Argo CD Applications configured by Argo CD Image Updater's annotations
//!   (`argocd-image-updater.argoproj.io/*`) or selected by its 1.x `ImageUpdater` objects
//!   are tracked too (keel-argocd), in the namespaces
//!   of `--argocd-namespace` (default: all), polled on the default schedule; updates patch
//!   the Application's Helm parameters or Kustomize images (write-back `argocd`), or are
//!   committed to its Git repository (write-back `git`, cloned under
//!   `--argocd-git-workdir`, with Argo CD's repository credentials or the Secret the
//!   annotation names). The pull secrets the annotations name are used for their image's
//!   registry only.
//! - With `--flux`, the controller does the jobs of Flux's image-reflector-controller and
//!   image-automation-controller (keel-flux): it scans the registries of the
//!   `ImageRepository` objects in the namespaces of `--namespaces`, writes the tag each
//!   `ImagePolicy` selects into its status, and runs the `ImageUpdateAutomation`s, pushing
//!   the choices to the setter markers of their Git repositories, as Flux does.
//! - The approvals API (`/api/v1/approvals`, `/api/v1/audit`) is served when credentials
//!   are configured; approval requests live in ConfigMaps of the controller's namespace
//!   (shared by replicas), in an embedded file, or in memory (`--approval-store`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use clap::{ArgAction, Parser};
use keel_api::Shutdown;
use keel_api::dashboard::{Checks, DashboardConfig, TargetImages};
use keel_argocd::ArgoCdTarget;
use keel_controller::flux::FluxJobs;
use keel_controller::http::{self, HttpConfig};
use keel_controller::metrics::Metrics;
use keel_controller::setup;
use keel_controller::worker::Worker;
use keel_core::approval::{ApprovalStore, Approvals, MemoryApprovalStore, RedbApprovalStore};
use keel_core::registry::CredentialChain;
use keel_core::trigger::{PollScheduler, default_poll_schedule, parse_interval};
use keel_core::{Pipeline, Target, UpdatePlan};
use keel_flux::{Automation, NamespaceScope, Reflector};
use keel_helm::HelmTarget;
use keel_k8s::{
    KubeApprovalStore, KubeTarget, LeaderElector, Leadership, PullSecrets, RolloutVerdict,
};
use keel_registry::{RegistryClient, RegistryClientBuilder};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Runs Keel's webhook endpoints, polling, approvals and metrics over a Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "keel-controller", version, about)]
struct Args {
    /// Where the HTTP server listens.
    #[arg(long, default_value = "0.0.0.0:9300", env = "KEEL_LISTEN")]
    listen: SocketAddr,

    /// Serve webhook endpoints that have no credentials (KEEL_WEBHOOK_TOKEN and the like)
    /// to anyone, as Keel does. Unsafe: whoever reaches the port can trigger updates. Without
    /// it, the controller refuses to start when an endpoint is open.
    #[arg(long, env = "KEEL_UNSAFE_UNAUTHENTICATED_WEBHOOKS")]
    unsafe_unauthenticated_webhooks: bool,

    /// The largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, env = "KEEL_WEBHOOK_BODY_LIMIT")]
    body_limit: usize,

    /// How many pushes may wait for the pipeline before webhooks get 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,

    /// How often to look for newly deployed images when nothing is due: `30s`, `5m`.
    /// `/healthz` answers 503 when no pass completed within 3 × this interval (or within
    /// --pass-timeout plus this interval, when that is longer).
    #[arg(long, default_value = "1m", value_parser = parse_interval)]
    resync: Duration,

    /// Cut off a pipeline pass that runs longer than this (`2m`, `10m`; default: twice
    /// --resync, at least 1m). The failure is logged and counted in `keel_pass_failures_total`, and the
    /// next pass runs as usual; a pass that panics is treated the same way.
    #[arg(long, value_parser = parse_interval, env = "KEEL_PASS_TIMEOUT")]
    pass_timeout: Option<Duration>,

    /// Show what would change, never apply.
    #[arg(long)]
    dry_run: bool,

    /// Watch only these namespaces (comma-separated; default: all).
    #[arg(long, value_delimiter = ',', env = "KEEL_NAMESPACES")]
    namespaces: Vec<String>,

    /// Watch only workloads with these labels (`key=value,...`).
    #[arg(long, env = "KEEL_LABEL_SELECTOR")]
    label_selector: Option<String>,

    /// Write `image@sha256:...` rather than the tag when the update carries a digest.
    #[arg(long, env = "KEEL_PIN_DIGESTS")]
    pin_digests: bool,

    /// The controller's own namespace: its Lease and its approval ConfigMaps.
    #[arg(long, default_value = "keel", env = "POD_NAMESPACE")]
    controller_namespace: String,

    /// Elect a leader among replicas on a Lease; only the leader polls and applies.
    #[arg(long, default_value_t = true, action = ArgAction::Set, env = "KEEL_LEADER_ELECT")]
    leader_elect: bool,

    /// The Lease's name.
    #[arg(long, default_value = "keel-controller")]
    lease_name: String,

    /// This replica's name in the Lease (default: the host name, i.e. the pod's name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Follow each applied update's rollout and restore the previous image when it is not
    /// available within this time (`5m`, `15m`); off by default.
    #[arg(long, value_parser = parse_interval, env = "KEEL_ROLLBACK_AFTER")]
    rollback_after: Option<Duration>,

    /// Where approval requests and the audit log live: `kubernetes` (ConfigMaps in the
    /// controller's namespace, shared by replicas), `file:PATH` (an embedded database) or
    /// `memory` (lost on restart).
    #[arg(long, default_value = "kubernetes", env = "KEEL_APPROVAL_STORE")]
    approval_store: String,

    /// Track Helm releases too (Keel's Helm provider): releases whose values carry a `keel:`
    /// block, in the namespaces of --namespaces.
    #[arg(long, env = "HELM_PROVIDER")]
    helm: bool,

    /// The `helm` binary the Helm provider runs (default: `helm` on PATH).
    #[arg(long, value_name = "PATH", env = "KEEL_HELM_BINARY", requires = "helm")]
    helm_binary: Option<PathBuf>,

    /// Track Argo CD Applications configured by Argo CD Image Updater's annotations, and
    /// update them with its `argocd` or `git` write-back.
    #[arg(long, env = "KEEL_ARGOCD")]
    argocd: bool,

    /// Do the jobs of Flux's image-reflector-controller and image-automation-controller:
    /// scan the `ImageRepository` objects of --namespaces, write the tag each `ImagePolicy`
    /// selects into its status, and push it to the markers of each `ImageUpdateAutomation`.
    #[arg(long, env = "KEEL_FLUX")]
    flux: bool,

    /// How often the Flux reflector looks for objects that are due (each is scanned on its
    /// own `spec.interval`): `5s`, `30s`.
    #[arg(long, default_value = "10s", value_parser = parse_interval, requires = "flux")]
    flux_tick: Duration,

    /// Namespaces of the Argo CD Applications to track (repeat or comma-separate; default:
    /// all).
    #[arg(long = "argocd-namespace", value_delimiter = ',', requires = "argocd")]
    argocd_namespaces: Vec<String>,

    /// Where the `git` write-back of Argo CD Applications clones their repositories, one
    /// directory each (default: `keel-argocd-git` in the system's temporary directory); it
    /// must be writable (an `emptyDir` volume in a read-only container).
    #[arg(
        long,
        value_name = "DIR",
        env = "KEEL_ARGOCD_GIT_WORKDIR",
        requires = "argocd"
    )]
    argocd_git_workdir: Option<PathBuf>,
}

/// The targets the controller updates: the cluster's workloads, its Helm releases with
/// `--helm`, and its Argo CD Applications with `--argocd`.
#[derive(Clone)]
struct Targets {
    kube: Arc<KubeTarget>,
    helm: Option<Arc<HelmTarget>>,
    argocd: Option<Arc<ArgoCdTarget>>,
}

impl Targets {
    /// Every target, for the pipeline and listings.
    fn all(&self) -> Vec<Arc<dyn Target>> {
        let mut all: Vec<Arc<dyn Target>> = vec![self.kube.clone()];
        if let Some(helm) = &self.helm {
            all.push(helm.clone());
        }
        if let Some(argocd) = &self.argocd {
            all.push(argocd.clone());
        }
        all
    }

    /// Marked changed when either target's watches see a change.
    fn changes(&self) -> watch::Receiver<()> {
        let Some(helm) = &self.helm else {
            return self.kube.changes();
        };
        let (tx, rx) = watch::channel(());
        for mut source in [self.kube.changes(), helm.changes()] {
            let tx = tx.clone();
            tokio::spawn(async move {
                while source.changed().await.is_ok() {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
        rx
    }

    /// Follows the rollout `plan` started, in whichever target applied it.
    async fn verify_rollout(
        &self,
        plan: &UpdatePlan,
        deadline: Duration,
    ) -> Result<RolloutVerdict, keel_core::Error> {
        match (&self.helm, &self.argocd) {
            (Some(helm), _) if plan.target == helm.name() => {
                helm.verify_rollout(plan, deadline).await
            }
            // Argo CD syncs the Application; its rollout is Argo CD's to follow.
            (_, Some(argocd)) if plan.target == argocd.name() => Ok(RolloutVerdict::NoRollout),
            _ => self.kube.verify_rollout(plan, deadline).await,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    keel_api::start_then_run(Controller::start(&args), |controller| controller.run(&args)).await
}

/// The parts of a started controller, wired together.
struct Controller {
    config: HttpConfig,
    worker: Worker,
    metrics: Arc<Metrics>,
    approvals: Approvals,
    api_auth: Option<keel_api::ApiAuth>,
    leadership: Option<Leadership>,
    /// What the dashboard lists.
    tracked: Arc<TargetImages>,
    /// The Flux reflector and automation, with `--flux`.
    flux: Option<Arc<FluxJobs>>,
}

impl Controller {
    /// Reads the settings, reaches the cluster, and builds the pipeline, the worker and the
    /// leader election; the first failure is the error.
    async fn start(args: &Args) -> Result<Controller, String> {
        let scheduler = poll_scheduler()?;
        let config = http_config(args)?;
        let client = kube::Client::try_default().await.map_err(|e| {
            format!(
                "cannot reach the Kubernetes API (KUBECONFIG, ~/.kube/config or the in-cluster \
                 service account): {e}"
            )
        })?;
        let secrets = pull_secrets(args, &client);
        let targets = Targets {
            kube: Arc::new(kube_target(args, &client, secrets.clone()).await?),
            helm: match args.helm {
                true => Some(Arc::new(helm_target(args, &client, secrets.clone()).await?)),
                false => None,
            },
            argocd: args.argocd.then(|| Arc::new(argocd_target(args, &client))),
        };
        // The pull secrets an Application's annotations name, for its image only, before
        // the workloads' pull secrets.
        let mut credentials = CredentialChain::default();
        if let Some(argocd) = &targets.argocd {
            credentials = credentials.with(Arc::new(argocd.credentials()));
        }
        let credentials = credentials.with(Arc::new(secrets));
        let store = approval_store(args, &client)?;
        // A webhook must see the tag it announces: no tag-list cache across passes (each
        // pass still lists a repository once).
        let registry = RegistryClientBuilder::from_env()
            .map(|b| {
                b.with_cache_ttl(Duration::ZERO)
                    .with_credential_source(Arc::new(credentials))
            })
            .and_then(|b| b.build())
            .map_err(|e| format!("cannot set up the registry client: {e}"))?;
        let (pipeline, approvals) = pipeline(args, &registry, &targets, store)?;
        // An image's dashboard page checks it as a pass would, with the same credentials.
        let checker: Arc<dyn keel_core::Registry> = Arc::new(registry.clone());
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
        // The gauge asks the store at each scrape, so it counts what is really pending.
        let gauge = approvals.clone();
        metrics.set_pending_approvals(move || {
            let approvals = gauge.clone();
            async move { approvals.pending().await }
        });
        let api_auth = setup::api_auth_from_env(|name| std::env::var(name).ok())?;
        let leadership = leadership(args, &client)?;
        let checks = Arc::new(Checks::default());
        let tracked =
            Arc::new(TargetImages::new(targets.all(), checks.clone()).with_registry(checker));
        let worker = worker(
            args,
            pipeline,
            &metrics,
            scheduler,
            &targets,
            leadership.as_ref(),
        )
        .with_checks(checks);
        Ok(Controller {
            config,
            worker,
            metrics,
            approvals,
            api_auth,
            leadership,
            tracked,
            flux: match args.flux {
                true => Some(Arc::new(flux_jobs(args, &client)?)),
                false => None,
            },
        })
    }

    /// Serves the webhooks, probes, metrics and approvals API and runs the worker until a
    /// signal stops both; then hands the lease over.
    async fn run(self, args: &Args) -> std::process::ExitCode {
        let worker = Arc::new(self.worker);
        let config = self
            .config
            .with_liveness(worker.supervisor().clone(), worker.health_window());
        info!(
            pass_timeout_seconds = worker.pass_timeout().as_secs(),
            health_window_seconds = worker.health_window().as_secs(),
            "passes are supervised"
        );
        // One signal stops both the server and the worker.
        let shutdown = Shutdown::on_signal();
        let (pushes, queue) = tokio::sync::mpsc::channel(args.queue.max(1));
        let worker_task = tokio::spawn(worker.run(queue, shutdown.wait()));
        let flux_task = self.flux.map(|jobs| {
            let leading = self.leadership.as_ref().map(Leadership::subscribe);
            tokio::spawn(keel_controller::flux::run_until(
                jobs,
                leading,
                args.flux_tick,
                shutdown.wait(),
            ))
        });

        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                error!(listen = %args.listen, %e, "cannot listen");
                return std::process::ExitCode::from(2);
            }
        };
        info!(listen = %args.listen, "serving webhooks, /healthz and /metrics");
        let router = router(
            http::router(config, self.metrics, pushes),
            self.leadership.as_ref(),
            self.approvals,
            self.api_auth,
            self.tracked,
        );
        if let Err(e) = http::serve(listener, router, shutdown.wait()).await {
            error!(%e, "HTTP server failed");
            return std::process::ExitCode::FAILURE;
        }
        if let Err(e) = worker_task.await {
            error!(%e, "worker failed");
            return std::process::ExitCode::FAILURE;
        }
        if let Some(Err(e)) = match flux_task {
            Some(task) => Some(task.await),
            None => None,
        } {
            error!(%e, "Flux jobs failed");
            return std::process::ExitCode::FAILURE;
        }
        if let Some(leadership) = self.leadership {
            // Hand the lease over at once rather than after it expires.
            leadership.shutdown().await;
        }
        std::process::ExitCode::SUCCESS
    }
}

/// Keel's POLL_DEFAULTSCHEDULE: the schedule of images polled without a
/// keel.sh/pollSchedule of their own (default `@every 1m`).
fn poll_scheduler() -> Result<PollScheduler, String> {
    let schedule =
        default_poll_schedule(|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    Ok(PollScheduler::new().with_default_schedule(schedule.unwrap_or_default()))
}

/// The webhook server's settings; open endpoints stop the start unless declared unsafe.
fn http_config(args: &Args) -> Result<HttpConfig, String> {
    let config = HttpConfig::new()
        .with_body_limit(args.body_limit)
        .with_env(|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())?;
    if let Some(problem) = config.open_endpoints_error() {
        if !args.unsafe_unauthenticated_webhooks {
            return Err(problem.to_string());
        }
        let names: Vec<&str> = config.open_sources().iter().map(|s| s.as_str()).collect();
        warn!(
            endpoints = ?names,
            "--unsafe-unauthenticated-webhooks: webhook endpoints accept requests without credentials"
        );
    }
    Ok(config)
}

/// The pull secrets of the namespaces of `--namespaces` (all without it).
fn pull_secrets(args: &Args, client: &kube::Client) -> PullSecrets {
    if args.namespaces.is_empty() {
        PullSecrets::all_namespaces(client.clone())
    } else {
        PullSecrets::in_namespaces(client.clone(), args.namespaces.clone())
    }
}

/// The workloads in the namespaces and with the labels the flags name.
async fn kube_target(
    args: &Args,
    client: &kube::Client,
    secrets: PullSecrets,
) -> Result<KubeTarget, String> {
    let mut builder = KubeTarget::builder(client.clone())
        .with_pin_digests(args.pin_digests)
        .with_pull_secrets(secrets);
    builder = if args.namespaces.is_empty() {
        builder.all_namespaces()
    } else {
        builder.with_namespaces(args.namespaces.clone())
    };
    if let Some(selector) = &args.label_selector {
        builder = builder.with_label_selector(selector);
    }
    builder
        .build()
        .await
        .map_err(|e| format!("cannot watch the workloads: {e}"))
}

/// The Helm releases in the namespaces the flags name, with the `helm` binary checked now.
async fn helm_target(
    args: &Args,
    client: &kube::Client,
    secrets: PullSecrets,
) -> Result<HelmTarget, String> {
    let mut builder = HelmTarget::builder(client.clone())
        .with_pin_digests(args.pin_digests)
        .with_pull_secrets(secrets);
    if !args.namespaces.is_empty() {
        builder = builder.with_namespaces(args.namespaces.clone());
    }
    if let Some(path) = &args.helm_binary {
        builder = builder.with_helm(keel_helm::HelmBinary::at(path));
    }
    let target = builder
        .build()
        .await
        .map_err(|e| format!("cannot start the Helm provider: {e}"))?;
    info!(helm = target.helm().version(), "tracking Helm releases");
    Ok(target)
}

/// The Flux reflector and automation over the namespaces of `--namespaces` (all without
/// it); the reflector with pull secrets and a registry client of its own (the workloads'
/// sync would replace its secret usage, and tag lists must not be shared across
/// credentials).
fn flux_jobs(args: &Args, client: &kube::Client) -> Result<FluxJobs, String> {
    let namespaces = if args.namespaces.is_empty() {
        NamespaceScope::all()
    } else {
        NamespaceScope::only(args.namespaces.clone())
    };
    let secrets = pull_secrets(args, client);
    let registry = RegistryClientBuilder::from_env()
        .map(|b| {
            b.with_cache_ttl(Duration::ZERO)
                .with_credential_source(Arc::new(secrets.clone()))
        })
        .and_then(|b| b.build())
        .map_err(|e| format!("cannot set up the Flux reflector's registry client: {e}"))?;
    info!(namespaces = ?args.namespaces, "doing Flux's image automation");
    Ok(FluxJobs {
        reflector: Reflector::new(client.clone(), namespaces.clone(), Arc::new(registry))
            .with_pull_secrets(secrets),
        automation: Automation::new(client.clone(), namespaces),
    })
}

/// The Argo CD Applications in the namespaces `--argocd-namespace` names (all without it).
fn argocd_target(args: &Args, client: &kube::Client) -> ArgoCdTarget {
    let workdir = args
        .argocd_git_workdir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("keel-argocd-git"));
    let target = args.argocd_namespaces.iter().fold(
        ArgoCdTarget::new(client.clone())
            .with_image_updaters(true)
            .with_git_workdir(&workdir),
        |t, ns| t.with_namespace(ns),
    );
    info!(namespaces = ?args.argocd_namespaces, git_workdir = %workdir.display(), "tracking Argo CD Applications");
    target
}

/// The pipeline over the cluster, with the notifiers and the approvals manager (which tells
/// the same notifiers).
fn pipeline(
    args: &Args,
    registry: &RegistryClient,
    targets: &Targets,
    store: Arc<dyn ApprovalStore>,
) -> Result<(Pipeline, Approvals), String> {
    let notifiers = setup::notifiers_from_env(|name| std::env::var(name).ok())?;
    for notifier in &notifiers {
        info!(notifier = notifier.name(), "notifying");
    }
    let approvals = Approvals::new(store).with_notifiers(notifiers.iter().cloned());
    let mut pipeline = Pipeline::new(Arc::new(registry.clone()))
        .with_dry_run(args.dry_run)
        .with_notifiers(notifiers);
    for target in targets.all() {
        pipeline = pipeline.with_target(target);
    }
    Ok((pipeline.with_approvals(approvals.clone()), approvals))
}

/// This replica's part in the election on the Lease, when `--leader-elect` is on.
fn leadership(args: &Args, client: &kube::Client) -> Result<Option<Leadership>, String> {
    if !args.leader_elect {
        return Ok(None);
    }
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("keel-controller-{}", std::process::id()));
    let elector = LeaderElector::new(
        client.clone(),
        args.controller_namespace.clone(),
        args.lease_name.clone(),
        identity,
    );
    elector
        .start()
        .map(Some)
        .map_err(|e| format!("cannot start leader election: {e}"))
}

/// The worker: passes on the poll schedules, on webhooks and on watch events, only while
/// leading, with the rollout followed after each apply when `--rollback-after` is set.
fn worker(
    args: &Args,
    pipeline: Pipeline,
    metrics: &Arc<Metrics>,
    scheduler: PollScheduler,
    targets: &Targets,
    leadership: Option<&Leadership>,
) -> Worker {
    let mut worker = Worker::new(pipeline, metrics.clone())
        .with_resync(args.resync)
        .with_scheduler(scheduler)
        .with_changes(targets.changes());
    if let Some(timeout) = args.pass_timeout {
        worker = worker.with_pass_timeout(timeout);
    }
    if let Some(leadership) = leadership {
        worker = worker.with_leadership(leadership.subscribe());
    }
    if let Some(deadline) = args.rollback_after {
        let targets = targets.clone();
        worker = worker.with_on_applied(Arc::new(move |plans| {
            for plan in plans {
                let target = targets.clone();
                tokio::spawn(async move {
                    match target.verify_rollout(&plan, deadline).await {
                        Ok(RolloutVerdict::RolledBack(status)) => {
                            warn!(%plan, reason = ?status.failed_reason, "rolled back")
                        }
                        Ok(_) => info!(%plan, "rolled out"),
                        Err(e) => warn!(%plan, error = %e, "cannot follow the rollout"),
                    }
                });
            }
        }));
    }
    worker
}

/// The controller's routes around the webhook server's: `/readyz` (ready while leading, or
/// always without an election) and the approvals API under `/api` when it has credentials.
fn router(
    router: axum::Router,
    leadership: Option<&Leadership>,
    approvals: Approvals,
    api_auth: Option<keel_api::ApiAuth>,
    tracked: Arc<TargetImages>,
) -> axum::Router {
    let ready = leadership.map(|l| l.subscribe());
    let router = router.route(
        "/readyz",
        get(move || {
            let leading = ready.as_ref().is_none_or(|r| *r.borrow());
            async move {
                if leading {
                    (StatusCode::OK, "ok\n")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "standby: another replica leads\n",
                    )
                }
            }
        }),
    );
    match api_auth {
        Some(auth) => {
            let dashboard = DashboardConfig {
                tracked: Some(tracked),
                ..DashboardConfig::new(approvals, auth)
            };
            info!("serving the approvals API under /api and the dashboard under /ui");
            router.merge(keel_api::dashboard::router_with_api(dashboard))
        }
        None => {
            info!("{}", keel_api::env::API_OFF);
            router
        }
    }
}

/// The approval store `--approval-store` names.
fn approval_store(args: &Args, client: &kube::Client) -> Result<Arc<dyn ApprovalStore>, String> {
    match args.approval_store.as_str() {
        "kubernetes" => Ok(Arc::new(KubeApprovalStore::new(
            client.clone(),
            args.controller_namespace.clone(),
        ))),
        "memory" => Ok(Arc::new(MemoryApprovalStore::new())),
        other => match other.strip_prefix("file:") {
            Some(path) if !path.is_empty() => RedbApprovalStore::open(PathBuf::from(path))
                .map(|s| Arc::new(s) as Arc<dyn ApprovalStore>)
                .map_err(|e| format!("invalid --approval-store {other:?}: {e}")),
            _ => Err(format!(
                "invalid --approval-store {other:?}: expected kubernetes, memory or file:PATH"
            )),
        },
    }
}
