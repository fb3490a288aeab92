//! The golden files under `tests/golden/`: what is found in each manifest and how it is
//! rewritten.

use super::*;

/// A golden case: its files (from `golden!`), the path they are scanned as, the id and new
/// image of each reference it must find, and further checks of those references.
type Case<'a> = (
    (&'a str, &'a str, &'a str),
    &'a str,
    Vec<(&'a str, &'a str)>,
    fn(&[Reference]),
);

#[test]
fn golden_files_are_found_and_rewritten_byte_exactly() {
    let (b, c) = (sha('b'), sha('c'));
    let app_b = format!("ghcr.io/org/app:1.3.0@{b}");
    let (app_only_b, pinned_c) = (
        format!("ghcr.io/org/app@{b}"),
        format!("ghcr.io/org/pinned@{c}"),
    );
    let tool_c = format!("localhost:5000/team/tool:0.2@{c}");
    let cases: Vec<Case> = vec![
        (
            golden!("quoting"),
            "values/quoting.yaml",
            vec![
                ("L2:flux-system:plain", "ghcr.io/org/app:1.3.0"),
                ("L3:flux-system:single", "ghcr.io/org/app:1.3.0"),
                ("L4:flux-system:double", "ghcr.io/org/app:1.3.0"),
                ("L7:flux-system:tag-plain", "ghcr.io/org/tagged:1.3.0"),
                ("L10:flux-system:tag-single", "ghcr.io/org/tagged:1.3.0"),
                ("L13:flux-system:tag-double", "ghcr.io/org/tagged:1.3.0"),
                ("L17:flux-system:tag-numeric", "ghcr.io/org/tagged:1.10"),
            ],
            |_| {},
        ),
        (
            golden!("flux-marker"),
            "apps/podinfo.yaml",
            vec![(
                "L11:flux-system:podinfo",
                "ghcr.io/stefanprodan/podinfo:6.5.4",
            )],
            |refs| assert_eq!(policy_text(&refs[0]).as_deref(), Some("semver:^6")),
        ),
        (
            golden!("helm-values-block"),
            "charts/app/values.yaml",
            vec![
                ("L4:flux-system:app", "ghcr.io/org/app:1.3.0"),
                ("L11:flux-system:sidecar", "ghcr.io/org/sidecar:0.5.0"),
            ],
            |refs| {
                assert_eq!(refs[0].slots.len(), 2);
                // The sidecar's tag comes before its repository; the slots are in file order.
                assert_eq!(refs[1].slots[0].part, Part::Tag);
                assert_eq!(refs[1].slots[1].part, Part::Name);
            },
        ),
        (
            golden!("helm-values-flow"),
            "charts/app/values.yaml",
            vec![
                ("L2:flux-system:app", "ghcr.io/org/app:1.3.0"),
                ("L6:flux-system:worker", "ghcr.io/org/worker:0.10.0"),
            ],
            |_| {},
        ),
        (
            golden!("digest-marker"),
            "charts/app/values.yaml",
            vec![
                ("L2:flux-system:app", &app_b),
                ("L7:flux-system:pinned", &pinned_c),
            ],
            |refs| {
                let parts: Vec<Part> = refs[0].slots.iter().map(|s| s.part).collect();
                assert_eq!(parts, [Part::Name, Part::Tag, Part::Digest]);
                assert_eq!(
                    refs[1].image,
                    image(&format!("ghcr.io/org/pinned@{}", sha('a')))
                );
            },
        ),
        (
            golden!("digest-forms"),
            "apps/pods.yaml",
            vec![
                ("L3:flux-system:by-digest", &app_only_b),
                ("L5:flux-system:tag-and-digest", &app_b),
                ("L7:flux-system:drop-digest", "ghcr.io/org/app:1.3.0"),
                ("L9:flux-system:nginx", "docker.io/library/nginx:1.27.0"),
                ("L11:flux-system:tool", &tool_c),
            ],
            |_| {},
        ),
        (
            golden!("keel-deployment"),
            "apps/web.yaml",
            vec![("L28:web", "registry.example.com/shop/web:1.5.0")],
            |refs| {
                let r = &refs[0];
                assert_eq!(
                    r.kind,
                    ReferenceKind::KeelWorkload {
                        workload: "Deployment/shop/web".into(),
                        container: "web".into()
                    }
                );
                assert_eq!(policy_text(r).as_deref(), Some("minor"));
                assert_eq!(
                    r.settings,
                    KeelSettings {
                        approvals: 1,
                        match_tag: false,
                        trigger: Trigger::Poll {
                            schedule: Some("@every 10m".parse().unwrap())
                        },
                        ..KeelSettings::default()
                    }
                );
                assert_eq!(r.slots[0].style, ScalarStyle::DoubleQuoted);
            },
        ),
        (
            golden!("keel-cronjob"),
            "jobs/report.yaml",
            vec![("L17:report", "ghcr.io/org/report:2.0.4")],
            |refs| assert_eq!(policy_text(&refs[0]).as_deref(), Some("patch")),
        ),
        (
            golden!("keel-init-containers"),
            "apps/db.yaml",
            vec![
                ("L16:migrate", "ghcr.io/org/migrate:3.2.0"),
                ("L19:db", "docker.io/library/postgres:16.2"),
            ],
            |refs| {
                assert!(
                    refs.iter()
                        .all(|r| policy_text(r).as_deref() == Some("minor"))
                );
            },
        ),
        (
            golden!("keel-comment"),
            "charts/shop/values.yaml",
            vec![
                ("L2:image", "ghcr.io/org/frontend:2.4.0"),
                ("L5:image", "ghcr.io/org/backend:2.3.2"),
            ],
            |refs| {
                assert_eq!(refs[0].kind, ReferenceKind::KeelComment);
                assert_eq!(policy_text(&refs[1]).as_deref(), Some("patch"));
            },
        ),
        (
            golden!("kustomization-newtag"),
            "apps/kustomization.yaml",
            vec![
                ("L7:ghcr.io/org/api", "ghcr.io/org/api:1.3.0"),
                ("L10:nginx", "registry.example.com/mirror/nginx:1.25.4"),
            ],
            |refs| {
                assert_eq!(policy_text(&refs[0]).as_deref(), Some("minor"));
                // Marked, but the configuration does not know the marker: the caller decides.
                assert_eq!(refs[1].policy, None);
            },
        ),
        (
            golden!("kustomization-insert"),
            "base/kustomization.yaml",
            vec![
                ("L5:ghcr.io/org/api", "ghcr.io/org/api:1.3.0"),
                ("L7:worker", "ghcr.io/org/worker:2.0.0"),
                ("L7:ghcr.io/org/cli", "ghcr.io/org/cli:0.10"),
            ],
            |refs| {
                assert_eq!(refs[0].slots[0].part, Part::InsertTag { indent: Some(2) });
                assert_eq!(refs[2].slots[0].part, Part::InsertTag { indent: None });
            },
        ),
        (
            golden!("crlf"),
            "apps/kustomization.yaml",
            vec![
                ("L5:ghcr.io/org/api", "ghcr.io/org/api:1.3.0"),
                ("L6:ghcr.io/org/web", "ghcr.io/org/web:1.1.0"),
                ("L9:flux-system:app", "ghcr.io/org/app:1.3.0"),
            ],
            |_| {},
        ),
        (
            golden!("no-final-newline"),
            "apps/kustomization.yaml",
            vec![
                ("L4:ghcr.io/org/web", "ghcr.io/org/web:1.1.0"),
                ("L6:ghcr.io/org/api", "ghcr.io/org/api:1.3.0"),
            ],
            |_| {},
        ),
        (
            golden!("multi-document"),
            "apps/app.yaml",
            vec![("L20:app", "ghcr.io/org/app:1.3.0")],
            |_| {},
        ),
    ];
    for (files, path, targets, check) in cases {
        check(&run_golden(files, path, &targets));
    }
}

#[test]
fn golden_not_yaml() {
    let (_, before, after) = golden!("not-yaml");
    assert_eq!(before, after);
    let found = scan(
        "charts/app/templates/deployment.yaml",
        before,
        &golden_config(),
    );
    assert!(found.references.is_empty());
    assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
    let warning = &found.warnings[0];
    assert_eq!(warning.file, "charts/app/templates/deployment.yaml");
    assert!(warning.reason.contains("not valid YAML"), "{warning}");
    assert_eq!(rewrite(before, &[]).unwrap(), after);
}

#[test]
fn golden_ids_are_unique_across_the_repository() {
    let config = golden_config();
    let mut ids = std::collections::HashSet::new();
    for (path, (_, before, _)) in [
        ("a.yaml", golden!("quoting")),
        ("b.yaml", golden!("helm-values-block")),
        ("c.yaml", golden!("keel-init-containers")),
        ("kustomization.yaml", golden!("kustomization-insert")),
        ("d.yaml", golden!("digest-forms")),
    ] {
        for r in scan(path, before, &config).references {
            assert!(ids.insert(r.id()), "duplicate id {}", r.id());
        }
    }
}
