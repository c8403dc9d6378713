//! Handlers for presence and direct messages.

use tonic::{Request, Response, Status};

use super::convert;
use super::session::caller;
use crate::dms::{DmInviteView, Dms};
use crate::presence::Presence;
use crate::proto::guildhall::v1 as pb;

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

pub async fn update_presence(
    p: &Presence,
    r: Request<pb::UpdatePresenceRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    p.update(&s, r.status, &r.active_call_channel_id).await?;
    ok(pb::Empty {})
}

pub async fn signal(p: &Presence, r: Request<pb::Empty>, online: bool) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    p.signal(&s, online).await?;
    ok(pb::Empty {})
}

pub async fn get_presence(
    p: &Presence,
    r: Request<pb::GetPresenceRequest>,
) -> Reply<pb::GetPresenceResponse> {
    let s = caller(&r)?;
    let presence = p.get(&s, &r.get_ref().user_ids).await?;
    ok(pb::GetPresenceResponse { presence })
}

fn dm_invite(v: &DmInviteView) -> pb::DmInvite {
    let i = &v.invite;
    pb::DmInvite {
        token: i.token.clone(),
        invite_id: i.invite_id.clone(),
        inviter_id: i.inviter_id.clone(),
        guild_id: i.guild_id.clone(),
        guild_name: v.guild_name.clone(),
        host_server_url: i.host_server_url.clone(),
        timestamp: i.created_at,
        signature: Vec::new(),
        status: i.status.clone(),
        inviter_pubkey: i.inviter_id.clone(),
        device_cert: None,
        target_user_id: i.target_user_id.clone(),
    }
}

pub async fn create_dm(d: &Dms, r: Request<pb::CreateDmRequest>) -> Reply<pb::CreateDmResponse> {
    let s = caller(&r)?;
    let (guild, invite) = d.create(&s, &r.get_ref().target_user_id).await?;
    ok(pb::CreateDmResponse {
        guild: Some(convert::guild(&guild)),
        token: invite.token,
    })
}

pub async fn list_dm_invites(
    d: &Dms,
    r: Request<pb::ListDmInvitesRequest>,
) -> Reply<pb::ListDmInvitesResponse> {
    let s = caller(&r)?;
    let invites = d.pending(&s).await?;
    ok(pb::ListDmInvitesResponse {
        invites: invites.iter().map(dm_invite).collect(),
    })
}

pub async fn accept_dm_invite(
    d: &Dms,
    r: Request<pb::AcceptDmInviteRequest>,
) -> Reply<pb::AcceptDmInviteResponse> {
    let s = caller(&r)?;
    let invite = d.accept(&s, &r.get_ref().invite_id).await?;
    ok(pb::AcceptDmInviteResponse {
        token: invite.token,
        host_server_url: invite.host_server_url,
        guild_id: invite.guild_id,
    })
}

pub async fn reject_dm_invite(d: &Dms, r: Request<pb::RejectDmInviteRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    d.reject(&s, &r.get_ref().invite_id).await?;
    ok(pb::Empty {})
}
