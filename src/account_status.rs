//! A user's own statements about their account (docs/PEOPLE.md, "Accounts"; the signed bytes in
//! docs/PROTOCOL.md §3 `account-status`): disable it (every session ends, no new one opens),
//! enable it again, or delete it for good.
//!
//! Each is signed by the user's K_id, so it needs no session: a disabled account has none left,
//! and any server may check a statement it is handed. The user sends it to their homeserver
//! (`SetAccountStatus`), which applies it and, in the same transaction, queues
//! `ReceiveAccountStatus` through the outbox to every server on the user's list; a deletion is
//! also gossiped as an `account-deleted` server event, so a node that was down or never on the
//! list learns it too. Statements are ordered by their timestamps; a deletion is final.

use prost::Message as _;

use crate::error::{Error, Result};
use crate::gossip::{ServerEvent, ServerEvents};
use crate::guilds::Guilds;
use crate::identity::freshness::{self, now_ms};
use crate::identity::signing::{self, AccountStatusPayload};
use crate::identity::{PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::StorageError;
use crate::store::account_status::{self as db, StatusOutcome};

/// The server method that carries a statement to the user's other servers.
pub const RECEIVE_ACCOUNT_STATUS: &str = "ReceiveAccountStatus";
/// The server-event kind of a deletion (payload: an encoded `AccountStatusStatement`).
pub const DELETED_KIND: &str = "account-deleted";

/// What a statement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The account works again.
    Enabled,
    /// No session works and none can be opened until an `Enabled` statement.
    Disabled,
    /// Gone for good.
    Deleted,
}

impl Status {
    /// The word that is signed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Disabled => "disabled",
            Status::Deleted => "deleted",
        }
    }

    fn from_proto(value: i32) -> Result<Self> {
        match pb::AccountStatus::try_from(value) {
            Ok(pb::AccountStatus::Enabled) => Ok(Status::Enabled),
            Ok(pb::AccountStatus::Disabled) => Ok(Status::Disabled),
            Ok(pb::AccountStatus::Deleted) => Ok(Status::Deleted),
            _ => Err(Error::invalid(
                "status",
                "must be ENABLED (1), DISABLED (2) or DELETED (3)",
            )),
        }
    }

    fn to_proto(self) -> pb::AccountStatus {
        match self {
            Status::Enabled => pb::AccountStatus::Enabled,
            Status::Disabled => pb::AccountStatus::Disabled,
            Status::Deleted => pb::AccountStatus::Deleted,
        }
    }
}

/// A statement whose K_id signature verified. Only [`verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStatus {
    user_id: String,
    status: Status,
    timestamp: u64,
    signature: Signature,
}

impl VerifiedStatus {
    /// The user (hex K_id).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// What it says.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message that carries it.
    pub fn to_proto(&self) -> pb::AccountStatusStatement {
        pb::AccountStatusStatement {
            user_id: self.user_id.clone(),
            status: self.status.to_proto() as i32,
            timestamp: self.timestamp,
            signature: self.signature.to_hex(),
        }
    }
}

/// Signs a statement (clients, tests).
pub fn sign(id_key: &SecretKey, status: Status, timestamp: u64) -> pb::AccountStatusStatement {
    let payload = AccountStatusPayload {
        id_key: id_key.public(),
        status: status.as_str().to_owned(),
        timestamp,
    };
    pb::AccountStatusStatement {
        user_id: payload.id_key.to_hex(),
        status: status.to_proto() as i32,
        timestamp,
        signature: signing::sign(&payload, id_key).to_hex(),
    }
}

/// Parses a statement and checks K_id's signature.
pub fn verify(s: &pb::AccountStatusStatement) -> Result<VerifiedStatus> {
    let id_key = PublicKey::from_hex(&s.user_id).map_err(|e| Error::invalid("user_id", e))?;
    let status = Status::from_proto(s.status)?;
    let signature =
        Signature::from_hex(&s.signature).map_err(|e| Error::invalid("signature", e))?;
    let payload = AccountStatusPayload {
        id_key,
        status: status.as_str().to_owned(),
        timestamp: s.timestamp,
    };
    signing::verify(payload, &id_key, &signature).map_err(|_| {
        Error::unauthenticated(
            "signature",
            "not a signature by user_id over this account-status",
        )
    })?;
    Ok(VerifiedStatus {
        user_id: id_key.to_hex(),
        status,
        timestamp: s.timestamp,
        signature,
    })
}

/// How a statement reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// From the user, at their homeserver: checked for freshness, forwarded, gossiped.
    FirstHand,
    /// From another server (`ReceiveAccountStatus`, or gossip): applied here only.
    Relayed,
}

/// The node's account-status operations.
#[derive(Debug, Clone)]
pub struct AccountStatuses {
    guilds: Guilds,
    address: String,
    clock_skew_ms: u64,
    server_events: Option<ServerEvents>,
}

impl AccountStatuses {
    /// The operations of the node at `address` (its canonical address), over its guilds' event
    /// log; `server_events` gossips deletions when the node takes part in gossip.
    pub fn new(
        guilds: Guilds,
        address: String,
        clock_skew_ms: u64,
        server_events: Option<ServerEvents>,
    ) -> Self {
        Self {
            guilds,
            address: address.trim_end_matches('/').to_owned(),
            clock_skew_ms,
            server_events,
        }
    }

    /// Applies a verified statement, with the events members need (a deleted member leaves
    /// every guild they do not own, and co-members see the tombstone). First-hand, the user must
    /// live here and the statement be fresh; a deletion is refused while the user owns a guild
    /// here (they hand it over or delete it first). Returns the gossip event to announce once
    /// committed, if any.
    pub async fn apply(
        &self,
        statement: &VerifiedStatus,
        arrival: Arrival,
    ) -> Result<Option<ServerEvent>> {
        let now = now_ms();
        if arrival == Arrival::FirstHand {
            freshness::check(statement.timestamp, now, self.clock_skew_ms)
                .map_err(|e| Error::unauthenticated("timestamp", e))?;
        }
        let (s, own, guilds) = (statement.clone(), self.address.clone(), self.guilds.clone());
        let body = statement.to_proto().encode_to_vec();
        let gossip = self.server_events.clone();
        let event = self
            .guilds
            .events()
            .write(now, move |tx| {
                let user = crate::store::accounts::load_user(tx, &s.user_id)?;
                if arrival == Arrival::FirstHand
                    && let Some(refusal) = first_hand_refusal(tx, &s, user.as_ref(), &own)?
                {
                    return Ok((Err(refusal), vec![]));
                }
                let targets: Vec<String> = if arrival == Arrival::FirstHand {
                    let mut t: Vec<String> = crate::store::moves::user_servers(tx, &s.user_id)?
                        .into_iter()
                        .map(|u| u.trim_end_matches('/').to_owned())
                        .filter(|u| *u != own)
                        .collect();
                    t.sort();
                    t.dedup();
                    t
                } else {
                    Vec::new()
                };
                let mut rows = Vec::new();
                let outcome = match s.status {
                    Status::Enabled | Status::Disabled => {
                        let outcome = db::set_disabled(
                            tx,
                            &s.user_id,
                            s.status == Status::Disabled,
                            s.timestamp,
                        )?;
                        if outcome == StatusOutcome::Applied {
                            rows.push(guilds.user_updated_row(tx, &s.user_id)?);
                        }
                        outcome
                    }
                    Status::Deleted => {
                        let signature = s.signature.to_bytes();
                        let outcome =
                            db::record_deletion(tx, &s.user_id, s.timestamp, &signature, now)?;
                        if outcome == StatusOutcome::Applied {
                            rows.push(guilds.user_updated_row(tx, &s.user_id)?);
                            for (guild, owned, is_dm) in db::memberships(tx, &s.user_id)? {
                                // A guild they own elsewhere keeps its owner (shown as deleted)
                                // until its server's admin acts; at home they can't own one.
                                if !owned || is_dm {
                                    rows.extend(crate::guilds::remove_member_in(
                                        tx, &guild, is_dm, &s.user_id,
                                    )?);
                                }
                            }
                        }
                        outcome
                    }
                };
                match outcome {
                    StatusOutcome::Applied => {}
                    StatusOutcome::UnknownUser if arrival == Arrival::Relayed => {}
                    StatusOutcome::UnknownUser => {
                        let refusal = Error::NotFound("user_id: no account here".into());
                        return Ok((Err(refusal), vec![]));
                    }
                    StatusOutcome::Stale(at) => {
                        let refusal = Error::AlreadyExists(format!(
                            "timestamp: a statement as new or newer ({at} ms) is already applied here"
                        ));
                        return Ok((Err(refusal), vec![]));
                    }
                    StatusOutcome::AlreadyDeleted if s.status == Status::Deleted => {
                        let refusal =
                            Error::AlreadyExists("user_id: this account is deleted already".into());
                        return Ok((Err(refusal), vec![]));
                    }
                    StatusOutcome::AlreadyDeleted => {
                        let refusal = Error::FailedPrecondition(
                            "user_id: this account was deleted; nothing changes it any more".into(),
                        );
                        return Ok((Err(refusal), vec![]));
                    }
                }
                for destination in &targets {
                    crate::store::outbox::enqueue(
                        tx,
                        destination,
                        RECEIVE_ACCOUNT_STATUS,
                        &body,
                        now,
                    )?;
                }
                let event = match (&gossip, arrival, s.status) {
                    (Some(events), Arrival::FirstHand, Status::Deleted) => Some(
                        events
                            .append_in(tx, DELETED_KIND, body.clone(), now)
                            .map_err(|e| StorageError::Task(e.to_string()))?,
                    ),
                    _ => None,
                };
                Ok((Ok(event), rows))
            })
            .await??;
        Ok(event)
    }
}

/// Why a first-hand statement can't be taken here, if it can't: the user must live here, and
/// may not delete an account that still owns a guild here.
fn first_hand_refusal(
    tx: &rusqlite::Connection,
    s: &VerifiedStatus,
    user: Option<&crate::store::UserRecord>,
    own: &str,
) -> std::result::Result<Option<Error>, StorageError> {
    let Some(user) = user else {
        return Ok(Some(Error::NotFound("user_id: no account here".into())));
    };
    if user.homeserver.trim_end_matches('/') != own {
        return Ok(Some(Error::FailedPrecondition(format!(
            "user_id: send it to your homeserver ({})",
            user.homeserver
        ))));
    }
    if s.status == Status::Deleted {
        let owned: Vec<String> = db::memberships(tx, &s.user_id)?
            .into_iter()
            .filter(|(_, owned, is_dm)| *owned && !is_dm)
            .map(|(g, _, _)| g)
            .collect();
        if !owned.is_empty() {
            return Ok(Some(Error::FailedPrecondition(format!(
                "user_id: you own guild {} here; hand it to another member \
                 (TransferGuildOwnership) or delete it first",
                owned.join(", ")
            ))));
        }
    }
    Ok(None)
}
