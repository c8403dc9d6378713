//! The host asks a user's homeserver to vouch for a join (`Federate`, docs/PROTOCOL.md §11).
//!
//! The host forwards the user's own signed `JoinInviteRequest` in a signed server call; the
//! homeserver checks the user's signature itself and answers with the user. The host accepts only
//! an answer naming the identity that signed the join. Every failure is a [`VouchError`], and the
//! host writes nothing unless the answer is yes.

use std::time::Duration;

use super::FederationClient;
use crate::proto::guildhall::v1 as pb;

/// How long asking a homeserver may take in all (key check, connect, call). A join waits on it,
/// so it is short; a homeserver that can't answer in time is treated as unreachable.
pub const VOUCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a homeserver's vouch was not obtained; every message starts with `homeserver_url`, the
/// field that named the homeserver.
#[derive(Debug, thiserror::Error)]
pub enum VouchError {
    /// The homeserver could not be reached or did not answer in time.
    #[error("homeserver_url: {homeserver} could not be reached: {reason}")]
    Unreachable {
        /// The homeserver's address.
        homeserver: String,
        /// Why.
        reason: String,
    },
    /// The homeserver's key could not be trusted (e.g. changed without a signed rotation).
    #[error("homeserver_url: the key of {homeserver} is not trusted: {reason}")]
    Untrusted {
        /// The homeserver's address.
        homeserver: String,
        /// Why.
        reason: String,
    },
    /// The homeserver answered, but not with a yes.
    #[error("homeserver_url: {homeserver} did not vouch for this user ({code:?}: {message})")]
    Refused {
        /// The homeserver's address.
        homeserver: String,
        /// Its status code (`Ok` when it answered `accepted = false`).
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// The homeserver vouched for an identity other than the one that signed the join.
    #[error(
        "homeserver_url: {homeserver} vouched for another identity ({vouched:?}), not public_key"
    )]
    OtherIdentity {
        /// The homeserver's address.
        homeserver: String,
        /// The id it answered with.
        vouched: String,
    },
}

/// How a join whose homeserver did not vouch reaches the client: unreachable is `UNAVAILABLE`
/// (retry later, in the same words whatever the cause); a refusal, an untrusted key or a vouch
/// for another identity is `UNAUTHENTICATED`.
impl From<VouchError> for crate::error::Error {
    fn from(err: VouchError) -> Self {
        use crate::error::Error;
        match err {
            VouchError::Unreachable { homeserver, reason } => {
                tracing::info!(%homeserver, %reason, "homeserver unreachable for a vouch");
                Error::Unavailable(format!(
                    "homeserver_url: {homeserver} is {}",
                    crate::outbound::UNREACHABLE
                ))
            }
            VouchError::Untrusted { .. }
            | VouchError::Refused { .. }
            | VouchError::OtherIdentity { .. } => Error::Unauthenticated(err.to_string()),
        }
    }
}

/// A homeserver's yes to a join.
#[derive(Debug, Clone)]
pub struct Vouched {
    /// The user it vouched for (the identity that signed the join).
    pub user: pb::User,
    /// The push delegation it handed this node for the user (empty if it handed none): kept to
    /// push the user's mentions and DMs through their homeserver (docs/PROTOCOL.md §14.2).
    pub push_delegation_token: String,
}

/// Sends `request` (whose `join` is the user's signed join) to `homeserver` as a signed
/// `Federate` call and returns its answer, whose user is checked to be `request.user_pubkey`.
/// Bounded by [`VOUCH_TIMEOUT`].
pub async fn ask_homeserver(
    client: &FederationClient,
    homeserver: &str,
    request: pb::FederationRequest,
) -> Result<Vouched, VouchError> {
    let expected = request.user_pubkey.clone();
    let call = async {
        let mut peer = client.connect(homeserver).await.map_err(|e| match e {
            super::FederationError::Unreachable { reason, .. } => VouchError::Unreachable {
                homeserver: homeserver.to_owned(),
                reason,
            },
            other => VouchError::Untrusted {
                homeserver: homeserver.to_owned(),
                reason: other.to_string(),
            },
        })?;
        peer.federate(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled => VouchError::Unreachable {
                    homeserver: homeserver.to_owned(),
                    reason: status.message().to_owned(),
                },
                code => VouchError::Refused {
                    homeserver: homeserver.to_owned(),
                    code,
                    message: status.message().to_owned(),
                },
            })
    };
    let reply = tokio::time::timeout(VOUCH_TIMEOUT, call)
        .await
        .map_err(|_| VouchError::Unreachable {
            homeserver: homeserver.to_owned(),
            reason: format!("no answer within {VOUCH_TIMEOUT:?}"),
        })??
        .into_inner();
    if !reply.accepted {
        return Err(VouchError::Refused {
            homeserver: homeserver.to_owned(),
            code: tonic::Code::Ok,
            message: reply.message,
        });
    }
    match reply.user {
        Some(user) if user.id == expected => Ok(Vouched {
            user,
            push_delegation_token: reply.push_delegation_token,
        }),
        other => Err(VouchError::OtherIdentity {
            homeserver: homeserver.to_owned(),
            vouched: other.map(|u| u.id).unwrap_or_default(),
        }),
    }
}
