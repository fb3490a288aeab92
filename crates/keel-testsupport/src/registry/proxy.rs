//! A forwarding proxy on 127.0.0.1 that injects faults into a registry's answers and counts
//! the requests it sees.
//!
//! Requests are forwarded unchanged (the `Host` header too, so upload `Location`s point back at
//! the proxy). Each [`FaultRule`] matches requests by method and a substring of the path and
//! query, counts the requests it matched, and applies to matches `skip + 1 ..= skip + times`;
//! when several rules apply to one request the first one in the list wins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

use super::http::{Body, BodyError, full, respond, serve};

/// What to do to a matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, headers and body instead of forwarding.
    Respond {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body (sent as `application/json`).
        body: String,
    },
    /// Forward, but only after waiting this long.
    Delay(Duration),
    /// Forward, and send the first half of the body with a matching `Content-Length` (a
    /// complete HTTP response with a cut JSON document).
    TruncateBody,
    /// Forward, announce the full `Content-Length`, send half the body and drop the connection.
    AbortBody,
    /// Answer 200 with a valid JSON tags list of about `bytes` bytes, streamed in chunks;
    /// with or without a `Content-Length` header.
    Oversized {
        /// Body size.
        bytes: usize,
        /// Whether to announce the size up front.
        content_length: bool,
    },
    /// Forward, and set `Link: <this request's path and query>; rel="next"`, a page that
    /// names itself as the next one.
    LoopingLink,
}

impl Fault {
    /// 429 with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("retry-after".into(), retry_after_seconds.to_string())],
            body: error_body("TOOMANYREQUESTS", "slow down"),
        }
    }

    /// 429 with a `Retry-After` header of any value (an HTTP date, garbage, ...).
    pub fn too_many_requests_raw(retry_after: &str) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("retry-after".into(), retry_after.to_owned())],
            body: error_body("TOOMANYREQUESTS", "slow down"),
        }
    }

    /// `status` (500, 502, 503, 401, ...) with a distribution-style error body.
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: Vec::new(),
            body: error_body("UNKNOWN", "injected fault"),
        }
    }

    /// An oversized tags list with `Content-Length`.
    pub fn oversized(bytes: usize) -> Fault {
        Fault::Oversized {
            bytes,
            content_length: true,
        }
    }
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string()
}

/// A fault for some of the requests whose method and path match.
#[derive(Clone, Debug)]
pub struct FaultRule {
    method: Option<String>,
    path_contains: String,
    skip: usize,
    times: Option<usize>,
    fault: Fault,
}

impl FaultRule {
    /// `fault` for every request whose path (with query) contains `path_contains`.
    pub fn new(path_contains: &str, fault: Fault) -> FaultRule {
        FaultRule {
            method: None,
            path_contains: path_contains.to_owned(),
            skip: 0,
            times: None,
            fault,
        }
    }

    /// Only for requests with this method (`GET`, `HEAD`, ...).
    pub fn method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only for the first `n` matching requests (after the skipped ones).
    pub fn times(mut self, n: usize) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Let the first `n` matching requests through untouched.
    pub fn skip(mut self, n: usize) -> FaultRule {
        self.skip = n;
        self
    }

    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && path_and_query.contains(&self.path_contains)
    }
}

struct State {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Rules with how many requests each has matched.
    rules: Mutex<Vec<(FaultRule, usize)>>,
    /// `METHOD path-and-query` of every request, in order.
    log: Mutex<Vec<String>>,
    applied: AtomicUsize,
}

/// A running fault-injection proxy; stops on drop.
pub struct FaultProxy {
    addr: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`) with `faults`.
    pub async fn start(upstream: &str, faults: Vec<FaultRule>) -> FaultProxy {
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: Mutex::new(faults.into_iter().map(|rule| (rule, 0)).collect()),
            log: Mutex::new(Vec::new()),
            applied: AtomicUsize::new(0),
        });
        let handler_state = Arc::clone(&state);
        let (addr, task) = serve(move |request| {
            let state = Arc::clone(&handler_state);
            async move { handle(&state, request).await }
        })
        .await;
        FaultProxy {
            addr: addr.to_string(),
            state,
            task,
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rules (their match counts start at zero).
    pub fn set_faults(&self, faults: Vec<FaultRule>) {
        *self.state.rules.lock().expect("rules lock") =
            faults.into_iter().map(|rule| (rule, 0)).collect();
    }

    /// Adds a rule after the existing ones.
    pub fn add_fault(&self, fault: FaultRule) {
        self.state
            .rules
            .lock()
            .expect("rules lock")
            .push((fault, 0));
    }

    /// Removes every rule: from now on the proxy only forwards.
    pub fn clear_faults(&self) {
        self.state.rules.lock().expect("rules lock").clear();
    }

    /// How many requests got a fault so far.
    pub fn faults_applied(&self) -> usize {
        self.state.applied.load(Ordering::SeqCst)
    }

    /// Request counts per `METHOD /path` (without the query).
    pub fn requests(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for entry in self.state.log.lock().expect("log lock").iter() {
            let key = entry
                .split_once('?')
                .map_or(entry.as_str(), |(path, _)| path);
            *counts.entry(key.to_owned()).or_insert(0) += 1;
        }
        counts
    }

    /// Every request as `METHOD /path?query`, in order of arrival.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().expect("log lock").clone()
    }

    /// How many requests had `method` (any, if empty) and a path (with query) containing
    /// `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.state
            .log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|entry| {
                let (m, path) = entry.split_once(' ').unwrap_or(("", entry));
                (method.is_empty() || m.eq_ignore_ascii_case(method))
                    && path.contains(path_contains)
            })
            .count()
    }

    /// The number of requests seen so far.
    pub fn total(&self) -> usize {
        self.state.log.lock().expect("log lock").len()
    }

    /// Forgets the requests seen so far (the rules keep their counts).
    pub fn reset_counts(&self) {
        self.state.log.lock().expect("log lock").clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().as_str().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    state
        .log
        .lock()
        .expect("log lock")
        .push(format!("{method} {path_and_query}"));

    let fault = {
        let mut rules = state.rules.lock().expect("rules lock");
        let mut chosen = None;
        for (rule, seen) in rules.iter_mut() {
            if !rule.matches(&method, &path_and_query) {
                continue;
            }
            *seen += 1;
            let in_window = *seen > rule.skip && rule.times.is_none_or(|n| *seen <= rule.skip + n);
            if in_window && chosen.is_none() {
                chosen = Some(rule.fault.clone());
            }
        }
        chosen
    };
    if fault.is_some() {
        state.applied.fetch_add(1, Ordering::SeqCst);
    }

    match fault {
        None => forward(state, request).await,
        Some(Fault::Respond {
            status,
            headers,
            body,
        }) => {
            let mut response = respond(status, "application/json", body);
            for (name, value) in headers {
                response.headers_mut().insert(
                    HeaderName::try_from(name).expect("header name"),
                    HeaderValue::try_from(value).expect("header value"),
                );
            }
            response
        }
        Some(Fault::Delay(duration)) => {
            tokio::time::sleep(duration).await;
            forward(state, request).await
        }
        Some(Fault::TruncateBody) => {
            let (mut parts, bytes) = forward_collected(state, request).await;
            let cut = bytes.slice(..bytes.len() / 2);
            parts
                .headers
                .insert("content-length", HeaderValue::from(cut.len()));
            Response::from_parts(parts, full(cut))
        }
        Some(Fault::AbortBody) => {
            let (mut parts, bytes) = forward_collected(state, request).await;
            parts
                .headers
                .insert("content-length", HeaderValue::from(bytes.len()));
            let half = bytes.slice(..bytes.len() / 2);
            // The pause lets the headers and the first half go out before the connection drops.
            let frames = futures::stream::iter([Ok(Frame::data(half))]).chain(
                futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(BodyError::from("connection dropped by the fault proxy"))
                }),
            );
            Response::from_parts(parts, StreamBody::new(frames).boxed_unsync())
        }
        Some(Fault::Oversized {
            bytes,
            content_length,
        }) => oversized(bytes, content_length),
        Some(Fault::LoopingLink) => {
            let mut response = forward(state, request).await;
            let link = format!("<{path_and_query}>; rel=\"next\"");
            response
                .headers_mut()
                .insert("link", HeaderValue::try_from(link).expect("link header"));
            response
        }
    }
}

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends the request upstream; a 502 if the upstream cannot be reached.
async fn forward(state: &State, request: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return respond(400, "text/plain", format!("reading the request: {error}\n")),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    parts.uri = format!("http://{}{path_and_query}", state.upstream)
        .parse()
        .expect("upstream URI");
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    match state
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, body.map_err(BodyError::from).boxed_unsync())
        }
        Err(error) => respond(502, "text/plain", format!("upstream: {error}\n")),
    }
}

/// Forwards and reads the whole answer.
async fn forward_collected(
    state: &State,
    request: Request<Incoming>,
) -> (hyper::http::response::Parts, Bytes) {
    let (parts, body) = forward(state, request).await.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (parts, bytes)
}

/// A 200 with `{"name":"oversized","tags":["t0000000",...,"end"]}` of about `size` bytes.
fn oversized(size: usize, content_length: bool) -> Response<Body> {
    const PREFIX: &[u8] = b"{\"name\":\"oversized\",\"tags\":[";
    const SUFFIX: &[u8] = b"\"end\"]}";
    const ENTRY: usize = 11; // "t0000000",
    const PER_CHUNK: usize = 4096;
    let entries = size.saturating_sub(PREFIX.len() + SUFFIX.len()) / ENTRY;
    let total = PREFIX.len() + entries * ENTRY + SUFFIX.len();

    let chunk: Bytes = (0..PER_CHUNK)
        .map(|i| format!("\"t{i:07}\","))
        .collect::<String>()
        .into();
    let full_chunks = entries / PER_CHUNK;
    let rest = chunk.slice(..(entries % PER_CHUNK) * ENTRY);
    let body = futures::stream::once(async { Bytes::from_static(PREFIX) })
        .chain(futures::stream::iter(
            std::iter::repeat_n(chunk, full_chunks).chain([rest]),
        ))
        .chain(futures::stream::once(async { Bytes::from_static(SUFFIX) }))
        .map(|bytes| Ok::<_, BodyError>(Frame::data(bytes)));

    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    if content_length {
        builder = builder.header("content-length", total);
    }
    builder
        .body(StreamBody::new(body).boxed_unsync())
        .expect("valid response")
}
