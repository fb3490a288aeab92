//! Tests of discovery, configuration and rewrites, including the golden files under
//! `tests/golden/`.

use keel_core::target::Trigger;
use keel_core::{Error, ImageRef, PolicyOptions};
use proptest::prelude::*;

use super::*;

/// The reference's policy as it prints.
fn policy_text(r: &Reference) -> Option<String> {
    r.policy.as_ref().map(ToString::to_string)
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
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
            include_str!(concat!("../../tests/golden/", $case, ".before.yaml")),
            include_str!(concat!("../../tests/golden/", $case, ".after.yaml")),
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
    let expected: Vec<&str> = targets.iter().map(|(id, _)| *id).collect();
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

#[test]
fn golden_quoting() {
    run_golden(
        golden!("quoting"),
        "values/quoting.yaml",
        &[
            (
                "values/quoting.yaml#L2:flux-system:plain",
                "ghcr.io/org/app:1.3.0",
            ),
            (
                "values/quoting.yaml#L3:flux-system:single",
                "ghcr.io/org/app:1.3.0",
            ),
            (
                "values/quoting.yaml#L4:flux-system:double",
                "ghcr.io/org/app:1.3.0",
            ),
            (
                "values/quoting.yaml#L7:flux-system:tag-plain",
                "ghcr.io/org/tagged:1.3.0",
            ),
            (
                "values/quoting.yaml#L10:flux-system:tag-single",
                "ghcr.io/org/tagged:1.3.0",
            ),
            (
                "values/quoting.yaml#L13:flux-system:tag-double",
                "ghcr.io/org/tagged:1.3.0",
            ),
            (
                "values/quoting.yaml#L17:flux-system:tag-numeric",
                "ghcr.io/org/tagged:1.10",
            ),
        ],
    );
}

#[test]
fn golden_flux_marker() {
    let refs = run_golden(
        golden!("flux-marker"),
        "apps/podinfo.yaml",
        &[(
            "apps/podinfo.yaml#L11:flux-system:podinfo",
            "ghcr.io/stefanprodan/podinfo:6.5.4",
        )],
    );
    assert_eq!(policy_text(&refs[0]).as_deref(), Some("semver:^6"));
}

#[test]
fn golden_helm_values_block() {
    let refs = run_golden(
        golden!("helm-values-block"),
        "charts/app/values.yaml",
        &[
            (
                "charts/app/values.yaml#L4:flux-system:app",
                "ghcr.io/org/app:1.3.0",
            ),
            (
                "charts/app/values.yaml#L11:flux-system:sidecar",
                "ghcr.io/org/sidecar:0.5.0",
            ),
        ],
    );
    assert_eq!(refs[0].slots.len(), 2);
    // The sidecar's tag comes before its repository; the slots are in file order.
    assert_eq!(refs[1].slots[0].part, Part::Tag);
    assert_eq!(refs[1].slots[1].part, Part::Name);
}

#[test]
fn golden_helm_values_flow() {
    run_golden(
        golden!("helm-values-flow"),
        "charts/app/values.yaml",
        &[
            (
                "charts/app/values.yaml#L2:flux-system:app",
                "ghcr.io/org/app:1.3.0",
            ),
            (
                "charts/app/values.yaml#L6:flux-system:worker",
                "ghcr.io/org/worker:0.10.0",
            ),
        ],
    );
}

#[test]
fn golden_digest_marker() {
    let refs = run_golden(
        golden!("digest-marker"),
        "charts/app/values.yaml",
        &[
            (
                "charts/app/values.yaml#L2:flux-system:app",
                &format!("ghcr.io/org/app:1.3.0@{}", sha('b')),
            ),
            (
                "charts/app/values.yaml#L7:flux-system:pinned",
                &format!("ghcr.io/org/pinned@{}", sha('c')),
            ),
        ],
    );
    let parts: Vec<Part> = refs[0].slots.iter().map(|s| s.part).collect();
    assert_eq!(parts, [Part::Name, Part::Tag, Part::Digest]);
    assert_eq!(
        refs[1].image,
        image(&format!("ghcr.io/org/pinned@{}", sha('a')))
    );
}

#[test]
fn golden_digest_forms() {
    run_golden(
        golden!("digest-forms"),
        "apps/pods.yaml",
        &[
            (
                "apps/pods.yaml#L3:flux-system:by-digest",
                &format!("ghcr.io/org/app@{}", sha('b')),
            ),
            (
                "apps/pods.yaml#L5:flux-system:tag-and-digest",
                &format!("ghcr.io/org/app:1.3.0@{}", sha('b')),
            ),
            (
                "apps/pods.yaml#L7:flux-system:drop-digest",
                "ghcr.io/org/app:1.3.0",
            ),
            (
                "apps/pods.yaml#L9:flux-system:nginx",
                "docker.io/library/nginx:1.27.0",
            ),
            (
                "apps/pods.yaml#L11:flux-system:tool",
                &format!("localhost:5000/team/tool:0.2@{}", sha('c')),
            ),
        ],
    );
}

#[test]
fn golden_keel_deployment() {
    let refs = run_golden(
        golden!("keel-deployment"),
        "apps/web.yaml",
        &[(
            "apps/web.yaml#L28:web",
            "registry.example.com/shop/web:1.5.0",
        )],
    );
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
}

#[test]
fn golden_keel_cronjob() {
    let refs = run_golden(
        golden!("keel-cronjob"),
        "jobs/report.yaml",
        &[("jobs/report.yaml#L17:report", "ghcr.io/org/report:2.0.4")],
    );
    assert_eq!(policy_text(&refs[0]).as_deref(), Some("patch"));
}

#[test]
fn golden_keel_init_containers() {
    let refs = run_golden(
        golden!("keel-init-containers"),
        "apps/db.yaml",
        &[
            ("apps/db.yaml#L16:migrate", "ghcr.io/org/migrate:3.2.0"),
            ("apps/db.yaml#L19:db", "docker.io/library/postgres:16.2"),
        ],
    );
    assert!(
        refs.iter()
            .all(|r| policy_text(r).as_deref() == Some("minor"))
    );
}

#[test]
fn golden_keel_comment() {
    let refs = run_golden(
        golden!("keel-comment"),
        "charts/shop/values.yaml",
        &[
            (
                "charts/shop/values.yaml#L2:image",
                "ghcr.io/org/frontend:2.4.0",
            ),
            (
                "charts/shop/values.yaml#L5:image",
                "ghcr.io/org/backend:2.3.2",
            ),
        ],
    );
    assert_eq!(refs[0].kind, ReferenceKind::KeelComment);
    assert_eq!(policy_text(&refs[1]).as_deref(), Some("patch"));
}

#[test]
fn golden_kustomization_newtag() {
    let refs = run_golden(
        golden!("kustomization-newtag"),
        "apps/kustomization.yaml",
        &[
            (
                "apps/kustomization.yaml#L7:ghcr.io/org/api",
                "ghcr.io/org/api:1.3.0",
            ),
            (
                "apps/kustomization.yaml#L10:nginx",
                "registry.example.com/mirror/nginx:1.25.4",
            ),
        ],
    );
    assert_eq!(policy_text(&refs[0]).as_deref(), Some("minor"));
    // Marked, but the configuration does not know the marker: the caller decides.
    assert_eq!(refs[1].policy, None);
}

#[test]
fn golden_kustomization_insert() {
    let refs = run_golden(
        golden!("kustomization-insert"),
        "base/kustomization.yaml",
        &[
            (
                "base/kustomization.yaml#L5:ghcr.io/org/api",
                "ghcr.io/org/api:1.3.0",
            ),
            (
                "base/kustomization.yaml#L7:worker",
                "ghcr.io/org/worker:2.0.0",
            ),
            (
                "base/kustomization.yaml#L7:ghcr.io/org/cli",
                "ghcr.io/org/cli:0.10",
            ),
        ],
    );
    assert_eq!(refs[0].slots[0].part, Part::InsertTag { indent: Some(2) });
    assert_eq!(refs[2].slots[0].part, Part::InsertTag { indent: None });
}

#[test]
fn golden_crlf() {
    run_golden(
        golden!("crlf"),
        "apps/kustomization.yaml",
        &[
            (
                "apps/kustomization.yaml#L5:ghcr.io/org/api",
                "ghcr.io/org/api:1.3.0",
            ),
            (
                "apps/kustomization.yaml#L6:ghcr.io/org/web",
                "ghcr.io/org/web:1.1.0",
            ),
            (
                "apps/kustomization.yaml#L9:flux-system:app",
                "ghcr.io/org/app:1.3.0",
            ),
        ],
    );
}

#[test]
fn golden_no_final_newline() {
    run_golden(
        golden!("no-final-newline"),
        "apps/kustomization.yaml",
        &[
            (
                "apps/kustomization.yaml#L4:ghcr.io/org/web",
                "ghcr.io/org/web:1.1.0",
            ),
            (
                "apps/kustomization.yaml#L6:ghcr.io/org/api",
                "ghcr.io/org/api:1.3.0",
            ),
        ],
    );
}

#[test]
fn golden_multi_document() {
    run_golden(
        golden!("multi-document"),
        "apps/app.yaml",
        &[("apps/app.yaml#L20:app", "ghcr.io/org/app:1.3.0")],
    );
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

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

fn slot_texts<'a>(content: &'a str, r: &Reference) -> Vec<&'a str> {
    r.slots.iter().map(|s| &content[s.range.clone()]).collect()
}

#[test]
fn flux_whole_marker_slot_policy_and_options() {
    let content = "# app\nspec:\n  image: \"ghcr.io/org/app:1.2.3\"   #   {  \"$imagepolicy\"  :  \"flux-system:app\"  }\n";
    let found = scan("apps/app.yaml", content, &golden_config());
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    let [r] = found.references.as_slice() else {
        panic!("{:?}", found.references)
    };
    assert_eq!(r.id(), "apps/app.yaml#L3:flux-system:app");
    assert_eq!(r.line, 3);
    assert_eq!(slot_texts(content, r), ["ghcr.io/org/app:1.2.3"]);
    assert_eq!(r.slots[0].part, Part::Whole);
    assert_eq!(r.slots[0].style, ScalarStyle::DoubleQuoted);
    assert_eq!(r.image, image("ghcr.io/org/app:1.2.3"));
    assert_eq!(policy_text(r).as_deref(), Some("semver:^1.2"));
    assert_eq!(r.options.filter.as_deref(), Some("^v?(?P<v>.*)$"));
    assert_eq!(r.options.extract.as_deref(), Some("$v"));
    assert_eq!(r.settings, KeelSettings::default());
}

#[test]
fn flux_split_markers_group_by_mapping_and_name() {
    let content = "\
a:
  repository: ghcr.io/org/a # {\"$imagepolicy\": \"ns:x:name\"}
  tag: '1.2.3' # {\"$imagepolicy\": \"ns:x:tag\"}
b:
  repository: ghcr.io/org/b # {\"$imagepolicy\": \"ns:x:name\"}
  tag: 2.0.0 # {\"$imagepolicy\": \"ns:x:tag\"}
  other: 3.0.0 # {\"$imagepolicy\": \"ns:y:tag\"}
";
    let config = RepoConfig::default().with_policy(
        "ns:y",
        MarkerPolicy::new("patch").with_image("ghcr.io/org/y"),
    );
    let found = scan("values.yaml", content, &config);
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    let refs = &found.references;
    assert_eq!(refs.len(), 3);
    assert_eq!(refs[0].image, image("ghcr.io/org/a:1.2.3"));
    assert_eq!(slot_texts(content, &refs[0]), ["ghcr.io/org/a", "1.2.3"]);
    assert_eq!(refs[0].slots[1].style, ScalarStyle::SingleQuoted);
    assert_eq!(refs[0].policy, None);
    assert_eq!((refs[0].line, refs[1].line, refs[2].line), (2, 5, 7));
    assert_eq!(refs[1].image, image("ghcr.io/org/b:2.0.0"));
    // A lone tag marker takes its repository from the configuration.
    assert_eq!(refs[2].image, image("ghcr.io/org/y:3.0.0"));
    assert_eq!(policy_text(&refs[2]).as_deref(), Some("patch"));
    assert_eq!(refs[2].slots[0].part, Part::Tag);
}

#[test]
fn flux_marker_problems_are_warnings() {
    let content = "\
a: 1.2.3 # {\"$imagepolicy\": \"ns:lonely:tag\"}
b: x # {\"$imagepolicy\": \"ns:bad:version\"}
c: y # {\"$imagepolicy\": 42}
d: 'Not An Image' # {\"$imagepolicy\": \"ns:d\"}
e: |
  ghcr.io/org/app:1.0 # {\"$imagepolicy\": \"ns:e\"}
f: ghcr.io/org/ok:1.0 # {\"$imagepolicy\": \"ns:f\"}
";
    let found = scan("v.yaml", content, &RepoConfig::default());
    let lines: Vec<Option<usize>> = found.warnings.iter().map(|w| w.line).collect();
    assert_eq!(
        lines,
        [Some(1), Some(2), Some(3), Some(4)],
        "{:?}",
        found.warnings
    );
    assert!(
        found.warnings[0].reason.contains("ns:lonely"),
        "{}",
        found.warnings[0]
    );
    assert!(found.warnings[3].reason.contains("invalid image reference"));
    assert_eq!(found.references.len(), 1);
    assert_eq!(found.references[0].id(), "v.yaml#L7:ns:f");
}

#[test]
fn slots_count_bytes_not_characters() {
    let content =
        "# Ünïcödé ✓\nname: \"日本\"\nimage: ghcr.io/org/app:1.2.3 # keel.sh/policy: minor\n";
    let found = scan("v.yaml", content, &RepoConfig::default());
    let r = &found.references[0];
    assert_eq!(slot_texts(content, r), ["ghcr.io/org/app:1.2.3"]);
    assert_eq!(r.line, 3);
    let out = rewrite(content, &[(r.clone(), image("ghcr.io/org/app:1.3.0"))]).unwrap();
    assert_eq!(out, content.replace("1.2.3", "1.3.0"));
}

#[test]
fn keel_comment_forms_and_settings() {
    let content = "\
a:
  image: nginx:1.25.3 # keel.sh/policy=force keel.sh/matchTag=true keel.sh/approvals=2
b:
  image: redis:7.2.0 # keel.sh/policy: semver:>=7.0 <8.0, keel.sh/trigger: poll
c:
  image: redis:7.2.0 # keel.sh/policy: sideways
d:
  notimage: redis:7.2.0 # keel.sh/policy: minor
";
    let found = scan("v.yaml", content, &RepoConfig::default());
    assert_eq!(found.references.len(), 2);
    let [a, b] = [&found.references[0], &found.references[1]];
    assert_eq!(policy_text(a).as_deref(), Some("force"));
    assert!(a.settings.match_tag && a.options.match_tag);
    assert_eq!(a.settings.approvals, 2);
    assert_eq!(policy_text(b).as_deref(), Some("semver:>=7.0 <8.0"));
    assert_eq!(b.settings.trigger, Trigger::Poll { schedule: None });
    assert_eq!(found.warnings.len(), 1);
    assert_eq!(found.warnings[0].line, Some(6));
}

/// The disagreements the one reader of `keel.sh/*` settled: `none` is no policy, `matchTag`
/// wins over `match-tag`, switches follow Go's `strconv.ParseBool`, `pollSchedule` alone does
/// not enable polling, and the approval deadline, notify and release notes are kept.
#[test]
fn keel_keys_follow_keels_rules() {
    let content = "\
kind: Deployment
metadata:
  name: a
  annotations:
    keel.sh/policy: force
    keel.sh/matchTag: 'false'
    keel.sh/match-tag: 'true'
    keel.sh/initContainers: '1'
    keel.sh/pollSchedule: '@every 5m'
    keel.sh/approvalDeadline: '2'
    keel.sh/notify: '#ops'
    keel.sh/releaseNotes: https://example.com/notes
spec:
  template:
    spec:
      initContainers: [{name: init, image: busybox:1.36}]
      containers: [{name: app, image: nginx:1.25.3}]
---
kind: Deployment
metadata: {name: b, annotations: {keel.sh/policy: none}}
spec: {template: {spec: {containers: [{name: app, image: redis:7.2.0}]}}}
";
    let found = marked(scan("k.yaml", content, &RepoConfig::default()));
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    let [init, app, none] = &found.references[..] else {
        panic!("{:?}", found.references);
    };
    assert_eq!(policy_text(init).as_deref(), Some("force"));
    assert_eq!(slot_texts(content, init), ["busybox:1.36"]);
    assert!(!app.settings.match_tag && !app.options.match_tag);
    assert_eq!(app.settings.trigger, Trigger::Webhook);
    assert_eq!(
        app.settings.approval_deadline,
        std::time::Duration::from_secs(2 * 3600)
    );
    assert_eq!(app.settings.notify, ["#ops"]);
    assert_eq!(
        app.settings.release_notes.as_deref(),
        Some("https://example.com/notes")
    );
    assert_eq!(none.policy, Some(keel_core::PolicySpec::Never));
}

#[test]
fn keel_workload_annotations_labels_and_filters() {
    let content = "\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  labels:
    keel.sh/policy: major
    keel.sh/trigger: poll
  annotations:
    keel.sh/policy: minor
    keel.sh/match-tag: \"true\"
    keel.sh/matchPreRelease: \"false\"
    keel.sh/monitorContainers: agent|helper
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: agent
          image: ghcr.io/org/agent:1.0.0
        - name: sidecar
          image: ghcr.io/org/sidecar:1.0.0
        - name: helper
          image: ghcr.io/org/helper:1.0.0
";
    let found = scan("ds.yaml", content, &RepoConfig::default());
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    // What the annotations leave out is found, unmarked, for releases.
    assert_eq!(
        unmarked_paths(&found),
        [
            "spec.template.spec.initContainers[0].image",
            "spec.template.spec.containers[1].image"
        ]
    );
    let found = marked(found);
    let containers: Vec<String> = found
        .references
        .iter()
        .map(|r| match &r.kind {
            ReferenceKind::KeelWorkload {
                workload,
                container,
            } => format!("{workload}:{container}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        containers,
        [
            "DaemonSet/default/agent:agent",
            "DaemonSet/default/agent:helper"
        ]
    );
    let r = &found.references[0];
    assert_eq!(policy_text(r).as_deref(), Some("minor"));
    assert_eq!(r.settings.trigger, Trigger::Poll { schedule: None });
    assert!(r.settings.match_tag);
    // match-tag only means something to `force`.
    assert!(!r.options.match_tag);
    assert!(!r.options.match_pre_release);
    assert_eq!(slot_texts(content, r), ["ghcr.io/org/agent:1.0.0"]);
    assert_eq!(r.id(), "ds.yaml#L21:agent");
}

#[test]
fn keel_pods_jobs_lists_and_bad_annotations() {
    let content = "\
apiVersion: v1
kind: Pod
metadata: {name: p, annotations: {keel.sh/policy: patch}}
spec:
  containers: [{name: c, image: 'alpine:3.19.0'}]
---
apiVersion: v1
kind: List
items:
  - kind: Job
    metadata: {name: j, namespace: ops, annotations: {keel.sh/policy: all}}
    spec: {template: {spec: {containers: [{name: c, image: alpine:3.19.0}]}}}
---
kind: Deployment
metadata: {name: bad, annotations: {keel.sh/policy: all, keel.sh/approvals: many}}
spec: {template: {spec: {containers: [{name: c, image: alpine:3.19.0}]}}}
---
kind: Deployment
metadata: {name: aliased, annotations: {keel.sh/policy: all}, labels: {v: &img alpine}}
spec: {template: {spec: {containers: [{name: c, image: *img}]}}}
---
kind: Service
metadata: {name: s, annotations: {keel.sh/policy: all}}
";
    // An image written as an alias cannot be rewritten in place.
    let found = scan("all.yaml", content, &RepoConfig::default());
    // The workload with a bad annotation is skipped, but its image is still found unmarked.
    assert_eq!(
        unmarked_paths(&found),
        ["spec.template.spec.containers[0].image"]
    );
    assert_eq!(found.references[2].line, 16);
    let found = marked(found);
    let ids: Vec<String> = found.references.iter().map(Reference::id).collect();
    assert_eq!(ids, ["all.yaml#L5:c", "all.yaml#L12:c"]);
    assert_eq!(
        found.references[0].slots[0].style,
        ScalarStyle::SingleQuoted
    );
    assert!(matches!(
        &found.references[1].kind,
        ReferenceKind::KeelWorkload { workload, .. } if workload == "Job/ops/j"
    ));
    assert_eq!(found.warnings.len(), 2, "{:?}", found.warnings);
    assert!(found.warnings[0].reason.contains("keel.sh/approvals"));
    assert!(found.warnings[1].reason.contains("alias"));
}

#[test]
fn unannotated_workloads_follow_configured_images() {
    let content = "\
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      containers:
        - {name: api, image: ghcr.io/org/api:1.2.3}
        - {name: other, image: ghcr.io/org/other:1.2.3}
";
    let unconfigured = scan("d.yaml", content, &RepoConfig::default());
    assert!(marked(unconfigured.clone()).references.is_empty());
    assert_eq!(unconfigured.references.len(), 2);
    assert!(unconfigured.references.iter().all(|r| r.policy.is_none()));
    let found = scan("d.yaml", content, &golden_config());
    let ids: Vec<String> = found.references.iter().map(Reference::id).collect();
    assert_eq!(
        ids,
        [
            "d.yaml#L7:api",
            "d.yaml#L8:spec.template.spec.containers[1].image"
        ]
    );
    let found = marked(found);
    let [r] = found.references.as_slice() else {
        panic!("{:?}", found.references)
    };
    assert_eq!(policy_text(r).as_deref(), Some("minor"));
    assert_eq!(r.id(), "d.yaml#L7:api");
}

#[test]
fn kustomization_forms() {
    let content = "\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps}
spec:
  images:
    - name: ghcr.io/org/api
      digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    - name: ghcr.io/org/other
      newTag: 1.0.0
";
    let found = scan("clusters/apps.yaml", content, &golden_config());
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    assert_eq!(unmarked_paths(&found), ["spec.images[1]"]);
    let found = marked(found);
    let [r] = found.references.as_slice() else {
        panic!("{:?}", found.references)
    };
    assert_eq!(
        r.kind,
        ReferenceKind::Kustomization {
            name: "ghcr.io/org/api".into()
        }
    );
    let parts: Vec<Part> = r.slots.iter().map(|s| s.part).collect();
    assert_eq!(parts, [Part::InsertTag { indent: Some(6) }, Part::Digest]);
    assert_eq!(slot_texts(content, r)[0], "ghcr.io/org/api");
    assert!(r.image.tag().is_none());
    // Digest-only stays digest-only.
    let new = image(&format!("ghcr.io/org/api@{}", sha('b')));
    let out = rewrite(content, &[(r.clone(), new)]).unwrap();
    assert_eq!(out, content.replace(&sha('a'), &sha('b')));
    // A file not named like a kustomization and without its kind is not one.
    let plain = "images:\n  - name: ghcr.io/org/api\n    newTag: 1.0.0\n";
    assert!(
        scan("x.yaml", plain, &golden_config())
            .references
            .is_empty()
    );
    assert_eq!(
        scan("x/Kustomization", plain, &golden_config())
            .references
            .len(),
        1
    );
}

#[test]
fn paths_filter_and_invalid_files() {
    let config = RepoConfig::default().with_paths(["apps", "./clusters/"]);
    let content = "image: ghcr.io/org/app:1.2.3 # {\"$imagepolicy\": \"ns:app\"}";
    assert_eq!(scan("apps/a.yaml", content, &config).references.len(), 1);
    assert_eq!(
        scan("clusters/prod/a.yaml", content, &config)
            .references
            .len(),
        1
    );
    assert!(scan("appsx/a.yaml", content, &config).references.is_empty());
    assert!(scan("docs/a.yaml", content, &config).warnings.is_empty());

    let found = scan("apps/broken.yaml", "a: [1, 2\nb: \"x\n", &config);
    assert!(found.references.is_empty());
    assert_eq!(found.warnings.len(), 1);
    assert_eq!(found.warnings[0].file, "apps/broken.yaml");
    assert!(
        found.warnings[0]
            .to_string()
            .starts_with("apps/broken.yaml:")
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn config_from_yaml_and_json() {
    let yaml = "\
policies:
  flux-system:app:
    image: ghcr.io/org/app
    policy: semver:^1.2
    filter: '^v?(?P<v>.*)$'
    extract: '$v'
  flux-system:short: minor
images:
  - image: ghcr.io/org/api
    policy: minor
    matchPreRelease: false
paths: [apps, clusters]
";
    let config = RepoConfig::from_yaml(yaml).unwrap();
    let app = &config.policies["flux-system:app"];
    assert_eq!(app.image.as_deref(), Some("ghcr.io/org/app"));
    assert_eq!(app.policy, "semver:^1.2");
    assert_eq!(
        app.options,
        PolicyOptions {
            filter: Some("^v?(?P<v>.*)$".into()),
            extract: Some("$v".into()),
            ..PolicyOptions::default()
        }
    );
    assert_eq!(config.policies["flux-system:short"].policy, "minor");
    assert!(!config.images[0].options.match_pre_release);
    assert_eq!(config.paths, ["apps", "clusters"]);
    assert_eq!(
        config
            .image_policy(&image("ghcr.io/org/api:9"))
            .map(|p| p.policy.as_str()),
        Some("minor")
    );

    let json = r#"{"policies": {"flux-system:app": {"image": "ghcr.io/org/app",
        "policy": "semver:^1.2", "filter": "^v?(?P<v>.*)$", "extract": "$v"},
        "flux-system:short": "minor"},
        "images": [{"image": "ghcr.io/org/api", "policy": "minor", "matchPreRelease": false}],
        "paths": ["apps", "clusters"]}"#;
    let from_json: RepoConfig = serde_json::from_str(json).unwrap();
    assert_eq!(from_json, config);

    assert_eq!(RepoConfig::from_yaml("").unwrap(), RepoConfig::default());
    assert_eq!(
        RepoConfig::from_yaml("# nothing\n").unwrap(),
        RepoConfig::default()
    );
    let code = RepoConfig::default()
        .with_policy(
            "flux-system:app",
            MarkerPolicy::new("minor").with_image("ghcr.io/org/app"),
        )
        .with_image(ImagePolicy::new("nginx", "patch"));
    code.validate().unwrap();
    assert!(code.images[0].matches(&image("docker.io/library/nginx:1.0")));
}

#[test]
fn config_errors_name_the_key_and_the_problem() {
    let cases = [
        ("polices: {}\n", "polices", "unknown key `polices`"),
        (
            "policies:\n  flux-system:app: {policy: minor, filtr: x}\n",
            "policies.flux-system:app.filtr",
            "unknown key `filtr`",
        ),
        (
            "policies:\n  flux-system:app: {policy: minr}\n",
            "policies.flux-system:app.policy",
            "unknown policy `minr`",
        ),
        (
            "policies:\n  flux-system:app: {policy: minor, filter: '(unclosed'}\n",
            "policies.flux-system:app",
            "regular expression",
        ),
        (
            "policies:\n  flux-system:app: {policy: numerical, extract: $v}\n",
            "policies.flux-system:app",
            "filter",
        ),
        (
            "policies:\n  flux-system:app: {policy: minor, defaultExcludes: maybe}\n",
            "policies.flux-system:app",
            "bad policy option",
        ),
        (
            "policies:\n  app: {policy: minor}\n",
            "policies.app",
            "NS:NAME",
        ),
        (
            "policies:\n  a:b: {image: x}\n",
            "policies.a:b.policy",
            "is required",
        ),
        (
            "images:\n  - {image: 'ghcr.io/org/api:1.0', policy: minor}\n",
            "images[0].image",
            "without tag or digest",
        ),
        (
            "images:\n  - {policy: minor}\n",
            "images[0].image",
            "is required",
        ),
        ("images: {a: b}\n", "images", "must be a list"),
        ("paths: ['../x']\n", "paths[0]", "relative"),
        ("policies: [\n", "line", "not valid YAML"),
    ];
    for (yaml, key, problem) in cases {
        let e = RepoConfig::from_yaml(yaml).expect_err(yaml);
        let Error::InvalidInput(parse) = &e else {
            panic!("{yaml}: {e:?}");
        };
        assert_eq!(parse.kind(), ".keel.yaml", "{yaml}");
        assert!(
            parse.input().starts_with(key),
            "{yaml}: input {:?}",
            parse.input()
        );
        assert!(parse.reason().contains(problem), "{yaml}: {e}");
    }
    let e = serde_json::from_str::<RepoConfig>(r#"{"images": [{"image": "x", "policy": "nope"}]}"#)
        .unwrap_err();
    assert!(e.to_string().contains("images[0].policy"), "{e}");
    let bad = RepoConfig::default().with_image(ImagePolicy::new("ghcr.io/x", "semver:abc"));
    assert!(bad.validate().is_err());
}

// ---------------------------------------------------------------------------------------------
// Rewrites
// ---------------------------------------------------------------------------------------------

const TWO: &str = "\
a: ghcr.io/org/a:1.2.3 # {\"$imagepolicy\": \"ns:a\"}
b: ghcr.io/org/b:1.2.3 # {\"$imagepolicy\": \"ns:b\"}
";

#[test]
fn conflict_when_the_file_changed_and_nothing_half_applied() {
    let found = scan("apps/two.yaml", TWO, &RepoConfig::default());
    let edits = vec![
        (found.references[0].clone(), image("ghcr.io/org/a:1.3.0")),
        (found.references[1].clone(), image("ghcr.io/org/b:1.3.0")),
    ];
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
    let found = scan("two.yaml", TWO, &RepoConfig::default());
    let edits = vec![
        (found.references[0].clone(), image("ghcr.io/org/a:1.3.0")),
        (found.references[1].clone(), image("ghcr.io/org/b:1.3.0")),
    ];
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
        (found.references[0].clone(), image("ghcr.io/org/a:1.4.0")),
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
    let config = RepoConfig::default().with_policy(
        "ns:t",
        MarkerPolicy::new("minor").with_image("ghcr.io/org/t"),
    );
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

// ---------------------------------------------------------------------------------------------
// Property: only the tag bytes change
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Filler {
    Blank,
    Comment(usize, String),
    Pair(String),
}

fn filler() -> impl Strategy<Value = Filler> {
    prop_oneof![
        Just(Filler::Blank),
        (0usize..10, "[a-zA-Z0-9 #:'\"{}$,.-]{0,24}").prop_map(|(i, t)| Filler::Comment(i, t)),
        "[a-z0-9][a-z0-9.-]{0,8}".prop_map(Filler::Pair),
    ]
}

/// Writes filler lines at `indent`; keys are numbered from `*n` so they never repeat.
fn push_fillers(out: &mut String, fillers: &[Filler], indent: usize, eol: &str, n: &mut usize) {
    for f in fillers {
        match f {
            Filler::Blank => {}
            Filler::Comment(i, text) => {
                out.push_str(&" ".repeat(*i));
                out.push('#');
                out.push_str(text);
            }
            Filler::Pair(value) => {
                *n += 1;
                out.push_str(&format!("{}k{n}: v{value}", " ".repeat(indent)));
            }
        }
        out.push_str(eol);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rewriting_changes_exactly_the_tag_bytes(
        depth in 0usize..4,
        step in 1usize..5,
        before in prop::collection::vec(filler(), 0..6),
        after in prop::collection::vec(filler(), 0..6),
        quote in 0usize..3,
        split in any::<bool>(),
        repo in prop::sample::select(vec!["ghcr.io/org/app", "nginx", "localhost:5000/a/b", "org/app"]),
        old in (0u32..30, 0u32..30, 0u32..30),
        new in (0u32..30, 0u32..30, 0u32..30),
        gap in 1usize..4,
        marker_space in prop::sample::select(vec!["", " ", "  ", "\t"]),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let old_tag = format!("{}.{}.{}", old.0, old.1, old.2);
        let new_tag = format!("{}.{}.{}", new.0, new.1, new.2);
        let mut text = String::new();
        let mut n = 0;
        for level in 0..depth {
            text.push_str(&format!("{}p{level}:{eol}", " ".repeat(level * step)));
        }
        let indent = depth * step;
        push_fillers(&mut text, &before, indent, eol, &mut n);
        text.push_str(&format!("{}key: ", " ".repeat(indent)));
        let (q_open, q_close) = [("", ""), ("'", "'"), ("\"", "\"")][quote];
        text.push_str(q_open);
        let value_start = text.len();
        let tag_start = if split {
            value_start
        } else {
            text.push_str(repo);
            text.push(':');
            text.len()
        };
        text.push_str(&old_tag);
        let tag_end = text.len();
        text.push_str(q_close);
        let marker = if split { "ns:app:tag" } else { "ns:app" };
        text.push_str(&format!(
            "{}#{s}{{{s}\"$imagepolicy\"{s}:{s}\"{marker}\"{s}}}",
            " ".repeat(gap),
            s = marker_space
        ));
        if !after.is_empty() || final_newline {
            text.push_str(eol);
        }
        push_fillers(&mut text, &after, indent, eol, &mut n);
        if !final_newline && text.ends_with(eol) && !after.is_empty() {
            text.truncate(text.len() - eol.len());
        }

        let config = RepoConfig::default()
            .with_policy("ns:app", MarkerPolicy::new("semver").with_image(repo));
        let found = scan("p.yaml", &text, &config);
        prop_assert!(found.warnings.is_empty(), "{:?}\n{}", found.warnings, text);
        prop_assert_eq!(found.references.len(), 1, "{}", text);
        let r = found.references[0].clone();
        prop_assert_eq!(&text[r.slots[0].range.clone()], &text[if split { tag_start } else { value_start }..tag_end]);
        prop_assert_eq!(r.line, text[..value_start].matches('\n').count() + 1);

        let target = image(&format!("{repo}:{new_tag}"));
        let out = rewrite(&text, &[(r, target)]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = format!("{}{}{}", &text[..tag_start], new_tag, &text[tag_end..]);
        prop_assert_eq!(out, expected);
    }
}

/// One top-level entry `k<i>: ...` of a generated values file.
fn entry() -> impl Strategy<Value = (usize, usize, usize, usize, bool)> {
    (0usize..6, 0usize..6, 0usize..3, 0usize..5, any::<bool>())
}

fn render_entry(
    i: usize,
    (form, value, quote, marker, extra): (usize, usize, usize, usize, bool),
) -> String {
    let values = [
        "ghcr.io/org/a:1.2.3".to_owned(),
        format!("ghcr.io/org/a@{}", sha('a')),
        format!("ghcr.io/org/a:1.2.3@{}", sha('a')),
        "nginx".to_owned(),
        "Not An Image".to_owned(),
        "1.2.3".to_owned(),
    ];
    let q = ["", "'", "\""][quote];
    let v = format!("{q}{}{q}", values[value]);
    let markers = [
        "",
        " # {\"$imagepolicy\": \"ns:a\"}",
        " # {\"$imagepolicy\": \"ns:b:tag\"}",
        " # keel.sh/policy: minor",
        " #{\"$imagepolicy\":\"ns:a:name\"}",
    ];
    let m = markers[marker];
    let comment = if extra { "\n  # note\n" } else { "\n" };
    match form {
        0 => format!("k{i}: {v}{m}"),
        1 => format!("k{i}:{comment}  image: {v}{m}"),
        2 => format!(
            "k{i}:\n  repository: ghcr.io/org/b # {{\"$imagepolicy\": \"ns:b:name\"}}{comment}  tag: {q}1.2.3{q}{m}"
        ),
        3 => format!("k{i}: {{repository: ghcr.io/org/b, tag: {q}1.2.3{q}}}{m}"),
        4 => format!("k{i}: &a{i} {v}{m}\nk{i}x: *a{i}"),
        _ => format!("k{i}:\n  - {v}{m}\n  -   {v}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the input, scanning does not panic, every slot is a real scalar's content,
    /// writing each reference back unchanged is a no-op, and updating every reference gives
    /// YAML whose fresh scan sees the new references.
    #[test]
    fn scanning_and_rewriting_generated_values_files(
        entries in prop::collection::vec(entry(), 0..8),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = entries
            .iter()
            .enumerate()
            .map(|(i, &e)| render_entry(i, e))
            .collect::<Vec<_>>()
            .join("\n")
            .replace('\n', eol);
        if final_newline {
            text.push_str(eol);
        }
        let config = RepoConfig::default()
            .with_policy("ns:b", MarkerPolicy::new("minor").with_image("ghcr.io/org/b"));
        let found = scan("values.yaml", &text, &config);
        prop_assert!(found.warnings.iter().all(|w| !w.reason.contains("not valid YAML")), "{:?}\n{}", found.warnings, text);
        for r in &found.references {
            for slot in &r.slots {
                prop_assert!(text.get(slot.range.clone()).is_some_and(|s| !s.is_empty()), "{:?}", slot);
            }
        }
        let same: Vec<_> = found.references.iter().map(|r| (r.clone(), r.image.clone())).collect();
        prop_assert_eq!(rewrite(&text, &same).map_err(|e| TestCaseError::fail(e.to_string()))?, text.clone());

        let bump = |r: &Reference| {
            let holds_tag = r.slots.iter().any(|s| !matches!(s.part, Part::Name | Part::Digest));
            if !holds_tag {
                return r.image.clone();
            }
            let tag = keel_core::Tag::new("2.0.0").unwrap();
            match r.image.digest() {
                Some(_) => r.image.with_tag(tag).with_digest(keel_core::Digest::new(sha('b')).unwrap()),
                None => r.image.with_tag(tag),
            }
        };
        let edits: Vec<_> = found.references.iter().map(|r| (r.clone(), bump(r))).collect();
        let out = rewrite(&text, &edits).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let again = scan("values.yaml", &out, &config);
        let images: Vec<_> = again.references.iter().map(|r| r.image.clone()).collect();
        let wanted: Vec<_> = edits.iter().map(|(_, new)| new.clone()).collect();
        prop_assert_eq!(images, wanted, "{}\n{}", text, out);
    }
}

#[test]
fn alias_bombs_are_invalid_files_not_work() {
    // Merge keys of merge keys in a workload: reading its metadata would follow 8^8 entries.
    let mut text = String::from("m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n");
    for level in 1..9 {
        let below = vec![format!("*m{}", level - 1); 8].join(", ");
        text.push_str(&format!("m{level}: &m{level} {{<<: [{below}]}}\n"));
    }
    text.push_str(
        "kind: Deployment\nmetadata:\n  <<: *m8\n  annotations: {keel.sh/policy: minor}\n\
         spec: {template: {spec: {containers: [{name: a, image: 'ghcr.io/org/a:1.0.0'}]}}}\n",
    );
    assert!(text.len() <= 1024, "{} bytes", text.len());
    let found = scan("apps/bomb.yaml", &text, &RepoConfig::default());
    assert!(found.references.is_empty(), "{:?}", found.references);
    let [warning] = found.warnings.as_slice() else {
        panic!("{:?}", found.warnings)
    };
    assert_eq!(warning.file, "apps/bomb.yaml");
    assert!(warning.reason.contains("not valid YAML"), "{warning}");
    assert!(warning.reason.contains("100000 nodes"), "{warning}");
    // The same file as the configuration is refused, not expanded.
    let e = RepoConfig::from_yaml(&text).unwrap_err();
    assert!(e.to_string().contains("100000 nodes"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Releases: one image set wherever the repository references it
// ---------------------------------------------------------------------------------------------

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
    let config = RepoConfig::default().with_image(ImagePolicy::new("ghcr.io/acme/app", "minor"));
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
