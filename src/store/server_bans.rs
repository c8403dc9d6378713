//! Ban lists across servers: servers' own moderation lists (signed `server-ban` entries, this
//! node's and those accepted from others, newest per origin and user), the admins' view of every
//! ban held from a list, and the bookkeeping of which held bans are applied here.
//!
//! Guild bans from other servers live in `ban_notices` ([`super::bans`]); both tables carry an
//! `applied` flag: the node enforces the entry (the user may join none of its guilds) because the
//! list it comes from is trusted. The flag is the ban; nothing is copied into guilds' own bans.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// One entry of a server's moderation list, as signed (`server-ban`) and as sent
/// (`ServerBanEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBanEntry {
    /// Hex key of the server whose list it is (the signer).
    pub origin_key: String,
    /// Hex K_id of the user it is about.
    pub user_id: String,
    /// `true`: banned; `false`: the ban is lifted.
    pub banned: bool,
    /// Why.
    pub reason: String,
    /// When the origin made it (ms); the newest entry for a user wins.
    pub timestamp: u64,
    /// The origin's signature over the `server-ban` kind.
    pub signature: [u8; 64],
}

/// A ban held from a list (another server's guild ban, or a moderation-list entry), as admins see
/// it in `ListBanNotices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBan {
    /// Hex key of the server whose list it is.
    pub origin_key: String,
    /// The origin's guild for a guild ban; empty for a moderation-list entry.
    pub guild_id: String,
    /// Hex K_id of the user.
    pub user_id: String,
    /// `false` only for a lifted moderation-list ban.
    pub banned: bool,
    /// Why.
    pub reason: String,
    /// When the origin signed it (ms).
    pub timestamp: u64,
    /// Whether this node enforces it (its list is trusted); otherwise an advisory.
    pub applied: bool,
    /// When this node stored it (ms).
    pub received_at: u64,
    /// The origin's signature (`ban` or `server-ban`), so an admin's client can check it.
    pub signature: Vec<u8>,
}

/// Stores an entry unless one at least as new is held for the same (origin, user); answers
/// whether it was stored.
pub fn insert_entry(
    tx: &Connection,
    entry: &ServerBanEntry,
    applied: bool,
    now: u64,
) -> Result<bool, StorageError> {
    let changed = tx.execute(
        "INSERT INTO server_bans (origin_key, user_id, banned, reason, timestamp, signature,
                                  applied, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (origin_key, user_id) DO UPDATE SET
             banned = excluded.banned, reason = excluded.reason, timestamp = excluded.timestamp,
             signature = excluded.signature, applied = excluded.applied,
             received_at = excluded.received_at
         WHERE excluded.timestamp > server_bans.timestamp",
        params![
            entry.origin_key,
            entry.user_id,
            entry.banned,
            entry.reason,
            to_sql_int(entry.timestamp),
            &entry.signature[..],
            applied,
            to_sql_int(now)
        ],
    )?;
    Ok(changed > 0)
}

/// The entry held for (origin, user), with whether it is applied here.
pub fn entry(
    c: &Connection,
    origin_key: &str,
    user_id: &str,
) -> Result<Option<(ServerBanEntry, bool)>, StorageError> {
    Ok(c.query_row(
        "SELECT banned, reason, timestamp, signature, applied FROM server_bans
         WHERE origin_key = ?1 AND user_id = ?2",
        params![origin_key, user_id],
        |r| {
            let signature: Vec<u8> = r.get(3)?;
            Ok((
                ServerBanEntry {
                    origin_key: origin_key.to_owned(),
                    user_id: user_id.to_owned(),
                    banned: r.get(0)?,
                    reason: r.get(1)?,
                    timestamp: from_sql_int(r.get(2)?),
                    signature: signature.try_into().unwrap_or([0; 64]),
                },
                r.get(4)?,
            ))
        },
    )
    .optional()?)
}

/// A page of the bans held from lists, newest first: other servers' guild bans (this node's own
/// guild bans are not a list it holds) and every moderation-list entry, this node's own included;
/// with `advisories_only`, only bans not applied here. Answers the page and the total count.
pub fn held(
    c: &Connection,
    own_key: &str,
    advisories_only: bool,
    limit: u32,
    offset: u32,
) -> Result<(Vec<HeldBan>, u64), StorageError> {
    const HELD: &str = "
        WITH held AS (
            SELECT origin_key, guild_id, user_id, 1 AS banned, reason, timestamp, applied,
                   received_at, signature
            FROM ban_notices WHERE origin_key != ?1
            UNION ALL
            SELECT origin_key, '' AS guild_id, user_id, banned, reason, timestamp, applied,
                   received_at, signature
            FROM server_bans)
        SELECT origin_key, guild_id, user_id, banned, reason, timestamp, applied, received_at,
               signature
        FROM held WHERE ?2 = 0 OR (applied = 0 AND banned = 1)";
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM ({HELD})"),
        params![own_key, advisories_only],
        |r| r.get(0),
    )?;
    let mut stmt = c.prepare(&format!(
        "{HELD} ORDER BY received_at DESC, origin_key, guild_id, user_id LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt.query_map(params![own_key, advisories_only, limit, offset], |r| {
        Ok(HeldBan {
            origin_key: r.get(0)?,
            guild_id: r.get(1)?,
            user_id: r.get(2)?,
            banned: r.get(3)?,
            reason: r.get(4)?,
            timestamp: from_sql_int(r.get(5)?),
            applied: r.get(6)?,
            received_at: from_sql_int(r.get(7)?),
            signature: r.get(8)?,
        })
    })?;
    let page = rows.collect::<Result<_, _>>()?;
    Ok((page, u64::try_from(total).unwrap_or(0)))
}

/// Which list a held ban comes from, and whom it is about: the unit [`set_applied`] and the start-up
/// re-decision work on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListBan {
    /// Hex key of the server whose list it is.
    pub origin_key: String,
    /// The origin's guild (a guild ban); `None`: the origin's moderation list.
    pub guild_id: Option<String>,
    /// Hex K_id of the user.
    pub user_id: String,
}

/// Every held ban currently applied here (few: only trusted lists' bans).
pub fn applied(c: &Connection) -> Result<Vec<ListBan>, StorageError> {
    let mut out = Vec::new();
    let mut stmt =
        c.prepare("SELECT origin_key, guild_id, user_id FROM ban_notices WHERE applied = 1")?;
    for row in stmt.query_map([], |r| {
        Ok(ListBan {
            origin_key: r.get(0)?,
            guild_id: Some(r.get(1)?),
            user_id: r.get(2)?,
        })
    })? {
        out.push(row?);
    }
    let mut stmt = c.prepare("SELECT origin_key, user_id FROM server_bans WHERE applied = 1")?;
    for row in stmt.query_map([], |r| {
        Ok(ListBan {
            origin_key: r.get(0)?,
            guild_id: None,
            user_id: r.get(1)?,
        })
    })? {
        out.push(row?);
    }
    Ok(out)
}

/// The bans of one list (a server's moderation list with `guild_id` `None`, or one of its guilds)
/// that are held but not applied here: what trusting that list applies. Lifted entries are not
/// bans, so they are not listed.
pub fn unapplied_of(
    c: &Connection,
    origin_key: &str,
    guild_id: Option<&str>,
) -> Result<Vec<String>, StorageError> {
    let rows = match guild_id {
        Some(guild_id) => c
            .prepare(
                "SELECT user_id FROM ban_notices
                 WHERE origin_key = ?1 AND guild_id = ?2 AND applied = 0",
            )?
            .query_map(params![origin_key, guild_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
        None => c
            .prepare(
                "SELECT user_id FROM server_bans
                 WHERE origin_key = ?1 AND banned = 1 AND applied = 0",
            )?
            .query_map(params![origin_key], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
    };
    Ok(rows)
}

/// Marks a held ban applied here or not.
pub fn set_applied(tx: &Connection, ban: &ListBan, applied: bool) -> Result<(), StorageError> {
    match &ban.guild_id {
        Some(guild_id) => tx.execute(
            "UPDATE ban_notices SET applied = ?4
             WHERE origin_key = ?1 AND guild_id = ?2 AND user_id = ?3",
            params![ban.origin_key, guild_id, ban.user_id, applied],
        )?,
        None => tx.execute(
            "UPDATE server_bans SET applied = ?3 WHERE origin_key = ?1 AND user_id = ?2",
            params![ban.origin_key, ban.user_id, applied],
        )?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_at(banned: bool, timestamp: u64) -> ServerBanEntry {
        ServerBanEntry {
            origin_key: "o".repeat(64),
            user_id: "u".repeat(64),
            banned,
            reason: "r".into(),
            timestamp,
            signature: [7; 64],
        }
    }

    #[test]
    fn the_newest_entry_wins_and_applied_bans_block_joins() {
        let c = super::super::schema::test_db();
        let user = "u".repeat(64);
        assert!(insert_entry(&c, &entry_at(true, 10), true, 1).expect("insert"));
        assert!(super::super::bans::blocked_here(&c, &user).expect("blocked"));
        assert!(!insert_entry(&c, &entry_at(false, 10), false, 2).expect("same age"));
        assert!(!insert_entry(&c, &entry_at(false, 9), false, 2).expect("older"));
        assert!(insert_entry(&c, &entry_at(false, 11), false, 3).expect("lift"));
        let (stored, applied) = entry(&c, &"o".repeat(64), &user)
            .expect("read")
            .expect("held");
        assert!(!stored.banned && !applied);
        assert!(!super::super::bans::blocked_here(&c, &user).expect("lifted"));
        assert!(
            unapplied_of(&c, &"o".repeat(64), None)
                .expect("read")
                .is_empty(),
            "a lift is nothing to apply"
        );
        let (page, total) = held(&c, "own", false, 10, 0).expect("held");
        assert_eq!((page.len(), total), (1, 1));
        assert_eq!(held(&c, "own", true, 10, 0).expect("held").1, 0);
    }
}
