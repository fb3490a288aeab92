//! An [`ApprovalStore`] kept in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    ApprovalFilter, ApprovalRequest, ApprovalStore, AuditEntry, AuditQuery, select_requests,
};
use crate::error::Result;

/// Approval requests and the audit log in memory: for tests, examples and single-process
/// setups that accept losing pending approvals on restart.
///
/// ```
/// use keel_core::approval::{ApprovalStore, MemoryApprovalStore};
/// let store = MemoryApprovalStore::new();
/// assert_eq!(store.name(), "in-memory approvals");
/// ```
#[derive(Debug, Default)]
pub struct MemoryApprovalStore {
    name: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<String, ApprovalRequest>,
    audit: Vec<AuditEntry>,
    last_seq: u64,
}

impl MemoryApprovalStore {
    /// An empty store called `in-memory approvals`.
    pub fn new() -> Self {
        Self::named("in-memory approvals")
    }

    /// An empty store called `name` in messages.
    pub fn named(name: impl Into<String>) -> Self {
        MemoryApprovalStore {
            name: name.into(),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data stays consistent across a panic in `update`'s closure: it runs on a copy.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ApprovalStore for MemoryApprovalStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>> {
        Ok(self.lock().requests.get(id).cloned())
    }

    async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRequest>> {
        select_requests(self.lock().requests.values().cloned().map(Ok), filter)
    }

    async fn update(
        &self,
        id: &str,
        f: &mut (dyn FnMut(Option<ApprovalRequest>) -> Result<Option<ApprovalRequest>> + Send),
    ) -> Result<Option<ApprovalRequest>> {
        let mut inner = self.lock();
        let current = inner.requests.get(id).cloned();
        let next = f(current)?;
        match &next {
            Some(r) => {
                inner.requests.insert(id.to_owned(), r.clone());
            }
            None => {
                inner.requests.remove(id);
            }
        }
        Ok(next)
    }

    async fn append_audit(&self, mut entry: AuditEntry) -> Result<u64> {
        let mut inner = self.lock();
        inner.last_seq += 1;
        entry.seq = inner.last_seq;
        inner.audit.push(entry);
        Ok(inner.last_seq)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let inner = self.lock();
        Ok(inner
            .audit
            .iter()
            .filter(|e| e.matches(query))
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}
