//! What `keel select` and `keel check` share: the policy options and how a decision prints.

use std::io::{self, BufWriter, Write};

use clap::{ArgAction, Args, ValueEnum};
use keel_core::policy::{Candidate, Decision, Explanation, PolicyOptions};
use keel_core::{Digest, VersionPolicy};
use serde::Serialize;

use crate::error::CliError;

/// The policy and its options.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// The policy: `all`, `major`, `minor`, `patch`, `force`, `digest`, `newest-build`,
    /// `docker`, `never`, `semver:RANGE`, `glob:PATTERN`, `regexp:REGEX`,
    /// `alphabetical[:asc|desc]`, `numerical[:asc|desc]`.
    #[arg(long, value_name = "SPEC")]
    policy: Option<String>,

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
    pub(crate) explain: bool,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

/// How a decision prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// The chosen tag and a newline, or nothing.
    Text,
    /// One JSON object.
    Json,
}

impl PolicyArgs {
    /// Whether `--policy` was given.
    #[cfg(feature = "registry")]
    pub(crate) fn has_policy(&self) -> bool {
        self.policy.is_some()
    }

    /// The policy these arguments describe.
    pub(crate) fn policy(&self) -> Result<VersionPolicy, CliError> {
        let options = PolicyOptions {
            exclude: self.exclude.clone(),
            default_excludes: !self.no_default_excludes,
            filter: self.filter.clone(),
            extract: self.extract.clone(),
            match_pre_release: self.match_pre_release,
            allow_downgrade: self.allow_downgrade,
            match_tag: self.match_tag,
        };
        let policy = self
            .policy
            .as_deref()
            .ok_or_else(|| CliError::Input("the policy is missing: pass --policy SPEC".into()))?;
        Ok(VersionPolicy::parse(policy, &options)?)
    }

    /// Prints `decision`: the tag (`TAG@DIGEST` for digest updates) on stdout, reasons on
    /// stderr; or one JSON object.
    pub(crate) fn print(
        &self,
        policy: &VersionPolicy,
        image: Option<&str>,
        current: Option<&str>,
        candidates: &[Candidate<'_>],
        decision: &Decision,
    ) -> Result<(), CliError> {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let io_err = |e: io::Error| CliError::Io(format!("cannot write the decision: {e}"));
        let update = decision.update.as_ref();
        match self.output {
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
                    image,
                    policy: policy.to_string(),
                    current,
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
}

/// The JSON of `-o json`.
#[derive(Serialize)]
struct JsonDecision<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    policy: String,
    current: Option<&'a str>,
    candidates: usize,
    chosen: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a Explanation>,
}
