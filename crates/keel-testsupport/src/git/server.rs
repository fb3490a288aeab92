//! Throw-away Git servers: `git daemon` started by `scripts/git-server`, optionally with the
//! smart-HTTP server of [`super::http`] in front of the same repositories; stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cli::{Git, GitOutput};
use super::http::{HttpConfig, HttpGitServer, HttpRequestRecord};
use crate::script::run_script;
use crate::{ScriptServer, script};

/// The identity of the commits a third party pushes with [`GitServer::push_file`].
pub const THIRD_PARTY: (&str, &str) = ("Third Party", "third-party@example.invalid");

/// A running `git daemon` on 127.0.0.1 serving the bare repositories of a temporary directory
/// (anonymous fetch and push over `git://`), optionally with a smart-HTTP server behind basic
/// auth (`http://127.0.0.1:PORT/git/NAME.git`). Stopped, and its directory removed, on drop.
pub struct GitServer {
    addr: String,
    dir: PathBuf,
    repos: PathBuf,
    git: Git,
    http: Option<(HttpGitServer, String, String)>,
    /// Stops `git daemon` when dropped, after `http` (see `Drop`).
    server: ScriptServer,
}

impl GitServer {
    /// Starts `git daemon`; panics if it cannot (with a hint to run
    /// `scripts/git-server install` when git or `git daemon` is missing).
    pub fn start() -> GitServer {
        GitServer::launch(None)
    }

    /// Starts `git daemon` and a smart-HTTP server that lets in only `user` with `password`.
    pub fn start_with_http(user: &str, password: &str) -> GitServer {
        GitServer::launch(Some((user, password)))
    }

    fn launch(http: Option<(&str, &str)>) -> GitServer {
        require_git(http.is_some());
        let server = ScriptServer::start("git-server", std::iter::empty::<&str>());
        let addr = server.field("addr").to_owned();
        let dir = server.dir().to_path_buf();
        let repos = PathBuf::from(server.field("repos"));
        let git = Git::new(dir.join("home"));
        let http = http.map(|(user, password)| {
            let server = HttpGitServer::start(HttpConfig {
                user: user.to_owned(),
                password: password.to_owned(),
                project_root: repos.clone(),
                home: git.home().to_path_buf(),
            });
            (server, user.to_owned(), password.to_owned())
        });
        GitServer {
            addr,
            dir,
            repos,
            git,
            http,
            server,
        }
    }

    /// `127.0.0.1:PORT` of `git daemon`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the bare repositories.
    pub fn repos_dir(&self) -> &Path {
        &self.repos
    }

    /// The bare repository `NAME.git`.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.repos.join(format!("{name}.git"))
    }

    /// The process id of `git daemon`.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The isolated `git` CLI this server uses (its `HOME` lies in the server's directory).
    pub fn git(&self) -> &Git {
        &self.git
    }

    /// A scratch directory inside the server's directory (removed with the server), for
    /// clones and work trees of a test.
    pub fn scratch_dir(&self, prefix: &str) -> PathBuf {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.dir)
            .expect("scratch directory")
            .keep()
    }

    /// `git://127.0.0.1:PORT/NAME.git`.
    pub fn git_url(&self, name: &str) -> String {
        format!("git://{}/{name}.git", self.addr)
    }

    /// `http://127.0.0.1:PORT/git/NAME.git`; panics unless started with
    /// [`GitServer::start_with_http`].
    pub fn http_url(&self, name: &str) -> String {
        format!("http://{}/git/{name}.git", self.http_server().addr())
    }

    /// [`GitServer::http_url`] with `user:password@` in it (percent-encoded), for the `git`
    /// CLI, which cannot be asked for credentials in tests.
    pub fn http_url_with_credentials(&self, name: &str, user: &str, password: &str) -> String {
        format!(
            "http://{}:{}@{}/git/{name}.git",
            percent_encode(user),
            percent_encode(password),
            self.http_server().addr()
        )
    }

    /// The user and password the HTTP server accepts; panics without HTTP.
    pub fn http_credentials(&self) -> (&str, &str) {
        let (_, user, password) = self.http.as_ref().expect(NO_HTTP);
        (user, password)
    }

    /// HTTP requests so far, whatever their outcome.
    pub fn http_requests(&self) -> usize {
        self.http_server().requests()
    }

    /// HTTP requests with wrong or unreadable credentials (answered 401).
    pub fn http_auth_failures(&self) -> usize {
        self.http_server().auth_failures()
    }

    /// HTTP requests without credentials, answered 401 with a `WWW-Authenticate` challenge.
    /// Git clients (the CLI, libgit2) send such a request first even when they have
    /// credentials, so a successful clone usually counts one.
    pub fn http_challenges(&self) -> usize {
        self.http_server().challenges()
    }

    /// Every HTTP request so far, in order.
    pub fn http_log(&self) -> Vec<HttpRequestRecord> {
        self.http_server().log()
    }

    /// What `git http-backend` wrote to stderr so far.
    pub fn http_backend_stderr(&self) -> String {
        self.http_server().backend_stderr()
    }

    /// The log of `git daemon` so far (connections, requests, errors).
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn http_server(&self) -> &HttpGitServer {
        &self.http.as_ref().expect(NO_HTTP).0
    }

    /// Creates the bare repository `NAME.git` with HEAD naming `branch` and seeds `branch` with
    /// one commit of `files` (`(path, content)`, paths may contain `/`); returns its id.
    pub fn create_repo(&self, name: &str, files: &[(&str, &str)], branch: &str) -> String {
        let bytes: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(path, content)| (*path, content.as_bytes()))
            .collect();
        self.create_repo_bytes(name, &bytes, branch)
    }

    /// [`GitServer::create_repo`] with file contents as bytes (invalid UTF-8, BOMs, ...).
    pub fn create_repo_bytes(&self, name: &str, files: &[(&str, &[u8])], branch: &str) -> String {
        let source = self.scratch_dir("seed-");
        for (path, content) in files {
            write_file(&source, path, content);
        }
        let output = self.create_repo_command(name, branch, Some(&source));
        std::fs::remove_dir_all(&source).ok();
        let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert_eq!(
            commit.len(),
            40,
            "create-repo printed {commit:?}, not a commit id"
        );
        commit
    }

    /// Creates the bare repository `NAME.git` without any commit (HEAD names `branch`).
    pub fn create_empty_repo(&self, name: &str, branch: &str) {
        self.create_repo_command(name, branch, None);
    }

    fn create_repo_command(
        &self,
        name: &str,
        branch: &str,
        source: Option<&Path>,
    ) -> std::process::Output {
        let mut command = script("git-server");
        command
            .arg("create-repo")
            .arg(&self.dir)
            .arg(name)
            .args(["--branch", branch]);
        if let Some(source) = source {
            command.arg("--from-dir").arg(source);
        }
        run_script(
            &mut command,
            &format!("scripts/git-server create-repo {name}"),
        )
    }

    /// A third party commits `content` to `path` on `branch` (created from HEAD, or as the first
    /// commit of an empty repository, when missing) and pushes it over `git://`, through a
    /// clone of its own; returns the new commit id.
    pub fn push_file(
        &self,
        name: &str,
        branch: &str,
        path: &str,
        content: &str,
        message: &str,
    ) -> String {
        self.push_files(name, branch, &[(path, Some(content))], message)
    }

    /// Like [`GitServer::push_file`] with several files in one commit; `None` deletes a file.
    pub fn push_files(
        &self,
        name: &str,
        branch: &str,
        files: &[(&str, Option<&str>)],
        message: &str,
    ) -> String {
        let work = self.scratch_dir("third-party-");
        let git = &self.git;
        let url = self.git_url(name);
        git.run(
            None,
            [
                "clone".as_ref(),
                "--quiet".as_ref(),
                "--no-checkout".as_ref(),
                url.as_ref(),
                work.as_os_str(),
            ],
        );
        let remote_branch = format!("refs/remotes/origin/{branch}");
        let has_branch = git
            .try_run(
                Some(&work),
                ["rev-parse", "--verify", "--quiet", &remote_branch],
            )
            .success;
        let has_head = git
            .try_run(Some(&work), ["rev-parse", "--verify", "--quiet", "HEAD"])
            .success;
        if has_branch {
            git.run(
                Some(&work),
                ["checkout", "--quiet", "-B", branch, &remote_branch],
            );
        } else if has_head {
            git.run(Some(&work), ["checkout", "--quiet", "-B", branch]);
        } else {
            git.run(Some(&work), ["checkout", "--quiet", "--orphan", branch]);
        }
        for (path, content) in files {
            match content {
                Some(content) => {
                    write_file(&work, path, content.as_bytes());
                    git.run(Some(&work), ["add", "--", path]);
                }
                None => {
                    git.run(Some(&work), ["rm", "--quiet", "--", path]);
                }
            }
        }
        let mut commit = git.command();
        commit
            .current_dir(&work)
            .args(["commit", "--quiet", "--allow-empty", "-m", message])
            .env("GIT_AUTHOR_NAME", THIRD_PARTY.0)
            .env("GIT_AUTHOR_EMAIL", THIRD_PARTY.1)
            .env("GIT_COMMITTER_NAME", THIRD_PARTY.0)
            .env("GIT_COMMITTER_EMAIL", THIRD_PARTY.1);
        git.output(commit).expect_success();
        let id = git.run(Some(&work), ["rev-parse", "HEAD"]).trimmed();
        git.run(
            Some(&work),
            [
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        std::fs::remove_dir_all(&work).ok();
        id
    }

    /// The commit `branch` points at in the bare repository, if the branch exists.
    pub fn head(&self, name: &str, branch: &str) -> Option<String> {
        let output = self.bare(
            name,
            [
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
        );
        output.success.then(|| output.trimmed())
    }

    /// The content of `path` on `branch`, if both exist (panics on invalid UTF-8; see
    /// [`GitServer::read_bytes`]).
    pub fn read_file(&self, name: &str, branch: &str, path: &str) -> Option<String> {
        self.read_bytes(name, branch, path).map(|bytes| {
            String::from_utf8(bytes)
                .unwrap_or_else(|_| panic!("{path} on {branch} of {name} is not UTF-8"))
        })
    }

    /// The bytes of `path` on `branch`, if both exist.
    pub fn read_bytes(&self, name: &str, branch: &str, path: &str) -> Option<Vec<u8>> {
        let object = format!("refs/heads/{branch}:{path}");
        let kind = self.bare(name, ["cat-file", "-t", &object]);
        if !kind.success || kind.trimmed() != "blob" {
            return None;
        }
        let output = self.bare(name, ["cat-file", "blob", &object]);
        output.success.then_some(output.stdout)
    }

    /// `(commit id, subject)` of the commits of `branch`, newest first (empty when the branch
    /// does not exist).
    pub fn log(&self, name: &str, branch: &str) -> Vec<(String, String)> {
        let Some(head) = self.head(name, branch) else {
            return Vec::new();
        };
        let output = self.bare(name, ["log", "--format=%H%x09%s", &head]);
        let output = output.expect_success();
        output
            .stdout_text()
            .lines()
            .map(|line| {
                let (id, subject) = line.split_once('\t').unwrap_or((line, ""));
                (id.to_owned(), subject.to_owned())
            })
            .collect()
    }

    /// The paths of the files on `branch` (sorted), empty when the branch does not exist.
    pub fn files(&self, name: &str, branch: &str) -> Vec<String> {
        let Some(head) = self.head(name, branch) else {
            return Vec::new();
        };
        let output = self.bare(name, ["ls-tree", "-r", "--name-only", "-z", &head]);
        output
            .expect_success()
            .stdout_text()
            .split('\0')
            .filter(|path| !path.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `git show -s --format=FORMAT COMMIT` in the bare repository (author, message, parents,
    /// ... of a commit, e.g. `%an <%ae>`, `%B`, `%P`).
    pub fn show(&self, name: &str, commit: &str, format: &str) -> String {
        let format = format!("--format={format}");
        self.bare(name, ["show", "-s", &format, commit])
            .expect_success()
            .stdout_text()
    }

    /// Points `branch` at `commit` (or deletes it with `None`), as a force push would: for
    /// tests of rewritten or vanished branches.
    pub fn set_branch(&self, name: &str, branch: &str, commit: Option<&str>) {
        let reference = format!("refs/heads/{branch}");
        match commit {
            Some(commit) => self.bare(name, ["update-ref", &reference, commit]),
            None => self.bare(name, ["update-ref", "-d", &reference]),
        }
        .expect_success();
    }

    /// Installs the hook `hook` (`pre-receive`, `update`, ...) of the bare repository as a
    /// `/bin/sh` script with `body`, e.g. `echo "rejected" >&2; exit 1` to refuse pushes.
    pub fn install_hook(&self, name: &str, hook: &str, body: &str) {
        let path = self.repo_path(name).join("hooks").join(hook);
        std::fs::create_dir_all(path.parent().expect("hooks dir")).expect("hooks directory");
        crate::write_shell_script(&path, body);
    }

    /// Makes the next push to the repository race with another: when it arrives, before its
    /// refs are updated, `branch` is moved to `commit` (which must exist in the repository,
    /// e.g. pushed to another branch with [`GitServer::push_file`]), so the push finds the
    /// branch moved and is refused as a client racing another would be. Only the first push
    /// after this call races; later ones land as usual. Installs the `pre-receive` hook.
    pub fn move_branch_on_next_push(&self, name: &str, branch: &str, commit: &str) {
        let marker = self.scratch_dir("raced-").join("done");
        // Outside receive-pack's quarantine, which forbids ref updates from hooks.
        let body = format!(
            "cat >/dev/null\n\
             [ -e '{marker}' ] && exit 0\n\
             : > '{marker}'\n\
             exec env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY \
             -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref 'refs/heads/{branch}' '{commit}'",
            marker = marker.display(),
        );
        self.install_hook(name, "pre-receive", &body);
    }

    /// Runs `git --git-dir=<bare repository> ARGS`, whether it succeeds or not.
    pub fn bare<I, S>(&self, name: &str, args: I) -> GitOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let repo = self.repo_path(name);
        assert!(repo.is_dir(), "no repository {}", repo.display());
        let mut command = self.git.command();
        command.arg("--git-dir").arg(&repo).args(args);
        self.git.output(command)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        // The HTTP server first: it runs backends in the directory that stopping `git daemon`
        // (the `server` field, dropped next) removes.
        self.http = None;
    }
}

const NO_HTTP: &str = "this GitServer has no HTTP server: start it with GitServer::start_with_http";

/// Panics unless the `git` first on `PATH` runs and has `git daemon` (and, for `http`,
/// `git http-backend`): tests must fail, not pass, on a machine without them.
fn require_git(http: bool) {
    const HINT: &str = "run `scripts/git-server install` first (the keel-git integration tests \
                        need git with `git daemon` and `git http-backend`)";
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let Some(exec_path) = exec_path else {
        panic!("`git` is not installed (or does not run): {HINT}");
    };
    let mut needed = vec!["git-daemon"];
    if http {
        needed.push("git-http-backend");
    }
    for program in needed {
        assert!(
            exec_path.join(program).is_file(),
            "`{program}` is missing from {}: {HINT}",
            exec_path.display()
        );
    }
}

/// Writes `content` to `root/path`, creating parent directories.
fn write_file(root: &Path, path: &str, content: &[u8]) {
    let target = root.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|error| panic!("creating {}: {error}", parent.display()));
    }
    std::fs::write(&target, content)
        .unwrap_or_else(|error| panic!("writing {}: {error}", target.display()));
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for URL userinfo).
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
