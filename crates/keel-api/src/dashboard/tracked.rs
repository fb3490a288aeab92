//! A [`TrackedImages`] over an application's targets: every image they track, with what
//! its passes last found for it.
//!
//! The application records each pass in [`Checks`] ([`Checks::record`]); [`TargetImages`]
//! joins them with the targets' discovery when the page is asked for (keel-k8s and keel-helm
//! discover from their watch caches, without an API request). With a registry
//! ([`TargetImages::with_registry`]), an image's page checks the image as a pass would and
//! shows the policy's reasons and the change the next update makes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_core::target::TrackedImage;
use keel_core::trigger::ImageKey;
use keel_core::{Pipeline, Registry, RunReport, Target};

use super::{ImageDetail, TrackedImages, TrackedRow};

/// What the last pass that covered an image found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// When the pass ran.
    pub at: DateTime<Utc>,
    /// The image it would move to (applied, waiting for approval or refused), if any.
    pub update: Option<String>,
    /// The error it met for this image, if any.
    pub error: Option<String>,
}

/// The last check of each tracked image, by target and id.
#[derive(Debug, Default)]
pub struct Checks {
    by_image: Mutex<HashMap<(String, String), Check>>,
}

impl Checks {
    /// Records a pass at `at` that covered `covered` (the images it looked at).
    pub fn record(&self, report: &RunReport, covered: &HashSet<ImageKey>, at: DateTime<Utc>) {
        // An applied update is done; the others (held for approval, refused, failed, only
        // previewed) are still available.
        let applied: HashSet<(&str, &str)> = report
            .applied
            .iter()
            .map(|p| (p.target.as_str(), p.id.as_str()))
            .collect();
        let updates: HashMap<(&str, &str), String> = report
            .planned
            .iter()
            .filter(|p| !applied.contains(&(p.plan.target.as_str(), p.plan.id.as_str())))
            .map(|p| {
                let plan = &p.plan;
                (
                    (plan.target.as_str(), plan.id.as_str()),
                    plan.new.to_string(),
                )
            })
            .collect();
        let errors: HashMap<(&str, &str), String> = report
            .failures
            .iter()
            .filter_map(|f| {
                let id = f.id.as_deref()?;
                Some(((f.target.as_str(), id), f.error.to_string()))
            })
            .collect();
        let covered: HashSet<&str> = covered.iter().map(|k| k.id.as_str()).collect();
        let mut by_image = self.by_image.lock().unwrap_or_else(|p| p.into_inner());
        // A pass that errs for an image it did not list as covered (a failed listing) still
        // says so.
        let touched = covered
            .iter()
            .copied()
            .chain(errors.keys().map(|(_, id)| *id))
            .collect::<HashSet<&str>>();
        let targets: HashSet<&str> = report
            .planned
            .iter()
            .map(|p| p.plan.target.as_str())
            .chain(report.failures.iter().map(|f| f.target.as_str()))
            .collect();
        for id in touched {
            let target = targets
                .iter()
                .find(|t| updates.contains_key(&(**t, id)) || errors.contains_key(&(**t, id)))
                .copied();
            let check = Check {
                at,
                update: target.and_then(|t| updates.get(&(t, id)).cloned()),
                error: target.and_then(|t| errors.get(&(t, id)).cloned()),
            };
            by_image.insert(
                (target.unwrap_or_default().to_owned(), id.to_owned()),
                check,
            );
        }
    }

    /// The last check of image `id` of `target`: the later of the one recorded for the target
    /// and the one recorded without a target (a pass that found nothing for the image does
    /// not say which target it came from).
    pub fn get(&self, target: &str, id: &str) -> Option<Check> {
        let by_image = self.by_image.lock().unwrap_or_else(|p| p.into_inner());
        let own = by_image.get(&(target.to_owned(), id.to_owned()));
        let anonymous = by_image.get(&(String::new(), id.to_owned()));
        match (own, anonymous) {
            (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
            (a, b) => a.or(b),
        }
        .cloned()
    }
}

/// The tracked images of some targets, for the dashboard.
#[derive(Debug)]
pub struct TargetImages {
    targets: Vec<Arc<dyn Target>>,
    checks: Arc<Checks>,
    checker: Option<Pipeline>,
}

impl TargetImages {
    /// The images `targets` track, with the checks recorded in `checks`.
    pub fn new(targets: Vec<Arc<dyn Target>>, checks: Arc<Checks>) -> Self {
        TargetImages {
            targets,
            checks,
            checker: None,
        }
    }

    /// The same, checking an image against `registry` when its page is asked for: the
    /// candidate tags with the policy's reasons, and the change its next update makes.
    pub fn with_registry(self, registry: Arc<dyn Registry>) -> Self {
        TargetImages {
            checker: Some(Pipeline::new(registry)),
            ..self
        }
    }

    fn row(&self, target: &dyn Target, image: &TrackedImage) -> TrackedRow {
        let check = self.checks.get(target.name(), &image.id);
        let (kind, namespace, container) = parts(&image.id);
        TrackedRow {
            target: target.name().to_owned(),
            kind,
            namespace_or_repo: namespace,
            container,
            image: image.image.to_string(),
            policy: image.policy.summary(),
            trigger: image.trigger.to_string(),
            update: check.as_ref().and_then(|c| c.update.clone()),
            last_checked: check.as_ref().map(|c| c.at),
            last_error: check.and_then(|c| c.error),
            paused: image.paused,
            id: image.id.clone(),
        }
    }

    /// Checks `image` as a pass would, filling in the reasons and the next change.
    async fn check(&self, target: &dyn Target, image: &TrackedImage, detail: &mut ImageDetail) {
        let Some(checker) = &self.checker else {
            return;
        };
        let check = match checker.check(image, true).await {
            Ok(check) => check,
            Err(e) => {
                detail.check_error = Some(e.to_string());
                return;
            }
        };
        detail.tags_listed = check.tags().tags.len();
        detail.truncated = check.truncated();
        detail.explanation = check.decision.explanation.clone();
        match check.plan(target.name(), image) {
            Ok(Some(plan)) => match target.preview(std::slice::from_ref(&plan)).await {
                Ok(change) => detail.next_change = Some(change),
                Err(e) => detail.check_error = Some(format!("{plan}: {e}")),
            },
            Ok(None) => {}
            Err(e) => detail.check_error = Some(e.to_string()),
        }
    }
}

/// `kind`, `namespace`, `container` of an id of the form `kind/namespace/.../container`
/// (keel-k8s's `deployment/prod/web/app`, keel-helm's `helm/prod/web/image.repository`); a
/// keel-docker `container/<name>` is kind `container` and container `<name>`; a keel-git
/// `<file>#<place>` is kind `git`, the file and the place in it.
fn parts(id: &str) -> (String, String, String) {
    if let Some((file, place)) = id.split_once('#') {
        return ("git".to_owned(), file.to_owned(), place.to_owned());
    }
    let fields: Vec<&str> = id.split('/').collect();
    match fields.as_slice() {
        [kind, namespace, .., last] => (
            (*kind).to_owned(),
            (*namespace).to_owned(),
            (*last).to_owned(),
        ),
        [kind, name] => ((*kind).to_owned(), String::new(), (*name).to_owned()),
        _ => (String::new(), String::new(), id.to_owned()),
    }
}

#[async_trait]
impl TrackedImages for TargetImages {
    async fn snapshot(&self) -> Vec<TrackedRow> {
        let mut rows = Vec::new();
        for target in &self.targets {
            let Ok(images) = target.discover().await else {
                continue;
            };
            rows.extend(images.iter().map(|image| self.row(target.as_ref(), image)));
        }
        rows
    }

    async fn image(&self, target: &str, id: &str) -> Option<ImageDetail> {
        let target = self.targets.iter().find(|t| t.name() == target)?;
        let image = target
            .discover()
            .await
            .ok()?
            .into_iter()
            .find(|i| i.id == id)?;
        let mut detail = ImageDetail::of(self.row(target.as_ref(), &image));
        detail.settings = target.settings(id).await.ok();
        if !image.paused {
            self.check(target.as_ref(), &image, &mut detail).await;
        }
        Some(detail)
    }

    fn targets(&self) -> Option<&[Arc<dyn Target>]> {
        Some(&self.targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::pipeline::{Failure, PlannedUpdate};
    use keel_core::{Error, ImageRef, UpdatePlan};

    fn plan(id: &str, to: &str) -> UpdatePlan {
        UpdatePlan {
            target: "t".into(),
            id: id.into(),
            current: ImageRef::parse("web:1.0.0").unwrap(),
            new: ImageRef::parse(to).unwrap(),
        }
    }

    #[test]
    fn a_pass_records_held_updates_and_errors_and_forgets_applied_ones() {
        let (applied, held) = (plan("a", "web:1.1.0"), plan("b", "web:1.1.0"));
        let report = RunReport {
            planned: [&applied, &held]
                .map(|p| PlannedUpdate {
                    plan: p.clone(),
                    approvals: 0,
                })
                .to_vec(),
            applied: vec![applied],
            failures: vec![Failure {
                target: "t".into(),
                id: Some("c".into()),
                error: Error::not_found("repository web"),
            }],
            ..RunReport::default()
        };
        let key = |id: &str| ImageKey {
            id: id.into(),
            repository: "docker.io/library/web".into(),
        };
        let checks = Checks::default();
        let at = Utc::now();
        checks.record(&report, &[key("a"), key("b"), key("d")].into(), at);
        let a = checks.get("t", "a").unwrap();
        assert_eq!((a.update, a.error, a.at), (None, None, at));
        assert_eq!(
            checks.get("t", "b").unwrap().update.as_deref(),
            Some("docker.io/library/web:1.1.0")
        );
        assert_eq!(
            checks.get("t", "c").unwrap().error.as_deref(),
            Some("repository web not found")
        );
        assert_eq!(
            checks.get("t", "d").unwrap().update,
            None,
            "checked, nothing new"
        );
        assert_eq!(checks.get("t", "e"), None, "never checked");

        // A later pass that finds nothing new for `b` (its update was applied elsewhere, or
        // approved and pushed) replaces the update it showed.
        let later = at + chrono::Duration::seconds(1);
        checks.record(&RunReport::default(), &[key("b")].into(), later);
        let b = checks.get("t", "b").unwrap();
        assert_eq!((b.update, b.at), (None, later));
    }

    #[test]
    fn ids_of_every_target_split_into_kind_namespace_and_container() {
        let split = |id: &str| {
            let (kind, namespace, container) = parts(id);
            [kind, namespace, container]
        };
        assert_eq!(
            split("deployment/prod/web/app"),
            ["deployment", "prod", "app"]
        );
        assert_eq!(
            split("helm/prod/web/image.repository"),
            ["helm", "prod", "image.repository"]
        );
        assert_eq!(split("container/web"), ["container", "", "web"]);
        assert_eq!(
            split("apps/web/deploy.yaml#L12:app"),
            ["git", "apps/web/deploy.yaml", "L12:app"]
        );
        assert_eq!(split("odd"), ["", "", "odd"]);
    }
}
