//! The version selection of a Flux `ImagePolicy`: which tag goes into `status.latestRef`.
//!
//! [`FluxPolicy`] is built from the two parts of an `ImagePolicy` spec that decide the tag,
//! [`ImagePolicyChoice`] (`spec.policy`) and [`TagFilter`] (`spec.filterTags`), and applies
//! the rules of Flux's image-reflector-controller:
//!
//! 1. **Filter**: with `filterTags`, only tags that `pattern` matches (unanchored) are kept.
//!    With `extract` (a template over the pattern's groups: `$1`, `$ts`, `${ts}`, literal text),
//!    the policy orders the expansion of the template on the match instead of the tag; the result
//!    is still the original tag. An empty `extract` means none, as in Flux.
//! 2. **semver**: a tag (or extracted value) is a candidate only if it is strict semver 2.0.0
//!    (`MAJOR.MINOR.PATCH`, no leading zeros, optional `-pre-release` and `+build`) once one
//!    leading lowercase `v` is removed: `1.2.3`, `v1.2.3` and `1.2.3-rc.1+b5` are candidates,
//!    `1.2`, `1.187`, `01.2.3`, `V1.2.3` and `latest` are not. keel-core's own `semver:` policy
//!    is lenient and takes `1.187`; Flux does not, so neither does keel-flux. The candidates
//!    inside the range compete, and the greatest by semver precedence wins (build metadata is
//!    ignored). A pre-release is inside the range only if one of the comparators of the same
//!    `||` alternative names a pre-release (`>=1.0.0-0 <2.0.0`), Masterminds/semver's rule,
//!    which keel-core's [`VersionRange`] applies as well.
//! 3. **alphabetical**: every tag is a candidate; `asc` (the default) takes the greatest in
//!    byte order, `desc` the least.
//! 4. **numerical**: tags are read as Go's `strconv.ParseFloat` reads them (`1`, `1.5`, `-2`,
//!    `1e3`, `1_000`, `0x1p4`, `Inf`, `NaN`); `asc` (the default) takes the greatest, `desc` the
//!    least. As in Flux, one tag left by the filter that is not a number fails the whole
//!    policy: [`FluxPolicy::latest`] returns an error naming that tag, and
//!    [`select`](Policy::select) decides nothing and says why in the explanation's note. (keel-rs's
//!    own `numerical` policy skips such tags instead.) A number too large for a float (`1e400`)
//!    fails as in Go; NaN orders above every number.
//!
//! ```
//! use keel_flux::policy::{FluxPolicy, ImagePolicyChoice, TagFilter};
//!
//! // Builds named by commit and timestamp, ordered by the timestamp.
//! let filter = TagFilter::new(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$").with_extract("$ts");
//! let policy = FluxPolicy::new(ImagePolicyChoice::numerical_asc(), Some(filter)).unwrap();
//! let tags = ["main-3fa2c1-1700000200", "main-77b0e9-1700000900", "latest", "main-0c1d2e-99"];
//! assert_eq!(policy.latest(tags).unwrap().as_deref(), Some("main-77b0e9-1700000900"));
//! ```
//!
//! # Ties: the one deliberate difference from Flux
//!
//! Flux's choice between tags that order equal depends on the order in which it happens to see
//! them: `1.0.0` and `v1.0.0`, `1.0.0+a` and `1.0.0+b`, numerically equal `1` and `1.0`, or two
//! tags whose extracted values are equal (its filter keeps them in a Go map, whose iteration
//! order is random). Such an `ImagePolicy` flaps between the tied tags from one reconciliation
//! to the next, and every flap is a commit by the image automation. keel-flux instead gives
//! the tie to the **byte-wise greatest tag** (`v1.0.0` over `1.0.0`, `1.0.0+b` over
//! `1.0.0+a`), whatever the order of the listing and whatever the current tag, so the
//! result is always one of the tags Flux could have chosen, and always the same one.
//!
//! # Where keel-flux cannot match Flux exactly
//!
//! Ranges are parsed and matched by keel-core's [`VersionRange`] rather than a port of
//! Masterminds/semver. The grammar Flux users write is the same, and so is every answer on
//! release versions; the differences are corners:
//!
//! - In a range that admits pre-releases, bounds written as partial versions exclude the
//!   pre-releases of the versions they exclude (npm's reading): `>=1.0.0-0 <2` does not take
//!   `2.0.0-rc.1` and `>=1.0.0-0 >1.2` does not take `1.3.0-rc.1`, where Masterminds takes both.
//!   Write full versions (`<2.0.0`) for Masterminds' answer, which keel-core gives too.
//! - `~0.0.0` is `>=0.0.0 <0.1.0` (Masterminds: any version); `~*` and `^*` are rejected by
//!   [`FluxPolicy::new`] (Masterminds: any version, and only `0.0.0`), and so is a number after
//!   a wildcard, `1.x.3` (Masterminds: `1.x`).
//! - Versions in ranges may have leading zeros (`>=01.2.0`), which recent Masterminds versions
//!   reject.
//! - The operators `=>` and `=<`, which Masterminds accepts, are read as `>=` and `<=`.
//! - Numeric pre-release identifiers longer than 64 bits compare as numbers, as semver 2.0.0
//!   says; Masterminds compares them as text.
//!
//! Patterns are compiled by the `regex` crate. Its syntax is RE2's, as Go's `regexp`; `\d`,
//! `\w` and `\s` are Unicode-aware in Rust and ASCII in Go, which makes no difference on tags
//! (the registry grammar allows only ASCII letters, digits, `_`, `.` and `-`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use keel_core::policy::{
    Candidate, Decision, Explanation, Policy, PolicyOptions, PolicySpec, Reason, Rejection,
    SelectInput, SortOrder, VersionPolicy,
};
use keel_core::version::{Version, VersionRange};
use keel_core::{Error, ParseError};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// `spec.policy` of an `ImagePolicy`: how to order tags. Exactly one field must be set.
///
/// Deserializes from the object's JSON or YAML (camelCase keys, as Flux's API):
///
/// ```
/// use keel_core::policy::SortOrder;
/// use keel_flux::policy::ImagePolicyChoice;
///
/// let choice: ImagePolicyChoice = serde_json::from_str(r#"{"numerical": {}}"#).unwrap();
/// assert_eq!(choice.numerical.unwrap().order, SortOrder::Asc);
/// let choice: ImagePolicyChoice = serde_json::from_str(r#"{"semver": {"range": "^1.2"}}"#).unwrap();
/// assert_eq!(choice.semver.unwrap().range, "^1.2");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyChoice {
    /// `semver`: the greatest version inside a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemVerPolicy>,
    /// `alphabetical`: byte-wise order of the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<AlphabeticalPolicy>,
    /// `numerical`: the tags as floating-point numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<NumericalPolicy>,
}

impl ImagePolicyChoice {
    /// A `semver` policy with `range`.
    ///
    /// ```
    /// let choice = keel_flux::policy::ImagePolicyChoice::semver("^1.2");
    /// assert_eq!(choice.semver.map(|s| s.range).as_deref(), Some("^1.2"));
    /// ```
    pub fn semver(range: impl Into<String>) -> Self {
        ImagePolicyChoice {
            semver: Some(SemVerPolicy {
                range: range.into(),
            }),
            ..ImagePolicyChoice::default()
        }
    }

    /// An `alphabetical` policy in `order`.
    ///
    /// ```
    /// use keel_core::policy::SortOrder;
    /// let choice = keel_flux::policy::ImagePolicyChoice::alphabetical(SortOrder::Desc);
    /// assert_eq!(choice.alphabetical.map(|a| a.order), Some(SortOrder::Desc));
    /// ```
    pub fn alphabetical(order: SortOrder) -> Self {
        ImagePolicyChoice {
            alphabetical: Some(AlphabeticalPolicy { order }),
            ..ImagePolicyChoice::default()
        }
    }

    /// A `numerical` policy in `order`.
    ///
    /// ```
    /// use keel_core::policy::SortOrder;
    /// let choice = keel_flux::policy::ImagePolicyChoice::numerical(SortOrder::Desc);
    /// assert_eq!(choice.numerical.map(|n| n.order), Some(SortOrder::Desc));
    /// ```
    pub fn numerical(order: SortOrder) -> Self {
        ImagePolicyChoice {
            numerical: Some(NumericalPolicy { order }),
            ..ImagePolicyChoice::default()
        }
    }

    /// A `numerical` policy in ascending order (the greatest number wins), Flux's default.
    ///
    /// ```
    /// use keel_core::policy::SortOrder;
    /// use keel_flux::policy::ImagePolicyChoice;
    /// assert_eq!(ImagePolicyChoice::numerical_asc(), ImagePolicyChoice::numerical(SortOrder::Asc));
    /// ```
    pub fn numerical_asc() -> Self {
        ImagePolicyChoice::numerical(SortOrder::Asc)
    }
}

/// `spec.policy.semver`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SemVerPolicy {
    /// `range`: a Masterminds/semver constraint, e.g. `>=1.0.0 <2.0.0`, `^1.2`, `1.2.x`.
    pub range: String,
}

/// `spec.policy.alphabetical`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlphabeticalPolicy {
    /// `order`: `asc` (the default) takes the greatest tag in byte order, `desc` the least.
    #[serde(default)]
    pub order: SortOrder,
}

/// `spec.policy.numerical`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumericalPolicy {
    /// `order`: `asc` (the default) takes the greatest number, `desc` the least.
    #[serde(default)]
    pub order: SortOrder,
}

/// `spec.filterTags` of an `ImagePolicy`: which tags the policy considers, and what part of
/// them it orders.
///
/// ```
/// use keel_flux::policy::TagFilter;
///
/// let filter: TagFilter =
///     serde_json::from_str(r#"{"pattern": "^v(?P<v>.*)-alpine$", "extract": "$v"}"#).unwrap();
/// assert_eq!(filter, TagFilter::new("^v(?P<v>.*)-alpine$").with_extract("$v"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    /// `pattern`: a regular expression (RE2 syntax, unanchored); only tags it matches are kept.
    #[serde(default)]
    pub pattern: String,
    /// `extract`: a template over the pattern's groups (`$1`, `$name`, `${name}`, literal text);
    /// the policy orders its expansion instead of the tag. Empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
}

impl TagFilter {
    /// A filter keeping the tags `pattern` matches.
    pub fn new(pattern: impl Into<String>) -> Self {
        TagFilter {
            pattern: pattern.into(),
            extract: None,
        }
    }

    /// The same filter, ordering the expansion of `template` instead of the tag.
    pub fn with_extract(self, template: impl Into<String>) -> Self {
        TagFilter {
            extract: Some(template.into()),
            ..self
        }
    }
}

/// The field names in errors, as `kubectl explain` spells them.
const FIELD_POLICY: &str = "spec.policy";
const FIELD_RANGE: &str = "spec.policy.semver.range";
const FIELD_PATTERN: &str = "spec.filterTags.pattern";
const FIELD_EXTRACT: &str = "spec.filterTags.extract";
const FIELD_NUMERICAL_TAG: &str = "tag for spec.policy.numerical";

const EXPECT_STRICT_SEMVER: &str =
    "a strict semver version (MAJOR.MINOR.PATCH[-PRE][+BUILD], optionally after one `v`)";
const EXPECT_NUMBER: &str = "a number";

/// An `ImagePolicy`'s version selection, validated and ready to run: the rules of the
/// [module docs](self).
///
/// Use [`latest`](FluxPolicy::latest) for what Flux puts in `status.latestRef.tag`, or run it as
/// a [`Policy`] in keel-rs's pipeline, which asks [`select`](Policy::select) (the same answer,
/// except that the current tag is never "updated" to itself).
///
/// ```
/// use keel_core::policy::{Candidate, Current, Policy, SelectInput};
/// use keel_flux::policy::{FluxPolicy, ImagePolicyChoice};
///
/// let policy = FluxPolicy::new(ImagePolicyChoice::semver("^1.2"), None).unwrap();
/// let tags = ["1.2.0", "1.9.1", "1.10.0-rc.1", "2.0.0"].map(Candidate::new);
/// let decision = policy.select(&SelectInput::new(Current::tag("1.2.0"), &tags).explained());
/// assert_eq!(decision.tag(), Some("1.9.1"));
/// let explanation = decision.explanation.unwrap().to_string();
/// assert!(explanation.contains("rejected 1.10.0-rc.1: pre-release"), "{explanation}");
/// ```
#[derive(Clone, Debug)]
pub struct FluxPolicy {
    order: Order,
    filter: Option<Filter>,
}

/// How the policy orders the (extracted) values.
#[derive(Clone, Debug)]
enum Order {
    Semver(VersionRange),
    Alphabetical(SortOrder),
    Numerical(SortOrder),
}

#[derive(Clone, Debug)]
struct Filter {
    regex: Regex,
    /// The template; never empty (an empty one is no template, as in Flux).
    extract: Option<String>,
}

/// The comparable form of a value under the policy's order.
#[derive(Clone, Copy, Debug)]
enum Key<'v> {
    Semver(Version<'v>),
    Text(&'v str),
    Number(f64),
}

/// What became of one listed tag.
#[derive(Clone, Copy, Debug)]
enum Status<'v> {
    Rejected(Rejected),
    Candidate(Key<'v>),
}

/// Why a tag is no candidate.
#[derive(Clone, Copy, Debug)]
enum Rejected {
    Filtered,
    Unparsable,
    /// Strict semver, outside the range; whether it is a pre-release the range excludes as such.
    OutOfRange {
        pre_release: bool,
    },
}

/// The outcome over a listing: the index of the winner, or the tag that failed the policy.
enum Outcome {
    Chosen(Option<usize>),
    /// A numerical policy met a value that is not a number: (index of the tag, the value).
    NotANumber(usize, String),
}

impl FluxPolicy {
    /// Validates `choice` and `filter` as Flux does when it reconciles the `ImagePolicy`:
    /// exactly one of `semver`, `alphabetical` and `numerical` is set, the range parses, the
    /// pattern compiles and `extract` refers only to groups the pattern has.
    ///
    /// Errors are [`Error::InvalidInput`] whose [`ParseError::kind`] is the field at fault
    /// (`spec.policy`, `spec.policy.semver.range`, `spec.filterTags.pattern`,
    /// `spec.filterTags.extract`).
    ///
    /// ```
    /// use keel_core::Error;
    /// use keel_flux::policy::{FluxPolicy, ImagePolicyChoice, TagFilter};
    ///
    /// let err = FluxPolicy::new(ImagePolicyChoice::semver(">=1.0 <abc"), None).unwrap_err();
    /// let Error::InvalidInput(e) = &err else { panic!("{err}") };
    /// assert_eq!(e.kind(), "spec.policy.semver.range");
    ///
    /// let filter = TagFilter::new("^main-(?P<ts>[0-9]+)$").with_extract("$build");
    /// let err = FluxPolicy::new(ImagePolicyChoice::numerical_asc(), Some(filter)).unwrap_err();
    /// assert!(err.to_string().contains("group `build`"), "{err}");
    /// ```
    pub fn new(choice: ImagePolicyChoice, filter: Option<TagFilter>) -> Result<FluxPolicy, Error> {
        let order = match choice {
            ImagePolicyChoice {
                semver: Some(semver),
                alphabetical: None,
                numerical: None,
            } => Order::Semver(parse_range(&semver.range)?),
            ImagePolicyChoice {
                semver: None,
                alphabetical: Some(alphabetical),
                numerical: None,
            } => Order::Alphabetical(alphabetical.order),
            ImagePolicyChoice {
                semver: None,
                alphabetical: None,
                numerical: Some(numerical),
            } => Order::Numerical(numerical.order),
            choice => return Err(not_one_choice(&choice).into()),
        };
        let filter = filter.map(compile_filter).transpose()?;
        Ok(FluxPolicy { order, filter })
    }

    /// The tag Flux would put in `status.latestRef.tag` for an image whose registry lists
    /// `tags`: the original tag, also when the policy ordered an extracted value. `Ok(None)`
    /// when no tag qualifies (Flux then reports that it cannot determine the latest version).
    ///
    /// The answer does not depend on the order of `tags` (see the [module docs](self) on ties).
    ///
    /// # Errors
    ///
    /// A numerical policy fails, as in Flux, when a tag left by the filter (or its extracted
    /// value) is not a number: [`Error::InvalidInput`] of kind `tag for spec.policy.numerical`
    /// naming the tag (the byte-wise least such tag, when there are several).
    ///
    /// ```
    /// use keel_flux::policy::{FluxPolicy, ImagePolicyChoice};
    ///
    /// let policy = FluxPolicy::new(ImagePolicyChoice::numerical_asc(), None).unwrap();
    /// assert_eq!(policy.latest(["9", "10", "2.5"]).unwrap().as_deref(), Some("10"));
    /// // `10` and `1e1` are the same number: the byte-wise greatest tag wins the tie.
    /// assert_eq!(policy.latest(["9", "10", "1e1"]).unwrap().as_deref(), Some("1e1"));
    /// let err = policy.latest(["9", "10", "latest"]).unwrap_err();
    /// assert!(err.to_string().contains("\"latest\""), "{err}");
    /// ```
    pub fn latest<'a>(
        &self,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<String>, Error> {
        let tags: Vec<&str> = tags.into_iter().collect();
        let values = self.values(&tags);
        let statuses = self.statuses(&values);
        match self.outcome(&tags, &values, &statuses) {
            Outcome::Chosen(best) => Ok(best.map(|i| tags[i].to_owned())),
            Outcome::NotANumber(i, value) => Err(not_a_number(tags[i], &value).into()),
        }
    }

    /// The value the policy orders for each tag: the tag, or its extracted value; `None` when
    /// the filter drops the tag.
    fn values<'t>(&self, tags: &[&'t str]) -> Vec<Option<Cow<'t, str>>> {
        tags.iter()
            .map(|&tag| match &self.filter {
                None => Some(Cow::Borrowed(tag)),
                Some(Filter {
                    regex,
                    extract: None,
                }) => regex.is_match(tag).then_some(Cow::Borrowed(tag)),
                Some(Filter {
                    regex,
                    extract: Some(template),
                }) => regex.captures(tag).map(|caps| {
                    let mut out = String::new();
                    caps.expand(template, &mut out);
                    Cow::Owned(out)
                }),
            })
            .collect()
    }

    fn statuses<'v>(&self, values: &'v [Option<Cow<'_, str>>]) -> Vec<Status<'v>> {
        values
            .iter()
            .map(|value| match value.as_deref() {
                None => Status::Rejected(Rejected::Filtered),
                Some(value) => self.status(value),
            })
            .collect()
    }

    fn status<'v>(&self, value: &'v str) -> Status<'v> {
        match &self.order {
            Order::Semver(range) => match strict_semver(value) {
                None => Status::Rejected(Rejected::Unparsable),
                Some(v) if range.matches(&v) => Status::Candidate(Key::Semver(v)),
                Some(v) => Status::Rejected(Rejected::OutOfRange {
                    pre_release: v.is_pre_release() && !range.admits_pre_releases(),
                }),
            },
            Order::Alphabetical(_) => Status::Candidate(Key::Text(value)),
            Order::Numerical(_) => match parse_go_float(value) {
                Some(n) => Status::Candidate(Key::Number(n)),
                None => Status::Rejected(Rejected::Unparsable),
            },
        }
    }

    /// Which candidate wins: the greatest under the policy's order, ties to the byte-wise
    /// greatest tag.
    fn outcome(
        &self,
        tags: &[&str],
        values: &[Option<Cow<'_, str>>],
        statuses: &[Status<'_>],
    ) -> Outcome {
        if matches!(self.order, Order::Numerical(_)) {
            let failed = statuses
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Status::Rejected(Rejected::Unparsable)))
                .map(|(i, _)| i)
                .min_by(|&a, &b| tags[a].cmp(tags[b]));
            if let Some(i) = failed {
                let value = values[i].as_deref().unwrap_or(tags[i]).to_owned();
                return Outcome::NotANumber(i, value);
            }
        }
        let mut best: Option<(usize, Key<'_>)> = None;
        for (i, status) in statuses.iter().enumerate() {
            let Status::Candidate(key) = *status else {
                continue;
            };
            best = match best {
                None => Some((i, key)),
                Some((bi, bkey)) => match self.prefer(&key, &bkey) {
                    Ordering::Greater => Some((i, key)),
                    Ordering::Less => Some((bi, bkey)),
                    Ordering::Equal if tags[i] > tags[bi] => Some((i, key)),
                    Ordering::Equal => Some((bi, bkey)),
                },
            };
        }
        Outcome::Chosen(best.map(|(i, _)| i))
    }

    /// `Greater` when `a` is preferred to `b` under the policy's order and direction.
    fn prefer(&self, a: &Key<'_>, b: &Key<'_>) -> Ordering {
        let (ordering, direction) = match (a, b) {
            (Key::Semver(a), Key::Semver(b)) => (a.precedence(b), SortOrder::Asc),
            (Key::Text(a), Key::Text(b)) => (a.as_bytes().cmp(b.as_bytes()), self.direction()),
            (Key::Number(a), Key::Number(b)) => (cmp_numbers(*a, *b), self.direction()),
            // One policy makes one kind of key.
            _ => (Ordering::Equal, SortOrder::Asc),
        };
        match direction {
            SortOrder::Asc => ordering,
            SortOrder::Desc => ordering.reverse(),
        }
    }

    fn direction(&self) -> SortOrder {
        match self.order {
            Order::Semver(_) => SortOrder::Asc,
            Order::Alphabetical(order) | Order::Numerical(order) => order,
        }
    }

    fn filter_pattern(&self) -> String {
        self.filter
            .as_ref()
            .map(|f| f.regex.as_str().to_owned())
            .unwrap_or_default()
    }

    fn range_text(&self) -> String {
        match &self.order {
            Order::Semver(range) => range.to_string(),
            _ => String::new(),
        }
    }

    /// The reason given for a tag that is no candidate.
    fn reason(&self, rejected: Rejected) -> Reason {
        match rejected {
            Rejected::Filtered => Reason::Filtered {
                pattern: self.filter_pattern(),
            },
            Rejected::Unparsable => Reason::Unparsable {
                expected: match self.order {
                    Order::Numerical(_) => EXPECT_NUMBER,
                    _ => EXPECT_STRICT_SEMVER,
                },
            },
            Rejected::OutOfRange { pre_release: true } => Reason::PreRelease {
                range: self.range_text(),
            },
            Rejected::OutOfRange { pre_release: false } => Reason::OutOfRange {
                range: self.range_text(),
            },
        }
    }
}

impl Policy for FluxPolicy {
    fn select(&self, input: &SelectInput<'_>) -> Decision {
        let tags: Vec<&str> = input
            .candidates
            .iter()
            .map(|c: &Candidate<'_>| c.tag)
            .collect();
        let values = self.values(&tags);
        let statuses = self.statuses(&values);
        let current = input.current.tag;
        let (best, note) = match self.outcome(&tags, &values, &statuses) {
            Outcome::Chosen(best) => (best, None),
            Outcome::NotANumber(i, value) => {
                let numbers = statuses
                    .iter()
                    .filter(|s| matches!(s, Status::Candidate(_)))
                    .count();
                let note = format!(
                    "{}; Flux's numerical policy chooses nothing when any tag left by the \
                     filter is not a number ({numbers} other tags are numbers)",
                    not_a_number(tags[i], &value).reason()
                );
                (None, Some(note))
            }
        };
        let latest = best.map(|i| tags[i]);
        let chosen = latest.filter(|&tag| Some(tag) != current);
        let mut decision = chosen.map_or_else(Decision::none, Decision::to_tag);
        if input.explain {
            let note = note.or_else(|| match (latest, chosen) {
                (Some(tag), None) => Some(format!("the current tag {tag} is the latest")),
                (None, _) => Some("no tag qualifies".to_owned()),
                _ => None,
            });
            let latest = best.and_then(|i| match statuses[i] {
                Status::Candidate(key) => Some((i, key)),
                _ => None,
            });
            let mut rejected = Vec::new();
            for (i, status) in statuses.iter().enumerate() {
                let is_latest = latest.is_some_and(|(l, _)| l == i);
                if is_latest && chosen.is_some() {
                    continue;
                }
                let reason = match (*status, latest) {
                    (Status::Rejected(rejected), _) => self.reason(rejected),
                    (Status::Candidate(_), Some(_)) if is_latest => Reason::NotNewer {
                        current: current.unwrap_or_default().to_owned(),
                    },
                    (Status::Candidate(key), Some((l, lkey))) => {
                        if self.prefer(&key, &lkey) == Ordering::Equal {
                            Reason::LostTie {
                                to: tags[l].to_owned(),
                            }
                        } else {
                            Reason::Outranked {
                                by: tags[l].to_owned(),
                            }
                        }
                    }
                    // Without a latest tag, candidates exist only when a numerical policy
                    // failed: it rejected no tag that is a number.
                    (Status::Candidate(_), None) => continue,
                };
                rejected.push(Rejection {
                    tag: tags[i].to_owned(),
                    reason,
                });
            }
            decision = decision.with_explanation(Some(Explanation {
                chosen: chosen.map(str::to_owned),
                note,
                rejected,
            }));
        }
        decision
    }

    /// Only the filter: a numerical policy must see every tag the filter keeps, to fail as
    /// Flux does when one is not a number.
    fn admits(&self, tag: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f.regex.is_match(tag))
    }

    fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for FluxPolicy {
    /// `flux semver:<range>`, `flux alphabetical:asc`..., then the filter, e.g.
    /// `flux numerical:asc, filter /^main-(?P<ts>\d+)$/ extract $ts`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = |o: &SortOrder| match o {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        match &self.order {
            Order::Semver(range) => write!(f, "flux semver:{range}")?,
            Order::Alphabetical(o) => write!(f, "flux alphabetical:{}", order(o))?,
            Order::Numerical(o) => write!(f, "flux numerical:{}", order(o))?,
        }
        if let Some(filter) = &self.filter {
            write!(f, ", filter /{}/", filter.regex.as_str())?;
            if let Some(template) = &filter.extract {
                write!(f, " extract {template}")?;
            }
        }
        Ok(())
    }
}

fn not_one_choice(choice: &ImagePolicyChoice) -> ParseError {
    let set: Vec<&str> = [
        ("semver", choice.semver.is_some()),
        ("alphabetical", choice.alphabetical.is_some()),
        ("numerical", choice.numerical.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let reason = if set.is_empty() {
        "exactly one of semver, alphabetical or numerical must be set, and none is".to_owned()
    } else {
        format!(
            "exactly one of semver, alphabetical or numerical must be set, and {} are",
            set.join(" and ")
        )
    };
    ParseError::new(FIELD_POLICY, set.join(", "), reason)
}

/// Parses a Masterminds range with keel-core's [`VersionRange`], reading Masterminds' extra
/// operator spellings `=>` and `=<` as `>=` and `<=` (same length, so spans still point into
/// the text as written).
pub(crate) fn parse_range(text: &str) -> Result<VersionRange, ParseError> {
    let spelled = text.replace("=>", ">=").replace("=<", "<=");
    VersionRange::parse(&spelled).map_err(|e| {
        let error = ParseError::new(FIELD_RANGE, text, e.reason());
        match e.span() {
            Some((start, end)) => error.at(start, end),
            None => error,
        }
    })
}

/// Compiles the pattern and checks the template, with keel-core's checks (one reader of
/// filter templates for every dialect), reported against Flux's field names.
fn compile_filter(filter: TagFilter) -> Result<Filter, ParseError> {
    let extract = filter.extract.filter(|t| !t.is_empty());
    let options = PolicyOptions {
        filter: Some(filter.pattern.clone()),
        extract: extract.clone(),
        default_excludes: false,
        ..PolicyOptions::default()
    };
    VersionPolicy::new(PolicySpec::Alphabetical(SortOrder::Asc), &options).map_err(|e| {
        let field = if e.kind() == "extract template" {
            FIELD_EXTRACT
        } else {
            FIELD_PATTERN
        };
        let error = ParseError::new(field, e.input(), e.reason());
        match e.span() {
            Some((start, end)) => error.at(start, end),
            None => error,
        }
    })?;
    let regex = Regex::new(&filter.pattern).map_err(|e| {
        ParseError::new(
            FIELD_PATTERN,
            filter.pattern.as_str(),
            keel_core::policy::regex_reason(&e),
        )
    })?;
    Ok(Filter { regex, extract })
}

fn not_a_number(tag: &str, value: &str) -> ParseError {
    let what = if tag == value {
        "not a number".to_owned()
    } else {
        format!("its extracted value {value:?} is not a number")
    };
    ParseError::new(
        FIELD_NUMERICAL_TAG,
        tag,
        format!(
            "{what}, and a numerical policy fails when any tag left by the filter is not \
             (narrow spec.filterTags.pattern to the numeric tags)"
        ),
    )
}

/// `value` as a version, if it is strict semver 2.0.0 after one optional leading `v` (Flux's
/// `version.ParseVersion`: Masterminds' `StrictNewVersion` on the tag without its `v`).
fn strict_semver(value: &str) -> Option<Version<'_>> {
    let bare = value.strip_prefix('v').unwrap_or(value);
    let (rest, build) = match bare.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (bare, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let mut parts = core.split('.');
    let numbers_ok = (0..3).all(|_| parts.next().is_some_and(numeric_identifier))
        && parts.next().is_none()
        && core.split('.').all(|n| n.parse::<u64>().is_ok());
    let pre_ok = pre.is_none_or(|p| {
        identifiers(p)
            && p.split('.')
                .all(|id| !is_digits(id) || numeric_identifier(id))
    });
    let build_ok = build.is_none_or(identifiers);
    if !(numbers_ok && pre_ok && build_ok) {
        return None;
    }
    Version::parse(value)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Digits without a leading zero (a lone `0` is fine).
fn numeric_identifier(s: &str) -> bool {
    is_digits(s) && (s.len() == 1 || !s.starts_with('0'))
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`.
fn identifiers(s: &str) -> bool {
    s.split('.')
        .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Equal numbers tie (`0` and `-0` too); NaN orders above every number.
fn cmp_numbers(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// `s` as Go's `strconv.ParseFloat(s, 64)` reads it, `None` where Go returns an error: the
/// whole string must be a decimal or hexadecimal (`0x…p…`) floating-point literal, with an
/// optional sign and `_` only between digits, or `Inf`/`Infinity` (optionally signed) or `NaN`,
/// in any case. A finite literal too large for a float is an error, as in Go.
fn parse_go_float(s: &str) -> Option<f64> {
    if let Some(special) = go_special_float(s) {
        return Some(special);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'+') => {
            i = 1;
            false
        }
        Some(b'-') => {
            i = 1;
            true
        }
        _ => false,
    };
    let hex = bytes.len() > i + 2 && bytes[i] == b'0' && (bytes[i + 1] | 0x20) == b'x';
    if hex {
        i += 2;
    }
    let digit = |b: u8| b.is_ascii_digit() || (hex && b.is_ascii_hexdigit());
    let mut mantissa = String::new();
    let (mut saw_digits, mut saw_dot, mut underscores) = (false, false, false);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'_' => underscores = true,
            b'.' if !saw_dot => {
                saw_dot = true;
                mantissa.push('.');
            }
            b if digit(b) => {
                saw_digits = true;
                mantissa.push(char::from(b));
            }
            _ => break,
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    let exp_char = if hex { b'p' } else { b'e' };
    let mut exponent: Option<i64> = None;
    if bytes.get(i).is_some_and(|&b| (b | 0x20) == exp_char) {
        i += 1;
        let exp_negative = match bytes.get(i) {
            Some(b'+') => {
                i += 1;
                false
            }
            Some(b'-') => {
                i += 1;
                true
            }
            _ => false,
        };
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let mut e: i64 = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'_' => underscores = true,
                b'0'..=b'9' => {
                    if e < 100_000 {
                        e = e * 10 + i64::from(b - b'0');
                    }
                }
                _ => break,
            }
            i += 1;
        }
        exponent = Some(if exp_negative { -e } else { e });
    } else if hex {
        // A hexadecimal mantissa needs a `p` exponent.
        return None;
    }
    if i != bytes.len() || (underscores && !go_underscores_ok(s)) {
        return None;
    }
    let magnitude = if hex {
        hex_float(&mantissa, exponent.unwrap_or(0))
    } else {
        let literal = match exponent {
            Some(e) => format!("{mantissa}e{e}"),
            None => mantissa,
        };
        literal.parse::<f64>().ok()?
    };
    if magnitude.is_infinite() {
        // Go: "value out of range".
        return None;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// Go's `special`: `[+-]?(inf|infinity)` and `nan` (no sign), case-insensitive, whole string.
fn go_special_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let (negative, body) = match lower.as_bytes().first() {
        Some(b'+') => (false, &lower[1..]),
        Some(b'-') => (true, &lower[1..]),
        _ => (false, lower.as_str()),
    };
    match body {
        "inf" | "infinity" if negative => Some(f64::NEG_INFINITY),
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" if body.len() == s.len() => Some(f64::NAN),
        _ => None,
    }
}

/// Go's `underscoreOK`: each `_` sits between digits (or after a base prefix) in the number.
fn go_underscores_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = (s[1] | 0x20) == b'x';
    }
    while i < s.len() {
        let b = s[i];
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            saw = b'0';
        } else if b == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// The value of hexadecimal mantissa digits (with an optional `.`) times two to `exponent`.
fn hex_float(mantissa: &str, exponent: i64) -> f64 {
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut value = 0f64;
    for d in int.chars().chain(frac.chars()) {
        value = value * 16.0 + f64::from(d.to_digit(16).unwrap_or(0));
    }
    let shift = exponent.saturating_sub(4 * i64::try_from(frac.len()).unwrap_or(i64::MAX));
    let shift = i32::try_from(shift.clamp(-2200, 2200)).unwrap_or(0);
    // Two steps, so that a mantissa far above 1 with a very negative exponent does not
    // underflow (or the reverse overflow) in the power of two alone.
    value * 2f64.powi(shift / 2) * 2f64.powi(shift - shift / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_floats() {
        for (s, v) in [
            ("1", 1.0),
            ("1.5", 1.5),
            ("-2", -2.0),
            ("+2", 2.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("2.5e-1", 0.25),
            (".5", 0.5),
            ("5.", 5.0),
            ("1_000", 1000.0),
            ("0x1p4", 16.0),
            ("0x1.8p1", 3.0),
            ("0X_1P-2", 0.25),
            ("007", 7.0),
            ("1e-400", 0.0),
        ] {
            assert_eq!(parse_go_float(s), Some(v), "{s:?}");
        }
        assert_eq!(parse_go_float("Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("-infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_go_float("NaN").is_some_and(f64::is_nan));
        for s in [
            "", "+", "-", ".", "e3", "1e", "1e+", "1..2", "1.2.3", "1_", "_1", "1__0", "1._5",
            "0x10", "0x", "0xp1", "1p4", "+nan", "infin", "1e400", "-1e400", "latest", " 1", "1 ",
            "1.5-rc", "0x1.gp1",
        ] {
            assert_eq!(parse_go_float(s), None, "{s:?}");
        }
    }

    /// On plain decimal syntax (no `_`, hex or words, where Go accepts more), Go's reading is
    /// Rust's, except that a finite literal too large for a float is an error in Go.
    #[test]
    fn go_floats_agree_with_rust_on_decimals() {
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = b"0123456789.-+eE";
        let mut parsed = 0;
        for _ in 0..50_000 {
            let len = rng.usize(0..10);
            let s: String = (0..len)
                .map(|_| char::from(alphabet[rng.usize(0..alphabet.len())]))
                .collect();
            let rust = s.parse::<f64>().ok().filter(|v| v.is_finite());
            assert_eq!(parse_go_float(&s), rust, "{s:?}");
            parsed += usize::from(rust.is_some());
        }
        assert!(parsed > 1000, "{parsed}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        let mut rng = fastrand::Rng::with_seed(12);
        let alphabet: Vec<char> = "0123456789.-+_eEpPxXvViInNaAfFtyé€ ".chars().collect();
        for _ in 0..50_000 {
            let len = rng.usize(0..12);
            let s: String = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            let _ = parse_go_float(&s);
            if let Some(v) = strict_semver(&s) {
                assert!(s.is_ascii(), "{s:?} parsed as {v}");
            }
        }
    }

    #[test]
    fn strict_semver_admits_only_full_versions() {
        for s in [
            "1.2.3",
            "v1.2.3",
            "0.0.0",
            "1.2.3-rc.1",
            "1.2.3-0",
            "1.2.3-rc-1.x",
            "1.2.3+build.01",
            "1.2.3-a.b+c-d",
            "18446744073709551615.0.0",
        ] {
            assert!(strict_semver(s).is_some(), "{s:?}");
        }
        for s in [
            "1.2",
            "1.187",
            "1",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "V1.2.3",
            "vv1.2.3",
            "latest",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+a..b",
            "1.2.3-rc_1",
            "1.2.3.4",
            "1.2.3-a+b+c",
            "18446744073709551616.0.0",
            "",
            "v",
        ] {
            assert!(strict_semver(s).is_none(), "{s:?}");
        }
    }
}
