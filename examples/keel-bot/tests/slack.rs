//! The bot against a local "Slack" (a Web API that records calls, and signed requests made
//! here) and the real keel API over an in-memory approval store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use keel_api::ApiAuth;
use keel_bot::{Bot, Config, Secret};
use keel_core::approval::{
    ApprovalRequest, ApprovalState, Approvals, AuditAction, MemoryApprovalStore, VoteKind,
};
use keel_testsupport::hmac_sha256_hex;
use keel_testsupport::pipeline::{audited, web_plan};
use keel_testsupport::receiver::serve_router;
use serde_json::{Value, json};

const SIGNING_SECRET: &str = "e6b19c573432dcc6b075501d51b51bb8";
const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
const API_TOKEN: &str = "delegate-token-of-the-bot-0123";

/// One call Slack received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    authorization: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct FakeSlack {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeSlack {
    fn calls(&self, method: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Waits up to five seconds for the `n`th call of `method`.
    async fn wait_for(&self, method: &str, n: usize) -> Vec<Call> {
        for _ in 0..500 {
            let calls = self.calls(method);
            if calls.len() >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "Slack never got {n} {method} call(s): {:?}",
            self.calls(method)
        );
    }
}

/// The `text` field of a Slack message or answer.
fn text_of(message: &serde_json::Value) -> &str {
    message["text"].as_str().unwrap()
}
async fn web_api(
    State(slack): State<FakeSlack>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut calls = slack.calls.lock().unwrap();
    calls.push(Call {
        method: method.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if authorization.as_deref() != Some(&format!("Bearer {BOT_TOKEN}")) {
        return Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    match method.as_str() {
        "chat.postMessage" => {
            let n = calls.len();
            Json(json!({"ok": true, "channel": "C0KEELAPP", "ts": format!("1700000000.{n:06}")}))
        }
        "chat.update" => Json(json!({"ok": true, "channel": body["channel"], "ts": body["ts"]})),
        _ => Json(json!({"ok": false, "error": "unknown_method"})),
    }
}

async fn response_url(
    State(slack): State<FakeSlack>,
    Path(hook): Path<String>,
    Json(body): Json<Value>,
) -> &'static str {
    slack.calls.lock().unwrap().push(Call {
        method: format!("respond/{hook}"),
        authorization: None,
        body,
    });
    "ok"
}

struct World {
    approvals: Approvals,
    slack: FakeSlack,
    slack_url: String,
    api_url: String,
    http: reqwest::Client,
}

async fn serve(router: Router) -> String {
    format!("http://{}", serve_router(router).await)
}

async fn world() -> World {
    let slack = FakeSlack::default();
    let slack_url = serve(
        Router::new()
            .route("/api/{method}", post(web_api))
            .route("/respond/{hook}", post(response_url))
            .with_state(slack.clone()),
    )
    .await;
    let approvals = Approvals::new(Arc::new(MemoryApprovalStore::new()));
    let auth = ApiAuth::builder()
        .delegate_token("slack", API_TOKEN)
        // The server would take T0002 too: what keeps its members out is the bot's own list.
        .delegate_voters("slack", ["T0001/*", "T0002/*"])
        .build()
        .unwrap();
    let api_url = serve(keel_api::router(approvals.clone(), auth)).await;
    World {
        approvals,
        slack,
        slack_url,
        api_url,
        http: reqwest::Client::new(),
    }
}

impl World {
    fn config(&self) -> Config {
        let mut c = Config::new(
            Secret::new(SIGNING_SECRET),
            Secret::new(BOT_TOKEN),
            "#deploys",
            &self.api_url,
            Secret::new(API_TOKEN),
        );
        c.slack_api_url = format!("{}/api/", self.slack_url);
        c.response_url_prefixes = vec![format!("{}/respond/", self.slack_url)];
        c.max_body_bytes = 16 * 1024;
        c.allowed_teams = vec!["T0001".into()];
        c
    }

    /// The bot, served; returns it and its URL.
    async fn bot(&self, config: Config) -> (Bot, String) {
        let bot = Bot::new(config).unwrap();
        let url = serve(bot.router()).await;
        (bot, url)
    }

    /// A bot on the default configuration that has posted a request opened for `id` moving to
    /// `tag`, needing `required` votes: the bot, its URL and the request.
    async fn bot_with_posted(
        &self,
        id: &str,
        tag: &str,
        required: u32,
    ) -> (Bot, String, ApprovalRequest) {
        let (bot, url) = self.bot(self.config()).await;
        let request = self.open(id, tag, required).await;
        bot.poll_once().await.unwrap();
        (bot, url, request)
    }

    async fn open(&self, id: &str, tag: &str, required: u32) -> ApprovalRequest {
        self.approvals
            .request(&web_plan(id, tag), None, required, None, None)
            .await
            .unwrap()
    }

    async fn stored(&self, id: &str) -> Option<ApprovalRequest> {
        self.approvals.get(id).await.unwrap()
    }

    async fn votes_in_audit(&self) -> usize {
        audited(&self.approvals, AuditAction::Voted).await
    }

    /// Sends `body` to the bot as Slack does, signed at `timestamp` with `secret`.
    /// A form post of `body` to `url`, signed with `secret` at `timestamp`.
    fn signed(
        &self,
        url: &str,
        body: &str,
        timestamp: i64,
        secret: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header(
                "x-slack-signature",
                slack_signature(secret, timestamp, body),
            )
            .body(body.to_owned())
    }

    async fn send(&self, url: &str, body: &str, timestamp: i64, secret: &str) -> reqwest::Response {
        self.signed(url, body, timestamp, secret)
            .send()
            .await
            .unwrap()
    }

    /// Posts the signed interaction `body` to the bot at `bot_url`, which acknowledges it.
    async fn interact(&self, bot_url: &str, body: &str) {
        let interactions = format!("{bot_url}/slack/interactions");
        let resp = self.send(&interactions, body, now(), SIGNING_SECRET).await;
        assert_eq!(resp.status(), 200);
    }

    /// The body of the `n`th answer (counting from 1) through the response URL of clicks.
    async fn click_answer(&self, n: usize) -> Value {
        self.slack.wait_for("respond/click", n).await[n - 1]
            .body
            .clone()
    }

    /// Posts the click `body` to the bot at `bot_url`; the `n`th answer to clicks.
    async fn answer_to_click(&self, bot_url: &str, body: &str, n: usize) -> Value {
        self.interact(bot_url, body).await;
        self.click_answer(n).await
    }

    async fn command(&self, bot_url: &str, user: &str, text: &str) -> (u16, Value) {
        self.command_in(bot_url, "T0001", user, text).await
    }

    /// A slash command from `user` of Slack team `team`.
    async fn command_in(&self, bot_url: &str, team: &str, user: &str, text: &str) -> (u16, Value) {
        let body = command_body_in(team, user, text, &self.slack_url);
        let resp = self
            .send(
                &format!("{bot_url}/slack/commands"),
                &body,
                now(),
                SIGNING_SECRET,
            )
            .await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// Slack's signature, computed here independently of the bot: `v0=` hex HMAC-SHA256 of
/// `v0:<timestamp>:<body>`.
fn slack_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let message = format!("v0:{timestamp}:{body}");
    format!(
        "v0={}",
        hmac_sha256_hex(secret.as_bytes(), message.as_bytes())
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn command_body(user: &str, text: &str, slack_url: &str) -> String {
    command_body_in("T0001", user, text, slack_url)
}

fn command_body_in(team: &str, user: &str, text: &str, slack_url: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", team),
        ("team_domain", "acme"),
        ("channel_id", "C0KEELAPP"),
        ("channel_name", "deploys"),
        ("user_id", user),
        ("user_name", &user.to_lowercase()),
        ("command", "/keel"),
        ("text", text),
        ("response_url", &format!("{slack_url}/respond/cmd")),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
    .unwrap()
}

fn click_body(user: &str, action_id: &str, id: &str, ts: &str, slack_url: &str) -> String {
    click_body_in("T0001", user, action_id, id, ts, slack_url)
}

fn click_body_in(
    team: &str,
    user: &str,
    action_id: &str,
    id: &str,
    ts: &str,
    slack_url: &str,
) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": team},
        "api_app_id": "A0KEEL",
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0KEELAPP", "is_ephemeral": false},
        "channel": {"id": "C0KEELAPP", "name": "deploys"},
        "message": {"type": "message", "ts": ts, "text": "Approval needed"},
        "response_url": format!("{slack_url}/respond/click"),
        "actions": [{
            "type": "button",
            "action_id": action_id,
            "block_id": format!("keel_approval_{id}"),
            "value": id,
            "action_ts": "1700000001.000200",
        }],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

fn has_buttons(blocks: &Value, id: &str) -> bool {
    blocks.as_array().unwrap().iter().any(|b| {
        b["type"] == "actions"
            && b["elements"][0]["action_id"] == "keel_approve"
            && b["elements"][0]["value"] == id
            && b["elements"][1]["action_id"] == "keel_reject"
            && b["elements"][1]["value"] == id
    })
}

#[tokio::test]
async fn posts_each_pending_request_once_with_buttons() {
    let w = world().await;
    let (bot, _) = w.bot(w.config()).await;
    let a = w.open("web", "1.1.0", 2).await;

    let report = bot.poll_once().await.unwrap();
    assert_eq!((report.posted, report.failed), (1, 0));
    let posts = w.slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(
        post.authorization.as_deref(),
        Some(&*format!("Bearer {BOT_TOKEN}"))
    );
    assert_eq!(post.body["channel"], "#deploys");
    assert!(post.body["text"].as_str().unwrap().contains(&a.id));
    assert!(has_buttons(&post.body["blocks"], &a.id), "{}", post.body);
    let section = post.body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("ghcr.io/acme/web:1.1.0") && section.contains("0/2"),
        "{section}"
    );

    // Nothing new: nothing posted.
    assert_eq!(
        bot.poll_once().await.unwrap(),
        keel_bot::PollReport::default()
    );
    let b = w.open("api", "2.0.0", 1).await;
    let report = bot.poll_once().await.unwrap();
    assert_eq!(report.posted, 1);
    let posts = w.slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert!(has_buttons(&posts[1].body["blocks"], &b.id));
    let mut posted = bot.posted();
    posted.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(posted, expected);
}

#[tokio::test]
async fn the_poller_runs_on_its_own() {
    let w = world().await;
    let mut config = w.config();
    config.poll_interval = Duration::from_millis(30);
    let (bot, _) = w.bot(config).await;
    let poller = bot.spawn_poller();
    let a = w.open("web", "1.1.1", 1).await;
    let posts = w.slack.wait_for("chat.postMessage", 1).await;
    assert!(has_buttons(&posts[0].body["blocks"], &a.id));
    // Approved elsewhere: the poller marks the message decided, without buttons.
    w.approvals
        .vote(&a.id, "ops", VoteKind::Approve, None)
        .await
        .unwrap();
    let updates = w.slack.wait_for("chat.update", 1).await;
    // The fake Slack numbers messages by call count: the first post is message 1.
    assert_eq!(updates[0].body["ts"], "1700000000.000001");
    assert!(!has_buttons(&updates[0].body["blocks"], &a.id));
    assert!(text_of(&updates[0].body).starts_with("approved"));
    poller.abort();
    assert_eq!(w.slack.calls("chat.postMessage").len(), 1);
}

#[tokio::test]
async fn slash_commands_vote_as_the_slack_user() {
    let w = world().await;
    let (_bot, url, a) = w.bot_with_posted("web", "1.2.0", 2).await;

    let (status, reply) = w
        .command(
            &url,
            "U0ALICE",
            &format!("approve {} looks good to me", a.id),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["response_type"], "ephemeral");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("You approved") && text.contains("1/2"),
        "{text}"
    );
    let stored = w.stored(&a.id).await.unwrap();
    assert_eq!(stored.votes.len(), 1);
    assert_eq!(stored.votes[0].voter, "slack:T0001/U0ALICE");
    assert_eq!(stored.votes[0].comment.as_deref(), Some("looks good to me"));

    // The same Slack user again does not count twice.
    let (_, reply) = w
        .command(&url, "U0ALICE", &format!("approve {}", a.id))
        .await;
    assert!(reply["text"].as_str().unwrap().contains("1/2"), "{reply}");
    assert_eq!(w.stored(&a.id).await.unwrap().approvals(), 1);

    let (_, reply) = w.command(&url, "U0BOB", &format!("APPROVE {}", a.id)).await;
    assert!(
        reply["text"].as_str().unwrap().contains("now *approved*"),
        "{reply}"
    );
    assert_eq!(
        w.stored(&a.id).await.unwrap().state,
        ApprovalState::Approved
    );

    // The posted message is marked approved, without buttons.
    let updates = loop {
        let u = w.slack.wait_for("chat.update", 1).await;
        if u.iter()
            .any(|c| c.body["text"].as_str().unwrap().starts_with("approved"))
        {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let last = updates.last().unwrap();
    assert_eq!(last.body["channel"], "C0KEELAPP");
    assert!(!has_buttons(&last.body["blocks"], &a.id));
    let section = last.body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("<@U0ALICE>") && section.contains("<@U0BOB>"),
        "{section}"
    );
    assert_eq!(last.body["ts"], "1700000000.000001");

    // Decided: a late reject is refused with a reason.
    let (_, reply) = w
        .command(&url, "U0CAROL", &format!("reject {} too late", a.id))
        .await;
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("closed") && text.contains("approved"),
        "{text}"
    );
    assert_eq!(w.stored(&a.id).await.unwrap().votes.len(), 2);
}

#[tokio::test]
async fn button_clicks_vote_and_update_the_message() {
    let w = world().await;
    let (bot, url, a) = w.bot_with_posted("web", "1.3.0", 2).await;
    // The fake Slack numbers messages by call count.
    let ts = "1700000000.000001";

    let body = click_body("U0BOB", "keel_reject", &a.id, ts, &w.slack_url);
    w.interact(&url, &body).await;
    let stored = w.stored(&a.id).await.unwrap();
    assert_eq!(stored.state, ApprovalState::Rejected);
    assert_eq!(stored.votes[0].voter, "slack:T0001/U0BOB");
    assert_eq!(stored.votes[0].kind, VoteKind::Reject);

    let updates = w.slack.wait_for("chat.update", 1).await;
    assert_eq!(updates[0].body["ts"], ts);
    assert_eq!(updates[0].body["channel"], "C0KEELAPP");
    assert!(!has_buttons(&updates[0].body["blocks"], &a.id));
    assert!(text_of(&updates[0].body).starts_with("rejected"));
    let replies = w.slack.wait_for("respond/click", 1).await;
    assert_eq!(replies[0].body["response_type"], "ephemeral");
    assert!(text_of(&replies[0].body).contains("You rejected"));
    // Decided: no longer followed, and a poll does not post it again.
    assert!(bot.posted().is_empty());
    assert_eq!(bot.poll_once().await.unwrap().posted, 0);

    // An approve click on an unknown request gets a helpful answer, and votes nothing.
    let body = click_body(
        "U0BOB",
        "keel_approve",
        "ffffffffffffffff",
        ts,
        &w.slack_url,
    );
    let answer = w.answer_to_click(&url, &body, 2).await;
    assert!(
        text_of(&answer).contains("no approval request `ffffffffffffffff`"),
        "{answer}"
    );

    // Other interaction types are acknowledged and ignored.
    let other = serde_urlencoded::to_string([(
        "payload",
        json!({"type": "view_submission", "user": {"id": "U0BOB"}}).to_string(),
    )])
    .unwrap();
    w.interact(&url, &other).await;
}

#[tokio::test]
async fn forged_stale_and_replayed_requests_are_refused() {
    let w = world().await;
    let (_bot, url) = w.bot(w.config()).await;
    let a = w.open("web", "1.4.0", 3).await;
    let commands = format!("{url}/slack/commands");
    let interactions = format!("{url}/slack/interactions");
    let body = command_body("U0MALLORY", &format!("approve {}", a.id), &w.slack_url);

    let click = click_body("U0MALLORY", "keel_approve", &a.id, "1.2", &w.slack_url);
    let ts = now();
    let other = command_body("U0MALLORY", "list", &w.slack_url);
    let stale = now() - 6 * 60;
    let future = now() + 6 * 60;
    let wrong_secret = "not-the-signing-secret";
    let refused = [
        (
            "a command signed with another secret",
            w.signed(&commands, &body, now(), wrong_secret),
            None,
        ),
        (
            "a click signed with another secret",
            w.signed(&interactions, &click, now(), wrong_secret),
            None,
        ),
        (
            "a genuine signature over another body",
            w.http
                .post(&commands)
                .header("x-slack-request-timestamp", ts.to_string())
                .header(
                    "x-slack-signature",
                    slack_signature(SIGNING_SECRET, ts, &other),
                )
                .body(body.clone()),
            None,
        ),
        (
            "no signature at all",
            w.http.post(&commands).body(body.clone()),
            None,
        ),
        // Correctly signed, but old or from the future.
        (
            "an old command",
            w.signed(&commands, &body, stale, SIGNING_SECRET),
            Some("old"),
        ),
        (
            "an old click",
            w.signed(&interactions, &click, stale, SIGNING_SECRET),
            None,
        ),
        (
            "a command from the future",
            w.signed(&commands, &body, future, SIGNING_SECRET),
            None,
        ),
    ];
    for (name, request, reason) in refused {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{name}");
        if let Some(reason) = reason {
            let answer: Value = resp.json().await.unwrap();
            assert!(
                answer["reason"].as_str().unwrap().contains(reason),
                "{name}: {answer}"
            );
        }
    }

    assert!(w.stored(&a.id).await.unwrap().votes.is_empty());
    assert_eq!(w.votes_in_audit().await, 0);

    // A genuine request counts once; the same bytes sent again are refused.
    let ts = now();
    let signature = slack_signature(SIGNING_SECRET, ts, &body);
    for expected in [200, 401] {
        let resp = w
            .http
            .post(&commands)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
    assert_eq!(w.votes_in_audit().await, 1);
    assert_eq!(
        w.stored(&a.id).await.unwrap().votes[0].voter,
        "slack:T0001/U0MALLORY"
    );

    // Bodies over the limit are refused before anything is read into a vote.
    let huge = format!("{body}&pad={}", "x".repeat(20 * 1024));
    let resp = w.send(&commands, &huge, now(), SIGNING_SECRET).await;
    assert_eq!(resp.status(), 413);

    // The health check needs no signature.
    let health = w.http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn list_help_and_unknown_ids() {
    let w = world().await;
    let (_bot, url) = w.bot(w.config()).await;
    let a = w.open("web", "1.5.0", 1).await;
    let b = w.open("worker", "3.1.0", 1).await;
    w.approvals
        .vote(&b.id, "ops", VoteKind::Approve, None)
        .await
        .unwrap();

    let (status, reply) = w.command(&url, "U0ALICE", "list").await;
    assert_eq!(status, 200);
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("1 request(s)") && text.contains(&a.id),
        "{text}"
    );
    assert!(
        !text.contains(&b.id),
        "decided requests are not listed: {text}"
    );

    let (_, reply) = w.command(&url, "U0ALICE", "approve ffffffffffffffff").await;
    let text = reply["text"].as_str().unwrap();
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        text.contains("no approval request `ffffffffffffffff`") && text.contains("/keel list"),
        "{text}"
    );
    // Bad commands are answered with what went wrong and how to do it right.
    for (command, needles) in [
        ("reject not$an$id", ["That did not work", "letters, digits"]),
        ("frobnicate now", ["I don't know `frobnicate`", "Usage"]),
    ] {
        let (_, reply) = w.command(&url, "U0ALICE", command).await;
        let text = text_of(&reply);
        assert!(
            needles.iter().all(|n| text.contains(n)),
            "{command}: {text}"
        );
    }
    let (_, reply) = w.command(&url, "U0ALICE", "approve").await;
    assert!(text_of(&reply).starts_with("Which request?"));
    let (_, reply) = w.command(&url, "U0ALICE", "").await;
    assert!(reply["text"].as_str().unwrap().starts_with("Usage"));

    // Slack's check of the command URL gets an empty 200.
    let resp = w
        .send(
            &format!("{url}/slack/commands"),
            "ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO",
            now(),
            SIGNING_SECRET,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().is_empty());

    assert!(w.stored(&a.id).await.unwrap().votes.is_empty());
}

#[tokio::test]
async fn a_restart_with_the_state_file_does_not_post_again() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = w.config();
    config.state_file = Some(dir.path().join("keel-bot.json"));
    let a = w.open("web", "1.6.0", 1).await;

    let (first, _) = w.bot(config.clone()).await;
    assert_eq!(first.poll_once().await.unwrap().posted, 1);
    drop(first);

    let (second, _) = w.bot(config.clone()).await;
    assert_eq!(second.posted(), vec![a.id.clone()]);
    assert_eq!(second.poll_once().await.unwrap().posted, 0);
    assert_eq!(w.slack.calls("chat.postMessage").len(), 1);

    // It still updates the message the first one posted.
    w.approvals
        .vote(&a.id, "ops", VoteKind::Approve, None)
        .await
        .unwrap();
    let report = second.poll_once().await.unwrap();
    assert_eq!(report.updated, 1);
    let update = &w.slack.calls("chat.update")[0];
    assert_eq!(update.body["ts"], "1700000000.000001");
    assert!(second.posted().is_empty());

    // Without a state file a restart posts pending requests again (documented).
    let b = w.open("api", "2.1.0", 1).await;
    let (third, _) = w.bot(config.clone()).await;
    assert_eq!(third.poll_once().await.unwrap().posted, 1);
    let (stateless, _) = w.bot(w.config()).await;
    assert_eq!(stateless.poll_once().await.unwrap().posted, 1);
    let posts = w.slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 3);
    assert!(
        posts[1..]
            .iter()
            .all(|p| has_buttons(&p.body["blocks"], &b.id))
    );
}

#[tokio::test]
async fn deleted_requests_are_marked_and_slack_errors_are_retried() {
    let w = world().await;
    let mut config = w.config();
    config.slack_bot_token = Secret::new("xoxb-a-token-slack-does-not-know");
    let (wrong_token, _) = w.bot(config).await;
    let a = w.open("web", "1.7.0", 1).await;
    let report = wrong_token.poll_once().await.unwrap();
    assert_eq!((report.posted, report.failed), (0, 1));
    assert!(wrong_token.posted().is_empty());

    let (bot, _) = w.bot(w.config()).await;
    assert_eq!(bot.poll_once().await.unwrap().posted, 1);
    w.approvals.delete(&a.id, "ops").await.unwrap();
    assert_eq!(bot.poll_once().await.unwrap().updated, 1);
    let update = w.slack.calls("chat.update").pop().unwrap();
    assert!(update.body["text"].as_str().unwrap().contains("deleted"));
    assert!(bot.posted().is_empty());
}

#[tokio::test]
async fn users_and_teams_off_the_allow_list_are_refused_before_the_api() {
    let w = world().await;
    let mut config = w.config();
    config.allowed_users = vec!["U0ALICE".into(), "U0BOB".into()];
    let (bot, url) = w.bot(config).await;
    let a = w.open("web", "1.8.0", 2).await;
    bot.poll_once().await.unwrap();

    // Another team (which the API server would accept), and a user of the team not listed:
    // an ephemeral refusal naming them, and no vote.
    for (team, user) in [("T0002", "U0ALICE"), ("T0001", "U0EVE")] {
        for text in [format!("approve {}", a.id), "list".to_owned()] {
            let (status, reply) = w.command_in(&url, team, user, &text).await;
            assert_eq!(status, 200, "{reply}");
            assert_eq!(reply["response_type"], "ephemeral");
            let said = reply["text"].as_str().unwrap();
            assert!(
                said.contains("not on this bot's list of approvers")
                    && said.contains(team)
                    && said.contains(user),
                "{said}"
            );
        }
    }
    // Help is for everyone.
    let (_, reply) = w.command_in(&url, "T0002", "U0EVE", "help").await;
    assert!(
        reply["text"].as_str().unwrap().contains("/keel approve"),
        "{reply}"
    );

    // A button click from outside the list: refused through the response URL.
    let click = click_body_in(
        "T0002",
        "U0EVE",
        "keel_approve",
        &a.id,
        "1700000000.000001",
        &w.slack_url,
    );
    let answer = w.answer_to_click(&url, &click, 1).await;
    assert!(
        text_of(&answer).contains("not on this bot's list"),
        "{answer:?}"
    );
    assert!(w.stored(&a.id).await.unwrap().votes.is_empty());
    assert_eq!(w.votes_in_audit().await, 0);

    // A listed user votes as team/user.
    let (_, reply) = w
        .command(&url, "U0ALICE", &format!("approve {}", a.id))
        .await;
    assert!(
        reply["text"].as_str().unwrap().contains("You approved"),
        "{reply}"
    );
    assert_eq!(
        w.stored(&a.id).await.unwrap().votes[0].voter,
        "slack:T0001/U0ALICE"
    );
}

#[tokio::test]
async fn a_voter_the_api_does_not_accept_is_told_why() {
    let w = world().await;
    // The bot admits T0003, the API server does not.
    let mut config = w.config();
    config.allowed_teams = vec!["T0003".into()];
    let (_bot, url) = w.bot(config).await;
    let a = w.open("web", "1.9.0", 1).await;
    let (_, reply) = w
        .command_in(&url, "T0003", "U0ALICE", &format!("approve {}", a.id))
        .await;
    let said = reply["text"].as_str().unwrap();
    assert!(said.contains("T0003/U0ALICE"), "{said}");
    assert!(w.stored(&a.id).await.unwrap().votes.is_empty());
}

#[tokio::test]
async fn an_endless_answer_from_slack_is_refused_not_read_to_the_end() {
    // A Web API that answers 200 with a body that never ends.
    let endless = || async {
        let chunks =
            futures::stream::repeat_with(|| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
        axum::response::Response::new(axum::body::Body::from_stream(chunks))
    };
    let url = serve(Router::new().route("/api/{method}", post(endless))).await;
    let client =
        keel_bot::slack::SlackClient::new(&format!("{url}/api/"), Secret::new(BOT_TOKEN)).unwrap();
    let err = client
        .post_message("#deploys", "hello", &json!([]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than the 1048576-byte limit"), "{err}");
}
