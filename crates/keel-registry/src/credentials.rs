//! Registry credentials: what they are, and where they come from (Docker `config.json`,
//! `kubernetes.io/dockerconfigjson` secrets, credential helpers).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keel_core::registry::{DockerConfigDocument, DockerConfigFormat};
use keel_core::{Error, ParseError};
use serde::Deserialize;

pub use keel_core::Secret;

/// How to authenticate to one registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// No credentials: anonymous pulls, and anonymous bearer tokens where the registry hands
    /// them out (Docker Hub, GHCR for public images).
    #[default]
    Anonymous,
    /// A user name and password (or access token used as a password).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken` in `config.json`), exchanged for access tokens.
    IdentityToken(Secret),
    /// A registry bearer token used as is.
    Bearer(Secret),
}

impl Credentials {
    /// Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// Who the credentials are for, for messages: the user name, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "anonymous".into(),
            Credentials::Basic { username, .. } => format!("user {username:?}"),
            Credentials::IdentityToken(_) => "an identity token".into(),
            Credentials::Bearer(_) => "a bearer token".into(),
        }
    }
}

/// The registry host a credential key or reference names, normalised: scheme and path
/// dropped, Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`,
/// `https://index.docker.io/v1/`) mapped to `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

/// Credentials by registry host, as Docker keeps them: static entries (`auths`) and
/// credential helpers (`credHelpers`, `credsStore`, run as `docker-credential-<name> get`).
///
/// ```
/// use keel_registry::{Credentials, DockerConfig};
///
/// let config = DockerConfig::from_json(r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}}"#).unwrap();
/// assert_eq!(config.credentials("docker.io").unwrap(), Credentials::basic("user", "pass"));
/// assert_eq!(config.credentials("ghcr.io").unwrap(), Credentials::Anonymous);
/// ```
#[derive(Clone, Debug, Default)]
pub struct DockerConfig {
    auths: HashMap<String, Credentials>,
    helpers: HashMap<String, String>,
    store: Option<String>,
}

impl DockerConfig {
    /// Parses a `config.json` (or a `.dockerconfigjson` secret value, the same format).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let file: ConfigFile = serde_json::from_str(json).map_err(|e| {
            ParseError::new(
                "docker config",
                "config.json",
                format!("not valid JSON: {e}"),
            )
        })?;
        let mut auths = HashMap::new();
        for (key, entry) in file.auths {
            auths.insert(normalize_host(&key), entry_credentials(&key, entry)?);
        }
        let helpers = file
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalize_host(&k), v))
            .collect();
        Ok(DockerConfig {
            auths,
            helpers,
            store: file.creds_store.filter(|s| !s.is_empty()),
        })
    }

    /// Parses the legacy `.dockercfg` format (a secret of type `kubernetes.io/dockercfg`):
    /// the `auths` map without its wrapper.
    pub fn from_dockercfg_json(json: &str) -> Result<Self, Error> {
        let entries: HashMap<String, AuthEntry> = serde_json::from_str(json).map_err(|e| {
            ParseError::new(
                "docker config",
                ".dockercfg",
                format!("not valid JSON: {e}"),
            )
        })?;
        let mut auths = HashMap::new();
        for (key, entry) in entries {
            auths.insert(normalize_host(&key), entry_credentials(&key, entry)?);
        }
        Ok(DockerConfig {
            auths,
            ..DockerConfig::default()
        })
    }

    /// Parses a document from a [`CredentialSource`](keel_core::CredentialSource), e.g. a
    /// Kubernetes pull secret. Only its static entries count: credential helpers it names are
    /// dropped, so that the contents of a secret can never run a program. Errors name the
    /// document's origin.
    pub fn from_document(document: &DockerConfigDocument) -> Result<Self, Error> {
        let parsed = match document.format {
            DockerConfigFormat::ConfigJson => Self::from_json(&document.json),
            DockerConfigFormat::Dockercfg => Self::from_dockercfg_json(&document.json),
        };
        match parsed {
            Ok(config) => Ok(DockerConfig {
                auths: config.auths,
                ..DockerConfig::default()
            }),
            Err(Error::InvalidInput(e)) => Err(ParseError::new(
                "docker config",
                document.origin.clone(),
                format!("{}: {}", e.input(), e.reason()),
            )
            .into()),
            Err(other) => Err(other),
        }
    }

    /// The static (`auths`) entry for registry `host`, if there is one.
    pub fn static_credentials(&self, host: &str) -> Option<Credentials> {
        self.auths.get(&normalize_host(host)).cloned()
    }

    /// Reads a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Backend {
            backend: "docker config".into(),
            action: format!("read {}", path.display()),
            message: e.to_string(),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        Self::from_json(&text)
    }

    /// The config Docker itself would use: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`; empty when there is none.
    pub fn from_env() -> Result<Self, Error> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
        match dir.map(|d| d.join("config.json")) {
            Some(path) if path.exists() => Self::from_file(&path),
            _ => Ok(DockerConfig::default()),
        }
    }

    /// Adds (or replaces) the credentials of `host`.
    pub fn insert(&mut self, host: &str, credentials: Credentials) {
        self.auths.insert(normalize_host(host), credentials);
    }

    /// Adds every entry of `other`, which wins on conflicts.
    pub fn merge(&mut self, other: DockerConfig) {
        self.auths.extend(other.auths);
        self.helpers.extend(other.helpers);
        if other.store.is_some() {
            self.store = other.store;
        }
    }

    /// The credentials for registry `host`: a credential helper for the host, else a static
    /// entry, else the default credential store, else anonymous.
    pub fn credentials(&self, host: &str) -> Result<Credentials, Error> {
        let host = normalize_host(host);
        if let Some(helper) = self.helpers.get(&host) {
            return run_helper(helper, &host);
        }
        if let Some(creds) = self.auths.get(&host) {
            return Ok(creds.clone());
        }
        match &self.store {
            Some(store) => match run_helper(store, &host) {
                Err(Error::NotFound { .. }) => Ok(Credentials::Anonymous),
                other => other,
            },
            None => Ok(Credentials::Anonymous),
        }
    }
}

fn entry_credentials(key: &str, entry: AuthEntry) -> Result<Credentials, Error> {
    let bad = |reason: &str| {
        Error::from(ParseError::new(
            "docker config",
            format!("auths.{key}"),
            reason.to_owned(),
        ))
    };
    if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken(Secret::new(token)));
    }
    if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::Bearer(Secret::new(token)));
    }
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("`auth` is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| bad("`auth` must decode to `user:password`"))?;
        return Ok(Credentials::basic(user, pass));
    }
    match (entry.username, entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Credentials::basic(u, p)),
        (None, None) => Ok(Credentials::Anonymous),
        _ => Err(bad("needs `auth`, or both `username` and `password`")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Runs `docker-credential-<name> get` with the server on stdin.
fn run_helper(name: &str, host: &str) -> Result<Credentials, Error> {
    let program = format!("docker-credential-{name}");
    let fail = |message: String, retryable: bool| Error::Backend {
        backend: program.clone(),
        action: format!("get credentials for {host}"),
        message,
        retryable,
        source: None,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}"), false))?;
    let server = if host == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("cannot talk to {program}: {e}"), false))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{program} failed: {e}"), false))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        if said.contains("credentials not found") {
            return Err(Error::not_found(format!(
                "credentials for {host} in {program}"
            )));
        }
        // The helper's stderr may echo secrets; report only its status.
        return Err(fail(format!("{program} exited with {}", out.status), false));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        fail(
            format!("{program} answered something other than its JSON"),
            false,
        )
    })?;
    if answer.username == "<token>" {
        Ok(Credentials::IdentityToken(Secret::new(answer.secret)))
    } else {
        Ok(Credentials::Basic {
            username: answer.username,
            password: Secret::new(answer.secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_in_every_form() {
        let json = r#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "ghcr.io": {"username": "bot", "password": "tok"},
                "quay.io": {"identitytoken": "refresh"},
                "localhost:5000": {}
            }
        }"#;
        let c = DockerConfig::from_json(json).unwrap();
        assert_eq!(
            c.credentials("index.docker.io").unwrap(),
            Credentials::basic("user", "pa:ss")
        );
        assert_eq!(
            c.credentials("registry-1.docker.io").unwrap(),
            Credentials::basic("user", "pa:ss")
        );
        assert_eq!(
            c.credentials("ghcr.io").unwrap(),
            Credentials::basic("bot", "tok")
        );
        assert_eq!(
            c.credentials("quay.io").unwrap(),
            Credentials::IdentityToken(Secret::new("refresh"))
        );
        assert_eq!(
            c.credentials("localhost:5000").unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            c.credentials("example.com").unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn legacy_dockercfg() {
        let c =
            DockerConfig::from_dockercfg_json(r#"{"r.example.com":{"auth":"YTpi","email":"x@y"}}"#)
                .unwrap();
        assert_eq!(
            c.credentials("r.example.com").unwrap(),
            Credentials::basic("a", "b")
        );
    }

    #[test]
    fn bad_entries_are_named_without_secrets() {
        let e = DockerConfig::from_json(r#"{"auths":{"ghcr.io":{"auth":"!!!"}}}"#).unwrap_err();
        assert!(e.to_string().contains("auths.ghcr.io"), "{e}");
        assert!(e.to_string().contains("not base64"), "{e}");
        let e = DockerConfig::from_json(r#"{"auths":{"ghcr.io":{"username":"u"}}}"#).unwrap_err();
        assert!(
            e.to_string().contains("both `username` and `password`"),
            "{e}"
        );
        let e = DockerConfig::from_json("{").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::basic("user", "hunter2");
        let shown = format!("{c:?} {}", c.describe());
        assert!(!shown.contains("hunter2"), "{shown}");
        let config = DockerConfig::from_json(r#"{"auths":{"h":{"auth":"dTpodW50ZXIy"}}}"#).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let c = DockerConfig::from_json(
            r#"{"credHelpers":{"ecr.example.com":"keel-test-nonexistent"}}"#,
        )
        .unwrap();
        let e = c.credentials("ecr.example.com").unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-keel-test-nonexistent"),
            "{e}"
        );
    }

    #[test]
    fn helper_protocol() {
        // A credential helper is any program speaking the protocol; a shell script will do.
        let dir = std::env::temp_dir().join(format!("keel-cred-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("docker-credential-keeltest");
        std::fs::write(
            &script,
            "#!/bin/sh\nread server\n[ \"$server\" = \"reg.example.com\" ] || { echo 'credentials not found in native keychain'; exit 1; }\necho '{\"ServerURL\":\"reg.example.com\",\"Username\":\"helper-user\",\"Secret\":\"helper-pass\"}'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The helper is found through PATH; run in a child so this test does not change the
        // environment of others.
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "credentials::tests::helper_protocol_child",
                "--nocapture",
            ])
            .env("PATH", path)
            .env("KEEL_HELPER_CHILD", "1")
            .status()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(status.success());
    }

    #[test]
    fn helper_protocol_child() {
        if std::env::var_os("KEEL_HELPER_CHILD").is_none() {
            return;
        }
        let c = DockerConfig::from_json(r#"{"credsStore":"keeltest"}"#).unwrap();
        assert_eq!(
            c.credentials("reg.example.com").unwrap(),
            Credentials::basic("helper-user", "helper-pass")
        );
        assert_eq!(
            c.credentials("other.example.com").unwrap(),
            Credentials::Anonymous
        );
    }
}
