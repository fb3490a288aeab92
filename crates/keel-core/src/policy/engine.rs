//! The selection engine behind every built-in policy.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use regex::Regex;

use super::spec::regex_reason;
use super::{
    Candidate, Decision, Explanation, Needs, Policy, PolicyOptions, PolicySpec, Reason, Rejection,
    SelectInput, Update,
};
use crate::error::ParseError;
use crate::version::{Decimal, DockerVersion, Version};

use super::rankers::*;

/// A built-in policy with its options, ready to select: the rules of the [module docs](super).
///
/// Selection runs the pipeline exclude → filter/extract → parse → constrain → order → no
/// downgrade → ties, in one pass over the candidates without allocating per tag (extract
/// aside). Tags that do not parse under the policy are skipped, never an error.
///
/// ```
/// use keel_core::policy::{Candidate, Current, Policy, PolicyOptions, SelectInput, VersionPolicy};
///
/// let options = PolicyOptions {
///     filter: Some(r"^main-(?P<build>\d+)-[0-9a-f]+$".into()),
///     extract: Some("$build".into()),
///     ..PolicyOptions::default()
/// };
/// let policy = VersionPolicy::new("numerical".parse().unwrap(), &options).unwrap();
/// let tags = ["main-9-aa11", "main-10-bb22", "v2.0.0"].map(Candidate::new);
/// let decision = policy.select(&SelectInput::new(Current::tag("main-9-aa11"), &tags));
/// assert_eq!(decision.tag(), Some("main-10-bb22"));
/// ```
#[derive(Clone, Debug)]
pub struct VersionPolicy {
    spec: PolicySpec,
    options: PolicyOptions,
    exclude: Vec<Regex>,
    filter: Option<Regex>,
}

impl VersionPolicy {
    /// Builds the policy, compiling the option regexes and checking the extract template
    /// against the filter's groups.
    pub fn new(spec: PolicySpec, options: &PolicyOptions) -> Result<VersionPolicy, ParseError> {
        let exclude = options
            .exclude
            .iter()
            .map(|re| compile("exclude regex", re))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = options
            .filter
            .as_deref()
            .map(|re| compile("filter regex", re))
            .transpose()?;
        if let Some(template) = &options.extract {
            match &filter {
                Some(re) => check_template(template, re)?,
                None => {
                    return Err(ParseError::new(
                        "extract template",
                        template.as_str(),
                        "extract needs a filter regex whose groups it expands",
                    ));
                }
            }
        }
        if options.match_tag && !matches!(spec, PolicySpec::Force) {
            return Err(ParseError::new(
                "policy",
                spec.to_string(),
                "match-tag only applies to the `force` policy",
            ));
        }
        Ok(VersionPolicy {
            spec,
            options: options.clone(),
            exclude,
            filter,
        })
    }

    /// Parses `policy` and builds it with `options`.
    pub fn parse(policy: &str, options: &PolicyOptions) -> Result<VersionPolicy, ParseError> {
        VersionPolicy::new(policy.parse()?, options)
    }

    /// The policy.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The options.
    pub fn options(&self) -> &PolicyOptions {
        &self.options
    }

    /// The first exclude pattern `tag` matches, if any.
    fn excluded_by(&self, tag: &str) -> Option<&str> {
        if self.options.default_excludes && is_signature_tag(tag) {
            return Some(SIGNATURE_TAGS);
        }
        self.exclude
            .iter()
            .find(|re| re.is_match(tag))
            .map(|re| re.as_str())
    }

    /// The value the policy orders for `tag`: the tag, or the extract expansion; `None` when
    /// the filter rejects it.
    fn value_of<'t>(&self, tag: &'t str) -> Option<Cow<'t, str>> {
        let Some(filter) = &self.filter else {
            return Some(Cow::Borrowed(tag));
        };
        match &self.options.extract {
            None => filter.is_match(tag).then_some(Cow::Borrowed(tag)),
            Some(template) => {
                let caps = filter.captures(tag)?;
                let mut out = String::new();
                caps.expand(template, &mut out);
                Some(Cow::Owned(out))
            }
        }
    }

    /// The values of candidates that pass exclude and filter, by index.
    fn values<'c>(&self, candidates: &'c [Candidate<'c>]) -> Values<'c> {
        if self.options.extract.is_some() {
            Values::Owned(
                candidates
                    .iter()
                    .map(|c| match self.excluded_by(c.tag) {
                        Some(_) => None,
                        None => self.value_of(c.tag).map(Cow::into_owned),
                    })
                    .collect(),
            )
        } else {
            Values::Borrowed(candidates)
        }
    }

    fn run(&self, input: &SelectInput<'_>) -> Decision {
        let current_value = input.current.tag.and_then(|t| self.value_of(t));
        let current_value = current_value.as_deref();
        let values = self.values(input.candidates);
        let tie = TieBreak::new(input.current.tag);
        let allow_downgrade = self.options.allow_downgrade;
        match &self.spec {
            PolicySpec::Never => note_only(input, "policy `never` does not update".into()),
            PolicySpec::Digest => self.digest_update(input),
            PolicySpec::Force if self.options.match_tag => self.digest_update(input),
            PolicySpec::All
            | PolicySpec::Major
            | PolicySpec::Minor
            | PolicySpec::Patch
            | PolicySpec::Semver(_) => {
                let current = current_value.and_then(Version::parse);
                let needs_current = !matches!(self.spec, PolicySpec::All | PolicySpec::Semver(_));
                if needs_current && current.is_none() {
                    let note = format!(
                        "policy `{}` needs a current tag that is a semver version, got {}",
                        self.spec,
                        describe(input.current.tag)
                    );
                    return note_only(input, note);
                }
                let ranker = SemverRanker {
                    spec: &self.spec,
                    current,
                    match_channel: self.options.match_pre_release,
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::Force => {
                let ranker = ForceRanker {
                    current: current_value.and_then(Version::parse),
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::Glob(glob) => {
                let ranker = PatternRanker {
                    pattern: Pattern::Glob(glob),
                    current: current_value.filter(|v| glob.matches(v)),
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::Regexp(re) => {
                let compare = has_compare_group(re);
                let ranker = PatternRanker {
                    pattern: Pattern::Regex(re, compare),
                    current: current_value.and_then(|v| regex_key(re, compare, v)),
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::Alphabetical(order) => {
                let ranker = AlphabeticalRanker {
                    order: *order,
                    current: current_value,
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::Numerical(order) => {
                let ranker = NumericalRanker {
                    order: *order,
                    current: current_value.and_then(Decimal::parse),
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::Docker => {
                let Some(current) = current_value.and_then(DockerVersion::parse) else {
                    let note = format!(
                        "policy `docker` needs a current tag of the form v?<n>(.<n>)*[-<suffix>], got {}",
                        describe(input.current.tag)
                    );
                    return note_only(input, note);
                };
                let ranker = DockerRanker {
                    current,
                    current_tag: input.current.tag.unwrap_or_default(),
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
            PolicySpec::NewestBuild => {
                let ranker = CreatedRanker {
                    current: input.current.created,
                    allow_downgrade,
                };
                self.rank(input, &values, &ranker, &tie)
            }
        }
    }

    /// Selects the greatest candidate under `ranker`, then applies the no-downgrade guard.
    fn rank<'v, R: Ranker<'v>>(
        &self,
        input: &SelectInput<'_>,
        values: &'v Values<'v>,
        ranker: &R,
        tie: &TieBreak,
    ) -> Decision {
        let candidates = input.candidates;
        let mut best: Option<(usize, R::Key)> = None;
        for (i, value) in values.iter() {
            if values.is_borrowed() && self.excluded_by(candidates[i].tag).is_some() {
                continue;
            }
            let Some(value) = self.filtered(values, value) else {
                continue;
            };
            let Ok(key) = ranker.key(value, &candidates[i]) else {
                continue;
            };
            best = Some(match best {
                None => (i, key),
                Some((bi, bkey)) => match ranker.cmp(&key, &bkey) {
                    Ordering::Greater => (i, key),
                    Ordering::Less => (bi, bkey),
                    Ordering::Equal if tie.prefers(candidates[i].tag, candidates[bi].tag) => {
                        (i, key)
                    }
                    Ordering::Equal => (bi, bkey),
                },
            });
        }
        let best_tag = best.as_ref().map(|(i, _)| candidates[*i].tag);
        let chosen = best.filter(|(i, key)| {
            ranker.guard(key).is_ok() && Some(candidates[*i].tag) != input.current.tag
        });
        let mut decision = match chosen {
            Some((i, _)) => Decision::to_tag(candidates[i].tag),
            None => Decision::none(),
        };
        if input.explain {
            let chosen_key = chosen.as_ref().map(|(_, k)| k);
            decision.explanation =
                Some(self.explain(input, values, ranker, decision.tag(), best_tag, chosen_key));
        }
        decision
    }

    /// With borrowed values the filter has not run yet; with owned ones it has.
    fn filtered<'v>(&self, values: &Values<'v>, value: Option<&'v str>) -> Option<&'v str> {
        match (values.is_borrowed(), value) {
            (true, Some(tag)) => match &self.filter {
                Some(filter) if !filter.is_match(tag) => None,
                _ => Some(tag),
            },
            (_, value) => value,
        }
    }

    /// The first rule that rejected each candidate; only runs when asked.
    fn explain<'v, R: Ranker<'v>>(
        &self,
        input: &SelectInput<'_>,
        values: &'v Values<'v>,
        ranker: &R,
        chosen: Option<&str>,
        best: Option<&str>,
        chosen_key: Option<&R::Key>,
    ) -> Explanation {
        let current = input.current.tag.unwrap_or("(none)").to_owned();
        let mut rejected = Vec::new();
        for (i, value) in values.iter() {
            let c = &input.candidates[i];
            if Some(c.tag) == chosen {
                continue;
            }
            let reason = if let Some(pattern) = self.excluded_by(c.tag) {
                Reason::Excluded {
                    pattern: pattern.to_owned(),
                }
            } else if let Some(value) = self.filtered(values, value) {
                match ranker.key(value, c) {
                    Err(miss) => ranker.reason(miss, value),
                    Ok(key) => match (ranker.guard(&key), chosen_key) {
                        (Err(reason), _) => reason,
                        (Ok(()), Some(ck)) if ranker.cmp(&key, ck) == Ordering::Equal => {
                            Reason::LostTie {
                                to: chosen.unwrap_or_default().to_owned(),
                            }
                        }
                        (Ok(()), _) => Reason::Outranked {
                            by: chosen.or(best).unwrap_or(&current).to_owned(),
                        },
                    },
                }
            } else {
                Reason::Filtered {
                    pattern: self.options.filter.clone().unwrap_or_default(),
                }
            };
            rejected.push(Rejection {
                tag: c.tag.to_owned(),
                reason,
            });
        }
        Explanation {
            chosen: chosen.map(str::to_owned),
            note: None,
            rejected,
        }
    }

    /// `digest` and `force` with match-tag: the current tag, when its digest changed.
    fn digest_update(&self, input: &SelectInput<'_>) -> Decision {
        let Some(tag) = input.current.tag else {
            return note_only(
                input,
                format!(
                    "policy `{}` follows the current tag's digest and needs a current tag",
                    self.describe()
                ),
            );
        };
        let listed = input.candidates.iter().find(|c| c.tag == tag);
        let (update, note) = match listed {
            None => (
                None,
                Some(format!("the registry does not list the current tag {tag}")),
            ),
            Some(Candidate { digest: None, .. }) => (
                None,
                Some(format!("no digest is known for the current tag {tag}")),
            ),
            Some(Candidate {
                digest: Some(new), ..
            }) if input.current.digest == Some(*new) => {
                (None, Some(format!("{tag} still has digest {new}")))
            }
            Some(Candidate {
                digest: Some(new), ..
            }) => (
                Some(Update {
                    tag: tag.to_owned(),
                    digest: Some((*new).clone()),
                }),
                None,
            ),
        };
        let explanation = input.explain.then(|| Explanation {
            chosen: update.as_ref().map(|u| u.tag.clone()),
            note,
            rejected: input
                .candidates
                .iter()
                .filter(|c| c.tag != tag)
                .map(|c| Rejection {
                    tag: c.tag.to_owned(),
                    reason: Reason::NotCurrentTag,
                })
                .collect(),
        });
        Decision {
            update,
            explanation,
        }
    }

    fn describe(&self) -> String {
        if self.options.match_tag {
            format!("{} (match-tag)", self.spec)
        } else {
            self.spec.to_string()
        }
    }
}

impl Policy for VersionPolicy {
    fn select(&self, input: &SelectInput<'_>) -> Decision {
        self.run(input)
    }

    fn summary(&self) -> String {
        self.describe()
    }

    fn needs(&self) -> Needs {
        Needs {
            current_tag_digest: matches!(self.spec, PolicySpec::Digest)
                || (matches!(self.spec, PolicySpec::Force) && self.options.match_tag),
            created: matches!(self.spec, PolicySpec::NewestBuild),
        }
    }

    fn admits(&self, tag: &str) -> bool {
        if self.excluded_by(tag).is_some() {
            return false;
        }
        let Some(value) = self.value_of(tag) else {
            return false;
        };
        match &self.spec {
            PolicySpec::Never => false,
            PolicySpec::Glob(glob) => glob.matches(&value),
            PolicySpec::Regexp(re) => re.is_match(&value),
            _ => true,
        }
    }
}

impl FromStr for VersionPolicy {
    type Err = ParseError;

    /// A policy with default options.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionPolicy::parse(s, &PolicyOptions::default())
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn note_only(input: &SelectInput<'_>, note: String) -> Decision {
    let explanation = input.explain.then(|| Explanation {
        chosen: None,
        note: Some(note),
        rejected: Vec::new(),
    });
    Decision {
        update: None,
        explanation,
    }
}

fn describe(tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("{t:?}"),
        None => "none".into(),
    }
}

fn compile(kind: &'static str, re: &str) -> Result<Regex, ParseError> {
    Regex::new(re).map_err(|e| ParseError::new(kind, re, regex_reason(&e)))
}

/// Checks that every `$name`, `${name}` and `$N` in an extract template names a group of
/// the filter: Go and the `regex` crate silently expand unknown groups to nothing.
fn check_template(template: &str, filter: &Regex) -> Result<(), ParseError> {
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let (name, end) = match bytes.get(i) {
            Some(b'$') => {
                i += 1;
                continue;
            }
            Some(b'{') => match template[i + 1..].find('}') {
                Some(close) => (&template[i + 1..i + 1 + close], i + close + 2),
                None => {
                    return Err(
                        ParseError::new("extract template", template, "unclosed `${`")
                            .at(start, template.len()),
                    );
                }
            },
            _ => {
                let len = bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (&template[i..i + len], i + len)
            }
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < filter.captures_len(),
            Err(_) => !name.is_empty() && filter.capture_names().flatten().any(|g| g == name),
        };
        if !known {
            let reason = if name.is_empty() {
                "`$` must be followed by a group name, a group number, `{` or `$`".to_owned()
            } else {
                format!(
                    "refers to group `{name}`, which the filter /{}/ does not define",
                    filter.as_str()
                )
            };
            return Err(ParseError::new("extract template", template, reason).at(start, end));
        }
        i = end;
    }
    Ok(())
}

const SIGNATURE_TAGS: &str = r"^sha256-[0-9a-f]{64}(\.[a-z]+)?$";

/// The default exclude, by hand: cosign and notation artefact tags,
/// `^sha256-[0-9a-f]{64}(\.[a-z]+)?$`.
fn is_signature_tag(tag: &str) -> bool {
    // "sha256-" and 64 hex digits, then nothing or "." and at least one letter.
    if tag.len() != 71 && tag.len() < 73 {
        return false;
    }
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let (hex, ext) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && (ext.is_empty()
            || ext
                .strip_prefix('.')
                .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_lowercase())))
}

/// The values the policy orders: the tags themselves, or their extract expansions (`None`
/// where exclude or the filter dropped the tag).
enum Values<'c> {
    Borrowed(&'c [Candidate<'c>]),
    Owned(Vec<Option<String>>),
}

impl Values<'_> {
    fn is_borrowed(&self) -> bool {
        matches!(self, Values::Borrowed(_))
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (usize, Option<&str>)> + '_> {
        match self {
            Values::Borrowed(c) => Box::new(c.iter().map(|c| Some(c.tag)).enumerate()),
            Values::Owned(v) => Box::new(v.iter().map(|v| v.as_deref()).enumerate()),
        }
    }
}

/// Prefers, among tags of equal order, the one written like the current tag (same `v`
/// prefix), then the byte-wise greatest, so that the listing order never matters.
struct TieBreak {
    current_prefixed: Option<bool>,
}

impl TieBreak {
    fn new(current: Option<&str>) -> Self {
        TieBreak {
            current_prefixed: current.map(has_v_prefix),
        }
    }

    /// Whether `a` wins the tie against `b`.
    fn prefers(&self, a: &str, b: &str) -> bool {
        if let Some(p) = self.current_prefixed {
            match (has_v_prefix(a) == p, has_v_prefix(b) == p) {
                (true, false) => return true,
                (false, true) => return false,
                _ => {}
            }
        }
        a.as_bytes() > b.as_bytes()
    }
}

fn has_v_prefix(tag: &str) -> bool {
    let b = tag.as_bytes();
    matches!(b.first(), Some(b'v' | b'V')) && b.get(1).is_some_and(u8::is_ascii_digit)
}
