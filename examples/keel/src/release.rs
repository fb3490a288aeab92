//! `keel release`: one image to one tag, in a Git repository, a workload of the cluster or a
//! Helm release.

use clap::Args;
use keel_core::ImageRef;
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};

use crate::error::{CliError, one_of};

/// `keel release`: set one image to one tag wherever the repository references it.
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    #[cfg(feature = "git")]
    #[command(flatten)]
    repo: crate::gitops::RepoArgs,

    /// The image and its new tag, e.g. `ghcr.io/acme/web:1.4.2`.
    #[arg(long, value_name = "IMAGE:TAG", env = "KEEL_UPDATE_IMAGE")]
    update_image: String,

    /// Show the diff instead of committing.
    #[arg(long)]
    dry_run: bool,

    /// Patch a workload of the current Kubernetes cluster instead of a Git repository.
    #[cfg(feature = "kube")]
    #[arg(long, requires = "workload")]
    kube: bool,

    /// With --kube: the workload, `NAMESPACE/KIND/NAME` (e.g. `prod/deployment/web`).
    #[cfg(feature = "kube")]
    #[arg(long, value_name = "NS/KIND/NAME", requires = "kube")]
    workload: Option<String>,

    #[cfg(feature = "kube")]
    #[command(flatten)]
    kube_scope: crate::kube::KubeArgs,

    /// Upgrade a Helm release of the current Kubernetes cluster instead of a Git repository:
    /// its tracked images of the image's repository, in one `helm upgrade`.
    #[cfg(feature = "helm")]
    #[arg(
        long,
        conflicts_with_all = ["kube", "namespace", "selector"],
        requires = "helm_release"
    )]
    helm: bool,

    /// With --helm: the release, `NAMESPACE/NAME` (e.g. `prod/web`).
    #[cfg(feature = "helm")]
    #[arg(
        long = "release",
        id = "helm_release",
        value_name = "NS/NAME",
        requires = "helm"
    )]
    helm_release: Option<String>,

    #[cfg(feature = "helm")]
    #[command(flatten)]
    helm_options: crate::helm::HelmArgs,
}

/// Where `keel release` releases.
enum Subject {
    #[cfg(feature = "git")]
    Repo,
    #[cfg(feature = "kube")]
    Kube,
    #[cfg(feature = "helm")]
    Helm,
}

impl ReleaseArgs {
    /// The one target the arguments name: `--kube`, `--helm`, else the repository.
    fn subject(&self) -> Result<Subject, CliError> {
        let cluster: [Option<(&str, Subject)>; _] = [
            #[cfg(feature = "kube")]
            self.kube.then_some(("--kube", Subject::Kube)),
            #[cfg(feature = "helm")]
            self.helm.then_some(("--helm", Subject::Helm)),
        ];
        // The repository is the default: chosen when no cluster flag is.
        #[cfg(feature = "git")]
        let repo = (self.repo.is_set() || cluster.iter().all(Option::is_none))
            .then_some(("--repo", Subject::Repo));
        #[cfg(not(feature = "git"))]
        let repo = None;
        match one_of(
            cluster.into_iter().chain([repo]),
            "release to different targets",
        )? {
            Some(subject) => Ok(subject),
            None => Err(CliError::Input(
                "nothing to release to: give --kube --workload NS/KIND/NAME or --helm \
                 --release NS/NAME (this keel is built without Git repositories)"
                    .into(),
            )),
        }
    }
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
    // What the messages call the target, when not its own name.
    let (target, plans, subject): (Box<dyn Target>, _, Option<String>) = match args.subject()? {
        #[cfg(feature = "helm")]
        Subject::Helm => {
            let release = args.helm_release.as_deref().unwrap_or_default();
            let (target, plans) =
                crate::helm::release(&args.helm_options, release, &args.update_image, &new).await?;
            (
                Box::new(target),
                plans,
                Some(format!("Helm release {release}")),
            )
        }
        #[cfg(feature = "kube")]
        Subject::Kube => {
            let workload = args.workload.as_deref().unwrap_or_default();
            let target = args.kube_scope.target().await?;
            let plans = crate::kube::release_plans(&target, workload, &new).await?;
            (Box::new(target), plans, None)
        }
        #[cfg(feature = "git")]
        Subject::Repo => {
            let target = args.repo.target()?;
            let plans = crate::gitops::release_plans(&target, &new).await?;
            (Box::new(target), plans, None)
        }
    };
    if plans.is_empty() {
        eprintln!(
            "keel: nothing to change: {} already runs {}",
            subject.as_deref().unwrap_or(target.name()),
            args.update_image
        );
        return Ok(());
    }
    apply_release(target.as_ref(), &plans, args.dry_run).await
}

/// The end of `keel release`, whatever the target: the preview in a dry run, else apply,
/// print each plan applied and fail when any failed.
async fn apply_release(
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
            Ok(ApplyOutcome::AlreadyCurrent) => {
                eprintln!(
                    "keel: nothing to change: {} already runs {}",
                    plan.id, plan.new
                );
            }
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
