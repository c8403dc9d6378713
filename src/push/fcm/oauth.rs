//! FCM access tokens, the way Google documents them for service accounts: a JWT assertion signed
//! with the account's RSA key (RS256) is exchanged at the token endpoint for a bearer token
//! (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`), which is kept and reused until
//! shortly before it expires. One exchange runs at a time; deliveries that need a token meanwhile
//! wait for it rather than each asking Google.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::account::ServiceAccount;
use crate::push::client::{NoAnswer, Outcome, PushClient};

/// The OAuth scope that lets a token send FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The grant type of a JWT assertion (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid: Google accepts at most an hour.
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A token is replaced this long before it expires, so none is used as it runs out.
const REFRESH_EARLY: Duration = Duration::from_secs(5 * 60);

/// The assertion's claims (Google's "Addendum: Service account authorization").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The service account's email.
    pub iss: String,
    /// [`SCOPE`].
    pub scope: String,
    /// The token endpoint the assertion is sent to.
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at: `iat` + [`ASSERTION_LIFETIME_SECS`].
    pub exp: u64,
}

/// A signed assertion for `account`, addressed to `audience` (the token endpoint), issued at `now`
/// (seconds since the epoch).
pub fn assertion(
    account: &ServiceAccount,
    audience: &str,
    now: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        iss: account.client_email.clone(),
        scope: SCOPE.to_owned(),
        aud: audience.to_owned(),
        iat: now,
        exp: now.saturating_add(ASSERTION_LIFETIME_SECS),
    };
    // `typ` is "JWT" by default.
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &account.key)
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
    token_type: String,
}

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The assertion could not be signed.
    #[error("signing the OAuth assertion: {0}")]
    Sign(String),
    /// The token endpoint was not reached or did not answer.
    #[error("the OAuth token endpoint: {0}")]
    NoAnswer(NoAnswer),
    /// The token endpoint refused (the detail is its `error` and `error_description`).
    #[error("the OAuth token endpoint answered HTTP {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What it said.
        detail: String,
        /// Its `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The answer is not the JSON Google documents.
    #[error("the OAuth token endpoint's answer is unusable: {0}")]
    BadAnswer(String),
}

impl OAuthError {
    /// What a push that needed the token does now: retried (the endpoint may come back, a clock
    /// may be corrected), unless the node won't send there at all.
    pub fn outcome(&self) -> Outcome {
        match self {
            OAuthError::NoAnswer(NoAnswer::Refused(why)) => {
                Outcome::Refused(format!("the OAuth token endpoint: {why}"))
            }
            OAuthError::Status { retry_after, .. } => Outcome::Retry {
                why: self.to_string(),
                after: *retry_after,
            },
            _ => Outcome::retry(self.to_string()),
        }
    }
}

/// A token and when to stop using it.
#[derive(Debug, Clone)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// The access tokens of one service account, cached (see the module docs); cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    account: Arc<ServiceAccount>,
    token_uri: String,
    http: PushClient,
    cached: Arc<Mutex<Option<Cached>>>,
}

impl AccessTokens {
    /// Tokens for `account`, asked for at `token_uri` through `http`.
    pub fn new(account: Arc<ServiceAccount>, token_uri: String, http: PushClient) -> Self {
        Self {
            account,
            token_uri,
            http,
            cached: Arc::default(),
        }
    }

    /// A token valid for a while yet: the cached one, or a new one.
    pub async fn get(&self) -> Result<String, OAuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.exchange().await?;
        // Refreshed early, but a short-lived token is still used for half its life.
        let early = REFRESH_EARLY.min(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(early),
        });
        Ok(token)
    }

    /// Drops `token` from the cache (FCM said it is not valid), so the next [`Self::get`] asks
    /// for a new one; a newer token someone else already got is kept.
    pub async fn forget(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    /// One exchange of a fresh assertion for a token; returns it and its lifetime.
    async fn exchange(&self) -> Result<(String, Duration), OAuthError> {
        let now = crate::identity::freshness::now_ms() / 1000;
        let assertion = assertion(&self.account, &self.token_uri, now)
            .map_err(|e| OAuthError::Sign(e.to_string()))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let request = http::Request::post(&self.token_uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| {
                OAuthError::NoAnswer(NoAnswer::Refused(format!("unusable request: {e}")))
            })?;
        let answer = self
            .http
            .send(request)
            .await
            .map_err(OAuthError::NoAnswer)?;
        if answer.status != 200 {
            return Err(OAuthError::Status {
                status: answer.status,
                detail: refusal_detail(&answer.body),
                retry_after: answer.retry_after,
            });
        }
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| OAuthError::BadAnswer(e.to_string()))?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(OAuthError::BadAnswer(format!(
                "token_type is {:?}, not Bearer",
                parsed.token_type
            )));
        }
        // It goes into a header: visible ASCII only.
        if parsed.access_token.is_empty()
            || !parsed.access_token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(OAuthError::BadAnswer(
                "access_token is empty or not visible ASCII".into(),
            ));
        }
        if parsed.expires_in == 0 {
            return Err(OAuthError::BadAnswer("expires_in is 0".into()));
        }
        Ok((parsed.access_token, Duration::from_secs(parsed.expires_in)))
    }
}

/// The `error` and `error_description` of an OAuth error answer (RFC 6749 §5.2), short.
fn refusal_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_slice::<Refusal>(body) {
        Ok(r) if !r.error.is_empty() => format!("{} {}", r.error, r.error_description)
            .trim()
            .chars()
            .take(300)
            .collect(),
        _ => "no OAuth error in the answer".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const KEY: &str = include_str!("../../../tests/fixtures/fcm/service_account_key.pem");
    const PUBLIC: &str = include_str!("../../../tests/fixtures/fcm/service_account_key.pub.pem");

    #[test]
    fn the_assertion_is_the_one_google_documents() {
        let text = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key": KEY,
            "client_email": "push@p.iam.gserviceaccount.com",
        })
        .to_string();
        let account = ServiceAccount::parse(std::path::Path::new("sa.json"), &text).expect("key");
        let aud = "https://oauth2.googleapis.com/token";
        let jwt = assertion(&account, aud, 1_700_000_000).expect("signs");

        let header = jsonwebtoken::decode_header(&jwt).expect("header");
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&["push@p.iam.gserviceaccount.com"]);
        validation.validate_exp = false; // issued at a fixed time in the past
        let key = DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).expect("public key");
        let claims = jsonwebtoken::decode::<Claims>(&jwt, &key, &validation)
            .expect("verifies with the public key")
            .claims;
        assert_eq!(
            claims,
            Claims {
                iss: "push@p.iam.gserviceaccount.com".into(),
                scope: SCOPE.into(),
                aud: aud.into(),
                iat: 1_700_000_000,
                exp: 1_700_003_600,
            }
        );
    }

    #[test]
    fn refusals_are_summarised() {
        assert_eq!(
            refusal_detail(
                br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
            ),
            "invalid_grant Invalid JWT Signature."
        );
        assert_eq!(refusal_detail(b"<html>"), "no OAuth error in the answer");
    }
}
