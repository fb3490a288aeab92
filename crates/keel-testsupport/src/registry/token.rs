//! A test token issuer for registries with bearer-token auth.
//!
//! At start it makes a self-signed CA and a leaf certificate for a fresh ECDSA P-256 key, writes
//! the CA to a PEM bundle (the registry's `auth.token.rootcertbundle`) and serves
//! `GET /token?service=...&scope=repository:<name>:<actions>` on 127.0.0.1. Tokens are ES256
//! JWTs whose header carries `x5c` = [leaf, CA]; the registry verifies the chain against the
//! bundle and the signature with the leaf's key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::body::Incoming;
use hyper::{Request, Response};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use tokio::task::JoinHandle;

use super::http::{Body, respond, serve};
use crate::tls::TestCa;

/// The `service` (JWT audience) the issuer and the registries it serves agree on.
pub const SERVICE: &str = "keel-test-registry";
/// The `iss` of the tokens.
pub const ISSUER: &str = "keel-test-issuer";

/// One token the issuer handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The authenticated user, or `""` for an anonymous token.
    pub subject: String,
    /// The granted scopes, as `repository:<name>:<action>[,<action>]`.
    pub scopes: Vec<String>,
}

struct State {
    user: String,
    password: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// `x5c`: base64 (standard, padded) DER of the leaf, then the CA.
    chain: Vec<String>,
    anonymous_pull: AtomicBool,
    expires_in: AtomicU64,
    requests: AtomicUsize,
    issued: AtomicUsize,
    log: Mutex<Vec<IssuedToken>>,
}

/// A running token issuer; stops on drop.
pub struct TokenIssuer {
    addr: SocketAddr,
    state: Arc<State>,
    dir: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl TokenIssuer {
    /// Starts an issuer that accepts `user`/`password` (basic auth on the token request).
    /// Anonymous requests are refused until [`TokenIssuer::set_anonymous_pull`] allows them.
    pub async fn start(user: &str, password: &str) -> TokenIssuer {
        let (ca_pem, chain, key) = make_certificates();
        let dir = tempfile::Builder::new()
            .prefix("keel-token-issuer")
            .tempdir()
            .expect("temporary directory");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write the CA bundle");
        let state = Arc::new(State {
            user: user.to_owned(),
            password: password.to_owned(),
            key,
            rng: SystemRandom::new(),
            chain,
            anonymous_pull: AtomicBool::new(false),
            expires_in: AtomicU64::new(300),
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let handler_state = Arc::clone(&state);
        let (addr, task) = serve(move |request| {
            let state = Arc::clone(&handler_state);
            async move { handle(&state, &request) }
        })
        .await;
        TokenIssuer {
            addr,
            state,
            dir,
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The token endpoint: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The service name (JWT audience) registries must be configured with.
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The issuer name (`iss`) registries must be configured with.
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The PEM bundle with the CA the registry must trust.
    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The user and password the issuer accepts.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.state.user, &self.state.password)
    }

    /// How many tokens were issued so far (refused requests do not count).
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// How many token requests arrived so far, refused or not.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every issued token's subject and scopes, in order.
    pub fn log(&self) -> Vec<IssuedToken> {
        self.state.log.lock().expect("log lock").clone()
    }

    /// Whether requests without credentials get (pull-only) tokens instead of a 401.
    pub fn set_anonymous_pull(&self, allowed: bool) {
        self.state.anonymous_pull.store(allowed, Ordering::SeqCst);
    }

    /// The lifetime of the next tokens (`expires_in` and `exp - iat`), 300 s by default.
    /// The registry allows 60 s of clock skew past `exp`.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Mints a token directly (not counted in [`TokenIssuer::issued`]), e.g. for raw requests
    /// in tests. `scopes` are `repository:<name>:<actions>`.
    pub fn mint(&self, subject: &str, scopes: &[&str]) -> String {
        let access: Vec<(String, String, Vec<String>)> = scopes
            .iter()
            .filter_map(|scope| parse_scope(scope))
            .collect();
        sign_token(&self.state, subject, &access)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes the CA and leaf certificates; returns the CA's PEM, the `x5c` chain and the leaf key.
fn make_certificates() -> (String, Vec<String>, EcdsaKeyPair) {
    let ca = TestCa::generate("keel test token CA");
    let leaf = ca.signing_leaf("keel test token signer");
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        leaf.key.serialized_der(),
        &SystemRandom::new(),
    )
    .expect("the leaf key as a ring key");
    let chain = vec![
        STANDARD.encode(leaf.cert.der().as_ref()),
        STANDARD.encode(ca.der()),
    ];
    (ca.pem(), chain, key)
}

/// `repository:<name>:<a>,<b>` → (type, name, actions); `None` for anything malformed.
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let actions = actions
        .split(',')
        .filter(|action| !action.is_empty())
        .map(str::to_owned)
        .collect();
    Some((kind.to_owned(), name.to_owned(), actions))
}

fn handle(state: &State, request: &Request<Incoming>) -> Response<Body> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if request.uri().path() != "/token" {
        return respond(404, "text/plain", "not found\n");
    }
    if request.method() != hyper::Method::GET {
        return respond(405, "text/plain", "only GET\n");
    }

    let mut service = None;
    let mut scopes = Vec::new();
    for (key, value) in query_pairs(request.uri().query().unwrap_or("")) {
        match key.as_str() {
            "service" => service = Some(value),
            // Several scope parameters, or several space-separated scopes in one.
            "scope" => scopes.extend(
                value
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    if service.as_deref().is_some_and(|service| service != SERVICE) {
        return respond(
            400,
            "application/json",
            r#"{"errors":[{"code":"UNSUPPORTED","message":"unknown service"}]}"#,
        );
    }

    let subject = match basic_credentials(request) {
        Some((user, password)) if user == state.user && password == state.password => user,
        Some(_) => return unauthorized(),
        None if state.anonymous_pull.load(Ordering::SeqCst) => String::new(),
        None => return unauthorized(),
    };

    let mut access = Vec::new();
    for scope in &scopes {
        let Some((kind, name, actions)) = parse_scope(scope) else {
            return respond(
                400,
                "application/json",
                r#"{"errors":[{"code":"INVALID_SCOPE"}]}"#,
            );
        };
        let granted: Vec<String> = actions
            .into_iter()
            .filter(|action| {
                if subject.is_empty() {
                    action == "pull"
                } else {
                    matches!(action.as_str(), "pull" | "push" | "delete" | "*")
                }
            })
            .collect();
        access.push((kind, name, granted));
    }

    let token = sign_token(state, &subject, &access);
    state.issued.fetch_add(1, Ordering::SeqCst);
    state.log.lock().expect("log lock").push(IssuedToken {
        subject,
        scopes: access
            .iter()
            .map(|(kind, name, actions)| format!("{kind}:{name}:{}", actions.join(",")))
            .collect(),
    });
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": state.expires_in.load(Ordering::SeqCst),
        "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    respond(200, "application/json", body.to_string())
}

fn unauthorized() -> Response<Body> {
    let mut response = respond(
        401,
        "application/json",
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    );
    response.headers_mut().insert(
        "www-authenticate",
        hyper::header::HeaderValue::from_static("Basic realm=\"keel-test-issuer\""),
    );
    response
}

/// The user and password of a `Authorization: Basic` header, if any.
fn basic_credentials(request: &Request<Incoming>) -> Option<(String, String)> {
    let value = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Decodes `a=b&c=d` with percent-escapes and `+` as space.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn hex(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b'+', None) => {
                    out.push(b' ');
                    i += 1;
                }
                (byte, None) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn sign_token(state: &State, subject: &str, access: &[(String, String, Vec<String>)]) -> String {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let now = chrono::Utc::now().timestamp();
    let expires_in = i64::try_from(state.expires_in.load(Ordering::SeqCst)).unwrap_or(i64::MAX);
    let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": state.chain });
    let access: Vec<serde_json::Value> = access
        .iter()
        .map(|(kind, name, actions)| json!({ "type": kind, "name": name, "actions": actions }))
        .collect();
    let claims = json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now.saturating_add(expires_in),
        "nbf": now - 1,
        "iat": now,
        "jti": format!("keel-test-{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = state
        .key
        .sign(&state.rng, signing_input.as_bytes())
        .expect("ES256 signature");
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

/// Claims of a JWT (no verification), for assertions in tests.
pub fn token_claims(token: &str) -> BTreeMap<String, serde_json::Value> {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
