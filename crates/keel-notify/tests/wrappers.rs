//! `Queued` and `FanOut`, and the notifiers inside a real pipeline run.

mod support;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
use keel_core::{Error, Event, EventKind, Notifier, Pipeline};
use keel_notify::{FanOut, Queued, RetryPolicy, Webhook};
use keel_testsupport::receiver::{Receiver, Reply, refused_url};
use support::{event, failure};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A notifier that delivers only when the test lets it: each delivery takes a permit.
#[derive(Debug)]
struct Gate {
    permits: Arc<Semaphore>,
    started: AtomicUsize,
    delivered: Mutex<Vec<EventKind>>,
}

impl Gate {
    fn closed() -> Arc<Gate> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(0)),
            started: AtomicUsize::new(0),
            delivered: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Notifier for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    async fn notify(&self, event: &Event) -> Result<(), Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.permits.acquire().await.unwrap().forget();
        self.delivered.lock().unwrap().push(event.kind);
        Ok(())
    }
}

/// Captures log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn queue_overflow_is_counted_logged_and_reported() {
    let (logs, _guard) = Logs::capture();
    let gate = Gate::closed();
    let queued = Queued::from_arc(gate.clone(), 2);

    queued
        .notify(&event(EventKind::UpdatePlanned))
        .await
        .unwrap();
    until("the worker to take the first event", || {
        gate.started.load(Ordering::SeqCst) == 1
    })
    .await;
    queued
        .notify(&event(EventKind::UpdateApplied))
        .await
        .unwrap();
    queued.notify(&event(EventKind::Approved)).await.unwrap();
    for _ in 0..2 {
        let err = queued
            .notify(&event(EventKind::UpdateFailed))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the queue is full (2 events waiting)"),
            "{err}"
        );
        assert!(
            err.contains("gate failed to queue the update failed event"),
            "{err}"
        );
    }
    assert_eq!(queued.dropped(), 2);
    let logged = logs.text();
    assert_eq!(
        logged.matches("notification dropped").count(),
        2,
        "{logged}"
    );
    assert!(logged.contains("notifier=gate"), "{logged}");
    assert!(logged.contains("kind=update failed"), "{logged}");
    assert!(logged.contains("prod default/web"), "{logged}");

    let stats = queued.stats();
    assert_eq!((stats.enqueued, stats.pending, stats.delivered), (3, 3, 0));
    let err = queued.flush(Duration::from_millis(50)).await.unwrap_err();
    assert!(
        err.to_string().contains("3 event(s) still pending"),
        "{err}"
    );

    gate.permits.add_permits(10);
    queued.flush(Duration::from_secs(5)).await.unwrap();
    // The longest timeout waits for good instead of overflowing the clock.
    queued.flush(Duration::MAX).await.unwrap();
    let stats = queued.stats();
    assert_eq!(
        (
            stats.capacity,
            stats.enqueued,
            stats.delivered,
            stats.failed,
            stats.dropped,
            stats.pending
        ),
        (2, 3, 3, 0, 2, 0)
    );
    assert_eq!(
        *gate.delivered.lock().unwrap(),
        [
            EventKind::UpdatePlanned,
            EventKind::UpdateApplied,
            EventKind::Approved
        ]
    );
}

#[tokio::test]
async fn queued_notify_returns_at_once_and_shutdown_drains_in_order() {
    let rx = Receiver::start(vec![Reply::Hang], Reply::status(204, "")).await;
    let hook = Webhook::builder(rx.url("/h"))
        .with_timeout(Duration::from_millis(300))
        .with_retry(
            RetryPolicy::new().with_backoff(Duration::from_millis(10), Duration::from_millis(10)),
        )
        .build()
        .unwrap();
    let queued = Queued::new(hook, 16);
    let kinds = [
        EventKind::UpdatePlanned,
        EventKind::ApprovalRequested,
        EventKind::Approved,
        EventKind::UpdateApplied,
    ];
    let started = Instant::now();
    for kind in kinds {
        queued.notify(&event(kind)).await.unwrap();
    }
    // The first request hangs until its timeout; queueing did not wait for it.
    assert!(started.elapsed() < Duration::from_millis(100));
    queued.shutdown(Duration::from_secs(5)).await.unwrap();
    let seen: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.header("x-keel-event").unwrap().to_owned())
        .collect();
    assert_eq!(
        seen,
        [
            "update-planned",
            "update-planned",
            "approval-requested",
            "approved",
            "update-applied"
        ],
        "the hung first attempt was retried"
    );
    assert_eq!(queued.stats().delivered, 4);

    let err = queued.notify(&event(EventKind::Expired)).await.unwrap_err();
    assert!(err.to_string().contains("shut down"), "{err}");
    assert_eq!(queued.dropped(), 1);
    queued.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn shutdown_past_its_deadline_drops_and_counts_what_is_left() {
    let gate = Gate::closed();
    let queued = Queued::from_arc(gate.clone(), 10);
    for _ in 0..3 {
        queued
            .notify(&event(EventKind::UpdateApplied))
            .await
            .unwrap();
    }
    let err = queued
        .shutdown(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("3 event(s) undelivered after 0.05s"),
        "{err}"
    );
    let stats = queued.stats();
    assert_eq!((stats.dropped, stats.pending, stats.delivered), (3, 0, 0));
}

#[tokio::test]
async fn failures_behind_the_queue_are_counted_and_logged() {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::always(Reply::status(404, "no_service")).await;
    let hook = Webhook::builder(rx.url("/gone"))
        .with_name("audit")
        .build()
        .unwrap();
    let queued = Queued::new(hook, 4);
    queued
        .notify(&event(EventKind::UpdateApplied))
        .await
        .unwrap();
    queued.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(queued.stats().failed, 1);
    let logged = logs.text();
    assert!(logged.contains("queued notification failed"), "{logged}");
    assert!(
        logged.contains("HTTP 404 Not Found: no_service"),
        "{logged}"
    );
    assert!(
        logged.contains("notifier=\"audit\"") || logged.contains("notifier=audit"),
        "{logged}"
    );
}

#[tokio::test]
async fn fan_out_delivers_to_the_live_receivers_despite_dead_ones() {
    let good = Receiver::always(Reply::status(204, "")).await;
    let dead = Receiver::always(Reply::Hang).await;
    let fan = FanOut::new()
        .with(
            Webhook::builder(dead.url("/h"))
                .with_name("dead")
                .with_timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .with(
            Webhook::builder(refused_url("/h").await)
                .with_name("refused")
                .with_retry(RetryPolicy::none())
                .build()
                .unwrap(),
        )
        .with(
            Webhook::builder(good.url("/h"))
                .with_name("good")
                .build()
                .unwrap(),
        )
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = failure(&fan).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(good.requests().len(), 1);
    assert_eq!(dead.wait_for(1).await.len(), 1);
    let msg = err.to_string();
    assert!(
        msg.starts_with("fan-out failed to deliver the update applied event"),
        "{msg}"
    );
    assert!(msg.contains("2 of 3 notifiers failed"), "{msg}");
    assert!(msg.contains("dead: dead failed to deliver"), "{msg}");
    assert!(msg.contains("no result within 0.3s"), "{msg}");
    assert!(msg.contains("refused: refused failed"), "{msg}");
    assert!(msg.contains("could not connect"), "{msg}");
    assert!(!msg.contains("good"), "{msg}");
    assert!(err.is_retryable());

    let each = fan.notify_each(&event(EventKind::Approved)).await;
    let names: Vec<(&str, bool)> = each.iter().map(|(n, r)| (n.as_str(), r.is_ok())).collect();
    assert_eq!(names, [("dead", false), ("refused", false), ("good", true)]);
    assert_eq!(good.requests().len(), 2);
}

#[tokio::test]
async fn fan_out_succeeds_when_all_deliver() {
    let a = Receiver::always(Reply::ok()).await;
    let b = Receiver::always(Reply::ok()).await;
    let fan = FanOut::new()
        .with_name("all")
        .with(Webhook::builder(a.url("/a")).build().unwrap())
        .with_arc(Arc::new(Webhook::builder(b.url("/b")).build().unwrap()));
    assert_eq!(fan.name(), "all");
    fan.notify(&event(EventKind::UpdateApplied)).await.unwrap();
    assert_eq!((a.requests().len(), b.requests().len()), (1, 1));
}

#[tokio::test]
async fn a_pipeline_run_notifies_a_real_receiver() {
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.2.4"]);
    let target = Arc::new(InMemoryTarget::new("cluster"));
    target
        .track("web", "ghcr.io/acme/web:1.2.3", "patch")
        .unwrap();
    let rx = Receiver::always(Reply::status(204, "")).await;
    let broken = Receiver::always(Reply::status(400, "nope")).await;
    let report = Pipeline::new(registry)
        .with_target(target)
        .with_notifier(Arc::new(Webhook::builder(rx.url("/keel")).build().unwrap()))
        .with_notifier(Arc::new(
            Webhook::builder(broken.url("/keel")).build().unwrap(),
        ))
        .run_once()
        .await;
    assert_eq!(report.applied.len(), 1);
    let events: Vec<(String, String)> = rx
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["event"]["kind"].as_str().unwrap().to_owned(),
                body["event"]["plan"]["new"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                "update-planned".to_owned(),
                "ghcr.io/acme/web:1.2.4".to_owned()
            ),
            (
                "update-applied".to_owned(),
                "ghcr.io/acme/web:1.2.4".to_owned()
            ),
        ]
    );
    // The broken receiver's two failures are counted; they did not stop the other.
    assert_eq!(report.notify_failures, 2);
    assert_eq!(broken.requests().len(), 2);
}
