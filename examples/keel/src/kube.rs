//! The Kubernetes side of the CLI: the cluster target `--kube` commands work on, in the
//! scope the flags choose, and the workloads they name.

use clap::Args;
use keel_core::{ImageRef, Target, UpdatePlan};
use keel_k8s::KubeTarget;

use crate::error::CliError;

/// Which workloads to look at.
#[derive(Debug, Args)]
pub(crate) struct KubeArgs {
    /// Only this namespace (repeatable; default: all namespaces).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Vec<String>,

    /// Only workloads with these labels (`key=value,...`).
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    selector: Option<String>,
}

impl KubeArgs {
    /// A target over the cluster of the current kubeconfig (or the in-cluster service
    /// account), in the chosen scope.
    pub(crate) async fn target(&self) -> Result<KubeTarget, CliError> {
        let mut builder = KubeTarget::builder(client().await?).with_name("kubernetes");
        builder = if self.namespace.is_empty() {
            builder.all_namespaces()
        } else {
            builder.with_namespaces(self.namespace.iter().cloned())
        };
        if let Some(selector) = &self.selector {
            builder = builder.with_label_selector(selector);
        }
        Ok(builder.build().await?)
    }

    /// The namespaces chosen with `-n` (empty: all namespaces).
    #[cfg(all(feature = "helm", feature = "registry"))]
    pub(crate) fn namespaces(&self) -> &[String] {
        &self.namespace
    }
}

/// A client for the cluster of the current kubeconfig (or the in-cluster service account).
pub(crate) async fn client() -> Result<kube::Client, CliError> {
    kube::Client::try_default().await.map_err(|e| {
        CliError::Io(format!(
            "cannot reach a Kubernetes cluster (KUBECONFIG, ~/.kube/config or the in-cluster \
             service account): {e}"
        ))
    })
}

/// The plans of `keel release --kube`: the containers of `workload` (`NS/KIND/NAME`) that run
/// `new`'s repository, moved to `new`'s tag (and digest, when it names one).
pub(crate) async fn release_plans(
    target: &KubeTarget,
    workload: &str,
    new: &ImageRef,
) -> Result<Vec<UpdatePlan>, CliError> {
    let (namespace, kind, name) = parse_workload(workload)?;
    let mut found = false;
    let mut plans = Vec::new();
    for w in target.workloads().await? {
        let at = &w.workload;
        if at.namespace != namespace || at.kind != kind || at.name != name {
            continue;
        }
        found = true;
        let Ok(current) = ImageRef::parse(&at.image) else {
            continue;
        };
        if current.name() == new.name() {
            plans.extend(release_plan(target.name(), &w.id, current, new));
        }
    }
    if !found {
        return Err(CliError::Input(format!(
            "invalid --workload {workload:?}: no tracked {kind} {namespace}/{name} (it needs a \
             keel.sh/policy annotation or label)"
        )));
    }
    Ok(plans)
}

/// The plan that releases `new` to the tracked image `id` of `target`, which runs `current`
/// of the same repository: its repository as written, `new`'s tag (which the caller checked is
/// there) and digest; `None` when it runs that already.
pub(crate) fn release_plan(
    target: &str,
    id: &str,
    current: ImageRef,
    new: &ImageRef,
) -> Option<UpdatePlan> {
    let to = current.with_tag(new.tag().expect("a release names its tag").clone());
    let to = match new.digest() {
        Some(d) => to.with_digest(d.clone()),
        None => to,
    };
    (to != current).then(|| UpdatePlan {
        target: target.to_owned(),
        id: id.to_owned(),
        current,
        new: to,
    })
}

/// `NS/KIND/NAME`, the kind in any case (`deployment`, `StatefulSet`, ...).
fn parse_workload(s: &str) -> Result<(&str, String, &str), CliError> {
    let bad = |why: &str| CliError::Input(format!("invalid --workload {s:?}: {why}"));
    let mut parts = s.split('/');
    let (Some(ns), Some(kind), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(
            "expected NAMESPACE/KIND/NAME, e.g. prod/deployment/web",
        ));
    };
    if ns.is_empty() || name.is_empty() {
        return Err(bad("the namespace and the name must not be empty"));
    }
    let kind = kind.to_ascii_lowercase();
    let kind = match kind.as_str() {
        "deploy" | "deployments" => "deployment".to_owned(),
        "sts" | "statefulsets" => "statefulset".to_owned(),
        "ds" | "daemonsets" => "daemonset".to_owned(),
        "cj" | "cronjobs" => "cronjob".to_owned(),
        _ => kind,
    };
    if !["deployment", "statefulset", "daemonset", "cronjob"].contains(&kind.as_str()) {
        return Err(bad(
            "the kind must be deployment, statefulset, daemonset or cronjob",
        ));
    }
    Ok((ns, kind, name))
}

#[cfg(test)]
mod tests {
    use super::parse_workload;

    #[test]
    fn workloads_parse_with_kind_aliases() {
        let (ns, kind, name) = parse_workload("prod/Deployment/web").unwrap();
        assert_eq!((ns, kind.as_str(), name), ("prod", "deployment", "web"));
        assert_eq!(parse_workload("a/sts/b").unwrap().1, "statefulset");
        for bad in ["prod/web", "prod/pod/web", "/deployment/web", "a/b/c/d"] {
            let err = parse_workload(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
