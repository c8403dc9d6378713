//! Reads for a user's data export (docs/PEOPLE.md, "Export"): what the node stores about one user,
//! table by table, as JSON rows, and their messages and files in pages, so the export streams
//! instead of loading everything at once.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use super::{StorageError, to_sql_int};

/// One part of the export that is a whole JSON document: its name in the archive and the query
/// that fills it (`?1` is the user's id). Every table that holds something about the user as a
/// person is here; public statements (signed moves, revocations) and guild data that belongs to
/// everyone in the guild are not.
pub const SECTIONS: &[(&str, &str)] = &[
    ("account/user.json", "SELECT * FROM users WHERE id = ?1"),
    (
        "account/devices.json",
        "SELECT pubkey, device_id, name, cert_issued_at, cert_expiry, created_at, last_seen_at
         FROM devices WHERE user_id = ?1 ORDER BY created_at",
    ),
    (
        "account/sessions.json",
        "SELECT device_pubkey, created_at, expires_at FROM sessions WHERE user_id = ?1
         ORDER BY created_at",
    ),
    (
        "account/servers.json",
        "SELECT server_url, created_at FROM user_servers WHERE user_id = ?1 ORDER BY created_at",
    ),
    (
        "account/push_distributors.json",
        "SELECT url, created_at FROM push_distributors WHERE user_id = ?1 ORDER BY created_at",
    ),
    (
        "account/fcm_tokens.json",
        "SELECT token, created_at FROM fcm_tokens WHERE user_id = ?1 ORDER BY created_at",
    ),
    (
        "account/app_data.json",
        "SELECT app_id, data, updated_at FROM app_data WHERE user_id = ?1 ORDER BY app_id",
    ),
    (
        "account/harmony.json",
        "SELECT num AS harmony_user_id, is_bot FROM harmony_users WHERE user_id = ?1",
    ),
    (
        "guilds.json",
        "SELECT m.guild_id, g.name, g.is_dm, g.owner_id = ?1 AS is_owner, m.joined_at, m.nick,
                (SELECT json_group_array(r.name) FROM member_roles mr JOIN roles r ON r.id = mr.role_id
                  WHERE mr.guild_id = m.guild_id AND mr.user_id = ?1) AS roles
         FROM members m JOIN guilds g ON g.id = m.guild_id WHERE m.user_id = ?1
         ORDER BY m.joined_at",
    ),
    (
        "relationships.json",
        "SELECT other_id AS user_id, kind, since FROM relationships WHERE user_id = ?1
         ORDER BY other_id",
    ),
    (
        "notes.json",
        "SELECT target_id AS user_id, note, updated_at FROM user_notes WHERE owner_id = ?1
         ORDER BY target_id",
    ),
    (
        "read_states.json",
        "SELECT * FROM read_states WHERE user_id = ?1",
    ),
    (
        "reactions.json",
        "SELECT message_id, emoji FROM reactions WHERE user_id = ?1 ORDER BY message_id",
    ),
    (
        "dm_invites.json",
        "SELECT invite_id, inviter_id, target_user_id, guild_id, host_server_url, status,
                created_at, updated_at
         FROM dm_invites WHERE inviter_id = ?1 OR target_user_id = ?1 ORDER BY created_at",
    ),
];

/// A JSON value for one column: integers and text as they are, floats as numbers, blobs as hex.
fn json_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::from(hex::encode(b)),
    }
}

/// The rows `sql` answers for `user_id`, each a JSON object keyed by column name.
pub fn section(c: &Connection, sql: &str, user_id: &str) -> Result<Vec<Value>, StorageError> {
    let mut stmt = c.prepare_cached(sql)?;
    let names: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let mut rows = stmt.query([user_id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut object = Map::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            object.insert(name.clone(), json_value(row.get_ref(i)?));
        }
        out.push(Value::Object(object));
    }
    Ok(out)
}

/// Up to `limit` of the messages `user_id` sent here with ids above `after`, oldest first, as JSON
/// objects (the message as stored, its encoded parts in hex).
pub fn messages_after(
    c: &Connection,
    user_id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, Value)>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, guild_id, channel_id, created_at, edited_at, reply_to, text, media_id,
                metadata, mentioned_users, mentioned_roles, is_pinned, thread_id
         FROM messages WHERE sender_id = ?1 AND id > ?2 AND webhook_id IS NULL AND action IS NULL
         ORDER BY id LIMIT ?3",
    )?;
    let names: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let mut rows = stmt.query(params![user_id, after, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let mut object = Map::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let value = match (name.as_str(), row.get_ref(i)?) {
                // Ids are 64-bit: as strings, as the API sends them.
                ("id" | "reply_to", ValueRef::Integer(n)) => Value::from(n.to_string()),
                (_, v) => json_value(v),
            };
            object.insert(name.clone(), value);
        }
        out.push((id, Value::Object(object)));
    }
    Ok(out)
}

/// One file a user uploaded, as the export lists it.
#[derive(Debug, Clone)]
pub struct ExportFile {
    /// Public id.
    pub id: String,
    /// Hex sha256: the blob on disk.
    pub sha256: String,
    /// The uploader's name for it.
    pub filename: String,
    /// Its type.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time (ms).
    pub created_at: u64,
}

/// Up to `limit` of the files `user_id` uploaded, after `(created_at, id)` (`None`: from the
/// first), oldest first. Thumbnails the node made are left out: they are the node's, not the
/// user's.
pub fn files_after(
    c: &Connection,
    user_id: &str,
    after: Option<(u64, String)>,
    limit: u32,
) -> Result<Vec<ExportFile>, StorageError> {
    let (at, id) = after.unwrap_or((0, String::new()));
    let mut stmt = c.prepare_cached(
        "SELECT id, sha256, filename, mime_type, size, created_at FROM media_files f
         WHERE uploader_id = ?1 AND (created_at, id) > (?2, ?3)
           AND NOT EXISTS (SELECT 1 FROM media_files p WHERE p.thumb_id = f.id)
         ORDER BY created_at, id LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![user_id, to_sql_int(at), id, limit], |r| {
        Ok(ExportFile {
            id: r.get(0)?,
            sha256: r.get(1)?,
            filename: r.get(2)?,
            mime_type: r.get(3)?,
            size: super::from_sql_int(r.get(4)?),
            created_at: super::from_sql_int(r.get(5)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
