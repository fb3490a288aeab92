//! What every HTTP notifier shares: name, level filter, templates, delivery settings.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use futures::future::join_all;

use keel_core::{Error, Event, ParseError};
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;
use tracing::debug;

use crate::delivery::{Answer, Context, Delivery, RetryPolicy};
use crate::level::Level;
use crate::template::{Templates, title};

/// The per-attempt timeout notifiers use unless told otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("keel-rs/", env!("CARGO_PKG_VERSION"));

/// Who a chat message says it is from, where the webhook lets the sender choose: a name and
/// the address of a picture. Discord and Mattermost take both, each naming the picture's field
/// its own way.
#[derive(Clone, Debug, Default)]
pub(crate) struct Poster {
    pub(crate) username: Option<String>,
    pub(crate) picture_url: Option<String>,
}

impl Poster {
    /// Sets `username` and `picture_key` in `payload` to what is chosen here; leaves out what
    /// is not.
    pub(crate) fn add_to(&self, payload: &mut serde_json::Value, picture_key: &str) {
        let fields = [
            ("username", &self.username),
            (picture_key, &self.picture_url),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                payload[key] = serde_json::Value::String(value.clone());
            }
        }
    }
}

/// The builder settings every notifier has.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) name: Option<String>,
    pub(crate) level: Level,
    pub(crate) templates: Templates,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) client: Option<reqwest::Client>,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            name: None,
            level: Level::default(),
            templates: Templates::default(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            client: None,
        }
    }
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug_struct(f, "Common").finish_non_exhaustive()
    }
}

impl Common {
    /// The `Debug` of a builder called `kind`: the settings every notifier has; the caller
    /// adds its own and finishes.
    pub(crate) fn debug_struct<'a, 'b: 'a>(
        &self,
        f: &'a mut fmt::Formatter<'b>,
        kind: &str,
    ) -> fmt::DebugStruct<'a, 'b> {
        let mut s = f.debug_struct(kind);
        s.field("name", &self.name)
            .field("level", &self.level)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry);
        s
    }

    /// The parts of a notifier that posts to one endpoint: its `url` parsed (errors call it
    /// `url_kind`) and its shared parts, named `default_name` unless a name was set.
    pub(crate) fn build_with_endpoint(
        self,
        default_name: &str,
        url_kind: &'static str,
        url: &str,
    ) -> Result<(Base, Url), Error> {
        let url = parse_endpoint(url_kind, url)?;
        Ok((self.build(default_name.to_owned())?, url))
    }

    /// The notifier's parts, named `default_name` unless a name was set.
    pub(crate) fn build(self, default_name: String) -> Result<Base, Error> {
        let name = self.name.unwrap_or(default_name);
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .user_agent(USER_AGENT)
                // A webhook that redirects is misconfigured; following it would resend the
                // body (and signature) to wherever the redirect points.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::Backend {
                    backend: name.clone(),
                    action: "build the HTTP client".into(),
                    message: e.without_url().to_string(),
                    retryable: false,
                    source: None,
                })?,
        };
        Ok(Base {
            name,
            level: self.level,
            templates: self.templates,
            delivery: Delivery {
                client,
                timeout: self.timeout,
                retry: self.retry,
            },
        })
    }
}

/// Generates the builder setters of [`Common`] for a builder with a `common` field.
macro_rules! common_setters {
    ($default_name:literal) => {
        /// Names the notifier in logs and errors; never put a secret in it.
        ///
        #[doc = concat!("Default: `", $default_name, "`.")]
        pub fn with_name(mut self, name: impl Into<String>) -> Self {
            self.common.name = Some(name.into());
            self
        }

        /// Delivers only events at or above `level` (default [`Level::Info`](crate::Level)).
        pub fn with_level(mut self, level: crate::Level) -> Self {
            self.common.level = level;
            self
        }

        /// Uses `templates` for the message text (default [`Templates::default`](crate::Templates)).
        pub fn with_templates(mut self, templates: crate::Templates) -> Self {
            self.common.templates = templates;
            self
        }

        /// Bounds each attempt (connect, send, read the answer) by `timeout` (default 10 s).
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.timeout = timeout;
            self
        }

        /// Retries by `policy` (default [`RetryPolicy::default`](crate::RetryPolicy)).
        pub fn with_retry(mut self, policy: crate::RetryPolicy) -> Self {
            self.common.retry = policy;
            self
        }

        /// Sends with `client` instead of a client of its own (one that does not follow
        /// redirects), e.g. to share connections or set a proxy.
        pub fn with_client(mut self, client: reqwest::Client) -> Self {
            self.common.client = Some(client);
            self
        }
    };
}
pub(crate) use common_setters;

/// Generates `build` for the builder of a notifier that posts to one endpoint: the builder's
/// `url` and `common` fields become the notifier's `url` (parsed; errors call it `$url_kind`)
/// and `base` (named `$default_name` unless a name was set), and each further `$field` moves
/// to the notifier as it is.
macro_rules! endpoint_build {
    ($notifier:ident, $default_name:literal, $url_kind:literal $(, $field:ident)* $(,)?) => {
        /// The notifier.
        ///
        /// # Errors
        /// [`Error::InvalidInput`](keel_core::Error::InvalidInput) for a URL that is not
        /// http(s) (the error shows only its scheme and host);
        /// [`Error::Backend`](keel_core::Error::Backend) if the HTTP client cannot be built.
        pub fn build(self) -> Result<$notifier, keel_core::Error> {
            let (base, url) = self
                .common
                .build_with_endpoint($default_name, $url_kind, &self.url)?;
            Ok($notifier {
                base,
                url,
                $($field: self.$field,)*
            })
        }
    };
}
pub(crate) use endpoint_build;

/// The [`Notifier`](keel_core::Notifier) impl of a notifier with a `base` field and an
/// inherent `async fn deliver(&self, event: &Event) -> Result<(), Error>`: it is named by its
/// base, and delivers the events its level filter lets through (nothing for the rest).
macro_rules! base_notifier {
    ($notifier:ident) => {
        #[async_trait::async_trait]
        impl keel_core::Notifier for $notifier {
            fn name(&self) -> &str {
                &self.base.name
            }

            async fn notify(&self, event: &keel_core::Event) -> Result<(), keel_core::Error> {
                if !self.base.accepts(event) {
                    return Ok(());
                }
                self.deliver(event).await
            }
        }
    };
}
pub(crate) use base_notifier;

/// The trait impls of a notifier that posts one JSON payload to one endpoint (a `base` and a
/// `url` field) and of its builder (a `common` field): `Debug` for both, showing no secret,
/// and [`Notifier`](keel_core::Notifier) (see [`base_notifier`]), which posts
/// `$payload(&notifier, event)` and judges the answer with `$check(ctx, answer)`.
macro_rules! json_notifier {
    ($notifier:ident, $builder:ident, $payload:expr, $check:expr) => {
        impl std::fmt::Debug for $notifier {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.base
                    .debug_struct(f, stringify!($notifier), ("endpoint", &self.url))
                    .finish_non_exhaustive()
            }
        }

        impl std::fmt::Debug for $builder {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.common
                    .debug_struct(f, stringify!($builder))
                    .finish_non_exhaustive()
            }
        }

        impl $notifier {
            async fn deliver(&self, event: &keel_core::Event) -> Result<(), keel_core::Error> {
                let action = $crate::common::Base::action(event);
                let payload = ($payload)(self, event);
                self.base
                    .post_json(&action, &self.url, &payload, $check)
                    .await
            }
        }

        $crate::common::base_notifier!($notifier);
    };
}
pub(crate) use json_notifier;

/// A built notifier's shared parts.
#[derive(Clone)]
pub(crate) struct Base {
    pub(crate) name: String,
    pub(crate) level: Level,
    pub(crate) templates: Templates,
    pub(crate) delivery: Delivery,
}

/// An event rendered for a chat.
pub(crate) struct Rendered {
    pub(crate) title: String,
    pub(crate) text: String,
    pub(crate) level: Level,
}

impl Base {
    /// Whether `event` passes the level filter; logs the ones it holds back.
    pub(crate) fn accepts(&self, event: &Event) -> bool {
        let ok = self.level.allows(event.kind);
        if !ok {
            debug!(
                notifier = %self.name,
                kind = %event.kind,
                min_level = %self.level,
                "event below the notifier's level; not sent"
            );
        }
        ok
    }

    /// What delivering `event` is called in errors.
    pub(crate) fn action(event: &Event) -> String {
        format!(
            "deliver the {} event for {}/{}",
            event.kind, event.plan.target, event.plan.id
        )
    }

    pub(crate) fn context<'a>(&'a self, action: &'a str) -> Context<'a> {
        Context {
            who: &self.name,
            action,
        }
    }

    /// The title and text of `event`, values passed through `escape`.
    pub(crate) fn render(&self, event: &Event, escape: &dyn Fn(&str) -> Cow<'_, str>) -> Rendered {
        Rendered {
            title: title(event.kind),
            text: self.templates.render_escaped(event, escape),
            level: Level::of(event.kind),
        }
    }

    /// Posts `body` as JSON to `url`, retrying by the policy, until `check` accepts an answer;
    /// errors say they happened while doing `action`.
    pub(crate) async fn post_json<C>(
        &self,
        action: &str,
        url: &Url,
        body: &serde_json::Value,
        check: C,
    ) -> Result<(), Error>
    where
        C: Fn(Context<'_>, &Answer<'_>) -> Result<(), Error>,
    {
        let ctx = self.context(action);
        let body = serde_json::to_vec(body).map_err(|e| ctx.backend(e.to_string(), false))?;
        self.delivery
            .send(
                ctx,
                || {
                    self.delivery
                        .client
                        .post(url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone())
                },
                |answer| check(ctx, answer),
            )
            .await
    }

    /// Delivers `event` to each of `channels` at once with `post`; one result for all, as
    /// [`combine`] makes it.
    pub(crate) async fn to_each_channel<'c, S, F, P>(
        &self,
        event: &Event,
        channels: &'c [S],
        post: P,
    ) -> Result<(), Error>
    where
        S: fmt::Display,
        P: Fn(&'c S) -> F,
        F: Future<Output = Result<(), Error>>,
    {
        let results = join_all(channels.iter().map(post)).await;
        let failures: Vec<(&S, Error)> = channels
            .iter()
            .zip(results)
            .filter_map(|(channel, result)| result.err().map(|e| (channel, e)))
            .collect();
        combine(self, event, "channels", failures)
    }

    /// The `Debug` of a built notifier called `kind`: its shared settings, then its endpoint
    /// `url` without what may be secret; the caller adds its own fields and finishes.
    pub(crate) fn debug_struct<'a, 'b: 'a>(
        &self,
        f: &'a mut fmt::Formatter<'b>,
        kind: &str,
        url: (&str, &Url),
    ) -> fmt::DebugStruct<'a, 'b> {
        let mut s = f.debug_struct(kind);
        s.field("name", &self.name)
            .field("level", &self.level)
            .field("timeout", &self.delivery.timeout)
            .field("retry", &self.delivery.retry)
            .field(url.0, &redact(url.1));
        s
    }
}

/// The channels an event goes to: the notifier's `own`, then the event's, trimmed, each once
/// (two are the same when their `key` is), none empty.
pub(crate) fn channels_for<'a>(
    own: &'a [String],
    event: &'a Event,
    key: fn(&str) -> &str,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for channel in own.iter().chain(&event.channels) {
        let channel = channel.trim();
        if !key(channel).is_empty() && !out.iter().any(|c| key(c) == key(channel)) {
            out.push(channel);
        }
    }
    out
}

/// One result for deliveries to several channels: success when none failed, the error when
/// one did, an error listing them all when several did.
pub(crate) fn combine<S: fmt::Display>(
    base: &Base,
    event: &Event,
    what: &str,
    mut failures: Vec<(S, Error)>,
) -> Result<(), Error> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0).1),
        n => {
            let retryable = failures.iter().any(|(_, e)| e.is_retryable());
            let list: Vec<String> = failures
                .iter()
                .map(|(channel, e)| format!("{channel}: {e}"))
                .collect();
            let action = Base::action(event);
            Err(base
                .context(&action)
                .backend(format!("{n} {what} failed: {}", list.join("; ")), retryable))
        }
    }
}

/// Parses an endpoint URL; errors show only its scheme and host, since webhook URLs carry
/// their secret in the path or query.
pub(crate) fn parse_endpoint(kind: &'static str, url: &str) -> Result<Url, Error> {
    let parsed = Url::parse(url.trim())
        .map_err(|e| ParseError::new(kind, "(hidden: it may hold a secret)", e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ParseError::new(
            kind,
            redact(&parsed),
            format!("scheme `{}` is not http or https", parsed.scheme()),
        )
        .into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ParseError::new(kind, redact(&parsed), "the URL has no host").into());
    }
    Ok(parsed)
}

/// `https://hooks.slack.com/…`: the URL without what may be secret.
pub(crate) fn redact(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() {
        out.push_str("/…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_errors_hide_the_secret() {
        let err = parse_endpoint("slack webhook URL", "hooks.slack.com/services/T0/B0/SECRET")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(err.contains("slack webhook URL"), "{err}");
        let err = parse_endpoint("webhook URL", "ftp://example.com/hook?token=SECRET")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(err.contains("scheme `ftp`"), "{err}");
        assert!(err.contains("ftp://example.com/…"), "{err}");
        let url = parse_endpoint("x", "http://127.0.0.1:8080/a/SECRET").unwrap();
        assert_eq!(redact(&url), "http://127.0.0.1:8080/…");
    }
}
