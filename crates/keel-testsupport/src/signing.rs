//! Signatures computed here, independently of the code under test (feature `signing`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `message` with `key`, in lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
