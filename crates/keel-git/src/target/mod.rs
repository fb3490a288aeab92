//! `GitTarget`: the `Target` for manifests in a Git repository.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use git2::Signature;
use keel_core::policy::{PolicySpec, VersionPolicy};
use keel_core::target::{ApplyOutcome, Target, TrackedImage, UpdatePlan};
use keel_core::{Error, ImageRef, redact_urls};
use tracing::{info, warn};

use crate::manifest::{self, Reference, ReferenceKind, RepoConfig, Scan, Warning};
use crate::repo::{GitAuth, PushError, Timeouts, WorkingCopy, io_error, lock_for};
use crate::sign::CommitSigner;

mod checkout;
pub use checkout::Checkout;

/// The default commit message: a subject, then one line per change.
pub const DEFAULT_MESSAGE_TEMPLATE: &str = "Update {count} image(s)\n\n{changes}";

/// The default line of one change in the commit message.
pub const DEFAULT_CHANGE_TEMPLATE: &str = "- {image}: {old} -> {new} ({file})";

/// The default largest file read from the repository, manifests and `.keel.yaml` alike:
/// 4 MiB. A larger manifest is skipped and reported as invalid; a larger `.keel.yaml` fails
/// the scan.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// Builds a [`GitTarget`].
///
/// ```no_run
/// use keel_git::{GitAuth, GitTarget};
///
/// let target = GitTarget::builder("https://git.example.com/org/fleet.git")
///     .with_branch("main")
///     .with_push_branch("image-updates")
///     .with_paths(["apps", "clusters/prod"])
///     .with_auth(GitAuth::UserPassword {
///         username: "x-access-token".into(),
///         password: std::env::var("GIT_TOKEN").unwrap_or_default().into(),
///     })
///     .with_author("keel-bot", "keel-bot@example.com")
///     .build();
/// ```
#[derive(Clone, derive_more::Debug)]
pub struct GitTargetBuilder {
    // The URL may carry a token: `Debug` shows it redacted.
    #[debug("{:?}", redact_urls(url))]
    url: String,
    branch: String,
    push_branch: Option<String>,
    paths: Vec<String>,
    workdir: Option<PathBuf>,
    // `GitAuth`'s `Debug` shows no secrets.
    auth: GitAuth,
    #[debug(skip)]
    author_name: String,
    #[debug(skip)]
    author_email: String,
    #[debug(skip)]
    message_template: String,
    #[debug(skip)]
    change_template: String,
    #[debug(skip)]
    message: Option<String>,
    #[debug(skip)]
    max_push_attempts: u32,
    #[debug(skip)]
    config: Option<RepoConfig>,
    #[debug(skip)]
    commit_per_image: bool,
    #[debug(skip)]
    all_or_nothing: bool,
    checkout: Option<Checkout>,
    #[debug(skip)]
    reset_push_branch: bool,
    signer: Option<Arc<dyn CommitSigner>>,
    timeouts: Timeouts,
    #[debug(skip)]
    max_file_size: u64,
}

impl GitTargetBuilder {
    /// The branch to check out and, unless [`with_push_branch`](Self::with_push_branch) says
    /// otherwise, to push to (default `main`).
    pub fn with_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = branch.into();
        self.checkout = None;
        self
    }

    /// What to check out and build the commits on: a branch (as
    /// [`with_branch`](Self::with_branch)), or a tag, another reference or a commit, which
    /// need a [push branch](Self::with_push_branch): the commits are made on top of the
    /// commit checked out and pushed there.
    ///
    /// ```
    /// use keel_git::{Checkout, GitTarget, Target as _};
    ///
    /// let target = GitTarget::builder("https://git.example.com/fleet.git")
    ///     .with_checkout(Checkout::Tag("v1.4.0".into()))
    ///     .with_push_branch("image-updates")
    ///     .build();
    /// assert_eq!(target.name(), "git https://git.example.com/fleet.git#tag v1.4.0->image-updates");
    /// ```
    pub fn with_checkout(mut self, checkout: Checkout) -> Self {
        match checkout {
            Checkout::Branch(branch) => return self.with_branch(branch),
            other => {
                self.branch = other.to_string();
                self.checkout = Some(other);
            }
        }
        self
    }

    /// Signs every commit with `signer` (default: unsigned). A commit that cannot be signed
    /// is not made, and nothing is pushed.
    pub fn with_commit_signer(mut self, signer: Arc<dyn CommitSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Makes the push branch anew on each push: the commits are made on top of the checkout
    /// (never on the push branch's own commits) and replace whatever the push branch holds,
    /// by a forced push, as Flux's image automation does by default. A push branch that
    /// already holds exactly the files of the new commit is left as it is. Without it
    /// (default), an existing push branch is built upon and never force-pushed.
    pub fn with_push_branch_reset(mut self, yes: bool) -> Self {
        self.reset_push_branch = yes;
        self
    }

    /// Pushes to this branch instead, created from the checkout branch when it does not
    /// exist yet and built upon when it does (never force-pushed).
    pub fn with_push_branch(mut self, branch: impl Into<String>) -> Self {
        self.push_branch = Some(branch.into());
        self
    }

    /// Scans only these directories (relative to the repository root); default everything.
    pub fn with_paths<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps the working copy here (default: a directory per URL and branch under the
    /// system's temporary directory).
    pub fn with_workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// How to authenticate.
    pub fn with_auth(mut self, auth: GitAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The author and committer of the commits (default `keel-rs <keel-rs@localhost>`).
    pub fn with_author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.author_name = name.into();
        self.author_email = email.into();
        self
    }

    /// The commit message: `{count}` is the number of changes, `{changes}` their lines.
    pub fn with_message_template(mut self, template: impl Into<String>) -> Self {
        self.message_template = template.into();
        self
    }

    /// The line of one change: `{image}`, `{old}`, `{new}`, `{file}`, `{id}`.
    pub fn with_change_template(mut self, template: impl Into<String>) -> Self {
        self.change_template = template.into();
        self
    }

    /// Uses `message` verbatim as the message of every commit, instead of the templates
    /// ([`with_message_template`](Self::with_message_template),
    /// [`with_change_template`](Self::with_change_template)): for callers that render their
    /// own message, such as Flux's `messageTemplate`, whose text must not be read as a keel
    /// template again.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// How many times to fetch, re-apply and push again after the branch moved (default 5).
    pub fn with_max_push_attempts(mut self, attempts: u32) -> Self {
        self.max_push_attempts = attempts.max(1);
        self
    }

    /// Uses this configuration instead of the repository's `.keel.yaml`.
    pub fn with_config(mut self, config: RepoConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// One commit per image instead of one per run.
    pub fn with_commit_per_image(mut self, yes: bool) -> Self {
        self.commit_per_image = yes;
        self
    }

    /// Applies the plans of one [`apply_all`](Target::apply_all) call together or not at all
    /// (default: each plan on its own).
    ///
    /// Each plan alone is the right unit when every plan is an update of its own, as the
    /// pipeline applies them. When the plans are one change, like the run of a Flux
    /// `ImageUpdateAutomation`, pushing some without the others is a half-applied update:
    /// with this set, should any plan not apply on the branch as fetched (its reference is
    /// gone or holds another image, or its file cannot be rewritten), nothing is committed or
    /// pushed, and every plan fails with the same [`Error::Conflict`], whose action is
    /// `update FILE` (the file of the first plan that failed) and whose reason says why. A
    /// branch that moved meanwhile is still fetched and every plan applied again on its new
    /// tip, as long as every plan still applies.
    pub fn with_all_or_nothing(mut self, yes: bool) -> Self {
        self.all_or_nothing = yes;
        self
    }

    /// How long a fetch or push waits for the connection to the server (default 30 s); a
    /// server that does not accept fails the operation instead of holding the working copy.
    ///
    /// libgit2 keeps one connect timeout for the whole process: operations of targets with
    /// different timeouts take turns instead of running at the same moment.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// How long a fetch or push waits for each answer of a connected server (default 60 s):
    /// a server that accepts and then says nothing fails the operation instead of holding
    /// the working copy's lock forever. A slow transfer that keeps sending is not cut off.
    ///
    /// Like [`with_connect_timeout`](Self::with_connect_timeout), one value for the process.
    pub fn with_server_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.server = timeout;
        self
    }

    /// The largest file read from the repository, in bytes (default
    /// [`DEFAULT_MAX_FILE_SIZE`]): a larger manifest is skipped and reported as invalid, a
    /// larger `.keel.yaml` fails the scan.
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Builds the target. Nothing is fetched until it is used.
    pub fn build(self) -> GitTarget {
        let push_branch = self
            .push_branch
            .clone()
            .unwrap_or_else(|| self.branch.clone());
        let workdir = self.workdir.clone().unwrap_or_else(|| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (&self.url, &self.branch, &push_branch).hash(&mut hasher);
            std::env::temp_dir()
                .join("keel-git")
                .join(format!("{:016x}", hasher.finish()))
        });
        let name = if push_branch == self.branch {
            format!("git {}#{}", redact_urls(&self.url), self.branch)
        } else {
            format!(
                "git {}#{}->{push_branch}",
                redact_urls(&self.url),
                self.branch
            )
        };
        GitTarget {
            inner: Arc::new(Inner {
                name,
                push_branch,
                workdir,
                last_push: Mutex::new(None),
                settings: self,
            }),
        }
    }
}

/// Manifests in a Git repository as a [`Target`]: discovery scans them for image references,
/// applying rewrites the bytes of each reference, commits and pushes (one commit per run by
/// default), re-applying on the new tip when the branch moved meanwhile.
#[derive(Debug, Clone)]
pub struct GitTarget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    push_branch: String,
    workdir: PathBuf,
    /// The commit the last successful push of this target left at the tip of the push branch.
    last_push: Mutex<Option<String>>,
    settings: GitTargetBuilder,
}

impl GitTarget {
    /// A builder for the repository at `url` (`https://`, `ssh://`, `git@host:path`,
    /// `git://`, `file://` or a local path).
    pub fn builder(url: impl Into<String>) -> GitTargetBuilder {
        GitTargetBuilder {
            url: url.into(),
            branch: "main".into(),
            push_branch: None,
            paths: Vec::new(),
            workdir: None,
            auth: GitAuth::None,
            author_name: "keel-rs".into(),
            author_email: "keel-rs@localhost".into(),
            message_template: DEFAULT_MESSAGE_TEMPLATE.into(),
            change_template: DEFAULT_CHANGE_TEMPLATE.into(),
            message: None,
            max_push_attempts: 5,
            config: None,
            commit_per_image: false,
            all_or_nothing: false,
            checkout: None,
            reset_push_branch: false,
            signer: None,
            timeouts: Timeouts::DEFAULT,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }

    /// Runs `f` on a blocking thread with the working copy locked.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let lock = lock_for(&inner.workdir);
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            f(&inner)
        })
        .await
        .map_err(|e| Error::Backend {
            backend: self.inner.name.clone(),
            action: "run a git operation".into(),
            message: e.to_string(),
            retryable: false,
            source: None,
        })?
    }

    /// The id (full hex) of the commit that this target's last successful push left at the
    /// tip of the push branch; `None` before any push. A run that changed nothing pushes
    /// nothing and leaves it as it was.
    ///
    /// ```
    /// let target = keel_git::GitTarget::builder("https://git.example.com/fleet.git").build();
    /// assert_eq!(target.last_pushed_commit(), None);
    /// ```
    pub fn last_pushed_commit(&self) -> Option<String> {
        self.inner
            .last_push
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every reference the repository holds now, by id, as scanned after a fresh sync.
    pub async fn references(&self) -> Result<Vec<Reference>, Error> {
        Ok(self.scan().await?.references)
    }

    /// The tags of the remote repository (names without `refs/tags/`, sorted), as its server
    /// lists them now: for callers that choose a tag to [check out](Checkout::Tag), such as
    /// the highest one in a version range.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the credentials.
    pub async fn remote_tags(&self) -> Result<Vec<String>, Error> {
        self.blocking(|inner| {
            let s = &inner.settings;
            let copy = WorkingCopy::open_or_clone(&s.url, &inner.workdir, &s.auth, s.timeouts)?;
            let mut tags: Vec<String> = copy
                .remote_refs()?
                .into_iter()
                .filter_map(|name| {
                    let tag = name.strip_prefix("refs/tags/")?;
                    // `v1^{}`: the commit an annotated tag points at, listed next to it.
                    (!tag.ends_with("^{}")).then(|| tag.to_owned())
                })
                .collect();
            tags.sort();
            tags.dedup();
            Ok(tags)
        })
        .await
    }

    /// Scans the repository after a fresh sync: every reference, by id, and every file or
    /// value skipped and why (not UTF-8, larger than the
    /// [size limit](GitTargetBuilder::with_max_file_size), not valid YAML, aliases beyond
    /// their budget, a marker that makes no sense, ...).
    ///
    /// # Errors
    /// As discovery: the repository cannot be fetched, or its `.keel.yaml` is invalid.
    pub async fn scan(&self) -> Result<Scan, Error> {
        self.blocking(|inner| {
            let copy = inner.sync()?;
            let (references, warnings) = inner.scan_with_warnings(&copy)?;
            Ok(Scan {
                references: references.into_values().collect(),
                warnings,
            })
        })
        .await
    }
}

/// The edits of one file and the plans they serve.
type FileEdits = BTreeMap<String, Vec<(usize, Reference, ImageRef)>>;

impl Inner {
    /// Opens or clones the working copy, fetches, and resets it to the commit to build on:
    /// the push branch when it exists (unless it is [reset](GitTargetBuilder::with_push_branch_reset)
    /// on each push), else the checkout.
    fn sync(&self) -> Result<WorkingCopy, Error> {
        let s = &self.settings;
        let copy = WorkingCopy::open_or_clone(&s.url, &self.workdir, &s.auth, s.timeouts)?;
        let shown = redact_urls(&s.url);
        let checkout = match &s.checkout {
            None => {
                copy.fetch()?;
                copy.remote_tip(&s.branch)
            }
            Some(checkout) => {
                if s.push_branch.is_none() {
                    return Err(Error::InvalidInput(keel_core::ParseError::new(
                        "push branch",
                        "",
                        format!(
                            "required to check out the {checkout} of {shown}: commits are \
                             pushed to a branch"
                        ),
                    )));
                }
                checkout::resolve(&copy, checkout)?
            }
        };
        let base = if s.reset_push_branch {
            checkout
        } else {
            copy.remote_tip(&self.push_branch).or(checkout)
        };
        let base = base.ok_or_else(|| match &s.checkout {
            None => Error::not_found(format!("branch {} of {shown}", s.branch)),
            Some(checkout) => Error::not_found(format!("{checkout} of {shown}")),
        })?;
        copy.reset_to(base)?;
        Ok(copy)
    }

    fn config(&self, copy: &WorkingCopy) -> Result<RepoConfig, Error> {
        if let Some(config) = &self.settings.config {
            return Ok(config.clone());
        }
        let path = copy.workdir().join(manifest::CONFIG_FILE);
        match read_text(&path, self.settings.max_file_size) {
            Ok(FileText::Text(text)) => RepoConfig::from_yaml(&text),
            Ok(FileText::TooLarge(size)) => Err(Error::InvalidInput(keel_core::ParseError::new(
                manifest::CONFIG_FILE,
                format!("{size} bytes"),
                format!(
                    "larger than the limit of {} bytes for files read from the repository",
                    self.settings.max_file_size
                ),
            ))),
            Ok(FileText::NotUtf8) => Err(Error::InvalidInput(keel_core::ParseError::new(
                manifest::CONFIG_FILE,
                "(contents)",
                "not UTF-8 text",
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RepoConfig::default()),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    /// Scans every YAML file under the configured paths.
    fn scan(&self, copy: &WorkingCopy) -> Result<BTreeMap<String, Reference>, Error> {
        Ok(self.scan_with_warnings(copy)?.0)
    }

    /// Scans every YAML file under the configured paths; also returns (and logs) what was
    /// skipped.
    fn scan_with_warnings(
        &self,
        copy: &WorkingCopy,
    ) -> Result<(BTreeMap<String, Reference>, Vec<Warning>), Error> {
        let config = self.config(copy)?;
        let root = copy.workdir();
        // The target's paths narrow the walk; the repository's own `paths` are applied by
        // the scan.
        let mut paths = self.settings.paths.clone();
        if paths.is_empty() {
            paths.push(String::new());
        }
        let mut files = Vec::new();
        for p in &paths {
            collect_yaml(root, &root.join(p), &mut files)?;
        }
        files.sort();
        files.dedup();
        let mut refs = BTreeMap::new();
        let mut warnings = Vec::new();
        let limit = self.settings.max_file_size;
        for rel in files {
            if !config.includes(&rel) {
                continue;
            }
            let full = root.join(&rel);
            let skipped = |reason: String| Warning {
                file: rel.clone(),
                line: None,
                reason,
            };
            let content = match read_text(&full, limit) {
                Ok(FileText::Text(content)) => content,
                Ok(FileText::TooLarge(size)) => {
                    warnings.push(skipped(format!(
                        "invalid: {size} bytes, larger than the limit of {limit} bytes; \
                         skipped"
                    )));
                    continue;
                }
                Ok(FileText::NotUtf8) => {
                    warnings.push(skipped("invalid: not UTF-8 text; skipped".into()));
                    continue;
                }
                Err(e) => return Err(io_error("read", &full, e)),
            };
            let scan = manifest::scan(&rel, &content, &config);
            warnings.extend(scan.warnings);
            for r in scan.references {
                // An unmarked reference never displaces a marked one with the same id.
                if matches!(r.kind, ReferenceKind::Unmarked { .. }) {
                    refs.entry(r.id()).or_insert(r);
                } else {
                    refs.insert(r.id(), r);
                }
            }
        }
        for w in &warnings {
            warn!(file = %w.file, warning = %w, "manifest skipped");
        }
        Ok((refs, warnings))
    }

    /// Sorts plans into edits by file, and outcomes settled without an edit.
    fn plan_edits(
        &self,
        refs: &BTreeMap<String, Reference>,
        plans: &[UpdatePlan],
        outcomes: &mut [Option<Result<ApplyOutcome, Error>>],
    ) -> FileEdits {
        let mut edits: FileEdits = BTreeMap::new();
        for (i, plan) in plans.iter().enumerate() {
            let Some(reference) = refs.get(&plan.id) else {
                outcomes[i] = Some(Err(Error::not_found(format!(
                    "image reference {} in {}",
                    plan.id, self.name
                ))));
                continue;
            };
            if reference.image == plan.new {
                outcomes[i] = Some(Ok(ApplyOutcome::AlreadyCurrent));
            } else if reference.image != plan.current {
                outcomes[i] = Some(Err(Error::Conflict {
                    action: format!("apply {plan}"),
                    reason: format!("{} now holds {}", plan.id, reference.image),
                }));
            } else {
                edits.entry(reference.file.clone()).or_default().push((
                    i,
                    reference.clone(),
                    plan.new.clone(),
                ));
            }
        }
        edits
    }

    /// Rewrites the files in the working copy; plans whose file cannot be rewritten fail
    /// alone (the file is left untouched). Returns the files written.
    fn write_edits(
        &self,
        copy: &WorkingCopy,
        edits: &mut FileEdits,
        outcomes: &mut [Option<Result<ApplyOutcome, Error>>],
    ) -> Result<Vec<String>, Error> {
        let mut written = Vec::new();
        let mut failed = Vec::new();
        for (file, list) in edits.iter() {
            let path = copy.workdir().join(file);
            let content = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
            let pairs: Vec<(Reference, ImageRef)> = list
                .iter()
                .map(|(_, r, new)| (r.clone(), new.clone()))
                .collect();
            match manifest::rewrite(&content, &pairs) {
                Ok(new) if new != content => {
                    std::fs::write(&path, new).map_err(|e| io_error("write", &path, e))?;
                    written.push(file.clone());
                }
                Ok(_) => {
                    for (i, _, _) in list {
                        outcomes[*i] = Some(Ok(ApplyOutcome::AlreadyCurrent));
                    }
                    failed.push(file.clone());
                }
                Err(e) => {
                    let text = e.to_string();
                    for (i, _, _) in list {
                        outcomes[*i] = Some(Err(Error::Conflict {
                            action: format!("rewrite {file}"),
                            reason: text.clone(),
                        }));
                    }
                    failed.push(file.clone());
                }
            }
        }
        for file in failed {
            edits.remove(&file);
        }
        Ok(written)
    }

    fn message(&self, plans: &[UpdatePlan], edits: &FileEdits) -> String {
        let s = &self.settings;
        if let Some(message) = &s.message {
            return message.clone();
        }
        let mut lines = Vec::new();
        for (file, list) in edits {
            for (i, reference, new) in list {
                let plan = &plans[*i];
                lines.push(
                    s.change_template
                        .replace("{image}", &plan.current.name())
                        .replace("{old}", &shown_version(&reference.image))
                        .replace("{new}", &shown_version(new))
                        .replace("{file}", file)
                        .replace("{id}", &plan.id),
                );
            }
        }
        s.message_template
            .replace("{count}", &lines.len().to_string())
            .replace("{changes}", &lines.join("\n"))
    }

    fn apply_all(&self, plans: &[UpdatePlan]) -> Vec<Result<ApplyOutcome, Error>> {
        let s = &self.settings;
        let mut last_error = None;
        for attempt in 1..=s.max_push_attempts {
            let mut outcomes: Vec<Option<Result<ApplyOutcome, Error>>> =
                (0..plans.len()).map(|_| None).collect();
            match self.try_apply(plans, &mut outcomes) {
                Ok(()) => {
                    return outcomes
                        .into_iter()
                        .map(|o| o.unwrap_or(Ok(ApplyOutcome::Applied)))
                        .collect();
                }
                Err(PushError::NonFastForward) => {
                    info!(target = %self.name, attempt, "branch moved; re-applying on the new tip");
                    last_error = Some(format!(
                        "the branch {} kept moving; gave up after {attempt} attempt(s)",
                        self.push_branch
                    ));
                }
                Err(PushError::Failed(e)) => {
                    let text = e.to_string();
                    let mut first = Some(e);
                    return outcomes
                        .into_iter()
                        .map(|o| match o {
                            Some(done) => done,
                            None => Err(first.take().unwrap_or_else(|| Error::Backend {
                                backend: self.name.clone(),
                                action: "apply updates".into(),
                                message: text.clone(),
                                retryable: false,
                                source: None,
                            })),
                        })
                        .collect();
                }
            }
        }
        let reason = last_error.unwrap_or_default();
        plans
            .iter()
            .map(|plan| {
                Err(Error::Conflict {
                    action: format!("apply {plan}"),
                    reason: reason.clone(),
                })
            })
            .collect()
    }

    /// With [`GitTargetBuilder::with_all_or_nothing`]: fails the attempt, so that nothing is
    /// committed or pushed, when a plan could not be applied. Every plan is then given the
    /// error returned.
    fn all_or_nothing(
        &self,
        plans: &[UpdatePlan],
        outcomes: &mut [Option<Result<ApplyOutcome, Error>>],
    ) -> Result<(), PushError> {
        if !self.settings.all_or_nothing {
            return Ok(());
        }
        let Some((plan, cause)) = plans
            .iter()
            .zip(outcomes.iter())
            .find_map(|(plan, outcome)| match outcome {
                Some(Err(e)) => Some((plan, e.to_string())),
                _ => None,
            })
        else {
            return Ok(());
        };
        let file = plan
            .id
            .rsplit_once("#L")
            .map_or(plan.id.as_str(), |(file, _)| file);
        let error = Error::Conflict {
            action: format!("update {file}"),
            reason: format!(
                "{cause}; all or nothing: none of the {} change(s) was pushed to {}",
                plans.len(),
                self.push_branch
            ),
        };
        for outcome in outcomes.iter_mut() {
            *outcome = Some(Err(error.clone()));
        }
        Err(PushError::Failed(error))
    }

    /// One attempt: sync, edit, commit, push. Fills the outcomes it settles; the rest are
    /// applied when it returns `Ok`.
    fn try_apply(
        &self,
        plans: &[UpdatePlan],
        outcomes: &mut [Option<Result<ApplyOutcome, Error>>],
    ) -> Result<(), PushError> {
        let copy = self.sync().map_err(PushError::Failed)?;
        let refs = self.scan(&copy).map_err(PushError::Failed)?;
        let mut edits = self.plan_edits(&refs, plans, outcomes);
        self.all_or_nothing(plans, outcomes)?;
        if edits.is_empty() {
            return Ok(());
        }
        let written = self
            .write_edits(&copy, &mut edits, outcomes)
            .map_err(PushError::Failed)?;
        self.all_or_nothing(plans, outcomes)?;
        if written.is_empty() {
            return Ok(());
        }
        let s = &self.settings;
        let author = Signature::now(&s.author_name, &s.author_email).map_err(|e| {
            PushError::Failed(crate::repo::git_error(
                &s.url,
                "make the commit signature",
                e,
            ))
        })?;
        let mut tip = None;
        if s.commit_per_image {
            // Stage one file at a time per plan; plans in one file share its commit.
            for (file, list) in &edits {
                let one: FileEdits = BTreeMap::from([(file.clone(), list.clone())]);
                tip = Some(
                    copy.commit_signed(
                        std::slice::from_ref(file),
                        &author,
                        &self.message(plans, &one),
                        s.signer.as_deref(),
                    )
                    .map_err(PushError::Failed)?,
                );
            }
        } else {
            tip = Some(
                copy.commit_signed(
                    &written,
                    &author,
                    &self.message(plans, &edits),
                    s.signer.as_deref(),
                )
                .map_err(PushError::Failed)?,
            );
        }
        if s.reset_push_branch {
            if let Some(tip) = tip
                && checkout::same_tree(&copy, tip, copy.remote_tip(&self.push_branch))
            {
                // The push branch holds these very files already.
                for outcome in outcomes.iter_mut() {
                    outcome.get_or_insert(Ok(ApplyOutcome::AlreadyCurrent));
                }
                return Ok(());
            }
            copy.push_with(&self.push_branch, true)?;
        } else {
            copy.push(&self.push_branch)?;
        }
        if let Some(tip) = tip {
            *self.last_push.lock().unwrap_or_else(|e| e.into_inner()) = Some(tip.to_string());
        }
        info!(target = %self.name, files = written.len(), "pushed");
        Ok(())
    }

    fn preview(&self, plans: &[UpdatePlan]) -> Result<String, Error> {
        let copy = self.sync()?;
        let refs = self.scan(&copy)?;
        let mut outcomes: Vec<Option<Result<ApplyOutcome, Error>>> =
            (0..plans.len()).map(|_| None).collect();
        let mut edits = self.plan_edits(&refs, plans, &mut outcomes);
        self.write_edits(&copy, &mut edits, &mut outcomes)?;
        let diff = copy.diff();
        // Leave the working copy as the branch has it.
        if let Some(tip) = copy.repo.head().ok().and_then(|h| h.target()) {
            copy.reset_to(tip)?;
        }
        let mut diff = diff?;
        for (plan, outcome) in plans.iter().zip(outcomes) {
            if let Some(Err(e)) = outcome {
                diff.push_str(&format!("# not applicable: {plan}: {e}\n"));
            }
        }
        Ok(diff)
    }
}

/// A file of the working copy, read no further than a limit.
pub(crate) enum FileText {
    Text(String),
    /// Larger than the limit: its size in bytes.
    TooLarge(u64),
    NotUtf8,
}

/// Reads the file at `path` as text, unless it is larger than `limit` bytes (only as many
/// bytes as the limit are ever read, should the file grow meanwhile).
pub(crate) fn read_text(path: &Path, limit: u64) -> std::io::Result<FileText> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Ok(FileText::TooLarge(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(FileText::TooLarge(bytes.len() as u64));
    }
    Ok(String::from_utf8(bytes).map_or(FileText::NotUtf8, FileText::Text))
}

/// The tag and digest part of a reference, as a commit message shows it.
fn shown_version(image: &ImageRef) -> String {
    match (image.tag(), image.digest()) {
        (Some(t), Some(d)) => format!("{t}@{d}"),
        (Some(t), None) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => String::new(),
    }
}

/// Collects the YAML files under `dir` (relative to `root`, `/`-separated), skipping `.git`.
fn collect_yaml(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("read directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read directory", dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error("stat", &path, e))?;
        if kind.is_dir() {
            if entry.file_name() != ".git" {
                collect_yaml(root, &path, out)?;
            }
        } else if kind.is_file()
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            )
            && let Ok(rel) = path.strip_prefix(root)
        {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(rel.join("/"));
        }
    }
    Ok(())
}

#[async_trait]
impl Target for GitTarget {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>, Error> {
        let refs = self.references().await?;
        let mut tracked = Vec::new();
        for r in refs {
            let Some(spec) = r.policy.clone() else {
                // Unmarked references are found for releases only, never tracked.
                if !matches!(r.kind, ReferenceKind::Unmarked { .. }) {
                    warn!(id = %r.id(), "image reference without a policy; not tracked");
                }
                continue;
            };
            // `never` (Keel's `none`): found, and not tracked, as in the cluster.
            if matches!(spec, PolicySpec::Never) {
                continue;
            }
            let policy = VersionPolicy::new(spec, &r.options)?;
            let image = TrackedImage::new(r.id(), r.image.clone(), Arc::new(policy));
            tracked.push(match r.kind {
                // Keel's settings, defaults included, are for what Keel's keys mark.
                ReferenceKind::KeelWorkload { .. } | ReferenceKind::KeelComment => {
                    r.settings.apply_to(image)
                }
                _ => image,
            });
        }
        Ok(tracked)
    }

    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome, Error> {
        let mut results = self.apply_all(std::slice::from_ref(plan)).await;
        results.pop().unwrap_or(Ok(ApplyOutcome::AlreadyCurrent))
    }

    async fn apply_all(&self, plans: &[UpdatePlan]) -> Vec<Result<ApplyOutcome, Error>> {
        let owned = plans.to_vec();
        let count = plans.len();
        match self
            .blocking(move |inner| Ok(inner.apply_all(&owned)))
            .await
        {
            Ok(results) => results,
            Err(e) => {
                let text = e.to_string();
                let mut first = Some(e);
                (0..count)
                    .map(|_| {
                        Err(first.take().unwrap_or_else(|| Error::Backend {
                            backend: self.inner.name.clone(),
                            action: "apply updates".into(),
                            message: text.clone(),
                            retryable: false,
                            source: None,
                        }))
                    })
                    .collect()
            }
        }
    }

    async fn preview(&self, plans: &[UpdatePlan]) -> Result<String, Error> {
        let owned = plans.to_vec();
        self.blocking(move |inner| inner.preview(&owned)).await
    }
}

#[cfg(test)]
mod tests;
