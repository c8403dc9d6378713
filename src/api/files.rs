//! Serves uploaded files over HTTP: `GET` / `HEAD /media/{file_id}`, on the gRPC port.
//!
//! Range requests (`Range: bytes=…`, answered `206` / `416`), `If-Modified-Since` and `HEAD` are
//! handled by `tower_http`'s `ServeFile`, with the stored type as `Content-Type`. Files are named by
//! random ids and never change, so they may be cached forever. Nothing a user uploads runs in the
//! node's origin: every answer carries `X-Content-Type-Options: nosniff` and a sandboxing
//! `Content-Security-Policy`, and types a browser would render as a page are sent as downloads.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::media::Media;

/// Types shown inline; everything else is served as an attachment.
fn is_inline(mime: &str) -> bool {
    crate::media::probe::IMAGE_TYPES.contains(&mime)
        || mime.starts_with("video/")
        || mime.starts_with("audio/")
        || mime == "text/plain"
}

/// RFC 8187 encoding of a file name for `Content-Disposition: …; filename*=UTF-8''…`.
fn encode_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The file routes.
pub fn router(media: Media) -> axum::Router {
    axum::Router::new()
        .route("/media/{file_id}", get(serve))
        .with_state(media)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn serve(
    State(media): State<Media>,
    Path(file_id): Path<String>,
    request: Request<Body>,
) -> Response {
    if file_id.len() != 32 || !file_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return plain(StatusCode::NOT_FOUND, "no such file\n");
    }
    let file = match media.file(&file_id).await {
        Ok(Some(file)) => file,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such file\n"),
        Err(e) => {
            tracing::error!(error = %e, "file lookup failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };
    let path = match media.blob_path(&file) {
        Ok(path) => path,
        Err(e) => {
            tracing::error!(error = %e, file = %file.id, "stored file has a bad hash");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };
    let mime = file
        .mime_type
        .parse::<mime::Mime>()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let served = match ServeFile::new_with_mime(&path, &mime)
        .oneshot(request)
        .await
    {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, file = %file.id, "serving a stored file failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };
    let mut response = served.map(Body::new);
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    let disposition = if is_inline(&file.mime_type) {
        "inline"
    } else {
        "attachment"
    };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{disposition}; filename*=UTF-8''{}",
        encode_filename(&file.filename)
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn filenames_are_percent_encoded() {
        assert_eq!(super::encode_filename("a b/é.png"), "a%20b%2F%C3%A9.png");
    }
}
