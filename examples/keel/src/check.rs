//! `keel check`: the update a policy picks for one image, or for every tracked workload or
//! Helm release of the cluster, decided by the same [`Pipeline`] as a real pass.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use clap::Args;
use keel_core::Pipeline;
use keel_core::target::{Target, TrackedImage};
use keel_k8s::WorkloadImage;
use serde::Serialize;

use crate::decide::{Output, PolicyArgs};
use crate::error::CliError;
use crate::helm::HelmArgs;
use crate::kube::KubeArgs;
use crate::registry::{RegistryArgs, parse_image};

/// Arguments of `keel check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The image as it runs, e.g. `ghcr.io/acme/web:1.2.3`.
    #[arg(
        required_unless_present_any = ["kube", "helm"],
        conflicts_with_all = ["kube", "helm"]
    )]
    image: Option<String>,

    /// Check every workload of the cluster that carries `keel.sh/policy` instead: a table of
    /// workload, container, image, policy and the update available.
    #[arg(long)]
    kube: bool,

    /// Check every Helm release of the cluster whose values carry a `keel:` block with a
    /// policy instead: a table of release, value path, image, policy, trigger and the update
    /// available.
    #[arg(long, conflicts_with_all = ["kube", "selector"])]
    helm: bool,

    #[command(flatten)]
    kube_scope: KubeArgs,

    #[command(flatten)]
    helm_options: HelmArgs,

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
    if args.helm {
        if args.decide.has_policy() {
            return Err(CliError::Input(
                "--policy does not apply with --helm: each release's keel.policy decides".into(),
            ));
        }
        return crate::helm::check(
            &args.helm_options,
            args.kube_scope.namespaces(),
            &args.registry,
            args.decide.output,
        )
        .await;
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
    let found = dry_run(target.clone(), registry).await?;
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
            update: found.update(&w.id),
            error: found.error(&w.id),
        })
        .collect();
    for problem in target.problems() {
        eprintln!("keel: warning: {problem}");
    }
    print_rows(
        &rows,
        output,
        ["WORKLOAD", "CONTAINER", "IMAGE", "POLICY", "UPDATE"],
        |r| {
            [
                r.workload.clone(),
                r.container.clone(),
                r.image.clone(),
                r.policy.clone(),
                update_cell(&r.update, &r.error),
            ]
        },
    )
}

/// What a dry-run pass over a target found, by tracked id: the update available now, or why
/// none could be chosen.
pub(crate) struct Findings {
    updates: HashMap<String, String>,
    errors: HashMap<String, String>,
}

impl Findings {
    /// The image `id` would move to now.
    pub(crate) fn update(&self, id: &str) -> Option<String> {
        self.updates.get(id).cloned()
    }

    /// Why no update could be chosen for `id`.
    pub(crate) fn error(&self, id: &str) -> Option<String> {
        self.errors.get(id).cloned()
    }
}

/// Runs the pipeline over `target` once without applying anything; fails when the target
/// itself failed (rather than one of its images).
pub(crate) async fn dry_run(
    target: Arc<dyn Target>,
    registry: &RegistryArgs,
) -> Result<Findings, CliError> {
    let client = registry.client_for_any()?;
    let report = Pipeline::new(Arc::new(client))
        .with_target(target)
        .with_dry_run(true)
        .run_once()
        .await;
    if let Some(failure) = report.failures.iter().find(|f| f.id.is_none()) {
        return Err(CliError::Io(format!(
            "{}: {}",
            failure.target, failure.error
        )));
    }
    let updates = report
        .planned
        .iter()
        .map(|p| (p.plan.id.clone(), p.plan.new.to_string()))
        .collect();
    let mut errors: HashMap<String, String> = report
        .failures
        .iter()
        .filter_map(|f| Some((f.id.clone()?, f.error.to_string())))
        .collect();
    for listing in &report.truncated {
        for (_, id) in &listing.images {
            errors.insert(id.clone(), listing.to_string());
        }
    }
    Ok(Findings { updates, errors })
}

/// The UPDATE cell of a table: the error, else the update, else `-`.
pub(crate) fn update_cell(update: &Option<String>, error: &Option<String>) -> String {
    match (update, error) {
        (_, Some(e)) => format!("error: {e}"),
        (Some(u), None) => u.clone(),
        (None, None) => "-".to_owned(),
    }
}

/// Prints `rows` as JSON, or as a table of `header` and the `cells` of each row, the columns
/// aligned.
pub(crate) fn print_rows<R: Serialize, const N: usize>(
    rows: &[R],
    output: Output,
    header: [&str; N],
    cells: impl Fn(&R) -> [String; N],
) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: io::Error| CliError::Io(format!("cannot write the table: {e}"));
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, rows)
                .map_err(|e| CliError::Io(format!("cannot write the table: {e}")))?;
            writeln!(out).map_err(io_err)?;
        }
        Output::Text => {
            let cells: Vec<[String; N]> = rows.iter().map(cells).collect();
            let mut widths = header.map(str::len);
            for row in &cells {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; N]| {
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
