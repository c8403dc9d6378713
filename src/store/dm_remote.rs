//! DM invites across nodes: the inviter's proof on invites this node hosts, and invites this node
//! received for its users from other hosts (`received_dm_invites`).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::dms::DmInviteRecord;
use super::{StorageError, from_sql_int, to_sql_int};

/// A device cert as stored with a signed invite (hex keys and signature, as on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCert {
    /// K_dev, hex.
    pub pubkey: String,
    /// The device slot.
    pub device_id: String,
    /// Issue time (ms).
    pub issued_at: u64,
    /// Expiry (ms).
    pub expiry: u64,
    /// K_id's signature, hex.
    pub signature: String,
}

/// The inviter's `dm-invite` proof, kept so the invite can be shown and re-sent as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteProof {
    /// The 64-byte signature.
    pub signature: Vec<u8>,
    /// The signed `DMInvite.timestamp`.
    pub signed_at: u64,
    /// The signer's cert.
    pub cert: StoredCert,
}

fn cert_json(cert: &StoredCert) -> String {
    serde_json::to_string(cert).unwrap_or_default()
}

fn parse_cert(text: &str) -> Option<StoredCert> {
    serde_json::from_str(text).ok()
}

/// A hosted invite with its proof, if it was signed and sent.
#[derive(Debug, Clone)]
pub struct HostedInvite {
    /// The invite.
    pub invite: DmInviteRecord,
    /// The inviter's proof; `None` until `SendDMInvite` succeeded.
    pub proof: Option<InviteProof>,
    /// The homeserver the invite was sent to; empty for this node's own users.
    pub target_server: String,
}

/// The proof of a hosted invite, if it has one.
pub fn proof(c: &Connection, invite_id: &str) -> Result<Option<InviteProof>, StorageError> {
    let row: Option<(Option<Vec<u8>>, i64, String)> = c
        .query_row(
            "SELECT signature, signed_at, device_cert FROM dm_invites WHERE invite_id = ?1",
            [invite_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.and_then(|(signature, signed_at, cert)| {
        Some(InviteProof {
            signature: signature?,
            signed_at: from_sql_int(signed_at),
            cert: parse_cert(&cert)?,
        })
    }))
}

/// The hosted invite with `token`.
pub fn hosted_by_token(c: &Connection, token: &str) -> Result<Option<HostedInvite>, StorageError> {
    let found: Option<(String, String)> = c
        .query_row(
            "SELECT invite_id, target_server FROM dm_invites WHERE token = ?1",
            [token],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((invite_id, target_server)) = found else {
        return Ok(None);
    };
    let Some(invite) = super::dms::get(c, &invite_id)? else {
        return Ok(None);
    };
    Ok(Some(HostedInvite {
        proof: proof(c, &invite_id)?,
        invite,
        target_server,
    }))
}

/// Records that a hosted invite was signed and delivered to `target_server` ('' for this node).
pub fn record_sent(
    c: &Connection,
    invite_id: &str,
    p: &InviteProof,
    target_server: &str,
) -> Result<(), StorageError> {
    c.execute(
        "UPDATE dm_invites SET signature = ?2, signed_at = ?3, device_cert = ?4, target_server = ?5
         WHERE invite_id = ?1",
        params![
            invite_id,
            p.signature,
            to_sql_int(p.signed_at),
            cert_json(&p.cert),
            target_server
        ],
    )?;
    Ok(())
}

/// An invite received from another host for one of this node's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedInvite {
    /// This node's id for it.
    pub invite_id: String,
    /// The host's id for it.
    pub host_invite_id: String,
    /// Admits the target to the DM's guild on the host.
    pub token: String,
    /// Who invited.
    pub inviter_id: String,
    /// Who is invited (a user of this node).
    pub target_user_id: String,
    /// The DM's guild on the host.
    pub guild_id: String,
    /// Its name, as the host sent it.
    pub guild_name: String,
    /// The host (the server that delivered the invite).
    pub host_server_url: String,
    /// The signed timestamp.
    pub timestamp: u64,
    /// The inviter's proof.
    pub signature: Vec<u8>,
    /// The signer's cert.
    pub cert: StoredCert,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
}

const RECEIVED: &str = "invite_id, host_invite_id, token, inviter_id, target_user_id, guild_id, \
     guild_name, host_server_url, timestamp, signature, device_cert, status";

fn received_row(r: &Row<'_>) -> rusqlite::Result<ReceivedInvite> {
    let cert: String = r.get(10)?;
    Ok(ReceivedInvite {
        invite_id: r.get(0)?,
        host_invite_id: r.get(1)?,
        token: r.get(2)?,
        inviter_id: r.get(3)?,
        target_user_id: r.get(4)?,
        guild_id: r.get(5)?,
        guild_name: r.get(6)?,
        host_server_url: r.get(7)?,
        timestamp: from_sql_int(r.get(8)?),
        signature: r.get(9)?,
        cert: parse_cert(&cert).unwrap_or(StoredCert {
            pubkey: String::new(),
            device_id: String::new(),
            issued_at: 0,
            expiry: 0,
            signature: String::new(),
        }),
        status: r.get(11)?,
    })
}

/// Stores a received invite; `false` (and nothing changes) if the same host already delivered
/// this token (a retried delivery).
pub fn insert_received(c: &Connection, i: &ReceivedInvite, now: u64) -> Result<bool, StorageError> {
    let n = c.execute(
        "INSERT INTO received_dm_invites (invite_id, host_invite_id, token, inviter_id,
             target_user_id, guild_id, guild_name, host_server_url, timestamp, signature,
             device_cert, status, received_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         ON CONFLICT (host_server_url, token) DO NOTHING",
        params![
            i.invite_id,
            i.host_invite_id,
            i.token,
            i.inviter_id,
            i.target_user_id,
            i.guild_id,
            i.guild_name,
            i.host_server_url,
            to_sql_int(i.timestamp),
            i.signature,
            cert_json(&i.cert),
            i.status,
            to_sql_int(now),
        ],
    )?;
    Ok(n > 0)
}

/// One received invite.
pub fn received(c: &Connection, invite_id: &str) -> Result<Option<ReceivedInvite>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {RECEIVED} FROM received_dm_invites WHERE invite_id = ?1"),
        [invite_id],
        received_row,
    )
    .optional()?)
}

/// The received invite `host` delivered with `token`.
pub fn received_by_token(
    c: &Connection,
    host: &str,
    token: &str,
) -> Result<Option<ReceivedInvite>, StorageError> {
    Ok(c.query_row(
        &format!(
            "SELECT {RECEIVED} FROM received_dm_invites WHERE host_server_url = ?1 AND token = ?2"
        ),
        [host, token],
        received_row,
    )
    .optional()?)
}

/// A user's pending received invites, newest first.
pub fn received_pending_for(
    c: &Connection,
    target: &str,
) -> Result<Vec<ReceivedInvite>, StorageError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {RECEIVED} FROM received_dm_invites
         WHERE target_user_id = ?1 AND status = 'pending' ORDER BY received_at DESC"
    ))?;
    let rows = stmt.query_map([target], received_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many pending received invites a user has (bounded per user).
pub fn received_pending_count(c: &Connection, target: &str) -> Result<u64, StorageError> {
    let n: i64 = c.query_row(
        "SELECT COUNT(*) FROM received_dm_invites WHERE target_user_id = ?1 AND status = 'pending'",
        [target],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(n))
}

/// Moves a pending received invite to `status`; `false` if it was not pending.
pub fn resolve_received(
    c: &Connection,
    invite_id: &str,
    status: &str,
    now: u64,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "UPDATE received_dm_invites SET status = ?2, updated_at = ?3
         WHERE invite_id = ?1 AND status = 'pending'",
        params![invite_id, status, to_sql_int(now)],
    )?;
    Ok(n > 0)
}

/// The user and the server a push delegation token (its hash) was handed to.
pub fn push_delegation(
    c: &Connection,
    token_hash: &[u8; 32],
) -> Result<Option<(String, String)>, StorageError> {
    Ok(c.query_row(
        "SELECT user_id, origin FROM push_delegations WHERE token_hash = ?1",
        [&token_hash[..]],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Whether the DM invite with `token` is for `user_id` and still open (joining a DM's guild with
/// its token is allowed only to the invited user).
pub fn admits(c: &Connection, token: &str, user_id: &str) -> Result<bool, StorageError> {
    Ok(c.query_row(
        "SELECT 1 FROM dm_invites WHERE token = ?1 AND target_user_id = ?2 AND status = 'pending'",
        [token, user_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Marks the DM invite with `token` accepted once its user joined through it (`JoinInvite`).
pub fn mark_joined(
    c: &Connection,
    token: &str,
    user_id: &str,
    now: u64,
) -> Result<(), StorageError> {
    c.execute(
        "UPDATE dm_invites SET status = 'accepted', updated_at = ?3
         WHERE token = ?1 AND target_user_id = ?2 AND status = 'pending'",
        params![token, user_id, to_sql_int(now)],
    )?;
    Ok(())
}
