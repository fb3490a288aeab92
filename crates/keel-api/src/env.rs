//! The API's credentials from the environment, under the names every keel-rs application
//! that serves the API reads. Without any, the API is off: it is never open.
//!
//! | variable | what |
//! |---|---|
//! | `KEEL_API_AUTH` | the credentials, each `<kind>[/<role>]:<name>:<secret>` (`basic`, `bearer` or `delegate`), comma-separated: the role is `reader` (GET only), `approver` (also votes) or `admin` (also deletes); basic and bearer default to `admin`, delegates to `approver`. E.g. `bearer/reader:dashboard:...,delegate:slack:...` |
//! | `KEEL_API_DELEGATE_VOTERS` | for each delegate, the voters it may vote for: `<delegate>=<pattern>,...`, delegates separated by `;`; a pattern is a voter (`T0001/U024BE7LH`, a Slack team and user as keel-bot sends them) or a prefix ending in `*` (`T0001/*`, a whole team). Required for every delegate, so a leaked delegate token cannot invent voters; a team-wide pattern still lets it vote as anyone of that team, so list users where it matters |
//! | `BASIC_AUTH_USER`, `BASIC_AUTH_PASSWORD` | Keel's admin user (role `admin`) |

use crate::ApiAuth;

/// What a program logs when [`auth_from_env`] finds no credentials, so that whoever expected
/// the approvals API and the dashboard learns which variables turn them on.
pub const API_OFF: &str = "the approvals API and the dashboard are off: set KEEL_API_AUTH or \
                           BASIC_AUTH_USER/BASIC_AUTH_PASSWORD";

/// The credentials of the approvals API the environment configures (see the
/// [module docs](self) for the variables), read through `var`
/// (`|name| std::env::var(name).ok()`), or `None` when none are configured (the API is then
/// not to be served). An empty value counts as unset.
///
/// # Errors
/// A message naming the variable that is malformed (never its value: it holds secrets).
///
/// ```
/// let vars = |name: &str| (name == "KEEL_API_AUTH").then(|| "bearer:ops:tok-123".to_owned());
/// assert!(keel_api::auth_from_env(vars).unwrap().is_some());
/// assert!(keel_api::auth_from_env(|_| None).unwrap().is_none());
/// ```
pub fn auth_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<ApiAuth>, String> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let mut builder = ApiAuth::builder();
    let mut any = false;
    if let Some(spec) = var("KEEL_API_AUTH") {
        builder = builder
            .parse_spec(&spec)
            .map_err(|e| format!("invalid KEEL_API_AUTH: {e}"))?;
        any = true;
    }
    if let Some(spec) = var("KEEL_API_DELEGATE_VOTERS") {
        builder = builder
            .parse_delegate_voters(&spec)
            .map_err(|e| format!("invalid KEEL_API_DELEGATE_VOTERS: {e}"))?;
    }
    match (var("BASIC_AUTH_USER"), var("BASIC_AUTH_PASSWORD")) {
        (Some(user), Some(password)) => {
            builder = builder.basic_user(user, password);
            any = true;
        }
        (None, None) => {}
        _ => return Err("set both BASIC_AUTH_USER and BASIC_AUTH_PASSWORD, or neither".into()),
    }
    if !any {
        return Ok(None);
    }
    builder.build().map(Some).map_err(|e| {
        format!("invalid API credentials (KEEL_API_AUTH, KEEL_API_DELEGATE_VOTERS): {e}")
    })
}

#[cfg(test)]
mod tests {
    use keel_testsupport::env_lookup as env;

    use super::*;

    #[test]
    fn the_api_is_off_without_credentials_and_never_open() {
        assert!(auth_from_env(env(&[])).unwrap().is_none());
        assert!(
            auth_from_env(env(&[("KEEL_API_AUTH", "bearer:ops:tok-123")]))
                .unwrap()
                .is_some()
        );
        assert!(
            auth_from_env(env(&[
                ("BASIC_AUTH_USER", "admin"),
                ("BASIC_AUTH_PASSWORD", "pw")
            ]))
            .unwrap()
            .is_some()
        );
        let err = auth_from_env(env(&[("BASIC_AUTH_USER", "admin")])).unwrap_err();
        assert!(err.contains("BASIC_AUTH_PASSWORD"), "{err}");
        let err = auth_from_env(env(&[("KEEL_API_AUTH", "token-only")])).unwrap_err();
        assert!(err.contains("KEEL_API_AUTH"), "{err}");
        assert!(!err.contains("token-only"), "{err}");
    }

    #[test]
    fn roles_and_delegate_voters_come_from_the_environment() {
        let auth = auth_from_env(env(&[
            (
                "KEEL_API_AUTH",
                "bearer/reader:dash:tok-d,delegate:slack:tok-s",
            ),
            ("KEEL_API_DELEGATE_VOTERS", "slack=T0001/*"),
        ]))
        .unwrap()
        .unwrap();
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("dash (reader)")
                && shown.contains("slack (delegate, approver, for T0001/*)"),
            "{shown}"
        );
        // A delegate without voters would vote for anyone: refused.
        let err = auth_from_env(env(&[("KEEL_API_AUTH", "delegate:slack:tok-s")])).unwrap_err();
        assert!(err.contains("no voters"), "{err}");
        let err = auth_from_env(env(&[
            ("KEEL_API_AUTH", "delegate:slack:tok-s"),
            ("KEEL_API_DELEGATE_VOTERS", "slack=*"),
        ]))
        .unwrap_err();
        assert!(err.contains("KEEL_API_DELEGATE_VOTERS"), "{err}");
    }
}
