//! What the dashboard's tracked-images page shows of the controller: every image its targets
//! track, with what the worker's passes last found for it.
//!
//! [`Checks`] is fed by the worker after each pass
//! ([`Worker::with_checks`](crate::worker::Worker::with_checks)); [`ClusterImages`] joins it with the targets'
//! discovery (served from their watch caches: no API request) when the page is asked for.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_api::dashboard::{TrackedImages, TrackedRow};
use keel_core::trigger::ImageKey;
use keel_core::{RunReport, Target};

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
        let updates: HashMap<(&str, &str), String> = report
            .planned
            .iter()
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

    /// The last check of image `id` of `target`.
    pub fn get(&self, target: &str, id: &str) -> Option<Check> {
        let by_image = self.by_image.lock().unwrap_or_else(|p| p.into_inner());
        by_image
            .get(&(target.to_owned(), id.to_owned()))
            .or_else(|| by_image.get(&(String::new(), id.to_owned())))
            .cloned()
    }
}

/// The tracked images of the controller's targets, for the dashboard.
#[derive(Debug)]
pub struct ClusterImages {
    targets: Vec<Arc<dyn Target>>,
    checks: Arc<Checks>,
}

impl ClusterImages {
    /// The images `targets` track, with the checks recorded in `checks`.
    pub fn new(targets: Vec<Arc<dyn Target>>, checks: Arc<Checks>) -> Self {
        ClusterImages { targets, checks }
    }
}

/// `kind`, `namespace`, `container` of a keel-k8s or keel-helm id
/// (`deployment/prod/web/app`, `helm/prod/web/image.repository`).
fn parts(id: &str) -> (String, String, String) {
    let fields: Vec<&str> = id.split('/').collect();
    match fields.as_slice() {
        [kind, namespace, .., last] => (
            (*kind).to_owned(),
            (*namespace).to_owned(),
            (*last).to_owned(),
        ),
        _ => (String::new(), String::new(), id.to_owned()),
    }
}

#[async_trait]
impl TrackedImages for ClusterImages {
    async fn snapshot(&self) -> Vec<TrackedRow> {
        let mut rows = Vec::new();
        for target in &self.targets {
            let Ok(images) = target.discover().await else {
                continue;
            };
            for image in images {
                let check = self.checks.get(target.name(), &image.id);
                let (kind, namespace, container) = parts(&image.id);
                rows.push(TrackedRow {
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
                    id: image.id,
                });
            }
        }
        rows
    }
}
