//! Policy strings and options.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Glob;
use crate::error::ParseError;
use crate::version::VersionRange;

/// A built-in policy, parsed from the strings Keel, Flux and Argo CD Image Updater users write.
///
/// | string | policy |
/// |---|---|
/// | `all`, `major`, `minor`, `patch` | semver, by how far the version may move |
/// | `semver:<range>` | semver inside a range (`semver:^1.2`, `semver:>=1.0.0-0 <2.0.0`) |
/// | `glob:<pattern>`, `regexp:<re>` | tags matching, in natural order |
/// | `alphabetical[:asc\|desc]`, `numerical[:asc\|desc]` | byte-wise or decimal order |
/// | `docker` | Renovate-style suffix-compatible versions |
/// | `force`, `digest`, `newest-build`, `never` (or empty) | see the [module docs](super) |
///
/// Keywords are case-insensitive; `semver` alone means `semver:*`.
///
/// ```
/// use keel_core::policy::PolicySpec;
///
/// let spec: PolicySpec = "semver:>= 1.2, < 2".parse().unwrap();
/// assert_eq!(spec.to_string(), "semver:>= 1.2, < 2");
/// let err = "semver:>=1.2 <abc".parse::<PolicySpec>().unwrap_err();
/// assert_eq!(err.span(), Some((14, 17)));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PolicySpec {
    /// Never update.
    Never,
    /// The greatest semver version, pre-releases included.
    All,
    /// The greatest semver version on the current pre-release channel.
    Major,
    /// As `Major`, within the current major version.
    Minor,
    /// As `Major`, within the current major and minor version.
    Patch,
    /// Any tag; semver tags only move up. With match-tag, the current tag at a new digest.
    Force,
    /// The greatest version inside the range.
    Semver(VersionRange),
    /// Tags matching the glob, in natural order.
    Glob(Glob),
    /// Tags matching the regex, ordered by its `compare` group (or the whole tag).
    Regexp(Regex),
    /// Byte-wise order.
    Alphabetical(SortOrder),
    /// Decimal order.
    Numerical(SortOrder),
    /// Renovate-style docker versions: same number of parts, same suffix.
    Docker,
    /// The current tag, at a new digest.
    Digest,
    /// The most recently created image.
    NewestBuild,
}

/// Which end of an order `alphabetical` and `numerical` take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// The greatest (the default).
    #[default]
    Asc,
    /// The least.
    Desc,
}

const KEYWORDS: &str = "all, major, minor, patch, force, digest, newest-build, docker, never, \
                        alphabetical[:asc|desc], numerical[:asc|desc], semver:<range>, \
                        glob:<pattern>, regexp:<regex>";

impl FromStr for PolicySpec {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, ParseError> {
        let err = |reason: String| ParseError::new("policy", input, reason);
        let lead = input.len() - input.trim_start().len();
        let s = input.trim();
        let (word, arg) = match s.split_once(':') {
            Some((w, a)) => (w, Some(a)),
            None => (s, None),
        };
        let arg_at = lead + word.len() + 1;
        let keyword = word.to_ascii_lowercase();
        let no_arg =
            |spec: PolicySpec| match arg {
                None => Ok(spec),
                Some(_) => Err(err(format!("policy `{keyword}` takes no argument"))
                    .at(arg_at - 1, input.len())),
            };
        match keyword.as_str() {
            "" | "never" => no_arg(PolicySpec::Never),
            "all" => no_arg(PolicySpec::All),
            "major" => no_arg(PolicySpec::Major),
            "minor" => no_arg(PolicySpec::Minor),
            "patch" => no_arg(PolicySpec::Patch),
            "force" => no_arg(PolicySpec::Force),
            "digest" => no_arg(PolicySpec::Digest),
            "newest-build" => no_arg(PolicySpec::NewestBuild),
            "docker" => no_arg(PolicySpec::Docker),
            "alphabetical" | "numerical" => {
                let order = match arg.map(|a| a.trim().to_ascii_lowercase()).as_deref() {
                    None | Some("asc") => SortOrder::Asc,
                    Some("desc") => SortOrder::Desc,
                    Some(_) => {
                        return Err(err(format!(
                            "`{keyword}` takes `:asc` or `:desc` as its order"
                        ))
                        .at(arg_at, input.len()));
                    }
                };
                Ok(if keyword == "numerical" {
                    PolicySpec::Numerical(order)
                } else {
                    PolicySpec::Alphabetical(order)
                })
            }
            "semver" => match arg {
                None => Ok(PolicySpec::Semver(
                    VersionRange::parse("*").expect("`*` is a valid range"),
                )),
                Some(range) => VersionRange::parse(range)
                    .map(PolicySpec::Semver)
                    .map_err(|e| e.within("policy", input, arg_at)),
            },
            "glob" => match arg {
                Some(pattern) if !pattern.is_empty() => Ok(PolicySpec::Glob(Glob::new(pattern))),
                _ => Err(err("`glob:` needs a pattern, e.g. `glob:1.2.*`".into())
                    .at(arg_at.min(input.len()), input.len())),
            },
            "regexp" => match arg {
                Some(re) if !re.is_empty() => Regex::new(re)
                    .map(PolicySpec::Regexp)
                    .map_err(|e| err(regex_reason(&e)).at(arg_at, input.len())),
                _ => Err(err("`regexp:` needs a regular expression".into())
                    .at(arg_at.min(input.len()), input.len())),
            },
            _ => Err(err(format!(
                "unknown policy `{word}`; expected one of {KEYWORDS}"
            ))
            .at(lead, lead + word.len())),
        }
    }
}

/// A regex error on one line, `bad regular expression: <what is wrong>`: the `regex` crate's
/// own message spans several (the pattern, a caret under the fault, then the reason). Every
/// reader of a user's regular expression reports it through this.
///
/// ```
/// use keel_core::policy::regex_reason;
///
/// let e = regex::Regex::new("a(b").unwrap_err();
/// assert_eq!(regex_reason(&e), "bad regular expression: unclosed group");
/// ```
pub fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    format!(
        "bad regular expression: {}",
        last.trim().trim_start_matches("error: ")
    )
}

/// Two specs are equal when they print the same ([`Display`](fmt::Display) gives a form that
/// parses back to the same policy).
impl PartialEq for PolicySpec {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for PolicySpec {}

impl fmt::Display for PolicySpec {
    /// The policy string, such that parsing it gives the same policy back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = |o: &SortOrder| match o {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        match self {
            PolicySpec::Never => f.write_str("never"),
            PolicySpec::All => f.write_str("all"),
            PolicySpec::Major => f.write_str("major"),
            PolicySpec::Minor => f.write_str("minor"),
            PolicySpec::Patch => f.write_str("patch"),
            PolicySpec::Force => f.write_str("force"),
            PolicySpec::Semver(range) => write!(f, "semver:{range}"),
            PolicySpec::Glob(glob) => write!(f, "glob:{glob}"),
            PolicySpec::Regexp(re) => write!(f, "regexp:{}", re.as_str()),
            PolicySpec::Alphabetical(o) => write!(f, "alphabetical:{}", order(o)),
            PolicySpec::Numerical(o) => write!(f, "numerical:{}", order(o)),
            PolicySpec::Docker => f.write_str("docker"),
            PolicySpec::Digest => f.write_str("digest"),
            PolicySpec::NewestBuild => f.write_str("newest-build"),
        }
    }
}

/// How a policy treats tags beyond its own order: the tag filters of Flux and Argo CD Image
/// Updater and Keel's pre-release and downgrade switches. Deserializes from camelCase keys, so
/// configuration files can carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyOptions {
    /// Regexes (unanchored); tags matching any are dropped first.
    pub exclude: Vec<String>,
    /// Whether to also drop cosign/notation artefact tags (`sha256-<64 hex>[.sig|.att|...]`).
    /// Default: true.
    pub default_excludes: bool,
    /// A regex (unanchored); only tags matching it are kept.
    pub filter: Option<String>,
    /// A template (`$name`, `${name}`, `$1`, literal text) expanded on the filter's match;
    /// the policy orders the expansion instead of the tag. Needs `filter`.
    pub extract: Option<String>,
    /// Whether `major`, `minor` and `patch` keep to the current pre-release channel.
    /// Default: true.
    pub match_pre_release: bool,
    /// Whether the result may order below the current tag. Default: false.
    pub allow_downgrade: bool,
    /// `force` only: follow the current tag to new digests instead of moving between tags.
    pub match_tag: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            exclude: Vec::new(),
            default_excludes: true,
            filter: None,
            extract: None,
            match_pre_release: true,
            allow_downgrade: false,
            match_tag: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PolicySpec {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_every_keyword() {
        for (s, shown) in [
            ("", "never"),
            ("never", "never"),
            ("all", "all"),
            ("Major", "major"),
            ("minor", "minor"),
            (" patch ", "patch"),
            ("force", "force"),
            ("digest", "digest"),
            ("newest-build", "newest-build"),
            ("docker", "docker"),
            ("alphabetical", "alphabetical:asc"),
            ("alphabetical:desc", "alphabetical:desc"),
            ("numerical:ASC", "numerical:asc"),
            ("glob:1.2.*", "glob:1.2.*"),
            (
                "regexp:^main-(?P<compare>\\d+)$",
                "regexp:^main-(?P<compare>\\d+)$",
            ),
            ("semver:^1.2", "semver:^1.2"),
            ("semver", "semver:*"),
        ] {
            let spec = parse(s);
            assert_eq!(spec.to_string(), shown, "{s:?}");
            assert_eq!(parse(&spec.to_string()).to_string(), shown);
        }
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let e = "minr".parse::<PolicySpec>().unwrap_err();
        assert!(e.to_string().contains("unknown policy `minr`"), "{e}");
        assert_eq!(e.span(), Some((0, 4)));

        let e = "numerical:up".parse::<PolicySpec>().unwrap_err();
        assert_eq!(e.span(), Some((10, 12)));

        let e = "regexp:(".parse::<PolicySpec>().unwrap_err();
        assert!(e.reason().starts_with("bad regular expression"), "{e}");
        assert_eq!(e.span(), Some((7, 8)));

        let e = "minor:1".parse::<PolicySpec>().unwrap_err();
        assert!(e.to_string().contains("takes no argument"), "{e}");

        assert!("glob:".parse::<PolicySpec>().is_err());
        assert!("regexp:".parse::<PolicySpec>().is_err());
    }

    #[test]
    fn options_deserialize_from_camel_case() {
        let o: PolicyOptions = serde_json::from_str(
            r#"{"filter":"^main-(?P<n>\\d+)$","extract":"$n","matchPreRelease":false}"#,
        )
        .unwrap();
        assert_eq!(o.extract.as_deref(), Some("$n"));
        assert!(!o.match_pre_release);
        assert!(o.default_excludes);
        assert!(serde_json::from_str::<PolicyOptions>(r#"{"filtr":"x"}"#).is_err());
    }
}
