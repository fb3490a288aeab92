//! One pass of the update flow: discover → list → select → approve → apply → notify.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::approval::{ApprovalRequest, ApprovalState, Approvals};
use crate::error::Error;
use crate::notify::{Event, EventKind, Notifier};
use crate::policy::{Candidate, Current, Decision, SelectInput};
use crate::reference::{Digest, ImageRef, Tag};
use crate::registry::{ImageMetadata, Registry, TagList};
use crate::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};

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

/// A repository whose tag list the registry's listing budget cut short; none of its
/// images was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedListing {
    /// The repository, e.g. `ghcr.io/acme/web`.
    pub repository: String,
    /// The registry backend's name.
    pub registry: String,
    /// How many tags the listing held when the budget stopped it.
    pub listed: usize,
    /// The tracked images held back, as `(target, id)`.
    pub images: Vec<(String, String)>,
}

impl fmt::Display for TruncatedListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the tag list of {} from {} stopped at the listing budget after {} tags; no \
             update of its {} image(s) is chosen from a partial list, since the newest tags \
             are the ones cut: raise the registry client's listing budget (pages and tags)",
            self.repository,
            self.registry,
            self.listed,
            self.images.len()
        )
    }
}

/// An update held back by its approval request: rejected, expired or superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedUpdate {
    /// The plan.
    pub plan: UpdatePlan,
    /// The approval request's id.
    pub request: String,
    /// Why: the request's state.
    pub state: ApprovalState,
}

/// An update a policy chose, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpdate {
    /// The plan.
    pub plan: UpdatePlan,
    /// Approvals it needs before it is applied (0: none).
    pub approvals: u32,
}

/// Something that went wrong for one tracked image or target; the rest of the pass went on.
#[derive(Debug)]
pub struct Failure {
    /// The target's name (the approval store's, when expiring approvals failed).
    pub target: String,
    /// The tracked image's id, or `None` when the whole target failed (discovery).
    pub id: Option<String>,
    /// What went wrong.
    pub error: Error,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// When the pass started.
    pub started: Option<DateTime<Utc>>,
    /// How many images the targets track.
    pub tracked: usize,
    /// How many repository listings the pass made.
    pub listings: usize,
    /// Every update a policy chose, in target and id order.
    pub planned: Vec<PlannedUpdate>,
    /// Plans applied (or already current) in the targets.
    pub applied: Vec<UpdatePlan>,
    /// Plans waiting for approvals.
    pub awaiting_approval: Vec<UpdatePlan>,
    /// Plans whose approval request was rejected, expired or superseded; not applied.
    pub refused: Vec<RefusedUpdate>,
    /// The approval requests the pass opened or consulted, as they stood then (with an
    /// approvals manager).
    pub approval_requests: Vec<ApprovalRequest>,
    /// Approval requests the pass found past their deadline and expired.
    pub expired: Vec<ApprovalRequest>,
    /// In a dry run: each target's preview of what it would change.
    pub previews: BTreeMap<String, String>,
    /// What went wrong, per target or tracked image.
    pub failures: Vec<Failure>,
    /// Repositories whose tag list was cut short by the listing budget; their images were
    /// not decided.
    pub truncated: Vec<TruncatedListing>,
    /// Tags left out of a decision because their metadata could not be read, as
    /// `(repository:tag, reason)`.
    pub skipped_tags: Vec<(String, String)>,
    /// How many notifications failed to deliver.
    pub notify_failures: usize,
}

/// Per-repository facts gathered once per pass, shared by all its tracked images.
#[derive(Default)]
struct RepoFacts {
    tags: TagList,
    /// Digests resolved (or confirmed) in this pass.
    digests: HashMap<String, Digest>,
    created: HashMap<String, DateTime<Utc>>,
    /// Tags whose metadata was looked up in this pass (cached, read or failed).
    read: HashSet<String>,
    /// The digests the metadata of `created` was read from, where the backend said.
    read_digests: HashMap<String, Digest>,
    /// Tags skipped because their metadata could not be read, with the reason.
    unreadable: Vec<(String, String)>,
}

impl RepoFacts {
    fn learn(&mut self, tag: &str, meta: &ImageMetadata) {
        if let Some(created) = meta.created {
            self.created.insert(tag.to_owned(), created);
        }
        if let Some(digest) = &meta.digest {
            self.read_digests.insert(tag.to_owned(), digest.clone());
        }
    }
}

/// Image metadata by repository and tag, kept across passes: metadata is immutable per
/// digest, and the tag a policy chooses is confirmed to point at the same digest before it
/// is used ([`Pipeline::with_metadata_cache_ttl`]).
#[derive(Debug, Default)]
struct MetadataCache {
    entries: HashMap<(String, String), (Instant, ImageMetadata)>,
}

/// The most entries the metadata cache holds; past it, expired entries go, then all.
const METADATA_CACHE_ENTRIES: usize = 200_000;

/// The longest time metadata is reused, whatever lifetime was asked for: a century.
const LONGEST_METADATA_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

impl MetadataCache {
    fn fresh(&self, repository: &str, tag: &str) -> Option<&ImageMetadata> {
        let (expires, meta) = self.entries.get(&(repository.to_owned(), tag.to_owned()))?;
        (Instant::now() < *expires).then_some(meta)
    }

    fn insert(&mut self, repository: &str, tag: &str, meta: ImageMetadata, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        // A lifetime past a century saturates there instead of overflowing the clock.
        let now = Instant::now();
        let Some(expires) = now.checked_add(ttl.min(LONGEST_METADATA_TTL)) else {
            return;
        };
        if self.entries.len() >= METADATA_CACHE_ENTRIES {
            self.entries.retain(|_, (e, _)| now < *e);
            if self.entries.len() >= METADATA_CACHE_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries
            .insert((repository.to_owned(), tag.to_owned()), (expires, meta));
    }
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
    /// repository listed once.
    pub async fn run_filtered(&self, filter: &(dyn Fn(&TrackedImage) -> bool + Sync)) -> RunReport {
        let mut report = RunReport {
            started: Some(Utc::now()),
            ..RunReport::default()
        };
        let mut tracked = self.discover(&mut report).await;
        tracked.retain(|(_, image)| filter(image));
        report.tracked = tracked.len();

        if let (Some(approvals), false) = (&self.approvals, self.dry_run) {
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

        // Group by repository: N workloads on one image cost one listing.
        let mut by_repo: BTreeMap<String, Vec<(usize, TrackedImage)>> = BTreeMap::new();
        for (target, image) in tracked {
            by_repo
                .entry(image.image.name())
                .or_default()
                .push((target, image));
        }
        report.listings = by_repo.len();

        let results: Vec<_> = stream::iter(by_repo)
            .map(|(repo, images)| async move {
                let span = info_span!("repository", repository = %repo);
                let facts = self.gather(&images).instrument(span).await;
                (images, facts)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;

        let mut plans: Vec<Planned> = Vec::new();
        for (images, facts) in results {
            let facts = match facts {
                Ok(facts) => facts,
                Err(error) => {
                    for (t, image) in &images {
                        report.failures.push(Failure {
                            target: self.targets[*t].name().to_owned(),
                            id: Some(image.id.clone()),
                            error: copy_error(&error),
                        });
                    }
                    continue;
                }
            };
            if facts.tags.truncated {
                self.hold_truncated(&mut report, &images, &facts.tags).await;
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
                let decision = decide(&image, &facts, &candidates);
                let Some(update) = decision.update else {
                    debug!(id = %image.id, image = %image.image, "no update");
                    continue;
                };
                let (new, known_digest) = match (Tag::new(update.tag.as_str()), update.digest) {
                    (Ok(tag), Some(digest)) => (
                        image.image.with_tag(tag).with_digest(digest.clone()),
                        Some(digest),
                    ),
                    (Ok(tag), None) => {
                        let pinned = image.image.digest().is_some();
                        let known = facts.digests.get(tag.as_str()).cloned();
                        match (pinned, known) {
                            (true, Some(d)) => {
                                (image.image.with_tag(tag).with_digest(d.clone()), Some(d))
                            }
                            (_, known) => (image.image.with_tag(tag), known),
                        }
                    }
                    (Err(e), _) => {
                        report.failures.push(Failure {
                            target: self.targets[t].name().to_owned(),
                            id: Some(image.id.clone()),
                            error: e.into(),
                        });
                        continue;
                    }
                };
                let plan = UpdatePlan {
                    target: self.targets[t].name().to_owned(),
                    id: image.id.clone(),
                    current: image.image.clone(),
                    new,
                };
                plans.push(Planned {
                    target: t,
                    update: PlannedUpdate {
                        plan,
                        approvals: image.approvals,
                    },
                    image,
                    known_digest,
                });
            }
        }
        plans.sort_by(|a, b| (a.target, &a.update.plan.id).cmp(&(b.target, &b.update.plan.id)));

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
            let mut to_apply: Vec<(UpdatePlan, &Planned, Option<ApprovalRequest>)> = Vec::new();
            for p in plans.iter().filter(|p| p.target == t) {
                let plan = &p.update.plan;
                if p.update.approvals == 0 {
                    to_apply.push((plan.clone(), p, None));
                    continue;
                }
                let Some(approvals) = &self.approvals else {
                    let msg = format!("needs {} approval(s)", p.update.approvals);
                    self.emit(
                        &mut report,
                        EventKind::ApprovalRequested,
                        plan,
                        &p.image,
                        &msg,
                    )
                    .await;
                    report.awaiting_approval.push(plan.clone());
                    continue;
                };
                match self.consult(approvals, p, &mut resolved).await {
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
            if !self.dry_run {
                to_apply = self
                    .confirm_approved(&mut report, &mut resolved, to_apply)
                    .await;
            }
            if to_apply.is_empty() {
                continue;
            }
            let plans_only: Vec<UpdatePlan> = to_apply.iter().map(|(p, _, _)| p.clone()).collect();
            if self.dry_run {
                match target.preview(&plans_only).await {
                    Ok(diff) => {
                        report.previews.insert(target.name().to_owned(), diff);
                    }
                    Err(error) => report.failures.push(Failure {
                        target: target.name().to_owned(),
                        id: None,
                        error,
                    }),
                }
                continue;
            }
            let results = target.apply_all(&plans_only).await;
            for ((plan, planned, request), result) in to_apply.into_iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        let msg = match outcome {
                            ApplyOutcome::Applied => "applied",
                            ApplyOutcome::AlreadyCurrent => "already current",
                        };
                        info!(plan = %plan, outcome = msg, "update applied");
                        self.emit(
                            &mut report,
                            EventKind::UpdateApplied,
                            &plan,
                            &planned.image,
                            msg,
                        )
                        .await;
                        if let (Some(approvals), Some(request)) = (&self.approvals, request)
                            && let Err(error) = approvals.mark_applied(&request.id).await
                        {
                            let id = request.id;
                            warn!(request = %id, %error, "marking applied failed");
                            report.failures.push(Failure {
                                target: plan.target.clone(),
                                id: Some(plan.id.clone()),
                                error,
                            });
                        }
                        report.applied.push(plan);
                    }
                    Err(error) => {
                        warn!(plan = %plan, %error, "update failed");
                        let msg = error.to_string();
                        self.emit(
                            &mut report,
                            EventKind::UpdateFailed,
                            &plan,
                            &planned.image,
                            &msg,
                        )
                        .await;
                        if let (Some(approvals), Some(request)) = (&self.approvals, request)
                            && let Err(e) = approvals.mark_apply_failed(&request.id, &msg).await
                        {
                            let id = request.id;
                            warn!(request = %id, error = %e, "auditing failure failed");
                        }
                        report.failures.push(Failure {
                            target: plan.target.clone(),
                            id: Some(plan.id.clone()),
                            error,
                        });
                    }
                }
            }
        }
        report.planned = plans.into_iter().map(|p| p.update).collect();
        report
    }

    /// Confirms, right before they are applied, that the tags of approved updates still
    /// point at the approved digests, with a fresh lookup
    /// ([`Registry::confirm_digest`]). An update whose tag moved since the vote is not
    /// applied: its approved request is audited as failed and a request for the new digest
    /// is opened, which waits for votes of its own. Updates without approvals pass as they
    /// are.
    async fn confirm_approved<'p>(
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
    async fn consult(
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
    async fn consult_digest(
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
        approvals
            .open(
                plan,
                digest,
                p.update.approvals,
                p.image.approval_deadline,
                p.image.release_notes.clone(),
                p.image.notify.clone(),
                &self.notifiers,
            )
            .await
            .map_err(Consulted::Failed)
    }

    /// The digest of an update's new image: known from the policy or the listing, else
    /// resolved once per repository and tag in this pass.
    async fn new_digest(
        &self,
        p: &Planned,
        resolved: &mut HashMap<(String, String), Digest>,
    ) -> Result<Option<Digest>, Error> {
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

    /// Lists a repository once and fetches what its tracked images' policies need; a
    /// truncated listing is returned as it is, since nothing is decided from it.
    async fn gather(&self, images: &[(usize, TrackedImage)]) -> Result<RepoFacts, Error> {
        let repo = &images[0].1.image;
        let tags = self.registry.list_tags(repo).await?;
        let mut facts = RepoFacts {
            tags,
            ..RepoFacts::default()
        };
        if facts.tags.truncated {
            return Ok(facts);
        }
        for (_, image) in images {
            let needs = image.policy.needs();
            let pinned = image.image.digest().is_some();
            let current_tag = image.image.tag().map(Tag::as_str);
            if (needs.current_tag_digest || pinned)
                && let Some(tag) = current_tag
            {
                self.fetch_digest(repo, tag, &mut facts).await?;
            }
            if needs.created {
                self.read_created(repo, image, &mut facts).await?;
                self.confirm_newest(repo, image, &mut facts).await?;
            }
            if pinned {
                // A pinned image stays pinned: resolve the chosen tag's digest too.
                let decision = decide(image, &facts, &facts.candidates());
                if let Some(u) = decision.update.filter(|u| u.digest.is_none()) {
                    self.fetch_digest(repo, &u.tag, &mut facts).await?;
                }
            }
        }
        Ok(facts)
    }

    fn lock_metadata(&self) -> std::sync::MutexGuard<'_, MetadataCache> {
        self.metadata.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creation times of the tags `image`'s policy admits (and of its current tag): from the
    /// metadata cache while fresh, else read from the registry, a few at a time. A tag whose
    /// metadata cannot be read is skipped, the reason kept in the report; only when every
    /// tag fails (or the backend reads no metadata at all) does the repository fail.
    async fn read_created(
        &self,
        repo: &ImageRef,
        image: &TrackedImage,
        facts: &mut RepoFacts,
    ) -> Result<(), Error> {
        let current_tag = image.image.tag().map(Tag::as_str);
        let RepoFacts { tags, read, .. } = facts;
        let wanted: Vec<Tag> = tags
            .tags
            .iter()
            .filter(|t| image.policy.admits(t) || Some(t.as_str()) == current_tag)
            .filter(|t| read.insert((*t).clone()))
            .filter_map(|t| Tag::new(t.as_str()).ok())
            .collect();
        let name = repo.name();
        let mut missing = Vec::new();
        {
            let cache = self.lock_metadata();
            for tag in wanted {
                match cache.fresh(&name, tag.as_str()) {
                    Some(meta) => facts.learn(tag.as_str(), meta),
                    None => missing.push(tag),
                }
            }
        }
        let asked = missing.len();
        let fetched: Vec<(Tag, Result<ImageMetadata, Error>)> = stream::iter(missing)
            .map(|tag| async move {
                let result = self.registry.metadata(repo, &tag).await;
                (tag, result)
            })
            .buffer_unordered(self.metadata_concurrency)
            .collect()
            .await;
        let mut first_error = None;
        let mut cache = self.lock_metadata();
        for (tag, result) in fetched {
            match result {
                Ok(meta) => {
                    facts.learn(tag.as_str(), &meta);
                    cache.insert(&name, tag.as_str(), meta, self.metadata_ttl);
                }
                Err(error @ Error::NotSupported { .. }) => return Err(error),
                Err(error) => {
                    let reason =
                        format!("its metadata could not be read, so it is skipped: {error}");
                    warn!(repository = %name, tag = %tag, %error, "skipping a tag");
                    facts.unreadable.push((tag.to_string(), reason));
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) if facts.unreadable.len() == asked && asked > 0 => Err(error),
            _ => Ok(()),
        }
    }

    /// Confirms, with one fresh lookup, that the tag `image`'s policy chose by creation time
    /// still points at the image whose metadata decided it; when the tag moved, its metadata
    /// is read again and the policy decides anew. The confirmed digest goes with the plan.
    async fn confirm_newest(
        &self,
        repo: &ImageRef,
        image: &TrackedImage,
        facts: &mut RepoFacts,
    ) -> Result<(), Error> {
        const ATTEMPTS: usize = 3;
        let name = repo.name();
        for _ in 0..ATTEMPTS {
            let decision = decide(image, facts, &facts.candidates());
            let Some(update) = decision.update else {
                return Ok(());
            };
            if facts.digests.contains_key(&update.tag) {
                return Ok(());
            }
            let tag = Tag::new(update.tag.as_str())?;
            let now = self.registry.confirm_digest(repo, &tag).await?;
            let read = facts.read_digests.get(tag.as_str()).cloned();
            facts.digests.insert(tag.as_str().to_owned(), now.clone());
            if read.is_none_or(|d| d == now) {
                return Ok(());
            }
            // The tag moved since its metadata was read: read it again and decide anew.
            debug!(repository = %name, tag = %tag, "tag moved since its metadata was read");
            let meta = self.registry.metadata(repo, &tag).await?;
            facts.created.remove(tag.as_str());
            facts.learn(tag.as_str(), &meta);
            self.lock_metadata()
                .insert(&name, tag.as_str(), meta, self.metadata_ttl);
        }
        Err(Error::Conflict {
            action: format!("choose the newest build of {name}"),
            reason: format!("its tags kept moving while they were read ({ATTEMPTS} attempts)"),
        })
    }

    async fn fetch_digest(
        &self,
        repo: &ImageRef,
        tag: &str,
        facts: &mut RepoFacts,
    ) -> Result<(), Error> {
        if facts.digests.contains_key(tag) || !facts.tags.tags.iter().any(|t| t == tag) {
            return Ok(());
        }
        let parsed = Tag::new(tag)?;
        let digest = self.registry.resolve_digest(repo, &parsed).await?;
        facts.digests.insert(tag.to_owned(), digest);
        Ok(())
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
        let event = &event;
        let results = futures::future::join_all(
            self.notifiers
                .iter()
                .map(|n| async move { (n.name(), n.notify(event).await) }),
        )
        .await;
        for (name, result) in results {
            if let Err(error) = result {
                warn!(notifier = name, %error, "notification failed");
                report.notify_failures += 1;
            }
        }
    }
}

/// An update a policy chose, with what the rest of the pass needs to know about it.
struct Planned {
    /// Index of the target in the pipeline.
    target: usize,
    update: PlannedUpdate,
    image: TrackedImage,
    /// The new image's digest, when the policy or the listing already knew it.
    known_digest: Option<Digest>,
}

/// Why an update that needs approvals has no request to act on.
enum Consulted {
    /// A dry run found no request: one would be opened.
    Awaiting,
    /// Resolving the digest or the store failed.
    Failed(Error),
}

impl RepoFacts {
    /// The repository's tags with what is known of each, for policies to choose from.
    fn candidates(&self) -> Vec<Candidate<'_>> {
        self.tags
            .tags
            .iter()
            .map(|t| Candidate {
                tag: t,
                digest: self.digests.get(t.as_str()),
                created: self.created.get(t.as_str()).copied(),
            })
            .collect()
    }
}

/// Runs a tracked image's policy over its repository's candidates.
fn decide(image: &TrackedImage, facts: &RepoFacts, candidates: &[Candidate<'_>]) -> Decision {
    let tag = image.image.tag().map(Tag::as_str);
    let current = Current {
        tag,
        digest: image.image.digest(),
        created: tag.and_then(|t| facts.created.get(t).copied()),
    };
    image.policy.select(&SelectInput::new(current, candidates))
}

/// The same failure for every tracked image of a repository (errors are not `Clone`).
fn copy_error(error: &Error) -> Error {
    match error {
        Error::NotFound { what } => Error::NotFound { what: what.clone() },
        Error::Unauthorized { action, reason } => Error::Unauthorized {
            action: action.clone(),
            reason: reason.clone(),
        },
        Error::RateLimited {
            action,
            retry_after,
        } => Error::RateLimited {
            action: action.clone(),
            retry_after: *retry_after,
        },
        Error::Conflict { action, reason } => Error::Conflict {
            action: action.clone(),
            reason: reason.clone(),
        },
        Error::NotSupported { operation, backend } => Error::NotSupported {
            operation,
            backend: backend.clone(),
        },
        Error::InvalidInput(e) => Error::InvalidInput(e.clone()),
        Error::Backend {
            backend,
            action,
            message,
            retryable,
            ..
        } => Error::Backend {
            backend: backend.clone(),
            action: action.clone(),
            message: message.clone(),
            retryable: *retryable,
            source: None,
        },
    }
}
