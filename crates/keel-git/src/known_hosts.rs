//! Pinned SSH host keys, read from OpenSSH's `known_hosts` format: the keys an SSH server
//! must show before any credential is offered to it.
//!
//! Each line is `[marker] host-patterns key-type base64-key [comment]`. Host patterns are
//! comma-separated: a name or address (`git.example.com`, `10.0.0.1`), `[host]:port` for a
//! port other than 22, wildcards `*` and `?`, `!pattern` to exclude, or a hashed name
//! `|1|base64-salt|base64-hmac-sha1` as `ssh-keygen -H` writes it. A `@revoked` line refuses
//! its key for the hosts it names; `@cert-authority` lines are not used (keel-git does not
//! verify host certificates). Names are compared without regard to case.
//!
//! ```
//! use keel_git::known_hosts::KnownHosts;
//!
//! let key = "AAAAC3NzaC1lZDI1NTE5AAAAIBHlPWFAXmzC21uiiaTSd6ze+F3YhDc+dcnnwp+GDkyD";
//! let known = KnownHosts::parse(&format!("[git.example.com]:2222 ssh-ed25519 {key}\n")).unwrap();
//! let blob = base64_decode(key);
//! assert!(known.check("git.example.com", 2222, &blob).is_ok());
//! let refused = known.check("git.example.com", 22, &blob).unwrap_err();
//! assert!(refused.contains("git.example.com"), "{refused}");
//! # fn base64_decode(text: &str) -> Vec<u8> {
//! #     use base64::Engine as _;
//! #     base64::engine::general_purpose::STANDARD.decode(text).unwrap()
//! # }
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use keel_core::{Error, ParseError};

/// The host keys of `known_hosts`; see the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl fmt::Debug for KnownHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KnownHosts({} key(s))", self.entries.len())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    marker: Marker,
    patterns: Vec<Pattern>,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// A name, address or `[host]:port`, with wildcards; `negated` for `!pattern`.
    Plain { text: String, negated: bool },
    /// `|1|salt|hash`: HMAC-SHA1 of the name under the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl KnownHosts {
    /// Reads `known_hosts` text. Blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the line and what is wrong with it: fewer than three
    /// fields, an unknown `@` marker, a key that is not base64 or whose type differs from
    /// the one written before it, a hashed pattern that is not `|1|salt|hash`; or no host
    /// key at all (SSH is not used without one).
    pub fn parse(text: &str) -> Result<KnownHosts, Error> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| {
                Error::InvalidInput(ParseError::new(
                    "known_hosts line",
                    format!("{}: {}", number + 1, shorten(line)),
                    reason.to_owned(),
                ))
            };
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let marker = match first {
                "@revoked" => Marker::Revoked,
                "@cert-authority" => Marker::CertAuthority,
                other if other.starts_with('@') => {
                    return Err(bad("unknown marker: expected @revoked or @cert-authority"));
                }
                _ => Marker::None,
            };
            if marker != Marker::None {
                first = fields.next().unwrap_or_default();
            }
            let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
                return Err(bad("expected host patterns, a key type and a base64 key"));
            };
            let key = STANDARD
                .decode(key)
                .map_err(|_| bad("the key is not base64"))?;
            if key_type_of(&key) != Some(key_type) {
                return Err(bad("the key is not of the type written before it"));
            }
            let mut patterns = Vec::new();
            for pattern in first.split(',').filter(|p| !p.is_empty()) {
                patterns.push(Pattern::read(pattern).ok_or_else(|| {
                    bad("a hashed host pattern must be |1|base64-salt|base64-hash")
                })?);
            }
            if patterns.is_empty() {
                return Err(bad("no host pattern"));
            }
            entries.push(Entry {
                marker,
                patterns,
                key_type: key_type.to_owned(),
                key,
            });
        }
        if !entries.iter().any(|e| e.marker == Marker::None) {
            return Err(Error::InvalidInput(ParseError::new(
                "known_hosts",
                shorten(text),
                "holds no host key: SSH is not used without the server's host key",
            )));
        }
        Ok(KnownHosts { entries })
    }

    /// Whether the server at `host` and `port` may show the host key `key` (the SSH wire
    /// format blob, as `known_hosts` holds it base64-encoded). The name looked up is `host`
    /// for port 22 and `[host]:port` otherwise, as OpenSSH looks it up.
    ///
    /// # Errors
    /// Why the key is refused, naming the host: no key of the host is known, the host has
    /// other keys (the server is not the one pinned), or the key is revoked.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Result<(), String> {
        let name = if port == 22 {
            host.to_ascii_lowercase()
        } else {
            format!("[{}]:{port}", host.to_ascii_lowercase())
        };
        let shown = describe_key(key);
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.marker != Marker::CertAuthority && e.matches(&name))
            .collect();
        if matching
            .iter()
            .any(|e| e.marker == Marker::Revoked && e.key == key)
        {
            return Err(format!(
                "the host key of {name} ({shown}) is revoked in known_hosts"
            ));
        }
        if matching
            .iter()
            .any(|e| e.marker == Marker::None && e.key == key)
        {
            return Ok(());
        }
        let pinned: Vec<&str> = matching
            .iter()
            .filter(|e| e.marker == Marker::None)
            .map(|e| e.key_type.as_str())
            .collect();
        if pinned.is_empty() {
            Err(format!(
                "the host key of {name} ({shown}) is not in known_hosts, which has no key \
                 for {name}"
            ))
        } else {
            Err(format!(
                "the host key of {name} ({shown}) is not the one known_hosts pins for it \
                 ({}): the server may not be the one intended",
                pinned.join(", ")
            ))
        }
    }
}

impl Entry {
    fn matches(&self, name: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            match pattern {
                Pattern::Plain { text, negated } => {
                    if glob(text.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                Pattern::Hashed { salt, hash } => {
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                    if ring::hmac::verify(&key, name.as_bytes(), hash).is_ok() {
                        matched = true;
                    }
                }
            }
        }
        matched
    }
}

impl Pattern {
    fn read(text: &str) -> Option<Pattern> {
        if let Some(rest) = text.strip_prefix("|1|") {
            let (salt, hash) = rest.split_once('|')?;
            let decode = |s: &str| STANDARD.decode(s).ok();
            return Some(Pattern::Hashed {
                salt: decode(salt)?,
                hash: decode(hash)?,
            });
        }
        if text.starts_with('|') {
            return None;
        }
        let (text, negated) = match text.strip_prefix('!') {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        Some(Pattern::Plain {
            text: text.to_ascii_lowercase(),
            negated,
        })
    }
}

/// Matches `name` against `pattern` with `*` (any run) and `?` (any one byte).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// The key type a wire-format key blob starts with (`ssh-ed25519`, ...).
pub(crate) fn key_type_of(key: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(key.get(4..4usize.checked_add(len)?)?).ok()
}

/// A key as OpenSSH shows it: `ssh-ed25519 SHA256:...`.
pub(crate) fn describe_key(key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    format!(
        "{} SHA256:{}",
        key_type_of(key).unwrap_or("unknown key type"),
        STANDARD_NO_PAD.encode(digest.as_ref())
    )
}

/// At most 100 characters of `text`, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wire-format key blob of type `kind` with `body`.
    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut out = (kind.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn line(patterns: &str, key: &[u8]) -> String {
        format!(
            "{patterns} {} {}\n",
            key_type_of(key).unwrap(),
            STANDARD.encode(key)
        )
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = ring::hmac::sign(&key, name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(tag.as_ref())
        )
    }

    #[test]
    fn plain_patterns_ports_wildcards_and_negation() {
        let a = blob("ssh-ed25519", &[1; 32]);
        let b = blob("ssh-ed25519", &[2; 32]);
        let text = line("git.example.com,10.0.0.1", &a)
            + &line("[git.example.com]:2222", &b)
            + &line("*.corp.example,!evil.corp.example", &a);
        let known = KnownHosts::parse(&text).unwrap();
        assert!(known.check("git.example.com", 22, &a).is_ok());
        assert!(known.check("GIT.example.com", 22, &a).is_ok());
        assert!(known.check("10.0.0.1", 22, &a).is_ok());
        assert!(known.check("git.example.com", 2222, &b).is_ok());
        // The port's entry only: the key of port 22 is not pinned for port 2222.
        let err = known.check("git.example.com", 2222, &a).unwrap_err();
        assert!(
            err.contains("[git.example.com]:2222") && err.contains("not the one"),
            "{err}"
        );
        assert!(known.check("build.corp.example", 22, &a).is_ok());
        let err = known.check("evil.corp.example", 22, &a).unwrap_err();
        assert!(
            err.contains("evil.corp.example") && err.contains("no key"),
            "{err}"
        );
        let err = known.check("other.example", 22, &a).unwrap_err();
        assert!(err.contains("other.example"), "{err}");
    }

    #[test]
    fn hashed_patterns_and_revoked_keys() {
        let a = blob("ecdsa-sha2-nistp256", &[7; 65]);
        let b = blob("ecdsa-sha2-nistp256", &[8; 65]);
        let text = line(&hashed("[127.0.0.1]:2222", b"salt-of-twenty-bytes"), &a)
            + &line(&hashed("git.example.com", b"another-salt-of-20bb"), &b)
            + &format!("@revoked {}", line("git.example.com", &a));
        let known = KnownHosts::parse(&text).unwrap();
        assert!(known.check("127.0.0.1", 2222, &a).is_ok());
        assert!(known.check("127.0.0.1", 22, &a).is_err());
        assert!(known.check("git.example.com", 22, &b).is_ok());
        let err = known.check("git.example.com", 22, &a).unwrap_err();
        assert!(err.contains("revoked"), "{err}");
    }

    #[test]
    fn bad_lines_are_named() {
        let a = blob("ssh-ed25519", &[1; 32]);
        for (text, says) in [
            ("# only a comment\n\n".to_owned(), "no host key"),
            ("host ssh-ed25519\n".to_owned(), "\"1: host"),
            ("host ssh-ed25519 !!!\n".to_owned(), "not base64"),
            (
                format!("host ssh-rsa {}\n", STANDARD.encode(&a)),
                "not of the type",
            ),
            (format!("@bogus {}", line("host", &a)), "unknown marker"),
            (line("|1|x", &a), "hashed host pattern"),
            (format!("@cert-authority {}", line("*", &a)), "no host key"),
        ] {
            let err = KnownHosts::parse(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"abbc"));
        assert!(glob(b"*.example.com", b"x.y.example.com"));
        assert!(!glob(b"*.example.com", b"example.com"));
        assert!(glob(b"[*]:2222", b"[h]:2222"));
    }

    #[test]
    fn odd_key_blobs_never_panic() {
        for key in [
            &[][..],
            &[0, 0, 0],
            &[255, 255, 255, 255, 1],
            &[0, 0, 0, 1, 0xff],
        ] {
            assert_eq!(key_type_of(key), None);
            assert!(describe_key(key).contains("unknown"));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a secret or a server holds, reading and checking ends in a value or an
        /// error, never a panic.
        #[test]
        fn any_text_and_key_is_read_or_refused(
            text in "(([@|!*?\\[\\]:,a-z0-9.+/=]{0,20}) {0,2}){0,4}(\n|\r\n)?",
            key in proptest::collection::vec(any::<u8>(), 0..64),
            port in any::<u16>(),
        ) {
            if let Ok(known) = KnownHosts::parse(&text) {
                let _ = known.check("h", port, &key);
            }
        }
    }
}
