//! IRC credentials (`irc_tokens`): revocable tokens a user mints over gRPC and gives their IRC
//! client as its password. Only a SHA-256 of each token is kept, as for sessions.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// One IRC token as its owner lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcTokenRecord {
    /// Its id (what `RevokeIrcToken` names).
    pub id: String,
    /// The owner, hex K_id.
    pub user_id: String,
    /// The owner's label ("laptop irssi").
    pub label: String,
    /// When it was minted (ms).
    pub created_at: u64,
    /// When an IRC client last logged in with it (ms), if ever.
    pub last_used_at: Option<u64>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IrcTokenRecord> {
    Ok(IrcTokenRecord {
        id: r.get(0)?,
        user_id: r.get(1)?,
        label: r.get(2)?,
        created_at: from_sql_int(r.get(3)?),
        last_used_at: r.get::<_, Option<i64>>(4)?.map(from_sql_int),
    })
}

const COLUMNS: &str = "id, user_id, label, created_at, last_used_at";

/// Stores a new token by its hash.
pub fn insert(
    c: &Connection,
    record: &IrcTokenRecord,
    token_hash: &[u8; 32],
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO irc_tokens (id, user_id, token_hash, label, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record.id,
            record.user_id,
            token_hash.as_slice(),
            record.label,
            to_sql_int(record.created_at)
        ],
    )?;
    Ok(())
}

/// `user_id`'s tokens, oldest first.
pub fn list(c: &Connection, user_id: &str) -> Result<Vec<IrcTokenRecord>, StorageError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM irc_tokens WHERE user_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([user_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many tokens `user_id` holds.
pub fn count(c: &Connection, user_id: &str) -> Result<u64, StorageError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM irc_tokens WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(n))
}

/// Deletes `user_id`'s token `id`; whether there was one.
pub fn revoke(c: &Connection, user_id: &str, id: &str) -> Result<bool, StorageError> {
    Ok(c.execute(
        "DELETE FROM irc_tokens WHERE user_id = ?1 AND id = ?2",
        params![user_id, id],
    )? > 0)
}

/// The token with this hash, marked used at `now`.
pub fn use_by_hash(
    c: &Connection,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<IrcTokenRecord>, StorageError> {
    let found = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM irc_tokens WHERE token_hash = ?1"
        ))?
        .query_row([token_hash.as_slice()], row)
        .optional()?;
    if let Some(record) = &found {
        c.execute(
            "UPDATE irc_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![record.id, to_sql_int(now)],
        )?;
    }
    Ok(found)
}
