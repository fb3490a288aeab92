//! The Git plumbing of the backend: clone or open a working copy, fetch, reset to a branch,
//! commit, push, diff. Blocking (libgit2); the target runs it on blocking threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use git2::{
    CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, PushOptions,
    RemoteCallbacks, Repository, ResetType, Signature,
};
use keel_core::{Error, Secret, redact_urls};

use crate::known_hosts::KnownHosts;
use crate::sign::CommitSigner;

/// How to authenticate to the Git server.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum GitAuth {
    /// No credentials: local paths, `file://`, `git://`, and public HTTPS.
    #[default]
    None,
    /// A user name and password or access token, for HTTPS; sent only to the configured
    /// URL's scheme, host and port (a redirect to another server gets nothing).
    UserPassword {
        /// The user name (for tokens, often anything non-empty, e.g. `x-access-token`).
        username: String,
        /// The password or token, which never shows in `Debug` output or errors.
        password: Secret,
    },
    /// An SSH private key file.
    SshKey {
        /// The SSH user, usually `git`.
        username: String,
        /// The private key file.
        private_key: PathBuf,
        /// Its passphrase, if any.
        passphrase: Option<Secret>,
    },
    /// Keys of the running SSH agent.
    SshAgent {
        /// The SSH user, usually `git`.
        username: String,
    },
    /// An SSH private key held in memory, offered only to a server that shows one of the
    /// host keys of `known_hosts` (checked before any credential is sent); for `ssh://` and
    /// `user@host:path` URLs.
    SshKeyInMemory {
        /// The SSH user, usually `git` (a user in the URL wins).
        username: String,
        /// The private key, PEM or OpenSSH format; never shows in `Debug` output or errors.
        private_key: Secret,
        /// Its passphrase, if any.
        passphrase: Option<Secret>,
        /// The host keys the server must show.
        known_hosts: KnownHosts,
    },
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach Debug output.
        match self {
            GitAuth::None => f.write_str("None"),
            GitAuth::UserPassword { username, .. } => {
                write!(
                    f,
                    "UserPassword {{ username: {username:?}, password: *** }}"
                )
            }
            GitAuth::SshKey {
                username,
                private_key,
                ..
            } => write!(
                f,
                "SshKey {{ username: {username:?}, private_key: {private_key:?}, passphrase: *** }}"
            ),
            GitAuth::SshAgent { username } => write!(f, "SshAgent {{ username: {username:?} }}"),
            GitAuth::SshKeyInMemory {
                username,
                known_hosts,
                ..
            } => write!(
                f,
                "SshKeyInMemory {{ username: {username:?}, private_key: ***, passphrase: ***, \
                 known_hosts: {known_hosts:?} }}"
            ),
        }
    }
}

impl GitAuth {
    fn describe(&self) -> String {
        match self {
            GitAuth::None => "no credentials".into(),
            GitAuth::UserPassword { username, .. } => format!("user {username:?}"),
            GitAuth::SshKey { username, .. } => format!("SSH key of user {username:?}"),
            GitAuth::SshAgent { username } => format!("SSH agent keys of user {username:?}"),
            GitAuth::SshKeyInMemory { username, .. } => format!("SSH key of user {username:?}"),
        }
    }
}

/// Why a push did not land.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The remote branch moved on: fetch, re-apply, try again.
    NonFastForward,
    /// Anything else, already turned into a core error.
    Failed(Error),
}

/// Tries the configured credentials a bounded number of times: libgit2 calls the callback
/// again after every refusal, forever unless told to stop.
const MAX_CREDENTIAL_ATTEMPTS: usize = 3;

/// How long a fetch or push waits for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// For the connection to be established.
    pub(crate) connect: Duration,
    /// For each read from or write to the server once connected.
    pub(crate) server: Duration,
}

impl Timeouts {
    /// The defaults: 30 seconds to connect, 60 seconds of silence from the server.
    pub(crate) const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(30),
        server: Duration::from_secs(60),
    };

    /// In libgit2's units: milliseconds, at least 1 (0 would mean "wait forever").
    fn millis(self) -> (i32, i32) {
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
        (ms(self.connect), ms(self.server))
    }
}

/// The timeouts libgit2 applies now, in milliseconds; `None` before the first network
/// operation. libgit2 holds one value of each for the whole process: every network operation
/// runs under the read lock with its own values in force, and only a writer, while no
/// operation runs, changes them.
static NETWORK_TIMEOUTS: RwLock<Option<(i32, i32)>> = RwLock::new(None);

/// Runs the network operation `f` with `timeouts` in force. Operations wanting the same
/// timeouts (the usual case) run side by side; others take turns.
fn with_timeouts<T>(timeouts: Timeouts, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let wanted = timeouts.millis();
    loop {
        {
            let current = NETWORK_TIMEOUTS
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if *current == Some(wanted) {
                return f();
            }
        }
        let mut current = NETWORK_TIMEOUTS
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != Some(wanted) {
            set_libgit2_timeouts(wanted).map_err(|e| Error::Backend {
                backend: "libgit2".into(),
                action: "set the network timeouts".into(),
                message: e.message().to_owned(),
                retryable: false,
                source: None,
            })?;
            *current = Some(wanted);
        }
    }
}

/// Sets libgit2's process-wide connect and server timeouts (milliseconds).
#[allow(unsafe_code)]
fn set_libgit2_timeouts((connect, server): (i32, i32)) -> Result<(), git2::Error> {
    // SAFETY: libgit2 keeps the two values in plain C ints that it reads when a socket
    // connects or waits. Every network operation of this crate runs under the read lock of
    // NETWORK_TIMEOUTS and this function only under its write lock, so none of them reads
    // the values while they change.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(connect)?;
        git2::opts::set_server_timeout_in_milliseconds(server)?;
    }
    Ok(())
}

/// A working copy of one remote branch.
pub(crate) struct WorkingCopy {
    pub(crate) repo: Repository,
    url: String,
    /// The URL with its credentials masked, for messages.
    shown: String,
    auth: GitAuth,
    timeouts: Timeouts,
    /// Why the last connection refused the SSH server's host key: libgit2 keeps only its own
    /// message ("invalid or unknown remote ssh hostkey").
    host_key_refusal: Arc<Mutex<Option<String>>>,
}

impl WorkingCopy {
    /// Opens the working copy in `dir`, or clones `url` into it.
    pub(crate) fn open_or_clone(
        url: &str,
        dir: &Path,
        auth: &GitAuth,
        timeouts: Timeouts,
    ) -> Result<Self, Error> {
        let repo = match Repository::open(dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
                let repo = Repository::init(dir)
                    .map_err(|e| git_error(url, "initialise a working copy", e))?;
                repo.remote("origin", url)
                    .map_err(|e| git_error(url, "add the remote", e))?;
                repo
            }
        };
        // The remote's URL follows the configuration, should it have changed.
        repo.remote_set_url("origin", url)
            .map_err(|e| git_error(url, "set the remote", e))?;
        Ok(WorkingCopy {
            repo,
            url: url.to_owned(),
            shown: redact_urls(url),
            auth: auth.clone(),
            timeouts,
            host_key_refusal: Arc::default(),
        })
    }

    /// The working tree's root.
    pub(crate) fn workdir(&self) -> &Path {
        self.repo
            .workdir()
            .expect("keel-git working copies are not bare")
    }

    fn callbacks<'a>(
        &'a self,
        attempts: &'a Cell<usize>,
        rejection: &'a RefCell<Option<String>>,
    ) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, user_from_url, allowed| {
            let n = attempts.get() + 1;
            attempts.set(n);
            if n > MAX_CREDENTIAL_ATTEMPTS {
                return Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    "credentials refused",
                ));
            }
            // A redirect to another server (libgit2 follows the first request's) gets no
            // password: credentials belong to the configured repository's server only.
            if matches!(self.auth, GitAuth::UserPassword { .. })
                && http_origin(url) != http_origin(&self.url)
            {
                return Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    REDIRECT_REFUSED,
                ));
            }
            match &self.auth {
                GitAuth::UserPassword { username, password }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, password.expose())
                }
                GitAuth::SshKey {
                    username,
                    private_key,
                    passphrase,
                } => Cred::ssh_key(
                    user_from_url.unwrap_or(username),
                    None,
                    private_key,
                    passphrase.as_ref().map(Secret::expose),
                ),
                GitAuth::SshAgent { username } => {
                    Cred::ssh_key_from_agent(user_from_url.unwrap_or(username))
                }
                GitAuth::SshKeyInMemory {
                    username,
                    private_key,
                    passphrase,
                    ..
                } if allowed.contains(CredentialType::SSH_MEMORY)
                    || allowed.contains(CredentialType::SSH_KEY) =>
                {
                    Cred::ssh_key_from_memory(
                        user_from_url.unwrap_or(username),
                        None,
                        private_key.expose(),
                        passphrase.as_ref().map(Secret::expose),
                    )
                }
                GitAuth::SshKeyInMemory { username, .. }
                    if allowed.contains(CredentialType::USERNAME) =>
                {
                    Cred::username(user_from_url.unwrap_or(username))
                }
                _ if allowed.contains(CredentialType::DEFAULT) => Cred::default(),
                _ => Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    "the server asks for credentials and none are configured",
                )),
            }
        });
        if let GitAuth::SshKeyInMemory { known_hosts, .. } = &self.auth {
            let url = self.url.clone();
            let refusal = self.host_key_refusal.clone();
            callbacks.certificate_check(move |cert, _| {
                let Some(hostkey) = cert.as_hostkey() else {
                    // Not SSH: libgit2's own checks decide.
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                };
                let checked = pin_host_key(known_hosts, &url, hostkey.hostkey());
                if let Err(e) = &checked {
                    *refusal.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(e.message().to_owned());
                }
                checked
            });
        }
        callbacks.push_update_reference(move |_refname, status| {
            if let Some(status) = status {
                *rejection.borrow_mut() = Some(status.to_owned());
            }
            Ok(())
        });
        callbacks
    }

    fn auth_failure(&self, action: &str, attempts: usize, e: &git2::Error) -> Option<Error> {
        let host_key = self
            .host_key_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reason) = host_key {
            return Some(Error::Backend {
                backend: format!("git {}", self.shown),
                action: format!("{action} {}", self.shown),
                message: reason,
                retryable: false,
                source: None,
            });
        }
        let refused = e.code() == ErrorCode::Auth
            || attempts > MAX_CREDENTIAL_ATTEMPTS
            || e.message().contains("401")
            || e.message().contains("authentication");
        refused.then(|| Error::Unauthorized {
            action: format!("{action} {}", self.shown),
            reason: if e.message().contains(REDIRECT_REFUSED) {
                REDIRECT_REFUSED.to_owned()
            } else {
                format!("the server refused {}", self.auth.describe())
            },
        })
    }

    /// The remote the working copy was cloned from.
    fn origin(&self) -> Result<git2::Remote<'_>, Error> {
        self.repo
            .find_remote("origin")
            .map_err(|e| git_error(&self.url, "find the remote", e))
    }

    /// Fetches every branch of the remote.
    pub(crate) fn fetch(&self) -> Result<(), Error> {
        self.fetch_refspecs(&[BRANCHES_REFSPEC])
    }

    /// Fetches what the `refspecs` name, and nothing else: no tags follow (libgit2 would
    /// otherwise keep a tag named by a refspec under its own name, not the refspec's).
    pub(crate) fn fetch_refspecs(&self, refspecs: &[&str]) -> Result<(), Error> {
        let attempts = Cell::new(0);
        let rejection = RefCell::new(None);
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks(&attempts, &rejection));
        options.download_tags(git2::AutotagOption::None);
        let mut remote = self.origin()?;
        with_timeouts(self.timeouts, || {
            remote
                .fetch(refspecs, Some(&mut options), None)
                .map_err(|e| {
                    self.auth_failure("fetch from", attempts.get(), &e)
                        .unwrap_or_else(|| git_error(&self.url, "fetch", e))
                })
        })
    }

    /// The branch the remote's `HEAD` names (its default branch), asked of the server.
    pub(crate) fn default_branch(&self) -> Result<String, Error> {
        let name = self.ask_remote("connect to", |connection| {
            let name = connection
                .default_branch()
                .map_err(|e| git_error(&self.url, "read the default branch", e))?;
            Ok(name.as_str().unwrap_or_default().to_owned())
        })?;
        match name.strip_prefix("refs/heads/") {
            Some(branch) if !branch.is_empty() => Ok(branch.to_owned()),
            _ => Err(Error::not_found(format!(
                "the default branch of {} (its HEAD names no branch)",
                self.shown
            ))),
        }
    }

    /// The names of the remote's references (`refs/heads/...`, `refs/tags/...`), asked of the
    /// server.
    pub(crate) fn remote_refs(&self) -> Result<Vec<String>, Error> {
        self.ask_remote("list the references of", |connection| {
            let heads = connection
                .list()
                .map_err(|e| git_error(&self.url, "list the references", e))?;
            Ok(heads.iter().map(|h| h.name().to_owned()).collect())
        })
    }

    /// `ask` of a fetch connection to the remote, opened with this copy's credentials and
    /// within its timeouts; a refused login is reported as `action` the repository.
    fn ask_remote<T>(
        &self,
        action: &str,
        ask: impl FnOnce(&git2::RemoteConnection<'_, '_, '_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let attempts = Cell::new(0);
        let rejection = RefCell::new(None);
        let mut remote = self.origin()?;
        with_timeouts(self.timeouts, || {
            let connection = remote
                .connect_auth(
                    git2::Direction::Fetch,
                    Some(self.callbacks(&attempts, &rejection)),
                    None,
                )
                .map_err(|e| {
                    self.auth_failure(action, attempts.get(), &e)
                        .unwrap_or_else(|| git_error(&self.url, "connect", e))
                })?;
            ask(&connection)
        })
    }

    /// The commit a remote branch points at after the last fetch, if the branch exists.
    pub(crate) fn remote_tip(&self, branch: &str) -> Option<git2::Oid> {
        self.repo
            .find_reference(&format!("refs/remotes/origin/{branch}"))
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id())
    }

    /// Points the local work branch at `commit` and makes the working tree match it exactly.
    pub(crate) fn reset_to(&self, commit: git2::Oid) -> Result<(), Error> {
        let commit = self
            .repo
            .find_commit(commit)
            .map_err(|e| git_error(&self.url, "find the branch tip", e))?;
        // Detach first: the work branch cannot be moved while it is checked out.
        self.repo
            .set_head_detached(commit.id())
            .map_err(|e| git_error(&self.url, "detach HEAD", e))?;
        self.repo
            .branch(WORK_BRANCH, &commit, true)
            .map_err(|e| git_error(&self.url, "move the work branch", e))?;
        self.repo
            .set_head(&format!("refs/heads/{WORK_BRANCH}"))
            .map_err(|e| git_error(&self.url, "check out the work branch", e))?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        self.repo
            .reset(commit.as_object(), ResetType::Hard, Some(&mut checkout))
            .map_err(|e| git_error(&self.url, "reset the working copy", e))
    }

    /// The unified diff of the working tree against `HEAD`.
    pub(crate) fn diff(&self) -> Result<String, Error> {
        let head = self
            .repo
            .head()
            .and_then(|h| h.peel_to_tree())
            .map_err(|e| git_error(&self.url, "read HEAD", e))?;
        let diff = self
            .repo
            .diff_tree_to_workdir_with_index(Some(&head), None)
            .map_err(|e| git_error(&self.url, "diff the working copy", e))?;
        let mut out = String::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin());
            }
            out.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .map_err(|e| git_error(&self.url, "print the diff", e))?;
        Ok(out)
    }

    /// Commits the changed `files` (relative paths) on the work branch.
    pub(crate) fn commit(
        &self,
        files: &[String],
        author: &Signature<'_>,
        message: &str,
    ) -> Result<git2::Oid, Error> {
        self.commit_signed(files, author, message, None)
    }

    /// [`commit`](Self::commit), signed by `signer` when there is one.
    pub(crate) fn commit_signed(
        &self,
        files: &[String],
        author: &Signature<'_>,
        message: &str,
        signer: Option<&dyn CommitSigner>,
    ) -> Result<git2::Oid, Error> {
        let mut index = self
            .repo
            .index()
            .map_err(|e| git_error(&self.url, "open the index", e))?;
        for file in files {
            index
                .add_path(Path::new(file))
                .map_err(|e| git_error(&self.url, &format!("stage {file}"), e))?;
        }
        index
            .write()
            .map_err(|e| git_error(&self.url, "write the index", e))?;
        let tree = index
            .write_tree()
            .and_then(|id| self.repo.find_tree(id))
            .map_err(|e| git_error(&self.url, "write the tree", e))?;
        let parent = self
            .repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| git_error(&self.url, "read HEAD", e))?;
        let Some(signer) = signer else {
            return self
                .repo
                .commit(Some("HEAD"), author, author, message, &tree, &[&parent])
                .map_err(|e| git_error(&self.url, "commit", e));
        };
        let content = self
            .repo
            .commit_create_buffer(author, author, message, &tree, &[&parent])
            .map_err(|e| git_error(&self.url, "write the commit", e))?;
        let signature = signer.sign(&content)?;
        let content = std::str::from_utf8(&content).map_err(|_| Error::Backend {
            backend: format!("git {}", self.shown),
            action: "sign the commit".into(),
            message: "the commit is not UTF-8 text".into(),
            retryable: false,
            source: None,
        })?;
        let id = self
            .repo
            .commit_signed(content, &signature, None)
            .map_err(|e| git_error(&self.url, "write the signed commit", e))?;
        // HEAD is the work branch: move it, as `commit(Some("HEAD"), ...)` does.
        self.repo
            .head()
            .and_then(|head| head.resolve())
            .and_then(|mut branch| branch.set_target(id, "keel-git: signed commit").map(drop))
            .map_err(|e| git_error(&self.url, "move the work branch to the signed commit", e))?;
        Ok(id)
    }

    /// Pushes the work branch to `branch` on the remote, never forcing.
    pub(crate) fn push(&self, branch: &str) -> Result<(), PushError> {
        self.push_with(branch, false)
    }

    /// Pushes the work branch to `branch`; with `force`, replaces whatever `branch` holds.
    pub(crate) fn push_with(&self, branch: &str, force: bool) -> Result<(), PushError> {
        let attempts = Cell::new(0);
        let rejection = RefCell::new(None);
        let mut options = PushOptions::new();
        options.remote_callbacks(self.callbacks(&attempts, &rejection));
        let mut remote = self.origin().map_err(PushError::Failed)?;
        let plus = if force { "+" } else { "" };
        let refspec = format!("{plus}refs/heads/{WORK_BRANCH}:refs/heads/{branch}");
        let result = with_timeouts(self.timeouts, || {
            Ok(remote.push(&[refspec.as_str()], Some(&mut options)))
        })
        .map_err(PushError::Failed)?;
        if let Err(e) = result {
            if e.code() == ErrorCode::NotFastForward || is_non_fast_forward(e.message()) {
                return Err(PushError::NonFastForward);
            }
            return Err(PushError::Failed(
                self.auth_failure("push to", attempts.get(), &e)
                    .unwrap_or_else(|| git_error(&self.url, &format!("push to {branch}"), e)),
            ));
        }
        drop(options);
        drop(remote);
        let status = rejection.borrow_mut().take();
        match status {
            None => Ok(()),
            Some(status) if is_non_fast_forward(&status) => Err(PushError::NonFastForward),
            Some(status) => Err(PushError::Failed(Error::Conflict {
                action: format!("push to {branch} of {}", self.shown),
                reason: format!("the server rejected the update: {}", redact_urls(&status)),
            })),
        }
    }
}

/// Accepts the SSH server of `url` only when it showed (`key`) one of the host keys that
/// `known_hosts` pins for its host and port.
fn pin_host_key(
    known_hosts: &KnownHosts,
    url: &str,
    key: Option<&[u8]>,
) -> Result<CertificateCheckStatus, git2::Error> {
    let refuse = |message: String| {
        Err(git2::Error::new(
            ErrorCode::Certificate,
            ErrorClass::Ssh,
            message,
        ))
    };
    let Some((host, port)) = ssh_host_port(url) else {
        return refuse(format!(
            "cannot tell the SSH host of {} to check its host key",
            redact_urls(url)
        ));
    };
    let Some(key) = key else {
        return refuse(format!(
            "the SSH server {host} did not show its host key in full, so it cannot be checked \
             against known_hosts"
        ));
    };
    match known_hosts.check(&host, port, key) {
        Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
        Err(reason) => refuse(format!("refused to connect: {reason}")),
    }
}

/// The host and port of an SSH URL: `ssh://[user@]host[:port]/path` or `[user@]host:path`.
/// Why credentials were not sent to the server a redirect led to.
const REDIRECT_REFUSED: &str = "the server redirected to another host, and the credentials \
     are for the configured repository's host only";

/// The scheme, host (lower case) and port of an `http://` or `https://` URL; `None` for
/// other URLs.
fn http_origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let (host, port) = authority_host_port(authority, default_port)?;
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// The host and port of a URL's authority, `[user@]host[:port]` (an IPv6 host in brackets);
/// `default_port` when it names none.
fn authority_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port.parse().ok()?,
    };
    Some((host, port))
}

fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url
        .strip_prefix("ssh://")
        .or_else(|| url.strip_prefix("git+ssh://"))
    {
        let authority = rest.split('/').next()?;
        let (host, port) = authority_host_port(authority, 22)?;
        return (!host.is_empty()).then(|| (host.to_owned(), port));
    }
    if url.contains("://") {
        return None;
    }
    // scp-like: the part before the first ':' (with no '/' in it) is [user@]host.
    let (authority, _) = url.split_once(':')?;
    if authority.contains('/') {
        return None;
    }
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| (host.to_owned(), 22))
}

/// The local branch the backend commits on; pushed to the configured branch.
const WORK_BRANCH: &str = "keel-work";

/// Whether a push failed because the remote branch moved: not a fast-forward any more, or a
/// concurrent push won the server's ref lock ("failed to update ref", "cannot lock ref").
fn is_non_fast_forward(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "non-fast",
        "nonfastforward",
        "fastforward",
        "not fast-forward",
        "fetch first",
        "failed to update ref",
        "cannot lock ref",
        "failed to lock",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The refspec that fetches every branch of the remote to `refs/remotes/origin/`, where
/// [`WorkingCopy::remote_tip`] reads them.
pub(crate) const BRANCHES_REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";

/// The lock of each working copy, one for the whole process (a [`crate::GitTarget`] and a
/// [`crate::BranchCommit`] on one directory share it): one process never runs two operations
/// on one working copy at once.
pub(crate) fn lock_for(dir: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(dir.to_path_buf())
        .or_default()
        .clone()
}

/// A libgit2 failure while doing `action` with repository `url`. The URL's credentials are
/// masked, in the URL and in libgit2's message alike.
pub(crate) fn git_error(url: &str, action: &str, e: git2::Error) -> Error {
    let retryable = matches!(
        e.class(),
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh
    );
    let message = redact_urls(e.message());
    // The source repeats libgit2's message: kept only when there was nothing to mask.
    let source: Option<keel_core::error::ErrorSource> = if message == e.message() {
        Some(Arc::new(e))
    } else {
        None
    };
    Error::Backend {
        backend: format!("git {}", redact_urls(url)),
        action: action.to_owned(),
        message,
        retryable,
        source,
    }
}

/// A file-system failure.
pub(crate) fn io_error(action: &str, path: &Path, e: std::io::Error) -> Error {
    Error::backend(
        "git working copy",
        format!("{action} {}", path.display()),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::{http_origin, ssh_host_port};

    #[test]
    fn http_origins() {
        let o = |u: &str| http_origin(u);
        assert_eq!(
            o("https://bot:pw@Git.Example.com/org/fleet.git"),
            Some(("https".into(), "git.example.com".into(), 443))
        );
        assert_eq!(
            o("https://git.example.com:443/x"),
            o("https://git.example.com/y")
        );
        assert_ne!(o("http://127.0.0.1:8080/x"), o("http://localhost:8080/x"));
        assert_ne!(o("http://h/x"), o("https://h/x"));
        assert_eq!(
            o("http://[::1]:81/x"),
            Some(("http".into(), "::1".into(), 81))
        );
        assert_eq!(o("ssh://git@h/x"), None);
        assert_eq!(o("http://h:notaport/x"), None);
    }

    #[test]
    fn ssh_urls_name_their_host_and_port() {
        let at = |h: &str, p: u16| Some((h.to_owned(), p));
        assert_eq!(
            ssh_host_port("ssh://git@git.example.com/org/fleet.git"),
            at("git.example.com", 22)
        );
        assert_eq!(
            ssh_host_port("ssh://git@127.0.0.1:2222/srv/fleet.git"),
            at("127.0.0.1", 2222)
        );
        assert_eq!(ssh_host_port("ssh://[::1]:2222/fleet.git"), at("::1", 2222));
        assert_eq!(
            ssh_host_port("git@github.com:org/fleet.git"),
            at("github.com", 22)
        );
        assert_eq!(ssh_host_port("https://git.example.com/fleet.git"), None);
        assert_eq!(ssh_host_port("/srv/git/fleet.git"), None);
        assert_eq!(ssh_host_port("ssh://host:notaport/x"), None);
    }
}
