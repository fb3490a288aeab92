//! `keel select`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args, ValueEnum};
use keel_core::policy::{Candidate, Current, Decision, Policy, PolicyOptions, SelectInput};
use keel_core::reference::is_valid_tag;
use keel_core::{Digest, ParseError, VersionPolicy};
use serde::Serialize;

/// Arguments of `keel select`.
#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// The policy: `all`, `major`, `minor`, `patch`, `force`, `digest`, `newest-build`,
    /// `docker`, `never`, `semver:RANGE`, `glob:PATTERN`, `regexp:REGEX`,
    /// `alphabetical[:asc|desc]`, `numerical[:asc|desc]`.
    #[arg(long, value_name = "SPEC")]
    policy: String,

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

    /// Keep only tags matching this regex (unanchored).
    #[arg(long, value_name = "RE", allow_hyphen_values = true)]
    filter: Option<String>,

    /// Order the expansion of this template on the filter's match (`$name`, `${name}`, `$1`).
    #[arg(
        long,
        value_name = "TPL",
        requires = "filter",
        allow_hyphen_values = true
    )]
    extract: Option<String>,

    /// Drop tags matching this regex (repeatable).
    #[arg(long, value_name = "RE", allow_hyphen_values = true)]
    exclude: Vec<String>,

    /// Keep cosign/notation artefact tags (`sha256-<hex>.sig`), which are dropped by default.
    #[arg(long)]
    no_default_excludes: bool,

    /// Whether major, minor and patch keep to the current pre-release channel.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    match_pre_release: bool,

    /// Allow a result that orders below the current tag.
    #[arg(long)]
    allow_downgrade: bool,

    /// With `force`: follow the current tag to a new digest instead of moving between tags.
    #[arg(long)]
    match_tag: bool,

    /// Say why: the chosen tag and, for each rejected tag, the first rule that rejected it
    /// (on stderr, or inside the JSON with `-o json`).
    #[arg(long)]
    explain: bool,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How `keel select` prints its decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// The chosen tag and a newline, or nothing.
    Text,
    /// One JSON object.
    Json,
}

/// A failure of `keel select`, by exit code: bad input is 2, I/O is 1.
#[derive(Debug)]
pub(crate) enum CliError {
    Input(String),
    Io(String),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Input(_) => ExitCode::from(2),
            CliError::Io(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) | CliError::Io(m) => f.write_str(m),
        }
    }
}

impl From<ParseError> for CliError {
    fn from(e: ParseError) -> Self {
        CliError::Input(e.to_string())
    }
}

/// The JSON of `-o json`.
#[derive(Serialize)]
struct JsonDecision<'a> {
    policy: String,
    current: Option<&'a str>,
    candidates: usize,
    chosen: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a keel_core::policy::Explanation>,
}

pub(crate) fn run(args: &SelectArgs) -> Result<(), CliError> {
    let options = PolicyOptions {
        exclude: args.exclude.clone(),
        default_excludes: !args.no_default_excludes,
        filter: args.filter.clone(),
        extract: args.extract.clone(),
        match_pre_release: args.match_pre_release,
        allow_downgrade: args.allow_downgrade,
        match_tag: args.match_tag,
    };
    let policy = VersionPolicy::parse(&args.policy, &options)?;
    if let Some(tag) = &args.current {
        if !is_valid_tag(tag) {
            return Err(CliError::Input(format!(
                "invalid --current {tag:?}: a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            )));
        }
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
    input.explain = args.explain;
    let decision = policy.select(&input);
    print(args, &policy, &candidates, &decision)
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

fn print(
    args: &SelectArgs,
    policy: &VersionPolicy,
    candidates: &[Candidate<'_>],
    decision: &Decision,
) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: io::Error| CliError::Io(format!("cannot write the decision: {e}"));
    let update = decision.update.as_ref();
    match args.output {
        Output::Text => {
            if let Some(u) = update {
                match &u.digest {
                    Some(d) => writeln!(out, "{}@{d}", u.tag),
                    None => writeln!(out, "{}", u.tag),
                }
                .map_err(io_err)?;
            }
            if let Some(explanation) = &decision.explanation {
                let stderr = io::stderr();
                let mut err = BufWriter::new(stderr.lock());
                write!(err, "{explanation}").map_err(io_err)?;
            }
        }
        Output::Json => {
            let json = JsonDecision {
                policy: policy.to_string(),
                current: args.current.as_deref(),
                candidates: candidates.len(),
                chosen: update.map(|u| u.tag.as_str()),
                digest: update.and_then(|u| u.digest.as_ref()),
                explanation: decision.explanation.as_ref(),
            };
            serde_json::to_writer(&mut out, &json)
                .map_err(|e| CliError::Io(format!("cannot write the decision: {e}")))?;
            writeln!(out).map_err(io_err)?;
        }
    }
    out.flush().map_err(io_err)
}
