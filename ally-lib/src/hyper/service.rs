//! The service wrapper that asks HTTP/1 clients to reconnect while
//! draining.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::Service;

use crate::tokio::Stop;

/// Wraps the user's service: once stopping, every HTTP/1 response carries
/// `Connection: close`, so the client's next request goes to a new
/// connection, accepted by the new instance. Decided when the response is
/// made, not when the request came, so a request in flight at the stop
/// closes its connection too.
///
/// HTTP/2 has no such header (hyper would drop it); the wrapper only
/// notes the connection speaks HTTP/2, which is drained by `GOAWAY`
/// instead.
#[derive(Debug, Clone)]
pub(super) struct CloseWhenDraining<S> {
    inner: S,
    stop: Stop,
    h2: Arc<AtomicBool>,
}

impl<S> CloseWhenDraining<S> {
    pub(super) fn new(inner: S, stop: Stop, h2: Arc<AtomicBool>) -> Self {
        CloseWhenDraining { inner, stop, h2 }
    }
}

impl<S, B> Service<Request<Incoming>> for CloseWhenDraining<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let h1 = request.version() < Version::HTTP_2;
        if !h1 {
            self.h2.store(true, Ordering::Relaxed);
        }
        let response = self.inner.call(request);
        let stop = self.stop.clone();
        Box::pin(async move {
            let mut response = response.await?;
            if h1 && stop.is_stopped() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}
