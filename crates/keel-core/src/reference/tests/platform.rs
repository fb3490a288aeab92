//! Tests of [`Platform`](crate::reference::Platform).

use super::*;

fn platform(s: &str) -> Platform {
    Platform::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn platforms_parse_and_round_trip() {
    let cases = [
        ("linux/amd64", "linux", "amd64", None, "linux/amd64"),
        (
            "linux/arm64/v8",
            "linux",
            "arm64",
            Some("v8"),
            "linux/arm64/v8",
        ),
        ("linux/arm/v7", "linux", "arm", Some("v7"), "linux/arm/v7"),
        ("windows/amd64", "windows", "amd64", None, "windows/amd64"),
        ("Linux/AARCH64", "linux", "arm64", None, "linux/arm64"),
        ("linux/x86_64", "linux", "amd64", None, "linux/amd64"),
        (
            "linux/x86-64/V2",
            "linux",
            "amd64",
            Some("v2"),
            "linux/amd64/v2",
        ),
        ("linux/ppc64le", "linux", "ppc64le", None, "linux/ppc64le"),
    ];
    for (input, os, arch, variant, display) in cases {
        let p = platform(input);
        assert_eq!(
            (p.os(), p.architecture(), p.variant()),
            (os, arch, variant),
            "{input:?}"
        );
        assert_eq!(p.to_string(), display);
        assert_eq!(platform(display), p);
        assert_eq!(input.parse::<Platform>().as_ref(), Ok(&p));
    }
    assert_eq!(
        Platform::new("linux", "aarch64", Some("v8")).unwrap(),
        platform("linux/arm64/v8")
    );
    assert_eq!(
        Platform::new("linux", "amd64", None).unwrap(),
        platform("linux/amd64")
    );
    let json = serde_json::to_string(&platform("linux/arm/v7")).unwrap();
    assert_eq!(json, r#""linux/arm/v7""#);
    assert_eq!(
        serde_json::from_str::<Platform>(&json).unwrap(),
        platform("linux/arm/v7")
    );
}

#[test]
fn platform_matching_fills_default_variants() {
    let m = |a: &str, b: &str| {
        let (a, b) = (platform(a), platform(b));
        assert_eq!(a.matches(&b), b.matches(&a), "symmetric");
        a.matches(&b)
    };
    assert!(m("linux/arm64", "linux/arm64/v8"));
    assert!(m("linux/arm", "linux/arm/v7"));
    assert!(m("linux/amd64", "linux/amd64/v1"));
    assert!(m("linux/amd64", "linux/x86_64"));
    assert!(m("linux/arm64", "linux/aarch64"));
    assert!(m("linux/ppc64le", "linux/ppc64le"));
    assert!(!m("linux/arm/v6", "linux/arm/v7"));
    assert!(!m("linux/arm", "linux/arm/v6"));
    assert!(!m("linux/arm64", "linux/amd64"));
    assert!(!m("linux/amd64", "windows/amd64"));
    assert!(!m("linux/amd64", "linux/amd64/v2"));
    assert!(!m("linux/ppc64le", "linux/ppc64le/v1"));
}

#[test]
fn platform_errors() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("", "platform must not be empty", None),
        ("linux", "the architecture is missing", Some("")),
        ("/amd64", "platform os must not be empty", Some("")),
        (
            "linux/",
            "platform architecture must not be empty",
            Some(""),
        ),
        ("linux/arm/", "platform variant must not be empty", Some("")),
        (
            "linux/arm/v7/x",
            "platform must be os/architecture[/variant], got 4 parts",
            Some("x"),
        ),
        (
            "linux/am d64",
            "platform architecture may contain only letters, digits",
            Some(" "),
        ),
        ("lin:ux/amd64", "platform os may contain only", Some(":")),
        (
            "linux/arm/vé",
            "platform variant may contain only",
            Some("é"),
        ),
    ];
    for &(input, rule, bad) in cases {
        let e = Platform::parse(input).expect_err(input);
        assert_eq!(e.kind(), "platform");
        assert_eq!(assert_error(&e, input, rule), bad, "{input:?}");
    }
    let e = Platform::new("linux", "arm/64", None).unwrap_err();
    assert!(e.to_string().contains("found '/'"), "{e}");
}
