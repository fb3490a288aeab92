//! What an Application runs and how its parameters are rewritten: the `argocd` write-back.
//!
//! Everything here reads the Application as JSON and never panics on its content: a field of
//! an unexpected shape is as good as absent.

use keel_core::{Digest, ImageRef, Tag};
use serde_json::{Value, json};

use crate::annotations::{HelmParameters, ImageConfig, UpdateStrategy};

/// How Argo CD renders an Application's source, and so where its images are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A Helm chart: images are `spec.source.helm.parameters`.
    Helm,
    /// A Kustomize directory: images are `spec.source.kustomize.images`.
    Kustomize,
}

impl SourceKind {
    /// `spec.source.helm` or `spec.source.kustomize` when one is set, else
    /// `status.sourceType` (`Helm`, `Kustomize`); `None` for other sources.
    pub fn of(application: &Value) -> Option<SourceKind> {
        let source = &application["spec"]["source"];
        let helm = source["helm"].is_object();
        let kustomize = source["kustomize"].is_object();
        let reported = match application["status"]["sourceType"].as_str() {
            Some("Helm") => Some(SourceKind::Helm),
            Some("Kustomize") => Some(SourceKind::Kustomize),
            _ => None,
        };
        match (helm, kustomize) {
            (true, false) => Some(SourceKind::Helm),
            (false, true) => Some(SourceKind::Kustomize),
            _ => reported,
        }
    }
}

/// Why a multi-source Application (`spec.sources`, no `spec.source`) is not updated.
pub const MULTI_SOURCE: &str = "multi-source Applications (spec.sources) are not updated: which \
     of the sources holds the image's parameters is not known; give the Application one \
     spec.source";

/// Whether `application` has `spec.sources` instead of `spec.source`.
pub fn is_multi_source(application: &Value) -> bool {
    application["spec"]["source"].is_null()
        && application["spec"]["sources"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
}

/// The image `image` runs in `application`, from the Application's own parameters when they
/// set it, else from `status.summary.images`; `Err` says why neither does.
pub fn running(
    application: &Value,
    kind: Option<SourceKind>,
    image: &ImageConfig,
) -> Result<ImageRef, String> {
    let set = match kind {
        Some(SourceKind::Helm) => helm_reference(application, image)?,
        Some(SourceKind::Kustomize) => kustomize_reference(application, image)?,
        None => None,
    };
    let found = match set {
        Some(found) => found,
        None => status_reference(application, image).ok_or_else(|| {
            let params = match (kind, &image.helm) {
                (Some(SourceKind::Helm), HelmParameters::NameAndTag { tag, .. }) => {
                    format!("no Helm parameter `{tag}`")
                }
                (Some(SourceKind::Helm), HelmParameters::Spec(spec)) => {
                    format!("no Helm parameter `{spec}`")
                }
                (Some(SourceKind::Kustomize), _) => format!(
                    "no Kustomize image override for `{}`",
                    image.kustomize_name()
                ),
                (None, _) => "neither a Helm nor a Kustomize source".to_owned(),
            };
            format!(
                "{params} and no image of {} in status.summary.images: what runs is not known",
                image.repository.name()
            )
        })?,
    };
    at(image, found.tag(), found.digest())
}

/// The repository of `image` at `tag` and `digest`, as the strategy reads them: with
/// `digest`, the tag is always the one followed, and a digest of another tag is dropped.
fn at(image: &ImageConfig, tag: Option<&Tag>, digest: Option<&Digest>) -> Result<ImageRef, String> {
    let (tag, digest) = match (&image.strategy, &image.constraint) {
        (UpdateStrategy::Digest, Some(follow)) => {
            let same = tag.is_none_or(|t| t.as_str() == follow);
            (Some(follow.as_str()), digest.filter(|_| same))
        }
        _ => (tag.map(Tag::as_str), digest),
    };
    let mut text = image.repository.name();
    if let Some(tag) = tag {
        text.push(':');
        text.push_str(tag);
    }
    if let Some(digest) = digest {
        text.push('@');
        text.push_str(digest.as_str());
    }
    ImageRef::parse(&text)
        .map_err(|e| format!("`{text}` is not an image reference: {}", e.reason()))
}

/// The value of Helm parameter `name`, if set.
fn helm_parameter<'a>(application: &'a Value, name: &str) -> Option<&'a str> {
    application["spec"]["source"]["helm"]["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["value"].as_str())
}

fn helm_reference(application: &Value, image: &ImageConfig) -> Result<Option<ImageRef>, String> {
    match &image.helm {
        HelmParameters::NameAndTag { tag, .. } => {
            let Some(value) = helm_parameter(application, tag) else {
                return Ok(None);
            };
            let value = value.trim();
            let text = if value.starts_with("sha256:") {
                format!("{}@{value}", image.repository.name())
            } else {
                format!("{}:{value}", image.repository.name())
            };
            ImageRef::parse(&text).map(Some).map_err(|e| {
                format!(
                    "Helm parameter `{tag}` = {value:?} is not a tag (or `tag@digest`): {}",
                    e.reason()
                )
            })
        }
        HelmParameters::Spec(spec) => {
            let Some(value) = helm_parameter(application, spec) else {
                return Ok(None);
            };
            let parsed = ImageRef::parse(value.trim()).map_err(|e| {
                format!(
                    "Helm parameter `{spec}` = {value:?} is not an image: {}",
                    e.reason()
                )
            })?;
            if parsed.name() != image.repository.name() {
                return Err(format!(
                    "Helm parameter `{spec}` = {value:?} names another image than {}",
                    image.repository.name()
                ));
            }
            Ok(Some(parsed))
        }
    }
}

/// A Kustomize image override: `name=newName[:tag][@digest]`, `name[:tag][@digest]` or
/// `name=newName`.
struct KustomizeImage<'a> {
    /// The image it overrides.
    name: &'a str,
    /// What it is replaced by, with tag or digest where the override sets them.
    image: &'a str,
}

impl<'a> KustomizeImage<'a> {
    fn parse(entry: &'a str) -> KustomizeImage<'a> {
        match entry.split_once('=') {
            Some((name, image)) => KustomizeImage {
                name: name.trim(),
                image: image.trim(),
            },
            None => KustomizeImage {
                name: name_part(entry.trim()),
                image: entry.trim(),
            },
        }
    }
}

/// `registry/repo` of `registry/repo:tag@digest`.
fn name_part(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let path_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[path_start..].find(':') {
        Some(i) => &without_digest[..path_start + i],
        None => without_digest,
    }
}

/// Whether two image names name the same repository once normalised (`nginx` and
/// `docker.io/library/nginx`).
pub(crate) fn same_repository(a: &str, b: &str) -> bool {
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(a), Ok(b)) => a.name() == b.name(),
        _ => a == b,
    }
}

fn kustomize_images(application: &Value) -> Vec<&str> {
    application["spec"]["source"]["kustomize"]["images"]
        .as_array()
        .map(|images| images.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn kustomize_reference(
    application: &Value,
    image: &ImageConfig,
) -> Result<Option<ImageRef>, String> {
    let wanted = image.kustomize_name();
    let Some(entry) = kustomize_images(application)
        .into_iter()
        .find(|e| same_repository(KustomizeImage::parse(e).name, wanted))
    else {
        return Ok(None);
    };
    let over = KustomizeImage::parse(entry);
    if name_part(over.image) == over.image {
        // `name=newName`: no tag of its own; what runs is what Argo CD reports.
        return Ok(None);
    }
    ImageRef::parse(over.image).map(Some).map_err(|e| {
        format!(
            "Kustomize image override {entry:?} is not `name=newName:tag`, `name:tag` or \
             `name@digest`: {}",
            e.reason()
        )
    })
}

fn status_reference(application: &Value, image: &ImageConfig) -> Option<ImageRef> {
    application["status"]["summary"]["images"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|s| ImageRef::parse(s.trim()).ok())
        .find(|r| r.name() == image.repository.name())
}

/// How the tag of `new` is written: `tag`, `tag@digest`, or the digest alone.
pub(crate) fn tag_text(new: &ImageRef) -> String {
    match (new.tag(), new.digest()) {
        (Some(t), Some(d)) => format!("{t}@{d}"),
        (Some(t), None) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => String::new(),
    }
}

/// `name:tag`, `name:tag@digest` or `name@digest` for `new`, with the image name as written.
pub(crate) fn reference_text(image: &ImageConfig, new: &ImageRef) -> String {
    match new.tag() {
        Some(_) => format!("{}:{}", image.name, tag_text(new)),
        None => format!("{}@{}", image.name, tag_text(new)),
    }
}

/// Sets Helm parameter `name` to `value` (as a string), in place when it exists.
fn set_parameter(parameters: &mut Vec<Value>, name: &str, value: &str) {
    match parameters
        .iter_mut()
        .find(|p| p["name"].as_str() == Some(name))
    {
        Some(Value::Object(p)) => {
            p.insert("value".into(), Value::String(value.to_owned()));
            p.insert("forceString".into(), Value::Bool(true));
        }
        _ => parameters.push(json!({ "name": name, "value": value, "forceString": true })),
    }
}

/// The merge patch of `spec.source` that makes `application` run `new` for `image`: the
/// whole parameter or image list, every other entry kept as it is, in its place.
pub fn write(application: &Value, kind: SourceKind, image: &ImageConfig, new: &ImageRef) -> Value {
    match kind {
        SourceKind::Helm => {
            let mut parameters: Vec<Value> = application["spec"]["source"]["helm"]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match &image.helm {
                HelmParameters::NameAndTag { name, tag } => {
                    set_parameter(&mut parameters, name, &image.name);
                    set_parameter(&mut parameters, tag, &tag_text(new));
                }
                HelmParameters::Spec(spec) => {
                    set_parameter(&mut parameters, spec, &reference_text(image, new));
                }
            }
            json!({ "helm": { "parameters": parameters } })
        }
        SourceKind::Kustomize => {
            let reference = reference_text(image, new);
            let entry = match &image.kustomize_image {
                Some(name) => format!("{name}={reference}"),
                None => reference,
            };
            let wanted = image.kustomize_name();
            let mut images: Vec<Value> = application["spec"]["source"]["kustomize"]["images"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let existing = images.iter_mut().find(|e| {
                e.as_str()
                    .is_some_and(|e| same_repository(KustomizeImage::parse(e).name, wanted))
            });
            match existing {
                Some(slot) => *slot = Value::String(entry),
                None => images.push(Value::String(entry)),
            }
            json!({ "kustomize": { "images": images } })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::annotations::ApplicationConfig;

    fn image(pairs: &[(&str, &str)]) -> ImageConfig {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| {
                (
                    format!("argocd-image-updater.argoproj.io/{k}"),
                    (*v).to_owned(),
                )
            })
            .collect();
        ApplicationConfig::parse(&annotations)
            .expect("valid annotations")
            .images
            .remove(0)
    }

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn source_kind_prefers_the_spec_then_the_status() {
        assert_eq!(
            SourceKind::of(&json!({"spec": {"source": {"helm": {}}}})),
            Some(SourceKind::Helm)
        );
        assert_eq!(
            SourceKind::of(&json!({"spec": {"source": {"kustomize": {}}}})),
            Some(SourceKind::Kustomize)
        );
        assert_eq!(
            SourceKind::of(&json!({"spec": {"source": {}}, "status": {"sourceType": "Kustomize"}})),
            Some(SourceKind::Kustomize)
        );
        assert_eq!(
            SourceKind::of(&json!({"status": {"sourceType": "Directory"}})),
            None
        );
        assert_eq!(SourceKind::of(&json!("not an object")), None);
    }

    #[test]
    fn running_reads_parameters_then_status() {
        let web = image(&[("image-list", "web=ghcr.io/acme/web:~1.2")]);
        let app = json!({
            "spec": {"source": {"helm": {"parameters": [
                {"name": "image.tag", "value": "1.2.3"}
            ]}}},
            "status": {"summary": {"images": ["ghcr.io/acme/web:1.0.0"]}}
        });
        assert_eq!(
            running(&app, Some(SourceKind::Helm), &web),
            Ok(r("ghcr.io/acme/web:1.2.3"))
        );
        let app = json!({"status": {"summary": {"images": ["other:1", "ghcr.io/acme/web:1.0.0"]}}});
        assert_eq!(
            running(&app, Some(SourceKind::Helm), &web),
            Ok(r("ghcr.io/acme/web:1.0.0"))
        );
        let err = running(&json!({}), Some(SourceKind::Helm), &web).unwrap_err();
        assert_eq!(
            err,
            "no Helm parameter `image.tag` and no image of ghcr.io/acme/web in \
             status.summary.images: what runs is not known"
        );
        let bad = json!({"spec": {"source": {"helm": {"parameters": [
            {"name": "image.tag", "value": "not a tag"}
        ]}}}});
        let err = running(&bad, Some(SourceKind::Helm), &web).unwrap_err();
        assert!(
            err.starts_with("Helm parameter `image.tag` = \"not a tag\""),
            "{err}"
        );
    }

    #[test]
    fn running_reads_every_kustomize_form() {
        let web = image(&[("image-list", "web=ghcr.io/acme/web")]);
        for (entry, runs) in [
            (
                "ghcr.io/acme/web=ghcr.io/acme/web:1.4.0",
                "ghcr.io/acme/web:1.4.0",
            ),
            ("ghcr.io/acme/web:1.4.1", "ghcr.io/acme/web:1.4.1"),
            (
                &format!("ghcr.io/acme/web@sha256:{}", "a".repeat(64)),
                &format!("ghcr.io/acme/web@sha256:{}", "a".repeat(64)),
            ),
        ] {
            let app = json!({"spec": {"source": {"kustomize": {"images": ["nginx:1", entry]}}}});
            assert_eq!(
                running(&app, Some(SourceKind::Kustomize), &web),
                Ok(r(runs)),
                "{entry}"
            );
        }
        let aliased = image(&[
            ("image-list", "web=ghcr.io/acme/web"),
            ("web.kustomize.image-name", "acme/web-base"),
        ]);
        let app = json!({"spec": {"source": {"kustomize": {"images": [
            "acme/web-base=ghcr.io/acme/web:2.0.0"
        ]}}}});
        assert_eq!(
            running(&app, Some(SourceKind::Kustomize), &aliased),
            Ok(r("ghcr.io/acme/web:2.0.0"))
        );
    }

    #[test]
    fn digest_strategy_always_runs_the_followed_tag() {
        let stable = image(&[
            ("image-list", "web=ghcr.io/acme/web:stable"),
            ("web.update-strategy", "digest"),
        ]);
        let d = format!("sha256:{}", "b".repeat(64));
        let app = json!({"spec": {"source": {"helm": {"parameters": [
            {"name": "image.tag", "value": format!("stable@{d}")}
        ]}}}});
        assert_eq!(
            running(&app, Some(SourceKind::Helm), &stable),
            Ok(r(&format!("ghcr.io/acme/web:stable@{d}")))
        );
        // Another tag's digest is not the followed tag's.
        let app = json!({"spec": {"source": {"helm": {"parameters": [
            {"name": "image.tag", "value": format!("1.0@{d}")}
        ]}}}});
        assert_eq!(
            running(&app, Some(SourceKind::Helm), &stable),
            Ok(r("ghcr.io/acme/web:stable"))
        );
    }

    #[test]
    fn writes_keep_other_parameters_in_order() {
        let web = image(&[("image-list", "web=ghcr.io/acme/web")]);
        let app = json!({"spec": {"source": {"helm": {"parameters": [
            {"name": "replicas", "value": "2"},
            {"name": "image.tag", "value": "1.0.0"},
            {"name": "ingress.enabled", "value": "true", "forceString": false}
        ]}}}});
        let patch = write(&app, SourceKind::Helm, &web, &r("ghcr.io/acme/web:1.1.0"));
        assert_eq!(
            patch,
            json!({"helm": {"parameters": [
                {"name": "replicas", "value": "2"},
                {"name": "image.tag", "value": "1.1.0", "forceString": true},
                {"name": "ingress.enabled", "value": "true", "forceString": false},
                {"name": "image.name", "value": "ghcr.io/acme/web", "forceString": true}
            ]}})
        );
    }

    #[test]
    fn kustomize_writes_replace_only_their_entry() {
        let web = image(&[("image-list", "web=ghcr.io/acme/web")]);
        let app = json!({"spec": {"source": {"kustomize": {"images": [
            "nginx:1.25", "ghcr.io/acme/web:1.0.0", "redis=redis:7"
        ]}}}});
        let patch = write(
            &app,
            SourceKind::Kustomize,
            &web,
            &r("ghcr.io/acme/web:1.1.0"),
        );
        assert_eq!(
            patch,
            json!({"kustomize": {"images": ["nginx:1.25", "ghcr.io/acme/web:1.1.0", "redis=redis:7"]}})
        );
    }

    #[test]
    fn writes_to_an_empty_source_use_the_configured_names() {
        // (option key and value, kind, new reference, patch)
        let table = [
            (
                ("web.helm.image-spec", "web.image"),
                SourceKind::Helm,
                "ghcr.io/acme/web:2.0.0",
                json!({"helm": {"parameters": [
                    {"name": "web.image", "value": "ghcr.io/acme/web:2.0.0", "forceString": true}
                ]}}),
            ),
            (
                ("web.kustomize.image-name", "acme/web-base"),
                SourceKind::Kustomize,
                "ghcr.io/acme/web:3.0.0",
                json!({"kustomize": {"images": ["acme/web-base=ghcr.io/acme/web:3.0.0"]}}),
            ),
        ];
        for (option, kind, new, patch) in table {
            let configured = image(&[("image-list", "web=ghcr.io/acme/web"), option]);
            assert_eq!(
                write(&json!({}), kind, &configured, &r(new)),
                patch,
                "{option:?}"
            );
        }
    }

    /// Arbitrary JSON built from a few shapes, at the places the reader looks.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[ -~]{0,24}".prop_map(Value::String),
            Just(json!("127.0.0.1:5000/acme/web:1.0")),
            Just(json!({"name": "image.tag", "value": "1.2.3"})),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("name".to_owned()),
                        Just("value".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// No Application content makes reading or writing panic, and what is written for a
        /// Helm or Kustomize source reads back as the new image.
        #[test]
        fn any_application_is_read_and_written(
            parameters in json_value(),
            images in json_value(),
            status in json_value(),
            kind in prop_oneof![Just(SourceKind::Helm), Just(SourceKind::Kustomize)],
        ) {
            let web = image(&[("image-list", "web=127.0.0.1:5000/acme/web")]);
            let app = json!({
                "spec": {"source": {"helm": {"parameters": parameters},
                                     "kustomize": {"images": images}}},
                "status": {"summary": {"images": status}}
            });
            let _ = running(&app, Some(kind), &web);
            let new = r("127.0.0.1:5000/acme/web:9.9.9");
            let patch = write(&app, kind, &web, &new);
            let mut written = app.clone();
            let key = match kind {
                SourceKind::Helm => "helm",
                SourceKind::Kustomize => "kustomize",
            };
            written["spec"]["source"][key] = patch[key].clone();
            prop_assert_eq!(running(&written, Some(kind), &web), Ok(new));
        }
    }
}
