//! Throw-away registries started by `scripts/registry-server`, stopped on drop.

use std::path::PathBuf;
use std::process::Command;

use super::seed::{Created, IndexDigests, Seeder, SeederAuth};
use super::token::TokenIssuer;

/// How a [`RegistryServer`] authenticates clients.
#[derive(Clone, Debug)]
pub(crate) enum ServerAuth {
    /// Anonymous pull and push.
    None,
    /// htpasswd basic auth with one user.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens from a [`TokenIssuer`] started with the registry, accepting one user.
    Token {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub(crate) struct ServerOptions {
    /// The auth scheme (distribution only).
    pub(crate) auth: ServerAuth,
    /// Start ferro-oci-server (anonymous; paginates tags/list with `n`/`last` and `Link`)
    /// instead of distribution.
    pub(crate) paginating: bool,
}

impl ServerOptions {
    /// Distribution without auth.
    pub(crate) fn plain() -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::None,
            paginating: false,
        }
    }

    /// Distribution with htpasswd basic auth.
    pub(crate) fn htpasswd(user: &str, password: &str) -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            paginating: false,
        }
    }

    /// Distribution with bearer-token auth, with a [`TokenIssuer`] accepting `user`/`password`.
    pub(crate) fn token(user: &str, password: &str) -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::Token {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            paginating: false,
        }
    }

    /// ferro-oci-server, which paginates tag lists.
    pub(crate) fn paginating() -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::None,
            paginating: true,
        }
    }
}

/// A running registry on 127.0.0.1; stopped (and its storage removed) on drop.
pub(crate) struct RegistryServer {
    addr: String,
    dir: PathBuf,
    pid: u32,
    options: ServerOptions,
    seeder: Seeder,
    issuer: Option<TokenIssuer>,
}

impl RegistryServer {
    /// Starts a registry; panics if it cannot (with a hint to run
    /// `scripts/registry-server install` when a server binary is missing).
    pub(crate) async fn start(options: ServerOptions) -> RegistryServer {
        let binary = if options.paginating {
            "ferro-oci-server"
        } else {
            "docker-registry"
        };
        assert!(
            find_binary(binary),
            "`{binary}` is not installed: run `scripts/registry-server install` first \
             (the registry integration tests need it)"
        );

        let script = super::repo_root().join("scripts/registry-server");
        let mut command = Command::new(&script);
        command.arg("start");
        command.args(["--owner-pid", &std::process::id().to_string()]);
        if options.paginating {
            command.arg("--paginating");
        }
        let mut issuer = None;
        let seeder_auth = match &options.auth {
            ServerAuth::None => SeederAuth::None,
            ServerAuth::Basic { user, password } => {
                command.args(["--htpasswd", &format!("{user}:{password}")]);
                SeederAuth::Basic {
                    user: user.clone(),
                    password: password.clone(),
                }
            }
            ServerAuth::Token { user, password } => {
                let started = TokenIssuer::start(user, password).await;
                command.arg("--token-cert").arg(started.ca_bundle());
                command.args([
                    "--token-issuer",
                    started.issuer(),
                    "--token-realm",
                    &started.realm(),
                    "--token-service",
                    started.service(),
                ]);
                let auth = SeederAuth::Token {
                    realm: started.realm(),
                    service: started.service().to_owned(),
                    user: user.clone(),
                    password: password.clone(),
                };
                issuer = Some(started);
                auth
            }
        };

        let output = command
            .output()
            .unwrap_or_else(|error| panic!("running {}: {error}", script.display()));
        assert!(
            output.status.success(),
            "scripts/registry-server start failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8_lossy(&output.stdout);
        let started: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|error| {
                panic!("scripts/registry-server start printed {line:?}: {error}")
            });
        let addr = started["addr"].as_str().expect("addr").to_owned();
        let dir = PathBuf::from(started["dir"].as_str().expect("dir"));
        let pid = u32::try_from(started["pid"].as_u64().expect("pid")).expect("pid fits u32");
        RegistryServer {
            seeder: Seeder::new(&addr, seeder_auth),
            addr,
            dir,
            pid,
            options,
            issuer,
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// What the server was started with.
    pub(crate) fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The user and password of an htpasswd or token registry.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        match &self.options.auth {
            ServerAuth::None => None,
            ServerAuth::Basic { user, password } | ServerAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// The token issuer of a token registry; panics for other registries.
    pub(crate) fn token_issuer(&self) -> &TokenIssuer {
        self.issuer
            .as_ref()
            .expect("token_issuer() of a registry without token auth")
    }

    /// The server's log so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The seeder for this registry (authenticated as the server requires).
    pub(crate) fn seeder(&self) -> &Seeder {
        &self.seeder
    }

    /// See [`Seeder::push_image`].
    pub(crate) async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        created: impl Created,
        platform: &str,
    ) -> String {
        self.seeder.push_image(repo, tag, created, platform).await
    }

    /// See [`Seeder::push_index`].
    pub(crate) async fn push_index<C: Created>(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, C)],
    ) -> String {
        self.seeder.push_index(repo, tag, platforms).await
    }

    /// See [`Seeder::push_index_with_manifests`].
    pub(crate) async fn push_index_with_manifests<C: Created>(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, C)],
    ) -> IndexDigests {
        self.seeder
            .push_index_with_manifests(repo, tag, platforms)
            .await
    }

    /// See [`Seeder::push_docker_v2`].
    pub(crate) async fn push_docker_v2(
        &self,
        repo: &str,
        tag: &str,
        created: impl Created,
    ) -> String {
        self.seeder.push_docker_v2(repo, tag, created).await
    }

    /// See [`Seeder::push_docker_list`].
    pub(crate) async fn push_docker_list<C: Created>(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, C)],
    ) -> IndexDigests {
        self.seeder.push_docker_list(repo, tag, platforms).await
    }

    /// See [`Seeder::push_tags`].
    pub(crate) async fn push_tags<T: AsRef<str>>(&self, repo: &str, tags: &[T]) -> Vec<String> {
        self.seeder.push_tags(repo, tags).await
    }

    /// See [`Seeder::retag`].
    pub(crate) async fn retag(&self, repo: &str, source: &str, tag: &str) -> String {
        self.seeder.retag(repo, source, tag).await
    }

    /// See [`Seeder::move_tag`].
    pub(crate) async fn move_tag(&self, repo: &str, tag: &str, created: impl Created) -> String {
        self.seeder.move_tag(repo, tag, created).await
    }

    /// See [`Seeder::delete_manifest`].
    pub(crate) async fn delete_manifest(&self, repo: &str, digest: &str) {
        self.seeder.delete_manifest(repo, digest).await;
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let script = super::repo_root().join("scripts/registry-server");
        let stopped = Command::new(&script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(stopped, Ok(status) if status.success()) {
            eprintln!(
                "scripts/registry-server stop {} failed: {stopped:?}",
                self.dir.display()
            );
        }
    }
}

/// Whether `name` is on `PATH` (or, for cargo-installed tools, in `~/.cargo/bin`).
fn find_binary(name: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path || cargo_home.is_some_and(|home| home.join("bin").join(name).is_file())
}
