//! Pull secrets against a real API server: created, rotated and deleted secrets show up in
//! the credentials within moments, from a cache (no request per lookup).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_core::{CredentialSource, DockerConfigFormat, ImageRef};
use keel_k8s::{PullSecrets, SecretRef};
use keel_testsupport::kube::{ApiServer, wait_until};
use kube::api::{Api, DeleteParams, PostParams};

/// The `kubernetes.io/dockerconfigjson` secret `regcred` holding `config`.
fn regcred(config: &str) -> Secret {
    secret(
        "regcred",
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        config,
    )
}

fn secret(name: &str, secret_type: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(secret_type.into()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

fn config_json(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"registry.example.com":{{"auth":"{auth}"}}}}}}"#)
}

/// Polls `check` until it holds, for up to ten seconds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let limits = (Duration::from_secs(10), Duration::from_millis(50));
    wait_until(what, limits, async || {
        check().then_some(()).ok_or("not yet")
    })
    .await;
}

#[tokio::test]
async fn secrets_are_seen_when_created_updated_and_deleted() {
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let ns = server.namespace("pull-secrets").await;
    let other_ns = server.namespace("pull-secrets-other").await;
    let client = server.admin_client();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    let secrets = PullSecrets::in_namespaces(client.clone(), [ns.clone()]);
    assert!(secrets.ready_within(Duration::from_secs(30)).await);

    let image = ImageRef::parse("registry.example.com/team/app:1.0").unwrap();
    secrets.set_usage(
        "deployment/ns/app/app",
        &image,
        [
            (ns.as_str(), "regcred"),
            (ns.as_str(), "legacy"),
            (ns.as_str(), "opaque"),
            (other_ns.as_str(), "elsewhere"),
            (ns.as_str(), "missing"),
        ],
    );
    // Nothing exists yet: every reference is skipped, nothing panics.
    assert!(secrets.docker_configs(&image).is_empty());

    let v1 = config_json("robot", "first-password");
    api.create(&pp, &regcred(&v1)).await.unwrap();
    let legacy = r#"{"registry.example.com":{"auth":"cm9ib3Q6bGVnYWN5"}}"#;
    api.create(
        &pp,
        &secret("legacy", "kubernetes.io/dockercfg", ".dockercfg", legacy),
    )
    .await
    .unwrap();
    // Neither an opaque secret nor one outside the scope counts.
    api.create(&pp, &secret("opaque", "Opaque", ".dockerconfigjson", &v1))
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), &other_ns)
        .create(
            &pp,
            &secret(
                "elsewhere",
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                &v1,
            ),
        )
        .await
        .unwrap();

    eventually("both pull secrets are cached", || {
        secrets.docker_configs(&image).len() == 2
    })
    .await;
    let docs = secrets.docker_configs(&image);
    assert_eq!(docs[0].origin, format!("secret {ns}/regcred"));
    assert_eq!(docs[0].format, DockerConfigFormat::ConfigJson);
    assert_eq!(&*docs[0].json, v1);
    assert_eq!(docs[1].origin, format!("secret {ns}/legacy"));
    assert_eq!(docs[1].format, DockerConfigFormat::Dockercfg);
    assert_eq!(&*docs[1].json, legacy);
    assert_eq!(
        secrets.cached(),
        vec![
            SecretRef::new(&ns, "legacy"),
            SecretRef::new(&ns, "regcred")
        ]
    );
    // Other repositories get nothing.
    let other = ImageRef::parse("registry.example.com/team/other:1.0").unwrap();
    assert!(secrets.docker_configs(&other).is_empty());
    // Debug output names secrets, never their contents.
    let debug = format!("{secrets:?} {docs:?}");
    assert!(debug.contains("regcred"), "{debug}");
    assert!(
        !debug.contains("auths") && !debug.contains("cm9ib3Q"),
        "{debug}"
    );

    // Rotation: the new content replaces the old.
    let v2 = config_json("robot", "second-password");
    let mut current = api.get("regcred").await.unwrap();
    current.data = Some(BTreeMap::from([(
        ".dockerconfigjson".to_owned(),
        ByteString(v2.as_bytes().to_vec()),
    )]));
    api.replace("regcred", &pp, &current).await.unwrap();
    eventually("the rotated secret is cached", || {
        secrets
            .docker_configs(&image)
            .first()
            .is_some_and(|d| *d.json == *v2)
    })
    .await;

    // Deletion: gone from the answers.
    api.delete("regcred", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted secret is dropped", || {
        secrets.docker_configs(&image).len() == 1
    })
    .await;
    assert_eq!(
        secrets.docker_configs(&image)[0].origin,
        format!("secret {ns}/legacy")
    );

    // Forgetting the usage forgets the credentials.
    secrets.remove_usage("deployment/ns/app/app");
    assert!(secrets.docker_configs(&image).is_empty());
}

#[tokio::test]
async fn existing_secrets_are_listed_at_start_and_lookups_make_no_requests() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("pull-secrets-cached").await else {
        return;
    };
    let v1 = config_json("ci", "token");
    Api::<Secret>::namespaced(admin, &ns)
        .create(&PostParams::default(), &regcred(&v1))
        .await
        .unwrap();

    let (client, log) = server.counting_admin_client();
    let secrets = PullSecrets::all_namespaces(client);
    assert!(secrets.ready_within(Duration::from_secs(30)).await);
    // Present right after the first listing, without waiting for a watch event.
    let doc = secrets
        .document(&SecretRef::new(&ns, "regcred"))
        .expect("listed at start");
    assert_eq!(&*doc.json, v1);

    let image = ImageRef::parse("registry.example.com/ci/app:2").unwrap();
    secrets.replace_usage([(
        "deployment/x/app/app".to_owned(),
        image.clone(),
        vec![SecretRef::new(&ns, "regcred")],
    )]);
    let before = log.all().len();
    for _ in 0..100 {
        assert_eq!(secrets.docker_configs(&image).len(), 1);
    }
    let after = log.all();
    assert!(
        after[before..].iter().all(|r| r.is_watch()),
        "lookups made requests: {:?}",
        &after[before..]
    );
    // The initial listing was one LIST per secret type, then watches only.
    let lists = after.iter().filter(|r| r.is_list()).count();
    assert_eq!(lists, 2, "{after:?}");
}
