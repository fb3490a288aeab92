//! Container image references and their parts: [`Tag`], [`Digest`], [`ImageRef`] and
//! [`Platform`].
//!
//! [`ImageRef`] follows the grammar of the distribution project's `reference` package
//! (`name [":" tag] ["@" digest]`) and Docker's normalisation of short names:
//!
//! * the first `/`-separated part of the name is a registry host only if it contains `.` or
//!   `:`, is `localhost`, or contains an upper-case letter; otherwise the registry is
//!   `docker.io`;
//! * `index.docker.io` and `registry-1.docker.io` are spelled `docker.io`;
//! * on `docker.io` a single-component repository gets `library/` in front;
//! * a reference with neither tag nor digest gets the tag `latest`.
//!
//! ```text
//! nginx                      -> docker.io/library/nginx:latest
//! bitnami/redis              -> docker.io/bitnami/redis:latest
//! localhost:5000/a/b:1.0     -> localhost:5000/a/b:1.0
//! ghcr.io/o/r@sha256:<hex>   -> ghcr.io/o/r@sha256:<hex>   (no tag)
//! ```
//!
//! Every type displays in a form that parses back to an equal value, and (de)serialises
//! with serde as that string.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::ParseError;

const TAG_KIND: &str = "tag";
const DIGEST_KIND: &str = "digest";
const REFERENCE_KIND: &str = "image reference";
const PLATFORM_KIND: &str = "platform";

/// The longest tag the grammar allows, in bytes (all tag characters are ASCII).
pub const MAX_TAG_LEN: usize = 128;

/// The longest repository name (`registry/repository`) the grammar allows, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The registry of unqualified names, as [`ImageRef::registry`] spells it.
pub const DOCKER_HUB: &str = "docker.io";

/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

// ---------------------------------------------------------------------------------------------
// Tag
// ---------------------------------------------------------------------------------------------

const TAG_FIRST: u8 = 1;
const TAG_REST: u8 = 2;

/// Per-byte classes of the tag grammar: `TAG_FIRST` for `[A-Za-z0-9_]`, `TAG_REST` for
/// `[A-Za-z0-9_.-]`. Non-ASCII bytes have no class.
static TAG_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            table[i] = TAG_FIRST | TAG_REST;
        } else if b == b'.' || b == b'-' {
            table[i] = TAG_REST;
        }
        i += 1;
    }
    table
};

/// Whether `s` is a valid tag, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, without allocating:
/// `v1.2.3-rc.1` is, `-bad` is not.
#[inline]
pub fn is_valid_tag(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.split_first() {
        Some((&first, rest)) if bytes.len() <= MAX_TAG_LEN => {
            TAG_CLASS[usize::from(first)] & TAG_FIRST != 0
                && rest
                    .iter()
                    .all(|&b| TAG_CLASS[usize::from(b)] & TAG_REST != 0)
        }
        _ => false,
    }
}

/// Explains why `s` is not a valid tag. Only called when [`is_valid_tag`] said no.
fn tag_error(s: &str) -> ParseError {
    let error = |reason: String, start: usize, end: usize| {
        ParseError::new(TAG_KIND, s, reason).at(start, end)
    };
    for (i, c) in s.char_indices() {
        let end = i + c.len_utf8();
        if i == 0 {
            if !(c.is_ascii_alphanumeric() || c == '_') {
                return error(
                    format!("tag must start with a letter, digit or '_', found {c:?}"),
                    0,
                    end,
                );
            }
        } else if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return error(
                format!("tag may contain only letters, digits, '_', '.' and '-', found {c:?}"),
                i,
                end,
            );
        }
    }
    if s.is_empty() {
        return ParseError::new(TAG_KIND, s, "tag must not be empty");
    }
    // Every character is ASCII here, so bytes are characters.
    error(
        format!(
            "tag must be at most {MAX_TAG_LEN} characters, got {}",
            s.len()
        ),
        MAX_TAG_LEN,
        s.len(),
    )
}

/// A validated image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, e.g. `1.25.3`, `latest`,
/// `v2-alpine`.
///
/// Ordering is plain byte-wise string order, not version order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `tag`.
    ///
    /// # Errors
    /// A [`ParseError`] naming the rule the tag breaks (empty, too long, bad first character,
    /// bad character), pointing at the offending part.
    pub fn new(tag: impl Into<String>) -> Result<Tag, ParseError> {
        let tag = tag.into();
        if is_valid_tag(&tag) {
            Ok(Tag(tag))
        } else {
            Err(tag_error(&tag))
        }
    }

    /// The tag `latest`, which references without tag or digest get.
    pub fn latest() -> Tag {
        Tag(DEFAULT_TAG.to_owned())
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for Tag {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::new(s)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Tag {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Tag {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

// ---------------------------------------------------------------------------------------------
// Digest
// ---------------------------------------------------------------------------------------------

/// The minimum length of the encoded part for algorithms without a registered length.
const MIN_UNREGISTERED_ENCODED_LEN: usize = 32;

/// A content digest, `algorithm:encoded`, e.g. `sha256:` followed by 64 hex characters.
///
/// Grammar (OCI image spec): the algorithm is `[a-z0-9]+` components separated by one of
/// `+._-`; the encoded part is `[a-zA-Z0-9=_-]+`. The registered algorithms are checked
/// strictly: `sha256` needs exactly 64 and `sha512` exactly 128 lower-case hex characters.
/// Any other algorithm needs at least 32 characters of encoded part.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Validates `digest`.
    ///
    /// # Errors
    /// A [`ParseError`] naming the rule the digest breaks, e.g.
    /// `sha256 digest must be 64 lower-case hex characters, got 3`, pointing at the bad part.
    pub fn new(digest: impl Into<String>) -> Result<Digest, ParseError> {
        let digest = digest.into();
        check_digest(&digest)?;
        Ok(Digest(digest))
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        self.split().0
    }

    /// The encoded part after the `:`; hex for the registered algorithms.
    pub fn hex(&self) -> &str {
        self.split().1
    }

    /// The encoded part after the `:` (the OCI spec's name for [`Digest::hex`]).
    pub fn encoded(&self) -> &str {
        self.split().1
    }

    /// The whole digest, `algorithm:encoded`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn split(&self) -> (&str, &str) {
        // Validated at construction: there is a ':' and the algorithm has none.
        self.0.split_once(':').unwrap_or((&self.0, ""))
    }
}

fn check_digest(s: &str) -> Result<(), ParseError> {
    let error = |reason: String, start: usize, end: usize| {
        ParseError::new(DIGEST_KIND, s, reason).at(start, end)
    };
    if s.is_empty() {
        return Err(ParseError::new(DIGEST_KIND, s, "digest must not be empty"));
    }
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return Err(ParseError::new(
            DIGEST_KIND,
            s,
            "digest must be <algorithm>:<encoded>, found no ':'",
        ));
    };
    if algorithm.is_empty() {
        return Err(error("digest algorithm must not be empty".into(), 0, 0));
    }
    if !is_valid_algorithm(algorithm) {
        return Err(error(
            "digest algorithm must be lower-case letters and digits, \
             optionally separated by single '+', '.', '_' or '-'"
                .into(),
            0,
            algorithm.len(),
        ));
    }
    let off = algorithm.len() + 1;
    if encoded.is_empty() {
        return Err(error(
            format!("digest must have an encoded part after '{algorithm}:'"),
            off,
            off,
        ));
    }
    let registered_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(want) = registered_len {
        let rule = format!("{algorithm} digest must be {want} lower-case hex characters");
        let got = encoded.chars().count();
        if got != want {
            return Err(error(format!("{rule}, got {got}"), off, s.len()));
        }
        if let Some((i, c)) = encoded
            .char_indices()
            .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(error(
                format!("{rule}, found {c:?}"),
                off + i,
                off + i + c.len_utf8(),
            ));
        }
    } else {
        if let Some((i, c)) = encoded
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-')))
        {
            return Err(error(
                format!(
                    "digest encoded part may contain only letters, digits, '=', '_' and '-', \
                     found {c:?}"
                ),
                off + i,
                off + i + c.len_utf8(),
            ));
        }
        if encoded.len() < MIN_UNREGISTERED_ENCODED_LEN {
            return Err(error(
                format!(
                    "{algorithm} digest must have at least {MIN_UNREGISTERED_ENCODED_LEN} \
                     characters of encoded part, got {}",
                    encoded.len()
                ),
                off,
                s.len(),
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn is_valid_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '_', '-']).all(|component| {
        !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::new(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Digest {
    fn borrow(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------------
// ImageRef
// ---------------------------------------------------------------------------------------------

/// A normalised image reference: registry, repository, and a tag, a digest or both.
///
/// Parsed by the distribution grammar with Docker's normalisation (see the
/// [module docs](self)); [`Display`](fmt::Display) prints the fully-qualified form
/// `registry/repository[:tag][@digest]`, which parses back to an equal `ImageRef`.
/// A parsed reference always has a tag or a digest (or both).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

fn reference_error(input: &str, reason: impl Into<String>, start: usize, end: usize) -> ParseError {
    ParseError::new(REFERENCE_KIND, input, reason).at(start, end)
}

/// Docker's rule for whether the first `/`-separated part of a name is a registry host.
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

impl ImageRef {
    /// Parses and normalises an image reference, e.g. `nginx`, `bitnami/redis:7`,
    /// `localhost:5000/a/b:1.0` or `ghcr.io/o/r@sha256:<64 hex>`.
    ///
    /// # Errors
    /// A [`ParseError`] naming the input, the rule it broke (empty input, bad registry host or
    /// port, empty path component, bad separator, upper-case repository, name too long, bad
    /// tag, bad digest) and, where it can, the byte range of the bad part.
    pub fn parse(input: &str) -> Result<ImageRef, ParseError> {
        if input.is_empty() {
            return Err(ParseError::new(
                REFERENCE_KIND,
                input,
                "image reference must not be empty",
            ));
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ParseError::new(
                REFERENCE_KIND,
                input,
                "repository name must not be a 64-character hex string (that is an image ID)",
            ));
        }

        // Split off the digest at the first '@' (nothing before it may contain one), then the
        // tag at the last ':' that comes after the last '/' (a ':' before it is a port).
        let (name_and_tag, digest_part) = match input.find('@') {
            Some(at) => (&input[..at], Some((&input[at + 1..], at + 1))),
            None => (input, None),
        };
        let last_slash = name_and_tag.rfind('/');
        let (name, tag_part) = match name_and_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => (
                &name_and_tag[..colon],
                Some((&name_and_tag[colon + 1..], colon + 1)),
            ),
            _ => (name_and_tag, None),
        };

        if name.is_empty() {
            return Err(reference_error(
                input,
                "image reference must start with a repository name",
                0,
                0,
            ));
        }
        let (domain, path, path_offset) = match name.find('/') {
            Some(slash) if looks_like_registry(&name[..slash]) => {
                (Some(&name[..slash]), &name[slash + 1..], slash + 1)
            }
            _ => (None, name, 0),
        };
        if let Some(domain) = domain {
            check_domain(input, domain)?;
        }
        check_path(input, path, path_offset)?;

        let tag = tag_part
            .map(|(tag, offset)| Tag::new(tag).map_err(|e| e.within(REFERENCE_KIND, input, offset)))
            .transpose()?;
        let digest = digest_part
            .map(|(digest, offset)| {
                Digest::new(digest).map_err(|e| e.within(REFERENCE_KIND, input, offset))
            })
            .transpose()?;

        let registry = match domain {
            None | Some("index.docker.io" | "registry-1.docker.io") => DOCKER_HUB,
            Some(domain) => domain,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let name_len = registry.len() + 1 + repository.len();
        if name_len > MAX_NAME_LEN {
            return Err(reference_error(
                input,
                format!(
                    "repository name (registry/repository) must be at most {MAX_NAME_LEN} \
                     characters, got {name_len}"
                ),
                0,
                name.len(),
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(Tag::latest()),
            (tag, _) => tag,
        };
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with port if any: `docker.io`, `ghcr.io`, `localhost:5000`,
    /// `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/nginx`, `o/r`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (every parsed reference without digest has one).
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The fully-qualified repository name, `registry/repository`, e.g.
    /// `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `tag`, without digest.
    pub fn with_tag(&self, tag: Tag) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag),
            digest: None,
        }
    }

    /// The same reference pinned to `digest`, keeping the tag.
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same reference without digest, keeping the tag; a digest-only reference gets the
    /// tag `latest`, as parsing it without digest would.
    pub fn without_digest(&self) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(self.tag.clone().unwrap_or_else(Tag::latest)),
            digest: None,
        }
    }

    /// Whether the registry is Docker Hub (`docker.io`).
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The short form a user writes: `docker.io/` and `library/` dropped where that does not
    /// change what the string parses to, e.g. `nginx:1.0`, `bitnami/redis:7`,
    /// `ghcr.io/o/r:1.0`. Parsing it gives back an equal reference.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag.as_str());
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
        out
    }

    fn familiar_name(&self) -> String {
        if self.is_docker_hub() {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => return rest.to_owned(),
                _ => {}
            }
            // Without the registry, a first component such as `a.b` would read as a host.
            let first = self.repository.split('/').next().unwrap_or_default();
            if !looks_like_registry(first) {
                return self.repository.clone();
            }
        }
        self.name()
    }
}

/// `host[:port]`, host = domain name | IPv4 | `[IPv6]`. `domain` starts at byte 0 of `input`.
fn check_domain(input: &str, domain: &str) -> Result<(), ParseError> {
    let port = if let Some(bracketed) = domain.strip_prefix('[') {
        let Some(close) = bracketed.find(']') else {
            return Err(reference_error(
                input,
                "registry host starting with '[' must be an IPv6 address closed by ']'",
                0,
                domain.len(),
            ));
        };
        let address = &bracketed[..close];
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(reference_error(
                input,
                format!("registry host [{address}] is not a valid IPv6 address"),
                0,
                close + 2,
            ));
        }
        let rest_offset = close + 2;
        let rest = &domain[rest_offset..];
        if rest.is_empty() {
            None
        } else if let Some(port) = rest.strip_prefix(':') {
            Some((port, rest_offset + 1))
        } else {
            return Err(reference_error(
                input,
                "registry host [IPv6] must be followed by ':' and a port, or by '/'",
                rest_offset,
                domain.len(),
            ));
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((host, port)) => (host, Some((port, host.len() + 1))),
            None => (domain, None),
        };
        check_host_name(input, host)?;
        port
    };
    if let Some((port, offset)) = port {
        if port.is_empty() {
            return Err(reference_error(
                input,
                "registry port must not be empty after ':'",
                offset,
                offset,
            ));
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(reference_error(
                input,
                format!("registry port must be digits, got {port:?}"),
                offset,
                offset + port.len(),
            ));
        }
    }
    Ok(())
}

/// Domain name (which includes IPv4 addresses): labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// separated by `.`. `host` starts at byte 0 of `input`.
fn check_host_name(input: &str, host: &str) -> Result<(), ParseError> {
    if host.is_empty() {
        return Err(reference_error(
            input,
            "registry host must not be empty",
            0,
            0,
        ));
    }
    let mut offset = 0;
    for label in host.split('.') {
        let bytes = label.as_bytes();
        let valid = match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            }
            _ => false,
        };
        if !valid {
            let reason = if label.is_empty() {
                format!(
                    "registry host {host:?} must not have an empty label (\"..\" or a '.' at either end)"
                )
            } else {
                format!(
                    "registry host label {label:?} must be letters, digits and '-', \
                     starting and ending with a letter or digit"
                )
            };
            return Err(reference_error(input, reason, offset, offset + label.len()));
        }
        offset += label.len() + 1;
    }
    Ok(())
}

/// Path components `[a-z0-9]+(sep[a-z0-9]+)*` separated by `/`, sep = `.`, `_`, `__`, `-+`.
/// `path` starts at byte `offset` of `input`.
fn check_path(input: &str, path: &str, offset: usize) -> Result<(), ParseError> {
    if path.is_empty() {
        return Err(reference_error(
            input,
            "repository name must not be empty",
            offset,
            offset,
        ));
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(reference_error(
            input,
            "repository name must be lower-case",
            offset,
            offset + path.len(),
        ));
    }
    let mut start = 0;
    for component in path.split('/') {
        let at = offset + start;
        if component.is_empty() {
            let (reason, span) = if start == 0 {
                ("repository path must not start with '/'", (at, at + 1))
            } else if start == path.len() {
                ("repository path must not end with '/'", (at - 1, at))
            } else {
                (
                    "repository path component must not be empty (\"//\")",
                    (at - 1, at + 1),
                )
            };
            return Err(reference_error(input, reason, span.0, span.1));
        }
        check_path_component(input, component, at)?;
        start += component.len() + 1;
    }
    Ok(())
}

fn is_path_alphanumeric(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_path_separator(b: u8) -> bool {
    matches!(b, b'.' | b'_' | b'-')
}

/// One non-empty path component starting at byte `offset` of `input`.
fn check_path_component(input: &str, component: &str, offset: usize) -> Result<(), ParseError> {
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && is_path_alphanumeric(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            // `i` is on a character boundary: only ASCII bytes were skipped so far.
            let c = component[i..].chars().next().unwrap_or('\0');
            let span = (offset + i, offset + i + c.len_utf8());
            let reason = if i == 0 && is_path_separator(bytes[0]) {
                format!(
                    "repository path component must start with a lower-case letter or digit, \
                     found {c:?}"
                )
            } else {
                format!(
                    "repository path may contain only lower-case letters, digits, separators \
                     ('.', '_', '__', '-') and '/', found {c:?}"
                )
            };
            return Err(reference_error(input, reason, span.0, span.1));
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep_start = i;
        while i < bytes.len() && is_path_separator(bytes[i]) {
            i += 1;
        }
        if i == sep_start {
            // Not a letter, digit or separator: reported as a bad character above.
            continue;
        }
        let separator = &component[sep_start..i];
        let span = (offset + sep_start, offset + i);
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(reference_error(
                input,
                format!(
                    "invalid separator {separator:?} in repository path; separators are \
                     '.', '_', '__' or one or more '-'"
                ),
                span.0,
                span.1,
            ));
        }
        if i == bytes.len() {
            return Err(reference_error(
                input,
                format!(
                    "repository path component must not end with a separator, found {separator:?}"
                ),
                span.0,
                span.1,
            ));
        }
    }
}

impl FromStr for ImageRef {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Platform
// ---------------------------------------------------------------------------------------------

/// A platform an image is built for: `os/architecture[/variant]`, e.g. `linux/amd64`,
/// `linux/arm64/v8`, `linux/arm/v7`, `windows/amd64`.
///
/// Parsing lower-cases and spells architectures the OCI way (`aarch64` → `arm64`,
/// `x86_64`/`x86-64` → `amd64`); the variant is kept as written, or absent.
/// [`Platform::matches`] fills in default variants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// Parses `os/architecture[/variant]`.
    ///
    /// # Errors
    /// A [`ParseError`] for an empty part, fewer than 2 or more than 3 parts, or a character
    /// other than a letter, digit, `_`, `.` or `-`.
    pub fn parse(input: &str) -> Result<Platform, ParseError> {
        if input.is_empty() {
            return Err(ParseError::new(
                PLATFORM_KIND,
                input,
                "platform must not be empty",
            ));
        }
        let parts: Vec<&str> = input.split('/').collect();
        if parts.len() < 2 {
            return Err(ParseError::new(
                PLATFORM_KIND,
                input,
                "platform must be os/architecture[/variant], the architecture is missing",
            )
            .at(input.len(), input.len()));
        }
        if parts.len() > 3 {
            let extra = parts[..3].iter().map(|p| p.len() + 1).sum::<usize>();
            return Err(ParseError::new(
                PLATFORM_KIND,
                input,
                format!(
                    "platform must be os/architecture[/variant], got {} parts",
                    parts.len()
                ),
            )
            .at(extra, input.len()));
        }
        Platform::from_parts(input, &parts)
    }

    /// A platform from its parts, validated and normalised as [`Platform::parse`] does.
    ///
    /// # Errors
    /// As for [`Platform::parse`]; a part containing `/` is a bad character.
    pub fn new(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
    ) -> Result<Platform, ParseError> {
        let mut parts = vec![os, architecture];
        parts.extend(variant);
        Platform::from_parts(&parts.join("/"), &parts)
    }

    fn from_parts(input: &str, parts: &[&str]) -> Result<Platform, ParseError> {
        const NAMES: [&str; 3] = ["os", "architecture", "variant"];
        let mut offset = 0;
        for (part, name) in parts.iter().zip(NAMES) {
            if part.is_empty() {
                return Err(ParseError::new(
                    PLATFORM_KIND,
                    input,
                    format!("platform {name} must not be empty"),
                )
                .at(offset, offset));
            }
            if let Some((i, c)) = part
                .char_indices()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            {
                return Err(ParseError::new(
                    PLATFORM_KIND,
                    input,
                    format!(
                        "platform {name} may contain only letters, digits, '_', '.' and '-', \
                         found {c:?}"
                    ),
                )
                .at(offset + i, offset + i + c.len_utf8()));
            }
            offset += part.len() + 1;
        }
        let architecture = parts[1].to_ascii_lowercase();
        let architecture = match architecture.as_str() {
            "aarch64" => "arm64".to_owned(),
            "x86_64" | "x86-64" => "amd64".to_owned(),
            _ => architecture,
        };
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The operating system, e.g. `linux`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The CPU architecture, e.g. `amd64`, `arm64`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The architecture variant, e.g. `v7`, when one was given.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// The variant, or the architecture's default variant when none was given: `v8` for
    /// `arm64`, `v7` for `arm`, `v1` for `amd64`.
    pub fn effective_variant(&self) -> Option<&str> {
        self.variant().or(match self.architecture.as_str() {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            "amd64" => Some("v1"),
            _ => None,
        })
    }

    /// Whether both name the same platform once default variants are filled in: `linux/arm64`
    /// matches `linux/arm64/v8` and `linux/arm` matches `linux/arm/v7`, but `linux/arm/v6`
    /// does not match `linux/arm/v7`. Symmetric.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.effective_variant() == other.effective_variant()
    }
}

impl FromStr for Platform {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// serde: every type as its display string
// ---------------------------------------------------------------------------------------------

struct FromStrVisitor<T>(PhantomData<T>, &'static str);

impl<T: FromStr<Err = ParseError>> Visitor<'_> for FromStrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! serde_as_string {
    ($($ty:ty => $expecting:literal),* $(,)?) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(FromStrVisitor(PhantomData, $expecting))
            }
        }
    )*};
}

serde_as_string! {
    Tag => "an image tag string",
    Digest => "a digest string, algorithm:encoded",
    ImageRef => "an image reference string",
    Platform => "a platform string, os/architecture[/variant]",
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sha256() -> String {
        format!("sha256:{HEX64}")
    }

    fn sha512() -> String {
        format!("sha512:{HEX64}{HEX64}")
    }

    fn parse(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn parse_err(s: &str) -> ParseError {
        match ImageRef::parse(s) {
            Ok(r) => panic!("{s:?} should not parse, got {r}"),
            Err(e) => e,
        }
    }

    /// Asserts the error names the input and contains `rule`, and returns the bad part.
    fn assert_error<'a>(e: &ParseError, input: &'a str, rule: &str) -> Option<&'a str> {
        let message = e.to_string();
        assert!(
            message.contains(&format!("{input:?}")),
            "{message:?} should name the input {input:?}"
        );
        assert!(
            message.contains(rule),
            "{message:?} should name the rule {rule:?}"
        );
        assert_eq!(e.input(), input);
        e.span().map(|(start, end)| &input[start..end])
    }

    // ----- Tag -----

    #[test]
    fn valid_tags() {
        let max = format!("a{}", "b".repeat(127));
        for s in [
            "latest",
            "1.0",
            "_x",
            "v1.2.3-rc.1",
            "A",
            "9",
            "__",
            "a-",
            "a.",
            &max,
        ] {
            let tag = Tag::new(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(tag.as_str(), s);
            assert_eq!(tag.to_string(), s);
            assert!(is_valid_tag(s), "{s:?}");
            assert_eq!(s.parse::<Tag>().as_ref(), Ok(&tag));
        }
    }

    #[test]
    fn invalid_tags_name_the_rule_and_point_at_it() {
        let too_long = "a".repeat(129);
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("", "tag must not be empty", None),
            (
                "-bad",
                "tag must start with a letter, digit or '_'",
                Some("-"),
            ),
            (
                ".x",
                "tag must start with a letter, digit or '_'",
                Some("."),
            ),
            (
                "a b",
                "tag may contain only letters, digits, '_', '.' and '-'",
                Some(" "),
            ),
            (
                "a:b",
                "tag may contain only letters, digits, '_', '.' and '-'",
                Some(":"),
            ),
            (
                "vé",
                "tag may contain only letters, digits, '_', '.' and '-'",
                Some("é"),
            ),
            (
                &too_long,
                "tag must be at most 128 characters, got 129",
                Some("a"),
            ),
        ];
        for &(input, rule, bad) in cases {
            assert!(!is_valid_tag(input), "{input:?}");
            let e = Tag::new(input).expect_err(input);
            assert_eq!(e.kind(), "tag");
            assert_eq!(assert_error(&e, input, rule), bad, "{input:?}");
        }
        assert_eq!(
            Tag::new("-bad").unwrap_err().to_string(),
            r#"invalid tag "-bad": tag must start with a letter, digit or '_', found '-' (at byte 0: "-")"#
        );
    }

    #[test]
    fn tag_traits() {
        let tag = Tag::new("1.0").unwrap();
        let s: &str = tag.as_ref();
        assert_eq!(s, "1.0");
        let set: HashSet<Tag> = [Tag::new("1.0").unwrap(), Tag::latest()].into();
        assert!(set.contains("latest"));
        assert!(set.contains("1.0"));
        assert!(!set.contains("2.0"));
        assert!(Tag::new("1.0").unwrap() < Tag::new("1.1").unwrap());
        assert_eq!(tag, "1.0");
        assert_eq!(Tag::latest().as_str(), "latest");
        assert_eq!(tag.clone().into_string(), "1.0");
    }

    #[test]
    fn tag_serde_is_a_validated_string() {
        let tag = Tag::new("v1").unwrap();
        assert_eq!(serde_json::to_string(&tag).unwrap(), r#""v1""#);
        assert_eq!(serde_json::from_str::<Tag>(r#""v1""#).unwrap(), tag);
        let e = serde_json::from_str::<Tag>(r#""-v1""#).unwrap_err();
        assert!(e.to_string().contains("tag must start with"), "{e}");
        assert!(serde_json::from_str::<Tag>("1").is_err());
    }

    // ----- Digest -----

    #[test]
    fn valid_digests() {
        let d = Digest::new(sha256()).unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex(), HEX64);
        assert_eq!(d.encoded(), HEX64);
        assert_eq!(d.as_str(), sha256());
        assert_eq!(d.to_string(), sha256());

        let d: Digest = sha512().parse().unwrap();
        assert_eq!(d.algorithm(), "sha512");
        assert_eq!(d.hex().len(), 128);

        let other = "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8";
        let d = Digest::new(other).unwrap();
        assert_eq!(d.algorithm(), "multihash+base58");
        assert_eq!(
            d.encoded(),
            "QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
        );
        assert!(Digest::new(format!("blake3:{HEX64}")).is_ok());
        assert!(Digest::new(format!("x.y_z-w:{}", "A=_-".repeat(8))).is_ok());
    }

    #[test]
    fn digest_error_message_is_exact() {
        let e = Digest::new("sha256:abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid digest "sha256:abc": sha256 digest must be 64 lower-case hex characters, got 3 (at byte 7: "abc")"#
        );
        assert_eq!(e.span(), Some((7, 10)));
    }

    #[test]
    fn invalid_digests_name_the_rule() {
        let upper = format!("sha256:{}", HEX64.to_uppercase());
        let short512 = format!("sha512:{HEX64}");
        let upper_algo = format!("SHA256:{HEX64}");
        let empty_component = format!("sha256+:{HEX64}");
        let bad_char = format!("foo:{}!", "a".repeat(40));
        let colon_in_encoded = format!("sha256:{}:{}", &HEX64[..31], &HEX64[32..]);
        let cases: Vec<(&str, &str, Option<&str>)> = vec![
            ("", "digest must not be empty", None),
            (
                "sha256",
                "digest must be <algorithm>:<encoded>, found no ':'",
                None,
            ),
            (":abc", "digest algorithm must not be empty", Some("")),
            (
                &upper,
                "sha256 digest must be 64 lower-case hex characters, found 'A'",
                Some("A"),
            ),
            (
                &short512,
                "sha512 digest must be 128 lower-case hex characters, got 64",
                Some(HEX64),
            ),
            (
                &upper_algo,
                "digest algorithm must be lower-case letters and digits",
                Some("SHA256"),
            ),
            (
                &empty_component,
                "digest algorithm must be",
                Some("sha256+"),
            ),
            (
                "sha256:",
                "digest must have an encoded part after 'sha256:'",
                Some(""),
            ),
            (
                &bad_char,
                "digest encoded part may contain only letters, digits, '=', '_' and '-', found '!'",
                Some("!"),
            ),
            (
                "foo:abcdef",
                "foo digest must have at least 32 characters of encoded part, got 6",
                Some("abcdef"),
            ),
            (
                &colon_in_encoded,
                "sha256 digest must be 64 lower-case hex characters, found ':'",
                Some(":"),
            ),
        ];
        for (input, rule, bad) in cases {
            let e = Digest::new(input).expect_err(input);
            assert_eq!(e.kind(), "digest");
            assert_eq!(assert_error(&e, input, rule), bad, "{input:?}");
        }
    }

    #[test]
    fn digest_traits_and_serde() {
        let d = Digest::new(sha256()).unwrap();
        let set: HashSet<Digest> = [d.clone()].into();
        assert!(set.contains(sha256().as_str()));
        let r: &str = d.as_ref();
        assert_eq!(r, sha256());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", sha256()));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let e = serde_json::from_str::<Digest>(r#""sha256:abc""#).unwrap_err();
        assert!(e.to_string().contains("must be 64 lower-case hex"), "{e}");
    }

    // ----- ImageRef: examples -----

    fn assert_ref(
        input: &str,
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        display: &str,
    ) {
        let r = parse(input);
        assert_eq!(r.registry(), registry, "{input:?}");
        assert_eq!(r.repository(), repository, "{input:?}");
        assert_eq!(r.tag().map(Tag::as_str), tag, "{input:?}");
        assert_eq!(r.digest().map(Digest::as_str), digest, "{input:?}");
        assert_eq!(r.to_string(), display, "{input:?}");
        assert_eq!(r.name(), format!("{registry}/{repository}"));
        assert_eq!(parse(display), r, "{input:?} round trip");
        assert_eq!(input.parse::<ImageRef>().as_ref(), Ok(&r));
    }

    #[test]
    fn docker_hub_short_names() {
        assert_ref(
            "nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            None,
            "docker.io/library/nginx:latest",
        );
        assert_ref(
            "nginx:1.25",
            "docker.io",
            "library/nginx",
            Some("1.25"),
            None,
            "docker.io/library/nginx:1.25",
        );
        assert_ref(
            "bitnami/redis",
            "docker.io",
            "bitnami/redis",
            Some("latest"),
            None,
            "docker.io/bitnami/redis:latest",
        );
        assert_ref(
            "library/nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            None,
            "docker.io/library/nginx:latest",
        );
        assert_ref(
            "docker.io/nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            None,
            "docker.io/library/nginx:latest",
        );
        assert_ref(
            "index.docker.io/library/redis:7",
            "docker.io",
            "library/redis",
            Some("7"),
            None,
            "docker.io/library/redis:7",
        );
        assert_ref(
            "registry-1.docker.io/redis:7",
            "docker.io",
            "library/redis",
            Some("7"),
            None,
            "docker.io/library/redis:7",
        );
        assert_ref(
            "a/b/c/d",
            "docker.io",
            "a/b/c/d",
            Some("latest"),
            None,
            "docker.io/a/b/c/d:latest",
        );
        // Docker reads a lone `host:port` as name and tag.
        assert_ref(
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
            "docker.io/library/localhost:5000",
        );
        assert!(parse("nginx").is_docker_hub());
    }

    #[test]
    fn qualified_names() {
        assert_ref(
            "localhost:5000/a/b:1.0",
            "localhost:5000",
            "a/b",
            Some("1.0"),
            None,
            "localhost:5000/a/b:1.0",
        );
        assert_ref(
            "localhost/app",
            "localhost",
            "app",
            Some("latest"),
            None,
            "localhost/app:latest",
        );
        assert_ref(
            "127.0.0.1:5000/app",
            "127.0.0.1:5000",
            "app",
            Some("latest"),
            None,
            "127.0.0.1:5000/app:latest",
        );
        assert_ref(
            "[::1]:5000/app:1",
            "[::1]:5000",
            "app",
            Some("1"),
            None,
            "[::1]:5000/app:1",
        );
        assert_ref(
            "[2001:db8::1]/app",
            "[2001:db8::1]",
            "app",
            Some("latest"),
            None,
            "[2001:db8::1]/app:latest",
        );
        assert_ref(
            "registry.example.com:443/team/sub/app:1",
            "registry.example.com:443",
            "team/sub/app",
            Some("1"),
            None,
            "registry.example.com:443/team/sub/app:1",
        );
        assert_ref(
            "ghcr.io/o/r:1.0",
            "ghcr.io",
            "o/r",
            Some("1.0"),
            None,
            "ghcr.io/o/r:1.0",
        );
        // An upper-case first part is a host (Docker's rule), kept as written.
        assert_ref(
            "MyRegistry/app",
            "MyRegistry",
            "app",
            Some("latest"),
            None,
            "MyRegistry/app:latest",
        );
        assert_ref(
            "my-host:80/a.b_c__d---e/f",
            "my-host:80",
            "a.b_c__d---e/f",
            Some("latest"),
            None,
            "my-host:80/a.b_c__d---e/f:latest",
        );
        assert!(!parse("ghcr.io/o/r").is_docker_hub());
    }

    #[test]
    fn digests_in_references() {
        let d = sha256();
        assert_ref(
            &format!("ghcr.io/o/r@{d}"),
            "ghcr.io",
            "o/r",
            None,
            Some(&d),
            &format!("ghcr.io/o/r@{d}"),
        );
        assert_ref(
            &format!("quay.io/org/app:v1.2.3@{d}"),
            "quay.io",
            "org/app",
            Some("v1.2.3"),
            Some(&d),
            &format!("quay.io/org/app:v1.2.3@{d}"),
        );
        assert_ref(
            &format!("nginx@{d}"),
            "docker.io",
            "library/nginx",
            None,
            Some(&d),
            &format!("docker.io/library/nginx@{d}"),
        );
        assert_ref(
            &format!("localhost:5000/a@{d}"),
            "localhost:5000",
            "a",
            None,
            Some(&d),
            &format!("localhost:5000/a@{d}"),
        );
        let d512 = sha512();
        assert_ref(
            &format!("repo:1.0@{d512}"),
            "docker.io",
            "library/repo",
            Some("1.0"),
            Some(&d512),
            &format!("docker.io/library/repo:1.0@{d512}"),
        );
    }

    // ----- ImageRef: errors -----

    #[test]
    fn upper_case_repository_is_an_error_pointing_at_the_path() {
        let e = parse_err("Nginx");
        assert_eq!(
            e.to_string(),
            r#"invalid image reference "Nginx": repository name must be lower-case"#
        );
        assert_eq!(e.span(), Some((0, 5)));
        let e = parse_err("ghcr.io/Org/App:1");
        assert_eq!(
            assert_error(
                &e,
                "ghcr.io/Org/App:1",
                "repository name must be lower-case"
            ),
            Some("Org/App")
        );
        let e = parse_err("docker.io/Nginx");
        assert_eq!(
            assert_error(&e, "docker.io/Nginx", "repository name must be lower-case"),
            Some("Nginx")
        );
    }

    #[test]
    fn reference_errors_name_input_rule_and_span() {
        let long = format!("example.com/{}/{}", "a".repeat(200), "b".repeat(43));
        let long_input = format!("{long}:1");
        let digest_only = format!("@{}", sha256());
        let cases: Vec<(&str, &str, Option<&str>)> = vec![
            ("", "image reference must not be empty", None),
            (HEX64, "must not be a 64-character hex string", None),
            ("nginx:", "tag must not be empty", Some("")),
            (
                "nginx:-bad",
                "tag must start with a letter, digit or '_'",
                Some("-"),
            ),
            ("nginx:a!b", "tag may contain only", Some("!")),
            (
                "nginx@sha256:123",
                "sha256 digest must be 64 lower-case hex characters, got 3",
                Some("123"),
            ),
            ("nginx@", "digest must not be empty", Some("")),
            (
                "nginx@sha256",
                "digest must be <algorithm>:<encoded>",
                Some("sha256"),
            ),
            (
                "a//b",
                "repository path component must not be empty",
                Some("//"),
            ),
            ("a/b/", "repository path must not end with '/'", Some("/")),
            ("/a", "repository path must not start with '/'", Some("/")),
            (
                "a..b",
                "invalid separator \"..\" in repository path",
                Some(".."),
            ),
            ("a._b", "invalid separator \"._\"", Some("._")),
            ("a___b", "invalid separator \"___\"", Some("___")),
            (
                "a/-b",
                "repository path component must start with a lower-case letter or digit",
                Some("-"),
            ),
            (
                "a/b-",
                "repository path component must not end with a separator",
                Some("-"),
            ),
            (
                "a/b c",
                "repository path may contain only lower-case letters",
                Some(" "),
            ),
            (
                "a/é",
                "repository path may contain only lower-case letters",
                Some("é"),
            ),
            (
                "a:b:c",
                "repository path may contain only lower-case letters",
                Some(":"),
            ),
            (
                "host:notaport/x",
                "registry port must be digits, got \"notaport\"",
                Some("notaport"),
            ),
            ("host:/x", "registry port must not be empty", Some("")),
            ("host:1:2/x", "registry port must be digits", Some("1:2")),
            (":5000/x", "registry host must not be empty", Some("")),
            (
                "-bad.com/x",
                "registry host label \"-bad\" must be letters, digits and '-'",
                Some("-bad"),
            ),
            ("bad-.com/x", "registry host label \"bad-\"", Some("bad-")),
            ("a..com/x", "must not have an empty label", Some("")),
            (
                "exa_mple.com/x",
                "registry host label \"exa_mple\"",
                Some("exa_mple"),
            ),
            (
                "[::1/x",
                "must be an IPv6 address closed by ']'",
                Some("[::1"),
            ),
            (
                "[::g]:5000/x",
                "registry host [::g] is not a valid IPv6 address",
                Some("[::g]"),
            ),
            (
                "[::1]x/y",
                "must be followed by ':' and a port, or by '/'",
                Some("x"),
            ),
            (
                "example.com/",
                "repository name must not be empty",
                Some(""),
            ),
            (
                ":1.0",
                "image reference must start with a repository name",
                Some(""),
            ),
            (
                &digest_only,
                "image reference must start with a repository name",
                Some(""),
            ),
            (
                &long_input,
                "must be at most 255 characters, got 256",
                Some(long.as_str()),
            ),
        ];
        for (input, rule, bad) in cases {
            let e = parse_err(input);
            assert_eq!(e.kind(), "image reference");
            assert_eq!(assert_error(&e, input, rule), bad, "{input:?}: {e}");
        }
    }

    #[test]
    fn a_name_of_exactly_255_characters_is_accepted() {
        let path = "b".repeat(255 - "example.com/".len());
        let r = parse(&format!("example.com/{path}"));
        assert_eq!(r.name().len(), 255);
    }

    #[test]
    fn tag_and_digest_errors_point_into_the_whole_reference() {
        let e = parse_err("nginx:-bad");
        assert_eq!(
            e.to_string(),
            r#"invalid image reference "nginx:-bad": tag must start with a letter, digit or '_', found '-' (at byte 6: "-")"#
        );
        let e = parse_err("nginx@sha256:123");
        assert_eq!(
            e.to_string(),
            r#"invalid image reference "nginx@sha256:123": sha256 digest must be 64 lower-case hex characters, got 3 (at byte 13: "123")"#
        );
        assert_eq!(e.span(), Some((13, 16)));
    }

    // ----- ImageRef: derived references -----

    #[test]
    fn with_tag_with_digest_without_digest() {
        let d = Digest::new(sha256()).unwrap();
        let r = parse(&format!("quay.io/org/app:v1@{d}"));
        let retagged = r.with_tag(Tag::new("v2").unwrap());
        assert_eq!(retagged.to_string(), "quay.io/org/app:v2");
        assert_eq!(retagged.digest(), None);

        let pinned = parse("nginx:1.0").with_digest(d.clone());
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/nginx:1.0@{d}")
        );
        assert_eq!(pinned.tag().map(Tag::as_str), Some("1.0"));

        assert_eq!(r.without_digest().to_string(), "quay.io/org/app:v1");
        let digest_only = parse(&format!("ghcr.io/o/r@{d}"));
        let unpinned = digest_only.without_digest();
        assert_eq!(unpinned.to_string(), "ghcr.io/o/r:latest");
        assert_eq!(parse(&unpinned.to_string()), unpinned);
        assert_eq!(
            digest_only.with_tag(Tag::new("1").unwrap()).to_string(),
            "ghcr.io/o/r:1"
        );
    }

    #[test]
    fn familiar_forms() {
        let d = sha256();
        let cases = [
            ("nginx:1.0", "nginx:1.0".to_owned()),
            ("nginx", "nginx:latest".to_owned()),
            ("docker.io/library/nginx:1.0", "nginx:1.0".to_owned()),
            ("bitnami/redis:7", "bitnami/redis:7".to_owned()),
            (
                "index.docker.io/bitnami/redis:7",
                "bitnami/redis:7".to_owned(),
            ),
            ("library/a/b:1", "library/a/b:1".to_owned()),
            ("ghcr.io/o/r:1.0", "ghcr.io/o/r:1.0".to_owned()),
            (
                "localhost:5000/a/b:1.0",
                "localhost:5000/a/b:1.0".to_owned(),
            ),
            // Without `docker.io/` these would read as registry hosts.
            ("docker.io/a.b/c:1", "docker.io/a.b/c:1".to_owned()),
            (
                "docker.io/localhost/c:1",
                "docker.io/localhost/c:1".to_owned(),
            ),
            (&*format!("nginx@{d}"), format!("nginx@{d}")),
            (&*format!("ghcr.io/o/r:1@{d}"), format!("ghcr.io/o/r:1@{d}")),
        ];
        for (input, familiar) in cases {
            let r = parse(input);
            assert_eq!(r.familiar(), familiar, "{input:?}");
            assert_eq!(parse(&familiar), r, "{input:?}");
        }
    }

    #[test]
    fn image_ref_serde_and_hash() {
        let r = parse("nginx:1.0");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#""docker.io/library/nginx:1.0""#);
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<ImageRef>(r#""nginx:1.0""#).unwrap(),
            r
        );
        let e = serde_json::from_str::<ImageRef>(r#""Nginx""#).unwrap_err();
        assert!(
            e.to_string().contains("repository name must be lower-case"),
            "{e}"
        );
        let set: HashSet<ImageRef> =
            [parse("nginx"), parse("docker.io/library/nginx:latest")].into();
        assert_eq!(set.len(), 1);
    }

    // ----- Platform -----

    fn platform(s: &str) -> Platform {
        Platform::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn platforms_parse_and_round_trip() {
        let cases = [
            ("linux/amd64", "linux", "amd64", None, "linux/amd64"),
            (
                "linux/arm64/v8",
                "linux",
                "arm64",
                Some("v8"),
                "linux/arm64/v8",
            ),
            ("linux/arm/v7", "linux", "arm", Some("v7"), "linux/arm/v7"),
            ("windows/amd64", "windows", "amd64", None, "windows/amd64"),
            ("Linux/AARCH64", "linux", "arm64", None, "linux/arm64"),
            ("linux/x86_64", "linux", "amd64", None, "linux/amd64"),
            (
                "linux/x86-64/V2",
                "linux",
                "amd64",
                Some("v2"),
                "linux/amd64/v2",
            ),
            ("linux/ppc64le", "linux", "ppc64le", None, "linux/ppc64le"),
        ];
        for (input, os, arch, variant, display) in cases {
            let p = platform(input);
            assert_eq!(
                (p.os(), p.architecture(), p.variant()),
                (os, arch, variant),
                "{input:?}"
            );
            assert_eq!(p.to_string(), display);
            assert_eq!(platform(display), p);
            assert_eq!(input.parse::<Platform>().as_ref(), Ok(&p));
        }
        assert_eq!(
            Platform::new("linux", "aarch64", Some("v8")).unwrap(),
            platform("linux/arm64/v8")
        );
        assert_eq!(
            Platform::new("linux", "amd64", None).unwrap(),
            platform("linux/amd64")
        );
        let json = serde_json::to_string(&platform("linux/arm/v7")).unwrap();
        assert_eq!(json, r#""linux/arm/v7""#);
        assert_eq!(
            serde_json::from_str::<Platform>(&json).unwrap(),
            platform("linux/arm/v7")
        );
    }

    #[test]
    fn platform_matching_fills_default_variants() {
        let m = |a: &str, b: &str| {
            let (a, b) = (platform(a), platform(b));
            assert_eq!(a.matches(&b), b.matches(&a), "symmetric");
            a.matches(&b)
        };
        assert!(m("linux/arm64", "linux/arm64/v8"));
        assert!(m("linux/arm", "linux/arm/v7"));
        assert!(m("linux/amd64", "linux/amd64/v1"));
        assert!(m("linux/amd64", "linux/x86_64"));
        assert!(m("linux/arm64", "linux/aarch64"));
        assert!(m("linux/ppc64le", "linux/ppc64le"));
        assert!(!m("linux/arm/v6", "linux/arm/v7"));
        assert!(!m("linux/arm", "linux/arm/v6"));
        assert!(!m("linux/arm64", "linux/amd64"));
        assert!(!m("linux/amd64", "windows/amd64"));
        assert!(!m("linux/amd64", "linux/amd64/v2"));
        assert!(!m("linux/ppc64le", "linux/ppc64le/v1"));
    }

    #[test]
    fn platform_errors() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("", "platform must not be empty", None),
            ("linux", "the architecture is missing", Some("")),
            ("/amd64", "platform os must not be empty", Some("")),
            (
                "linux/",
                "platform architecture must not be empty",
                Some(""),
            ),
            ("linux/arm/", "platform variant must not be empty", Some("")),
            (
                "linux/arm/v7/x",
                "platform must be os/architecture[/variant], got 4 parts",
                Some("x"),
            ),
            (
                "linux/am d64",
                "platform architecture may contain only letters, digits",
                Some(" "),
            ),
            ("lin:ux/amd64", "platform os may contain only", Some(":")),
            (
                "linux/arm/vé",
                "platform variant may contain only",
                Some("é"),
            ),
        ];
        for &(input, rule, bad) in cases {
            let e = Platform::parse(input).expect_err(input);
            assert_eq!(e.kind(), "platform");
            assert_eq!(assert_error(&e, input, rule), bad, "{input:?}");
        }
        let e = Platform::new("linux", "arm/64", None).unwrap_err();
        assert!(e.to_string().contains("found '/'"), "{e}");
    }

    // ----- properties -----

    /// The tag grammar written out independently of `is_valid_tag`'s byte table.
    fn tag_by_hand(s: &str) -> bool {
        let word = |c: char| {
            c.is_ascii_uppercase() || c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        };
        let mut chars = s.chars();
        let Some(first) = chars.next() else {
            return false;
        };
        let mut count = 1;
        for c in chars {
            if !(word(c) || c == '.' || c == '-') {
                return false;
            }
            count += 1;
        }
        word(first) && count <= 128
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-zA-Z0-9-]{0,6}[a-z0-9])?"
    }

    fn port() -> impl Strategy<Value = Option<u16>> {
        prop::option::of(any::<u16>())
    }

    fn with_port(host: String, port: Option<u16>) -> String {
        match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// A registry as written, or none.
    fn registry() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            2 => Just(None),
            2 => (prop::collection::vec(label(), 2..4), port()).prop_map(|(l, p)| Some(with_port(l.join("."), p))),
            1 => (label(), any::<u16>()).prop_map(|(l, p)| Some(format!("{l}:{p}"))),
            1 => port().prop_map(|p| Some(with_port("localhost".into(), p))),
            1 => (any::<[u8; 4]>(), port()).prop_map(|(a, p)| Some(with_port(std::net::Ipv4Addr::from(a).to_string(), p))),
            1 => (any::<[u16; 8]>(), port()).prop_map(|(a, p)| Some(with_port(format!("[{}]", Ipv6Addr::from(a)), p))),
            1 => ("[A-Z][a-zA-Z0-9]{0,5}", port()).prop_map(|(h, p)| Some(with_port(h, p))),
            1 => prop::sample::select(vec!["docker.io", "index.docker.io", "registry-1.docker.io"]).prop_map(|s| Some(s.to_owned())),
        ]
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}"
    }

    fn digest() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
            "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
            (
                "[a-z0-9]{1,6}([+._-][a-z0-9]{1,4}){0,2}",
                "[a-zA-Z0-9=_-]{32,48}"
            )
                .prop_map(|(a, e)| {
                    let a = if a == "sha256" || a == "sha512" {
                        format!("x{a}")
                    } else {
                        a
                    };
                    format!("{a}:{e}")
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn generated_references_parse_normalise_and_round_trip(
            registry in registry(),
            path in prop::collection::vec(component(), 1..=4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in prop::option::of(digest()),
        ) {
            let mut input = match &registry {
                Some(r) => format!("{r}/{}", path.join("/")),
                None => path.join("/"),
            };
            if let Some(t) = &tag { input = format!("{input}:{t}"); }
            if let Some(d) = &digest { input = format!("{input}@{d}"); }

            // A first component with '.' is a registry host; with '_' it is not a valid one.
            let first_is_host = registry.is_none() && path.len() > 1 && (path[0].contains('.') || path[0] == "localhost");
            if first_is_host && path[0].contains('_') {
                let e = ImageRef::parse(&input).err().map(|e| e.to_string()).unwrap_or_default();
                prop_assert!(e.contains("registry host label"), "{:?}: {:?}", input, e);
                return Ok(());
            }

            // What Docker's rules make of it.
            let (exp_registry, exp_path) = match &registry {
                Some(r) if r == "index.docker.io" || r == "registry-1.docker.io" => ("docker.io".to_owned(), path.join("/")),
                Some(r) => (r.clone(), path.join("/")),
                None if first_is_host => (path[0].clone(), path[1..].join("/")),
                None => ("docker.io".to_owned(), path.join("/")),
            };
            let exp_path = if exp_registry == "docker.io" && !exp_path.contains('/') { format!("library/{exp_path}") } else { exp_path };
            let exp_tag = match (&tag, &digest) { (None, None) => Some("latest".to_owned()), _ => tag.clone() };

            let r = ImageRef::parse(&input).map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
            prop_assert_eq!(r.registry(), exp_registry.as_str());
            prop_assert_eq!(r.repository(), exp_path.as_str());
            prop_assert_eq!(r.tag().map(Tag::as_str), exp_tag.as_deref());
            prop_assert_eq!(r.digest().map(Digest::as_str), digest.as_deref());

            let shown = r.to_string();
            let again = ImageRef::parse(&shown).map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(again.to_string(), shown);
            let familiar = r.familiar();
            prop_assert_eq!(ImageRef::parse(&familiar).ok(), Some(r.clone()), "familiar {:?}", familiar);
            let json = serde_json::to_string(&r).unwrap();
            prop_assert_eq!(serde_json::from_str::<ImageRef>(&json).ok(), Some(r));
        }

        #[test]
        fn tag_validation_matches_the_grammar(s in "[A-Za-z0-9_.:é -]{0,8}|[A-Za-z0-9_][A-Za-z0-9_.-]{120,135}|\\PC{0,20}") {
            let expected = tag_by_hand(&s);
            prop_assert_eq!(is_valid_tag(&s), expected, "{:?}", s);
            match Tag::new(s.clone()) {
                Ok(tag) => {
                    prop_assert!(expected, "{:?} accepted", s);
                    prop_assert_eq!(tag.as_str(), s.as_str());
                }
                Err(e) => {
                    prop_assert!(!expected, "{:?} rejected: {}", s, e);
                    let message = e.to_string();
                    let quoted = format!("{s:?}");
                    prop_assert!(message.contains(&quoted));
                    prop_assert!(message.contains("tag must") || message.contains("tag may"), "{}", message);
                }
            }
        }

        #[test]
        fn parse_never_panics_and_what_parses_round_trips(
            s in "\\PC{0,40}|[a-zA-Z0-9:/@._\\[\\]+=-]{0,60}|[a-z./:-]{1,12}/[a-z0-9._-]{1,12}(:[a-z0-9.-]{0,5})?",
        ) {
            match ImageRef::parse(&s) {
                Ok(r) => {
                    let shown = r.to_string();
                    prop_assert_eq!(ImageRef::parse(&shown).ok(), Some(r.clone()), "{:?} -> {:?}", s, shown);
                    prop_assert!(r.tag().is_some() || r.digest().is_some());
                    prop_assert!(r.name().len() <= MAX_NAME_LEN);
                }
                Err(e) => {
                    prop_assert_eq!(e.input(), s.as_str());
                    if let Some((start, end)) = e.span() {
                        prop_assert!(s.get(start..end).is_some(), "span {:?} of {:?}", (start, end), s);
                    }
                    let prefix = format!("invalid image reference {s:?}: ");
                    prop_assert!(e.to_string().starts_with(&prefix));
                }
            }
        }

        #[test]
        fn digests_and_platforms_round_trip(
            d in digest(),
            os in "[a-zA-Z][a-zA-Z0-9]{0,7}",
            arch in "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,7}",
            variant in prop::option::of("[a-zA-Z0-9.]{1,4}"),
        ) {
            let digest = Digest::new(d.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(digest.to_string(), d.clone());
            prop_assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), d);

            let p = Platform::new(&os, &arch, variant.as_deref()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(p.os(), os.to_ascii_lowercase());
            prop_assert_eq!(Platform::parse(&p.to_string()).ok(), Some(p.clone()));
            prop_assert!(p.matches(&p));
        }
    }
}
