//! The HTTP side of the node, served on the gRPC port: webhook execution.
//!
//! `POST /webhooks/{id}/{token}` with a JSON body `{"content": "...", "username": "...",
//! "avatar_url": "..."}`, or a Discord- or Slack-style body ([`super::webhook_body`]), posts a
//! message to the webhook's channel and answers `200 {"id", "channel_id"}`. A refusal answers `{"error": "<field>: <rule>"}` with the
//! HTTP status of the refusal's gRPC code ([`crate::error::http_status`]): 400 for a bad body or
//! field, 401 for an unknown webhook or wrong token, 404 when its channel is gone, 413 for a body
//! over [`WEBHOOK_BODY_MAX`], 415 without a JSON (or Slack form) content type, 429 over the rate limit
//! (with `Retry-After`, and Discord's `retry_after` in the body), 500 for a failure of the node. `docs/WEBHOOKS.md` is the reference for client
//! authors.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::webhook_body::{self, Encoding};
use crate::webhooks::Webhooks;

/// Largest webhook request body, bytes: axum's default, named so it is documented
/// (docs/LIMITS.md). It holds the longest text any `max_message_length` allows (100 000
/// characters of at most 4 bytes) with room to spare; a larger body is refused unread.
pub const WEBHOOK_BODY_MAX: usize = 2 * 1024 * 1024;

/// The HTTP routes.
pub fn router(webhooks: Webhooks) -> axum::Router {
    axum::Router::new()
        .route(
            "/webhooks/{id}/{token}",
            post(execute).layer(DefaultBodyLimit::max(WEBHOOK_BODY_MAX)),
        )
        .with_state(webhooks)
}

fn failure(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn execute(
    State(webhooks): State<Webhooks>,
    Path((id, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let bytes = match body {
        Ok(bytes) => bytes,
        // Over WEBHOOK_BODY_MAX (413), or the connection failed mid-body.
        Err(rejection) => {
            return failure(rejection.status(), &format!("body: {rejection}"));
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(encoding) = Encoding::of(content_type) else {
        return failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "body: Content-Type must be application/json, or application/x-www-form-urlencoded \
             with the JSON in a `payload` field",
        );
    };
    let post = match webhook_body::parse(encoding, &bytes) {
        Ok(post) => post,
        Err(refusal) => {
            return failure(StatusCode::BAD_REQUEST, &refusal.to_string());
        }
    };
    match webhooks
        .execute(
            &id,
            &token,
            &post.content,
            post.username.as_deref(),
            post.avatar_url.as_deref(),
        )
        .await
    {
        Ok(view) => (
            StatusCode::OK,
            Json(
                json!({ "id": view.message.id.to_string(), "channel_id": view.message.channel_id }),
            ),
        )
            .into_response(),
        Err(err) => {
            // The one Error → Status mapping (which logs internal failures and hides their
            // detail), then the status's HTTP equivalent.
            let status = tonic::Status::from(err);
            let message = status.message();
            let retry_ms = status
                .metadata()
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let Some(ms) = retry_ms else {
                return failure(crate::error::http_status(status.code()), message);
            };
            let mut headers = HeaderMap::new();
            headers.insert("retry-after-ms", HeaderValue::from(ms));
            headers.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
            // Discord's libraries read `retry_after` (seconds) from the body of a 429.
            let body = json!({ "error": message, "retry_after": ms as f64 / 1000.0 });
            (
                crate::error::http_status(status.code()),
                headers,
                Json(body),
            )
                .into_response()
        }
    }
}
