//! One pass of the update flow: discover → list → select → approve → apply → notify.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::Error;
use crate::notify::{Event, EventKind, Notifier};
use crate::policy::{Candidate, Current, Decision, SelectInput};
use crate::reference::{Digest, ImageRef, Tag};
use crate::registry::{Registry, TagList};
use crate::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};

/// Runs the update flow over targets, a registry and notifiers.
///
/// One pass ([`Pipeline::run_once`]) discovers every target's tracked images, lists each
/// repository's tags once however many tracked images use it, fetches digests and creation
/// times only where a policy needs them, lets each tracked image's policy decide, holds back
/// updates that need approvals, applies the rest (or, in a dry run, only previews them) and
/// tells the notifiers.
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
#[derive(Debug, Clone)]
pub struct Pipeline {
    registry: Arc<dyn Registry>,
    targets: Vec<Arc<dyn Target>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    dry_run: bool,
    concurrency: usize,
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
    /// The target's name.
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
    /// In a dry run: each target's preview of what it would change.
    pub previews: BTreeMap<String, String>,
    /// What went wrong, per target or tracked image.
    pub failures: Vec<Failure>,
    /// How many notifications failed to deliver.
    pub notify_failures: usize,
}

/// Per-repository facts gathered once per pass, shared by all its tracked images.
#[derive(Default)]
struct RepoFacts {
    tags: TagList,
    digests: HashMap<String, Digest>,
    created: HashMap<String, DateTime<Utc>>,
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
        }
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

    /// Runs one pass. Failures of one target or repository are reported and do not stop the
    /// others.
    pub async fn run_once(&self) -> RunReport {
        let mut report = RunReport {
            started: Some(Utc::now()),
            ..RunReport::default()
        };
        let tracked = self.discover(&mut report).await;
        report.tracked = tracked.len();

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

        let mut plans: Vec<(usize, PlannedUpdate, Option<String>)> = Vec::new();
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
            // Built once per repository, however many tracked images share it.
            let candidates = facts.candidates();
            for (t, image) in images {
                let decision = decide(&image, &facts, &candidates);
                let Some(update) = decision.update else {
                    debug!(id = %image.id, image = %image.image, "no update");
                    continue;
                };
                let new = match (Tag::new(update.tag.as_str()), update.digest) {
                    (Ok(tag), Some(digest)) => image.image.with_tag(tag).with_digest(digest),
                    (Ok(tag), None) => {
                        let pinned = image.image.digest().is_some();
                        match (pinned, facts.digests.get(tag.as_str())) {
                            (true, Some(d)) => image.image.with_tag(tag).with_digest(d.clone()),
                            _ => image.image.with_tag(tag),
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
                let planned = PlannedUpdate {
                    plan,
                    approvals: image.approvals,
                };
                plans.push((t, planned, image.release_notes.clone()));
            }
        }
        plans.sort_by(|a, b| (a.0, &a.1.plan.id).cmp(&(b.0, &b.1.plan.id)));

        for (_, planned, notes) in &plans {
            info!(plan = %planned.plan, "update planned");
            self.emit(
                &mut report,
                EventKind::UpdatePlanned,
                &planned.plan,
                notes,
                "",
            )
            .await;
        }

        for (t, target) in self.targets.iter().enumerate() {
            let mut to_apply = Vec::new();
            let mut notes = Vec::new();
            for (pt, planned, note) in &plans {
                if *pt != t {
                    continue;
                }
                if planned.approvals > 0 {
                    let msg = format!("needs {} approval(s)", planned.approvals);
                    self.emit(
                        &mut report,
                        EventKind::ApprovalRequested,
                        &planned.plan,
                        note,
                        &msg,
                    )
                    .await;
                    report.awaiting_approval.push(planned.plan.clone());
                } else {
                    to_apply.push(planned.plan.clone());
                    notes.push(note.clone());
                }
            }
            if to_apply.is_empty() {
                continue;
            }
            if self.dry_run {
                match target.preview(&to_apply).await {
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
            let results = target.apply_all(&to_apply).await;
            for ((plan, result), note) in to_apply.into_iter().zip(results).zip(notes) {
                match result {
                    Ok(outcome) => {
                        let msg = match outcome {
                            ApplyOutcome::Applied => "applied",
                            ApplyOutcome::AlreadyCurrent => "already current",
                        };
                        info!(plan = %plan, outcome = msg, "update applied");
                        self.emit(&mut report, EventKind::UpdateApplied, &plan, &note, msg)
                            .await;
                        report.applied.push(plan);
                    }
                    Err(error) => {
                        warn!(plan = %plan, %error, "update failed");
                        let msg = error.to_string();
                        self.emit(&mut report, EventKind::UpdateFailed, &plan, &note, &msg)
                            .await;
                        report.failures.push(Failure {
                            target: plan.target.clone(),
                            id: Some(plan.id.clone()),
                            error,
                        });
                    }
                }
            }
        }
        report.planned = plans.into_iter().map(|(_, p, _)| p).collect();
        report
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

    /// Lists a repository once and fetches what its tracked images' policies need.
    async fn gather(&self, images: &[(usize, TrackedImage)]) -> Result<RepoFacts, Error> {
        let repo = &images[0].1.image;
        let tags = self.registry.list_tags(repo).await?;
        let mut facts = RepoFacts {
            tags,
            ..RepoFacts::default()
        };
        for (_, image) in images {
            let needs = image.policy.needs();
            let pinned = image.image.digest().is_some();
            let current_tag = image.image.tag().map(Tag::as_str);
            if needs.current_tag_digest || pinned {
                if let Some(tag) = current_tag {
                    self.fetch_digest(repo, tag, &mut facts).await?;
                }
            }
            if needs.created {
                let wanted: Vec<String> = facts
                    .tags
                    .tags
                    .iter()
                    .filter(|t| image.policy.admits(t) || Some(t.as_str()) == current_tag)
                    .filter(|t| !facts.created.contains_key(t.as_str()))
                    .cloned()
                    .collect();
                for tag in wanted {
                    let Ok(parsed) = Tag::new(tag.as_str()) else {
                        continue;
                    };
                    let meta = self.registry.metadata(repo, &parsed).await?;
                    if let Some(created) = meta.created {
                        facts.created.insert(tag, created);
                    }
                }
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
        release_notes: &Option<String>,
        message: &str,
    ) {
        if self.notifiers.is_empty() {
            return;
        }
        let mut event = Event::new(kind, plan.clone(), message);
        event.release_notes = release_notes.clone();
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
