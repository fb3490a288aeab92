//! Releases: one image set wherever the repository references it.

use super::*;

/// The edits releasing `release` in `found`: every reference to its repository not already
/// there.
fn release_edits(found: &Scan, release: &ImageRef) -> Vec<(Reference, ImageRef)> {
    found
        .references
        .iter()
        .filter_map(|r| r.released(release).map(|to| (r.clone(), to)))
        .filter(|(r, to)| r.image != *to)
        .collect()
}

/// Releases `release` in the golden case scanned as `path` and compares with `after` byte for
/// byte; `expected` is the number of references released. Then checks that a fresh scan sees
/// every reference to the repository at the release, and that releasing again is nothing.
fn run_release_golden(
    (case, before, after): (&str, &str, &str),
    path: &str,
    release: &str,
    expected: usize,
) {
    let release = image(release);
    for config in [RepoConfig::default(), golden_config()] {
        let found = scan(path, before, &config);
        assert!(found.warnings.is_empty(), "{case}: {:?}", found.warnings);
        let edits = release_edits(&found, &release);
        assert_eq!(edits.len(), expected, "{case}: {edits:#?}");
        let out = rewrite(before, &edits).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(out, after, "{case}: released file");

        let again = scan(path, &out, &config);
        assert!(again.warnings.is_empty(), "{case}: {:?}", again.warnings);
        let to_repository: Vec<&ImageRef> = again
            .references
            .iter()
            .map(|r| &r.image)
            .filter(|i| i.name() == release.name())
            .collect();
        assert_eq!(to_repository.len(), expected, "{case}: rescanned");
        assert!(
            to_repository.iter().all(|i| **i == release),
            "{case}: {to_repository:?}"
        );
        assert!(
            release_edits(&again, &release).is_empty(),
            "{case}: a second release changes something"
        );
    }
}

#[test]
fn golden_release_workloads() {
    run_release_golden(
        golden!("release-workloads"),
        "apps/app.yaml",
        "ghcr.io/acme/app:1.4.2",
        7,
    );
}

#[test]
fn golden_release_values() {
    run_release_golden(
        golden!("release-values"),
        "charts/app/values.yaml",
        "ghcr.io/acme/app:1.4.2",
        3,
    );
}

#[test]
fn golden_release_kustomization() {
    run_release_golden(
        golden!("release-kustomization"),
        "apps/kustomization.yaml",
        "ghcr.io/acme/app:1.4.2",
        3,
    );
}

#[test]
fn releases_keep_away_from_look_alikes_templates_and_aliases() {
    let release = image("ghcr.io/acme/app:1.4.2");
    // A Helm template is not YAML: nothing in it is found, nothing changes.
    let (_, template, _) = golden!("not-yaml");
    let found = scan(
        "charts/app/templates/deployment.yaml",
        template,
        &RepoConfig::default(),
    );
    assert!(found.references.is_empty());
    // Values that are not image references, or cannot be rewritten in place, are passed over
    // without a warning: nothing marked them.
    let content = "\
a: {image: '{{ .Values.image }}'}
b: {image: \"ghcr.io/acme/app:1.0.0\\n\"}
c: {image: &i ghcr.io/acme/app-sidecar:1.0.0}
d: {image: *i}
e: {image: {repository: ghcr.io/acme/app, tag: 1.0.0}}
f:
  image: >-
    ghcr.io/acme/app:1.0.0
";
    let found = scan("values.yaml", content, &RepoConfig::default());
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    let ids: Vec<String> = found.references.iter().map(Reference::id).collect();
    assert_eq!(ids, ["values.yaml#L3:c.image"]);
    assert!(release_edits(&found, &release).is_empty());
    // Never tracked: no policy, even when the configuration names the repository.
    let config =
        RepoConfig::default().with_image(ImagePolicy::new("ghcr.io/acme/app", PolicySpec::Minor));
    let found = scan("v.yaml", "image: ghcr.io/acme/app:1.0.0\n", &config);
    assert_eq!(found.references[0].policy, None);
    assert_eq!(
        found.references[0].kind,
        ReferenceKind::Unmarked {
            path: "image".into()
        }
    );
    // A release with a digest pins it.
    let pinned = image(&format!("ghcr.io/acme/app:1.4.2@{}", sha('c')));
    let edits = release_edits(&found, &pinned);
    let out = rewrite("image: ghcr.io/acme/app:1.0.0\n", &edits).unwrap();
    assert_eq!(out, format!("image: ghcr.io/acme/app:1.4.2@{}\n", sha('c')));
}

#[test]
fn deep_nesting_is_refused_or_read_never_a_crash() {
    let config = golden_config();
    let flow = format!("a: {}", "[".repeat(100_000));
    let found = scan("deep.yaml", &flow, &config);
    assert!(found.references.is_empty());
    assert!(
        found.warnings[0].reason.contains("not valid YAML"),
        "{:?}",
        found.warnings
    );
    // Block sequences of sequences, 20,000 deep on one line, ending in an image value.
    let block = format!("{}image: ghcr.io/org/api:1.0.0\n", "- ".repeat(20_000));
    let found = scan("deep.yaml", &block, &config);
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    assert!(RepoConfig::from_yaml(&block).is_err());
}

#[test]
fn inserting_a_new_tag_keeps_the_reference_id() {
    // Found by the manifest fuzz target: the id named the line of the `name` the tag was
    // inserted under, and after the update the line of the inserted `newTag`, so the tracked
    // image changed its id with its first update.
    let before = "kind: Kustomization\nimages:\n  - name: ghcr.io/org/web\n    newTag: 1.0.0\n  - name: ghcr.io/org/api\n";
    let flow = "images: [{name: ghcr.io/org/api}]\n";
    for (file, text) in [("apps/web.yaml", before), ("apps/kustomization.yaml", flow)] {
        let found = scan(file, text, &RepoConfig::default());
        let api = found
            .references
            .iter()
            .find(|r| r.image.repository() == "org/api")
            .unwrap_or_else(|| panic!("{file}: {found:?}"));
        let new = ImageRef::parse("ghcr.io/org/api:2.0.0").unwrap();
        let after = rewrite(text, &[(api.clone(), new)]).unwrap();
        let again = scan(file, &after, &RepoConfig::default());
        let ids: Vec<String> = again.references.iter().map(Reference::id).collect();
        assert!(
            ids.contains(&api.id()),
            "{file}: {} not in {ids:?}",
            api.id()
        );
    }
}

#[test]
fn no_new_tag_is_inserted_under_a_name_that_carries_one() {
    // Found by the manifest fuzz target: `name: tool:0.1` got a `newTag: 2.0` below it, which
    // names no image, so the reference vanished from the next scan.
    let text = "kind: Kustomization\nimages:\n  - name: ghcr.io/org/tool:0.1\n";
    let found = scan("apps/kustomization.yaml", text, &RepoConfig::default());
    let reference = found.references[0].clone();
    let new = ImageRef::parse("ghcr.io/org/tool:2.0").unwrap();
    let e = rewrite(text, &[(reference, new)]).unwrap_err().to_string();
    assert!(e.contains("carries a tag or digest"), "{e}");
}
