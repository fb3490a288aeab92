//! `keel check --kube` and `keel release --kube` against a real kube-apiserver and a real
//! registry on 127.0.0.1.

mod common;
use common::{AdminKubeconfig, assert_says, keel_with_env, stdout_of, text};

use keel_testsupport::kube::{ApiServer, Workload, deployment_images};
use keel_testsupport::registry::{RegistryServer, ServerOptions};

#[tokio::test]
async fn check_lists_workloads_and_release_patches_one() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    let server = RegistryServer::start(ServerOptions::plain()).await;
    server
        .push_tags("team/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"])
        .await;
    let image = |tag: &str| format!("{}/team/web:{tag}", server.addr());
    let ns = api.namespace("cli").await;
    let client = api.admin_client();
    Workload::keel_deployment("web", "minor", &image("1.2.3"))
        .create(&client, &ns)
        .await;
    Workload::deployment("untracked")
        .container("app", &image("1.2.3"))
        .create(&client, &ns)
        .await;

    let kubeconfig = AdminKubeconfig::of(api);
    let env = kubeconfig.env();

    let o = keel_with_env(&["check", "--kube", "-n", &ns, "-o", "json"], "", &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{
            "workload": format!("{ns}/deployment/web"),
            "container": "app",
            "image": image("1.2.3"),
            "policy": "minor",
            "trigger": "webhook",
            "update": image("1.3.0"),
        }])
    );

    let o = keel_with_env(&["check", "--kube", "--namespace", &ns], "", &env);
    let table = stdout_of(&o);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["WORKLOAD", "CONTAINER", "IMAGE", "POLICY", "UPDATE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let (workload, current, update) = (
        format!("{ns}/deployment/web"),
        image("1.2.3"),
        image("1.3.0"),
    );
    assert_eq!(row, [workload.as_str(), "app", &current, "minor", &update]);
    assert_eq!(lines.next(), None);

    // The same workload's tags, as list-images shows them: the running one and the update.
    let o = keel_with_env(
        &["list-images", "--kube", "-n", &ns, "-o", "json"],
        "",
        &env,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let listings: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listings.as_array().unwrap().len(), 1, "{listings}");
    let listing = &listings[0];
    assert_eq!(listing["reference"], format!("{ns}/deployment/web app"));
    assert_eq!(listing["policy"], "minor");
    assert_eq!(listing["update"], "1.3.0");
    let flagged = |flag: &str| -> Vec<String> {
        let tags = listing["tags"].as_array().unwrap();
        let with = tags.iter().filter(|t| t[flag] == true);
        with.map(|t| t["tag"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(flagged("running"), ["1.2.3"], "{listing}");
    assert_eq!(flagged("chosen"), ["1.3.0"], "{listing}");
    assert!(
        flagged("allowed").contains(&"1.3.0".to_owned()),
        "{listing}"
    );

    let workload = format!("{ns}/deployment/web");
    let update = image("1.2.4");
    let release = || {
        let args = [
            "release",
            "--kube",
            "--workload",
            &workload,
            "--update-image",
            &update,
        ];
        keel_with_env(&args, "", &env)
    };
    let o = release();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_says(&o.stdout, &image("1.2.4"));
    assert_eq!(
        deployment_images(&client, &ns, "web", false).await,
        [("app".to_owned(), image("1.2.4"))]
    );
    // The same release again changes nothing and says so.
    let o = release();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_says(&o.stderr, "nothing to change");

    // Bad input: exit 2, naming it.
    let bad = format!("{ns}/deployment/missing");
    let o = keel_with_env(
        &[
            "release",
            "--kube",
            "--workload",
            &bad,
            "--update-image",
            &image("1.2.4"),
        ],
        "",
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_says(&o.stderr, &bad);
    let o = keel_with_env(&["check", "--kube", "--policy", "minor"], "", &env);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_says(&o.stderr, "--policy does not apply");
}
