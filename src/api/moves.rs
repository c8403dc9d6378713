//! Homeserver moves, device revocations and new-device notices: `Login` (the notice and waking the
//! outbox around the account flow), `UpdateHomeServer`, `RevokeDevice` and
//! `ReceiveDeviceRevocation`. The rules are in [`crate::federation::moves`] and
//! [`crate::federation::revocation`]; `docs/PROTOCOL.md` §12 has the wire form.

use prost::Message;
use tonic::{Request, Response, Status};

use super::session::caller;
use super::{GuildHallApi, Reply};
use crate::accounts::{IssuedSession, LoginInput};
use crate::error::Error;
use crate::federation::moves::{self, MoveStatement};
use crate::federation::revocation;
use crate::federation::verify::verified_origin;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::UserRecord;

/// `Login`: the account flow (which applies and queues a homeserver move, if any), then wakes the
/// outbox for the queued calls and tells the user's sessions about a device this node had not seen.
pub(super) async fn login(
    api: &GuildHallApi,
    input: LoginInput,
) -> Result<(UserRecord, IssuedSession), tonic::Status> {
    let store = api.events.store().clone();
    let device_pubkey = input.cert.device_key.to_hex();
    let seen = store
        .device_owner(device_pubkey.clone())
        .await
        .map_err(Error::from)?
        .is_some();
    let moving = input.new_homeserver.is_some();
    let statement = input.new_homeserver.clone().map(|new_homeserver| {
        (
            new_homeserver,
            input.migration_timestamp.unwrap_or_default(),
            input.migration_signature.clone().unwrap_or_default(),
            input.migration_sequence.unwrap_or_default(),
            input.migration_prev.clone().unwrap_or_default(),
        )
    });
    let device_id = input.cert.device_id.clone();
    let device_name = input.device_name.clone().unwrap_or_default();
    // The move's server event is appended in the login's transaction, which also applies the
    // move and queues its deliveries.
    let events = api.server_events.clone();
    let append_move = move |tx: &rusqlite::Connection, user: &UserRecord, moved: bool| {
        let (Some(events), true) = (events, moved) else {
            return Ok(None);
        };
        let Some((new_homeserver, timestamp, signature, sequence, prev)) = statement else {
            return Ok(None);
        };
        let request = pb::UpdateHomeServerRequest {
            user_id: user.id.clone(),
            new_homeserver,
            timestamp,
            signature,
            sequence,
            prev,
        };
        let kind = crate::federation::gossiped::MOVE_KIND;
        Ok(Some(events.append_in(
            tx,
            kind,
            request.encode_to_vec(),
            now_ms(),
        )?))
    };
    let (user, session, event) = api.accounts.login(input, append_move).await?;
    if moving {
        if let Some(outbox) = &api.outbox {
            outbox.wake();
        }
        api.guilds.announce_user_updated(&user.id).await;
    }
    if let (Some(events), Some(event)) = (&api.server_events, event) {
        events.announce(&event).await;
    }
    if !seen {
        let scope = crate::events::user_scope(&user.id);
        let event = pb::stream_response::Event::DeviceAdded(pb::DeviceAdded {
            device_pubkey,
            device_id,
            device_name,
        });
        let written = api
            .events
            .write(now_ms(), move |_| {
                Ok(((), vec![crate::events::row(vec![scope], event)]))
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not announce a new device");
        }
    }
    Ok((user, session))
}

/// `UpdateHomeServer` (server call): a verified server carries a user's signed statement; it is
/// self-certifying, so the caller need not be the user's old homeserver.
pub(super) async fn update_home_server(
    api: &GuildHallApi,
    request: Request<pb::UpdateHomeServerRequest>,
) -> Reply<pb::Empty> {
    let origin = verified_origin(&request)?;
    let statement = MoveStatement::from_request(request.get_ref())?;
    let verified = statement.verify()?;
    tracing::debug!(origin = %origin.address(), "UpdateHomeServer");
    let user_id = request.get_ref().user_id.clone();
    moves::apply_verified(api.events.store(), verified).await?;
    api.guilds.announce_user_updated(&user_id).await;
    Ok(Response::new(pb::Empty {}))
}

/// `RevokeDevice`: the session's user revokes one of their devices at their homeserver, which
/// forwards the revocation to every server in the user's server list.
pub(super) async fn revoke_device(
    api: &GuildHallApi,
    request: Request<pb::DeviceRevocation>,
) -> Reply<pb::Empty> {
    let session = caller(&request)?;
    let verified = revocation::verify(request.get_ref())?;
    if verified.user_id() != session.user_id {
        return Err(Error::PermissionDenied(
            "user_id: must be the user of this session (a user revokes only their own devices)"
                .into(),
        )
        .into());
    }
    let store = api.events.store();
    let user = store
        .user(session.user_id.clone())
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::Unauthenticated("authorization: the user no longer exists".into()))?;
    let own = api.accounts.canonical_address().trim_end_matches('/');
    if user.homeserver.trim_end_matches('/') != own {
        return Err(Error::FailedPrecondition(format!(
            "user_id: revoke devices at your homeserver ({})",
            user.homeserver
        ))
        .into());
    }
    revoke_verified(api, &user, &verified).await?;
    tracing::info!(user = %&session.user_id[..8], device = %&verified.device_pubkey()[..8], "device revoked");
    Ok(Response::new(pb::Empty {}))
}

/// Applies a verified revocation of one of `user`'s devices at their homeserver (this node):
/// the device is revoked here, its sessions end, and the user's other servers are told (through
/// the outbox and the server event).
pub(super) async fn revoke_verified(
    api: &GuildHallApi,
    user: &UserRecord,
    verified: &revocation::VerifiedRevocation,
) -> Result<(), Status> {
    let store = api.events.store();
    let own = api.accounts.canonical_address().trim_end_matches('/');
    let user_id = user.id.clone();
    let mut targets: Vec<String> = store
        .read(move |c| crate::store::moves::user_servers(c, &user_id))
        .await
        .map_err(Error::from)?
        .into_iter()
        .map(|s| s.trim_end_matches('/').to_owned())
        .filter(|s| s != own)
        .collect();
    targets.sort();
    targets.dedup();
    let (_, event) =
        revocation::apply(store, verified, targets, api.server_events.as_ref()).await?;
    api.accounts
        .forget_device_sessions(&verified.device_pubkey());
    if let Some(outbox) = &api.outbox {
        outbox.wake();
    }
    if let (Some(events), Some(event)) = (&api.server_events, event) {
        events.announce(&event).await;
    }
    Ok(())
}

/// `ReceiveDeviceRevocation` (server call): a user's homeserver forwards their signed revocation.
pub(super) async fn receive_device_revocation(
    api: &GuildHallApi,
    request: Request<pb::DeviceRevocation>,
) -> Reply<pb::Empty> {
    let origin = verified_origin(&request)?;
    let verified = revocation::verify(request.get_ref())?;
    tracing::debug!(origin = %origin.address(), "ReceiveDeviceRevocation");
    revocation::apply(api.events.store(), &verified, Vec::new(), None).await?;
    api.accounts
        .forget_device_sessions(&verified.device_pubkey());
    Ok(Response::new(pb::Empty {}))
}
