//! An [`ApprovalStore`] kept in ConfigMaps, so that controller replicas share approval
//! requests and the audit log through the API server they already talk to.
//!
//! Layout in the store's namespace (`<prefix>` is `keel` unless set with
//! [`KubeApprovalStore::with_prefix`]):
//!
//! | ConfigMap | holds |
//! |---|---|
//! | `<prefix>-approval-<id>` | one request, as JSON under `request.json`; ids that are not valid object names are hashed (`<prefix>-approvalx-<sha256>`) |
//! | `<prefix>-audit-head` | the newest audit entries (`entries.json`) and the last sequence number (`lastSeq`) |
//! | `<prefix>-audit-<first seq>` | older audit entries, moved out of the head in chunks |
//!
//! Every write carries the `resourceVersion` it was computed from, so concurrent replicas
//! never lose an update: a request's read-modify-write retries on `409 Conflict`, and an
//! audit entry gets its sequence number in the same atomic write that stores it (numbers
//! are never reused, and no reader sees entry `n + 1` before entry `n`). Labels carry the
//! state and hashes of the target and tracked image id, so `list` asks the API server only
//! for the requests a filter can match.
//!
//! # Whom the store trusts
//! The store trusts the RBAC of its namespace: anyone who may create, update or delete
//! ConfigMaps there can forge votes, approve or delete requests and rewrite the audit log,
//! without going through the approvals API and its roles. So grant ConfigMap writes in that
//! namespace to the controller's ServiceAccount alone (the manifests of
//! `examples/keel-controller/deploy` do, and a test checks it), keep the namespace for the
//! controller, and treat read access as read access to the audit log.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), keel_core::Error> {
//! use std::sync::Arc;
//! use keel_core::approval::Approvals;
//! use keel_k8s::KubeApprovalStore;
//!
//! let store = KubeApprovalStore::new(client, "keel");
//! let approvals = Approvals::new(Arc::new(store));
//! println!("{} pending", approvals.pending().await?);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalStore, AuditEntry, AuditQuery, select_requests,
};
use keel_core::retry::Backoff;
use keel_core::{Error, ParseError};
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use sha2::{Digest as _, Sha256};

use crate::error::{BACKEND, Request, from_kube, is_conflict};

/// The label every object of a store carries, with the store's prefix as value.
pub const STORE_LABEL: &str = "keel.sh/approval-store";
/// The label telling requests (`request`), the audit head (`audit-head`) and audit chunks
/// (`audit-chunk`) apart.
pub const KIND_LABEL: &str = "keel.sh/approval-object";
/// The label holding a request's state.
pub const STATE_LABEL: &str = "keel.sh/approval-state";
/// The label holding a hash of a request's target.
pub const TARGET_LABEL: &str = "keel.sh/approval-target";
/// The label holding a hash of a request's tracked image id.
pub const IMAGE_LABEL: &str = "keel.sh/approval-image";

const REQUEST_KEY: &str = "request.json";
const ENTRIES_KEY: &str = "entries.json";
const LAST_SEQ_KEY: &str = "lastSeq";
const ID_ANNOTATION: &str = "keel.sh/approval-id";

/// How many entries the audit head holds before they move to a chunk of their own.
const HEAD_ENTRIES: usize = 256;
/// How many bytes of JSON the audit head holds before they move (ConfigMaps stop at 1 MiB).
const HEAD_BYTES: usize = 256 * 1024;
/// How many times a write is retried after a conflicting one before giving up.
const MAX_ATTEMPTS: u32 = 100;

/// Approval requests and the audit log in ConfigMaps of one namespace.
///
/// The client needs `get`, `list`, `create`, `update` and `delete` on `configmaps` in that
/// namespace.
#[derive(Clone, derive_more::Debug)]
pub struct KubeApprovalStore {
    #[debug(skip)]
    api: Api<ConfigMap>,
    namespace: String,
    prefix: String,
    #[debug(skip)]
    name: String,
}

impl KubeApprovalStore {
    /// A store in `namespace` with the object-name prefix `keel`.
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        KubeApprovalStore {
            api: Api::namespaced(client, &namespace),
            name: format!("kubernetes approvals in namespace {namespace}"),
            namespace,
            prefix: "keel".into(),
        }
    }

    /// Uses `prefix` for object names and the [`STORE_LABEL`] value, so that several
    /// independent stores can share a namespace.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] unless `prefix` is 1 to 40 lower-case letters, digits and
    /// `-`, starting and ending with a letter or digit.
    pub fn with_prefix(self, prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        let valid_chars = prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let valid_ends = !prefix.starts_with('-') && !prefix.ends_with('-');
        if prefix.is_empty() || prefix.len() > 40 || !valid_chars || !valid_ends {
            return Err(ParseError::new(
                "approval store prefix",
                prefix,
                "must be 1 to 40 lower-case letters, digits and '-', starting and ending with \
                 a letter or digit",
            )
            .into());
        }
        Ok(KubeApprovalStore {
            name: format!(
                "kubernetes approvals in namespace {} (prefix {prefix})",
                self.namespace
            ),
            prefix,
            ..self
        })
    }

    /// The namespace holding the ConfigMaps.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ConfigMap name of request `id`.
    pub fn object_name(&self, id: &str) -> String {
        if is_object_name_part(id) {
            format!("{}-approval-{id}", self.prefix)
        } else {
            // A different infix, so a hashed name never equals a plain one.
            format!("{}-approvalx-{}", self.prefix, hash_hex(id, 40))
        }
    }

    fn head_name(&self) -> String {
        format!("{}-audit-head", self.prefix)
    }

    fn chunk_name(&self, first_seq: u64) -> String {
        format!("{}-audit-{first_seq:020}", self.prefix)
    }

    fn request<'a>(&'a self, verb: &'a str, name: Option<&'a str>) -> Request<'a> {
        Request {
            verb,
            resource: "configmaps",
            namespace: Some(&self.namespace),
            name,
        }
    }

    fn labels(&self, kind: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (STORE_LABEL.to_owned(), self.prefix.clone()),
            (KIND_LABEL.to_owned(), kind.to_owned()),
        ])
    }

    fn selector(&self, kind: &str) -> String {
        format!("{STORE_LABEL}={},{KIND_LABEL}={kind}", self.prefix)
    }

    fn request_object(
        &self,
        id: &str,
        request: &ApprovalRequest,
        resource_version: Option<String>,
    ) -> Result<ConfigMap, Error> {
        let json = serde_json::to_string(request).map_err(|e| self.encode_error(id, e))?;
        let mut labels = self.labels("request");
        labels.insert(STATE_LABEL.into(), request.state.as_str().into());
        labels.insert(TARGET_LABEL.into(), hash_hex(&request.plan.target, 40));
        labels.insert(IMAGE_LABEL.into(), hash_hex(&request.plan.id, 40));
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.object_name(id)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(ID_ANNOTATION.to_owned(), id.to_owned())])),
                resource_version,
                ..Default::default()
            },
            data: Some(BTreeMap::from([(REQUEST_KEY.to_owned(), json)])),
            ..Default::default()
        })
    }

    fn encode_error(&self, what: &str, e: serde_json::Error) -> Error {
        Error::backend(BACKEND, format!("encode {what} for {}", self.name), e)
    }

    fn decode_error(&self, object: &str, key: &str, e: impl fmt::Display) -> Error {
        Error::Backend {
            backend: BACKEND.into(),
            action: format!("read configmap {}/{object}", self.namespace),
            message: format!("{key} is not what {} wrote: {e}", self.name),
            retryable: false,
            source: None,
        }
    }

    /// The request stored in `object`, checked to be the one asked for.
    fn decode_request(&self, object: &ConfigMap) -> Result<ApprovalRequest, Error> {
        let name = object.name_any();
        let json = object
            .data
            .as_ref()
            .and_then(|d| d.get(REQUEST_KEY))
            .ok_or_else(|| self.decode_error(&name, REQUEST_KEY, "missing"))?;
        serde_json::from_str(json).map_err(|e| self.decode_error(&name, REQUEST_KEY, e))
    }

    async fn get_object(&self, name: &str) -> Result<Option<ConfigMap>, Error> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| from_kube(e, &self.request("get", Some(name))))
    }

    async fn list_objects(&self, selector: &str) -> Result<Vec<ConfigMap>, Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| from_kube(e, &self.request("list", None)))?;
        Ok(list.items)
    }

    fn entries_of(&self, object: &ConfigMap) -> Result<Vec<AuditEntry>, Error> {
        let name = object.name_any();
        match object.data.as_ref().and_then(|d| d.get(ENTRIES_KEY)) {
            Some(json) => {
                serde_json::from_str(json).map_err(|e| self.decode_error(&name, ENTRIES_KEY, e))
            }
            None => Ok(Vec::new()),
        }
    }

    fn last_seq_of(&self, object: &ConfigMap) -> Result<u64, Error> {
        let name = object.name_any();
        match object.data.as_ref().and_then(|d| d.get(LAST_SEQ_KEY)) {
            Some(text) => text
                .parse()
                .map_err(|e| self.decode_error(&name, LAST_SEQ_KEY, e)),
            None => Ok(0),
        }
    }

    fn audit_object(
        &self,
        name: String,
        kind: &str,
        entries: &[AuditEntry],
        last_seq: Option<u64>,
        resource_version: Option<String>,
    ) -> Result<ConfigMap, Error> {
        let json =
            serde_json::to_string(entries).map_err(|e| self.encode_error("audit entries", e))?;
        let mut data = BTreeMap::from([(ENTRIES_KEY.to_owned(), json)]);
        if let Some(seq) = last_seq {
            data.insert(LAST_SEQ_KEY.to_owned(), seq.to_string());
        }
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels(kind)),
                resource_version,
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        })
    }

    /// Moves the head's entries into a chunk of their own when the head is full. Safe to
    /// repeat after a crash between the two writes: the chunk's name is fixed by its first
    /// entry, and readers drop entries seen twice.
    async fn roll_head(
        &self,
        head: &ConfigMap,
        entries: &[AuditEntry],
        last_seq: u64,
    ) -> Result<(), Error> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let chunk_name = self.chunk_name(first.seq);
        let chunk = self.audit_object(chunk_name.clone(), "audit-chunk", entries, None, None)?;
        match self.api.create(&PostParams::default(), &chunk).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                // Made by an earlier attempt; make sure it holds at least these entries.
                let existing = self.get_object(&chunk_name).await?;
                let held = existing
                    .as_ref()
                    .map(|c| self.entries_of(c))
                    .transpose()?
                    .unwrap_or_default();
                if held.len() < entries.len() {
                    let mut replacement = chunk;
                    replacement.metadata.resource_version =
                        existing.and_then(|c| c.metadata.resource_version);
                    self.api
                        .replace(&chunk_name, &PostParams::default(), &replacement)
                        .await
                        .map_err(|e| from_kube(e, &self.request("update", Some(&chunk_name))))?;
                }
            }
            Err(e) => return Err(from_kube(e, &self.request("create", Some(&chunk_name)))),
        }
        let head_name = self.head_name();
        let emptied = self.audit_object(
            head_name.clone(),
            "audit-head",
            &[],
            Some(last_seq),
            head.metadata.resource_version.clone(),
        )?;
        match self
            .api
            .replace(&head_name, &PostParams::default(), &emptied)
            .await
        {
            // Someone appended meanwhile: the next append rolls again, and readers drop the
            // entries both the chunk and the head hold.
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(from_kube(e, &self.request("update", Some(&head_name)))),
        }
    }
}

/// Whether `id` can be used as is in an object name (DNS subdomain rules).
fn is_object_name_part(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && id
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !id.contains("..")
        && !id.contains("-.")
        && !id.contains(".-")
        && !id.starts_with('.')
}

/// The first `len` hex digits of the SHA-256 of `text` (a valid label value).
fn hash_hex(text: &str, len: usize) -> String {
    let mut hex = hex::encode(Sha256::digest(text.as_bytes()));
    hex.truncate(len);
    hex
}

/// The pause between optimistic retries after a conflict: short, growing with the attempt,
/// and fully jittered so that competing writers spread out.
const CONFLICT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(80));

async fn backoff(attempt: u32) {
    tokio::time::sleep(CONFLICT_BACKOFF.delay(attempt)).await;
}

#[async_trait]
impl ApprovalStore for KubeApprovalStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, Error> {
        match self.get_object(&self.object_name(id)).await? {
            Some(object) => Ok(Some(self.decode_request(&object)?)),
            None => Ok(None),
        }
    }

    async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRequest>, Error> {
        let mut selector = self.selector("request");
        if let Some(state) = filter.state {
            selector.push_str(&format!(",{STATE_LABEL}={}", state.as_str()));
        }
        if let Some(target) = &filter.target {
            selector.push_str(&format!(",{TARGET_LABEL}={}", hash_hex(target, 40)));
        }
        if let Some(id) = &filter.id {
            selector.push_str(&format!(",{IMAGE_LABEL}={}", hash_hex(id, 40)));
        }
        let objects = self.list_objects(&selector).await?;
        // Labels hold hashes: the exact comparison happens here.
        select_requests(objects.iter().map(|o| self.decode_request(o)), filter)
    }

    async fn update(
        &self,
        id: &str,
        f: &mut (
                 dyn FnMut(Option<ApprovalRequest>) -> Result<Option<ApprovalRequest>, Error> + Send
             ),
    ) -> Result<Option<ApprovalRequest>, Error> {
        let name = self.object_name(id);
        for attempt in 1..=MAX_ATTEMPTS {
            let object = self.get_object(&name).await?;
            let current = object
                .as_ref()
                .map(|o| self.decode_request(o))
                .transpose()?;
            let version = object.and_then(|o| o.metadata.resource_version);
            let next = f(current)?;
            let written = match (&version, &next) {
                (None, None) => return Ok(None),
                (None, Some(request)) => {
                    let object = self.request_object(id, request, None)?;
                    self.api
                        .create(&PostParams::default(), &object)
                        .await
                        .map(drop)
                        .map_err(|e| (e, "create"))
                }
                (Some(_), Some(request)) => {
                    let object = self.request_object(id, request, version.clone())?;
                    self.api
                        .replace(&name, &PostParams::default(), &object)
                        .await
                        .map(drop)
                        .map_err(|e| (e, "update"))
                }
                (Some(_), None) => {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions {
                            resource_version: version.clone(),
                            uid: None,
                        }),
                        ..DeleteParams::default()
                    };
                    // A 404 (deleted meanwhile) retries too: `f` decides again on the
                    // absent request.
                    self.api
                        .delete(&name, &params)
                        .await
                        .map(drop)
                        .map_err(|e| (e, "delete"))
                }
            };
            match written {
                Ok(()) => return Ok(next),
                Err((e, _))
                    if is_conflict(&e) || matches!(&e, kube::Error::Api(s) if s.code == 404) =>
                {
                    tracing::debug!(store = %self.name, id, attempt, "approval update conflicted; retrying");
                    backoff(attempt).await;
                }
                Err((e, verb)) => return Err(from_kube(e, &self.request(verb, Some(&name)))),
            }
        }
        Err(Error::Conflict {
            action: format!("update approval request {id} in {}", self.name),
            reason: format!("it kept changing under {MAX_ATTEMPTS} attempts"),
        })
    }

    async fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, Error> {
        let head_name = self.head_name();
        for attempt in 1..=MAX_ATTEMPTS {
            let head = self.get_object(&head_name).await?;
            let (mut entries, last_seq, version) = match &head {
                Some(h) => (
                    self.entries_of(h)?,
                    self.last_seq_of(h)?,
                    h.metadata.resource_version.clone(),
                ),
                None => (Vec::new(), 0, None),
            };
            if let Some(h) = &head {
                let size = h
                    .data
                    .as_ref()
                    .and_then(|d| d.get(ENTRIES_KEY))
                    .map_or(0, String::len);
                if entries.len() >= HEAD_ENTRIES || size >= HEAD_BYTES {
                    self.roll_head(h, &entries, last_seq).await?;
                    continue;
                }
            }
            // Entries rolled into a chunk but not yet cleared from the head stay here until
            // the next roll; the sequence counter is the larger of both.
            let seq = last_seq.max(entries.last().map_or(0, |e| e.seq)) + 1;
            entry.seq = seq;
            entries.push(entry.clone());
            let object = self.audit_object(
                head_name.clone(),
                "audit-head",
                &entries,
                Some(seq),
                version.clone(),
            )?;
            let written = match version {
                None => self
                    .api
                    .create(&PostParams::default(), &object)
                    .await
                    .map_err(|e| (e, "create")),
                Some(_) => self
                    .api
                    .replace(&head_name, &PostParams::default(), &object)
                    .await
                    .map_err(|e| (e, "update")),
            };
            match written {
                Ok(_) => return Ok(seq),
                Err((e, _)) if is_conflict(&e) => {
                    tracing::debug!(store = %self.name, attempt, "audit append conflicted; retrying");
                    backoff(attempt).await;
                }
                Err((e, verb)) => return Err(from_kube(e, &self.request(verb, Some(&head_name)))),
            }
        }
        Err(Error::Conflict {
            action: format!("append to the audit log in {}", self.name),
            reason: format!("the log kept changing under {MAX_ATTEMPTS} attempts"),
        })
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        let mut all: BTreeMap<u64, AuditEntry> = BTreeMap::new();
        // The head first, then the chunks: a roll in between copies the head's entries into a
        // chunk before it clears them from the head, so the chunk listing still has them
        // (entries read twice are kept once).
        let mut objects = Vec::new();
        if let Some(head) = self.get_object(&self.head_name()).await? {
            objects.push(head);
        }
        objects.extend(self.list_objects(&self.selector("audit-chunk")).await?);
        for object in &objects {
            for entry in self.entries_of(object)? {
                if entry.matches(query) {
                    all.entry(entry.seq).or_insert(entry);
                }
            }
        }
        Ok(all
            .into_values()
            .take(query.limit.unwrap_or(usize::MAX))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_object_names_are_hashed_apart() {
        assert!(is_object_name_part("0123abcd"));
        assert!(is_object_name_part("conformance-rt"));
        assert!(!is_object_name_part("Upper"));
        assert!(!is_object_name_part("under_score"));
        assert!(!is_object_name_part("trailing-"));
        assert!(!is_object_name_part(".dot"));
        assert!(!is_object_name_part(""));
        assert_eq!(hash_hex("x", 40).len(), 40);
        assert_ne!(hash_hex("a", 40), hash_hex("b", 40));
    }
}
