//! Handlers for presence and direct messages.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::convert;
use crate::dms::Dms;
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

/// `ReceivePresence` (a server call from the users' homeserver).
pub async fn receive_presence(p: &Presence, r: Request<pb::PresenceBatch>) -> Reply<pb::Empty> {
    let origin = crate::federation::verify::verified_origin(&r)?;
    p.receive_remote(origin.address(), r.get_ref()).await?;
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

pub async fn create_dm(d: &Dms, r: Request<pb::CreateDmRequest>) -> Reply<pb::CreateDmResponse> {
    let s = caller(&r)?;
    let (guild, invite) = d.create(&s, &r.get_ref().target_user_id).await?;
    ok(pb::CreateDmResponse {
        guild: Some(convert::guild(&guild)),
        token: invite.token,
    })
}
