//! gRPC-web on the gRPC port, and CORS open to every origin, so that a client served by one node
//! can call the user's other servers (their homeserver, the hosts of guilds they joined).
//!
//! Why CORS may be open: the API authenticates with a bearer token in the `authorization` header,
//! never with cookies, so a page on another origin can only make calls with a token it already
//! holds. Nothing the browser sends automatically grants anything.

use std::fmt::Display;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response as HttpResponse};
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may reuse a CORS preflight answer.
const PREFLIGHT_CACHED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// gRPC-web for browsers, and the CORS answers they need first. Outermost of the node's layers:
/// a preflight is answered before anything else looks at it, and every inner layer sees an
/// ordinary gRPC call whatever the browser sent.
pub fn grpc_web_layers() -> (CorsLayer, GrpcWebOnlyLayer) {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            header::RETRY_AFTER,
        ])
        .max_age(PREFLIGHT_CACHED_FOR);
    (cors, GrpcWebOnlyLayer)
}

/// Translates gRPC-web calls into gRPC and leaves every other request alone.
///
/// `tonic_web::GrpcWebLayer` by itself refuses every HTTP/1.1 request that isn't gRPC-web with
/// `400`, which would take the page, the webhooks and `/media` away from HTTP/1.1 clients (every
/// browser's first request, `curl`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcWebOnlyLayer;

impl<S: Clone> Layer<S> for GrpcWebOnlyLayer {
    type Service = GrpcWebOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebOnly { inner }
    }
}

/// The service of [`GrpcWebOnlyLayer`].
#[derive(Debug, Clone)]
pub struct GrpcWebOnly<S> {
    inner: S,
}

/// Whether a request is gRPC-web (`application/grpc-web`, `+proto`, `-text`, …).
fn is_grpc_web<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc-web"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcWebOnly<S>
where
    S: Service<Request<Body>, Response = HttpResponse<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<tower::BoxError> + Display,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError> + Display,
{
    type Response = HttpResponse<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call readies its own clone of the inner service (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let inner = self.inner.clone();
        if is_grpc_web(&request) {
            let call = tonic_web::GrpcWebLayer::new().layer(inner).oneshot(request);
            Box::pin(async move {
                let mut response = call.await?;
                // A proxy that buffers answers (nginx's `proxy_pass` does by default) would hold
                // back the event stream's events until its buffer fills.
                response.headers_mut().insert(
                    HeaderName::from_static("x-accel-buffering"),
                    HeaderValue::from_static("no"),
                );
                Ok(response)
            })
        } else {
            Box::pin(async move {
                let response = inner.oneshot(request.map(Body::new)).await?;
                Ok(response.map(Body::new))
            })
        }
    }
}
