//! A tower layer for the client's service stack that records every request it passes on, so
//! tests can assert which calls code under test made (e.g. no LIST at steady state).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Request;

/// One request as seen by the client: method, path and query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path, e.g. `/apis/apps/v1/namespaces/ns/deployments`.
    pub path: String,
    /// The query string without `?`, or `""`.
    pub query: String,
}

impl RecordedRequest {
    /// Whether this is a watch (`watch=true` or `watch=1` in the query).
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    }

    /// Whether this is a LIST: a GET of a collection that is not a watch. A collection path
    /// ends with the plural resource name (an even number of segments after the group
    /// version, e.g. `namespaces/ns/deployments` or `deployments`).
    pub fn is_list(&self) -> bool {
        if self.method != "GET" || self.is_watch() {
            return false;
        }
        let segments: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        // /api/v1/... or /apis/<group>/<version>/...
        let rest = match segments.as_slice() {
            ["api", _version, rest @ ..] => rest,
            ["apis", _group, _version, rest @ ..] => rest,
            _ => return false,
        };
        // collection: `<plural>` or `namespaces/<ns>/<plural>`; object: one more segment.
        matches!(rest, [_] | ["namespaces", _, _])
    }
}

/// The requests recorded by a [`CountingLayer`], shared with the test.
#[derive(Clone, Debug, Default)]
pub struct RequestLog {
    entries: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl RequestLog {
    /// Every request so far, in order.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries.lock().expect("request log").clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.entries.lock().expect("request log").clear();
    }

    /// The LIST requests so far.
    pub fn lists(&self) -> Vec<RecordedRequest> {
        self.all().into_iter().filter(|r| r.is_list()).collect()
    }

    /// The watch requests so far.
    pub fn watches(&self) -> Vec<RecordedRequest> {
        self.all().into_iter().filter(|r| r.is_watch()).collect()
    }

    /// The requests with `method` so far.
    pub fn with_method(&self, method: &str) -> Vec<RecordedRequest> {
        self.all()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    fn record<B>(&self, request: &Request<B>) {
        let entry = RecordedRequest {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
        };
        self.entries.lock().expect("request log").push(entry);
    }
}

/// Records each request into its [`RequestLog`] before passing it on.
#[derive(Clone, Debug)]
pub struct CountingLayer {
    log: RequestLog,
}

impl CountingLayer {
    /// A layer recording into `log`.
    pub fn new(log: RequestLog) -> CountingLayer {
        CountingLayer { log }
    }
}

impl<S> tower::Layer<S> for CountingLayer {
    type Service = CountingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountingService {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The service of a [`CountingLayer`].
#[derive(Clone, Debug)]
pub struct CountingService<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<Request<B>> for CountingService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.log.record(&request);
        self.inner.call(request)
    }
}
