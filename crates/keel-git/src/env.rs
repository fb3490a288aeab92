//! [`GitTargetBuilder::from_env`]: the `KEEL_*` settings of a Git target, read one way by
//! every program built on keel-git.

use std::path::{Path, PathBuf};

use keel_core::{Error, ParseError, Secret};

use crate::known_hosts::KnownHosts;
use crate::repo::GitAuth;
use crate::target::{GitTarget, GitTargetBuilder};

/// The repository: a URL or a local path (required).
pub const REPO: &str = "KEEL_REPO";
/// The branch to update (default `main`).
pub const BRANCH: &str = "KEEL_BRANCH";
/// The branch to push to instead, created from [`BRANCH`] when missing.
pub const PUSH_BRANCH: &str = "KEEL_PUSH_BRANCH";
/// The directories to scan, comma-separated (default: the whole repository).
pub const PATHS: &str = "KEEL_PATHS";
/// The user for HTTPS; needs [`GIT_PASSWORD`].
pub const GIT_USERNAME: &str = "KEEL_GIT_USERNAME";
/// The password or token for HTTPS.
pub const GIT_PASSWORD: &str = "KEEL_GIT_PASSWORD";
/// An SSH private key file, for the user `git` (when no [`GIT_USERNAME`] is set).
pub const SSH_KEY: &str = "KEEL_SSH_KEY";
/// The passphrase of [`SSH_KEY`], if it has one.
pub const SSH_PASSPHRASE: &str = "KEEL_SSH_PASSPHRASE";
/// A `known_hosts` file: with it, the key of [`SSH_KEY`] is read into memory and offered only
/// to a server showing a host key the file pins ([`GitAuth::SshKeyInMemory`]).
pub const SSH_KNOWN_HOSTS: &str = "KEEL_SSH_KNOWN_HOSTS";
/// The commit author, `Name <email>`.
pub const GIT_AUTHOR: &str = "KEEL_GIT_AUTHOR";
/// Where to keep the working copy (default: a directory under the system's temp dir).
pub const WORKDIR: &str = "KEEL_WORKDIR";

impl GitTargetBuilder {
    /// A builder configured from the environment: the repository from `KEEL_REPO` (a URL, or
    /// a local path, which becomes a `file://` URL), `KEEL_BRANCH`, `KEEL_PUSH_BRANCH`,
    /// `KEEL_PATHS` (comma-separated), HTTPS credentials from `KEEL_GIT_USERNAME` and
    /// `KEEL_GIT_PASSWORD` or an SSH key from `KEEL_SSH_KEY` (and `KEEL_SSH_PASSPHRASE`; with
    /// `KEEL_SSH_KNOWN_HOSTS`, a `known_hosts` file, the server's host key is pinned),
    /// the author from `KEEL_GIT_AUTHOR` (`Name <email>`) and the working copy's place from
    /// `KEEL_WORKDIR`. Unset or empty variables keep the defaults of [`GitTarget::builder`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the variable: `KEEL_REPO` unset, a local path that
    /// cannot be resolved, a user without a password, an author not written
    /// `Name <email>`, an SSH key or `known_hosts` file that cannot be read, or `known_hosts`
    /// without an SSH key or holding no valid host key.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading each variable through `var`, for programs whose
    /// command-line flags stand in for the variables (`--repo` for `KEEL_REPO`, ...).
    ///
    /// ```
    /// use keel_git::GitTargetBuilder;
    ///
    /// let var = |name: &str| match name {
    ///     "KEEL_REPO" => Some("https://git.example.com/org/fleet.git".to_owned()),
    ///     "KEEL_GIT_USERNAME" => Some("bot".to_owned()),
    ///     _ => None,
    /// };
    /// let err = GitTargetBuilder::from_lookup(var).unwrap_err().to_string();
    /// assert!(err.contains("KEEL_GIT_PASSWORD"), "{err}");
    /// ```
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let repo = var(REPO).ok_or_else(|| {
            ParseError::new(REPO, "", "the repository is missing: a URL or a local path")
        })?;
        let mut builder = GitTarget::builder(repo_url(&repo)?);
        if let Some(branch) = var(BRANCH) {
            builder = builder.with_branch(branch.trim());
        }
        if let Some(push) = var(PUSH_BRANCH) {
            builder = builder.with_push_branch(push.trim());
        }
        if let Some(paths) = var(PATHS) {
            builder = builder.with_paths(paths.split(',').map(str::trim).filter(|p| !p.is_empty()));
        }
        if let Some(dir) = var(WORKDIR) {
            builder = builder.with_workdir(PathBuf::from(dir));
        }
        if let Some(author) = var(GIT_AUTHOR) {
            let (name, email) = parse_author(&author)?;
            builder = builder.with_author(name, email);
        }
        let auth = match (var(GIT_USERNAME), var(SSH_KEY)) {
            (Some(username), _) => {
                let password = var(GIT_PASSWORD).ok_or_else(|| {
                    ParseError::new(
                        GIT_PASSWORD,
                        "",
                        format!("{GIT_USERNAME} {username:?} needs a password or token"),
                    )
                })?;
                GitAuth::UserPassword {
                    username,
                    password: Secret::new(password),
                }
            }
            (None, Some(key)) => match var(SSH_KNOWN_HOSTS) {
                Some(known_hosts) => GitAuth::SshKeyInMemory {
                    username: "git".into(),
                    private_key: Secret::new(read_file(SSH_KEY, &key)?),
                    passphrase: var(SSH_PASSPHRASE).map(Secret::new),
                    known_hosts: KnownHosts::parse(&read_file(SSH_KNOWN_HOSTS, &known_hosts)?)
                        .map_err(|e| {
                            ParseError::new(SSH_KNOWN_HOSTS, known_hosts.as_str(), e.to_string())
                        })?,
                },
                None => GitAuth::SshKey {
                    username: "git".into(),
                    private_key: PathBuf::from(key),
                    passphrase: var(SSH_PASSPHRASE).map(Secret::new),
                },
            },
            (None, None) => {
                if let Some(known_hosts) = var(SSH_KNOWN_HOSTS) {
                    return Err(ParseError::new(
                        SSH_KNOWN_HOSTS,
                        known_hosts,
                        format!("pins host keys for an SSH key, and {SSH_KEY} is not set"),
                    )
                    .into());
                }
                GitAuth::None
            }
        };
        Ok(builder.with_auth(auth))
    }
}

/// The command-line flags of a Git target, each standing for its `KEEL_*` variable: the one
/// flag set of every program built on keel-git (the `keel` CLI's `--repo`, `keel-gitops`).
///
/// With the `clap` feature it is a `clap::Args` to `#[command(flatten)]` into a program's
/// flags: `--repo`, `--branch`, `--push-branch`, `--path` (repeatable), `--git-username`,
/// `--ssh-key`, `--author` and `--workdir`, each also read from its variable. Without it, a
/// program fills the fields itself. Either way [`to_builder`](Self::to_builder) reads them
/// as [`GitTargetBuilder::from_lookup`] reads the variables: a flag that is set wins over its
/// variable, an empty one counts as unset, and what no flag sets (the password, the SSH
/// passphrase and `known_hosts`, `KEEL_PATHS` without `--path`) comes from the environment.
///
/// ```
/// use keel_git::env::GitArgs;
///
/// let mut args = GitArgs::default();
/// args.repo = Some("https://git.example.com/org/fleet.git".into());
/// args.paths = vec!["apps".into(), "clusters/prod".into()];
/// let var = |name: &str| (name == "KEEL_BRANCH").then(|| "prod".to_owned());
/// let shown = format!("{:?}", args.to_builder_with(var).unwrap());
/// assert!(shown.contains("\"prod\"") && shown.contains("clusters/prod"), "{shown}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[non_exhaustive]
pub struct GitArgs {
    /// The repository: a URL (`https://`, `ssh://`, `git@host:path`, `git://`, `file://`) or a
    /// local path.
    #[cfg_attr(feature = "clap", arg(long, value_name = "URL|PATH", env = REPO))]
    pub repo: Option<String>,

    /// The branch to update.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "BRANCH", default_value = "main", env = BRANCH)
    )]
    pub branch: Option<String>,

    /// Push to this branch instead (created from --branch when missing).
    #[cfg_attr(feature = "clap", arg(long, value_name = "BRANCH", env = PUSH_BRANCH))]
    pub push_branch: Option<String>,

    /// Scan only these directories of the repository (repeatable; default: `KEEL_PATHS`,
    /// comma-separated, else the whole repository).
    #[cfg_attr(feature = "clap", arg(long = "path", value_name = "DIR"))]
    pub paths: Vec<String>,

    /// The user for HTTPS; the password or token comes from `KEEL_GIT_PASSWORD`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "USER", env = GIT_USERNAME))]
    pub git_username: Option<String>,

    /// An SSH private key file, for the user `git` (its passphrase comes from
    /// `KEEL_SSH_PASSPHRASE`; with `KEEL_SSH_KNOWN_HOSTS` it is offered only to the host keys
    /// that file pins).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE", env = SSH_KEY))]
    pub ssh_key: Option<PathBuf>,

    /// The commit author, `Name <email>`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "AUTHOR", env = GIT_AUTHOR))]
    pub author: Option<String>,

    /// Keep the working copy here (default: a directory under the system's temp dir).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR", env = WORKDIR))]
    pub workdir: Option<PathBuf>,
}

impl GitArgs {
    /// The value these flags give the variable `name` ([`REPO`], [`PATHS`] joined with
    /// commas, ...), if they set it.
    pub fn var(&self, name: &str) -> Option<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match name {
            REPO => self.repo.clone(),
            BRANCH => self.branch.clone(),
            PUSH_BRANCH => self.push_branch.clone(),
            PATHS => (!self.paths.is_empty()).then(|| self.paths.join(",")),
            GIT_USERNAME => self.git_username.clone(),
            SSH_KEY => path(&self.ssh_key),
            GIT_AUTHOR => self.author.clone(),
            WORKDIR => path(&self.workdir),
            _ => None,
        }
    }

    /// The builder these flags describe, the rest read from the environment.
    ///
    /// # Errors
    /// As [`GitTargetBuilder::from_env`].
    pub fn to_builder(&self) -> Result<GitTargetBuilder, Error> {
        self.to_builder_with(|name| std::env::var(name).ok())
    }

    /// [`to_builder`](Self::to_builder) reading what no flag sets through `var` (a password
    /// read from stdin for [`GIT_PASSWORD`], say).
    ///
    /// # Errors
    /// As [`GitTargetBuilder::from_lookup`].
    pub fn to_builder_with(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<GitTargetBuilder, Error> {
        GitTargetBuilder::from_lookup(|name| {
            self.var(name)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| var(name))
        })
    }
}

/// The text of the file `path` that the variable `name` names (never shown: it may be a key).
fn read_file(name: &'static str, path: &str) -> Result<String, ParseError> {
    std::fs::read_to_string(path).map_err(|e| ParseError::new(name, path, e.to_string()))
}

/// A URL as it is; a local path that exists (and is no URL) as a `file://` URL of its
/// absolute form.
fn repo_url(repo: &str) -> Result<String, Error> {
    let repo = repo.trim();
    if repo.contains("://") || !Path::new(repo).exists() {
        return Ok(repo.to_owned());
    }
    let absolute =
        std::fs::canonicalize(repo).map_err(|e| ParseError::new(REPO, repo, e.to_string()))?;
    Ok(format!("file://{}", absolute.display()))
}

/// `Name <email>`, both parts non-empty.
fn parse_author(author: &str) -> Result<(String, String), ParseError> {
    let bad = || ParseError::new(GIT_AUTHOR, author, "expected `Name <email>`");
    let (name, rest) = author.split_once('<').ok_or_else(bad)?;
    let email = rest.trim_end().strip_suffix('>').ok_or_else(bad)?;
    if name.trim().is_empty() || email.trim().is_empty() {
        return Err(bad());
    }
    Ok((name.trim().to_owned(), email.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<GitTargetBuilder, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GitTargetBuilder::from_lookup(|name| vars.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        from(vars).unwrap_err().to_string()
    }

    #[test]
    fn every_setting_is_read() {
        let builder = from(&[
            (REPO, "https://git.example.com/org/fleet.git"),
            (BRANCH, "prod"),
            (PUSH_BRANCH, "image-updates"),
            (PATHS, "apps, clusters/prod ,"),
            (GIT_USERNAME, "bot"),
            (GIT_PASSWORD, "hunter2"),
            (GIT_AUTHOR, "Keel Bot <bot@example.com>"),
            (WORKDIR, "work"),
        ])
        .unwrap();
        let shown = format!("{builder:?}");
        for part in [
            "https://git.example.com/org/fleet.git",
            "\"prod\"",
            "Some(\"image-updates\")",
            "[\"apps\", \"clusters/prod\"]",
            "UserPassword { username: \"bot\", password: *** }",
            "\"work\"",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(!shown.contains("hunter2"), "{shown}");
        let ssh = format!(
            "{:?}",
            from(&[(REPO, "git@h:o/r.git"), (SSH_KEY, "id")]).unwrap()
        );
        assert!(
            ssh.contains("SshKey { username: \"git\", private_key: \"id\""),
            "{ssh}"
        );
    }

    #[test]
    fn known_hosts_pin_the_ssh_key_read_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let hosts = dir.path().join("known_hosts");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n").unwrap();
        std::fs::write(
            &hosts,
            "git.example.com ssh-ed25519 \
             AAAAC3NzaC1lZDI1NTE5AAAAIBHlPWFAXmzC21uiiaTSd6ze+F3YhDc+dcnnwp+GDkyD\n",
        )
        .unwrap();
        let (key, hosts) = (key.to_str().unwrap(), hosts.to_str().unwrap());
        let shown = format!(
            "{:?}",
            from(&[
                (REPO, "git@git.example.com:o/r.git"),
                (SSH_KEY, key),
                (SSH_KNOWN_HOSTS, hosts)
            ])
            .unwrap()
        );
        assert!(shown.contains("SshKeyInMemory"), "{shown}");
        assert!(shown.contains("KnownHosts(1 key(s))"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        let e = error(&[
            (REPO, "git@h:o/r.git"),
            (SSH_KEY, key),
            (SSH_KNOWN_HOSTS, key),
        ]);
        assert!(e.contains(SSH_KNOWN_HOSTS) && !e.contains("secret"), "{e}");
        let e = error(&[(REPO, "git@h:o/r.git"), (SSH_KNOWN_HOSTS, hosts)]);
        assert!(e.contains(SSH_KNOWN_HOSTS) && e.contains(SSH_KEY), "{e}");
        let e = error(&[
            (REPO, "git@h:o/r.git"),
            (SSH_KEY, "/nonexistent/id"),
            (SSH_KNOWN_HOSTS, hosts),
        ]);
        assert!(e.contains(SSH_KEY) && e.contains("/nonexistent/id"), "{e}");
    }

    #[test]
    fn a_local_path_becomes_a_file_url() {
        let dir = std::env::temp_dir();
        let shown = format!("{:?}", from(&[(REPO, dir.to_str().unwrap())]).unwrap());
        assert!(shown.contains("file:///"), "{shown}");
    }

    #[test]
    fn bad_settings_name_the_variable_and_show_no_secret() {
        assert!(error(&[]).contains(REPO));
        assert!(error(&[(REPO, "  ")]).contains(REPO));
        let e = error(&[(REPO, "https://h/r.git"), (GIT_USERNAME, "bot")]);
        assert!(e.contains(GIT_PASSWORD) && e.contains("bot"), "{e}");
        for author in ["Keel", "Keel <>", "<a@b>", "Keel <a@b"] {
            let e = error(&[(REPO, "https://h/r.git"), (GIT_AUTHOR, author)]);
            assert!(e.contains(GIT_AUTHOR) && e.contains(author), "{e}");
        }
    }

    #[test]
    fn a_flag_wins_over_its_variable_and_the_rest_comes_from_the_variables() {
        let vars: HashMap<&str, &str> = [
            (REPO, "https://git.example.com/env.git"),
            (BRANCH, "from-env"),
            (PATHS, "env-dir"),
            (GIT_USERNAME, "env-user"),
            (GIT_PASSWORD, "hunter2"),
            (WORKDIR, "env-work"),
        ]
        .into();
        let var = |name: &str| vars.get(name).map(|v| (*v).to_owned());
        // An empty flag is unset, as an empty variable is: the variable's value stands.
        let args = GitArgs {
            repo: Some("https://git.example.com/flag.git".into()),
            paths: vec!["a".into(), "b".into()],
            git_username: Some("flag-user".into()),
            workdir: Some(PathBuf::new()),
            ..GitArgs::default()
        };
        let shown = format!("{:?}", args.to_builder_with(var).unwrap());
        for part in [
            "flag.git",
            "\"from-env\"",
            "[\"a\", \"b\"]",
            "username: \"flag-user\"",
            "\"env-work\"",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(
            !shown.contains("env.git") && !shown.contains("env-dir"),
            "{shown}"
        );
        let e = GitArgs::default().to_builder_with(|_| None).unwrap_err();
        assert!(e.to_string().contains(REPO), "{e}");
    }

    #[cfg(feature = "clap")]
    #[test]
    fn the_flags_parse_into_their_fields() {
        use clap::Parser;
        use keel_testsupport::cli::CommandLine;

        #[derive(Debug, Parser)]
        struct Program {
            #[command(flatten)]
            git: GitArgs,
        }
        const CLI: CommandLine<Program> = CommandLine::new(&["program"]);
        CLI.assert_consistent();
        let program = CLI
            .parse(&[
                "--repo",
                "fleet",
                "--path",
                "apps",
                "--path",
                "infra",
                "--ssh-key",
                "id",
                "--author",
                "Keel <keel@example.com>",
                "--workdir",
                "work",
            ])
            .unwrap();
        assert_eq!(program.git.var(REPO).as_deref(), Some("fleet"));
        assert_eq!(program.git.var(BRANCH).as_deref(), Some("main"));
        assert_eq!(program.git.var(PATHS).as_deref(), Some("apps,infra"));
        assert_eq!(program.git.var(SSH_KEY).as_deref(), Some("id"));
        assert_eq!(
            program.git.var(GIT_AUTHOR).as_deref(),
            Some("Keel <keel@example.com>")
        );
        assert_eq!(program.git.var(WORKDIR).as_deref(), Some("work"));
    }
}
