//! Who may call the API: basic-auth users and bearer tokens, checked in constant time.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use keel_core::{Error, ParseError};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::error_body;

/// The credentials the API accepts. There is no way to build one that lets everybody in:
/// [`ApiAuthBuilder::build`] refuses an empty set.
///
/// Three kinds of credential:
/// - a **basic** user (`Authorization: Basic ...`) votes and deletes as its user name;
/// - a **bearer token** (`Authorization: Bearer ...`) votes and deletes as the token's name;
/// - a **delegate token** is a bearer token for a front end that acts for many people, such
///   as the chat bot: it names the voter in each request, and the vote is recorded as
///   `<token name>:<voter>` (e.g. `slack:U024BE7LH`), so a delegate can never vote under
///   another credential's name and one person counts once.
///
/// Secrets are kept only as SHA-256 hashes and compared in constant time; `Debug` shows the
/// names, never a secret.
///
/// ```
/// use keel_api::ApiAuth;
///
/// let auth = ApiAuth::builder()
///     .basic_user("alice", "correct horse battery staple")
///     .bearer_token("ci", "s3cr3t-token-for-ci")
///     .delegate_token("slack", "token-of-the-chat-bot")
///     .build()
///     .unwrap();
/// assert!(!format!("{auth:?}").contains("s3cr3t"));
///
/// // Never open by default.
/// assert!(ApiAuth::builder().build().is_err());
/// ```
#[derive(Clone)]
pub struct ApiAuth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    users: Vec<Credential>,
    tokens: Vec<TokenCredential>,
}

struct Credential {
    name: String,
    hash: [u8; 32],
}

struct TokenCredential {
    credential: Credential,
    delegate: bool,
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self.inner.users.iter().map(|u| u.name.as_str()).collect();
        let tokens: Vec<String> = self
            .inner
            .tokens
            .iter()
            .map(|t| {
                if t.delegate {
                    format!("{} (delegate)", t.credential.name)
                } else {
                    t.credential.name.clone()
                }
            })
            .collect();
        f.debug_struct("ApiAuth")
            .field("basic_users", &users)
            .field("bearer_tokens", &tokens)
            .finish()
    }
}

/// Builds an [`ApiAuth`]; see there.
#[derive(Default)]
pub struct ApiAuthBuilder {
    users: Vec<(String, String)>,
    tokens: Vec<(String, String, bool)>,
}

impl fmt::Debug for ApiAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAuthBuilder")
            .field(
                "basic_users",
                &self.users.iter().map(|u| &u.0).collect::<Vec<_>>(),
            )
            .field(
                "bearer_tokens",
                &self.tokens.iter().map(|t| &t.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ApiAuthBuilder {
    /// Accepts HTTP basic authentication as `user` with `password`.
    pub fn basic_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((user.into(), password.into()));
        self
    }

    /// Accepts `Authorization: Bearer <token>`; the caller acts as `name`.
    pub fn bearer_token(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.tokens.push((name.into(), token.into(), false));
        self
    }

    /// Accepts `Authorization: Bearer <token>` for a front end that votes for others; votes
    /// are recorded as `<name>:<voter>`.
    pub fn delegate_token(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.tokens.push((name.into(), token.into(), true));
        self
    }

    /// Adds the credentials of a spec string, comma-separated, as read from a config file or
    /// the environment: `basic:<user>:<password>`, `bearer:<name>:<token>` or
    /// `delegate:<name>:<token>` (the secret is everything after the second `:`).
    ///
    /// ```
    /// let auth = keel_api::ApiAuth::builder()
    ///     .parse_spec("basic:alice:pw-of-alice,delegate:slack:bot-token")
    ///     .unwrap()
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(format!("{auth:?}"), r#"ApiAuth { basic_users: ["alice"], bearer_tokens: ["slack (delegate)"] }"#);
    /// ```
    pub fn parse_spec(mut self, spec: &str) -> Result<Self, Error> {
        let items = spec.split(',').map(str::trim).filter(|s| !s.is_empty());
        for (n, item) in items.enumerate() {
            let mut parts = item.splitn(3, ':');
            let kind = parts.next().unwrap_or_default();
            let (Some(name), Some(secret)) = (parts.next(), parts.next()) else {
                // The item may be a bare secret: name only its position.
                return Err(ParseError::new(
                    "API credential spec",
                    format!("item {}", n + 1),
                    "expected <basic|bearer|delegate>:<name>:<secret>",
                )
                .into());
            };
            self = match kind {
                "basic" => self.basic_user(name, secret),
                "bearer" => self.bearer_token(name, secret),
                "delegate" => self.delegate_token(name, secret),
                _ => {
                    // The first field may be a secret itself: name only the position.
                    return Err(ParseError::new(
                        "API credential spec",
                        format!("item {}", n + 1),
                        "the kind (before the first ':') must be basic, bearer or delegate",
                    )
                    .into());
                }
            };
        }
        Ok(self)
    }

    /// The credential set; an error when it is empty (the API is never open), or when a name
    /// is empty, repeated or holds `:`, or a secret is empty.
    pub fn build(self) -> Result<ApiAuth, Error> {
        if self.users.is_empty() && self.tokens.is_empty() {
            return Err(ParseError::new(
                "API authentication",
                "",
                "no basic users or bearer tokens configured; the API is never open to everybody",
            )
            .into());
        }
        let mut names: Vec<&str> = Vec::new();
        let all = self
            .users
            .iter()
            .map(|(n, s)| (n, s))
            .chain(self.tokens.iter().map(|(n, s, _)| (n, s)));
        for (name, secret) in all {
            check_name(name)?;
            if names.contains(&name.as_str()) {
                return Err(ParseError::new(
                    "API credential name",
                    name.as_str(),
                    "used by more than one credential",
                )
                .into());
            }
            names.push(name);
            if secret.is_empty() {
                return Err(ParseError::new(
                    "API credential",
                    name.as_str(),
                    "the password or token is empty",
                )
                .into());
            }
        }
        let users = self
            .users
            .iter()
            .map(|(name, secret)| Credential {
                name: name.clone(),
                hash: hash(secret.as_bytes()),
            })
            .collect();
        let tokens = self
            .tokens
            .iter()
            .map(|(name, secret, delegate)| TokenCredential {
                credential: Credential {
                    name: name.clone(),
                    hash: hash(secret.as_bytes()),
                },
                delegate: *delegate,
            })
            .collect();
        Ok(ApiAuth {
            inner: Arc::new(AuthInner { users, tokens }),
        })
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(ParseError::new("API credential name", name, "must not be empty").into());
    }
    if let Some(pos) = name.find(|c: char| c == ':' || c.is_control()) {
        return Err(ParseError::new(
            "API credential name",
            name,
            "':' and control characters are not allowed",
        )
        .at(pos, pos + 1)
        .into());
    }
    Ok(())
}

fn hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Who made a request, as established by [`ApiAuth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A basic-auth user.
    User(String),
    /// A bearer token acting as itself.
    Token(String),
    /// A delegate token acting for voters it names.
    Delegate(String),
}

impl Principal {
    /// The credential's name.
    pub fn name(&self) -> &str {
        match self {
            Principal::User(n) | Principal::Token(n) | Principal::Delegate(n) => n,
        }
    }

    /// The identity a vote or deletion is recorded under, given the name the request body
    /// asked for: a user or token acts only as itself (`requested` must be absent or its own
    /// name); a delegate must name someone and acts as `<delegate>:<requested>`.
    pub fn acting_as(&self, requested: Option<&str>, action: &str) -> Result<String, Error> {
        match self {
            Principal::User(name) | Principal::Token(name) => match requested {
                None => Ok(name.clone()),
                Some(r) if r == name => Ok(name.clone()),
                Some(r) => Err(Error::Unauthorized {
                    action: format!("{action} as {r:?}"),
                    reason: format!("credential {name:?} may only act as itself"),
                }),
            },
            Principal::Delegate(name) => match requested {
                Some(r) if !r.trim().is_empty() => {
                    let who = format!("{name}:{r}");
                    keel_core::approval::validate_voter(&who)?;
                    Ok(who)
                }
                _ => Err(ParseError::new(
                    "voter",
                    requested.unwrap_or_default(),
                    format!("delegate credential {name:?} must name the voter it acts for"),
                )
                .into()),
            },
        }
    }
}

impl ApiAuth {
    /// An empty builder.
    pub fn builder() -> ApiAuthBuilder {
        ApiAuthBuilder::default()
    }

    /// Who the `Authorization` header names, if its credentials are valid.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Principal> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.check_token(rest)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, password) = decoded.split_once(':')?;
            self.check_basic(user, password)
        } else {
            None
        }
    }

    fn check_token(&self, token: &str) -> Option<Principal> {
        let given = hash(token.as_bytes());
        // Compare against every token, without stopping at a match, so the time taken does
        // not tell which (or whether an early) token matched.
        let mut found: Option<&TokenCredential> = None;
        for t in &self.inner.tokens {
            let eq: bool = t.credential.hash.ct_eq(&given).into();
            if eq {
                found = Some(t);
            }
        }
        found.map(|t| {
            if t.delegate {
                Principal::Delegate(t.credential.name.clone())
            } else {
                Principal::Token(t.credential.name.clone())
            }
        })
    }

    fn check_basic(&self, user: &str, password: &str) -> Option<Principal> {
        let given = hash(password.as_bytes());
        let mut found: Option<&Credential> = None;
        for u in &self.inner.users {
            let name_eq = u.name.as_bytes().ct_eq(user.as_bytes());
            let pass_eq = u.hash.ct_eq(&given);
            if bool::from(name_eq & pass_eq) {
                found = Some(u);
            }
        }
        found.map(|u| Principal::User(u.name.clone()))
    }

    fn challenges(&self) -> Vec<HeaderValue> {
        let mut v = Vec::new();
        if !self.inner.users.is_empty() {
            v.push(HeaderValue::from_static(
                r#"Basic realm="keel", charset="UTF-8""#,
            ));
        }
        if !self.inner.tokens.is_empty() {
            v.push(HeaderValue::from_static(r#"Bearer realm="keel""#));
        }
        v
    }
}

/// Middleware: lets authenticated requests through with their [`Principal`] as a request
/// extension; answers everything else with 401 and `WWW-Authenticate`.
pub(crate) async fn require_auth(
    State(auth): State<ApiAuth>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.authenticate(request.headers()) {
        Some(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        None => {
            let reason = if request.headers().contains_key(AUTHORIZATION) {
                "the credentials are not valid"
            } else {
                "authentication is required (basic or bearer)"
            };
            tracing::debug!(path = %request.uri().path(), reason, "refused API request");
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(error_body("unauthorized", reason)),
            )
                .into_response();
            for c in auth.challenges() {
                response.headers_mut().append(WWW_AUTHENTICATE, c);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        let raw = format!("{user}:{pass}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    fn auth() -> ApiAuth {
        ApiAuth::builder()
            .basic_user("alice", "pw-a")
            .bearer_token("ci", "tok-ci")
            .delegate_token("slack", "tok-slack")
            .build()
            .unwrap()
    }

    #[test]
    fn accepts_each_kind_and_refuses_wrong_ones() {
        let a = auth();
        assert_eq!(
            a.authenticate(&headers(&basic("alice", "pw-a"))),
            Some(Principal::User("alice".into()))
        );
        assert_eq!(a.authenticate(&headers(&basic("alice", "pw-b"))), None);
        assert_eq!(a.authenticate(&headers(&basic("bob", "pw-a"))), None);
        assert_eq!(
            a.authenticate(&headers("Bearer tok-ci")),
            Some(Principal::Token("ci".into()))
        );
        assert_eq!(
            a.authenticate(&headers("bearer tok-slack")),
            Some(Principal::Delegate("slack".into()))
        );
        assert_eq!(a.authenticate(&headers("Bearer tok-c")), None);
        assert_eq!(a.authenticate(&headers("Bearer ")), None);
        assert_eq!(a.authenticate(&headers("Digest tok-ci")), None);
        assert_eq!(a.authenticate(&HeaderMap::new()), None);
    }

    #[test]
    fn refuses_empty_and_bad_sets() {
        assert!(ApiAuth::builder().build().is_err());
        assert!(ApiAuth::builder().bearer_token("a", "").build().is_err());
        assert!(ApiAuth::builder().bearer_token("", "x").build().is_err());
        assert!(ApiAuth::builder().bearer_token("a:b", "x").build().is_err());
        let dup = ApiAuth::builder()
            .bearer_token("a", "x")
            .basic_user("a", "y")
            .build()
            .unwrap_err();
        assert!(dup.to_string().contains("more than one"), "{dup}");
    }

    #[test]
    fn spec_errors_never_show_the_secret() {
        let e = ApiAuth::builder()
            .parse_spec("token:ci:hunter2")
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("basic, bearer or delegate"), "{e}");
        let e = ApiAuth::builder().parse_spec("hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn acting_as_binds_voters() {
        let user = Principal::User("alice".into());
        assert_eq!(user.acting_as(None, "vote").unwrap(), "alice");
        assert_eq!(user.acting_as(Some("alice"), "vote").unwrap(), "alice");
        assert!(matches!(
            user.acting_as(Some("bob"), "vote"),
            Err(Error::Unauthorized { .. })
        ));
        let bot = Principal::Delegate("slack".into());
        assert_eq!(bot.acting_as(Some("U1"), "vote").unwrap(), "slack:U1");
        assert!(matches!(
            bot.acting_as(None, "vote"),
            Err(Error::InvalidInput(_))
        ));
    }
}
