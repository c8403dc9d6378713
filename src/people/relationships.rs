//! Relationships between users of this node: friend requests (send, accept, decline, cancel),
//! friendships, and blocks. Each change is one transaction that writes both users' sides and
//! tells each of them (`relationship_updated`, their own view only): a blocked user learns that a
//! friendship or request ended, never that they were blocked.
//!
//! A block is what the rest of the node asks ([`crate::store::people::blocked`]): the blocked
//! user's DM invites and friend requests to the blocker are refused, DMs between the two refuse
//! messages, and the blocked user's mentions of the blocker push nothing. The caller must be a user
//! of this node (it is their homeserver). A block may name any user, of any node; friend requests
//! are between users of this node (requests across nodes are not carried yet).

use super::People;
use crate::accounts::remote::normalise_address;
use crate::error::{Error, Result};
use crate::events;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::people::{self as db, Kind, RelationshipRecord};
use crate::store::{EventRow, SessionInfo, StorageError};

/// Most relationships (friends, requests either way, blocks) one user has: the Users resource's
/// friend limit, and a bound on `ListRelationships` and on requests one user can be sent.
pub const MAX_RELATIONSHIPS: u64 = 1000;

/// What changes between two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Request,
    Accept,
    Decline,
    Cancel,
    Unfriend,
    Block,
    Unblock,
}

fn type_of(kind: Option<Kind>) -> pb::RelationshipType {
    match kind {
        None => pb::RelationshipType::None,
        Some(Kind::Friend) => pb::RelationshipType::Friend,
        Some(Kind::Blocked) => pb::RelationshipType::Blocked,
        Some(Kind::Incoming) => pb::RelationshipType::PendingIncoming,
        Some(Kind::Outgoing) => pb::RelationshipType::PendingOutgoing,
    }
}

fn refused(message: &str) -> Error {
    Error::FailedPrecondition(format!("user_id: {message}"))
}

/// The protobuf form of what `other_id` is to `user_id` as stored in `tx`, with the other user.
fn relationship_proto(
    tx: &rusqlite::Connection,
    user_id: &str,
    other_id: &str,
    admins: &dyn Fn(&str) -> bool,
) -> std::result::Result<pb::Relationship, StorageError> {
    let record = db::relationship(tx, user_id, other_id)?;
    to_proto(tx, other_id, record.as_ref(), admins)
}

fn to_proto(
    tx: &rusqlite::Connection,
    other_id: &str,
    record: Option<&RelationshipRecord>,
    admins: &dyn Fn(&str) -> bool,
) -> std::result::Result<pb::Relationship, StorageError> {
    let user = crate::store::accounts::load_user(tx, other_id)?
        .map(|u| crate::convert::user(&u, admins(&u.id)));
    Ok(pb::Relationship {
        user_id: other_id.to_owned(),
        r#type: type_of(record.map(|r| r.kind)) as i32,
        since: record.and_then(|r| crate::convert::timestamp(r.since)),
        user,
    })
}

/// Applies `change` by `me` towards `them` in `tx`: the refusal, or the rows to log (each side's
/// new view, to that side only) and the caller's new view.
fn apply(
    tx: &rusqlite::Connection,
    me: &str,
    them: &str,
    change: Change,
    now: u64,
    admins: &dyn Fn(&str) -> bool,
) -> std::result::Result<Result<(pb::Relationship, Vec<EventRow>)>, StorageError> {
    let mine = db::relationship(tx, me, them)?.map(|r| r.kind);
    let theirs = db::relationship(tx, them, me)?.map(|r| r.kind);
    // The new (mine, theirs); `None` in a slot means "remove".
    let (new_mine, new_theirs) = match change {
        Change::Request => match (mine, theirs) {
            (Some(Kind::Blocked), _) => {
                return Ok(Err(refused("you blocked this user; unblock them first")));
            }
            (_, Some(Kind::Blocked)) => {
                return Ok(Err(refused(
                    "this user does not take friend requests from you",
                )));
            }
            (Some(Kind::Friend), _) => {
                return Ok(Err(Error::AlreadyExists(
                    "user_id: you are friends already".into(),
                )));
            }
            (Some(Kind::Outgoing), _) => {
                return Ok(Ok((relationship_proto(tx, me, them, admins)?, vec![])));
            }
            // They asked first: this is a yes.
            (Some(Kind::Incoming), _) => (Some(Kind::Friend), Some(Kind::Friend)),
            (None, _) => {
                for (who, whose) in [(me, "you have"), (them, "this user has")] {
                    if db::relationship_count(tx, who)? >= MAX_RELATIONSHIPS {
                        return Ok(Err(refused(&format!(
                            "{whose} {MAX_RELATIONSHIPS} relationships, the most there can be"
                        ))));
                    }
                }
                (Some(Kind::Outgoing), Some(Kind::Incoming))
            }
        },
        Change::Accept => match mine {
            Some(Kind::Incoming) => (Some(Kind::Friend), Some(Kind::Friend)),
            _ => return Ok(Err(no_request_from())),
        },
        Change::Decline => match mine {
            Some(Kind::Incoming) => (None, None),
            _ => return Ok(Err(no_request_from())),
        },
        Change::Cancel => match mine {
            Some(Kind::Outgoing) => (None, None),
            _ => {
                return Ok(Err(Error::NotFound(
                    "user_id: you sent this user no friend request".into(),
                )));
            }
        },
        Change::Unfriend => match mine {
            Some(Kind::Friend) => (None, None),
            _ => {
                return Ok(Err(Error::NotFound(
                    "user_id: this user is not your friend".into(),
                )));
            }
        },
        Change::Block => {
            if mine == Some(Kind::Blocked) {
                return Ok(Ok((relationship_proto(tx, me, them, admins)?, vec![])));
            }
            if mine.is_none() && db::relationship_count(tx, me)? >= MAX_RELATIONSHIPS {
                return Ok(Err(refused(&format!(
                    "you have {MAX_RELATIONSHIPS} relationships, the most there can be"
                ))));
            }
            // Their friendship or request ends; their own block of me stands.
            let kept = theirs.filter(|k| *k == Kind::Blocked);
            (Some(Kind::Blocked), kept)
        }
        Change::Unblock => match mine {
            Some(Kind::Blocked) => (None, theirs),
            _ => {
                return Ok(Err(Error::NotFound(
                    "user_id: you have not blocked this user".into(),
                )));
            }
        },
    };
    let mut rows = Vec::new();
    for (who, other, before, after) in [(me, them, mine, new_mine), (them, me, theirs, new_theirs)]
    {
        if before == after {
            continue;
        }
        db::set_relationship(tx, who, other, after, now)?;
        let view = relationship_proto(tx, who, other, admins)?;
        rows.push(events::row(
            vec![events::user_scope(who)],
            pb::stream_response::Event::RelationshipUpdated(view),
        ));
    }
    Ok(Ok((relationship_proto(tx, me, them, admins)?, rows)))
}

fn no_request_from() -> Error {
    Error::NotFound("user_id: this user sent you no friend request".into())
}

impl People {
    /// Checks `user_id`, and that the caller lives on this node; for anything but a block, that
    /// the other user does too. A block is the blocker's own decision, kept at their homeserver:
    /// it may name any user key, of any node, known here or not.
    async fn check_pair(&self, caller: &SessionInfo, user_id: &str, change: Change) -> Result<()> {
        PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
        if user_id == caller.user_id {
            return Err(Error::invalid("user_id", "must be another user"));
        }
        let (me, them) = (caller.user_id.clone(), user_id.to_owned());
        let (mine, theirs) = self
            .guilds
            .store()
            .read(move |c| {
                Ok((
                    crate::store::accounts::load_user(c, &me)?,
                    crate::store::accounts::load_user(c, &them)?,
                ))
            })
            .await?;
        let here = normalise_address(&self.address);
        let lives_here = |home: &str| normalise_address(home) == here;
        if !mine.is_some_and(|u| lives_here(&u.homeserver)) {
            return Err(refused(
                "friends and blocks are kept at your homeserver; sign in there",
            ));
        }
        if matches!(change, Change::Block | Change::Unblock) {
            return Ok(());
        }
        let Some(theirs) = theirs else {
            return Err(Error::NotFound(
                "user_id: no such user on this server".into(),
            ));
        };
        if !lives_here(&theirs.homeserver) {
            return Err(refused(&format!(
                "this user lives on {}; friend requests and blocks across servers are not \
                 supported yet",
                theirs.homeserver
            )));
        }
        Ok(())
    }

    async fn change(
        &self,
        caller: &SessionInfo,
        user_id: &str,
        change: Change,
    ) -> Result<pb::Relationship> {
        self.check_pair(caller, user_id, change).await?;
        let (me, them) = (caller.user_id.clone(), user_id.to_owned());
        let guilds = self.guilds.clone();
        let now = now_ms();
        let view = self
            .guilds
            .events()
            .write(now, move |tx| {
                let admins = |id: &str| guilds.is_admin(id);
                Ok(match apply(tx, &me, &them, change, now, &admins)? {
                    Ok((view, rows)) => (Ok(view), rows),
                    Err(refusal) => (Err(refusal), vec![]),
                })
            })
            .await??;
        tracing::debug!(user = %caller.user_id, other = user_id, ?change, "relationship changed");
        Ok(view)
    }

    /// `SendFriendRequest`.
    pub async fn request_friend(
        &self,
        caller: &SessionInfo,
        user_id: &str,
    ) -> Result<pb::Relationship> {
        self.change(caller, user_id, Change::Request).await
    }

    /// `AcceptFriendRequest`.
    pub async fn accept_friend(
        &self,
        caller: &SessionInfo,
        user_id: &str,
    ) -> Result<pb::Relationship> {
        self.change(caller, user_id, Change::Accept).await
    }

    /// `DeclineFriendRequest`.
    pub async fn decline_friend(&self, caller: &SessionInfo, user_id: &str) -> Result<()> {
        self.change(caller, user_id, Change::Decline)
            .await
            .map(drop)
    }

    /// `CancelFriendRequest`.
    pub async fn cancel_friend(&self, caller: &SessionInfo, user_id: &str) -> Result<()> {
        self.change(caller, user_id, Change::Cancel).await.map(drop)
    }

    /// `RemoveFriend`.
    pub async fn remove_friend(&self, caller: &SessionInfo, user_id: &str) -> Result<()> {
        self.change(caller, user_id, Change::Unfriend)
            .await
            .map(drop)
    }

    /// `BlockUser`.
    pub async fn block(&self, caller: &SessionInfo, user_id: &str) -> Result<pb::Relationship> {
        self.change(caller, user_id, Change::Block).await
    }

    /// `UnblockUser`.
    pub async fn unblock(&self, caller: &SessionInfo, user_id: &str) -> Result<()> {
        self.change(caller, user_id, Change::Unblock)
            .await
            .map(drop)
    }

    /// `ListRelationships`: the caller's, by other user.
    pub async fn relationships(&self, caller: &SessionInfo) -> Result<Vec<pb::Relationship>> {
        let me = caller.user_id.clone();
        let guilds = self.guilds.clone();
        Ok(self
            .guilds
            .store()
            .read(move |c| {
                let admins = |id: &str| guilds.is_admin(id);
                db::relationships(c, &me)?
                    .iter()
                    .map(|r| to_proto(c, &r.other_id, Some(r), &admins))
                    .collect()
            })
            .await?)
    }
}
