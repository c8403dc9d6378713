//! The FCM HTTP v1 message this node sends, and what FCM's answers mean for it.
//!
//! The message is data-only (no `notification` block, so FCM displays nothing by itself and the
//! app fetches the message with its own session) and carries the same notice a UnifiedPush
//! distributor gets, ids only, as `data` (FCM wants every value a string). `android.priority` is
//! `high` so a sleeping phone wakes up for a mention or a DM.
//!
//! Answers (Google's "REST error codes for the HTTP v1 API"): `UNREGISTERED`, and
//! `INVALID_ARGUMENT` about the token, mean the token is dead: it is forgotten.
//! `QUOTA_EXCEEDED` (429), `UNAVAILABLE` (503), `INTERNAL` (500) and other 5xx are retried with
//! backoff, after `Retry-After` if given. A 401 means the access token was not accepted: it is
//! refreshed once. Anything else drops the push and keeps the token.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::push::client::{Answer, Outcome};

/// The JSON body that sends `payload` (the queued notice, a flat JSON object of strings) to
/// `token`.
pub fn body(token: &str, payload: &str) -> Result<String, String> {
    let data: BTreeMap<String, String> = serde_json::from_str(payload)
        .map_err(|e| format!("the queued notice is not a JSON object of strings: {e}"))?;
    let message = serde_json::json!({
        "message": {
            "token": token,
            "data": data,
            "android": { "priority": "high" },
        }
    });
    Ok(message.to_string())
}

/// What an FCM answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Settled: delivered, token gone, dropped or to be retried.
    Done(Outcome),
    /// The access token was refused (401): get a new one and send again.
    Unauthenticated,
}

/// FCM's error answer: `{"error": {"code", "message", "status", "details": [...]}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    message: String,
    status: String,
    details: Vec<Detail>,
}

/// One entry of `details`: an `FcmError` (`errorCode`) or a `BadRequest` (`fieldViolations`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Detail {
    error_code: String,
    field_violations: Vec<FieldViolation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FieldViolation {
    field: String,
}

impl ErrorBody {
    /// The FCM error code (`UNREGISTERED`, …), else the canonical status (`NOT_FOUND`, …).
    fn code(&self) -> &str {
        self.details
            .iter()
            .map(|d| d.error_code.as_str())
            .find(|c| !c.is_empty())
            .unwrap_or(&self.status)
    }

    /// Whether an `INVALID_ARGUMENT` is about the registration token rather than the message:
    /// a `BadRequest` naming `message.token`, or Google's words for a malformed token.
    fn about_the_token(&self) -> bool {
        self.details
            .iter()
            .flat_map(|d| &d.field_violations)
            .any(|v| v.field == "message.token")
            || self
                .message
                .to_ascii_lowercase()
                .contains("not a valid fcm registration token")
    }
}

/// What `answer` (to a send) means.
pub fn verdict(answer: &Answer) -> Verdict {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Verdict::Done(Outcome::Delivered);
    }
    let error = serde_json::from_slice::<ErrorAnswer>(&answer.body)
        .unwrap_or_default()
        .error;
    let code = error.code().to_owned();
    let retry = |why: String| {
        Verdict::Done(Outcome::Retry {
            why,
            after: answer.retry_after,
        })
    };
    match (status, code.as_str()) {
        (_, "UNREGISTERED") => Verdict::Done(Outcome::Gone(status)),
        (400, "INVALID_ARGUMENT") if error.about_the_token() => {
            Verdict::Done(Outcome::Gone(status))
        }
        // Not the app's APNs or web push credentials (THIRD_PARTY_AUTH_ERROR): our token.
        (401, code) if code != "THIRD_PARTY_AUTH_ERROR" => Verdict::Unauthenticated,
        (429, _) | (500..=599, _) => retry(format!("FCM answered HTTP {status} {code}")),
        _ => {
            tracing::warn!(
                status,
                code,
                message = %error.message.chars().take(300).collect::<String>(),
                "FCM refused a push; dropped"
            );
            Verdict::Done(Outcome::Rejected(status))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn the_message_is_data_only_with_the_notice_as_strings() {
        let notice =
            r#"{"type":"dm","guild_id":"1","channel_id":"2","message_id":"3","sender_id":"ab"}"#;
        let sent: serde_json::Value =
            serde_json::from_str(&body("tok", notice).expect("body")).expect("json");
        assert_eq!(
            sent,
            serde_json::json!({"message": {
                "token": "tok",
                "data": {"type": "dm", "guild_id": "1", "channel_id": "2", "message_id": "3", "sender_id": "ab"},
                "android": {"priority": "high"},
            }})
        );
        assert!(
            body("tok", r#"{"n": 1}"#).is_err(),
            "values must be strings"
        );
        assert!(body("tok", "[]").is_err());
    }

    #[test]
    fn answers_follow_googles_error_codes() {
        let unregistered = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        let bad_token = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
        let bad_token_field = r#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"},{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}"#;
        let bad_data = r#"{"error":{"code":400,"message":"Invalid value at 'message.data[0].value' (TYPE_STRING), 12","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value","description":"x"}]}]}}"#;
        let quota = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"errorCode":"QUOTA_EXCEEDED"}]}}"#;
        let expired = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        let apns = r#"{"error":{"code":401,"status":"UNAUTHENTICATED","details":[{"errorCode":"THIRD_PARTY_AUTH_ERROR"}]}}"#;

        assert_eq!(
            verdict(&answer(200, r#"{"name":"projects/p/messages/1"}"#)),
            Verdict::Done(Outcome::Delivered)
        );
        assert_eq!(
            verdict(&answer(404, unregistered)),
            Verdict::Done(Outcome::Gone(404))
        );
        assert_eq!(
            verdict(&answer(400, bad_token)),
            Verdict::Done(Outcome::Gone(400))
        );
        assert_eq!(
            verdict(&answer(400, bad_token_field)),
            Verdict::Done(Outcome::Gone(400))
        );
        assert_eq!(
            verdict(&answer(400, bad_data)),
            Verdict::Done(Outcome::Rejected(400)),
            "about the message: the token stays"
        );
        assert_eq!(verdict(&answer(401, expired)), Verdict::Unauthenticated);
        assert_eq!(
            verdict(&answer(401, apns)),
            Verdict::Done(Outcome::Rejected(401))
        );
        assert_eq!(
            verdict(&answer(403, "{}")),
            Verdict::Done(Outcome::Rejected(403))
        );
        let mut limited = answer(429, quota);
        limited.retry_after = Some(Duration::from_secs(7));
        assert_eq!(
            verdict(&limited),
            Verdict::Done(Outcome::Retry {
                why: "FCM answered HTTP 429 QUOTA_EXCEEDED".into(),
                after: Some(Duration::from_secs(7)),
            })
        );
        for status in [500, 502, 503] {
            assert!(matches!(
                verdict(&answer(status, "<html>")),
                Verdict::Done(Outcome::Retry { after: None, .. })
            ));
        }
    }
}
