//! The web client, served by the node on its gRPC port: `GET /` and `GET /invite/{token}` answer
//! the client's page, and every other file of `web/dist/` its own path (`/app.js`, …).
//!
//! The files are embedded in the binary at build time (`build.rs`), so a node started with
//! `cargo run -- serve` serves a working client with no npm, no extra process and no files on disk
//! to keep in step with the binary. The browser reaches the API on the same port through gRPC-web
//! ([`grpc_web_layers`]); CORS is open to every origin so that a client served by one node can call
//! the user's other servers (their homeserver, the hosts of guilds they joined).
//!
//! Why CORS may be open: the API authenticates with a bearer token in the `authorization` header,
//! never with cookies, so a page on another origin can only make calls with a token it already
//! holds. Nothing the browser sends automatically grants anything.

use std::fmt::Display;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response as HttpResponse};
use sha2::{Digest, Sha256};
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The client's files, `(url path, bytes)`, sorted by path: everything under `web/dist/`.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The page every client route answers with.
const INDEX: &str = "/index.html";

/// What the page may load and run: its own scripts and styles only; calls to any http(s) server
/// (the user's other nodes); images from anywhere over http(s) (avatars are URLs) and from the
/// client's own `blob:` and `data:` previews. `frame-ancestors 'none'` keeps it out of frames
/// (clickjacking), `base-uri`/`form-action` close the usual injection side doors.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self' http: https:; img-src 'self' http: https: data: blob:; \
     media-src 'self' http: https: blob:; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// How long a browser may reuse a CORS preflight answer.
const PREFLIGHT_CACHED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The routes: the page at `/` and `/invite/{token}`, and each embedded file at its path.
pub fn router() -> axum::Router {
    let mut router = axum::Router::new()
        .route("/", get(|headers: HeaderMap| async move { page(&headers) }))
        .route(
            "/invite/{token}",
            get(|headers: HeaderMap| async move { page(&headers) }),
        );
    for (path, _) in ASSETS {
        let path: &'static str = path;
        router = router.route(
            path,
            get(move |headers: HeaderMap| async move { asset(path, &headers) }),
        );
    }
    router
}

/// What answers a path no route knows: `UNIMPLEMENTED` to a gRPC (or gRPC-web) call, as tonic's
/// own fallback does, and a plain `404` to everything else, so a browser or `curl` asking for a
/// page that isn't there isn't told `200` with an empty body.
pub async fn fallback(headers: HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        Response::from_parts(parts, axum::body::Body::empty())
    } else {
        (StatusCode::NOT_FOUND, "no such page\n").into_response()
    }
}

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

/// The client's page, or a plain note when this build has no client (`web/dist/` was missing).
fn page(headers: &HeaderMap) -> Response {
    if find(INDEX).is_some() {
        asset(INDEX, headers)
    } else {
        (
            StatusCode::NOT_FOUND,
            "this node was built without its web client (web/dist/ was missing)\n",
        )
            .into_response()
    }
}

fn find(path: &str) -> Option<(usize, &'static [u8])> {
    ASSETS
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| (i, ASSETS[i].1))
}

/// Each file's `ETag` (a hash of its bytes), computed once.
fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, bytes)| format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..12])))
            .collect()
    });
    &tags[index]
}

/// One embedded file. Names aren't content-hashed, so browsers revalidate every time
/// (`no-cache`) and get `304` when the node still serves the same bytes.
fn asset(path: &'static str, headers: &HeaderMap) -> Response {
    let Some((index, bytes)) = find(path) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let tag = etag(index);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(path))], bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `/invite/TOKEN` holds a secret in its path: never send it on to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// The `Content-Type` of a client file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_sorted_for_the_binary_search() {
        assert!(ASSETS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("/a/b.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }
}
