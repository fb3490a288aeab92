//! Tests of the scanner's comment and marker parsing.

use super::*;

#[test]
fn line_comments() {
    let text = "a: x # c1\nb: {t: y} # c2\nc: z#no\nd: w,  # c3\r\n";
    let at = |s: &str| text.find(s).unwrap() + s.len();
    assert_eq!(line_comment(text, at("a: x")), Some("c1"));
    assert_eq!(line_comment(text, at("t: y")), Some("c2"));
    assert_eq!(line_comment(text, at("c: z")), None);
    assert_eq!(line_comment(text, at("d: w")), Some("c3"));
    assert_eq!(line_comment(text, at("{t")), None);
}

#[test]
fn marks() {
    let flux = |c: &str| match parse_mark(c) {
        Some(Mark::Flux { name, part }) => Some((name, part)),
        _ => None,
    };
    assert_eq!(
        flux(r#"{"$imagepolicy": "flux-system:app"}"#),
        Some(("flux-system:app".into(), Part::Whole))
    );
    assert_eq!(
        flux("{ \"$imagepolicy\" :\t\"ns:app:tag\" }"),
        Some(("ns:app".into(), Part::Tag))
    );
    assert!(matches!(
        parse_mark(r#"{"$imagepolicy": "ns:app:version"}"#),
        Some(Mark::BadFlux(_))
    ));
    assert!(matches!(
        parse_mark(r#"{"$imagepolicy": "ns:app""#),
        Some(Mark::BadFlux(_))
    ));
    assert!(parse_mark("{just: a comment}").is_none());
    let Some(Mark::Keel(keys)) =
        parse_mark("keel.sh/policy: semver:>=1.0 <2.0, keel.sh/trigger=poll")
    else {
        panic!("not a keel comment");
    };
    assert_eq!(keys["keel.sh/policy"], "semver:>=1.0 <2.0");
    assert_eq!(keys["keel.sh/trigger"], "poll");
}

#[test]
fn manifest_paths() {
    assert!(is_manifest_path("apps/web.yaml"));
    assert!(is_manifest_path("apps/web.YML"));
    assert!(is_manifest_path("base/Kustomization"));
    assert!(!is_manifest_path("README.md"));
}
