//! The HTTP side of the node, served on the gRPC port: webhook execution.
//!
//! `POST /webhooks/{id}/{token}` with a JSON body `{"content": "...", "username": "...",
//! "avatar_url": "..."}` (only `content` is required) posts a message to the webhook's channel and
//! answers `200 {"id", "channel_id"}`. A refusal answers `{"error": "<field>: <rule>"}` with the
//! HTTP status of the refusal's gRPC code ([`crate::error::http_status`]): 400 for a bad body or
//! field, 401 for an unknown webhook or wrong token, 404 when its channel is gone, 413 for a body
//! over [`WEBHOOK_BODY_MAX`], 415 without a JSON content type, 429 over the rate limit (with
//! `Retry-After`), 500 for a failure of the node. `docs/WEBHOOKS.md` is the reference for client
//! authors.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::webhooks::Webhooks;

/// What a program posts to a webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// Message text.
    pub content: String,
    /// Name shown instead of the webhook's.
    pub username: Option<String>,
    /// Avatar shown instead of the webhook's.
    pub avatar_url: Option<String>,
}

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

fn failure(status: StatusCode, headers: HeaderMap, message: &str) -> Response {
    (status, headers, Json(json!({ "error": message }))).into_response()
}

async fn execute(
    State(webhooks): State<Webhooks>,
    Path((id, token)): Path<(String, String)>,
    body: Result<Json<WebhookBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            // A body that is JSON but not this object is as malformed as one that is not JSON:
            // both are the caller's to fix, 400. Too large (413) and not JSON at all (415) keep
            // their own statuses.
            let status = match rejection.status() {
                StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                other => other,
            };
            return failure(status, HeaderMap::new(), &format!("body: {rejection}"));
        }
    };
    match webhooks
        .execute(
            &id,
            &token,
            &body.content,
            body.username.as_deref(),
            body.avatar_url.as_deref(),
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
            let mut headers = HeaderMap::new();
            if let Some(ms) = status
                .metadata()
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                headers.insert("retry-after-ms", HeaderValue::from(ms));
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(ms.div_ceil(1000)),
                );
            }
            failure(
                crate::error::http_status(status.code()),
                headers,
                status.message(),
            )
        }
    }
}
