//! Tests of the built-in policies: every rule and example of the module docs (`RULES.md`).

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::reference::Digest;
use crate::version::{Decimal, DockerVersion, natural_cmp};

fn policy(spec: &str) -> VersionPolicy {
    spec.parse().unwrap_or_else(|e| panic!("{spec:?}: {e}"))
}

/// Default options, changed by `set`.
fn options(set: impl FnOnce(&mut PolicyOptions)) -> PolicyOptions {
    let mut options = PolicyOptions::default();
    set(&mut options);
    options
}

/// The policy `spec` with default options changed by `set`.
fn with(spec: &str, set: impl FnOnce(&mut PolicyOptions)) -> VersionPolicy {
    VersionPolicy::parse(spec, &options(set)).unwrap_or_else(|e| panic!("{spec:?}: {e}"))
}

fn pick_with(p: &VersionPolicy, current: Option<&str>, tags: &str) -> Option<String> {
    let tags: Vec<Candidate<'_>> = tags.split_whitespace().map(Candidate::new).collect();
    let current = current.map_or_else(Current::none, Current::tag);
    p.select(&SelectInput::new(current, &tags))
        .tag()
        .map(str::to_owned)
}

fn pick(spec: &str, current: &str, tags: &str) -> Option<String> {
    pick_with(&policy(spec), Some(current), tags)
}

/// Each case's choice: `(policy, current tag, listed tags, expected choice)`, where an
/// empty expected choice means that nothing is chosen.
fn picks(cases: &[(&str, &str, &str, &str)]) {
    for &(spec, current, tags, expected) in cases {
        assert_eq!(
            pick(spec, current, tags).as_deref(),
            (!expected.is_empty()).then_some(expected),
            "{spec} from {current} among {tags}"
        );
    }
}

fn explain(p: &VersionPolicy, current: Option<&str>, tags: &str) -> Explanation {
    let tags: Vec<Candidate<'_>> = tags.split_whitespace().map(Candidate::new).collect();
    let current = current.map_or_else(Current::none, Current::tag);
    p.select(&SelectInput::new(current, &tags).explained())
        .explanation
        .expect("explanation was asked for")
}

fn reason_of<'e>(e: &'e Explanation, tag: &str) -> &'e Reason {
    &e.rejected
        .iter()
        .find(|r| r.tag == tag)
        .unwrap_or_else(|| panic!("{tag} not rejected in {e:?}"))
        .reason
}

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Each policy's choice from a current tag among listed tags, grouped by the rule it shows.
#[test]
fn policies_pick_the_expected_tag() {
    #[rustfmt::skip]
    picks(&[
        // (policy, current tag, listed tags, expected choice or "" for none)
        // The examples of RULES.md, verbatim.
        ("minor",                                     "1.2.3",             "1.2.4 1.3.0 2.0.0 1.3.1-rc.1",             "1.3.0"),
        ("patch",                                     "v1.2.3",            "v1.2.9 1.2.10 v1.3.0",                     "1.2.10"),
        ("semver:>=1.0.0-0 <2.0.0",                   "1.0.0-rc.1",        "1.0.0-rc.2 1.1.0-beta.1 2.0.0",            "1.1.0-beta.1"),
        (r"regexp:^main-(?P<compare>\d+)-[0-9a-f]+$", "main-9-aa11",       "main-10-bb22 main-8-cc33",                 "main-10-bb22"),
        ("docker",                                    "3.11-slim",         "3.12-slim 3.12 3.12.1-slim 3.13-alpine",   "3.12-slim"),
        // `all` takes pre-releases whatever the current tag.
        ("all",                                       "1.2.3",             "1.2.4 2.0.0-rc.1 1.9.0",                   "2.0.0-rc.1"),
        // `major` keeps the channel.
        ("major",                                     "1.2.3",             "2.0.0 3.0.0-rc.1 1.9.9",                   "2.0.0"),
        ("major",                                     "1.0.0-rc.1",        "1.0.0-rc.2 1.0.0 2.0.0-rc.1 2.0.0-beta.1", "2.0.0-rc.1"),
        ("major",                                     "3.11-alpine",       "3.12 3.12-alpine 3.13-slim",               "3.12-alpine"),
        // `minor` and `patch` stay inside their version.
        ("minor",                                     "1.2.3",             "2.0.0 1.9.0 0.9.0",                        "1.9.0"),
        ("minor",                                     "1.2.3",             "2.0.0 1.2.3 1.1.0",                        ""),
        ("patch",                                     "1.2.3",             "1.3.0 1.2.4 1.2.5-rc.1",                   "1.2.4"),
        // Semver ranges select inside.
        ("semver:^1.2",                               "1.2.0",             "1.2.5 1.9.0 2.0.0 1.10.0-rc.1",            "1.9.0"),
        ("semver:~1.2",                               "1.2.0",             "1.2.5 1.3.0",                              "1.2.5"),
        ("semver:>= 1.2, < 2",                        "1.0.0",             "1.1.0 1.5.0 2.0.0",                        "1.5.0"),
        ("semver:^1.2 || ^2.0",                       "1.2.0",             "1.9.0 2.5.0 3.0.0",                        "2.5.0"),
        // The current tag need not be inside the range.
        ("semver:1.x",                                "latest",            "0.9.0 1.4.0 2.0.0",                        "1.4.0"),
        // Leniency: `v` prefixes, partials and dates.
        ("minor",                                     "v1.2",              "v1.3 1.2.1 20240101",                      "v1.3"),
        ("all",                                       "1.0.0",             "20240101 20250101",                        ""),
        // Never a downgrade without permission.
        ("all",                                       "2.0.0",             "1.0.0 1.5.0",                              ""),
        ("semver:^1",                                 "1.9.0",             "1.2.0 1.8.0",                              ""),
        ("alphabetical",                              "b",                 "a",                                        ""),
        ("numerical",                                 "10",                "9 2",                                      ""),
        ("glob:build-*",                              "build-10",          "build-9",                                  ""),
        ("docker",                                    "3.12",              "3.11 3.10",                                ""),
        // An equal order is not newer.
        ("all",                                       "1.2.3",             "v1.2.3 1.2.3+build.7",                     ""),
        ("numerical",                                 "07",                "7 7.0",                                    ""),
        // An unparsable current tag turns the guard off.
        ("semver:*",                                  "latest",            "1.0.0 0.1.0",                              "1.0.0"),
        ("numerical",                                 "latest",            "3 20",                                     "20"),
        // Ties prefer the current tag's prefix, then bytes.
        ("all",                                       "v1.0.0",            "1.2.0 v1.2.0",                             "v1.2.0"),
        ("all",                                       "1.0.0",             "v1.2.0 1.2.0",                             "1.2.0"),
        ("all",                                       "1.0.0",             "1.2.0+b 1.2.0+a",                          "1.2.0+b"),
        // `glob` matches whole tags, in natural order.
        ("glob:build-*",                              "build-9",           "build-10 build-8 other-99",                "build-10"),
        ("glob:1.?.x",                                "1.1.x",             "1.2.x 1.10.x",                             "1.2.x"),
        // `regexp` without `compare` orders whole tags naturally.
        ("regexp:^rel-",                              "rel-1.9",           "rel-1.10 rel-1.2 dev-9",                   "rel-1.10"),
        // Keel's regexp policy never compared: a greater match is still required.
        ("regexp:^rel-",                              "rel-2",             "rel-1.10",                                 ""),
        // `alphabetical` and `numerical`, in both orders.
        ("alphabetical",                              "a",                 "b c B",                                    "c"),
        ("alphabetical:desc",                         "c",                 "b a d",                                    "a"),
        ("numerical",                                 "9",                 "10 2 x 1e9",                               "10"),
        ("numerical:desc",                            "9",                 "10 2 -1.5",                                "-1.5"),
        ("numerical",                                 "1.5",               "1.25 1.75",                                "1.75"),
        // `numerical` skips bad tags instead of failing.
        ("numerical",                                 "1",                 "2 latest 3-rc 4",                          "4"),
        // `docker` only moves within a tag's shape.
        ("docker",                                    "3.11",              "3.12 3.12-slim 3.12.1",                    "3.12"),
        ("docker",                                    "1.25.3-alpine3.18", "1.25.4-alpine3.18 1.26.0-alpine3.19",      "1.25.4-alpine3.18"),
        ("docker",                                    "latest",            "3.12",                                     ""),
        // `force` moves to any tag, but between semver tags only up.
        ("force",                                     "latest",            "1.0.0 dev",                                "1.0.0"),
        ("force",                                     "1.2.3",             "1.2.2 1.0.0",                              ""),
        ("force",                                     "1.2.3",             "1.2.4 1.2.2",                              "1.2.4"),
        ("force",                                     "1.2.3",             "staging",                                  "staging"),
        ("force",                                     "staging",           "dev staging",                              ""),
        // Stable: what it moved to is not left again.
        ("force",                                     "1.2.4",             "1.2.4 staging",                            ""),
        // `never` and the empty policy select nothing.
        ("never",                                     "1.0.0",             "2.0.0",                                    ""),
        ("",                                          "1.0.0",             "2.0.0",                                    ""),
    ]);
}

// Semver policies.

#[test]
fn all_without_a_current_tag_takes_the_newest_preferring_a_v_prefix() {
    for (tags, expected) in [("1.0.0 latest 0.9.0", "1.0.0"), ("1.2.0 v1.2.0", "v1.2.0")] {
        let chosen = pick_with(&policy("all"), None, tags);
        assert_eq!(chosen.as_deref(), Some(expected), "{tags}");
    }
}

#[test]
fn match_pre_release_false_drops_the_channel_rule() {
    let p = with("minor", |o| o.match_pre_release = false);
    assert_eq!(
        pick_with(&p, Some("1.2.3"), "1.2.4 1.3.0-rc.1").as_deref(),
        Some("1.3.0-rc.1")
    );
}

#[test]
fn major_minor_patch_need_a_semver_current_tag() {
    for spec in ["major", "minor", "patch"] {
        assert_eq!(pick(spec, "latest", "1.0.0 2.0.0"), None, "{spec}");
        assert_eq!(pick_with(&policy(spec), None, "1.0.0"), None, "{spec}");
        let e = explain(&policy(spec), Some("latest"), "1.0.0");
        assert!(e.note.as_deref().unwrap().contains("needs a current tag"));
    }
}

// No downgrade.

#[test]
fn allow_downgrade_lifts_the_guard() {
    let p = with("semver:^1", |o| o.allow_downgrade = true);
    // Down, but still never "moves" to the tag it runs.
    for (tags, expected) in [("1.2.0 1.8.0", Some("1.8.0")), ("1.2.0 1.9.0", None)] {
        assert_eq!(
            pick_with(&p, Some("1.9.0"), tags).as_deref(),
            expected,
            "{tags}"
        );
    }
}

// Ties.

#[test]
fn tied_extracted_values_break_by_bytes() {
    let p = with("numerical", |o| {
        o.filter = Some(r"^main-(?P<n>\d+)-(?P<sha>[0-9a-f]+)$".into());
        o.extract = Some("$n".into());
    });
    let (current, tags) = (Some("main-1-aaaa"), "main-5-bbbb main-5-cccc main-4-ffff");
    assert_eq!(pick_with(&p, current, tags).as_deref(), Some("main-5-cccc"));
    let e = explain(&p, current, tags);
    assert_eq!(
        reason_of(&e, "main-5-bbbb"),
        &Reason::LostTie {
            to: "main-5-cccc".into()
        }
    );
}

// Digests and metadata.

fn digest(fill: char) -> Digest {
    format!("sha256:{}", fill.to_string().repeat(64))
        .parse()
        .unwrap()
}

/// `p`'s decision for a current `(tag, digest)` among listed `(tag, digest)` pairs.
fn select_digests(
    p: &VersionPolicy,
    current: (&str, &Digest),
    tags: &[(&str, &Digest)],
) -> Decision {
    let tags: Vec<Candidate<'_>> = tags
        .iter()
        .map(|(tag, digest)| Candidate::new(tag).with_digest(digest))
        .collect();
    p.select(&SelectInput::new(
        Current::tag(current.0).with_digest(current.1),
        &tags,
    ))
}

#[test]
fn digest_policy_follows_the_current_tag() {
    let (old, new) = (digest('a'), digest('b'));
    let p = policy("digest");
    assert!(p.needs().current_tag_digest);
    let d = select_digests(&p, ("1.0", &old), &[("1.0", &new), ("2.0", &old)]);
    let update = d.update.unwrap();
    assert_eq!(
        (update.tag.as_str(), update.digest),
        ("1.0", Some(new.clone()))
    );

    let same = [Candidate::new("1.0").with_digest(&old)];
    let d = p.select(&SelectInput::new(Current::tag("1.0").with_digest(&old), &same).explained());
    assert_eq!(d.update, None);
    assert!(
        d.explanation
            .unwrap()
            .note
            .unwrap()
            .contains("still has digest")
    );

    // An unknown running digest gets pinned.
    let d = p.select(&SelectInput::new(Current::tag("1.0"), &same));
    assert_eq!(d.update.unwrap().digest, Some(old));
}

#[test]
fn force_with_match_tag_is_a_digest_update() {
    let (old, new) = (digest('a'), digest('b'));
    let p = with("force", |o| o.match_tag = true);
    let d = select_digests(&p, ("latest", &old), &[("latest", &new), ("2.0.0", &old)]);
    assert_eq!(d.tag(), Some("latest"));
    assert!(VersionPolicy::parse("minor", &options(|o| o.match_tag = true)).is_err());
}

#[test]
fn newest_build_orders_by_creation_time() {
    let p = policy("newest-build");
    assert!(p.needs().created);
    let t = |d| Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap();
    let tags = [
        Candidate::new("main-aaa").with_created(t(3)),
        Candidate::new("main-bbb").with_created(t(5)),
        Candidate::new("main-ccc"),
    ];
    let cur = Current::tag("main-zzz").with_created(t(2));
    assert_eq!(
        p.select(&SelectInput::new(cur, &tags)).tag(),
        Some("main-bbb")
    );
    let cur = Current::tag("main-zzz").with_created(t(6));
    assert_eq!(p.select(&SelectInput::new(cur, &tags)).tag(), None);
}

// Exclude, filter, extract.

#[test]
fn signature_tags_are_excluded_by_default() {
    let sig = format!("sha256-{SHA}.sig");
    let att = format!("sha256-{SHA}.att");
    let tags = format!("{sig} {att} b");
    assert_eq!(pick("alphabetical", "a", &tags).as_deref(), Some("b"));
    let e = explain(&policy("alphabetical"), Some("a"), &tags);
    assert!(matches!(reason_of(&e, &sig), Reason::Excluded { .. }));
    // Only the exact artefact shape.
    let near = format!("sha256-{}.sig", &SHA[1..]);
    assert_eq!(
        pick("alphabetical", "a", &near).as_deref(),
        Some(near.as_str())
    );
    let p = with("alphabetical", |o| o.default_excludes = false);
    assert_eq!(
        pick_with(&p, Some("a"), &sig).as_deref(),
        Some(sig.as_str())
    );
}

#[test]
fn user_excludes_and_filters() {
    let p = with("semver:*", |o| {
        o.exclude = vec!["-debug$".into(), "^0\\.".into()];
        o.filter = Some("^v?1\\.".into());
    });
    assert_eq!(
        pick_with(&p, Some("1.0.0"), "1.5.0 1.6.0-debug 2.0.0 0.9.0").as_deref(),
        Some("1.5.0")
    );
    let e = explain(&p, Some("1.0.0"), "1.5.0 1.6.0-debug 2.0.0 0.9.0");
    assert_eq!(
        reason_of(&e, "1.6.0-debug"),
        &Reason::Excluded {
            pattern: "-debug$".into()
        }
    );
    assert_eq!(
        reason_of(&e, "2.0.0"),
        &Reason::Filtered {
            pattern: "^v?1\\.".into()
        }
    );
}

#[test]
fn extract_orders_the_expansion() {
    let p = with("semver:^1", |o| {
        o.filter = Some(r"^app-(?P<version>.*)-linux$".into());
        o.extract = Some("${version}".into());
    });
    assert_eq!(
        pick_with(
            &p,
            Some("app-1.0.0-linux"),
            "app-1.2.0-linux app-2.0.0-linux app-1.3.0-win"
        )
        .as_deref(),
        Some("app-1.2.0-linux")
    );
    let p = with("alphabetical", |o| {
        o.filter = Some(r"^(\d+)-(\w+)$".into());
        o.extract = Some("$2-$1".into());
    });
    assert_eq!(pick_with(&p, None, "1-b 2-a 9-a").as_deref(), Some("1-b"));
}

#[test]
fn bad_options_are_errors_naming_the_input() {
    let bad = |o: PolicyOptions| VersionPolicy::parse("alphabetical", &o).unwrap_err();
    let e = bad(options(|o| o.filter = Some("(".into())));
    assert!(
        e.to_string().starts_with("invalid filter regex \"(\""),
        "{e}"
    );
    let e = bad(options(|o| o.exclude = vec!["[z-a]".into()]));
    assert!(e.to_string().starts_with("invalid exclude regex"), "{e}");
    let e = bad(options(|o| o.extract = Some("$n".into())));
    assert!(e.to_string().contains("needs a filter"), "{e}");
    let e = bad(options(|o| {
        o.filter = Some("(?P<n>\\d+)".into());
        o.extract = Some("x-$m".into());
    }));
    assert!(e.to_string().contains("group `m`"), "{e}");
    assert_eq!(e.span(), Some((2, 4)));
    let e = bad(options(|o| {
        o.filter = Some("(\\d+)".into());
        o.extract = Some("${2}".into());
    }));
    assert!(e.to_string().contains("group `2`"), "{e}");
    assert!(
        VersionPolicy::parse(
            "alphabetical",
            &options(|o| {
                o.filter = Some("(\\d+)".into());
                o.extract = Some("$$-${1}-$1".into());
            })
        )
        .is_ok()
    );
}

// Explain.

#[test]
fn explain_gives_the_first_rule_for_each_rejected_tag() {
    let p = with("minor", |o| o.exclude = vec!["^bad".into()]);
    let e = explain(
        &p,
        Some("1.2.3"),
        "bad-1 latest 2.0.0 1.3.0-rc.1 1.2.0 1.2.3 1.2.9 1.3.0 v1.3.0",
    );
    assert_eq!(e.chosen.as_deref(), Some("1.3.0"));
    assert!(matches!(reason_of(&e, "bad-1"), Reason::Excluded { .. }));
    assert!(matches!(reason_of(&e, "latest"), Reason::Unparsable { .. }));
    assert_eq!(
        reason_of(&e, "2.0.0"),
        &Reason::DifferentMajor {
            major: 2,
            current: 1
        }
    );
    assert_eq!(
        reason_of(&e, "1.3.0-rc.1"),
        &Reason::DifferentChannel {
            channel: "rc".into(),
            current: String::new()
        }
    );
    assert!(matches!(reason_of(&e, "1.2.0"), Reason::NotNewer { .. }));
    assert!(matches!(reason_of(&e, "1.2.3"), Reason::NotNewer { .. }));
    assert_eq!(
        reason_of(&e, "1.2.9"),
        &Reason::Outranked { by: "1.3.0".into() }
    );
    assert_eq!(
        reason_of(&e, "v1.3.0"),
        &Reason::LostTie { to: "1.3.0".into() }
    );
    assert_eq!(e.rejected.len(), 8);
    let text = e.to_string();
    assert!(text.contains("rejected 2.0.0: major version 2 differs from the current 1"));
    assert!(text.ends_with("chosen: 1.3.0\n"));
}

#[test]
fn explain_range_reasons() {
    let e = explain(
        &policy("semver:^1.2"),
        Some("1.2.0"),
        "1.3.0-rc.1 3.0.0 1.4.0",
    );
    assert!(matches!(
        reason_of(&e, "1.3.0-rc.1"),
        Reason::PreRelease { .. }
    ));
    assert!(matches!(reason_of(&e, "3.0.0"), Reason::OutOfRange { .. }));
}

#[test]
fn no_explanation_unless_asked() {
    let tags = [Candidate::new("1.0.1")];
    let d = policy("patch").select(&SelectInput::new(Current::tag("1.0.0"), &tags));
    assert_eq!(d.explanation, None);
}

#[test]
fn admits_prefilters_tags() {
    let p = with("glob:main-*", |o| o.exclude = vec!["-dirty$".into()]);
    assert!(p.admits("main-1"));
    assert!(!p.admits("dev-1"));
    assert!(!p.admits("main-1-dirty"));
    assert!(!p.admits(&format!("sha256-{SHA}.sig")));
}

// Properties.

fn tag_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u8..4,
            0u8..12,
            0u8..12,
            prop::bool::ANY,
            prop::option::of("(rc|beta)\\.[0-9]")
        )
            .prop_map(|(a, b, c, v, pre)| {
                let mut s = format!("{}{a}.{b}.{c}", if v { "v" } else { "" });
                if let Some(pre) = pre {
                    s.push('-');
                    s.push_str(&pre);
                }
                s
            }),
        (0u8..4, 0u8..12).prop_map(|(a, b)| format!("{a}.{b}")),
        (0u8..4, 0u8..12).prop_map(|(a, b)| format!("{a}.{b}-slim")),
        "[a-z]{1,4}-[0-9]{1,3}",
        "[0-9]{1,3}",
    ]
}

const SPECS: &[&str] = &[
    "all",
    "major",
    "minor",
    "patch",
    "semver:>=1.0.0 <3.0.0",
    "semver:^1.2 || >=2.5.0-0",
    "glob:*-*",
    "regexp:^[a-z]+-(?P<compare>[0-9]+)$",
    "alphabetical",
    "alphabetical:desc",
    "numerical",
    "numerical:desc",
    "docker",
    "force",
];

proptest! {
    #[test]
    fn result_does_not_depend_on_listing_order(
        tags in prop::collection::vec(tag_strategy(), 0..25),
        current in tag_strategy(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = tags.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        for spec in SPECS {
            let p = policy(spec);
            let a = pick_with(&p, Some(&current), &tags.join(" "));
            let b = pick_with(&p, Some(&current), &shuffled.join(" "));
            prop_assert_eq!(a, b, "{}", spec);
        }
    }

    #[test]
    fn never_downgrades(
        tags in prop::collection::vec(tag_strategy(), 0..25),
        current in tag_strategy(),
    ) {
        for spec in ["all", "major", "minor", "patch", "semver:*", "semver:>=0.0.0-0"] {
            if let (Some(chosen), Some(cur)) = (
                pick_with(&policy(spec), Some(&current), &tags.join(" ")),
                crate::version::Version::parse(&current),
            ) {
                let chosen = crate::version::Version::parse(&chosen).unwrap();
                prop_assert!(chosen.precedence(&cur).is_gt(), "{} {} -> {}", spec, current, chosen);
            }
        }
        // The other orders, checked against the order types directly.
        let cur = current.as_str();
        if let Some(c) = pick_with(&policy("numerical"), Some(cur), &tags.join(" "))
            && let Some(cd) = Decimal::parse(cur)
        {
            prop_assert!(Decimal::parse(&c).unwrap() > cd, "numerical {} -> {}", cur, c);
        }
        if let Some(c) = pick_with(&policy("alphabetical"), Some(cur), &tags.join(" ")) {
            prop_assert!(c.as_bytes() > cur.as_bytes(), "alphabetical {} -> {}", cur, c);
        }
        if let Some(c) = pick_with(&policy("glob:*"), Some(cur), &tags.join(" ")) {
            prop_assert!(natural_cmp(&c, cur).is_gt(), "glob {} -> {}", cur, c);
        }
        if let Some(c) = pick_with(&policy("docker"), Some(cur), &tags.join(" ")) {
            let (a, b) = (DockerVersion::parse(&c).unwrap(), DockerVersion::parse(cur).unwrap());
            prop_assert!(a.is_compatible(&b) && a.numbers_cmp(&b).is_gt(), "docker {} -> {}", cur, c);
        }
    }

    #[test]
    fn the_chosen_tag_is_listed_and_explained(
        tags in prop::collection::vec(tag_strategy(), 1..20),
        current in tag_strategy(),
    ) {
        for spec in SPECS {
            let p = policy(spec);
            let joined = tags.join(" ");
            let chosen = pick_with(&p, Some(&current), &joined);
            let e = explain(&p, Some(&current), &joined);
            prop_assert_eq!(&e.chosen, &chosen);
            if let Some(c) = &chosen {
                prop_assert!(tags.contains(c));
                prop_assert_ne!(c, &current);
                prop_assert_eq!(e.rejected.len(), tags.iter().filter(|t| *t != c).count());
            } else if e.note.is_none() {
                prop_assert_eq!(e.rejected.len(), tags.len());
            }
        }
    }
}
