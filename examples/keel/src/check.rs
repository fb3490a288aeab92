//! `keel check`: the update a policy picks for one image, or for every tracked workload of
//! the cluster, decided by the same [`Pipeline`] as a real pass.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use clap::Args;
use keel_core::Pipeline;
use keel_core::target::TrackedImage;
use keel_k8s::WorkloadImage;
use serde::Serialize;

use crate::decide::{Output, PolicyArgs};
use crate::error::CliError;
use crate::kube::KubeArgs;
use crate::registry::{RegistryArgs, parse_image};

/// Arguments of `keel check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The image as it runs, e.g. `ghcr.io/acme/web:1.2.3`.
    #[arg(required_unless_present = "kube", conflicts_with = "kube")]
    image: Option<String>,

    /// Check every workload of the cluster that carries `keel.sh/policy` instead: a table of
    /// workload, container, image, policy and the update available.
    #[arg(long)]
    kube: bool,

    #[command(flatten)]
    kube_scope: KubeArgs,

    #[command(flatten)]
    decide: PolicyArgs,

    #[command(flatten)]
    registry: RegistryArgs,
}

pub(crate) async fn check(args: &CheckArgs) -> Result<(), CliError> {
    if args.kube {
        if args.decide.has_policy() {
            return Err(CliError::Input(
                "--policy does not apply with --kube: each workload's keel.sh/policy decides"
                    .into(),
            ));
        }
        return check_kube(&args.kube_scope, &args.registry, args.decide.output).await;
    }
    let image = parse_image(args.image.as_deref().unwrap_or_default())?;
    let policy = Arc::new(args.decide.policy()?);
    let client = args.registry.client(&image)?;
    let tracked = TrackedImage::new("check", image.clone(), policy.clone());
    let check = Pipeline::new(Arc::new(client))
        .check(&tracked, args.decide.explain)
        .await?;
    if check.truncated() {
        // Registries list tags lexically: the newest are the ones a budget cuts.
        return Err(CliError::Io(format!(
            "no update is chosen from a partial list: the tag list of {} stopped at the \
             listing budget after {} tags; raise --max-pages or --max-tags",
            image.name(),
            check.tags().tags.len()
        )));
    }
    // One unreadable image does not fail the check: it is left out, saying why.
    for (tag, reason) in check.skipped_tags() {
        eprintln!("keel: warning: {tag}: {reason}");
    }
    args.decide.print(
        &policy,
        Some(&image.to_string()),
        image.tag().map(|t| t.as_str()),
        &check.candidates(),
        &check.decision,
    )
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
async fn check_kube(
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
