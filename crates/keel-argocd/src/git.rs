//! The `git` write-back: where Image Updater commits an Application's new images, what the
//! commit changes, and how what runs is read back from it.
//!
//! [`GitSettings`] holds what the annotations `git-repository`, `git-branch` and
//! `write-back-target` (or an ImageUpdater's `writeBackConfig.gitConfig`) ask for, parsed
//! once; the target commits through keel-git's [`BranchCommit`](keel_git::BranchCommit).

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use keel_core::ImageRef;
use keel_git::GitAuth;
use keel_git::manifest::edit::{self, Step, Value as YamlValue};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::annotations::{HelmParameters, ImageConfig, PREFIX};
use crate::source::{self, SourceKind, reference_text, same_repository, tag_text};

/// `git-repository`: the repository to commit to (default: the Application's
/// `spec.source.repoURL`).
pub const GIT_REPOSITORY: &str = "argocd-image-updater.argoproj.io/git-repository";
/// `git-branch`: `<branch>`, `<base>:<push>` or `:<push>`; `<push>` may be a template.
pub const GIT_BRANCH: &str = "argocd-image-updater.argoproj.io/git-branch";
/// `write-back-target`: `kustomization[:<dir>]` or `helmvalues[:<file>]` (default: the
/// `.argocd-source-<app>.yaml` file).
pub const WRITE_BACK_TARGET: &str = "argocd-image-updater.argoproj.io/write-back-target";

/// Image Updater's commit author.
pub const DEFAULT_AUTHOR: (&str, &str) = ("argocd-image-updater", "noreply@argoproj.io");

/// Image Updater's commit message, as a template of
/// [`ArgoCdTarget::with_git_message`](crate::ArgoCdTarget::with_git_message): `{app}` is the
/// Application's name, `{image}`
/// the image name, `{alias}` its alias, `{old}` and `{new}` the tags (`tag@digest` with a
/// digest).
pub const DEFAULT_MESSAGE: &str =
    "build: automatic update of {app}\n\nupdates image {image} tag '{old}' to '{new}'\n";

/// The file a `git` write-back edits (`write-back-target`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum WriteBackTarget {
    /// The default: `.argocd-source-<app>.yaml` in the Application's path, holding Helm
    /// parameters or Kustomize images as Argo CD reads them.
    #[default]
    ArgoCdSource,
    /// `kustomization[:<dir>]`: the `images:` of `<dir>/kustomization.yaml` (default dir: the
    /// Application's path).
    Kustomization(String),
    /// `helmvalues[:<file>]`: the values at the Helm parameter names (dotted keys) in `<file>`
    /// (default `values.yaml` in the Application's path).
    HelmValues(String),
}

impl WriteBackTarget {
    /// Parses `kustomization[:<dir>]` or `helmvalues[:<file>]`; a path is relative to the
    /// Application's path, or to the repository root when it starts with `/`, and may not
    /// contain `..`.
    pub fn parse(value: &str) -> Result<WriteBackTarget, String> {
        let value = value.trim();
        let (kind, path) = match value.split_once(':') {
            Some((kind, path)) => (kind, Some(path.trim())),
            None => (value, None),
        };
        let path = match path {
            Some(path) => {
                check_relative(path)?;
                Some(path.to_owned())
            }
            None => None,
        };
        match kind {
            "kustomization" => Ok(WriteBackTarget::Kustomization(
                path.unwrap_or_else(|| ".".into()),
            )),
            "helmvalues" => Ok(WriteBackTarget::HelmValues(
                path.unwrap_or_else(|| "values.yaml".into()),
            )),
            _ => {
                Err("expected `kustomization[:<directory>]` or `helmvalues[:<values file>]`".into())
            }
        }
    }
}

impl fmt::Display for WriteBackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteBackTarget::ArgoCdSource => f.write_str(".argocd-source"),
            WriteBackTarget::Kustomization(dir) => write!(f, "kustomization:{dir}"),
            WriteBackTarget::HelmValues(file) => write!(f, "helmvalues:{file}"),
        }
    }
}

/// A path written in a setting: no `..`, no NUL or backslash, not empty.
fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path after `:` is empty".into());
    }
    if path.contains(['\0', '\\']) {
        return Err("a path may not hold a NUL or backslash".into());
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!(
            "`{path}` contains `..`: paths stay inside the repository"
        ));
    }
    Ok(())
}

/// One piece of a branch template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Sha256,
    /// `{{range .Images}}...{{end}}`: the pieces, once per change.
    Images(Vec<ImagePart>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ImagePart {
    Text(String),
    Name,
    Alias,
    OldTag,
    NewTag,
}

/// The push branch of `git-branch: <base>:<push>`, with Image Updater's template fields:
/// `{{.SHA256}}` (here: the hex SHA-256 of the commit's change lines
/// `updates image <name> tag '<old>' to '<new>'`, so the same changes give the same branch)
/// and `{{range .Images}}...{{end}}` with `{{.Name}}`, `{{.Alias}}`, `{{.OldTag}}`,
/// `{{.NewTag}}` inside. Any other template action is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BranchTemplate {
    written: String,
    parts: Vec<Part>,
}

/// One change a commit makes, for a branch template and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The image's alias.
    pub alias: String,
    /// The image name, as configured.
    pub name: String,
    /// The tag before.
    pub old_tag: String,
    /// The tag after.
    pub new_tag: String,
}

impl Change {
    /// The line Image Updater's commit message has for the change.
    pub fn line(&self) -> String {
        format!(
            "updates image {} tag '{}' to '{}'",
            self.name, self.old_tag, self.new_tag
        )
    }
}

/// How long a branch name may be, as Image Updater truncates them.
const MAX_BRANCH: usize = 255;

impl BranchTemplate {
    /// Parses a branch name or template.
    pub fn parse(text: &str) -> Result<BranchTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut range: Option<Vec<ImagePart>> = None;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                push_text(&mut parts, &mut range, rest);
                break;
            };
            push_text(&mut parts, &mut range, &rest[..open]);
            let Some(close) = rest[open..].find("}}") else {
                return Err("a `{{` is not closed by `}}`".into());
            };
            let action = rest[open + 2..open + close].trim().trim_matches('-').trim();
            rest = &rest[open + close + 2..];
            let in_range = range.is_some();
            match (action, range.as_mut()) {
                (".SHA256", None) => parts.push(Part::Sha256),
                ("range .Images", None) => range = Some(Vec::new()),
                ("end", Some(_)) => parts.push(Part::Images(range.take().unwrap_or_default())),
                (".Name", Some(r)) => r.push(ImagePart::Name),
                (".Alias", Some(r)) => r.push(ImagePart::Alias),
                (".OldTag", Some(r)) => r.push(ImagePart::OldTag),
                (".NewTag", Some(r)) => r.push(ImagePart::NewTag),
                (other, _) => {
                    return Err(format!(
                        "`{{{{{other}}}}}` is not supported {}: use `{{{{.SHA256}}}}` or \
                         `{{{{range .Images}}}}` with `.Name`, `.Alias`, `.OldTag`, `.NewTag` \
                         and `{{{{end}}}}`",
                        if in_range { "inside a range" } else { "here" }
                    ));
                }
            }
        }
        if range.is_some() {
            return Err("`{{range .Images}}` is not closed by `{{end}}`".into());
        }
        let template = BranchTemplate {
            written: text.to_owned(),
            parts,
        };
        if let Some(literal) = template.literal() {
            check_branch(literal)?;
        }
        Ok(template)
    }

    /// The branch name when the template has no action.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The branch for `changes`, truncated to 255 bytes.
    pub fn render(&self, changes: &[Change]) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Sha256 => {
                    let mut hasher = Sha256::new();
                    for change in changes {
                        hasher.update(change.line().as_bytes());
                        hasher.update(b"\n");
                    }
                    out.push_str(&hex::encode(hasher.finalize()));
                }
                Part::Images(pieces) => {
                    for change in changes {
                        for piece in pieces {
                            out.push_str(match piece {
                                ImagePart::Text(t) => t,
                                ImagePart::Name => &change.name,
                                ImagePart::Alias => &change.alias,
                                ImagePart::OldTag => &change.old_tag,
                                ImagePart::NewTag => &change.new_tag,
                            });
                        }
                    }
                }
            }
        }
        let mut end = out.len().min(MAX_BRANCH);
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        check_branch(&out)
            .map_err(|reason| format!("template `{}` makes `{out}`: {reason}", self.written))?;
        Ok(out)
    }
}

impl fmt::Display for BranchTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

fn push_text(parts: &mut Vec<Part>, range: &mut Option<Vec<ImagePart>>, text: &str) {
    if text.is_empty() {
        return;
    }
    match range {
        Some(r) => r.push(ImagePart::Text(text.to_owned())),
        None => parts.push(Part::Text(text.to_owned())),
    }
}

/// Whether `name` is a valid branch name, by git's rules for ref names.
fn check_branch(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with(['-', '/', '.'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name.contains("/.")
        || name == "@"
        || name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{name}` is not a valid git branch name"))
    } else {
        Ok(())
    }
}

/// Where and how a `git` write-back commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct GitSettings {
    /// `git-repository` / `gitConfig.repository`: the repository, when not the
    /// Application's `spec.source.repoURL`.
    pub repository: Option<String>,
    /// The branch checked out, when not the Application's `spec.source.targetRevision`
    /// (`HEAD` or empty: the remote's default branch).
    pub branch: Option<String>,
    /// The branch pushed to, when not the checked-out one.
    pub push_branch: Option<BranchTemplate>,
    /// `write-back-target` / `gitConfig.writeBackTarget`.
    pub target: WriteBackTarget,
}

/// One bad setting: the key it is written under, the value and the reason.
pub(crate) type SettingError = (String, String, String);

impl GitSettings {
    /// Reads the settings from `get(name)` (`repository`, `branch`, `target`), which
    /// answers the key a setting is written under and its value.
    pub(crate) fn parse(
        get: &dyn Fn(&str) -> Option<(String, String)>,
    ) -> Result<GitSettings, Vec<SettingError>> {
        let mut errors = Vec::new();
        let mut settings = GitSettings::default();
        if let Some((key, value)) = get("repository") {
            let v = value.trim();
            if v.is_empty() || v.contains(char::is_whitespace) {
                errors.push((
                    key,
                    value.clone(),
                    "expected the URL of a Git repository".into(),
                ));
            } else {
                settings.repository = Some(v.to_owned());
            }
        }
        if let Some((key, value)) = get("branch") {
            let v = value.trim();
            let (base, push) = match v.split_once(':') {
                Some((base, push)) => (base.trim(), Some(push.trim())),
                None => (v, None),
            };
            if !base.is_empty() {
                match check_branch(base) {
                    Ok(()) => settings.branch = Some(base.to_owned()),
                    Err(reason) => errors.push((key.clone(), value.clone(), reason)),
                }
            }
            match push.map(BranchTemplate::parse) {
                Some(Ok(t)) if t.literal() == Some("") => errors.push((
                    key.clone(),
                    value.clone(),
                    "the branch after `:` is empty".into(),
                )),
                Some(Ok(t)) => settings.push_branch = Some(t),
                Some(Err(reason)) => errors.push((key.clone(), value.clone(), reason)),
                None => {}
            }
        }
        if let Some((key, value)) = get("target") {
            match WriteBackTarget::parse(&value) {
                Ok(target) => settings.target = target,
                Err(reason) => errors.push((key, value, reason)),
            }
        }
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    /// The annotation keys of the settings, by name.
    pub(crate) fn annotation(name: &str) -> &'static str {
        match name {
            "repository" => GIT_REPOSITORY,
            "branch" => GIT_BRANCH,
            _ => WRITE_BACK_TARGET,
        }
    }
}

/// Why a git write-back cannot go on: the setting (key and value) and the reason.
#[derive(Clone, Debug)]
pub(crate) struct GitProblem {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) reason: String,
}

impl GitProblem {
    pub(crate) fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        GitProblem {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Where one Application's write-back goes.
#[derive(Clone, Debug)]
pub(crate) struct Destination {
    pub(crate) url: String,
    /// `None`: the remote's default branch.
    pub(crate) branch: Option<String>,
    pub(crate) push_branch: Option<BranchTemplate>,
    /// The file, from the repository root.
    pub(crate) file: String,
    pub(crate) kind: SourceKind,
}

/// What Application `name` (its `app` content, with `settings`) writes back to; `Err`
/// names the setting that is wrong.
pub(crate) fn destination(
    name: &str,
    app: &Value,
    settings: &GitSettings,
) -> Result<Destination, GitProblem> {
    if source::is_multi_source(app) {
        return Err(GitProblem::new("spec.sources", "", source::MULTI_SOURCE));
    }
    let source = &app["spec"]["source"];
    let url = match &settings.repository {
        Some(url) => url.clone(),
        None => match source["repoURL"].as_str().map(str::trim) {
            Some(url) if !url.is_empty() => url.to_owned(),
            _ => {
                return Err(GitProblem::new(
                    "spec.source.repoURL",
                    "",
                    "the git write-back needs the Application's repository",
                ));
            }
        },
    };
    let branch = match &settings.branch {
        Some(b) => Some(b.clone()),
        None => match source["targetRevision"].as_str().map(str::trim) {
            None | Some("") | Some("HEAD") => None,
            Some(rev) => match check_branch(rev) {
                Ok(()) => Some(rev.to_owned()),
                Err(reason) => {
                    return Err(GitProblem::new(
                        "spec.source.targetRevision",
                        rev,
                        format!("{reason}; name the branch with {GIT_BRANCH}"),
                    ));
                }
            },
        },
    };
    let app_path = source["path"].as_str().unwrap_or("");
    let (key, value) = (WRITE_BACK_TARGET, settings.target.to_string());
    if app_path.split('/').any(|c| c == "..") {
        return Err(GitProblem::new(
            "spec.source.path",
            app_path,
            "contains `..`: paths stay inside the repository",
        ));
    }
    let (file, kind) = match &settings.target {
        WriteBackTarget::ArgoCdSource => {
            let Some(kind) = SourceKind::of(app) else {
                return Err(GitProblem::new(
                    key,
                    value,
                    "the Application's source is neither Helm nor Kustomize, so the \
                     .argocd-source file has nothing to set",
                ));
            };
            (join(app_path, &format!(".argocd-source-{name}.yaml")), kind)
        }
        WriteBackTarget::Kustomization(dir) => (
            join(&resolve(app_path, dir), "kustomization.yaml"),
            SourceKind::Kustomize,
        ),
        WriteBackTarget::HelmValues(file) => (resolve(app_path, file), SourceKind::Helm),
    };
    if file.is_empty() || file.split('/').any(|c| c == "..") {
        return Err(GitProblem::new(
            key,
            value,
            "names no file inside the repository",
        ));
    }
    Ok(Destination {
        url,
        branch,
        push_branch: settings.push_branch.clone(),
        file,
        kind,
    })
}

/// The subdirectory of the working directory for the repository at `url`.
pub(crate) fn workdir_name(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    hex::encode(&digest[..8])
}

/// `path` from the Application's path, or from the root when it starts with `/`,
/// normalised (`.` and empty components dropped).
fn resolve(app_path: &str, path: &str) -> String {
    match path.strip_prefix('/') {
        Some(from_root) => join("", from_root),
        None => join(app_path, path),
    }
}

fn join(a: &str, b: &str) -> String {
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
        let own = source["helm"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        helm.extend(own);
        source["helm"]["parameters"] = Value::Array(helm);
    }
    if !kustomize.is_empty() {
        let own = source["kustomize"]["images"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        kustomize.extend(own);
        source["kustomize"]["images"] = Value::Array(kustomize);
    }
    Ok(out)
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
                let item = Step::Item {
                    key: "name",
                    value: name,
                };
                let path = [
                    Step::Key("helm"),
                    Step::Key("parameters"),
                    item,
                    Step::Key("value"),
                ];
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
            let path = [
                Step::Key("kustomize"),
                Step::Key("images"),
                Step::ScalarItem(&matches),
            ];
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
            let item = Step::Item {
                key: "name",
                value: &written,
            };
            let mut set = |key: &str, value: &str| -> Result<(), String> {
                let path = [Step::Key("images"), item, Step::Key(key)];
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

/// Whether `url` is reached over SSH (`ssh://`, or `user@host:path`).
fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://")
        || url.starts_with("git+ssh://")
        || (url.contains('@') && !url.contains("://"))
}

/// The ConfigMap and key where Argo CD keeps the SSH host keys of repository servers.
pub const KNOWN_HOSTS_CONFIGMAP: (&str, &str) = ("argocd-ssh-known-hosts-cm", "ssh_known_hosts");

/// The Secret label Argo CD marks repository credentials with.
const SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

/// The credentials for `url` that `credentials` (what follows `git:` in the method) names:
/// empty or `repocreds`, Argo CD's repository Secrets in `argocd_namespace`
/// (`secret-type: repository` whose `url` is `url`, else the `repo-creds` whose `url` is
/// the longest prefix of it); `secret:<ns>/<name>`, that Secret. `Err` names the Secret and
/// what is wrong, never a credential.
pub(crate) async fn auth(
    client: &Client,
    argocd_namespace: &str,
    credentials: &str,
    url: &str,
) -> Result<GitAuth, GitProblem> {
    let method = format!("{PREFIX}write-back-method");
    let value = if credentials.is_empty() {
        "git".to_owned()
    } else {
        format!("git:{credentials}")
    };
    let problem = |reason: String| GitProblem::new(method.clone(), value.clone(), reason);
    let secret = match credentials {
        "" | "repocreds" => {
            let api: Api<Secret> = Api::namespaced(client.clone(), argocd_namespace);
            let request = |e| {
                keel_k8s::error::from_kube(
                    e,
                    &keel_k8s::error::Request {
                        verb: "list",
                        resource: "secrets",
                        namespace: Some(argocd_namespace),
                        name: None,
                    },
                )
                .to_string()
            };
            let list = api
                .list(
                    &ListParams::default()
                        .labels(&format!("{SECRET_TYPE} in (repository,repo-creds)")),
                )
                .await
                .map_err(|e| problem(request(e)))?;
            let field = |s: &Secret, k: &str| -> Option<String> {
                s.data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
            };
            let kind = |s: &Secret| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SECRET_TYPE))
                    .cloned()
                    .unwrap_or_default()
            };
            let exact = list.items.iter().find(|s| {
                kind(s) == "repository" && field(s, "url").is_some_and(|u| same_url(&u, url))
            });
            let prefix = || {
                list.items
                    .iter()
                    .filter(|s| kind(s) == "repo-creds")
                    .filter_map(|s| field(s, "url").map(|u| (u, s)))
                    .filter(|(u, _)| !u.trim().is_empty() && url.starts_with(u.trim()))
                    .max_by_key(|(u, _)| u.trim().len())
                    .map(|(_, s)| s)
            };
            match exact.or_else(prefix) {
                Some(s) => s.clone(),
                None if is_ssh(url) => return Err(no_ssh_key(url)),
                None => return Ok(GitAuth::None),
            }
        }
        other => {
            let Some(rest) = other.strip_prefix("secret:") else {
                return Err(problem(
                    "expected `git`, `git:repocreds` or `git:secret:<namespace>/<name>`".into(),
                ));
            };
            let Some((ns, name)) = rest
                .split_once('/')
                .filter(|(n, m)| !n.is_empty() && !m.is_empty() && !m.contains('/'))
            else {
                return Err(problem(format!(
                    "`{rest}` is not `<namespace>/<name>` of a Secret"
                )));
            };
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            api.get(name).await.map_err(|e| {
                problem(
                    keel_k8s::error::from_kube(
                        e,
                        &keel_k8s::error::Request {
                            verb: "get",
                            resource: "secrets",
                            namespace: Some(ns),
                            name: Some(name),
                        },
                    )
                    .to_string(),
                )
            })?
        }
    };
    let shown = format!(
        "secret {}/{}",
        secret.metadata.namespace.as_deref().unwrap_or(""),
        secret.metadata.name.as_deref().unwrap_or("")
    );
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|v| {
                String::from_utf8(v.0.clone())
                    .map_err(|_| problem(format!("field `{k}` of {shown} is not UTF-8")))
            })
            .transpose()
    };
    if is_ssh(url) {
        let Some(key) = text("sshPrivateKey")? else {
            return Err(no_ssh_key(url));
        };
        let known_hosts = known_hosts(client, argocd_namespace)
            .await
            .map_err(problem)?;
        return Ok(GitAuth::SshKeyInMemory {
            username: "git".into(),
            private_key: key.into(),
            passphrase: None,
            known_hosts,
        });
    }
    if data.contains_key("sshPrivateKey") && !data.contains_key("password") {
        return Err(problem(format!(
            "{shown} holds an SSH key, and the repository {} is not an SSH URL",
            keel_core::redact_urls(url)
        )));
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) if !password.is_empty() => Ok(GitAuth::UserPassword {
            username: if username.is_empty() {
                "git".into()
            } else {
                username
            },
            password: password.into(),
        }),
        _ => Err(problem(format!(
            "{shown} has no `username` and `password` (Argo CD's repository credential fields)"
        ))),
    }
}

fn no_ssh_key(url: &str) -> GitProblem {
    GitProblem::new(
        "spec.source.repoURL",
        keel_core::redact_urls(url),
        "an SSH repository needs a private key: Argo CD's repository credentials or the \
         Secret of git:secret:<ns>/<name> with `sshPrivateKey`",
    )
}

/// The SSH host keys Argo CD trusts (ConfigMap `argocd-ssh-known-hosts-cm`, key
/// `ssh_known_hosts`, in its namespace): an SSH server must show one of them before any key
/// is offered to it.
async fn known_hosts(
    client: &Client,
    namespace: &str,
) -> Result<keel_git::known_hosts::KnownHosts, String> {
    let (name, key) = KNOWN_HOSTS_CONFIGMAP;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let map = api.get(name).await.map_err(|e| {
        keel_k8s::error::from_kube(
            e,
            &keel_k8s::error::Request {
                verb: "get",
                resource: "configmaps",
                namespace: Some(namespace),
                name: Some(name),
            },
        )
        .to_string()
            + " (SSH needs the server's host key pinned there)"
    })?;
    let text = map.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| {
        format!(
            "ConfigMap {namespace}/{name} has no `{key}`: SSH needs the server's host key pinned"
        )
    })?;
    keel_git::known_hosts::KnownHosts::parse(text)
        .map_err(|e| format!("`{key}` of ConfigMap {namespace}/{name}: {e}"))
}

/// Whether two repository URLs name the same repository (a trailing `/` or `.git` aside).
fn same_url(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.trim().trim_end_matches('/');
        u.strip_suffix(".git").unwrap_or(u).to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// The commit message of `template` for one change of Application `app`.
pub(crate) fn message(template: &str, app: &str, image: &ImageConfig, change: &Change) -> String {
    template
        .replace("{app}", app)
        .replace("{alias}", &image.alias)
        .replace("{image}", &change.name)
        .replace("{old}", &change.old_tag)
        .replace("{new}", &change.new_tag)
}

/// The change of `image` from `old` to `new`.
pub(crate) fn change(image: &ImageConfig, old: &ImageRef, new: &ImageRef) -> Change {
    Change {
        alias: image.alias.clone(),
        name: image.name.clone(),
        old_tag: tag_text(old),
        new_tag: tag_text(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_targets() {
        assert_eq!(
            WriteBackTarget::parse("kustomization").unwrap(),
            WriteBackTarget::Kustomization(".".into())
        );
        assert_eq!(
            WriteBackTarget::parse("helmvalues:/charts/web/values.yaml").unwrap(),
            WriteBackTarget::HelmValues("/charts/web/values.yaml".into())
        );
        for bad in [
            "kustomization:../up",
            "helmvalues:a/../../b",
            "helm",
            "helmvalues:",
        ] {
            assert!(WriteBackTarget::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(resolve("apps/web", "./x"), "apps/web/x");
        assert_eq!(resolve("apps/web", "/base/values.yaml"), "base/values.yaml");
        assert_eq!(
            join(&resolve("apps/web", "."), "kustomization.yaml"),
            "apps/web/kustomization.yaml"
        );
    }

    #[test]
    fn branch_templates() {
        let changes = [Change {
            alias: "web".into(),
            name: "ghcr.io/acme/web".into(),
            old_tag: "1.0".into(),
            new_tag: "1.1".into(),
        }];
        let t =
            BranchTemplate::parse("image-updater-{{range .Images}}{{.Alias}}-{{.NewTag}}{{end}}")
                .unwrap();
        assert_eq!(t.render(&changes).unwrap(), "image-updater-web-1.1");
        let t = BranchTemplate::parse("updates-{{.SHA256}}").unwrap();
        let rendered = t.render(&changes).unwrap();
        assert_eq!(rendered.len(), "updates-".len() + 64);
        assert_eq!(rendered, t.render(&changes).unwrap());
        for (bad, want) in [
            ("x-{{.AppName}}", "not supported"),
            ("x-{{range .Images}}{{.Name}}", "not closed"),
            ("x-{{.SHA256", "not closed"),
            ("a..b", "not a valid git branch"),
            ("a b", "not a valid git branch"),
        ] {
            let err = BranchTemplate::parse(bad).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        // A name that renders into a bad branch name is refused when rendered.
        let t = BranchTemplate::parse("u-{{range .Images}}{{.Name}}:{{.NewTag}}{{end}}").unwrap();
        assert!(
            t.render(&changes)
                .unwrap_err()
                .contains("not a valid git branch")
        );
    }

    fn web(pairs: &[(&str, &str)]) -> (ImageConfig, GitSettings) {
        let mut annotations: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
            .collect();
        annotations.insert(format!("{PREFIX}image-list"), "web=ghcr.io/acme/web".into());
        let config = crate::ApplicationConfig::parse(&annotations).expect("valid annotations");
        (config.images[0].clone(), config.git)
    }

    proptest::proptest! {
        /// Any value of the three settings is read or refused under its own key, and a read
        /// path never holds `..`.
        #[test]
        fn settings_are_read_or_refused_by_key(
            branch in "[a-z:./{}A-Z0-9 _-]{0,24}",
            target in "(kustomization|helmvalues|x)?(:[a-z./]{0,12})?",
        ) {
            let get = |name: &str| match name {
                "branch" => Some((GIT_BRANCH.to_owned(), branch.clone())),
                "target" => Some((WRITE_BACK_TARGET.to_owned(), target.clone())),
                _ => None,
            };
            match GitSettings::parse(&get) {
                Ok(settings) => {
                    let path = match &settings.target {
                        WriteBackTarget::Kustomization(p) | WriteBackTarget::HelmValues(p) => p.clone(),
                        WriteBackTarget::ArgoCdSource => String::new(),
                    };
                    proptest::prop_assert!(!path.split('/').any(|c| c == ".."));
                }
                Err(errors) => {
                    for (key, value, _) in errors {
                        proptest::prop_assert!(
                            (key == GIT_BRANCH && value == branch) || (key == WRITE_BACK_TARGET && value == target)
                        );
                    }
                }
            }
        }

        /// Whatever a write-back file holds, reading and writing it answers or refuses,
        /// and what is written reads back as the new image.
        #[test]
        fn files_are_read_and_written_or_refused(
            content in "(helm:\n|  parameters:\n|  - name: image.tag\n|    value: [0-9.]{1,5}\n|kustomize:\n|  images:\n|  - ghcr.io/acme/web:[0-9.]{1,4}\n|[a-z]{1,3}: [a-z0-9]{0,3}\n|#c\n|  ){0,10}",
            helm in proptest::bool::ANY,
        ) {
            let (image, settings) = web(&[]);
            let app = json!({ "spec": { "source": { "repoURL": "https://git.example/d.git" } } });
            let destination = Destination {
                url: "https://git.example/d.git".into(),
                branch: None,
                push_branch: None,
                file: ".argocd-source-web.yaml".into(),
                kind: if helm { SourceKind::Helm } else { SourceKind::Kustomize },
            };
            let _ = running(&app, &destination, &settings.target, Some(&content), &image);
            let new = ImageRef::parse("ghcr.io/acme/web:2.0.0").unwrap();
            if let Ok(text) = write(&content, &destination, &settings.target, &image, &new) {
                let seen = running(&app, &destination, &settings.target, Some(&text), &image);
                proptest::prop_assert_eq!(seen, Ok(new.clone()));
                let again = write(&text, &destination, &settings.target, &image, &new);
                proptest::prop_assert_eq!(again, Ok(text));
            }
        }
    }

    #[test]
    fn writes_every_target_byte_stably() {
        let new = ImageRef::parse("ghcr.io/acme/web:1.1.0").unwrap();
        let app = json!({ "spec": { "source": { "repoURL": "https://g.example/d", "path": "apps/web", "helm": {} } } });
        let (image, settings) = web(&[
            ("write-back-target", "helmvalues"),
            ("web.helm.image-spec", "app.image"),
        ]);
        let d = destination("web", &app, &settings).unwrap();
        assert_eq!(d.file, "apps/web/values.yaml");
        let values = "app:\n  image: ghcr.io/acme/web:1.0.0 # set\n";
        let out = write(values, &d, &settings.target, &image, &new).unwrap();
        assert_eq!(out, "app:\n  image: ghcr.io/acme/web:1.1.0 # set\n");
        let (image, settings) = web(&[
            ("write-back-target", "kustomization"),
            ("web.kustomize.image-name", "web"),
        ]);
        let d = destination("web", &app, &settings).unwrap();
        assert_eq!(d.file, "apps/web/kustomization.yaml");
        let out = write("kind: Kustomization\n", &d, &settings.target, &image, &new).unwrap();
        assert_eq!(
            out,
            "kind: Kustomization\nimages:\n- name: web\n  newName: ghcr.io/acme/web\n  newTag: 1.1.0\n"
        );
        let pinned = "images:\n- name: web\n  newTag: 1.0.0\n  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\n";
        let err = write(pinned, &d, &settings.target, &image, &new).unwrap_err();
        assert!(err.contains("pinned to a digest"), "{err}");
        let kustomize = json!({ "spec": { "source": { "repoURL": "https://g.example/d", "path": "k", "kustomize": {} } } });
        let (image, settings) = web(&[]);
        let d = destination("web", &kustomize, &settings).unwrap();
        assert_eq!(d.file, "k/.argocd-source-web.yaml");
        let out = write("", &d, &settings.target, &image, &new).unwrap();
        assert_eq!(out, "kustomize:\n  images:\n  - ghcr.io/acme/web:1.1.0\n");
    }

    #[test]
    fn urls_match_with_or_without_git_suffix() {
        assert!(same_url(
            "https://git.example/acme/deploy.git",
            "https://git.example/acme/deploy/"
        ));
        assert!(!same_url(
            "https://git.example/acme/deploy",
            "https://git.example/acme/deploy2"
        ));
    }
}
