//! Tests of version ranges: the syntax Flux users write, its errors and its properties.

use super::*;
use proptest::prelude::*;

fn range(s: &str) -> VersionRange {
    VersionRange::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn v(s: &str) -> Version<'_> {
    Version::parse(s).unwrap_or_else(|| panic!("{s:?} should be a version"))
}

/// Asserts that `r` contains every version of `yes` and none of `no`, each a list of
/// versions separated by spaces.
fn check(r: &str, yes: &str, no: &str) {
    let parsed = range(r);
    for s in yes.split_whitespace() {
        assert!(parsed.matches(&v(s)), "{r:?} should match {s}");
    }
    for s in no.split_whitespace() {
        assert!(!parsed.matches(&v(s)), "{r:?} should not match {s}");
    }
}

/// Asserts that `r` does not parse, with a reason containing `reason` and span `span`.
fn check_err(r: &str, reason: &str, span: (usize, usize)) {
    let e = VersionRange::parse(r).expect_err(r);
    assert_eq!(e.kind(), "semver range", "{r:?}");
    assert_eq!(e.input(), r);
    assert!(
        e.reason().contains(reason),
        "{r:?}: reason {:?} should contain {reason:?}",
        e.reason()
    );
    assert_eq!(e.span(), Some(span), "{r:?}: {e}");
}

#[test]
fn ranges_match_exactly_the_versions_they_should() {
    #[rustfmt::skip]
    let cases = [
        // (range, versions it matches, versions it does not), each list split at spaces
        // Exact versions.
        ("=1.2.3-rc.1",                     "1.2.3-rc.1",                                       "1.2.3-rc.2 1.2.3"),
        // Not equal.
        ("!=1.2.3",                         "1.2.2 1.2.4 0.0.1",                                "1.2.3 v1.2.3+b"),
        ("!= 1.2.3",                        "1.2.4",                                            "1.2.3"),
        (">=1.0.0 !=1.2.3 <2",              "1.0.0 1.2.2 1.2.4",                                "1.2.3 2.0.0 0.9.0"),
        // Ordering operators on full versions.
        (">1.2.3",                          "1.2.4 2.0.0",                                      "1.2.3 1.2.2"),
        (">=1.2.3",                         "1.2.3 1.2.4",                                      "1.2.2 1.0.0"),
        ("<1.2.3",                          "1.2.2 0.9.0",                                      "1.2.3 1.2.4"),
        ("<=1.2.3",                         "1.2.3 1.2.2",                                      "1.2.4 2.0.0"),
        (">= 1.2.3",                        "1.2.3",                                            "1.2.2"),
        ("<\t1.2.3",                        "1.2.2",                                            "1.2.3"),
        // Alternatives.
        ("^1.2 || ^2.0",                    "1.2.0 1.9.9 2.0.0 2.9.9",                          "1.1.9 3.0.0 0.9.0"),
        ("1.2.3||2.0.0",                    "1.2.3 2.0.0",                                      "1.2.4 1.9.0"),
        ("<1 || >=2 <3 || =5.0.0",          "0.9.0 2.5.0 5.0.0",                                "1.0.0 3.0.0 5.0.1"),
        // Caret.
        ("^1.2.3",                          "1.2.3 1.9.9",                                      "1.2.2 2.0.0"),
        ("^0.2.3",                          "0.2.3 0.2.9",                                      "0.2.2 0.3.0"),
        ("^0.0.3",                          "0.0.3",                                            "0.0.2 0.0.4"),
        ("^1.2",                            "1.2.0 1.9.9",                                      "1.1.9 2.0.0"),
        ("^1",                              "1.0.0 1.9.9",                                      "0.9.9 2.0.0"),
        ("^1.x",                            "1.0.0 1.9.9",                                      "0.9.9 2.0.0"),
        ("^0",                              "0.0.0 0.9.9",                                      "1.0.0"),
        ("^0.0",                            "0.0.0 0.0.9",                                      "0.1.0"),
        ("^0.0.x",                          "0.0.0 0.0.9",                                      "0.1.0"),
        ("^0.2",                            "0.2.0 0.2.9",                                      "0.1.9 0.3.0"),
        ("^ v1.2.3",                        "1.2.3 1.9.9",                                      "1.2.2 2.0.0"),
        // Tilde.
        ("~1.x",                            "1.0.0 1.9.9",                                      "0.9.9 2.0.0"),
        ("~0.0.1",                          "0.0.1 0.0.9",                                      "0.0.0 0.1.0"),
        // Comparators with partials.
        (">1.2",                            "1.3.0 2.0.0",                                      "1.2.0 1.2.9"),
        (">1",                              "2.0.0",                                            "1.9.9"),
        (">1.x",                            "2.0.0",                                            "1.9.9"),
        (">=1.2",                           "1.2.0 1.3.0",                                      "1.1.9"),
        ("<1.2",                            "1.1.9 0.0.0",                                      "1.2.0"),
        ("<=1.2",                           "1.2.0 1.2.9",                                      "1.3.0"),
        ("<=1",                             "1.9.9",                                            "2.0.0"),
        ("=1.2",                            "1.2.0 1.2.9",                                      "1.1.9 1.3.0"),
        ("!=1.2",                           "1.1.9 1.3.0 0.0.0",                                "1.2.0 1.2.9"),
        ("!=1",                             "0.9.9 2.0.0",                                      "1.0.0 1.9.9"),
        // Partials with a pre-release are zero-filled.
        (">=1.2-rc.1",                      "1.2.0-rc.1 1.2.0 1.3.0-alpha",                     "1.2.0-beta 1.1.0"),
        ("=1-0",                            "1.0.0-0",                                          "1.0.0 1.0.0-1"),
        // Leading zeros in numbers are accepted.
        (">=01.02 <3",                      "1.2.0 2.9.9",                                      "1.1.0 3.0.0"),
        // Hyphen ranges.
        ("1.2 - 1.4.5",                     "1.2.0 1.4.5",                                      "1.1.9 1.4.6"),
        ("1.2.3 - 2.3",                     "1.2.3 2.3.9",                                      "1.2.2 2.4.0"),
        ("1.2.3 - 2",                       "1.2.3 2.9.9",                                      "1.2.2 3.0.0"),
        ("1.2.3 - 2.x",                     "2.9.9",                                            "3.0.0"),
        ("* - 2",                           "0.0.0 2.9.9",                                      "3.0.0"),
        ("1.2.3 - *",                       "1.2.3 99.0.0",                                     "1.2.2"),
        ("v1.2 \t-  v1.4.5",                "1.2.0 1.4.5",                                      "1.1.9 1.4.6"),
        ("1.2 - 1.4.5 !=1.3.0",             "1.2.0 1.3.1",                                      "1.3.0 1.4.6"),
        ("1.0 - 1.1 || 2.0 - 2.1, !=2.0.5", "1.0.0 1.1.9 2.0.4 2.1.9",                          "1.2.0 2.0.5 2.2.0"),
        ("1.0.0-rc.1 - 1.0.0",              "1.0.0-rc.1 1.0.0-rc.2 1.0.0",                      "1.0.0-beta 1.0.1"),
        // The pre-release rule.
        (">=1.0.0-0 <2.0.0",                "1.0.0-rc.2 1.1.0-beta.1 1.0.0 1.9.9",              "2.0.0 0.9.9 0.9.9-rc.1"),
        ("^1.2",                            "1.3.0",                                            "1.3.0-rc.1 1.2.0-rc.1"),
        ("^1.2 || >=3.0.0-0",               "3.1.0-beta 3.0.0-0 1.3.0 3.0.0",                   "1.3.0-rc.1 2.0.0 2.5.0-rc.1"),
        // A pre-release comparator admits pre-releases of any version in its alternative.
        ("^1.2.3-beta.1",                   "1.2.3-beta.1 1.2.3-beta.2 1.2.3 1.5.0-rc.1 1.9.9", "1.2.3-alpha 1.2.2 2.0.0"),
        ("~1.2.3-beta",                     "1.2.3-beta 1.2.4-rc.1",                            "1.3.0-0"),
        ("!=1.2.3-rc.1",                    "1.2.3-rc.2 1.2.3",                                 "1.2.3-rc.1"),
        ("1.2.3-rc.1",                      "1.2.3-rc.1",                                       "1.2.3-rc.2"),
        // Upper bounds from partials exclude pre-releases of the next version.
        // Written in full, `<2.0.0` follows semver precedence: 2.0.0-rc.1 is below 2.0.0.
        (">=1.0.0-0 <2.0.0",                "2.0.0-rc.1",                                       ""),
        // A lower bound stays a release, as in npm: `>1.2` is `>=1.3.0`.
        (">=0.0.0-0 >1.2",                  "1.3.0 1.3.1-rc.1",                                 "1.2.9 1.3.0-rc.1"),
        (">=0.0.0-0 !=1.2",                 "1.3.0-rc.1 1.2.0-rc.1",                            "1.2.5"),
        (">=0.0.0-0 <1.2",                  "1.1.9",                                            "1.2.0-rc.1 1.2.0"),
        // The pre-release rule is per alternative.
        ("^1.0.0-0 || ^2",                  "1.1.0-rc.1 2.1.0",                                 "2.1.0-rc.1"),
        // Build metadata is ignored.
        ("=1.2.3+abc",                      "1.2.3 1.2.3+def",                                  "1.2.4"),
        (">1.2.3+abc",                      "1.2.4",                                            "1.2.3+zzz"),
        ("^1.2.3-rc.1+abc",                 "1.2.3-rc.1+x 1.2.3-rc.2",                          "1.2.3-rc.0"),
        // V prefixes.
        (">=v1.2.0 <V2",                    "1.2.0 v1.2.0 V1.9.9",                              "v1.1.9 v2.0.0"),
        ("^v1 || ~V3.1",                    "v1.5.0 v3.1.7",                                    "v2.0.0 V3.2.0"),
    ];
    for (r, yes, no) in cases {
        check(r, yes, no);
    }
}

#[test]
fn exact_versions() {
    for r in [
        "1.2.3",
        "=1.2.3",
        "= 1.2.3",
        "v1.2.3",
        "=V1.2.3",
        "1.2.3+build.7",
    ] {
        check(r, "1.2.3 v1.2.3 1.2.3+other", "1.2.2 1.2.4 1.3.0");
    }
}

#[test]
fn comparators_separated_by_spaces_and_commas() {
    for r in [
        ">=1.2.0 <2.0.0",
        ">= 1.2, < 2",
        ">=1.2.0,<2.0.0",
        ">=1.2.0 , <2.0.0",
        "  >=1.2.0   <2.0.0  ",
        ">=1.2.0,\t<2.0.0",
    ] {
        check(r, "1.2.0 1.9.9 1.2", "1.1.9 2.0.0 2.1.0");
    }
}

#[test]
fn tilde() {
    for op in ["~", "~>", "~ ", "~> "] {
        check(&format!("{op}1.2.3"), "1.2.3 1.2.9", "1.2.2 1.3.0");
        check(&format!("{op}1.2"), "1.2.0 1.2.9", "1.1.9 1.3.0");
        check(&format!("{op}1"), "1.0.0 1.9.9", "0.9.9 2.0.0");
    }
}

#[test]
fn x_ranges_and_partials() {
    for r in ["*", "x", "X", "*.*.*", "x.x", "v*"] {
        check(r, "0.0.0 1.2.3 999.0.0", "1.0.0-rc.1");
    }
    for r in ["1.x", "1", "1.*", "1.X.x", "v1.x", "=1", "=1.x"] {
        check(r, "1.0.0 1.9.9", "0.9.9 2.0.0");
    }
    for r in ["1.2.x", "1.2", "1.2.*", "=1.2", "= 1.2.X"] {
        check(r, "1.2.0 1.2.9", "1.1.9 1.3.0");
    }
}

#[test]
fn comparators_with_partials() {
    for r in [">*", "<*", "!=*", ">x", "< X", ">=1 <*"] {
        check(r, "", "0.0.0 1.2.3 999.0.0");
    }
    for r in [">=*", "<=*", "=*", "<= x"] {
        check(r, "0.0.0 1.2.3 999.0.0", "");
    }
}

#[test]
fn pre_release_rule() {
    let r = range(">=1.0.0-0 <2.0.0");
    assert!(r.admits_pre_releases());
    assert!(!range("^1.2").admits_pre_releases());
    let r = range("^1.2 || >=3.0.0-0");
    assert!(r.admits_pre_releases());
}

#[test]
fn upper_bounds_from_partials_exclude_pre_releases_of_the_next_version() {
    // Derived from a partial or a caret/tilde/x-range, the bound is 2.0.0-0.
    for r in [
        ">=1.0.0-0 <2",
        ">=1.0.0-0 <=1",
        ">=1.0.0-0 1.x",
        "^1.0.0-0",
        "1.0.0-0 - 1",
    ] {
        check(r, "1.5.0-rc.1", "2.0.0-rc.1 2.0.0-0 2.0.0");
    }
}

#[test]
fn pre_release_rule_is_per_alternative() {
    let r = range("^1.0.0-0 || ^2");
    assert!(r.admits_pre_releases());
    let r = range("^1 || ^2");
    assert!(!r.admits_pre_releases());
}

#[test]
fn large_numbers() {
    let max = u64::MAX;
    check(&format!("^{max}"), &format!("{max}.5.0"), "1.0.0");
    check(&format!(">{max}"), "", &format!("{max}.{max}.{max}"));
    check(&format!("<={max}.x"), &format!("{max}.{max}.{max}"), "");
    check(&format!("!=1.{max}"), "1.0.0 2.0.0", &format!("1.{max}.3"));
    check(&format!("<=1.{max}"), &format!("1.{max}.7"), "2.0.0");
    check(&format!("~0.{max}.1"), &format!("0.{max}.{max}"), "1.0.0");
    check(&format!("^0.0.{max}"), &format!("0.0.{max}"), "0.1.0");
}

#[test]
fn display_from_str_and_equality() {
    let r: VersionRange = "  >= 1.2, < 2 || ^3  ".parse().unwrap();
    assert_eq!(r.to_string(), ">= 1.2, < 2 || ^3");
    assert_eq!(VersionRange::parse(&r.to_string()), Ok(r.clone()));
    assert_eq!(range("^1.2"), range("^1.2"));
    assert_ne!(range("^1.2"), range("^1.3"));
}

#[test]
fn errors() {
    #[rustfmt::skip]
    let cases = [
        ("",                         "empty range",                            (0, 0)),
        ("   ",                      "empty range",                            (0, 3)),
        ("=>1",                      "unknown operator `=>`",                  (0, 2)),
        (">=1 <>2",                  "unknown operator `<>`",                  (4, 6)),
        ("==1",                      "unknown operator `==`",                  (0, 2)),
        (">=1.2.abc",                "`abc` is not a number or a wildcard",    (6, 9)),
        (">=",                       "expected a version after `>=`",          (0, 2)),
        (">= ",                      "expected a version after `>=`",          (0, 2)),
        (">=1 <",                    "expected a version after `<`",           (4, 5)),
        ("^ || 1",                   "expected a version after `^`",           (0, 1)),
        (">= , 1",                   "expected a version after `>=`",          (0, 2)),
        (">= <1",                    "expected a version after `>=`",          (0, 2)),
        ("latest",                   "`latest` is not a number",               (0, 6)),
        (">=v",                      "`v` is not a version",                   (2, 3)),
        ("^1 ||",                    "`||` is not followed by an alternative", (3, 5)),
        ("^1 ||  ",                  "`||` is not followed by an alternative", (3, 5)),
        ("|| ^1",                    "`||` has no alternative before it",      (0, 2)),
        ("^1 || || ^2",              "`||` is not followed by an alternative", (3, 5)),
        ("^1 | ^2",                  "a lone `|`",                             (3, 4)),
        ("^1|^2",                    "a lone `|`",                             (2, 3)),
        ("| ^1",                     "a lone `|`",                             (0, 1)),
        ("^1 ||| ^2",                "a lone `|`",                             (5, 6)),
        ("1.2 -",                    "hyphen range has no upper bound",        (4, 5)),
        ("1.2 - ",                   "hyphen range has no upper bound",        (4, 5)),
        ("1.2 - || 2",               "hyphen range has no upper bound",        (4, 5)),
        ("- 1.2",                    "hyphen range has no lower bound",        (0, 1)),
        ("1.2 - 1.3 - 1.4",          "hyphen range has no lower bound",        (10, 11)),
        ("1.2 -1.3",                 "unexpected `-`",                         (4, 5)),
        (">=1 - 2",                  "hyphen range take no operator",          (0, 2)),
        ("1 - >=2",                  "hyphen range take no operator",          (4, 6)),
        ("1.2.3.4",                  "too many parts",                         (6, 7)),
        (">=1.2.3.4.5",              "too many parts",                         (8, 11)),
        ("99999999999999999999",     "too large",                              (0, 20)),
        ("1.99999999999999999999.0", "too large",                              (2, 22)),
        ("^*",                       "`^` needs a version, not a wildcard",    (0, 2)),
        ("~x",                       "`~` needs a version, not a wildcard",    (0, 2)),
        ("~> *.*",                   "`~>` needs a version, not a wildcard",   (0, 6)),
        (">=1.0 @",                  "unexpected character '@'",               (6, 7)),
        (">=1.0é",                   "unexpected character 'é'",               (5, 7)),
        ("1.2.3_1",                  "unexpected character '_'",               (5, 6)),
        ("1.2>=1",                   "expected a space or `,` before `>=`",    (3, 5)),
        (">=1.2.0<2.0.0",            "expected a space or `,` before `<`",     (7, 8)),
        (">=#1",                     "unexpected character '#'",               (2, 3)),
        ("1.x.3",                    "number `3` after a wildcard",            (4, 5)),
        ("1.x-rc",                   "wildcard cannot have a pre-release",     (4, 6)),
        ("1.2.3-",                   "empty pre-release",                      (5, 6)),
        ("1.2.3-01",                 "invalid pre-release `01`",               (6, 8)),
        ("1.2.3-a..b",               "invalid pre-release `a..b`",             (6, 10)),
        ("1.2.3+",                   "empty build metadata",                   (5, 6)),
        ("1.2.3-rc+",                "empty build metadata",                   (8, 9)),
        ("1.2.3+a..b",               "invalid build metadata",                 (6, 10)),
        ("1..2",                     "empty part",                             (0, 4)),
        ("1.2.",                     "empty part",                             (0, 4)),
        (">=1,",                     "`,` is not followed by a comparator",    (3, 4)),
        (">=1,,<2",                  "`,` is not followed by a comparator",    (3, 4)),
        (">=1, || 2",                "`,` is not followed by a comparator",    (3, 4)),
        (", >=1",                    "`,` has no comparator before it",        (0, 1)),
        ("+1",                       "`+1` is not a version",                  (0, 2)),
    ];
    for (input, reason, span) in cases {
        check_err(input, reason, span);
    }
}

#[test]
fn error_display_points_at_the_bad_part() {
    let e = VersionRange::parse(">=1 <abc").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid semver range ">=1 <abc": `abc` is not a number or a wildcard (`x`, `X`, `*`) (at byte 5: "abc")"#
    );
}

fn op_holds(op: &str, ord: Ordering) -> bool {
    match op {
        "" | "=" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        _ => unreachable!("{op}"),
    }
}

proptest! {
    #[test]
    fn parse_never_panics(s in any::<String>()) {
        if let Err(e) = VersionRange::parse(&s) {
            let (start, end) = e.span().expect("errors have spans");
            prop_assert!(s.get(start..end).is_some());
        }
    }

    #[test]
    fn parse_never_panics_on_range_like_text(s in "[0-9xXvV*.,|<>=!^~ +a-z-]{0,24}") {
        match VersionRange::parse(&s) {
            Ok(r) => prop_assert_eq!(VersionRange::parse(&r.to_string()), Ok(r.clone())),
            Err(e) => {
                let (start, end) = e.span().expect("errors have spans");
                prop_assert!(start <= end && end <= s.len());
            }
        }
    }

    #[test]
    fn full_comparators_agree_with_direct_comparison(
        op in prop::sample::select(vec!["", "=", "!=", ">", ">=", "<", "<="]),
        space in prop::sample::select(vec!["", " "]),
        bound in (0u64..4, 0u64..4, 0u64..4),
        candidate in (0u64..4, 0u64..4, 0u64..4),
        prefixes in (prop::sample::select(vec!["", "v", "V"]), prop::sample::select(vec!["", "v"])),
    ) {
        let space = if op.is_empty() { "" } else { space };
        let (vp, cp) = prefixes;
        let text = format!("{op}{space}{vp}{}.{}.{}", bound.0, bound.1, bound.2);
        let r = range(&text);
        let tag = format!("{cp}{}.{}.{}", candidate.0, candidate.1, candidate.2);
        prop_assert_eq!(
            r.matches(&v(&tag)),
            op_holds(op, candidate.cmp(&bound)),
            "{} on {}", text, tag
        );
    }

    #[test]
    fn caret_agrees_with_its_expansion(
        bound in (1u64..5, 0u64..5, 0u64..5),
        candidate in (0u64..7, 0u64..6, 0u64..6),
        pre in prop::sample::select(vec!["", "-rc.1", "-0"]),
    ) {
        let (x, y, z) = bound;
        let caret = range(&format!("^{x}.{y}.{z}"));
        let expanded = range(&format!(">={x}.{y}.{z} <{}.0.0", x + 1));
        let tag = format!("{}.{}.{}{pre}", candidate.0, candidate.1, candidate.2);
        let c = v(&tag);
        prop_assert_eq!(caret.matches(&c), expanded.matches(&c), "^{}.{}.{} on {}", x, y, z, tag);
    }

    #[test]
    fn partial_comparators_agree_with_npm_expansion_on_releases(
        op in prop::sample::select(vec!["", "=", "!=", ">", ">=", "<", "<=", "^", "~"]),
        major in 0u64..4,
        minor in prop::option::of(0u64..4),
        candidate in (0u64..5, 0u64..5, 0u64..3),
    ) {
        let (text, lo, hi) = match minor {
            Some(m) => (format!("{op}{major}.{m}"), (major, m, 0), (major, m + 1, 0)),
            None => (format!("{op}{major}"), (major, 0, 0), (major + 1, 0, 0)),
        };
        let inside = candidate >= lo && candidate < hi;
        let expected = match op {
            "" | "=" => inside,
            "!=" => !inside,
            ">" => candidate >= hi,
            ">=" => candidate >= lo,
            "<" => candidate < lo,
            "<=" => candidate < hi,
            "~" => inside,
            "^" => {
                let hi = if major > 0 || minor.is_none() {
                    (major + 1, 0, 0)
                } else {
                    hi
                };
                candidate >= lo && candidate < hi
            }
            _ => unreachable!(),
        };
        let tag = format!("{}.{}.{}", candidate.0, candidate.1, candidate.2);
        prop_assert_eq!(range(&text).matches(&v(&tag)), expected, "{} on {}", text, tag);
    }
}
