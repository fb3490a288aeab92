//! `keel gitops plan|apply` and `keel release`: the Git write-back side of the CLI.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_core::{ImageRef, Pipeline};
use keel_git::{GitAuth, GitTarget, GitTargetBuilder};

use crate::error::CliError;
use crate::registry::RegistryArgs;

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
    fn target(&self) -> Result<GitTarget, CliError> {
        let repo = self.repo.as_deref().ok_or_else(|| {
            CliError::Input("the repository is missing: pass --repo URL|PATH (or KEEL_REPO)".into())
        })?;
        let url = if std::path::Path::new(repo).exists() && !repo.contains("://") {
            let abs = std::fs::canonicalize(repo)
                .map_err(|e| CliError::Input(format!("invalid --repo {repo:?}: {e}")))?;
            format!("file://{}", abs.display())
        } else {
            repo.to_owned()
        };
        let mut builder: GitTargetBuilder = GitTarget::builder(url)
            .with_branch(&self.branch)
            .with_paths(self.paths.clone());
        if let Some(push) = &self.push_branch {
            builder = builder.with_push_branch(push);
        }
        if let Some(dir) = &self.workdir {
            builder = builder.with_workdir(dir);
        }
        if let Some(author) = &self.author {
            let (name, email) = parse_author(author)?;
            builder = builder.with_author(name, email);
        }
        let auth = match (&self.git_username, &self.ssh_key) {
            (Some(user), _) => {
                let password = if self.git_password_stdin {
                    let mut p = String::new();
                    io::stdin().read_to_string(&mut p).map_err(|e| {
                        CliError::Io(format!("cannot read the git password from stdin: {e}"))
                    })?;
                    p.trim_end_matches(['\r', '\n']).to_owned()
                } else {
                    std::env::var("KEEL_GIT_PASSWORD").map_err(|_| {
                        CliError::Input(
                            "--git-username needs a password: set KEEL_GIT_PASSWORD or pass --git-password-stdin"
                                .into(),
                        )
                    })?
                };
                GitAuth::UserPassword {
                    username: user.clone(),
                    password,
                }
            }
            (None, Some(key)) => GitAuth::SshKey {
                username: "git".into(),
                private_key: key.clone(),
                passphrase: std::env::var("KEEL_SSH_PASSPHRASE").ok(),
            },
            (None, None) => GitAuth::None,
        };
        Ok(builder.with_auth(auth).build())
    }
}

fn parse_author(s: &str) -> Result<(String, String), CliError> {
    let bad = || CliError::Input(format!("invalid --author {s:?}: expected `Name <email>`"));
    let (name, rest) = s.split_once('<').ok_or_else(bad)?;
    let email = rest.strip_suffix('>').ok_or_else(bad)?;
    if name.trim().is_empty() || email.trim().is_empty() {
        return Err(bad());
    }
    Ok((name.trim().to_owned(), email.trim().to_owned()))
}

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
    let report = Pipeline::new(Arc::new(client))
        .with_target(target)
        .with_dry_run(dry_run)
        .run_once()
        .await;
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

/// `keel release`: set one image to one tag wherever the repository references it.
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    #[command(flatten)]
    repo: RepoArgs,

    /// The image and its new tag, e.g. `ghcr.io/acme/web:1.4.2`.
    #[arg(long, value_name = "IMAGE:TAG", env = "KEEL_UPDATE_IMAGE")]
    update_image: String,

    /// Show the diff instead of committing.
    #[arg(long)]
    dry_run: bool,

    /// Patch a workload of the current Kubernetes cluster instead of a Git repository.
    #[arg(long, conflicts_with = "repo", requires = "workload")]
    kube: bool,

    /// With --kube: the workload, `NAMESPACE/KIND/NAME` (e.g. `prod/deployment/web`).
    #[arg(long, value_name = "NS/KIND/NAME", requires = "kube")]
    workload: Option<String>,

    #[command(flatten)]
    kube_scope: crate::kube::KubeArgs,
}

pub(crate) async fn release(args: &ReleaseArgs) -> Result<(), CliError> {
    let new = ImageRef::parse(&args.update_image)?;
    // A reference without a tag parses as `:latest`; a release must name its tag.
    let last = args.update_image.rsplit('/').next().unwrap_or_default();
    if new.tag().is_none() || !last.contains(':') {
        return Err(CliError::Input(format!(
            "invalid --update-image {:?}: it names no tag",
            args.update_image
        )));
    }
    if args.kube {
        let workload = args.workload.as_deref().unwrap_or_default();
        return crate::kube::release(&args.kube_scope, workload, &new, args.dry_run).await;
    }
    let target = args.repo.target()?;
    // Every reference to the repository: marked or not, wherever it is written.
    let scan = target.scan().await?;
    let references: Vec<_> = scan
        .references
        .into_iter()
        .filter_map(|r| r.released(&new).map(|to| (r, to)))
        .collect();
    if references.is_empty() {
        // A CI step must not pass having released nothing.
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
    let plans: Vec<UpdatePlan> = references
        .into_iter()
        .filter(|(r, to)| r.image != *to)
        .map(|(r, to)| UpdatePlan {
            target: target.name().to_owned(),
            id: r.id(),
            current: r.image,
            new: to,
        })
        .collect();
    if plans.is_empty() {
        eprintln!(
            "keel: nothing to change: every reference to {} is already {}",
            new.name(),
            args.update_image
        );
        return Ok(());
    }
    apply_release(&target, &plans, args.dry_run).await
}

/// What `current` becomes when released as `new`: its repository as written, `new`'s tag
/// (which the caller checked is there) and digest.
pub(crate) fn released(current: &ImageRef, new: &ImageRef) -> ImageRef {
    let to = current.with_tag(new.tag().expect("a release names its tag").clone());
    match new.digest() {
        Some(d) => to.with_digest(d.clone()),
        None => to,
    }
}

/// The end of `keel release`, whatever the target: the preview in a dry run, else apply,
/// print each plan applied and fail when any failed.
pub(crate) async fn apply_release(
    target: &dyn Target,
    plans: &[UpdatePlan],
    dry_run: bool,
) -> Result<(), CliError> {
    if dry_run {
        print!("{}", target.preview(plans).await?);
        return Ok(());
    }
    let mut failed = 0;
    for (plan, result) in plans.iter().zip(target.apply_all(plans).await) {
        match result {
            Ok(ApplyOutcome::Applied) => println!("{plan}"),
            Ok(ApplyOutcome::AlreadyCurrent) => {}
            Err(e) => {
                failed += 1;
                eprintln!("keel: {plan}: {e}");
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::Io(format!("{failed} update(s) failed")))
    }
}
