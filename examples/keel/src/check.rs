//! `keel check`: the update a policy picks for one image, or for every tracked workload or
//! Helm release of the cluster, decided by the same [`Pipeline`] as a real pass.

#[cfg(any(feature = "kube", feature = "git"))]
use std::collections::HashMap;
#[cfg(any(feature = "kube", feature = "git"))]
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use clap::Args;
use keel_core::Pipeline;
#[cfg(any(feature = "kube", feature = "git"))]
use keel_core::target::Target;
use keel_core::target::TrackedImage;
#[cfg(any(feature = "kube", feature = "git"))]
use serde::Serialize;

#[cfg(any(feature = "kube", feature = "git"))]
use crate::decide::Output;
use crate::decide::PolicyArgs;
use crate::error::{CliError, one_of};
#[cfg(any(feature = "kube", feature = "git"))]
use crate::progress::Progress;
use crate::registry::{RegistryArgs, parse_image};

/// Arguments of `keel check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The image as it runs, e.g. `ghcr.io/acme/web:1.2.3` (or, instead, `--kube`, `--helm`
    /// or `--repo`).
    image: Option<String>,

    /// Check every workload of the cluster that carries `keel.sh/policy` instead: a table of
    /// workload, container, image, policy and the update available.
    #[cfg(feature = "kube")]
    #[arg(long, conflicts_with = "image")]
    kube: bool,

    /// Check every Helm release of the cluster whose values carry a `keel:` block with a
    /// policy instead: a table of release, value path, image, policy, trigger and the update
    /// available.
    #[cfg(feature = "helm")]
    #[arg(long, conflicts_with_all = ["image", "kube", "selector"])]
    helm: bool,

    /// Check every tracked image reference of a Git repository instead (`--repo URL|PATH`): a
    /// table of reference (file, line, container or marker), image, policy and the update
    /// available.
    #[cfg(feature = "git")]
    #[command(flatten)]
    repo: crate::gitops::RepoArgs,

    #[cfg(feature = "kube")]
    #[command(flatten)]
    kube_scope: crate::kube::KubeArgs,

    #[cfg(feature = "helm")]
    #[command(flatten)]
    helm_options: crate::helm::HelmArgs,

    #[command(flatten)]
    decide: PolicyArgs,

    #[command(flatten)]
    registry: RegistryArgs,
}

/// What `keel check` looks at.
enum Subject<'a> {
    Image(&'a str),
    #[cfg(feature = "kube")]
    Kube,
    #[cfg(feature = "helm")]
    Helm,
    #[cfg(feature = "git")]
    Repo,
}

impl CheckArgs {
    /// The one subject the arguments name.
    fn subject(&self) -> Result<Subject<'_>, CliError> {
        let chosen = [
            self.image
                .as_deref()
                .map(|image| ("IMAGE", Subject::Image(image))),
            #[cfg(feature = "kube")]
            self.kube.then_some(("--kube", Subject::Kube)),
            #[cfg(feature = "helm")]
            self.helm.then_some(("--helm", Subject::Helm)),
            #[cfg(feature = "git")]
            self.repo.is_set().then_some(("--repo", Subject::Repo)),
        ];
        match one_of(chosen, "check different things")? {
            Some(subject) => Ok(subject),
            None => Err(CliError::Input(format!(
                "nothing to check: give an IMAGE{}",
                [
                    (cfg!(feature = "kube"), ", --kube"),
                    (cfg!(feature = "helm"), ", --helm"),
                    (cfg!(feature = "git"), ", --repo URL"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect::<String>()
            ))),
        }
    }

    #[cfg(any(feature = "kube", feature = "git"))]
    /// Fails when `--policy` is given for targets whose own settings decide.
    fn own_policies(&self, flag: &str, whose: &str) -> Result<(), CliError> {
        if self.decide.has_policy() {
            return Err(CliError::Input(format!(
                "--policy does not apply with {flag}: {whose} decides"
            )));
        }
        Ok(())
    }
}

pub(crate) async fn check(args: &CheckArgs) -> Result<(), CliError> {
    // Only IMAGE when the binary has no other backend.
    #[allow(clippy::infallible_destructuring_match)]
    let image = match args.subject()? {
        Subject::Image(image) => image,
        #[cfg(feature = "kube")]
        Subject::Kube => {
            args.own_policies("--kube", "each workload's keel.sh/policy")?;
            return check_kube(&args.kube_scope, &args.registry, args.decide.output).await;
        }
        #[cfg(feature = "helm")]
        Subject::Helm => {
            args.own_policies("--helm", "each release's keel.policy")?;
            let namespaces = args.kube_scope.namespaces();
            let output = args.decide.output;
            return crate::helm::check(&args.helm_options, namespaces, &args.registry, output)
                .await;
        }
        #[cfg(feature = "git")]
        Subject::Repo => {
            args.own_policies("--repo", "each reference's policy")?;
            return check_repo(&args.repo, &args.registry, args.decide.output).await;
        }
    };
    let image = parse_image(image)?;
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
#[cfg(feature = "kube")]
#[derive(Debug, Serialize)]
struct Row {
    workload: String,
    container: String,
    image: String,
    policy: String,
    trigger: String,
    #[serde(flatten)]
    verdict: Verdict,
    /// On OpenShift, the ImageStreamTag (`namespace/stream:tag`) that drives this container,
    /// and through what; its policy, update and error are the tag's.
    #[serde(skip_serializing_if = "Option::is_none")]
    driven_by: Option<DrivenBy>,
}

/// How an OpenShift ImageStream tag drives a container.
#[cfg(feature = "kube")]
#[derive(Debug, Serialize)]
struct DrivenBy {
    image_stream_tag: String,
    /// `ImageChange trigger` (a DeploymentConfig's) or `image.openshift.io/triggers`.
    via: String,
    /// The external image the tag follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

/// `keel check --kube`: every tracked container, its policy and the update available now.
#[cfg(feature = "kube")]
async fn check_kube(
    kube: &crate::kube::KubeArgs,
    registry: &RegistryArgs,
    output: Output,
) -> Result<(), CliError> {
    let progress = Progress::new();
    progress.spin("discovering the workloads of the cluster".to_owned());
    let target = Arc::new(kube.target().await?);
    let workloads = target.workloads().await?;
    let found = dry_run(target.clone(), registry, &progress).await?;
    let rows: Vec<Row> = workloads
        .iter()
        .map(|w: &keel_k8s::WorkloadImage| Row {
            workload: w.workload.workload(),
            container: w.workload.container_label(),
            image: w.workload.image.clone(),
            policy: w.policy.clone(),
            trigger: w.trigger.clone(),
            verdict: found.verdict(&w.id),
            driven_by: None,
        })
        .collect();
    // OpenShift: the containers ImageStream tags drive, each with its tag's policy and update,
    // so that the whole chain shows.
    let driven: Vec<Row> = target
        .image_triggers()
        .await?
        .into_iter()
        .map(|t| {
            let tag = t
                .tracked_id
                .as_deref()
                .and_then(|id| workloads.iter().find(|w| w.id == id));
            let id = t.tracked_id.as_deref().unwrap_or_default();
            Row {
                workload: t.workload.workload(),
                container: t.workload.container_label(),
                image: t.workload.image,
                policy: tag.map_or_else(|| "-".to_owned(), |w| w.policy.clone()),
                trigger: tag.map_or_else(|| "-".to_owned(), |w| w.trigger.clone()),
                verdict: found.verdict(id),
                driven_by: Some(DrivenBy {
                    image_stream_tag: t.image_stream_tag,
                    via: t.via,
                    source: t.source,
                }),
            }
        })
        .collect();
    for problem in target.problems() {
        eprintln!("keel: warning: {problem}");
    }
    if output == Output::Json {
        let all: Vec<&Row> = rows.iter().chain(&driven).collect();
        return print_rows(&all, output, [], |_| []);
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
                r.verdict.cell(),
            ]
        },
    )?;
    if driven.is_empty() {
        return Ok(());
    }
    println!("\nDriven by ImageStream tags (updated through the tag, never patched directly):");
    print_rows(
        &driven,
        output,
        [
            "WORKLOAD",
            "CONTAINER",
            "IMAGESTREAMTAG",
            "VIA",
            "FOLLOWS",
            "UPDATE",
        ],
        |r| {
            let by = r.driven_by.as_ref();
            [
                r.workload.clone(),
                r.container.clone(),
                by.map(|d| d.image_stream_tag.clone()).unwrap_or_default(),
                by.map(|d| d.via.clone()).unwrap_or_default(),
                by.and_then(|d| d.source.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                r.verdict.cell(),
            ]
        },
    )
}

/// One row of `keel check --repo`.
#[cfg(feature = "git")]
#[derive(Debug, Serialize)]
struct RepoRow {
    reference: String,
    image: String,
    policy: String,
    #[serde(flatten)]
    verdict: Verdict,
}

/// `keel check --repo`: every marked reference of the repository, its policy and the update
/// available now. A marked reference without a policy (a Flux marker the configuration does
/// not name) is listed as not tracked; Keel's `none` is left out, as in the cluster.
#[cfg(feature = "git")]
async fn check_repo(
    repo: &crate::gitops::RepoArgs,
    registry: &RegistryArgs,
    output: Output,
) -> Result<(), CliError> {
    let progress = Progress::new();
    progress.spin("cloning and scanning the repository".to_owned());
    let target = Arc::new(repo.target()?);
    let scan = target.scan().await?;
    let found = dry_run(target.clone(), registry, &progress).await?;
    use keel_core::PolicySpec;
    use keel_git::manifest::{Reference, ReferenceKind};

    let mut references: Vec<Reference> = scan
        .references
        .into_iter()
        .filter(|r| {
            !matches!(r.kind, ReferenceKind::Unmarked { .. })
                && !matches!(r.policy, Some(PolicySpec::Never))
        })
        .collect();
    references.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let rows: Vec<RepoRow> = references
        .iter()
        .map(|r| {
            let id = r.id();
            let mut verdict = found.verdict(&id);
            let policy = match &r.policy {
                Some(policy) => policy.to_string(),
                None => {
                    verdict.error = Some("not tracked: no policy".to_owned());
                    "-".to_owned()
                }
            };
            RepoRow {
                reference: id,
                image: r.image.to_string(),
                policy,
                verdict,
            }
        })
        .collect();
    for warning in &scan.warnings {
        eprintln!("keel: warning: {warning}");
    }
    print_rows(
        &rows,
        output,
        ["REFERENCE", "IMAGE", "POLICY", "UPDATE"],
        |r| {
            [
                r.reference.clone(),
                r.image.clone(),
                r.policy.clone(),
                r.verdict.cell(),
            ]
        },
    )
}

#[cfg(any(feature = "kube", feature = "git"))]
/// What a dry-run pass over a target found, by tracked id: the update available now, or why
/// none could be chosen.
pub(crate) struct Findings {
    updates: HashMap<String, String>,
    errors: HashMap<String, String>,
}

#[cfg(any(feature = "kube", feature = "git"))]
impl Findings {
    /// The update `id` would move to now, or why none could be chosen.
    pub(crate) fn verdict(&self, id: &str) -> Verdict {
        Verdict {
            update: self.updates.get(id).cloned(),
            error: self.errors.get(id).cloned(),
        }
    }
}

#[cfg(any(feature = "kube", feature = "git"))]
/// What a check found for one tracked image: the update it would move to now, or why none
/// could be chosen (in JSON, `update` and `error` beside the image's other fields).
#[derive(Debug, Serialize)]
pub(crate) struct Verdict {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[cfg(any(feature = "kube", feature = "git"))]
impl Verdict {
    /// The UPDATE cell of a table: the error, else the update, else `-`.
    pub(crate) fn cell(&self) -> String {
        match (&self.update, &self.error) {
            (_, Some(e)) => format!("error: {e}"),
            (Some(u), None) => u.clone(),
            (None, None) => "-".to_owned(),
        }
    }
}

#[cfg(any(feature = "kube", feature = "git"))]
/// Runs the pipeline over `target` once without applying anything, saying so on `progress`
/// and clearing it once done, before the result is printed; fails when the target itself
/// failed (rather than one of its images).
pub(crate) async fn dry_run(
    target: Arc<dyn Target>,
    registry: &RegistryArgs,
    progress: &Progress,
) -> Result<Findings, CliError> {
    progress.spin("checking the registries".to_owned());
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
    progress.finish();
    Ok(Findings { updates, errors })
}

#[cfg(any(feature = "kube", feature = "git"))]
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
