//! YAML documents that cost far more to expand than to send, for the tests and benches of
//! everything that reads untrusted YAML.

/// The classic "billion laughs" in under 1 KiB: nine levels of nine aliases of the level
/// below, 9^9 nodes if expanded.
pub fn billion_laughs() -> String {
    let mut text = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let below = format!("*l{}", level - 1);
        let items = [below.as_str(); 9].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{items}]\n"));
    }
    text
}

/// The same through merge keys, inside a Keel-annotated Deployment whose metadata merges 8^8
/// entries, in under 1 KiB.
pub fn merge_bomb() -> String {
    let mut text = String::from("m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n");
    for level in 1..9 {
        let below = vec![format!("*m{}", level - 1); 8].join(", ");
        text.push_str(&format!("m{level}: &m{level} {{<<: [{below}]}}\n"));
    }
    text.push_str(
        "kind: Deployment\nmetadata:\n  <<: *m8\n  annotations: {keel.sh/policy: minor}\n\
         spec: {template: {spec: {containers: [{name: a, image: 'ghcr.io/org/a:1.0.0'}]}}}\n",
    );
    text
}
