//! The HTTP front over real connections: a server bound on 127.0.0.1:0, requests by reqwest.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use keel_controller::http::{self, Credential, HttpConfig, Secret};
use keel_controller::metrics::{Metrics, WebhookOutcome};
use keel_core::trigger::{PushEvent, WebhookSource};
use keel_testsupport::{assert_contains, hmac_sha256_hex};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "t0k3n-for-tests";
const USER: &str = "ci";
const PASSWORD: &str = "pa55word";
const BEARER: &str = "b3arer-for-tests";

struct Server {
    base: String,
    client: reqwest::Client,
    pushes: mpsc::Receiver<PushEvent>,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: HttpConfig, queue: usize) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, pushes) = mpsc::channel(queue);
        let metrics = Arc::new(Metrics::new());
        let router = http::router(config, metrics.clone(), tx);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            client: reqwest::Client::new(),
            pushes,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
    }

    /// A GitHub `package` event carrying `body`, signed with `signature`.
    fn github(&self, body: &str, signature: String) -> reqwest::RequestBuilder {
        self.post("/v1/webhooks/github", body.to_owned())
            .header("x-github-event", "package")
            .header("x-hub-signature-256", signature)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }

    /// Everything queued so far.
    fn drain(&mut self) -> Vec<String> {
        let mut images = Vec::new();
        while let Ok(push) = self.pushes.try_recv() {
            images.push(push.image.to_string());
        }
        images
    }
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../crates/keel-core/tests/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn all_credentials() -> HttpConfig {
    HttpConfig::new()
        .with_auth(Credential::Token(Secret::new(TOKEN)))
        .with_auth(Credential::Basic {
            username: USER.into(),
            password: Secret::new(PASSWORD),
        })
        .with_auth(Credential::Bearer(Secret::new(BEARER)))
}

/// Open endpoints but `source`, which takes only `token`.
fn source_token(source: WebhookSource, token: &str) -> HttpConfig {
    HttpConfig::new().with_source_auth(source, Credential::Token(Secret::new(token)))
}

/// GitHub's `x-hub-signature-256` of `body` under `key`.
fn github_signature(key: &str, body: &str) -> String {
    format!(
        "sha256={}",
        hmac_sha256_hex(key.as_bytes(), body.as_bytes())
    )
}

/// Sends the requests of `cases` (name, request, status) in order and checks each status;
/// returns the responses.
async fn expect_statuses(
    cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)>,
) -> Vec<reqwest::Response> {
    let mut responses = Vec::new();
    for (name, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{name}");
        responses.push(response);
    }
    responses
}

/// Checks the webhook counters of `source`, outcome by outcome.
fn assert_webhooks(metrics: &Metrics, source: WebhookSource, expected: &[(WebhookOutcome, u64)]) {
    for (outcome, count) in expected {
        assert_eq!(
            metrics.webhooks(source, *outcome),
            *count,
            "{source:?} {outcome:?}"
        );
    }
}

/// Checks that `queued` is all that `server` queued since its last drain and the webhook
/// counters of `source` ([`assert_webhooks`]), then shuts it down.
async fn finish(
    mut server: Server,
    queued: &[&str],
    source: WebhookSource,
    counters: &[(WebhookOutcome, u64)],
) {
    assert_eq!(server.drain(), queued);
    assert_webhooks(&server.metrics, source, counters);
    server.shutdown().await;
}

/// The `error` of the JSON body of `response`.
async fn error_of(response: reqwest::Response) -> String {
    json(response).await["error"].as_str().unwrap().to_owned()
}

/// The `error` of `response`, after checking that it has `status`.
async fn error_with(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    error_of(response).await
}

async fn json(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Each endpoint with a payload of its own and the images it reports.
fn samples() -> Vec<(WebhookSource, &'static str, Vec<&'static str>)> {
    use WebhookSource::*;
    vec![
        (
            Native,
            "native.json",
            vec!["gcr.io/acme-prod/hello-world:1.1.1"],
        ),
        (
            DockerHub,
            "dockerhub.json",
            vec!["docker.io/acme/web:1.4.2"],
        ),
        (
            Quay,
            "quay.json",
            vec!["quay.io/acme/api:v2.3.0", "quay.io/acme/api:latest"],
        ),
        (
            Azure,
            "azure_push.json",
            vec!["acmeregistry.azurecr.io/team/hello-world:v1.3.0"],
        ),
        (
            GitHub,
            "github_package.json",
            vec!["ghcr.io/acme-corp/billing-service:2.8.1"],
        ),
        (
            Harbor,
            "harbor_push.json",
            vec!["harbor.acme.internal/payments/ledger:v3.2.0"],
        ),
        (
            JFrog,
            "jfrog_pushed.json",
            vec!["acme.jfrog.io/docker-local/team/checkout:5.0.1"],
        ),
        (
            Registry,
            "registry_push.json",
            vec!["registry.acme.internal:5000/tools/debugger:0.4.0"],
        ),
    ]
}

#[tokio::test]
async fn every_endpoint_refuses_without_credentials_and_accepts_each_kind() {
    let mut server = Server::start(all_credentials(), 64).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let wrong_basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:nope"));
    for (source, file, images) in samples() {
        let path = format!("/v1/webhooks/{source}");
        let body = fixture(file);

        // Refused: nothing, a wrong token, a wrong password, a wrong bearer token.
        let post = |server: &Server| server.post(&path, body.clone());
        let refused = [
            post(&server),
            post(&server).header("x-keel-token", "wrong"),
            server.post(&format!("{path}?token=wrong"), body.clone()),
            post(&server).header("authorization", format!("Basic {wrong_basic}")),
            post(&server).header("authorization", "Bearer wrong"),
        ];
        for request in refused {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{source}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Basic realm=\"keel\", charset=\"UTF-8\""
            );
            assert!(
                json(response).await["error"]
                    .as_str()
                    .unwrap()
                    .contains("needs credentials")
            );
        }
        assert!(
            server.drain().is_empty(),
            "{source}: refused pushes were queued"
        );

        // Accepted: the token in the header or the query, basic, bearer.
        let accepted = [
            post(&server).header("x-keel-token", TOKEN),
            server.post(&format!("{path}?token={TOKEN}"), body.clone()),
            post(&server).header("authorization", format!("Basic {basic}")),
            post(&server).header("authorization", format!("Bearer {BEARER}")),
        ];
        for request in accepted {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{source}");
            let answer = json(response).await;
            let reported: Vec<&str> = answer["pushes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(reported, images, "{source}");
            assert_eq!(server.drain(), images, "{source}");
        }
        assert_webhooks(
            &server.metrics,
            source,
            &[
                (WebhookOutcome::Unauthorized, 5),
                (WebhookOutcome::Accepted, 4),
            ],
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_registry_endpoint_can_be_closed_alone() {
    // Keel leaves /v1/webhooks/registry open; here it has a token of its own, and the other
    // endpoints stay open.
    let config = source_token(WebhookSource::Registry, "registry-only");
    let mut server = Server::start(config, 8).await;
    let body = fixture("registry_push.json");
    let responses = expect_statuses(vec![
        (
            "registry without its token",
            server.post("/v1/webhooks/registry", body.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "registry with its token",
            server
                .post("/v1/webhooks/registry", body.clone())
                .header("x-keel-token", "registry-only"),
            StatusCode::OK,
        ),
        (
            "native, still open",
            server.post("/v1/webhooks/native", fixture("native.json")),
            StatusCode::OK,
        ),
    ])
    .await;
    // No scheme to announce for a token.
    assert!(responses[0].headers().get("www-authenticate").is_none());
    assert_eq!(
        server.drain(),
        [
            "registry.acme.internal:5000/tools/debugger:0.4.0",
            "gcr.io/acme-prod/hello-world:1.1.1"
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_after_auth() {
    let server = Server::start(all_credentials().with_body_limit(1024), 8).await;
    let mut big: Value = serde_json::from_str(&fixture("dockerhub.json")).unwrap();
    big["repository"]["full_description"] = "x".repeat(4000).into();
    let big = big.to_string();

    let mut responses = expect_statuses(vec![
        (
            "over the limit",
            server
                .post("/v1/webhooks/dockerhub", big.clone())
                .header("x-keel-token", TOKEN),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        // Without credentials the body is not even read.
        (
            "over the limit without credentials",
            server.post("/v1/webhooks/dockerhub", big),
            StatusCode::UNAUTHORIZED,
        ),
        // Under the limit it goes through.
        (
            "under the limit",
            server
                .post("/v1/webhooks/dockerhub", fixture("dockerhub.json"))
                .header("x-keel-token", TOKEN),
            StatusCode::OK,
        ),
    ])
    .await;
    assert_eq!(
        json(responses.remove(0)).await["error"],
        "the body is larger than the limit of 1024 bytes"
    );
    let counters = [
        (WebhookOutcome::TooLarge, 1),
        (WebhookOutcome::Unauthorized, 1),
        (WebhookOutcome::Accepted, 1),
    ];
    let queued = ["docker.io/acme/web:1.4.2"];
    finish(server, &queued, WebhookSource::DockerHub, &counters).await;
}

#[tokio::test]
async fn bad_payloads_get_400_with_the_reason() {
    let server = Server::start(HttpConfig::new(), 8).await;
    for (source, body, reason) in [
        (
            "dockerhub",
            r#"{"repository": {"repo_name": "acme/web"}}"#,
            "Docker Hub payload: field push_data.tag is missing",
        ),
        (
            "azure",
            r#"{"action": "push", "target": {"repository": "x", "tag": "1"}}"#,
            "Azure Container Registry payload: field request.host is missing",
        ),
        (
            "registry",
            r#"{"events": {}}"#,
            "distribution registry payload: field events must be an array, got an object",
        ),
        ("quay", "", "Quay payload: the body is empty"),
    ] {
        let response = server
            .post(&format!("/v1/webhooks/{source}"), body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{source}");
        assert_eq!(json(response).await["error"], reason, "{source}");
    }
    let response = server
        .post("/v1/webhooks/harbor", "{not json")
        .send()
        .await
        .unwrap();
    let reason = error_with(response, StatusCode::BAD_REQUEST).await;
    assert!(
        reason.starts_with("Harbor payload: the body is not valid JSON"),
        "{reason}"
    );
    let invalid = [(WebhookOutcome::Invalid, 1)];
    finish(server, &[], WebhookSource::DockerHub, &invalid).await;
}

#[tokio::test]
async fn payloads_without_pushes_are_answered_but_queue_nothing() {
    let server = Server::start(HttpConfig::new(), 8).await;
    for (source, file) in [
        ("registry", "registry_pull.json"),
        ("harbor", "harbor_pull.json"),
        ("github", "github_ping.json"),
        ("jfrog", "jfrog_deleted.json"),
        ("azure", "azure_delete.json"),
    ] {
        let response = server
            .post(&format!("/v1/webhooks/{source}"), fixture(file))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{source}");
        assert_eq!(json(response).await["pushes"], Value::Array(vec![]));
    }
    let ignored = [(WebhookOutcome::Ignored, 1)];
    finish(server, &[], WebhookSource::Registry, &ignored).await;
}

#[tokio::test]
async fn github_signatures_are_verified() {
    let config = source_token(WebhookSource::GitHub, "hook-secret");
    let mut server = Server::start(config, 8).await;
    let body = fixture("github_package.json");
    let sign = github_signature;
    let ok = server
        .github(&body, sign("hook-secret", &body))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(server.drain(), ["ghcr.io/acme-corp/billing-service:2.8.1"]);
    // Signed with another key, or over another body: refused.
    for signature in [
        sign("other-secret", &body),
        sign("hook-secret", "{}"),
        "sha256=zz".to_owned(),
    ] {
        let refused = server.github(&body, signature).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(server.drain().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn replayed_signed_deliveries_are_refused() {
    let config = source_token(WebhookSource::GitHub, "hook-secret");
    let server = Server::start(config, 8).await;
    let deliver = |body: &str, delivery: &str| {
        server
            .github(body, github_signature("hook-secret", body))
            .header("x-github-delivery", delivery)
            .send()
    };
    let first = fixture("github_package.json");
    let second = first.replace("2.8.1", "2.8.2");
    assert_ne!(first, second);

    let ok = deliver(&first, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    // The same delivery again, and the same signed body under a new delivery id: refused,
    // naming the delivery.
    let again = deliver(&first, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .await
        .unwrap();
    let reason = error_with(again, StatusCode::CONFLICT).await;
    assert_contains(
        &reason,
        &["delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958 was already received"],
    );
    let renamed = deliver(&first, "0000-fresh-id").await.unwrap();
    let reason = error_with(renamed, StatusCode::CONFLICT).await;
    assert!(
        reason.contains("delivery 0000-fresh-id repeats the signed body"),
        "{reason}"
    );

    // A new delivery passes.
    let next = deliver(&second, "72d3162e-cc78-11e3-81ab-4c9367dc0959")
        .await
        .unwrap();
    assert_eq!(next.status(), StatusCode::OK);
    let queued = [
        "ghcr.io/acme-corp/billing-service:2.8.1",
        "ghcr.io/acme-corp/billing-service:2.8.2",
    ];
    let replayed = [(WebhookOutcome::Replayed, 2)];
    finish(server, &queued, WebhookSource::GitHub, &replayed).await;
}

#[tokio::test]
async fn a_full_queue_gets_503_and_queues_a_payload_whole_or_not_at_all() {
    let server = Server::start(HttpConfig::new(), 1).await;
    let responses = expect_statuses(vec![
        // Two tags, one slot: refused whole.
        (
            "two tags for one slot",
            server.post("/v1/webhooks/quay", fixture("quay.json")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "one tag",
            server.post("/v1/webhooks/native", fixture("native.json")),
            StatusCode::OK,
        ),
    ])
    .await;
    assert_eq!(responses[0].headers()["retry-after"], "10");
    let queued = ["gcr.io/acme-prod/hello-world:1.1.1"];
    let busy = [(WebhookOutcome::Busy, 1)];
    finish(server, &queued, WebhookSource::Quay, &busy).await;
}

#[tokio::test]
async fn unknown_sources_health_and_methods() {
    let server = Server::start(HttpConfig::new(), 8).await;
    let mut responses = expect_statuses(vec![
        (
            "an unknown source",
            server.post("/v1/webhooks/gitlab", "{}"),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET of a webhook",
            server.get("/v1/webhooks/native"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("health", server.get("/healthz"), StatusCode::OK),
        (
            "an unknown path",
            server.get("/nowhere"),
            StatusCode::NOT_FOUND,
        ),
    ])
    .await;
    let health = responses.remove(2);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let error = error_of(responses.remove(0)).await;
    assert!(error.contains("unknown webhook source"), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let server = Server::start(all_credentials(), 8).await;
    let pending = Arc::new(AtomicUsize::new(2));
    let p = pending.clone();
    server.metrics.set_pending_approvals(move || {
        let n = p.load(Ordering::Relaxed);
        async move { Ok(n) }
    });
    server
        .metrics
        .set_registry_requests(|| vec![("tag_page", 12), ("manifest_head", 3)]);
    server.metrics.pass("poll", 2, 1, 1_717_000_000);

    server
        .post("/v1/webhooks/quay", fixture("quay.json"))
        .header("x-keel-token", TOKEN)
        .send()
        .await
        .unwrap();
    server
        .post("/v1/webhooks/quay", fixture("quay.json"))
        .send()
        .await
        .unwrap();

    let scrape = || async {
        let response = server
            .client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.text().await.unwrap()
    };
    let text = scrape().await;
    for line in [
        "# TYPE keel_webhooks_received_total counter",
        "keel_webhooks_received_total{source=\"quay\",outcome=\"accepted\"} 1",
        "keel_webhooks_received_total{source=\"quay\",outcome=\"unauthorized\"} 1",
        "keel_webhooks_received_total{source=\"registry\",outcome=\"accepted\"} 0",
        "keel_pipeline_passes_total{trigger=\"poll\"} 1",
        "keel_pipeline_passes_total{trigger=\"webhook\"} 0",
        "keel_updates_total{outcome=\"applied\"} 2",
        "keel_updates_total{outcome=\"failed\"} 1",
        "keel_pipeline_last_pass_timestamp_seconds 1717000000",
        "# TYPE keel_pending_approvals gauge",
        "keel_pending_approvals 2",
        "keel_registry_requests_total{kind=\"tag_page\"} 12",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Every sample line is `name{labels} value` with a number.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    }
    // The gauge is counted again at every scrape.
    pending.store(5, Ordering::Relaxed);
    assert!(
        scrape()
            .await
            .lines()
            .any(|l| l == "keel_pending_approvals 5")
    );
    server.shutdown().await;
}
