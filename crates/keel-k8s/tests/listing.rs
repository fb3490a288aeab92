//! Listing a [`NamespaceScope`] against a real API server: the objects of every namespace in
//! scope and only those, and a resource the server does not serve as [`Error::NotFound`].

use k8s_openapi::api::core::v1::ConfigMap;
use keel_core::Error;
use keel_k8s::sync::{NamespaceScope, list_in, sort_by_name};
use keel_testsupport::kube::ApiServer;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};

/// Creates the ConfigMap `name` labelled `keel-test=listing` in `namespace`.
async fn config_map(client: &kube::Client, namespace: &str, name: &str) {
    let map: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "keel-test": "listing" } },
    }))
    .expect("a ConfigMap");
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &map)
        .await
        .expect("create the ConfigMap");
}

fn names(objects: &[DynamicObject]) -> Vec<(String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_scope_lists_its_namespaces_only() {
    let Some(server) = ApiServer::shared().await else {
        return;
    };
    let shop = server.namespace("listing-shop").await;
    let web = server.namespace("listing-web").await;
    let other = server.namespace("listing-other").await;
    let client = server.admin_client();
    for (ns, name) in [(&web, "b"), (&shop, "a"), (&web, "a"), (&other, "a")] {
        config_map(&client, ns, name).await;
    }
    let resource = ApiResource::erase::<ConfigMap>(&());
    let params = ListParams::default().labels("keel-test=listing");

    let scope = NamespaceScope::only([web.clone(), shop.clone()]);
    let mut objects = scope
        .list_objects(&client, &resource, &params)
        .await
        .expect("list the scope");
    sort_by_name(&mut objects);
    assert_eq!(
        names(&objects),
        [
            (shop.clone(), "a".to_owned()),
            (web.clone(), "a".to_owned()),
            (web.clone(), "b".to_owned()),
        ]
    );

    let all = names(
        &list_in(&client, &resource, None, &params)
            .await
            .expect("list all namespaces"),
    );
    for ns in [&shop, &web, &other] {
        assert!(all.iter().any(|(n, _)| n == ns), "{ns} in {all:?}");
    }
}

#[tokio::test]
async fn a_resource_the_server_does_not_serve_is_not_found() {
    let Some((_, ns, client)) = ApiServer::shared_namespace("listing-unserved").await else {
        return;
    };
    let resource = ApiResource {
        group: "unserved.keel.sh".into(),
        version: "v1".into(),
        api_version: "unserved.keel.sh/v1".into(),
        kind: "Gizmo".into(),
        plural: "gizmos".into(),
    };
    let params = ListParams::default();
    for namespace in [Some(ns.as_str()), None] {
        let error = list_in(&client, &resource, namespace, &params)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::NotFound { .. }),
            "{namespace:?}: {error:?}"
        );
        assert!(error.to_string().contains("gizmos"), "{error}");
    }
}
