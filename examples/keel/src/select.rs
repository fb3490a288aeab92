//! `keel select`.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;
use keel_core::Digest;
use keel_core::policy::{Candidate, Current, Policy, SelectInput};
use keel_core::reference::is_valid_tag;

use crate::decide::PolicyArgs;
use crate::error::CliError;

/// Arguments of `keel select`.
#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    #[command(flatten)]
    decide: PolicyArgs,

    /// The tag the image runs now; without it there is nothing to compare against, so
    /// `major`, `minor`, `patch` and `docker` select nothing.
    #[arg(long, value_name = "TAG")]
    current: Option<String>,

    /// The digest the image runs now (for `digest` and `force --match-tag`).
    #[arg(long, value_name = "DIGEST")]
    current_digest: Option<String>,

    /// When the running image was created, RFC 3339 (for `newest-build`).
    #[arg(long, value_name = "TIME")]
    current_created: Option<String>,

    /// Candidate tags, one per line (`-` for stdin). A line may add the tag's digest
    /// (`sha256:...`) and creation time (RFC 3339) after the tag, separated by spaces.
    #[arg(long, value_name = "FILE", default_value = "-")]
    tags_file: PathBuf,
}

pub(crate) fn run(args: &SelectArgs) -> Result<(), CliError> {
    let policy = args.decide.policy()?;
    if let Some(tag) = &args.current
        && !is_valid_tag(tag)
    {
        return Err(CliError::Input(format!(
            "invalid --current {tag:?}: a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        )));
    }
    let current_digest = args
        .current_digest
        .as_deref()
        .map(|d| d.parse::<Digest>())
        .transpose()?;
    let current_created = args
        .current_created
        .as_deref()
        .map(|t| {
            parse_time(t)
                .map_err(|e| CliError::Input(format!("invalid --current-created {t:?}: {e}")))
        })
        .transpose()?;

    let text = read_tags(&args.tags_file)?;
    let source = if args.tags_file.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        args.tags_file.display().to_string()
    };
    // Digests are rare in tag lists: keep them aside and point the candidates at them once
    // parsing is done, so that a million tags cost one vector of candidates.
    let mut digests: Vec<(usize, Digest)> = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut skipped: Option<(usize, String)> = None;
    let mut skipped_count = 0;
    for (n, raw) in text.lines().enumerate() {
        match parse_line(raw) {
            Ok(None) => {}
            Ok(Some((candidate, digest))) => {
                if let Some(d) = digest {
                    digests.push((candidates.len(), d));
                }
                candidates.push(candidate);
            }
            Err(reason) => {
                skipped_count += 1;
                skipped.get_or_insert((n + 1, reason));
            }
        }
    }
    for (i, digest) in &digests {
        candidates[*i].digest = Some(digest);
    }
    if let Some((line, reason)) = skipped {
        // One odd line in a long list must not cost the decision: skip it, loudly.
        eprintln!(
            "keel: warning: skipped {skipped_count} line(s) of {source}; the first, line {line}: {reason}"
        );
    }

    let current = Current {
        tag: args.current.as_deref(),
        digest: current_digest.as_ref(),
        created: current_created,
    };
    let mut input = SelectInput::new(current, &candidates);
    input.explain = args.decide.explain;
    let decision = policy.select(&input);
    args.decide.print(
        &policy,
        None,
        args.current.as_deref(),
        &candidates,
        &decision,
    )
}

/// Parses `TAG [DIGEST] [CREATED]`; `None` for a blank line.
fn parse_line(raw: &str) -> Result<Option<(Candidate<'_>, Option<Digest>)>, String> {
    let mut fields = raw.split_ascii_whitespace();
    let Some(tag) = fields.next() else {
        return Ok(None);
    };
    if !is_valid_tag(tag) {
        return Err(format!(
            "{tag:?} is not a valid tag: a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        ));
    }
    let mut candidate = Candidate::new(tag);
    let mut digest = None;
    for field in fields {
        // A time starts with its year; a digest with its algorithm's name.
        if field.starts_with(|c: char| c.is_ascii_digit()) {
            let time =
                parse_time(field).map_err(|e| format!("{field:?} is not an RFC 3339 time: {e}"))?;
            candidate.created = Some(time);
        } else {
            digest = Some(field.parse::<Digest>().map_err(|e| e.to_string())?);
        }
    }
    Ok(Some((candidate, digest)))
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

fn read_tags(path: &PathBuf) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        io::stdin().lock().read_to_string(&mut text)
    } else {
        File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    result.map_err(|e| {
        let name = if path.as_os_str() == "-" {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        CliError::Io(format!("cannot read tags from {name}: {e}"))
    })?;
    Ok(text)
}
