//! Homeserver moves and device revocations as gossiped server events (`docs/PROTOCOL.md` §13),
//! beside the direct calls the outbox delivers: every node in the mesh learns of them, and a node
//! that was offline pulls them when it returns.
//!
//! Both statements are signed by the user's K_id, so any node may publish or relay them; each
//! receiver verifies the user's signature itself and applies the statement through the same code
//! as `UpdateHomeServer` / `ReceiveDeviceRevocation`. A statement a node cannot use (a user it
//! does not know, an older move) is ignored, not rejected: the peer that relayed it did nothing
//! wrong. A bad signature or malformed payload is rejected, which penalises the peer.

use prost::Message;

use super::{moves, revocation};
use crate::accounts::Accounts;
use crate::error::Error;
use crate::gossip::event::EventError;
use crate::gossip::server_events::Subject;
use crate::gossip::{ServerEvents, Verdict, VerifiedServerEvent};
use crate::proto::guildhall::v1 as pb;
use crate::store::Store;

/// The server-event kind of a homeserver move (payload: an encoded `UpdateHomeServerRequest`).
pub const MOVE_KIND: &str = "homeserver-move";
pub use super::revocation::REVOCATION_KIND;
/// The server-event kind of a user's profile change (payload: an encoded
/// `UpdateFederatedProfileRequest`), published by the user's homeserver.
pub const PROFILE_KIND: &str = "profile-update";

/// What an application error means for a gossiped statement.
fn verdict(result: Result<(), Error>) -> Verdict {
    match result {
        Ok(()) => Verdict::Accept,
        Err(e @ (Error::InvalidArgument { .. } | Error::Unauthenticated(_))) => {
            Verdict::Reject(e.to_string())
        }
        Err(e) => Verdict::Ignore(e.to_string()),
    }
}

/// A move is about its user: the newest statement of their chain is where they live (a receiver
/// checks `prev` only against the statement directly before, so a chain with gaps is taken).
fn move_subject(payload: &[u8]) -> Option<Subject> {
    let request = pb::UpdateHomeServerRequest::decode(payload).ok()?;
    Some(Subject {
        key: request.user_id.into_bytes(),
        fields: 1,
    })
}

/// A profile update is about its user, and states the fields its signed update sets: a later
/// update of the same user setting at least those fields makes it moot.
fn profile_subject(payload: &[u8]) -> Option<Subject> {
    let request = pb::UpdateFederatedProfileRequest::decode(payload).ok()?;
    let update = request.update?;
    let set = [
        update.name.is_some(),
        update.avatar_url.is_some(),
        update.presence_preference.is_some(),
        update.bio.is_some(),
        update.guild_order.is_some(),
        update.is_profile_synced.is_some(),
        update.irc_name.is_some(),
        update.pronouns.is_some(),
        update.banner_url.is_some(),
        update.accent_color.is_some(),
    ];
    let fields = set
        .iter()
        .enumerate()
        .filter(|(_, set)| **set)
        .fold(0u64, |bits, (i, _)| bits | 1 << i);
    Some(Subject {
        key: request.user_id.into_bytes(),
        fields,
    })
}

/// Registers the validators (and appliers) of both kinds on `events`; moves are pruned down to
/// each user's newest, revocations are kept for good. An applied move is announced to the user's
/// co-members here (`user_updated`), as `UpdateHomeServer` announces it.
pub async fn register(
    events: &ServerEvents,
    store: Store,
    accounts: Accounts,
    guilds: crate::guilds::Guilds,
) -> Result<(), EventError> {
    let move_store = store.clone();
    events
        .register_pruned(
            MOVE_KIND,
            move_subject,
            move |event: VerifiedServerEvent| {
                let (store, guilds) = (move_store.clone(), guilds.clone());
                async move {
                    let Ok(request) = pb::UpdateHomeServerRequest::decode(event.payload()) else {
                        return Verdict::Reject("payload: not an UpdateHomeServerRequest".into());
                    };
                    verdict(
                        async {
                            let verified =
                                moves::MoveStatement::from_request(&request)?.verify()?;
                            moves::apply_verified(&store, verified).await?;
                            guilds.announce_user_updated(&request.user_id).await;
                            Ok(())
                        }
                        .await,
                    )
                }
            },
        )
        .await?;
    events
        .register(REVOCATION_KIND, move |event: VerifiedServerEvent| {
            let (store, accounts) = (store.clone(), accounts.clone());
            async move {
                let Ok(request) = pb::DeviceRevocation::decode(event.payload()) else {
                    return Verdict::Reject("payload: not a DeviceRevocation".into());
                };
                verdict(
                    async {
                        let verified = revocation::verify(&request)?;
                        revocation::apply(&store, &verified, Vec::new(), None).await?;
                        accounts.forget_device_sessions(&verified.device_pubkey());
                        Ok(())
                    }
                    .await,
                )
            }
        })
        .await
}

/// Registers the validator of [`crate::account_status::DELETED_KIND`]: a user's K_id-signed
/// deletion, applied here as `ReceiveAccountStatus` would (a key this node never knew is
/// recorded too, so it can't become a user here later). The statement proves itself, so any
/// node may relay it.
pub async fn register_account_deletions(
    events: &ServerEvents,
    statuses: crate::account_status::AccountStatuses,
    accounts: Accounts,
) -> Result<(), EventError> {
    use crate::account_status::{self as status, Arrival};
    events
        .register(status::DELETED_KIND, move |event: VerifiedServerEvent| {
            let (statuses, accounts) = (statuses.clone(), accounts.clone());
            async move {
                let Ok(statement) = pb::AccountStatusStatement::decode(event.payload()) else {
                    return Verdict::Reject("payload: not an AccountStatusStatement".into());
                };
                verdict(
                    async {
                        let verified = status::verify(&statement)?;
                        if verified.status() != status::Status::Deleted {
                            return Err(Error::invalid(
                                "status",
                                "an account-deleted event carries a deletion",
                            ));
                        }
                        statuses.apply(&verified, Arrival::Relayed).await?;
                        accounts.forget_user_sessions(verified.user_id());
                        Ok(())
                    }
                    .await,
                )
            }
        })
        .await
}

/// Registers the validator of [`PROFILE_KIND`]: the event's origin must be a peer this node has
/// pinned (its key gives the address), and that address the user's homeserver on record here;
/// then the change is checked and applied as `UpdateFederatedProfile` would.
pub async fn register_profiles(
    events: &ServerEvents,
    accounts: Accounts,
    harmony: crate::harmony::Harmony,
    directory: super::PeerDirectory,
) -> Result<(), EventError> {
    events
        .register_pruned(
            PROFILE_KIND,
            profile_subject,
            move |event: VerifiedServerEvent| {
                let (accounts, harmony, directory) =
                    (accounts.clone(), harmony.clone(), directory.clone());
                async move {
                    let Ok(request) = pb::UpdateFederatedProfileRequest::decode(event.payload())
                    else {
                        return Verdict::Reject(
                            "payload: not an UpdateFederatedProfileRequest".into(),
                        );
                    };
                    let address = match directory.address_of(&event.origin()).await {
                        Ok(address) => address,
                        Err(e) => return Verdict::Ignore(e.to_string()),
                    };
                    let Some(address) = address else {
                        return Verdict::Ignore("origin: not a server this node has met".into());
                    };
                    match crate::harmony::forwarded::apply(&accounts, &harmony, &address, request)
                        .await
                    {
                        Ok(()) => Verdict::Accept,
                        Err(e @ (Error::InvalidArgument { .. } | Error::Unauthenticated(_))) => {
                            Verdict::Reject(e.to_string())
                        }
                        Err(e) => Verdict::Ignore(e.to_string()),
                    }
                }
            },
        )
        .await
}
