//! Replays thousands of tags, generated and real (a sample of the tags of Docker's official
//! images), through `FluxPolicy` and checks every answer against an oracle written here
//! straight from Flux's rules, by brute force: strict-parse every tag, keep those the range
//! admits, take the maximum; sort strings; parse floats. The oracle uses nothing from
//! keel-flux or keel-core; ties go to the byte-wise greatest tag, the documented rule.

use std::cmp::Ordering;
use std::sync::LazyLock;

use keel_core::policy::{Candidate, Current, Policy, SelectInput, SortOrder};
use keel_flux::policy::{FluxPolicy, ImagePolicyChoice, TagFilter};
use regex::Regex;

const OFFICIAL_SAMPLE: &str = include_str!("data/official-tags-sample.txt");

/// How many tags the generator makes.
const GENERATED: usize = 3000;

// ---------------------------------------------------------------------------------------------
// The oracle.

/// A strict semver version: the numbers and the pre-release identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sv {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

/// The semver.org regular expression, after one optional leading `v`.
fn strict_parse(tag: &str) -> Option<Sv> {
    static SEMVER_ORG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
        r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
        )
        .unwrap()
    });
    let bare = tag.strip_prefix('v').unwrap_or(tag);
    let caps = SEMVER_ORG.captures(bare)?;
    Some(Sv {
        major: caps[1].parse().ok()?,
        minor: caps[2].parse().ok()?,
        patch: caps[3].parse().ok()?,
        pre: caps
            .get(4)
            .map(|p| p.as_str().split('.').map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

fn sv(major: u64, minor: u64, patch: u64, pre: &str) -> Sv {
    Sv {
        major,
        minor,
        patch,
        pre: if pre.is_empty() {
            Vec::new()
        } else {
            pre.split('.').map(str::to_owned).collect()
        },
    }
}

/// Semver precedence, as the spec's section 11 spells it.
fn precedence(a: &Sv, b: &Sv) -> Ordering {
    let numbers = (a.major, a.minor, a.patch).cmp(&(b.major, b.minor, b.patch));
    if numbers != Ordering::Equal {
        return numbers;
    }
    match (a.pre.is_empty(), b.pre.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.pre.iter().zip(&b.pre) {
        let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        let ord = match (numeric(x), numeric(y)) {
            (true, true) => (x.len(), x).cmp(&(y.len(), y)),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.pre.len().cmp(&b.pre.len())
}

fn ge(v: &Sv, bound: &Sv) -> bool {
    precedence(v, bound) != Ordering::Less
}

fn lt(v: &Sv, bound: &Sv) -> bool {
    precedence(v, bound) == Ordering::Less
}

fn release(v: &Sv) -> bool {
    v.pre.is_empty()
}

/// A range, and the same range as a predicate written from Masterminds' rules.
type Admits = fn(&Sv) -> bool;

const RANGES: &[(&str, Admits)] = &[
    ("*", |v| release(v)),
    (">=1.0.0 <2.0.0", |v| {
        release(v) && ge(v, &sv(1, 0, 0, "")) && lt(v, &sv(2, 0, 0, ""))
    }),
    ("^1.2", |v| {
        release(v) && v.major == 1 && ge(v, &sv(1, 2, 0, ""))
    }),
    ("^0.3.1", |v| {
        release(v) && v.major == 0 && v.minor == 3 && v.patch >= 1
    }),
    ("~1.2.3", |v| {
        release(v) && v.major == 1 && v.minor == 2 && v.patch >= 3
    }),
    ("1.2.x", |v| release(v) && v.major == 1 && v.minor == 2),
    ("3", |v| release(v) && v.major == 3),
    (">=1.0.0-0 <2.0.0", |v| {
        ge(v, &sv(1, 0, 0, "0")) && lt(v, &sv(2, 0, 0, ""))
    }),
    ("^1.0.0 || >=3.0.0-0 <4.0.0", |v| {
        (release(v) && v.major == 1) || (ge(v, &sv(3, 0, 0, "0")) && lt(v, &sv(4, 0, 0, "")))
    }),
    (">=2.0.0, !=2.3.4 <5.0.0", |v| {
        release(v) && ge(v, &sv(2, 0, 0, "")) && *v != sv(2, 3, 4, "") && lt(v, &sv(5, 0, 0, ""))
    }),
    ("<1.0.0 || 10.x", |v| {
        release(v) && (lt(v, &sv(1, 0, 0, "")) || v.major == 10)
    }),
    (">1.2.3 <=1.5.7", |v| {
        release(v)
            && precedence(v, &sv(1, 2, 3, "")) == Ordering::Greater
            && precedence(v, &sv(1, 5, 7, "")) != Ordering::Greater
    }),
    ("1.2.3 - 4.5.6", |v| {
        release(v)
            && ge(v, &sv(1, 2, 3, ""))
            && precedence(v, &sv(4, 5, 6, "")) != Ordering::Greater
    }),
    (">=1.1.0-rc.1 <=1.1.0", |v| {
        ge(v, &sv(1, 1, 0, "rc.1")) && precedence(v, &sv(1, 1, 0, "")) != Ordering::Greater
    }),
];

/// The greatest by `cmp`, ties to the byte-wise greatest tag.
fn oracle_max<K>(items: Vec<(&str, K)>, cmp: impl Fn(&K, &K) -> Ordering) -> Option<String> {
    let mut best: Option<(&str, K)> = None;
    for (tag, key) in items {
        let better = match &best {
            None => true,
            Some((btag, bkey)) => match cmp(&key, bkey) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => tag > *btag,
            },
        };
        if better {
            best = Some((tag, key));
        }
    }
    best.map(|(t, _)| t.to_owned())
}

/// The value each kept tag is ordered by: the tag, or the template's expansion on the match.
fn oracle_filter<'t>(tags: &[&'t str], filter: Option<(&str, &str)>) -> Vec<(&'t str, String)> {
    match filter {
        None => tags.iter().map(|t| (*t, t.to_string())).collect(),
        Some((pattern, template)) => {
            let re = Regex::new(pattern).unwrap();
            tags.iter()
                .filter_map(|t| {
                    let caps = re.captures(t)?;
                    let mut value = String::new();
                    if template.is_empty() {
                        value.push_str(t);
                    } else {
                        caps.expand(template, &mut value);
                    }
                    Some((*t, value))
                })
                .collect()
        }
    }
}

fn oracle_semver(tags: &[&str], admits: Admits, filter: Option<(&str, &str)>) -> Option<String> {
    let kept = oracle_filter(tags, filter);
    let candidates: Vec<(&str, Sv)> = kept
        .iter()
        .filter_map(|(t, value)| strict_parse(value).map(|v| (*t, v)))
        .filter(|(_, v)| admits(v))
        .collect();
    oracle_max(candidates, precedence)
}

fn oracle_alphabetical(
    tags: &[&str],
    order: SortOrder,
    filter: Option<(&str, &str)>,
) -> Option<String> {
    let mut kept = oracle_filter(tags, filter);
    // Sort by value, then tag; asc takes the last, desc the first value with, among equal
    // values, the greatest tag.
    kept.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    match order {
        SortOrder::Asc => kept.last().map(|(t, _)| t.to_string()),
        SortOrder::Desc => {
            let least = kept.first()?.1.clone();
            kept.iter()
                .filter(|(_, v)| *v == least)
                .map(|(t, _)| t.to_string())
                .max()
        }
    }
}

/// `Err(tag)` names the byte-wise least tag whose value is not a number.
fn oracle_numerical(
    tags: &[&str],
    order: SortOrder,
    filter: Option<(&str, &str)>,
) -> Result<Option<String>, String> {
    let kept = oracle_filter(tags, filter);
    let mut numbers = Vec::new();
    let mut bad: Vec<&str> = Vec::new();
    for (t, value) in &kept {
        match value.parse::<f64>() {
            Ok(n) if n.is_finite() => numbers.push((*t, n)),
            _ => bad.push(t),
        }
    }
    if let Some(least) = bad.into_iter().min() {
        return Err(least.to_owned());
    }
    Ok(oracle_max(numbers, |a, b| {
        let ord = a.partial_cmp(b).unwrap();
        match order {
            SortOrder::Asc => ord,
            SortOrder::Desc => ord.reverse(),
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// The tags.

fn generated_tags() -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(0x6b65_656c_666c_7578);
    let pres = [
        "alpha", "alpha.1", "beta", "beta.2", "beta.11", "rc.1", "rc.2", "0", "1", "11", "01",
        "rc-1", "x.7.z", "RC1", "a..b",
    ];
    let builds = ["b1", "001", "sha.5f3e2a", "exp.sha.5114f85", "x_y"];
    let words = [
        "latest",
        "stable",
        "edge",
        "main",
        "nightly",
        "alpine",
        "1.2.3.4",
        "V1.2.3",
        "vv1.0.0",
        "v",
        "release-1.2.3",
        "1.2.3-",
        "1.2.3+",
        "-1",
        "+2",
        ".5",
        "5.",
        "1e3",
        "2.5e-2",
        "007",
        "1.5",
        "-3.25",
        "0",
        "Zeta",
        "alpha",
        // Not strict semver, and each would win some range if it were.
        "V99.0.0",
        "vv99.1.0",
        "99.2",
        "099.3.0",
        "1.99",
        "1.99.0-01",
        "1.99.0-rc..1",
    ];
    let mut tags = Vec::with_capacity(GENERATED);
    while tags.len() < GENERATED {
        let kind = rng.u8(0..100);
        let tag = match kind {
            0..=64 => {
                let v = if rng.u8(0..10) < 3 { "v" } else { "" };
                let (major, minor, patch) = (rng.u8(0..12), rng.u8(0..12), rng.u8(0..20));
                let lead = if rng.u8(0..40) == 0 { "0" } else { "" };
                let mut t = match rng.u8(0..10) {
                    0 => format!("{v}{lead}{major}.{minor}"),
                    1 => format!("{v}{major}"),
                    _ => format!("{v}{lead}{major}.{minor}.{patch}"),
                };
                if rng.u8(0..4) == 0 {
                    t = format!("{t}-{}", pres[rng.usize(0..pres.len())]);
                }
                if rng.u8(0..8) == 0 {
                    t = format!("{t}+{}", builds[rng.usize(0..builds.len())]);
                }
                t
            }
            65..=79 => {
                let hex: String = (0..6)
                    .map(|_| char::from(b"0123456789abcdef"[rng.usize(0..16)]))
                    .collect();
                format!("main-{hex}-{}", 1_700_000_000 + rng.u32(0..500))
            }
            80..=89 => match rng.u8(0..3) {
                0 => rng.i32(-50..5000).to_string(),
                1 => format!("{}.{}", rng.u16(0..100), rng.u16(0..100)),
                _ => format!("{}e{}", rng.u8(1..10), rng.u8(0..4)),
            },
            _ => words[rng.usize(0..words.len())].to_owned(),
        };
        tags.push(tag);
    }
    tags
}

fn official_tags() -> Vec<String> {
    OFFICIAL_SAMPLE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The tag lists to replay: generated, real, and both.
fn listings() -> Vec<(&'static str, Vec<String>)> {
    let generated = generated_tags();
    let official = official_tags();
    let both = generated.iter().chain(&official).cloned().collect();
    vec![
        ("generated", generated),
        ("official", official),
        ("both", both),
    ]
}

// ---------------------------------------------------------------------------------------------
// The replay.

/// Checks `policy` on `tags` against `expected`, in the given order, shuffled, and through
/// `select`.
fn check(
    name: &str,
    policy: &FluxPolicy,
    tags: &[&str],
    expected: &Result<Option<String>, String>,
    rng: &mut fastrand::Rng,
) {
    let got = policy.latest(tags.iter().copied()).map_err(|e| match e {
        keel_core::Error::InvalidInput(p) => p.input().to_owned(),
        other => panic!("{name}: {policy}: unexpected error {other}"),
    });
    assert_eq!(&got, expected, "{name}: {policy}");

    let mut shuffled = tags.to_vec();
    for _ in 0..3 {
        rng.shuffle(&mut shuffled);
        let again = policy
            .latest(shuffled.iter().copied())
            .map_err(|e| e.to_string());
        assert_eq!(
            again.as_ref().ok(),
            got.as_ref().ok(),
            "{name}: {policy}: the order of the tags changed the result"
        );
        assert_eq!(again.is_err(), got.is_err(), "{name}: {policy}");
    }

    let candidates: Vec<Candidate<'_>> = shuffled.iter().map(|t| Candidate::new(t)).collect();
    let decision = policy.select(&SelectInput::new(Current::none(), &candidates).explained());
    let chosen = got.clone().ok().flatten();
    assert_eq!(
        decision.tag(),
        chosen.as_deref(),
        "{name}: {policy}: select differs from latest"
    );
    let explanation = decision.explanation.expect("asked for");
    if got.is_ok() {
        // Every tag but the chosen one is rejected, with a reason.
        assert_eq!(
            explanation.rejected.len() + usize::from(chosen.is_some()),
            tags.len(),
            "{name}: {policy}"
        );
    } else {
        assert!(explanation.note.is_some(), "{name}: {policy}");
    }
}

#[test]
fn replay_matches_the_oracle() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut checked = 0;
    let mut chosen = 0;
    for (name, listing) in listings() {
        let tags: Vec<&str> = listing.iter().map(String::as_str).collect();

        for (range, admits) in RANGES {
            let policy = FluxPolicy::new(ImagePolicyChoice::semver(*range), None).unwrap();
            let expected = Ok(oracle_semver(&tags, *admits, None));
            chosen += usize::from(matches!(expected, Ok(Some(_))));
            check(name, &policy, &tags, &expected, &mut rng);
            checked += 1;
        }
        // Semver over an extracted value.
        let extract = (r"^(?:app-)?v?(?P<v>[0-9].*)$", "$v");
        let filter = TagFilter::new(extract.0).with_extract(extract.1);
        let policy =
            FluxPolicy::new(ImagePolicyChoice::semver(">=1.0.0 <2.0.0"), Some(filter)).unwrap();
        let admits: Admits = RANGES[1].1;
        let expected = Ok(oracle_semver(&tags, admits, Some(extract)));
        check(name, &policy, &tags, &expected, &mut rng);
        checked += 1;

        for order in [SortOrder::Asc, SortOrder::Desc] {
            for filter in [None, Some(("^[0-9]", "")), Some(("^([a-z]+)", "$1"))] {
                let policy = FluxPolicy::new(
                    ImagePolicyChoice::alphabetical(order),
                    filter.map(|(p, e)| TagFilter::new(p).with_extract(e)),
                )
                .unwrap();
                let expected = Ok(oracle_alphabetical(&tags, order, filter));
                check(name, &policy, &tags, &expected, &mut rng);
                checked += 1;
            }
            for filter in [
                None,
                Some((r"^-?[0-9]+(\.[0-9]+)?$", "")),
                Some((r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "$ts")),
            ] {
                let policy = FluxPolicy::new(
                    ImagePolicyChoice::numerical(order),
                    filter.map(|(p, e)| TagFilter::new(p).with_extract(e)),
                )
                .unwrap();
                let expected = oracle_numerical(&tags, order, filter);
                check(name, &policy, &tags, &expected, &mut rng);
                checked += 1;
            }
        }
    }
    // The replay exercised every case on every listing, and most found a tag.
    assert_eq!(checked, 3 * (RANGES.len() + 1 + 12));
    assert!(
        chosen >= 2 * RANGES.len(),
        "only {chosen} ranges chose a tag"
    );
}

/// The oracle itself, on the rules it encodes.
#[test]
fn oracle_follows_flux_rules() {
    assert!(strict_parse("v1.2.3-rc.1+b").is_some());
    for bad in ["1.2", "01.2.3", "V1.2.3", "1.2.3-01", "latest"] {
        assert!(strict_parse(bad).is_none(), "{bad}");
    }
    assert_eq!(
        precedence(&sv(1, 0, 0, "beta.11"), &sv(1, 0, 0, "beta.2")),
        Ordering::Greater
    );
    assert_eq!(
        precedence(&sv(1, 0, 0, "rc.1"), &sv(1, 0, 0, "")),
        Ordering::Less
    );
    let tags = ["1.0.0", "v1.0.0", "0.9.0"];
    assert_eq!(
        oracle_semver(&tags, RANGES[0].1, None).as_deref(),
        Some("v1.0.0")
    );
    assert_eq!(
        oracle_numerical(&["1", "x", "a"], SortOrder::Asc, None),
        Err("a".to_owned())
    );
    assert_eq!(
        oracle_alphabetical(&["b", "a"], SortOrder::Desc, None).as_deref(),
        Some("a")
    );
}

/// The sample is the one the replay claims to use.
#[test]
fn official_sample_is_large_and_varied() {
    let tags = official_tags();
    assert!(tags.len() >= 3000, "{}", tags.len());
    let strict = tags.iter().filter(|t| strict_parse(t).is_some()).count();
    assert!(strict > 500 && strict < tags.len(), "{strict}");
}
