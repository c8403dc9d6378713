//! Ban notices: signed bans this node made as a guild's host, and those it accepted from others.
//! Servers' moderation lists are in [`super::server_bans`].

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A signed ban, as stored and as sent (`BanNotification`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanNotice {
    /// Hex key of the banning server.
    pub origin_key: String,
    /// The guild, as its host names it.
    pub guild_id: String,
    /// Hex K_id of the banned user.
    pub user_id: String,
    /// Why.
    pub reason: String,
    /// Hex SHA-256 of the evidence, or empty.
    pub evidence_hash: String,
    /// When it was made (ms).
    pub timestamp: u64,
    /// The origin's signature over the `ban` kind.
    pub signature: [u8; 64],
}

/// A ban this node (a guild's host) makes: its notice, and the encoded `BanNotification` to queue
/// for the servers concerned.
#[derive(Debug, Clone)]
pub struct OutgoingBan {
    /// The signed notice.
    pub notice: BanNotice,
    /// This node's address (never a destination).
    pub own_address: String,
    /// The notice as an encoded `BanNotification`.
    pub body: Vec<u8>,
}

/// Stores this node's notice and queues `PropagateBan` in the federation outbox for the banned
/// user's homeserver and the homeservers of the guild's members, in the caller's transaction;
/// answers how many deliveries were queued. Call before the user leaves the guild's members.
pub fn record_outgoing(
    tx: &Connection,
    ban: &OutgoingBan,
    now: u64,
) -> Result<usize, StorageError> {
    insert_notice(tx, &ban.notice, false, now)?;
    let destinations = ban_destinations(
        tx,
        &ban.notice.guild_id,
        &ban.notice.user_id,
        &ban.own_address,
    )?;
    for destination in &destinations {
        super::outbox::enqueue(tx, destination, "PropagateBan", &ban.body, now)?;
    }
    Ok(destinations.len())
}

/// Stores a notice unless one at least as new is stored for the same (origin, guild, user);
/// answers whether it was stored.
pub fn insert_notice(
    tx: &Connection,
    notice: &BanNotice,
    applied: bool,
    now: u64,
) -> Result<bool, StorageError> {
    let changed = tx.execute(
        "INSERT INTO ban_notices (origin_key, guild_id, user_id, reason, evidence_hash, timestamp,
                                  signature, applied, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (origin_key, guild_id, user_id) DO UPDATE SET
             reason = excluded.reason, evidence_hash = excluded.evidence_hash,
             timestamp = excluded.timestamp, signature = excluded.signature,
             applied = excluded.applied, received_at = excluded.received_at
         WHERE excluded.timestamp > ban_notices.timestamp",
        params![
            notice.origin_key,
            notice.guild_id,
            notice.user_id,
            notice.reason,
            notice.evidence_hash,
            to_sql_int(notice.timestamp),
            &notice.signature[..],
            applied,
            to_sql_int(now)
        ],
    )?;
    Ok(changed > 0)
}

/// The stored notice for (origin, guild, user), with whether it was applied here.
pub fn notice(
    c: &Connection,
    origin_key: &str,
    guild_id: &str,
    user_id: &str,
) -> Result<Option<(BanNotice, bool)>, StorageError> {
    Ok(c.query_row(
        "SELECT reason, evidence_hash, timestamp, signature, applied FROM ban_notices
         WHERE origin_key = ?1 AND guild_id = ?2 AND user_id = ?3",
        params![origin_key, guild_id, user_id],
        |r| {
            let signature: Vec<u8> = r.get(3)?;
            Ok((
                BanNotice {
                    origin_key: origin_key.to_owned(),
                    guild_id: guild_id.to_owned(),
                    user_id: user_id.to_owned(),
                    reason: r.get(0)?,
                    evidence_hash: r.get(1)?,
                    timestamp: from_sql_int(r.get(2)?),
                    signature: signature.try_into().unwrap_or([0; 64]),
                },
                r.get(4)?,
            ))
        },
    )
    .optional()?)
}

/// Whether a ban from a list this node trusts (another server's guild ban, or a moderation-list
/// entry, this node's own list included) applies to the user here: they may not join this node's
/// guilds.
pub fn blocked_here(c: &Connection, user_id: &str) -> Result<bool, StorageError> {
    Ok(c.query_row(
        "SELECT 1 FROM ban_notices WHERE user_id = ?1 AND applied = 1
         UNION ALL
         SELECT 1 FROM server_bans WHERE user_id = ?1 AND applied = 1 AND banned = 1
         LIMIT 1",
        params![user_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// The homeservers of a guild's members and of `also` (the banned user), other than `own`: the
/// servers a ban in that guild is sent to.
pub fn ban_destinations(
    c: &Connection,
    guild_id: &str,
    also: &str,
    own: &str,
) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare(
        "SELECT DISTINCT u.homeserver FROM users u
         WHERE (u.id = ?2 OR u.id IN (SELECT user_id FROM members WHERE guild_id = ?1))
           AND u.homeserver != ?3 AND u.homeserver != ''
         ORDER BY u.homeserver",
    )?;
    let rows = stmt.query_map(params![guild_id, also, own], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The local guilds the user is a member of.
pub fn guilds_of(c: &Connection, user_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare("SELECT guild_id FROM members WHERE user_id = ?1")?;
    let rows = stmt.query_map(params![user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
