//! One pass of the update flow: discover → list → select → approve → apply → notify.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::approval::Approvals;
use crate::error::Result;
use crate::notify::{Event, EventKind, Notifier, notify_each};
use crate::policy::Candidate;
use crate::reference::{Digest, Tag};
use crate::registry::{Registry, TagList};
use crate::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};

mod approve;
mod check;
mod facts;
mod report;

use self::approve::{Planned, ToApply};
use self::facts::{MetadataCache, RepoFacts, decide};

/// A repository's tracked images (with their target's index) and the facts gathered for them.
type Gathered = (Vec<(usize, TrackedImage)>, Result<RepoFacts>);
pub use self::check::Check;
pub use self::report::{Failure, PlannedUpdate, RefusedUpdate, RunReport, TruncatedListing};

/// Runs the update flow over targets, a registry and notifiers.
///
/// One pass ([`Pipeline::run_once`]) discovers every target's tracked images, lists each
/// repository's tags once however many tracked images use it, fetches digests and creation
/// times only where a policy needs them, lets each tracked image's policy decide, holds back
/// updates that need approvals, applies the rest (or, in a dry run, only previews them) and
/// tells the notifiers.
///
/// With an approvals manager ([`with_approvals`](Self::with_approvals)), an update that needs
/// approvals becomes an approval request bound to the new image's digest; it is applied in
/// the first pass after it is approved. [`run_filtered`](Self::run_filtered) runs a pass over
/// some tracked images only (those a webhook or a poll schedule concerns).
///
/// ```
/// use std::sync::Arc;
/// use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
/// use keel_core::pipeline::Pipeline;
/// # tokio_test_block(async {
/// let registry = Arc::new(InMemoryRegistry::new("demo registry"));
/// registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"]);
/// let target = Arc::new(InMemoryTarget::new("demo"));
/// target.track("web", "ghcr.io/acme/web:1.2.3", "minor").unwrap();
///
/// let report = Pipeline::new(registry).with_target(target.clone()).run_once().await;
/// assert_eq!(report.applied.len(), 1);
/// assert_eq!(target.image("web").unwrap().to_string(), "ghcr.io/acme/web:1.3.0");
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     futures::executor::block_on(f)
/// # }
/// ```
///
/// An update is never chosen from a partial tag list: when the registry's listing budget
/// cuts a repository's listing short ([`TagList::truncated`]), registries list tags
/// lexically, so the newest tags are the ones missing. None of that repository's images is
/// decided in the pass; the pass reports it once ([`RunReport::truncated`], a warning in
/// the log, and an [`EventKind::ListingTruncated`] event the first time, until the listing
/// is complete again).
#[derive(Debug, Clone)]
pub struct Pipeline {
    registry: Arc<dyn Registry>,
    targets: Vec<Arc<dyn Target>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    dry_run: bool,
    concurrency: usize,
    approvals: Option<Approvals>,
    /// Repositories whose truncated listing was announced, until it is complete again.
    truncated_announced: Arc<Mutex<HashSet<String>>>,
    /// Creation times of tags, shared by the pipeline's clones and kept across passes.
    metadata: Arc<Mutex<MetadataCache>>,
    metadata_ttl: Duration,
    metadata_concurrency: usize,
}

impl Pipeline {
    /// A pipeline reading from `registry`, with no targets or notifiers yet.
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        Pipeline {
            registry,
            targets: Vec::new(),
            notifiers: Vec::new(),
            dry_run: false,
            concurrency: 8,
            approvals: None,
            truncated_announced: Arc::default(),
            metadata: Arc::default(),
            metadata_ttl: Duration::from_secs(15 * 60),
            metadata_concurrency: 8,
        }
    }

    /// How long the creation time read for a tag is reused (default 15 minutes; zero reads
    /// every admitted tag's metadata on every pass). Within it, a `newest-build` pass costs
    /// the listing and one fresh digest lookup of the chosen tag, which re-reads that tag's
    /// metadata when it moved; a tag pushed again that the policy did not choose is noticed
    /// when its entry expires.
    pub fn with_metadata_cache_ttl(mut self, ttl: Duration) -> Self {
        self.metadata_ttl = ttl;
        self
    }

    /// How many metadata reads run at once per repository (default 8, at least 1).
    pub fn with_metadata_concurrency(mut self, concurrency: usize) -> Self {
        self.metadata_concurrency = concurrency.max(1);
        self
    }

    /// Holds updates that need approvals in `approvals`' store until they are approved.
    ///
    /// Each pass first expires overdue requests, then opens (or looks up) one request per
    /// update that needs approvals, bound to the digest of the new image (resolved once per
    /// repository and tag), and applies the approved ones, recording them as applied (or the
    /// failure). Dry runs only look requests up; they never open one.
    ///
    /// Approval events (requested, expired) that happen during a pass go to the pipeline's
    /// notifiers and the manager's, once to a notifier shared by both; events of votes go to
    /// the manager's notifiers. Without a manager, updates that need approvals are only
    /// announced ([`EventKind::ApprovalRequested`]) and reported as awaiting, every pass.
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// The approvals manager, if any.
    pub fn approvals(&self) -> Option<&Approvals> {
        self.approvals.as_ref()
    }

    /// Adds a target.
    pub fn with_target(mut self, target: Arc<dyn Target>) -> Self {
        self.targets.push(target);
        self
    }

    /// Adds a notifier.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Adds each of `notifiers` ([`with_notifier`](Self::with_notifier)); give the same to the
    /// approvals manager ([`Approvals::with_notifiers`]), which tells them of votes.
    pub fn with_notifiers(self, notifiers: impl IntoIterator<Item = Arc<dyn Notifier>>) -> Self {
        notifiers.into_iter().fold(self, Self::with_notifier)
    }

    /// In a dry run, plans are previewed, never applied.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// How many repositories to query at once (default 8, at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs one pass over every tracked image. Failures of one target or repository are
    /// reported and do not stop the others.
    pub async fn run_once(&self) -> RunReport {
        self.run_filtered(&|_| true).await
    }

    /// Runs one pass over the tracked images `filter` accepts, e.g. those of the repository a
    /// webhook reported a push to, or those on one poll schedule. Targets are still
    /// discovered in full; only accepted images are counted, listed and decided, each
    /// repository listed once. [Paused](TrackedImage::paused) images are left out.
    pub async fn run_filtered(&self, filter: &(dyn Fn(&TrackedImage) -> bool + Sync)) -> RunReport {
        let mut report = RunReport {
            started: Some(Utc::now()),
            ..RunReport::default()
        };
        let mut tracked = self.discover(&mut report).await;
        // A paused image is not looked at until it is resumed.
        tracked.retain(|(_, image)| !image.paused && filter(image));
        report.tracked = tracked.len();
        self.expire_approvals(&mut report).await;

        let gathered = self.gather_repositories(tracked, &mut report).await;
        let plans = self.plan_updates(gathered, &mut report).await;
        for p in &plans {
            info!(plan = %p.update.plan, "update planned");
            self.emit(
                &mut report,
                EventKind::UpdatePlanned,
                &p.update.plan,
                &p.image,
                "",
            )
            .await;
        }

        // Digests of new tags resolved for approval requests, by repository and tag.
        let mut resolved: HashMap<(String, String), Digest> = HashMap::new();
        for (t, target) in self.targets.iter().enumerate() {
            let mine = plans.iter().filter(|p| p.target == t);
            let mut to_apply = self.approve(mine, &mut resolved, &mut report).await;
            if !self.dry_run {
                to_apply = self
                    .confirm_approved(&mut report, &mut resolved, to_apply)
                    .await;
            }
            if !to_apply.is_empty() {
                self.apply(target.as_ref(), to_apply, &mut report).await;
            }
        }
        report.planned = plans.into_iter().map(|p| p.update).collect();
        report
    }

    /// Phase 5: previews the plans in a dry run, else applies them, records the outcome of
    /// each approved one in the approvals store and tells the notifiers.
    async fn apply(&self, target: &dyn Target, to_apply: Vec<ToApply<'_>>, report: &mut RunReport) {
        // Report-only images are previewed, as every image is in a dry run.
        let (previewed, to_apply): (Vec<ToApply<'_>>, Vec<ToApply<'_>>) = to_apply
            .into_iter()
            .partition(|(_, planned, _)| self.dry_run || planned.image.report_only);
        if !previewed.is_empty() {
            let plans: Vec<UpdatePlan> = previewed.iter().map(|(p, _, _)| p.clone()).collect();
            match target.preview(&plans).await {
                Ok(diff) => {
                    report.previews.insert(target.name().to_owned(), diff);
                }
                Err(error) => report.failures.push(Failure {
                    target: target.name().to_owned(),
                    id: None,
                    error,
                }),
            }
        }
        if to_apply.is_empty() {
            return;
        }
        let plans_only: Vec<UpdatePlan> = to_apply.iter().map(|(p, _, _)| p.clone()).collect();
        let results = target.apply_all(&plans_only).await;
        for ((plan, planned, request), result) in to_apply.into_iter().zip(results) {
            let error = match result {
                Ok(outcome) => {
                    let msg = match outcome {
                        ApplyOutcome::Applied => "applied",
                        ApplyOutcome::AlreadyCurrent => "already current",
                    };
                    info!(plan = %plan, outcome = msg, "update applied");
                    self.emit(report, EventKind::UpdateApplied, &plan, &planned.image, msg)
                        .await;
                    if let Some(approvals) = &self.approvals {
                        let recorded = match request {
                            Some(request) => approvals.mark_applied(&request.id).await,
                            None if outcome == ApplyOutcome::Applied => {
                                approvals.record_update(&plan, Ok(())).await
                            }
                            None => Ok(()),
                        };
                        if let Err(error) = recorded {
                            warn!(plan = %plan, %error, "recording the update failed");
                            report.failures.push(Failure {
                                target: plan.target.clone(),
                                id: Some(plan.id.clone()),
                                error,
                            });
                        }
                    }
                    report.applied.push(plan);
                    continue;
                }
                Err(error) => error,
            };
            warn!(plan = %plan, %error, "update failed");
            let msg = error.to_string();
            self.emit(report, EventKind::UpdateFailed, &plan, &planned.image, &msg)
                .await;
            if let Some(approvals) = &self.approvals {
                let recorded = match request {
                    Some(request) => approvals.mark_apply_failed(&request.id, &msg).await,
                    None => approvals.record_update(&plan, Err(&msg)).await,
                };
                if let Err(e) = recorded {
                    warn!(plan = %plan, error = %e, "auditing the failure failed");
                }
            }
            report.failures.push(Failure {
                target: plan.target.clone(),
                id: Some(plan.id.clone()),
                error,
            });
        }
    }

    /// Phase 1, with approvals: expires the requests past their deadline (not in dry runs).
    async fn expire_approvals(&self, report: &mut RunReport) {
        let (Some(approvals), false) = (&self.approvals, self.dry_run) else {
            return;
        };
        match approvals.expire_due_with(&self.notifiers).await {
            Ok((expired, failures)) => {
                report.expired = expired;
                report.notify_failures += failures;
            }
            Err(error) => {
                warn!(store = approvals.store().name(), %error, "expiring approvals failed");
                report.failures.push(Failure {
                    target: approvals.store().name().to_owned(),
                    id: None,
                    error,
                });
            }
        }
    }

    /// Phase 2: groups the tracked images by repository (N workloads on one image cost one
    /// listing) and gathers each repository's facts, a few repositories at a time.
    async fn gather_repositories(
        &self,
        tracked: Vec<(usize, TrackedImage)>,
        report: &mut RunReport,
    ) -> Vec<Gathered> {
        let mut by_repo: BTreeMap<String, Vec<(usize, TrackedImage)>> = BTreeMap::new();
        for (target, image) in tracked {
            by_repo
                .entry(image.image.name())
                .or_default()
                .push((target, image));
        }
        report.listings = by_repo.len();
        stream::iter(by_repo)
            .map(|(repo, images)| async move {
                let span = info_span!("repository", repository = %repo);
                let facts = self.gather(&images).instrument(span).await;
                (images, facts)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Phase 3: lets each image's policy decide from its repository's facts. A repository
    /// that failed fails its images; one whose listing was cut short is held back.
    async fn plan_updates(&self, gathered: Vec<Gathered>, report: &mut RunReport) -> Vec<Planned> {
        let mut plans: Vec<Planned> = Vec::new();
        for (images, facts) in gathered {
            let facts = match facts {
                Ok(facts) => facts,
                Err(error) => {
                    for (t, image) in &images {
                        report.failures.push(Failure {
                            target: self.targets[*t].name().to_owned(),
                            id: Some(image.id.clone()),
                            error: error.clone(),
                        });
                    }
                    continue;
                }
            };
            if facts.tags.truncated {
                self.hold_truncated(report, &images, &facts.tags).await;
                continue;
            }
            let name = images[0].1.image.name();
            report.skipped_tags.extend(
                facts
                    .unreadable
                    .iter()
                    .map(|(tag, reason)| (format!("{name}:{tag}"), reason.clone())),
            );
            self.lock_announced().remove(&name);
            // Built once per repository, however many tracked images share it.
            let candidates = facts.candidates();
            for (t, image) in images {
                plans.extend(self.plan_one(t, image, &facts, &candidates, report));
            }
        }
        plans.sort_by(|a, b| (a.target, &a.update.plan.id).cmp(&(b.target, &b.update.plan.id)));
        plans
    }

    /// One image's plan, if its policy chose an update. The new image keeps a digest pin
    /// when the running one has one.
    fn plan_one(
        &self,
        t: usize,
        image: TrackedImage,
        facts: &RepoFacts,
        candidates: &[Candidate<'_>],
        report: &mut RunReport,
    ) -> Option<Planned> {
        let decision = decide(&image, facts, candidates, false);
        let Some(update) = decision.update else {
            debug!(id = %image.id, image = %image.image, "no update");
            return None;
        };
        let target = self.targets[t].name().to_owned();
        let (new, known_digest) = match new_image(&image.image, update, &facts.digests) {
            Ok(moved) => moved,
            Err(error) => {
                report.failures.push(Failure {
                    target,
                    id: Some(image.id.clone()),
                    error,
                });
                return None;
            }
        };
        let plan = UpdatePlan {
            target,
            id: image.id.clone(),
            current: image.image.clone(),
            new,
        };
        Some(Planned {
            target: t,
            update: PlannedUpdate {
                plan,
                approvals: image.approvals,
            },
            image,
            known_digest,
        })
    }

    async fn discover(&self, report: &mut RunReport) -> Vec<(usize, TrackedImage)> {
        let mut tracked = Vec::new();
        for (t, target) in self.targets.iter().enumerate() {
            match target.discover().await {
                Ok(images) => tracked.extend(images.into_iter().map(|i| (t, i))),
                Err(error) => {
                    warn!(target = target.name(), %error, "discovery failed");
                    report.failures.push(Failure {
                        target: target.name().to_owned(),
                        id: None,
                        error,
                    });
                }
            }
        }
        tracked
    }

    fn lock_announced(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.truncated_announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reports a repository whose listing was cut short: its images are not decided.
    async fn hold_truncated(
        &self,
        report: &mut RunReport,
        images: &[(usize, TrackedImage)],
        tags: &TagList,
    ) {
        let first = &images[0].1;
        let listing = TruncatedListing {
            repository: first.image.name(),
            registry: self.registry.name().to_owned(),
            listed: tags.tags.len(),
            images: images
                .iter()
                .map(|(t, i)| (self.targets[*t].name().to_owned(), i.id.clone()))
                .collect(),
        };
        warn!(repository = %listing.repository, listed = listing.listed, "{listing}");
        let first_time = self.lock_announced().insert(listing.repository.clone());
        if first_time {
            let plan = UpdatePlan {
                target: self.targets[images[0].0].name().to_owned(),
                id: first.id.clone(),
                current: first.image.clone(),
                new: first.image.clone(),
            };
            let message = listing.to_string();
            self.emit(report, EventKind::ListingTruncated, &plan, first, &message)
                .await;
        }
        report.truncated.push(listing);
    }

    async fn emit(
        &self,
        report: &mut RunReport,
        kind: EventKind,
        plan: &UpdatePlan,
        image: &TrackedImage,
        message: &str,
    ) {
        if self.notifiers.is_empty() {
            return;
        }
        let event = Event::new(kind, plan.clone(), message)
            .with_release_notes(image.release_notes.clone())
            .with_channels(image.notify.clone());
        report.notify_failures += notify_each(&self.notifiers, &event, "notification failed").await;
    }
}

/// The image `current` moves to with `update`, and the digest known for its tag: a digest the
/// policy chose goes with the tag; a digest only known from the listing (`digests`, by tag)
/// goes with it when the running image is pinned.
pub(crate) fn new_image(
    current: &crate::reference::ImageRef,
    update: crate::policy::Update,
    digests: &HashMap<String, Digest>,
) -> Result<(crate::reference::ImageRef, Option<Digest>)> {
    let tag = Tag::new(update.tag.as_str())?;
    let chosen = update.digest.is_some();
    let known_digest = update.digest.or_else(|| digests.get(tag.as_str()).cloned());
    let mut new = current.with_tag(tag);
    if let Some(d) = &known_digest
        && (chosen || current.digest().is_some())
    {
        new = new.with_digest(d.clone());
    }
    Ok((new, known_digest))
}
