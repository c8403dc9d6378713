//! The web client, served by the node on its gRPC port: `GET /` and `GET /invite/{token}` answer
//! the client's page, and every other file of `web/dist/` its own path (`/app.js`, …).
//!
//! The files are embedded in the binary at build time (`build.rs`), so a node started with
//! `cargo run -- serve` serves a working client with no npm, no extra process and no files on disk
//! to keep in step with the binary. The browser reaches the API on the same port through gRPC-web
//! ([`grpc_web_layers`]).

mod grpc_web;

use std::io::Write;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

pub use grpc_web::{GrpcWebOnly, GrpcWebOnlyLayer, grpc_web_layers};

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

/// One file as the node sends it: its bytes, gzipped when that makes it smaller, and a tag for
/// each form (a strong `ETag` names one representation).
struct Prepared {
    etag: String,
    gzip: Option<(Vec<u8>, String)>,
}

/// Every file prepared once, at the first request for any of them.
fn prepared(index: usize) -> &'static Prepared {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    let all = PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(path, bytes)| {
                let hash = hex::encode(&Sha256::digest(bytes)[..12]);
                let gzip = compressible(path)
                    .then(|| gzip(bytes))
                    .flatten()
                    .filter(|packed| packed.len() < bytes.len())
                    .map(|packed| (packed, format!("\"{hash}-gz\"")));
                Prepared {
                    etag: format!("\"{hash}\""),
                    gzip,
                }
            })
            .collect()
    });
    &all[index]
}

/// Whether a file is text worth compressing (images and fonts are compressed already).
fn compressible(path: &str) -> bool {
    content_type(path).starts_with("text/")
        || matches!(
            content_type(path),
            "application/json" | "application/manifest+json" | "image/svg+xml"
        )
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

/// Whether the request's `Accept-Encoding` takes gzip (a `q=0` refuses it).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// One embedded file, gzipped for browsers that take it. Names aren't content-hashed, so browsers
/// revalidate every time (`no-cache`) and get `304` when the node still serves the same bytes.
fn asset(path: &'static str, headers: &HeaderMap) -> Response {
    let Some((index, bytes)) = find(path) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let prepared = prepared(index);
    let (body, tag, gzipped): (&'static [u8], &'static str, bool) =
        match (&prepared.gzip, accepts_gzip(headers)) {
            (Some((packed, tag)), true) => (packed.as_slice(), tag.as_str(), true),
            _ => (bytes, prepared.etag.as_str(), false),
        };
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(path))], body).into_response()
    };
    let h = response.headers_mut();
    if gzipped && !unchanged {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if prepared.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
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
    fn gzip_is_taken_unless_refused() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("header"),
            );
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("/a/b.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }
}
