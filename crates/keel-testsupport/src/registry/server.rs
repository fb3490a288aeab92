//! Throw-away registries started by `scripts/registry-server`, stopped on drop.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::ScriptServer;

use super::seed::{Seeder, SeederAuth};
use super::token::TokenIssuer;

/// How a [`RegistryServer`] authenticates clients.
#[derive(Clone, Debug)]
pub enum ServerAuth {
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
pub struct ServerOptions {
    /// The auth scheme (distribution only).
    pub auth: ServerAuth,
    /// Start ferro-oci-server (anonymous; paginates tags/list with `n`/`last` and `Link`)
    /// instead of distribution.
    pub paginating: bool,
}

impl ServerOptions {
    /// Distribution without auth.
    pub fn plain() -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::None,
            paginating: false,
        }
    }

    /// Distribution with htpasswd basic auth.
    pub fn htpasswd(user: &str, password: &str) -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            paginating: false,
        }
    }

    /// Distribution with bearer-token auth, with a [`TokenIssuer`] accepting `user`/`password`.
    pub fn token(user: &str, password: &str) -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::Token {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            paginating: false,
        }
    }

    /// ferro-oci-server, which paginates tag lists.
    pub fn paginating() -> ServerOptions {
        ServerOptions {
            auth: ServerAuth::None,
            paginating: true,
        }
    }
}

/// A running registry on 127.0.0.1; stopped (and its storage removed) on drop.
pub struct RegistryServer {
    addr: String,
    server: ScriptServer,
    options: ServerOptions,
    seeder: Seeder,
    issuer: Option<TokenIssuer>,
}

impl RegistryServer {
    /// Starts a registry (as [`RegistryServer::start`]) holding `repo` at each of `tags`.
    pub async fn with_tags(options: ServerOptions, repo: &str, tags: &[&str]) -> RegistryServer {
        let server = RegistryServer::start(options).await;
        server.push_tags(repo, tags).await;
        server
    }

    /// Starts a registry; panics if it cannot (with a hint to run
    /// `scripts/registry-server install` when a server binary is missing).
    pub async fn start(options: ServerOptions) -> RegistryServer {
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

        let mut args: Vec<OsString> = Vec::new();
        if options.paginating {
            args.push("--paginating".into());
        }
        let mut issuer = None;
        let seeder_auth = match &options.auth {
            ServerAuth::None => SeederAuth::None,
            ServerAuth::Basic { user, password } => {
                args.push("--htpasswd".into());
                args.push(format!("{user}:{password}").into());
                SeederAuth::Basic {
                    user: user.clone(),
                    password: password.clone(),
                }
            }
            ServerAuth::Token { user, password } => {
                let started = TokenIssuer::start(user, password).await;
                args.push("--token-cert".into());
                args.push(started.ca_bundle().into());
                for (flag, value) in [
                    ("--token-issuer", started.issuer().to_owned()),
                    ("--token-realm", started.realm()),
                    ("--token-service", started.service().to_owned()),
                ] {
                    args.push(flag.into());
                    args.push(value.into());
                }
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

        let server = ScriptServer::start("registry-server", args);
        let addr = server.field("addr").to_owned();
        RegistryServer {
            seeder: Seeder::new(&addr, seeder_auth),
            addr,
            server,
            options,
            issuer,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// What the server was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The user and password of an htpasswd or token registry.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.options.auth {
            ServerAuth::None => None,
            ServerAuth::Basic { user, password } | ServerAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// The token issuer of a token registry; panics for other registries.
    pub fn token_issuer(&self) -> &TokenIssuer {
        self.issuer
            .as_ref()
            .expect("token_issuer() of a registry without token auth")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.server.dir().join("server.log")).unwrap_or_default()
    }

    /// The seeder for this registry (authenticated as the server requires).
    pub fn seeder(&self) -> &Seeder {
        &self.seeder
    }
}

/// The seeder's methods (`push_tags`, `move_tag`, ...) are the registry's.
impl std::ops::Deref for RegistryServer {
    type Target = Seeder;

    fn deref(&self) -> &Seeder {
        &self.seeder
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
