//! Pushes other servers ask for (`PushNotification`): a server that verified a user with
//! `VerifyUser` holds a push delegation token tied to it and to that user, and may ask the user's
//! homeserver to notify the user's distributors.
//!
//! The payload is checked and rebuilt, never forwarded as sent: it must be the small JSON notice of
//! `docs/PROTOCOL.md` §9 (ids only, no message text), and the homeserver adds which server it came
//! from, so the app knows where to fetch the message.

use serde::{Deserialize, Serialize};

use super::Push;
use crate::accounts::remote::normalise_address;
use crate::accounts::tokens;
use crate::error::{Error, Result};
use crate::federation::VerifiedOrigin;
use crate::identity::PublicKey;

/// Largest `PushNotificationRequest.payload` accepted, in bytes.
pub const PAYLOAD_MAX: usize = 2048;
/// Longest id in a payload, in bytes.
pub const ID_MAX: usize = 128;
/// Longest `push_delegation_token`, in bytes (the node's own are 64 hex characters).
pub const DELEGATION_TOKEN_MAX: usize = 256;

/// The notice another server sends, as `PushNotificationRequest.payload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SentNotice {
    #[serde(rename = "type")]
    kind: String,
    guild_id: String,
    channel_id: String,
    message_id: String,
    sender_id: String,
}

/// What the user's distributors receive for a push from another server.
#[derive(Debug, Serialize)]
struct ForwardedNotice<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    /// The server the message is on (the caller, proven by its signature).
    server: &'a str,
    guild_id: &'a str,
    channel_id: &'a str,
    message_id: &'a str,
    sender_id: &'a str,
}

fn id(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= ID_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("payload.{field}"),
            format!("must be 1 to {ID_MAX} letters, digits, '-' or '_'"),
        ))
    }
}

/// Checks a sent notice (`PushNotificationRequest.payload`) and rebuilds it for the
/// distributors, with the origin added; returns the body and the message id. Public so the fuzz
/// targets (`fuzz/`, `tests/fuzz.rs`) run this very check.
pub fn forwarded(origin: &str, payload: &str) -> Result<(String, String)> {
    if payload.len() > PAYLOAD_MAX {
        return Err(Error::invalid(
            "payload",
            format!("must be at most {PAYLOAD_MAX} bytes"),
        ));
    }
    let sent: SentNotice = serde_json::from_str(payload).map_err(|e| {
        Error::invalid(
            "payload",
            format!(
                "must be the JSON notice {{\"type\",\"guild_id\",\"channel_id\",\"message_id\",\
                 \"sender_id\"}} and nothing else: {e}"
            ),
        )
    })?;
    let kind = match sent.kind.as_str() {
        "mention" => "mention",
        "dm" => "dm",
        _ => {
            return Err(Error::invalid(
                "payload.type",
                "must be \"mention\" or \"dm\"",
            ));
        }
    };
    id("guild_id", &sent.guild_id)?;
    id("channel_id", &sent.channel_id)?;
    id("message_id", &sent.message_id)?;
    id("sender_id", &sent.sender_id)?;
    let notice = ForwardedNotice {
        kind,
        server: origin,
        guild_id: &sent.guild_id,
        channel_id: &sent.channel_id,
        message_id: &sent.message_id,
        sender_id: &sent.sender_id,
    };
    let body = serde_json::to_string(&notice).map_err(|e| Error::invalid("payload", e))?;
    Ok((body, sent.message_id.clone()))
}

impl Push {
    /// `PushNotification`: `origin` asks to notify `target_user_id` with the token it got from
    /// `VerifyUser`. Accepted only if this node handed that token to `origin` for that user; the
    /// notice is queued for every distributor of the user (a repeat for the same message is
    /// queued once). Returns how many pushes were queued.
    pub async fn delegated(
        &self,
        origin: &VerifiedOrigin,
        target_user_id: &str,
        token: &str,
        payload: &str,
    ) -> Result<usize> {
        PublicKey::from_hex(target_user_id).map_err(|e| Error::invalid("target_user_id", e))?;
        if token.is_empty() || token.len() > DELEGATION_TOKEN_MAX {
            return Err(Error::invalid(
                "push_delegation_token",
                format!(
                    "must be 1 to {DELEGATION_TOKEN_MAX} bytes (the token VerifyUser returned)"
                ),
            ));
        }
        let (body, message_id) = forwarded(origin.address(), payload)?;
        let hash = tokens::hash(token);
        let holder = self
            .store
            .read(move |c| crate::store::dm_remote::push_delegation(c, &hash))
            .await?;
        match holder {
            Some((user, server))
                if user == target_user_id
                    && normalise_address(&server) == normalise_address(origin.address()) => {}
            _ => {
                return Err(Error::PermissionDenied(
                    "push_delegation_token: not a token this server handed to the calling server \
                     for target_user_id (get one with VerifyUser)"
                        .into(),
                ));
            }
        }
        // The message id is unique on its server: one push per message and origin.
        let dedup = format!("r:{}:{message_id}", origin.address());
        self.enqueue(target_user_id, body, Some(dedup)).await
    }
}

#[cfg(test)]
mod tests {
    use super::forwarded;

    #[test]
    fn notices_are_rebuilt_with_their_origin() {
        let sent =
            r#"{"type":"dm","guild_id":"1","channel_id":"2","message_id":"3","sender_id":"ab"}"#;
        let (body, message_id) = forwarded("https://a.example", sent).expect("valid");
        assert_eq!(message_id, "3");
        assert_eq!(
            body,
            r#"{"type":"dm","server":"https://a.example","guild_id":"1","channel_id":"2","message_id":"3","sender_id":"ab"}"#
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            r#"{"type":"dm","guild_id":"1","channel_id":"2","message_id":"3","sender_id":"ab","text":"secret"}"#,
            r#"{"type":"other","guild_id":"1","channel_id":"2","message_id":"3","sender_id":"ab"}"#,
            r#"{"type":"dm","guild_id":"","channel_id":"2","message_id":"3","sender_id":"ab"}"#,
            r#"{"type":"dm","guild_id":"1 2","channel_id":"2","message_id":"3","sender_id":"ab"}"#,
            "not json",
        ] {
            assert!(forwarded("https://a.example", bad).is_err(), "{bad}");
        }
        let huge = format!(r#"{{"type":"dm","guild_id":"{}"}}"#, "1".repeat(3000));
        assert!(forwarded("https://a.example", &huge).is_err());
    }
}
