//! Remote members and profile propagation (docs/PROTOCOL.md §11), as thin adapters:
//!
//! - `JoinInvite` naming another node as homeserver: check the user's key proof and the invite,
//!   ask the homeserver to vouch (`Federate`), then write user, device, membership and session in
//!   one transaction.
//! - `Federate` (homeserver side): vouch for one of this node's users.
//! - `UpdateFederatedProfile` (host side): apply a user's signed profile change forwarded by their
//!   homeserver, and announce it to co-members.
//! - A signed `UpdateUser` of one of this node's users: queued for their other servers in the
//!   change's own transaction.

use tonic::{Request, Response, Status};

use crate::accounts::remote::normalise_address;
use crate::accounts::{Accounts, JoinInput};
use crate::convert;
use crate::error::Error;
use crate::federation::profiles::ProfileFanout;
use crate::federation::verify::verified_origin;
use crate::federation::{Federation, FederationClient, vouch};
use crate::guilds::Guilds;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::{StorageError, UserRecord};
use prost::Message;

type Reply<T> = Result<Response<T>, Status>;

/// What the node needs to talk to other servers about members and profiles.
#[derive(Debug, Clone)]
pub struct Remote {
    client: FederationClient,
    fanout: ProfileFanout,
    server_id: PublicKey,
    address: String,
}

impl Remote {
    /// The remote-member parts of the node holding `server_id` at `address`.
    pub fn new(
        federation: &Federation,
        outbox: crate::federation::outbox::Outbox,
        server_id: PublicKey,
        address: String,
    ) -> Self {
        Self {
            client: federation.client().clone(),
            fanout: ProfileFanout::new(outbox, address.clone()),
            server_id,
            address,
        }
    }
}

/// A `JoinInviteRequest` with its keys and signature parsed; `prefix` names where it sits (empty:
/// it is the request itself, `join`: forwarded in `Federate`). Public so the fuzz targets
/// (`fuzz/`, `tests/fuzz.rs`) parse forwarded joins as `Federate` does.
pub fn join_input(r: &pb::JoinInviteRequest, prefix: &str) -> Result<JoinInput, Error> {
    Ok(JoinInput {
        token: r.token.clone(),
        id_key: convert::public_key("public_key", &r.public_key)
            .map_err(|e| convert::nested(prefix, e))?,
        cert: convert::device_cert(r.device_cert.clone())
            .map_err(|e| convert::nested(prefix, e))?,
        signature: convert::signature_bytes("signature", &r.signature)
            .map_err(|e| convert::nested(prefix, e))?,
        timestamp: r.timestamp,
        display_name: r.display_name.clone(),
        avatar_url: r.avatar_url.clone(),
        homeserver_url: r.homeserver_url.clone(),
        registration_token: r.registration_token.clone(),
    })
}

/// `JoinInvite`: a user of this node joins as before; a user naming another node as homeserver is
/// vouched for by it first (when the node federates).
pub async fn join_invite(
    a: &Accounts,
    g: &Guilds,
    remote: Option<&Remote>,
    r: Request<pb::JoinInviteRequest>,
) -> Reply<pb::JoinInviteResponse> {
    let original = r.get_ref().clone();
    let remote = match remote {
        Some(remote) if !a.is_own_homeserver(&original.homeserver_url) => remote,
        // A join naming this node (or any join on a node without federation) signs in a user of
        // this node; `prepare_join` refuses an identity held here with another homeserver.
        _ => return super::guilds::join_invite(a, g, r).await,
    };
    let input = join_input(&original, "")?;
    let prepared = a.prepare_remote_join(&input).await?;
    a.check_homeserver(prepared.user_id(), Some(&prepared.homeserver))
        .await?;
    let guild_id = g.check_joinable(prepared.user_id(), &input.token).await?;
    let request = pb::FederationRequest {
        origin_server_id: remote.address.clone(),
        origin_server_pubkey: remote.server_id.to_hex(),
        user_pubkey: original.public_key.clone(),
        user_display_name: original.display_name.clone(),
        guild_id,
        timestamp: original.timestamp,
        signature: original.signature.clone(),
        join: Some(original),
    };
    let vouched = vouch::ask_homeserver(&remote.client, &prepared.homeserver, request)
        .await
        .map_err(Error::from)?;
    let issued = prepared.issued().clone();
    let user_id = prepared.user_id().to_owned();
    let (guild, _user) = g
        .join_with(&user_id, &input.token, move |tx| {
            let user = prepared.apply(tx)?;
            crate::store::remote_push::save_token(
                tx,
                &user.id,
                &prepared.homeserver,
                &vouched.push_delegation_token,
                now_ms(),
            )?;
            Ok(user)
        })
        .await?;
    Ok(Response::new(pb::JoinInviteResponse {
        guild: Some(convert::guild(&guild)),
        token: issued.access_token,
        refresh_token: issued.refresh_token,
    }))
}

/// `Federate` (homeserver side): the calling host forwards a join of one of this node's users.
/// The seed's flat fields must repeat the forwarded join and the verified caller.
pub async fn federate(
    a: &Accounts,
    r: Request<pb::FederationRequest>,
) -> Reply<pb::FederationResponse> {
    let origin = verified_origin(&r)?;
    let f = r.into_inner();
    let join = f.join.ok_or_else(|| {
        Error::invalid(
            "join",
            "is required: the user's signed JoinInviteRequest, as the host received it",
        )
    })?;
    let copies = [
        (
            "origin_server_pubkey",
            f.origin_server_pubkey == origin.key().to_hex(),
            "must be the calling server's key (guildhall-origin-key)",
        ),
        (
            "origin_server_id",
            normalise_address(&f.origin_server_id) == normalise_address(origin.address()),
            "must be the calling server's canonical address (guildhall-origin)",
        ),
        (
            "user_pubkey",
            f.user_pubkey == join.public_key,
            "must equal join.public_key",
        ),
        (
            "user_display_name",
            f.user_display_name == join.display_name,
            "must equal join.display_name",
        ),
        (
            "timestamp",
            f.timestamp == join.timestamp,
            "must equal join.timestamp",
        ),
        (
            "signature",
            f.signature == join.signature,
            "must equal join.signature (the user's join-invite signature)",
        ),
    ];
    if let Some((field, _, rule)) = copies.iter().find(|(_, holds, _)| !holds) {
        return Err(Error::invalid(*field, rule).into());
    }
    let input = join_input(&join, "join")?;
    let (user, push_delegation_token) = a
        .vouch_for_join(origin.address(), origin.key(), &input)
        .await?;
    Ok(Response::new(pb::FederationResponse {
        accepted: true,
        message: String::new(),
        user: Some(convert::user(&user, false)),
        push_delegation_token,
    }))
}

/// `UpdateFederatedProfile` (host side): applies the forwarded change if it verifies and is newer,
/// then announces `user_updated` (and Harmony's `ProfileUpdated`) to the user's co-members.
pub async fn update_federated_profile(
    a: &Accounts,
    harmony: &crate::harmony::Harmony,
    r: Request<pb::UpdateFederatedProfileRequest>,
) -> Reply<pb::Empty> {
    let origin = verified_origin(&r)?;
    crate::harmony::forwarded::apply(a, harmony, origin.address(), r.into_inner()).await?;
    Ok(Response::new(pb::Empty {}))
}

/// What forwarding a profile change left to do once its transaction committed.
#[derive(Debug, Default)]
pub struct ProfileForwarding {
    queued: usize,
    event: Option<crate::gossip::ServerEvent>,
}

/// The part of `UpdateUser` that runs in the change's transaction: if this node is the user's
/// homeserver, queue the change as it was signed for the user's other servers (durable outbox)
/// and append it to the log as a `profile-update` server event, so servers missing from the
/// user's list learn it too. Finish with [`profile_forwarded`] after the commit.
pub fn forward_profile_in(
    remote: Option<&Remote>,
    events: Option<&crate::gossip::ServerEvents>,
    original: pb::UpdateUserRequest,
) -> impl FnOnce(&rusqlite::Connection, &UserRecord) -> Result<ProfileForwarding, StorageError>
+ Send
+ 'static {
    let (remote, events) = (remote.cloned(), events.cloned());
    move |tx, user| {
        let Some(remote) = remote else {
            return Ok(ProfileForwarding::default());
        };
        if normalise_address(&user.homeserver) != normalise_address(&remote.address) {
            return Ok(ProfileForwarding::default());
        }
        let body = ProfileFanout::request(&user.id, original).encode_to_vec();
        let now = now_ms();
        let queued = remote.fanout.queue_in(tx, &user.id, &body, now)?;
        let event = match &events {
            Some(events) => {
                Some(events.append_in(tx, crate::federation::gossiped::PROFILE_KIND, body, now)?)
            }
            None => None,
        };
        Ok(ProfileForwarding { queued, event })
    }
}

/// After the change committed: wakes the outbox for what [`forward_profile_in`] queued and
/// gossips its event.
pub async fn profile_forwarded(
    remote: Option<&Remote>,
    events: Option<&crate::gossip::ServerEvents>,
    done: ProfileForwarding,
) {
    if done.queued > 0
        && let Some(remote) = remote
    {
        remote.fanout.wake();
    }
    if let (Some(events), Some(event)) = (events, done.event) {
        events.announce(&event).await;
    }
}
