//! `keel check --kube` and `keel release --kube`: the Kubernetes side of the CLI.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use clap::Args;
use keel_core::{ImageRef, Pipeline, Target, UpdatePlan};
use keel_k8s::{KubeTarget, WorkloadImage};
use serde::Serialize;

use crate::decide::Output;
use crate::error::CliError;
use crate::registry::RegistryArgs;

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
    async fn target(&self) -> Result<KubeTarget, CliError> {
        let client = kube::Client::try_default().await.map_err(|e| {
            CliError::Io(format!(
                "cannot reach a Kubernetes cluster (KUBECONFIG, ~/.kube/config or the in-cluster \
                 service account): {e}"
            ))
        })?;
        let mut builder = KubeTarget::builder(client).with_name("kubernetes");
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
}

/// One row of `keel check --kube`.
#[derive(Debug, Serialize)]
struct Row {
    workload: String,
    container: String,
    image: String,
    policy: String,
    trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `keel check --kube`: every tracked container, its policy and the update available now.
pub(crate) async fn check(
    kube: &KubeArgs,
    registry: &RegistryArgs,
    output: Output,
) -> Result<(), CliError> {
    let target = Arc::new(kube.target().await?);
    let workloads = target.workloads().await?;
    let client = registry.client_for_any()?;
    let report = Pipeline::new(Arc::new(client))
        .with_target(target.clone())
        .with_dry_run(true)
        .run_once()
        .await;
    let updates: HashMap<&str, String> = report
        .planned
        .iter()
        .map(|p| (p.plan.id.as_str(), p.plan.new.to_string()))
        .collect();
    let mut errors: HashMap<&str, String> = report
        .failures
        .iter()
        .filter_map(|f| Some((f.id.as_deref()?, f.error.to_string())))
        .collect();
    for listing in &report.truncated {
        for (_, id) in &listing.images {
            errors.insert(id.as_str(), listing.to_string());
        }
    }
    if let Some(failure) = report.failures.iter().find(|f| f.id.is_none()) {
        return Err(CliError::Io(format!(
            "{}: {}",
            failure.target, failure.error
        )));
    }
    let rows: Vec<Row> = workloads
        .iter()
        .map(|w: &WorkloadImage| Row {
            workload: format!("{}/{}/{}", w.namespace, w.kind, w.name),
            container: if w.init {
                format!("{} (init)", w.container)
            } else {
                w.container.clone()
            },
            image: w.image.clone(),
            policy: w.policy.clone(),
            trigger: w.trigger.clone(),
            update: updates.get(w.id.as_str()).cloned(),
            error: errors.get(w.id.as_str()).cloned(),
        })
        .collect();
    for problem in target.problems() {
        eprintln!("keel: warning: {problem}");
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: io::Error| CliError::Io(format!("cannot write the table: {e}"));
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)
                .map_err(|e| CliError::Io(format!("cannot write the table: {e}")))?;
            writeln!(out).map_err(io_err)?;
        }
        Output::Text => {
            let header = ["WORKLOAD", "CONTAINER", "IMAGE", "POLICY", "UPDATE"];
            let cells: Vec<[String; 5]> = rows
                .iter()
                .map(|r| {
                    let update = match (&r.update, &r.error) {
                        (_, Some(e)) => format!("error: {e}"),
                        (Some(u), None) => u.clone(),
                        (None, None) => "-".to_owned(),
                    };
                    [
                        r.workload.clone(),
                        r.container.clone(),
                        r.image.clone(),
                        r.policy.clone(),
                        update,
                    ]
                })
                .collect();
            let mut widths = header.map(str::len);
            for row in &cells {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; 5]| {
                let mut s = String::new();
                for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                    if i + 1 == cells.len() {
                        s.push_str(cell);
                    } else {
                        s.push_str(&format!("{cell:<w$}  "));
                    }
                }
                s
            };
            writeln!(out, "{}", line(header)).map_err(io_err)?;
            for row in &cells {
                writeln!(out, "{}", line(row.each_ref().map(String::as_str))).map_err(io_err)?;
            }
        }
    }
    out.flush().map_err(io_err)
}

/// `keel release --kube --workload NS/KIND/NAME --update-image IMAGE:TAG`: moves the
/// workload's containers that run the image's repository to the new tag.
pub(crate) async fn release(
    kube: &KubeArgs,
    workload: &str,
    new: &ImageRef,
    dry_run: bool,
) -> Result<(), CliError> {
    let (namespace, kind, name) = parse_workload(workload)?;
    let target = kube.target().await?;
    let mut found = false;
    let mut plans = Vec::new();
    for w in target.workloads().await? {
        if w.namespace != namespace || w.kind != kind || w.name != name {
            continue;
        }
        found = true;
        let Ok(current) = ImageRef::parse(&w.image) else {
            continue;
        };
        if current.name() != new.name() {
            continue;
        }
        let to = crate::gitops::released(&current, new);
        if to != current {
            plans.push(UpdatePlan {
                target: target.name().to_owned(),
                id: w.id.clone(),
                current,
                new: to,
            });
        }
    }
    if !found {
        return Err(CliError::Input(format!(
            "invalid --workload {workload:?}: no tracked {kind} {namespace}/{name} (it needs a \
             keel.sh/policy annotation or label)"
        )));
    }
    if plans.is_empty() {
        eprintln!("keel: nothing to change: no container of {workload} needs {new}");
        return Ok(());
    }
    crate::gitops::apply_release(&target, &plans, dry_run).await
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
