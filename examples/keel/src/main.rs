//! `keel`: the command-line tool of keel-rs.
//!
//! `keel select` answers the question the whole library is built around: given the tag an
//! image runs and the tags a registry lists, which tag should it move to?
//!
//! ```text
//! keel select --policy minor --current 1.2.3 --tags-file tags.txt
//! printf '1.2.4\n1.3.0\n2.0.0\n' | keel select --policy 'semver:^1.2' --explain
//! ```

mod select;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Select(args) => select::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel: {e}");
            e.exit_code()
        }
    }
}
