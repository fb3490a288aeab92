//! Fuzzes the registry client's `WWW-Authenticate` parser.
//!
//! Checked: no panic; a bearer challenge that parses, written back with its parameters
//! quoted, parses to the same challenge, also with the scheme in another case, with the
//! parameters in another order and with an extra parameter; a header whose scheme is
//! `Basic` (any case) is a basic challenge.
#![no_main]

use keel_registry::fuzzing::{WwwAuthenticate, www_authenticate};
use libfuzzer_sys::fuzz_target;

fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fuzz_target!(|header: &str| {
    let parsed = www_authenticate(header);
    let scheme = header.trim().split(' ').next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case("basic") {
        assert_eq!(parsed, Some(WwwAuthenticate::Basic), "{header:?}");
    }
    let Some(WwwAuthenticate::Bearer {
        realm,
        service,
        scope,
    }) = &parsed
    else {
        return;
    };
    assert!(scheme.eq_ignore_ascii_case("bearer"), "{header:?}");

    let mut params = vec![format!("realm={}", quote(realm))];
    if let Some(service) = service {
        params.push(format!("service={}", quote(service)));
    }
    if let Some(scope) = scope {
        params.push(format!("scope={}", quote(scope)));
    }
    let written = format!("Bearer {}", params.join(","));
    assert_eq!(
        www_authenticate(&written),
        parsed,
        "{header:?} -> {written:?}"
    );

    params.reverse();
    params.push("error=\"insufficient_scope\"".to_owned());
    let rewritten = format!("bEARER  {}", params.join(", "));
    assert_eq!(
        www_authenticate(&rewritten),
        parsed,
        "{header:?} -> {rewritten:?}"
    );
});
