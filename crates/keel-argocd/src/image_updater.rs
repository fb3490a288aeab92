//! Image Updater 1.x's `ImageUpdater` objects (`argocd-image-updater.argoproj.io/v1alpha1`),
//! read in one place into the same [`ApplicationConfig`] the 0.x annotations give.
//!
//! [`ImageUpdaterSpec::parse`] reads an object's `spec`: its `applicationRefs` (a glob
//! `namePattern` and an optional `labelSelectors`), their `images` and the settings of each
//! level. Every image is handed to [`ImageConfig::parse`] as `<alias>=<imageName>`, its
//! options read from the most specific level that sets them: the image's
//! `commonUpdateSettings`, then the applicationRef's, then the ImageUpdater's; the
//! write-back method from the applicationRef's `writeBackConfig`, then the ImageUpdater's.
//! [`ImageUpdaterSpec::select`] answers which rule applies to an Application: as Image
//! Updater does, the most specific one (an exact name first, then more literal characters,
//! label selectors adding to the score), ties in the order written.
//!
//! A bad value is a [`FieldError`] naming the field path (`spec.applicationRefs[0].images[1]
//! .commonUpdateSettings.updateStrategy`) and the value; one bad value refuses the whole
//! object, so that none of its Applications is updated by a half-read configuration.

use std::collections::BTreeMap;

use keel_k8s::selector::LabelSelector;
use kube::api::ApiResource;
use regex::Regex;
use serde_json::Value;

use crate::annotations::{
    AnnotationError, ApplicationConfig, ImageConfig, ImageError, WriteBack, glob_regex,
};
use crate::git::GitSettings;

/// The resource (plural) of ImageUpdaters.
pub const RESOURCE: &str = "imageupdaters";
/// The kind of a [`Problem`](keel_k8s::Problem) about an ImageUpdater.
pub const PROBLEM_KIND: &str = "imageupdater";

/// `argocd-image-updater.argoproj.io/v1alpha1` `ImageUpdater`.
pub fn image_updater_resource() -> ApiResource {
    ApiResource {
        group: "argocd-image-updater.argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argocd-image-updater.argoproj.io/v1alpha1".into(),
        kind: "ImageUpdater".into(),
        plural: RESOURCE.into(),
    }
}

/// A field with a bad value: `key` is the field path, `value` the value as written (lists
/// joined with `,`).
pub type FieldError = AnnotationError;

/// What an applicationRef gives the Applications it selects.
#[derive(Clone, Debug)]
pub enum RefConfig {
    /// Its `images`, with the merged settings and write-back method.
    Images(ApplicationConfig),
    /// `useAnnotations: true`: the Application's own `argocd-image-updater.argoproj.io/*`
    /// annotations configure it; the rule only selects.
    Annotations,
}

/// One `spec.applicationRefs[]` entry, read.
#[derive(Clone, Debug)]
pub struct ApplicationRef {
    /// Its position in `spec.applicationRefs`.
    pub index: usize,
    /// `namePattern`, a glob as Go's `filepath.Match` reads it.
    pub name_pattern: String,
    /// What the selected Applications are configured with.
    pub config: RefConfig,
    name_regex: Regex,
    selector: Option<LabelSelector>,
    specificity: u64,
}

impl ApplicationRef {
    /// Whether an Application of this name and these labels is selected by this rule.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.name_regex.is_match(name) && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// The field path of this rule (`spec.applicationRefs[2]`).
    pub fn path(&self) -> String {
        format!("spec.applicationRefs[{}]", self.index)
    }
}

/// An ImageUpdater's `spec`, read: its rules, most specific first.
#[derive(Clone, Debug)]
pub struct ImageUpdaterSpec {
    /// The applicationRefs, most specific first (ties in the order written).
    pub refs: Vec<ApplicationRef>,
}

impl ImageUpdaterSpec {
    /// Reads a whole ImageUpdater object (or its JSON): every bad value is reported.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use keel_argocd::ImageUpdaterSpec;
    /// use keel_argocd::image_updater::RefConfig;
    ///
    /// let object = serde_json::json!({ "spec": {
    ///     "commonUpdateSettings": { "updateStrategy": "alphabetical" },
    ///     "applicationRefs": [{
    ///         "namePattern": "web-*",
    ///         "images": [{ "alias": "web", "imageName": "ghcr.io/acme/web" }],
    ///     }],
    /// }});
    /// let spec = ImageUpdaterSpec::parse(&object).unwrap();
    /// let rule = spec.select("web-prod", &BTreeMap::new()).unwrap();
    /// let RefConfig::Images(config) = &rule.config else { unreachable!() };
    /// assert_eq!(config.images[0].strategy, keel_argocd::UpdateStrategy::Alphabetical);
    ///
    /// let bad = serde_json::json!({ "spec": { "applicationRefs": [{ "namePattern": "web-[" }] } });
    /// let errors = ImageUpdaterSpec::parse(&bad).unwrap_err();
    /// assert_eq!(errors[0].key, "spec.applicationRefs[0].namePattern");
    /// ```
    pub fn parse(object: &Value) -> Result<ImageUpdaterSpec, Vec<FieldError>> {
        let mut r = Reader::default();
        let spec = &object["spec"];
        r.global_git = spec["writeBackConfig"]["gitConfig"].clone();
        let global = r.settings(&spec["commonUpdateSettings"], "spec.commonUpdateSettings");
        let global_method = r.string(
            &spec["writeBackConfig"]["method"],
            "spec.writeBackConfig.method",
        );
        let mut refs = Vec::new();
        let entries = r.array(&spec["applicationRefs"], "spec.applicationRefs");
        if entries.is_empty() && r.errors.is_empty() {
            r.bad(
                "spec.applicationRefs",
                "",
                "names no Application: give at least one entry",
            );
        }
        for (index, entry) in entries.iter().enumerate() {
            if let Some(parsed) = r.application_ref(index, entry, &global, &global_method) {
                refs.push(parsed);
            }
        }
        // Entries that are all empty (`[null]`) select nothing either.
        if refs.is_empty() && !entries.is_empty() && r.errors.is_empty() {
            r.bad(
                "spec.applicationRefs",
                "",
                "names no Application: give at least one entry",
            );
        }
        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        // A stable sort keeps rules of equal specificity in the order written.
        refs.sort_by_key(|r| std::cmp::Reverse(r.specificity));
        Ok(ImageUpdaterSpec { refs })
    }

    /// The rule that applies to an Application: the most specific one that matches it.
    pub fn select(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<&ApplicationRef> {
        self.refs.iter().find(|r| r.matches(name, labels))
    }
}

/// The settings one level of `commonUpdateSettings` sets: option name (as
/// [`ImageConfig::parse`] asks for it) → (field path, value).
type Settings = BTreeMap<&'static str, (String, String)>;

/// `commonUpdateSettings` fields and the option each one is.
const SETTINGS: [(&str, &str); 6] = [
    ("updateStrategy", "update-strategy"),
    ("forceUpdate", "force-update"),
    ("allowTags", "allow-tags"),
    ("ignoreTags", "ignore-tags"),
    ("pullSecret", "pull-secret"),
    ("platforms", "platforms"),
];

#[derive(Default)]
struct Reader {
    errors: Vec<FieldError>,
    /// `spec.writeBackConfig.gitConfig`, for the applicationRefs without their own.
    global_git: Value,
}

impl Reader {
    fn bad(&mut self, path: &str, value: &str, reason: &str) {
        self.errors.push(FieldError {
            key: path.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn type_error(&mut self, v: &Value, path: &str, expected: &str) {
        let value = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.bad(path, &value, &format!("expected {expected}"));
    }

    /// A string field; absent, null or empty is not set.
    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.trim().to_owned()),
            other => {
                self.type_error(other, path, "a string");
                None
            }
        }
    }

    fn array<'v>(&mut self, v: &'v Value, path: &str) -> &'v [Value] {
        match v {
            Value::Null => &[],
            Value::Array(items) => items,
            other => {
                self.type_error(other, path, "a list");
                &[]
            }
        }
    }

    fn strings(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        if v.is_null() {
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in self.array(v, path).iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => self.type_error(other, &format!("{path}[{i}]"), "a string"),
            }
        }
        Some(out)
    }

    fn object(&mut self, v: &Value, path: &str) -> bool {
        match v {
            Value::Null => false,
            Value::Object(_) => true,
            other => {
                self.type_error(other, path, "an object");
                false
            }
        }
    }

    /// One level of `commonUpdateSettings`.
    fn settings(&mut self, v: &Value, path: &str) -> Settings {
        let mut out = Settings::new();
        if !self.object(v, path) {
            return out;
        }
        for (field, option) in SETTINGS {
            let field_path = format!("{path}.{field}");
            let value = match field {
                "forceUpdate" => match &v[field] {
                    Value::Null => None,
                    Value::Bool(b) => Some(b.to_string()),
                    other => {
                        self.type_error(other, &field_path, "`true` or `false`");
                        None
                    }
                },
                "ignoreTags" | "platforms" => {
                    self.strings(&v[field], &field_path).map(|l| l.join(","))
                }
                _ => self.string(&v[field], &field_path),
            };
            if let Some(value) = value {
                out.insert(option, (field_path, value));
            }
        }
        out
    }

    fn application_ref(
        &mut self,
        index: usize,
        entry: &Value,
        global: &Settings,
        global_method: &Option<String>,
    ) -> Option<ApplicationRef> {
        let path = format!("spec.applicationRefs[{index}]");
        if !self.object(entry, &path) {
            return None;
        }
        let errors_before = self.errors.len();
        let pattern_path = format!("{path}.namePattern");
        let name_pattern = match &entry["namePattern"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => {
                self.type_error(other, &pattern_path, "a string");
                String::new()
            }
        };
        let name_regex = match glob_problem(&name_pattern) {
            Some(reason) if entry["namePattern"].is_string() || entry["namePattern"].is_null() => {
                self.bad(&pattern_path, &name_pattern, &reason);
                None
            }
            Some(_) => None,
            None => Regex::new(&glob_regex(&name_pattern)).ok(),
        };
        let selector =
            self.label_selector(&entry["labelSelectors"], &format!("{path}.labelSelectors"));
        let use_annotations = match &entry["useAnnotations"] {
            Value::Null => false,
            Value::Bool(b) => *b,
            other => {
                self.type_error(
                    other,
                    &format!("{path}.useAnnotations"),
                    "`true` or `false`",
                );
                false
            }
        };
        let config = if use_annotations {
            Some(RefConfig::Annotations)
        } else {
            self.images(&path, entry, global, global_method)
                .map(RefConfig::Images)
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let specificity = specificity(&name_pattern, selector.as_ref());
        Some(ApplicationRef {
            index,
            name_pattern,
            config: config?,
            name_regex: name_regex?,
            selector,
            specificity,
        })
    }

    /// A `labelSelectors` field, read by the selector reader every custom object shares.
    fn label_selector(&mut self, v: &Value, path: &str) -> Option<LabelSelector> {
        if v.is_null() {
            return None;
        }
        match LabelSelector::from_json(v, path) {
            Ok(selector) => Some(selector),
            Err(e) => {
                self.bad(&e.field, &e.value, &e.reason);
                None
            }
        }
    }

    /// The rule's images with their merged settings, and its write-back method.
    fn images(
        &mut self,
        path: &str,
        entry: &Value,
        global: &Settings,
        global_method: &Option<String>,
    ) -> Option<ApplicationConfig> {
        let mut ref_settings = global.clone();
        ref_settings.extend(self.settings(
            &entry["commonUpdateSettings"],
            &format!("{path}.commonUpdateSettings"),
        ));
        let method_path = format!("{path}.writeBackConfig.method");
        let method = match self.string(&entry["writeBackConfig"]["method"], &method_path) {
            Some(m) => Some((method_path, m)),
            None => global_method
                .clone()
                .map(|m| ("spec.writeBackConfig.method".to_owned(), m)),
        };
        let write_back = match method {
            None => WriteBack::ArgoCd,
            Some((p, m)) => match m.as_str() {
                "argocd" => WriteBack::ArgoCd,
                "git" => WriteBack::Git {
                    credentials: String::new(),
                },
                _ => match m.strip_prefix("git:") {
                    Some(credentials) if !credentials.is_empty() => WriteBack::Git {
                        credentials: credentials.to_owned(),
                    },
                    _ => {
                        self.bad(&p, &m, "expected `argocd`, `git` or `git:<credentials>`");
                        WriteBack::ArgoCd
                    }
                },
            },
        };
        let own_git = &entry["writeBackConfig"]["gitConfig"];
        let (git_value, git_path) = if own_git.is_null() {
            (
                self.global_git.clone(),
                "spec.writeBackConfig.gitConfig".to_owned(),
            )
        } else {
            (own_git.clone(), format!("{path}.writeBackConfig.gitConfig"))
        };
        let mut fields = Vec::new();
        for (name, field) in [
            ("repository", "repository"),
            ("branch", "branch"),
            ("target", "writeBackTarget"),
        ] {
            let field_path = format!("{git_path}.{field}");
            if let Some(v) = self.string(&git_value[field], &field_path) {
                fields.push((name, field_path, v));
            }
        }
        let git = GitSettings::parse(&|name| {
            fields
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, p, v)| (p.clone(), v.clone()))
        })
        .unwrap_or_else(|bad| {
            for (key, value, reason) in bad {
                self.bad(&key, &value, &reason);
            }
            GitSettings::default()
        });
        let images_path = format!("{path}.images");
        let entries = self.array(&entry["images"], &images_path);
        if entries.is_empty() {
            self.bad(
                &images_path,
                "",
                "names no image: list the images, or set `useAnnotations: true`",
            );
            return None;
        }
        let mut images: Vec<ImageConfig> = Vec::new();
        for (i, image) in entries.iter().enumerate() {
            let image_path = format!("{images_path}[{i}]");
            if !self.object(image, &image_path) {
                continue;
            }
            if let Some(config) = self.image(&image_path, image, &ref_settings) {
                if images.iter().any(|other| other.alias == config.alias) {
                    self.bad(
                        &format!("{image_path}.alias"),
                        &config.alias,
                        "another image of this applicationRef has this alias",
                    );
                } else {
                    images.push(config);
                }
            }
        }
        Some(ApplicationConfig {
            images,
            write_back,
            git,
        })
    }

    fn image(&mut self, path: &str, image: &Value, ref_settings: &Settings) -> Option<ImageConfig> {
        let alias_path = format!("{path}.alias");
        let alias = self.string(&image["alias"], &alias_path);
        let name_path = format!("{path}.imageName");
        let name = self.string(&image["imageName"], &name_path);
        let mut settings = ref_settings.clone();
        settings.extend(self.settings(
            &image["commonUpdateSettings"],
            &format!("{path}.commonUpdateSettings"),
        ));
        let targets = self.manifest_targets(path, &image["manifestTargets"]);
        let (Some(alias), Some(name)) = (alias, name) else {
            let unset = |v: &Value| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty());
            if unset(&image["alias"]) {
                self.bad(&alias_path, "", "required: a name for the image");
            }
            if unset(&image["imageName"]) {
                self.bad(&name_path, "", "required: `<image>[:<constraint>]`");
            }
            return None;
        };
        let alias_ok = alias.starts_with(|c: char| c.is_ascii_alphanumeric())
            && alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !alias_ok {
            self.bad(
                &alias_path,
                &alias,
                "must start with a letter or digit, followed by letters, digits, `-`, `.` or `_`",
            );
            return None;
        }
        let targets = targets?;
        let option = |_: &str, option: &str| {
            targets
                .get(option)
                .or_else(|| settings.get(option))
                .cloned()
        };
        match ImageConfig::parse(&format!("{alias}={name}"), &option) {
            Ok(config) => Some(config),
            Err(ImageError::Entry(reason)) => {
                self.bad(&name_path, &name, &reason);
                None
            }
            Err(ImageError::Options(mut errors)) => {
                self.errors.append(&mut errors);
                None
            }
        }
    }

    /// `manifestTargets`, as the options `helm.image-*` and `kustomize.image-name`.
    fn manifest_targets(&mut self, path: &str, v: &Value) -> Option<Settings> {
        let path = format!("{path}.manifestTargets");
        let mut out = Settings::new();
        if !self.object(v, &path) {
            return Some(out);
        }
        let set: Vec<&str> = ["helm", "kustomize", "plugin"]
            .into_iter()
            .filter(|k| !v[*k].is_null())
            .collect();
        if set.len() > 1 {
            self.bad(
                &path,
                &set.join(", "),
                "exactly one of `helm`, `kustomize` or `plugin` is written per image",
            );
            return None;
        }
        if !v["plugin"].is_null() {
            self.bad(
                &format!("{path}.plugin"),
                &v["plugin"].to_string(),
                "plugin environment variables are not written by keel-argocd: use `helm` or \
                 `kustomize`",
            );
            return None;
        }
        for (field, option) in [
            ("helm.name", "helm.image-name"),
            ("helm.tag", "helm.image-tag"),
            ("helm.spec", "helm.image-spec"),
            ("kustomize.name", "kustomize.image-name"),
        ] {
            let (parent, child) = field.split_once('.').unwrap_or((field, ""));
            if !self.object(&v[parent], &format!("{path}.{parent}")) {
                continue;
            }
            let field_path = format!("{path}.{field}");
            if let Some(value) = self.string(&v[parent][child], &field_path) {
                out.insert(option, (field_path, value));
            }
        }
        Some(out)
    }
}

/// Why Go's `filepath.Match` would refuse `pattern`, if it would.
fn glob_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("required: a glob pattern for Application names".into());
    }
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => {
                return Some("the pattern ends with an unfinished `\\` escape".into());
            }
            '[' => {
                let mut class = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == ']' && !class.is_empty() && class != "^" && class != "!" {
                        closed = true;
                        break;
                    }
                    class.push(d);
                }
                if !closed {
                    return Some("a `[` character class is not closed by `]`".into());
                }
                let class = class.trim_start_matches(['^', '!']);
                if Regex::new(&format!("[{class}]")).is_err() {
                    return Some(format!("`[{class}]` is not a valid character class"));
                }
            }
            _ => {}
        }
    }
    None
}

/// Image Updater's specificity score of a rule: an exact name (no wildcard) first, then
/// the count of literal characters (character classes removed), a label selector adding
/// 10000 and 100 per entry.
fn specificity(pattern: &str, selector: Option<&LabelSelector>) -> u64 {
    let mut score = 0;
    if !pattern.contains(['*', '?', '[', ']']) {
        score += 1_000_000;
    }
    let mut literals = 0u64;
    let mut in_class = false;
    for c in pattern.chars() {
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '*' | '?' => {}
            _ => literals += c.len_utf8() as u64,
        }
    }
    score += literals;
    if let Some(selector) = selector {
        score += 10_000 + 100 * selector.entries() as u64;
    }
    score
}

#[cfg(test)]
mod tests;
