//! The status of ImageUpdaters, as Image Updater 1.x writes it: `observedGeneration`,
//! `applicationsMatched`, `imagesManaged` and the `Ready` and `Error` conditions after each
//! discovery; `lastUpdatedAt` and `recentUpdates` after each applied update. Written as a
//! merge patch of the status subresource by the field manager `keel`, only when a field
//! changes.

use chrono::{DateTime, SecondsFormat, Utc};
use keel_core::UpdatePlan;
use keel_k8s::FIELD_MANAGER;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::annotations::ImageConfig;
use crate::image_updater::image_updater_resource;
use crate::source::tag_text;

/// The longest condition message written; the API server refuses longer ones than 32768
/// bytes, and a list of problems can be longer.
const MAX_MESSAGE: usize = 4096;

/// What one discovery found for one ImageUpdater.
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageUpdaterReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The status as listed.
    pub status: Value,
    pub applications_matched: usize,
    pub images_managed: usize,
    /// Bad fields: the ImageUpdater is not used.
    pub invalid: Vec<String>,
    /// Problems with some of its Applications or images.
    pub problems: Vec<String>,
}

impl ImageUpdaterReport {
    pub(crate) fn new(object: &DynamicObject) -> ImageUpdaterReport {
        ImageUpdaterReport {
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: object.metadata.name.clone().unwrap_or_default(),
            generation: object.metadata.generation,
            status: object.data["status"].clone(),
            ..ImageUpdaterReport::default()
        }
    }
}

/// One entry of `status.recentUpdates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecentUpdate {
    pub alias: String,
    pub image: String,
    pub new_version: String,
    pub applications_updated: u32,
    pub updated_at: DateTime<Utc>,
    pub message: String,
}

/// `metav1.Time` as the API server writes it: RFC 3339 in UTC, whole seconds.
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cut(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Adds an applied update, counted with the others of the same alias and version.
pub(crate) fn add_update(updates: &mut Vec<RecentUpdate>, image: &ImageConfig, plan: &UpdatePlan) {
    add_update_at(updates, image, plan, Utc::now());
}

fn add_update_at(
    updates: &mut Vec<RecentUpdate>,
    image: &ImageConfig,
    plan: &UpdatePlan,
    now: DateTime<Utc>,
) {
    // `tag`, `tag@digest` or `digest`: the version the image was updated to.
    let new_version = tag_text(&plan.new);
    if let Some(u) = updates
        .iter_mut()
        .find(|u| u.alias == image.alias && u.new_version == new_version)
    {
        u.applications_updated += 1;
        u.updated_at = now;
        return;
    }
    updates.push(RecentUpdate {
        alias: image.alias.clone(),
        image: plan.new.name(),
        message: format!("Updated from {} to {}.", plan.current, plan.new),
        new_version,
        applications_updated: 1,
        updated_at: now,
    });
}

/// The conditions a report asks for: `(type, status, reason, message)`.
fn conditions(
    report: &ImageUpdaterReport,
) -> [(&'static str, &'static str, &'static str, String); 2] {
    let apps = report.applications_matched;
    let images = report.images_managed;
    if !report.invalid.is_empty() {
        let message = cut(report.invalid.join("; "));
        [
            (
                "Ready",
                "False",
                "ReconcileFailed",
                cut(format!("Reconciliation failed: {message}")),
            ),
            ("Error", "True", "ReconcileError", message),
        ]
    } else if !report.problems.is_empty() {
        let errors = report.problems.len();
        [
            (
                "Ready",
                "True",
                "ReconcileCompletedWithErrors",
                format!(
                    "Reconciled {apps} applications with {errors} errors, {images} images managed."
                ),
            ),
            (
                "Error",
                "True",
                "PartialErrors",
                cut(report.problems.join("; ")),
            ),
        ]
    } else {
        [
            (
                "Ready",
                "True",
                "ReconcileSucceeded",
                format!("Reconciled {apps} applications, {images} images managed."),
            ),
            (
                "Error",
                "False",
                "NoErrors",
                "No errors during last reconciliation.".to_owned(),
            ),
        ]
    }
}

/// The status patch a report asks for, or `None` when the status says all of it already.
/// A condition keeps its transition time while its status stays; conditions of other types
/// (`Reconciling`, which Image Updater sets while it works) are kept.
pub(crate) fn report_patch(report: &ImageUpdaterReport, now: DateTime<Utc>) -> Option<Value> {
    let current = &report.status;
    let existing: Vec<Value> = current["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| existing.iter().find(|c| c["type"] == t);
    let wanted = conditions(report);
    let mut changed = current["observedGeneration"].as_i64() != report.generation
        || current["applicationsMatched"].as_u64() != Some(report.applications_matched as u64)
        || current["imagesManaged"].as_u64() != Some(report.images_managed as u64);
    let mut out: Vec<Value> = Vec::new();
    for (t, status, reason, message) in &wanted {
        let old = find(t);
        let same = old.is_some_and(|c| {
            c["status"] == *status
                && c["reason"] == *reason
                && c["message"] == message.as_str()
                && c["observedGeneration"].as_i64() == report.generation
        });
        changed |= !same;
        let transition = old
            .filter(|c| c["status"] == *status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map_or_else(|| timestamp(now), str::to_owned);
        let mut condition = json!({
            "type": t,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition,
        });
        if let Some(generation) = report.generation {
            condition["observedGeneration"] = json!(generation);
        }
        out.push(condition);
    }
    if !changed {
        return None;
    }
    out.extend(
        existing
            .into_iter()
            .filter(|c| !wanted.iter().any(|(t, ..)| c["type"] == *t)),
    );
    let mut status = json!({
        "applicationsMatched": report.applications_matched,
        "imagesManaged": report.images_managed,
        "conditions": out,
    });
    if let Some(generation) = report.generation {
        status["observedGeneration"] = json!(generation);
    }
    Some(json!({ "status": status }))
}

fn updates_patch(updates: &[RecentUpdate]) -> Value {
    let last = updates.iter().map(|u| u.updated_at).max();
    json!({ "status": {
        "lastUpdatedAt": last.map(timestamp),
        "recentUpdates": updates.iter().map(|u| json!({
            "alias": u.alias,
            "image": u.image,
            "newVersion": u.new_version,
            "applicationsUpdated": u.applications_updated,
            "updatedAt": timestamp(u.updated_at),
            "message": u.message,
        })).collect::<Vec<_>>(),
    }})
}

async fn patch_status(client: &Client, namespace: &str, name: &str, patch: &Value) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &image_updater_resource());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch_status(name, &params, &Patch::Merge(patch)).await {
        Ok(_) => debug!(namespace, name, "ImageUpdater status written"),
        // The status is a report; not writing it does not undo or stop any update.
        Err(e) => warn!(namespace, name, error = %e, "could not write the ImageUpdater status"),
    }
}

/// Writes what a discovery found, when it changed.
pub(crate) async fn write_report(client: &Client, report: &ImageUpdaterReport) {
    if let Some(patch) = report_patch(report, Utc::now()) {
        patch_status(client, &report.namespace, &report.name, &patch).await;
    }
}

/// Writes the updates applied since the last discovery.
pub(crate) async fn write_updates(
    client: &Client,
    namespace: &str,
    name: &str,
    updates: &[RecentUpdate],
) {
    patch_status(client, namespace, name, &updates_patch(updates)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use keel_core::ImageRef;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("a time")
    }

    fn report() -> ImageUpdaterReport {
        ImageUpdaterReport {
            namespace: "argocd".into(),
            name: "web".into(),
            generation: Some(2),
            status: Value::Null,
            applications_matched: 3,
            images_managed: 4,
            ..ImageUpdaterReport::default()
        }
    }

    #[test]
    fn a_first_report_writes_counts_and_conditions_and_a_repeat_writes_nothing() {
        let r = report();
        let patch = report_patch(&r, at(0)).expect("a patch");
        assert_eq!(
            patch,
            json!({ "status": {
                "observedGeneration": 2,
                "applicationsMatched": 3,
                "imagesManaged": 4,
                "conditions": [
                    { "type": "Ready", "status": "True", "reason": "ReconcileSucceeded",
                      "message": "Reconciled 3 applications, 4 images managed.",
                      "lastTransitionTime": "1970-01-01T00:00:00Z", "observedGeneration": 2 },
                    { "type": "Error", "status": "False", "reason": "NoErrors",
                      "message": "No errors during last reconciliation.",
                      "lastTransitionTime": "1970-01-01T00:00:00Z", "observedGeneration": 2 },
                ],
            }})
        );
        let written = ImageUpdaterReport {
            status: patch["status"].clone(),
            ..report()
        };
        assert_eq!(report_patch(&written, at(60)), None);
    }

    #[test]
    fn a_changed_status_keeps_the_transition_time_of_conditions_that_stay() {
        let first = report_patch(&report(), at(0)).expect("a patch");
        let next = ImageUpdaterReport {
            status: first["status"].clone(),
            problems: vec!["application argocd/a: x".into()],
            ..report()
        };
        let patch = report_patch(&next, at(60)).expect("a patch");
        let conditions = &patch["status"]["conditions"];
        assert_eq!(conditions[0]["reason"], "ReconcileCompletedWithErrors");
        assert_eq!(conditions[0]["lastTransitionTime"], "1970-01-01T00:00:00Z");
        assert_eq!(conditions[1]["status"], "True");
        assert_eq!(conditions[1]["message"], "application argocd/a: x");
        assert_eq!(conditions[1]["lastTransitionTime"], "1970-01-01T00:01:00Z");
    }

    #[test]
    fn an_invalid_image_updater_is_not_ready() {
        let r = ImageUpdaterReport {
            invalid: vec!["bad".into()],
            applications_matched: 0,
            images_managed: 0,
            ..report()
        };
        let patch = report_patch(&r, at(0)).expect("a patch");
        assert_eq!(patch["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            patch["status"]["conditions"][0]["message"],
            "Reconciliation failed: bad"
        );
        assert_eq!(patch["status"]["conditions"][1]["reason"], "ReconcileError");
    }

    #[test]
    fn updates_of_one_alias_and_version_are_counted_together() {
        let image = ImageConfig::parse("web=ghcr.io/acme/web", &|_, _| None).expect("an image");
        let plan = |new: &str| UpdatePlan {
            target: "argocd".into(),
            id: "application/argocd/a/web".into(),
            current: ImageRef::parse("ghcr.io/acme/web:1.0.0").expect("a ref"),
            new: ImageRef::parse(new).expect("a ref"),
        };
        let mut updates = Vec::new();
        add_update_at(&mut updates, &image, &plan("ghcr.io/acme/web:1.1.0"), at(0));
        add_update_at(&mut updates, &image, &plan("ghcr.io/acme/web:1.1.0"), at(5));
        add_update_at(&mut updates, &image, &plan("ghcr.io/acme/web:1.2.0"), at(9));
        assert_eq!(
            updates_patch(&updates),
            json!({ "status": {
                "lastUpdatedAt": "1970-01-01T00:00:09Z",
                "recentUpdates": [
                    { "alias": "web", "image": "ghcr.io/acme/web", "newVersion": "1.1.0",
                      "applicationsUpdated": 2, "updatedAt": "1970-01-01T00:00:05Z",
                      "message": "Updated from ghcr.io/acme/web:1.0.0 to ghcr.io/acme/web:1.1.0." },
                    { "alias": "web", "image": "ghcr.io/acme/web", "newVersion": "1.2.0",
                      "applicationsUpdated": 1, "updatedAt": "1970-01-01T00:00:09Z",
                      "message": "Updated from ghcr.io/acme/web:1.0.0 to ghcr.io/acme/web:1.2.0." },
                ],
            }})
        );
    }
}
