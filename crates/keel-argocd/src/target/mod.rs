//! [`ArgoCdTarget`]: Argo CD Applications as a keel-core [`Target`]; the `git` write-back of
//! an update is in [`commit`].

mod commit;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use keel_core::target::Trigger;
use keel_core::{ApplyOutcome, Error, ImageRef, Result, Target, TrackedImage, UpdatePlan};
use keel_k8s::error::{Request, from_kube, is_conflict};
use keel_k8s::sync::{NamespaceScope, list_in, sort_by_name};
use keel_k8s::{FIELD_MANAGER, Problem, ProblemLog};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::{Instrument as _, debug, info, info_span};

use crate::annotations::{
    AnnotationError, ApplicationConfig, IMAGE_LIST, ImageConfig, PREFIX, WriteBack,
};
use crate::credentials::{self, PullCredentials};
use crate::git::{self, GitProblem, WriteBackTarget};
use crate::image_updater::{self, ImageUpdaterSpec, RefConfig};
use crate::source::{self, SourceKind};
use crate::status::{self, ImageUpdaterReport, RecentUpdate};

/// The resource (plural) of Applications.
pub const RESOURCE: &str = "applications";
/// The kind of a [`Problem`] about an Application.
pub const PROBLEM_KIND: &str = "application";
/// How many times a write is tried when the Application changes between read and write.
const DEFAULT_ATTEMPTS: u32 = 5;

/// `argoproj.io/v1alpha1` `Application`.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: RESOURCE.into(),
    }
}

/// Argo CD Applications configured by Image Updater 0.x annotations or selected by Image
/// Updater 1.x `ImageUpdater` objects, updated with the `argocd` write-back method. See the
/// [crate docs](crate).
#[derive(derive_more::Debug)]
pub struct ArgoCdTarget {
    name: String,
    #[debug(skip)]
    client: Client,
    namespaces: NamespaceScope,
    label_selector: Option<String>,
    trigger: Trigger,
    attempts: u32,
    credentials: PullCredentials,
    #[debug(skip)]
    problems: ProblemLog,
    image_updaters: bool,
    git: GitOptions,
    /// The Applications the last discovery found selected by an ImageUpdater, by namespace
    /// and name: apply reads their configuration here, not from their annotations.
    #[debug(skip)]
    selections: Mutex<BTreeMap<(String, String), Selection>>,
    /// The updates applied since the last discovery, by ImageUpdater (namespace, name).
    #[debug(skip)]
    recent: Mutex<BTreeMap<(String, String), Vec<RecentUpdate>>>,
}

/// How the `git` write-back commits.
#[derive(Clone, Debug)]
struct GitOptions {
    workdir: PathBuf,
    author: (String, String),
    message: String,
    argocd_namespace: Option<String>,
}

/// An Application selected by an ImageUpdater.
#[derive(Clone, Debug)]
struct Selection {
    /// The ImageUpdater's namespace and name.
    image_updater: (String, String),
    /// The field path of the rule that selected it (`spec.applicationRefs[1]`).
    rule: String,
    /// Its configuration; `None` with `useAnnotations: true` (its annotations say).
    config: Option<ApplicationConfig>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One tracked image, as discovery and apply both read it.
struct Found {
    id: String,
    image: ImageRef,
    config: ImageConfig,
}

impl ArgoCdTarget {
    /// Applications in every namespace, named `argocd`, polled on the poller's default
    /// schedule (Image Updater checks every Application on an interval).
    pub fn new(client: Client) -> Self {
        ArgoCdTarget {
            name: "argocd".into(),
            client,
            namespaces: NamespaceScope::all(),
            label_selector: None,
            trigger: Trigger::Poll { schedule: None },
            attempts: DEFAULT_ATTEMPTS,
            credentials: PullCredentials::default(),
            problems: ProblemLog::default(),
            image_updaters: false,
            git: GitOptions {
                workdir: std::env::temp_dir()
                    .join(format!("keel-argocd-git-{}", std::process::id())),
                author: (
                    git::DEFAULT_AUTHOR.0.to_owned(),
                    git::DEFAULT_AUTHOR.1.to_owned(),
                ),
                message: git::DEFAULT_MESSAGE.to_owned(),
                argocd_namespace: None,
            },
            selections: Mutex::default(),
            recent: Mutex::default(),
        }
    }

    /// Whether Image Updater 1.x `ImageUpdater` objects select and configure Applications
    /// (default `false`: the annotations of every Application only, as Image Updater 0.x
    /// does). Off by default because reading them needs `list` on `imageupdaters` and
    /// `patch` on `imageupdaters/status`, which an installation granted for 0.x lacks; where
    /// the resource is not served, there are none.
    pub fn with_image_updaters(mut self, enabled: bool) -> Self {
        self.image_updaters = enabled;
        self
    }

    /// The directory the `git` write-back clones repositories into, one subdirectory per
    /// repository URL (default: `keel-argocd-git-<process id>` in the system's temporary
    /// directory). Keep it for the life of the process: each pass fetches into it.
    pub fn with_git_workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.git.workdir = dir.into();
        self
    }

    /// The author and committer of `git` write-back commits (default Image Updater's,
    /// `argocd-image-updater <noreply@argoproj.io>`).
    pub fn with_git_author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.git.author = (name.into(), email.into());
        self
    }

    /// The message of `git` write-back commits, a template with `{app}`, `{alias}`,
    /// `{image}`, `{old}` and `{new}` (default [`git::DEFAULT_MESSAGE`], Image Updater's).
    pub fn with_git_message(mut self, template: impl Into<String>) -> Self {
        self.git.message = template.into();
        self
    }

    /// The namespace of Argo CD's repository Secrets, which `write-back-method: git` (or
    /// `git:repocreds`) authenticates with (default: the Application's namespace, where
    /// Argo CD keeps its Applications and Secrets alike).
    pub fn with_argocd_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.git.argocd_namespace = Some(namespace.into());
        self
    }

    /// Only Applications in `namespace` (call again for more); by default, all namespaces.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        let mut namespaces = self.namespaces.list().unwrap_or_default().to_vec();
        namespaces.push(namespace.into());
        self.namespaces = NamespaceScope::only(namespaces);
        self
    }

    /// Only Applications matching a label selector (`team=web`).
    pub fn with_label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// The target's name in reports and plans.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How the tracked images are triggered (default: polling on the default schedule).
    pub fn with_trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// How many times an update is written when the Application keeps changing between
    /// read and write (default 5; at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The registry credentials the tracked images' `pull-secret` annotations name, filled
    /// by every discovery; hand it to the registry backend.
    pub fn credentials(&self) -> PullCredentials {
        self.credentials.clone()
    }

    /// What the last discovery skipped and why: a bad annotation (the Application is
    /// skipped), a bad ImageUpdater field (none of its Applications is updated; kind
    /// [`image_updater::PROBLEM_KIND`]), an Application selected by two ImageUpdaters (the
    /// second one is named), an image whose running version is not known or whose pull
    /// secret cannot be read (that image is skipped).
    pub fn problems(&self) -> Vec<Problem> {
        self.problems.current()
    }

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &application_resource())
    }

    async fn list(&self) -> Result<Vec<DynamicObject>> {
        let mut params = ListParams::default();
        if let Some(selector) = &self.label_selector {
            params = params.labels(selector);
        }
        self.namespaces
            .list_objects(&self.client, &application_resource(), &params)
            .await
    }

    /// The images of one Application configured as `parsed` says ([`Self::config`]), with
    /// the problems that skip it or some of its images.
    fn read(
        &self,
        app: &DynamicObject,
        selection: Option<&Selection>,
        parsed: std::result::Result<ApplicationConfig, Vec<AnnotationError>>,
        problems: &mut Vec<Problem>,
    ) -> Option<Vec<Found>> {
        let namespace = app.metadata.namespace.clone().unwrap_or_default();
        let name = app.metadata.name.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let annotations = app.metadata.annotations.as_ref().unwrap_or(&empty);
        let problem = |key: &str, value: &str, reason: String| Problem {
            kind: PROBLEM_KIND.into(),
            namespace: namespace.clone(),
            name: name.clone(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        };
        // What problems about the images name: the annotation, or the ImageUpdater's rule.
        let (list_key, list_value) = match selection {
            Some(Selection {
                image_updater: (iu_ns, iu_name),
                rule,
                config: Some(_),
            }) => (
                format!("imageupdater {iu_ns}/{iu_name} {rule}.images"),
                String::new(),
            ),
            _ => (
                IMAGE_LIST.to_owned(),
                annotations.get(IMAGE_LIST).cloned().unwrap_or_default(),
            ),
        };
        let config = match parsed {
            Ok(config) => config,
            Err(errors) => {
                problems.extend(
                    errors
                        .into_iter()
                        .map(|e| problem(&e.key, &e.value, e.reason)),
                );
                return None;
            }
        };
        if source::is_multi_source(&app.data) {
            problems.push(problem("spec.sources", "", source::MULTI_SOURCE.to_owned()));
            return None;
        }
        let kind = match (&config.write_back, &config.git.target) {
            (WriteBack::Git { .. }, WriteBackTarget::Kustomization(_)) => {
                Some(SourceKind::Kustomize)
            }
            (WriteBack::Git { .. }, WriteBackTarget::HelmValues(_)) => Some(SourceKind::Helm),
            _ => SourceKind::of(&app.data),
        };
        if kind.is_none() {
            problems.push(problem(
                &list_key,
                &list_value,
                format!(
                    "the Application's source is neither Helm nor Kustomize (status.sourceType \
                     {:?}): the write-back sets Helm parameters or Kustomize images",
                    app.data["status"]["sourceType"].as_str().unwrap_or("")
                ),
            ));
            return None;
        }
        let mut found = Vec::new();
        for image in &config.images {
            match source::running(&app.data, kind, image) {
                Ok(running) => found.push(Found {
                    id: format!("application/{namespace}/{name}/{}", image.alias),
                    image: running,
                    config: image.clone(),
                }),
                Err(reason) => problems.push(problem(&list_key, &image.alias, reason)),
            }
        }
        Some(found)
    }

    /// The id's namespace, name and alias.
    fn parse_id<'a>(&self, id: &'a str) -> Result<(&'a str, &'a str, &'a str)> {
        let mut parts = id.splitn(4, '/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("application"), Some(ns), Some(name), Some(alias))
                if !ns.is_empty() && !name.is_empty() && !alias.is_empty() =>
            {
                Ok((ns, name, alias))
            }
            _ => Err(Error::untracked(id, &self.name)),
        }
    }

    async fn apply_once(&self, plan: &UpdatePlan) -> Result<Attempt> {
        let (ns, name, alias) = self.parse_id(&plan.id)?;
        let get = Request {
            verb: "get",
            resource: RESOURCE,
            namespace: Some(ns),
            name: Some(name),
        };
        let app = self
            .api(ns)
            .get(name)
            .await
            .map_err(|e| from_kube(e, &get))?;
        let mut problems = Vec::new();
        let selection = lock(&self.selections)
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned();
        let parsed = match self.config(&app, selection.as_ref()) {
            Some(Ok(config)) if matches!(config.write_back, WriteBack::Git { .. }) => {
                return self.apply_git(plan, &app, config, alias, selection).await;
            }
            parsed => parsed,
        };
        let Some(found) =
            parsed.and_then(|parsed| self.read(&app, selection.as_ref(), parsed, &mut problems))
        else {
            return Err(match problems.first() {
                Some(p) => Error::Conflict {
                    action: format!("update {}", plan.id),
                    reason: format!("the Application changed and is skipped now: {p}"),
                },
                None => Error::untracked(&plan.id, &self.name),
            });
        };
        let Some(found) = found.into_iter().find(|f| f.config.alias == alias) else {
            return Err(match problems.into_iter().next() {
                Some(p) => Error::Conflict {
                    action: format!("update {}", plan.id),
                    reason: p.to_string(),
                },
                None => Error::untracked(&plan.id, &self.name),
            });
        };
        if found.image == plan.new {
            return Ok(Attempt::Done(ApplyOutcome::AlreadyCurrent));
        }
        if found.image != plan.current {
            return Err(Error::Conflict {
                action: format!("update {}", plan.id),
                reason: format!(
                    "it runs {} now, not {} as planned",
                    found.image, plan.current
                ),
            });
        }
        let Some(kind) = SourceKind::of(&app.data) else {
            return Err(Error::untracked(&plan.id, &self.name));
        };
        let source_patch = source::write(&app.data, kind, &found.config, &plan.new);
        let patch = json!({
            "metadata": { "resourceVersion": app.metadata.resource_version },
            "spec": { "source": source_patch },
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match self
            .api(ns)
            .patch(name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                if let Some(selection) = selection {
                    self.record_update(&selection, &found.config, plan).await;
                }
                Ok(Attempt::Done(ApplyOutcome::Applied))
            }
            Err(e) if is_conflict(&e) => Ok(Attempt::Raced(e.to_string())),
            Err(e) => Err(from_kube(
                e,
                &Request {
                    verb: "patch",
                    ..get
                },
            )),
        }
    }

    async fn discover_applications(&self) -> Result<Vec<TrackedImage>> {
        let apps = self.list().await?;
        let mut problems = Vec::new();
        let mut tracked = Vec::new();
        let mut creds = BTreeMap::new();
        let (selections, mut reports) = if self.image_updaters {
            self.select(&apps, &mut problems).await?
        } else {
            (BTreeMap::new(), Vec::new())
        };
        lock(&self.recent).clear();
        for app in &apps {
            let key = (
                app.metadata.namespace.clone().unwrap_or_default(),
                app.metadata.name.clone().unwrap_or_default(),
            );
            let selection = selections.get(&key);
            let before = problems.len();
            // With the git write-back, what runs is read with the write-back file applied.
            let read = match self.config(app, selection) {
                None => None,
                Some(Ok(config)) if matches!(config.write_back, WriteBack::Git { .. }) => {
                    match self.git_view(app, &config).await {
                        Ok(viewed) => self.read(&viewed, selection, Ok(config), &mut problems),
                        Err(p) => {
                            problems.push(self.app_problem(app, p));
                            None
                        }
                    }
                }
                Some(parsed) => self.read(app, selection, parsed, &mut problems),
            };
            let report = selection.and_then(|s| {
                reports.iter_mut().find(|r| {
                    (r.namespace.as_str(), r.name.as_str())
                        == (s.image_updater.0.as_str(), s.image_updater.1.as_str())
                })
            });
            if let Some(report) = report {
                report.applications_matched += 1;
                report
                    .problems
                    .extend(problems[before..].iter().map(ToString::to_string));
                if let Some(found) = &read {
                    report.images_managed += found.len();
                }
            }
            let Some(found) = read else {
                continue;
            };
            for f in found {
                if let Some(source) = &f.config.pull_secret {
                    match credentials::resolve(&self.client, source, &f.image).await {
                        Ok(doc) => {
                            creds.insert(f.id.clone(), (f.image.name(), doc));
                        }
                        Err(reason) => {
                            problems.push(Problem {
                                kind: PROBLEM_KIND.into(),
                                namespace: app.metadata.namespace.clone().unwrap_or_default(),
                                name: app.metadata.name.clone().unwrap_or_default(),
                                key: match selection {
                                    Some(Selection {
                                        image_updater: (iu_ns, iu_name),
                                        rule,
                                        config: Some(_),
                                    }) => format!(
                                        "imageupdater {iu_ns}/{iu_name} {rule}.images \
                                         (alias {}) pullSecret",
                                        f.config.alias
                                    ),
                                    _ => format!(
                                        "{PREFIX}{}.pull-secret",
                                        f.config.alias.replace('/', "_")
                                    ),
                                },
                                value: source.to_string(),
                                reason,
                            });
                            continue;
                        }
                    }
                }
                debug!(id = %f.id, image = %f.image, policy = ?f.config.policy, "tracking");
                tracked.push(
                    TrackedImage::new(f.id, f.image, f.config.policy)
                        .with_trigger(self.trigger.clone())
                        .with_platforms(f.config.platforms),
                );
            }
        }
        self.credentials.replace(creds);
        self.problems.record(&self.name, problems);
        *lock(&self.selections) = selections;
        for report in &reports {
            status::write_report(&self.client, report).await;
        }
        Ok(tracked)
    }

    /// The ImageUpdaters in the target's namespaces; none where the resource is not served.
    async fn list_image_updaters(&self) -> Result<Vec<DynamicObject>> {
        let resource = image_updater::image_updater_resource();
        let params = ListParams::default();
        let mut out = Vec::new();
        for scope in self.namespaces.watched() {
            match list_in(&self.client, &resource, scope, &params).await {
                Ok(items) => out.extend(items),
                // A list answered 404 names no object: the resource itself is missing.
                Err(Error::NotFound { .. }) => {
                    debug!("the ImageUpdater resource is not served");
                }
                Err(e) => return Err(e),
            }
        }
        sort_by_name(&mut out);
        Ok(out)
    }

    /// Which Applications the ImageUpdaters select, and a status report per ImageUpdater.
    /// An Application selected by two ImageUpdaters goes to the first by namespace and name;
    /// the other gets a problem.
    async fn select(
        &self,
        apps: &[DynamicObject],
        problems: &mut Vec<Problem>,
    ) -> Result<(
        BTreeMap<(String, String), Selection>,
        Vec<ImageUpdaterReport>,
    )> {
        let mut selections: BTreeMap<(String, String), Selection> = BTreeMap::new();
        let mut reports = Vec::new();
        let empty = BTreeMap::new();
        for iu in self.list_image_updaters().await? {
            let iu_ns = iu.metadata.namespace.clone().unwrap_or_default();
            let iu_name = iu.metadata.name.clone().unwrap_or_default();
            let mut report = ImageUpdaterReport::new(&iu);
            let iu_problem = |key: String, value: String, reason: String| Problem {
                kind: image_updater::PROBLEM_KIND.into(),
                namespace: iu_ns.clone(),
                name: iu_name.clone(),
                key,
                value,
                reason,
            };
            let spec = match ImageUpdaterSpec::parse(&iu.data) {
                Ok(spec) => spec,
                Err(errors) => {
                    for e in errors {
                        let p = iu_problem(e.key, e.value, e.reason);
                        report.invalid.push(p.to_string());
                        problems.push(p);
                    }
                    reports.push(report);
                    continue;
                }
            };
            for app in apps {
                let app_ns = app.metadata.namespace.clone().unwrap_or_default();
                if app_ns != iu_ns {
                    continue;
                }
                let app_name = app.metadata.name.clone().unwrap_or_default();
                let labels = app.metadata.labels.as_ref().unwrap_or(&empty);
                let Some(rule) = spec.select(&app_name, labels) else {
                    continue;
                };
                let key = (app_ns, app_name);
                if let Some(other) = selections.get(&key) {
                    let p = iu_problem(
                        format!("{}.namePattern", rule.path()),
                        rule.name_pattern.clone(),
                        format!(
                            "Application {} is selected by ImageUpdater {}/{} already, which \
                             alone updates it",
                            key.1, other.image_updater.0, other.image_updater.1
                        ),
                    );
                    report.problems.push(p.to_string());
                    problems.push(p);
                    continue;
                }
                let config = match &rule.config {
                    RefConfig::Images(config) => Some(config.clone()),
                    RefConfig::Annotations => None,
                };
                selections.insert(
                    key,
                    Selection {
                        image_updater: (iu_ns.clone(), iu_name.clone()),
                        rule: rule.path(),
                        config,
                    },
                );
            }
            reports.push(report);
        }
        Ok((selections, reports))
    }

    /// Records an applied update in the status of the ImageUpdater that selected the
    /// Application.
    async fn record_update(&self, selection: &Selection, image: &ImageConfig, plan: &UpdatePlan) {
        let updates = {
            let mut recent = lock(&self.recent);
            let updates = recent.entry(selection.image_updater.clone()).or_default();
            status::add_update(updates, image, plan);
            updates.clone()
        };
        let (ns, name) = &selection.image_updater;
        status::write_updates(&self.client, ns, name, &updates).await;
    }

    async fn apply_with_retries(&self, plan: &UpdatePlan) -> Result<ApplyOutcome> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.apply_once(plan).await? {
                Attempt::Done(outcome) => {
                    info!(?outcome, "applied");
                    return Ok(outcome);
                }
                Attempt::Raced(reason) => {
                    debug!(
                        attempt,
                        "the Application changed while writing; reading it again"
                    );
                    last = reason;
                }
            }
        }
        Err(Error::Conflict {
            action: format!("update {} to {}", plan.id, plan.new),
            reason: format!(
                "the Application changed between read and write {} times in a row ({last})",
                self.attempts
            ),
        })
    }
}

enum Attempt {
    Done(ApplyOutcome),
    Raced(String),
}

#[async_trait]
impl Target for ArgoCdTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>> {
        let span = info_span!("discover", target_name = %self.name);
        self.discover_applications().instrument(span).await
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome> {
        let span = info_span!(
            "apply",
            target_name = %self.name,
            id = %plan.id,
            current = %plan.current,
            new = %plan.new
        );
        self.apply_with_retries(plan).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_argo_cds() {
        let r = application_resource();
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.plural.as_str()),
            ("argoproj.io/v1alpha1", "Application", "applications")
        );
    }

    #[tokio::test]
    async fn a_namespace_given_twice_is_listed_once() {
        let target = ArgoCdTarget::new(keel_testsupport::kube::unreachable_client())
            .with_namespace("shop")
            .with_namespace("web")
            .with_namespace("shop");
        assert_eq!(target.namespaces.watched(), [Some("shop"), Some("web")]);
    }

    fn _target_is_dyn(t: ArgoCdTarget) -> std::sync::Arc<dyn Target> {
        std::sync::Arc::new(t)
    }
}
