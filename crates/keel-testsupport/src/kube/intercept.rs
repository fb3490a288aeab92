//! A tower layer for the client's service stack that runs a test's hook before chosen
//! requests are sent: the seam for making a concurrent change between the code under test's
//! read and its write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;

use super::counting::RecordedRequest;

/// A hook's work before the request goes out.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Decides, per request, whether to run something first.
pub type Hook = Arc<dyn Fn(&RecordedRequest) -> Option<HookFuture> + Send + Sync>;

/// Runs its hook before each request the hook picks.
#[derive(Clone)]
pub struct InterceptLayer {
    hook: Hook,
}

impl InterceptLayer {
    /// A layer running `hook`.
    pub fn new(hook: Hook) -> InterceptLayer {
        InterceptLayer { hook }
    }
}

impl<S> tower::Layer<S> for InterceptLayer {
    type Service = InterceptService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InterceptService {
            inner,
            hook: Arc::clone(&self.hook),
        }
    }
}

/// The service of an [`InterceptLayer`].
#[derive(Clone)]
pub struct InterceptService<S> {
    inner: S,
    hook: Hook,
}

impl<S, B> tower::Service<Request<B>> for InterceptService<S>
where
    S: tower::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let before = (self.hook)(&RecordedRequest::of(&request));
        // The inner future does no I/O until polled, so the hook's change lands first.
        let response = self.inner.call(request);
        Box::pin(async move {
            if let Some(before) = before {
                before.await;
            }
            response.await
        })
    }
}
