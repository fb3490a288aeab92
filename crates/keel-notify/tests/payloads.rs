//! The exact JSON each notifier sends, checked on a real HTTP receiver.

mod support;

use chrono::{TimeZone, Utc};
use keel_core::{ApprovalInfo, Error, EventKind, Notifier};
use keel_notify::webhook::WebhookPayload;
use keel_notify::{
    Discord, Mattermost, RetryPolicy, SlackBot, SlackWebhook, Teams, Templates, Webhook,
};
use keel_testsupport::hmac_sha256_hex;
use keel_testsupport::receiver::{Receiver, Reply};
use serde_json::{Value, json};
use support::{approval, event, failure};

const NOTES: &str = "https://nginx.org/en/CHANGES";

/// The picture a chat message may say it is from.
const PICTURE: &str = "https://example.com/keel.png";

/// The first blocks of every Slack message: `title` in bold over `text`, then the `context`
/// line (level, workload and time).
fn slack_blocks(title: &str, text: &str, context: &str) -> Vec<Value> {
    vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{title}*\n{text}")}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}),
    ]
}

/// Templates with `source` for the events of `kind`.
fn one_template(kind: EventKind, source: &str) -> Templates {
    Templates::new().with_source(kind, source).unwrap()
}

#[tokio::test]
async fn slack_webhook_sends_block_kit_with_release_notes() {
    let rx = Receiver::always(Reply::ok()).await;
    let slack = SlackWebhook::builder(rx.url("/services/T0/B0/secret"))
        .build()
        .unwrap();
    let e = event(EventKind::UpdateApplied).with_release_notes(Some(NOTES.into()));
    slack.notify(&e).await.unwrap();

    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/services/T0/B0/secret");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("user-agent").unwrap().starts_with("keel-rs/"));
    let text = "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0). \
                Release notes: https://nginx.org/en/CHANGES";
    assert_eq!(
        r.json(),
        json!({
            "text": format!("Update applied: {text}"),
            "blocks": slack_blocks(
                "Update applied",
                text,
                "success · prod/default/web · 2024-05-01T12:00:00Z"
            ),
        })
    );
}

#[tokio::test]
async fn slack_escapes_markup_in_values_but_not_in_templates() {
    let rx = Receiver::always(Reply::ok()).await;
    let templates = one_template(
        EventKind::UpdateFailed,
        "<{{release_notes}}|notes> {{message}}",
    );
    let slack = SlackWebhook::builder(rx.url("/hook"))
        .with_templates(templates)
        .build()
        .unwrap();
    let mut e = event(EventKind::UpdateFailed).with_release_notes(Some(NOTES.into()));
    e.message = "<!channel> a & b".into();
    slack.notify(&e).await.unwrap();
    let body = rx.requests()[0].json();
    assert_eq!(
        body["text"],
        "Update failed: <https://nginx.org/en/CHANGES|notes> &lt;!channel&gt; a &amp; b"
    );
}

#[tokio::test]
async fn slack_bot_posts_once_per_channel_with_approval_buttons() {
    let rx = Receiver::always(Reply::json(200, json!({"ok": true, "ts": "1.2"}))).await;
    let bot = SlackBot::builder("xoxb-test-token")
        .with_channel("#deploys")
        .with_api_base(rx.url("/api/"))
        .build()
        .unwrap();
    let e = event(EventKind::ApprovalRequested)
        .with_approval(approval())
        .with_channels(vec!["#ops".into(), "deploys".into()]);
    bot.notify(&e).await.unwrap();

    let mut requests = rx.requests();
    assert_eq!(requests.len(), 2, "#deploys once, #ops once");
    requests.sort_by_key(|r| r.json()["channel"].as_str().unwrap().to_owned());
    let text = "Update of prod/default/web from nginx:1.25.0 to nginx:1.25.1 needs approval: \
                0/2 so far. Approve with `/keel approve a1b2` before 2024-05-02T12:00:00Z.";
    let context = "info · prod/default/web · 2024-05-01T12:00:00Z";
    let mut blocks = slack_blocks("Approval requested", text, context);
    blocks.push(json!(
        {"type": "actions", "block_id": "keel_approval", "elements": [
            {"type": "button", "action_id": "keel_approve", "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}, "value": "a1b2"},
            {"type": "button", "action_id": "keel_reject", "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}, "value": "a1b2"},
        ]}
    ));
    for (r, channel) in requests.iter().zip(["#deploys", "#ops"]) {
        assert_eq!(r.uri, "/api/chat.postMessage");
        assert_eq!(r.header("authorization"), Some("Bearer xoxb-test-token"));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            r.json(),
            json!({
                "channel": channel,
                "unfurl_links": false,
                "text": format!("Approval requested: {text}"),
                "blocks": blocks,
            })
        );
    }
}

/// A Slack bot posting to `channels` of a Web API that answers every call with
/// `{"ok": false, "error": CODE}`; the API and the error of delivering an event.
async fn slack_refusing(code: &str, channels: &[&str]) -> (Receiver, Error) {
    let rx = Receiver::always(Reply::json(200, json!({"ok": false, "error": code}))).await;
    let bot = SlackBot::builder("xoxb-t")
        .with_channels(channels.iter().copied())
        .with_api_base(rx.url("/api"))
        .build()
        .unwrap();
    let err = failure(&bot).await;
    (rx, err)
}

#[tokio::test]
async fn slack_ok_false_is_a_failure_mapped_by_code() {
    let (rx, err) = slack_refusing("channel_not_found", &["#nowhere"]).await;
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("Slack said `channel_not_found`"), "{msg}");
    assert!(msg.contains("to #nowhere"), "{msg}");
    assert!(msg.starts_with("slack bot #nowhere failed"), "{msg}");
    assert_eq!(rx.requests().len(), 1, "a permanent error is not retried");

    let (_, err) = slack_refusing("invalid_auth", &["C0123"]).await;
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid_auth"));
}

#[tokio::test]
async fn slack_bot_reports_every_failed_channel() {
    let (_, err) = slack_refusing("not_in_channel", &["#a", "#b"]).await;
    let err = err.to_string();
    assert!(err.contains("2 channels failed"), "{err}");
    assert!(err.contains("#a: ") && err.contains("#b: "), "{err}");
}

#[tokio::test]
async fn slack_internal_error_is_retried() {
    let rx = Receiver::start(
        vec![Reply::json(
            200,
            json!({"ok": false, "error": "internal_error"}),
        )],
        Reply::json(200, json!({"ok": true})),
    )
    .await;
    let bot = SlackBot::builder("xoxb-t")
        .with_channel("#a")
        .with_api_base(rx.url("/api"))
        .with_retry(fast_retry())
        .build()
        .unwrap();
    bot.notify(&event(EventKind::UpdateApplied)).await.unwrap();
    assert_eq!(rx.requests().len(), 2);
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::new().with_backoff(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(50),
    )
}

#[tokio::test]
async fn mattermost_sends_a_coloured_attachment_per_channel() {
    let rx = Receiver::always(Reply::ok()).await;
    let mm = Mattermost::builder(rx.url("/hooks/abc"))
        .with_username("keel")
        .with_icon_url(PICTURE)
        .with_channel("deploys")
        .build()
        .unwrap();
    let e = event(EventKind::UpdateFailed)
        .with_release_notes(Some(NOTES.into()))
        .with_channels(vec!["ops".into(), "deploys".into()]);
    let e = keel_core::Event {
        message: "image pull failed".into(),
        ..e
    };
    mm.notify(&e).await.unwrap();
    let mut requests = rx.requests();
    assert_eq!(requests.len(), 2);
    requests.sort_by_key(|r| r.json()["channel"].as_str().unwrap().to_owned());
    let text = "Update of prod/default/web from nginx:1.25.0 to nginx:1.25.1 failed: \
                image pull failed Release notes: https://nginx.org/en/CHANGES";
    for (r, channel) in requests.iter().zip(["deploys", "ops"]) {
        assert_eq!(r.uri, "/hooks/abc");
        assert_eq!(
            r.json(),
            json!({
                "channel": channel,
                "username": "keel",
                "icon_url": PICTURE,
                "attachments": [{
                    "fallback": format!("Update failed: {text}"),
                    "color": "#d40e0d",
                    "title": "Update failed",
                    "title_link": NOTES,
                    "text": text,
                    "footer": "prod/default/web · 2024-05-01T12:00:00Z",
                }]
            })
        );
    }

    // Without channels: one post to the webhook's own channel, no override.
    let rx = Receiver::always(Reply::ok()).await;
    let mm = Mattermost::builder(rx.url("/hooks/abc")).build().unwrap();
    mm.notify(&event(EventKind::Approved)).await.unwrap();
    let body = rx.requests()[0].json();
    for unset in ["channel", "username", "icon_url"] {
        assert!(body.get(unset).is_none(), "{unset}: {body}");
    }
    assert_eq!(body["attachments"][0]["color"], "#2eb886");
    assert!(body["attachments"][0].get("title_link").is_none());
}

#[tokio::test]
async fn teams_sends_an_adaptive_card() {
    let rx = Receiver::always(Reply::status(202, "")).await;
    let teams = Teams::builder(rx.url("/workflows/x/invoke?sig=secret"))
        .build()
        .unwrap();
    let e = event(EventKind::UpdateApplied).with_release_notes(Some(NOTES.into()));
    teams.notify(&e).await.unwrap();
    let r = &rx.requests()[0];
    assert_eq!(r.uri, "/workflows/x/invoke?sig=secret");
    assert_eq!(
        r.json(),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "Update applied", "weight": "Bolder",
                         "size": "Medium", "color": "Good", "wrap": true},
                        {"type": "TextBlock", "wrap": true, "text":
                            "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0). \
                             Release notes: https://nginx.org/en/CHANGES"},
                        {"type": "FactSet", "facts": [
                            {"title": "Target", "value": "prod"},
                            {"title": "Workload", "value": "default/web"},
                            {"title": "From", "value": "nginx:1.25.0"},
                            {"title": "To", "value": "nginx:1.25.1"},
                            {"title": "Time", "value": "2024-05-01T12:00:00Z"},
                        ]},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Release notes",
                                 "url": NOTES}],
                }
            }]
        })
    );
}

#[tokio::test]
async fn teams_connector_failure_with_status_200_is_a_failure() {
    let rx = Receiver::always(Reply::status(
        200,
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400",
    ))
    .await;
    let teams = Teams::builder(rx.url("/webhook/x")).build().unwrap();
    let err = teams.notify(&event(EventKind::Expired)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("HTTP error 400"), "{err}");
}

#[tokio::test]
async fn discord_sends_an_embed_without_mentions() {
    let rx = Receiver::always(Reply::status(204, "")).await;
    let discord = Discord::builder(rx.url("/api/webhooks/1/tok"))
        .with_username("keel")
        .with_avatar_url(PICTURE)
        .build()
        .unwrap();
    let e = event(EventKind::Rejected).with_release_notes(Some(NOTES.into()));
    let e = keel_core::Event {
        message: "@everyone not today".into(),
        ..e
    };
    discord.notify(&e).await.unwrap();
    assert_eq!(
        rx.requests()[0].json(),
        json!({
            "username": "keel",
            "avatar_url": PICTURE,
            "embeds": [{
                "title": "Rejected",
                "description": "Update of prod/default/web to nginx:1.25.1 rejected: \
                                @everyone not today. Release notes: https://nginx.org/en/CHANGES",
                "url": NOTES,
                "color": 0xdaa038,
                "timestamp": "2024-05-01T12:00:00Z",
                "footer": {"text": "prod/default/web"},
            }],
            "allowed_mentions": {"parse": []},
        })
    );
}

#[tokio::test]
async fn webhook_sends_the_versioned_payload_signed() {
    let rx = Receiver::always(Reply::status(204, "")).await;
    let hook = Webhook::builder(rx.url("/keel"))
        .with_secret("s3cret")
        .with_header("Authorization", "Bearer receiver-token")
        .build()
        .unwrap();
    let mut e = event(EventKind::ApprovalRequested)
        .with_release_notes(Some(NOTES.into()))
        .with_approval(ApprovalInfo {
            voters: vec!["ana".into()],
            approvals: 1,
            ..approval()
        })
        .with_channels(vec!["deploys".into()]);
    e.message = "needs 2 approval(s)".into();
    let before = Utc::now().timestamp();
    hook.notify(&e).await.unwrap();
    let after = Utc::now().timestamp();

    let r = &rx.requests()[0];
    assert_eq!(r.uri, "/keel");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer receiver-token"));
    assert_eq!(r.header("x-keel-event"), Some("approval-requested"));
    let delivery = r.header("x-keel-delivery").unwrap().to_owned();
    assert_eq!(delivery.len(), 32);

    // The signature, recomputed here from the raw body: HMAC-SHA256 of "<timestamp>.<body>".
    let timestamp = r.header("x-keel-timestamp").unwrap();
    let sent: i64 = timestamp.parse().unwrap();
    assert!(before <= sent && sent <= after);
    let hex = hmac_sha256_hex(
        b"s3cret",
        &[format!("{timestamp}.").as_bytes(), &r.body].concat(),
    );
    assert_eq!(
        r.header("x-keel-signature-256"),
        Some(format!("sha256={hex}").as_str())
    );
    keel_notify::webhook::verify_signature(
        b"s3cret",
        timestamp,
        r.header("x-keel-signature-256").unwrap(),
        &r.body,
        Utc::now(),
        std::time::Duration::from_secs(300),
    )
    .unwrap();

    assert_eq!(
        r.json(),
        json!({
            "version": "1",
            "deliveryId": delivery,
            "event": {
                "kind": "approval-requested",
                "level": "info",
                "title": "Approval requested",
                "text": "Update of prod/default/web from nginx:1.25.0 to nginx:1.25.1 needs \
                         approval: 1/2 so far. Approve with `/keel approve a1b2` before \
                         2024-05-02T12:00:00Z. Release notes: https://nginx.org/en/CHANGES",
                "message": "needs 2 approval(s)",
                "plan": {
                    "target": "prod",
                    "id": "default/web",
                    "current": "docker.io/library/nginx:1.25.0",
                    "new": "docker.io/library/nginx:1.25.1",
                },
                "time": "2024-05-01T12:00:00.000Z",
                "releaseNotes": NOTES,
                "approval": {
                    "id": "a1b2",
                    "required": 2,
                    "approvals": 1,
                    "voters": ["ana"],
                    "deadline": "2024-05-02T12:00:00.000Z",
                },
                "channels": ["deploys"],
            }
        })
    );
    let parsed: WebhookPayload = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(parsed.event.approval.unwrap().approvals, 1);
    assert_eq!(
        parsed.event.time,
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    );
}

#[tokio::test]
async fn unsigned_webhook_has_nulls_and_no_signature() {
    let rx = Receiver::always(Reply::status(200, "")).await;
    let hook = Webhook::builder(rx.url("/keel")).build().unwrap();
    assert!(!hook.is_signed());
    hook.notify(&event(EventKind::UpdatePlanned)).await.unwrap();
    let r = &rx.requests()[0];
    assert!(r.header("x-keel-signature-256").is_none());
    assert!(r.header("x-keel-timestamp").is_some());
    let body = r.json();
    assert_eq!(body["event"]["releaseNotes"], serde_json::Value::Null);
    assert_eq!(body["event"]["approval"], serde_json::Value::Null);
    assert_eq!(body["event"]["channels"], json!([]));
    assert_eq!(body["event"]["kind"], "update-planned");
    assert_eq!(
        body["event"]["text"],
        "Update of prod/default/web planned: nginx:1.25.0 → nginx:1.25.1."
    );
}

#[tokio::test]
async fn custom_templates_mention_release_notes_only_when_present() {
    let rx = Receiver::always(Reply::status(204, "")).await;
    let templates = one_template(
        EventKind::UpdateApplied,
        "{{image}} {{current_tag}} → {{new_tag}}{{#release_notes}}, notes: {{release_notes}}{{/release_notes}}{{^release_notes}}, no notes{{/release_notes}}",
    );
    let discord = Discord::builder(rx.url("/d"))
        .with_templates(templates)
        .build()
        .unwrap();
    discord
        .notify(&event(EventKind::UpdateApplied).with_release_notes(Some(NOTES.into())))
        .await
        .unwrap();
    discord
        .notify(&event(EventKind::UpdateApplied))
        .await
        .unwrap();
    let requests = rx.requests();
    assert_eq!(
        requests[0].json()["embeds"][0]["description"],
        "nginx 1.25.0 → 1.25.1, notes: https://nginx.org/en/CHANGES"
    );
    assert!(requests[0].json()["embeds"][0]["url"] == NOTES);
    assert_eq!(
        requests[1].json()["embeds"][0]["description"],
        "nginx 1.25.0 → 1.25.1, no notes"
    );
    assert!(requests[1].json()["embeds"][0].get("url").is_none());
}

#[test]
fn a_bad_template_fails_at_construction_naming_the_variable() {
    let err = Templates::new()
        .with_source(EventKind::UpdateApplied, "{{image}} now {{version}}")
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("unknown variable `version`"), "{msg}");
    assert!(msg.contains("{{version}}"), "{msg}");
}
