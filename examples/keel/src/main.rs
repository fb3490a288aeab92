//! `keel`: the command-line tool of keel-rs.
//!
//! - `keel select` answers the question the whole library is built around: given the tag an
//!   image runs and the tags a registry lists, which tag should it move to?
//! - `keel tags`, `keel digest` and `keel check` ask a registry: list a repository's tags,
//!   resolve a tag's digest, and show the update a policy picks for a running image.
//!
//! ```text
//! keel select --policy minor --current 1.2.3 --tags-file tags.txt
//! printf '1.2.4\n1.3.0\n2.0.0\n' | keel select --policy 'semver:^1.2' --explain
//! keel check ghcr.io/acme/web:1.2.3 --policy minor
//! ```

mod decide;
mod error;
mod registry;
mod select;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Automated container image updates: pick the right new version of an image.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Choose the tag to move to from a list of candidate tags, by a policy.
    Select(select::SelectArgs),
    /// List the tags of a repository.
    Tags(registry::TagsArgs),
    /// Print the digest a tag points at.
    Digest(registry::DigestArgs),
    /// Show the update a policy picks for an image, from its registry's tags.
    Check(registry::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Select(args) => select::run(args),
        other => run_async(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel: {e}");
            e.exit_code()
        }
    }
}

fn run_async(command: &Command) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        match command {
            Command::Tags(args) => registry::tags(args).await,
            Command::Digest(args) => registry::digest(args).await,
            Command::Check(args) => registry::check(args).await,
            Command::Select(args) => select::run(args),
        }
    })
}
