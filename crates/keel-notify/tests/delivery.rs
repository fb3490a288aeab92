//! Timeouts, retries, rate limits, the level filter and secrets, against real receivers.

mod support;

use std::time::Duration;

use keel_core::{Error, EventKind, Notifier};
use keel_notify::{Discord, Level, RetryPolicy, SlackBot, SlackWebhook, Teams, Webhook};
use keel_testsupport::receiver::{Receiver, Reply, refused_url};
use serde_json::json;
use support::{event, failure};
use tokio::time::Instant;

fn fast_retry() -> RetryPolicy {
    RetryPolicy::new()
        .with_max_attempts(4)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .with_max_elapsed(Duration::from_secs(10))
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_delivery_id_until_it_succeeds() {
    let rx = Receiver::start(
        vec![Reply::status(500, "boom"), Reply::status(503, "busy")],
        Reply::status(204, ""),
    )
    .await;
    let hook = Webhook::builder(rx.url("/h"))
        .with_secret("k")
        .with_retry(fast_retry())
        .build()
        .unwrap();
    hook.notify(&event(EventKind::UpdateApplied)).await.unwrap();
    let requests = rx.requests();
    assert_eq!(requests.len(), 3);
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.header("x-keel-delivery").unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // Backoff with full jitter: at most 20 ms, then 40 ms (plus the time of a request on a
    // busy machine).
    let slack = Duration::from_millis(500);
    assert!(requests[1].at - requests[0].at <= Duration::from_millis(20) + slack);
    assert!(requests[2].at - requests[1].at <= Duration::from_millis(40) + slack);
}

#[tokio::test]
async fn retries_give_up_after_the_last_attempt_with_the_status() {
    let rx = Receiver::always(Reply::status(502, "bad gateway from upstream")).await;
    let slack = SlackWebhook::builder(rx.url("/s"))
        .with_retry(fast_retry().with_max_attempts(3))
        .build()
        .unwrap();
    let err = failure(&slack).await;
    assert_eq!(rx.requests().len(), 3);
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 502 Bad Gateway: bad gateway from upstream"),
        "{msg}"
    );
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(
        msg.starts_with(
            "slack webhook failed to deliver the update applied event for prod/default/web"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn a_400_is_not_retried_and_quotes_the_body() {
    let rx = Receiver::always(Reply::status(400, "invalid_payload\n")).await;
    let slack = SlackWebhook::builder(rx.url("/s"))
        .with_retry(fast_retry())
        .build()
        .unwrap();
    let err = failure(&slack).await;
    assert_eq!(rx.requests().len(), 1);
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .ends_with("HTTP 400 Bad Request: invalid_payload"),
        "{err}"
    );

    let rx = Receiver::always(Reply::status(403, "action_prohibited")).await;
    let slack = SlackWebhook::builder(rx.url("/s")).build().unwrap();
    let err = failure(&slack).await;
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("action_prohibited"));
    assert_eq!(rx.requests().len(), 1);
}

/// A Teams notifier to `url` that retries fast.
fn fast_teams(url: String) -> Box<dyn Notifier> {
    Box::new(
        Teams::builder(url)
            .with_retry(fast_retry())
            .build()
            .unwrap(),
    )
}

/// A Discord notifier to `url` that retries fast.
fn fast_discord(url: String) -> Box<dyn Notifier> {
    Box::new(
        Discord::builder(url)
            .with_retry(fast_retry())
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_429_sets_the_wait_from_its_retry_after() {
    type Build = fn(String) -> Box<dyn Notifier>;
    // Name, the 429's headers and body, the status after it, the notifier, and the least and
    // the most milliseconds the retry waits.
    type Case = (
        &'static str,
        Vec<(&'static str, String)>,
        String,
        u16,
        Build,
        u64,
        u64,
    );
    let cases: [Case; 2] = [
        (
            "teams, a Retry-After header",
            vec![("retry-after", "1".into())],
            String::new(),
            202,
            fast_teams,
            950,
            3000,
        ),
        // The precise JSON value wins over the rounded header.
        (
            "discord, retry_after in the JSON body",
            vec![
                ("content-type", "application/json".into()),
                ("retry-after", "5".into()),
            ],
            json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false})
                .to_string(),
            204,
            fast_discord,
            280,
            2000,
        ),
    ];
    for (name, headers, body, then, build, least, most) in cases {
        let rx = Receiver::start(
            vec![Reply::Answer(429, headers, body)],
            Reply::status(then, ""),
        )
        .await;
        let notifier = build(rx.url("/n"));
        notifier
            .notify(&event(EventKind::UpdateApplied))
            .await
            .unwrap();
        let requests = rx.requests();
        assert_eq!(requests.len(), 2, "{name}");
        let waited = requests[1].at - requests[0].at;
        assert!(waited >= Duration::from_millis(least), "{name}: {waited:?}");
        assert!(waited < Duration::from_millis(most), "{name}: {waited:?}");
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_at_once_as_rate_limited() {
    let rx = Receiver::always(Reply::Answer(
        429,
        vec![("retry-after", "120".into())],
        String::new(),
    ))
    .await;
    let hook = Webhook::builder(rx.url("/h"))
        .with_retry(fast_retry())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = failure(&hook).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("via webhook 127.0.0.1"), "{err}");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_within_the_bound() {
    let rx = Receiver::always(Reply::Hang).await;
    let hook = Webhook::builder(rx.url("/h"))
        .with_timeout(Duration::from_millis(200))
        .with_retry(fast_retry().with_max_attempts(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = failure(&hook).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(rx.wait_for(2).await.len(), 2);
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("no answer within 0.2s"), "{msg}");
    assert!(msg.contains("gave up after 2 attempts"), "{msg}");
}

#[tokio::test]
async fn the_total_budget_cuts_attempts_short() {
    let rx = Receiver::always(Reply::Hang).await;
    let hook = Webhook::builder(rx.url("/h"))
        .with_timeout(Duration::from_secs(10))
        .with_retry(fast_retry().with_max_elapsed(Duration::from_millis(300)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = failure(&hook).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert!(err.to_string().contains("no answer within 0.3s"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_hides_the_url() {
    let url = refused_url("/services/T0/B0/hook-secret-42").await;
    let slack = SlackWebhook::builder(url)
        .with_retry(fast_retry().with_max_attempts(2))
        .build()
        .unwrap();
    let err = failure(&slack).await;
    assert!(err.is_retryable());
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("could not connect"), "{shown}");
    assert!(!shown.contains("hook-secret-42"), "{shown}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        assert!(!cause.to_string().contains("hook-secret-42"), "{cause}");
        source = cause.source();
    }
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let rx = Receiver::always(Reply::status(401, "who are you")).await;
    let bot_builder = SlackBot::builder("xoxb-very-secret")
        .with_channel("#a")
        .with_api_base(rx.url("/api"));
    assert!(!format!("{bot_builder:?}").contains("very-secret"));
    let bot = bot_builder.build().unwrap();
    let err = failure(&bot).await;
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    for shown in [format!("{bot:?}"), err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("very-secret"), "{shown}");
    }
    // The token did go where it belongs.
    assert_eq!(
        rx.requests()[0].header("authorization"),
        Some("Bearer xoxb-very-secret")
    );

    let hook_builder = Webhook::builder(rx.url("/h?token=url-secret"))
        .with_secret("hmac-secret")
        .with_header("X-Api-Key", "header-secret");
    let hook = hook_builder.clone().build().unwrap();
    let err = failure(&hook).await;
    for shown in [
        format!("{hook_builder:?}"),
        format!("{hook:?}"),
        err.to_string(),
        format!("{err:?}"),
    ] {
        for secret in ["url-secret", "hmac-secret", "header-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert!(format!("{hook:?}").contains("x-api-key"));

    let err = Discord::builder("discord.com/api/webhooks/1/url-secret")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(!err.to_string().contains("url-secret"), "{err}");
    let err = Webhook::builder("http://x/h")
        .with_header("X-Key", "bad\nheader-secret")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("X-Key"), "{err}");
    assert!(!err.to_string().contains("header-secret"), "{err}");
}

#[tokio::test]
async fn builders_reject_bad_settings() {
    let err = SlackBot::builder("")
        .with_channel("#a")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("token is empty"), "{err}");
    let err = SlackBot::builder("xoxb-1").build().unwrap_err();
    assert!(err.to_string().contains("at least one channel"), "{err}");
    let err = SlackBot::builder("xoxb-1")
        .with_channel("#")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("channel name is empty"), "{err}");
    let err = Webhook::builder("http://x/h")
        .with_secret("")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("secret is empty"), "{err}");
    let err = Webhook::builder("http://x/h")
        .with_header("X-Keel-Signature-256", "forged")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("sets this header itself"), "{err}");
    let err = Teams::builder("mailto:ops@example.com")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("not http or https"), "{err}");
}

#[tokio::test]
async fn the_level_filter_holds_back_lower_events() {
    let rx = Receiver::always(Reply::ok()).await;
    let slack = SlackWebhook::builder(rx.url("/s"))
        .with_level(Level::Warn)
        .build()
        .unwrap();
    for kind in [
        EventKind::UpdatePlanned,
        EventKind::UpdateApplied,
        EventKind::ApprovalRequested,
        EventKind::Approved,
    ] {
        slack.notify(&event(kind)).await.unwrap();
    }
    assert!(rx.requests().is_empty());
    for kind in [
        EventKind::Rejected,
        EventKind::Expired,
        EventKind::UpdateFailed,
    ] {
        slack.notify(&event(kind)).await.unwrap();
    }
    let titles: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| {
            r.json()["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(titles, ["*Rejected*", "*Expired*", "*Update failed*"]);

    // The default level, info, lets every built-in event through.
    let rx = Receiver::always(Reply::ok()).await;
    let slack = SlackWebhook::builder(rx.url("/s")).build().unwrap();
    slack
        .notify(&event(EventKind::UpdatePlanned))
        .await
        .unwrap();
    assert_eq!(rx.requests().len(), 1);
}
