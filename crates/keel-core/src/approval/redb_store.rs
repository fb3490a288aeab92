//! An [`ApprovalStore`] in one embedded redb database file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    ApprovalFilter, ApprovalRequest, ApprovalStore, AuditEntry, AuditQuery, select_requests,
};
use crate::error::{Error, Result};

/// Requests by id, as JSON.
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("approval_requests");
/// Audit entries by sequence number, as JSON.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("approval_audit");

/// Approval requests and their audit log in one [redb](https://docs.rs/redb) database file:
/// embedded, transactional, crash-safe, with no server to run. Pending approvals and the
/// audit log survive restarts.
///
/// Every operation is one short transaction, committed durably before it returns; `update`
/// runs its closure inside the write transaction, so concurrent updates are serialized. One
/// process at a time may open the file.
///
/// ```
/// use keel_core::approval::{ApprovalFilter, ApprovalStore, RedbApprovalStore};
///
/// # futures::executor::block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = RedbApprovalStore::open(dir.path().join("approvals.redb")).unwrap();
/// assert!(store.list(&ApprovalFilter::default()).await.unwrap().is_empty());
/// # });
/// ```
#[derive(derive_more::Debug)]
pub struct RedbApprovalStore {
    #[debug(skip)]
    name: String,
    path: PathBuf,
    #[debug(skip)]
    db: Database,
}

impl RedbApprovalStore {
    /// Opens the database at `path`, creating the file (not its directory) if it does not
    /// exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let name = format!("redb approvals {}", path.display());
        let db = Database::create(&path).map_err(|e| backend(&name, "open the database", e))?;
        let store = RedbApprovalStore { name, path, db };
        // Create both tables up front, so readers never meet a missing table.
        let txn = store.write("create the tables")?;
        txn.open_table(REQUESTS)
            .map_err(|e| store.err("create the requests table", e))?;
        txn.open_table(AUDIT)
            .map_err(|e| store.err("create the audit table", e))?;
        txn.commit()
            .map_err(|e| store.err("create the tables", e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, action: &str, e: impl Into<redb::Error>) -> Error {
        backend(&self.name, action, e)
    }

    fn write(&self, action: &str) -> Result<redb::WriteTransaction> {
        self.db.begin_write().map_err(|e| self.err(action, e))
    }

    fn read(&self, action: &str) -> Result<redb::ReadTransaction> {
        self.db.begin_read().map_err(|e| self.err(action, e))
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| {
            self.record_error(format!("read {what}"), "the stored record is unreadable", e)
        })
    }

    fn encode<T: serde::Serialize>(&self, what: &str, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value)
            .map_err(|e| self.record_error(format!("write {what}"), "cannot encode the record", e))
    }

    /// A record that cannot be read or written: no retry helps.
    fn record_error(&self, action: String, problem: &str, e: serde_json::Error) -> Error {
        Error::Backend {
            backend: self.name.clone(),
            action,
            message: format!("{problem}: {e}"),
            retryable: false,
            source: Some(Arc::new(e)),
        }
    }
}

fn backend(name: &str, action: &str, e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    Error::Backend {
        backend: name.to_owned(),
        action: action.to_owned(),
        message: e.to_string(),
        retryable: matches!(e, redb::Error::DatabaseAlreadyOpen),
        source: Some(Arc::new(e)),
    }
}

// Each method runs its transaction to completion without awaiting, so no transaction is
// ever held across an await point.
#[async_trait]
impl ApprovalStore for RedbApprovalStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>> {
        let action = format!("read approval request {id}");
        let txn = self.read(&action)?;
        let table = txn.open_table(REQUESTS).map_err(|e| self.err(&action, e))?;
        let found = table.get(id).map_err(|e| self.err(&action, e))?;
        found
            .map(|v| self.decode(&format!("approval request {id}"), v.value()))
            .transpose()
    }

    async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRequest>> {
        let action = "list approval requests";
        let txn = self.read(action)?;
        let table = txn.open_table(REQUESTS).map_err(|e| self.err(action, e))?;
        let rows = table.iter().map_err(|e| self.err(action, e))?.map(|row| {
            let (key, value) = row.map_err(|e| self.err(action, e))?;
            self.decode(&format!("approval request {}", key.value()), value.value())
        });
        select_requests(rows, filter)
    }

    async fn update(
        &self,
        id: &str,
        f: &mut (dyn FnMut(Option<ApprovalRequest>) -> Result<Option<ApprovalRequest>> + Send),
    ) -> Result<Option<ApprovalRequest>> {
        let action = format!("update approval request {id}");
        let what = format!("approval request {id}");
        let txn = self.write(&action)?;
        let next = {
            let mut table = txn.open_table(REQUESTS).map_err(|e| self.err(&action, e))?;
            let current = table
                .get(id)
                .map_err(|e| self.err(&action, e))?
                .map(|v| self.decode::<ApprovalRequest>(&what, v.value()))
                .transpose()?;
            // An error here drops the transaction, which aborts it: nothing is stored.
            let next = f(current)?;
            match &next {
                Some(r) => {
                    let bytes = self.encode(&what, r)?;
                    table
                        .insert(id, bytes.as_slice())
                        .map_err(|e| self.err(&action, e))?;
                }
                None => {
                    table.remove(id).map_err(|e| self.err(&action, e))?;
                }
            }
            next
        };
        txn.commit().map_err(|e| self.err(&action, e))?;
        Ok(next)
    }

    async fn append_audit(&self, mut entry: AuditEntry) -> Result<u64> {
        let action = "append to the audit log";
        let txn = self.write(action)?;
        let seq = {
            let mut table = txn.open_table(AUDIT).map_err(|e| self.err(action, e))?;
            let last = table
                .last()
                .map_err(|e| self.err(action, e))?
                .map_or(0, |(k, _)| k.value());
            entry.seq = last + 1;
            let bytes = self.encode("an audit entry", &entry)?;
            table
                .insert(entry.seq, bytes.as_slice())
                .map_err(|e| self.err(action, e))?;
            entry.seq
        };
        txn.commit().map_err(|e| self.err(action, e))?;
        Ok(seq)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let action = "read the audit log";
        let txn = self.read(action)?;
        let table = txn.open_table(AUDIT).map_err(|e| self.err(action, e))?;
        let start = query.since_seq.map_or(0, |s| s.saturating_add(1));
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        if limit == 0 || query.since_seq == Some(u64::MAX) {
            return Ok(found);
        }
        for row in table.range(start..).map_err(|e| self.err(action, e))? {
            let (key, value) = row.map_err(|e| self.err(action, e))?;
            let entry: AuditEntry =
                self.decode(&format!("audit entry {}", key.value()), value.value())?;
            if entry.matches(query) {
                found.push(entry);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }
}
