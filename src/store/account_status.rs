//! A user's own statements about their account (docs/PEOPLE.md, "Accounts"): disabled, enabled
//! again, or deleted for good. The domain verifies the K_id signature; this module records what
//! the statement changes, inside the caller's transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::accounts::load_user;
use super::{StorageError, from_sql_int, to_sql_int};

/// The display name a deleted user's messages and memberships show from then on.
pub const DELETED_USER_NAME: &str = "Deleted User";

/// What a status statement did here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Applied.
    Applied,
    /// Not newer than the last statement applied (its timestamp): nothing changed.
    Stale(u64),
    /// The account was deleted already: nothing changes any more.
    AlreadyDeleted,
    /// The user is not known here (only a deletion is recorded for an unknown key).
    UnknownUser,
}

/// Whether `user_id` was deleted (here or by a statement this node received).
pub fn is_deleted(c: &Connection, user_id: &str) -> Result<bool, StorageError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM deleted_users WHERE id = ?1")?
            .query_row([user_id], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Timestamp of the last status statement applied to `user_id` (0: none).
fn status_at(c: &Connection, user_id: &str) -> Result<u64, StorageError> {
    let at: Option<i64> = c
        .query_row(
            "SELECT status_at FROM users WHERE id = ?1",
            [user_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(at.map_or(0, from_sql_int))
}

/// Disables (`disabled`) or enables the account by a statement made at `timestamp`, if it is newer
/// than the last one applied. Disabling deletes every session and refresh token (the schema's
/// trigger then refuses new ones until an enabling statement).
pub fn set_disabled(
    c: &Connection,
    user_id: &str,
    disabled: bool,
    timestamp: u64,
) -> Result<StatusOutcome, StorageError> {
    if is_deleted(c, user_id)? {
        return Ok(StatusOutcome::AlreadyDeleted);
    }
    if load_user(c, user_id)?.is_none() {
        return Ok(StatusOutcome::UnknownUser);
    }
    let last = status_at(c, user_id)?;
    if timestamp <= last {
        return Ok(StatusOutcome::Stale(last));
    }
    c.execute(
        "UPDATE users SET disabled_at = CASE WHEN ?2 THEN ?3 ELSE NULL END, status_at = ?3
         WHERE id = ?1",
        params![user_id, disabled, to_sql_int(timestamp)],
    )?;
    if disabled {
        c.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
        c.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [user_id])?;
    }
    Ok(StatusOutcome::Applied)
}

/// Records the deletion of `user_id` (signed at `timestamp` with `signature`) and wipes what this
/// node keeps about them as a person: their profile becomes [`DELETED_USER_NAME`] with nothing
/// else, and their devices, sessions, server list, push registrations, app data, relationships,
/// notes (theirs and others' about them), read markers, mention marks and pending DM invites go.
/// Memberships are ended by the caller (with the events members need); messages stay, shown
/// with the tombstone's name. The key is refused from then on: the schema's triggers keep it out
/// of `users` (a new account), `devices` and `sessions`.
pub fn record_deletion(
    c: &Connection,
    user_id: &str,
    timestamp: u64,
    signature: &[u8],
    now: u64,
) -> Result<StatusOutcome, StorageError> {
    if is_deleted(c, user_id)? {
        return Ok(StatusOutcome::AlreadyDeleted);
    }
    let known = load_user(c, user_id)?;
    if let Some(user) = &known {
        // Deleting the row takes every table that references it along (devices, sessions,
        // refresh tokens, server list, push, app data, uploads in progress); the tombstone keeps
        // the id, homeserver and creation time so history still names someone.
        c.execute("DELETE FROM users WHERE id = ?1", [user_id])?;
        c.execute(
            "INSERT INTO users (id, display_name, homeserver, profile_updated_at, created_at,
                                status_at, deleted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
            params![
                user_id,
                DELETED_USER_NAME,
                user.homeserver,
                to_sql_int(timestamp.max(user.profile_updated_at)),
                to_sql_int(user.created_at),
                to_sql_int(now),
            ],
        )?;
    }
    for sql in [
        "DELETE FROM relationships WHERE user_id = ?1 OR other_id = ?1",
        "DELETE FROM relationship_peers WHERE user_id = ?1 OR other_id = ?1",
        "DELETE FROM irc_tokens WHERE user_id = ?1",
        "DELETE FROM irc_accounts WHERE user_id = ?1",
        "DELETE FROM user_notes WHERE owner_id = ?1 OR target_id = ?1",
        "DELETE FROM mention_removals WHERE user_id = ?1",
        "DELETE FROM mention_acks WHERE user_id = ?1",
        "DELETE FROM read_states WHERE user_id = ?1",
        "DELETE FROM dm_invites WHERE status = 'pending' AND (inviter_id = ?1 OR target_user_id = ?1)",
    ] {
        c.execute(sql, [user_id])?;
    }
    c.execute(
        "INSERT INTO deleted_users (id, deleted_at, timestamp, signature) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, to_sql_int(now), to_sql_int(timestamp), signature],
    )?;
    Ok(if known.is_some() {
        StatusOutcome::Applied
    } else {
        StatusOutcome::UnknownUser
    })
}

/// The guilds `user_id` is a member of here: (guild id, whether they own it, whether it is a DM).
pub fn memberships(
    c: &Connection,
    user_id: &str,
) -> Result<Vec<(String, bool, bool)>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT g.id, g.owner_id = ?1, g.is_dm FROM members m JOIN guilds g ON g.id = m.guild_id
         WHERE m.user_id = ?1 ORDER BY g.id",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
