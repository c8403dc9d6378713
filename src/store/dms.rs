//! Direct-message invites.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A DM invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmInviteRecord {
    /// Id.
    pub invite_id: String,
    /// The token that admits the target to the DM's guild.
    pub token: String,
    /// Who invited.
    pub inviter_id: String,
    /// Who is invited.
    pub target_user_id: String,
    /// The DM's guild.
    pub guild_id: String,
    /// Where the DM lives.
    pub host_server_url: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    /// Created (ms).
    pub created_at: u64,
}

const COLUMNS: &str =
    "invite_id, token, inviter_id, target_user_id, guild_id, host_server_url, status, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<DmInviteRecord> {
    Ok(DmInviteRecord {
        invite_id: r.get(0)?,
        token: r.get(1)?,
        inviter_id: r.get(2)?,
        target_user_id: r.get(3)?,
        guild_id: r.get(4)?,
        host_server_url: r.get(5)?,
        status: r.get(6)?,
        created_at: from_sql_int(r.get(7)?),
    })
}

/// Inserts an invite.
pub fn insert(c: &Connection, i: &DmInviteRecord) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO dm_invites (invite_id, token, inviter_id, target_user_id, guild_id, host_server_url, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![i.invite_id, i.token, i.inviter_id, i.target_user_id, i.guild_id, i.host_server_url, i.status, to_sql_int(i.created_at)],
    )?;
    Ok(())
}

/// One invite.
pub fn get(c: &Connection, invite_id: &str) -> Result<Option<DmInviteRecord>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM dm_invites WHERE invite_id = ?1"),
        [invite_id],
        row,
    )
    .optional()?)
}

/// The pending invites for a user, newest first.
pub fn pending_for(c: &Connection, target: &str) -> Result<Vec<DmInviteRecord>, StorageError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dm_invites WHERE target_user_id = ?1 AND status = 'pending' ORDER BY created_at DESC"
    ))?;
    let rows = stmt.query_map([target], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest pending or accepted invite between two users, either way round.
pub fn between(c: &Connection, a: &str, b: &str) -> Result<Option<DmInviteRecord>, StorageError> {
    Ok(c.query_row(
        &format!(
            "SELECT {COLUMNS} FROM dm_invites
             WHERE ((inviter_id = ?1 AND target_user_id = ?2) OR (inviter_id = ?2 AND target_user_id = ?1))
               AND status IN ('pending', 'accepted')
             ORDER BY created_at DESC LIMIT 1"
        ),
        params![a, b],
        row,
    )
    .optional()?)
}

/// Moves a pending invite to `status`; `false` if it was not pending.
pub fn resolve(
    c: &Connection,
    invite_id: &str,
    status: &str,
    now: u64,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "UPDATE dm_invites SET status = ?2, updated_at = ?3 WHERE invite_id = ?1 AND status = 'pending'",
        params![invite_id, status, to_sql_int(now)],
    )?;
    Ok(n > 0)
}
