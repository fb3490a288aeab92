//! `keel gitops plan|apply`, and the Git target and release plans of the CLI.

use clap::Args;
use keel_core::ImageRef;
use keel_core::target::{Target, UpdatePlan};
use keel_git::{GitTarget, GitTargetBuilder, env};
use std::io::{self, Read};
use std::path::PathBuf;

use crate::error::CliError;

/// Which repository, and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct RepoArgs {
    /// The repository: a URL (`https://`, `ssh://`, `git@host:path`, `git://`, `file://`) or a
    /// local path.
    #[arg(long, value_name = "URL|PATH", env = "KEEL_REPO")]
    repo: Option<String>,

    /// The branch to update.
    #[arg(
        long,
        value_name = "BRANCH",
        default_value = "main",
        env = "KEEL_BRANCH"
    )]
    branch: String,

    /// Push to this branch instead (created from --branch when missing).
    #[arg(long, value_name = "BRANCH", env = "KEEL_PUSH_BRANCH")]
    push_branch: Option<String>,

    /// Scan only these directories of the repository (repeatable).
    #[arg(long = "path", value_name = "DIR")]
    paths: Vec<String>,

    /// The user for HTTPS; the password or token comes from `KEEL_GIT_PASSWORD` or stdin
    /// (`--git-password-stdin`).
    #[arg(long, value_name = "USER", env = "KEEL_GIT_USERNAME")]
    git_username: Option<String>,

    /// Read the HTTPS password or token from stdin.
    #[arg(long, requires = "git_username")]
    git_password_stdin: bool,

    /// An SSH private key file (user `git`).
    #[arg(long, value_name = "FILE", env = "KEEL_SSH_KEY")]
    ssh_key: Option<PathBuf>,

    /// The commit author, `Name <email>`.
    #[arg(long, value_name = "AUTHOR", env = "KEEL_GIT_AUTHOR")]
    author: Option<String>,

    /// Keep the working copy here (default: a directory under the system's temp dir).
    #[arg(long, value_name = "DIR", env = "KEEL_WORKDIR")]
    workdir: Option<PathBuf>,
}

impl RepoArgs {
    /// Whether a repository was given (`--repo` or `KEEL_REPO`).
    pub(crate) fn is_set(&self) -> bool {
        self.repo.is_some()
    }

    /// The Git target these flags describe, read as [`GitTargetBuilder::from_lookup`] reads
    /// the `KEEL_*` variables: a flag stands for its variable, and the password read from
    /// stdin for `KEEL_GIT_PASSWORD`.
    pub(crate) fn target(&self) -> Result<GitTarget, CliError> {
        let password = if self.git_password_stdin {
            let mut p = String::new();
            io::stdin().read_to_string(&mut p).map_err(|e| {
                CliError::Io(format!("cannot read the git password from stdin: {e}"))
            })?;
            Some(p.trim_end_matches(['\r', '\n']).to_owned())
        } else {
            None
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let flag = |name: &str| match name {
            env::REPO => self.repo.clone(),
            env::BRANCH => Some(self.branch.clone()),
            env::PUSH_BRANCH => self.push_branch.clone(),
            env::PATHS => (!self.paths.is_empty()).then(|| self.paths.join(",")),
            env::GIT_USERNAME => self.git_username.clone(),
            env::GIT_PASSWORD => password.clone(),
            env::SSH_KEY => path(&self.ssh_key),
            env::GIT_AUTHOR => self.author.clone(),
            env::WORKDIR => path(&self.workdir),
            _ => None,
        };
        let builder =
            GitTargetBuilder::from_lookup(|name| flag(name).or_else(|| std::env::var(name).ok()))?;
        Ok(builder.build())
    }
}

/// `keel gitops plan|apply` (with the `registry` feature).
#[cfg(feature = "registry")]
mod run {
    use std::sync::Arc;

    use clap::{Args, Subcommand};
    use keel_core::Pipeline;

    use super::RepoArgs;
    use keel_core::Target as _;

    use crate::error::CliError;
    use crate::progress::Progress;
    use crate::registry::RegistryArgs;

    /// `keel gitops ...`.
    #[derive(Debug, Args)]
    pub(crate) struct GitopsArgs {
        #[command(subcommand)]
        command: GitopsCommand,
    }

    #[derive(Debug, Subcommand)]
    enum GitopsCommand {
        /// Print the diff of the updates the policies in the repository would make (the registry
        /// is queried; nothing is committed).
        Plan(GitopsRunArgs),
        /// Make those updates: one commit, pushed.
        Apply(GitopsRunArgs),
    }

    #[derive(Debug, Args)]
    struct GitopsRunArgs {
        #[command(flatten)]
        repo: RepoArgs,

        #[command(flatten)]
        registry: RegistryArgs,
    }

    pub(crate) async fn gitops(args: &GitopsArgs) -> Result<(), CliError> {
        let (run, dry_run) = match &args.command {
            GitopsCommand::Plan(run) => (run, true),
            GitopsCommand::Apply(run) => (run, false),
        };
        let target = Arc::new(run.repo.target()?);
        let client = run.registry.client_for_any()?;
        let progress = Progress::new();
        progress.spin(format!(
            "{} {}: clone, scan, check the registries",
            if dry_run { "planning" } else { "updating" },
            target.name()
        ));
        let report = Pipeline::new(Arc::new(client))
            .with_target(target)
            .with_dry_run(dry_run)
            .run_once()
            .await;
        progress.finish();
        for failure in &report.failures {
            eprintln!(
                "keel: {}{}: {}",
                failure.target,
                failure
                    .id
                    .as_deref()
                    .map(|i| format!(" {i}"))
                    .unwrap_or_default(),
                failure.error
            );
        }
        if dry_run {
            for diff in report.previews.values() {
                print!("{diff}");
            }
        } else {
            for plan in &report.applied {
                println!("{plan}");
            }
        }
        for plan in &report.awaiting_approval {
            eprintln!("keel: awaiting approval: {plan}");
        }
        if report.failures.is_empty() {
            Ok(())
        } else {
            Err(CliError::Io(format!(
                "{} update(s) failed",
                report.failures.len()
            )))
        }
    }
}

#[cfg(feature = "registry")]
pub(crate) use run::{GitopsArgs, gitops};

/// The plans of `keel release` in a Git repository: every reference to `new`'s repository,
/// marked or not, wherever it is written, moved to `new`'s tag. Releasing nothing is an
/// error, so that a CI step does not pass having released nothing.
pub(crate) async fn release_plans(
    target: &GitTarget,
    new: &ImageRef,
) -> Result<Vec<UpdatePlan>, CliError> {
    let scan = target.scan().await?;
    let references: Vec<_> = scan
        .references
        .into_iter()
        .filter_map(|r| r.released(new).map(|to| (r, to)))
        .collect();
    if references.is_empty() {
        let mut message = format!(
            "nothing released: {} references {} nowhere (no image: value, kustomization \
             images: entry or marked value holds it)",
            target.name(),
            new.name()
        );
        let skipped: Vec<String> = scan.warnings.iter().map(ToString::to_string).collect();
        if !skipped.is_empty() {
            message.push_str(&format!(
                "; {} problem(s) in the files read: {}",
                skipped.len(),
                skipped.join("; ")
            ));
        }
        return Err(CliError::Io(message));
    }
    Ok(references
        .into_iter()
        .filter(|(r, to)| r.image != *to)
        .map(|(r, to)| UpdatePlan {
            target: target.name().to_owned(),
            id: r.id(),
            current: r.image,
            new: to,
        })
        .collect())
}
