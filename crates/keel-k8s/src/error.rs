//! The one place where Kubernetes API errors become [`keel_core::Error`] variants, for
//! keel-k8s and for the backends built on it (keel-helm).

use std::sync::Arc;

use keel_core::Error;
use kube::core::Status;

use crate::workload::WorkloadKind;

/// The backend name in [`Error::Backend`].
pub const BACKEND: &str = "kubernetes";

/// What a request was about: `patch deployments ns/web`.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The verb: `get`, `patch`, `list`, `watch`.
    pub verb: &'a str,
    /// The resource (plural), e.g. `deployments`.
    pub resource: &'a str,
    /// The namespace, when namespaced.
    pub namespace: Option<&'a str>,
    /// The object's name, for single-object requests.
    pub name: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request `verb` about the workload `name` of `kind` in `namespace`.
    pub(crate) fn workload(
        verb: &'a str,
        kind: WorkloadKind,
        namespace: &'a str,
        name: &'a str,
    ) -> Self {
        Request {
            verb,
            resource: kind.plural(),
            namespace: Some(namespace),
            name: Some(name),
        }
    }

    /// `patch deployments keel/web`, `watch deployments in namespace keel`,
    /// `list cronjobs in all namespaces`.
    pub fn action(&self) -> String {
        match (self.namespace, self.name) {
            (Some(ns), Some(name)) => format!("{} {} {ns}/{name}", self.verb, self.resource),
            (None, Some(name)) => format!("{} {} {name}", self.verb, self.resource),
            (Some(ns), None) => format!("{} {} in namespace {ns}", self.verb, self.resource),
            (None, None) => format!("{} {} in all namespaces", self.verb, self.resource),
        }
    }

    fn where_(&self) -> String {
        match self.namespace {
            Some(ns) => format!("in namespace `{ns}`"),
            None => "cluster-wide (a ClusterRole)".to_owned(),
        }
    }
}

/// Converts an error of a request to the API server.
pub fn from_kube(error: kube::Error, request: &Request<'_>) -> Error {
    match error {
        kube::Error::Api(status) => from_status(&status, request),
        other => Error::Backend {
            backend: BACKEND.to_owned(),
            action: request.action(),
            message: other.to_string(),
            retryable: true,
            source: Some(Arc::new(other)),
        },
    }
}

/// Converts an error status of the API server.
pub fn from_status(status: &Status, request: &Request<'_>) -> Error {
    let action = request.action();
    let message = if status.message.is_empty() {
        status.reason.clone()
    } else {
        status.message.clone()
    };
    match status.code {
        401 => Error::Unauthorized {
            action,
            reason: format!(
                "the API server did not accept the credentials ({message}); check the token or \
                 kubeconfig"
            ),
        },
        403 => Error::Unauthorized {
            reason: format!(
                "forbidden by RBAC ({message}); grant the verb `{}` on `{}` {}",
                request.verb,
                request.resource,
                request.where_()
            ),
            action,
        },
        404 => Error::NotFound {
            what: match (request.namespace, request.name) {
                (Some(ns), Some(name)) => format!("{} {ns}/{name}", request.resource),
                (None, Some(name)) => format!("{} {name}", request.resource),
                _ => format!("resource {}", request.resource),
            },
        },
        409 => Error::Conflict {
            action,
            reason: message,
        },
        429 => Error::RateLimited {
            action,
            retry_after: None,
        },
        code => Error::Backend {
            backend: BACKEND.to_owned(),
            action,
            message: format!("HTTP {code}: {message}"),
            retryable: code >= 500 || code == 408,
            source: None,
        },
    }
}

/// Converts the last error of a watch of `resource` in `namespace` (all namespaces when
/// `None`), and says whether waiting longer cannot help: refused credentials, a missing
/// resource or a request the server rejects (a bad label selector).
pub fn from_watcher(
    error: &kube::runtime::watcher::Error,
    resource: &str,
    namespace: Option<&str>,
) -> (Error, bool) {
    use kube::runtime::watcher::Error as Watch;
    let request = Request {
        verb: match error {
            Watch::InitialListFailed(_) => "list",
            _ => "watch",
        },
        resource,
        namespace,
        name: None,
    };
    let converted = match error {
        Watch::InitialListFailed(kube::Error::Api(status))
        | Watch::WatchStartFailed(kube::Error::Api(status))
        | Watch::WatchFailed(kube::Error::Api(status)) => from_status(status, &request),
        Watch::WatchError(status) => from_status(status, &request),
        other => Error::Backend {
            backend: BACKEND.to_owned(),
            action: request.action(),
            message: other.to_string(),
            retryable: true,
            source: None,
        },
    };
    let fatal = matches!(
        converted,
        Error::Unauthorized { .. }
            | Error::NotFound { .. }
            | Error::Backend {
                retryable: false,
                ..
            }
    );
    (converted, fatal)
}

/// Whether a kube error is a 409 Conflict.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> Status {
        serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "message": message, "reason": "Forbidden"
        }))
        .unwrap()
    }

    const PATCH: Request<'static> = Request {
        verb: "patch",
        resource: "deployments",
        namespace: Some("shop"),
        name: Some("web"),
    };

    #[test]
    fn forbidden_names_verb_resource_namespace_and_name() {
        let e = from_status(&status(403, "user \"alice\" cannot patch"), &PATCH);
        let text = e.to_string();
        assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
        for part in [
            "patch deployments shop/web",
            "`patch`",
            "`deployments`",
            "`shop`",
            "alice",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }

    #[test]
    fn codes_map_to_variants() {
        assert!(
            matches!(from_status(&status(404, "x"), &PATCH), Error::NotFound { what } if what == "deployments shop/web")
        );
        assert!(matches!(
            from_status(&status(409, "x"), &PATCH),
            Error::Conflict { .. }
        ));
        assert!(matches!(
            from_status(&status(429, "x"), &PATCH),
            Error::RateLimited { .. }
        ));
        assert!(from_status(&status(503, "x"), &PATCH).is_retryable());
        assert!(!from_status(&status(422, "x"), &PATCH).is_retryable());
        assert!(matches!(
            from_status(&status(401, "x"), &PATCH),
            Error::Unauthorized { .. }
        ));
    }

    #[test]
    fn actions_read_well() {
        let list = Request {
            verb: "list",
            resource: "cronjobs",
            namespace: None,
            name: None,
        };
        assert_eq!(list.action(), "list cronjobs in all namespaces");
        let watch = Request {
            verb: "watch",
            namespace: Some("a"),
            ..list
        };
        assert_eq!(watch.action(), "watch cronjobs in namespace a");
    }
}
