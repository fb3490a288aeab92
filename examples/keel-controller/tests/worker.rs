//! Pipeline passes driven by the poll scheduler and by webhook pushes, over the in-memory
//! registry and target of keel-core.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use keel_controller::http::{self, HttpConfig};
use keel_controller::metrics::Metrics;
use keel_controller::worker::Worker;
use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
use keel_core::target::Trigger;
use keel_core::trigger::WebhookSource;
use keel_core::{ImageRef, Pipeline, TrackedImage};
use keel_testsupport::pipeline::tracked;

/// `id` running `image` under the policy `all`, polled on `schedule`.
fn polled(id: &str, image: &str, schedule: &str) -> TrackedImage {
    let poll = Trigger::Poll {
        schedule: Some(schedule.parse().unwrap()),
    };
    tracked(id, image, "all").with_trigger(poll)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 3, 9, 0, 0).unwrap()
}

/// `secs` seconds after [`t0`].
fn t0_plus(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

struct Setup {
    registry: Arc<InMemoryRegistry>,
    target: Arc<InMemoryTarget>,
    metrics: Arc<Metrics>,
    worker: Arc<Worker>,
}

fn setup() -> Setup {
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.0.0", "1.1.0"]);
    registry.push_tags("ghcr.io/acme/api", &["2.0.0", "2.1.0"]);
    registry.push_tags("ghcr.io/acme/hook", &["1.0.0", "1.1.0"]);
    let target = Arc::new(InMemoryTarget::new("test target"));
    target.track_with(polled("web-a", "ghcr.io/acme/web:1.0.0", "@every 1m"));
    target.track_with(polled("web-b", "ghcr.io/acme/web:1.0.0", "@every 5m"));
    target.track_with(polled("api", "ghcr.io/acme/api:2.0.0", "0 */5 * * * *"));
    // Webhook-triggered, as a workload without a poll trigger is.
    target.track_with(tracked("hook", "ghcr.io/acme/hook:1.0.0", "all"));
    let metrics = Arc::new(Metrics::new());
    let pipeline = Pipeline::new(registry.clone()).with_target(target.clone());
    let worker = Arc::new(Worker::new(pipeline, metrics.clone()));
    Setup {
        registry,
        target,
        metrics,
        worker,
    }
}

fn tag(target: &InMemoryTarget, id: &str) -> String {
    target.image(id).unwrap().tag().unwrap().to_string()
}

#[tokio::test]
async fn poll_passes_cover_due_images_with_one_listing_per_repository() {
    let s = setup();

    // First pass: every polled image is new, so checked; two repositories, two listings.
    let report = s.worker.poll_pass(t0()).await;
    assert_eq!(report.tracked, 3);
    assert_eq!(report.listings, 2);
    assert_eq!(s.registry.list_calls(), 2);
    assert_eq!(report.applied.len(), 3);
    assert_eq!(tag(&s.target, "web-a"), "1.1.0");
    assert_eq!(
        tag(&s.target, "hook"),
        "1.0.0",
        "webhook-triggered images are not polled"
    );

    s.registry.push_tags("ghcr.io/acme/web", &["1.2.0"]);
    s.registry.push_tags("ghcr.io/acme/api", &["2.2.0"]);

    // Nothing due half a minute later: discovery only, no listing.
    let report = s.worker.poll_pass(t0_plus(30)).await;
    assert_eq!(report.tracked, 0);
    assert_eq!(s.registry.list_calls(), 2);

    // A minute on, only web-a is due.
    let report = s.worker.poll_pass(t0_plus(60)).await;
    assert_eq!(report.tracked, 1);
    assert_eq!(s.registry.list_calls(), 3);
    assert_eq!(tag(&s.target, "web-a"), "1.2.0");
    assert_eq!(tag(&s.target, "web-b"), "1.1.0");
    assert_eq!(tag(&s.target, "api"), "2.1.0");

    // Five minutes on, all three: web listed once for web-a and web-b.
    let report = s.worker.poll_pass(t0_plus(300)).await;
    assert_eq!(report.tracked, 3);
    assert_eq!(report.listings, 2);
    assert_eq!(s.registry.list_calls(), 5);
    assert_eq!(tag(&s.target, "web-b"), "1.2.0");
    assert_eq!(tag(&s.target, "api"), "2.2.0");

    // The pass that checked nothing is not counted.
    assert_eq!(s.metrics.passes("poll"), 3);
    assert_eq!(s.metrics.updates("applied"), 6);
}

#[tokio::test]
async fn webhook_passes_cover_the_pushed_repositories_only() {
    let s = setup();
    let pushes = WebhookSource::Native
        .parse_payload(br#"{"name": "ghcr.io/acme/hook", "tag": "1.1.0"}"#)
        .unwrap();
    let report = s.worker.webhook_pass(&pushes).await;
    assert_eq!(report.tracked, 1);
    assert_eq!(s.registry.list_calls(), 1);
    assert_eq!(tag(&s.target, "hook"), "1.1.0");
    assert_eq!(tag(&s.target, "web-a"), "1.0.0");
    // A push covers polled images of its repository too.
    let pushes = WebhookSource::Native
        .parse_payload(br#"{"name": "ghcr.io/acme/web", "tag": "1.1.0"}"#)
        .unwrap();
    let report = s.worker.webhook_pass(&pushes).await;
    assert_eq!(report.tracked, 2);
    assert_eq!(report.listings, 1);
    assert_eq!(s.metrics.passes("webhook"), 2);
    assert_eq!(s.metrics.updates("applied"), 3);
}

/// The in-memory registry, with every listing cut short by a budget.
#[derive(Debug)]
struct CutListings(Arc<InMemoryRegistry>);

#[async_trait::async_trait]
impl keel_core::Registry for CutListings {
    fn name(&self) -> &str {
        "budgeted registry"
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<keel_core::TagList, keel_core::Error> {
        let mut list = self.0.list_tags(image).await?;
        list.tags.truncate(1);
        list.truncated = true;
        Ok(list)
    }

    async fn resolve_digest(
        &self,
        image: &ImageRef,
        tag: &keel_core::Tag,
    ) -> Result<keel_core::Digest, keel_core::Error> {
        self.0.resolve_digest(image, tag).await
    }
}

#[tokio::test]
async fn truncated_listings_are_counted_per_repository_and_update_nothing() {
    let s = setup();
    let pipeline =
        Pipeline::new(Arc::new(CutListings(s.registry.clone()))).with_target(s.target.clone());
    let worker = Worker::new(pipeline, s.metrics.clone());
    let pushes = WebhookSource::Native
        .parse_payload(br#"{"name": "ghcr.io/acme/hook", "tag": "1.1.0"}"#)
        .unwrap();
    let report = worker.webhook_pass(&pushes).await;
    assert_eq!(report.truncated.len(), 1);
    assert!(report.applied.is_empty());
    assert_eq!(tag(&s.target, "hook"), "1.0.0");
    worker.webhook_pass(&pushes).await;
    assert_eq!(s.metrics.truncated_listings("ghcr.io/acme/hook"), 2);
    let text = s.metrics.render().await;
    assert!(
        text.contains("keel_tag_listings_truncated_total{repository=\"ghcr.io/acme/hook\"} 2\n"),
        "{text}"
    );
}

#[tokio::test]
async fn updates_waiting_for_approval_are_counted_once() {
    let s = setup();
    s.target
        .track_with(polled("gated", "ghcr.io/acme/api:2.0.0", "@every 1m").with_approvals(2));
    s.worker.poll_pass(t0()).await;
    assert_eq!(s.worker.awaiting_approvals(), 1);
    s.worker.poll_pass(t0_plus(60)).await;
    assert_eq!(s.worker.awaiting_approvals(), 1);
    // Once nothing needs approving any more (here: the image is already the newest), the
    // count drops with the next pass that covers it.
    s.target
        .track_with(polled("gated", "ghcr.io/acme/api:2.1.0", "@every 1m").with_approvals(2));
    s.worker.poll_pass(t0_plus(120)).await;
    assert_eq!(s.worker.awaiting_approvals(), 0);
}

#[tokio::test]
async fn pushes_flow_from_the_http_front_to_the_target() {
    let s = setup();
    let (pushes, queue) = tokio::sync::mpsc::channel(16);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let worker_task = tokio::spawn(s.worker.clone().run(queue, wait(stopped.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = http::router(HttpConfig::new(), s.metrics.clone(), pushes);
    let server = tokio::spawn(http::serve(listener, router, wait(stopped)));

    let response = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks/native"))
        .body(r#"{"name": "ghcr.io/acme/hook", "tag": "1.1.0"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tag(&s.target, "hook") != "1.1.0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the push was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.metrics.passes("webhook") >= 1);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker_task)
        .await
        .expect("the worker stops on shutdown")
        .unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_standby_runs_nothing_and_a_new_leader_runs_a_pass_at_once() {
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.0.0", "1.1.0"]);
    let target = Arc::new(InMemoryTarget::new("test target"));
    target.track_with(polled("web", "ghcr.io/acme/web:1.0.0", "@every 1h"));
    let pipeline = Pipeline::new(registry.clone()).with_target(target.clone());
    let (leading, leader) = tokio::sync::watch::channel(false);
    let worker = Arc::new(
        Worker::new(pipeline, Arc::new(Metrics::new()))
            .with_resync(Duration::from_secs(3600))
            .with_leadership(leader),
    );
    let (pushes, queue) = tokio::sync::mpsc::channel(8);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.clone().run(queue, async {
        let _ = stopped.await;
    }));

    // A standby: neither the first poll nor a webhook touches the registry or the target.
    pushes
        .send(keel_core::trigger::PushEvent {
            image: ImageRef::parse("ghcr.io/acme/web:1.1.0").unwrap(),
            digest: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.list_calls(), 0);
    assert_eq!(
        target.image("web").unwrap().tag().unwrap().as_str(),
        "1.0.0"
    );

    // Elected: a pass runs at once, not an hour later at the next resync.
    leading.send(true).unwrap();
    let start = std::time::Instant::now();
    while target.image("web").unwrap().tag().unwrap().as_str() != "1.1.0" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no pass after election"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    run.await.unwrap();
}

/// What [`Faulty`] does on its next discoveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Panic,
    Hang,
}

/// A target that panics or hangs in `discover` when told to, and otherwise is the in-memory
/// target it wraps.
#[derive(Debug)]
struct Faulty {
    inner: Arc<InMemoryTarget>,
    fault: std::sync::Mutex<Fault>,
    discoveries: std::sync::atomic::AtomicUsize,
}

impl Faulty {
    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn discoveries(&self) -> usize {
        self.discoveries.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl keel_core::Target for Faulty {
    fn name(&self) -> &str {
        "faulty target"
    }

    async fn discover(&self) -> Result<Vec<TrackedImage>, keel_core::Error> {
        self.discoveries
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::Panic => panic!("discover exploded"),
            Fault::Hang => std::future::pending().await,
            Fault::None => self.inner.discover().await,
        }
    }

    async fn apply(
        &self,
        plan: &keel_core::UpdatePlan,
    ) -> Result<keel_core::ApplyOutcome, keel_core::Error> {
        self.inner.apply(plan).await
    }
}

/// Runs a worker (resync 1s, pass timeout 1s) over a faulty target, with `/healthz` served;
/// returns what the test needs and a closure to stop everything.
struct Supervised {
    registry: Arc<InMemoryRegistry>,
    faulty: Arc<Faulty>,
    metrics: Arc<Metrics>,
    worker: Arc<Worker>,
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn supervised(fault: Fault) -> Supervised {
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.0.0", "1.1.0"]);
    let inner = Arc::new(InMemoryTarget::new("test target"));
    inner.track_with(polled("web", "ghcr.io/acme/web:1.0.0", "@every 1h"));
    let faulty = Arc::new(Faulty {
        inner,
        fault: std::sync::Mutex::new(fault),
        discoveries: Default::default(),
    });
    let metrics = Arc::new(Metrics::new());
    let pipeline = Pipeline::new(registry.clone()).with_target(faulty.clone());
    let worker = Arc::new(
        Worker::new(pipeline, metrics.clone())
            .with_resync(Duration::from_secs(1))
            .with_pass_timeout(Duration::from_secs(1)),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let (pushes, queue) = tokio::sync::mpsc::channel(8);
    let run = tokio::spawn(worker.clone().run(queue, wait(stopped.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config =
        HttpConfig::new().with_liveness(worker.supervisor().clone(), worker.health_window());
    let router = http::router(config, metrics.clone(), pushes);
    let server = tokio::spawn(async move {
        http::serve(listener, router, wait(stopped)).await.unwrap();
    });
    Supervised {
        registry,
        faulty,
        metrics,
        worker,
        base,
        stop,
        tasks: vec![run, server],
    }
}

impl Supervised {
    async fn healthz(&self) -> (u16, String) {
        let response = reqwest::get(format!("{}/healthz", self.base))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Waits up to `limit` for `done`.
    /// Waits until no pass has completed within the health window; `/healthz` then answers
    /// 503, with the body returned.
    async fn unhealthy_after_the_window(&self) -> String {
        self.wait_until(Duration::from_secs(10), "the health window", |s| {
            s.worker
                .supervisor()
                .stalled(s.worker.health_window())
                .is_some()
        })
        .await;
        let (status, body) = self.healthz().await;
        assert_eq!(status, 503, "{body}");
        body
    }

    /// Takes the fault away and waits for a pass to complete.
    async fn recovers(&self) {
        self.faulty.set(Fault::None);
        self.wait_until(Duration::from_secs(10), "a completed pass", |s| {
            s.worker.supervisor().completed() >= 1
        })
        .await;
    }

    async fn wait_until(&self, limit: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < limit,
                "{what} did not happen in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("stops on shutdown")
                .unwrap();
        }
    }
}

#[test]
fn the_pass_timeout_and_the_health_window_follow_the_resync() {
    let worker = |resync: u64| {
        let pipeline = Pipeline::new(Arc::new(InMemoryRegistry::new("r")));
        Worker::new(pipeline, Arc::new(Metrics::new())).with_resync(Duration::from_secs(resync))
    };
    // Twice the resync, at least a minute; the window three resyncs, or the timeout and one
    // resync.
    let w = worker(60);
    assert_eq!(w.pass_timeout(), Duration::from_secs(120));
    assert_eq!(w.health_window(), Duration::from_secs(180));
    let w = worker(1);
    assert_eq!(w.pass_timeout(), Duration::from_secs(60));
    assert_eq!(w.health_window(), Duration::from_secs(61));
    let w = worker(300).with_pass_timeout(Duration::from_secs(1800));
    assert_eq!(w.health_window(), Duration::from_secs(2100));
}

#[tokio::test]
async fn a_panicking_pass_is_counted_and_the_next_one_runs() {
    let s = supervised(Fault::Panic).await;
    assert_eq!(s.worker.health_window(), Duration::from_secs(3));

    // Passes keep coming (about one a second) and each panic is counted.
    s.wait_until(Duration::from_secs(10), "two panics", |s| {
        s.metrics.pass_failures("poll", "panic") >= 2
    })
    .await;
    assert_eq!(s.worker.supervisor().completed(), 0);
    assert_eq!(s.registry.list_calls(), 0);
    let text = s.metrics.render().await;
    assert!(
        text.contains("keel_pass_failures_total{trigger=\"poll\",reason=\"panic\"} "),
        "{text}"
    );

    // No pass completed for longer than 3 × resync: unhealthy, and it says why.
    let body = s.unhealthy_after_the_window().await;
    assert!(
        body.contains("no pass has completed") && body.contains("discover exploded"),
        "{body}"
    );

    // The fault goes away: the next pass applies the update and health comes back.
    s.recovers().await;
    assert_eq!(
        s.faulty.inner.image("web").unwrap().tag().unwrap().as_str(),
        "1.1.0"
    );
    let (status, body) = s.healthz().await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    s.stop().await;
}

#[tokio::test]
async fn a_hanging_pass_is_cut_off_and_the_next_one_runs() {
    let s = supervised(Fault::Hang).await;
    let (status, _) = s.healthz().await;
    assert_eq!(status, 200, "healthy while within the window after start");

    s.wait_until(Duration::from_secs(10), "a timeout", |s| {
        s.metrics.pass_failures("poll", "timeout") >= 1
    })
    .await;
    // Cut off after a second, the hung pass is followed by another one.
    s.wait_until(Duration::from_secs(10), "another discovery", |s| {
        s.faulty.discoveries() >= 2
    })
    .await;
    let body = s.unhealthy_after_the_window().await;
    assert!(body.contains("deadline"), "{body}");

    s.recovers().await;
    assert_eq!(s.healthz().await.0, 200);
    assert_eq!(s.metrics.pass_failures("poll", "panic"), 0);
    s.stop().await;
}

#[test]
fn a_resync_interval_too_long_for_the_calendar_saturates() {
    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    let last = Utc::now();
    for resync in [
        Duration::from_secs(u64::MAX),
        Duration::MAX,
        // Fits a chrono duration, but not the calendar.
        Duration::from_secs(i64::MAX as u64 / 1000),
    ] {
        let worker = Worker::new(Pipeline::new(registry.clone()), Arc::new(Metrics::new()))
            .with_resync(resync);
        assert_eq!(
            worker.next_poll(Some(last), last),
            DateTime::<Utc>::MAX_UTC,
            "{resync:?}"
        );
    }
    let hourly = Worker::new(Pipeline::new(registry), Arc::new(Metrics::new()))
        .with_resync(Duration::from_secs(3600));
    assert_eq!(
        hourly.next_poll(Some(last), last),
        last + chrono::Duration::hours(1)
    );
}
