//! Rewrites: conflicts, idempotence, forms that cannot be written.

use super::*;

const TWO: &str = "\
a: ghcr.io/org/a:1.2.3 # {\"$imagepolicy\": \"ns:a\"}
b: ghcr.io/org/b:1.2.3 # {\"$imagepolicy\": \"ns:b\"}
";

/// Edits moving both references of [`TWO`], scanned as `path`, to 1.3.0.
fn both_to_1_3_0(path: &str) -> Vec<(Reference, ImageRef)> {
    let found = scan(path, TWO, &RepoConfig::default());
    vec![
        (found.references[0].clone(), image("ghcr.io/org/a:1.3.0")),
        (found.references[1].clone(), image("ghcr.io/org/b:1.3.0")),
    ]
}

#[test]
fn conflict_when_the_file_changed_and_nothing_half_applied() {
    let edits = both_to_1_3_0("apps/two.yaml");
    let changed = TWO.replace("b:1.2.3", "b:1.2.4");
    let e = rewrite(&changed, &edits).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert!(e.is_retryable());
    let message = e.to_string();
    assert!(message.contains("apps/two.yaml:2"), "{message}");
    assert!(message.contains("ghcr.io/org/b:1.2.4"), "{message}");

    // A shifted file is a conflict too, never a write at the wrong place.
    let shifted = format!("# new comment\n{TWO}");
    assert!(matches!(
        rewrite(&shifted, &edits),
        Err(Error::Conflict { .. })
    ));
    let truncated = &TWO[..20];
    assert!(matches!(
        rewrite(truncated, &edits),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn idempotent_rewrites() {
    let edits = both_to_1_3_0("two.yaml");
    let once = rewrite(TWO, &edits).unwrap();
    assert_eq!(once, TWO.replace("1.2.3", "1.3.0"));
    // Same edits again: the slots already hold the new references.
    assert_eq!(rewrite(&once, &edits).unwrap(), once);
    // The same edit twice in one list is one edit.
    let doubled = vec![edits[0].clone(), edits[0].clone()];
    assert_eq!(
        rewrite(TWO, &doubled).unwrap(),
        TWO.replacen("1.2.3", "1.3.0", 1)
    );
    // Different targets for the same bytes are refused.
    let clash = vec![
        edits[0].clone(),
        (edits[0].0.clone(), image("ghcr.io/org/a:1.4.0")),
    ];
    assert!(matches!(rewrite(TWO, &clash), Err(Error::InvalidInput(_))));
}

#[test]
fn no_final_newline_and_whole_forms() {
    let content = "image: nginx # {\"$imagepolicy\": \"ns:nginx\"}";
    let found = scan("n.yaml", content, &RepoConfig::default());
    let r = found.references[0].clone();
    assert_eq!(r.image, image("docker.io/library/nginx:latest"));
    let out = rewrite(content, &[(r.clone(), image("nginx:1.27.0"))]).unwrap();
    assert_eq!(
        out,
        "image: nginx:1.27.0 # {\"$imagepolicy\": \"ns:nginx\"}"
    );
    // Writing what is there (`nginx` is `nginx:latest`) changes nothing.
    assert_eq!(
        rewrite(content, &[(r.clone(), image("nginx:latest"))]).unwrap(),
        content
    );
    // A new repository replaces the name, written the short way.
    let out = rewrite(content, &[(r, image("docker.io/bitnami/nginx:1.27.0"))]).unwrap();
    assert_eq!(
        out,
        "image: bitnami/nginx:1.27.0 # {\"$imagepolicy\": \"ns:nginx\"}"
    );
}

#[test]
fn split_slots_refuse_what_they_cannot_write() {
    let content = "\
image:
  repository: ghcr.io/org/app # {\"$imagepolicy\": \"ns:app:name\"}
  tag: 1.2.3 # {\"$imagepolicy\": \"ns:app:tag\"}
tagonly: 1.2.3 # {\"$imagepolicy\": \"ns:t:tag\"}
";
    let config = one_policy("ns:t", PolicySpec::Minor, "ghcr.io/org/t");
    let found = scan("v.yaml", content, &config);
    let [app, t] = [found.references[0].clone(), found.references[1].clone()];
    // The name slot follows a new repository.
    let out = rewrite(content, &[(app.clone(), image("ghcr.io/other/app:1.3.0"))]).unwrap();
    assert_eq!(
        out,
        content
            .replace(
                "repository: ghcr.io/org/app",
                "repository: ghcr.io/other/app"
            )
            .replacen("tag: 1.2.3", "tag: 1.3.0", 1)
    );
    // A digest without a digest slot is dropped; a digest-only target has no tag to write.
    let with_digest = image(&format!("ghcr.io/org/app:1.3.0@{}", sha('b')));
    assert!(rewrite(content, &[(app.clone(), with_digest)]).is_ok());
    let digest_only = image(&format!("ghcr.io/org/app@{}", sha('b')));
    assert!(matches!(
        rewrite(content, &[(app, digest_only)]),
        Err(Error::InvalidInput(_))
    ));
    // Only the tag is written: the repository cannot change.
    let e = rewrite(content, &[(t, image("ghcr.io/org/other:1.3.0"))]).unwrap_err();
    assert!(e.to_string().contains("repository cannot change"), "{e}");
}

#[test]
fn rewrites_keep_anchors_flow_style_and_comments() {
    let content = "\
base: &base {tag: \"1.2.3\", pull: Always} # {\"$imagepolicy\": \"ns:x:tag\"}
copy: *base
list: [ghcr.io/org/a:1.2.3, 'ghcr.io/org/b:1.2.3'] # {\"$imagepolicy\": \"ns:b\"}
";
    let found = scan("v.yaml", content, &RepoConfig::default());
    // The marker after `}` belongs to the last scalar before it (`Always`, not an image).
    assert_eq!(found.references.len(), 1, "{:?}", found);
    let r = &found.references[0];
    assert_eq!(slot_texts(content, r), ["ghcr.io/org/b:1.2.3"]);
    let out = rewrite(content, &[(r.clone(), image("ghcr.io/org/b:2.0.0"))]).unwrap();
    assert_eq!(
        out,
        content.replace("'ghcr.io/org/b:1.2.3'", "'ghcr.io/org/b:2.0.0'")
    );
}
