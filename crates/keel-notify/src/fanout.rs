//! One notifier that delivers to many, concurrently.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use keel_core::{Error, Event, Notifier};
use tracing::warn;

/// How long [`FanOut`] waits for one notifier unless told otherwise: longer than a
/// notifier's default retry budget (30 s), so the notifier's own error wins.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45);

/// Delivers each event to several notifiers concurrently.
///
/// Each notifier gets at most [`with_timeout`](FanOut::with_timeout) (default 45 s); one
/// that fails or hangs does not hold up or prevent the others. `notify` fails when any
/// notifier failed, with an error naming each one that did and why;
/// [`notify_each`](FanOut::notify_each) gives every notifier's result.
///
/// ```
/// use std::time::Duration;
/// use keel_notify::{Discord, FanOut, SlackWebhook};
///
/// let all = FanOut::new()
///     .with(SlackWebhook::builder("https://hooks.slack.com/services/T/B/X").build()?)
///     .with(Discord::builder("https://discord.com/api/webhooks/1/x").build()?)
///     .with_timeout(Duration::from_secs(20));
/// assert_eq!(all.names(), ["slack webhook", "discord"]);
/// # Ok::<(), keel_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FanOut {
    name: String,
    notifiers: Vec<Arc<dyn Notifier>>,
    timeout: Duration,
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut::new()
    }
}

impl FanOut {
    /// No notifiers yet, named `fan-out`.
    pub fn new() -> FanOut {
        FanOut {
            name: "fan-out".into(),
            notifiers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same, also delivering to `notifier`.
    pub fn with(self, notifier: impl Notifier + 'static) -> FanOut {
        self.with_arc(Arc::new(notifier))
    }

    /// The same, also delivering to a shared `notifier`.
    pub fn with_arc(mut self, notifier: Arc<dyn Notifier>) -> FanOut {
        self.notifiers.push(notifier);
        self
    }

    /// Gives each notifier at most `timeout` per event.
    pub fn with_timeout(mut self, timeout: Duration) -> FanOut {
        self.timeout = timeout;
        self
    }

    /// Names the fan-out in errors and logs.
    pub fn with_name(mut self, name: impl Into<String>) -> FanOut {
        self.name = name.into();
        self
    }

    /// The notifiers' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.notifiers.iter().map(|n| n.name()).collect()
    }

    /// Delivers `event` to every notifier concurrently; each notifier's name and result,
    /// in order.
    pub async fn notify_each(&self, event: &Event) -> Vec<(String, Result<(), Error>)> {
        let timeout = self.timeout;
        join_all(self.notifiers.iter().map(|n| async move {
            let result = match tokio::time::timeout(timeout, n.notify(event)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Backend {
                    backend: n.name().to_owned(),
                    action: format!(
                        "deliver the {} event for {}/{}",
                        event.kind, event.plan.target, event.plan.id
                    ),
                    message: format!(
                        "no result within {}; abandoned",
                        crate::delivery::seconds(timeout)
                    ),
                    retryable: true,
                    source: None,
                }),
            };
            (n.name().to_owned(), result)
        }))
        .await
    }
}

#[async_trait]
impl Notifier for FanOut {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, event: &Event) -> Result<(), Error> {
        let results = self.notify_each(event).await;
        let total = results.len();
        let failures: Vec<(String, Error)> = results
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|e| (name, e)))
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        for (name, error) in &failures {
            warn!(fan_out = %self.name, notifier = %name, %error, "notification failed");
        }
        let retryable = failures.iter().any(|(_, e)| e.is_retryable());
        let list: Vec<String> = failures
            .iter()
            .map(|(name, e)| format!("{name}: {e}"))
            .collect();
        Err(Error::Backend {
            backend: self.name.clone(),
            action: format!(
                "deliver the {} event for {}/{}",
                event.kind, event.plan.target, event.plan.id
            ),
            message: format!(
                "{} of {total} notifiers failed: {}",
                failures.len(),
                list.join("; ")
            ),
            retryable,
            source: None,
        })
    }
}
