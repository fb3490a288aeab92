//! The API over real HTTP: a server on 127.0.0.1, raw requests and the client.

use std::sync::Arc;

use keel_api::{ApiAuth, ApiClient, ErrorBody, Role, route_table};
use keel_core::approval::{
    ApprovalFilter, ApprovalRequest, ApprovalState, Approvals, AuditAction, AuditQuery,
    MemoryApprovalStore,
};
use keel_core::{Error, UpdatePlan};
use keel_testsupport::pipeline::{audit_entries, audited, stored_request, web_plan};
use keel_testsupport::receiver::serve_router;
use serde_json::{Value, json};

const ALICE_TOKEN: &str = "token-of-alice-0123456789";
const BOT_TOKEN: &str = "token-of-the-bot-987654321";
const DASH_TOKEN: &str = "token-of-the-dashboard-5555";
const CAROL_TOKEN: &str = "token-of-carol-approver-777";

struct Server {
    url: String,
    approvals: Approvals,
    http: reqwest::Client,
}

async fn start() -> Server {
    let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
    let auth = ApiAuth::builder()
        .basic_user("bob", "pw-of-bob")
        .bearer_token("alice", ALICE_TOKEN)
        .delegate_token("slack", BOT_TOKEN)
        .delegate_voters("slack", ["U024BE7LH", "U1", "U2"])
        .bearer_token("dash", DASH_TOKEN)
        .with_role("dash", Role::Reader)
        .bearer_token("carol", CAROL_TOKEN)
        .with_role("carol", Role::Approver)
        .build()
        .unwrap();
    let router = keel_api::router(approvals.clone(), auth);
    let url = format!("http://{}", serve_router(router).await);
    Server {
        url,
        approvals,
        http: reqwest::Client::new(),
    }
}

/// A server holding one request, opened as [`Server::open`] does; the request.
async fn start_with(target: &str, id: &str, tag: &str, required: u32) -> (Server, ApprovalRequest) {
    let s = start().await;
    let r = s.open(target, id, tag, required).await;
    (s, r)
}

/// The paths of the request `id`: itself, its approval and its rejection.
fn paths(id: &str) -> [String; 3] {
    let one = format!("/v1/approvals/{id}");
    [
        one.clone(),
        format!("{one}/approve"),
        format!("{one}/reject"),
    ]
}

/// The string `field` of each element of the array `list`.
fn strings<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    let items = list.as_array().unwrap().iter();
    items.map(|item| item[field].as_str().unwrap()).collect()
}

/// [`web_plan`] in target `target`.
fn plan(target: &str, id: &str, tag: &str) -> UpdatePlan {
    UpdatePlan {
        target: target.into(),
        ..web_plan(id, tag)
    }
}

impl Server {
    async fn open(&self, target: &str, id: &str, tag: &str, required: u32) -> ApprovalRequest {
        self.approvals
            .request(&plan(target, id, tag), None, required, None, None)
            .await
            .unwrap()
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    fn alice(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, path).bearer_auth(ALICE_TOKEN)
    }

    /// `/metrics`, read by alice.
    async fn metrics(&self) -> String {
        let response = self.alice(reqwest::Method::GET, "/metrics").send().await;
        response.unwrap().text().await.unwrap()
    }

    fn client(&self, token: &str) -> ApiClient {
        ApiClient::new(&self.url).unwrap().with_bearer_token(token)
    }
}

/// Sends `request`; its status and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    json_of(request.send().await.unwrap()).await
}

/// One request of a table: its name, the request, the status it must get, top-level fields
/// its JSON body must have (`("error", "forbidden")`, `("state", "pending")`) and a fragment
/// of its `reason`.
type Case<'a> = (
    &'a str,
    reqwest::RequestBuilder,
    u16,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
);

/// Sends the requests of `cases` in order and checks each answer; returns the bodies.
async fn expect_all(cases: Vec<Case<'_>>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for (name, request, status, fields, reason) in cases {
        let (got, body) = call(request).await;
        assert_eq!(got, status, "{name}: {body}");
        for (field, value) in fields {
            assert_eq!(body[field], *value, "{name}: {field} of {body}");
        }
        if let Some(reason) = reason {
            let text = body["reason"].as_str().unwrap_or_default();
            assert!(text.contains(reason), "{name}: {body}");
        }
        bodies.push(body);
    }
    bodies
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap();
    (status, body)
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "0123456789abcdef")
}

#[tokio::test]
async fn every_route_refuses_missing_and_wrong_credentials() {
    let s = start().await;
    for (method, path) in route_table() {
        let path = concrete(path);
        let none = s.req(method.clone(), &path).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without credentials");
        let challenges: Vec<_> = none
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with("Basic realm=\"keel\"")),
            "{challenges:?}"
        );
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with("Bearer realm=\"keel\"")),
            "{challenges:?}"
        );
        let body: ErrorBody = none.json().await.unwrap();
        assert_eq!(body.error, "unauthorized");

        type WithCredentials = fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder;
        let wrong: [(&str, WithCredentials); 3] = [
            ("a wrong token", |r| {
                r.bearer_auth("token-of-alice-012345678")
            }),
            ("a wrong password", |r| {
                r.basic_auth("bob", Some("pw-of-alice"))
            }),
            // The right password of another user.
            ("a wrong user", |r| r.basic_auth("alice", Some("pw-of-bob"))),
        ];
        for (name, with) in wrong {
            let resp = with(s.req(method.clone(), &path)).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {name}");
        }
    }
    // Nothing was voted or deleted by the refused calls.
    assert!(audit_entries(&s.approvals).await.is_empty());
}

#[tokio::test]
async fn every_route_of_the_table_is_served() {
    let s = start().await;
    for (method, path) in route_table() {
        let resp = s
            .alice(method.clone(), &concrete(path))
            .send()
            .await
            .unwrap();
        // An unknown request id is fine (404 with `what`); an unknown route or method is not.
        let status = resp.status().as_u16();
        assert_ne!(status, 405, "{method} {path}");
        if status == 404 {
            let body: ErrorBody = resp.json().await.unwrap();
            assert_eq!(
                body.what.as_deref(),
                Some("approval request 0123456789abcdef"),
                "{method} {path}"
            );
        } else {
            assert!(resp.status().is_success(), "{method} {path}: {status}");
        }
    }
    expect_all(vec![
        (
            "an unknown route",
            s.alice(reqwest::Method::GET, "/v1/nothing"),
            404,
            &[("error", "not_found")],
            None,
        ),
        (
            "an unknown method",
            s.alice(reqwest::Method::PUT, "/v1/approvals"),
            405,
            &[("error", "method_not_allowed")],
            None,
        ),
    ])
    .await;
}

#[tokio::test]
async fn list_filters_by_state_and_target() {
    let s = start().await;
    let a = s.open("prod", "web", "1.1.0", 1).await;
    let b = s.open("staging", "web", "1.1.0", 1).await;
    s.approvals
        .vote(&b.id, "carol", keel_core::approval::VoteKind::Approve, None)
        .await
        .unwrap();

    let (status, all) = call(s.alice(reqwest::Method::GET, "/v1/approvals")).await;
    assert_eq!(status, 200);
    assert_eq!(
        strings(&all["approvals"], "id"),
        vec![a.id.as_str(), b.id.as_str()]
    );
    // camelCase fields, the plan as image strings.
    assert_eq!(all["approvals"][0]["plan"]["new"], "ghcr.io/acme/web:1.1.0");
    assert!(all["approvals"][0]["deadline"].is_string());

    let (_, pending) = call(s.alice(reqwest::Method::GET, "/v1/approvals?state=pending")).await;
    assert_eq!(pending["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(pending["approvals"][0]["id"], a.id.as_str());

    let (_, staging) = call(s.alice(
        reqwest::Method::GET,
        "/v1/approvals?target=staging&image=web",
    ))
    .await;
    assert_eq!(staging["approvals"][0]["state"], "approved");
    assert_eq!(staging["approvals"].as_array().unwrap().len(), 1);

    let invalid: &[(&str, &str)] = &[("error", "invalid_input")];
    expect_all(vec![
        (
            "an unknown state",
            s.alice(reqwest::Method::GET, "/v1/approvals?state=waiting"),
            400,
            invalid,
            Some("\"waiting\""),
        ),
        (
            "an unknown parameter",
            s.alice(reqwest::Method::GET, "/v1/approvals?status=pending"),
            400,
            invalid,
            Some("status"),
        ),
    ])
    .await;
}

#[tokio::test]
async fn votes_are_bound_to_the_credential() {
    let (s, r) = start_with("prod", "web", "1.2.0", 2).await;
    let [_, approve, reject] = paths(&r.id);
    let post = reqwest::Method::POST;
    let alice_approves = |body: Value| s.alice(post.clone(), &approve).json(&body);

    let bodies = expect_all(vec![
        (
            "alice's token may not vote as somebody else",
            alice_approves(json!({"voter": "mallory"})),
            403,
            &[("error", "forbidden")],
            None,
        ),
        (
            "alice votes with a comment",
            alice_approves(json!({"comment": "fine by me"})),
            200,
            &[("state", "pending")],
            None,
        ),
        (
            "alice again (empty body) does not count twice",
            s.alice(post.clone(), &approve),
            200,
            &[("state", "pending")],
            None,
        ),
        (
            "bob by basic auth, naming himself",
            s.req(post.clone(), &approve)
                .basic_auth("bob", Some("pw-of-bob"))
                .json(&json!({"voter": "bob"})),
            200,
            &[("state", "approved")],
            None,
        ),
        (
            "decided: another vote conflicts",
            s.alice(post.clone(), &reject),
            409,
            &[("error", "conflict")],
            Some("approved"),
        ),
    ])
    .await;
    assert_eq!(bodies[1]["votes"][0]["voter"], "alice");
    assert_eq!(bodies[1]["votes"][0]["comment"], "fine by me");
    assert_eq!(bodies[2]["votes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_delegate_names_its_voters_under_its_own_prefix() {
    let (s, r) = start_with("prod", "web", "1.3.0", 2).await;
    let reject = format!("/v1/approvals/{}/reject", r.id);
    let bot = || s.req(reqwest::Method::POST, &reject).bearer_auth(BOT_TOKEN);
    let bodies = expect_all(vec![
        (
            "a delegate without a voter",
            bot(),
            400,
            &[("error", "invalid_input")],
            Some("must name the voter"),
        ),
        (
            "a delegate naming its voter",
            bot().json(&json!({"voter": "U024BE7LH", "comment": "breaks the login"})),
            200,
            &[("state", "rejected")],
            None,
        ),
    ])
    .await;
    assert_eq!(bodies[1]["votes"][0]["voter"], "slack:U024BE7LH");
    assert_eq!(bodies[1]["votes"][0]["kind"], "reject");
}

#[tokio::test]
async fn roles_and_delegate_voters_are_enforced() {
    let (s, r) = start_with("prod", "web", "1.7.0", 2).await;
    let [one, approve, reject] = paths(&r.id);
    let send = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        s.req(method, path).bearer_auth(token).json(&body)
    };
    let (post, delete) = (reqwest::Method::POST, reqwest::Method::DELETE);
    const READER: Option<&str> = Some("\"dash\" has the role reader");

    let bodies = expect_all(vec![
        (
            "a reader reads",
            s.req(reqwest::Method::GET, "/v1/approvals")
                .bearer_auth(DASH_TOKEN),
            200,
            &[],
            None,
        ),
        (
            "a reader may not approve",
            send(post.clone(), &approve, DASH_TOKEN, json!({})),
            403,
            &[("error", "forbidden")],
            READER,
        ),
        (
            "a reader may not reject",
            send(post.clone(), &reject, DASH_TOKEN, json!({})),
            403,
            &[("error", "forbidden")],
            READER,
        ),
        (
            "a reader may not delete",
            send(delete.clone(), &one, DASH_TOKEN, json!({})),
            403,
            &[],
            None,
        ),
        (
            "an approver votes",
            send(post.clone(), &approve, CAROL_TOKEN, json!({})),
            200,
            &[],
            None,
        ),
        (
            "an approver may not delete",
            send(delete.clone(), &one, CAROL_TOKEN, json!({})),
            403,
            &[],
            Some("needs admin"),
        ),
        // The delegate votes only for the voters it was given; anyone else is refused by
        // name and nothing is recorded.
        (
            "a delegate votes for a voter it was not given",
            send(
                post.clone(),
                &approve,
                BOT_TOKEN,
                json!({"voter": "U0EVE1234"}),
            ),
            403,
            &[("error", "forbidden")],
            Some("U0EVE1234"),
        ),
    ])
    .await;
    assert_eq!(bodies[0]["approvals"].as_array().unwrap().len(), 1);
    assert!(s.approvals.get(&r.id).await.unwrap().is_some());
    let stored = s.approvals.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.votes.len(), 1, "{stored:?}");
    assert_eq!(stored.votes[0].voter, "carol");
    assert_eq!(stored.state, ApprovalState::Pending);
    assert_eq!(audited(&s.approvals, AuditAction::Voted).await, 1);

    expect_all(vec![(
        "a delegate votes for a voter it was given",
        send(post, &approve, BOT_TOKEN, json!({"voter": "U1"})),
        200,
        &[("state", "approved")],
        None,
    )])
    .await;
}

#[tokio::test]
async fn bad_ids_bodies_and_unknown_requests() {
    let (s, r) = start_with("prod", "web", "1.4.0", 1).await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/approvals/ffffffffffffffff"),
        (
            reqwest::Method::POST,
            "/v1/approvals/ffffffffffffffff/approve",
        ),
        (
            reqwest::Method::POST,
            "/v1/approvals/ffffffffffffffff/reject",
        ),
        (reqwest::Method::DELETE, "/v1/approvals/ffffffffffffffff"),
    ] {
        let (status, body) = call(s.alice(method.clone(), path)).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"], "not_found");
        assert_eq!(body["what"], "approval request ffffffffffffffff");
    }
    let approve = format!("/v1/approvals/{}/approve", r.id);
    let post = reqwest::Method::POST;
    expect_all(vec![
        (
            "a bad id",
            s.alice(reqwest::Method::GET, "/v1/approvals/bad$id"),
            400,
            &[("error", "invalid_input")],
            Some("approval request id"),
        ),
        (
            "a body that is not JSON",
            s.alice(post.clone(), &approve).body("{not json"),
            400,
            &[("error", "invalid_input")],
            None,
        ),
        (
            "an unknown field",
            s.alice(post.clone(), &approve)
                .json(&json!({"voter": "alice", "votr": "x"})),
            400,
            &[],
            None,
        ),
        (
            "a comment too long",
            s.alice(post.clone(), &approve)
                .json(&json!({"comment": "x".repeat(2000)})),
            400,
            &[],
            Some("vote comment"),
        ),
    ])
    .await;

    let huge = s
        .alice(reqwest::Method::POST, &approve)
        .body(vec![b' '; keel_api::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    // None of it voted.
    assert!(stored_request(&s.approvals, &r.id).await.votes.is_empty());
}

#[tokio::test]
async fn delete_audit_and_metrics() {
    let (s, a) = start_with("prod", "web", "1.5.0", 1).await;
    let b = s.open("prod", "api", "2.0.0", 1).await;

    let metrics = s.metrics().await;
    assert!(
        metrics.contains("\nkeel_approvals_pending 2\n"),
        "{metrics}"
    );

    let (status, body) =
        call(s.alice(reqwest::Method::DELETE, &format!("/v1/approvals/{}", a.id))).await;
    assert_eq!((status, body["id"].as_str()), (200, Some(a.id.as_str())));
    let (status, _) = call(s.alice(reqwest::Method::GET, &format!("/v1/approvals/{}", a.id))).await;
    assert_eq!(status, 404);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("\nkeel_approvals_pending 1\n"),
        "{metrics}"
    );

    // A delegate is an approver: it may not delete.
    let (status, body) = call(
        s.req(reqwest::Method::DELETE, &format!("/v1/approvals/{}", b.id))
            .bearer_auth(BOT_TOKEN),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));

    let (status, audit) = call(s.alice(reqwest::Method::GET, "/v1/audit")).await;
    assert_eq!(status, 200);
    assert_eq!(
        strings(&audit["entries"], "action"),
        vec!["requested", "requested", "deleted"]
    );
    assert_eq!(audit["entries"][2]["actor"], "alice");
    assert!(audit.get("next").is_none());

    let (_, page) = call(s.alice(reqwest::Method::GET, "/v1/audit?limit=1")).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let next = page["next"].as_u64().unwrap();
    let (_, rest) = call(s.alice(
        reqwest::Method::GET,
        &format!("/v1/audit?since={next}&limit=5"),
    ))
    .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);
    assert_eq!(rest["entries"][0]["seq"].as_u64().unwrap(), next + 1);

    let (_, by_request) =
        call(s.alice(reqwest::Method::GET, &format!("/v1/audit?request={}", b.id))).await;
    assert_eq!(by_request["entries"].as_array().unwrap().len(), 1);

    let bad = ["limit=0", "limit=abc", "since=-1", "limit=999999"];
    let paths: Vec<String> = bad.iter().map(|b| format!("/v1/audit?{b}")).collect();
    let invalid: &[(&str, &str)] = &[("error", "invalid_input")];
    expect_all(
        bad.iter()
            .zip(&paths)
            .map(|(bad, path)| {
                (
                    *bad,
                    s.alice(reqwest::Method::GET, path),
                    400,
                    invalid,
                    None,
                )
            })
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn the_client_round_trips_and_maps_errors() {
    let (s, r) = start_with("prod", "web", "1.6.0", 2).await;
    let other = s.open("prod", "worker", "3.0.0", 1).await;
    let alice = s.client(ALICE_TOKEN);
    let bot = s.client(BOT_TOKEN);

    let pending = alice
        .list(&ApprovalFilter::state(ApprovalState::Pending))
        .await
        .unwrap();
    assert_eq!(
        pending,
        s.approvals
            .list(&ApprovalFilter::state(ApprovalState::Pending))
            .await
            .unwrap()
    );
    let filtered = alice
        .list(&ApprovalFilter {
            id: Some("worker".into()),
            ..ApprovalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, other.id);
    assert_eq!(alice.get(&r.id).await.unwrap(), r);

    let after = alice.approve(&r.id, None, Some("ok")).await.unwrap();
    assert_eq!(
        (after.state, after.approvals()),
        (ApprovalState::Pending, 1)
    );
    let after = bot.approve(&r.id, Some("U1"), None).await.unwrap();
    assert_eq!(after.state, ApprovalState::Approved);
    assert_eq!(after.votes[1].voter, "slack:U1");

    let rejected = bot.reject(&other.id, Some("U2"), Some("no")).await.unwrap();
    assert_eq!(rejected.state, ApprovalState::Rejected);

    match alice.approve(&r.id, None, None).await {
        Err(Error::Conflict { action, reason }) => {
            assert!(action.contains(&r.id), "{action}");
            assert!(reason.contains("approved"), "{reason}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match alice.get("ffffffffffffffff").await {
        Err(Error::NotFound { what }) => assert_eq!(what, "approval request ffffffffffffffff"),
        other => panic!("expected not found, got {other:?}"),
    }
    match alice.approve(&r.id, Some("mallory"), None).await {
        Err(Error::Unauthorized { .. }) => {}
        other => panic!("expected unauthorized, got {other:?}"),
    }
    // A malformed id is refused before any request is sent.
    assert!(matches!(
        alice.get("a/b").await,
        Err(Error::InvalidInput(_))
    ));
    // Server-side invalid input maps back too.
    match bot.approve(&other.id, None, None).await {
        Err(Error::InvalidInput(e)) => assert!(e.reason().contains("must name the voter")),
        other => panic!("expected invalid input, got {other:?}"),
    }

    let wrong = s.client("not-the-token");
    match wrong.list(&ApprovalFilter::default()).await {
        Err(e @ Error::Unauthorized { .. }) => {
            assert!(!e.to_string().contains("not-the-token"), "{e}");
            assert!(!format!("{e:?}").contains("not-the-token"), "{e:?}");
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
    let anonymous = ApiClient::new(&s.url).unwrap();
    assert!(matches!(
        anonymous.get(&r.id).await,
        Err(Error::Unauthorized { .. })
    ));
    let basic = ApiClient::new(&s.url)
        .unwrap()
        .with_basic_auth("bob", "pw-of-bob");
    let deleted = basic.delete(&r.id, None).await.unwrap();
    assert_eq!(deleted.id, r.id);

    let audit = alice.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        audit,
        s.approvals
            .audit_log(&AuditQuery {
                limit: Some(500),
                ..AuditQuery::default()
            })
            .await
            .unwrap()
    );
    let last = audit.last().unwrap();
    assert_eq!(
        (last.action, last.actor.as_deref()),
        (AuditAction::Deleted, Some("bob"))
    );
    let page = alice
        .audit(&AuditQuery {
            request: Some(r.id.clone()),
            since_seq: Some(audit[0].seq),
            limit: Some(2),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(
        page.iter()
            .all(|e| e.request.as_deref() == Some(r.id.as_str()))
    );
    assert!(page[0].seq > audit[0].seq);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_retryable_backend_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = ApiClient::new(&url).unwrap().with_bearer_token(ALICE_TOKEN);
    match client.list(&ApprovalFilter::default()).await {
        Err(e @ Error::Backend { .. }) => {
            assert!(e.is_retryable(), "{e}");
            assert!(!format!("{e:?}").contains(ALICE_TOKEN));
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

/// A server on 127.0.0.1 that answers every request with `head` (status line and headers)
/// and then a body of spaces that never ends, until the client hangs up.
fn endless_server(head: &'static str) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n")
                    && stream.read(&mut byte).is_ok_and(|n| n == 1)
                {
                    request.push(byte[0]);
                }
                let chunk = vec![b' '; 64 << 10];
                if stream.write_all(head.as_bytes()).is_ok() {
                    while stream.write_all(&chunk).is_ok() {}
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn answers_are_read_within_the_body_limit() {
    let url = endless_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
    );
    let client = ApiClient::new(&url)
        .unwrap()
        .with_bearer_token(ALICE_TOKEN)
        .with_timeout(std::time::Duration::from_secs(30));
    let started = std::time::Instant::now();
    let e = client.list(&ApprovalFilter::default()).await.unwrap_err();
    assert!(matches!(e, Error::Backend { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!(
            "larger than the {}-byte limit",
            keel_api::DEFAULT_MAX_BODY_BYTES
        )),
        "{e}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let small = client.clone().with_max_body_bytes(1000);
    let e = small.get("0a1b2c3d4e5f6789").await.unwrap_err();
    assert!(
        e.to_string().contains("larger than the 1000-byte limit"),
        "{e}"
    );

    // An endless error answer is reported by its status, without reading on.
    let url = endless_server(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
    );
    let client = ApiClient::new(&url)
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(30));
    let started = std::time::Instant::now();
    let e = client.list(&ApprovalFilter::default()).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_id_that_is_not_utf8_gets_an_error_body() {
    // Found by the approval_api fuzz target: axum answered a percent-encoded id that is not
    // UTF-8 with a plain-text 400 instead of the API's error body.
    let s = start().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/approvals/re@%ed="),
        (reqwest::Method::DELETE, "/v1/approvals/%ff"),
        (reqwest::Method::POST, "/v1/approvals/%ff/approve"),
        (reqwest::Method::POST, "/v1/approvals/%c3%28/reject"),
    ] {
        let (status, body) = call(s.alice(method.clone(), path)).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["error"], "invalid_input", "{method} {path}: {body}");
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.contains("approval request id"), "{reason}");
        assert!(reason.contains("UTF-8"), "{reason}");
    }
}
