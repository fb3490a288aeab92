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
//!
//! The backends are cargo features, all on by default: `registry` (`tags`, `digest`,
//! `check`, `list-images`), `git` (`release` in a repository; with `registry`, `gitops` and
//! `check --repo`), `kube` (`release --kube`; with `registry`, `check --kube`) and `helm`.
//! `keel select` needs none of them.

#[cfg(feature = "registry")]
mod check;
mod decide;
mod error;
#[cfg(feature = "git")]
mod gitops;
#[cfg(feature = "helm")]
mod helm;
#[cfg(feature = "kube")]
mod kube;
#[cfg(feature = "registry")]
mod list_images;
#[cfg(feature = "registry")]
mod progress;
#[cfg(feature = "registry")]
mod registry;
#[cfg(any(feature = "git", feature = "kube"))]
mod release;
mod select;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    #[cfg(feature = "registry")]
    Tags(registry::TagsArgs),
    /// Print the digest a tag points at.
    #[cfg(feature = "registry")]
    Digest(registry::DigestArgs),
    /// Show the update a policy picks for an image, from its registry's tags.
    #[cfg(feature = "registry")]
    Check(check::CheckArgs),
    /// List the tags of each tracked image, newest first with their creation times, the
    /// running one (`->`) and those its policy allows (`*`) marked.
    #[cfg(feature = "registry")]
    ListImages(list_images::ListImagesArgs),
    /// Update the image references of a Git repository by their policies.
    #[cfg(all(feature = "git", feature = "registry"))]
    Gitops(gitops::GitopsArgs),
    /// Set one image to one tag wherever a Git repository references it; commit and push
    /// (the CI step; settings also from `KEEL_*` and `PLUGIN_*` variables).
    #[cfg(any(feature = "git", feature = "kube"))]
    Release(release::ReleaseArgs),
}

/// CI plugins (Drone, Woodpecker) pass their settings as `PLUGIN_*`: every argument that
/// reads `KEEL_X` also takes `PLUGIN_X` when `KEEL_X` is unset.
fn with_plugin_settings(command: clap::Command) -> clap::Command {
    let mut command = command;
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, with_plugin_settings);
    }
    let args: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|a| {
            let keel = a.get_env()?.to_str()?.to_owned();
            Some((a.get_id().to_string(), keel))
        })
        .collect();
    for (id, keel) in args {
        let plugin = keel.replacen("KEEL_", "PLUGIN_", 1);
        if std::env::var_os(&keel).is_none() && std::env::var_os(&plugin).is_some() {
            let plugin: &'static str = Box::leak(plugin.into_boxed_str());
            command = command.mut_arg(id, |a| a.env(plugin));
        }
    }
    command
}

fn main() -> ExitCode {
    let matches = with_plugin_settings(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        Command::Select(args) => select::run(args),
        // Unreachable when the binary is built with no backend at all.
        #[allow(unreachable_patterns)]
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
            #[cfg(feature = "registry")]
            Command::Tags(args) => registry::tags(args).await,
            #[cfg(feature = "registry")]
            Command::Digest(args) => registry::digest(args).await,
            #[cfg(feature = "registry")]
            Command::Check(args) => check::check(args).await,
            #[cfg(feature = "registry")]
            Command::ListImages(args) => list_images::list_images(args).await,
            #[cfg(all(feature = "git", feature = "registry"))]
            Command::Gitops(args) => gitops::gitops(args).await,
            #[cfg(any(feature = "git", feature = "kube"))]
            Command::Release(args) => release::release(args).await,
            Command::Select(args) => select::run(args),
        }
    })
}
