//! `keel gitops plan|apply`, and the Git target and release plans of the CLI.

use clap::Args;
use keel_core::ImageRef;
use keel_core::target::{Target, UpdatePlan};
use keel_git::GitTarget;
use keel_git::env::{self, GitArgs};
use std::io::{self, Read};

use crate::error::CliError;

/// Which repository, and how to reach it: keel-git's flags (`keel_git::env::GitArgs`), and
/// a password read from stdin.
#[derive(Debug, Args)]
pub(crate) struct RepoArgs {
    #[command(flatten)]
    git: GitArgs,

    /// Read the HTTPS password or token from stdin (instead of `KEEL_GIT_PASSWORD`).
    #[arg(long, requires = "git_username")]
    git_password_stdin: bool,
}

impl RepoArgs {
    /// Whether a repository was given (`--repo` or `KEEL_REPO`).
    pub(crate) fn is_set(&self) -> bool {
        self.git.repo.is_some()
    }

    /// The Git target these flags describe, read as keel-git reads them: a flag stands for
    /// its `KEEL_*` variable, and the password read from stdin for `KEEL_GIT_PASSWORD`.
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
        let builder = self.git.to_builder_with(|name| match name {
            env::GIT_PASSWORD if password.is_some() => password.clone(),
            _ => std::env::var(name).ok(),
        })?;
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
