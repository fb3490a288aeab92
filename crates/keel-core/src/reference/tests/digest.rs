//! Tests of [`Digest`](crate::reference::Digest).

use super::*;

#[test]
fn valid_digests() {
    let d = Digest::new(sha256()).unwrap();
    assert_eq!(d.algorithm(), "sha256");
    assert_eq!(d.hex(), HEX64);
    assert_eq!(d.encoded(), HEX64);
    assert_eq!(d.as_str(), sha256());
    assert_eq!(d.to_string(), sha256());

    let d: Digest = sha512().parse().unwrap();
    assert_eq!(d.algorithm(), "sha512");
    assert_eq!(d.hex().len(), 128);

    let other = "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8";
    let d = Digest::new(other).unwrap();
    assert_eq!(d.algorithm(), "multihash+base58");
    assert_eq!(
        d.encoded(),
        "QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
    );
    assert!(Digest::new(format!("blake3:{HEX64}")).is_ok());
    assert!(Digest::new(format!("x.y_z-w:{}", "A=_-".repeat(8))).is_ok());
}

#[test]
fn digest_error_message_is_exact() {
    let e = Digest::new("sha256:abc").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid digest "sha256:abc": sha256 digest must be 64 lower-case hex characters, got 3 (at byte 7: "abc")"#
    );
    assert_eq!(e.span(), Some((7, 10)));
}

#[test]
fn invalid_digests_name_the_rule() {
    let upper = format!("sha256:{}", HEX64.to_uppercase());
    let short512 = format!("sha512:{HEX64}");
    let upper_algo = format!("SHA256:{HEX64}");
    let empty_component = format!("sha256+:{HEX64}");
    let bad_char = format!("foo:{}!", "a".repeat(40));
    let colon_in_encoded = format!("sha256:{}:{}", &HEX64[..31], &HEX64[32..]);
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("", "digest must not be empty", None),
        (
            "sha256",
            "digest must be <algorithm>:<encoded>, found no ':'",
            None,
        ),
        (":abc", "digest algorithm must not be empty", Some("")),
        (
            &upper,
            "sha256 digest must be 64 lower-case hex characters, found 'A'",
            Some("A"),
        ),
        (
            &short512,
            "sha512 digest must be 128 lower-case hex characters, got 64",
            Some(HEX64),
        ),
        (
            &upper_algo,
            "digest algorithm must be lower-case letters and digits",
            Some("SHA256"),
        ),
        (
            &empty_component,
            "digest algorithm must be",
            Some("sha256+"),
        ),
        (
            "sha256:",
            "digest must have an encoded part after 'sha256:'",
            Some(""),
        ),
        (
            &bad_char,
            "digest encoded part may contain only letters, digits, '=', '_' and '-', found '!'",
            Some("!"),
        ),
        (
            "foo:abcdef",
            "foo digest must have at least 32 characters of encoded part, got 6",
            Some("abcdef"),
        ),
        (
            &colon_in_encoded,
            "sha256 digest must be 64 lower-case hex characters, found ':'",
            Some(":"),
        ),
    ];
    for (input, rule, bad) in cases {
        let e = Digest::new(input).expect_err(input);
        assert_eq!(e.kind(), "digest");
        assert_eq!(assert_error(&e, input, rule), bad, "{input:?}");
    }
}

#[test]
fn digest_traits_and_serde() {
    let d = Digest::new(sha256()).unwrap();
    let set: HashSet<Digest> = [d.clone()].into();
    assert!(set.contains(sha256().as_str()));
    let r: &str = d.as_ref();
    assert_eq!(r, sha256());
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(json, format!("\"{}\"", sha256()));
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    let e = serde_json::from_str::<Digest>(r#""sha256:abc""#).unwrap_err();
    assert!(e.to_string().contains("must be 64 lower-case hex"), "{e}");
}
