//! The `git` write-back: where Image Updater commits an Application's new images, what the
//! commit changes, and how what runs is read back from it.
//!
//! [`GitSettings`] holds what the annotations `git-repository`, `git-branch` and
//! `write-back-target` (or an ImageUpdater's `writeBackConfig.gitConfig`) ask for, parsed
//! once; the target commits through keel-git's [`BranchCommit`](keel_git::BranchCommit).

use std::fmt;

use keel_core::ImageRef;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::annotations::{AnnotationError, ImageConfig};
use crate::source::{self, SourceKind, tag_text};

mod credentials;
mod files;
mod template;

pub use credentials::KNOWN_HOSTS_CONFIGMAP;
pub(crate) use credentials::auth;
use files::{join, resolve};
pub(crate) use files::{overlay, running, write};
use template::check_branch;
pub use template::{BranchTemplate, Change};

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

/// Why a git write-back cannot go on: the setting (an annotation, or a field of the
/// Application such as `spec.sources`), its value and the reason.
pub(crate) type GitProblem = AnnotationError;

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
    use serde_json::json;

    use super::credentials::same_url;
    use super::*;
    use crate::annotations::PREFIX;

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
