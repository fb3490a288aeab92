//! Hand-written cases of Flux's `ImagePolicy` rules, per policy kind, and the errors of bad
//! specs.

use keel_core::policy::{
    Candidate, Current, Policy, PolicyOptions, Reason, SelectInput, SortOrder, VersionPolicy,
};
use keel_core::{Error, ParseError};
use keel_flux::policy::{FluxPolicy, ImagePolicyChoice, TagFilter};

fn policy(choice: ImagePolicyChoice, filter: Option<TagFilter>) -> FluxPolicy {
    FluxPolicy::new(choice.clone(), filter.clone())
        .unwrap_or_else(|e| panic!("{choice:?} {filter:?}: {e}"))
}

/// The latest tag among `tags` (split at spaces), checked to be the same in reverse order and
/// through `select`.
fn latest(policy: &FluxPolicy, tags: &str) -> Option<String> {
    let list: Vec<&str> = tags.split_whitespace().collect();
    let forward = policy
        .latest(list.iter().copied())
        .unwrap_or_else(|e| panic!("{e}"));
    let backward = policy
        .latest(list.iter().rev().copied())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forward, backward, "{policy}: order matters for {tags:?}");
    let candidates: Vec<Candidate<'_>> = list.iter().map(|t| Candidate::new(t)).collect();
    let decision = policy.select(&SelectInput::new(Current::none(), &candidates));
    assert_eq!(
        decision.tag(),
        forward.as_deref(),
        "{policy}: select and latest differ"
    );
    forward
}

fn semver(range: &str) -> FluxPolicy {
    policy(ImagePolicyChoice::semver(range), None)
}

#[test]
fn semver_cases() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<&str>)] = &[
        // (range, tags, latest)
        (">=1.0.0 <2.0.0",            "1.2.3 v1.4.0 1.187 2.0.0 latest",                Some("v1.4.0")),
        // Only strict semver competes: no 2-part versions, leading zeros, capital V, words.
        ("*",                         "1.2 1.187 latest 01.2.3 V3.0.0 vv4.0.0 1.2.3.4", None),
        ("*",                         "1.187 1.0.0 20240101",                           Some("1.0.0")),
        ("*",                         "v2.0.0 1.9.9 V3.0.0",                            Some("v2.0.0")),
        // Caret, tilde, x-ranges, partials, hyphen ranges, alternatives, commas.
        ("^1.2",                      "1.1.9 1.2.0 1.99.0 2.0.0",                       Some("1.99.0")),
        ("^0.2.3",                    "0.2.2 0.2.9 0.3.0",                              Some("0.2.9")),
        ("~1.2.3",                    "1.2.2 1.2.9 1.3.0",                              Some("1.2.9")),
        ("1.2.x",                     "1.2.9 1.2.10 1.3.0",                             Some("1.2.10")),
        ("1.x",                       "0.9.0 1.12.3 2.0.0",                             Some("1.12.3")),
        ("1.2",                       "1.2.7 1.3.0",                                    Some("1.2.7")),
        ("1.2 - 1.4.5",               "1.1.0 1.4.5 1.4.6",                              Some("1.4.5")),
        ("^1.2 || ^3.0",              "1.9.0 2.5.0 3.1.0 4.0.0",                        Some("3.1.0")),
        (">= 1.2, < 2",               "1.1.0 1.9.0 2.0.0",                              Some("1.9.0")),
        (">=1.0.0 !=1.5.0 <2.0.0",    "1.4.0 1.5.0",                                    Some("1.4.0")),
        ("=> 1.0.0, =< 1.5.0",        "0.9.0 1.5.0 1.6.0",                              Some("1.5.0")),
        // No pre-release unless the alternative names one.
        (">=1.0.0 <2.0.0",            "1.1.0 1.2.0-rc.1",                               Some("1.1.0")),
        (">=1.0.0-0 <2.0.0",          "1.1.0 1.2.0-rc.1 2.0.0",                         Some("1.2.0-rc.1")),
        (">=1.0.0-0 <2.0.0",          "1.0.0-rc.2 1.1.0-beta.1 2.0.0",                  Some("1.1.0-beta.1")),
        ("^1.2 || >=3.0.0-0",         "1.5.0 1.9.0-rc.1 3.1.0-beta.1",                  Some("3.1.0-beta.1")),
        ("^1.2 || >=3.0.0-0",         "1.5.0 1.9.0-rc.1",                               Some("1.5.0")),
        ("*",                         "1.0.0-rc.1",                                     None),
        // Precedence: pre-releases below their release, numeric identifiers as numbers.
        (">=1.0.0-0",                 "1.0.0-alpha 1.0.0-alpha.1 1.0.0-beta.11 1.0.0-beta.2 1.0.0-rc.1", Some("1.0.0-rc.1")),
        (">=1.0.0-0",                 "1.0.0-rc.1 1.0.0",                               Some("1.0.0")),
        (">=0.1.0-0",                 "1.0.0-01 0.9.0",                                 Some("0.9.0")),
        // Build metadata is ignored for ordering, not for parsing.
        ("*",                         "1.0.0+zzz 1.0.1",                                Some("1.0.1")),
        ("*",                         "1.0.0+a..b 0.1.0",                               Some("0.1.0")),
        // Ties go to the byte-wise greatest tag, whatever the order.
        ("*",                         "1.0.0 v1.0.0",                                   Some("v1.0.0")),
        ("*",                         "1.0.0+a 1.0.0+b",                                Some("1.0.0+b")),
        ("*",                         "v1.0.0+b 1.0.0+c",                               Some("v1.0.0+b")),
        ("*",                         "",                                               None),
        // Documented differences from Masterminds, in keel-core's reading of the range.
        ("~0.0.0",                    "0.0.5 0.1.0",                                    Some("0.0.5")),
        (">=1.0.0-0 <2",              "1.5.0 2.0.0-rc.1",                               Some("1.5.0")),
    ];
    for (range, tags, expected) in cases {
        assert_eq!(
            latest(&semver(range), tags).as_deref(),
            *expected,
            "range {range:?}, tags {tags:?}"
        );
    }
}

/// keel-core's own `semver:` is lenient; the Flux policy is not.
#[test]
fn semver_is_stricter_than_keel_core() {
    let tags = ["1.0.0", "1.187"].map(Candidate::new);
    let keel = VersionPolicy::parse("semver:*", &PolicyOptions::default()).unwrap();
    assert_eq!(
        keel.select(&SelectInput::new(Current::none(), &tags)).tag(),
        Some("1.187")
    );
    let flux = semver("*");
    assert_eq!(
        flux.select(&SelectInput::new(Current::none(), &tags)).tag(),
        Some("1.0.0")
    );
}

#[test]
fn alphabetical_and_numerical_cases() {
    use SortOrder::{Asc, Desc};
    /// The ordering kind: `ImagePolicyChoice::alphabetical` or `numerical`.
    type Kind = fn(SortOrder) -> ImagePolicyChoice;
    let alphabetical: Kind = ImagePolicyChoice::alphabetical;
    let numerical: Kind = ImagePolicyChoice::numerical;
    #[rustfmt::skip]
    let cases: &[(Kind, SortOrder, &str, Option<&str>)] = &[
        // (kind, order, tags, latest)
        (alphabetical, Asc,  "a c b",                                   Some("c")),
        (alphabetical, Desc, "a c b",                                   Some("a")),
        // Byte order: capitals before small letters, `9` after `10`.
        (alphabetical, Asc,  "Zeta alpha",                              Some("alpha")),
        (alphabetical, Desc, "Zeta alpha",                              Some("Zeta")),
        (alphabetical, Asc,  "9 10",                                    Some("9")),
        (alphabetical, Asc,  "RELEASE.2023-01-01 RELEASE.2024-05-01",   Some("RELEASE.2024-05-01")),
        (alphabetical, Asc,  "",                                        None),
        (numerical,    Asc,  "1 10 9 1.5",                              Some("10")),
        (numerical,    Desc, "1 10 9 1.5",                              Some("1")),
        (numerical,    Asc,  "-2 -10",                                  Some("-2")),
        (numerical,    Desc, "-2 -10 0",                                Some("-10")),
        (numerical,    Asc,  "1e3 999 2.5e2",                           Some("1e3")),
        (numerical,    Asc,  "0x1p4 15",                                Some("0x1p4")),
        (numerical,    Asc,  "1_000 999",                               Some("1_000")),
        (numerical,    Asc,  "Inf 1e300",                               Some("Inf")),
        (numerical,    Desc, "-Infinity -1e300",                        Some("-Infinity")),
        // Equal numbers tie; the byte-wise greatest tag wins.
        (numerical,    Asc,  "1 1.0",                                   Some("1.0")),
        (numerical,    Asc,  "1e3 1000 1_000",                          Some("1e3")),
        (numerical,    Desc, "0 -0",                                    Some("0")),
        (numerical,    Asc,  "",                                        None),
    ];
    for (kind, order, tags, expected) in cases {
        let p = policy(kind(*order), None);
        assert_eq!(latest(&p, tags).as_deref(), *expected, "{p}, tags {tags:?}");
    }
}

#[test]
fn alphabetical_orders_extracted_values() {
    // Extracted values order; equal ones tie and the byte-wise greatest tag wins.
    let filter = TagFilter::new("^(?P<d>[0-9]{8})-").with_extract("$d");
    let p = policy(
        ImagePolicyChoice::alphabetical(SortOrder::Asc),
        Some(filter),
    );
    assert_eq!(
        latest(&p, "20240101-b 20240101-a 20231231-z latest").as_deref(),
        Some("20240101-b")
    );
    let filter = TagFilter::new("^(?P<d>[0-9]{8})-").with_extract("$d");
    let p = policy(
        ImagePolicyChoice::alphabetical(SortOrder::Desc),
        Some(filter),
    );
    assert_eq!(
        latest(&p, "20240101-b 20231231-a 20231231-z").as_deref(),
        Some("20231231-z")
    );
}

#[test]
fn numerical_fails_on_a_tag_that_is_not_a_number() {
    let p = policy(ImagePolicyChoice::numerical_asc(), None);
    for (tags, bad) in [
        ("1 2 latest", "latest"),
        ("zz 1 aa", "aa"),
        ("1 1e400", "1e400"),
        ("1 1.2.3", "1.2.3"),
        ("1 0x10", "0x10"),
        ("1 1__0", "1__0"),
        ("1 +nan", "+nan"),
    ] {
        let err = p.latest(tags.split_whitespace()).unwrap_err();
        let Error::InvalidInput(e) = &err else {
            panic!("{tags:?}: {err}")
        };
        assert_eq!(e.kind(), "tag for spec.policy.numerical", "{tags:?}");
        assert_eq!(e.input(), bad, "{tags:?}");
        assert!(e.reason().starts_with("not a number"), "{err}");

        let candidates: Vec<Candidate<'_>> = tags.split_whitespace().map(Candidate::new).collect();
        let d = p.select(&SelectInput::new(Current::none(), &candidates).explained());
        assert_eq!(d.tag(), None, "{tags:?}");
        let explanation = d.explanation.unwrap();
        let note = explanation.note.unwrap_or_default();
        assert!(note.contains("not a number"), "{note}");
        assert!(
            explanation.rejected.iter().any(|r| r.tag == bad
                && r.reason
                    == Reason::Unparsable {
                        expected: "a number"
                    }),
            "{tags:?}"
        );
    }

    // A filter keeping only numbers avoids the failure.
    let p = policy(
        ImagePolicyChoice::numerical_asc(),
        Some(TagFilter::new("^[0-9]+$")),
    );
    assert_eq!(latest(&p, "1 2 latest").as_deref(), Some("2"));

    // The extracted value is what must be a number; the error names the tag and the value.
    let p = policy(
        ImagePolicyChoice::numerical_asc(),
        Some(TagFilter::new("^build-(.*)$").with_extract("$1")),
    );
    let err = p.latest(["build-7", "build-x"]).unwrap_err().to_string();
    assert!(
        err.contains("\"build-x\"") && err.contains("\"x\" is not a number"),
        "{err}"
    );
}

#[test]
fn timestamp_builds_order_by_their_extracted_timestamp() {
    let filter = TagFilter::new(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$").with_extract("$ts");
    let p = policy(ImagePolicyChoice::numerical_asc(), Some(filter.clone()));
    let tags = "main-3fa2c1-1700000200 main-77b0e9-1700000900 main-0c1d2e-99 latest \
                feature-abc-1800000000 main-XYZ-1900000000";
    assert_eq!(latest(&p, tags).as_deref(), Some("main-77b0e9-1700000900"));
    // Two builds in the same second tie: the byte-wise greatest tag wins.
    assert_eq!(
        latest(
            &p,
            "main-aaa-1700000900 main-bbb-1700000900 main-ccc-1700000100"
        )
        .as_deref(),
        Some("main-bbb-1700000900")
    );
    let p = policy(ImagePolicyChoice::numerical(SortOrder::Desc), Some(filter));
    assert_eq!(latest(&p, tags).as_deref(), Some("main-0c1d2e-99"));

    // `${ts}` and literal text in the template; semver over an extracted version.
    let filter = TagFilter::new(r"^app-(?P<v>[0-9.]+)-linux$").with_extract("${v}");
    let p = policy(ImagePolicyChoice::semver("^1"), Some(filter));
    assert_eq!(
        latest(
            &p,
            "app-1.2.0-linux app-1.10.0-linux app-2.0.0-linux app-1.3-linux"
        )
        .as_deref(),
        Some("app-1.10.0-linux")
    );
    let filter = TagFilter::new(r"^r(\d+)$").with_extract("1.$1.0");
    let p = policy(ImagePolicyChoice::semver("~1.4"), Some(filter));
    assert_eq!(latest(&p, "r3 r4 r5").as_deref(), Some("r4"));
    // An empty template is no template, as in Flux.
    let filter = TagFilter::new("^v").with_extract("");
    let p = policy(ImagePolicyChoice::semver("*"), Some(filter));
    assert_eq!(latest(&p, "v1.0.0 2.0.0").as_deref(), Some("v1.0.0"));
}

#[test]
fn explanations_give_every_rejected_tag_a_reason() {
    let filter = TagFilter::new("^v?[0-9]");
    let p = policy(ImagePolicyChoice::semver(">=1.0.0 <2.0.0"), Some(filter));
    let tags = [
        "latest",
        "1.187",
        "2.0.0",
        "1.5.0-rc.1",
        "1.4.0",
        "v1.4.0",
        "1.2.0",
    ]
    .map(Candidate::new);
    let d = p.select(&SelectInput::new(Current::tag("1.2.0"), &tags).explained());
    assert_eq!(d.tag(), Some("v1.4.0"));
    let explanation = d.explanation.unwrap();
    assert_eq!(explanation.chosen.as_deref(), Some("v1.4.0"));
    let reasons: Vec<(String, String)> = explanation
        .rejected
        .iter()
        .map(|r| (r.tag.clone(), r.reason.to_string()))
        .collect();
    let expected = [
        ("latest", "does not match filter /^v?[0-9]/"),
        (
            "1.187",
            "not a strict semver version (MAJOR.MINOR.PATCH[-PRE][+BUILD], optionally after one `v`)",
        ),
        ("2.0.0", "outside range >=1.0.0 <2.0.0"),
        (
            "1.5.0-rc.1",
            "pre-release, and range >=1.0.0 <2.0.0 names no pre-release",
        ),
        ("1.4.0", "ties with v1.4.0, which is preferred"),
        ("1.2.0", "v1.4.0 is newer"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(t, r)| (t.to_string(), r.to_string()))
        .collect();
    assert_eq!(reasons, expected);

    // Already on the latest: nothing to do, and the note says so.
    let d = p.select(&SelectInput::new(Current::tag("v1.4.0"), &tags).explained());
    assert_eq!(d.tag(), None);
    let explanation = d.explanation.unwrap();
    assert_eq!(
        explanation.note.as_deref(),
        Some("the current tag v1.4.0 is the latest")
    );
    assert!(explanation.rejected.iter().any(|r| r.tag == "v1.4.0"
        && r.reason
            == Reason::NotNewer {
                current: "v1.4.0".into()
            }));
    assert_eq!(explanation.rejected.len(), tags.len());

    // Without `explained`, no explanation is built.
    let d = p.select(&SelectInput::new(Current::none(), &tags));
    assert!(d.explanation.is_none());
}

#[test]
fn admits_applies_only_the_filter() {
    let p = policy(
        ImagePolicyChoice::numerical_asc(),
        Some(TagFilter::new("^[0-9]")),
    );
    assert!(p.admits("12"));
    assert!(p.admits("1.2.3"));
    assert!(!p.admits("latest"));
    let p = semver("^1");
    assert!(p.admits("latest"));
    assert_eq!(p.summary(), "flux semver:^1");

    // The pipeline holds policies as `Arc<dyn Policy>`.
    let shared: std::sync::Arc<dyn Policy> = std::sync::Arc::new(p);
    let tags = ["1.0.0", "1.5.0"].map(Candidate::new);
    let d = shared.select(&SelectInput::new(Current::tag("1.0.0"), &tags));
    assert_eq!(d.tag(), Some("1.5.0"));
}

/// The parse error inside an `Error::InvalidInput`.
fn invalid(choice: ImagePolicyChoice, filter: Option<TagFilter>) -> ParseError {
    match FluxPolicy::new(choice, filter) {
        Err(Error::InvalidInput(e)) => e,
        Err(other) => panic!("not InvalidInput: {other}"),
        Ok(p) => panic!("accepted: {p}"),
    }
}

#[test]
fn bad_specs_name_the_field_and_the_fault() {
    let e = invalid(ImagePolicyChoice::default(), None);
    assert_eq!(e.kind(), "spec.policy");
    assert_eq!(
        e.reason(),
        "exactly one of semver, alphabetical or numerical must be set, and none is"
    );

    let both = ImagePolicyChoice {
        numerical: ImagePolicyChoice::numerical_asc().numerical,
        ..ImagePolicyChoice::semver("*")
    };
    let e = invalid(both, None);
    assert_eq!(e.kind(), "spec.policy");
    assert_eq!(
        e.to_string(),
        "invalid spec.policy \"semver, numerical\": exactly one of semver, alphabetical or \
         numerical must be set, and semver and numerical are"
    );

    let e = invalid(ImagePolicyChoice::semver(">=1.0 <abc"), None);
    assert_eq!(e.kind(), "spec.policy.semver.range");
    assert_eq!(e.input(), ">=1.0 <abc");
    assert_eq!(e.span(), Some((7, 10)));
    assert!(e.reason().contains("`abc`"), "{e}");

    // `~*`, `^*` and `1.x.3` are among the documented differences from Masterminds.
    for range in [
        "",
        "   ",
        "~*",
        "^*",
        "1.x.3",
        ">=1.0.0 ||",
        "1.2.3.4",
        "=>1.0.0 <<2",
    ] {
        let e = invalid(ImagePolicyChoice::semver(range), None);
        assert_eq!(e.kind(), "spec.policy.semver.range", "{range:?}");
        assert_eq!(e.input(), range);
    }

    let e = invalid(
        ImagePolicyChoice::numerical_asc(),
        Some(TagFilter::new("^main-(")),
    );
    assert_eq!(e.kind(), "spec.filterTags.pattern");
    assert_eq!(e.reason(), "bad regular expression: unclosed group");

    let e = invalid(
        ImagePolicyChoice::numerical_asc(),
        Some(TagFilter::new("^main-([0-9]+)$").with_extract("$2")),
    );
    assert_eq!(e.kind(), "spec.filterTags.extract");
    assert_eq!(e.input(), "$2");
    assert!(e.reason().contains("group `2`"), "{e}");

    let e = invalid(
        ImagePolicyChoice::numerical_asc(),
        Some(TagFilter::new("^main-(?P<ts>[0-9]+)$").with_extract("${ts")),
    );
    assert_eq!(e.kind(), "spec.filterTags.extract");
    assert!(e.reason().contains("unclosed"), "{e}");

    // Group references that exist are fine: by number, by name, braced, with literal text.
    for template in ["$1", "$ts", "${ts}", "build-${ts}.0", "$$literal$1", ""] {
        let filter = TagFilter::new("^main-(?P<ts>[0-9]+)$").with_extract(template);
        assert!(
            FluxPolicy::new(ImagePolicyChoice::numerical_asc(), Some(filter)).is_ok(),
            "{template:?}"
        );
    }
}

#[test]
fn specs_deserialize_from_flux_objects() {
    let spec: serde_json::Value = serde_json::from_str(
        r#"{
            "imageRepositoryRef": {"name": "podinfo"},
            "filterTags": {"pattern": "^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "extract": "$ts"},
            "policy": {"numerical": {"order": "desc"}}
        }"#,
    )
    .unwrap();
    let choice: ImagePolicyChoice = serde_json::from_value(spec["policy"].clone()).unwrap();
    let filter: TagFilter = serde_json::from_value(spec["filterTags"].clone()).unwrap();
    assert_eq!(choice, ImagePolicyChoice::numerical(SortOrder::Desc));
    assert_eq!(filter.extract.as_deref(), Some("$ts"));
    let p = FluxPolicy::new(choice, Some(filter)).unwrap();
    assert_eq!(
        p.to_string(),
        "flux numerical:desc, filter /^main-[a-f0-9]+-(?P<ts>[0-9]+)$/ extract $ts"
    );

    let choice: ImagePolicyChoice =
        serde_json::from_str(r#"{"alphabetical": {"order": "asc"}}"#).unwrap();
    assert_eq!(choice, ImagePolicyChoice::alphabetical(SortOrder::Asc));
    let choice: ImagePolicyChoice = serde_json::from_str(r#"{"alphabetical": {}}"#).unwrap();
    assert_eq!(choice, ImagePolicyChoice::alphabetical(SortOrder::Asc));
    assert!(
        serde_json::from_str::<ImagePolicyChoice>(r#"{"numerical": {"order": "up"}}"#).is_err()
    );
    assert!(serde_json::from_str::<ImagePolicyChoice>(r#"{"semver": {}}"#).is_err());
    let filter: TagFilter = serde_json::from_str(r#"{"pattern": "^v"}"#).unwrap();
    assert_eq!(filter, TagFilter::new("^v"));
    // Round trip, with Flux's key names.
    let json = serde_json::to_string(&ImagePolicyChoice::semver("^1")).unwrap();
    assert_eq!(json, r#"{"semver":{"range":"^1"}}"#);
}
