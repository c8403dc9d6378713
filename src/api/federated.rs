//! Handlers that reach other nodes: DM invites across nodes, pushes other servers ask for, and the
//! unread proxy (`docs/PROTOCOL.md` §14).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::session::caller;
use crate::dm_invites::DmInvites;
use crate::federation::verify::verified_origin;
use crate::proto::guildhall::v1 as pb;
use crate::push::Push;
use crate::unread::UnreadProxy;

type Reply<T> = Result<Response<T>, Status>;

/// The stream `ProxiedUnread` answers with.
pub type UnreadStream =
    Pin<Box<dyn Stream<Item = Result<pb::ProxiedUnreadResponse, Status>> + Send + 'static>>;

/// The stream `ProxiedRecentMentions` answers with.
pub type MentionsStream =
    Pin<Box<dyn Stream<Item = Result<pb::ProxiedRecentMentionsResponse, Status>> + Send + 'static>>;

/// The parts these handlers need besides the service's own.
#[derive(Debug, Clone)]
pub struct Remote {
    /// DM invites across nodes.
    pub dm_invites: DmInvites,
    /// The unread fan-out.
    pub unread: UnreadProxy,
}

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

pub async fn send_dm_invite(r: &Remote, q: Request<pb::SendDmInviteRequest>) -> Reply<pb::Empty> {
    let s = caller(&q)?;
    let q = q.into_inner();
    r.dm_invites
        .send(&s, &q.target_user_id, q.invite, &q.target_homeserver_url)
        .await?;
    ok(pb::Empty {})
}

pub async fn receive_dm_invite(
    r: &Remote,
    q: Request<pb::ReceiveDmInviteRequest>,
) -> Reply<pb::Empty> {
    let origin = verified_origin(&q)?;
    r.dm_invites
        .receive(origin.address(), q.into_inner().invite)
        .await?;
    ok(pb::Empty {})
}

pub async fn receive_dm_invite_rejection(
    r: &Remote,
    q: Request<pb::ReceiveDmInviteRejectionRequest>,
) -> Reply<pb::Empty> {
    let origin = verified_origin(&q)?;
    let q = q.into_inner();
    r.dm_invites
        .receive_rejection(origin.address(), &q.token, &q.target_user_id)
        .await?;
    ok(pb::Empty {})
}

pub async fn list_dm_invites(
    r: &Remote,
    q: Request<pb::ListDmInvitesRequest>,
) -> Reply<pb::ListDmInvitesResponse> {
    let s = caller(&q)?;
    ok(pb::ListDmInvitesResponse {
        invites: r.dm_invites.list(&s).await?,
    })
}

pub async fn accept_dm_invite(
    r: &Remote,
    q: Request<pb::AcceptDmInviteRequest>,
) -> Reply<pb::AcceptDmInviteResponse> {
    let s = caller(&q)?;
    let join = r.dm_invites.accept(&s, &q.get_ref().invite_id).await?;
    ok(pb::AcceptDmInviteResponse {
        token: join.token,
        host_server_url: join.host_server_url,
        guild_id: join.guild_id,
    })
}

pub async fn reject_dm_invite(
    r: &Remote,
    q: Request<pb::RejectDmInviteRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&q)?;
    r.dm_invites.reject(&s, &q.get_ref().invite_id).await?;
    ok(pb::Empty {})
}

pub async fn push_notification(
    push: &Push,
    q: Request<pb::PushNotificationRequest>,
) -> Reply<pb::Empty> {
    let origin = verified_origin(&q)?;
    let q = q.into_inner();
    push.delegated(
        &origin,
        &q.target_user_id,
        &q.push_delegation_token,
        &q.payload,
    )
    .await?;
    ok(pb::Empty {})
}

pub async fn proxied_unread(
    r: &Remote,
    q: Request<pb::ProxiedUnreadRequest>,
) -> Reply<UnreadStream> {
    caller(&q)?;
    let answers = r.unread.start(q.into_inner().queries)?;
    ok(Box::pin(answers.map(Ok)))
}

pub async fn proxied_recent_mentions(
    r: &Remote,
    q: Request<pb::ProxiedRecentMentionsRequest>,
) -> Reply<MentionsStream> {
    caller(&q)?;
    let q = q.into_inner();
    let answers = r.unread.mentions(q.queries, q.limit)?;
    ok(Box::pin(answers.map(Ok)))
}
