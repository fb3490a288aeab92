//! Fuzzes the manifest scanner and rewriter of keel-git (`manifest::scan`,
//! `manifest::rewrite`). The input is a file, scanned under each of three names: a plain
//! manifest, a kustomization and Helm values.
//!
//! Checked: no panic; every slot lies inside the file on character boundaries; writing
//! each reference as it is changes nothing; writing a new tag never reports a conflict on a
//! fresh scan, changes no byte before the first slot nor after the line of the last, gives
//! a file whose scan finds the same reference with the new tag, and is idempotent.
//!
//! The same file is edited with `manifest::edit` at the paths Argo CD Image Updater's `git`
//! write-back sets (Helm values, `.argocd-source` parameters and images, kustomization
//! images): no panic; a value set reads back, and setting it again changes nothing.
#![no_main]

use keel_core::{Error, PolicySpec, Tag};
use keel_git::manifest::edit::{self, Step, Value};
use keel_git::manifest::{ImagePolicy, MarkerPolicy, RepoConfig, rewrite, scan};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 3] = [
    "apps/web.yaml",
    "apps/kustomization.yaml",
    "charts/web/values.yaml",
];
const NEW_TAG: &str = "9.9.9-fuzz";

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

fn common_suffix(a: &str, b: &str) -> usize {
    a.bytes()
        .rev()
        .zip(b.bytes().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

fuzz_target!(|content: &str| {
    for file in FILES {
        check(file, content);
    }
    check_edits(content);
});

/// Sets a value at each path of a write-back: it reads back, and a second set is a no-op.
fn check_edits(content: &str) {
    let _ = edit::to_json(content);
    let web = |s: &str| s.starts_with("ghcr.io/acme/web");
    let paths: [&[Step<'_>]; 4] = [
        &[Step::Key("image"), Step::Key("tag")],
        &edit::helm_parameter("image.tag"),
        &edit::argocd_source_image(&web),
        &edit::kustomization_image("web", "newTag"),
    ];
    for path in paths {
        let _ = edit::get(content, path);
        let value = if matches!(path.last(), Some(Step::ScalarItem(_))) {
            "ghcr.io/acme/web:9.9.9"
        } else {
            NEW_TAG
        };
        let Ok(out) = edit::set(content, path, Value::String(value)) else {
            continue;
        };
        assert_eq!(
            edit::get(&out, path).ok().flatten().as_deref(),
            Some(value),
            "{path:?}: {out:?}"
        );
        let twice = edit::set(&out, path, Value::String(value));
        assert_eq!(twice.as_deref().ok(), Some(out.as_str()), "{path:?}");
    }
}

fn check(file: &str, content: &str) {
    let config = RepoConfig::default()
        .with_policy(
            "flux-system:app",
            MarkerPolicy::parse("semver:^1").expect("a valid policy"),
        )
        .with_image(ImagePolicy::new("ghcr.io/acme/app", PolicySpec::Minor));
    let found = scan(file, content, &config);

    for reference in &found.references {
        let id = reference.id();
        for slot in &reference.slots {
            assert!(
                slot.range.start <= slot.range.end && slot.range.end <= content.len(),
                "{id}: slot {:?} outside the file",
                slot.range
            );
            assert!(content.is_char_boundary(slot.range.start));
            assert!(content.is_char_boundary(slot.range.end));
        }
        let same = rewrite(content, &[(reference.clone(), reference.image.clone())]);
        assert_eq!(same.as_deref().ok(), Some(content), "{id}: {same:?}");

        let new = reference.image.with_tag(Tag::new(NEW_TAG).unwrap());
        let out = match rewrite(content, &[(reference.clone(), new.clone())]) {
            Ok(out) => out,
            Err(Error::InvalidInput(_)) => continue,
            Err(e) => panic!("{id}: {e}"),
        };
        let ranges = || reference.slots.iter().map(|s| &s.range);
        let first = ranges().map(|r| r.start).min().unwrap_or(0);
        let last = ranges().map(|r| r.end).max().unwrap_or(0);
        let line_end = content[last..]
            .find('\n')
            .map_or(content.len(), |i| last + i);
        assert!(
            common_prefix(content, &out) + 1 >= first,
            "{id}: changed bytes before the slot at {first}: {out:?}"
        );
        assert!(
            common_suffix(content, &out) >= content.len() - line_end,
            "{id}: changed bytes after the line of the slot ending at {last}: {out:?}"
        );
        let again = scan(file, &out, &config);
        let Some(updated) = again.references.iter().find(|r| r.id() == id) else {
            panic!("{id}: gone after the rewrite: {out:?}");
        };
        assert_eq!(
            updated.image.tag().map(Tag::as_str),
            Some(NEW_TAG),
            "{id}: {out:?}"
        );
        let twice = rewrite(&out, &[(updated.clone(), new)]);
        assert_eq!(twice.as_deref().ok(), Some(out.as_str()), "{id}: {twice:?}");
    }
}
