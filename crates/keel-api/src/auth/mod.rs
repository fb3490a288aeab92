//! Who may call the API: basic-auth users and bearer tokens, checked in constant time, each
//! with a role; and for whom a delegate token may vote.

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
///   `<token name>:<voter>` (e.g. `slack:T0001/U024BE7LH`), so a delegate can never vote
///   under another credential's name and one person counts once. It may name only the voters
///   the server was told to accept for it ([`ApiAuthBuilder::delegate_voters`]), so a leaked
///   delegate token cannot make up any number of distinct voters.
///
/// Each credential has a [`Role`]: `reader` may only read (requests, audit, metrics),
/// `approver` may also vote, `admin` may also delete requests. Basic users and bearer tokens
/// are `admin` and delegates `approver` unless given another role
/// ([`ApiAuthBuilder::with_role`]). A call beyond the role is answered 403.
///
/// Secrets are kept only as SHA-256 hashes and compared in constant time; `Debug` shows the
/// names and roles, never a secret.
///
/// ```
/// use keel_api::{ApiAuth, Role};
///
/// let auth = ApiAuth::builder()
///     .basic_user("alice", "correct horse battery staple")
///     .bearer_token("ci", "s3cr3t-token-for-ci")
///     .with_role("ci", Role::Reader)
///     .delegate_token("slack", "token-of-the-chat-bot")
///     .delegate_voters("slack", ["T0001/U024BE7LH", "T0002/*"])
///     .build()
///     .unwrap();
/// assert!(!format!("{auth:?}").contains("s3cr3t"));
///
/// // Never open by default, and never a delegate that may vote for anyone.
/// assert!(ApiAuth::builder().build().is_err());
/// assert!(ApiAuth::builder().delegate_token("slack", "t").build().is_err());
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
    role: Role,
}

struct TokenCredential {
    credential: Credential,
    /// `Some` for a delegate: the voters it may name.
    voters: Option<Arc<[VoterPattern]>>,
}

/// What a credential may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read requests, the audit log and metrics.
    Reader,
    /// Also vote (approve, reject).
    Approver,
    /// Also delete requests.
    Admin,
}

impl Role {
    /// The role's name in specs and messages: `reader`, `approver` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "reader" => Ok(Role::Reader),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(ParseError::new(
                "API credential role",
                other,
                "expected reader, approver or admin",
            )
            .into()),
        }
    }
}

/// A voter a delegate may name: an exact voter (`T0001/U024BE7LH`), or a prefix ending in
/// `*` (`T0001/*`: anyone whose voter starts with `T0001/`). A lone `*` is refused: it would
/// let the delegate vote for anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VoterPattern(String);

impl VoterPattern {
    fn parse(delegate: &str, pattern: &str) -> Result<Self, Error> {
        let pattern = pattern.trim();
        let bad = |reason: &str| -> Error {
            ParseError::new(
                "delegate voter pattern",
                pattern,
                format!("for delegate {delegate:?}: {reason}"),
            )
            .into()
        };
        let stem = pattern.strip_suffix('*').unwrap_or(pattern);
        if stem.is_empty() {
            return Err(bad(
                "a pattern must name a voter or a prefix of voters (a lone * would accept anyone)",
            ));
        }
        if stem.contains('*') {
            return Err(bad("* may only end a pattern"));
        }
        if stem.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("spaces and control characters are not allowed"));
        }
        Ok(VoterPattern(pattern.to_owned()))
    }

    fn matches(&self, voter: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => voter.len() > prefix.len() && voter.starts_with(prefix),
            None => voter == self.0,
        }
    }
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<String> = self
            .inner
            .users
            .iter()
            .map(|u| format!("{} ({})", u.name, u.role))
            .collect();
        let tokens: Vec<String> = self
            .inner
            .tokens
            .iter()
            .map(|t| match &t.voters {
                Some(voters) => {
                    let voters: Vec<&str> = voters.iter().map(|v| v.0.as_str()).collect();
                    format!(
                        "{} (delegate, {}, for {})",
                        t.credential.name,
                        t.credential.role,
                        voters.join(" ")
                    )
                }
                None => format!("{} ({})", t.credential.name, t.credential.role),
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
    roles: Vec<(String, Role)>,
    voters: Vec<(String, Vec<String>)>,
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
            .field("roles", &self.roles)
            .field("voters", &self.voters)
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
    /// are recorded as `<name>:<voter>`. The delegate needs the list of voters it may name
    /// ([`delegate_voters`](Self::delegate_voters)).
    pub fn delegate_token(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.tokens.push((name.into(), token.into(), true));
        self
    }

    /// Gives credential `name` another role than its default (`admin` for basic users and
    /// bearer tokens, `approver` for delegates).
    pub fn with_role(mut self, name: impl Into<String>, role: Role) -> Self {
        self.roles.push((name.into(), role));
        self
    }

    /// The voters delegate `name` may name: exact voters (`T0001/U024BE7LH`) or prefixes
    /// ending in `*` (`T0001/*`). A vote (or deletion) it makes for anyone else is refused
    /// with 403. Each call adds to the list.
    pub fn delegate_voters(
        mut self,
        name: impl Into<String>,
        patterns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.voters
            .push((name.into(), patterns.into_iter().map(Into::into).collect()));
        self
    }

    /// Adds the credentials of a spec string, comma-separated, as read from a config file or
    /// the environment: `<kind>[/<role>]:<name>:<secret>`, where the kind is `basic`,
    /// `bearer` or `delegate`, the role `reader`, `approver` or `admin` (the secret is
    /// everything after the second `:`).
    ///
    /// ```
    /// let auth = keel_api::ApiAuth::builder()
    ///     .parse_spec("basic:alice:pw-of-alice,bearer/reader:dash:dash-token,delegate:slack:bot-token")
    ///     .unwrap()
    ///     .parse_delegate_voters("slack=T0001/*")
    ///     .unwrap()
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(
    ///     format!("{auth:?}"),
    ///     r#"ApiAuth { basic_users: ["alice (admin)"], bearer_tokens: ["dash (reader)", "slack (delegate, approver, for T0001/*)"] }"#
    /// );
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
                    "expected <basic|bearer|delegate>[/<role>]:<name>:<secret>",
                )
                .into());
            };
            let (kind, role) = match kind.split_once('/') {
                Some((kind, role)) => (kind, Some(role)),
                None => (kind, None),
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
                        "the kind (before the first ':') must be basic, bearer or delegate, \
                         optionally with /reader, /approver or /admin",
                    )
                    .into());
                }
            };
            if let Some(role) = role {
                let role = role.parse::<Role>().map_err(|_| {
                    ParseError::new(
                        "API credential spec",
                        format!("item {} ({name})", n + 1),
                        "the role (after the '/') must be reader, approver or admin",
                    )
                })?;
                self = self.with_role(name, role);
            }
        }
        Ok(self)
    }

    /// Adds the voters of delegates from a spec string, as read from a config file or the
    /// environment: `<delegate>=<pattern>[,<pattern>...]`, several delegates separated by
    /// `;`, e.g. `slack=T0001/*,T0002/U024BE7LH`. See
    /// [`delegate_voters`](Self::delegate_voters) for the patterns.
    pub fn parse_delegate_voters(mut self, spec: &str) -> Result<Self, Error> {
        let items = spec.split(';').map(str::trim).filter(|s| !s.is_empty());
        for item in items {
            let Some((name, patterns)) = item.split_once('=') else {
                return Err(ParseError::new(
                    "delegate voters",
                    item,
                    "expected <delegate name>=<voter pattern>[,<voter pattern>...]",
                )
                .into());
            };
            let patterns: Vec<String> = patterns
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            self = self.delegate_voters(name.trim(), patterns);
        }
        Ok(self)
    }

    /// The credential set; an error when it is empty (the API is never open), when a name is
    /// empty, repeated or holds `:`, or a secret is empty, when a role or voter list names
    /// no such credential (voters: no such delegate), or when a delegate has no voters.
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
        for (name, _) in &self.roles {
            if !names.contains(&name.as_str()) {
                return Err(ParseError::new(
                    "API credential role",
                    name.as_str(),
                    "names no configured credential",
                )
                .into());
            }
        }
        let delegates: Vec<&str> = self
            .tokens
            .iter()
            .filter(|t| t.2)
            .map(|t| t.0.as_str())
            .collect();
        let mut voters: Vec<(&str, Vec<VoterPattern>)> =
            delegates.iter().map(|d| (*d, Vec::new())).collect();
        for (name, patterns) in &self.voters {
            let Some((_, list)) = voters.iter_mut().find(|(d, _)| d == name) else {
                return Err(ParseError::new(
                    "delegate voters",
                    name.as_str(),
                    "names no configured delegate token",
                )
                .into());
            };
            for pattern in patterns {
                list.push(VoterPattern::parse(name, pattern)?);
            }
        }
        if let Some((name, _)) = voters.iter().find(|(_, list)| list.is_empty()) {
            return Err(ParseError::new(
                "delegate token",
                *name,
                "no voters configured: list the voters it may vote for (exact, or a prefix \
                 ending in *), so that a leaked token cannot invent voters",
            )
            .into());
        }
        let role_of = |name: &str, default: Role| {
            self.roles
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or(default, |(_, r)| *r)
        };
        let users = self
            .users
            .iter()
            .map(|(name, secret)| Credential {
                name: name.clone(),
                hash: hash(secret.as_bytes()),
                role: role_of(name, Role::Admin),
            })
            .collect();
        let tokens = self
            .tokens
            .iter()
            .map(|(name, secret, delegate)| TokenCredential {
                credential: Credential {
                    name: name.clone(),
                    hash: hash(secret.as_bytes()),
                    role: role_of(
                        name,
                        if *delegate {
                            Role::Approver
                        } else {
                            Role::Admin
                        },
                    ),
                },
                voters: delegate.then(|| {
                    voters
                        .iter()
                        .find(|(d, _)| d == name)
                        .map(|(_, list)| Arc::from(list.clone()))
                        .unwrap_or_else(|| Arc::from(Vec::new()))
                }),
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

/// The kind of credential a request came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A basic-auth user.
    Basic,
    /// A bearer token acting as itself.
    Bearer,
    /// A delegate token acting for voters it names.
    Delegate,
}

/// Who made a request, as established by [`ApiAuth`]: the credential's name, kind and role,
/// and for a delegate the voters it may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    name: String,
    kind: CredentialKind,
    role: Role,
    voters: Arc<[VoterPattern]>,
}

impl Principal {
    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of credential.
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// The credential's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Refuses (`Error::Unauthorized`, 403) an `action` that needs `needed` when the
    /// credential's role is below it.
    pub fn require(&self, needed: Role, action: &str) -> Result<(), Error> {
        if self.role >= needed {
            return Ok(());
        }
        Err(Error::Unauthorized {
            action: action.to_owned(),
            reason: format!(
                "credential {:?} has the role {}; this needs {}",
                self.name,
                self.role,
                if needed == Role::Admin {
                    "admin"
                } else {
                    "approver or admin"
                }
            ),
        })
    }

    /// The identity a vote or deletion is recorded under, given the name the request body
    /// asked for: a user or token acts only as itself (`requested` must be absent or its own
    /// name); a delegate must name someone among the voters the server accepts for it, and
    /// acts as `<delegate>:<requested>`.
    pub fn acting_as(&self, requested: Option<&str>, action: &str) -> Result<String, Error> {
        let name = &self.name;
        match self.kind {
            CredentialKind::Basic | CredentialKind::Bearer => match requested {
                None => Ok(name.clone()),
                Some(r) if r == name => Ok(name.clone()),
                Some(r) => Err(Error::Unauthorized {
                    action: format!("{action} as {r:?}"),
                    reason: format!("credential {name:?} may only act as itself"),
                }),
            },
            CredentialKind::Delegate => match requested {
                Some(r) if !r.trim().is_empty() => {
                    let who = format!("{name}:{r}");
                    keel_core::approval::validate_voter(&who)?;
                    if !self.voters.iter().any(|p| p.matches(r)) {
                        return Err(Error::Unauthorized {
                            action: format!("{action} as {r:?}"),
                            reason: format!(
                                "delegate credential {name:?} may not act for {r:?}: it is not \
                                 among the voters the server accepts for this delegate"
                            ),
                        });
                    }
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
        found.map(|t| Principal {
            name: t.credential.name.clone(),
            kind: if t.voters.is_some() {
                CredentialKind::Delegate
            } else {
                CredentialKind::Bearer
            },
            role: t.credential.role,
            voters: t.voters.clone().unwrap_or_else(|| Arc::from(Vec::new())),
        })
    }

    pub(crate) fn check_basic(&self, user: &str, password: &str) -> Option<Principal> {
        let given = hash(password.as_bytes());
        let mut found: Option<&Credential> = None;
        for u in &self.inner.users {
            let name_eq = u.name.as_bytes().ct_eq(user.as_bytes());
            let pass_eq = u.hash.ct_eq(&given);
            if bool::from(name_eq & pass_eq) {
                found = Some(u);
            }
        }
        found.map(|u| Principal {
            name: u.name.clone(),
            kind: CredentialKind::Basic,
            role: u.role,
            voters: Arc::from(Vec::new()),
        })
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
mod tests;
