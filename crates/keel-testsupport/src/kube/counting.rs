//! A log of every request a client sends, so tests can assert which calls code under test
//! made (e.g. no LIST at steady state). It records through an [`InterceptLayer`] hook.
//!
//! [`InterceptLayer`]: super::InterceptLayer

use std::sync::{Arc, Mutex};

use http::Request;

use super::Hook;

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
    /// The method, path and query of `request`.
    pub fn of<B>(request: &Request<B>) -> RecordedRequest {
        RecordedRequest {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
        }
    }

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

/// The requests recorded by the hook of [`RequestLog::hook`], shared with the test.
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

    /// A hook (for an [`InterceptLayer`](super::InterceptLayer)) that records every request
    /// into this log and delays none.
    pub fn hook(&self) -> Hook {
        let log = self.clone();
        Arc::new(move |request| {
            log.entries
                .lock()
                .expect("request log")
                .push(request.clone());
            None
        })
    }
}
