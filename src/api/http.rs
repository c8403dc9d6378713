//! The HTTP side of the node, served on the gRPC port: webhook execution.
//!
//! `POST /webhooks/{id}/{token}` with a JSON body `{"content": "...", "username": "...",
//! "avatar_url": "..."}` (only `content` is required) posts a message to the webhook's channel and
//! answers `200 {"id", "channel_id"}`; errors answer `{"error": "<field>: <rule>"}` with 400 (bad
//! body), 401 (unknown webhook or wrong token), 404, or 500.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
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
        .route("/webhooks/{id}/{token}", post(execute))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_MAX))
        .with_state(webhooks)
}

fn failure(status: StatusCode, message: String) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": message })))
}

async fn execute(
    State(webhooks): State<Webhooks>,
    Path((id, token)): Path<(String, String)>,
    body: Result<Json<WebhookBody>, JsonRejection>,
) -> (StatusCode, Json<Value>) {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return failure(StatusCode::BAD_REQUEST, format!("body: {rejection}")),
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
        ),
        Err(err) => {
            let status = match &err {
                Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
                Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Error::NotFound(_) => StatusCode::NOT_FOUND,
                Error::Storage(e) => {
                    tracing::error!(error = %e, "webhook storage failure");
                    return failure(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal storage error".into(),
                    );
                }
                _ => StatusCode::BAD_REQUEST,
            };
            failure(status, err.to_string())
        }
    }
}
