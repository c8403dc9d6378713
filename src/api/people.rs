//! Handlers for what people keep about each other (guildhall additions, docs/PEOPLE.md).

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::people::People;
use crate::proto::guildhall::v1 as pb;

type Reply<T> = Result<Response<T>, Status>;

/// `SetUserNote`.
pub async fn set_note(p: &People, r: Request<pb::SetUserNoteRequest>) -> Reply<pb::UserNote> {
    let s = caller(&r)?;
    let r = r.into_inner();
    Ok(Response::new(p.set_note(&s, &r.user_id, &r.note).await?))
}

/// `GetUserNote`.
pub async fn note(p: &People, r: Request<pb::GetUserNoteRequest>) -> Reply<pb::UserNote> {
    let s = caller(&r)?;
    Ok(Response::new(p.note(&s, &r.get_ref().user_id).await?))
}

/// `ListUserNotes`.
pub async fn notes(p: &People, r: Request<pb::Empty>) -> Reply<pb::ListUserNotesResponse> {
    let s = caller(&r)?;
    Ok(Response::new(pb::ListUserNotesResponse {
        notes: p.notes(&s).await?,
    }))
}

/// The relationship method's request, with the caller's session.
fn pair(
    r: &Request<pb::RelationshipRequest>,
) -> Result<(crate::store::SessionInfo, &pb::RelationshipRequest), Status> {
    Ok((caller(r)?, r.get_ref()))
}

/// `ReceiveRelationship` (server call from the signer's homeserver).
pub async fn receive_relationship(
    p: &People,
    r: Request<pb::RelationshipStatement>,
) -> Reply<pb::Empty> {
    let origin = crate::federation::verify::verified_origin(&r)?;
    p.receive_statement(origin.address(), r.get_ref()).await?;
    Ok(Response::new(pb::Empty {}))
}

/// `SendFriendRequest`.
pub async fn request_friend(
    p: &People,
    r: Request<pb::RelationshipRequest>,
) -> Reply<pb::Relationship> {
    let (s, user) = pair(&r)?;
    Ok(Response::new(p.request_friend(&s, user).await?))
}

/// `AcceptFriendRequest`.
pub async fn accept_friend(
    p: &People,
    r: Request<pb::RelationshipRequest>,
) -> Reply<pb::Relationship> {
    let (s, user) = pair(&r)?;
    Ok(Response::new(p.accept_friend(&s, user).await?))
}

/// `DeclineFriendRequest`.
pub async fn decline_friend(p: &People, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
    let (s, user) = pair(&r)?;
    p.decline_friend(&s, user).await?;
    Ok(Response::new(pb::Empty {}))
}

/// `CancelFriendRequest`.
pub async fn cancel_friend(p: &People, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
    let (s, user) = pair(&r)?;
    p.cancel_friend(&s, user).await?;
    Ok(Response::new(pb::Empty {}))
}

/// `RemoveFriend`.
pub async fn remove_friend(p: &People, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
    let (s, user) = pair(&r)?;
    p.remove_friend(&s, user).await?;
    Ok(Response::new(pb::Empty {}))
}

/// `BlockUser`.
pub async fn block(p: &People, r: Request<pb::RelationshipRequest>) -> Reply<pb::Relationship> {
    let (s, user) = pair(&r)?;
    Ok(Response::new(p.block(&s, user).await?))
}

/// `UnblockUser`.
pub async fn unblock(p: &People, r: Request<pb::RelationshipRequest>) -> Reply<pb::Empty> {
    let (s, user) = pair(&r)?;
    p.unblock(&s, user).await?;
    Ok(Response::new(pb::Empty {}))
}

/// `ListRelationships`.
pub async fn relationships(
    p: &People,
    r: Request<pb::Empty>,
) -> Reply<pb::ListRelationshipsResponse> {
    let s = caller(&r)?;
    Ok(Response::new(pb::ListRelationshipsResponse {
        relationships: p.relationships(&s).await?,
    }))
}

/// `GetUserProfile`.
pub async fn profile(
    p: &People,
    is_admin: &(dyn Fn(&str) -> bool + Sync),
    r: Request<pb::GetUserProfileRequest>,
) -> Reply<pb::UserProfile> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let view = p.profile(&s, &r.user_id, &r.guild_id).await?;
    let user = |u: &crate::store::UserRecord| crate::convert::user(u, is_admin(&u.id));
    Ok(Response::new(pb::UserProfile {
        user: Some(user(&view.user)),
        mutual_guilds: view
            .mutual_guilds
            .into_iter()
            .map(|(guild_id, nick)| pb::MutualGuild {
                guild_id,
                nick: nick.unwrap_or_default(),
            })
            .collect(),
        mutual_friends: view.mutual_friends.iter().map(user).collect(),
        mutual_friends_count: view.mutual_friends_count,
        nick: view.nick.unwrap_or_default(),
    }))
}
