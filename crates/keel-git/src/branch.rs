//! [`BranchCommit`]: one commit of edits to given files on one branch, pushed with retries
//! from a fresh fetch when the branch moved; for write-backs that know which files they
//! change (Argo CD Image Updater's `git` method) rather than scanning the repository.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use git2::Signature;
use keel_core::{Error, redact_urls};
use tracing::debug;

use crate::repo::{GitAuth, PushError, Timeouts, WorkingCopy, git_error, io_error, lock_for};
use crate::target::FileText;

/// The files of a checked-out branch, for an edit of [`BranchCommit::commit`]: reads see
/// the branch head and the edit's own writes; writes are kept until the edit returns. Paths
/// are relative to the repository root, with `/` between components; a path that leaves the
/// root (`..`, an absolute path, a symbolic link on the way) or enters `.git` is refused.
#[derive(Debug)]
pub struct RepoFiles {
    root: PathBuf,
    url: String,
    writes: BTreeMap<String, String>,
}

/// Files larger than this are not read (16 MiB): a write-back edits small YAML files.
const MAX_READ: u64 = 16 << 20;

impl RepoFiles {
    /// The text of `path` (with this edit's writes), `None` when there is no such file.
    ///
    /// # Errors
    /// A path that leaves the repository, a file that is not UTF-8 or larger than 16 MiB, or
    /// that cannot be read.
    pub fn read(&self, path: &str) -> Result<Option<String>, Error> {
        let full = self.checked(path)?;
        if let Some(text) = self.writes.get(path) {
            return Ok(Some(text.clone()));
        }
        read_text(&self.url, path, &full)
    }

    /// Makes `path` hold `content` in the commit (created with its directories when missing).
    ///
    /// # Errors
    /// A path that leaves the repository.
    pub fn write(&mut self, path: &str, content: impl Into<String>) -> Result<(), Error> {
        self.checked(path)?;
        self.writes.insert(path.to_owned(), content.into());
        Ok(())
    }

    fn checked(&self, path: &str) -> Result<PathBuf, Error> {
        check_path(&self.root, path).map_err(|reason| invalid_path(&self.url, path, &reason))
    }
}

fn invalid_path(url: &str, path: &str, reason: &str) -> Error {
    Error::InvalidInput(keel_core::ParseError::new(
        "repository path",
        path,
        format!("{reason} (repository {})", redact_urls(url)),
    ))
}

fn read_text(url: &str, path: &str, full: &Path) -> Result<Option<String>, Error> {
    let meta = match std::fs::metadata(full) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", full, e)),
    };
    if !meta.is_file() {
        return Err(invalid_path(url, path, "is not a file"));
    }
    match crate::target::read_text(full, MAX_READ).map_err(|e| io_error("read", full, e))? {
        FileText::Text(text) => Ok(Some(text)),
        FileText::TooLarge(_) => Err(invalid_path(
            url,
            path,
            &format!("is larger than {MAX_READ} bytes"),
        )),
        FileText::NotUtf8 => Err(invalid_path(url, path, "is not UTF-8 text")),
    }
}

/// Whether `path` is a plain relative path inside `root` (no `..`, no `.git`, no symbolic
/// link on the way); the full path.
pub(crate) fn check_path(root: &Path, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() || path.contains(['\0', '\\']) {
        return Err("is empty or holds a NUL or backslash".into());
    }
    let relative = Path::new(path);
    let mut full = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => {
                if part.eq_ignore_ascii_case(".git") {
                    return Err("is inside .git".into());
                }
                full.push(part);
                if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(format!(
                        "goes through the symbolic link {}",
                        full.strip_prefix(root).unwrap_or(&full).display()
                    ));
                }
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("leaves the repository (`..`)".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute; paths are relative to the repository root".into());
            }
        }
    }
    if full == root {
        return Err("names the repository root, not a file".into());
    }
    Ok(full)
}

/// What [`BranchCommit::commit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitOutcome {
    /// A commit was pushed.
    Pushed {
        /// The commit id (full hex).
        commit: String,
        /// The branch it was pushed to.
        branch: String,
    },
    /// The files already held what the edit writes: nothing was committed.
    Unchanged,
}

/// One commit of an edit to given files, on one branch of one repository.
///
/// [`commit`](BranchCommit::commit) fetches, checks out the push branch when it exists on
/// the remote (else the base branch, [`with_branch`](BranchCommit::with_branch), by default
/// the remote's default branch), runs the edit, commits the files whose content changed
/// with the author and message given, and pushes without forcing. When the push is refused
/// because the branch moved, everything starts again from a fresh fetch: the edit runs on
/// the new head, so the other commits stay. Nothing is pushed when the edit fails or
/// changes nothing.
///
/// ```no_run
/// use keel_git::{BranchCommit, CommitOutcome};
/// # async fn demo() -> Result<(), keel_core::Error> {
/// let outcome = BranchCommit::new("https://git.example.com/deploy.git", "/var/lib/keel/deploy")
///     .with_branch("main")
///     .with_author("keel-rs", "keel-rs@localhost")
///     .commit("build: update web", |files| {
///         let text = files.read("apps/web/values.yaml")?.unwrap_or_default();
///         files.write("apps/web/values.yaml", text.replace("1.2.3", "1.2.4"))
///     })
///     .await?;
/// assert!(matches!(outcome, CommitOutcome::Pushed { .. } | CommitOutcome::Unchanged));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BranchCommit {
    url: String,
    workdir: PathBuf,
    auth: GitAuth,
    branch: Option<String>,
    push_branch: Option<String>,
    author: (String, String),
    max_push_attempts: u32,
    timeouts: Timeouts,
}

impl BranchCommit {
    /// Commits to the repository at `url`, working in the directory `workdir` (cloned into
    /// when it holds no repository yet; keep one directory per repository).
    pub fn new(url: impl Into<String>, workdir: impl Into<PathBuf>) -> Self {
        BranchCommit {
            url: url.into(),
            workdir: workdir.into(),
            auth: GitAuth::None,
            branch: None,
            push_branch: None,
            author: ("keel-rs".into(), "keel-rs@localhost".into()),
            max_push_attempts: 5,
            timeouts: Timeouts::DEFAULT,
        }
    }

    /// The credentials, sent to `url` only.
    pub fn with_auth(mut self, auth: GitAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The branch checked out (default: the one the remote's `HEAD` names).
    pub fn with_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }

    /// The branch pushed to (default: the checked-out one). When it exists on the remote,
    /// the edit starts from its head, so pushing never drops its commits.
    pub fn with_push_branch(mut self, branch: impl Into<String>) -> Self {
        self.push_branch = Some(branch.into());
        self
    }

    /// The commit's author and committer (default `keel-rs <keel-rs@localhost>`).
    pub fn with_author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.author = (name.into(), email.into());
        self
    }

    /// How many times a push refused because the branch moved is tried again from a fresh
    /// fetch (default 5; at least 1).
    pub fn with_max_push_attempts(mut self, attempts: u32) -> Self {
        self.max_push_attempts = attempts.max(1);
        self
    }

    /// The files `paths` at the head [`commit`](BranchCommit::commit) would start from
    /// (fetched now), `None` for each that does not exist.
    ///
    /// # Errors
    /// The fetch fails, the branch does not exist, a path leaves the repository, a file is
    /// not UTF-8 text.
    pub async fn read(&self, paths: Vec<String>) -> Result<Vec<Option<String>>, Error> {
        self.blocking(move |this| {
            let (copy, _, _) = this.checkout()?;
            let files = RepoFiles {
                root: copy.workdir().to_path_buf(),
                url: this.url.clone(),
                writes: BTreeMap::new(),
            };
            paths.iter().map(|p| files.read(p)).collect()
        })
        .await
    }

    /// Runs `edit` on the files of the branch head and pushes what it wrote as one commit
    /// with `message`; see the [type docs](BranchCommit). `edit` runs once per attempt, each
    /// time on a fresh head.
    ///
    /// # Errors
    /// The edit's own error; a fetch or push failure; a branch that does not exist; the
    /// branch moved at every one of the attempts (a conflict).
    pub async fn commit<F>(
        &self,
        message: impl Into<String>,
        edit: F,
    ) -> Result<CommitOutcome, Error>
    where
        F: FnMut(&mut RepoFiles) -> Result<(), Error> + Send + 'static,
    {
        let message = message.into();
        let mut edit = edit;
        self.blocking(move |this| this.commit_blocking(&message, &mut edit))
            .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&BranchCommit) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let lock = lock_for(&this.workdir);
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            f(&this)
        })
        .await
        .map_err(|e| Error::Backend {
            backend: format!("git {}", redact_urls(&self.url)),
            action: "run a git operation".into(),
            message: e.to_string(),
            retryable: false,
            source: None,
        })?
    }

    /// Fetches and checks out the head to start from: the push branch's when it exists,
    /// else the base branch's. Returns the copy, the base branch and the push branch.
    fn checkout(&self) -> Result<(WorkingCopy, String, String), Error> {
        let copy = WorkingCopy::open_or_clone(&self.url, &self.workdir, &self.auth, self.timeouts)?;
        let base = match self.branch.as_deref() {
            None | Some("") | Some("HEAD") => copy.default_branch()?,
            Some(branch) => branch.to_owned(),
        };
        let push = self.push_branch.clone().unwrap_or_else(|| base.clone());
        copy.fetch()?;
        let tip = copy
            .remote_tip(&push)
            .or_else(|| copy.remote_tip(&base))
            .ok_or_else(|| {
                Error::not_found(format!("branch {base} of {}", redact_urls(&self.url)))
            })?;
        copy.reset_to(tip)?;
        Ok((copy, base, push))
    }

    fn commit_blocking(
        &self,
        message: &str,
        edit: &mut (dyn FnMut(&mut RepoFiles) -> Result<(), Error> + Send),
    ) -> Result<CommitOutcome, Error> {
        let author = Signature::now(&self.author.0, &self.author.1)
            .map_err(|e| git_error(&self.url, "make the commit signature", e))?;
        for attempt in 1..=self.max_push_attempts {
            let (copy, _, push) = self.checkout()?;
            let root = copy.workdir().to_path_buf();
            let mut files = RepoFiles {
                root: root.clone(),
                url: self.url.clone(),
                writes: BTreeMap::new(),
            };
            edit(&mut files)?;
            let mut changed = Vec::new();
            for (path, content) in &files.writes {
                let full = check_path(&root, path)
                    .map_err(|reason| invalid_path(&self.url, path, &reason))?;
                if read_text(&self.url, path, &full)?.as_deref() == Some(content.as_str()) {
                    continue;
                }
                if let Some(dir) = full.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
                }
                std::fs::write(&full, content).map_err(|e| io_error("write", &full, e))?;
                changed.push(path.clone());
            }
            if changed.is_empty() {
                return Ok(CommitOutcome::Unchanged);
            }
            let commit = copy.commit(&changed, &author, message)?;
            match copy.push(&push) {
                Ok(()) => {
                    return Ok(CommitOutcome::Pushed {
                        commit: commit.to_string(),
                        branch: push,
                    });
                }
                Err(PushError::NonFastForward) => {
                    debug!(attempt, branch = %push, "the branch moved; fetching it again");
                }
                Err(PushError::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Conflict {
            action: format!("push to {}", redact_urls(&self.url)),
            reason: format!(
                "the branch moved before each of {} pushes",
                self.max_push_attempts
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_repository() {
        let root = std::env::temp_dir().join(format!("keel-branch-paths-{}", std::process::id()));
        std::fs::create_dir_all(root.join("apps")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", root.join("apps/out")).unwrap();
        assert_eq!(
            check_path(&root, "apps/web/values.yaml").unwrap(),
            root.join("apps/web/values.yaml")
        );
        assert_eq!(check_path(&root, "./a.yaml").unwrap(), root.join("a.yaml"));
        for (bad, want) in [
            ("../x.yaml", "leaves the repository"),
            ("apps/../../x", "leaves the repository"),
            ("/etc/passwd", "absolute"),
            (".git/config", ".git"),
            ("apps/.GIT/x", ".git"),
            ("", "empty"),
            (".", "root"),
            ("a\\b", "backslash"),
            #[cfg(unix)]
            ("apps/out/passwd", "symbolic link apps/out"),
        ] {
            let err = check_path(&root, bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
        std::fs::remove_dir_all(&root).ok();
    }
}
