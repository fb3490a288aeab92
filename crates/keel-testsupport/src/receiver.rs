//! HTTP receivers on 127.0.0.1 for tests of code that calls out (feature `receiver`):
//! [`serve_router`] serves any axum router, [`Receiver`] records every request and answers
//! from a script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// Serves `router` on a free port of 127.0.0.1 until the test's runtime ends; its address.
pub async fn serve_router(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The value of header `name`, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Status, extra headers, body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Never answers.
    Hang,
}

impl Reply {
    /// `code` with a text body.
    pub fn status(code: u16, body: &str) -> Reply {
        Reply::Answer(code, Vec::new(), body.to_owned())
    }

    /// 200 `ok`.
    pub fn ok() -> Reply {
        Reply::status(200, "ok")
    }

    /// `code` with a JSON body.
    pub fn json(code: u16, body: serde_json::Value) -> Reply {
        Reply::Answer(
            code,
            vec![("content-type", "application/json".into())],
            body.to_string(),
        )
    }
}

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
}

/// The receiver; it runs until the test's runtime ends.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.requests.lock().unwrap().push(Recorded {
        method,
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| inner.default.clone());
    match reply {
        Reply::Answer(code, extra, body) => {
            let mut headers = HeaderMap::new();
            for (name, value) in extra {
                headers.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).unwrap(),
                );
            }
            (StatusCode::from_u16(code).unwrap(), headers, body).into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

impl Receiver {
    /// Starts a receiver answering `script` in order, then `default` forever.
    pub async fn start(script: Vec<Reply>, default: Reply) -> Receiver {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
            default,
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = serve_router(app).await;
        Receiver { addr, inner }
    }

    /// A receiver answering everything with `reply`.
    pub async fn always(reply: Reply) -> Receiver {
        Receiver::start(Vec::new(), reply).await
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived, at most 5 s.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let requests = self.requests();
            if requests.len() >= n || Instant::now() > deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens.
pub async fn refused_url(path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{path}")
}
