//! [`DockerTarget`]: discovery of the engine's tracked containers; their recreation is in
//! [`apply`].

mod apply;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptions;
use keel_core::keel_keys::{self, KeelConfig};
use keel_core::policy::{AvoidTag, Policy, PolicyOptions, PolicySpec};
use keel_core::target::{ApplyOutcome, Target, TrackedImage, Trigger, UpdatePlan};
use keel_core::{Error, ImageRef, Result, Secret, VersionPolicy};
use tracing::{debug, warn};

use crate::engine::Engine;
use crate::labels::{self, Scope};

/// The prefix of the ids of tracked containers: `container/<name>`.
const ID_PREFIX: &str = "container/";

/// What an old container is renamed to while its replacement starts: `<name>` + this +
/// the first 12 characters of its id.
const ASIDE: &str = "-keel-old-";

/// Credentials for one registry, handed to the engine for one pull.
#[derive(Clone)]
pub enum PullAuth {
    /// A user name and password (or token).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: Secret,
    },
    /// An identity (refresh) token.
    IdentityToken(Secret),
}

impl fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullAuth::Basic { username, .. } => write!(f, "Basic({username:?})"),
            PullAuth::IdentityToken(_) => f.write_str("IdentityToken"),
        }
    }
}

/// Where the target gets the credentials of a registry when it pulls: the Docker
/// `config.json` the engine's users log in with, in the application (keel-registry reads it).
#[async_trait]
pub trait PullCredentials: Send + Sync + fmt::Debug {
    /// The credentials for registry `host` (`docker.io`, `ghcr.io`, `127.0.0.1:5000`), or
    /// `None` for an anonymous pull. Asked for the host of the image being pulled only.
    async fn credentials(&self, host: &str) -> Result<Option<PullAuth>>;
}

/// How recreations are carried out.
#[derive(Clone, Debug)]
struct Settings {
    stop_timeout: Duration,
    startup_grace: Duration,
    health_timeout: Duration,
    cleanup: bool,
}

/// A [`Target`] for the running containers of a Docker Engine: Watchtower's job, with
/// keel-rs's policies, approvals and rollback. Build one with [`DockerTarget::builder`].
///
/// - [`discover`](Target::discover) lists the running containers the [`Scope`] admits. A
///   container with a `keel.sh/policy` label follows that policy (and the other `keel.sh/*`
///   labels, read as for every target); one without follows its own tag's digest, as
///   Watchtower does. Both are polled unless a `keel.sh/trigger` label says otherwise.
///   Tracked ids are `container/<name>`.
/// - [`apply`](Target::apply) pulls the new image (by digest when the plan has one), stops
///   the container, renames it aside, creates its replacement with the same configuration
///   (what came from the old image follows the new one), starts it, and removes the old one
///   only once the new one runs (and is healthy, when it has a healthcheck). When the new
///   one does not, it is removed, the old one gets its name back and is started again, and
///   the version is avoided on later discoveries.
/// - [`apply_all`](Target::apply_all) recreates containers after the ones they depend on
///   (`depends-on` label, links, a shared network namespace) and restarts the dependents of
///   each recreated container.
#[derive(Clone)]
pub struct DockerTarget {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    engine: Engine,
    scope: Scope,
    settings: Settings,
    credentials: Option<Arc<dyn PullCredentials>>,
    /// Versions that were rolled back, by container name; kept in `state_file` when set.
    failed: Mutex<BTreeMap<String, String>>,
    state_file: Option<PathBuf>,
    /// One recreation at a time.
    applying: tokio::sync::Mutex<()>,
}

impl fmt::Debug for DockerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerTarget")
            .field("name", &self.inner.name)
            .field("scope", &self.inner.scope)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DockerTarget`].
#[derive(Debug)]
pub struct DockerTargetBuilder {
    docker: Docker,
    name: String,
    scope: Scope,
    settings: Settings,
    credentials: Option<Arc<dyn PullCredentials>>,
    state_file: Option<PathBuf>,
}

impl DockerTarget {
    /// A target for the engine `docker` talks to (e.g. `Docker::connect_with_defaults()`,
    /// which follows `DOCKER_HOST`), tracking every running container.
    pub fn builder(docker: Docker) -> DockerTargetBuilder {
        DockerTargetBuilder {
            docker,
            name: "docker".to_owned(),
            scope: Scope::default(),
            settings: Settings {
                stop_timeout: Duration::from_secs(10),
                startup_grace: Duration::from_secs(3),
                health_timeout: Duration::from_secs(60),
                cleanup: false,
            },
            credentials: None,
            state_file: None,
        }
    }

    /// The versions rolled back so far and avoided since, by container name.
    pub fn avoided(&self) -> BTreeMap<String, String> {
        lock(&self.inner.failed).clone()
    }
}

impl DockerTargetBuilder {
    /// The target's name in plans and messages (default `docker`), e.g. the engine's host.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Which containers are tracked (default: every running container).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// How long a container may take to stop before it is killed, when its configuration
    /// does not say (default 10 s, as `docker stop`).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.settings.stop_timeout = timeout;
        self
    }

    /// How long a new container without a healthcheck must keep running before it counts
    /// as started (default 3 s): one that exits sooner is rolled back.
    pub fn startup_grace(mut self, grace: Duration) -> Self {
        self.settings.startup_grace = grace;
        self
    }

    /// How long a new container with a healthcheck has to become healthy (default 60 s).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.settings.health_timeout = timeout;
        self
    }

    /// Removes the old image after a successful update when no container uses it any more
    /// (Watchtower's `--cleanup`).
    pub fn cleanup(mut self, cleanup: bool) -> Self {
        self.settings.cleanup = cleanup;
        self
    }

    /// Where pulls get registry credentials (default: anonymous pulls).
    pub fn credentials(mut self, credentials: Arc<dyn PullCredentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Keeps the versions rolled back in this JSON file, so that they stay avoided after a
    /// restart (default: in memory only).
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// The target.
    ///
    /// # Errors
    /// The state file exists and cannot be read or is not a JSON object of strings.
    pub fn build(self) -> Result<DockerTarget> {
        let failed = match &self.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::backend(&self.name, format!("read {}", path.display()), e)
                })?;
                serde_json::from_str(&text).map_err(|e| {
                    Error::backend(
                        &self.name,
                        format!(
                            "read {} (a JSON object of image by container)",
                            path.display()
                        ),
                        e,
                    )
                })?
            }
            _ => BTreeMap::new(),
        };
        Ok(DockerTarget {
            inner: Arc::new(Inner {
                engine: Engine {
                    docker: self.docker,
                    backend: format!("docker engine {}", self.name),
                },
                name: self.name,
                scope: self.scope,
                settings: self.settings,
                credentials: self.credentials,
                failed: Mutex::new(failed),
                state_file: self.state_file,
                applying: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The container name of a tracked id.
fn container_name(id: &str) -> Result<&str> {
    id.strip_prefix(ID_PREFIX)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::not_found(format!("tracked id {id:?} (not `{ID_PREFIX}<name>`)")))
}

/// The name the engine reports (`/web`), without its slash.
fn bare(name: &str) -> &str {
    name.trim_start_matches('/')
}

fn is_running(container: &ContainerInspectResponse) -> bool {
    container
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// The names `container` depends on: its `depends-on` label, its links, and the container
/// whose network namespace it shares (a name or an id, as configured).
fn dependencies(container: &ContainerInspectResponse) -> Vec<String> {
    let labels = container
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let mut names = labels::depends_on(&labels);
    let host = container.host_config.as_ref();
    for link in host.and_then(|h| h.links.as_ref()).into_iter().flatten() {
        // `/db:/web/db`: the linked container first.
        if let Some(name) = link.split(':').next() {
            names.push(bare(name).to_owned());
        }
    }
    if let Some(shared) = host
        .and_then(|h| h.network_mode.as_deref())
        .and_then(|m| m.strip_prefix("container:"))
    {
        names.push(bare(shared).to_owned());
    }
    names
}

impl DockerTarget {
    fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The image a container runs as keel-rs sees it: the reference it was created with,
    /// pinned to the digest the engine pulled it at when `with_digest`.
    async fn running_image(
        &self,
        container: &ContainerInspectResponse,
        with_digest: bool,
    ) -> Result<ImageRef> {
        let name = bare(container.name.as_deref().unwrap_or_default()).to_owned();
        let written = container
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let image = ImageRef::parse(&written).map_err(|e| Error::Conflict {
            action: format!("read the image of container {name}"),
            reason: format!("{written:?} does not parse: {e}"),
        })?;
        if !with_digest {
            return Ok(image);
        }
        let id = container.image.clone().unwrap_or_default();
        let inspected = self.engine().inspect_image(&id).await?;
        let digest = inspected
            .repo_digests
            .unwrap_or_default()
            .iter()
            .filter_map(|d| ImageRef::parse(d).ok())
            .find(|d| d.name() == image.name())
            .and_then(|d| d.digest().cloned());
        Ok(match digest {
            Some(digest) => image.with_digest(digest),
            None => image,
        })
    }

    /// The tracked image of one container, or why it is not tracked (`Ok(None)`: skipped
    /// on purpose).
    async fn track(&self, container: &ContainerInspectResponse) -> Result<Option<TrackedImage>> {
        let name = bare(container.name.as_deref().unwrap_or_default()).to_owned();
        let labels = container
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if let Err(skip) = self.inner.scope.admits(&name, &labels) {
            debug!(container = %name, ?skip, "not tracked");
            return Ok(None);
        }
        let written = self.running_image(container, false).await?;
        if written.tag().is_none() {
            debug!(container = %name, image = %written, "pinned by digest; not tracked");
            return Ok(None);
        }
        let config = KeelConfig::parse(|key| labels.get(key).map(String::as_str)).map_err(|e| {
            Error::Conflict {
                action: format!("read the labels of container {name}"),
                reason: e.to_string(),
            }
        })?;
        let policy: Arc<dyn Policy> = match &config.policy {
            Some(PolicySpec::Never) => return Ok(None),
            Some(_) => Arc::new(
                config
                    .version_policy()
                    .map_err(|e| Error::Conflict {
                        action: format!("read the labels of container {name}"),
                        reason: e.to_string(),
                    })?
                    .expect("a policy other than never tracks"),
            ),
            // Watchtower's rule: follow the running tag to its new digests.
            None => Arc::new(
                VersionPolicy::new(PolicySpec::Digest, &PolicyOptions::default())
                    .expect("the digest policy takes no options"),
            ),
        };
        let follows_digests = policy.needs().current_tag_digest;
        let image = self.running_image(container, follows_digests).await?;
        let policy = match lock(&self.inner.failed).get(&name) {
            Some(failed) => avoid(policy, failed, follows_digests),
            None => policy,
        };
        let mut tracked = config.settings.apply_to(TrackedImage::new(
            format!("{ID_PREFIX}{name}"),
            image,
            policy,
        ));
        tracked = tracked.with_report_only(self.inner.scope.monitor_only(&labels));
        if !labels.contains_key(keel_keys::TRIGGER) {
            // A Docker host has no webhooks of its own: poll, as Watchtower does.
            tracked = tracked.with_trigger(Trigger::Poll { schedule: None });
        }
        Ok(Some(tracked))
    }

    /// Puts back containers a recreation left aside when it was interrupted (the process
    /// ended between renaming the old container and removing it): an aside container whose
    /// name is free again gets it back and is started.
    async fn recover_interrupted(&self) -> Result<()> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("name".to_owned(), vec![ASIDE.to_owned()])])),
            ..ListContainersOptions::default()
        };
        let aside = self.engine().list(options).await?;
        for container in aside {
            let Some(aside_name) = container.names.as_ref().and_then(|n| n.first()) else {
                continue;
            };
            let aside_name = bare(aside_name);
            let Some((original, _)) = aside_name.rsplit_once(ASIDE) else {
                continue;
            };
            match self.engine().inspect(original).await {
                Ok(_) => continue,
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            warn!(
                container = original,
                aside = aside_name,
                "putting back a container an interrupted update left aside"
            );
            self.engine().rename(aside_name, original).await?;
            self.engine().start(original).await?;
        }
        Ok(())
    }

    /// Records that `image` failed in container `name`, and saves the record.
    fn record_failed(&self, name: &str, image: &ImageRef) {
        let snapshot = {
            let mut failed = lock(&self.inner.failed);
            failed.insert(name.to_owned(), image.to_string());
            failed.clone()
        };
        if let Some(path) = &self.inner.state_file {
            let json = serde_json::to_string_pretty(&snapshot).expect("strings serialize");
            let tmp = path.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path)) {
                warn!(path = %path.display(), error = %e, "cannot save the avoided versions");
            }
        }
    }

    async fn pull_credentials(&self, image: &ImageRef) -> Result<Option<DockerCredentials>> {
        let Some(source) = &self.inner.credentials else {
            return Ok(None);
        };
        let host = image.registry();
        Ok(source.credentials(host).await?.map(|auth| {
            let serveraddress = Some(host.to_owned());
            match auth {
                PullAuth::Basic { username, password } => DockerCredentials {
                    username: Some(username),
                    password: Some(password.expose().to_owned()),
                    serveraddress,
                    ..DockerCredentials::default()
                },
                PullAuth::IdentityToken(token) => DockerCredentials {
                    identitytoken: Some(token.expose().to_owned()),
                    serveraddress,
                    ..DockerCredentials::default()
                },
            }
        }))
    }
}

/// `policy`, never choosing the version that failed in this container again.
fn avoid(policy: Arc<dyn Policy>, failed: &str, follows_digests: bool) -> Arc<dyn Policy> {
    let Ok(failed) = ImageRef::parse(failed) else {
        return policy;
    };
    let Some(tag) = failed.tag().map(|t| t.as_str().to_owned()) else {
        return policy;
    };
    match failed.digest() {
        Some(digest) if follows_digests => {
            Arc::new(AvoidTag::at_digest(policy, tag, digest.clone()))
        }
        _ => Arc::new(AvoidTag::new(policy, tag)),
    }
}

#[async_trait]
impl Target for DockerTarget {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>> {
        self.recover_interrupted().await?;
        let running = self.engine().list(ListContainersOptions::default()).await?;
        let mut tracked = Vec::new();
        for summary in running {
            let Some(id) = summary.id else { continue };
            // The listing carries names and labels: a container out of scope costs no inspect.
            let name = summary
                .names
                .as_deref()
                .and_then(|names| names.first())
                .map(|n| bare(n).to_owned());
            if let (Some(name), Some(labels)) = (name, &summary.labels)
                && self.inner.scope.admits(&name, labels).is_err()
            {
                continue;
            }
            let container = match self.engine().inspect(&id).await {
                Ok(c) => c,
                // Gone since the listing.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match self.track(&container).await {
                Ok(Some(image)) => tracked.push(image),
                Ok(None) => {}
                // One container's bad label or image skips that container only.
                Err(e @ Error::Conflict { .. }) => warn!(error = %e, "container not tracked"),
                Err(e) => return Err(e),
            }
        }
        tracked.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tracked)
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome> {
        let _one_at_a_time = self.inner.applying.lock().await;
        self.apply_one(plan, &[]).await
    }

    async fn apply_all(&self, plans: &[UpdatePlan]) -> Vec<Result<ApplyOutcome>> {
        let _one_at_a_time = self.inner.applying.lock().await;
        let order = self.dependency_order(plans).await;
        let mut results: Vec<Option<Result<ApplyOutcome>>> = vec![None; plans.len()];
        for (position, &i) in order.iter().enumerate() {
            // Containers planned later are recreated by their own plans, not restarted.
            let later: Vec<String> = order[position + 1..]
                .iter()
                .filter_map(|&j| container_name(&plans[j].id).ok().map(str::to_owned))
                .collect();
            results[i] = Some(self.apply_one(&plans[i], &later).await);
        }
        results
            .into_iter()
            .map(|r| r.expect("every plan was applied"))
            .collect()
    }

    async fn preview(&self, plans: &[UpdatePlan]) -> Result<String> {
        Ok(plans
            .iter()
            .map(|p| {
                format!(
                    "container {}: recreate with {} (was {})\n",
                    container_name(&p.id).unwrap_or(&p.id),
                    p.new,
                    p.current
                )
            })
            .collect())
    }
}
