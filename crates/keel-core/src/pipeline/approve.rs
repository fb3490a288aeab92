//! Updates that need approvals: their requests, and the confirmation of approved digests.

use std::collections::HashMap;

use tracing::{info, warn};

use super::{Failure, Pipeline, PlannedUpdate, RefusedUpdate, RunReport};
use crate::approval::{ApprovalRequest, ApprovalState, Approvals, RequestSpec};
use crate::error::{Error, Result};
use crate::notify::EventKind;
use crate::reference::Digest;
use crate::target::{TrackedImage, UpdatePlan};

/// An update a policy chose, with what the rest of the pass needs to know about it.
pub(super) struct Planned {
    /// Index of the target in the pipeline.
    pub(super) target: usize,
    pub(super) update: PlannedUpdate,
    pub(super) image: TrackedImage,
    /// The new image's digest, when the policy or the listing already knew it.
    pub(super) known_digest: Option<Digest>,
}

/// Why an update that needs approvals has no request to act on.
pub(super) enum Consulted {
    /// A dry run found no request: one would be opened.
    Awaiting,
    /// Resolving the digest or the store failed.
    Failed(Error),
}

impl Pipeline {
    /// Confirms, right before they are applied, that the tags of approved updates still
    /// point at the approved digests, with a fresh lookup
    /// ([`Registry::confirm_digest`]). An update whose tag moved since the vote is not
    /// applied: its approved request is audited as failed and a request for the new digest
    /// is opened, which waits for votes of its own. Updates without approvals pass as they
    /// are.
    pub(super) async fn confirm_approved<'p>(
        &self,
        report: &mut RunReport,
        resolved: &mut HashMap<(String, String), Digest>,
        to_apply: Vec<(UpdatePlan, &'p Planned, Option<ApprovalRequest>)>,
    ) -> Vec<(UpdatePlan, &'p Planned, Option<ApprovalRequest>)> {
        let mut confirmed = Vec::with_capacity(to_apply.len());
        for (plan, p, request) in to_apply {
            let (Some(approvals), Some(request)) = (&self.approvals, &request) else {
                confirmed.push((plan, p, request));
                continue;
            };
            let (Some(approved), Some(tag)) = (&request.digest, plan.new.tag()) else {
                confirmed.push((plan, p, Some(request.clone())));
                continue;
            };
            let now = match self.registry.confirm_digest(&plan.new, tag).await {
                Ok(now) if now == *approved => {
                    confirmed.push((plan, p, Some(request.clone())));
                    continue;
                }
                Ok(now) => now,
                Err(error) => {
                    warn!(plan = %plan, %error, "confirming the approved digest failed");
                    report.failures.push(Failure {
                        target: plan.target.clone(),
                        id: Some(plan.id.clone()),
                        error,
                    });
                    continue;
                }
            };
            let msg = format!(
                "not applied: {}:{tag} now points at {now}, not at the approved {approved}; \
                 the new content needs approvals of its own",
                plan.new.name()
            );
            warn!(plan = %plan, request = %request.id, "{msg}");
            if let Err(error) = approvals.mark_apply_failed(&request.id, &msg).await {
                warn!(request = %request.id, %error, "auditing the refusal failed");
            }
            resolved.insert((plan.new.name(), tag.as_str().to_owned()), now.clone());
            match self.consult_digest(approvals, p, Some(now.clone())).await {
                Ok((reopened, failures)) => {
                    report.notify_failures += failures;
                    match reopened.state {
                        // The new content was approved too (a pass while the old digest
                        // was still cached): roll it out, pinned.
                        state if state.allows_apply() => {
                            let pinned = UpdatePlan {
                                new: p.update.plan.new.clone().with_digest(now),
                                ..p.update.plan.clone()
                            };
                            confirmed.push((pinned, p, Some(reopened.clone())));
                        }
                        ApprovalState::Pending => {
                            report.awaiting_approval.push(p.update.plan.clone());
                        }
                        state => report.refused.push(RefusedUpdate {
                            plan: p.update.plan.clone(),
                            request: reopened.id.clone(),
                            state,
                        }),
                    }
                    report.approval_requests.push(reopened);
                }
                Err(Consulted::Awaiting) => report.awaiting_approval.push(p.update.plan.clone()),
                Err(Consulted::Failed(error)) => report.failures.push(Failure {
                    target: plan.target.clone(),
                    id: Some(plan.id.clone()),
                    error,
                }),
            }
        }
        confirmed
    }

    /// The approval request of an update that needs approvals: opened (or found) in a real
    /// pass, only looked up in a dry run. Also returns how many notifications failed.
    pub(super) async fn consult(
        &self,
        approvals: &Approvals,
        p: &Planned,
        resolved: &mut HashMap<(String, String), Digest>,
    ) -> Result<(ApprovalRequest, usize), Consulted> {
        let digest = self
            .new_digest(p, resolved)
            .await
            .map_err(Consulted::Failed)?;
        self.consult_digest(approvals, p, digest).await
    }

    /// [`consult`](Self::consult) with the new image's digest known.
    pub(super) async fn consult_digest(
        &self,
        approvals: &Approvals,
        p: &Planned,
        digest: Option<Digest>,
    ) -> Result<(ApprovalRequest, usize), Consulted> {
        let plan = &p.update.plan;
        if self.dry_run {
            return match approvals.lookup(plan, digest.as_ref()).await {
                Ok(Some(request)) => Ok((request, 0)),
                Ok(None) => Err(Consulted::Awaiting),
                Err(error) => Err(Consulted::Failed(error)),
            };
        }
        let spec = RequestSpec::for_image(&p.image, digest);
        approvals
            .open(plan, spec, &self.notifiers)
            .await
            .map_err(Consulted::Failed)
    }

    /// The digest of an update's new image: known from the policy or the listing, else
    /// resolved once per repository and tag in this pass.
    pub(super) async fn new_digest(
        &self,
        p: &Planned,
        resolved: &mut HashMap<(String, String), Digest>,
    ) -> Result<Option<Digest>> {
        let new = &p.update.plan.new;
        if let Some(d) = new.digest().or(p.known_digest.as_ref()) {
            return Ok(Some(d.clone()));
        }
        let Some(tag) = new.tag() else {
            return Ok(None);
        };
        let key = (new.name(), tag.as_str().to_owned());
        if let Some(d) = resolved.get(&key) {
            return Ok(Some(d.clone()));
        }
        let digest = self.registry.resolve_digest(new, tag).await?;
        resolved.insert(key, digest.clone());
        Ok(Some(digest))
    }
}

/// A plan on its way to its target, with the image it came from and the approval request
/// that allows it, if it needed one.
pub(super) type ToApply<'p> = (UpdatePlan, &'p Planned, Option<ApprovalRequest>);

impl Pipeline {
    /// Phase 4: passes the plans that need no approval, and consults the approval request of
    /// each that does: approved ones pass with the approved digest, pending ones wait, and
    /// rejected, expired or superseded ones are refused.
    pub(super) async fn approve<'p>(
        &self,
        plans: impl Iterator<Item = &'p Planned>,
        resolved: &mut HashMap<(String, String), Digest>,
        report: &mut RunReport,
    ) -> Vec<ToApply<'p>> {
        let mut to_apply = Vec::new();
        for p in plans {
            let plan = &p.update.plan;
            if p.update.approvals == 0 {
                to_apply.push((plan.clone(), p, None));
                continue;
            }
            let Some(approvals) = &self.approvals else {
                let msg = format!("needs {} approval(s)", p.update.approvals);
                self.emit(report, EventKind::ApprovalRequested, plan, &p.image, &msg)
                    .await;
                report.awaiting_approval.push(plan.clone());
                continue;
            };
            match self.consult(approvals, p, resolved).await {
                Ok((request, failures)) => {
                    report.notify_failures += failures;
                    match request.state {
                        ApprovalState::Pending => report.awaiting_approval.push(plan.clone()),
                        state if state.allows_apply() => {
                            // What was approved is what rolls out: the approved digest.
                            let approved = match &request.digest {
                                Some(d) => UpdatePlan {
                                    new: plan.new.clone().with_digest(d.clone()),
                                    ..plan.clone()
                                },
                                None => plan.clone(),
                            };
                            to_apply.push((approved, p, Some(request.clone())));
                        }
                        state => {
                            let id = &request.id;
                            info!(plan = %plan, request = %id, %state, "update refused");
                            report.refused.push(RefusedUpdate {
                                plan: plan.clone(),
                                request: request.id.clone(),
                                state,
                            });
                        }
                    }
                    report.approval_requests.push(request);
                }
                Err(Consulted::Awaiting) => report.awaiting_approval.push(plan.clone()),
                Err(Consulted::Failed(error)) => {
                    warn!(plan = %plan, %error, "approval request failed");
                    report.failures.push(Failure {
                        target: plan.target.clone(),
                        id: Some(plan.id.clone()),
                        error,
                    });
                }
            }
        }
        to_apply
    }
}
