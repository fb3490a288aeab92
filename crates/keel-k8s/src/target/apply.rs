//! Applying a plan: the image patch of one container, guarded and retried.

use std::time::Duration;

use keel_core::retry::Backoff;
use keel_core::target::{ApplyOutcome, UpdatePlan};
use keel_core::{Error, ImageRef};
use kube::api::{Api, Patch, PatchParams};
use tracing::{debug, info};

use crate::error as kerr;
use crate::patch::{effective_image, image_patch, recorded_digests};
use crate::workload::{ContainerId, Workload};

use super::*;

/// The pause before re-reading a workload after a 409 Conflict: up to 20 ms after the first,
/// doubling with each further conflict up to 320 ms, and fully jittered so that writers that
/// collided do not collide again in step.
const CONFLICT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(20), Duration::from_millis(320));

impl KubeTarget {
    pub(super) async fn apply_typed<K: Workload>(
        &self,
        id: &ContainerId,
        plan: &UpdatePlan,
    ) -> Result<ApplyOutcome, Error> {
        let api: Api<K> = Api::namespaced(self.inner.settings.client.clone(), &id.namespace);
        let action = format!("apply {plan}");
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let mut attempt = 0;
        loop {
            let object = api
                .get(&id.name)
                .await
                .map_err(|e| kerr::from_kube(e, &id.request("get")))?;
            let view = self.effective(object.view());
            let container = view.container(&id.container, id.init).ok_or_else(|| {
                Error::not_found(format!(
                    "{}container {} in {}",
                    if id.init { "init " } else { "" },
                    id.container,
                    id.workload()
                ))
            })?;
            if let Some(tag) = &container.driven_by {
                // OpenShift would write the tag's image over a direct change.
                return Err(Error::Conflict {
                    action,
                    reason: format!(
                        "{id} is driven by {} from ImageStreamTag {tag}; update \
                         imagestream/{}/{}/{} instead",
                        super::discovery::trigger_name(container),
                        tag.namespace,
                        tag.stream,
                        tag.tag
                    ),
                });
            }
            let written_text = container.image.clone().unwrap_or_default();
            let written = ImageRef::parse(&written_text).map_err(|e| Error::Conflict {
                action: action.clone(),
                reason: format!("{id} runs an image that does not parse ({e})"),
            })?;
            let running = effective_image(&written, container, &recorded_digests(&view));
            if plan.already_runs(&running) {
                debug!("already runs the new image");
                return Ok(ApplyOutcome::AlreadyCurrent);
            }
            if !plan.still_current(&running) {
                return Err(Error::Conflict {
                    action,
                    reason: format!(
                        "{id} runs {running} now, not {}; discover again",
                        plan.current
                    ),
                });
            }
            let patch = image_patch(
                &view,
                container,
                &written_text,
                &written,
                plan,
                self.inner.settings.watch.pin_digests(),
                chrono::Utc::now(),
            );
            let sent = if K::KIND.is_openshift() {
                // The object as read, its `resourceVersion` included: a concurrent change
                // meets a 409 Conflict as with the strategic merge patch.
                let ops = serde_json::to_value(&object)
                    .map_err(|e| e.to_string())
                    .and_then(|current| crate::openshift::json_patch_of(&current, &patch.body))
                    .and_then(|ops| {
                        serde_json::from_value(serde_json::Value::Array(ops))
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|reason| Error::Conflict {
                        action: action.clone(),
                        reason: format!("{id}: {reason}"),
                    })?;
                api.patch(&id.name, &params, &Patch::<()>::Json(ops)).await
            } else {
                api.patch(&id.name, &params, &Patch::Strategic(&patch.body))
                    .await
            };
            match sent {
                Ok(_) => {
                    info!(
                        image = %patch.image,
                        rolls_by_annotation = patch.forces_roll,
                        "patched"
                    );
                    return Ok(ApplyOutcome::Applied);
                }
                Err(e)
                    if kerr::is_conflict(&e) && attempt < self.inner.settings.conflict_retries =>
                {
                    attempt += 1;
                    debug!(attempt, "409 Conflict: the workload changed; re-reading");
                    tokio::time::sleep(CONFLICT_BACKOFF.delay(attempt)).await;
                }
                Err(e) if kerr::is_conflict(&e) => {
                    return Err(Error::Conflict {
                        action,
                        reason: format!(
                            "{} kept changing: {} attempts met a 409 Conflict",
                            id.workload(),
                            attempt + 1
                        ),
                    });
                }
                Err(e) => return Err(kerr::from_kube(e, &id.request("patch"))),
            }
        }
    }
}
