//! Tests of [`ImageRef`](crate::reference::ImageRef).

use super::*;

// ----- ImageRef: examples -----

fn assert_ref(
    input: &str,
    registry: &str,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    display: &str,
) {
    let r = parse(input);
    assert_eq!(r.registry(), registry, "{input:?}");
    assert_eq!(r.repository(), repository, "{input:?}");
    assert_eq!(r.tag().map(Tag::as_str), tag, "{input:?}");
    assert_eq!(r.digest().map(Digest::as_str), digest, "{input:?}");
    assert_eq!(r.to_string(), display, "{input:?}");
    assert_eq!(r.name(), format!("{registry}/{repository}"));
    assert_eq!(parse(display), r, "{input:?} round trip");
    assert_eq!(input.parse::<ImageRef>().as_ref(), Ok(&r));
}

#[test]
fn docker_hub_short_and_qualified_names() {
    #[rustfmt::skip]
    let cases = [
        // (input, registry, repository, tag, digest, display)
        // Docker Hub short names.
        ("nginx",                                   "docker.io",                "library/nginx",     Some("latest"), None, "docker.io/library/nginx:latest"),
        ("nginx:1.25",                              "docker.io",                "library/nginx",     Some("1.25"),   None, "docker.io/library/nginx:1.25"),
        ("bitnami/redis",                           "docker.io",                "bitnami/redis",     Some("latest"), None, "docker.io/bitnami/redis:latest"),
        ("library/nginx",                           "docker.io",                "library/nginx",     Some("latest"), None, "docker.io/library/nginx:latest"),
        ("docker.io/nginx",                         "docker.io",                "library/nginx",     Some("latest"), None, "docker.io/library/nginx:latest"),
        ("index.docker.io/library/redis:7",         "docker.io",                "library/redis",     Some("7"),      None, "docker.io/library/redis:7"),
        ("registry-1.docker.io/redis:7",            "docker.io",                "library/redis",     Some("7"),      None, "docker.io/library/redis:7"),
        ("a/b/c/d",                                 "docker.io",                "a/b/c/d",           Some("latest"), None, "docker.io/a/b/c/d:latest"),
        // Docker reads a lone `host:port` as name and tag.
        ("localhost:5000",                          "docker.io",                "library/localhost", Some("5000"),   None, "docker.io/library/localhost:5000"),
        // Qualified names.
        ("localhost:5000/a/b:1.0",                  "localhost:5000",           "a/b",               Some("1.0"),    None, "localhost:5000/a/b:1.0"),
        ("localhost/app",                           "localhost",                "app",               Some("latest"), None, "localhost/app:latest"),
        ("127.0.0.1:5000/app",                      "127.0.0.1:5000",           "app",               Some("latest"), None, "127.0.0.1:5000/app:latest"),
        ("[::1]:5000/app:1",                        "[::1]:5000",               "app",               Some("1"),      None, "[::1]:5000/app:1"),
        ("[2001:db8::1]/app",                       "[2001:db8::1]",            "app",               Some("latest"), None, "[2001:db8::1]/app:latest"),
        ("registry.example.com:443/team/sub/app:1", "registry.example.com:443", "team/sub/app",      Some("1"),      None, "registry.example.com:443/team/sub/app:1"),
        ("ghcr.io/o/r:1.0",                         "ghcr.io",                  "o/r",               Some("1.0"),    None, "ghcr.io/o/r:1.0"),
        // An upper-case first part is a host (Docker's rule), kept as written.
        ("MyRegistry/app",                          "MyRegistry",               "app",               Some("latest"), None, "MyRegistry/app:latest"),
        ("my-host:80/a.b_c__d---e/f",               "my-host:80",               "a.b_c__d---e/f",    Some("latest"), None, "my-host:80/a.b_c__d---e/f:latest"),
    ];
    for (input, registry, repository, tag, digest, display) in cases {
        assert_ref(input, registry, repository, tag, digest, display);
    }
    assert!(parse("nginx").is_docker_hub());
    assert!(!parse("ghcr.io/o/r").is_docker_hub());
}

#[test]
fn digests_in_references() {
    let (d, d512) = (sha256(), sha512());
    let (d, d512) = (d.as_str(), d512.as_str());
    #[rustfmt::skip]
    let cases = [
        (&format!("ghcr.io/o/r@{d}"),            "ghcr.io",        "o/r",           None,           Some(d),     &format!("ghcr.io/o/r@{d}")),
        (&format!("quay.io/org/app:v1.2.3@{d}"), "quay.io",        "org/app",       Some("v1.2.3"), Some(d),     &format!("quay.io/org/app:v1.2.3@{d}")),
        (&format!("nginx@{d}"),                  "docker.io",      "library/nginx", None,           Some(d),     &format!("docker.io/library/nginx@{d}")),
        (&format!("localhost:5000/a@{d}"),       "localhost:5000", "a",             None,           Some(d),     &format!("localhost:5000/a@{d}")),
        (&format!("repo:1.0@{d512}"),            "docker.io",      "library/repo",  Some("1.0"),    Some(d512),  &format!("docker.io/library/repo:1.0@{d512}")),
    ];
    for (input, registry, repository, tag, digest, display) in cases {
        assert_ref(input, registry, repository, tag, digest, display);
    }
}

// ----- ImageRef: errors -----

#[test]
fn upper_case_repository_is_an_error_pointing_at_the_path() {
    let e = parse_err("Nginx");
    assert_eq!(
        e.to_string(),
        r#"invalid image reference "Nginx": repository name must be lower-case"#
    );
    assert_eq!(e.span(), Some((0, 5)));
    let e = parse_err("ghcr.io/Org/App:1");
    assert_eq!(
        assert_error(
            &e,
            "ghcr.io/Org/App:1",
            "repository name must be lower-case"
        ),
        Some("Org/App")
    );
    let e = parse_err("docker.io/Nginx");
    assert_eq!(
        assert_error(&e, "docker.io/Nginx", "repository name must be lower-case"),
        Some("Nginx")
    );
}

#[test]
fn reference_errors_name_input_rule_and_span() {
    let long = format!("example.com/{}/{}", "a".repeat(200), "b".repeat(43));
    let long_input = format!("{long}:1");
    let digest_only = format!("@{}", sha256());
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("",                 "image reference must not be empty",                                      None),
        (HEX64,              "must not be a 64-character hex string",                                  None),
        ("nginx:",           "tag must not be empty",                                                  Some("")),
        ("nginx:-bad",       "tag must start with a letter, digit or '_'",                             Some("-")),
        ("nginx:a!b",        "tag may contain only",                                                   Some("!")),
        ("nginx@sha256:123", "sha256 digest must be 64 lower-case hex characters, got 3",              Some("123")),
        ("nginx@",           "digest must not be empty",                                               Some("")),
        ("nginx@sha256",     "digest must be <algorithm>:<encoded>",                                   Some("sha256")),
        ("a//b",             "repository path component must not be empty",                            Some("//")),
        ("a/b/",             "repository path must not end with '/'",                                  Some("/")),
        ("/a",               "repository path must not start with '/'",                                Some("/")),
        ("a..b",             "invalid separator \"..\" in repository path",                            Some("..")),
        ("a._b",             "invalid separator \"._\"",                                               Some("._")),
        ("a___b",            "invalid separator \"___\"",                                              Some("___")),
        ("a/-b",             "repository path component must start with a lower-case letter or digit", Some("-")),
        ("a/b-",             "repository path component must not end with a separator",                Some("-")),
        ("a/b c",            "repository path may contain only lower-case letters",                    Some(" ")),
        ("a/é",              "repository path may contain only lower-case letters",                    Some("é")),
        ("a:b:c",            "repository path may contain only lower-case letters",                    Some(":")),
        ("host:notaport/x",  "registry port must be digits, got \"notaport\"",                         Some("notaport")),
        ("host:/x",          "registry port must not be empty",                                        Some("")),
        ("host:1:2/x",       "registry port must be digits",                                           Some("1:2")),
        (":5000/x",          "registry host must not be empty",                                        Some("")),
        ("-bad.com/x",       "registry host label \"-bad\" must be letters, digits and '-'",           Some("-bad")),
        ("bad-.com/x",       "registry host label \"bad-\"",                                           Some("bad-")),
        ("a..com/x",         "must not have an empty label",                                           Some("")),
        ("exa_mple.com/x",   "registry host label \"exa_mple\"",                                       Some("exa_mple")),
        ("[::1/x",           "must be an IPv6 address closed by ']'",                                  Some("[::1")),
        ("[::g]:5000/x",     "registry host [::g] is not a valid IPv6 address",                        Some("[::g]")),
        ("[::1]x/y",         "must be followed by ':' and a port, or by '/'",                          Some("x")),
        ("example.com/",     "repository name must not be empty",                                      Some("")),
        (":1.0",             "image reference must start with a repository name",                      Some("")),
        (&digest_only,       "image reference must start with a repository name",                      Some("")),
        (&long_input,        "must be at most 255 characters, got 256",                                Some(long.as_str())),
    ];
    for (input, rule, bad) in cases {
        let e = parse_err(input);
        assert_eq!(e.kind(), "image reference");
        assert_eq!(assert_error(&e, input, rule), bad, "{input:?}: {e}");
    }
}

#[test]
fn a_name_of_exactly_255_characters_is_accepted() {
    let path = "b".repeat(255 - "example.com/".len());
    let r = parse(&format!("example.com/{path}"));
    assert_eq!(r.name().len(), 255);
}

#[test]
fn tag_and_digest_errors_point_into_the_whole_reference() {
    let e = parse_err("nginx:-bad");
    assert_eq!(
        e.to_string(),
        r#"invalid image reference "nginx:-bad": tag must start with a letter, digit or '_', found '-' (at byte 6: "-")"#
    );
    let e = parse_err("nginx@sha256:123");
    assert_eq!(
        e.to_string(),
        r#"invalid image reference "nginx@sha256:123": sha256 digest must be 64 lower-case hex characters, got 3 (at byte 13: "123")"#
    );
    assert_eq!(e.span(), Some((13, 16)));
}

// ----- ImageRef: derived references -----

#[test]
fn with_tag_with_digest_without_digest() {
    let d = Digest::new(sha256()).unwrap();
    let r = parse(&format!("quay.io/org/app:v1@{d}"));
    let retagged = r.with_tag(Tag::new("v2").unwrap());
    assert_eq!(retagged.to_string(), "quay.io/org/app:v2");
    assert_eq!(retagged.digest(), None);

    let pinned = parse("nginx:1.0").with_digest(d.clone());
    assert_eq!(
        pinned.to_string(),
        format!("docker.io/library/nginx:1.0@{d}")
    );
    assert_eq!(pinned.tag().map(Tag::as_str), Some("1.0"));

    assert_eq!(r.without_digest().to_string(), "quay.io/org/app:v1");
    let digest_only = parse(&format!("ghcr.io/o/r@{d}"));
    let unpinned = digest_only.without_digest();
    assert_eq!(unpinned.to_string(), "ghcr.io/o/r:latest");
    assert_eq!(parse(&unpinned.to_string()), unpinned);
    assert_eq!(
        digest_only.with_tag(Tag::new("1").unwrap()).to_string(),
        "ghcr.io/o/r:1"
    );
}

#[test]
fn familiar_forms() {
    let d = sha256();
    let cases = [
        ("nginx:1.0", "nginx:1.0".to_owned()),
        ("nginx", "nginx:latest".to_owned()),
        ("docker.io/library/nginx:1.0", "nginx:1.0".to_owned()),
        ("bitnami/redis:7", "bitnami/redis:7".to_owned()),
        (
            "index.docker.io/bitnami/redis:7",
            "bitnami/redis:7".to_owned(),
        ),
        ("library/a/b:1", "library/a/b:1".to_owned()),
        ("ghcr.io/o/r:1.0", "ghcr.io/o/r:1.0".to_owned()),
        (
            "localhost:5000/a/b:1.0",
            "localhost:5000/a/b:1.0".to_owned(),
        ),
        // Without `docker.io/` these would read as registry hosts.
        ("docker.io/a.b/c:1", "docker.io/a.b/c:1".to_owned()),
        (
            "docker.io/localhost/c:1",
            "docker.io/localhost/c:1".to_owned(),
        ),
        (&*format!("nginx@{d}"), format!("nginx@{d}")),
        (&*format!("ghcr.io/o/r:1@{d}"), format!("ghcr.io/o/r:1@{d}")),
    ];
    for (input, familiar) in cases {
        let r = parse(input);
        assert_eq!(r.familiar(), familiar, "{input:?}");
        assert_eq!(parse(&familiar), r, "{input:?}");
    }
}

#[test]
fn image_ref_serde_and_hash() {
    let r = parse("nginx:1.0");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, r#""docker.io/library/nginx:1.0""#);
    assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), r);
    assert_eq!(
        serde_json::from_str::<ImageRef>(r#""nginx:1.0""#).unwrap(),
        r
    );
    let e = serde_json::from_str::<ImageRef>(r#""Nginx""#).unwrap_err();
    assert!(
        e.to_string().contains("repository name must be lower-case"),
        "{e}"
    );
    let set: HashSet<ImageRef> = [parse("nginx"), parse("docker.io/library/nginx:latest")].into();
    assert_eq!(set.len(), 1);
}
