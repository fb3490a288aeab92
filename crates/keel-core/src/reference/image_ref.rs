//! [`ImageRef`]: the distribution reference grammar with Docker's normalisation.

use std::fmt;
use std::net::Ipv6Addr;

use super::{DOCKER_HUB, Digest, MAX_NAME_LEN, REFERENCE_KIND, Tag, non_empty};
use crate::error::ParseError;

/// A normalised image reference: registry, repository, and a tag, a digest or both.
///
/// Parsed by the distribution grammar with Docker's normalisation (see the
/// [module docs](super)); [`Display`](fmt::Display) prints the fully-qualified form
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
        non_empty(REFERENCE_KIND, input)?;
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

    /// The repository as [`familiar`](Self::familiar) writes it, without tag or digest:
    /// `nginx`, `bitnami/redis`, `ghcr.io/o/r`.
    pub fn familiar_name(&self) -> String {
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
