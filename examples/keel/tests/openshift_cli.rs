//! `keel check --kube` on an OpenShift-like cluster: the real kube-apiserver serving
//! DeploymentConfig and ImageStream as CustomResourceDefinitions of OpenShift's groups,
//! versions and kinds (no OpenShift controller runs; see `keel_testsupport::kube::openshift`),
//! and a real registry on 127.0.0.1.

mod common;
use common::{AdminKubeconfig, keel_with_env, stdout_of, text};

use keel_testsupport::kube::{ApiServer, Workload, install_openshift_crds};
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

/// What OpenShift's internal registry would have written into the container.
const INTERNAL: &str = "image-registry.openshift-image-registry.svc:5000/ns/web@sha256:\
                        1111111111111111111111111111111111111111111111111111111111111111";

#[tokio::test]
async fn check_shows_which_image_stream_tag_drives_which_container() {
    let Some(api) = ApiServer::shared().await else {
        return;
    };
    install_openshift_crds(api).await;
    let server = RegistryServer::start(ServerOptions::plain()).await;
    server
        .push_tags("team/web", &["1.2.3", "1.3.0", "2.0.0"])
        .await;
    let image = |tag: &str| format!("{}/team/web:{tag}", server.addr());
    let ns = api.namespace("cli-okd").await;
    let client = api.admin_client();

    // An ImageStream tag following the registry under `minor`, and a Deployment whose
    // container that tag drives through the triggers annotation.
    let gvk = GroupVersionKind::gvk("image.openshift.io", "v1", "ImageStream");
    let streams: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let stream: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": { "name": "web", "annotations": { "keel.sh/policy": "minor" } },
        "spec": { "tags": [{
            "name": "stable",
            "from": { "kind": "DockerImage", "name": image("1.2.3") },
            "importPolicy": { "scheduled": true },
        }] }
    }))
    .unwrap();
    streams
        .create(&PostParams::default(), &stream)
        .await
        .expect("create the ImageStream");
    let triggers = json!([{
        "from": { "kind": "ImageStreamTag", "name": "web:stable" },
        "fieldPath": "spec.template.spec.containers[?(@.name==\"app\")].image",
    }]);
    Workload::deployment("web")
        .annotation("image.openshift.io/triggers", &triggers.to_string())
        .container("app", INTERNAL)
        .create(&client, &ns)
        .await;

    let kubeconfig = AdminKubeconfig::of(api);
    let env = kubeconfig.env();

    let o = keel_with_env(&["check", "--kube", "-n", &ns], "", &env);
    let out = stdout_of(&o);
    let (tracked, driven) = out
        .split_once("\nDriven by ImageStream tags")
        .unwrap_or_else(|| panic!("no chain table in:\n{out}"));
    // The tag is what is tracked and updated...
    let rows: Vec<Vec<&str>> = tracked
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(
        rows[0][2..],
        [image("1.2.3"), "minor".to_owned(), image("1.3.0")],
        "{out}"
    );
    // ...and the container it drives shows with the whole chain and the tag's update.
    let chain: Vec<Vec<&str>> = driven
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        chain,
        [vec![
            format!("{ns}/deployment/web"),
            "app".to_owned(),
            format!("{ns}/web:stable"),
            "image.openshift.io/triggers".to_owned(),
            image("1.2.3"),
            image("1.3.0"),
        ]],
        "{out}"
    );

    let o = keel_with_env(&["check", "--kube", "-n", &ns, "-o", "json"], "", &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let driven = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r.get("driven_by").is_some())
        .unwrap_or_else(|| panic!("no driven row in {rows}"));
    assert_eq!(
        driven["driven_by"],
        json!({
            "image_stream_tag": format!("{ns}/web:stable"),
            "via": "image.openshift.io/triggers",
            "source": image("1.2.3"),
        })
    );
    assert_eq!(driven["image"], INTERNAL);
    assert_eq!(driven["policy"], "minor");
    assert_eq!(driven["update"], image("1.3.0"));
}
