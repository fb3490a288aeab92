//! Tests of discovery from cached workloads.

use super::discovery::{Scan, track_workload};
use super::*;
use crate::keys;

fn view(annotations: &[(&str, &str)], containers: &[(&str, &str, bool)]) -> WorkloadView {
    let kind = WorkloadKind::StatefulSet;
    let mut view = WorkloadView::for_test(kind, ("db", "pg"), annotations, containers);
    view.pull_secrets = vec!["regcred".into()];
    view
}

fn scan_of(view: &WorkloadView) -> Scan {
    let mut scan = Scan::default();
    track_workload(view, &mut scan);
    scan
}

#[test]
fn tracks_each_monitored_container_with_its_config() {
    let v = view(
        &[
            (keys::POLICY, "patch"),
            (keys::INIT_CONTAINERS, "true"),
            (keys::APPROVALS, "1"),
        ],
        &[
            ("pg", "postgres:16.1", false),
            ("exporter", "quay.io/prometheus/exporter:v0.15.0", false),
            ("init", "busybox:1.36", true),
        ],
    );
    let scan = scan_of(&v);
    assert!(scan.problems.is_empty());
    let ids: Vec<&str> = scan.tracked.iter().map(|(t, _)| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "statefulset/db/pg/pg",
            "statefulset/db/pg/exporter",
            "statefulset/db/pg/init:init"
        ]
    );
    assert!(scan.tracked.iter().all(|(t, _)| t.approvals == 1));
    assert_eq!(scan.tracked[0].1.image, "postgres:16.1");
    assert_eq!(scan.tracked[0].1.trigger, "webhook");
}

#[test]
fn a_bad_image_skips_only_its_container() {
    let v = view(
        &[(keys::POLICY, "minor")],
        &[
            ("app", "Not/A:Valid:Image", false),
            ("ok", "nginx:1.25", false),
        ],
    );
    let scan = scan_of(&v);
    assert_eq!(scan.tracked.len(), 1);
    assert_eq!(scan.problems.len(), 1);
    let text = scan.problems[0].to_string();
    assert!(
        text.starts_with("statefulset db/pg: image of container app = \"Not/A:Valid:Image\""),
        "{text}"
    );
}

#[test]
fn recorded_digests_show_only_to_digest_following_policies() {
    let digest = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    let record = format!(r#"{{"app":"docker.io/library/nginx:1.25@{digest}"}}"#);
    let follow = view(
        &[
            (keys::POLICY, "force"),
            (keys::MATCH_TAG, "true"),
            (keys::DIGESTS, &record),
        ],
        &[("app", "nginx:1.25", false)],
    );
    let scan = scan_of(&follow);
    assert_eq!(
        scan.tracked[0].0.image.digest().map(|d| d.as_str()),
        Some(digest)
    );
    let minor = view(
        &[(keys::POLICY, "minor"), (keys::DIGESTS, &record)],
        &[("app", "nginx:1.25", false)],
    );
    assert_eq!(scan_of(&minor).tracked[0].0.image.digest(), None);
}

#[test]
fn pull_secrets_merge_template_and_annotation() {
    let v = view(&[(keys::IMAGE_PULL_SECRET, "extra,regcred, more ")], &[]);
    assert_eq!(pull_secret_names(&v), ["regcred", "extra", "more"]);
}
