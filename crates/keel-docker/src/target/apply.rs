//! Applying a plan: the recreation of a container, its rollback, and the order of
//! dependent containers.

use std::time::Duration;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::ListContainersOptions;
use keel_core::target::{ApplyOutcome, UpdatePlan};
use keel_core::{Error, ImageRef, Result};
use tracing::{info, warn};

use super::{ASIDE, DockerTarget, bare, container_name, dependencies, is_running};
use crate::labels;
use crate::recreate::create_body;

impl DockerTarget {
    /// Waits until the new container `id` has started: running for the startup grace
    /// period, and healthy when it has a healthcheck. `Err` says why it did not.
    async fn wait_started(&self, id: &str) -> std::result::Result<(), String> {
        let settings = &self.inner.settings;
        let started = tokio::time::Instant::now();
        loop {
            let inspected = self.engine().inspect(id).await.map_err(|e| e.to_string())?;
            let state = inspected.state.clone().unwrap_or_default();
            if !state.running.unwrap_or(false)
                || matches!(state.status, Some(ContainerStateStatusEnum::EXITED))
            {
                return Err(format!(
                    "the new container stopped (exit code {})",
                    state.exit_code.unwrap_or(-1)
                ));
            }
            match state.health.as_ref().and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err("the new container is unhealthy".into());
                }
                Some(HealthStatusEnum::STARTING) => {
                    if started.elapsed() >= settings.health_timeout {
                        return Err(format!(
                            "the new container was not healthy within {}s",
                            settings.health_timeout.as_secs()
                        ));
                    }
                }
                _ => {
                    if started.elapsed() >= settings.startup_grace {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Replaces container `old` by one running `image` (`expected` is the image id it must
    /// run) with the same configuration; rolls back on any failure. `network_mode` points a
    /// shared network namespace at a recreated container.
    async fn recreate(
        &self,
        old: &ContainerInspectResponse,
        image: &ImageRef,
        expected: &str,
        network_mode: Option<String>,
    ) -> std::result::Result<String, RecreateError> {
        let name = bare(old.name.as_deref().unwrap_or_default()).to_owned();
        let old_id = old.id.clone().unwrap_or_default();
        let labels = old
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let old_image = match &old.image {
            Some(id) => self
                .engine()
                .inspect_image(id)
                .await
                .ok()
                .and_then(|i| i.config),
            None => None,
        };
        let reference = image.without_digest().familiar();
        let (body, networks) = create_body(old, old_image.as_ref(), &reference, network_mode);
        let was_running = is_running(old);

        // Nothing changed yet: a failure here leaves the old container as it was.
        let timeout = old
            .config
            .as_ref()
            .and_then(|c| c.stop_timeout)
            .and_then(|t| u64::try_from(t).ok())
            .map_or(self.inner.settings.stop_timeout, Duration::from_secs);
        let signal = labels.get(labels::STOP_SIGNAL).cloned();
        if let Err(e) = self.engine().stop(&old_id, signal, timeout).await {
            // It may have stopped regardless; make sure it runs.
            let _ = self.engine().start(&old_id).await;
            return Err(RecreateError::Untouched(e));
        }
        let aside: String = format!(
            "{name}{ASIDE}{}",
            old_id.chars().take(12).collect::<String>()
        );
        if let Err(e) = self.engine().rename(&old_id, &aside).await {
            let _ = self.restore(&old_id, &name, None, was_running).await;
            return Err(RecreateError::Untouched(e));
        }
        let new_id = match self.engine().create(&name, body, networks).await {
            Ok(id) => id,
            Err(e) => {
                return Err(self
                    .roll_back(&old_id, &name, None, was_running, e.to_string())
                    .await);
            }
        };
        let runs = self
            .engine()
            .inspect(&new_id)
            .await
            .ok()
            .and_then(|c| c.image);
        if runs.as_deref() != Some(expected) {
            let reason = format!(
                "the new container runs image {} instead of the pulled {expected} (the tag moved meanwhile)",
                runs.unwrap_or_default()
            );
            return Err(self
                .roll_back(&old_id, &name, Some(&new_id), was_running, reason)
                .await);
        }
        if let Err(e) = self.engine().start(&new_id).await {
            return Err(self
                .roll_back(&old_id, &name, Some(&new_id), was_running, e.to_string())
                .await);
        }
        if let Err(reason) = self.wait_started(&new_id).await {
            return Err(self
                .roll_back(&old_id, &name, Some(&new_id), was_running, reason)
                .await);
        }
        if let Err(e) = self.engine().remove(&old_id, false).await {
            warn!(container = %name, aside = %aside, error = %e, "the old container stays aside");
        }
        Ok(new_id)
    }

    /// Removes `new` (when created), gives `old` its name back and starts it again.
    async fn restore(
        &self,
        old_id: &str,
        name: &str,
        new_id: Option<&str>,
        was_running: bool,
    ) -> Result<()> {
        if let Some(new_id) = new_id {
            self.engine().remove(new_id, true).await?;
        }
        let current = self.engine().inspect(old_id).await?;
        if bare(current.name.as_deref().unwrap_or_default()) != name {
            self.engine().rename(old_id, name).await?;
        }
        if was_running {
            self.engine().start(old_id).await?;
        }
        Ok(())
    }

    async fn roll_back(
        &self,
        old_id: &str,
        name: &str,
        new_id: Option<&str>,
        was_running: bool,
        reason: String,
    ) -> RecreateError {
        warn!(container = %name, %reason, "rolling back");
        match self.restore(old_id, name, new_id, was_running).await {
            Ok(()) => RecreateError::RolledBack(reason),
            Err(e) => RecreateError::RollbackFailed {
                reason,
                rollback: e.to_string(),
            },
        }
    }

    /// Restarts (or, sharing its network namespace, recreates) the running containers that
    /// depend on `name`, which was just recreated.
    async fn restart_dependents(&self, name: &str, old_id: &str, skip: &[String]) -> Result<()> {
        let running = self.engine().list(ListContainersOptions::default()).await?;
        for summary in running {
            let Some(id) = summary.id else { continue };
            let container = self.engine().inspect(&id).await?;
            let dependent = bare(container.name.as_deref().unwrap_or_default()).to_owned();
            if dependent == name || skip.contains(&dependent) {
                continue;
            }
            let deps = dependencies(&container);
            if !deps.iter().any(|d| d == name || d == old_id) {
                continue;
            }
            let shares_network = container
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref())
                .is_some_and(|m| m.starts_with("container:"));
            info!(container = %dependent, dependency = name, "restarting a dependent container");
            if shares_network {
                let image = self.running_image(&container, false).await?;
                let expected = container.image.clone().unwrap_or_default();
                self.recreate(
                    &container,
                    &image,
                    &expected,
                    Some(format!("container:{name}")),
                )
                .await
                .map_err(|e| e.into_error(&dependent, &self.inner.name))?;
            } else {
                self.engine().restart(&id).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn apply_one(
        &self,
        plan: &UpdatePlan,
        later: &[String],
    ) -> Result<ApplyOutcome> {
        let name = container_name(&plan.id)?.to_owned();
        let action = format!("update container {name}");
        let old = match self.engine().inspect(&name).await {
            Err(Error::NotFound { .. }) => {
                return Err(Error::not_found(format!("container {name}")));
            }
            other => other?,
        };
        let with_digest = plan.current.digest().is_some() || plan.new.digest().is_some();
        let running = self.running_image(&old, with_digest).await?;
        let runs = |image: &ImageRef| {
            if image.digest().is_some() {
                running == *image
            } else {
                running.without_digest() == image.without_digest()
            }
        };
        if runs(&plan.new) {
            return Ok(ApplyOutcome::AlreadyCurrent);
        }
        if !runs(&plan.current) {
            return Err(Error::Conflict {
                action,
                reason: format!(
                    "it runs {running} now, not {}; discover again",
                    plan.current
                ),
            });
        }
        let labels = old
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        // The pipeline only previews these; a plan applied directly is refused.
        if self.inner.scope.monitor_only(&labels) {
            return Err(Error::NotSupported {
                operation: "updates of monitor-only containers",
                backend: format!("container {name}"),
            });
        }

        let credentials = self.pull_credentials(&plan.new).await?;
        let pulled = self.engine().pull(&plan.new, credentials).await?;
        if Some(&pulled) == old.image.as_ref() {
            return Ok(ApplyOutcome::AlreadyCurrent);
        }
        if let Some(hook) = labels::hook(&labels, labels::PRE_UPDATE, labels::PRE_UPDATE_TIMEOUT) {
            let code = self
                .engine()
                .exec(&name, &hook.command, hook.timeout)
                .await?;
            if code != 0 {
                return Err(Error::Conflict {
                    action,
                    reason: format!(
                        "its pre-update command {:?} exited with {code}; nothing was changed",
                        hook.command
                    ),
                });
            }
        }

        let old_id = old.id.clone().unwrap_or_default();
        match self.recreate(&old, &plan.new, &pulled, None).await {
            Ok(_) => {}
            Err(e) => {
                if matches!(e, RecreateError::RolledBack(_)) {
                    self.record_failed(&name, &plan.new);
                }
                return Err(e.into_error(&name, &self.inner.name));
            }
        }
        info!(container = %name, from = %plan.current, to = %plan.new, "container updated");
        if let Some(hook) = labels::hook(&labels, labels::POST_UPDATE, labels::POST_UPDATE_TIMEOUT)
        {
            match self.engine().exec(&name, &hook.command, hook.timeout).await {
                Ok(0) => {}
                Ok(code) => warn!(container = %name, code, "the post-update command failed"),
                Err(e) => warn!(container = %name, error = %e, "the post-update command failed"),
            }
        }
        if let Err(e) = self.restart_dependents(&name, &old_id, later).await {
            warn!(container = %name, error = %e, "cannot restart the containers that depend on it");
        }
        if self.inner.settings.cleanup
            && let Some(old_image) = &old.image
            && let Err(e) = self.engine().remove_image_if_unused(old_image).await
        {
            warn!(image = %old_image, error = %e, "cannot remove the old image");
        }
        Ok(ApplyOutcome::Applied)
    }

    /// `plans` in an order where each container comes after the planned containers it
    /// depends on (the order given otherwise; a cycle keeps it).
    pub(super) async fn dependency_order(&self, plans: &[UpdatePlan]) -> Vec<usize> {
        let mut deps: Vec<Vec<String>> = Vec::with_capacity(plans.len());
        let mut names = Vec::with_capacity(plans.len());
        for plan in plans {
            let name = container_name(&plan.id).unwrap_or_default().to_owned();
            let found = match self.engine().inspect(&name).await {
                Ok(c) => dependencies(&c),
                Err(_) => Vec::new(),
            };
            deps.push(found);
            names.push(name);
        }
        let mut order = Vec::with_capacity(plans.len());
        let mut placed = vec![false; plans.len()];
        while order.len() < plans.len() {
            let ready = (0..plans.len()).find(|&i| {
                !placed[i]
                    && deps[i].iter().all(|d| {
                        names
                            .iter()
                            .enumerate()
                            .all(|(j, n)| n != d || placed[j] || j == i)
                    })
            });
            // A cycle: take the first left, in the given order.
            let next = ready.unwrap_or_else(|| (0..plans.len()).find(|&i| !placed[i]).unwrap_or(0));
            placed[next] = true;
            order.push(next);
        }
        order
    }
}

/// How a recreation failed.
#[derive(Debug)]
enum RecreateError {
    /// Before anything changed.
    Untouched(Error),
    /// The new container did not start; the old one runs again under its name.
    RolledBack(String),
    /// The new container did not start, and putting the old one back failed too.
    RollbackFailed { reason: String, rollback: String },
}

impl RecreateError {
    fn into_error(self, name: &str, target: &str) -> Error {
        let action = format!("update container {name}");
        match self {
            RecreateError::Untouched(e) => e,
            RecreateError::RolledBack(reason) => Error::Backend {
                backend: target.to_owned(),
                action,
                message: format!("{reason}; rolled back: the old container runs again"),
                retryable: false,
                source: None,
            },
            RecreateError::RollbackFailed { reason, rollback } => Error::Backend {
                backend: target.to_owned(),
                action,
                message: format!(
                    "{reason}; rolling back failed too ({rollback}): look for a container named {name}{ASIDE}*"
                ),
                retryable: false,
                source: None,
            },
        }
    }
}
