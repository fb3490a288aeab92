//! Webhook payloads of every source Keel accepts, from sample files in `tests/webhooks/`.

use keel_core::Error;
use keel_core::trigger::{PushEvent, WebhookSource};
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/webhooks/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The sample payload `name`, as JSON to edit.
fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// What `source` makes of the payload `doc`.
fn parse_doc(source: WebhookSource, doc: &Value) -> Result<Vec<PushEvent>, Error> {
    source.parse_payload(doc.to_string().as_bytes())
}

/// The image of the first push `source` finds in `doc`.
fn first_image(source: WebhookSource, doc: &Value) -> String {
    parse_doc(source, doc).unwrap()[0].image.to_string()
}

/// Why `source` refuses `doc` as invalid input.
fn invalid_reason(source: WebhookSource, doc: &Value) -> String {
    match parse_doc(source, doc) {
        Err(Error::InvalidInput(e)) => e.reason().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn pushes(source: WebhookSource, name: &str) -> Vec<(String, Option<String>)> {
    source
        .parse_payload(fixture(name).as_bytes())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .map(|PushEvent { image, digest }| (image.to_string(), digest.map(|d| d.to_string())))
        .collect()
}

fn one(image: &str, digest: Option<&str>) -> Vec<(String, Option<String>)> {
    vec![(image.to_owned(), digest.map(str::to_owned))]
}

#[test]
fn each_sample_push_reports_its_image_and_digest() {
    #[rustfmt::skip]
    let cases = [
        (WebhookSource::Native,    "native.json",                  "gcr.io/acme-prod/hello-world:1.1.1",                None),
        (WebhookSource::DockerHub, "dockerhub.json",               "docker.io/acme/web:1.4.2",                          None),
        (WebhookSource::DockerHub, "dockerhub_official.json",      "docker.io/library/nginx:1.27.0-alpine",             None),
        (WebhookSource::Azure,     "azure_push.json",              "acmeregistry.azurecr.io/team/hello-world:v1.3.0",   Some("sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d")),
        // GHCR names are lower case whatever the owner's and package's spelling.
        (WebhookSource::GitHub,    "github_package.json",          "ghcr.io/acme-corp/billing-service:2.8.1",           Some("sha256:6ef3b9a3b6b9cbe52c6f4bd1b3d3dbd3ac8e54b09c3c5c1aa1b8f0e8f8b0f1c2")),
        (WebhookSource::GitHub,    "github_registry_package.json", "docker.pkg.github.com/acme-corp/jobs/worker:0.9.3", None),
        (WebhookSource::Harbor,    "harbor_push.json",             "harbor.acme.internal/payments/ledger:v3.2.0",       Some("sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4")),
        (WebhookSource::JFrog,     "jfrog_pushed.json",            "acme.jfrog.io/docker-local/team/checkout:5.0.1",    Some("sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce")),
        // Of a layer blob, a platform manifest pushed by digest, the tagged index and a pull,
        // only the tagged index is a push.
        (WebhookSource::Registry,  "registry_push.json",           "registry.acme.internal:5000/tools/debugger:0.4.0",  Some("sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf")),
    ];
    for (source, file, image, digest) in cases {
        assert_eq!(pushes(source, file), one(image, digest), "{file}");
    }
}

#[test]
fn deletes_pulls_pings_and_untagged_manifests_are_no_pushes() {
    #[rustfmt::skip]
    let cases = [
        (WebhookSource::Azure,    "azure_delete.json"),
        // Untagged platform manifests and the ping GitHub sends on creation are no pushes.
        (WebhookSource::GitHub,   "github_package_untagged.json"),
        (WebhookSource::GitHub,   "github_ping.json"),
        (WebhookSource::Harbor,   "harbor_pull.json"),
        (WebhookSource::JFrog,    "jfrog_deleted.json"),
        (WebhookSource::Registry, "registry_pull.json"),
    ];
    for (source, file) in cases {
        assert_eq!(pushes(source, file), vec![], "{file}");
    }
}

#[test]
fn native() {
    let with_digest = br#"{"name": "nginx", "tag": "1.27", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000001"}"#;
    let events = WebhookSource::Native.parse_payload(with_digest).unwrap();
    assert_eq!(events[0].image.to_string(), "docker.io/library/nginx:1.27");
    assert!(events[0].digest.is_some());
}

#[test]
fn quay_reports_every_updated_tag() {
    assert_eq!(
        pushes(WebhookSource::Quay, "quay.json"),
        vec![
            ("quay.io/acme/api:v2.3.0".to_owned(), None),
            ("quay.io/acme/api:latest".to_owned(), None),
        ]
    );
}

#[test]
fn github_container_packages() {
    // Other package kinds and actions are ignored too.
    let mut npm: Value = fixture_json("github_package.json");
    npm["package"]["package_type"] = "npm".into();
    npm["package"]["ecosystem"] = "npm".into();
    assert!(parse_doc(WebhookSource::GitHub, &npm).unwrap().is_empty());
    let mut deleted: Value = fixture_json("github_package.json");
    deleted["action"] = "deleted".into();
    assert!(
        parse_doc(WebhookSource::GitHub, &deleted)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn harbor_push_and_pull() {
    // Harbor 1's `pushImage`, with the tag only in the resource URL.
    let v1 = br#"{"type": "pushImage", "event_data": {"resources": [
        {"digest": "", "resource_url": "harbor.acme.internal/payments/ledger:v3.3.0"}]}}"#;
    let events = WebhookSource::Harbor.parse_payload(v1).unwrap();
    assert_eq!(
        events[0].image.to_string(),
        "harbor.acme.internal/payments/ledger:v3.3.0"
    );
    assert_eq!(events[0].digest, None);
}

#[test]
fn jfrog_pushed_and_deleted() {
    // Without image_name and tag, the manifest path tells both.
    let mut old: Value = fixture_json("jfrog_pushed.json");
    let data = old["data"].as_object_mut().unwrap();
    data.remove("image_name");
    data.remove("tag");
    assert_eq!(
        first_image(WebhookSource::JFrog, &old),
        "acme.jfrog.io/docker-local/team/checkout:5.0.1"
    );
}

#[test]
fn registry_notifications_report_tagged_manifest_pushes_only() {
    assert_eq!(
        WebhookSource::Registry
            .parse_payload(br#"{"events": []}"#)
            .unwrap(),
        vec![]
    );
}

#[test]
fn duplicates_within_a_payload_are_reported_once() {
    let body = r#"{"docker_url": "quay.io/acme/api", "updated_tags": ["1.0", "1.0", "1.1"]}"#;
    let events = WebhookSource::Quay.parse_payload(body.as_bytes()).unwrap();
    assert_eq!(events.len(), 2);
}

/// Removes the fields at `pointers` (comma-separated JSON pointers) from a fixture and
/// returns the parse error's reason.
fn reason_without(source: WebhookSource, name: &str, pointers: &str) -> String {
    let mut doc: Value = fixture_json(name);
    for pointer in pointers.split(',') {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = doc
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{name}: {pointer}"));
        match parent {
            Value::Object(map) => {
                map.remove(key)
                    .unwrap_or_else(|| panic!("{name}: no {pointer}"));
            }
            Value::Array(items) => {
                items.remove(key.parse().unwrap());
            }
            _ => panic!("{name}: {pointer} is not in an object"),
        }
    }
    match parse_doc(source, &doc) {
        Err(Error::InvalidInput(e)) => e.reason().to_owned(),
        other => panic!("{name} without {pointers} should be refused, got {other:?}"),
    }
}

#[test]
fn missing_fields_are_named_with_the_source() {
    use WebhookSource::*;
    for (source, fixture, pointer, expected) in [
        (
            Native,
            "native.json",
            "/tag",
            "native payload: field tag is missing",
        ),
        (
            Native,
            "native.json",
            "/name",
            "native payload: field name is missing",
        ),
        (
            DockerHub,
            "dockerhub.json",
            "/push_data/tag",
            "Docker Hub payload: field push_data.tag is missing",
        ),
        (
            DockerHub,
            "dockerhub.json",
            "/repository/repo_name",
            "Docker Hub payload: field repository.repo_name is missing",
        ),
        (
            Quay,
            "quay.json",
            "/docker_url",
            "Quay payload: field docker_url is missing",
        ),
        (
            Quay,
            "quay.json",
            "/updated_tags",
            "Quay payload: field updated_tags is missing",
        ),
        (
            Azure,
            "azure_push.json",
            "/request/host",
            "Azure Container Registry payload: field request.host is missing",
        ),
        (
            Azure,
            "azure_push.json",
            "/target/repository",
            "Azure Container Registry payload: field target.repository is missing",
        ),
        (
            Azure,
            "azure_push.json",
            "/action",
            "Azure Container Registry payload: field action is missing",
        ),
        (
            GitHub,
            "github_package.json",
            "/package/package_version",
            "GitHub payload: field package.package_version is missing",
        ),
        (
            GitHub,
            "github_package.json",
            "/package",
            "GitHub payload: field package (or registry_package) is missing; is the webhook subscribed to package events?",
        ),
        (
            Harbor,
            "harbor_push.json",
            "/event_data/resources/0/resource_url",
            "Harbor payload: field event_data.resources[0].resource_url is missing",
        ),
        (
            Harbor,
            "harbor_push.json",
            "/type",
            "Harbor payload: field type is missing",
        ),
        (
            JFrog,
            "jfrog_pushed.json",
            "/jpd_origin",
            "JFrog Artifactory payload: field jpd_origin is missing",
        ),
        (
            JFrog,
            "jfrog_pushed.json",
            "/data/repo_key",
            "JFrog Artifactory payload: field data.repo_key is missing",
        ),
        (
            Registry,
            "registry_push.json",
            "/events/2/request/host,/events/2/target/url",
            "distribution registry payload: field events[2].request.host is missing",
        ),
        (
            Registry,
            "registry_push.json",
            "/events/2/target/repository",
            "distribution registry payload: field events[2].target.repository is missing",
        ),
        (
            Registry,
            "registry_push.json",
            "/events",
            "distribution registry payload: field events is missing",
        ),
    ] {
        assert_eq!(
            reason_without(source, fixture, pointer),
            expected,
            "{fixture} {pointer}"
        );
    }
}

#[test]
fn registry_falls_back_to_the_target_url_host() {
    let mut doc: Value = fixture_json("registry_push.json");
    doc["events"][2]["request"]
        .as_object_mut()
        .unwrap()
        .remove("host");
    doc["events"][2]["target"]["url"] =
        "https://mirror.acme.internal/v2/tools/debugger/manifests/0.4.0".into();
    assert_eq!(
        first_image(WebhookSource::Registry, &doc),
        "mirror.acme.internal/tools/debugger:0.4.0"
    );
}

#[test]
fn invalid_values_are_named_with_the_source() {
    let mut doc: Value = fixture_json("azure_push.json");
    doc["target"]["digest"] = "sha256:nothex".into();
    let reason = invalid_reason(WebhookSource::Azure, &doc);
    assert!(
        reason.starts_with(
            "Azure Container Registry payload: field target.digest \"sha256:nothex\" is not a valid digest"
        ),
        "{reason}"
    );

    let mut doc: Value = fixture_json("dockerhub.json");
    doc["push_data"]["tag"] = "-bad tag".into();
    let reason = invalid_reason(WebhookSource::DockerHub, &doc);
    assert!(
        reason
            .starts_with("Docker Hub payload: field push_data.tag \"-bad tag\" is not a valid tag"),
        "{reason}"
    );

    // The message never quotes the body, which may hold a capability URL.
    let mut doc: Value = fixture_json("dockerhub.json");
    doc["push_data"].as_object_mut().unwrap().remove("tag");
    let err = parse_doc(WebhookSource::DockerHub, &doc)
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("callback_url") && !err.contains("2141b5"),
        "{err}"
    );
}
