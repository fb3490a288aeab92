//! `keel list-images`: the tags of each tracked image, newest first, with their creation
//! times, the running one and the ones its policy allows marked, as `fluxctl list-images`
//! showed them.
//!
//! Creation times come from the registry (each image's config), read for at most
//! `--max-metadata` tags per repository, the highest versions first, once per tag however
//! many references share the repository; the registry client paces the requests within its
//! rate budget.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Args;
use keel_core::policy::{Explanation, Reason};
use keel_core::target::TrackedImage;
use keel_core::{Pipeline, Registry, Tag};
use keel_registry::RegistryClient;
use serde::Serialize;

use crate::decide::{Output, PolicyArgs};
use crate::error::CliError;
use crate::progress::Progress;
use crate::registry::{RegistryArgs, parse_image};

/// Arguments of `keel list-images`.
#[derive(Debug, Args)]
pub(crate) struct ListImagesArgs {
    /// One image as it runs (e.g. `ghcr.io/acme/web:1.2.3`), with `--policy`, instead of
    /// the images of a repository or a cluster.
    #[arg(
        required_unless_present_any = ["kube", "repo"],
        conflicts_with_all = ["kube", "repo"]
    )]
    image: Option<String>,

    /// The tracked images of every workload of the cluster that carries `keel.sh/policy`.
    #[cfg(feature = "kube")]
    #[arg(long, conflicts_with = "repo")]
    kube: bool,

    #[cfg(feature = "kube")]
    #[command(flatten)]
    kube_scope: crate::kube::KubeArgs,

    /// The tracked images of a Git repository (`--repo URL|PATH`).
    #[cfg(feature = "git")]
    #[command(flatten)]
    repo: crate::gitops::RepoArgs,

    /// Tags shown per image, newest first (0: all). The running tag is always shown.
    #[arg(long, value_name = "N", default_value_t = 10)]
    limit: usize,

    /// Read the creation time of at most this many tags per repository (the highest
    /// versions first); the rest are shown without one.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_metadata: usize,

    #[command(flatten)]
    decide: PolicyArgs,

    #[command(flatten)]
    registry: RegistryArgs,
}

impl ListImagesArgs {
    fn kube(&self) -> bool {
        #[cfg(feature = "kube")]
        return self.kube;
        #[cfg(not(feature = "kube"))]
        false
    }

    fn repo(&self) -> bool {
        #[cfg(feature = "git")]
        return self.repo.is_set();
        #[cfg(not(feature = "git"))]
        false
    }
}

/// One tracked image of the listing.
#[derive(Debug, Serialize)]
struct Listing {
    /// Where the image is referenced: the workload and container, or the file, line and
    /// marker.
    reference: String,
    image: String,
    policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The registry listed fewer tags than it has (the listing budget cut it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    /// How many tags the repository has; `tags` holds the first `--limit` of them.
    tag_count: usize,
    tags: Vec<TagRow>,
}

/// One tag of a listing.
#[derive(Debug, Clone, Serialize)]
struct TagRow {
    tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<DateTime<Utc>>,
    /// The tag the image runs now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    running: bool,
    /// The policy would move to this tag: it passes the policy's rules and is newer than
    /// the running one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allowed: bool,
    /// The tag the policy chooses now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    chosen: bool,
}

pub(crate) async fn list_images(args: &ListImagesArgs) -> Result<(), CliError> {
    let progress = Progress::new();
    let (client, tracked) = if args.kube() || args.repo() {
        if args.decide.has_policy() {
            return Err(CliError::Input(
                "--policy applies to one IMAGE: the images of a repository or a cluster \
                 follow their own policies"
                    .into(),
            ));
        }
        (
            args.registry.client_for_any()?,
            discover(args, &progress).await?,
        )
    } else {
        let image = parse_image(args.image.as_deref().unwrap_or_default())?;
        let policy = args.decide.policy()?;
        let entry = Entry {
            reference: image.to_string(),
            policy: policy.to_string(),
            tracked: TrackedImage::new(image.to_string(), image.clone(), Arc::new(policy)),
        };
        (args.registry.client(&image)?, vec![entry])
    };
    let client = Arc::new(client);
    let pipeline = Pipeline::new(client.clone());
    let mut times = CreationTimes::new(client, args.max_metadata);
    let mut listings = Vec::with_capacity(tracked.len());
    for entry in &tracked {
        progress.spin(format!(
            "listing the tags of {}",
            entry.tracked.image.name()
        ));
        listings.push(list_one(&pipeline, &mut times, entry, args.limit, &progress).await);
    }
    progress.finish();
    if times.failed > 0 {
        eprintln!(
            "keel: warning: the creation time of {} tag(s) could not be read; they are shown \
             without one",
            times.failed
        );
    }
    print(&listings, args.decide.output)?;
    let failed = listings.iter().filter(|l| l.error.is_some()).count();
    if failed > 0 {
        return Err(CliError::Io(format!(
            "{failed} image(s) could not be listed"
        )));
    }
    Ok(())
}

/// One tracked image, with where it is referenced and its policy as written, for people.
struct Entry {
    tracked: TrackedImage,
    reference: String,
    policy: String,
}

/// The tracked images of the repository or cluster the flags name.
async fn discover(args: &ListImagesArgs, progress: &Progress) -> Result<Vec<Entry>, CliError> {
    #[cfg(feature = "kube")]
    if args.kube {
        use keel_core::target::Target as _;

        progress.spin("discovering the workloads of the cluster".to_owned());
        let target = args.kube_scope.target().await?;
        let mut labels: HashMap<String, (String, String)> = target
            .workloads()
            .await?
            .into_iter()
            .map(|w| {
                let label = format!("{} {}", w.workload.workload(), w.workload.container);
                (w.id, (label, w.policy))
            })
            .collect();
        for problem in target.problems() {
            eprintln!("keel: warning: {problem}");
        }
        let tracked = target.discover().await?;
        return Ok(tracked
            .into_iter()
            .map(|tracked| {
                let (reference, policy) = labels
                    .remove(&tracked.id)
                    .unwrap_or_else(|| (tracked.id.clone(), "-".to_owned()));
                Entry {
                    tracked,
                    reference,
                    policy,
                }
            })
            .collect());
    }
    #[cfg(feature = "git")]
    if args.repo.is_set() {
        use keel_core::target::Target as _;

        progress.spin("cloning and scanning the repository".to_owned());
        let target = args.repo.target()?;
        let mut policies: HashMap<String, String> = target
            .scan()
            .await?
            .references
            .into_iter()
            .filter_map(|r| Some((r.id(), r.policy?.to_string())))
            .collect();
        let tracked = target.discover().await?;
        return Ok(tracked
            .into_iter()
            .map(|tracked| Entry {
                reference: tracked.id.clone(),
                policy: policies
                    .remove(&tracked.id)
                    .unwrap_or_else(|| "-".to_owned()),
                tracked,
            })
            .collect());
    }
    let _ = (args, progress);
    Err(CliError::Input(
        "nothing to list: give an IMAGE, --kube or --repo".into(),
    ))
}

/// Lists one tracked image; a registry failure becomes the listing's error, so that one
/// unreachable repository does not hide the others.
async fn list_one(
    pipeline: &Pipeline,
    times: &mut CreationTimes,
    entry: &Entry,
    limit: usize,
    progress: &Progress,
) -> Listing {
    let image = &entry.tracked;
    let mut listing = Listing {
        reference: entry.reference.clone(),
        image: image.image.to_string(),
        policy: entry.policy.clone(),
        update: None,
        error: None,
        truncated: false,
        tag_count: 0,
        tags: Vec::new(),
    };
    let check = match pipeline.check(image, true).await {
        Ok(check) => check,
        Err(e) => {
            listing.error = Some(e.to_string());
            return listing;
        }
    };
    listing.truncated = check.truncated();
    listing.update = check.decision.update.as_ref().map(|u| u.tag.clone());
    let running = image.image.tag().map(Tag::as_str);
    let allowed = allowed_tags(check.decision.explanation.as_ref());
    let mut tags: Vec<&str> = check.tags().tags.iter().map(String::as_str).collect();
    listing.tag_count = tags.len();
    tags.sort_by(|a, b| natural_cmp(b, a));
    times.read(image, &tags, check.created(), progress).await;
    let mut rows: Vec<TagRow> = tags
        .iter()
        .map(|&tag| TagRow {
            tag: tag.to_owned(),
            created: times.get(image, tag),
            running: Some(tag) == running,
            allowed: allowed.contains(tag),
            chosen: listing.update.as_deref() == Some(tag),
        })
        .collect();
    // Newest first; tags whose time is unknown after them, highest version first.
    rows.sort_by(|a, b| match (a.created, b.created) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| natural_cmp(&b.tag, &a.tag)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => natural_cmp(&b.tag, &a.tag),
    });
    if limit > 0 && rows.len() > limit {
        let running_row = rows[limit..].iter().find(|r| r.running).cloned();
        rows.truncate(limit);
        rows.extend(running_row);
    }
    listing.tags = rows;
    listing
}

/// The tags the policy would move to: the chosen one and those that passed every rule but
/// lost to it. A tag rejected by a rule of the policy, or not newer than the running one,
/// is not.
fn allowed_tags(explanation: Option<&Explanation>) -> HashSet<String> {
    let Some(explanation) = explanation else {
        return HashSet::new();
    };
    explanation
        .rejected
        .iter()
        .filter(|r| matches!(r.reason, Reason::Outranked { .. } | Reason::LostTie { .. }))
        .map(|r| r.tag.clone())
        .chain(explanation.chosen.clone())
        .collect()
}

/// Creation times by repository and tag, read once each, within a per-repository budget.
struct CreationTimes {
    client: Arc<RegistryClient>,
    budget: usize,
    known: HashMap<(String, String), Option<DateTime<Utc>>>,
    /// Reads per repository so far, against the budget.
    reads: HashMap<String, usize>,
    failed: usize,
}

impl CreationTimes {
    fn new(client: Arc<RegistryClient>, budget: usize) -> Self {
        CreationTimes {
            client,
            budget,
            known: HashMap::new(),
            reads: HashMap::new(),
            failed: 0,
        }
    }

    /// Reads the creation times of the first of `tags` (in the order given) not read yet,
    /// until the repository's budget is spent; `already` holds times the decision read.
    async fn read(
        &mut self,
        image: &TrackedImage,
        tags: &[&str],
        already: &HashMap<String, DateTime<Utc>>,
        progress: &Progress,
    ) {
        let repository = image.image.name().to_owned();
        for (tag, created) in already {
            self.known
                .insert((repository.clone(), tag.clone()), Some(*created));
        }
        let spent = self.reads.get(&repository).copied().unwrap_or(0);
        let wanted: Vec<&str> = tags
            .iter()
            .copied()
            .filter(|tag| {
                !self
                    .known
                    .contains_key(&(repository.clone(), (*tag).to_owned()))
            })
            .take(self.budget.saturating_sub(spent))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let bar = progress.bar(
            wanted.len() as u64,
            format!("reading creation times of {repository}"),
        );
        for tag in &wanted {
            let created = match Tag::new(*tag) {
                Ok(t) => match self.client.metadata(&image.image, &t).await {
                    Ok(metadata) => metadata.created,
                    Err(_) => {
                        self.failed += 1;
                        None
                    }
                },
                Err(_) => None,
            };
            self.known
                .insert((repository.clone(), (*tag).to_owned()), created);
            bar.inc(1);
        }
        *self.reads.entry(repository).or_insert(0) += wanted.len();
    }

    fn get(&self, image: &TrackedImage, tag: &str) -> Option<DateTime<Utc>> {
        self.known
            .get(&(image.image.name().to_owned(), tag.to_owned()))
            .copied()
            .flatten()
    }
}

/// Orders tags as people read versions: runs of digits by their value, the rest byte-wise
/// (`1.10.0` after `1.9.0`, `build-100` after `build-99`).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros.min(digits.len().saturating_sub(1))..]
}

fn print(listings: &[Listing], output: Output) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: io::Error| CliError::Io(format!("cannot write the listing: {e}"));
    if output == Output::Json {
        serde_json::to_writer_pretty(&mut out, listings)
            .map_err(|e| CliError::Io(format!("cannot write the listing: {e}")))?;
        writeln!(out).map_err(io_err)?;
        return out.flush().map_err(io_err);
    }
    for (i, listing) in listings.iter().enumerate() {
        if i > 0 {
            writeln!(out).map_err(io_err)?;
        }
        writeln!(
            out,
            "{}  {}  policy {}",
            listing.reference, listing.image, listing.policy
        )
        .map_err(io_err)?;
        if let Some(error) = &listing.error {
            writeln!(out, "    error: {error}").map_err(io_err)?;
            continue;
        }
        let width = listing.tags.iter().map(|t| t.tag.len()).max().unwrap_or(0);
        for row in &listing.tags {
            let mark = match (row.running, row.allowed) {
                (true, _) => "->",
                (false, true) => " *",
                (false, false) => "  ",
            };
            let created = row
                .created
                .map(|c| c.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "-".to_owned());
            let note = if row.chosen { "  (update)" } else { "" };
            writeln!(out, "  {mark} {:<width$}  {created}{note}", row.tag).map_err(io_err)?;
        }
        let hidden = listing.tag_count.saturating_sub(listing.tags.len());
        if hidden > 0 {
            writeln!(out, "     ... {hidden} more (--limit)").map_err(io_err)?;
        }
        if listing.truncated {
            writeln!(
                out,
                "     the registry's list was cut at the listing budget: no update is chosen \
                 from it (raise --max-pages or --max-tags)"
            )
            .map_err(io_err)?;
        }
    }
    out.flush().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_reads_numbers_by_value() {
        let mut tags = vec![
            "1.10.0",
            "1.9.0",
            "build-100",
            "build-99",
            "1.09.1",
            "v2",
            "1.9.0-rc.1",
        ];
        tags.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            tags,
            [
                "1.9.0",
                "1.9.0-rc.1",
                "1.09.1",
                "1.10.0",
                "build-99",
                "build-100",
                "v2"
            ]
        );
        assert_eq!(natural_cmp("007", "7"), Ordering::Equal);
        assert_eq!(natural_cmp("0", "00"), Ordering::Equal);
    }
}
