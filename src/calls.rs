//! Calls: LiveKit access tokens for a channel's voice/video room.
//!
//! The node does not carry media; a LiveKit server does. `GetCallToken` checks that the caller may
//! read the channel and returns the LiveKit URL and a token LiveKit accepts: a JWT signed (HS256)
//! with the configured API secret, issued by the API key, whose subject is the user's id and whose
//! `video` grant lets them join, publish and subscribe in the channel's room (`guildhall-<channel
//! id>`). Issuing a token also marks the caller's presence as in that call.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::guilds::{Guilds, permissions};
use crate::identity::freshness::now_ms;
use crate::store::SessionInfo;

/// How long a call token is valid.
pub const TOKEN_TTL_SECS: u64 = 60 * 60;

/// LiveKit's connection settings.
#[derive(Clone)]
pub struct LiveKit {
    /// Where clients connect.
    pub url: String,
    /// The API key (token issuer).
    pub api_key: String,
    /// The API secret (signs tokens).
    pub api_secret: String,
}

impl std::fmt::Debug for LiveKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKit")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// LiveKit's video grant.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VideoGrant {
    /// The room.
    pub room: String,
    /// May join the room.
    pub room_join: bool,
    /// May publish tracks.
    pub can_publish: bool,
    /// May subscribe to tracks.
    pub can_subscribe: bool,
}

/// The claims of a LiveKit access token.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The API key.
    pub iss: String,
    /// The participant identity: the user's id.
    pub sub: String,
    /// The participant's display name.
    pub name: String,
    /// Not before (seconds).
    pub nbf: u64,
    /// Expires (seconds).
    pub exp: u64,
    /// The room grant.
    pub video: VideoGrant,
}

/// The room a channel's call happens in.
pub fn room_of(channel_id: &str) -> String {
    format!("guildhall-{channel_id}")
}

/// Call tokens for one node.
#[derive(Debug, Clone)]
pub struct Calls {
    livekit: Option<LiveKit>,
    guilds: Guilds,
}

impl Calls {
    /// Calls over `livekit` (none: calls are off).
    pub fn new(livekit: Option<LiveKit>, guilds: Guilds) -> Self {
        Self { livekit, guilds }
    }

    /// Whether calls are configured.
    pub fn configured(&self) -> bool {
        self.livekit.is_some()
    }

    /// `GetCallToken`: (LiveKit URL, token) for the channel's room.
    pub async fn token(&self, caller: &SessionInfo, channel_id: &str) -> Result<(String, String)> {
        let Some(livekit) = &self.livekit else {
            return Err(Error::FailedPrecondition(
                "calls are not configured on this server (livekit_url, livekit_api_key, livekit_api_secret)".into(),
            ));
        };
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_READ)?;
        let user = caller.user_id.clone();
        let name = self
            .guilds
            .store()
            .read(move |c| crate::store::accounts::load_user(c, &user))
            .await?
            .map(|u| u.display_name)
            .unwrap_or_default();
        let now = now_ms() / 1000;
        let claims = Claims {
            iss: livekit.api_key.clone(),
            sub: caller.user_id.clone(),
            name,
            nbf: now.saturating_sub(10),
            exp: now + TOKEN_TTL_SECS,
            video: VideoGrant {
                room: room_of(&channel.id),
                room_join: true,
                can_publish: true,
                can_subscribe: true,
            },
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(livekit.api_secret.as_bytes()),
        )
        .map_err(|e| Error::FailedPrecondition(format!("calls: could not sign a token: {e}")))?;
        Ok((livekit.url.clone(), token))
    }
}
