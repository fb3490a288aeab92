//! Tests of [`Tag`](crate::reference::Tag).

use super::*;

#[test]
fn valid_tags() {
    let max = format!("a{}", "b".repeat(127));
    for s in [
        "latest",
        "1.0",
        "_x",
        "v1.2.3-rc.1",
        "A",
        "9",
        "__",
        "a-",
        "a.",
        &max,
    ] {
        let tag = Tag::new(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(tag.as_str(), s);
        assert_eq!(tag.to_string(), s);
        assert!(is_valid_tag(s), "{s:?}");
        assert_eq!(s.parse::<Tag>().as_ref(), Ok(&tag));
    }
}

#[test]
fn invalid_tags_name_the_rule_and_point_at_it() {
    let too_long = "a".repeat(129);
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("", "tag must not be empty", None),
        (
            "-bad",
            "tag must start with a letter, digit or '_'",
            Some("-"),
        ),
        (
            ".x",
            "tag must start with a letter, digit or '_'",
            Some("."),
        ),
        (
            "a b",
            "tag may contain only letters, digits, '_', '.' and '-'",
            Some(" "),
        ),
        (
            "a:b",
            "tag may contain only letters, digits, '_', '.' and '-'",
            Some(":"),
        ),
        (
            "vé",
            "tag may contain only letters, digits, '_', '.' and '-'",
            Some("é"),
        ),
        (
            &too_long,
            "tag must be at most 128 characters, got 129",
            Some("a"),
        ),
    ];
    for &(input, rule, bad) in cases {
        assert!(!is_valid_tag(input), "{input:?}");
        let e = Tag::new(input).expect_err(input);
        assert_eq!(e.kind(), "tag");
        assert_eq!(assert_error(&e, input, rule), bad, "{input:?}");
    }
    assert_eq!(
        Tag::new("-bad").unwrap_err().to_string(),
        r#"invalid tag "-bad": tag must start with a letter, digit or '_', found '-' (at byte 0: "-")"#
    );
}

#[test]
fn tag_traits() {
    let tag = Tag::new("1.0").unwrap();
    let s: &str = tag.as_ref();
    assert_eq!(s, "1.0");
    let set: HashSet<Tag> = [Tag::new("1.0").unwrap(), Tag::latest()].into();
    assert!(set.contains("latest"));
    assert!(set.contains("1.0"));
    assert!(!set.contains("2.0"));
    assert!(Tag::new("1.0").unwrap() < Tag::new("1.1").unwrap());
    assert_eq!(tag, "1.0");
    assert_eq!(Tag::latest().as_str(), "latest");
    assert_eq!(tag.clone().into_string(), "1.0");
}

#[test]
fn tag_serde_is_a_validated_string() {
    let tag = Tag::new("v1").unwrap();
    assert_eq!(serde_json::to_string(&tag).unwrap(), r#""v1""#);
    assert_eq!(serde_json::from_str::<Tag>(r#""v1""#).unwrap(), tag);
    let e = serde_json::from_str::<Tag>(r#""-v1""#).unwrap_err();
    assert!(e.to_string().contains("tag must start with"), "{e}");
    assert!(serde_json::from_str::<Tag>("1").is_err());
}
