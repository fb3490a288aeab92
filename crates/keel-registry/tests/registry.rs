//! `RegistryClient` against real registries on 127.0.0.1: the CNCF distribution server
//! (anonymous, htpasswd, bearer tokens), a paginating server, and a fault-injecting proxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_core::registry::{CredentialSource, DockerConfigDocument, DockerConfigFormat};
use keel_core::testkit::{self, RegistryFixture};
use keel_core::{Error, ImageRef, Platform, Registry, Tag};
use keel_registry::{Credentials, DockerConfig, RegistryClient, RegistryClientBuilder};
use keel_testsupport::registry::{
    Fault, FaultProxy, FaultRule, ListFormat, RegistryServer, ServerOptions,
};

fn image(addr: &str, repo: &str) -> ImageRef {
    ImageRef::parse(&format!("{addr}/{repo}")).expect("valid reference")
}

fn tag(t: &str) -> Tag {
    Tag::new(t).expect("valid tag")
}

/// A client for tests: no cache unless asked, quick retries.
fn builder() -> RegistryClientBuilder {
    RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_requests_per_second(0.0)
        .with_retries(3, Duration::from_millis(10), Duration::from_millis(50))
}

#[tokio::test]
async fn conformance_against_distribution() {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    let fixture = RegistryFixture::standard(&format!("{}/keel/conformance", server.addr()));
    server.push_tags("keel/conformance", &fixture.tags).await;
    let client = builder().build().unwrap();
    testkit::registry_conformance(&client, &fixture).await;
    testkit::registry_drives_the_pipeline(Arc::new(client), &fixture).await;
}

#[tokio::test]
async fn pagination_follows_link_headers_within_the_budget() {
    let server = RegistryServer::start(ServerOptions::paginating()).await;
    let tags: Vec<String> = (0..250).map(|i| format!("1.0.{i}")).collect();
    server.push_tags("team/many", &tags).await;
    let repo = image(server.addr(), "team/many");

    let client = builder().with_page_size(100).build().unwrap();
    let list = client.list_tags(&repo).await.unwrap();
    assert_eq!(list.tags.len(), 250);
    assert!(!list.truncated);
    let mut sorted = list.tags.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 250, "a tag was listed twice");
    assert_eq!(client.stats().tag_pages, 3);

    // (page size, budget of pages and of tags, tags listed and whether that is truncated)
    for (page_size, (pages, tags), expected) in [
        (100, (2, 100_000), (200, true)),
        (100, (100, 150), (150, true)),
        // A repository that fits exactly in its pages is complete, not truncated.
        (50, (100, 250), (250, false)),
    ] {
        let budgeted = builder()
            .with_page_size(page_size)
            .with_listing_budget(pages, tags)
            .build()
            .unwrap();
        let list = budgeted.list_tags(&repo).await.unwrap();
        assert_eq!(
            (list.tags.len(), list.truncated),
            expected,
            "page size {page_size}, budget of {pages} pages and {tags} tags"
        );
    }
}

#[tokio::test]
async fn digests_of_every_manifest_kind() {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    let oci = push_amd64(&server, "oci", "2024-01-01T00:00:00Z").await;
    let docker = server
        .push_docker_v2("team/app", "docker", "2024-01-02T00:00:00Z")
        .await;
    let index = server
        .push_index(
            "team/app",
            "multi",
            &[
                ("linux/amd64", "2024-01-03T00:00:00Z"),
                ("linux/arm64/v8", "2024-01-04T00:00:00Z"),
            ],
        )
        .await;
    let list = server
        .push_list(
            ListFormat::Docker,
            "team/app",
            "list",
            &[("linux/amd64", "2024-01-05T00:00:00Z")],
        )
        .await;
    let client = builder().build().unwrap();
    let repo = image(server.addr(), "team/app");
    for (t, want) in [
        ("oci", &oci),
        ("docker", &docker),
        ("multi", &index),
        ("list", &list.index),
    ] {
        let got = client.resolve_digest(&repo, &tag(t)).await.unwrap();
        assert_eq!(&got.to_string(), want, "{t}");
    }
    // Resolving is HEAD only: no manifest was downloaded.
    assert_eq!(client.stats().manifest_heads, 4);
    assert_eq!(client.stats().manifest_gets, 0);

    // A moved tag resolves to its new digest once the cache has expired.
    let moved = server
        .move_tag("team/app", "oci", "2024-02-01T00:00:00Z")
        .await;
    assert_eq!(
        client
            .resolve_digest(&repo, &tag("oci"))
            .await
            .unwrap()
            .to_string(),
        moved
    );
}

#[tokio::test]
async fn metadata_reads_creation_times_and_platforms() {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    push_amd64(&server, "single", "2024-03-01T10:00:00Z").await;
    server
        .push_index(
            "team/app",
            "multi",
            &[
                ("linux/amd64", "2024-03-02T10:00:00Z"),
                ("linux/arm64/v8", "2024-03-05T10:00:00Z"),
                ("linux/arm/v7", "2024-03-09T10:00:00Z"),
            ],
        )
        .await;
    let repo = image(server.addr(), "team/app");
    let client = builder().build().unwrap();

    let single = client.metadata(&repo, &tag("single")).await.unwrap();
    assert_eq!(
        single.created.unwrap().to_rfc3339(),
        "2024-03-01T10:00:00+00:00"
    );
    assert_eq!(
        single.platforms,
        ["linux/amd64".parse::<Platform>().unwrap()],
        "a single image's platform comes from its config"
    );

    let multi = client.metadata(&repo, &tag("multi")).await.unwrap();
    let platforms: Vec<String> = multi.platforms.iter().map(|p| p.to_string()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
    assert_eq!(
        multi.created.unwrap().to_rfc3339(),
        "2024-03-02T10:00:00+00:00",
        "an index gives the creation time of the configured platform (linux/amd64)"
    );

    let arm = builder()
        .with_platform("linux/arm64".parse::<Platform>().unwrap())
        .build()
        .unwrap();
    let multi = arm.metadata(&repo, &tag("multi")).await.unwrap();
    assert_eq!(
        multi.created.unwrap().to_rfc3339(),
        "2024-03-05T10:00:00+00:00"
    );
}

#[tokio::test]
async fn missing_repositories_and_tags_are_not_found() {
    let server = RegistryServer::with_tags(ServerOptions::plain(), "team/app", &["1.0.0"]).await;
    let client = builder().build().unwrap();
    let missing = image(server.addr(), "team/nothing");
    let not_found = |err: Error, naming: &str| {
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains(naming), "{err}");
    };
    not_found(
        client.list_tags(&missing).await.unwrap_err(),
        "team/nothing",
    );
    let unknown_tag = client
        .resolve_digest(&image(server.addr(), "team/app"), &tag("9.9.9"))
        .await;
    not_found(unknown_tag.unwrap_err(), "9.9.9");
}

#[tokio::test]
async fn basic_auth_with_right_wrong_and_no_credentials() {
    let options = ServerOptions::htpasswd("keel", "s3cret-pw");
    let server = RegistryServer::with_tags(options, "team/app", &["1.0.0", "1.1.0"]).await;
    let repo = image(server.addr(), "team/app");

    let good = basic(server.addr(), ("keel", "s3cret-pw")).build().unwrap();
    assert_eq!(good.list_tags(&repo).await.unwrap().tags.len(), 2);
    assert!(good.resolve_digest(&repo, &tag("1.1.0")).await.is_ok());

    let err = unauthorized(basic(server.addr(), ("keel", "wrong-pw")), &repo).await;
    let text = format!("{err} {err:?}");
    assert!(text.contains("user \"keel\""), "{text}");
    assert!(!text.contains("wrong-pw"), "the password leaked: {text}");

    let err = unauthorized(builder(), &repo).await;
    assert!(err.to_string().contains("needs credentials"), "{err}");
}

#[tokio::test]
async fn credentials_from_docker_config_and_kubernetes_secrets() {
    use base64::Engine;
    let options = ServerOptions::htpasswd("bot", "pa55");
    let server = RegistryServer::with_tags(options, "team/app", &["1.0.0"]).await;
    let repo = image(server.addr(), "team/app");
    let auth = base64::engine::general_purpose::STANDARD.encode("bot:pa55");

    let config = format!(
        r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
        server.addr()
    );
    // The tags listed with the credentials of `config`.
    let tags_with = async |config: DockerConfig| {
        let client = builder().with_docker_config(config).build().unwrap();
        client.list_tags(&repo).await.unwrap().tags
    };
    let from_json = |json: &str| DockerConfig::from_json(json).unwrap();
    assert_eq!(tags_with(from_json(&config)).await, ["1.0.0"]);

    // The value of a kubernetes.io/dockerconfigjson secret, and a legacy .dockercfg one.
    let secret = format!(
        r#"{{"auths":{{"{}":{{"username":"bot","password":"pa55","auth":"{auth}"}}}}}}"#,
        server.addr()
    );
    assert_eq!(tags_with(from_json(&secret)).await, ["1.0.0"]);
    let legacy = format!(r#"{{"{}":{{"auth":"{auth}"}}}}"#, server.addr());
    let legacy = DockerConfig::from_dockercfg_json(&legacy).unwrap();
    assert_eq!(tags_with(legacy).await, ["1.0.0"]);
}

/// A credential source whose documents the test swaps, like a rotated pull secret.
#[derive(Debug, Default)]
struct Secrets(std::sync::Mutex<Vec<DockerConfigDocument>>);

impl Secrets {
    fn set(&self, documents: Vec<DockerConfigDocument>) {
        *self.0.lock().unwrap() = documents;
    }
}

impl CredentialSource for Secrets {
    fn docker_configs(&self, _image: &ImageRef) -> Vec<DockerConfigDocument> {
        self.0.lock().unwrap().clone()
    }
}

fn document(origin: &str, format: DockerConfigFormat, json: String) -> DockerConfigDocument {
    DockerConfigDocument {
        origin: origin.into(),
        format,
        json: json.into(),
    }
}

#[tokio::test]
async fn a_credential_source_is_asked_on_every_request() {
    use base64::Engine;
    let options = ServerOptions::htpasswd("bot", "pa55");
    let server = RegistryServer::with_tags(options, "team/app", &["1.0.0"]).await;
    let repo = image(server.addr(), "team/app");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secrets = Arc::new(Secrets::default());
    let client = builder()
        .with_credential_source(secrets.clone())
        .build()
        .unwrap();

    // Nothing applies yet: anonymous, refused.
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    // A broken secret is skipped; the legacy one after it holds the credentials.
    let broken = document(
        "secret prod/broken",
        DockerConfigFormat::ConfigJson,
        "{".into(),
    );
    let legacy = document(
        "secret prod/legacy",
        DockerConfigFormat::Dockercfg,
        format!(
            r#"{{"{}":{{"auth":"{}"}}}}"#,
            server.addr(),
            b64("bot:pa55")
        ),
    );
    secrets.set(vec![broken, legacy]);
    assert_eq!(client.list_tags(&repo).await.unwrap().tags, ["1.0.0"]);

    // Rotated to a wrong password: the next request uses it and is refused, without
    // showing it.
    let rotated = document(
        "secret prod/regcred",
        DockerConfigFormat::ConfigJson,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            server.addr(),
            b64("bot:rotated-wrong")
        ),
    );
    secrets.set(vec![rotated]);
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("rotated-wrong"));

    // A document naming a credential helper never runs it (running it would fail with
    // "cannot run docker-credential-keel-test-never"): the request goes out anonymous.
    let helper = document(
        "secret prod/helper",
        DockerConfigFormat::ConfigJson,
        format!(
            r#"{{"credHelpers":{{"{}":"keel-test-never"}}}}"#,
            server.addr()
        ),
    );
    assert!(
        DockerConfig::from_document(&helper)
            .unwrap()
            .static_credentials(server.addr())
            .is_none()
    );
    secrets.set(vec![helper]);
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(err.to_string().contains("needs credentials"), "{err}");

    // A bad document is an error naming its origin, not its contents.
    let err = DockerConfig::from_document(&document(
        "secret prod/bad",
        DockerConfigFormat::ConfigJson,
        r#"{"auths":{"x":{"auth":"not base64!"}}}"#.into(),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("secret prod/bad"), "{err}");
}

#[tokio::test]
async fn bearer_tokens_are_fetched_once_and_reused() {
    let (server, repo) = token_registry("t0ken-pw", &["1.0.0", "2.0.0"]).await;
    let issuer = server.token_issuer();

    let client = builder()
        .with_credentials(server.addr(), Credentials::basic("keel", "t0ken-pw"))
        .build()
        .unwrap();
    let before = issuer.issued();
    for _ in 0..3 {
        assert_eq!(client.list_tags(&repo).await.unwrap().tags.len(), 2);
    }
    client.resolve_digest(&repo, &tag("2.0.0")).await.unwrap();
    assert_eq!(issuer.issued() - before, 1, "the token was not reused");
    assert_eq!(client.stats().token_requests, 1);

    let err = unauthorized(basic(server.addr(), ("keel", "nope")), &repo).await;
    assert!(
        err.to_string()
            .contains("auth server refused user \"keel\""),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("nope"));

    // Anonymous pulls where the issuer allows them.
    issuer.set_anonymous_pull(true);
    let anonymous = builder().build().unwrap();
    assert_eq!(anonymous.list_tags(&repo).await.unwrap().tags.len(), 2);
}

/// A registry that hands out bearer tokens to user `keel` with `password`, holding `team/app`
/// at `tags`; and that repository.
async fn token_registry(password: &str, tags: &[&str]) -> (RegistryServer, ImageRef) {
    let options = ServerOptions::token("keel", password);
    let server = RegistryServer::with_tags(options, "team/app", tags).await;
    let repo = image(server.addr(), "team/app");
    (server, repo)
}

/// One tenant's pull secret for `server`, as a credential source document.
fn secret_for(server: &RegistryServer, user: &str, password: &str) -> DockerConfigDocument {
    document(
        "secret tenant-a/regcred",
        DockerConfigFormat::ConfigJson,
        format!(
            r#"{{"auths":{{"{}":{{"username":"{user}","password":"{password}"}}}}}}"#,
            server.addr()
        ),
    )
}

#[tokio::test]
async fn cached_answers_and_tokens_serve_only_the_credentials_they_were_got_with() {
    let (server, repo) = token_registry("pw", &["1.0.0"]).await;
    let issuer = server.token_issuer();
    let secrets = Arc::new(Secrets::default());
    let client = builder()
        .with_cache_ttl(Duration::from_secs(600))
        .with_credential_source(secrets.clone())
        .build()
        .unwrap();

    // Tenant A, with the secret: the list, a digest and a token are cached.
    secrets.set(vec![secret_for(&server, "keel", "pw")]);
    assert_eq!(client.list_tags(&repo).await.unwrap().tags, ["1.0.0"]);
    let digest = client.resolve_digest(&repo, &tag("1.0.0")).await.unwrap();
    let issued = issuer.issued();

    // Tenant B, without it, through the same client: refused by the registry, not answered
    // from A's cache or with A's token.
    secrets.set(Vec::new());
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let err = client
        .resolve_digest(&repo, &tag("1.0.0"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    // Nor with a wrong password for the same user.
    secrets.set(vec![secret_for(&server, "keel", "guess")]);
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    // Tenant A again: answered from its cache, with no new token.
    secrets.set(vec![secret_for(&server, "keel", "pw")]);
    let before = issuer.issued();
    assert_eq!(client.list_tags(&repo).await.unwrap().tags, ["1.0.0"]);
    assert_eq!(
        client.resolve_digest(&repo, &tag("1.0.0")).await.unwrap(),
        digest
    );
    assert_eq!(issuer.issued(), before);
    assert!(issued >= 1);
}

#[tokio::test]
async fn expired_tokens_are_renewed() {
    let (server, repo) = token_registry("pw", &["1.0.0"]).await;
    let issuer = server.token_issuer();
    issuer.set_expires_in(1);
    let client = builder()
        .with_credentials(server.addr(), Credentials::basic("keel", "pw"))
        .build()
        .unwrap();
    let before = issuer.issued();
    client.list_tags(&repo).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.list_tags(&repo).await.unwrap();
    assert_eq!(issuer.issued() - before, 2);
}

/// Pushes a `linux/amd64` image created at `created` as `team/app:TAG`; its digest.
async fn push_amd64(server: &RegistryServer, tag: &str, created: &str) -> String {
    server
        .push_image("team/app", tag, created, "linux/amd64")
        .await
}

/// Listing `repo` with `client`: the error, which must be Unauthorized.
async fn unauthorized(client: RegistryClientBuilder, repo: &ImageRef) -> Error {
    let err = client.build().unwrap().list_tags(repo).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    err
}

/// A client with the basic `credentials` for `registry`.
fn basic(registry: &str, (user, password): (&str, &str)) -> RegistryClientBuilder {
    builder().with_credentials(registry, Credentials::basic(user, password))
}

/// A fault of the tag-list requests.
fn tags_list(fault: Fault) -> FaultRule {
    FaultRule::new("/tags/list", fault)
}

/// A registry with one repository behind a fault proxy.
async fn behind_proxy(faults: Vec<FaultRule>) -> (RegistryServer, FaultProxy, ImageRef) {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    server
        .push_tags("team/app", &["1.0.0", "1.1.0", "2.0.0"])
        .await;
    let proxy = FaultProxy::start(server.addr(), faults).await;
    let repo = image(proxy.addr(), "team/app");
    (server, proxy, repo)
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let (_server, proxy, repo) =
        behind_proxy(vec![tags_list(Fault::too_many_requests(1)).times(2)]).await;
    let client = builder().build().unwrap();
    let started = Instant::now();
    let list = client.list_tags(&repo).await.unwrap();
    assert_eq!(list.tags.len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not waited for"
    );
    assert_eq!(proxy.count("GET", "/tags/list"), 3);
    assert_eq!(client.stats().retries, 2);

    // Asked to wait longer than allowed: a RateLimited error with the wait, at once.
    proxy.set_faults(vec![tags_list(Fault::too_many_requests(3600))]);
    let impatient = builder()
        .with_max_retry_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let err = impatient.list_tags(&repo).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let (_server, proxy, repo) = behind_proxy(vec![tags_list(Fault::status(500)).times(1)]).await;
    let client = builder().build().unwrap();
    assert_eq!(client.list_tags(&repo).await.unwrap().tags.len(), 3);

    proxy.set_faults(vec![tags_list(Fault::status(503))]);
    proxy.reset_counts();
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(proxy.count("GET", "/tags/list"), 4, "1 try + 3 retries");
}

#[tokio::test]
async fn slow_responses_time_out() {
    let (_server, _proxy, repo) =
        behind_proxy(vec![tags_list(Fault::Delay(Duration::from_secs(5)))]).await;
    let client = builder()
        .with_timeout(Duration::from_millis(300))
        .with_retries(1, Duration::from_millis(10), Duration::from_millis(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn truncated_json_is_a_clear_error() {
    let (_server, _proxy, repo) = behind_proxy(vec![tags_list(Fault::TruncateBody)]).await;
    let err = builder()
        .build()
        .unwrap()
        .list_tags(&repo)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let (_server, _proxy, repo) = behind_proxy(vec![tags_list(Fault::oversized(64 << 20))]).await;
    let client = builder()
        .with_body_limits(1 << 20, 1 << 20)
        .build()
        .unwrap();
    let err = client.list_tags(&repo).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than the 1048576-byte limit"),
        "{err}"
    );
}

#[tokio::test]
async fn a_looping_link_is_an_error_not_a_hang() {
    let (_server, _proxy, repo) = behind_proxy(vec![tags_list(Fault::LoopingLink)]).await;
    let client = builder().build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), client.list_tags(&repo))
        .await
        .expect("the listing must end")
        .unwrap_err();
    assert!(err.to_string().contains("pagination loops"), "{err}");
}

#[tokio::test]
async fn the_cache_serves_repeated_listings_within_its_ttl() {
    let (_server, proxy, repo) = behind_proxy(Vec::new()).await;
    let client = builder()
        .with_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let listings = futures::future::join_all((0..20).map(|_| client.list_tags(&repo))).await;
    assert!(listings.iter().all(|l| l.as_ref().unwrap().tags.len() == 3));
    for _ in 0..5 {
        client.resolve_digest(&repo, &tag("1.0.0")).await.unwrap();
    }
    assert_eq!(proxy.count("GET", "/tags/list"), 1);
    assert_eq!(proxy.count("HEAD", "/manifests/1.0.0"), 1);
}

#[tokio::test]
async fn the_limiter_spaces_requests_to_one_host() {
    let (_server, proxy, repo) = behind_proxy(Vec::new()).await;
    let client = RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_requests_per_second(20.0)
        .build()
        .unwrap();
    let started = Instant::now();
    for _ in 0..11 {
        client.list_tags(&repo).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "11 requests at 20/s took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.count("GET", "/tags/list"), 11);
}

#[tokio::test]
async fn plain_http_is_refused_for_hosts_not_marked_insecure() {
    // A registry reached by a name other than localhost gets HTTPS unless marked insecure;
    // "127.1" is such a name for the same loopback server.
    let server = RegistryServer::with_tags(ServerOptions::plain(), "team/app", &["1.0.0"]).await;
    let port = server.addr().rsplit(':').next().unwrap();
    let other = format!("127.1:{port}");
    let repo = image(&other, "team/app");
    let strict = builder()
        .with_retries(0, Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
    assert!(
        strict.list_tags(&repo).await.is_err(),
        "plain HTTP was used without permission"
    );
    let allowed = builder().with_insecure_registry(&other).build().unwrap();
    assert_eq!(allowed.list_tags(&repo).await.unwrap().tags, ["1.0.0"]);
}

#[tokio::test]
async fn digests_fall_back_to_hashing_the_manifest() {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    let pushed = push_amd64(&server, "1.0.0", "2024-01-01T00:00:00Z").await;
    // A registry whose HEAD answers carry no Docker-Content-Digest.
    let proxy = FaultProxy::start(
        server.addr(),
        vec![
            FaultRule::new(
                "/manifests/",
                Fault::Respond {
                    status: 200,
                    headers: Vec::new(),
                    body: String::new(),
                },
            )
            .method("HEAD"),
        ],
    )
    .await;
    let client = builder().build().unwrap();
    let digest = client
        .resolve_digest(&image(proxy.addr(), "team/app"), &tag("1.0.0"))
        .await
        .unwrap();
    assert_eq!(digest.to_string(), pushed);
    assert_eq!(proxy.count("GET", "/manifests/1.0.0"), 1);
}

#[tokio::test]
async fn docker_hub_rate_limit_remaining_is_surfaced() {
    let (_server, proxy, repo) = behind_proxy(vec![tags_list(Fault::Respond {
        status: 200,
        headers: vec![("RateLimit-Remaining".into(), "42;w=21600".into())],
        body: r#"{"name":"team/app","tags":["1.0.0"]}"#.into(),
    })])
    .await;
    let client = builder().build().unwrap();
    assert_eq!(client.rate_limit_remaining(proxy.addr()), None);
    assert_eq!(client.list_tags(&repo).await.unwrap().tags, ["1.0.0"]);
    assert_eq!(client.rate_limit_remaining(proxy.addr()), Some(42));
}
