//! Webhooks.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A webhook (its token is stored only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Id.
    pub id: String,
    /// Guild.
    pub guild_id: String,
    /// Channel it posts to.
    pub channel_id: String,
    /// Name shown on its messages.
    pub name: String,
    /// Avatar shown on its messages.
    pub avatar_url: String,
    /// Creator.
    pub creator_id: String,
    /// Created (ms).
    pub created_at: u64,
}

const COLUMNS: &str = "id, guild_id, channel_id, name, avatar_url, creator_id, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: r.get(0)?,
        guild_id: r.get(1)?,
        channel_id: r.get(2)?,
        name: r.get(3)?,
        avatar_url: r.get(4)?,
        creator_id: r.get(5)?,
        created_at: from_sql_int(r.get(6)?),
    })
}

/// Inserts a webhook with the hash of its token.
pub fn insert(
    c: &Connection,
    w: &WebhookRecord,
    token_hash: &[u8; 32],
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO webhooks (id, guild_id, channel_id, name, avatar_url, token_hash, creator_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![w.id, w.guild_id, w.channel_id, w.name, w.avatar_url, &token_hash[..], w.creator_id, to_sql_int(w.created_at)],
    )?;
    Ok(())
}

/// One webhook.
pub fn get(c: &Connection, id: &str) -> Result<Option<WebhookRecord>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"),
        [id],
        row,
    )
    .optional()?)
}

/// A webhook, if `token_hash` is its token's hash.
pub fn authenticate(
    c: &Connection,
    id: &str,
    token_hash: &[u8; 32],
) -> Result<Option<WebhookRecord>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1 AND token_hash = ?2"),
        params![id, &token_hash[..]],
        row,
    )
    .optional()?)
}

/// A guild's webhooks, optionally of one channel.
pub fn list(
    c: &Connection,
    guild_id: &str,
    channel_id: Option<&str>,
) -> Result<Vec<WebhookRecord>, StorageError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE guild_id = ?1 AND (?2 IS NULL OR channel_id = ?2) ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map(params![guild_id, channel_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes a webhook's editable fields.
pub fn update(c: &Connection, w: &WebhookRecord) -> Result<(), StorageError> {
    c.execute(
        "UPDATE webhooks SET name = ?2, avatar_url = ?3, channel_id = ?4 WHERE id = ?1",
        params![w.id, w.name, w.avatar_url, w.channel_id],
    )?;
    Ok(())
}

/// Deletes a webhook.
pub fn delete(c: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(c.execute("DELETE FROM webhooks WHERE id = ?1", [id])? > 0)
}
