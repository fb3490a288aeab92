//! `keel tags` and `keel digest`, and the registry client every command builds from its flags.

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use keel_core::{ImageRef, Registry};
use keel_registry::{Credentials, DockerConfig, RegistryClient};
use serde::Serialize;

use crate::error::CliError;
use crate::progress::Progress;

/// How to reach the registry.
#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// A Docker `config.json` with credentials (default: `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`, when present).
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,

    /// A user name for the image's registry; the password is read from stdin.
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,

    /// Read the password for `--username` from stdin.
    #[arg(long, requires = "username")]
    password_stdin: bool,

    /// Allow plain HTTP to this registry host (repeatable); localhost is always allowed.
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,

    /// The listing budget in pages: a tag list longer than this is cut short, and no update
    /// is chosen from a cut list.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_pages: usize,

    /// The listing budget in tags (see `--max-pages`).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_tags: usize,
}

impl RegistryArgs {
    /// A client for whatever registries the images name; `--username` needs one image.
    pub(crate) fn client_for_any(&self) -> Result<RegistryClient, CliError> {
        if self.username.is_some() {
            return Err(CliError::Input(
                "--username applies to one image's registry; use --docker-config here".into(),
            ));
        }
        self.client(&ImageRef::parse("localhost/unused")?)
    }

    pub(crate) fn client(&self, image: &ImageRef) -> Result<RegistryClient, CliError> {
        let config = match &self.docker_config {
            Some(path) => DockerConfig::from_file(path)?,
            None => DockerConfig::from_env()?,
        };
        let mut builder = RegistryClient::builder()
            .with_docker_config(config)
            .with_listing_budget(self.max_pages, self.max_tags);
        for host in &self.insecure_registry {
            builder = builder.with_insecure_registry(host);
        }
        if let (Some(user), true) = (&self.username, self.password_stdin) {
            let mut password = String::new();
            io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| CliError::Io(format!("cannot read the password from stdin: {e}")))?;
            let password = password.trim_end_matches(['\r', '\n']);
            builder =
                builder.with_credentials(image.registry(), Credentials::basic(user, password));
        }
        Ok(builder.build()?)
    }
}

/// Output of `keel tags` and `keel digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ListOutput {
    /// One per line.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `keel tags`.
#[derive(Debug, Args)]
pub(crate) struct TagsArgs {
    /// The repository, e.g. `ghcr.io/acme/web` or `nginx` (a tag, if given, is ignored).
    image: String,

    /// Print at most this many tags.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = ListOutput::Text)]
    output: ListOutput,

    #[command(flatten)]
    registry: RegistryArgs,
}

/// Arguments of `keel digest`.
#[derive(Debug, Args)]
pub(crate) struct DigestArgs {
    /// The image, e.g. `ghcr.io/acme/web:1.2.3`.
    image: String,

    #[command(flatten)]
    registry: RegistryArgs,
}

pub(crate) fn parse_image(s: &str) -> Result<ImageRef, CliError> {
    Ok(ImageRef::parse(s)?)
}

pub(crate) async fn tags(args: &TagsArgs) -> Result<(), CliError> {
    let image = parse_image(&args.image)?;
    let client = args.registry.client(&image)?;
    let progress = Progress::new();
    let repository = image.name();
    let listed = |n: usize| progress.spin(format!("listed {n} tags of {repository}"));
    let list = client.list_tags_with_progress(&image, &listed).await?;
    progress.finish();
    if list.truncated {
        eprintln!(
            "keel: warning: the listing of {} stopped at the budget after {} tags (raise \
             --max-pages or --max-tags)",
            image.name(),
            list.tags.len()
        );
    }
    let shown = &list.tags[..list.tags.len().min(args.limit.unwrap_or(usize::MAX))];
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: io::Error| CliError::Io(format!("cannot write the tags: {e}"));
    match args.output {
        ListOutput::Text => {
            for tag in shown {
                writeln!(out, "{tag}").map_err(io_err)?;
            }
        }
        ListOutput::Json => {
            #[derive(Serialize)]
            struct Json<'a> {
                repository: String,
                tags: &'a [String],
                truncated: bool,
            }
            let json = Json {
                repository: image.name(),
                tags: shown,
                truncated: list.truncated || shown.len() < list.tags.len(),
            };
            serde_json::to_writer(&mut out, &json)
                .map_err(|e| CliError::Io(format!("cannot write the tags: {e}")))?;
            writeln!(out).map_err(io_err)?;
        }
    }
    out.flush().map_err(io_err)
}

pub(crate) async fn digest(args: &DigestArgs) -> Result<(), CliError> {
    let image = parse_image(&args.image)?;
    let client = args.registry.client(&image)?;
    let tag = image
        .tag()
        .ok_or_else(|| CliError::Input(format!("{} names no tag to resolve", args.image)))?;
    let digest = client.resolve_digest(&image, tag).await?;
    println!("{digest}");
    Ok(())
}
