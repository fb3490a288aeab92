//! What the Kubernetes backends share: the namespaces they read ([`NamespaceScope`], used by
//! the workload target here, keel-helm, keel-flux and keel-argocd) and listing them
//! ([`list_in`], [`sort_by_name`], used by keel-flux and keel-argocd); and, for targets built
//! on watches (the workload caches here, Helm's storage in keel-helm), the health of their
//! watches, waiting for their initial lists, and discovery from what they scanned in their
//! caches.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keel_core::target::TrackedImage;
use keel_core::{Error, ImageRef};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::watcher;
use kube::{Client, Resource};
use tracing::{Instrument as _, info_span};

use crate::error::{self as kerr, Request};
use crate::keys::Problem;
use crate::secrets::{PullSecrets, SecretRef};

/// What a target waits on: one watch of one resource in one namespace (or all).
pub trait SyncState {
    /// Whether its initial list has arrived.
    fn is_ready(&self) -> bool;
    /// Its last error, and whether waiting longer cannot help.
    fn error(&self) -> Option<(Error, bool)>;
    /// The resource watched (plural), e.g. `deployments`.
    fn resource(&self) -> &str;
    /// The namespace watched; `None`: all namespaces.
    fn namespace(&self) -> Option<&str>;
}

/// Which namespaces a backend reads: all of them (one cluster-wide watch or listing per
/// resource), or a list (one per namespace and resource, for RBAC that grants Roles rather
/// than a ClusterRole).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct NamespaceScope(Option<Vec<String>>);

impl NamespaceScope {
    /// Every namespace (the default).
    pub fn all() -> Self {
        NamespaceScope(None)
    }

    /// Only `namespaces`, each once, in the order given.
    pub fn only<I, S>(namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = Vec::new();
        for ns in namespaces.into_iter().map(Into::into) {
            if !list.contains(&ns) {
                list.push(ns);
            }
        }
        NamespaceScope(Some(list))
    }

    /// The namespaces listed; `None` for all.
    pub fn list(&self) -> Option<&[String]> {
        self.0.as_deref()
    }

    /// Whether objects in `namespace` are in scope.
    pub fn contains(&self, namespace: &str) -> bool {
        self.list()
            .is_none_or(|list| list.iter().any(|ns| ns == namespace))
    }

    /// Checks a list before any watch or listing starts: an empty list, or an empty name in
    /// it, would read nothing and is refused ([`Error::InvalidInput`] naming the list).
    pub fn check(&self) -> Result<(), Error> {
        match self.list() {
            Some(list) if list.is_empty() || list.iter().any(|ns| ns.trim().is_empty()) => {
                Err(keel_core::ParseError::new(
                    "namespace list",
                    list.join(","),
                    "name at least one namespace, none of them empty",
                )
                .into())
            }
            _ => Ok(()),
        }
    }

    /// The namespace of each watch to start: `None` for one over all namespaces.
    pub fn watched(&self) -> Vec<Option<&str>> {
        match self.list() {
            None => vec![None],
            Some(list) => list.iter().map(|ns| Some(ns.as_str())).collect(),
        }
    }

    /// Every object of `resource` that `params` selects in the scope, listed namespace by
    /// namespace ([`list_in`] each of [`watched`](Self::watched)), in the order listed.
    ///
    /// # Errors
    /// [`check`](Self::check)'s for a list that names nothing, before any request; else that
    /// of the first listing that fails, and the namespaces after it are not listed.
    pub async fn list_objects(
        &self,
        client: &Client,
        resource: &ApiResource,
        params: &ListParams,
    ) -> Result<Vec<DynamicObject>, Error> {
        self.check()?;
        let mut objects = Vec::new();
        for namespace in self.watched() {
            objects.extend(list_in(client, resource, namespace, params).await?);
        }
        Ok(objects)
    }
}

/// Every object of `resource` that `params` selects in `namespace` (`None`: in all
/// namespaces): one listing of a [`NamespaceScope`], for callers that go on to the next
/// namespace when one fails.
///
/// # Errors
/// The API server's error as [`crate::error::from_kube`] maps it, naming the request (`list
/// imagepolicies in namespace apps`); a resource the server does not serve is
/// [`Error::NotFound`].
pub async fn list_in(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<DynamicObject>, Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let list = api.list(params).await.map_err(|e| {
        kerr::from_kube(
            e,
            &Request {
                verb: "list",
                resource: &resource.plural,
                namespace,
                name: None,
            },
        )
    })?;
    Ok(list.items)
}

/// Sorts `objects` by namespace and name: the order in which a pass over listed objects works
/// and reports, whatever order the namespaces were listed in.
pub fn sort_by_name<K: Resource>(objects: &mut [K]) {
    objects.sort_by(|a, b| {
        let (a, b) = (a.meta(), b.meta());
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
}

impl std::fmt::Debug for NamespaceScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.list() {
            None => f.write_str("All"),
            Some(list) => f.debug_tuple("Namespaces").field(&list).finish(),
        }
    }
}

/// The settings every target built on watches shares ([`KubeTarget`](crate::KubeTarget)'s and
/// keel-helm's `HelmTarget`'s): its name, the namespaces it watches, whether its updates pin
/// digests, how long its first discovery waits for the watches, and where it records the pull
/// secrets of the images it tracks. Each target's builder has its own setters for them, documented
/// for its backend.
#[derive(Clone, derive_more::Debug)]
pub struct WatchSettings {
    name: String,
    scope: NamespaceScope,
    pin_digests: bool,
    sync_timeout: Duration,
    #[debug(skip)]
    pull_secrets: Option<PullSecrets>,
}

impl WatchSettings {
    /// The defaults of a target named `name`: every namespace, tags without digests, 60 s for
    /// the first discovery, no pull secrets recorded.
    pub fn new(name: impl Into<String>) -> Self {
        WatchSettings {
            name: name.into(),
            scope: NamespaceScope::all(),
            pin_digests: false,
            sync_timeout: Duration::from_secs(60),
            pull_secrets: None,
        }
    }

    /// Sets the target's name in plans, reports and notifications.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Sets the namespaces watched (default: all).
    pub fn set_scope(&mut self, scope: NamespaceScope) {
        self.scope = scope;
    }

    /// Sets whether updates write the digest of the plan with its tag, so that exactly the
    /// approved image runs even if its tag moves (default false: the tag only).
    pub fn set_pin_digests(&mut self, pin: bool) {
        self.pin_digests = pin;
    }

    /// Sets how long the first discovery waits for the watches' initial lists (default 60 s).
    pub fn set_sync_timeout(&mut self, timeout: Duration) {
        self.sync_timeout = timeout;
    }

    /// Records, at every discovery, which pull secrets each tracked image is pulled with in
    /// `secrets`, so that a registry client given `secrets` as its
    /// [`CredentialSource`](keel_core::CredentialSource) uses them.
    pub fn set_pull_secrets(&mut self, secrets: PullSecrets) {
        self.pull_secrets = Some(secrets);
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespaces watched.
    pub fn scope(&self) -> &NamespaceScope {
        &self.scope
    }

    /// Whether updates pin digests.
    pub fn pin_digests(&self) -> bool {
        self.pin_digests
    }

    /// How long the first discovery waits for the watches' initial lists.
    pub fn sync_timeout(&self) -> Duration {
        self.sync_timeout
    }

    /// [`Target::discover`](keel_core::Target::discover) of the target: runs `scan` in a
    /// `discover` span naming the target, records the pull secrets it found (when the target
    /// was given some, [`set_pull_secrets`](Self::set_pull_secrets)) and returns the tracked
    /// images.
    ///
    /// # Errors
    /// The error of `scan`.
    pub async fn discover<I>(
        &self,
        scan: impl Future<Output = Result<Scan<I>, Error>>,
    ) -> Result<Vec<TrackedImage>, Error> {
        let scan = scan
            .instrument(info_span!("discover", target_name = %self.name))
            .await?;
        if let Some(secrets) = &self.pull_secrets {
            secrets.replace_usage(scan.pull_secrets);
        }
        Ok(scan.tracked.into_iter().map(|(t, _)| t).collect())
    }
}

/// The health of one watch, shared between its task (which records it) and the target
/// (which reads it through [`SyncState`]).
#[derive(Debug, Default)]
pub struct WatchHealth {
    ready: AtomicBool,
    last_error: Mutex<Option<watcher::Error>>,
}

impl WatchHealth {
    /// Records that the initial list has arrived.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the initial list has arrived.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records the outcome of the last event: `None` after a good one.
    pub fn set_error(&self, error: Option<watcher::Error>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// The last error of the watch of `resource` in `namespace` as a keel error, and whether
    /// waiting longer cannot help (see [`kerr::from_watcher`]).
    pub fn error(&self, resource: &str, namespace: Option<&str>) -> Option<(Error, bool)> {
        let guard = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        let error = guard.as_ref()?;
        Some(kerr::from_watcher(error, resource, namespace))
    }
}

/// Waits until every one of `watches` has its initial list, checking every 20 ms; fails at
/// once on a watch that cannot succeed (refused by RBAC, a missing resource), and after
/// `timeout` on one that has not, naming it and its last error.
///
/// # Errors
/// The fatal watch's error; [`Error::Backend`] (retryable) on the timeout.
pub async fn wait_synced<W: SyncState + ?Sized>(
    watches: &[&W],
    timeout: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let mut pending = Vec::new();
        for watch in watches {
            if watch.is_ready() {
                continue;
            }
            match watch.error() {
                Some((error, true)) => return Err(error),
                other => pending.push((watch, other.map(|(e, _)| e))),
            }
        }
        let Some((watch, last_error)) = pending.into_iter().next() else {
            return Ok(());
        };
        if started.elapsed() >= timeout {
            let scope = watch.namespace().map_or_else(
                || "all namespaces".to_owned(),
                |ns| format!("namespace {ns}"),
            );
            return Err(Error::Backend {
                backend: kerr::BACKEND.to_owned(),
                action: format!("sync the cache of {} in {scope}", watch.resource()),
                message: match last_error {
                    Some(e) => format!(
                        "no initial list after {}s; last error: {e}",
                        timeout.as_secs()
                    ),
                    None => format!("no initial list after {}s", timeout.as_secs()),
                },
                retryable: true,
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a target found in its caches: each tracked image with what the target needs to update
/// it (`I`), the problems, and each tracked image's pull secrets.
#[derive(Debug)]
pub struct Scan<I> {
    /// The tracked images, each with where it is written.
    pub tracked: Vec<(TrackedImage, I)>,
    /// What could not be tracked, and why.
    pub problems: Vec<Problem>,
    /// Each tracked image's pull secrets, `(id, image, secrets)`, for
    /// [`PullSecrets::replace_usage`]; only images that have some.
    pub pull_secrets: Vec<(String, ImageRef, Vec<SecretRef>)>,
}

impl<I> Default for Scan<I> {
    fn default() -> Self {
        Scan {
            tracked: Vec::new(),
            problems: Vec::new(),
            pull_secrets: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_testsupport::kube::unreachable_client;

    use super::*;

    /// Checked on its own, and by a listing before any request (the client reaches no
    /// server, so a request would fail otherwise).
    #[tokio::test]
    async fn a_list_that_watches_nothing_is_refused_naming_the_list() {
        assert!(NamespaceScope::all().check().is_ok());
        assert!(NamespaceScope::only(["shop", "web"]).check().is_ok());
        let client = unreachable_client();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        for list in [&[][..], &[""], &["shop", " "]] {
            let scope = NamespaceScope::only(list.iter().copied());
            let listed = scope
                .list_objects(&client, &resource, &ListParams::default())
                .await;
            for (way, error) in [
                ("check", scope.check().unwrap_err()),
                ("list", listed.unwrap_err()),
            ] {
                assert!(
                    matches!(error, Error::InvalidInput(_)),
                    "{way} {list:?}: {error:?}"
                );
                assert!(
                    error.to_string().contains("namespace list"),
                    "{way}: {error}"
                );
            }
        }
    }

    #[test]
    fn only_keeps_each_namespace_once_in_the_order_given() {
        let scope = NamespaceScope::only(["web", "shop", "web"]);
        assert_eq!(
            scope.list(),
            Some(&["web".to_owned(), "shop".to_owned()][..])
        );
        assert_eq!(scope.watched(), [Some("web"), Some("shop")]);
        assert_eq!(NamespaceScope::all().watched(), [None]);
    }

    fn object(namespace: Option<&str>, name: &str) -> DynamicObject {
        let mut object = DynamicObject::new(
            name,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        object.metadata.namespace = namespace.map(str::to_owned);
        object
    }

    #[test]
    fn objects_sort_by_namespace_then_name() {
        let mut objects = vec![
            object(Some("web"), "a"),
            object(Some("shop"), "b"),
            object(Some("shop"), "a"),
            object(None, "z"),
        ];
        sort_by_name(&mut objects);
        let order: Vec<_> = objects
            .iter()
            .map(|o| (o.metadata.namespace.as_deref(), o.metadata.name.as_deref()))
            .collect();
        assert_eq!(
            order,
            [
                (None, Some("z")),
                (Some("shop"), Some("a")),
                (Some("shop"), Some("b")),
                (Some("web"), Some("a")),
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_listing_names_the_request() {
        let client = unreachable_client();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let params = ListParams::default();
        for (namespace, action) in [
            (Some("shop"), "list configmaps in namespace shop"),
            (None, "list configmaps in all namespaces"),
        ] {
            let error = list_in(&client, &resource, namespace, &params)
                .await
                .unwrap_err();
            assert!(
                matches!(&error, Error::Backend { action: a, retryable: true, .. } if a == action),
                "{namespace:?}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_scope_stops_at_its_first_failed_listing() {
        let client = unreachable_client();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let error = NamespaceScope::only(["shop", "web"])
            .list_objects(&client, &resource, &ListParams::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Backend { action, .. } if action == "list configmaps in namespace shop"),
            "{error:?}"
        );
    }
}
