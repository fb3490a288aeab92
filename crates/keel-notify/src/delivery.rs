//! Delivery of one HTTP request with timeouts and retries: the part every notifier shares.
//!
//! One attempt is bounded by the notifier's timeout (connect, send and read the answer). A
//! failed attempt is retried when trying again may help: no connection, a timeout, a dropped
//! connection, HTTP 408, 429 or 5xx. Other answers (400, 401, 403, 404...) fail at once with
//! the status and the start of the answer's body. Waits between attempts grow exponentially
//! with full random jitter ([`keel_core::retry::Backoff`]), and a `Retry-After` from the
//! receiver (the header, read by [`keel_core::retry::parse_retry_after`], or Discord's JSON
//! `retry_after`) replaces the computed wait. Attempts and waits together never exceed the
//! policy's [`max_elapsed`](RetryPolicy::max_elapsed): a receiver asking to wait beyond it
//! ends the delivery with [`Error::RateLimited`] at once.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_core::Error;
use keel_core::body::{BodyError, read_bounded};
use keel_core::retry::{Backoff, parse_retry_after};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use tokio::time::Instant;
use tracing::warn;

/// How many bytes of an answer are read; enough for every chat API's reply.
const MAX_ANSWER: usize = 64 * 1024;

/// How many characters of an answer's body an error quotes.
const EXCERPT_CHARS: usize = 200;

/// How a notifier retries a failed delivery.
///
/// The default makes at most 4 attempts, waiting up to 0.5 s, 1 s and 2 s between them
/// (each wait a random duration from zero up to that, "full jitter", never more than 10 s),
/// and gives up once 30 s have passed since the first attempt began.
///
/// ```
/// use std::time::Duration;
/// use keel_notify::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .with_max_attempts(6)
///     .with_backoff(Duration::from_millis(200), Duration::from_secs(5))
///     .with_max_elapsed(Duration::from_secs(20));
/// assert_eq!(policy.backoff(1), Duration::from_millis(200));
/// assert_eq!(policy.backoff(3), Duration::from_millis(800));
/// assert_eq!(policy.backoff(10), Duration::from_secs(5));
/// assert_eq!(RetryPolicy::none().max_attempts(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The default policy.
    pub fn new() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// One attempt, no retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// At most `attempts` attempts in all (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> RetryPolicy {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Waits `initial` after the first failure, doubling after each further one, never more
    /// than `max` (before jitter).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> RetryPolicy {
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// Gives up once `limit` has passed since the first attempt began; attempts are cut
    /// short to end by then.
    pub fn with_max_elapsed(mut self, limit: Duration) -> RetryPolicy {
        self.max_elapsed = limit;
        self
    }

    /// The most attempts made.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The bound on the whole delivery, attempts and waits included.
    pub fn max_elapsed(&self) -> Duration {
        self.max_elapsed
    }

    /// The longest wait after failed attempt `attempt` (counting from 1), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff.ceiling(attempt)
    }
}

/// A receiver's answer, as much as a notifier needs to judge it.
pub(crate) struct Answer<'a> {
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

impl Answer<'_> {
    /// The start of the body, on one line, for error messages.
    pub(crate) fn excerpt(&self) -> String {
        excerpt(self.body)
    }

    /// How long the receiver asked us to wait, from its `Retry-After` header.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, Utc::now())
    }
}

/// The start of `body`, with runs of whitespace folded, at most [`EXCERPT_CHARS`] characters.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let folded: Vec<&str> = text.split_whitespace().collect();
    let folded = folded.join(" ");
    let mut chars = folded.chars();
    let mut out: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// What a request was for and who sent it, to build errors that say so.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The notifier's name.
    pub(crate) who: &'a str,
    /// What was being done, e.g. `deliver the update applied event for prod/web`.
    pub(crate) action: &'a str,
}

impl Context<'_> {
    pub(crate) fn backend(&self, message: impl Into<String>, retryable: bool) -> Error {
        Error::Backend {
            backend: self.who.to_owned(),
            action: self.action.to_owned(),
            message: message.into(),
            retryable,
            source: None,
        }
    }

    pub(crate) fn rate_limited(&self, retry_after: Option<Duration>) -> Error {
        Error::RateLimited {
            action: format!("{} via {}", self.action, self.who),
            retry_after,
        }
    }

    pub(crate) fn unauthorized(&self, reason: impl Into<String>) -> Error {
        Error::Unauthorized {
            action: format!("{} via {}", self.action, self.who),
            reason: reason.into(),
        }
    }

    /// The error for an answer that is not a success: 429 rate limited, 408 and 5xx
    /// retryable, 401 and 403 unauthorized, anything else permanent.
    pub(crate) fn status_error(&self, answer: &Answer<'_>) -> Error {
        let status = answer.status;
        let excerpt = answer.excerpt();
        let described = if excerpt.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {excerpt}")
        };
        match status {
            StatusCode::TOO_MANY_REQUESTS => self.rate_limited(answer.retry_after()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.unauthorized(described),
            StatusCode::REQUEST_TIMEOUT => self.backend(described, true),
            s if s.is_server_error() => self.backend(described, true),
            s if s.is_redirection() => self.backend(
                format!("HTTP {status}: the endpoint redirects; configure its final URL"),
                false,
            ),
            _ => self.backend(described, false),
        }
    }

    /// Success for 2xx, [`status_error`](Context::status_error) otherwise.
    pub(crate) fn check_status(&self, answer: &Answer<'_>) -> Result<(), Error> {
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(answer))
        }
    }

    /// A transport failure. The URL is stripped first: webhook URLs carry their secret.
    fn transport_error(&self, error: reqwest::Error) -> Error {
        let error = error.without_url();
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "could not connect"
        } else if error.is_builder() {
            "could not build the request"
        } else if error.is_body() || error.is_decode() {
            "could not read the answer"
        } else {
            "request failed"
        };
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        let message = if causes.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {}", causes.join(": "))
        };
        Error::Backend {
            backend: self.who.to_owned(),
            action: self.action.to_owned(),
            message,
            retryable: !error.is_builder(),
            source: Some(Arc::new(error)),
        }
    }
}

/// Sends requests with a per-attempt timeout and a [`RetryPolicy`].
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
}

impl Delivery {
    /// Sends the request `build` makes (once per attempt: a signature may depend on the
    /// time) until `check` accepts the answer, a failure is not retryable, or the policy
    /// gives up.
    pub(crate) async fn send<B, C>(&self, ctx: Context<'_>, build: B, check: C) -> Result<(), Error>
    where
        B: Fn() -> RequestBuilder,
        C: Fn(&Answer<'_>) -> Result<(), Error>,
    {
        let started = Instant::now();
        let deadline = started + self.retry.max_elapsed;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = self.timeout.min(left);
            let result = match tokio::time::timeout(limit, self.attempt(ctx, build(), &check)).await
            {
                Ok(result) => result,
                Err(_) => Err(ctx.backend(format!("no answer within {}", seconds(limit)), true)),
            };
            let error = match result {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= self.retry.max_attempts {
                return Err(gave_up(error, attempt, started.elapsed()));
            }
            let wait = error
                .retry_after()
                .unwrap_or_else(|| self.retry.backoff.delay(attempt));
            let left = deadline.saturating_duration_since(Instant::now());
            // Too little time left for a wait and a useful attempt.
            if wait >= left {
                return Err(gave_up(error, attempt, started.elapsed()));
            }
            warn!(
                notifier = ctx.who,
                attempt,
                wait_ms = wait.as_millis() as u64,
                %error,
                "notification attempt failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt<C>(
        &self,
        ctx: Context<'_>,
        request: RequestBuilder,
        check: &C,
    ) -> Result<(), Error>
    where
        C: Fn(&Answer<'_>) -> Result<(), Error>,
    {
        let response = request.send().await.map_err(|e| ctx.transport_error(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let announced = response.content_length();
        let body = match read_bounded(response.bytes_stream(), announced, MAX_ANSWER).await {
            Ok(body) => body,
            // No chat API answers that much: the answer is judged by its status and headers.
            Err(BodyError::TooLarge { .. }) => Vec::new(),
            Err(BodyError::Read(e)) => return Err(ctx.transport_error(e)),
        };
        check(&Answer {
            status,
            headers: &headers,
            body: &body,
        })
    }
}

/// `0.3s`, `10s`: a duration to the millisecond, without trailing zeros.
pub(crate) fn seconds(d: Duration) -> String {
    let millis = (d.as_secs_f64() * 1000.0).round() / 1000.0;
    format!("{millis}s")
}

/// Adds how many attempts were made to the final error, where the variant has room for it.
fn gave_up(error: Error, attempts: u32, elapsed: Duration) -> Error {
    if attempts <= 1 {
        return error;
    }
    match error {
        Error::Backend {
            backend,
            action,
            message,
            retryable,
            source,
        } => Error::Backend {
            backend,
            action,
            message: format!(
                "{message} (gave up after {attempts} attempts in {:.1}s)",
                elapsed.as_secs_f64()
            ),
            retryable,
            source,
        },
        other => other,
    }
}

/// Escapes `&`, `<` and `>` as Slack's (and Mattermost's) markup asks.
pub(crate) fn escape_slack(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub(crate) fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use keel_testsupport::receiver::{Receiver, Reply};

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_range() {
        let p = RetryPolicy::new();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(6), Duration::from_secs(10));
        assert_eq!(p.backoff(100), Duration::from_secs(10));
        // Full jitter: anywhere from zero up to the ceiling.
        for _ in 0..100 {
            let j = p.backoff.delay(2);
            assert!(j <= Duration::from_secs(1), "{j:?}");
        }
        assert_eq!(RetryPolicy::new().with_max_attempts(0).max_attempts(), 1);
    }

    /// Serves `status` with a body of `len` bytes to every request, on 127.0.0.1.
    async fn answering(status: u16, len: usize) -> String {
        let body = "x".repeat(len);
        let receiver = Receiver::always(Reply::status(status, &body)).await;
        receiver.url("/hook")
    }

    /// keel-core's bounded reader refuses an answer past the limit, where delivery.rs's own
    /// reader used to cut it there: such an answer is judged by its status and headers.
    #[tokio::test]
    async fn an_answer_past_the_limit_is_judged_by_its_status_alone() {
        let delivery = Delivery {
            client: reqwest::Client::new(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::none(),
        };
        let ctx = Context {
            who: "test",
            action: "deliver",
        };
        let send = |url: String| {
            let client = delivery.client.clone();
            delivery.send(ctx, move || client.post(&url), |a| ctx.check_status(a))
        };
        send(answering(200, MAX_ANSWER + 1).await).await.unwrap();
        let err = send(answering(500, MAX_ANSWER + 1).await)
            .await
            .unwrap_err();
        assert!(
            err.to_string().ends_with("HTTP 500 Internal Server Error"),
            "{err}"
        );
        let err = send(answering(500, 10).await).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("HTTP 500 Internal Server Error: xxxxxxxxxx"),
            "{err}"
        );
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(
            excerpt(b"  invalid_payload \n\n more "),
            "invalid_payload more"
        );
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn durations_print_to_the_millisecond() {
        assert_eq!(seconds(Duration::from_nanos(299_999_259)), "0.3s");
        assert_eq!(seconds(Duration::from_secs(10)), "10s");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25s");
    }

    #[test]
    fn slack_escaping_and_truncation() {
        assert_eq!(escape_slack("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert!(matches!(escape_slack("plain"), Cow::Borrowed(_)));
        assert_eq!(truncate("héllo".into(), 3), "hé…");
        assert_eq!(truncate("abc".into(), 3), "abc");
    }
}
