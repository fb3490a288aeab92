//! `openapi.yaml` and the router cannot drift: every route is documented, every documented
//! operation is served, and every `$ref` resolves.

use std::collections::BTreeSet;

use keel_api::{OPENAPI_YAML, route_table};

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// `(METHOD, path)` of every operation under `paths:`, read by indentation (two spaces per
/// level, as the file is written).
fn documented_operations(yaml: &str) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        let key = line.trim().trim_end_matches(':');
        if indent == 2 && line.trim_end().ends_with(':') {
            assert!(key.starts_with('/'), "not a path under paths: {line:?}");
            path = Some(key.to_owned());
        } else if indent == 4 && METHODS.contains(&key) {
            let p = path.clone().expect("an operation outside a path");
            ops.insert((key.to_uppercase(), p));
        }
    }
    ops
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_served() {
    let served: BTreeSet<(String, String)> = route_table()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p.to_owned()))
        .collect();
    let documented = documented_operations(OPENAPI_YAML);
    assert!(documented.len() >= 7, "{documented:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "openapi.yaml documents routes the router lacks: {unserved:?}"
    );
}

#[test]
fn every_ref_resolves_and_every_operation_documents_401() {
    let mut sections: BTreeSet<String> = BTreeSet::new();
    let mut section = String::new();
    let mut in_components = false;
    for line in OPENAPI_YAML.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_end();
        if indent == 0 {
            in_components = trimmed == "components:";
        } else if in_components && indent == 2 && trimmed.ends_with(':') {
            section = trimmed.trim().trim_end_matches(':').to_owned();
        } else if in_components && indent == 4 && trimmed.ends_with(':') {
            sections.insert(format!(
                "#/components/{section}/{}",
                trimmed.trim().trim_end_matches(':')
            ));
        }
    }
    let mut refs = 0;
    for line in OPENAPI_YAML.lines() {
        if let Some(rest) = line.trim().strip_prefix("$ref:") {
            let target = rest.trim().trim_matches('\'').trim_matches('"');
            assert!(sections.contains(target), "unresolved $ref {target}");
            refs += 1;
        }
    }
    assert!(refs > 20, "only {refs} refs found; is the scan broken?");

    // Each operation block mentions the 401 answer, as every route is authenticated.
    let ops = documented_operations(OPENAPI_YAML).len();
    let unauth = OPENAPI_YAML
        .matches("$ref: '#/components/responses/Unauthenticated'")
        .count();
    assert_eq!(unauth, ops, "every operation must document 401");
}

#[test]
fn the_scan_finds_what_is_there() {
    let yaml = "paths:\n  /a:\n    get:\n      x: 1\n    post:\n      y: 2\n  /b/{id}:\n    parameters: []\n    delete:\n      z: 3\ncomponents:\n  schemas:\n    get:\n";
    let ops: Vec<_> = documented_operations(yaml).into_iter().collect();
    assert_eq!(
        ops,
        vec![
            ("DELETE".to_owned(), "/b/{id}".to_owned()),
            ("GET".to_owned(), "/a".to_owned()),
            ("POST".to_owned(), "/a".to_owned()),
        ]
    );
}
