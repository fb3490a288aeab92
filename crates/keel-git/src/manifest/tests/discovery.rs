//! Discovery: markers, Keel annotations and comments, kustomizations, paths.

use super::*;

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
    let config = one_policy("ns:y", PolicySpec::Patch, "ghcr.io/org/y");
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
