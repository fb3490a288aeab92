//! OpenShift's `apps.openshift.io/v1` DeploymentConfig and `image.openshift.io/v1`
//! ImageStream, served by the test kube-apiserver as CustomResourceDefinitions.
//!
//! No OpenShift API server runs here, so the tests that need these kinds install CRDs of the
//! same groups, versions and kinds, whose schemas are written from the OpenShift API reference
//! for the fields keel-rs uses (`crds/*.yaml`). A CRD is not OpenShift: no controller rolls a
//! DeploymentConfig out, fires its `ImageChange` triggers or imports an ImageStream tag; tests
//! write the status they need themselves. Install them into a server of the test binary's own
//! (one test binary, [`ApiServer::shared`]), never into one that must stay plain.

use std::time::Duration;

use super::ApiServer;
use super::wait_until;

/// The DeploymentConfig CRD (`deploymentconfigs.apps.openshift.io`), as YAML.
pub const DEPLOYMENT_CONFIG_CRD: &str =
    include_str!("crds/deploymentconfigs.apps.openshift.io.yaml");

/// The ImageStream CRD (`imagestreams.image.openshift.io`), as YAML.
pub const IMAGE_STREAM_CRD: &str = include_str!("crds/imagestreams.image.openshift.io.yaml");

/// Installs both CRDs into `server` (an existing one is left as it is) and waits until the
/// server serves `deploymentconfigs` in `apps.openshift.io/v1` and `imagestreams` in
/// `image.openshift.io/v1`. Panics, naming the CRD, when the server refuses one or does not
/// serve it within 30 s.
pub async fn install_openshift_crds(server: &ApiServer) {
    install_crd(
        server,
        DEPLOYMENT_CONFIG_CRD,
        "apps.openshift.io/v1",
        "deploymentconfigs",
    )
    .await;
    install_crd(
        server,
        IMAGE_STREAM_CRD,
        "image.openshift.io/v1",
        "imagestreams",
    )
    .await;
}

/// Installs the CRD `yaml` into `server` (an existing one is left as it is) and waits until
/// the server serves `plural` in `group_version`. Panics, naming the resource, when the
/// server refuses the CRD or does not serve it within 30 s.
pub async fn install_crd(server: &ApiServer, yaml: &str, group_version: &str, plural: &str) {
    let client = server.admin_client();
    let request = http::Request::post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        .header(http::header::CONTENT_TYPE, "application/yaml")
        .body(yaml.as_bytes().to_vec())
        .expect("a valid request");
    match client.request_text(request).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create the CRD of {plural} in {group_version}: {e}"),
    }
    wait_until(
        &format!("{plural} served in {group_version}"),
        (Duration::from_secs(30), Duration::from_millis(100)),
        async || {
            if server.serves(group_version, plural).await {
                Ok(())
            } else {
                Err("not in discovery yet")
            }
        },
    )
    .await;
}
