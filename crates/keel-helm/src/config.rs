//! Keel's settings in a release's values: the `keel:` block of Keel's Helm provider, read with
//! keel-core's `keel.sh/*` rules wherever the meaning is the same.
//!
//! ```yaml
//! keel:
//!   policy: minor
//!   trigger: poll
//!   pollSchedule: "@every 5m"
//!   approvals: 1
//!   images:
//!     - repository: image.repository
//!       tag: image.tag
//!       imagePullSecret: image.pullSecret
//!     - image: sidecar.image
//! ```

use keel_core::ImageRef;
use keel_core::keel_keys::{self, KeelConfig};
use serde_json::Value;

use crate::release::{get_path, kind_of, scalar_text, set_path};

/// Where Keel's block sits in the values.
pub const KEEL_BLOCK: &str = "keel";

/// The keys of the block and the `keel.sh/*` key each one means. `notificationChannels` is
/// Keel's own name for `notify`.
const KEYS: [(&str, &str); 10] = [
    ("policy", keel_keys::POLICY),
    ("trigger", keel_keys::TRIGGER),
    ("pollSchedule", keel_keys::POLL_SCHEDULE),
    ("matchTag", keel_keys::MATCH_TAG),
    ("matchPreRelease", keel_keys::MATCH_PRE_RELEASE),
    ("approvals", keel_keys::APPROVALS),
    ("approvalDeadline", keel_keys::APPROVAL_DEADLINE),
    ("notify", keel_keys::NOTIFY),
    ("notificationChannels", keel_keys::NOTIFY),
    ("releaseNotes", keel_keys::RELEASE_NOTES),
];

/// A value in the release's values that does not parse: the path and the value as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    /// The dotted path, e.g. `keel.approvals` or `image.tag`.
    pub path: String,
    /// The value as written (JSON for what is not a string).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValueError {
    fn new(path: impl Into<String>, value: &Value, reason: impl Into<String>) -> Self {
        ValueError {
            path: path.into(),
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            reason: reason.into(),
        }
    }
}

/// Where one image lives in the values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImagePaths {
    /// A repository and a tag in two values (and, as Keel allows, a digest in a third).
    Parts {
        /// The path of the repository, e.g. `image.repository`.
        repository: String,
        /// The path of the tag.
        tag: String,
        /// The path of the digest, when the chart takes one.
        digest: Option<String>,
    },
    /// One value holding a whole `repository:tag` reference.
    Whole {
        /// Its path, e.g. `sidecar.image`.
        image: String,
    },
}

/// One entry of `keel.images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// Where the image is.
    pub paths: ImagePaths,
    /// The path of a value naming its pull secret(s), comma-separated.
    pub pull_secret: Option<String>,
    /// A release-notes link for this image.
    pub release_notes: Option<String>,
}

impl ImageEntry {
    /// The path that names this image in its tracked id: the repository's or the image's.
    pub fn key(&self) -> &str {
        match &self.paths {
            ImagePaths::Parts { repository, .. } => repository,
            ImagePaths::Whole { image } => image,
        }
    }

    /// The image these paths hold in `values`.
    ///
    /// # Errors
    /// A path that is missing, holds no text, or text that is no image reference.
    pub fn current(&self, values: &Value) -> Result<ImageRef, ValueError> {
        let text = |path: &str| -> Result<String, ValueError> {
            let value = get_path(values, path)
                .ok_or_else(|| ValueError::new(path, &Value::Null, "no such value"))?;
            scalar_text(value)
                .filter(|t| !t.trim().is_empty())
                .map(|t| t.trim().to_owned())
                .ok_or_else(|| {
                    ValueError::new(
                        path,
                        value,
                        format!("expected text, found {}", kind_of(value)),
                    )
                })
        };
        let (path, reference) = match &self.paths {
            ImagePaths::Parts {
                repository,
                tag,
                digest,
            } => {
                let mut reference = format!("{}:{}", text(repository)?, text(tag)?);
                if let Some(digest) = digest
                    && let Some(value) = get_path(values, digest).and_then(scalar_text)
                    && !value.trim().is_empty()
                    && !reference.contains('@')
                {
                    reference.push('@');
                    reference.push_str(value.trim());
                }
                (tag.as_str(), reference)
            }
            ImagePaths::Whole { image } => (image.as_str(), text(image)?),
        };
        ImageRef::parse(&reference).map_err(|e| {
            ValueError::new(
                path,
                &Value::String(reference.clone()),
                e.reason().to_owned(),
            )
        })
    }

    /// The pull secrets named at [`pull_secret`](Self::pull_secret) in `values`.
    pub fn pull_secrets(&self, values: &Value) -> Vec<String> {
        self.pull_secret
            .as_deref()
            .and_then(|path| get_path(values, path))
            .and_then(scalar_text)
            .map(|text| keel_keys::comma_list(&text))
            .unwrap_or_default()
    }

    /// Writes `new` into the user's `values` at these paths: the tag (and the repository only
    /// when it changes), or the whole reference. With `pin_digest`, the digest of `new` goes
    /// to the digest path, or after the tag (`1.2.3@sha256:...`) where there is none.
    /// `current` is what the merged values hold, to keep a repository written the short way.
    ///
    /// # Errors
    /// A path that runs through a value that is not a map.
    pub fn write(
        &self,
        values: &mut Value,
        current: &ImageRef,
        new: &ImageRef,
        pin_digest: bool,
    ) -> Result<(), ValueError> {
        let digest = new.digest().filter(|_| pin_digest).map(|d| d.as_str());
        let set = |values: &mut Value, path: &str, text: String| {
            set_path(values, path, Value::String(text.clone()))
                .map_err(|reason| ValueError::new(path, &Value::String(text), reason))
        };
        match &self.paths {
            ImagePaths::Parts {
                repository,
                tag,
                digest: digest_path,
            } => {
                if current.name() != new.name() {
                    let familiar = new.without_digest().familiar();
                    let name = familiar
                        .rsplit_once(':')
                        .map_or(familiar.as_str(), |(name, _)| name);
                    set(values, repository, name.to_owned())?;
                }
                let tag_text = new.tag().map(|t| t.as_str().to_owned()).unwrap_or_default();
                match (digest, digest_path) {
                    (Some(digest), Some(path)) => {
                        set(values, tag, tag_text)?;
                        set(values, path, digest.to_owned())?;
                    }
                    (Some(digest), None) => set(values, tag, format!("{tag_text}@{digest}"))?,
                    (None, Some(path)) => {
                        set(values, tag, tag_text)?;
                        set(values, path, String::new())?;
                    }
                    (None, None) => set(values, tag, tag_text)?,
                }
            }
            ImagePaths::Whole { image } => {
                let text = match digest {
                    Some(_) => new.familiar(),
                    None => new.without_digest().familiar(),
                };
                set(values, image, text)?;
            }
        }
        Ok(())
    }
}

/// A release's Keel settings: the parsed keys and the images.
#[derive(Clone, Debug)]
pub struct ReleaseConfig {
    /// The keys, parsed by keel-core's rules.
    pub keel: KeelConfig,
    /// The images, in the order written.
    pub images: Vec<ImageEntry>,
}

/// Reads the `keel:` block of merged `values`: `Ok(None)` when there is none or its policy is
/// absent or `never`/`none` (the release is not tracked).
///
/// # Errors
/// The first value that does not parse.
pub fn read(values: &Value) -> Result<Option<ReleaseConfig>, ValueError> {
    let Some(block) = values.get(KEEL_BLOCK) else {
        return Ok(None);
    };
    let Value::Object(block) = block else {
        return Err(ValueError::new(
            KEEL_BLOCK,
            block,
            format!("expected a map, found {}", kind_of(block)),
        ));
    };
    let mut texts: Vec<(&'static str, &'static str, String)> = Vec::new();
    for (name, key) in KEYS {
        let Some(value) = block.get(name) else {
            continue;
        };
        let text = match value {
            Value::Null => continue,
            Value::Array(items) if key == keel_keys::NOTIFY => items
                .iter()
                .map(|item| {
                    scalar_text(item).ok_or_else(|| {
                        ValueError::new(path_of(name), value, "expected a list of channel names")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => scalar_text(other).ok_or_else(|| {
                ValueError::new(
                    path_of(name),
                    other,
                    format!("expected a value, found {}", kind_of(other)),
                )
            })?,
        };
        // `notify` wins over `notificationChannels` when both are written.
        if !texts.iter().any(|(_, k, _)| *k == key) {
            texts.push((name, key, text));
        }
    }
    let lookup = |key: &str| {
        texts
            .iter()
            .find(|(_, k, _)| *k == key)
            .map(|(_, _, text)| text.as_str())
    };
    let keel = match KeelConfig::parse_tracked(lookup) {
        Ok(Some(keel)) => keel,
        Ok(None) => return Ok(None),
        Err(error) => {
            let name = texts
                .iter()
                .find(|(_, k, _)| *k == error.key)
                .map_or("policy", |(name, _, _)| *name);
            return Err(ValueError {
                path: path_of(name),
                value: error.value,
                reason: error.reason,
            });
        }
    };
    let images = read_images(block.get("images"))?;
    Ok(Some(ReleaseConfig { keel, images }))
}

fn path_of(name: &str) -> String {
    format!("{KEEL_BLOCK}.{name}")
}

fn read_images(list: Option<&Value>) -> Result<Vec<ImageEntry>, ValueError> {
    let path = path_of("images");
    let items = match list {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(other @ Value::Array(_)) | Some(other @ Value::Null) => {
            return Err(ValueError::new(
                path,
                other,
                "no images listed: say which values hold the images to update",
            ));
        }
        None => {
            return Err(ValueError::new(
                path,
                &Value::Null,
                "no images listed: say which values hold the images to update",
            ));
        }
        Some(other) => {
            return Err(ValueError::new(
                path,
                other,
                format!("expected a list, found {}", kind_of(other)),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read_image(&format!("{path}.{i}"), item))
        .collect()
}

fn read_image(path: &str, item: &Value) -> Result<ImageEntry, ValueError> {
    let Value::Object(map) = item else {
        return Err(ValueError::new(
            path,
            item,
            format!("expected a map, found {}", kind_of(item)),
        ));
    };
    let field = |name: &str| -> Result<Option<String>, ValueError> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if valid_path(s) => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(ValueError::new(
                format!("{path}.{name}"),
                other,
                "expected a dotted path into the values, e.g. `image.tag`",
            )),
        }
    };
    let paths = match (field("image")?, field("repository")?, field("tag")?) {
        (Some(image), None, None) => ImagePaths::Whole { image },
        (None, Some(repository), Some(tag)) => ImagePaths::Parts {
            repository,
            tag,
            digest: field("digest")?,
        },
        _ => {
            return Err(ValueError::new(
                path,
                item,
                "expected either `repository` and `tag`, or `image` (a whole reference)",
            ));
        }
    };
    Ok(ImageEntry {
        paths,
        pull_secret: field("imagePullSecret")?,
        release_notes: match map.get("releaseNotes") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        },
    })
}

fn valid_path(path: &str) -> bool {
    let path = path.trim();
    !path.is_empty() && path.split('.').all(|segment| !segment.is_empty())
}

#[cfg(test)]
mod tests {
    use keel_core::target::Trigger;
    use serde_json::json;

    use super::*;

    fn values(keel: Value) -> Value {
        json!({
            "image": {"repository": "ghcr.io/acme/web", "tag": "1.2.3", "pullSecret": "regcred"},
            "sidecar": {"image": "ghcr.io/acme/proxy:2.0.0"},
            "keel": keel,
        })
    }

    fn images() -> Value {
        json!([
            {"repository": "image.repository", "tag": "image.tag", "imagePullSecret": "image.pullSecret"},
            {"image": "sidecar.image"},
        ])
    }

    #[test]
    fn reads_keels_block_with_the_keel_sh_rules() {
        let v = values(json!({
            "policy": "minor", "trigger": "poll", "pollSchedule": "@every 5m",
            "approvals": 1, "approvalDeadline": 12, "matchTag": false, "matchPreRelease": true,
            "notificationChannels": ["#ops", "#web"], "images": images(),
        }));
        let config = read(&v).unwrap().unwrap();
        assert_eq!(config.keel.tracked_policy().unwrap().to_string(), "minor");
        assert_eq!(
            config.keel.settings.trigger,
            Trigger::Poll {
                schedule: Some("@every 5m".parse().unwrap())
            }
        );
        assert_eq!(config.keel.settings.approvals, 1);
        assert_eq!(config.keel.settings.approval_deadline.as_secs(), 12 * 3600);
        assert_eq!(config.keel.settings.notify, ["#ops", "#web"]);
        assert_eq!(config.images.len(), 2);
        let [app, sidecar] = [&config.images[0], &config.images[1]];
        assert_eq!(app.key(), "image.repository");
        assert_eq!(
            app.current(&v).unwrap().to_string(),
            "ghcr.io/acme/web:1.2.3"
        );
        assert_eq!(app.pull_secrets(&v), ["regcred"]);
        assert_eq!(sidecar.key(), "sidecar.image");
        assert_eq!(
            sidecar.current(&v).unwrap().to_string(),
            "ghcr.io/acme/proxy:2.0.0"
        );
    }

    #[test]
    fn untracked_without_a_policy_or_with_none() {
        assert!(read(&json!({"image": {}})).unwrap().is_none());
        for keel in [json!({"images": images()}), json!({"policy": "none"})] {
            assert!(read(&values(keel.clone())).unwrap().is_none(), "{keel}");
        }
    }

    #[test]
    fn bad_values_name_their_path_and_value() {
        for (keel, path, value) in [
            (
                json!({"policy": "minor", "approvals": "two", "images": images()}),
                "keel.approvals",
                "two",
            ),
            (
                json!({"policy": "sideways", "images": images()}),
                "keel.policy",
                "sideways",
            ),
            (
                json!({"policy": "minor", "matchTag": "yes", "images": images()}),
                "keel.matchTag",
                "yes",
            ),
            (
                json!({"policy": "minor", "trigger": {"a": 1}, "images": images()}),
                "keel.trigger",
                "{\"a\":1}",
            ),
            (json!({"policy": "minor"}), "keel.images", "null"),
            (
                json!({"policy": "minor", "images": [{"tag": "image.tag"}]}),
                "keel.images.0",
                "{\"tag\":\"image.tag\"}",
            ),
            (
                json!({"policy": "minor", "images": [{"image": "a..b"}]}),
                "keel.images.0.image",
                "a..b",
            ),
            (json!("minor"), "keel", "minor"),
        ] {
            let error = read(&values(keel.clone())).unwrap_err();
            assert_eq!(
                (error.path.as_str(), error.value.as_str()),
                (path, value),
                "{keel}: {error:?}"
            );
            assert!(!error.reason.is_empty());
        }
    }

    #[test]
    fn image_values_that_do_not_parse_name_their_path() {
        let entry = |paths| ImageEntry {
            paths,
            pull_secret: None,
            release_notes: None,
        };
        let parts = entry(ImagePaths::Parts {
            repository: "image.repository".into(),
            tag: "image.tag".into(),
            digest: None,
        });
        let v = json!({"image": {"repository": "ghcr.io/acme/web", "tag": "bad tag!"}});
        assert_eq!(parts.current(&v).unwrap_err().path, "image.tag");
        let v = json!({"image": {"repository": "ghcr.io/acme/web"}});
        assert_eq!(parts.current(&v).unwrap_err().reason, "no such value");
        let v = json!({"image": {"repository": "ghcr.io/acme/web", "tag": 1.20}});
        assert_eq!(
            parts.current(&v).unwrap().to_string(),
            "ghcr.io/acme/web:1.2"
        );
        let whole = entry(ImagePaths::Whole {
            image: "sidecar".into(),
        });
        let error = whole
            .current(&json!({"sidecar": {"image": "x"}}))
            .unwrap_err();
        assert_eq!(error.path, "sidecar");
        assert!(error.reason.contains("a map"), "{error:?}");
    }

    #[test]
    fn writes_only_the_tag_or_the_whole_reference() {
        let parts = ImageEntry {
            paths: ImagePaths::Parts {
                repository: "image.repository".into(),
                tag: "image.tag".into(),
                digest: None,
            },
            pull_secret: None,
            release_notes: None,
        };
        let current = ImageRef::parse("nginx:1.2.3").unwrap();
        let new = ImageRef::parse(
            "nginx:1.3.0@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .unwrap();
        let mut user = json!({"replicas": 2});
        parts.write(&mut user, &current, &new, false).unwrap();
        assert_eq!(user, json!({"replicas": 2, "image": {"tag": "1.3.0"}}));
        parts.write(&mut user, &current, &new, true).unwrap();
        assert_eq!(
            user["image"]["tag"],
            format!("1.3.0@{}", new.digest().unwrap())
        );
        let moved = ImageRef::parse("ghcr.io/acme/nginx:2.0.0").unwrap();
        parts.write(&mut user, &current, &moved, false).unwrap();
        assert_eq!(
            user["image"],
            json!({"repository": "ghcr.io/acme/nginx", "tag": "2.0.0"})
        );

        let whole = ImageEntry {
            paths: ImagePaths::Whole {
                image: "sidecar.image".into(),
            },
            pull_secret: None,
            release_notes: None,
        };
        let mut user = json!({});
        whole.write(&mut user, &current, &new, false).unwrap();
        assert_eq!(user, json!({"sidecar": {"image": "nginx:1.3.0"}}));
    }
}
