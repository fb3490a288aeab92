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
    assert_eq!(scan.tracked[0].1.workload.image, "postgres:16.1");
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

mod followed_tags {
    use std::collections::HashMap;

    use super::super::discovery::{Scan, Streams, track_followed_tags, track_workload};
    use super::*;
    use crate::openshift::StreamTag;

    /// A DeploymentConfig `shop/web` with `policy`, whose container `app` follows
    /// `shop/web:stable`.
    fn dc(policy: &str) -> WorkloadView {
        let kind = WorkloadKind::DeploymentConfig;
        let mut view = WorkloadView::for_test(
            kind,
            ("shop", "web"),
            &[(keys::POLICY, policy)],
            &[
                ("app", "internal/web@sha256:1", false),
                ("proxy", "nginx:1.25.0", false),
            ],
        );
        view.containers[0].driven_by = Some(StreamTag {
            namespace: "shop".into(),
            stream: "web".into(),
            tag: "stable".into(),
        });
        view
    }

    /// The ImageStream `shop/web` with annotations and its tag `stable` from `source`.
    fn stream(annotations: &[(&str, &str)], source: Option<&str>) -> WorkloadView {
        let kind = WorkloadKind::ImageStream;
        let mut view = WorkloadView::for_test(kind, ("shop", "web"), annotations, &[]);
        view.containers = vec![crate::workload::ContainerView::plain(
            "stable",
            source.map(str::to_owned),
            false,
        )];
        view
    }

    fn scan_of(views: &[WorkloadView], watched: bool) -> Scan {
        let in_scope = |_: &str| true;
        let streams = Streams {
            watched,
            views: views
                .iter()
                .filter(|v| v.kind == WorkloadKind::ImageStream)
                .map(|v| ((v.namespace.clone(), v.name.clone()), v))
                .collect::<HashMap<_, _>>(),
            in_scope: &in_scope,
        };
        let mut scan = Scan::default();
        for view in views {
            track_workload(view, &mut scan);
        }
        for view in views {
            track_followed_tags(view, &streams, &mut scan);
        }
        scan
    }

    fn listed(scan: &Scan) -> Vec<(String, String, String)> {
        scan.tracked
            .iter()
            .map(|(t, w)| (t.id.clone(), w.policy.clone(), w.workload.image.clone()))
            .collect()
    }

    #[test]
    fn the_tag_is_tracked_with_the_workloads_keys_instead_of_the_container() {
        let scan = scan_of(
            &[dc("minor"), stream(&[], Some("ghcr.io/acme/web:1.2.3"))],
            true,
        );
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        assert_eq!(
            listed(&scan),
            [
                (
                    "deploymentconfig/shop/web/proxy".into(),
                    "minor".into(),
                    "nginx:1.25.0".into()
                ),
                (
                    "imagestream/shop/web/stable".into(),
                    "minor".into(),
                    "ghcr.io/acme/web:1.2.3".into()
                ),
            ]
        );
    }

    #[test]
    fn a_tag_with_keys_of_its_own_follows_them() {
        let own = stream(&[(keys::POLICY, "patch")], Some("ghcr.io/acme/web:1.2.3"));
        let scan = scan_of(&[dc("major"), own], true);
        let tags: Vec<_> = listed(&scan)
            .into_iter()
            .filter(|(id, _, _)| id.starts_with("imagestream/"))
            .collect();
        assert_eq!(
            tags,
            [(
                "imagestream/shop/web/stable".into(),
                "patch".into(),
                "ghcr.io/acme/web:1.2.3".into()
            )]
        );
    }

    #[test]
    fn why_a_tag_cannot_be_followed_is_said() {
        let cases = [
            (vec![dc("minor")], false, "are not watched"),
            (
                vec![dc("minor")],
                true,
                "ImageStream shop/web was not found",
            ),
            (
                vec![dc("minor"), stream(&[], None)],
                true,
                "no external DockerImage source",
            ),
        ];
        for (views, watched, why) in cases {
            let scan = scan_of(&views, watched);
            assert_eq!(scan.tracked.len(), 1, "only the proxy: {why}");
            assert_eq!(scan.problems.len(), 1, "{why}");
            let text = scan.problems[0].to_string();
            assert!(text.contains(why), "{text}");
            assert!(text.contains("ImageStreamTag shop/web:stable"), "{text}");
            assert!(
                text.starts_with("deploymentconfig shop/web: image of container app"),
                "{text}"
            );
        }
    }
}

#[test]
fn listings_name_the_workload_and_mark_init_containers() {
    let mut listed = WorkloadContainer {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
        container: "app".into(),
        init: false,
        image: "ghcr.io/acme/web:1.0.0".into(),
    };
    assert_eq!(listed.workload(), "shop/deployment/web");
    assert_eq!(listed.container_label(), "app");
    listed.init = true;
    assert_eq!(listed.container_label(), "app (init)");
    // The listings serialize flat, as before the workload had a type of its own.
    let json = serde_json::to_value(WorkloadImage {
        id: "deployment/shop/web/app".into(),
        workload: listed,
        policy: "minor".into(),
        trigger: "webhook".into(),
    })
    .unwrap();
    assert_eq!(json["namespace"], "shop");
    assert_eq!(json["container"], "app");
    assert_eq!(json["init"], true);
}
