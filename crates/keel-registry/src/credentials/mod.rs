//! Registry credentials: what they are, and where they come from (Docker `config.json`,
//! `kubernetes.io/dockerconfigjson` secrets, credential helpers).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keel_core::registry::{DockerConfigDocument, DockerConfigFormat};
use keel_core::{Error, ParseError};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cache::TtlCache;

pub use keel_core::Secret;

/// How long a credential helper (`docker-credential-<name> get`) may run before it is stopped
/// and the lookup fails: 10 seconds, unless set with
/// [`RegistryClientBuilder::with_credential_helper_timeout`](crate::RegistryClientBuilder::with_credential_helper_timeout).
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a [`RegistryClient`](crate::RegistryClient) reuses a credential helper's answer
/// (credentials, or "none for this registry") before asking the helper again: 5 minutes,
/// unless set with
/// [`RegistryClientBuilder::with_credential_helper_cache`](crate::RegistryClientBuilder::with_credential_helper_cache).
pub const DEFAULT_HELPER_CACHE_TTL: Duration = Duration::from_secs(300);

/// The most (helper, registry) answers a client keeps; past it, helpers are asked every time.
const HELPER_CACHE_ENTRIES: usize = 256;

/// The most a credential helper may print; a longer answer is an error.
const MAX_HELPER_OUTPUT: usize = 64 << 10;

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
    /// Sorted, so that of two keys naming one host (`docker.io` and
    /// `https://index.docker.io/v1/`) the same one wins every time: the last in key order.
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
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
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = DockerConfig::from_json(r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}}"#).unwrap();
/// assert_eq!(config.credentials("docker.io").await.unwrap(), Credentials::basic("user", "pass"));
/// assert_eq!(config.credentials("ghcr.io").await.unwrap(), Credentials::Anonymous);
/// # }
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
        let file: ConfigFile = serde_json::from_str(json)
            .map_err(|e| ParseError::new("docker config", "config.json", json_error(&e)))?;
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
        // Sorted for the same reason as `ConfigFile::auths`.
        let entries: BTreeMap<String, AuthEntry> = serde_json::from_str(json)
            .map_err(|e| ParseError::new("docker config", ".dockercfg", json_error(&e)))?;
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
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::backend("docker config", format!("read {}", path.display()), e))?;
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
    ///
    /// Helpers run as child processes, off the async threads, and are stopped after
    /// [`DEFAULT_HELPER_TIMEOUT`]; their answers are not cached here (a
    /// [`RegistryClient`](crate::RegistryClient) caches them).
    pub async fn credentials(&self, host: &str) -> Result<Credentials, Error> {
        let helpers = CredentialHelpers::new(DEFAULT_HELPER_TIMEOUT, Duration::ZERO);
        self.credentials_with(host, &helpers).await
    }

    /// [`credentials`](Self::credentials), running helpers through `helpers`.
    pub(crate) async fn credentials_with(
        &self,
        host: &str,
        helpers: &CredentialHelpers,
    ) -> Result<Credentials, Error> {
        let host = normalize_host(host);
        if let Some(helper) = self.helpers.get(&host) {
            return match helpers.get(helper, &host).await? {
                HelperLookup::Found(credentials) => Ok(credentials),
                HelperLookup::NotFound => Err(Error::not_found(format!(
                    "credentials for {host} in docker-credential-{helper}"
                ))),
            };
        }
        if let Some(creds) = self.auths.get(&host) {
            return Ok(creds.clone());
        }
        match &self.store {
            Some(store) => match helpers.get(store, &host).await? {
                HelperLookup::Found(credentials) => Ok(credentials),
                HelperLookup::NotFound => Ok(Credentials::Anonymous),
            },
            None => Ok(Credentials::Anonymous),
        }
    }
}

/// What a credential helper answered for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HelperLookup {
    Found(Credentials),
    /// The helper has no credentials for the registry.
    NotFound,
}

/// Runs credential helpers as child processes with a timeout, and keeps their answers for a
/// while, by (helper, registry), so that requests do not start a process each.
#[derive(Debug)]
pub(crate) struct CredentialHelpers {
    timeout: Duration,
    answers: TtlCache<(String, String), HelperLookup>,
}

impl CredentialHelpers {
    /// Helpers stopped after `timeout`; answers kept for `ttl` (zero: not kept).
    pub(crate) fn new(timeout: Duration, ttl: Duration) -> Self {
        CredentialHelpers {
            timeout,
            answers: TtlCache::bounded(ttl, HELPER_CACHE_ENTRIES),
        }
    }

    /// What helper `name` says for `host`, from the cache while it is fresh. Failures (a
    /// helper that is missing, hangs or answers nonsense) are not kept.
    async fn get(&self, name: &str, host: &str) -> Result<HelperLookup, Error> {
        let key = (name.to_owned(), host.to_owned());
        self.answers
            .get_or_fetch(&key, || run_helper(name, host, self.timeout))
            .await
    }
}

/// Why a document did not parse, without its values: serde's messages for values of the
/// wrong type quote them, and in a credentials document they are passwords and tokens.
fn json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => {
            let message = e.to_string();
            let expected = message
                .rsplit_once(", expected ")
                .map(|(_, rest)| rest.split(" at line ").next().unwrap_or(rest))
                .map_or_else(String::new, |what| format!(" (expected {what})"));
            format!(
                "the value at line {} column {} has the wrong type or shape{expected}",
                e.line(),
                e.column()
            )
        }
        _ => format!("not valid JSON: {e}"),
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

/// Runs `docker-credential-<name> get` with the server on stdin, as a child process awaited
/// on the runtime (no async thread blocks on it), and stops it after `timeout`.
async fn run_helper(name: &str, host: &str, timeout: Duration) -> Result<HelperLookup, Error> {
    let program = format!("docker-credential-{name}");
    let fail = |message: String, retryable: bool| Error::Backend {
        backend: program.clone(),
        action: format!("get credentials for {host}"),
        message,
        retryable,
        source: None,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The helper's stderr may echo secrets, and is never reported.
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}"), false))?;
    let server = if host == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let talk = async {
        if let Some(mut stdin) = stdin.take() {
            match stdin.write_all(server.as_bytes()).await {
                // A helper may answer without reading the server; its answer still counts.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(fail(format!("cannot talk to {program}: {e}"), false));
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Some(stdout) = stdout.take() {
            stdout
                .take(MAX_HELPER_OUTPUT as u64 + 1)
                .read_to_end(&mut out)
                .await
                .map_err(|e| fail(format!("cannot read the answer of {program}: {e}"), false))?;
        }
        if out.len() > MAX_HELPER_OUTPUT {
            return Err(fail(
                format!("{program} printed more than {MAX_HELPER_OUTPUT} bytes"),
                false,
            ));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| fail(format!("{program} failed: {e}"), false))?;
        Ok((status, out))
    };
    let (status, out) = match tokio::time::timeout(timeout, talk).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            let _ = child.start_kill();
            return Err(e);
        }
        Err(_) => {
            let _ = child.start_kill();
            return Err(fail(
                format!(
                    "{program} did not answer within {}s and was stopped",
                    timeout.as_secs_f64()
                ),
                true,
            ));
        }
    };
    if !status.success() {
        let said = String::from_utf8_lossy(&out);
        if said.contains("credentials not found") {
            return Ok(HelperLookup::NotFound);
        }
        // What the helper printed may hold secrets; report only its status.
        return Err(fail(format!("{program} exited with {status}"), false));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out).map_err(|_| {
        fail(
            format!("{program} answered something other than its JSON"),
            false,
        )
    })?;
    Ok(HelperLookup::Found(if answer.username == "<token>" {
        Credentials::IdentityToken(Secret::new(answer.secret))
    } else {
        Credentials::Basic {
            username: answer.username,
            password: Secret::new(answer.secret),
        }
    }))
}

#[cfg(test)]
mod tests;
