//! The caches that watches keep current, one per kind and namespace.

use std::sync::Arc;

use keel_core::Error;
use kube::runtime::reflector::{self, Store};
use tokio::task::JoinHandle;

use crate::keys::ProblemLog;
use crate::sync::WatchHealth;
use crate::workload::{Workload, WorkloadKind, WorkloadView};

use super::*;

/// One kind watched in one namespace (or all).
pub(super) struct Watched<K: Workload> {
    pub(super) kind: WorkloadKind,
    pub(super) namespace: Option<String>,
    pub(super) store: Store<K>,
    pub(super) health: Arc<WatchHealth>,
    pub(super) task: JoinHandle<()>,
}

/// The type-erased face of a [`Watched`] cache.
pub(super) trait Cache: Send + Sync {
    fn kind(&self) -> WorkloadKind;
    fn namespace(&self) -> Option<&str>;
    fn is_ready(&self) -> bool;
    /// The last watch error as a keel error, and whether waiting longer cannot help.
    fn error(&self) -> Option<(Error, bool)>;
    fn views(&self) -> Vec<WorkloadView>;
    fn find(&self, namespace: &str, name: &str) -> Option<WorkloadView>;
    fn stop(&self);
}

impl crate::sync::SyncState for dyn Cache + '_ {
    fn is_ready(&self) -> bool {
        Cache::is_ready(self)
    }

    fn error(&self) -> Option<(Error, bool)> {
        Cache::error(self)
    }

    fn resource(&self) -> &str {
        self.kind().plural()
    }

    fn namespace(&self) -> Option<&str> {
        Cache::namespace(self)
    }
}

impl<K: Workload> Cache for Watched<K> {
    fn kind(&self) -> WorkloadKind {
        self.kind
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn is_ready(&self) -> bool {
        self.health.is_ready()
    }

    fn error(&self) -> Option<(Error, bool)> {
        self.health
            .error(self.kind.plural(), self.namespace.as_deref())
    }

    fn views(&self) -> Vec<WorkloadView> {
        self.store.state().iter().map(|o| o.view()).collect()
    }

    fn find(&self, namespace: &str, name: &str) -> Option<WorkloadView> {
        let key = reflector::ObjectRef::<K>::new(name).within(namespace);
        self.store.get(&key).map(|o| o.view())
    }

    fn stop(&self) {
        self.task.abort();
    }
}

pub(super) struct Inner {
    /// What the target was built with (its kinds: those the server serves).
    pub(super) settings: KubeTargetBuilder,
    pub(super) caches: Vec<Box<dyn Cache>>,
    /// Marked changed after each watch event that changed a cache.
    pub(super) changes: tokio::sync::watch::Sender<()>,
    /// The workloads the last discovery skipped.
    pub(super) problems: ProblemLog,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for cache in &self.caches {
            cache.stop();
        }
    }
}
