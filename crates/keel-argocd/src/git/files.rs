//! The write-back file: what Argo CD renders with it, what runs once it is written, and the
//! edit that sets an image in it.

use keel_core::ImageRef;
use keel_git::manifest::edit::{self, Step, Value as YamlValue};
use serde_json::{Value, json};

use super::{Destination, WriteBackTarget};
use crate::annotations::{HelmParameters, ImageConfig};
use crate::source::{self, SourceKind, reference_text, same_repository, tag_text};

/// `path` from the Application's path, or from the root when it starts with `/`,
/// normalised (`.` and empty components dropped).
pub(super) fn resolve(app_path: &str, path: &str) -> String {
    match path.strip_prefix('/') {
        Some(from_root) => join("", from_root),
        None => join(app_path, path),
    }
}

pub(super) fn join(a: &str, b: &str) -> String {
    a.split('/')
        .chain(b.split('/'))
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of a dotted Helm parameter name in a values file.
fn value_path(name: &str) -> Vec<Step<'_>> {
    name.split('.').map(Step::Key).collect()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `app` as Argo CD renders it with the write-back file `content`: the file's Helm
/// parameters or Kustomize images come before the Application's own, so they win where both
/// set an image.
pub(crate) fn overlay(
    app: &Value,
    destination: &Destination,
    target: &WriteBackTarget,
    content: &str,
    images: &[ImageConfig],
) -> Result<Value, String> {
    let file = edit::to_json(content).map_err(|e| format!("{}: {e}", destination.file))?;
    let mut helm: Vec<Value> = Vec::new();
    let mut kustomize: Vec<Value> = Vec::new();
    match target {
        WriteBackTarget::ArgoCdSource => {
            for p in file["helm"]["parameters"].as_array().into_iter().flatten() {
                if let (Some(name), Some(value)) = (p["name"].as_str(), scalar_text(&p["value"])) {
                    helm.push(json!({ "name": name, "value": value }));
                }
            }
            for i in file["kustomize"]["images"].as_array().into_iter().flatten() {
                if let Some(entry) = i.as_str() {
                    kustomize.push(json!(entry));
                }
            }
        }
        WriteBackTarget::Kustomization(_) => {
            for image in images {
                let wanted = image.kustomize_name();
                let entry = file["images"].as_array().into_iter().flatten().find(|e| {
                    e["name"]
                        .as_str()
                        .is_some_and(|n| same_repository(n, wanted))
                });
                let Some(entry) = entry else { continue };
                let name = entry["name"].as_str().unwrap_or(wanted);
                let new_name = entry["newName"].as_str().unwrap_or(name);
                let mut text = format!("{name}={new_name}");
                if let Some(tag) = scalar_text(&entry["newTag"]) {
                    text = format!("{text}:{tag}");
                }
                if let Some(digest) = entry["digest"].as_str() {
                    text = format!("{text}@{digest}");
                }
                kustomize.push(json!(text));
            }
        }
        WriteBackTarget::HelmValues(_) => {
            for image in images {
                let names = match &image.helm {
                    HelmParameters::NameAndTag { name, tag } => vec![name, tag],
                    HelmParameters::Spec(spec) => vec![spec],
                };
                for name in names {
                    let at = name.split('.').try_fold(&file, |v, k| v.get(k));
                    if let Some(value) = at.and_then(scalar_text) {
                        helm.push(json!({ "name": name, "value": value }));
                    }
                }
            }
        }
    }
    let mut out = app.clone();
    let source = &mut out["spec"]["source"];
    if !helm.is_empty() {
        put_first(&mut source["helm"]["parameters"], helm);
    }
    if !kustomize.is_empty() {
        put_first(&mut source["kustomize"]["images"], kustomize);
    }
    Ok(out)
}

/// Makes `list` the array of `first` then its own entries (none when it is not an array).
fn put_first(list: &mut Value, mut first: Vec<Value>) {
    first.extend(list.as_array().cloned().unwrap_or_default());
    *list = Value::Array(first);
}

/// What runs for `image` once the write-back file holds `content`.
pub(crate) fn running(
    app: &Value,
    destination: &Destination,
    target: &WriteBackTarget,
    content: Option<&str>,
    image: &ImageConfig,
) -> Result<ImageRef, String> {
    let seen = match content {
        Some(content) => overlay(
            app,
            destination,
            target,
            content,
            std::slice::from_ref(image),
        )?,
        None => app.clone(),
    };
    source::running(&seen, Some(destination.kind), image)
}

/// `content` (empty for a new file) with `image` set to `new`, every other byte kept.
pub(crate) fn write(
    content: &str,
    destination: &Destination,
    target: &WriteBackTarget,
    image: &ImageConfig,
    new: &ImageRef,
) -> Result<String, String> {
    let fail = |e: edit::EditError| format!("{}: {e}", destination.file);
    let mut text = content.to_owned();
    match (target, destination.kind) {
        (WriteBackTarget::ArgoCdSource, SourceKind::Helm) => {
            let params: Vec<(&str, String)> = match &image.helm {
                HelmParameters::NameAndTag { name, tag } => {
                    vec![(name, image.name.clone()), (tag, tag_text(new))]
                }
                HelmParameters::Spec(spec) => vec![(spec, reference_text(image, new))],
            };
            for (name, value) in params {
                let path = edit::helm_parameter(name);
                text = edit::set(&text, &path, YamlValue::String(&value)).map_err(fail)?;
                let force = [path[0], path[1], path[2], Step::Key("forcestring")];
                text = edit::set(&text, &force, YamlValue::Bool(true)).map_err(fail)?;
            }
        }
        (WriteBackTarget::ArgoCdSource, SourceKind::Kustomize) => {
            let reference = reference_text(image, new);
            let entry = match &image.kustomize_image {
                Some(name) => format!("{name}={reference}"),
                None => reference,
            };
            let wanted = image.kustomize_name().to_owned();
            let matches = move |e: &str| {
                let name = e
                    .split_once('=')
                    .map_or_else(|| name_of(e), |(n, _)| n.trim());
                same_repository(name, &wanted)
            };
            let path = edit::argocd_source_image(&matches);
            text = edit::set(&text, &path, YamlValue::String(&entry)).map_err(fail)?;
        }
        (WriteBackTarget::Kustomization(_), _) => {
            let wanted = image.kustomize_name();
            let file = edit::to_json(&text).map_err(fail)?;
            let written = file["images"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .find(|n| same_repository(n, wanted))
                .unwrap_or(wanted)
                .to_owned();
            let mut set = |key: &str, value: &str| -> Result<(), String> {
                let path = edit::kustomization_image(&written, key);
                text = edit::set(&text, &path, YamlValue::String(value)).map_err(fail)?;
                Ok(())
            };
            if image.kustomize_image.is_some() {
                set("newName", &image.name)?;
            }
            if let Some(tag) = new.tag() {
                set("newTag", tag.as_str())?;
            }
            match new.digest() {
                Some(digest) => set("digest", digest.as_str())?,
                None => {
                    let pinned = file["images"].as_array().into_iter().flatten().any(|e| {
                        e["name"].as_str() == Some(written.as_str()) && !e["digest"].is_null()
                    });
                    if pinned {
                        return Err(format!(
                            "{}: the image {written} is pinned to a digest there, and the new \
                             version {new} has none; remove the digest by hand",
                            destination.file
                        ));
                    }
                }
            }
        }
        (WriteBackTarget::HelmValues(_), _) => {
            let values: Vec<(&str, String)> = match &image.helm {
                HelmParameters::NameAndTag { name, tag } => {
                    vec![(name, image.name.clone()), (tag, tag_text(new))]
                }
                HelmParameters::Spec(spec) => vec![(spec, reference_text(image, new))],
            };
            for (name, value) in values {
                text =
                    edit::set(&text, &value_path(name), YamlValue::String(&value)).map_err(fail)?;
            }
        }
    }
    Ok(text)
}

/// `registry/repo` of `registry/repo:tag@digest`.
fn name_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference).trim();
    let path_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[path_start..].find(':') {
        Some(i) => &without_digest[..path_start + i],
        None => without_digest,
    }
}
