//! Flux's `ImageRepository` and `ImagePolicy` as the reflector reads them: the fields of
//! `spec` and `status` it uses, read leniently from the object's JSON so that one bad field
//! makes that object's own status say so instead of failing the listing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_core::ImageRef;
use kube::core::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Flux's default exclusion list: cosign signatures.
pub(crate) const DEFAULT_EXCLUSION: &str = r"^.*\.sig$";

/// The annotation `flux reconcile` sets to ask for a reconciliation now.
pub(crate) const RECONCILE_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// One `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Condition {
    #[serde(rename = "type")]
    pub(crate) type_: String,
    pub(crate) status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) observed_generation: Option<i64>,
    #[serde(default)]
    pub(crate) last_transition_time: String,
    #[serde(default)]
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// `status.latestRef` / `status.observedPreviousRef` of an `ImagePolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LatestRef {
    pub(crate) name: String,
    pub(crate) tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) digest: String,
}

/// What every object shares: its key, generation, annotations and conditions.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) generation: Option<i64>,
    pub(crate) observed_generation: Option<i64>,
    pub(crate) reconcile_request: Option<String>,
    pub(crate) last_handled_reconcile: Option<String>,
    pub(crate) conditions: Vec<Condition>,
    suspend: bool,
}

impl Meta {
    /// `None` for an object without namespace or name (the API server never returns one).
    pub(crate) fn read(object: &DynamicObject) -> Option<Meta> {
        let spec = object.data.get("spec");
        let status = object.data.get("status");
        Some(Meta {
            namespace: object.metadata.namespace.clone()?,
            name: object.metadata.name.clone()?,
            generation: object.metadata.generation,
            observed_generation: status
                .and_then(|s| s.get("observedGeneration"))
                .and_then(Value::as_i64),
            reconcile_request: object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RECONCILE_ANNOTATION))
                .cloned(),
            last_handled_reconcile: string_at(status, "lastHandledReconcileAt"),
            conditions: status
                .and_then(|s| s.get("conditions"))
                .and_then(|c| c.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|c| serde_json::from_value(c.clone()).ok())
                        .collect()
                })
                .unwrap_or_default(),
            suspend: spec
                .and_then(|s| s.get("suspend"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Whether the object is suspended (`spec.suspend: true`), and so left alone: nothing read
    /// for it, nothing written.
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspend
    }

    /// `namespace/name`.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The `Ready` condition, if any.
    pub(crate) fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == "Ready")
    }
}

fn string_at(parent: Option<&Value>, key: &str) -> Option<String> {
    parent
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// An `ImageRepository`.
#[derive(Clone, Debug)]
pub(crate) struct Repository {
    pub(crate) meta: Meta,
    /// `spec.image` as written.
    pub(crate) image: Option<String>,
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) secret: Option<String>,
    /// `spec.exclusionList`, Flux's default when unset or empty; `Err` names a non-string.
    pub(crate) exclusion_list: Result<Vec<String>, String>,
    pub(crate) provider: String,
    /// `spec.accessFrom`: which other namespaces' policies may refer to it.
    pub(crate) access_from: Option<Value>,
    pub(crate) last_scan_time: Option<DateTime<Utc>>,
}

impl Repository {
    pub(crate) fn read(object: &DynamicObject) -> Option<Repository> {
        let meta = Meta::read(object)?;
        let spec = object.data.get("spec");
        let status = object.data.get("status");
        let exclusion_list = match spec.and_then(|s| s.get("exclusionList")) {
            None | Some(Value::Null) => Ok(vec![DEFAULT_EXCLUSION.to_owned()]),
            Some(Value::Array(items)) if items.is_empty() => Ok(vec![DEFAULT_EXCLUSION.to_owned()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("spec.exclusionList holds {i}, not a string"))
                })
                .collect(),
            Some(other) => Err(format!("spec.exclusionList is {other}, not a list")),
        };
        Some(Repository {
            meta,
            image: string_at(spec, "image"),
            interval: string_at(spec, "interval"),
            timeout: string_at(spec, "timeout"),
            secret: spec
                .and_then(|s| s.get("secretRef"))
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            exclusion_list,
            provider: string_at(spec, "provider").unwrap_or_else(|| "generic".to_owned()),
            access_from: spec
                .and_then(|s| s.get("accessFrom"))
                .filter(|a| !a.is_null())
                .cloned(),
            last_scan_time: status
                .and_then(|s| s.get("lastScanResult"))
                .and_then(|r| r.get("scanTime"))
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }
}

/// An `ImagePolicy`.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) meta: Meta,
    pub(crate) spec: Value,
    pub(crate) latest_ref: Option<LatestRef>,
}

impl Policy {
    pub(crate) fn read(object: &DynamicObject) -> Option<Policy> {
        let meta = Meta::read(object)?;
        let status = object.data.get("status");
        Some(Policy {
            latest_ref: status
                .and_then(|s| s.get("latestRef"))
                .and_then(|r| serde_json::from_value::<LatestRef>(r.clone()).ok()),
            spec: object.data.get("spec").cloned().unwrap_or(Value::Null),
            meta,
        })
    }
}

/// Whether Flux's `accessFrom` (`{namespaceSelectors: [{matchLabels: {...}}]}`) admits a
/// namespace labelled `labels`: one selector whose labels the namespace all has (an empty
/// selector admits every namespace). `Err` says why not, as Flux does.
pub(crate) fn access_allowed(
    access_from: Option<&Value>,
    labels: &std::collections::BTreeMap<String, String>,
    repository: &str,
    namespace: &str,
) -> Result<(), String> {
    let Some(access_from) = access_from else {
        return Err(format!(
            "'ImageRepository/{repository}' can't be accessed due to missing ACL labels on \
             'accessFrom'"
        ));
    };
    let selectors = access_from
        .get("namespaceSelectors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let admits = |selector: &Value| {
        let Some(match_labels) = selector.get("matchLabels") else {
            return true;
        };
        match match_labels.as_object() {
            Some(wanted) => wanted.iter().all(|(k, v)| {
                v.as_str()
                    .is_some_and(|v| labels.get(k).is_some_and(|l| l == v))
            }),
            None => match_labels.is_null(),
        }
    };
    if selectors.iter().any(admits) {
        Ok(())
    } else {
        Err(format!(
            "'ImageRepository/{repository}' can't be accessed due to ACL labels mismatch on \
             namespace '{namespace}'"
        ))
    }
}

/// `spec.digestReflectionPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DigestReflection {
    Never,
    IfNotPresent,
    Always,
}

impl DigestReflection {
    pub(crate) fn parse(value: Option<&Value>) -> Result<DigestReflection, String> {
        match value {
            None | Some(Value::Null) => Ok(DigestReflection::Never),
            Some(Value::String(s)) => match s.as_str() {
                "" | "Never" => Ok(DigestReflection::Never),
                "IfNotPresent" => Ok(DigestReflection::IfNotPresent),
                "Always" => Ok(DigestReflection::Always),
                other => Err(format!(
                    "invalid spec.digestReflectionPolicy {other:?}: expected Never, IfNotPresent \
                     or Always"
                )),
            },
            Some(other) => Err(format!(
                "invalid spec.digestReflectionPolicy {other}: expected Never, IfNotPresent or \
                 Always"
            )),
        }
    }
}

/// Parses a duration as Flux's API admits it (`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`, read as Go's
/// `time.ParseDuration`): `1m`, `1h30m`, `0.5s`, `250ms`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty()
            || number.starts_with('.')
            || number.ends_with('.')
            || number.matches('.').count() > 1
        {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let (unit_seconds, after) = if let Some(after) = after.strip_prefix("ms") {
            (0.001, after)
        } else if let Some(after) = after.strip_prefix('s') {
            (1.0, after)
        } else if let Some(after) = after.strip_prefix('m') {
            (60.0, after)
        } else if let Some(after) = after.strip_prefix('h') {
            (3600.0, after)
        } else {
            return None;
        };
        total += value * unit_seconds;
        rest = after;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Parses `spec.image` as Flux does: no URL scheme, no tag, no digest. Returns the reference
/// (tagged `latest`, which is never used) and Flux's canonical name of the repository
/// (`index.docker.io/library/alpine` for `alpine`).
pub(crate) fn parse_image(image: &str) -> Result<(ImageRef, String), String> {
    if let Some((scheme, _)) = image.split_once("://") {
        return Err(format!(
            "image '{image}' should not include URL scheme; remove '{scheme}://'"
        ));
    }
    if let Some((_, digest)) = image.split_once('@') {
        return Err(format!(
            "image '{image}' should not include a digest; remove '@{digest}'"
        ));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    // A first component with a port and no slash after it is a host, which ImageRef rejects.
    if image.contains('/')
        && let Some((_, tag)) = last.split_once(':')
    {
        return Err(format!(
            "image '{image}' should not include a tag; remove ':{tag}'"
        ));
    }
    let reference = ImageRef::parse(image).map_err(|e| e.to_string())?;
    if !image.contains('/') && image.contains(':') {
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or_default();
        return Err(format!(
            "image '{image}' should not include a tag; remove ':{tag}'"
        ));
    }
    let canonical = if reference.is_docker_hub() {
        format!("index.docker.io/{}", reference.repository())
    } else {
        reference.name()
    };
    Ok((reference, canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_flux_admits_them() {
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "1", "m", "1d", "1.m", ".5s", "1..5s", "-1s", "1m 2s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn images_are_repositories_without_tag_or_digest() {
        let (image, canonical) = parse_image("alpine").unwrap();
        assert_eq!(image.name(), "docker.io/library/alpine");
        assert_eq!(canonical, "index.docker.io/library/alpine");
        let (_, canonical) = parse_image("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(canonical, "127.0.0.1:5000/team/app");
        let (_, canonical) = parse_image("ghcr.io/acme/web").unwrap();
        assert_eq!(canonical, "ghcr.io/acme/web");
        for (bad, says) in [
            (
                "ghcr.io/acme/web:1.0",
                "should not include a tag; remove ':1.0'",
            ),
            ("alpine:3", "should not include a tag"),
            ("https://ghcr.io/acme/web", "should not include URL scheme"),
            ("ghcr.io/acme/web@sha256:abc", "should not include a digest"),
            ("Upper/Case", "invalid"),
            ("", "invalid"),
        ] {
            let err = parse_image(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn access_from_admits_namespaces_by_labels() {
        use std::collections::BTreeMap;
        let labels = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
        let check = |access: Value| access_allowed(Some(&access), &labels, "a/r", "b");
        assert!(
            check(serde_json::json!({"namespaceSelectors": [{"matchLabels": {"team": "web"}}]}))
                .is_ok()
        );
        assert!(
            check(serde_json::json!({"namespaceSelectors": [{"matchLabels": {"team": "db"}}, {}]}))
                .is_ok()
        );
        let err =
            check(serde_json::json!({"namespaceSelectors": [{"matchLabels": {"team": "db"}}]}))
                .unwrap_err();
        assert!(err.contains("mismatch on namespace 'b'"), "{err}");
        assert!(check(serde_json::json!({"namespaceSelectors": []})).is_err());
        assert!(check(serde_json::json!({"namespaceSelectors": [{"matchLabels": 3}]})).is_err());
        let err = access_allowed(None, &labels, "a/r", "b").unwrap_err();
        assert!(err.contains("missing ACL labels"), "{err}");
    }

    #[test]
    fn digest_reflection_names_the_field() {
        assert_eq!(DigestReflection::parse(None), Ok(DigestReflection::Never));
        let always = Value::String("Always".into());
        assert_eq!(
            DigestReflection::parse(Some(&always)),
            Ok(DigestReflection::Always)
        );
        let bad = Value::String("Sometimes".into());
        let err = DigestReflection::parse(Some(&bad)).unwrap_err();
        assert!(err.contains("spec.digestReflectionPolicy"), "{err}");
    }
}
