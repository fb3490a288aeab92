//! What a [`GitTarget`](super::GitTarget) checks out when it is not a branch: a tag, another
//! reference or a commit, fetched and resolved to the commit to build on.

use std::fmt;

use keel_core::Error;

use crate::repo::{BRANCHES_REFSPEC, WorkingCopy};

/// What a [`GitTarget`](super::GitTarget) checks out and makes its commits on top of
/// ([`GitTargetBuilder::with_checkout`](super::GitTargetBuilder::with_checkout)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checkout {
    /// The tip of a branch, e.g. `main`.
    Branch(String),
    /// The commit a tag points at (through an annotated tag, too), e.g. `v1.4.0`.
    Tag(String),
    /// The commit any reference of the server points at, by its full name, e.g.
    /// `refs/tags/v1` or `refs/heads/release`.
    Reference(String),
    /// A commit, by its full hexadecimal id; it must be reachable from a branch or tag of
    /// the server.
    Commit(String),
}

impl fmt::Display for Checkout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkout::Branch(name) => write!(f, "branch {name}"),
            Checkout::Tag(name) => write!(f, "tag {name}"),
            Checkout::Reference(name) => write!(f, "reference {name}"),
            Checkout::Commit(id) => write!(f, "commit {id}"),
        }
    }
}

/// Where a fetched tag or reference is kept in the working copy.
const CHECKOUT_REF: &str = "refs/keel/checkout";

/// Fetches what `checkout` names and returns its commit; `None` when the server has no
/// such branch, tag or reference.
pub(super) fn resolve(copy: &WorkingCopy, checkout: &Checkout) -> Result<Option<git2::Oid>, Error> {
    let reference = match checkout {
        Checkout::Branch(branch) => {
            copy.fetch()?;
            return Ok(copy.remote_tip(branch));
        }
        Checkout::Commit(id) => {
            let oid = git2::Oid::from_str(id)
                .ok()
                .filter(|_| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    Error::InvalidInput(keel_core::ParseError::new(
                        "commit id",
                        id.as_str(),
                        "not a full hexadecimal commit id (40 characters)",
                    ))
                })?;
            copy.fetch_refspecs(&[BRANCHES_REFSPEC, "+refs/tags/*:refs/tags/*"])?;
            return Ok(copy.repo.find_commit(oid).ok().map(|c| c.id()));
        }
        Checkout::Tag(tag) => format!("refs/tags/{tag}"),
        Checkout::Reference(name) => name.clone(),
    };
    if !reference.starts_with("refs/") || !git2::Reference::is_valid_name(&reference) {
        return Err(Error::InvalidInput(keel_core::ParseError::new(
            "reference name",
            reference,
            "not a valid full reference name (refs/...)",
        )));
    }
    // What a previous fetch left must not stand in for a reference the server dropped.
    if let Ok(mut old) = copy.repo.find_reference(CHECKOUT_REF) {
        old.delete()
            .map_err(|e| Error::backend("git working copy", "clear the fetched checkout", e))?;
    }
    let refspec = format!("+{reference}:{CHECKOUT_REF}");
    copy.fetch_refspecs(&[BRANCHES_REFSPEC, &refspec])?;
    Ok(copy
        .repo
        .find_reference(CHECKOUT_REF)
        .ok()
        .and_then(|r| r.peel_to_commit().ok())
        .map(|c| c.id()))
}

/// Whether `commit` and `other` (when there is one) hold the same files.
pub(super) fn same_tree(copy: &WorkingCopy, commit: git2::Oid, other: Option<git2::Oid>) -> bool {
    let tree = |id| copy.repo.find_commit(id).map(|c| c.tree_id());
    match (tree(commit), other.map(tree)) {
        (Ok(a), Some(Ok(b))) => a == b,
        _ => false,
    }
}
