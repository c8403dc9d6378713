//! Relationships between users of this node: friend requests (send, accept, decline, cancel),
//! friendships, and blocks. Each change is one transaction that writes both users' sides and
//! tells each of them (`relationship_updated`, their own view only): a blocked user learns that a
//! friendship or request ended, never that they were blocked.
//!
//! A block is what the rest of the node asks ([`crate::store::people::blocked`]): the blocked
//! user's DM invites and friend requests to the blocker are refused, DMs between the two refuse
//! messages, and the blocked user's mentions of the blocker push nothing. The caller must be a user
//! of this node (it is their homeserver). A block may name any user, of any node. With a user of
//! another node, each homeserver keeps its own user's side, and a change that reaches the other
//! side travels as the caller's signed statement ([`across`], `docs/PROTOCOL.md` §14.4).

use super::views::{MAX_RELATIONSHIPS, refused, relationship_proto, to_proto};
use super::{People, across};
use crate::accounts::remote::normalise_address;
use crate::error::{Error, Result};
use crate::events;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::people::{self as db, Kind};
use crate::store::{EventRow, SessionInfo, StorageError};

/// What changes between two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Request,
    Accept,
    Decline,
    Cancel,
    Unfriend,
    Block,
    Unblock,
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

/// Where the other user of a relationship change lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Other {
    /// A user of this node: both sides are written here.
    Local,
    /// A user of the node at this address: the caller's side is written here, theirs there.
    Remote(String),
    /// A key this node can't place (a block of a user it never met): nothing to tell anyone.
    Unplaced,
}

/// What the other user's homeserver hears of `change` when the caller's side is `mine` before
/// it: the action the caller's statement must carry, or `None` when nothing reaches them (a
/// repeated request, a block of someone one had nothing with, an unblock).
fn wire_action(change: Change, mine: Option<Kind>) -> Option<&'static str> {
    match (change, mine) {
        // An answer to their request reads as a request there: their side is outgoing, and a
        // request meeting an outgoing one makes friends (§14.4).
        (Change::Request, None | Some(Kind::Incoming)) => Some(across::REQUEST),
        (Change::Accept, Some(Kind::Incoming)) => Some(across::ACCEPT),
        (Change::Decline, Some(Kind::Incoming))
        | (Change::Cancel, Some(Kind::Outgoing))
        | (Change::Unfriend, Some(Kind::Friend))
        | (Change::Block, Some(Kind::Friend | Kind::Incoming | Kind::Outgoing)) => {
            Some(across::REMOVE)
        }
        _ => None,
    }
}

/// The action a client signs for `change` (what `wire_action` asks whenever it asks anything).
fn signed_action(change: Change) -> &'static str {
    match change {
        Change::Request => across::REQUEST,
        Change::Accept => across::ACCEPT,
        _ => across::REMOVE,
    }
}

impl People {
    /// Checks `user_id`, that the caller lives on this node, and where the other user lives. A
    /// block is the blocker's own decision, kept at their homeserver: it may name any user key,
    /// of any node, known here or not.
    async fn place(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
        change: Change,
    ) -> Result<Other> {
        let user_id = request.user_id.as_str();
        PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
        if user_id == caller.user_id {
            return Err(Error::invalid("user_id", "must be another user"));
        }
        let (me, them) = (caller.user_id.clone(), user_id.to_owned());
        let (mine, theirs, peer) = self
            .guilds
            .store()
            .read(move |c| {
                Ok((
                    crate::store::accounts::load_user(c, &me)?,
                    crate::store::accounts::load_user(c, &them)?,
                    db::relationship_peer(c, &me, &them)?,
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
        // Where they live: their record's homeserver (kept current by moves), else where their
        // statements came from, else where the caller says.
        let home = match (&theirs, peer) {
            (Some(user), _) => Some(user.homeserver.clone()),
            (None, Some((home, _))) => Some(home),
            (None, None) if !request.homeserver_url.is_empty() => Some(
                crate::accounts::rules::http_url(&request.homeserver_url)
                    .map_err(|rule| Error::invalid("homeserver_url", rule))?,
            ),
            (None, None) => None,
        };
        match home {
            Some(home) if lives_here(&home) => {
                if theirs.is_none() {
                    return Err(Error::NotFound(
                        "user_id: no such user on this server".into(),
                    ));
                }
                Ok(Other::Local)
            }
            Some(home) => Ok(Other::Remote(home)),
            None if matches!(change, Change::Block | Change::Unblock) => Ok(Other::Unplaced),
            None => Err(Error::NotFound(
                "user_id: not a user this server knows; give their homeserver_url".into(),
            )),
        }
    }

    async fn change(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
        change: Change,
    ) -> Result<pb::Relationship> {
        let other = self.place(caller, request, change).await?;
        let (me, them) = (caller.user_id.clone(), request.user_id.clone());
        // A change that reaches a user of another node needs the caller's statement for their
        // homeserver, checked before anything is written.
        let outgoing = match &other {
            Other::Remote(home) => {
                let (m, t) = (me.clone(), them.clone());
                let mine = self
                    .guilds
                    .store()
                    .read(move |c| Ok(db::relationship(c, &m, &t)?.map(|r| r.kind)))
                    .await?;
                match wire_action(change, mine) {
                    Some(_) => {
                        let link = self.link()?;
                        let statement = link
                            .check_outgoing(
                                caller,
                                request,
                                signed_action(change),
                                home,
                                &self.address,
                            )
                            .await?;
                        Some((home.clone(), statement, mine))
                    }
                    None => None,
                }
            }
            Other::Local | Other::Unplaced => None,
        };
        let guilds = self.guilds.clone();
        let now = now_ms();
        let queued = outgoing.is_some();
        let view = self
            .guilds
            .events()
            .write(now, move |tx| {
                let admins = |id: &str| guilds.is_admin(id);
                if let Some((_, _, seen)) = &outgoing
                    && db::relationship(tx, &me, &them)?.map(|r| r.kind) != *seen
                {
                    return Ok((
                        Err(refused(
                            "your relationship with this user changed meanwhile; look again \
                             (ListRelationships) and retry",
                        )),
                        vec![],
                    ));
                }
                let (view, rows) = match apply(tx, &me, &them, change, now, &admins)? {
                    Ok(done) => done,
                    Err(refusal) => return Ok((Err(refusal), vec![])),
                };
                if let Some((home, statement, _)) = &outgoing {
                    db::set_relationship_peer(tx, &me, &them, home, None)?;
                    across::enqueue(tx, home, statement, now)?;
                }
                Ok((Ok(view), rows))
            })
            .await??;
        if queued && let Ok(link) = self.link() {
            link.wake();
        }
        tracing::debug!(user = %caller.user_id, other = %request.user_id, ?change, remote = queued, "relationship changed");
        Ok(view)
    }

    /// `SendFriendRequest`.
    pub async fn request_friend(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<pb::Relationship> {
        self.change(caller, request, Change::Request).await
    }

    /// `AcceptFriendRequest`.
    pub async fn accept_friend(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<pb::Relationship> {
        self.change(caller, request, Change::Accept).await
    }

    /// `DeclineFriendRequest`.
    pub async fn decline_friend(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<()> {
        self.change(caller, request, Change::Decline)
            .await
            .map(drop)
    }

    /// `CancelFriendRequest`.
    pub async fn cancel_friend(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<()> {
        self.change(caller, request, Change::Cancel).await.map(drop)
    }

    /// `RemoveFriend`.
    pub async fn remove_friend(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<()> {
        self.change(caller, request, Change::Unfriend)
            .await
            .map(drop)
    }

    /// `BlockUser`.
    pub async fn block(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<pb::Relationship> {
        self.change(caller, request, Change::Block).await
    }

    /// `UnblockUser`.
    pub async fn unblock(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
    ) -> Result<()> {
        self.change(caller, request, Change::Unblock)
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
