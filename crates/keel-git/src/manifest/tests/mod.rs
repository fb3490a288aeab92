//! Tests of discovery, configuration and rewrites, including the golden files under
//! `tests/golden/`.

use keel_core::target::Trigger;
use keel_core::{Error, ImageRef, PolicyOptions, PolicySpec};
use proptest::prelude::*;

use super::*;

/// The reference's policy as it prints.
fn policy_text(r: &Reference) -> Option<String> {
    r.policy.as_ref().map(ToString::to_string)
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A configuration with one marker policy: `spec` for `image`, under the marker `name`.
fn one_policy(name: &str, spec: PolicySpec, image: &str) -> RepoConfig {
    RepoConfig::default().with_policy(name, MarkerPolicy::new(spec).with_image(image))
}

fn sha(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// The configuration the golden cases run with.
fn golden_config() -> RepoConfig {
    RepoConfig::from_yaml(
        r#"
policies:
  flux-system:podinfo: {policy: "semver:^6"}
  flux-system:app:
    image: ghcr.io/org/app
    policy: semver:^1.2
    filter: '^v?(?P<v>.*)$'
    extract: '$v'
  flux-system:pinned: {image: ghcr.io/org/pinned, policy: digest}
images:
  - image: ghcr.io/org/api
    policy: minor
  - {image: ghcr.io/org/worker, policy: major}
  - {image: ghcr.io/org/cli, policy: numerical}
  - {image: ghcr.io/org/web, policy: minor}
"#,
    )
    .expect("the golden configuration is valid")
}

/// The scan without its [unmarked](ReferenceKind::Unmarked) references.
fn marked(mut found: Scan) -> Scan {
    found
        .references
        .retain(|r| !matches!(r.kind, ReferenceKind::Unmarked { .. }));
    found
}

/// The paths of the unmarked references of a scan.
fn unmarked_paths(found: &Scan) -> Vec<&str> {
    found
        .references
        .iter()
        .filter_map(|r| match &r.kind {
            ReferenceKind::Unmarked { path } => Some(path.as_str()),
            _ => None,
        })
        .collect()
}

macro_rules! golden {
    ($case:literal) => {
        (
            $case,
            include_str!(concat!("../../../tests/golden/", $case, ".before.yaml")),
            include_str!(concat!("../../../tests/golden/", $case, ".after.yaml")),
        )
    };
}

/// Scans `before` as `path`, checks the references found are exactly `targets` (by id),
/// rewrites each to its target and compares with `after` byte for byte. Then checks that a
/// fresh scan of the result finds the targets and that updating again changes nothing.
fn run_golden(
    (case, before, after): (&str, &str, &str),
    path: &str,
    targets: &[(&str, &str)],
) -> Vec<Reference> {
    let config = golden_config();
    let found = marked(scan(path, before, &config));
    assert!(found.warnings.is_empty(), "{case}: {:?}", found.warnings);
    let ids: Vec<String> = found.references.iter().map(Reference::id).collect();
    let expected: Vec<String> = targets
        .iter()
        .map(|(id, _)| format!("{path}#{id}"))
        .collect();
    assert_eq!(ids, expected, "{case}: references found");
    let edits: Vec<(Reference, ImageRef)> = found
        .references
        .iter()
        .zip(targets)
        .map(|(r, (_, new))| (r.clone(), image(new)))
        .collect();
    let out = rewrite(before, &edits).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(out, after, "{case}: rewritten file");

    // Nothing to do when every reference already is what it should be.
    let same: Vec<_> = found
        .references
        .iter()
        .map(|r| (r.clone(), r.image.clone()))
        .collect();
    assert_eq!(rewrite(before, &same).unwrap(), before, "{case}: no-op");

    // A fresh scan sees the new references; writing them again is a no-op.
    let again = marked(scan(path, &out, &config));
    assert!(again.warnings.is_empty(), "{case}: {:?}", again.warnings);
    let images: Vec<ImageRef> = again.references.iter().map(|r| r.image.clone()).collect();
    let wanted: Vec<ImageRef> = targets.iter().map(|(_, new)| image(new)).collect();
    assert_eq!(images, wanted, "{case}: rescanned images");
    let edits: Vec<_> = again
        .references
        .iter()
        .zip(targets)
        .map(|(r, (_, new))| (r.clone(), image(new)))
        .collect();
    assert_eq!(rewrite(&out, &edits).unwrap(), out, "{case}: idempotent");
    found.references
}

fn slot_texts<'a>(content: &'a str, r: &Reference) -> Vec<&'a str> {
    r.slots.iter().map(|s| &content[s.range.clone()]).collect()
}

mod config;
mod discovery;
mod golden;
mod properties;
mod release;
mod rewrite;
