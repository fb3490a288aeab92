//! Registry webhook payloads: which images a push notification is about.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, ParseError};
use crate::reference::{Digest, ImageRef, Tag};

/// Where a webhook comes from, named as in Keel's endpoints `/v1/webhooks/<source>`.
///
/// [`FromStr`] takes the path segment (`dockerhub`, any case) and [`Display`](fmt::Display)
/// prints it back.
///
/// ```
/// use keel_core::trigger::WebhookSource;
///
/// let source: WebhookSource = "dockerhub".parse().unwrap();
/// let body = br#"{"push_data": {"tag": "1.4.2"}, "repository": {"repo_name": "acme/web"}}"#;
/// let pushes = source.parse_payload(body).unwrap();
/// assert_eq!(pushes[0].image.to_string(), "docker.io/acme/web:1.4.2");
///
/// let err = source.parse_payload(br#"{"repository": {"repo_name": "acme/web"}}"#).unwrap_err();
/// assert!(err.to_string().contains("push_data.tag"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WebhookSource {
    /// Keel's own payload: `{"name": "<image>", "tag": "<tag>"}`, optionally with `"digest"`.
    Native,
    /// A Docker Hub repository webhook: `push_data.tag` and `repository.repo_name`.
    DockerHub,
    /// A Quay "repository push" notification: `docker_url` and `updated_tags`.
    Quay,
    /// An Azure Container Registry webhook: `action`, `target.repository`, `target.tag`,
    /// `target.digest` and `request.host`.
    Azure,
    /// A GitHub `package` (or legacy `registry_package`) event for a container image in GHCR.
    GitHub,
    /// A Harbor webhook of type `PUSH_ARTIFACT` (Harbor 2) or `pushImage` (Harbor 1).
    Harbor,
    /// A JFrog Artifactory Docker webhook with `event_type` `pushed`.
    JFrog,
    /// A CNCF distribution (`registry:2`) notification envelope with `events[]`.
    Registry,
}

/// One pushed image a webhook reported.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PushEvent {
    /// The repository and the tag pushed, without digest.
    pub image: ImageRef,
    /// The digest of the pushed manifest, when the payload says.
    pub digest: Option<Digest>,
}

impl fmt::Display for PushEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.image)?;
        if let Some(digest) = &self.digest {
            write!(f, " ({digest})")?;
        }
        Ok(())
    }
}

const PAYLOAD_KIND: &str = "webhook payload";

impl WebhookSource {
    /// Every source, in the order of Keel's documentation.
    pub const ALL: [WebhookSource; 8] = [
        WebhookSource::Native,
        WebhookSource::DockerHub,
        WebhookSource::Quay,
        WebhookSource::Azure,
        WebhookSource::GitHub,
        WebhookSource::Harbor,
        WebhookSource::JFrog,
        WebhookSource::Registry,
    ];

    /// The path segment of the endpoint, e.g. `dockerhub` in `/v1/webhooks/dockerhub`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookSource::Native => "native",
            WebhookSource::DockerHub => "dockerhub",
            WebhookSource::Quay => "quay",
            WebhookSource::Azure => "azure",
            WebhookSource::GitHub => "github",
            WebhookSource::Harbor => "harbor",
            WebhookSource::JFrog => "jfrog",
            WebhookSource::Registry => "registry",
        }
    }

    /// The service's name for people, e.g. `Docker Hub`.
    pub fn display_name(self) -> &'static str {
        match self {
            WebhookSource::Native => "native",
            WebhookSource::DockerHub => "Docker Hub",
            WebhookSource::Quay => "Quay",
            WebhookSource::Azure => "Azure Container Registry",
            WebhookSource::GitHub => "GitHub",
            WebhookSource::Harbor => "Harbor",
            WebhookSource::JFrog => "JFrog Artifactory",
            WebhookSource::Registry => "distribution registry",
        }
    }

    /// Reads the pushes a payload of this source reports.
    ///
    /// A payload that reports no push of a tagged manifest (a pull, a delete, a ping, a
    /// layer upload, a digest-only push) yields an empty list. Duplicates within one payload
    /// are reported once.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a body that is not a JSON object, or that lacks a field
    /// the source always sends or has one that is not valid (an image name, a tag, a digest);
    /// the reason names the source and the field (`Docker Hub payload: field push_data.tag
    /// is missing`). The body itself is never quoted: webhooks may carry capability URLs.
    pub fn parse_payload(self, body: &[u8]) -> Result<Vec<PushEvent>, Error> {
        let root: Value = serde_json::from_slice(body).map_err(|e| {
            let what = if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) {
                "the body is empty".to_owned()
            } else {
                format!("the body is not valid JSON ({e})")
            };
            error(self, what)
        })?;
        if !root.is_object() {
            return Err(error(
                self,
                format!("the body must be a JSON object, got {}", type_name(&root)),
            ));
        }
        let p = Payload { source: self };
        let mut events = match self {
            WebhookSource::Native => p.native(&root)?,
            WebhookSource::DockerHub => p.dockerhub(&root)?,
            WebhookSource::Quay => p.quay(&root)?,
            WebhookSource::Azure => p.azure(&root)?,
            WebhookSource::GitHub => p.github(&root)?,
            WebhookSource::Harbor => p.harbor(&root)?,
            WebhookSource::JFrog => p.jfrog(&root)?,
            WebhookSource::Registry => p.registry(&root)?,
        };
        let mut seen = std::collections::HashSet::new();
        events.retain(|e| seen.insert(e.clone()));
        Ok(events)
    }
}

impl fmt::Display for WebhookSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<WebhookSource, Error> {
        WebhookSource::ALL
            .into_iter()
            .find(|source| source.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = WebhookSource::ALL.iter().map(|s| s.as_str()).collect();
                ParseError::new(
                    "webhook source",
                    s,
                    format!(
                        "unknown webhook source; expected one of {}",
                        names.join(", ")
                    ),
                )
                .into()
            })
    }
}

fn error(source: WebhookSource, reason: impl fmt::Display) -> Error {
    ParseError::new(
        PAYLOAD_KIND,
        source.as_str(),
        format!("{} payload: {reason}", source.display_name()),
    )
    .into()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `a.b.c` under `v`.
fn get<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// The string at `path`, if there is a non-empty one (`null` and `""` count as absent).
fn opt_str<'v>(v: &'v Value, path: &str) -> Option<&'v str> {
    get(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Whether a distribution media type is a manifest or an index (not a layer or a config).
fn is_manifest_type(media_type: &str) -> bool {
    let media_type = media_type.split(';').next().unwrap_or_default().trim();
    media_type.contains("manifest") || media_type == "application/vnd.oci.image.index.v1+json"
}

/// The host of a URL such as `https://acme.jfrog.io/artifactory`.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    host.rsplit_once('@').map_or(host, |(_, host)| host)
}

struct Payload {
    source: WebhookSource,
}

impl Payload {
    fn err(&self, reason: impl fmt::Display) -> Error {
        error(self.source, reason)
    }

    /// The non-empty string at `prefix` + `path` under `v`.
    fn req_str<'v>(&self, v: &'v Value, prefix: &str, path: &str) -> Result<&'v str, Error> {
        match get(v, path) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(self.err(format!("field {prefix}{path} is empty"))),
            None | Some(Value::Null) => Err(self.err(format!("field {prefix}{path} is missing"))),
            Some(other) => Err(self.err(format!(
                "field {prefix}{path} must be a string, got {}",
                type_name(other)
            ))),
        }
    }

    /// The array at `path` under `v`.
    fn req_array<'v>(&self, v: &'v Value, path: &str) -> Result<&'v [Value], Error> {
        match get(v, path) {
            Some(Value::Array(items)) => Ok(items),
            None | Some(Value::Null) => Err(self.err(format!("field {path} is missing"))),
            Some(other) => Err(self.err(format!(
                "field {path} must be an array, got {}",
                type_name(other)
            ))),
        }
    }

    /// A pushed image from a repository name (with its registry) and a tag.
    fn push(
        &self,
        name: &str,
        name_field: &str,
        tag: &str,
        tag_field: &str,
        digest: Option<(&str, &str)>,
    ) -> Result<PushEvent, Error> {
        let last = name.rsplit('/').next().unwrap_or_default();
        if name.contains('@') || last.contains(':') {
            return Err(self.err(format!(
                "field {name_field} {name:?} must name a repository, without tag or digest"
            )));
        }
        let repository = ImageRef::parse(name).map_err(|e| {
            self.err(format!(
                "field {name_field} {name:?} is not a valid repository name: {}",
                e.reason()
            ))
        })?;
        let tag = Tag::new(tag).map_err(|e| {
            self.err(format!(
                "field {tag_field} {tag:?} is not a valid tag: {}",
                e.reason()
            ))
        })?;
        let digest = digest
            .map(|(digest, field)| {
                Digest::new(digest).map_err(|e| {
                    self.err(format!(
                        "field {field} {digest:?} is not a valid digest: {}",
                        e.reason()
                    ))
                })
            })
            .transpose()?;
        Ok(PushEvent {
            image: repository.with_tag(tag),
            digest,
        })
    }

    /// `{"name": "registry/repo", "tag": "1.2.3", "digest": "sha256:..."}`.
    fn native(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let name = self.req_str(root, "", "name")?;
        let tag = self.req_str(root, "", "tag")?;
        let digest = opt_str(root, "digest").map(|d| (d, "digest"));
        Ok(vec![self.push(name, "name", tag, "tag", digest)?])
    }

    fn dockerhub(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let tag = self.req_str(root, "", "push_data.tag")?;
        let repo = self.req_str(root, "", "repository.repo_name")?;
        let name = format!("docker.io/{repo}");
        Ok(vec![self.push(
            &name,
            "repository.repo_name",
            tag,
            "push_data.tag",
            None,
        )?])
    }

    fn quay(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let url = self.req_str(root, "", "docker_url")?;
        let tags = self.req_array(root, "updated_tags")?;
        let mut events = Vec::with_capacity(tags.len());
        for (i, tag) in tags.iter().enumerate() {
            let field = format!("updated_tags[{i}]");
            let Some(tag) = tag.as_str() else {
                return Err(self.err(format!(
                    "field {field} must be a string, got {}",
                    type_name(tag)
                )));
            };
            events.push(self.push(url, "docker_url", tag, &field, None)?);
        }
        Ok(events)
    }

    fn azure(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let action = self.req_str(root, "", "action")?;
        if action != "push" {
            return Ok(Vec::new());
        }
        if opt_str(root, "target.mediaType").is_some_and(|m| !is_manifest_type(m)) {
            return Ok(Vec::new());
        }
        let repository = self.req_str(root, "", "target.repository")?;
        let Some(tag) = opt_str(root, "target.tag") else {
            // A push by digest only: no tag moved.
            return Ok(Vec::new());
        };
        let host = self.req_str(root, "", "request.host")?;
        let digest = opt_str(root, "target.digest").map(|d| (d, "target.digest"));
        let name = format!("{host}/{repository}");
        Ok(vec![self.push(
            &name,
            "request.host + target.repository",
            tag,
            "target.tag",
            digest,
        )?])
    }

    fn github(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let (key, package) = match (root.get("package"), root.get("registry_package")) {
            (Some(p), _) if p.is_object() => ("package", p),
            (_, Some(p)) if p.is_object() => ("registry_package", p),
            _ if root.get("zen").is_some() || root.get("hook_id").is_some() => {
                // The ping GitHub sends when a webhook is created.
                return Ok(Vec::new());
            }
            _ => {
                return Err(self.err(
                    "field package (or registry_package) is missing; is the webhook \
                     subscribed to package events?",
                ));
            }
        };
        if opt_str(root, "action").is_some_and(|a| a != "published" && a != "updated") {
            return Ok(Vec::new());
        }
        let prefix = format!("{key}.");
        let kind = opt_str(package, "package_type")
            .or_else(|| opt_str(package, "ecosystem"))
            .map(str::to_ascii_lowercase);
        let kind = match kind.as_deref() {
            Some(kind @ ("container" | "docker")) => kind.to_owned(),
            Some(_) => return Ok(Vec::new()), // npm, maven, ...: not an image
            None => {
                return Err(self.err(format!("field {prefix}package_type is missing")));
            }
        };
        let name = self.req_str(package, &prefix, "name")?.to_ascii_lowercase();
        let version = match package.get("package_version") {
            Some(v) if v.is_object() => v,
            _ => {
                return Err(self.err(format!("field {prefix}package_version is missing")));
            }
        };
        let Some(tag) = opt_str(version, "container_metadata.tag.name") else {
            // An untagged version (a platform manifest of a multi-arch push).
            return Ok(Vec::new());
        };
        let digest = opt_str(version, "container_metadata.tag.digest")
            .map(|d| (d, "container_metadata.tag.digest"))
            .or_else(|| {
                opt_str(version, "version")
                    .filter(|v| v.starts_with("sha256:"))
                    .map(|d| (d, "package_version.version"))
            });
        let image = if kind == "container" {
            let namespace = opt_str(package, "namespace")
                .or_else(|| opt_str(package, "owner.login"))
                .ok_or_else(|| {
                    self.err(format!(
                        "field {prefix}namespace (or {prefix}owner.login) is missing"
                    ))
                })?;
            format!("ghcr.io/{}/{name}", namespace.to_ascii_lowercase())
        } else {
            // The retired docker.pkg.github.com registry: owner/repository/name.
            let repo = self.req_str(root, "", "repository.full_name")?;
            format!("docker.pkg.github.com/{}/{name}", repo.to_ascii_lowercase())
        };
        let tag_field = format!("{prefix}package_version.container_metadata.tag.name");
        let name_field = format!("{prefix}name");
        let digest_field = digest.map(|(d, f)| (d, format!("{prefix}package_version.{f}")));
        Ok(vec![self.push(
            &image,
            &name_field,
            tag,
            &tag_field,
            digest_field.as_ref().map(|(d, f)| (*d, f.as_str())),
        )?])
    }

    fn harbor(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let kind = self.req_str(root, "", "type")?;
        if kind != "PUSH_ARTIFACT" && kind != "pushImage" {
            return Ok(Vec::new());
        }
        let resources = self.req_array(root, "event_data.resources")?;
        let mut events = Vec::with_capacity(resources.len());
        for (i, resource) in resources.iter().enumerate() {
            let prefix = format!("event_data.resources[{i}].");
            let url = self.req_str(resource, &prefix, "resource_url")?;
            let image = ImageRef::parse(url).map_err(|e| {
                self.err(format!(
                    "field {prefix}resource_url {url:?} is not a valid image reference: {}",
                    e.reason()
                ))
            })?;
            // The `tag` field; for a push by digest Harbor may put the digest there.
            let tag = opt_str(resource, "tag")
                .filter(|t| !t.contains(':'))
                .map(|t| (t, format!("{prefix}tag")))
                .or_else(|| {
                    let from_url = url.rsplit_once('@').map_or(url, |(name, _)| name);
                    let last = from_url.rsplit('/').next().unwrap_or_default();
                    last.rsplit_once(':')
                        .map(|(_, t)| (t, format!("{prefix}resource_url")))
                });
            let Some((tag, tag_field)) = tag else {
                continue;
            };
            let digest = opt_str(resource, "digest")
                .map(|d| (d, format!("{prefix}digest")))
                .or_else(|| {
                    image
                        .digest()
                        .map(|d| (d.as_str(), format!("{prefix}resource_url")))
                });
            events.push(self.push(
                &image.name(),
                &format!("{prefix}resource_url"),
                tag,
                &tag_field,
                digest.as_ref().map(|(d, f)| (*d, f.as_str())),
            )?);
        }
        Ok(events)
    }

    fn jfrog(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        if opt_str(root, "domain").is_some_and(|d| d != "docker") {
            return Ok(Vec::new());
        }
        let event_type = opt_str(root, "event_type")
            .or_else(|| opt_str(root, "data.event_type"))
            .ok_or_else(|| self.err("field event_type is missing"))?;
        if event_type != "pushed" {
            return Ok(Vec::new());
        }
        let repo_key = self.req_str(root, "", "data.repo_key")?;
        let (image_name, tag, name_field, tag_field) =
            match (opt_str(root, "data.image_name"), opt_str(root, "data.tag")) {
                (Some(image), Some(tag)) => (image, tag, "data.image_name", "data.tag"),
                _ => {
                    // Older payloads: data.path is `<image>/<tag>/manifest.json`.
                    let path = self.req_str(root, "", "data.path")?;
                    let mut parts = path.trim_matches('/').rsplitn(3, '/');
                    let (_file, tag, image) = (parts.next(), parts.next(), parts.next());
                    match (tag, image) {
                        (Some(tag), Some(image)) if !image.is_empty() => {
                            (image, tag, "data.path", "data.path")
                        }
                        _ => {
                            return Err(self.err(format!(
                                "field data.path {path:?} is not <image>/<tag>/<manifest file>"
                            )));
                        }
                    }
                }
            };
        let origin = self.req_str(root, "", "jpd_origin")?;
        let host = url_host(origin);
        if host.is_empty() {
            return Err(self.err(format!("field jpd_origin {origin:?} has no host")));
        }
        let name = format!("{}/{repo_key}/{image_name}", host.to_ascii_lowercase());
        let digest = opt_str(root, "data.sha256").map(|hex| format!("sha256:{hex}"));
        Ok(vec![self.push(
            &name,
            &format!("jpd_origin + data.repo_key + {name_field}"),
            tag,
            tag_field,
            digest.as_deref().map(|d| (d, "data.sha256")),
        )?])
    }

    fn registry(&self, root: &Value) -> Result<Vec<PushEvent>, Error> {
        let items = self.req_array(root, "events")?;
        let mut events = Vec::new();
        for (i, event) in items.iter().enumerate() {
            let prefix = format!("events[{i}].");
            let action = self.req_str(event, &prefix, "action")?;
            if action != "push" {
                continue;
            }
            if opt_str(event, "target.mediaType").is_some_and(|m| !is_manifest_type(m)) {
                continue; // a layer or config blob
            }
            let repository = self.req_str(event, &prefix, "target.repository")?;
            let Some(tag) = opt_str(event, "target.tag") else {
                continue; // a manifest pushed by digest (a platform of an index)
            };
            let host = opt_str(event, "request.host")
                .or_else(|| opt_str(event, "target.url").map(url_host))
                .filter(|h| !h.is_empty())
                .ok_or_else(|| self.err(format!("field {prefix}request.host is missing")))?;
            let digest = opt_str(event, "target.digest");
            let digest_field = format!("{prefix}target.digest");
            events.push(self.push(
                &format!("{host}/{repository}"),
                &format!("{prefix}request.host + {prefix}target.repository"),
                tag,
                &format!("{prefix}target.tag"),
                digest.map(|d| (d, digest_field.as_str())),
            )?);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reason(source: WebhookSource, body: &str) -> String {
        match source.parse_payload(body.as_bytes()) {
            Err(Error::InvalidInput(e)) => {
                assert_eq!(e.kind(), "webhook payload");
                assert_eq!(e.input(), source.as_str());
                e.reason().to_owned()
            }
            other => panic!("{source}: {body} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn sources_parse_from_their_path_segment() {
        for source in WebhookSource::ALL {
            assert_eq!(source.to_string().parse::<WebhookSource>().unwrap(), source);
        }
        assert_eq!(
            "DockerHub".parse::<WebhookSource>().unwrap(),
            WebhookSource::DockerHub
        );
        let e = "gitlab".parse::<WebhookSource>().unwrap_err().to_string();
        assert!(
            e.contains("\"gitlab\"") && e.contains("native, dockerhub"),
            "{e}"
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused_by_name() {
        let r = reason(WebhookSource::Quay, "");
        assert_eq!(r, "Quay payload: the body is empty");
        let r = reason(WebhookSource::Quay, "{\"docker_url\": ");
        assert!(
            r.starts_with("Quay payload: the body is not valid JSON"),
            "{r}"
        );
        let r = reason(WebhookSource::Harbor, "[1, 2]");
        assert_eq!(
            r,
            "Harbor payload: the body must be a JSON object, got an array"
        );
    }

    #[test]
    fn fields_of_the_wrong_type_are_named() {
        let r = reason(WebhookSource::Native, r#"{"name": "nginx", "tag": 5}"#);
        assert_eq!(
            r,
            "native payload: field tag must be a string, got a number"
        );
        let r = reason(WebhookSource::Native, r#"{"name": "nginx", "tag": ""}"#);
        assert_eq!(r, "native payload: field tag is empty");
        let r = reason(
            WebhookSource::Quay,
            r#"{"docker_url": "quay.io/a/b", "updated_tags": "latest"}"#,
        );
        assert_eq!(
            r,
            "Quay payload: field updated_tags must be an array, got a string"
        );
        let r = reason(
            WebhookSource::Quay,
            r#"{"docker_url": "quay.io/a/b", "updated_tags": ["1", 2]}"#,
        );
        assert_eq!(
            r,
            "Quay payload: field updated_tags[1] must be a string, got a number"
        );
    }

    #[test]
    fn names_with_tags_are_not_repositories() {
        let r = reason(
            WebhookSource::Native,
            r#"{"name": "nginx:1.0", "tag": "1.1"}"#,
        );
        assert!(r.contains("must name a repository"), "{r}");
        let r = reason(WebhookSource::Native, r#"{"name": "Nginx", "tag": "1.1"}"#);
        assert!(
            r.contains("field name \"Nginx\" is not a valid repository name"),
            "{r}"
        );
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://acme.jfrog.io"), "acme.jfrog.io");
        assert_eq!(
            url_host("https://acme.jfrog.io/artifactory/"),
            "acme.jfrog.io"
        );
        assert_eq!(url_host("http://u@host:8081/x"), "host:8081");
        assert_eq!(url_host("host:5000"), "host:5000");
    }

    #[test]
    fn media_types() {
        for m in [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ] {
            assert!(is_manifest_type(m), "{m}");
        }
        for m in [
            "application/octet-stream",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.config.v1+json",
        ] {
            assert!(!is_manifest_type(m), "{m}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..200)) {
            for source in WebhookSource::ALL {
                let _ = source.parse_payload(&body);
            }
        }

        #[test]
        fn native_payloads_round_trip(
            repo in "[a-z][a-z0-9]{0,10}(/[a-z][a-z0-9]{0,10}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let body = serde_json::json!({"name": format!("registry.example.com/{repo}"), "tag": tag});
            let events = WebhookSource::Native.parse_payload(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(events.len(), 1);
            prop_assert_eq!(events[0].image.repository(), repo.as_str());
            prop_assert_eq!(events[0].image.tag().map(Tag::as_str), Some(tag.as_str()));
            prop_assert_eq!(events[0].image.registry(), "registry.example.com");
        }
    }
}
