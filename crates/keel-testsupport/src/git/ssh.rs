//! A throw-away `sshd` started by `scripts/ssh-server`, serving the bare repositories of a
//! [`GitServer`] over `ssh://`; stopped on drop.

use std::path::Path;

use super::server::GitServer;
use crate::ScriptServer;

/// A running OpenSSH `sshd` on 127.0.0.1, run as the current user with a host key, a
/// configuration and `authorized_keys` of its own. It lets in only the current user, only
/// with [`SshServer::client_key`]. Stopped, and its directory removed, on drop.
pub struct SshServer {
    port: u16,
    user: String,
    server: ScriptServer,
}

impl SshServer {
    /// Starts `sshd`; panics if it cannot (with a hint to run `scripts/ssh-server install`
    /// when sshd is missing).
    pub fn start() -> SshServer {
        assert!(
            Path::new("/usr/sbin/sshd").is_file(),
            "/usr/sbin/sshd is missing: run `scripts/ssh-server install` first (the SSH tests \
             of keel-git need OpenSSH's server)"
        );
        let server = ScriptServer::start("ssh-server", std::iter::empty::<&str>());
        let port = server
            .field("addr")
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok());
        let port = port.expect("scripts/ssh-server printed an addr with a port");
        let user = server.field("user").to_owned();
        SshServer { port, user, server }
    }

    /// The port `sshd` listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ssh://USER@127.0.0.1:PORT/<path of the bare repository NAME of git>`.
    pub fn url(&self, git: &GitServer, name: &str) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            git.repo_path(name).display()
        )
    }

    /// The server's host key as `known_hosts` writes it: `ssh-ed25519 AAAA...`.
    pub fn host_key(&self) -> &str {
        self.server.field("host_key")
    }

    /// The `known_hosts` line of the server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts(&self) -> &str {
        self.server.field("known_hosts")
    }

    /// The private key the server accepts (OpenSSH format, no passphrase).
    pub fn client_key(&self) -> String {
        self.read("client")
    }

    /// A private key the server does not accept.
    pub fn other_key(&self) -> String {
        self.read("other")
    }

    /// The public key of [`SshServer::other_key`], as `authorized_keys` lines are written.
    pub fn other_public_key(&self) -> String {
        self.read("other.pub")
    }

    /// What `sshd` logged so far (`LogLevel DEBUG1`: connections and every authentication
    /// request, with the key offered).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.server.dir().join("sshd.log")).unwrap_or_default()
    }

    /// The server's directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    fn read(&self, file: &str) -> String {
        let path = self.server.dir().join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
    }
}
