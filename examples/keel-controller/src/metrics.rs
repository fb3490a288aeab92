//! The controller's metrics, in the Prometheus text format.
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
//!
//! The two scrape-time values come from callbacks ([`Metrics::set_pending_approvals`],
//! [`Metrics::set_registry_requests`]), so they count what is true now rather than what
//! someone remembered to report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use futures::future::BoxFuture;
use keel_core::Error;
use keel_core::trigger::WebhookSource;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// A counter with labels: one value per combination of label values.
#[derive(Debug)]
struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        CounterVec {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.labels.len());
        let key = values.iter().map(|v| (*v).to_owned()).collect();
        *lock(&self.values).entry(key).or_default() += n;
    }

    fn get(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        lock(&self.values).get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (values, n) in lock(&self.values).iter() {
            let pairs: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            sample(out, self.name, &pairs, *n as f64);
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    last_pass: AtomicI64,
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
                "Webhook requests received, by source and outcome.",
                &["source", "outcome"],
            ),
            passes: CounterVec::new(
                "keel_pipeline_passes_total",
                "Pipeline passes run, by what triggered them.",
                &["trigger"],
            ),
            pass_failures: CounterVec::new(
                "keel_pass_failures_total",
                "Pipeline passes that panicked or ran past the pass timeout, by trigger and reason.",
                &["trigger", "reason"],
            ),
            updates: CounterVec::new(
                "keel_updates_total",
                "Updates applied in targets or failed there.",
                &["outcome"],
            ),
            truncated: CounterVec::new(
                "keel_tag_listings_truncated_total",
                "Tag listings cut short by the listing budget (no update chosen from them), by repository.",
                &["repository"],
            ),
            last_pass: AtomicI64::new(0),
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
        self.last_pass.store(finished, Ordering::Relaxed);
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
        *self
            .pending_approvals
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Sets how registry request counts are read at each scrape.
    pub fn set_registry_requests<F>(&self, read: F)
    where
        F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    {
        *self
            .registry_requests
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(read));
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4). Calls the
    /// scrape-time callbacks; a failing one leaves its metric out and is logged.
    pub async fn render(&self) -> String {
        let mut out = String::new();
        self.webhooks.render(&mut out);
        self.passes.render(&mut out);
        self.pass_failures.render(&mut out);
        self.updates.render(&mut out);
        self.truncated.render(&mut out);
        header(
            &mut out,
            "keel_pipeline_last_pass_timestamp_seconds",
            "When the last pipeline pass finished, in Unix seconds (0: none yet).",
            "gauge",
        );
        sample(
            &mut out,
            "keel_pipeline_last_pass_timestamp_seconds",
            &[],
            self.last_pass.load(Ordering::Relaxed) as f64,
        );

        let pending = self
            .pending_approvals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(count) = pending {
            match count().await {
                Ok(n) => {
                    header(
                        &mut out,
                        "keel_pending_approvals",
                        "Updates waiting for approval.",
                        "gauge",
                    );
                    sample(&mut out, "keel_pending_approvals", &[], n as f64);
                }
                Err(error) => tracing::warn!(%error, "counting pending approvals failed"),
            }
        }

        let requests = self
            .registry_requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(read) = requests {
            header(
                &mut out,
                "keel_registry_requests_total",
                "HTTP requests made to registries, by kind.",
                "counter",
            );
            for (kind, n) in read() {
                sample(
                    &mut out,
                    "keel_registry_requests_total",
                    &[("kind", kind)],
                    n as f64,
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z\nw")], 1.0);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
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
