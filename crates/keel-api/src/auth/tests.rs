//! Tests of authentication: tokens, roles, voters and their errors.

use super::*;

fn headers(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    h
}

fn basic(user: &str, pass: &str) -> String {
    let raw = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn auth() -> ApiAuth {
    ApiAuth::builder()
        .basic_user("alice", "pw-a")
        .bearer_token("ci", "tok-ci")
        .with_role("ci", Role::Reader)
        .delegate_token("slack", "tok-slack")
        .delegate_voters("slack", ["T1/U1", "T2/*"])
        .build()
        .unwrap()
}

fn who(p: Option<Principal>) -> Option<(String, CredentialKind, Role)> {
    p.map(|p| (p.name().to_owned(), p.kind(), p.role()))
}

#[test]
fn accepts_each_kind_and_refuses_wrong_ones() {
    let a = auth();
    assert_eq!(
        who(a.authenticate(&headers(&basic("alice", "pw-a")))),
        Some(("alice".into(), CredentialKind::Basic, Role::Admin))
    );
    assert_eq!(a.authenticate(&headers(&basic("alice", "pw-b"))), None);
    assert_eq!(a.authenticate(&headers(&basic("bob", "pw-a"))), None);
    assert_eq!(
        who(a.authenticate(&headers("Bearer tok-ci"))),
        Some(("ci".into(), CredentialKind::Bearer, Role::Reader))
    );
    assert_eq!(
        who(a.authenticate(&headers("bearer tok-slack"))),
        Some(("slack".into(), CredentialKind::Delegate, Role::Approver))
    );
    assert_eq!(a.authenticate(&headers("Bearer tok-c")), None);
    assert_eq!(a.authenticate(&headers("Bearer ")), None);
    assert_eq!(a.authenticate(&headers("Digest tok-ci")), None);
    assert_eq!(a.authenticate(&HeaderMap::new()), None);
}

#[test]
fn refuses_empty_and_bad_sets() {
    assert!(ApiAuth::builder().build().is_err());
    assert!(ApiAuth::builder().bearer_token("a", "").build().is_err());
    assert!(ApiAuth::builder().bearer_token("", "x").build().is_err());
    assert!(ApiAuth::builder().bearer_token("a:b", "x").build().is_err());
    let dup = ApiAuth::builder()
        .bearer_token("a", "x")
        .basic_user("a", "y")
        .build()
        .unwrap_err();
    assert!(dup.to_string().contains("more than one"), "{dup}");
}

#[test]
fn spec_errors_never_show_the_secret() {
    let e = ApiAuth::builder()
        .parse_spec("token:ci:hunter2")
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.to_string().contains("basic, bearer or delegate"), "{e}");
    let e = ApiAuth::builder().parse_spec("hunter2").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn acting_as_binds_voters() {
    let a = auth();
    let user = a.authenticate(&headers(&basic("alice", "pw-a"))).unwrap();
    assert_eq!(user.acting_as(None, "vote").unwrap(), "alice");
    assert_eq!(user.acting_as(Some("alice"), "vote").unwrap(), "alice");
    assert!(matches!(
        user.acting_as(Some("bob"), "vote"),
        Err(Error::Unauthorized { .. })
    ));
    let bot = a.authenticate(&headers("Bearer tok-slack")).unwrap();
    assert_eq!(bot.acting_as(Some("T1/U1"), "vote").unwrap(), "slack:T1/U1");
    assert_eq!(bot.acting_as(Some("T2/U9"), "vote").unwrap(), "slack:T2/U9");
    for outsider in ["T1/U2", "T2/", "T3/U1", "U1"] {
        let e = bot.acting_as(Some(outsider), "vote").unwrap_err();
        assert!(
            matches!(&e, Error::Unauthorized { .. }) && e.to_string().contains(outsider),
            "{outsider}: {e}"
        );
    }
    assert!(matches!(
        bot.acting_as(None, "vote"),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn roles_include_the_ones_below() {
    let a = auth();
    let reader = a.authenticate(&headers("Bearer tok-ci")).unwrap();
    assert!(reader.require(Role::Reader, "list").is_ok());
    let e = reader
        .require(Role::Approver, "approve request x")
        .unwrap_err();
    assert!(e.to_string().contains("\"ci\" has the role reader"), "{e}");
    let bot = a.authenticate(&headers("Bearer tok-slack")).unwrap();
    assert!(bot.require(Role::Approver, "vote").is_ok());
    assert!(bot.require(Role::Admin, "delete").is_err());
    let admin = a.authenticate(&headers(&basic("alice", "pw-a"))).unwrap();
    assert!(admin.require(Role::Admin, "delete").is_ok());
}

#[test]
fn delegates_need_voters_and_sane_patterns() {
    let base = || ApiAuth::builder().delegate_token("slack", "t");
    let e = base().build().unwrap_err().to_string();
    assert!(e.contains("slack") && e.contains("no voters"), "{e}");
    for bad in ["*", " * ", "T1/*/U1", "T1 U1"] {
        let e = base().delegate_voters("slack", [bad]).build().unwrap_err();
        assert!(
            e.to_string().contains("delegate voter pattern"),
            "{bad}: {e}"
        );
    }
    let token = || ApiAuth::builder().bearer_token("ci", "t");
    for (builder, needle) in [
        (
            base()
                .delegate_voters("slack", ["T1/*"])
                .delegate_voters("teams", ["x"]),
            "\"teams\"",
        ),
        (
            token().delegate_voters("ci", ["x"]),
            "no configured delegate",
        ),
        (token().with_role("cd", Role::Reader), "\"cd\""),
    ] {
        let e = builder.build().unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

#[test]
fn specs_carry_roles_and_voters() {
    let a = ApiAuth::builder()
        .parse_spec("bearer/reader:dash:tok-dash,basic/approver:bob:pw-b,delegate:slack:tok-s")
        .unwrap()
        .parse_delegate_voters("slack=T1/U1, T2/*")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        who(a.authenticate(&headers("Bearer tok-dash"))),
        Some(("dash".into(), CredentialKind::Bearer, Role::Reader))
    );
    assert_eq!(
        who(a.authenticate(&headers(&basic("bob", "pw-b")))),
        Some(("bob".into(), CredentialKind::Basic, Role::Approver))
    );
    let bot = a.authenticate(&headers("Bearer tok-s")).unwrap();
    assert!(bot.acting_as(Some("T2/U7"), "vote").is_ok());
    let e = ApiAuth::builder()
        .parse_spec("bearer/root:ci:hunter2")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reader, approver or admin") && !e.contains("hunter2"),
        "{e}"
    );
    let e = ApiAuth::builder()
        .parse_delegate_voters("slack")
        .unwrap_err()
        .to_string();
    assert!(e.contains("<delegate name>="), "{e}");
}
