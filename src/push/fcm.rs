//! Pushes to FCM registration tokens, through the FCM HTTP v1 API as Google documents it for a
//! server: one `messages:send` request per token, authorised by an OAuth 2.0 access token of the
//! operator's service account.
//!
//! - [`account`]: the service account key file (`push.fcm_service_account_file`).
//! - [`oauth`]: the signed JWT assertion and the cached access token.
//! - [`message`]: the data-only message (ids only, never message text) and what FCM's answers
//!   mean.
//!
//! The queue, its retries and backoff are the same as for UnifiedPush (`super::delivery`); this
//! module sends one queued push and says how it went.

pub mod account;
pub mod message;
pub mod oauth;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use self::account::{AccountError, ServiceAccount};
use self::message::Verdict;
use self::oauth::AccessTokens;
use super::client::{Outcome, PushClient};
use super::config::PushConfig;

/// Sends pushes to FCM for one service account; cheap to clone.
#[derive(Debug, Clone)]
pub struct FcmSender {
    http: PushClient,
    send_url: String,
    tokens: AccessTokens,
}

impl FcmSender {
    /// The sender `config` asks for: `None` when no service account is configured (FCM off).
    /// Requests go through `http` (the push client: its timeout, address policy and TLS roots).
    pub fn from_config(
        config: &PushConfig,
        http: PushClient,
    ) -> Result<Option<Self>, AccountError> {
        if config.fcm_service_account_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let account = ServiceAccount::from_file(&config.fcm_service_account_file)?;
        Ok(Some(Self::new(
            account,
            &config.fcm_endpoint,
            &config.fcm_token_uri,
            http,
        )))
    }

    /// A sender for `account`, to the FCM API at `endpoint`, asking for tokens at `token_uri`
    /// (empty: the account's own).
    pub fn new(account: ServiceAccount, endpoint: &str, token_uri: &str, http: PushClient) -> Self {
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            endpoint.trim_end_matches('/'),
            account.project_id
        );
        let token_uri = if token_uri.is_empty() {
            account.token_uri.clone()
        } else {
            token_uri.to_owned()
        };
        tracing::info!(
            project = %account.project_id,
            account = %account.client_email,
            %send_url,
            %token_uri,
            "FCM delivery on"
        );
        let tokens = AccessTokens::new(Arc::new(account), token_uri, http.clone());
        Self {
            http,
            send_url,
            tokens,
        }
    }

    /// Sends `payload` (the queued notice) to the FCM registration `token` once; a refused
    /// access token is replaced and the send tried once more.
    pub async fn send(&self, token: &str, payload: &str) -> Outcome {
        let body = match message::body(token, payload) {
            Ok(body) => body,
            Err(why) => return Outcome::Refused(why),
        };
        for _ in 0..2 {
            let access = match self.tokens.get().await {
                Ok(access) => access,
                Err(e) => return e.outcome(),
            };
            let request = http::Request::post(&self.send_url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Full::new(Bytes::from(body.clone())));
            let request = match request {
                Ok(request) => request,
                Err(e) => return Outcome::Refused(format!("unusable FCM request: {e}")),
            };
            let answer = match self.http.send(request).await {
                Ok(answer) => answer,
                Err(e) => return e.into(),
            };
            match message::verdict(&answer) {
                Verdict::Done(outcome) => return outcome,
                Verdict::Unauthenticated => {
                    tracing::info!("FCM refused the access token; getting a new one");
                    self.tokens.forget(&access).await;
                }
            }
        }
        Outcome::Retry {
            why: "FCM refused a new access token too (HTTP 401)".into(),
            after: Some(UNAUTHENTICATED_WAIT),
        }
    }
}

/// Wait after FCM refused two access tokens in a row, so a broken credential does not ask Google
/// for a token at every delivery.
const UNAUTHENTICATED_WAIT: Duration = Duration::from_secs(60);
