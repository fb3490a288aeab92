//! Who is looking: the session cookie, the `Authorization` header, the CSRF token and the
//! same-site check of every POST, and the login and logout forms.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Dash, SESSION_COOKIE, SESSION_LIFETIME, forbidden, pages, see_other};
use crate::auth::{CredentialKind, Role};

/// Who is looking at a page: from the session cookie or an `Authorization` header.
#[derive(Clone, Debug)]
pub(crate) struct Viewer {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
}

impl Viewer {
    pub(crate) fn may_vote(&self) -> bool {
        self.role >= Role::Approver
    }

    pub(crate) fn may_delete(&self) -> bool {
        self.role >= Role::Admin
    }
}

impl Dash {
    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.inner.key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    fn sign(&self, domain: &str, data: &str) -> String {
        let tag = self
            .mac(&[domain.as_bytes(), data.as_bytes()])
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// The cookie value of a new session: `base64(user|role|expiry).base64(hmac)`.
    fn session_value(&self, user: &str, role: Role, expiry: DateTime<Utc>) -> String {
        let payload = format!("{user}|{role}|{}", expiry.timestamp());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            self.sign("session", &payload)
        )
    }

    fn open_session(&self, value: &str, now: DateTime<Utc>) -> Option<Viewer> {
        let (payload, tag) = value.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(&[b"session", payload.as_bytes()])
            .verify_slice(&tag)
            .ok()?;
        let mut fields = payload.rsplitn(3, '|');
        let expiry: i64 = fields.next()?.parse().ok()?;
        let role: Role = fields.next()?.parse().ok()?;
        let name = fields.next()?.to_owned();
        if now.timestamp() >= expiry {
            return None;
        }
        Some(Viewer {
            name,
            role,
            csrf: self.sign("csrf", value),
        })
    }

    pub(super) fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        if let Some(v) =
            cookie(headers, SESSION_COOKIE).and_then(|c| self.open_session(c, Utc::now()))
        {
            return Some(v);
        }
        let principal = self.config().auth.authenticate(headers)?;
        if principal.kind() == CredentialKind::Delegate {
            // A delegate acts only for the voters it names; the pages have no field for one.
            return None;
        }
        let name = principal.name().to_owned();
        let role = principal.role();
        let csrf = self.sign("csrf-header", &format!("{name}|{role}"));
        Some(Viewer { name, role, csrf })
    }

    fn cookie_header(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.config().secure_cookie {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={max_age}{secure}"
        ))
        .expect("the cookie value is base64 and ASCII")
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Refuses a POST sent from another site: a browser's `Sec-Fetch-Site` other than
/// `same-origin` (or `none`) or, without it, an `Origin` whose host is not this one.
fn same_site(headers: &HeaderMap) -> bool {
    // A browser says where a request comes from: only this origin (or the user, `none`)
    // may post. Its `Origin` can be `null` under `Referrer-Policy: no-referrer`, so the
    // fetch metadata decides when present.
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        return site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none");
    }
    match headers.get(ORIGIN) {
        None => true,
        Some(origin) => {
            let origin = origin.to_str().unwrap_or_default();
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            !host.is_empty() && origin_host == Some(host)
        }
    }
}

/// A form's CSRF field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct CsrfForm {
    csrf: String,
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form that carries the CSRF token of the page it was sent from.
pub(super) trait CsrfField {
    /// The token the form posted.
    fn csrf(&self) -> &str;
}

/// A form POST of the viewer, let through only when it is the dashboard's own form: sent from
/// this site with the viewer's CSRF token ([`post_refusal`]). Any other is answered 403, with
/// the page that says why, before the handler runs.
pub(super) struct Posted<F> {
    pub(super) viewer: Viewer,
    pub(super) form: F,
}

impl<F, S> FromRequest<S> for Posted<F>
where
    F: DeserializeOwned + CsrfField + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let Extension(viewer) = Extension::<Viewer>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let Form(form) = Form::<F>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(reason) = post_refusal(&viewer, &headers, form.csrf()) {
            return Err(forbidden(Some(&viewer), reason));
        }
        Ok(Posted { viewer, form })
    }
}

/// Why a POST is refused, if it is: sent from another site, or without the viewer's CSRF
/// token.
fn post_refusal(viewer: &Viewer, headers: &HeaderMap, token: &str) -> Option<&'static str> {
    if !same_site(headers) {
        return Some("This form was sent from another site and was refused.");
    }
    if !bool::from(viewer.csrf.as_bytes().ct_eq(token.as_bytes())) {
        return Some(
            "The form's security token is missing or out of date; reload the page and try again.",
        );
    }
    None
}

/// The page refusing `viewer` an action its role is not `permitted` to do; `needs` says what
/// the action needs (`deleting needs admin`).
pub(super) fn role_refusal(viewer: &Viewer, permitted: bool, needs: &str) -> Option<Response> {
    (!permitted).then(|| {
        forbidden(
            Some(viewer),
            &format!("You are logged in with the role {}; {needs}.", viewer.role),
        )
    })
}

pub(super) async fn login_form(State(dash): State<Dash>, headers: HeaderMap) -> Response {
    if dash.viewer(&headers).is_some() {
        return see_other("/ui/");
    }
    Html(pages::login_page(None).into_string()).into_response()
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct LoginForm {
    user: String,
    password: String,
}

pub(super) async fn login(
    State(dash): State<Dash>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_site(&headers) {
        return forbidden(
            None,
            "This form was sent from another site and was refused.",
        );
    }
    let Some(principal) = dash.config().auth.check_basic(&form.user, &form.password) else {
        tracing::debug!("refused dashboard login");
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::login_page(Some("Wrong user name or password.")).into_string()),
        )
            .into_response();
    };
    let expiry = Utc::now() + SESSION_LIFETIME;
    let value = dash.session_value(principal.name(), principal.role(), expiry);
    let mut r = see_other("/ui/");
    r.headers_mut().insert(
        SET_COOKIE,
        dash.cookie_header(&value, SESSION_LIFETIME.num_seconds()),
    );
    r
}

/// Ends the session; a [`Posted`] form, so another site cannot log the viewer out.
pub(super) async fn logout(State(dash): State<Dash>, _: Posted<CsrfForm>) -> Response {
    let mut r = see_other("/ui/login");
    r.headers_mut()
        .insert(SET_COOKIE, dash.cookie_header("", 0));
    r
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::header::{HOST, ORIGIN};
    use chrono::Duration;
    use keel_core::approval::Approvals;

    use super::*;
    use crate::auth::ApiAuth;
    use crate::dashboard::{DashboardConfig, Inner};

    fn dash() -> Dash {
        let approvals = Approvals::new(Arc::new(keel_core::approval::MemoryApprovalStore::new()));
        let auth = ApiAuth::builder().basic_user("a|b", "pw").build().unwrap();
        Dash {
            inner: Arc::new(Inner {
                config: DashboardConfig::new(approvals, auth),
                key: [7; 32],
            }),
        }
    }

    #[test]
    fn session_round_trips_and_refuses_tampering_and_expiry() {
        let d = dash();
        let now = Utc::now();
        let v = d.session_value("a|b", Role::Approver, now + Duration::hours(1));
        let viewer = d.open_session(&v, now).unwrap();
        assert_eq!(viewer.name, "a|b");
        assert_eq!(viewer.role, Role::Approver);
        assert!(d.open_session(&v, now + Duration::hours(2)).is_none());
        let forged = d.session_value("a|b", Role::Admin, now + Duration::hours(1));
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, tag) = v.split_once('.').unwrap();
        assert!(d.open_session(&format!("{payload}.{tag}"), now).is_none());
    }

    #[test]
    fn the_cookie_is_secure_when_configured() {
        let mut d = dash();
        let plain = d.cookie_header("v", 60);
        assert_eq!(
            plain.to_str().unwrap(),
            "keel_session=v; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=60"
        );
        let mut config = d.config().clone();
        config.secure_cookie = true;
        d.inner = Arc::new(Inner {
            config,
            key: d.inner.key,
        });
        assert!(
            d.cookie_header("v", 60)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_site(&h));
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_site(&h));
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_site(&h));
        h.remove(ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_site(&h));
        // A form posted under `Referrer-Policy: no-referrer` comes with `Origin: null`.
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_site(&h));
    }
}
