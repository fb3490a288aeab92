//! Properties of the grammars, against independent generators.

use super::*;
use std::net::Ipv6Addr;

/// The tag grammar written out independently of `is_valid_tag`'s byte table.
fn tag_by_hand(s: &str) -> bool {
    let word = |c: char| {
        c.is_ascii_uppercase() || c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    };
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let mut count = 1;
    for c in chars {
        if !(word(c) || c == '.' || c == '-') {
            return false;
        }
        count += 1;
    }
    word(first) && count <= 128
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-zA-Z0-9-]{0,6}[a-z0-9])?"
}

fn port() -> impl Strategy<Value = Option<u16>> {
    prop::option::of(any::<u16>())
}

fn with_port(host: String, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// A registry as written, or none.
fn registry() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => (prop::collection::vec(label(), 2..4), port()).prop_map(|(l, p)| Some(with_port(l.join("."), p))),
        1 => (label(), any::<u16>()).prop_map(|(l, p)| Some(format!("{l}:{p}"))),
        1 => port().prop_map(|p| Some(with_port("localhost".into(), p))),
        1 => (any::<[u8; 4]>(), port()).prop_map(|(a, p)| Some(with_port(std::net::Ipv4Addr::from(a).to_string(), p))),
        1 => (any::<[u16; 8]>(), port()).prop_map(|(a, p)| Some(with_port(format!("[{}]", Ipv6Addr::from(a)), p))),
        1 => ("[A-Z][a-zA-Z0-9]{0,5}", port()).prop_map(|(h, p)| Some(with_port(h, p))),
        1 => prop::sample::select(vec!["docker.io", "index.docker.io", "registry-1.docker.io"]).prop_map(|s| Some(s.to_owned())),
    ]
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}"
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
        (
            "[a-z0-9]{1,6}([+._-][a-z0-9]{1,4}){0,2}",
            "[a-zA-Z0-9=_-]{32,48}"
        )
            .prop_map(|(a, e)| {
                let a = if a == "sha256" || a == "sha512" {
                    format!("x{a}")
                } else {
                    a
                };
                format!("{a}:{e}")
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_references_parse_normalise_and_round_trip(
        registry in registry(),
        path in prop::collection::vec(component(), 1..=4),
        tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in prop::option::of(digest()),
    ) {
        let mut input = match &registry {
            Some(r) => format!("{r}/{}", path.join("/")),
            None => path.join("/"),
        };
        if let Some(t) = &tag { input = format!("{input}:{t}"); }
        if let Some(d) = &digest { input = format!("{input}@{d}"); }

        // A first component with '.' is a registry host; with '_' it is not a valid one.
        let first_is_host = registry.is_none() && path.len() > 1 && (path[0].contains('.') || path[0] == "localhost");
        if first_is_host && path[0].contains('_') {
            let e = ImageRef::parse(&input).err().map(|e| e.to_string()).unwrap_or_default();
            prop_assert!(e.contains("registry host label"), "{:?}: {:?}", input, e);
            return Ok(());
        }

        // What Docker's rules make of it.
        let (exp_registry, exp_path) = match &registry {
            Some(r) if r == "index.docker.io" || r == "registry-1.docker.io" => ("docker.io".to_owned(), path.join("/")),
            Some(r) => (r.clone(), path.join("/")),
            None if first_is_host => (path[0].clone(), path[1..].join("/")),
            None => ("docker.io".to_owned(), path.join("/")),
        };
        let exp_path = if exp_registry == "docker.io" && !exp_path.contains('/') { format!("library/{exp_path}") } else { exp_path };
        let exp_tag = match (&tag, &digest) { (None, None) => Some("latest".to_owned()), _ => tag.clone() };

        let r = ImageRef::parse(&input).map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
        prop_assert_eq!(r.registry(), exp_registry.as_str());
        prop_assert_eq!(r.repository(), exp_path.as_str());
        prop_assert_eq!(r.tag().map(Tag::as_str), exp_tag.as_deref());
        prop_assert_eq!(r.digest().map(Digest::as_str), digest.as_deref());

        let shown = r.to_string();
        let again = ImageRef::parse(&shown).map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.to_string(), shown);
        let familiar = r.familiar();
        prop_assert_eq!(ImageRef::parse(&familiar).ok(), Some(r.clone()), "familiar {:?}", familiar);
        let json = serde_json::to_string(&r).unwrap();
        prop_assert_eq!(serde_json::from_str::<ImageRef>(&json).ok(), Some(r));
    }

    #[test]
    fn tag_validation_matches_the_grammar(s in "[A-Za-z0-9_.:é -]{0,8}|[A-Za-z0-9_][A-Za-z0-9_.-]{120,135}|\\PC{0,20}") {
        let expected = tag_by_hand(&s);
        prop_assert_eq!(is_valid_tag(&s), expected, "{:?}", s);
        match Tag::new(s.clone()) {
            Ok(tag) => {
                prop_assert!(expected, "{:?} accepted", s);
                prop_assert_eq!(tag.as_str(), s.as_str());
            }
            Err(e) => {
                prop_assert!(!expected, "{:?} rejected: {}", s, e);
                let message = e.to_string();
                let quoted = format!("{s:?}");
                prop_assert!(message.contains(&quoted));
                prop_assert!(message.contains("tag must") || message.contains("tag may"), "{}", message);
            }
        }
    }

    #[test]
    fn parse_never_panics_and_what_parses_round_trips(
        s in "\\PC{0,40}|[a-zA-Z0-9:/@._\\[\\]+=-]{0,60}|[a-z./:-]{1,12}/[a-z0-9._-]{1,12}(:[a-z0-9.-]{0,5})?",
    ) {
        match ImageRef::parse(&s) {
            Ok(r) => {
                let shown = r.to_string();
                prop_assert_eq!(ImageRef::parse(&shown).ok(), Some(r.clone()), "{:?} -> {:?}", s, shown);
                prop_assert!(r.tag().is_some() || r.digest().is_some());
                prop_assert!(r.name().len() <= MAX_NAME_LEN);
            }
            Err(e) => {
                prop_assert_eq!(e.input(), s.as_str());
                if let Some((start, end)) = e.span() {
                    prop_assert!(s.get(start..end).is_some(), "span {:?} of {:?}", (start, end), s);
                }
                let prefix = format!("invalid image reference {s:?}: ");
                prop_assert!(e.to_string().starts_with(&prefix));
            }
        }
    }

    #[test]
    fn digests_and_platforms_round_trip(
        d in digest(),
        os in "[a-zA-Z][a-zA-Z0-9]{0,7}",
        arch in "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,7}",
        variant in prop::option::of("[a-zA-Z0-9.]{1,4}"),
    ) {
        let digest = Digest::new(d.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(digest.to_string(), d.clone());
        prop_assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), d);

        let p = Platform::new(&os, &arch, variant.as_deref()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.os(), os.to_ascii_lowercase());
        prop_assert_eq!(Platform::parse(&p.to_string()).ok(), Some(p.clone()));
        prop_assert!(p.matches(&p));
    }
}
