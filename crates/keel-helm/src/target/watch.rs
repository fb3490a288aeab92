//! The caches of Helm's storage objects that watches keep current: one per driver and
//! namespace (or all), holding per revision its status and, for the revisions discovery reads
//! (deployed and failed), the merged values; nothing else of a release is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use keel_core::Error;
use keel_k8s::sync::{SyncState, WatchHealth};
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug, info_span, warn};

use crate::release::{self, OWNER_SELECTOR, Status};
use crate::storage::{Driver, StorageObject, Stored};

/// What discovery needs of one revision.
#[derive(Debug)]
pub(crate) struct Revision {
    pub(crate) stored: Stored,
    /// The merged values of a deployed or failed revision (else `Null`), or why the release
    /// could not be read.
    pub(crate) values: Result<Value, String>,
    /// The chart, `name-version` (empty where not decoded).
    pub(crate) chart: String,
}

impl Revision {
    fn new(mut stored: Stored) -> Revision {
        let data = stored.data.take();
        let decoded = match stored.status {
            Status::Deployed | Status::Failed => match data {
                Some(data) => release::decode(&data).map(Some),
                None => Err("the storage object holds no `release` value".to_owned()),
            },
            _ => Ok(None),
        };
        let chart = match &decoded {
            Ok(Some(release)) => release.chart_label(),
            _ => String::new(),
        };
        let values = decoded.map(|r| r.map_or(Value::Null, |r| r.merged_values()));
        Revision {
            stored,
            values,
            chart,
        }
    }
}

/// The state one watch shares with its task.
#[derive(Debug, Default)]
pub(crate) struct WatchState {
    health: WatchHealth,
    /// By storage object name (unique within a namespace): `namespace/object`.
    revisions: Mutex<HashMap<String, Arc<Revision>>>,
}

/// One driver watched in one namespace (or all).
pub(crate) struct Watch {
    pub(crate) driver: Driver,
    pub(crate) namespace: Option<String>,
    pub(crate) state: Arc<WatchState>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// Starts watching `driver`'s objects labelled `owner=helm`.
    pub(crate) fn start(
        client: &kube::Client,
        driver: Driver,
        namespace: Option<String>,
        changes: tokio::sync::watch::Sender<()>,
    ) -> Watch {
        let state = Arc::new(WatchState::default());
        let span = info_span!(
            "watch helm releases",
            driver = driver.helm_name(),
            namespace = namespace.as_deref().unwrap_or("*")
        );
        let namespace_ref = namespace.as_deref();
        let task = match driver {
            Driver::Secret => spawn::<Secret>(client, namespace_ref, &state, changes, span),
            Driver::ConfigMap => spawn::<ConfigMap>(client, namespace_ref, &state, changes, span),
        };
        Watch {
            driver,
            namespace,
            state,
            task,
        }
    }

    /// Every revision in the cache.
    pub(crate) fn revisions(&self) -> Vec<Arc<Revision>> {
        self.state
            .revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl SyncState for Watch {
    fn is_ready(&self) -> bool {
        self.state.health.is_ready()
    }

    fn error(&self) -> Option<(Error, bool)> {
        self.state
            .health
            .error(self.driver.resource(), self.namespace.as_deref())
    }

    fn resource(&self) -> &str {
        self.driver.resource()
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

fn key(stored: &Stored) -> String {
    format!("{}/{}", stored.namespace, stored.object)
}

/// Starts the task that keeps `state` current from a watch of the `K` objects labelled
/// `owner=helm` in `namespace` (or all).
fn spawn<K: StorageObject>(
    client: &kube::Client,
    namespace: Option<&str>,
    state: &Arc<WatchState>,
    changes: tokio::sync::watch::Sender<()>,
    span: tracing::Span,
) -> JoinHandle<()> {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let state = Arc::clone(state);
    let config = watcher::Config::default()
        .labels(OWNER_SELECTOR)
        .any_semantic();
    let stream = watcher(api, config).default_backoff();
    tokio::spawn(
        async move {
            let mut stream = std::pin::pin!(stream);
            // A relist fills this, and replaces the cache when it is done.
            let mut relist: HashMap<String, Arc<Revision>> = HashMap::new();
            while let Some(event) = stream.next().await {
                let set_error = |e| state.health.set_error(e);
                let cache = || state.revisions.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Ok(watcher::Event::Init) => {
                        set_error(None);
                        relist.clear();
                    }
                    Ok(watcher::Event::InitApply(object)) => {
                        set_error(None);
                        if let Some(stored) = object.read() {
                            relist.insert(key(&stored), Arc::new(Revision::new(stored)));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        set_error(None);
                        *cache() = std::mem::take(&mut relist);
                        state.health.mark_ready();
                        debug!("cache synced");
                        changes.send_replace(());
                    }
                    Ok(watcher::Event::Apply(object)) => {
                        set_error(None);
                        if let Some(stored) = object.read() {
                            let revision = Arc::new(Revision::new(stored));
                            cache().insert(key(&revision.stored), revision);
                            changes.send_replace(());
                        }
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        set_error(None);
                        if let Some(stored) = object.read() {
                            cache().remove(&key(&stored));
                            changes.send_replace(());
                        }
                    }
                    Err(error) => {
                        warn!(%error, "watch failed; retrying with backoff");
                        set_error(Some(error));
                    }
                }
            }
        }
        .instrument(span),
    )
}
