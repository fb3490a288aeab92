//! The one error type of keel-rs and the parse error it carries for bad input.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The result of keel-rs operations: [`Error`] unless another error type is named
/// (`Result<Tag, ParseError>`).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a backend library, kept as the source of an [`Error`]; shared, so that an
/// [`Error`] can be cloned (one failure reported for every image it concerns).
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in keel-rs, by what the caller can do about it.
///
/// Backends convert their own errors into these variants (HTTP status codes map in one place
/// per backend), so a caller reacts to "not found" or "rate limited" the same way whichever
/// registry or target produced it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that does not follow its grammar: an image reference, tag, policy string, regex...
    #[error(transparent)]
    InvalidInput(#[from] ParseError),

    /// The named thing (repository, tag, workload, file) does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `repository docker.io/library/nginx`.
        what: String,
    },

    /// The backend refused the credentials, or none were given where some are needed.
    #[error("unauthorized to {action}: {reason}")]
    Unauthorized {
        /// What was being done, e.g. `list tags of ghcr.io/org/app`.
        action: String,
        /// Why, as far as the backend said; never contains a credential.
        reason: String,
    },

    /// The backend asked us to slow down.
    #[error("rate limited while trying to {action}{}", fmt_retry_after(*.retry_after))]
    RateLimited {
        /// What was being done.
        action: String,
        /// How long the backend asked us to wait, when it said.
        retry_after: Option<Duration>,
    },

    /// The state changed under us (a concurrent update, a rejected push); retrying after
    /// re-reading the state is expected to succeed.
    #[error("conflict while trying to {action}: {reason}")]
    Conflict {
        /// What was being done.
        action: String,
        /// What conflicted.
        reason: String,
    },

    /// The backend does not offer this operation.
    #[error("{backend} does not support {operation}")]
    NotSupported {
        /// The operation, e.g. `image metadata`.
        operation: &'static str,
        /// The backend, e.g. `in-memory registry`.
        backend: String,
    },

    /// Any other failure of a backend: I/O, a protocol error, a timeout.
    #[error("{backend} failed to {action}: {message}")]
    Backend {
        /// The backend, e.g. `registry ghcr.io`.
        backend: String,
        /// What was being done.
        action: String,
        /// What went wrong.
        message: String,
        /// Whether trying again later may succeed (timeouts, 5xx answers, dropped connections).
        retryable: bool,
        /// The backend library's own error.
        #[source]
        source: Option<ErrorSource>,
    },
}

fn fmt_retry_after(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

impl Error {
    /// Whether the same call may succeed if tried again later (after re-reading state, for a
    /// conflict). Invalid input, missing things and refused credentials are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Conflict { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// How long to wait before retrying, when the backend said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error every optional capability returns where a backend lacks it.
    pub fn not_supported(operation: &'static str, backend: impl Into<String>) -> Self {
        Error::NotSupported {
            operation,
            backend: backend.into(),
        }
    }

    /// A `NotFound` for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// A `NotFound` for the tracked image `id` in the target named `target`: what a target
    /// answers a plan for an image it does not track (any more).
    ///
    /// ```
    /// let error = keel_core::Error::untracked("deployment/shop/web/app", "kubernetes");
    /// assert_eq!(
    ///     error.to_string(),
    ///     keel_core::Error::not_found("tracked image deployment/shop/web/app in kubernetes")
    ///         .to_string()
    /// );
    /// ```
    pub fn untracked(id: &str, target: &str) -> Self {
        Error::not_found(format!("tracked image {id} in {target}"))
    }

    /// A `Backend` error of `backend` doing `action`, caused by `source`, whose text is the
    /// message; not retryable: for a failure that trying again does not cure, such as a file
    /// that cannot be read or a client that cannot be built.
    pub fn backend(
        backend: impl Into<String>,
        action: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            backend: backend.into(),
            action: action.into(),
            message: source.to_string(),
            retryable: false,
            source: Some(Arc::new(source)),
        }
    }
}

/// Input that does not follow its grammar: names the kind of input, the input itself, the
/// rule it broke and, where it can, the byte range of the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: &'static str,
    input: String,
    reason: String,
    span: Option<(usize, usize)>,
}

impl ParseError {
    /// A parse error of `input` (a `kind` such as `"image reference"`) for `reason`.
    pub fn new(kind: &'static str, input: impl Into<String>, reason: impl Into<String>) -> Self {
        ParseError {
            kind,
            input: input.into(),
            reason: reason.into(),
            span: None,
        }
    }

    /// Points the error at bytes `start..end` of the input.
    pub fn at(mut self, start: usize, end: usize) -> Self {
        let len = self.input.len();
        let start = start.min(len);
        self.span = Some((start, end.clamp(start, len)));
        self
    }

    /// Re-labels the error as part of a larger input, shifting the span by `offset` bytes.
    pub fn within(self, kind: &'static str, input: impl Into<String>, offset: usize) -> Self {
        let (start, end) = self.span.unwrap_or((0, self.input.len()));
        let outer = ParseError {
            kind,
            input: input.into(),
            reason: self.reason,
            span: None,
        };
        outer.at(offset + start, offset + end)
    }

    /// The kind of input, e.g. `"policy"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The input as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The rule the input broke.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The byte range of the bad part of the input, when known.
    pub fn span(&self) -> Option<(usize, usize)> {
        self.span
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.kind, self.input, self.reason)?;
        if let Some((start, end)) = self.span {
            let bad = self.input.get(start..end).unwrap_or("");
            if bad.is_empty() {
                write!(f, " (at byte {start})")?;
            } else if (start, end) != (0, self.input.len()) {
                write!(f, " (at byte {start}: {bad:?})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_input_rule_and_bad_part() {
        let e = ParseError::new("policy", "semver:>=1 <abc", "not a version").at(12, 15);
        assert_eq!(
            e.to_string(),
            r#"invalid policy "semver:>=1 <abc": not a version (at byte 12: "abc")"#
        );
    }

    #[test]
    fn within_shifts_the_span() {
        let inner = ParseError::new("semver range", ">=1 <abc", "not a version").at(5, 8);
        let outer = inner.within("policy", "semver:>=1 <abc", 7);
        assert_eq!(outer.span(), Some((12, 15)));
        assert_eq!(outer.kind(), "policy");
    }

    #[test]
    fn retryable_variants() {
        let rl = Error::RateLimited {
            action: "list tags".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(rl.is_retryable());
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(3)));
        assert!(rl.to_string().contains("retry after 3s"));
        assert!(!Error::not_found("repository x").is_retryable());
        assert!(!Error::not_supported("image metadata", "test").is_retryable());
    }
}
