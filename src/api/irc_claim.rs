//! `ClaimIrcAccount`: the person behind an account made from IRC takes its identity key
//! (docs/IRC.md, "Taking your account to other clients"). The password proves who asks; the
//! node hands over K_id's seed and keeps nothing of the account's keys: it revokes the device
//! it held, signed with K_id like any revocation (so the user's other servers hear of it too),
//! and tells co-members the account is no longer node-held (`user_updated`, `is_irc` false).

use tonic::{Request, Response};

use super::{GuildHallApi, Reply, moves};
use crate::federation::revocation;
use crate::identity::freshness::now_ms;
use crate::limits::Limit;
use crate::proto::guildhall::v1 as pb;

/// `ClaimIrcAccount` (no session: the account's password is the proof; counted against the
/// caller's address like a login).
pub(super) async fn claim_irc_account(
    api: &GuildHallApi,
    request: Request<pb::ClaimIrcAccountRequest>,
) -> Reply<pb::ClaimIrcAccountResponse> {
    api.limit_by_address(Limit::Login, &request)?;
    let r = request.into_inner();
    let claimed = api
        .accounts
        .claim_irc_account(&r.username, &r.password)
        .await?;
    // The node's own device for the account, revoked with the key it is handing over.
    let statement = revocation::sign(&claimed.id_key, &claimed.node_device, now_ms());
    let verified = revocation::verify(&statement)?;
    moves::revoke_verified(api, &claimed.user, &verified).await?;
    api.guilds.announce_user_updated(&claimed.user.id).await;
    tracing::info!(user = %&claimed.user.id[..8], "IRC-made account claimed by its owner");
    Ok(Response::new(pb::ClaimIrcAccountResponse {
        user_id: claimed.user.id.clone(),
        id_secret: hex::encode(claimed.id_key.to_seed()),
    }))
}
