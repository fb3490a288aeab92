//! Helm's release storage: the `helm.sh/release.v1` objects (Secrets, or ConfigMaps with the
//! `configmap` driver) that hold each revision of a release, decoded here without Helm.
//!
//! Helm stores a revision as JSON, gzip-compressed and base64-encoded, under the key
//! `release`, in an object named `sh.helm.release.v1.<release>.v<revision>` and labelled
//! `owner=helm`, `name=<release>`, `status=<status>`, `version=<revision>`.

use std::io::Read as _;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The label every Helm storage object carries.
pub const OWNER_SELECTOR: &str = "owner=helm";

/// The most a decompressed release may hold: a storage object is at most 1 MiB, and a
/// release that inflates beyond this is not Helm's.
const MAX_RELEASE_BYTES: u64 = 64 << 20;

/// The status of a revision, as Helm writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `deployed`: the revision that runs.
    Deployed,
    /// `superseded`: an earlier revision.
    Superseded,
    /// `failed`: an install, upgrade or rollback that failed.
    Failed,
    /// `pending-install`, `pending-upgrade` or `pending-rollback`: an operation under way.
    Pending,
    /// `uninstalling`, `uninstalled` or a status this crate does not know.
    Other,
}

impl Status {
    /// Reads Helm's spelling.
    pub fn parse(text: &str) -> Status {
        match text {
            "deployed" => Status::Deployed,
            "superseded" => Status::Superseded,
            "failed" => Status::Failed,
            s if s.starts_with("pending-") => Status::Pending,
            _ => Status::Other,
        }
    }
}

/// Go writes empty lists and maps as `null`; they read as empty here.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// A file of a stored chart: templates, `files`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChartFile {
    /// The path within the chart, e.g. `templates/deployment.yaml`.
    pub name: String,
    /// The content, base64-encoded as Go encodes `[]byte`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: String,
}

/// The chart a revision was installed from, as Helm keeps it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StoredChart {
    /// `Chart.yaml`, as a JSON object with the same keys.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Map<String, Value>,
    /// The templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub templates: Vec<ChartFile>,
    /// The other files (README, helpers read with `.Files`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub files: Vec<ChartFile>,
    /// The chart's default values (`values.yaml`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Option<Map<String, Value>>,
    /// `values.schema.json`, base64-encoded.
    #[serde(default, deserialize_with = "null_as_default")]
    pub schema: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Info {
    #[serde(default, deserialize_with = "null_as_default")]
    status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    description: String,
}

/// One revision of a release, decoded.
#[derive(Clone, Debug, Deserialize)]
pub struct Release {
    /// The release's name.
    pub name: String,
    /// Its namespace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    /// The revision number.
    pub version: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    info: Info,
    /// The chart it was installed from.
    #[serde(default, deserialize_with = "null_as_default")]
    pub chart: Option<StoredChart>,
    /// The values the user gave (`--set`, `-f`), without the chart's defaults.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: Option<Map<String, Value>>,
    /// The rendered manifest.
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifest: String,
}

impl Release {
    /// The revision's status.
    pub fn status(&self) -> Status {
        Status::parse(&self.info.status)
    }

    /// Helm's description of the revision (for a failed one, helm's error).
    pub fn description(&self) -> &str {
        &self.info.description
    }

    /// The chart as `name-version`, as `helm list` shows it.
    pub fn chart_label(&self) -> String {
        let field = |key: &str| {
            self.chart
                .as_ref()
                .and_then(|c| c.metadata.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        format!("{}-{}", field("name"), field("version"))
    }

    /// The values as Helm merges them: the chart's defaults, then the user's values (maps
    /// merged key by key, a user's `null` removing a default).
    pub fn merged_values(&self) -> Value {
        let defaults = self
            .chart
            .as_ref()
            .and_then(|c| c.values.clone())
            .unwrap_or_default();
        let mut merged = Value::Object(defaults);
        if let Some(config) = &self.config {
            coalesce(&mut merged, &Value::Object(config.clone()));
        }
        merged
    }
}

/// Merges `over` into `base` as Helm coalesces user values over chart defaults.
pub fn coalesce(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match (base.get_mut(key), value) {
                    (_, Value::Null) => {
                        base.remove(key);
                    }
                    (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                        coalesce(existing, value);
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// Decodes the `release` value of a storage object: base64 text of (usually gzipped) JSON.
/// `stored` is the value as the object holds it (a Secret's data already decoded once by the
/// API, a ConfigMap's text as is).
///
/// # Errors
/// What is wrong with the value, for a problem report; never panics on any input.
pub fn decode(stored: &[u8]) -> Result<Release, String> {
    decode_within(stored, MAX_RELEASE_BYTES)
}

fn decode_within(stored: &[u8], limit: u64) -> Result<Release, String> {
    let trimmed = stored.trim_ascii();
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .map_err(|e| format!("the release is not base64 ({e})"))?;
    let json = if compressed.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the release is not valid gzip ({e})"))?;
        if out.len() as u64 > limit {
            return Err(format!("the release inflates beyond {limit} bytes"));
        }
        out
    } else {
        compressed
    };
    serde_json::from_slice(&json).map_err(|e| format!("the release is not Helm's JSON ({e})"))
}

/// Encodes a release as Helm stores it (gzipped JSON, base64), for tests and tools.
pub fn encode(release: &Value) -> String {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(release.to_string().as_bytes())
        .expect("writing to memory");
    let bytes = gz.finish().expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The value at a dotted `path` (`image.tag`; a numeric segment indexes a list).
pub fn get_path<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(values, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(list) => segment.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        })
}

/// Sets the value at a dotted `path`, creating maps on the way.
///
/// # Errors
/// When a segment on the way is a value that is neither a map nor a list it can index.
pub fn set_path(values: &mut Value, path: &str, new: Value) -> Result<(), String> {
    let mut node = values;
    let segments: Vec<&str> = path.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
        node = match node {
            Value::Object(map) => {
                if last {
                    map.insert((*segment).to_owned(), new);
                    return Ok(());
                }
                map.entry((*segment).to_owned()).or_insert(Value::Null)
            }
            Value::Array(list) => {
                let slot = segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| list.get_mut(index))
                    .ok_or_else(|| format!("{path}: no item {segment} in the list"))?;
                if last {
                    *slot = new;
                    return Ok(());
                }
                slot
            }
            other => {
                return Err(format!(
                    "{path}: `{}` is {}, not a map",
                    segments[..i].join("."),
                    kind_of(other)
                ));
            }
        };
    }
    Ok(())
}

/// A value as text, for an image field: strings as written, numbers as YAML would print them.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What kind of value this is, for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(release: &Value) -> Release {
        decode(encode(release).as_bytes()).unwrap()
    }

    #[test]
    fn decodes_gzipped_and_plain_json() {
        let value = json!({"name": "web", "namespace": "shop", "version": 3,
            "info": {"status": "deployed"}, "config": {"image": {"tag": "1.2.3"}}});
        let release = stored(&value);
        assert_eq!((release.name.as_str(), release.version), ("web", 3));
        assert_eq!(release.status(), Status::Deployed);
        let plain = base64::engine::general_purpose::STANDARD.encode(value.to_string());
        assert_eq!(decode(plain.as_bytes()).unwrap().version, 3);
    }

    #[test]
    fn bad_storage_is_an_error_not_a_panic() {
        for input in [
            &b"%%%"[..],
            b"",
            b"H4sIAAAAAAAA",
            b"e30=", // `{}`: no name or version
        ] {
            assert!(decode(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 4097]).unwrap();
        let text = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let error = decode_within(text.as_bytes(), 4096).unwrap_err();
        assert!(error.contains("inflates beyond 4096 bytes"), "{error}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(
            "{{\"name\":\"web\",\"version\":1,\"config\":{}1{}}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        );
        let text = base64::engine::general_purpose::STANDARD.encode(deep);
        let error = decode(text.as_bytes()).unwrap_err();
        assert!(error.contains("not Helm's JSON"), "{error}");
    }

    #[test]
    fn user_values_override_defaults_key_by_key() {
        let release = stored(&json!({"name": "web", "version": 1,
            "chart": {"values": {"image": {"repository": "r", "tag": "1.0"}, "keep": 1, "drop": 2}},
            "config": {"image": {"tag": "2.0"}, "drop": null}}));
        assert_eq!(
            release.merged_values(),
            json!({"image": {"repository": "r", "tag": "2.0"}, "keep": 1})
        );
    }

    #[test]
    fn paths_get_and_set() {
        let mut values = json!({"image": {"tag": "1"}, "list": [{"image": "a:1"}], "n": 3});
        assert_eq!(get_path(&values, "image.tag"), Some(&json!("1")));
        assert_eq!(get_path(&values, "list.0.image"), Some(&json!("a:1")));
        assert_eq!(get_path(&values, "image.nope"), None);
        set_path(&mut values, "image.tag", json!("2")).unwrap();
        set_path(&mut values, "sidecar.image", json!("b:2")).unwrap();
        set_path(&mut values, "list.0.image", json!("a:2")).unwrap();
        assert_eq!(values["image"]["tag"], "2");
        assert_eq!(values["sidecar"]["image"], "b:2");
        assert_eq!(values["list"][0]["image"], "a:2");
        let error = set_path(&mut values, "n.tag", json!("x")).unwrap_err();
        assert!(error.contains("`n` is a number"), "{error}");
        assert!(set_path(&mut values, "list.5.image", json!("x")).is_err());
    }

    #[test]
    fn statuses() {
        for (text, status) in [
            ("deployed", Status::Deployed),
            ("superseded", Status::Superseded),
            ("failed", Status::Failed),
            ("pending-upgrade", Status::Pending),
            ("pending-rollback", Status::Pending),
            ("uninstalling", Status::Other),
        ] {
            assert_eq!(Status::parse(text), status, "{text}");
        }
    }
}
