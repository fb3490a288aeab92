//! The repository configuration, `.keel.yaml`.

use std::collections::BTreeMap;

use keel_core::policy::PolicySpec;
use keel_core::{Error, ImageRef, ParseError, PolicyOptions, VersionPolicy};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::yaml;

/// The name of the configuration file at the repository root.
pub const CONFIG_FILE: &str = ".keel.yaml";

/// The [`ParseError::kind`] of configuration errors.
const KIND: &str = ".keel.yaml";

/// The keys of [`PolicyOptions`], as the file spells them.
const OPTION_KEYS: [&str; 7] = [
    "exclude",
    "defaultExcludes",
    "filter",
    "extract",
    "matchPreRelease",
    "allowDowngrade",
    "matchTag",
];

/// The repository's own configuration: policies for Flux markers and for images by
/// repository, and which paths to scan.
///
/// Read from [`CONFIG_FILE`] at the repository root with [`RepoConfig::from_yaml`], from any
/// serde format (JSON included), or built in code:
///
/// ```yaml
/// policies:            # Flux marker names -> policy
///   flux-system:app:
///     image: ghcr.io/org/app          # optional: the repository the marker tracks
///     policy: semver:^1.2             # any keel policy string
///     filter: '^v?(?P<v>.*)$'         # optional policy options, camelCase
///     extract: '$v'
/// images:              # kustomization images and any reference by repository
///   - image: ghcr.io/org/api
///     policy: minor
/// paths: [apps, clusters]   # optional: only scan under these paths
/// ```
///
/// ```
/// # use keel_core::PolicySpec;
/// # use keel_git::manifest::{ImagePolicy, MarkerPolicy, RepoConfig};
/// let config = RepoConfig::default()
///     .with_policy("flux-system:app", MarkerPolicy::parse("semver:^1.2")?)
///     .with_image(ImagePolicy::new("ghcr.io/org/api", PolicySpec::Minor))
///     .with_paths(["apps"]);
/// config.validate()?;
/// assert!(config.includes("apps/web.yaml"));
/// assert!(!config.includes("docs/web.yaml"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoConfig {
    /// Policies of Flux markers, by the marker's `NS:NAME`.
    pub policies: BTreeMap<String, MarkerPolicy>,
    /// Policies by image repository: for kustomization `images:` entries, for workload
    /// containers without Keel annotations, and for any other reference without a policy of
    /// its own.
    pub images: Vec<ImagePolicy>,
    /// Only files under these paths (relative to the repository root) are scanned; all when
    /// empty.
    pub paths: Vec<String>,
}

/// The policy of one Flux marker name.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerPolicy {
    /// The repository the marker tracks, e.g. `ghcr.io/org/app`; needed only where the file
    /// marks a tag or digest without marking the name beside it.
    pub image: Option<String>,
    /// The policy, e.g. `semver:^1.2`, parsed once when the configuration is read.
    pub policy: PolicySpec,
    /// The policy's options.
    pub options: PolicyOptions,
}

impl MarkerPolicy {
    /// A marker policy with default options and no image.
    pub fn new(policy: PolicySpec) -> MarkerPolicy {
        MarkerPolicy {
            image: None,
            policy,
            options: PolicyOptions::default(),
        }
    }

    /// A marker policy from a policy string, e.g. `semver:^1.2`, with default options and no
    /// image.
    ///
    /// # Errors
    /// The [`ParseError`] of a string that is no policy.
    pub fn parse(policy: &str) -> Result<MarkerPolicy, ParseError> {
        Ok(MarkerPolicy::new(policy.parse()?))
    }

    /// Sets the repository the marker tracks.
    pub fn with_image(mut self, image: impl Into<String>) -> MarkerPolicy {
        self.image = Some(image.into());
        self
    }

    /// Sets the policy options.
    pub fn with_options(mut self, options: PolicyOptions) -> MarkerPolicy {
        self.options = options;
        self
    }
}

/// The policy of one image repository.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePolicy {
    /// The repository, e.g. `ghcr.io/org/api` or `nginx` (which is
    /// `docker.io/library/nginx`), without tag or digest.
    pub image: String,
    /// The policy, e.g. `minor`, parsed once when the configuration is read.
    pub policy: PolicySpec,
    /// The policy's options.
    pub options: PolicyOptions,
}

impl ImagePolicy {
    /// An image policy with default options.
    pub fn new(image: impl Into<String>, policy: PolicySpec) -> ImagePolicy {
        ImagePolicy {
            image: image.into(),
            policy,
            options: PolicyOptions::default(),
        }
    }

    /// An image policy from a policy string, e.g. `minor`, with default options.
    ///
    /// # Errors
    /// The [`ParseError`] of a string that is no policy.
    pub fn parse(image: impl Into<String>, policy: &str) -> Result<ImagePolicy, ParseError> {
        Ok(ImagePolicy::new(image, policy.parse()?))
    }

    /// Sets the policy options.
    pub fn with_options(mut self, options: PolicyOptions) -> ImagePolicy {
        self.options = options;
        self
    }

    /// Whether this entry is about the repository of `image`.
    pub fn matches(&self, image: &ImageRef) -> bool {
        ImageRef::parse(&self.image).is_ok_and(|own| own.name() == image.name())
    }
}

fn error(key: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput(ParseError::new(KIND, key, reason))
}

/// What the section `key` holds when `kind` reads it (`Value::as_object`, `Value::as_array`),
/// or `None` for an empty section (`key:` alone); any other value is an error saying what
/// the section `must` be.
fn section<'v, T>(
    value: &'v Value,
    kind: fn(&Value) -> Option<&T>,
    key: &str,
    must: &str,
) -> Result<Option<&'v T>, Error> {
    match (value, kind(value)) {
        (Value::Null, _) => Ok(None),
        (_, Some(contents)) => Ok(Some(contents)),
        (_, None) => Err(error(key, must)),
    }
}

impl RepoConfig {
    /// Parses and validates the text of a [`CONFIG_FILE`]. An empty file is the default
    /// configuration.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] with a [`ParseError`] of kind `".keel.yaml"` whose input is the
    /// offending key (`policies.flux-system:app.filter`) or, for a syntax error, its position,
    /// and whose reason says what is wrong: not YAML, an unknown key, a value of the wrong
    /// type, a bad policy string, a bad regex or template, an image with a tag.
    pub fn from_yaml(text: &str) -> Result<RepoConfig, Error> {
        let tree = yaml::parse(text).map_err(|e| {
            error(
                format!("line {} column {}", e.line, e.column),
                format!("not valid YAML: {}", e.message),
            )
        })?;
        match tree.docs.as_slice() {
            [] => Ok(RepoConfig::default()),
            [root] => RepoConfig::from_value(&tree.to_json(*root)),
            _ => Err(error("---", "the file must hold one YAML document")),
        }
    }

    /// Builds and validates the configuration from its JSON form (the same keys as the file).
    ///
    /// # Errors
    /// As [`RepoConfig::from_yaml`].
    pub fn from_value(value: &Value) -> Result<RepoConfig, Error> {
        let Some(top) = section(value, Value::as_object, "(top level)", "must be a mapping")?
        else {
            return Ok(RepoConfig::default());
        };
        let mut config = RepoConfig::default();
        for (key, value) in top {
            match key.as_str() {
                "policies" => config.policies = parse_policies(value)?,
                "images" => config.images = parse_images(value)?,
                "paths" => config.paths = parse_paths(value)?,
                _ => {
                    return Err(error(
                        key.as_str(),
                        format!("unknown key `{key}`; expected policies, images or paths"),
                    ));
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks a configuration built in code as [`RepoConfig::from_yaml`] checks a file.
    ///
    /// # Errors
    /// As [`RepoConfig::from_yaml`].
    pub fn validate(&self) -> Result<(), Error> {
        for (name, entry) in &self.policies {
            let key = format!("policies.{name}");
            check_marker_name(&key, name)?;
            if let Some(image) = &entry.image {
                check_repository(&format!("{key}.image"), image)?;
            }
            check_options(&key, &entry.policy, &entry.options)?;
        }
        for (i, entry) in self.images.iter().enumerate() {
            let key = format!("images[{i}]");
            check_repository(&format!("{key}.image"), &entry.image)?;
            check_options(&key, &entry.policy, &entry.options)?;
        }
        for (i, path) in self.paths.iter().enumerate() {
            check_path(&format!("paths[{i}]"), path)?;
        }
        Ok(())
    }

    /// Adds (or replaces) the policy of a Flux marker name `NS:NAME`.
    pub fn with_policy(mut self, name: impl Into<String>, policy: MarkerPolicy) -> RepoConfig {
        self.policies.insert(name.into(), policy);
        self
    }

    /// Adds a policy for an image repository.
    pub fn with_image(mut self, image: ImagePolicy) -> RepoConfig {
        self.images.push(image);
        self
    }

    /// Sets the paths to scan.
    pub fn with_paths<I, S>(mut self, paths: I) -> RepoConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `path` (relative to the repository root, `/`-separated) is under one of
    /// [`RepoConfig::paths`], or there are none.
    pub fn includes(&self, path: &str) -> bool {
        if self.paths.is_empty() {
            return true;
        }
        let path = normalise_path(path);
        self.paths.iter().any(|p| {
            let p = normalise_path(p);
            p.is_empty()
                || path == p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// The policy of the Flux marker name `NS:NAME`.
    pub fn marker_policy(&self, name: &str) -> Option<&MarkerPolicy> {
        self.policies.get(name)
    }

    /// The first entry of [`RepoConfig::images`] about the repository of `image`.
    pub fn image_policy(&self, image: &ImageRef) -> Option<&ImagePolicy> {
        self.images.iter().find(|entry| entry.matches(image))
    }
}

impl<'de> Deserialize<'de> for RepoConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        RepoConfig::from_value(&value).map_err(serde::de::Error::custom)
    }
}

fn normalise_path(path: &str) -> &str {
    let mut p = path.trim();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    if p == "." {
        p = "";
    }
    p.trim_end_matches('/')
}

fn parse_policies(value: &Value) -> Result<BTreeMap<String, MarkerPolicy>, Error> {
    let must = "must be a mapping of NS:NAME to a policy";
    let Some(map) = section(value, Value::as_object, "policies", must)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (name, entry) in map {
        let key = format!("policies.{name}");
        let (image, policy, options) = parse_entry(&key, entry, false)?;
        out.insert(
            name.clone(),
            MarkerPolicy {
                image,
                policy,
                options,
            },
        );
    }
    Ok(out)
}

fn parse_images(value: &Value) -> Result<Vec<ImagePolicy>, Error> {
    let must = "must be a list of entries with `image` and `policy`";
    let Some(items) = section(value, Value::as_array, "images", must)? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let key = format!("images[{i}]");
            let (image, policy, options) = parse_entry(&key, entry, true)?;
            let image = image.ok_or_else(|| error(format!("{key}.image"), "is required"))?;
            Ok(ImagePolicy {
                image,
                policy,
                options,
            })
        })
        .collect()
}

/// One entry: `image`, `policy` and the policy options. A marker entry may be just the
/// policy string.
fn parse_entry(
    key: &str,
    entry: &Value,
    image_entry: bool,
) -> Result<(Option<String>, PolicySpec, PolicyOptions), Error> {
    let map = match entry {
        Value::String(policy) if !image_entry => {
            let policy = parse_policy(key, policy)?;
            return Ok((None, policy, PolicyOptions::default()));
        }
        Value::Object(map) => map,
        _ => {
            return Err(error(
                key,
                "must be a mapping with `policy` (and optionally `image` and policy options)",
            ));
        }
    };
    let mut image = None;
    let mut policy = None;
    let mut options = Map::new();
    for (name, value) in map {
        let at = format!("{key}.{name}");
        match name.as_str() {
            "image" => image = Some(string(&at, value)?),
            "policy" => policy = Some(string(&at, value)?),
            _ if OPTION_KEYS.contains(&name.as_str()) => {
                options.insert(name.clone(), value.clone());
            }
            _ => {
                return Err(error(
                    at,
                    format!(
                        "unknown key `{name}`; expected image, policy, {}",
                        OPTION_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    let policy = policy.ok_or_else(|| error(format!("{key}.policy"), "is required"))?;
    let options: PolicyOptions = serde_json::from_value(Value::Object(options))
        .map_err(|e| error(key, format!("bad policy option: {e}")))?;
    let policy = parse_policy(key, &policy)?;
    Ok((image, policy, options))
}

fn string(key: &str, value: &Value) -> Result<String, Error> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(error(key, "must be a string")),
    }
}

fn parse_paths(value: &Value) -> Result<Vec<String>, Error> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| string(&format!("paths[{i}]"), v))
            .collect(),
        _ => Err(error("paths", "must be a list of paths")),
    }
}

fn check_marker_name(key: &str, name: &str) -> Result<(), Error> {
    let mut parts = name.split(':');
    let ok = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(ns), Some(n), None) if !ns.trim().is_empty() && !n.trim().is_empty()
    );
    if ok {
        Ok(())
    } else {
        Err(error(
            key,
            format!("`{name}` is not a marker name; expected NS:NAME, e.g. flux-system:app"),
        ))
    }
}

fn check_repository(key: &str, image: &str) -> Result<(), Error> {
    let parsed = ImageRef::parse(image).map_err(|e| error(key, e.to_string()))?;
    let has_tag = parsed
        .tag()
        .is_some_and(|t| image.ends_with(&format!(":{}", t.as_str())));
    if has_tag || parsed.digest().is_some() {
        return Err(error(
            key,
            format!("`{image}` must be a repository, without tag or digest"),
        ));
    }
    Ok(())
}

/// The policy string of the entry at `key`; an error names `<key>.policy`.
fn parse_policy(key: &str, policy: &str) -> Result<PolicySpec, Error> {
    policy
        .parse()
        .map_err(|e: ParseError| error(format!("{key}.policy"), e.to_string()))
}

/// Whether the options of the entry at `key` go with its policy: their regexes compile, an
/// extract template has a filter, match-tag comes with `force`.
fn check_options(key: &str, policy: &PolicySpec, options: &PolicyOptions) -> Result<(), Error> {
    VersionPolicy::new(policy.clone(), options).map_err(|e| error(key, e.to_string()))?;
    Ok(())
}

fn check_path(key: &str, path: &str) -> Result<(), Error> {
    if path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(error(
            key,
            format!("`{path}` must be relative to the repository root, without `..`"),
        ));
    }
    Ok(())
}
