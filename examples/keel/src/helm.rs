//! The Helm side of the CLI (Keel's Helm provider): the releases `--helm` commands work on,
//! in the scope the flags choose, `keel check --helm` and the release `keel release --helm`
//! names.

use std::path::PathBuf;

use clap::Args;
use keel_core::{ImageRef, Target, UpdatePlan};
use keel_helm::{HelmBinary, HelmTarget};

use crate::error::CliError;
use crate::kube::release_plan;

/// How to run helm.
#[derive(Debug, Args)]
pub(crate) struct HelmArgs {
    /// With --helm: the helm binary that upgrades releases (default: `helm` on PATH). helm
    /// reaches the cluster as this command does (KUBECONFIG, `~/.kube/config` or the
    /// in-cluster service account).
    #[arg(long, value_name = "PATH", env = "KEEL_HELM_BINARY")]
    helm_binary: Option<PathBuf>,
}

impl HelmArgs {
    /// A target over the Helm releases of the cluster of the current kubeconfig (or the
    /// in-cluster service account) in `namespaces` (all when empty); with `pin_digests`, a
    /// digest a plan names is written into the values with its tag.
    pub(crate) async fn target(
        &self,
        namespaces: &[String],
        pin_digests: bool,
    ) -> Result<HelmTarget, CliError> {
        let mut builder = HelmTarget::builder(crate::kube::client().await?)
            .with_name("helm")
            .with_pin_digests(pin_digests);
        if !namespaces.is_empty() {
            builder = builder.with_namespaces(namespaces.iter().cloned());
        }
        let Some(path) = &self.helm_binary else {
            return Ok(builder.build().await?);
        };
        match builder.with_helm(HelmBinary::at(path)).build().await {
            Err(e @ keel_core::Error::NotFound { .. }) => Err(CliError::Input(format!(
                "invalid --helm-binary {:?}: {e}",
                path.display().to_string()
            ))),
            other => Ok(other?),
        }
    }
}

/// `keel check --helm` (with the `registry` feature).
#[cfg(feature = "registry")]
mod listing {
    use std::sync::Arc;

    use keel_helm::ReleaseImage;
    use serde::Serialize;

    use super::HelmArgs;
    use crate::check::{Verdict, dry_run, print_rows};
    use crate::decide::Output;
    use crate::error::CliError;
    use crate::progress::Progress;
    use crate::registry::RegistryArgs;

    /// One row of `keel check --helm`.
    #[derive(Debug, Serialize)]
    struct Row {
        /// `NAMESPACE/NAME`, as `keel release --helm --release` takes it.
        release: String,
        revision: u32,
        chart: String,
        path: String,
        image: String,
        policy: String,
        trigger: String,
        #[serde(flatten)]
        verdict: Verdict,
    }

    /// `keel check --helm`: every tracked image of every release in `namespaces` (all when
    /// empty), its policy and the update available now.
    pub(crate) async fn check(
        helm: &HelmArgs,
        namespaces: &[String],
        registry: &RegistryArgs,
        output: Output,
    ) -> Result<(), CliError> {
        let progress = Progress::new();
        progress.spin("reading the Helm releases of the cluster".to_owned());
        let target = Arc::new(helm.target(namespaces, false).await?);
        let releases = target.releases().await?;
        let found = dry_run(target.clone(), registry, &progress).await?;
        let rows: Vec<Row> = releases
            .iter()
            .map(|r: &ReleaseImage| Row {
                release: format!("{}/{}", r.namespace, r.release),
                revision: r.revision,
                chart: r.chart.clone(),
                path: r.path.clone(),
                image: r.image.clone(),
                policy: r.policy.clone(),
                trigger: r.trigger.clone(),
                verdict: found.verdict(&r.id),
            })
            .collect();
        for problem in target.problems() {
            eprintln!("keel: warning: {problem}");
        }
        print_rows(
            &rows,
            output,
            ["RELEASE", "PATH", "IMAGE", "POLICY", "TRIGGER", "UPDATE"],
            |r| {
                [
                    r.release.clone(),
                    r.path.clone(),
                    r.image.clone(),
                    r.policy.clone(),
                    r.trigger.clone(),
                    r.verdict.cell(),
                ]
            },
        )
    }
}

#[cfg(feature = "registry")]
pub(crate) use listing::check;

/// `keel release --helm`: the target over the namespace of `release` (`NS/NAME`) and the
/// plans that move each tracked image of that release which runs `new`'s repository to
/// `new`'s tag (and digest, when it names one, written into the values). `update_image` is
/// `new` as given, for errors.
pub(crate) async fn release(
    helm: &HelmArgs,
    release: &str,
    update_image: &str,
    new: &ImageRef,
) -> Result<(HelmTarget, Vec<UpdatePlan>), CliError> {
    let (namespace, name) = parse_release(release)?;
    let target = helm
        .target(&[namespace.to_owned()], new.digest().is_some())
        .await?;
    let images: Vec<keel_helm::ReleaseImage> = target
        .releases()
        .await?
        .into_iter()
        .filter(|r| r.namespace == namespace && r.release == name)
        .collect();
    if images.is_empty() {
        let why: Vec<String> = target
            .problems()
            .iter()
            .filter(|p| p.namespace == namespace && p.name == name)
            .map(ToString::to_string)
            .collect();
        let why = if why.is_empty() {
            "it needs a deployed revision whose values carry a `keel:` block with a policy"
                .to_owned()
        } else {
            format!("it is skipped: {}", why.join("; "))
        };
        return Err(CliError::Input(format!(
            "invalid --release {release:?}: no tracked Helm release {namespace}/{name} ({why})"
        )));
    }
    let mut matched = false;
    let mut plans = Vec::new();
    for image in &images {
        let Ok(current) = ImageRef::parse(&image.image) else {
            continue;
        };
        if current.name() != new.name() {
            continue;
        }
        matched = true;
        plans.extend(release_plan(target.name(), &image.id, current, new));
    }
    if !matched {
        let tracked: Vec<String> = images
            .iter()
            .map(|i| format!("{} = {}", i.path, i.image))
            .collect();
        return Err(CliError::Input(format!(
            "invalid --update-image {update_image:?}: Helm release {namespace}/{name} tracks no image \
             of {} (it tracks {})",
            new.name(),
            tracked.join(", ")
        )));
    }
    Ok((target, plans))
}

/// `NAMESPACE/NAME`.
fn parse_release(s: &str) -> Result<(&str, &str), CliError> {
    let bad = |why: &str| CliError::Input(format!("invalid --release {s:?}: {why}"));
    let Some((namespace, name)) = s.split_once('/') else {
        return Err(bad("expected NAMESPACE/NAME, e.g. prod/web"));
    };
    if name.contains('/') {
        return Err(bad("expected NAMESPACE/NAME, e.g. prod/web"));
    }
    if namespace.is_empty() || name.is_empty() {
        return Err(bad("the namespace and the name must not be empty"));
    }
    Ok((namespace, name))
}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn releases_parse_as_namespace_and_name() {
        assert_eq!(parse_release("prod/web").unwrap(), ("prod", "web"));
        for bad in ["web", "prod/web/image", "/web", "prod/", "/"] {
            let err = parse_release(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
