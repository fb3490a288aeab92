//! Self-test of the Helm support: the pinned `helm` installs and upgrades the `web` test chart
//! on the throw-away API server, and the chart's `failOnTag` makes an upgrade fail.

use keel_testsupport::helm::{HELM_SKIP_MESSAGE, Helm, chart_dir, helm_bin};
use keel_testsupport::kube::{ADMIN, ApiServer, deployment_images};
use serde_json::Value;

/// The `(revision, status)` pairs of `helm history`.
fn revisions(history: &Value) -> Vec<(u64, String)> {
    history
        .as_array()
        .expect("helm history is an array")
        .iter()
        .map(|entry| {
            (
                entry["revision"].as_u64().expect("a revision number"),
                entry["status"].as_str().expect("a status").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn helm_installs_upgrades_and_refuses_the_web_chart() {
    if helm_bin().is_none() {
        eprintln!("{HELM_SKIP_MESSAGE}");
        return;
    }
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let ns = server.namespace("helm").await;
    let helm = Helm::new(server, ADMIN).expect("HELM_BIN is set");
    let chart = chart_dir("web");
    assert!(chart.join("Chart.yaml").is_file(), "{}", chart.display());

    helm.install(&ns, "web", &chart, &[]);
    assert_eq!(
        revisions(&helm.history(&ns, "web")),
        [(1, "deployed".to_owned())]
    );
    let all = helm.get_values(&ns, "web", true);
    assert_eq!(all["image"]["tag"], "1.0.0");
    assert_eq!(all["keel"]["policy"], "minor");
    assert_eq!(
        deployment_images(&server.admin_client(), &ns, "web", false).await,
        [
            (
                "app".to_owned(),
                "registry.example/acme/web:1.0.0".to_owned()
            ),
            (
                "sidecar".to_owned(),
                "registry.example/acme/proxy:2.0.0".to_owned()
            ),
        ]
    );

    let upgrade = |sets: &[&str]| {
        let mut args = vec![
            "upgrade",
            "web",
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            &ns,
            "--reuse-values",
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        helm.run(&args)
    };
    let upgrade_to_1_1 = upgrade(&["image.tag=1.1.0"]);
    assert!(
        upgrade_to_1_1.status.success(),
        "{}",
        String::from_utf8_lossy(&upgrade_to_1_1.stderr)
    );
    assert_eq!(
        revisions(&helm.history(&ns, "web")),
        [(1, "superseded".to_owned()), (2, "deployed".to_owned())]
    );
    assert_eq!(
        helm.get_values(&ns, "web", false),
        serde_json::json!({ "image": { "tag": "1.1.0" } })
    );
    let images = deployment_images(&server.admin_client(), &ns, "web", false).await;
    assert_eq!(
        images[0],
        (
            "app".to_owned(),
            "registry.example/acme/web:1.1.0".to_owned()
        )
    );

    let refused = upgrade(&["failOnTag=1.2.0", "image.tag=1.2.0"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the upgrade to 1.2.0 succeeded");
    assert!(
        stderr.contains("image tag 1.2.0 is refused by this chart"),
        "{stderr}"
    );
    // A failed render records no revision; revision 2 stays deployed.
    assert_eq!(
        revisions(&helm.history(&ns, "web")),
        [(1, "superseded".to_owned()), (2, "deployed".to_owned())]
    );
}
