//! [`ArgoCdTarget`]: Argo CD Applications as a keel-core [`Target`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::target::Trigger;
use keel_core::{ApplyOutcome, Error, ImageRef, Result, Target, TrackedImage, UpdatePlan};
use keel_k8s::error::{Request, from_kube, is_conflict};
use keel_k8s::{FIELD_MANAGER, Problem, ProblemLog};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::{Instrument as _, debug, info, info_span};

use crate::annotations::{ApplicationConfig, IMAGE_LIST, ImageConfig, PREFIX, WriteBack};
use crate::credentials::{self, PullCredentials};
use crate::source::{self, SourceKind};

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

/// Argo CD Applications configured by Image Updater 0.x annotations, updated with the
/// `argocd` write-back method. See the [crate docs](crate).
pub struct ArgoCdTarget {
    name: String,
    client: Client,
    namespaces: Vec<String>,
    label_selector: Option<String>,
    trigger: Trigger,
    attempts: u32,
    credentials: PullCredentials,
    problems: ProblemLog,
}

impl std::fmt::Debug for ArgoCdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoCdTarget")
            .field("name", &self.name)
            .field("namespaces", &self.namespaces)
            .field("label_selector", &self.label_selector)
            .field("trigger", &self.trigger)
            .field("attempts", &self.attempts)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
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
            namespaces: Vec::new(),
            label_selector: None,
            trigger: Trigger::Poll { schedule: None },
            attempts: DEFAULT_ATTEMPTS,
            credentials: PullCredentials::default(),
            problems: ProblemLog::default(),
        }
    }

    /// Only Applications in `namespace` (call again for more); by default, all namespaces.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespaces.push(namespace.into());
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
    /// skipped), an image whose running version is not known or whose pull secret cannot be
    /// read (that image is skipped).
    pub fn problems(&self) -> Vec<Problem> {
        self.problems.current()
    }

    fn api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = application_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    async fn list(&self) -> Result<Vec<DynamicObject>> {
        let mut params = ListParams::default();
        if let Some(selector) = &self.label_selector {
            params = params.labels(selector);
        }
        let scopes: Vec<Option<&str>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let mut out = Vec::new();
        for scope in scopes {
            let request = Request {
                verb: "list",
                resource: RESOURCE,
                namespace: scope,
                name: None,
            };
            let list = self
                .api(scope)
                .list(&params)
                .await
                .map_err(|e| from_kube(e, &request))?;
            out.extend(list.items);
        }
        Ok(out)
    }

    /// The images of one Application, with the problems that skip it or some of its images.
    fn read(
        &self,
        app: &DynamicObject,
        problems: &mut Vec<Problem>,
    ) -> Option<(ApplicationConfig, Vec<Found>)> {
        let namespace = app.metadata.namespace.clone().unwrap_or_default();
        let name = app.metadata.name.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let annotations = app.metadata.annotations.as_ref().unwrap_or(&empty);
        if !ApplicationConfig::is_configured(annotations) {
            return None;
        }
        let problem = |key: &str, value: &str, reason: String| Problem {
            kind: PROBLEM_KIND.into(),
            namespace: namespace.clone(),
            name: name.clone(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        };
        let config = match ApplicationConfig::parse(annotations) {
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
        let kind = SourceKind::of(&app.data);
        if kind.is_none() && config.write_back == WriteBack::ArgoCd {
            problems.push(problem(
                IMAGE_LIST,
                annotations.get(IMAGE_LIST).map_or("", String::as_str),
                format!(
                    "the Application's source is neither Helm nor Kustomize (status.sourceType \
                     {:?}): the argocd write-back sets Helm parameters or Kustomize images",
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
                Err(reason) => problems.push(problem(IMAGE_LIST, &image.alias, reason)),
            }
        }
        Some((config, found))
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
            _ => Err(Error::not_found(format!(
                "tracked image {id} in {}",
                self.name
            ))),
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
            .api(Some(ns))
            .get(name)
            .await
            .map_err(|e| from_kube(e, &get))?;
        let mut problems = Vec::new();
        let Some((config, found)) = self.read(&app, &mut problems) else {
            return Err(match problems.first() {
                Some(p) => Error::Conflict {
                    action: format!("update {}", plan.id),
                    reason: format!("the Application changed and is skipped now: {p}"),
                },
                None => Error::not_found(format!("tracked image {} in {}", plan.id, self.name)),
            });
        };
        if let WriteBack::Git { .. } = config.write_back {
            return Err(Error::NotSupported {
                operation: "the git write-back method (only `argocd` is applied)",
                backend: format!("{} application {ns}/{name}", self.name),
            });
        }
        let Some(found) = found.into_iter().find(|f| f.config.alias == alias) else {
            return Err(match problems.into_iter().next() {
                Some(p) => Error::Conflict {
                    action: format!("update {}", plan.id),
                    reason: p.to_string(),
                },
                None => Error::not_found(format!("tracked image {} in {}", plan.id, self.name)),
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
            return Err(Error::not_found(format!(
                "tracked image {} in {}",
                plan.id, self.name
            )));
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
            .api(Some(ns))
            .patch(name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Attempt::Done(ApplyOutcome::Applied)),
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
        for app in &apps {
            let Some((_, found)) = self.read(app, &mut problems) else {
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
                                key: format!(
                                    "{PREFIX}{}.pull-secret",
                                    f.config.alias.replace('/', "_")
                                ),
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
                        .with_trigger(self.trigger.clone()),
                );
            }
        }
        self.credentials.replace(creds);
        self.problems.record(&self.name, problems);
        Ok(tracked)
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

    fn _target_is_dyn(t: ArgoCdTarget) -> std::sync::Arc<dyn Target> {
        std::sync::Arc::new(t)
    }
}
