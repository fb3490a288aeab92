//! [`CommitSigner`]: signatures of the commits a [`GitTarget`](crate::GitTarget) makes.

use std::fmt;

use keel_core::Error;

/// Signs the commits a [`GitTarget`](crate::GitTarget) makes
/// ([`GitTargetBuilder::with_commit_signer`](crate::GitTargetBuilder::with_commit_signer)),
/// as `git commit -S` does: the signature is stored in the commit's `gpgsig` header, where
/// `git verify-commit` and forges find it.
///
/// Implementations hold the key (an OpenPGP key for `gpg`-style signatures); keel-git holds
/// none, so that it carries no OpenPGP implementation of its own.
///
/// ```
/// use keel_git::CommitSigner;
///
/// #[derive(Debug)]
/// struct Refuses;
///
/// impl CommitSigner for Refuses {
///     fn sign(&self, _commit: &[u8]) -> Result<String, keel_core::Error> {
///         Err(keel_core::Error::NotSupported { operation: "signing", backend: "demo".into() })
///     }
/// }
/// let signer: std::sync::Arc<dyn CommitSigner> = std::sync::Arc::new(Refuses);
/// assert!(signer.sign(b"tree ...").is_err());
/// ```
pub trait CommitSigner: Send + Sync + fmt::Debug {
    /// The ASCII-armored detached signature of `commit`, the commit object exactly as git
    /// stores it, without a signature.
    ///
    /// # Errors
    /// The key cannot sign (locked, of a kind the implementation cannot use); the commit is
    /// then not made and nothing is pushed.
    fn sign(&self, commit: &[u8]) -> Result<String, Error>;
}
