//! Self-tests of the integration-test support: the API server, its users and RBAC, the
//! request log, and the fixtures.

use k8s_openapi::api::apps::v1::Deployment;
use keel_testsupport::kube::{
    ApiServer, Kind, RecordedRequest, Workload, deployment_images, grant,
};
use kube::api::{Api, ListParams};

#[tokio::test]
async fn the_server_answers_the_admin_and_refuses_limited_users_until_granted() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("selftest-rbac").await else {
        return;
    };
    Workload::deployment("web")
        .container("app", "nginx:1.25.3")
        .create(&admin, &ns)
        .await;

    let alice: Api<Deployment> = Api::namespaced(server.client_as("alice"), &ns);
    let refused = alice.get("web").await.expect_err("alice has no rights yet");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "expected 403, got {refused}"
    );

    grant(
        &admin,
        &ns,
        "alice",
        &[(&["apps"], &["deployments"], &["get"])],
    )
    .await;
    // RBAC changes reach the authorizer through its own watch; give it a moment.
    let mut found = None;
    for _ in 0..50 {
        if let Ok(d) = alice.get("web").await {
            found = Some(d);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deployment = found.expect("alice may get deployments once granted");
    assert_eq!(deployment.metadata.name.as_deref(), Some("web"));
    // ... and only get.
    assert!(alice.list(&ListParams::default()).await.is_err());
}

#[tokio::test]
async fn the_counting_client_records_lists_and_gets() {
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let ns = server.namespace("selftest-count").await;
    Workload::deployment("web")
        .container("app", "nginx:1.25.3")
        .create(&server.admin_client(), &ns)
        .await;
    let (client, log) = server.counting_admin_client();
    let api: Api<Deployment> = Api::namespaced(client, &ns);
    api.list(&ListParams::default()).await.expect("list");
    api.get("web").await.expect("get");
    let all = log.all();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(log.lists().len(), 1);
    assert_eq!(
        log.lists()[0].path,
        format!("/apis/apps/v1/namespaces/{ns}/deployments")
    );
    assert!(!all[1].is_list(), "a GET of one object is not a LIST");
    log.clear();
    assert!(log.all().is_empty());
}

#[test]
fn request_classification() {
    let req = |method: &str, path: &str, query: &str| RecordedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
    };
    assert!(req("GET", "/apis/apps/v1/deployments", "").is_list());
    assert!(req("GET", "/api/v1/namespaces/x/pods", "limit=500").is_list());
    assert!(!req("GET", "/api/v1/namespaces/x/pods", "watch=true").is_list());
    assert!(
        req(
            "GET",
            "/api/v1/namespaces/x/pods",
            "watch=true&resourceVersion=1"
        )
        .is_watch()
    );
    assert!(!req("GET", "/apis/apps/v1/namespaces/x/deployments/web", "").is_list());
    assert!(!req("PATCH", "/apis/apps/v1/namespaces/x/deployments", "").is_list());
}

#[tokio::test]
async fn every_workload_kind_can_be_created() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("selftest-kinds").await else {
        return;
    };
    for kind in [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet] {
        Workload::new(kind, kind.id_prefix())
            .container("app", "nginx:1.25.3")
            .init_container("init", "busybox:1.36")
            .pull_secret("regcred")
            .create(&admin, &ns)
            .await;
    }
    if server.serves("batch/v1", "cronjobs").await {
        Workload::new(Kind::CronJob, "cron")
            .container("app", "nginx:1.25.3")
            .create(&admin, &ns)
            .await;
    } else {
        eprintln!("the server has no batch/v1 CronJob; skipped that kind");
    }
    let images = deployment_images(&admin, &ns, "deployment", true).await;
    assert_eq!(images, vec![("init".to_owned(), "busybox:1.36".to_owned())]);
}

#[tokio::test]
async fn a_server_of_its_own_stops_on_drop() {
    let Some(server) = ApiServer::start().await else {
        return;
    };
    let url = server.url().to_owned();
    assert!(server.serves("apps/v1", "deployments").await);
    drop(server);
    // The port no longer answers.
    let addr = url.trim_start_matches("https://");
    let mut refused = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(refused, "the server at {url} still answers after drop");
}
