//! Image pull secrets as registry credentials.
//!
//! A workload names the secrets its pods pull with (`spec.imagePullSecrets`, and Keel's
//! `keel.sh/imagePullSecret` annotation); the registry backend must use the same credentials
//! to list tags of the images it runs. [`PullSecrets`] keeps every
//! `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` secret of its scope in memory
//! through watches (no request per registry call, and a rotated secret is picked up as soon as
//! the API server reports it), and answers [`CredentialSource::docker_configs`] from the usage
//! map that discovery fills with [`PullSecrets::set_usage`]: which secrets the workloads
//! running a repository pull it with.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), keel_core::Error> {
//! use std::sync::Arc;
//! use keel_core::{CredentialSource, ImageRef};
//! use keel_k8s::PullSecrets;
//!
//! let secrets = PullSecrets::in_namespaces(client, ["prod"]);
//! secrets.ready().await;
//! let image = ImageRef::parse("ghcr.io/acme/web:1.0")?;
//! secrets.set_usage("deployment/prod/web/app", &image, [("prod", "regcred")]);
//! let source: Arc<dyn CredentialSource> = Arc::new(secrets.clone());
//! assert_eq!(source.docker_configs(&image).len(), 1);
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use keel_core::{CredentialSource, DockerConfigDocument, DockerConfigFormat, ImageRef};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The secret type of Docker `config.json` documents.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The secret type of legacy `.dockercfg` documents.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";

/// A secret by namespace and name, as a workload refers to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// The secret's namespace (the workload's own: pods can only use secrets of theirs).
    pub namespace: String,
    /// The secret's name.
    pub name: String,
}

impl SecretRef {
    /// The secret `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        SecretRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl<N: Into<String>, S: Into<String>> From<(N, S)> for SecretRef {
    fn from((namespace, name): (N, S)) -> Self {
        SecretRef::new(namespace, name)
    }
}

/// Which one of the per-scope, per-type watches an event came from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WatchKey {
    /// `None`: every namespace.
    namespace: Option<String>,
    format: DockerConfigFormat,
}

impl WatchKey {
    fn covers(&self, secret: &SecretRef, format: DockerConfigFormat) -> bool {
        format == self.format
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == secret.namespace)
    }
}

/// Who uses which secrets for which repository.
#[derive(Default)]
struct Usage {
    /// Keyed by the user's id (a tracked image id): the repository name and its secrets.
    by_user: HashMap<String, (String, Vec<SecretRef>)>,
}

impl Usage {
    fn secrets_for(&self, repository: &str) -> Vec<SecretRef> {
        let mut users: Vec<(&String, &Vec<SecretRef>)> = self
            .by_user
            .iter()
            .filter(|(_, (repo, _))| repo == repository)
            .map(|(user, (_, secrets))| (user, secrets))
            .collect();
        // Deterministic order whatever the map's: by user id, each user's own order kept.
        users.sort_by(|a, b| a.0.cmp(b.0));
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (_, secrets) in users {
            for s in secrets {
                if seen.insert(s.clone()) {
                    out.push(s.clone());
                }
            }
        }
        out
    }
}

struct Shared {
    documents: RwLock<HashMap<SecretRef, DockerConfigDocument>>,
    usage: RwLock<Usage>,
    /// Missing secrets already warned about, so that a missing secret is reported once per
    /// disappearance rather than on every registry request.
    warned: Mutex<HashSet<SecretRef>>,
    /// How many watches have finished their first listing.
    synced: watch::Sender<usize>,
    watches: usize,
}

impl Shared {
    fn insert(&self, key: SecretRef, doc: DockerConfigDocument) {
        self.warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.documents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, doc);
    }

    fn remove(&self, key: &SecretRef) {
        self.documents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn replace_all(&self, watch: &WatchKey, fresh: HashMap<SecretRef, DockerConfigDocument>) {
        {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            for key in fresh.keys() {
                warned.remove(key);
            }
        }
        let mut docs = self.documents.write().unwrap_or_else(|e| e.into_inner());
        docs.retain(|key, doc| !watch.covers(key, doc.format));
        docs.extend(fresh);
    }
}

/// Aborts the watch tasks when the last [`PullSecrets`] handle is dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The pull secrets of a cluster scope, kept current by watches, as a [`CredentialSource`].
///
/// Cloning is cheap and shares the cache; the watches stop when the last clone is dropped.
/// `Debug` shows secret names only, never their contents.
#[derive(Clone)]
pub struct PullSecrets {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl PullSecrets {
    /// Watches the pull secrets of every namespace. Must be called within a Tokio runtime.
    pub fn all_namespaces(client: Client) -> Self {
        Self::start(client, vec![None])
    }

    /// Watches the pull secrets of the given namespaces only (for a controller whose RBAC
    /// stops at them). Must be called within a Tokio runtime.
    pub fn in_namespaces<I, S>(client: Client, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = namespaces.into_iter().map(Into::into).collect();
        list.sort();
        list.dedup();
        Self::start(client, list.into_iter().map(Some).collect())
    }

    fn start(client: Client, namespaces: Vec<Option<String>>) -> Self {
        let mut keys = Vec::new();
        for namespace in namespaces {
            for format in [
                DockerConfigFormat::ConfigJson,
                DockerConfigFormat::Dockercfg,
            ] {
                keys.push(WatchKey {
                    namespace: namespace.clone(),
                    format,
                });
            }
        }
        let (synced, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            documents: RwLock::new(HashMap::new()),
            usage: RwLock::new(Usage::default()),
            warned: Mutex::new(HashSet::new()),
            synced,
            watches: keys.len(),
        });
        let tasks = keys
            .into_iter()
            .map(|key| tokio::spawn(run_watch(client.clone(), key, shared.clone())))
            .collect();
        PullSecrets {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        }
    }

    /// Waits until every watch has listed its secrets once, so that the cache holds every
    /// secret that existed when the watches started.
    pub async fn ready(&self) {
        let mut rx = self.shared.synced.subscribe();
        let want = self.shared.watches;
        // The sender lives in `shared`, which `self` holds: the wait cannot fail.
        let _ = rx.wait_for(|n| *n >= want).await;
    }

    /// Like [`ready`](Self::ready), giving up after `timeout`; whether the cache is synced.
    pub async fn ready_within(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.ready()).await.is_ok()
    }

    /// Records that `user` (a tracked image id, say) runs the repository of `image` and pulls
    /// it with `secrets`, in order of preference. Replaces what `user` was recorded with.
    pub fn set_usage<I, S>(&self, user: &str, image: &ImageRef, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<SecretRef>,
    {
        let secrets: Vec<SecretRef> = secrets.into_iter().map(Into::into).collect();
        let mut usage = self.shared.usage.write().unwrap_or_else(|e| e.into_inner());
        if secrets.is_empty() {
            usage.by_user.remove(user);
        } else {
            usage
                .by_user
                .insert(user.to_owned(), (image.name(), secrets));
        }
    }

    /// Forgets what `user` was recorded with.
    pub fn remove_usage(&self, user: &str) {
        self.shared
            .usage
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .by_user
            .remove(user);
    }

    /// Replaces the whole usage map at once, e.g. after each discovery: one entry per user
    /// with the image it runs and its secrets.
    pub fn replace_usage<U, S>(&self, entries: U)
    where
        U: IntoIterator<Item = (String, ImageRef, Vec<S>)>,
        S: Into<SecretRef>,
    {
        let by_user = entries
            .into_iter()
            .filter(|(_, _, secrets)| !secrets.is_empty())
            .map(|(user, image, secrets)| {
                let secrets = secrets.into_iter().map(Into::into).collect();
                (user, (image.name(), secrets))
            })
            .collect();
        self.shared
            .usage
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .by_user = by_user;
    }

    /// The secrets recorded for the repository of `image`, in order of preference.
    pub fn secrets_for(&self, image: &ImageRef) -> Vec<SecretRef> {
        self.shared
            .usage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .secrets_for(&image.name())
    }

    /// The document of one cached secret, if it exists and is a pull secret of the scope.
    pub fn document(&self, secret: &SecretRef) -> Option<DockerConfigDocument> {
        self.shared
            .documents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(secret)
            .cloned()
    }

    /// The names of every cached pull secret, sorted.
    pub fn cached(&self) -> Vec<SecretRef> {
        let mut names: Vec<SecretRef> = self
            .shared
            .documents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }
}

impl CredentialSource for PullSecrets {
    fn docker_configs(&self, image: &ImageRef) -> Vec<DockerConfigDocument> {
        let wanted = self.secrets_for(image);
        if wanted.is_empty() {
            return Vec::new();
        }
        let docs = self
            .shared
            .documents
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(wanted.len());
        for secret in wanted {
            match docs.get(&secret) {
                Some(doc) => out.push(doc.clone()),
                None => {
                    let mut warned = self.shared.warned.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.insert(secret.clone()) {
                        tracing::warn!(
                            secret = %secret,
                            image = %image.name(),
                            "pull secret {secret} for {} not found (or not of type {DOCKER_CONFIG_JSON_TYPE} \
                             or {DOCKERCFG_TYPE}); skipped",
                            image.name()
                        );
                    }
                }
            }
        }
        out
    }
}

impl fmt::Debug for PullSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let synced = *self.shared.synced.borrow();
        f.debug_struct("PullSecrets")
            .field("cached", &self.cached())
            .field("synced_watches", &synced)
            .field("watches", &self.shared.watches)
            .finish_non_exhaustive()
    }
}

fn secret_ref(secret: &Secret) -> Option<SecretRef> {
    Some(SecretRef::new(
        secret.metadata.namespace.clone()?,
        secret.metadata.name.clone()?,
    ))
}

/// The Docker credentials document a pull secret holds under the data key of `format`
/// (`.dockerconfigjson` or `.dockercfg`), named `secret <namespace>/<name>` for messages, as
/// [`PullSecrets`] reads it; parse it with the registry backend (`keel_registry`'s
/// `DockerConfig::from_document`).
///
/// `None`, with a warning naming the secret and what is wrong but never its contents, when
/// the secret has no namespace or name, lacks the key, or holds something other than a JSON
/// object there.
pub fn document_of(
    secret: &Secret,
    format: DockerConfigFormat,
) -> Option<(SecretRef, DockerConfigDocument)> {
    let key = secret_ref(secret)?;
    let data_key = match format {
        DockerConfigFormat::ConfigJson => ".dockerconfigjson",
        DockerConfigFormat::Dockercfg => ".dockercfg",
    };
    let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(data_key)) else {
        tracing::warn!(secret = %key, "pull secret {key} has no {data_key} key; skipped");
        return None;
    };
    let Ok(text) = std::str::from_utf8(&bytes.0) else {
        tracing::warn!(secret = %key, "pull secret {key}: {data_key} is not UTF-8; skipped");
        return None;
    };
    if serde_json::from_str::<serde_json::Value>(text)
        .map(|v| !v.is_object())
        .unwrap_or(true)
    {
        tracing::warn!(secret = %key, "pull secret {key}: {data_key} is not a JSON object; skipped");
        return None;
    }
    let doc = DockerConfigDocument {
        origin: format!("secret {key}"),
        format,
        json: Arc::from(text),
    };
    Some((key, doc))
}

async fn run_watch(client: Client, key: WatchKey, shared: Arc<Shared>) {
    let api: Api<Secret> = match &key.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let secret_type = match key.format {
        DockerConfigFormat::ConfigJson => DOCKER_CONFIG_JSON_TYPE,
        DockerConfigFormat::Dockercfg => DOCKERCFG_TYPE,
    };
    let config = watcher::Config::default().fields(&format!("type={secret_type}"));
    let scope = key
        .namespace
        .as_deref()
        .unwrap_or("all namespaces")
        .to_owned();
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer: HashMap<SecretRef, DockerConfigDocument> = HashMap::new();
    let mut first_sync = true;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(secret)) => {
                if let Some((k, doc)) = document_of(&secret, key.format) {
                    buffer.insert(k, doc);
                }
            }
            Ok(Event::InitDone) => {
                let fresh = std::mem::take(&mut buffer);
                tracing::debug!(scope = %scope, secret_type, count = fresh.len(), "pull secrets listed");
                shared.replace_all(&key, fresh);
                if first_sync {
                    first_sync = false;
                    shared.synced.send_modify(|n| *n += 1);
                }
            }
            Ok(Event::Apply(secret)) => match document_of(&secret, key.format) {
                Some((k, doc)) => {
                    tracing::debug!(secret = %k, "pull secret changed");
                    shared.insert(k, doc);
                }
                None => {
                    if let Some(k) = secret_ref(&secret) {
                        shared.remove(&k);
                    }
                }
            },
            Ok(Event::Delete(secret)) => {
                if let Some(k) = secret_ref(&secret) {
                    tracing::debug!(secret = %k, "pull secret deleted");
                    shared.remove(&k);
                }
            }
            Err(e) => {
                tracing::warn!(scope = %scope, secret_type, error = %e, "watch of pull secrets failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn secret(ns: &str, name: &str, key: &str, value: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn documents_are_read_from_the_format_key() {
        let s = secret("prod", "regcred", ".dockerconfigjson", r#"{"auths":{}}"#);
        let (k, doc) = document_of(&s, DockerConfigFormat::ConfigJson).unwrap();
        assert_eq!(k, SecretRef::new("prod", "regcred"));
        assert_eq!(doc.origin, "secret prod/regcred");
        assert_eq!(&*doc.json, r#"{"auths":{}}"#);
        assert!(document_of(&s, DockerConfigFormat::Dockercfg).is_none());
        let bad = secret("prod", "bad", ".dockercfg", "not json");
        assert!(document_of(&bad, DockerConfigFormat::Dockercfg).is_none());
    }

    #[test]
    fn usage_merges_users_of_a_repository_without_duplicates() {
        let mut usage = Usage::default();
        let a = SecretRef::new("ns", "a");
        let b = SecretRef::new("ns", "b");
        usage.by_user.insert(
            "u2".into(),
            ("docker.io/x/y".into(), vec![b.clone(), a.clone()]),
        );
        usage
            .by_user
            .insert("u1".into(), ("docker.io/x/y".into(), vec![a.clone()]));
        usage.by_user.insert(
            "u3".into(),
            ("docker.io/x/z".into(), vec![SecretRef::new("ns", "c")]),
        );
        assert_eq!(usage.secrets_for("docker.io/x/y"), vec![a, b]);
        assert!(usage.secrets_for("docker.io/other").is_empty());
    }

    #[test]
    fn watch_keys_cover_their_scope_and_type_only() {
        let key = WatchKey {
            namespace: Some("prod".into()),
            format: DockerConfigFormat::ConfigJson,
        };
        assert!(key.covers(&SecretRef::new("prod", "x"), DockerConfigFormat::ConfigJson));
        assert!(!key.covers(&SecretRef::new("dev", "x"), DockerConfigFormat::ConfigJson));
        assert!(!key.covers(&SecretRef::new("prod", "x"), DockerConfigFormat::Dockercfg));
        let all = WatchKey {
            namespace: None,
            format: DockerConfigFormat::Dockercfg,
        };
        assert!(all.covers(&SecretRef::new("dev", "x"), DockerConfigFormat::Dockercfg));
    }
}
