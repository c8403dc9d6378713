//! Relationships with users of other nodes (`docs/PROTOCOL.md` §14.4). Each homeserver keeps its
//! own user's side. A change that reaches the other side (a request, an accept, the end of a
//! friendship or request) travels as the user's `relationship` statement, signed by their
//! device for the other user's homeserver: the caller's homeserver checks it, writes its side and
//! queues `ReceiveRelationship` in the same transaction, and the other homeserver checks it
//! again, itself, before writing its user's side. The other server never learns of a block: it
//! hears a `remove`, as for a declined request or an ended friendship.

use prost::Message as _;

use super::People;
use super::views::{MAX_RELATIONSHIPS, refused, relationship_proto};
use crate::error::{Error, Result};
use crate::events;
use crate::federation::PeerDirectory;
use crate::federation::outbox::Outbox;
use crate::identity::freshness::{self, now_ms};
use crate::identity::signing::{self, RelationshipPayload};
use crate::identity::{DeviceCert, PublicKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::people::{self as db, Kind};
use crate::store::{SessionInfo, StorageError};

/// The server method that delivers a statement to the other user's homeserver.
pub const RECEIVE_RELATIONSHIP: &str = "ReceiveRelationship";
/// `action` of a friend request (or of the answer to one, which the other side reads as a yes).
pub const REQUEST: &str = "request";
/// `action` of accepting the other user's request.
pub const ACCEPT: &str = "accept";
/// `action` of ending a friendship or a request either way (also what a block sends).
pub const REMOVE: &str = "remove";
/// A received statement signed longer ago than this is refused: 7 days (room for delayed
/// delivery, as for DM invites).
pub const MAX_STATEMENT_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// What relationships across nodes need of federation; cheap to clone.
#[derive(Debug, Clone)]
pub struct Link {
    store: crate::store::Store,
    directory: PeerDirectory,
    outbox: Outbox,
    own_key: PublicKey,
    skew_ms: u64,
}

impl Link {
    /// Revoked devices from `store`, peers' keys from `directory`, statements sent through
    /// `outbox`, this node's key `own_key`, signatures refused further than `skew_ms` from this
    /// node's clock.
    pub fn new(
        store: crate::store::Store,
        directory: PeerDirectory,
        outbox: Outbox,
        own_key: PublicKey,
        skew_ms: u64,
    ) -> Self {
        Self {
            store,
            directory,
            outbox,
            own_key,
            skew_ms,
        }
    }

    /// Tells the outbox something was queued (after the write committed).
    pub(super) fn wake(&self) {
        self.outbox.wake();
    }

    /// Checks the caller's statement for a change towards the user of `request`, who lives at
    /// `home`: it is the caller's, about that user, says `action`, names this node (`address`)
    /// as the caller's homeserver, is fresh, and is signed by a certified device of the caller
    /// for `home`'s key. Returns it as it will be delivered.
    pub(super) async fn check_outgoing(
        &self,
        caller: &SessionInfo,
        request: &pb::RelationshipRequest,
        action: &str,
        home: &str,
        address: &str,
    ) -> Result<pb::RelationshipStatement> {
        let statement = request.statement.clone().ok_or_else(|| {
            Error::invalid(
                "statement",
                format!(
                    "is required: user_id lives on {home}; sign a relationship statement with \
                     action \"{action}\" for that server (docs/PROTOCOL.md §14.4)"
                ),
            )
        })?;
        if statement.user_id != caller.user_id {
            return Err(Error::invalid(
                "statement.user_id",
                "must be your own user id (you sign your own statements)",
            ));
        }
        if statement.other_user_id != request.user_id {
            return Err(Error::invalid(
                "statement.other_user_id",
                "must equal user_id",
            ));
        }
        if statement.action != action {
            return Err(Error::invalid(
                "statement.action",
                format!("must be \"{action}\" for this method"),
            ));
        }
        if statement.homeserver_url != address {
            return Err(Error::invalid(
                "statement.homeserver_url",
                format!("must be this server's address {address}"),
            ));
        }
        let now = now_ms();
        freshness::check(statement.timestamp, now, self.skew_ms)
            .map_err(|e| Error::invalid("statement.timestamp", e))?;
        // Left to that server when it is down and was never met: it checks on delivery anyway.
        let audience = self.directory.audience_key(home).await?;
        self.check_signature(&statement, audience, now).await?;
        Ok(statement)
    }

    /// Checks the device cert chain of `statement` (not revoked) and, with an `audience`, its
    /// signature for that server's key.
    async fn check_signature(
        &self,
        statement: &pb::RelationshipStatement,
        audience: Option<PublicKey>,
        now: u64,
    ) -> Result<()> {
        let user = PublicKey::from_hex(&statement.user_id)
            .map_err(|e| Error::invalid("statement.user_id", e))?;
        let other = PublicKey::from_hex(&statement.other_user_id)
            .map_err(|e| Error::invalid("statement.other_user_id", e))?;
        let cert = device_cert(statement)?;
        crate::accounts::check_device(
            &self.store,
            &user,
            &cert,
            now,
            self.skew_ms,
            "statement.device_cert",
        )
        .await?;
        let signature = Signature::from_bytes(&statement.signature)
            .map_err(|e| Error::invalid("statement.signature", e))?;
        if let Some(audience) = audience {
            let payload = RelationshipPayload {
                audience,
                user_key: user,
                device_key: cert.device_key,
                other,
                action: statement.action.clone(),
                homeserver_url: statement.homeserver_url.clone(),
                timestamp: statement.timestamp,
            };
            signing::verify(payload, &cert.device_key, &signature).map_err(|_| {
                Error::unauthenticated(
                    "statement.signature",
                    "not a relationship signature by the user's certified device over this \
                     other user, action, homeserver and timestamp for the other user's homeserver",
                )
            })?;
        }
        Ok(())
    }
}

/// The statement's device cert, parsed.
fn device_cert(statement: &pb::RelationshipStatement) -> Result<DeviceCert> {
    let raw = statement
        .device_cert
        .clone()
        .ok_or_else(|| Error::invalid("statement.device_cert", "is required"))?;
    Ok(DeviceCert {
        device_key: PublicKey::from_hex(&raw.pubkey)
            .map_err(|e| Error::invalid("statement.device_cert.pubkey", e))?,
        device_id: raw.device_id,
        issued_at: raw.issued_at,
        expiry: raw.expiry,
        signature: Signature::from_hex(&raw.signature)
            .map_err(|e| Error::invalid("statement.device_cert.signature", e))?,
    })
}

/// Queues `statement` for `home` in the outbox, inside the write that changes the caller's side.
pub(super) fn enqueue(
    tx: &rusqlite::Connection,
    home: &str,
    statement: &pb::RelationshipStatement,
    now: u64,
) -> std::result::Result<(), StorageError> {
    crate::store::outbox::enqueue(
        tx,
        home,
        RECEIVE_RELATIONSHIP,
        &statement.encode_to_vec(),
        now,
    )?;
    Ok(())
}

/// What a received statement does to the receiving user's side `mine`: the new side, or the
/// refusal. `Ok(mine)` changes nothing.
fn receive_transition(
    action: &str,
    mine: Option<Kind>,
) -> std::result::Result<Option<Kind>, Error> {
    Ok(match (action, mine) {
        // The homeserver holds its user's blocks, so a blocked user's requests are refused
        // whichever node they come from. FAILED_PRECONDITION is final: the sender's outbox
        // gives the delivery up, and their request stays pending on their side only.
        (REQUEST, Some(Kind::Blocked)) => {
            return Err(refused(
                "other_user_id: this user does not take friend requests from the signer",
            ));
        }
        (REQUEST, None) => Some(Kind::Incoming),
        // Two requests crossing, or the answer to ours: friends.
        (REQUEST, Some(Kind::Outgoing)) => Some(Kind::Friend),
        (REQUEST, same @ Some(Kind::Incoming | Kind::Friend)) => same,
        (ACCEPT, Some(Kind::Outgoing)) => Some(Kind::Friend),
        (ACCEPT, same @ Some(Kind::Friend)) => same,
        (ACCEPT, _) => {
            return Err(refused(
                "other_user_id: this user sent the signer no friend request",
            ));
        }
        (REMOVE, Some(Kind::Friend | Kind::Incoming | Kind::Outgoing)) => None,
        (REMOVE, same) => same,
        _ => {
            return Err(Error::invalid(
                "action",
                "must be \"request\", \"accept\" or \"remove\"",
            ));
        }
    })
}

impl People {
    /// The federation link, or `UNIMPLEMENTED` on a node started without federation.
    pub(super) fn link(&self) -> Result<&Link> {
        self.link.as_ref().ok_or_else(|| {
            Error::Unimplemented(
                "relationships with users of other servers need federation, which this node \
                 was started without"
                    .into(),
            )
        })
    }

    /// `ReceiveRelationship` (server call from `origin`, the signer's homeserver): checks the
    /// statement itself, then changes the side of the user of this node it concerns and tells
    /// them. A statement no newer than the last one applied for the pair changes nothing and
    /// succeeds, so retried, replayed and reordered deliveries are safe.
    pub async fn receive_statement(
        &self,
        origin: &str,
        statement: &pb::RelationshipStatement,
    ) -> Result<()> {
        let link = self.link()?;
        if statement.homeserver_url != origin {
            return Err(Error::PermissionDenied(format!(
                "homeserver_url: must be the calling server's address {origin} (a server \
                 delivers only its own users' statements)"
            )));
        }
        if ![REQUEST, ACCEPT, REMOVE].contains(&statement.action.as_str()) {
            return Err(Error::invalid(
                "action",
                "must be \"request\", \"accept\" or \"remove\"",
            ));
        }
        let now = now_ms();
        freshness::check_delivered(
            statement.timestamp,
            now,
            link.skew_ms,
            MAX_STATEMENT_AGE_MS,
            "statements",
        )
        .map_err(|rule| Error::invalid("timestamp", rule))?;
        link.check_signature(statement, Some(link.own_key), now)
            .await?;
        let (signer, local) = (statement.user_id.clone(), statement.other_user_id.clone());
        let (ours, theirs) = {
            let (s, l) = (signer.clone(), local.clone());
            self.guilds
                .store()
                .read(move |c| {
                    Ok((
                        crate::store::accounts::load_user(c, &l)?,
                        crate::store::accounts::load_user(c, &s)?,
                    ))
                })
                .await?
        };
        let here = crate::accounts::remote::normalise_address(&self.address);
        let lives_here = |home: &str| crate::accounts::remote::normalise_address(home) == here;
        if !ours.is_some_and(|u| lives_here(&u.homeserver)) {
            return Err(Error::NotFound(
                "other_user_id: not a user of this server".into(),
            ));
        }
        if theirs.is_some_and(|u| lives_here(&u.homeserver)) {
            return Err(Error::PermissionDenied(
                "user_id: a user of this server; their relationships change here".into(),
            ));
        }
        let (action, timestamp, origin) = (
            statement.action.clone(),
            statement.timestamp,
            origin.to_owned(),
        );
        let guilds = self.guilds.clone();
        self.guilds
            .events()
            .write(now, move |tx| {
                let admins = |id: &str| guilds.is_admin(id);
                let last = db::relationship_peer(tx, &local, &signer)?.map_or(0, |(_, at)| at);
                if timestamp <= last {
                    return Ok((Ok(()), vec![]));
                }
                let before = db::relationship(tx, &local, &signer)?.map(|r| r.kind);
                let after = match receive_transition(&action, before) {
                    Ok(after) => after,
                    Err(refusal) => return Ok((Err(refusal), vec![])),
                };
                if before.is_none()
                    && after.is_some()
                    && db::relationship_count(tx, &local)? >= MAX_RELATIONSHIPS
                {
                    return Ok((
                        Err(refused(&format!(
                            "other_user_id: this user has {MAX_RELATIONSHIPS} relationships, \
                             the most there can be"
                        ))),
                        vec![],
                    ));
                }
                db::set_relationship_peer(tx, &local, &signer, &origin, Some(timestamp))?;
                if before == after {
                    return Ok((Ok(()), vec![]));
                }
                db::set_relationship(tx, &local, &signer, after, now)?;
                let view = relationship_proto(tx, &local, &signer, &admins)?;
                let row = events::row(
                    vec![events::user_scope(&local)],
                    pb::stream_response::Event::RelationshipUpdated(view),
                );
                Ok((Ok(()), vec![row]))
            })
            .await??;
        tracing::debug!(origin = %statement.homeserver_url, action = %statement.action, "relationship statement applied");
        Ok(())
    }
}
