//! A smart-HTTP Git server on 127.0.0.1: `git http-backend` run as a CGI program for requests
//! under `/git/`, behind basic auth with one user. It runs on a tokio runtime of its own
//! thread, so blocking tests cannot starve it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "keel-test-git";

/// The most CGI header bytes accepted from `git http-backend`.
const MAX_CGI_HEADER: usize = 64 * 1024;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// What the server serves and whom it lets in.
#[derive(Clone, Debug)]
pub(super) struct HttpConfig {
    /// The one user name accepted.
    pub(super) user: String,
    /// Its password (or token).
    pub(super) password: String,
    /// `GIT_PROJECT_ROOT`: the directory holding the bare repositories.
    pub(super) project_root: PathBuf,
    /// `HOME` of the backend processes (isolated from the machine's git config).
    pub(super) home: PathBuf,
}

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequestRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, e.g. `/git/app.git/info/refs?service=git-upload-pack`.
    pub path: String,
    /// The user of the `Authorization` header, if it had a readable one.
    pub user: Option<String>,
    /// The request's `Content-Length` (`None` for bodies sent chunked, and for no body).
    pub content_length: Option<u64>,
    /// The status sent back.
    pub status: u16,
}

#[derive(Default)]
struct Stats {
    requests: AtomicUsize,
    challenges: AtomicUsize,
    auth_failures: AtomicUsize,
    log: Mutex<Vec<HttpRequestRecord>>,
    backend_stderr: Arc<Mutex<String>>,
}

/// A running smart-HTTP server; stops on drop (killing backends still running).
pub(super) struct HttpGitServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpGitServer {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub(super) fn start(config: HttpConfig) -> HttpGitServer {
        let stats = Arc::new(Stats::default());
        let (addr_sender, addr_receiver) = std::sync::mpsc::channel();
        let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("git-http-server".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the HTTP git server");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1:0");
                    let addr = listener.local_addr().expect("local addr");
                    if addr_sender.send(addr).is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = shutdown_receiver => {}
                        () = accept_loop(listener, Arc::new(config), thread_stats) => {}
                    }
                });
                // Dropping the runtime ends the open connections; their backends are killed.
            })
            .expect("spawn the HTTP git server thread");
        let addr = addr_receiver
            .recv()
            .expect("the HTTP git server thread failed to start (see its panic above)");
        HttpGitServer {
            addr,
            stats,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far (all of them, answered 401 or not).
    pub(super) fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Requests without an `Authorization` header, answered 401 with a challenge. Git clients
    /// send one first even when they know the credentials, so these are normal.
    pub(super) fn challenges(&self) -> usize {
        self.stats.challenges.load(Ordering::SeqCst)
    }

    /// Requests with wrong or unreadable credentials (answered 401).
    pub(super) fn auth_failures(&self) -> usize {
        self.stats.auth_failures.load(Ordering::SeqCst)
    }

    /// Every request answered so far, in order.
    pub(super) fn log(&self) -> Vec<HttpRequestRecord> {
        self.stats.log.lock().expect("log lock").clone()
    }

    /// What the `git http-backend` processes wrote to stderr.
    pub(super) fn backend_stderr(&self) -> String {
        self.stats
            .backend_stderr
            .lock()
            .expect("stderr lock")
            .clone()
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<HttpConfig>, stats: Arc<Stats>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors or the like: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let config = Arc::clone(&config);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let config = Arc::clone(&config);
                let stats = Arc::clone(&stats);
                async move { Ok::<_, Infallible>(handle(&config, &stats, peer, request).await) }
            });
            // A client going away mid-response is not an error of the test server.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

enum Auth {
    /// No `Authorization` header.
    Missing,
    /// Wrong credentials (with the user name when readable).
    Wrong(Option<String>),
    /// The configured user.
    Granted(String),
}

fn authorize(config: &HttpConfig, headers: &HeaderMap) -> Auth {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Auth::Missing;
    };
    let Some((scheme, encoded)) = value.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return Auth::Wrong(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Auth::Wrong(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|text| text.split_once(':')) else {
        return Auth::Wrong(None);
    };
    if user == config.user && password == config.password {
        Auth::Granted(user.to_owned())
    } else {
        Auth::Wrong(Some(user.to_owned()))
    }
}

async fn handle(
    config: &HttpConfig,
    stats: &Stats,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let content_length = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok());
    let (user, response) = match authorize(config, request.headers()) {
        Auth::Missing => {
            stats.challenges.fetch_add(1, Ordering::SeqCst);
            (None, challenge())
        }
        Auth::Wrong(user) => {
            stats.auth_failures.fetch_add(1, Ordering::SeqCst);
            (user, challenge())
        }
        Auth::Granted(user) => {
            let response = match request.uri().path().strip_prefix("/git/") {
                Some(rest) => {
                    let path_info = format!("/{rest}");
                    run_backend(config, stats, peer, &user, &path_info, request).await
                }
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            };
            (Some(user), response)
        }
    };
    stats.log.lock().expect("log lock").push(HttpRequestRecord {
        method,
        path,
        user,
        content_length,
        status: response.status().as_u16(),
    });
    response
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn challenge() -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, "authentication required\n");
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")).expect("valid header"),
    );
    response
}

/// Runs `git http-backend` for one request: the request body streams to its stdin, its CGI
/// headers become the response's status and headers, the rest of its stdout streams back.
async fn run_backend(
    config: &HttpConfig,
    stats: &Stats,
    peer: SocketAddr,
    user: &str,
    path_info: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let mut command = tokio::process::Command::new("git");
    command.arg("http-backend").env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("HOME", &config.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GIT_PROJECT_ROOT", &config.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "keel-test-git")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("SCRIPT_NAME", "/git")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("AUTH_TYPE", "Basic")
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", peer.ip().to_string());
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        match name.as_str() {
            "authorization" => continue,
            "content-type" => {
                command.env("CONTENT_TYPE", value);
            }
            "content-length" => {
                command.env("CONTENT_LENGTH", value);
            }
            "git-protocol" => {
                command.env("GIT_PROTOCOL", value);
            }
            _ => {}
        }
        // The CGI convention for every header; http-backend reads HTTP_CONTENT_ENCODING
        // (gzip-compressed request bodies).
        let variable = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        command.env(variable, value);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot run git http-backend: {error}\n"),
            );
        }
    };

    // Without a Content-Length (chunked uploads) http-backend reads its stdin to the end.
    let mut stdin = child.stdin.take().expect("piped stdin");
    tokio::spawn(async move {
        let mut body = body;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && stdin.write_all(&data).await.is_err()
            {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    // The backend's complaints go to the server's stderr log, for failure messages of tests.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_log = Arc::clone(&stats.backend_stderr);
    let stderr_task = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        stderr_log.lock().expect("stderr lock").push_str(&text);
        text
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (status, headers) = match read_cgi_headers(&mut stdout).await {
        Ok(head) => head,
        Err(problem) => {
            let _ = child.wait().await;
            let message = stderr_task.await.unwrap_or_default();
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("git http-backend: {problem}: {message}\n"),
            );
        }
    };

    let body = futures::stream::unfold(Some((stdout, child)), |state| async move {
        let (mut stdout, mut child) = state?;
        let mut buffer = BytesMut::with_capacity(32 * 1024);
        match stdout.read_buf(&mut buffer).await {
            Ok(0) => {
                let _ = child.wait().await;
                None
            }
            Ok(_) => Some((Ok(Frame::data(buffer.freeze())), Some((stdout, child)))),
            Err(error) => Some((Err(error), None)),
        }
    });
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().append(name, value);
    }
    response
}

/// Reads the CGI header block: `Status: 404 Not Found` gives the status (200 without one),
/// the other lines become response headers.
async fn read_cgi_headers(
    stdout: &mut BufReader<tokio::process::ChildStdout>,
) -> Result<(StatusCode, Vec<(HeaderName, HeaderValue)>), String> {
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let read = stdout
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| format!("reading its output: {error}"))?;
        if read == 0 {
            return Err("no CGI header block (it ended early)".to_owned());
        }
        total += read;
        if total > MAX_CGI_HEADER {
            return Err("CGI header block too long".to_owned());
        }
        while line
            .last()
            .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
        {
            line.pop();
        }
        if line.is_empty() {
            return Ok((status, headers));
        }
        let line = String::from_utf8_lossy(&line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad CGI header line {line:?}"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or_else(|| format!("bad CGI status {value:?}"))?;
        } else {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("bad CGI header name {name:?}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("bad CGI header value {value:?}"))?;
            headers.push((name, value));
        }
    }
}
