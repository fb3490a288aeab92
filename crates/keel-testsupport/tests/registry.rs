//! Self-tests of the integration-test support: the registries started by
//! `scripts/registry-server`, the seeders, the token issuer and the fault proxy.

use std::time::{Duration, Instant};

use keel_testsupport::registry::{
    ACCEPT_ALL_MANIFESTS, Fault, FaultProxy, FaultRule, IssuedToken, ListFormat, RegistryServer,
    Seeder, SeederAuth, ServerOptions, TokenIssuer, media_type,
};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The body of `GET url`, whatever its status.
async fn body_of(url: &str) -> Vec<u8> {
    let response = client().get(url).send().await.unwrap();
    response.bytes().await.unwrap().to_vec()
}

async fn tags_of(url: &str) -> Vec<String> {
    let body: serde_json::Value = client()
        .get(url)
        .send()
        .await
        .expect("tags/list")
        .json()
        .await
        .expect("tags JSON");
    body["tags"]
        .as_array()
        .expect("tags array")
        .iter()
        .map(|tag| tag.as_str().expect("tag string").to_owned())
        .collect()
}

async fn head_digest(url: &str, accept: &str) -> reqwest::Response {
    client()
        .head(url)
        .header("accept", accept)
        .send()
        .await
        .expect("HEAD manifest")
}

/// The answer to a plain GET of `url`.
async fn plain_get(url: String) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

/// The answer to a GET of the blob `digest` of repository `app` at `base`.
async fn blob(base: &str, digest: &str) -> reqwest::Response {
    plain_get(format!("{base}/v2/app/blobs/{digest}")).await
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ASCII header")
        .to_owned()
}

#[tokio::test]
async fn plain_registry_seeds_images_indexes_and_many_tags() {
    let started = Instant::now();
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    eprintln!("distribution started in {:?}", started.elapsed());
    assert!(registry.addr().starts_with("127.0.0.1:"));
    let base = registry.url();

    let image = registry
        .push_image("app", "1.0.0", "2024-03-01T12:00:00Z", "linux/amd64")
        .await;
    let created = chrono::DateTime::parse_from_rfc3339("2024-04-01T00:00:00+02:00").unwrap();
    let index = registry
        .push_list(
            ListFormat::Oci,
            "app",
            "1.1.0",
            &[("linux/amd64", created), ("linux/arm64/v8", created)],
        )
        .await;
    let docker = registry
        .push_docker_v2("legacy", "2.0", "2023-01-01T00:00:00Z")
        .await;
    let docker_list = registry
        .push_list(
            ListFormat::Docker,
            "legacy",
            "multi",
            &[("linux/amd64", "2023-02-01T00:00:00Z")],
        )
        .await;

    let tags: Vec<String> = (0..300).map(|i| format!("1.2.{i}")).collect();
    let seeding = Instant::now();
    let digests = registry.push_tags("many", &tags).await;
    eprintln!("seeded 300 tags in {:?}", seeding.elapsed());
    assert_eq!(digests.len(), 300);
    let distinct: std::collections::HashSet<_> = digests.iter().collect();
    assert_eq!(distinct.len(), 300, "every tag has its own manifest");

    let mut listed = tags_of(&format!("{base}/v2/many/tags/list")).await;
    listed.sort();
    let mut expected = tags.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // HEAD with an OCI Accept header reports the digest push returned.
    for (repo, reference, digest, accept) in [
        ("app", "1.0.0", &image, media_type::OCI_MANIFEST),
        ("app", "1.1.0", &index.index, media_type::OCI_INDEX),
        ("legacy", "2.0", &docker, media_type::DOCKER_MANIFEST),
        ("legacy", "multi", &docker_list.index, ACCEPT_ALL_MANIFESTS),
        ("many", "1.2.7", &digests[7], ACCEPT_ALL_MANIFESTS),
    ] {
        let response =
            head_digest(&format!("{base}/v2/{repo}/manifests/{reference}"), accept).await;
        assert_eq!(response.status(), 200, "{repo}:{reference}");
        assert_eq!(
            &header(&response, "docker-content-digest"),
            digest,
            "{repo}:{reference}"
        );
    }
    // The per-platform manifests of the index exist by digest, with their own configs.
    for digest in &index.manifests {
        let response = head_digest(
            &format!("{base}/v2/app/manifests/{digest}"),
            media_type::OCI_MANIFEST,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let (content_type, bytes) = registry
        .seeder()
        .get_manifest("app", &index.manifests[1])
        .await;
    assert_eq!(content_type, media_type::OCI_MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value = blob(&base, config_digest).await.json().await.unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2024-03-31T22:00:00Z");
    assert_eq!(config["rootfs"]["type"], "layers");

    // The layer is a real gzip'd tar.
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer = blob(&base, layer_digest).await.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.tar.gz");
    std::fs::write(&path, &layer).unwrap();
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&path)
        .output()
        .expect("tar");
    assert!(listing.status.success(), "{listing:?}");
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "keel-test.txt"
    );

    // Retag copies a manifest; moving a tag changes its digest.
    assert_eq!(registry.retag("app", "1.0.0", "latest").await, image);
    assert_eq!(
        registry.seeder().head_digest("app", "latest").await,
        Some(image.clone())
    );
    let moved = registry
        .move_tag("app", "latest", "2024-05-01T00:00:00Z")
        .await;
    assert_ne!(moved, image);
    assert_eq!(
        registry.seeder().head_digest("app", "latest").await,
        Some(moved)
    );
    registry.delete_manifest("many", &digests[0]).await;
    assert_eq!(
        registry.seeder().head_digest("many", &digests[0]).await,
        None
    );
}

#[tokio::test]
async fn distribution_hides_oci_manifests_without_an_oci_accept_header() {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    registry
        .push_image("app", "1.0.0", "2024-03-01T12:00:00Z", "linux/amd64")
        .await;
    let url = format!("{}/v2/app/manifests/1.0.0", registry.url());
    let response = client().head(&url).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn htpasswd_registry_wants_basic_auth() {
    let registry = RegistryServer::start(ServerOptions::htpasswd("alice", "s3cret")).await;
    let url = format!("{}/v2/", registry.url());

    // Name, alice's password, and the status of `GET /v2/`.
    for (name, password, status) in [
        ("anonymous", None, 401),
        ("a wrong password", Some("nope"), 401),
        ("the right password", Some("s3cret"), 200),
    ] {
        let mut request = client().get(&url);
        if password.is_some() {
            request = request.basic_auth("alice", password);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{name}");
        if password.is_none() {
            let challenge = header(&response, "www-authenticate");
            assert!(challenge.starts_with("Basic "), "{name}: {challenge}");
        }
    }

    let digest = registry
        .push_image("private/app", "1.0", "2024-01-01T00:00:00Z", "linux/amd64")
        .await;
    let response = client()
        .head(format!("{}/v2/private/app/manifests/1.0", registry.url()))
        .header("accept", media_type::OCI_MANIFEST)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "docker-content-digest"), digest);
}

/// `key="value"` parameters of a `WWW-Authenticate: Bearer` challenge.
fn challenge_params(challenge: &str) -> std::collections::BTreeMap<String, String> {
    let rest = challenge
        .strip_prefix("Bearer ")
        .expect("a Bearer challenge");
    let mut params = std::collections::BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = after.split_once('"').expect("closing quote");
        params.insert(
            key.trim_start_matches(',').trim().to_owned(),
            value.to_owned(),
        );
        rest = after.trim_start_matches(',').trim();
    }
    params
}

#[tokio::test]
async fn token_registry_accepts_tokens_from_the_issuer() {
    let registry = RegistryServer::start(ServerOptions::token("bob", "hunter2")).await;
    let issuer = registry.token_issuer();
    registry
        .push_image("team/app", "1.0", "2024-01-01T00:00:00Z", "linux/amd64")
        .await;
    let seeded = issuer.issued();
    assert_eq!(seeded, 1, "the seeder fetches one token per repository");

    let url = format!("{}/v2/team/app/tags/list", registry.url());
    let refused = client().get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = header(&refused, "www-authenticate");
    let params = challenge_params(&challenge);
    assert_eq!(params["realm"], issuer.realm(), "{challenge}");
    assert_eq!(params["service"], issuer.service(), "{challenge}");
    assert_eq!(params["scope"], "repository:team/app:pull", "{challenge}");

    // A token for the challenge's scope opens the tag list.
    let token_response = client()
        .get(&params["realm"])
        .query(&[("service", &params["service"]), ("scope", &params["scope"])])
        .basic_auth("bob", Some("hunter2"))
        .send()
        .await
        .unwrap();
    assert_eq!(token_response.status(), 200);
    let body: serde_json::Value = token_response.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().is_some());
    assert_eq!(body["token"], body["access_token"]);
    let token = body["token"].as_str().unwrap();
    let tags = client().get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(tags.status(), 200, "{}", registry.log());
    let tags: serde_json::Value = tags.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1.0"]));
    assert_eq!(issuer.issued(), seeded + 1);
    assert_eq!(
        issuer.log().last().unwrap(),
        &IssuedToken {
            subject: "bob".into(),
            scopes: vec!["repository:team/app:pull".into()],
        }
    );

    // A token for another repository does not.
    let other = issuer.mint("bob", &["repository:team/other:pull"]);
    let denied = client().get(&url).bearer_auth(other).send().await.unwrap();
    assert_eq!(denied.status(), 401);

    // Wrong credentials get a 401 from the issuer; anonymous too, until allowed (pull only).
    let realm = issuer.realm();
    let scope = [
        ("service", issuer.service()),
        ("scope", "repository:team/app:pull,push"),
    ];
    let wrong = client()
        .get(&realm)
        .query(&scope)
        .basic_auth("bob", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let anonymous = client().get(&realm).query(&scope).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    issuer.set_anonymous_pull(true);
    let anonymous = client().get(&realm).query(&scope).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let body: serde_json::Value = anonymous.json().await.unwrap();
    let anonymous_token = body["token"].as_str().unwrap();
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth(anonymous_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        issuer.log().last().unwrap().scopes,
        ["repository:team/app:pull"]
    );
    assert_eq!(issuer.requests(), issuer.issued() + 2);
}

#[tokio::test]
async fn paginating_server_sends_link_headers() {
    let registry = RegistryServer::start(ServerOptions::paginating()).await;
    let tags: Vec<String> = (0..25).map(|i| format!("v{i:02}")).collect();
    let digests = registry.push_tags("paged", &tags).await;
    let index = registry
        .push_index("paged", "multi", &[("linux/amd64", "2024-01-01T00:00:00Z")])
        .await;

    let first = plain_get(format!("{}/v2/paged/tags/list?n=10", registry.url())).await;
    assert_eq!(first.status(), 200);
    let link = header(&first, "link");
    assert!(link.contains("rel=\"next\""), "{link}");
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["tags"].as_array().unwrap().len(), 10);

    // Following the links visits every tag once.
    let mut seen = Vec::new();
    let mut next = Some("/v2/paged/tags/list?n=10".to_owned());
    while let Some(path) = next.take() {
        let response = plain_get(format!("{}{path}", registry.url())).await;
        next = response.headers().get("link").map(|link| {
            link.to_str()
                .unwrap()
                .split(['<', '>'])
                .nth(1)
                .unwrap()
                .to_owned()
        });
        let body: serde_json::Value = response.json().await.unwrap();
        seen.extend(
            body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned()),
        );
    }
    seen.sort();
    let mut expected = tags.clone();
    expected.push("multi".into());
    expected.sort();
    assert_eq!(seen, expected);

    let response = head_digest(
        &format!("{}/v2/paged/manifests/v03", registry.url()),
        ACCEPT_ALL_MANIFESTS,
    )
    .await;
    assert_eq!(header(&response, "docker-content-digest"), digests[3]);
    let response = head_digest(
        &format!("{}/v2/paged/manifests/multi", registry.url()),
        ACCEPT_ALL_MANIFESTS,
    )
    .await;
    assert_eq!(header(&response, "docker-content-digest"), index);
}

#[tokio::test]
async fn fault_proxy_injects_each_fault() {
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "app", &["1.0", "1.1", "2.0"]).await;
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![FaultRule::new("/tags/list", Fault::too_many_requests(7)).times(2)],
    )
    .await;
    let tags_url = format!("{}/v2/app/tags/list", proxy.url());

    // 429 twice with Retry-After, then the real answer.
    for _ in 0..2 {
        let response = client().get(&tags_url).send().await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(header(&response, "retry-after"), "7");
    }
    let response = client().get(&tags_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(tags_of(&tags_url).await.len(), 3);
    assert_eq!(proxy.requests()["GET /v2/app/tags/list"], 4);
    assert_eq!(proxy.faults_applied(), 2);

    // 500 and 503, by method; skip lets the first match through.
    proxy.set_faults(vec![
        FaultRule::new("/manifests/", Fault::status(500))
            .method("HEAD")
            .times(1),
        FaultRule::new("/manifests/", Fault::status(503))
            .method("GET")
            .skip(1)
            .times(1),
    ]);
    let manifest_url = format!("{}/v2/app/manifests/1.0", proxy.url());
    assert_eq!(
        head_digest(&manifest_url, ACCEPT_ALL_MANIFESTS)
            .await
            .status(),
        500
    );
    assert_eq!(
        head_digest(&manifest_url, ACCEPT_ALL_MANIFESTS)
            .await
            .status(),
        200
    );
    let get = |url: String| async move {
        client()
            .get(url)
            .header("accept", ACCEPT_ALL_MANIFESTS)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get(manifest_url.clone()).await, 200);
    assert_eq!(get(manifest_url.clone()).await, 503);
    assert_eq!(get(manifest_url.clone()).await, 200);
    assert_eq!(proxy.count("HEAD", "/manifests/1.0"), 2);
    assert_eq!(proxy.count("GET", "/manifests/"), 3);

    // A slow answer.
    proxy.set_faults(vec![
        FaultRule::new("/tags/list", Fault::Delay(Duration::from_millis(400))).times(1),
    ]);
    let started = Instant::now();
    assert_eq!(tags_of(&tags_url).await.len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(tags_of(&tags_url).await.len(), 3);
    assert!(started.elapsed() < Duration::from_millis(400));

    // A truncated JSON body (a complete HTTP message).
    proxy.clear_faults();
    let full_len = body_of(&tags_url).await.len();
    proxy.set_faults(vec![
        FaultRule::new("/tags/list", Fault::TruncateBody).times(1),
    ]);
    let cut = body_of(&tags_url).await;
    assert_eq!(cut.len(), full_len / 2);
    assert!(serde_json::from_slice::<serde_json::Value>(&cut).is_err());

    // A body cut off by a dropped connection.
    proxy.set_faults(vec![
        FaultRule::new("/tags/list", Fault::AbortBody).times(1),
    ]);
    let response = client().get(&tags_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());

    // An oversized body, announced or not.
    let size = 64 << 20;
    proxy.set_faults(vec![
        FaultRule::new("/tags/list", Fault::oversized(size)).times(1),
    ]);
    let started = Instant::now();
    let response = client().get(&tags_url).send().await.unwrap();
    let announced = response.content_length().expect("Content-Length");
    let body = response.bytes().await.unwrap();
    eprintln!(
        "read a {} byte oversized body in {:?}",
        body.len(),
        started.elapsed()
    );
    assert_eq!(announced as usize, body.len());
    assert!(body.len() <= size && body.len() > size - 16);
    assert!(body.starts_with(br#"{"name":"oversized","tags":["t0000000","#));
    assert!(body.ends_with(br#","end"]}"#));
    proxy.set_faults(vec![FaultRule::new(
        "/tags/list",
        Fault::Oversized {
            bytes: 1 << 20,
            content_length: false,
        },
    )]);
    let response = client().get(&tags_url).send().await.unwrap();
    assert_eq!(response.content_length(), None);
    let body = response.bytes().await.unwrap();
    assert!(body.len() > (1 << 20) - 16);
    let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
    assert!(parsed["tags"].as_array().unwrap().len() > 90_000);

    // A Link header naming the page itself.
    proxy.set_faults(vec![FaultRule::new("/tags/list", Fault::LoopingLink)]);
    let response = plain_get(format!("{tags_url}?n=2&last=1.0")).await;
    assert_eq!(
        header(&response, "link"),
        "</v2/app/tags/list?n=2&last=1.0>; rel=\"next\""
    );

    // Without faults it only forwards; counts can be reset.
    proxy.clear_faults();
    proxy.reset_counts();
    assert_eq!(tags_of(&tags_url).await.len(), 3);
    assert_eq!(proxy.total(), 1);
    assert_eq!(proxy.log(), ["GET /v2/app/tags/list"]);
}

#[tokio::test]
async fn fault_proxy_forwards_pushes_and_auth_challenges() {
    let registry = RegistryServer::start(ServerOptions::token("carol", "pw")).await;
    let proxy = FaultProxy::start(registry.addr(), Vec::new()).await;
    // The registry builds upload Locations from the Host header: they point at the proxy.
    let seeder = Seeder::new(
        proxy.addr(),
        SeederAuth::Token {
            realm: registry.token_issuer().realm(),
            service: registry.token_issuer().service().to_owned(),
            user: "carol".into(),
            password: "pw".into(),
        },
    );
    let digest = seeder
        .push_image("via/proxy", "1", "2024-01-01T00:00:00Z", "linux/amd64")
        .await;
    assert!(
        proxy.count("PUT", "/blobs/uploads/") >= 1,
        "{:?}",
        proxy.log()
    );
    assert_eq!(
        registry.seeder().head_digest("via/proxy", "1").await,
        Some(digest)
    );

    let refused = plain_get(format!("{}/v2/via/proxy/tags/list", proxy.url())).await;
    assert_eq!(refused.status(), 401);
    assert!(header(&refused, "www-authenticate").starts_with("Bearer realm="));
}

#[tokio::test]
async fn standalone_issuer_mints_verifiable_looking_tokens() {
    let issuer = TokenIssuer::start("dave", "pw").await;
    assert!(
        std::fs::read_to_string(issuer.ca_bundle())
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let token = issuer.mint("dave", &["repository:a/b:pull,push"]);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 2);
    let claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], issuer.issuer());
    assert_eq!(claims["aud"], issuer.service());
    assert_eq!(claims["sub"], "dave");
    assert_eq!(
        claims["access"],
        serde_json::json!([{ "type": "repository", "name": "a/b", "actions": ["pull", "push"] }])
    );
    assert_eq!(engine.decode(parts[2]).unwrap().len(), 64);
    assert_eq!(issuer.issued(), 0);
}
