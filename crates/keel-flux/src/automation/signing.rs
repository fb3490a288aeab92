//! `spec.git.commit.signingKey`: OpenPGP signatures of the automation's commits, made with
//! rPGP (the `pgp` crate, pure Rust).

use std::fmt;
use std::io::Cursor;

use keel_core::{Error, Secret};
use keel_git::CommitSigner;
use pgp::composed::{ArmorOptions, Deserializable as _, DetachedSignature, SignedSecretKey};
use pgp::types::{KeyDetails as _, Password, SigningKey as _};

/// Signs commits with the OpenPGP private key of a signing-key secret (`git.asc`, with its
/// `passphrase`), as `git commit -S` with that key would.
pub(crate) struct OpenPgpSigner {
    key: SignedSecretKey,
    passphrase: Option<Secret>,
}

impl fmt::Debug for OpenPgpSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenPgpSigner({})", self.key.fingerprint())
    }
}

impl OpenPgpSigner {
    /// Reads an ASCII-armored private key and checks that it signs with `passphrase`.
    /// `source` names where the key comes from, for the errors.
    pub(crate) fn new(
        armored: &str,
        passphrase: Option<Secret>,
        source: &str,
    ) -> Result<OpenPgpSigner, String> {
        let (key, _) = SignedSecretKey::from_armor_single(Cursor::new(armored.as_bytes()))
            .map_err(|e| {
                format!("{source}: git.asc is not an ASCII-armored OpenPGP private key: {e}")
            })?;
        let signer = OpenPgpSigner { key, passphrase };
        // A wrong passphrase or a key that cannot sign is found now, before any commit.
        signer
            .signature(b"keel-flux")
            .map_err(|e| format!("{source}: the key of git.asc cannot sign: {e}"))?;
        Ok(signer)
    }

    fn signature(&self, data: &[u8]) -> Result<String, pgp::errors::Error> {
        let password = match &self.passphrase {
            Some(secret) => Password::from(secret.expose()),
            None => Password::empty(),
        };
        let signature = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &password,
            self.key.primary_key.hash_alg(),
            data,
        )?;
        signature.to_armored_string(ArmorOptions::default())
    }
}

impl CommitSigner for OpenPgpSigner {
    fn sign(&self, commit: &[u8]) -> Result<String, Error> {
        self.signature(commit).map_err(|e| Error::Backend {
            backend: "OpenPGP signing key".into(),
            action: format!("sign a commit with key {}", self.key.fingerprint()),
            message: e.to_string(),
            retryable: false,
            source: None,
        })
    }
}
