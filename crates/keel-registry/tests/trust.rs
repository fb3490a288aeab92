//! Where credentials go and what a server can make the client do: credentials and tokens only
//! to the registry's own origin and its token realm, token answers and error bodies read
//! within limits, and lifetimes from a token server that cannot overflow the clock.
//!
//! Each test runs two servers on 127.0.0.1: the registry (the real distribution server behind
//! the fault proxy, or a small fake where the test needs answers no real registry sends) and a
//! second one that records whether anything reached it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use keel_core::{Error, ImageRef, Registry};
use keel_registry::{Credentials, RegistryClient, RegistryClientBuilder};
use keel_testsupport::registry::{
    Body, BodyError, Fault, FaultProxy, FaultRule, RegistryServer, ServerOptions, full, respond,
    serve,
};

fn image(addr: &str, repo: &str) -> ImageRef {
    ImageRef::parse(&format!("{addr}/{repo}")).expect("valid reference")
}

fn builder() -> RegistryClientBuilder {
    RegistryClient::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_requests_per_second(0.0)
        .with_retries(1, Duration::from_millis(10), Duration::from_millis(50))
}

/// The error of listing `team/app` at `addr` with the basic credentials `keel`/`realm-pw`.
async fn listing_error(addr: &str) -> Error {
    builder()
        .with_credentials(addr, Credentials::basic("keel", "realm-pw"))
        .build()
        .unwrap()
        .list_tags(&image(addr, "team/app"))
        .await
        .unwrap_err()
}

/// A server that answers every request with an empty tag list and records, per request,
/// the `Authorization` header it carried.
struct Witness {
    addr: String,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Witness {
    async fn start() -> Witness {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let (addr, task) = serve(move |request: Request<Incoming>| {
            let log = log.clone();
            async move {
                let auth = request
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("<binary>").to_owned());
                log.lock().unwrap().push(auth);
                respond(200, "application/json", r#"{"name":"x","tags":["evil"]}"#)
            }
        })
        .await;
        Witness {
            addr: addr.to_string(),
            seen,
            _task: task,
        }
    }

    fn requests(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

/// A 200 tag list of `repo` whose `Link` names the next page on `elsewhere`.
fn page_linking_to(repo: &str, elsewhere: &str) -> Fault {
    Fault::Respond {
        status: 200,
        headers: vec![(
            "link".into(),
            format!("<http://{elsewhere}/v2/{repo}/tags/list?last=1.0.0&n=100>; rel=\"next\""),
        )],
        body: format!(r#"{{"name":"{repo}","tags":["1.0.0"]}}"#),
    }
}

#[tokio::test]
async fn a_link_to_another_origin_is_an_error_and_gets_no_credentials() {
    let witness = Witness::start().await;
    for options in [
        ServerOptions::htpasswd("keel", "basic-pw"),
        ServerOptions::token("keel", "token-pw"),
    ] {
        let server = RegistryServer::with_tags(options, "team/app", &["1.0.0"]).await;
        // The first listing request is answered by the registry (401 and its challenge); the
        // authenticated one gets a page whose next link points at the witness.
        let proxy = FaultProxy::start(
            server.addr(),
            vec![FaultRule::new("/tags/list", page_linking_to("team/app", &witness.addr)).skip(1)],
        )
        .await;
        let (user, password) = server.credentials().expect("a server with credentials");
        let client = builder()
            .with_credentials(proxy.addr(), Credentials::basic(user, password))
            .build()
            .unwrap();
        let err = client
            .list_tags(&image(proxy.addr(), "team/app"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        assert!(
            text.contains(&format!("http://{}", witness.addr)),
            "the error does not name the foreign origin: {text}"
        );
        assert!(text.contains("another origin"), "{text}");
        assert!(!text.contains(password), "{text}");
        assert_eq!(
            proxy.faults_applied(),
            1,
            "the linking page was never served"
        );
    }
    assert_eq!(
        witness.requests(),
        Vec::<Option<String>>::new(),
        "the other origin was sent a request"
    );
}

/// What the fake registry's token endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenMode {
    /// `{"token":"fake-token","expires_in":u64::MAX}`.
    Forever,
    /// A body that never ends.
    Endless,
}

/// A fake registry with bearer auth on 127.0.0.1 (`/token` is its own realm, unless
/// `realm` says otherwise): `team/app` lists `1.0.0` for the bearer token `fake-token`, and
/// `team/broken` fails with a 500 whose body never ends.
struct FakeRegistry {
    addr: String,
    tokens: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

/// An endless streamed body.
fn endless() -> Body {
    let chunk = Bytes::from(vec![b' '; 64 << 10]);
    StreamBody::new(
        futures::stream::repeat(chunk).map(|bytes| Ok::<_, BodyError>(Frame::data(bytes))),
    )
    .boxed_unsync()
}

impl FakeRegistry {
    async fn start(mode: TokenMode, realm: Option<String>) -> FakeRegistry {
        let tokens = Arc::new(AtomicUsize::new(0));
        let counter = tokens.clone();
        let (addr, task) = serve(move |request: Request<Incoming>| {
            let counter = counter.clone();
            let realm = realm.clone();
            async move { fake_registry(&request, mode, realm, &counter) }
        })
        .await;
        FakeRegistry {
            addr: addr.to_string(),
            tokens,
            _task: task,
        }
    }
}

fn fake_registry(
    request: &Request<Incoming>,
    mode: TokenMode,
    realm: Option<String>,
    tokens: &AtomicUsize,
) -> Response<Body> {
    let path = request.uri().path();
    let host = request
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    if path == "/token" {
        tokens.fetch_add(1, Ordering::SeqCst);
        return match mode {
            TokenMode::Forever => respond(
                200,
                "application/json",
                format!(r#"{{"token":"fake-token","expires_in":{}}}"#, u64::MAX),
            ),
            TokenMode::Endless => Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(endless())
                .expect("valid response"),
        };
    }
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == b"Bearer fake-token");
    if !authorized {
        let realm = realm.unwrap_or_else(|| format!("http://{host}/token"));
        return Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="fake""#),
            )
            .body(full(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#))
            .expect("valid response");
    }
    match path {
        "/v2/team/app/tags/list" => respond(
            200,
            "application/json",
            r#"{"name":"team/app","tags":["1.0.0"]}"#,
        ),
        "/v2/team/broken/tags/list" => Response::builder()
            .status(500)
            .header("content-type", "application/json")
            .body(endless())
            .expect("valid response"),
        _ => respond(
            404,
            "application/json",
            r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#,
        ),
    }
}

#[tokio::test]
async fn a_token_lifetime_too_long_for_the_clock_is_kept_without_a_panic() {
    let registry = FakeRegistry::start(TokenMode::Forever, None).await;
    let client = builder()
        .with_credentials(&registry.addr, Credentials::basic("keel", "pw"))
        .build()
        .unwrap();
    let repo = image(&registry.addr, "team/app");
    for _ in 0..3 {
        assert_eq!(client.list_tags(&repo).await.unwrap().tags, ["1.0.0"]);
    }
    assert_eq!(
        registry.tokens.load(Ordering::SeqCst),
        1,
        "the token was not kept"
    );
}

/// The error that listing `image` ends in, as text; it must come within ten seconds.
async fn list_error_within_10s(client: &RegistryClient, image: &ImageRef) -> String {
    let started = Instant::now();
    let err = client.list_tags(image).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    err.to_string()
}

#[tokio::test]
async fn token_answers_and_error_bodies_are_read_within_limits() {
    let registry = FakeRegistry::start(TokenMode::Endless, None).await;
    let client = builder()
        .with_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let err = list_error_within_10s(&client, &image(&registry.addr, "team/app")).await;
    assert!(
        err.contains("the token answer is larger than the 1048576-byte limit"),
        "{err}"
    );

    // An endless error body: the status is reported at once, without reading on.
    let forever = FakeRegistry::start(TokenMode::Forever, None).await;
    let client = builder()
        .with_timeout(Duration::from_secs(20))
        .with_retries(0, Duration::from_millis(10), Duration::from_millis(10))
        .build()
        .unwrap();
    let err = list_error_within_10s(&client, &image(&forever.addr, "team/broken")).await;
    assert!(err.contains("HTTP 500"), "{err}");
}

#[tokio::test]
async fn a_plain_http_realm_off_this_machine_gets_no_credentials() {
    // A realm on another machine over plain http: refused before anything is sent. (The
    // `.invalid` name could not be reached anyway; the error must come from the rule.)
    let registry = FakeRegistry::start(
        TokenMode::Forever,
        Some("http://auth.keel-test.invalid/token".into()),
    )
    .await;
    let err = listing_error(&registry.addr).await;
    let text = err.to_string();
    assert!(text.contains("http://auth.keel-test.invalid"), "{text}");
    assert!(text.contains("not https"), "{text}");
    assert!(!err.is_retryable());
    assert_eq!(registry.tokens.load(Ordering::SeqCst), 0);

    // A realm on another loopback server is fine, and gets the basic credentials (as Docker
    // Hub's auth.docker.io does); the registry origin alone gets the token.
    let witness = Witness::start().await;
    let registry = FakeRegistry::start(
        TokenMode::Forever,
        Some(format!("http://{}/token", witness.addr)),
    )
    .await;
    let err = listing_error(&registry.addr).await;
    // The witness answers no token.
    assert!(err.to_string().contains("token"), "{err}");
    let seen = witness.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].as_deref().is_some_and(|a| a.starts_with("Basic ")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_retry_after_too_long_for_the_clock_is_a_rate_limit_error_at_once() {
    let server = RegistryServer::with_tags(ServerOptions::plain(), "team/app", &["1.0.0"]).await;
    let client = builder().build().unwrap();
    for retry_after in [
        u64::MAX.to_string(),
        "Fri, 31 Dec 9999 23:59:59 GMT".to_owned(),
    ] {
        let proxy = FaultProxy::start(
            server.addr(),
            vec![FaultRule::new(
                "/tags/list",
                Fault::too_many_requests_raw(&retry_after),
            )],
        )
        .await;
        let started = Instant::now();
        let err = client
            .list_tags(&image(proxy.addr(), "team/app"))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{retry_after}");
        let wait = err.retry_after().expect("the wait is reported");
        assert!(
            wait > Duration::from_secs(100 * 365 * 24 * 3600),
            "{wait:?}"
        );
        assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
        assert!(err.to_string().contains("retry after"), "{err}");
    }
}
