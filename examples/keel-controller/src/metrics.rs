//! The controller's metrics, exposed through `prometheus-client` in the Prometheus text format
//! (version 0.0.4).
//!
//! This is the one table of the metrics a controller shows:
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `keel_webhooks_received_total` | counter | `source`, `outcome` | webhook requests by endpoint and what became of them: `accepted` (pushes queued), `ignored` (no push in it), `unauthorized`, `invalid` (400), `replayed` (409, a signed delivery seen before), `too_large` (413), `busy` (503, queue full) |
//! | `keel_pipeline_passes_total` | counter | `trigger` | pipeline passes run: `poll` or `webhook` (a poll pass that only looked for new images and checked none is not counted) |
//! | `keel_pass_failures_total` | counter | `trigger`, `reason` | passes that did not complete: `reason` is `panic` (caught; the next pass runs) or `timeout` (cut off after the pass timeout) |
//! | `keel_updates_total` | counter | `outcome` | updates `applied` (or already current) and `failed` in targets |
//! | `keel_tag_listings_truncated_total` | counter | `repository` | passes that found the repository's tag list cut short by the listing budget and so chose no update for its images; raise `KEEL_LISTING_MAX_PAGES` / `KEEL_LISTING_MAX_TAGS` |
//! | `keel_pipeline_last_pass_timestamp_seconds` | gauge | | when the last pass finished (Unix time) |
//! | `keel_pending_approvals` | gauge | | updates waiting for approval, counted at scrape time |
//! | `keel_registry_requests_total` | counter | `kind` | HTTP requests to registries, read from the registry client at scrape time |
//! | `keel_approvals_pending` | gauge | | approval requests waiting for votes (pending and before their deadline), at `/api/metrics` when the approvals API is on (`keel_api::metrics_text`) |
//!
//! The two scrape-time values come from callbacks ([`Metrics::set_pending_approvals`],
//! [`Metrics::set_registry_requests`]), so they count what is true now rather than what
//! someone remembered to report.

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use keel_core::Error;
use keel_core::trigger::WebhookSource;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What became of one webhook request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookOutcome {
    /// The payload reported pushes; they were queued for a pass.
    Accepted,
    /// The payload was valid but reported no push (a pull, a delete, a ping).
    Ignored,
    /// The request lacked valid credentials (401).
    Unauthorized,
    /// The payload could not be read (400).
    Invalid,
    /// A signed delivery already received came again (409).
    Replayed,
    /// The body was over the size limit (413).
    TooLarge,
    /// The push queue was full or closed (503).
    Busy,
}

impl WebhookOutcome {
    /// Every outcome.
    pub const ALL: [WebhookOutcome; 7] = [
        WebhookOutcome::Accepted,
        WebhookOutcome::Ignored,
        WebhookOutcome::Unauthorized,
        WebhookOutcome::Invalid,
        WebhookOutcome::Replayed,
        WebhookOutcome::TooLarge,
        WebhookOutcome::Busy,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::Invalid => "invalid",
            WebhookOutcome::Replayed => "replayed",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::Busy => "busy",
        }
    }
}

/// Label names and values, in the order of the names.
type Labels = Vec<(&'static str, String)>;

/// A counter with labels: one value per combination of label values.
#[derive(Debug)]
struct CounterVec {
    /// The sample name, ending in `_total` (`prometheus-client` adds the suffix itself).
    name: &'static str,
    /// The help text; `prometheus-client` ends it with a period.
    help: &'static str,
    labels: &'static [&'static str],
    family: Family<Labels, Counter>,
}

impl CounterVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        debug_assert!(name.ends_with("_total"), "{name}");
        CounterVec {
            name,
            help,
            labels,
            family: Family::default(),
        }
    }

    fn key(&self, values: &[&str]) -> Labels {
        debug_assert_eq!(values.len(), self.labels.len());
        self.labels
            .iter()
            .zip(values)
            .map(|(label, value)| (*label, (*value).to_owned()))
            .collect()
    }

    fn add(&self, values: &[&str], n: u64) {
        self.family.get_or_create(&self.key(values)).inc_by(n);
    }

    fn get(&self, values: &[&str]) -> u64 {
        self.family.get(&self.key(values)).map_or(0, |c| c.get())
    }

    fn register(&self, registry: &mut Registry) {
        let name = self.name.strip_suffix("_total").unwrap_or(self.name);
        registry.register(name, self.help, self.family.clone());
    }
}

/// The callback set in `slot`, if any.
fn current<T: Clone>(slot: &RwLock<Option<T>>) -> Option<T> {
    slot.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets the callback in `slot`.
fn set<T>(slot: &RwLock<Option<T>>, callback: T) {
    *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(callback);
}

/// Counts pending approvals at scrape time.
pub type PendingApprovalsFn =
    Arc<dyn Fn() -> BoxFuture<'static, Result<usize, Error>> + Send + Sync>;

/// Reads registry request counts (kind, count) at scrape time.
pub type RegistryRequestsFn = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// The controller's metrics; see the [module docs](self) for the table.
///
/// ```
/// use keel_controller::metrics::{Metrics, WebhookOutcome};
/// use keel_core::trigger::WebhookSource;
///
/// # futures::executor::block_on(async {
/// let metrics = Metrics::new();
/// metrics.webhook(WebhookSource::Quay, WebhookOutcome::Accepted);
/// metrics.set_pending_approvals(|| async { Ok(2) });
/// let text = metrics.render().await;
/// assert!(text.contains("keel_webhooks_received_total{source=\"quay\",outcome=\"accepted\"} 1\n"));
/// assert!(text.contains("keel_pending_approvals 2\n"));
/// # });
/// ```
pub struct Metrics {
    webhooks: CounterVec,
    passes: CounterVec,
    pass_failures: CounterVec,
    updates: CounterVec,
    truncated: CounterVec,
    last_pass: Gauge,
    pending_approvals: RwLock<Option<PendingApprovalsFn>>,
    registry_requests: RwLock<Option<RegistryRequestsFn>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics at zero, every known label combination present.
    pub fn new() -> Self {
        let metrics = Metrics {
            webhooks: CounterVec::new(
                "keel_webhooks_received_total",
                "Webhook requests received, by source and outcome",
                &["source", "outcome"],
            ),
            passes: CounterVec::new(
                "keel_pipeline_passes_total",
                "Pipeline passes run, by what triggered them",
                &["trigger"],
            ),
            pass_failures: CounterVec::new(
                "keel_pass_failures_total",
                "Pipeline passes that panicked or ran past the pass timeout, by trigger and reason",
                &["trigger", "reason"],
            ),
            updates: CounterVec::new(
                "keel_updates_total",
                "Updates applied in targets or failed there",
                &["outcome"],
            ),
            truncated: CounterVec::new(
                "keel_tag_listings_truncated_total",
                "Tag listings cut short by the listing budget (no update chosen from them), by repository",
                &["repository"],
            ),
            last_pass: Gauge::default(),
            pending_approvals: RwLock::new(None),
            registry_requests: RwLock::new(None),
        };
        for source in WebhookSource::ALL {
            for outcome in WebhookOutcome::ALL {
                metrics
                    .webhooks
                    .add(&[source.as_str(), outcome.as_str()], 0);
            }
        }
        for trigger in ["poll", "webhook"] {
            metrics.passes.add(&[trigger], 0);
            for reason in ["panic", "timeout"] {
                metrics.pass_failures.add(&[trigger, reason], 0);
            }
        }
        for outcome in ["applied", "failed"] {
            metrics.updates.add(&[outcome], 0);
        }
        metrics
    }

    /// Counts one webhook request.
    pub fn webhook(&self, source: WebhookSource, outcome: WebhookOutcome) {
        self.webhooks.add(&[source.as_str(), outcome.as_str()], 1);
    }

    /// How many webhook requests of `source` had `outcome`.
    pub fn webhooks(&self, source: WebhookSource, outcome: WebhookOutcome) -> u64 {
        self.webhooks.get(&[source.as_str(), outcome.as_str()])
    }

    /// Counts one pass (`trigger`: `poll` or `webhook`) that applied `applied` updates and
    /// failed to apply `failed`, finished at `finished` (Unix seconds).
    pub fn pass(&self, trigger: &str, applied: usize, failed: usize, finished: i64) {
        self.passes.add(&[trigger], 1);
        self.updates.add(&["applied"], applied as u64);
        self.updates.add(&["failed"], failed as u64);
        self.last_pass.set(finished);
    }

    /// Counts a pass that found `repository`'s tag list cut short by the listing budget.
    pub fn truncated_listing(&self, repository: &str) {
        self.truncated.add(&[repository], 1);
    }

    /// How many passes found `repository`'s tag list cut short.
    pub fn truncated_listings(&self, repository: &str) -> u64 {
        self.truncated.get(&[repository])
    }

    /// Counts one pass (`trigger`: `poll` or `webhook`) that did not complete (`reason`:
    /// `panic` or `timeout`).
    pub fn pass_failure(&self, trigger: &str, reason: &str) {
        self.pass_failures.add(&[trigger, reason], 1);
    }

    /// How many passes of `trigger` failed for `reason`.
    pub fn pass_failures(&self, trigger: &str, reason: &str) -> u64 {
        self.pass_failures.get(&[trigger, reason])
    }

    /// How many passes `trigger` started.
    pub fn passes(&self, trigger: &str) -> u64 {
        self.passes.get(&[trigger])
    }

    /// How many updates had `outcome` (`applied` or `failed`).
    pub fn updates(&self, outcome: &str) -> u64 {
        self.updates.get(&[outcome])
    }

    /// Sets how pending approvals are counted at each scrape.
    pub fn set_pending_approvals<F, Fut>(&self, count: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<usize, Error>> + Send + 'static,
    {
        let f: PendingApprovalsFn = Arc::new(move || Box::pin(count()));
        set(&self.pending_approvals, f);
    }

    /// Sets how registry request counts are read at each scrape.
    pub fn set_registry_requests<F>(&self, read: F)
    where
        F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    {
        set(&self.registry_requests, Arc::new(read));
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4, [`CONTENT_TYPE`]).
    /// Calls the scrape-time callbacks; a failing one leaves its metric out and is logged.
    pub async fn render(&self) -> String {
        let mut registry = Registry::default();
        for counters in [
            &self.webhooks,
            &self.passes,
            &self.pass_failures,
            &self.updates,
            &self.truncated,
        ] {
            counters.register(&mut registry);
        }
        registry.register(
            "keel_pipeline_last_pass_timestamp_seconds",
            "When the last pipeline pass finished, in Unix seconds (0: none yet)",
            self.last_pass.clone(),
        );

        if let Some(count) = current(&self.pending_approvals) {
            match count().await {
                Ok(n) => registry.register(
                    "keel_pending_approvals",
                    "Updates waiting for approval",
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
                ),
                Err(error) => tracing::warn!(%error, "counting pending approvals failed"),
            }
        }

        if let Some(read) = current(&self.registry_requests) {
            let counters = CounterVec::new(
                "keel_registry_requests_total",
                "HTTP requests made to registries, by kind",
                &["kind"],
            );
            for (kind, n) in read() {
                counters.add(&[kind], n);
            }
            counters.register(&mut registry);
        }

        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.truncated_listing("x\"y\\z\nw");
        let text = metrics.render().await;
        assert!(
            text.contains("keel_tag_listings_truncated_total{repository=\"x\\\"y\\\\z\\nw\"} 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn every_metric_has_help_and_type_under_its_sample_name() {
        let metrics = Metrics::new();
        metrics.set_pending_approvals(|| async { Ok(0) });
        metrics.set_registry_requests(|| vec![("tag_page", 0)]);
        metrics.truncated_listing("ghcr.io/acme/app");
        let text = metrics.render().await;
        for (name, kind) in [
            ("keel_webhooks_received_total", "counter"),
            ("keel_pipeline_passes_total", "counter"),
            ("keel_pass_failures_total", "counter"),
            ("keel_updates_total", "counter"),
            ("keel_tag_listings_truncated_total", "counter"),
            ("keel_pipeline_last_pass_timestamp_seconds", "gauge"),
            ("keel_pending_approvals", "gauge"),
            ("keel_registry_requests_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}: {text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
        assert!(!text.contains(".."), "{text}");
    }

    #[tokio::test]
    async fn callbacks_are_read_at_every_scrape() {
        let metrics = Metrics::new();
        let pending = Arc::new(AtomicUsize::new(1));
        let p = pending.clone();
        metrics.set_pending_approvals(move || {
            let n = p.load(Ordering::Relaxed);
            async move { Ok(n) }
        });
        metrics.set_registry_requests(|| vec![("tag_page", 7), ("manifest_head", 2)]);
        assert!(
            metrics
                .render()
                .await
                .contains("keel_pending_approvals 1\n")
        );
        pending.store(4, Ordering::Relaxed);
        let text = metrics.render().await;
        assert!(text.contains("keel_pending_approvals 4\n"), "{text}");
        assert!(text.contains("keel_registry_requests_total{kind=\"tag_page\"} 7\n"));
        assert!(text.contains("# TYPE keel_registry_requests_total counter\n"));
    }

    #[tokio::test]
    async fn a_failing_callback_leaves_its_metric_out() {
        let metrics = Metrics::new();
        metrics.set_pending_approvals(|| async { Err(Error::not_found("approval store")) });
        let text = metrics.render().await;
        assert!(!text.contains("keel_pending_approvals"), "{text}");
        assert!(text.contains("keel_pipeline_passes_total{trigger=\"poll\"} 0\n"));
    }

    #[tokio::test]
    async fn passes_and_updates_add_up() {
        let metrics = Metrics::new();
        metrics.pass("poll", 2, 1, 1_700_000_000);
        metrics.pass("webhook", 1, 0, 1_700_000_060);
        assert_eq!(metrics.passes("poll"), 1);
        assert_eq!(metrics.updates("applied"), 3);
        assert_eq!(metrics.updates("failed"), 1);
        let text = metrics.render().await;
        assert!(
            text.contains("keel_updates_total{outcome=\"applied\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("keel_pipeline_last_pass_timestamp_seconds 1700000060\n"));
    }
}
