//! Approvals: updates that wait for people to say yes.
//!
//! A tracked image that needs approvals (`keel.sh/approvals: "2"`) does not move when its
//! policy picks a new version. The update becomes an [`ApprovalRequest`], identified by the
//! target, the tracked image, the new image **and its digest**: a new push of the same tag is
//! a new request, and votes cast for the old content never approve the new one. Votes are per
//! voter (a second "approve" from the same person does not count twice), one reject vetoes,
//! and a request not approved by its deadline expires. When a newer version is requested for
//! the same tracked image, older pending requests are superseded.
//!
//! The pieces:
//! - [`ApprovalStore`]: where requests and the audit log live. [`MemoryApprovalStore`] keeps
//!   them in memory; `RedbApprovalStore` (cargo feature `redb`) keeps them in one embedded
//!   database file that survives restarts, with no server to run. Other backends (a
//!   Kubernetes store) implement the same trait and run the same conformance suite
//!   (`testkit::approval_store_conformance`).
//! - [`Approvals`]: the manager that enforces the rules above, writes the audit log and tells
//!   notifiers. The [`Pipeline`](crate::pipeline::Pipeline) uses it through
//!   [`Pipeline::with_approvals`](crate::pipeline::Pipeline::with_approvals).
//!
//! ```
//! use std::sync::Arc;
//! use keel_core::approval::{Approvals, ApprovalState, MemoryApprovalStore, VoteKind};
//! use keel_core::{ImageRef, UpdatePlan};
//!
//! # futures::executor::block_on(async {
//! let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
//! let plan = UpdatePlan {
//!     target: "prod".into(),
//!     id: "deployment/default/web/app".into(),
//!     current: ImageRef::parse("ghcr.io/acme/web:1.2.3").unwrap(),
//!     new: ImageRef::parse("ghcr.io/acme/web:1.3.0").unwrap(),
//! };
//! let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
//!     .parse()
//!     .unwrap();
//! let request = approvals.request(&plan, Some(digest), 2, None, None).await.unwrap();
//! assert_eq!(approvals.pending().await.unwrap(), 1);
//!
//! approvals.vote(&request.id, "alice", VoteKind::Approve, None).await.unwrap();
//! // The same voter again does not count twice.
//! let again = approvals.vote(&request.id, "alice", VoteKind::Approve, None).await.unwrap();
//! assert_eq!((again.approvals(), again.state), (1, ApprovalState::Pending));
//!
//! let done = approvals.vote(&request.id, "bob", VoteKind::Approve, None).await.unwrap();
//! assert_eq!(done.state, ApprovalState::Approved);
//! assert_eq!(approvals.pending().await.unwrap(), 0);
//! # });
//! ```

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{ParseError, Result};
use crate::notify::ApprovalInfo;
use crate::reference::{Digest, ImageRef};
use crate::target::UpdatePlan;

mod manager;
mod memory;
#[cfg(feature = "redb")]
mod redb_store;

pub(crate) use manager::RequestSpec;
pub use manager::{Approvals, Clock};
pub use memory::MemoryApprovalStore;
#[cfg(feature = "redb")]
pub use redb_store::RedbApprovalStore;

/// The store of a program's approval requests: the embedded database in `file`
/// ([`RedbApprovalStore`], kept across restarts), or memory without one
/// ([`MemoryApprovalStore`]).
///
/// # Errors
/// The database in `file` cannot be opened or created.
#[cfg(feature = "redb")]
pub fn store_in(file: Option<&std::path::Path>) -> Result<std::sync::Arc<dyn ApprovalStore>> {
    Ok(match file {
        Some(path) => std::sync::Arc::new(RedbApprovalStore::open(path)?),
        None => std::sync::Arc::new(MemoryApprovalStore::new()),
    })
}

/// Where an approval request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalState {
    /// Waiting for votes.
    Pending,
    /// Got its approvals; the update may be applied.
    Approved,
    /// Someone voted against it.
    Rejected,
    /// Its deadline passed before it got its approvals.
    Expired,
    /// A newer version was requested for the same tracked image.
    Superseded,
    /// Approved, and the update was applied.
    Applied,
}

impl ApprovalState {
    /// Every state, in declaration order.
    pub const ALL: [ApprovalState; 6] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Rejected,
        ApprovalState::Expired,
        ApprovalState::Superseded,
        ApprovalState::Applied,
    ];

    /// The state's name as written in JSON and messages, e.g. `pending`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
            ApprovalState::Superseded => "superseded",
            ApprovalState::Applied => "applied",
        }
    }

    /// Whether the update may be applied in this state: approved, and not applied yet.
    ///
    /// An applied request never allows another rollout: when the update is planned again
    /// (someone rolled the workload back by hand), it needs a new request
    /// ([`ApprovalRequest::derive_id_round`]).
    pub fn allows_apply(self) -> bool {
        self == ApprovalState::Approved
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApprovalState {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        ApprovalState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                ParseError::new(
                    "approval state",
                    s,
                    "expected one of pending, approved, rejected, expired, superseded, applied",
                )
            })
    }
}

/// A voter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VoteKind {
    /// Yes.
    Approve,
    /// No: one reject vetoes the request.
    Reject,
}

impl fmt::Display for VoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteKind::Approve => "approve",
            VoteKind::Reject => "reject",
        })
    }
}

/// One voter's vote on a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vote {
    /// Who voted (a chat user, an API principal).
    pub voter: String,
    /// Yes or no.
    pub kind: VoteKind,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, if the voter said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An update waiting for approvals, bound to the digest of the new image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// Stable id derived from the target, the tracked image, the new image and its digest
    /// ([`ApprovalRequest::derive_id`]); what voters name (`/keel approve <id>`).
    pub id: String,
    /// The update.
    #[serde(with = "plan_serde")]
    pub plan: UpdatePlan,
    /// The digest of the new image that votes approve; `None` when it could not be known.
    #[serde(default)]
    pub digest: Option<Digest>,
    /// Approvals needed.
    pub required: u32,
    /// The votes, one per voter, in the order they were (last) cast.
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// Where it stands.
    pub state: ApprovalState,
    /// When it was requested.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
    /// When it expires if still pending.
    pub deadline: DateTime<Utc>,
    /// A release-notes link for voters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
    /// Extra notification channels of the tracked image (Keel's `keel.sh/notify`), told
    /// about every event of this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// `UpdatePlan` serializes as `{target, id, current, new}`; this reads it back.
mod plan_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::reference::ImageRef;
    use crate::target::UpdatePlan;

    #[derive(Deserialize)]
    struct PlanRepr {
        target: String,
        id: String,
        current: ImageRef,
        new: ImageRef,
    }

    pub(super) fn serialize<S: Serializer>(plan: &UpdatePlan, s: S) -> Result<S::Ok, S::Error> {
        plan.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UpdatePlan, D::Error> {
        let p = PlanRepr::deserialize(d)?;
        Ok(UpdatePlan {
            target: p.target,
            id: p.id,
            current: p.current,
            new: p.new,
        })
    }
}

impl ApprovalRequest {
    /// The id of the request for `plan` with the new image's `digest`: the first 16 hex digits
    /// of the SHA-256 of the target, the tracked image id, the new image (repository and tag)
    /// and the digest, separated by NUL bytes. The same update of the same content always
    /// gets the same id; a new push of the tag gets a new one.
    pub fn derive_id(plan: &UpdatePlan, digest: Option<&Digest>) -> String {
        Self::derive_id_round(plan, digest, 0)
    }

    /// The id of the `round`-th request for the same update: round 0 is
    /// [`derive_id`](Self::derive_id); each later round is opened when the request of the
    /// round before was applied and the same update is planned again (the workload was rolled
    /// back by hand), so that rolling that version out again needs new votes.
    pub fn derive_id_round(plan: &UpdatePlan, digest: Option<&Digest>, round: u32) -> String {
        let new = image_without_digest(&plan.new);
        let mut hasher = Sha256::new();
        hasher.update(plan.target.as_bytes());
        hasher.update([0]);
        hasher.update(plan.id.as_bytes());
        hasher.update([0]);
        hasher.update(new.as_bytes());
        hasher.update([0]);
        if let Some(d) = digest {
            hasher.update(d.as_str().as_bytes());
        }
        if round > 0 {
            hasher.update([0]);
            hasher.update(round.to_be_bytes());
        }
        let hash = hasher.finalize();
        hex::encode(&hash[..8])
    }

    /// How many distinct voters approved.
    pub fn approvals(&self) -> u32 {
        let n = self
            .votes
            .iter()
            .filter(|v| v.kind == VoteKind::Approve)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether anyone voted against it.
    pub fn rejected(&self) -> bool {
        self.votes.iter().any(|v| v.kind == VoteKind::Reject)
    }

    /// What notifications say about it.
    pub fn info(&self) -> ApprovalInfo {
        ApprovalInfo {
            id: self.id.clone(),
            required: self.required,
            approvals: self.approvals(),
            voters: self.votes.iter().map(|v| v.voter.clone()).collect(),
            deadline: self.deadline,
        }
    }

    /// Whether it matches `filter`.
    pub fn matches(&self, filter: &ApprovalFilter) -> bool {
        filter.state.is_none_or(|s| s == self.state)
            && filter
                .target
                .as_deref()
                .is_none_or(|t| t == self.plan.target)
            && filter.id.as_deref().is_none_or(|i| i == self.plan.id)
    }
}

/// `registry/repository:tag` of an image, without its digest.
fn image_without_digest(image: &ImageRef) -> String {
    match image.tag() {
        Some(tag) => format!("{}:{tag}", image.name()),
        None => image.name(),
    }
}

/// Which requests [`ApprovalStore::list`] returns; the default returns all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalFilter {
    /// Only requests in this state.
    #[serde(default)]
    pub state: Option<ApprovalState>,
    /// Only requests of this target.
    #[serde(default)]
    pub target: Option<String>,
    /// Only requests of this tracked image id.
    #[serde(default)]
    pub id: Option<String>,
}

impl ApprovalFilter {
    /// Requests in `state`.
    pub fn state(state: ApprovalState) -> Self {
        ApprovalFilter {
            state: Some(state),
            ..ApprovalFilter::default()
        }
    }
}

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// An approval request was opened.
    Requested,
    /// Someone voted.
    Voted,
    /// A request got its approvals.
    Approved,
    /// A request was vetoed.
    Rejected,
    /// A request's deadline passed.
    Expired,
    /// A newer request replaced a pending one.
    Superseded,
    /// Someone deleted a request.
    Deleted,
    /// The update was applied.
    Applied,
    /// Applying the approved update failed.
    ApplyFailed,
    /// Someone changed the `keel.sh/*` settings of a tracked image's workload.
    SettingsChanged,
    /// Someone paused tracking of an image.
    Paused,
    /// Someone resumed tracking of an image.
    Resumed,
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuditAction::Requested => "requested",
            AuditAction::Voted => "voted",
            AuditAction::Approved => "approved",
            AuditAction::Rejected => "rejected",
            AuditAction::Expired => "expired",
            AuditAction::Superseded => "superseded",
            AuditAction::Deleted => "deleted",
            AuditAction::Applied => "applied",
            AuditAction::ApplyFailed => "apply-failed",
            AuditAction::SettingsChanged => "settings-changed",
            AuditAction::Paused => "paused",
            AuditAction::Resumed => "resumed",
        })
    }
}

/// One line of the audit log: a decision, a vote or an applied update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the log, assigned by the store when appended (increasing from 1); the
    /// value given to [`ApprovalStore::append_audit`] is ignored.
    pub seq: u64,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// What happened.
    pub action: AuditAction,
    /// The approval request concerned, if any.
    #[serde(default)]
    pub request: Option<String>,
    /// Who did it (a voter); `None` for the system.
    #[serde(default)]
    pub actor: Option<String>,
    /// The target's name.
    pub target: String,
    /// The tracked image's id.
    pub image_id: String,
    /// The new image.
    pub image: String,
    /// A sentence for people.
    pub message: String,
}

impl AuditEntry {
    /// An entry about `request`, now per `time`, not yet numbered.
    pub fn for_request(
        action: AuditAction,
        request: &ApprovalRequest,
        actor: Option<&str>,
        time: DateTime<Utc>,
        message: impl Into<String>,
    ) -> Self {
        AuditEntry {
            seq: 0,
            time,
            action,
            request: Some(request.id.clone()),
            actor: actor.map(str::to_owned),
            target: request.plan.target.clone(),
            image_id: request.plan.id.clone(),
            image: request.plan.new.to_string(),
            message: message.into(),
        }
    }

    /// Whether it matches `query`'s filters (not its limit).
    pub fn matches(&self, query: &AuditQuery) -> bool {
        query
            .request
            .as_deref()
            .is_none_or(|r| self.request.as_deref() == Some(r))
            && query.target.as_deref().is_none_or(|t| t == self.target)
            && query.since_seq.is_none_or(|s| self.seq > s)
    }
}

/// Which audit entries [`ApprovalStore::audit`] returns; the default returns all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    /// Only entries about this request.
    #[serde(default)]
    pub request: Option<String>,
    /// Only entries of this target.
    #[serde(default)]
    pub target: Option<String>,
    /// Only entries with a larger `seq` (for paging and tailing).
    #[serde(default)]
    pub since_seq: Option<u64>,
    /// At most this many entries: the first ones in `seq` order.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Where approval requests and the audit log are kept.
///
/// Contract (checked by `testkit::approval_store_conformance`):
/// - `get` returns what the last `update` stored under the id, or `None`.
/// - `list` returns every request matching the filter, ordered by `created`, then `id`.
/// - `update` is an atomic read-modify-write of one request: `f` receives the stored request
///   (or `None`) and returns what to store (`None` deletes). Concurrent updates of the same id
///   never lose a write; a store may call `f` more than once (optimistic retries), so `f`
///   must not have side effects beyond its result. An error from `f` stores nothing and is
///   returned as is. The result is what was stored.
/// - `append_audit` stores an entry with the next `seq` (strictly increasing, never reused)
///   and returns it; `audit` returns matching entries in `seq` order, the first `limit` of
///   them.
/// - State survives as long as the backend promises (process lifetime for the memory store,
///   restarts for persistent ones).
///
/// The trait is object-safe; the manager holds an `Arc<dyn ApprovalStore>`.
#[async_trait]
pub trait ApprovalStore: Send + Sync + fmt::Debug {
    /// A short name for messages, e.g. `redb approvals /var/lib/keel/approvals.redb`.
    fn name(&self) -> &str;

    /// The request `id`, if stored.
    async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>>;

    /// The requests matching `filter`, by creation time then id.
    async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRequest>>;

    /// Atomic read-modify-write of one request (`None` = absent; returning `None` deletes).
    async fn update(
        &self,
        id: &str,
        f: &mut (dyn FnMut(Option<ApprovalRequest>) -> Result<Option<ApprovalRequest>> + Send),
    ) -> Result<Option<ApprovalRequest>>;

    /// Appends `entry` to the audit log with the next sequence number, which it returns.
    async fn append_audit(&self, entry: AuditEntry) -> Result<u64>;

    /// The audit entries matching `query`, in sequence order.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
}

/// Sorts requests as [`ApprovalStore::list`] returns them.
pub fn sort_requests(requests: &mut [ApprovalRequest]) {
    requests.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
}

/// What [`ApprovalStore::list`] returns from a store's `requests` (each as read, or the error
/// reading it): those matching `filter`, sorted by [`sort_requests`]; the first error instead,
/// if any.
pub fn select_requests<E>(
    requests: impl IntoIterator<Item = std::result::Result<ApprovalRequest, E>>,
    filter: &ApprovalFilter,
) -> std::result::Result<Vec<ApprovalRequest>, E> {
    let mut found = Vec::new();
    for request in requests {
        let request = request?;
        if request.matches(filter) {
            found.push(request);
        }
    }
    sort_requests(&mut found);
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// Validation of untrusted input: ids, voters, comments.

const MAX_ID: usize = 128;
const MAX_VOTER: usize = 128;
const MAX_COMMENT: usize = 1024;

/// Checks an approval request id as given by a voter or an API client: 1 to 128 ASCII
/// letters, digits, `-`, `_` or `.`.
pub fn validate_request_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(ParseError::new("approval request id", id, "must not be empty").into());
    }
    if id.len() > MAX_ID {
        return Err(ParseError::new(
            "approval request id",
            truncate(id),
            format!("longer than {MAX_ID} bytes"),
        )
        .into());
    }
    if let Some(pos) =
        id.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let end = pos + id[pos..].chars().next().map_or(1, char::len_utf8);
        return Err(ParseError::new(
            "approval request id",
            id,
            "only ASCII letters, digits, '-', '_' and '.' are allowed",
        )
        .at(pos, end)
        .into());
    }
    Ok(())
}

/// Checks a voter or actor name: 1 to 128 bytes, not blank, no control characters.
pub fn validate_voter(voter: &str) -> Result<()> {
    if voter.trim().is_empty() {
        return Err(ParseError::new("voter", voter, "must not be empty").into());
    }
    if voter.len() > MAX_VOTER {
        return Err(ParseError::new(
            "voter",
            truncate(voter),
            format!("longer than {MAX_VOTER} bytes"),
        )
        .into());
    }
    if let Some((pos, c)) = voter.char_indices().find(|(_, c)| c.is_control()) {
        return Err(
            ParseError::new("voter", voter, "control characters are not allowed")
                .at(pos, pos + c.len_utf8())
                .into(),
        );
    }
    Ok(())
}

/// Checks a vote comment: at most 1024 bytes, no control characters but newlines and tabs.
pub fn validate_comment(comment: &str) -> Result<()> {
    if comment.len() > MAX_COMMENT {
        return Err(ParseError::new(
            "vote comment",
            truncate(comment),
            format!("longer than {MAX_COMMENT} bytes"),
        )
        .into());
    }
    if let Some((pos, c)) = comment
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(ParseError::new(
            "vote comment",
            comment,
            "control characters other than newline and tab are not allowed",
        )
        .at(pos, pos + c.len_utf8())
        .into());
    }
    Ok(())
}

/// The start of an over-long input, for an error message.
fn truncate(s: &str) -> String {
    let mut end = 64.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[cfg(feature = "redb")]
    #[test]
    fn store_in_a_file_is_a_database_there_and_without_one_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.redb");
        let store = store_in(Some(&path)).unwrap();
        assert!(store.name().contains("approvals.redb"), "{}", store.name());
        assert!(path.exists());
        let memory = store_in(None).unwrap();
        assert!(!memory.name().contains("redb"), "{}", memory.name());
        let e = store_in(Some(&dir.path().join("missing/approvals.redb"))).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    fn plan(tag: &str) -> UpdatePlan {
        UpdatePlan {
            target: "prod".into(),
            id: "web".into(),
            current: ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
            new: ImageRef::parse(&format!("ghcr.io/acme/web:{tag}")).unwrap(),
        }
    }

    fn digest(n: u8) -> Digest {
        format!("sha256:{:064x}", n).parse().unwrap()
    }

    #[test]
    fn ids_bind_target_image_tag_and_digest() {
        let a = ApprovalRequest::derive_id(&plan("1.1.0"), Some(&digest(1)));
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            a,
            ApprovalRequest::derive_id(&plan("1.1.0"), Some(&digest(1)))
        );
        assert_ne!(
            a,
            ApprovalRequest::derive_id(&plan("1.1.0"), Some(&digest(2)))
        );
        assert_ne!(a, ApprovalRequest::derive_id(&plan("1.1.0"), None));
        assert_ne!(
            a,
            ApprovalRequest::derive_id(&plan("1.2.0"), Some(&digest(1)))
        );
        let other_target = UpdatePlan {
            target: "staging".into(),
            ..plan("1.1.0")
        };
        assert_ne!(
            a,
            ApprovalRequest::derive_id(&other_target, Some(&digest(1)))
        );
        // A pinned new image hashes like its tag: the digest is bound separately.
        let pinned = UpdatePlan {
            new: plan("1.1.0").new.with_digest(digest(1)),
            ..plan("1.1.0")
        };
        assert_eq!(a, ApprovalRequest::derive_id(&pinned, Some(&digest(1))));
        // Round 0 is the derived id; later rounds differ from it and from each other.
        let round = |n| ApprovalRequest::derive_id_round(&plan("1.1.0"), Some(&digest(1)), n);
        assert_eq!(a, round(0));
        assert_ne!(round(1), round(0));
        assert_ne!(round(2), round(1));
        assert_eq!(round(1).len(), 16);
    }

    #[test]
    fn request_round_trips_through_json() {
        let now = Utc::now();
        let r = ApprovalRequest {
            id: "abc".into(),
            plan: plan("1.1.0"),
            digest: Some(digest(3)),
            required: 2,
            votes: vec![Vote {
                voter: "alice".into(),
                kind: VoteKind::Approve,
                at: now,
                comment: Some("ok".into()),
            }],
            state: ApprovalState::Pending,
            created: now,
            updated: now,
            deadline: now,
            release_notes: Some("https://notes".into()),
            channels: vec!["#ops".into()],
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""state":"pending""#), "{json}");
        assert!(json.contains(r#""releaseNotes":"https://notes""#), "{json}");
        assert_eq!(serde_json::from_str::<ApprovalRequest>(&json).unwrap(), r);
        assert_eq!(r.info().voters, vec!["alice".to_string()]);
        assert_eq!(r.info().approvals, 1);
    }

    #[test]
    fn states_display_and_parse() {
        for s in ApprovalState::ALL {
            assert_eq!(s.to_string().parse::<ApprovalState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("done".parse::<ApprovalState>().is_err());
        assert_eq!(AuditAction::ApplyFailed.to_string(), "apply-failed");
        assert_eq!(
            serde_json::to_string(&AuditAction::ApplyFailed).unwrap(),
            "\"apply-failed\""
        );
    }

    proptest::proptest! {
        #[test]
        fn validators_never_panic_and_accept_only_what_they_promise(s in "\\PC{0,200}|.{0,300}") {
            if validate_request_id(&s).is_ok() {
                proptest::prop_assert!(!s.is_empty() && s.len() <= 128);
                proptest::prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
            if validate_voter(&s).is_ok() {
                proptest::prop_assert!(!s.trim().is_empty() && s.len() <= 128);
                proptest::prop_assert!(!s.chars().any(char::is_control));
            }
            if let Err(e) = validate_comment(&s) {
                // The message is bounded whatever the input's length.
                proptest::prop_assert!(e.to_string().len() < 2 * 1024 + 200);
            }
        }
    }

    #[test]
    fn untrusted_input_is_validated() {
        assert!(validate_request_id("0123abcd-_.").is_ok());
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(129)] {
            let e = validate_request_id(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{bad}: {e}");
            assert!(e.to_string().contains("approval request id"), "{e}");
        }
        assert!(validate_voter("Alice Smith <alice@example.com>").is_ok());
        assert!(validate_voter("   ").is_err());
        assert!(
            validate_voter("al\nice")
                .unwrap_err()
                .to_string()
                .contains("control")
        );
        let long = validate_voter(&"é".repeat(100)).unwrap_err().to_string();
        assert!(long.contains("longer than 128"), "{long}");
        assert!(validate_comment("line one\nline\ttwo").is_ok());
        assert!(validate_comment("bell\u{7}").is_err());
        assert!(validate_comment(&"x".repeat(1025)).is_err());
    }
}
