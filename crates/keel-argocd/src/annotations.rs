//! The `argocd-image-updater.argoproj.io/*` annotations of an Application, read in one place.
//!
//! [`ApplicationConfig::parse`] turns an Application's annotations into typed values: the
//! images of `image-list` ([`ImageConfig`]), each with its update strategy already built into
//! a keel-core [`VersionPolicy`], its pull secret, its Helm and Kustomize parameter names, and
//! the Application's [`WriteBack`] method with its [`GitSettings`]. Both write-backs (`argocd`
//! and `git`) and every source of the same settings (the 1.x `ImageUpdater` resource) starts from
//! these values; nothing re-reads the annotations.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use keel_core::policy::{PolicyOptions, PolicySpec, SortOrder, VersionPolicy, regex_reason};
use keel_core::{ImageRef, Platform};
use regex::Regex;

use crate::git::GitSettings;

/// The prefix of every key.
pub const PREFIX: &str = "argocd-image-updater.argoproj.io/";
/// `image-list`: the images to update.
pub const IMAGE_LIST: &str = "argocd-image-updater.argoproj.io/image-list";
/// `write-back-method`: `argocd` (default) or `git[:...]`.
pub const WRITE_BACK_METHOD: &str = "argocd-image-updater.argoproj.io/write-back-method";

/// The Helm parameter that holds the image name when none is configured.
pub const DEFAULT_HELM_IMAGE_NAME: &str = "image.name";
/// The Helm parameter that holds the image tag when none is configured.
pub const DEFAULT_HELM_IMAGE_TAG: &str = "image.tag";

/// A key with a bad value (the whole key, e.g.
/// `argocd-image-updater.argoproj.io/web.update-strategy`, its value as written, and what is
/// wrong with it): the Application is skipped for it. keel-core's error of a bad key, so that
/// it reads as a bad `keel.sh/*` key does.
pub type AnnotationError = keel_core::keel_keys::KeyError;

/// How an image's next version is chosen (`<alias>.update-strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpdateStrategy {
    /// `semver` (the default): the greatest semantic version inside the constraint.
    #[default]
    Semver,
    /// `newest-build` (or `latest`): the most recently built image.
    NewestBuild,
    /// `digest`: the constraint names a tag; follow it to new digests.
    Digest,
    /// `alphabetical` (or `name`): the byte-wise greatest tag.
    Alphabetical,
}

impl UpdateStrategy {
    /// Parses a strategy as Image Updater 0.x accepts it, case-insensitively.
    pub fn parse(value: &str) -> Option<UpdateStrategy> {
        match value.trim().to_ascii_lowercase().as_str() {
            "semver" => Some(UpdateStrategy::Semver),
            "newest-build" | "latest" => Some(UpdateStrategy::NewestBuild),
            "digest" => Some(UpdateStrategy::Digest),
            "alphabetical" | "name" => Some(UpdateStrategy::Alphabetical),
            _ => None,
        }
    }
}

impl fmt::Display for UpdateStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpdateStrategy::Semver => "semver",
            UpdateStrategy::NewestBuild => "newest-build",
            UpdateStrategy::Digest => "digest",
            UpdateStrategy::Alphabetical => "alphabetical",
        })
    }
}

/// Where the credentials for an image's registry come from (`<alias>.pull-secret`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PullSecretSource {
    /// `pullsecret:<namespace>/<name>`: a Docker config secret.
    PullSecret {
        /// The secret's namespace.
        namespace: String,
        /// The secret's name.
        name: String,
    },
    /// `secret:<namespace>/<name>#<field>`: `user:password` in one field of a secret.
    Secret {
        /// The secret's namespace.
        namespace: String,
        /// The secret's name.
        name: String,
        /// The data key holding `user:password`.
        field: String,
    },
    /// `env:<VAR>`: `user:password` in an environment variable of this process.
    Env(String),
}

impl PullSecretSource {
    /// Parses `pullsecret:<ns>/<name>`, `secret:<ns>/<name>#<field>` or `env:<VAR>`.
    pub fn parse(value: &str) -> Result<PullSecretSource, String> {
        let value = value.trim();
        let ns_name = |rest: &str| -> Result<(String, String), String> {
            match rest.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok((ns.to_owned(), name.to_owned()))
                }
                _ => Err(format!(
                    "`{rest}` is not `<namespace>/<name>` of a Kubernetes secret"
                )),
            }
        };
        if let Some(rest) = value.strip_prefix("pullsecret:") {
            let (namespace, name) = ns_name(rest)?;
            Ok(PullSecretSource::PullSecret { namespace, name })
        } else if let Some(rest) = value.strip_prefix("secret:") {
            let Some((secret, field)) = rest.split_once('#') else {
                return Err(
                    "`secret:` needs the field: `secret:<namespace>/<name>#<field>`".into(),
                );
            };
            if field.is_empty() {
                return Err(
                    "`secret:` needs the field: `secret:<namespace>/<name>#<field>`".into(),
                );
            }
            let (namespace, name) = ns_name(secret)?;
            Ok(PullSecretSource::Secret {
                namespace,
                name,
                field: field.to_owned(),
            })
        } else if let Some(var) = value.strip_prefix("env:") {
            if var.is_empty() || var.contains(|c: char| c.is_whitespace() || c == '=') {
                return Err(format!(
                    "`{var}` is not the name of an environment variable"
                ));
            }
            Ok(PullSecretSource::Env(var.to_owned()))
        } else {
            Err(
                "expected `pullsecret:<namespace>/<name>`, `secret:<namespace>/<name>#<field>` \
                 or `env:<VAR>`"
                    .into(),
            )
        }
    }
}

impl fmt::Display for PullSecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullSecretSource::PullSecret { namespace, name } => {
                write!(f, "pullsecret:{namespace}/{name}")
            }
            PullSecretSource::Secret {
                namespace,
                name,
                field,
            } => write!(f, "secret:{namespace}/{name}#{field}"),
            PullSecretSource::Env(var) => write!(f, "env:{var}"),
        }
    }
}

/// The Helm parameters an image is written to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HelmParameters {
    /// The name and the tag in two parameters (defaults `image.name`, `image.tag`).
    NameAndTag {
        /// The parameter holding `registry/repository`.
        name: String,
        /// The parameter holding the tag (`tag@digest` with the `digest` strategy).
        tag: String,
    },
    /// One parameter holding `registry/repository:tag` (`<alias>.helm.image-spec`).
    Spec(String),
}

/// How an Application's changes are written back (`write-back-method`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum WriteBack {
    /// `argocd` (the default): the Application's own parameters are changed.
    #[default]
    ArgoCd,
    /// `git` or `git:<credentials>`: a commit to the Application's source repository.
    Git {
        /// What followed `git:` (`secret:<ns>/<name>`, `repocreds`...), empty for plain `git`.
        credentials: String,
    },
}

impl fmt::Display for WriteBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteBack::ArgoCd => f.write_str("argocd"),
            WriteBack::Git { credentials } if credentials.is_empty() => f.write_str("git"),
            WriteBack::Git { credentials } => write!(f, "git:{credentials}"),
        }
    }
}

/// One image of `image-list`, with its options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImageConfig {
    /// The alias: as written before `=`, else the last path component of the image name.
    /// Option keys are `<prefix><alias>.<option>`, with `/` in the alias written as `_`.
    pub alias: String,
    /// The image name as written, without constraint (`ghcr.io/acme/web`, `nginx`): what the
    /// Helm name parameter and the Kustomize override are set to.
    pub name: String,
    /// The repository, normalised (`docker.io/library/nginx`), at tag `latest`: compare
    /// with [`ImageRef::name`].
    pub repository: ImageRef,
    /// The version constraint after `:` (`~1.2`, `1.x`), or the tag to follow with
    /// [`UpdateStrategy::Digest`].
    pub constraint: Option<String>,
    /// `<alias>.update-strategy`.
    pub strategy: UpdateStrategy,
    /// `<alias>.allow-tags` (`regexp:<re>`); `None` for `any` or when absent.
    pub allow_tags: Option<String>,
    /// `<alias>.ignore-tags`: globs of tags never to move to.
    pub ignore_tags: Vec<String>,
    /// `<alias>.force-update`.
    pub force_update: bool,
    /// `<alias>.platforms`.
    pub platforms: Vec<Platform>,
    /// `<alias>.pull-secret`.
    pub pull_secret: Option<PullSecretSource>,
    /// The Helm parameters (`<alias>.helm.*`).
    pub helm: HelmParameters,
    /// `<alias>.kustomize.image-name`: the image whose Kustomize override is set, when it is
    /// not the image itself.
    pub kustomize_image: Option<String>,
    /// The keel-core policy the strategy, the constraint and the tag filters make.
    pub policy: Arc<VersionPolicy>,
}

impl ImageConfig {
    /// The image Kustomize overrides: `<alias>.kustomize.image-name`, else the image itself.
    pub fn kustomize_name(&self) -> &str {
        self.kustomize_image.as_deref().unwrap_or(&self.name)
    }
}

/// What an Application's annotations ask for.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApplicationConfig {
    /// The images of `image-list`, in order.
    pub images: Vec<ImageConfig>,
    /// `write-back-method`.
    pub write_back: WriteBack,
    /// `git-repository`, `git-branch` and `write-back-target`: where the `git` write-back
    /// commits (read whatever the method, used by `git` only).
    pub git: GitSettings,
}

impl ApplicationConfig {
    /// Whether `annotations` ask for any image to be updated (`image-list` is set).
    pub fn is_configured(annotations: &BTreeMap<String, String>) -> bool {
        annotations.contains_key(IMAGE_LIST)
    }

    /// Reads the annotations; every bad value is reported, none is guessed at.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use keel_argocd::annotations::{ApplicationConfig, UpdateStrategy, WriteBack};
    ///
    /// let annotations = BTreeMap::from([
    ///     ("argocd-image-updater.argoproj.io/image-list".to_owned(),
    ///      "web=ghcr.io/acme/web:~1.2, nginx:1.x".to_owned()),
    ///     ("argocd-image-updater.argoproj.io/web.update-strategy".to_owned(), "semver".to_owned()),
    /// ]);
    /// let config = ApplicationConfig::parse(&annotations).unwrap();
    /// assert_eq!(config.images[0].alias, "web");
    /// assert_eq!(config.images[1].alias, "nginx");
    /// assert_eq!(config.images[1].policy.spec().to_string(), "semver:1.x");
    /// assert_eq!(config.write_back, WriteBack::ArgoCd);
    /// ```
    pub fn parse(
        annotations: &BTreeMap<String, String>,
    ) -> Result<ApplicationConfig, Vec<AnnotationError>> {
        let mut errors = Vec::new();
        let write_back = match annotations.get(WRITE_BACK_METHOD).map(|v| v.trim()) {
            None | Some("argocd") => WriteBack::ArgoCd,
            Some("git") => WriteBack::Git {
                credentials: String::new(),
            },
            Some(v) if v.starts_with("git:") => WriteBack::Git {
                credentials: v["git:".len()..].to_owned(),
            },
            Some(v) => {
                errors.push(AnnotationError::new(
                    WRITE_BACK_METHOD,
                    v,
                    "expected `argocd` or `git[:<credentials>]`",
                ));
                WriteBack::ArgoCd
            }
        };
        let git = match GitSettings::parse(&|name| {
            let key = GitSettings::annotation(name);
            annotations.get(key).map(|v| (key.to_owned(), v.clone()))
        }) {
            Ok(git) => git,
            Err(bad) => {
                errors.extend(
                    bad.into_iter()
                        .map(|(key, value, reason)| AnnotationError::new(key, value, reason)),
                );
                GitSettings::default()
            }
        };
        let list = annotations
            .get(IMAGE_LIST)
            .map(String::as_str)
            .unwrap_or("");
        let mut images: Vec<ImageConfig> = Vec::new();
        let bad_list = |reason: String| AnnotationError::new(IMAGE_LIST, list, reason);
        for entry in list.split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let option = |alias: &str, name: &str| {
                let key = format!("{PREFIX}{}.{name}", alias.replace('/', "_"));
                annotations.get(&key).map(|v| (key, v.clone()))
            };
            match parse_image(entry, &option) {
                Ok(image) => {
                    if images.iter().any(|i| i.alias == image.alias) {
                        errors.push(bad_list(format!(
                            "alias `{}` is given to two images; give each its own with \
                             `<alias>=<image>`",
                            image.alias
                        )));
                    } else {
                        images.push(image);
                    }
                }
                Err(ImageError::Entry(reason)) => {
                    errors.push(bad_list(format!("`{entry}`: {reason}")))
                }
                Err(ImageError::Options(mut option_errors)) => errors.append(&mut option_errors),
            }
        }
        if images.is_empty() && errors.is_empty() {
            errors.push(bad_list("names no image".into()));
        }
        if errors.is_empty() {
            Ok(ApplicationConfig {
                images,
                write_back,
                git,
            })
        } else {
            Err(errors)
        }
    }
}

/// Why one image of a list is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The entry itself (`[<alias>=]<image>[:<constraint>]`) is bad, or its constraint does
    /// not fit its strategy: the reason.
    Entry(String),
    /// Options with bad values.
    Options(Vec<AnnotationError>),
}

/// The per-image options, as written after `<alias>.` in the annotations; the names that
/// [`ImageConfig::parse`] asks its option source for.
pub const IMAGE_OPTIONS: [&str; 10] = [
    "update-strategy",
    "allow-tags",
    "ignore-tags",
    "force-update",
    "platforms",
    "pull-secret",
    "helm.image-name",
    "helm.image-tag",
    "helm.image-spec",
    "kustomize.image-name",
];

/// Where [`ImageConfig::parse`] reads options: given the image's alias and an option name of
/// [`IMAGE_OPTIONS`], the key the option is written under and its value.
pub type OptionSource<'a> = dyn Fn(&str, &str) -> Option<(String, String)> + 'a;

impl ImageConfig {
    /// Reads one image entry `[<alias>=]<image>[:<constraint>]` and its options, from any
    /// source of settings: `option(alias, name)` answers, for an option of [`IMAGE_OPTIONS`],
    /// the key it is written under (named in errors) and its value, or `None` when it is not
    /// set. [`ApplicationConfig::parse`] reads the annotations this way; a reader of other
    /// objects that carry the same settings (Image Updater 1.x's `ImageUpdater` resource)
    /// passes its own fields under its own keys.
    ///
    /// ```
    /// use keel_argocd::annotations::ImageConfig;
    ///
    /// let image = ImageConfig::parse("web=ghcr.io/acme/web:stable", &|alias, option| {
    ///     (alias == "web" && option == "update-strategy")
    ///         .then(|| ("spec.images[0].updateStrategy".to_owned(), "digest".to_owned()))
    /// })
    /// .unwrap();
    /// assert_eq!(image.policy.spec().to_string(), "digest");
    /// ```
    pub fn parse(entry: &str, option: &OptionSource<'_>) -> Result<ImageConfig, ImageError> {
        parse_image(entry.trim(), option)
    }
}

/// `[<alias>=]<image>[:<constraint>]`, with its options.
fn parse_image(entry: &str, option: &OptionSource<'_>) -> Result<ImageConfig, ImageError> {
    let (alias, image) = match entry.split_once('=') {
        Some((alias, image)) => (Some(alias.trim()), image.trim()),
        None => (None, entry),
    };
    if let Some(alias) = alias
        && (alias.is_empty()
            || !alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)))
    {
        return Err(ImageError::Entry(format!(
            "alias `{alias}` must be letters, digits, `-`, `_`, `.` or `/`"
        )));
    }
    if image.contains('@') {
        return Err(ImageError::Entry(
            "an image in the list is `<image>[:<constraint>]`, without a digest".into(),
        ));
    }
    // The constraint follows the last `:` after the last `/` (a `:` before it is a port).
    let path_start = image.rfind('/').map_or(0, |i| i + 1);
    let (name, constraint) = match image[path_start..].find(':') {
        Some(i) => (
            &image[..path_start + i],
            Some(image[path_start + i + 1..].trim()),
        ),
        None => (image, None),
    };
    let repository = ImageRef::parse(name)
        .map_err(|e| ImageError::Entry(format!("not an image name: {}", e.reason())))?;
    let constraint = constraint.filter(|c| !c.is_empty()).map(str::to_owned);
    let alias = alias.map_or_else(
        || name.rsplit('/').next().unwrap_or(name).to_owned(),
        str::to_owned,
    );

    let mut errors = Vec::new();
    let get = |name: &str| -> Option<(String, String)> {
        option(&alias, name).map(|(k, v)| (k, v.trim().to_owned()))
    };
    let bad = |key: &str, value: &str, reason: String| AnnotationError::new(key, value, reason);

    let strategy_value = get("update-strategy");
    let strategy = match &strategy_value {
        None => UpdateStrategy::Semver,
        Some((k, v)) => UpdateStrategy::parse(v).unwrap_or_else(|| {
            errors.push(bad(
                k,
                v,
                "expected `semver`, `newest-build` (or `latest`), `digest` or `alphabetical` \
                 (or `name`)"
                    .into(),
            ));
            UpdateStrategy::Semver
        }),
    };
    let allow_tags = match get("allow-tags") {
        None => None,
        Some((_, v)) if v == "any" => None,
        Some((k, v)) => match v.strip_prefix("regexp:") {
            Some(re) => match Regex::new(re) {
                Ok(_) => Some(re.to_owned()),
                Err(e) => {
                    errors.push(bad(&k, &v, regex_reason(&e)));
                    None
                }
            },
            None => {
                errors.push(bad(
                    &k,
                    &v,
                    "expected `regexp:<regular expression>` or `any`".into(),
                ));
                None
            }
        },
    };
    let ignore_tags: Vec<String> = get("ignore-tags")
        .map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let force_update = match get("force-update") {
        None => false,
        Some((k, v)) => match v.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                errors.push(bad(&k, &v, "expected `true` or `false`".into()));
                false
            }
        },
    };
    let mut platforms = Vec::new();
    if let Some((k, v)) = get("platforms") {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parts = p.split('/').count();
            match Platform::parse(p) {
                Ok(platform) if (2..=3).contains(&parts) => platforms.push(platform),
                Ok(_) => errors.push(bad(&k, &v, format!("`{p}` is not `os/arch[/variant]`"))),
                Err(e) => errors.push(bad(&k, &v, format!("`{p}`: {}", e.reason()))),
            }
        }
    }
    let pull_secret = match get("pull-secret") {
        None => None,
        Some((k, v)) => match PullSecretSource::parse(&v) {
            Ok(source) => Some(source),
            Err(reason) => {
                errors.push(bad(&k, &v, reason));
                None
            }
        },
    };
    let mut param = |option: &str| -> Option<String> {
        match get(option) {
            Some((k, v)) if v.is_empty() || v.contains(char::is_whitespace) => {
                errors.push(bad(&k, &v, "expected the name of a Helm parameter".into()));
                None
            }
            Some((_, v)) => Some(v),
            None => None,
        }
    };
    let spec_param = param("helm.image-spec");
    let name_param = param("helm.image-name");
    let tag_param = param("helm.image-tag");
    let helm = match spec_param {
        Some(spec) => HelmParameters::Spec(spec),
        None => HelmParameters::NameAndTag {
            name: name_param.unwrap_or_else(|| DEFAULT_HELM_IMAGE_NAME.into()),
            tag: tag_param.unwrap_or_else(|| DEFAULT_HELM_IMAGE_TAG.into()),
        },
    };
    let kustomize_image = match get("kustomize.image-name") {
        None => None,
        Some((k, v)) => match ImageRef::parse(&v) {
            Ok(_) if !v.contains([':', '@']) || v.rfind('/') > v.rfind(':') => Some(v),
            Ok(_) => {
                errors.push(bad(
                    &k,
                    &v,
                    "expected an image name without tag or digest".into(),
                ));
                None
            }
            Err(e) => {
                errors.push(bad(&k, &v, format!("not an image name: {}", e.reason())));
                None
            }
        },
    };

    let built = build_policy(
        strategy,
        constraint.as_deref(),
        allow_tags.as_deref(),
        &ignore_tags,
    );
    let policy = match (built, &strategy_value) {
        (Ok(policy), _) => Some(policy),
        // A constraint that does not fit: the list is where it is written.
        (Err(reason), _) if constraint.is_some() => return Err(ImageError::Entry(reason)),
        (Err(reason), Some((k, v))) => {
            errors.push(bad(k, v, reason));
            None
        }
        (Err(reason), None) => return Err(ImageError::Entry(reason)),
    };
    match policy {
        Some(policy) if errors.is_empty() => Ok(ImageConfig {
            alias,
            name: name.to_owned(),
            repository,
            constraint,
            strategy,
            allow_tags,
            ignore_tags,
            force_update,
            platforms,
            pull_secret,
            helm,
            kustomize_image,
            policy: Arc::new(policy),
        }),
        _ => Err(ImageError::Options(errors)),
    }
}

/// The keel-core policy of a strategy and constraint, with `allow-tags` as the filter and
/// each `ignore-tags` glob as an exclude.
///
/// - `semver` with constraint `c`: `semver:c`; without: `semver:*`.
/// - `newest-build`: `newest-build`; a constraint is not a version range there and is refused.
/// - `digest`: the constraint is the tag to follow; required.
/// - `alphabetical`: `alphabetical`; a constraint is refused.
pub fn build_policy(
    strategy: UpdateStrategy,
    constraint: Option<&str>,
    allow_tags: Option<&str>,
    ignore_tags: &[String],
) -> Result<VersionPolicy, String> {
    let spec = match (strategy, constraint) {
        (UpdateStrategy::Semver, None) => "semver:*".parse::<PolicySpec>(),
        (UpdateStrategy::Semver, Some(c)) => format!("semver:{c}").parse::<PolicySpec>(),
        (UpdateStrategy::NewestBuild, None) => Ok(PolicySpec::NewestBuild),
        (UpdateStrategy::Alphabetical, None) => Ok(PolicySpec::Alphabetical(SortOrder::Asc)),
        (UpdateStrategy::Digest, Some(tag)) => {
            if keel_core::reference::is_valid_tag(tag) {
                Ok(PolicySpec::Digest)
            } else {
                return Err(format!(
                    "with the `digest` strategy the constraint is the tag to follow, and `{tag}` \
                     is not a valid tag"
                ));
            }
        }
        (UpdateStrategy::Digest, None) => {
            return Err(
                "the `digest` strategy needs the tag to follow: `<image>:<tag>`".to_owned(),
            );
        }
        (strategy @ (UpdateStrategy::NewestBuild | UpdateStrategy::Alphabetical), Some(c)) => {
            return Err(format!(
                "the `{strategy}` strategy takes no version constraint (`{c}`); use allow-tags \
                 to narrow the tags"
            ));
        }
    }
    .map_err(|e| format!("bad version constraint: {}", e.reason()))?;
    let options = PolicyOptions {
        filter: allow_tags.map(str::to_owned),
        exclude: ignore_tags.iter().map(|g| glob_regex(g)).collect(),
        ..PolicyOptions::default()
    };
    VersionPolicy::new(spec, &options).map_err(|e| e.reason().to_owned())
}

/// An anchored regex matching what the glob `pattern` matches, as Go's `filepath.Match`
/// reads it (Image Updater's `ignore-tags`): `*` any run, `?` one character, `[...]` a class
/// (`[^...]` or `[!...]` negated), `\` escapes the next character.
pub fn glob_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' => match chars.next() {
                Some(next) => out.push_str(&regex::escape(&next.to_string())),
                None => out.push_str(r"\\"),
            },
            '[' => {
                let mut class = String::new();
                let mut closed = false;
                if let Some(&neg) = chars.peek()
                    && (neg == '^' || neg == '!')
                {
                    chars.next();
                    class.push('^');
                }
                for d in chars.by_ref() {
                    if d == ']' {
                        closed = true;
                        break;
                    }
                    if matches!(d, '\\' | '[' | '&' | '~') {
                        class.push('\\');
                    }
                    class.push(d);
                }
                // A class the regex engine would refuse (`[z-a]`) matches nothing in Go; here
                // it is taken literally rather than failing the whole policy.
                let valid = Regex::new(&format!("[{class}]")).is_ok();
                if closed && valid && !class.is_empty() && class != "^" {
                    out.push('[');
                    out.push_str(&class);
                    out.push(']');
                } else {
                    // An unclosed or empty class matches itself, literally.
                    out.push_str(&regex::escape(&format!("[{class}")));
                    if closed {
                        out.push_str(&regex::escape("]"));
                    }
                }
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests;
