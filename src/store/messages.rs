//! Messages, reactions, pins, read states and full-text search.
//!
//! Message ids are time-ordered integers and the table's primary key, so a history page is one
//! range scan on `(channel_id, id)` and stays stable while new messages arrive.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageRecord {
    /// Id.
    pub id: u64,
    /// Channel (or thread).
    pub channel_id: String,
    /// The channel's guild.
    pub guild_id: String,
    /// Sender's user id.
    pub sender_id: String,
    /// Sent (ms).
    pub created_at: u64,
    /// Last edited (ms).
    pub edited_at: Option<u64>,
    /// The message replied to.
    pub reply_to: Option<u64>,
    /// Text.
    pub text: String,
    /// Encoded component list (empty: none).
    pub components: Vec<u8>,
    /// Key/value data.
    pub metadata: BTreeMap<String, String>,
    /// Mentioned users.
    pub mentioned_users: Vec<String>,
    /// Mentioned roles.
    pub mentioned_roles: Vec<String>,
    /// Pinned.
    pub is_pinned: bool,
    /// The thread started from this message, or empty.
    pub thread_id: String,
    /// The sender's idempotency key.
    pub idempotency_key: Option<String>,
    /// A name shown instead of the sender's (webhook messages).
    pub sender_name: Option<String>,
    /// An avatar shown instead of the sender's (webhook messages).
    pub sender_avatar: Option<String>,
    /// The attached file, if any.
    pub media: Option<Attachment>,
    /// The webhook that posted this message (then `sender_id` is that id too); `None` for a
    /// member's message. Only a webhook post sets it, so clients can tell the two apart whatever
    /// name the webhook shows.
    pub webhook_id: Option<String>,
    /// The encoded `SystemAction` of a message the node posted about what happened (a member
    /// joined, a pin, a rename); empty for a message someone sent.
    pub action: Vec<u8>,
}

/// A message with what is shown beside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageView {
    /// The message.
    pub message: MessageRecord,
    /// Reactions: emoji and the users who reacted, in first-reaction order.
    pub reactions: Vec<(String, Vec<String>)>,
    /// Sender's display name (empty if unknown here).
    pub sender_name: String,
    /// Sender's avatar.
    pub sender_avatar_url: String,
}

/// A file attached to a message, as messages show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attachment {
    /// The file's id.
    pub file_id: String,
    /// Its type.
    pub mime_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Blurhash, for images.
    pub blurhash: Option<String>,
    /// Pixel width, for images.
    pub width: Option<u32>,
    /// Pixel height, for images.
    pub height: Option<u32>,
}

/// Which way a history page goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Newest first, towards older messages (scrollback).
    Older,
    /// Oldest first, towards newer messages.
    Newer,
}

fn json_or_null(list: &[String]) -> Option<String> {
    (!list.is_empty()).then(|| serde_json::to_string(list).unwrap_or_default())
}

fn list_from(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

const COLUMNS: &str = "m.id, m.channel_id, m.guild_id, m.sender_id, m.created_at, m.edited_at, m.reply_to, \
     m.text, m.components, m.metadata, m.mentioned_users, m.mentioned_roles, m.is_pinned, m.thread_id, \
     m.idempotency_key, coalesce(m.sender_name, u.display_name, ''), \
     coalesce(m.sender_avatar, u.avatar_url, ''), m.sender_name, m.sender_avatar, \
     m.media_id, f.mime_type, f.size, f.blurhash, f.width, f.height, m.webhook_id, m.action";

const FROM: &str = "FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
     LEFT JOIN media_files f ON f.id = m.media_id";

fn view_row(r: &Row<'_>) -> rusqlite::Result<MessageView> {
    let metadata: Option<String> = r.get(9)?;
    Ok(MessageView {
        message: MessageRecord {
            id: from_sql_int(r.get(0)?),
            channel_id: r.get(1)?,
            guild_id: r.get(2)?,
            sender_id: r.get(3)?,
            created_at: from_sql_int(r.get(4)?),
            edited_at: r.get::<_, Option<i64>>(5)?.map(from_sql_int),
            reply_to: r.get::<_, Option<i64>>(6)?.map(from_sql_int),
            text: r.get(7)?,
            components: r.get::<_, Option<Vec<u8>>>(8)?.unwrap_or_default(),
            metadata: metadata
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or_default(),
            mentioned_users: list_from(r.get(10)?),
            mentioned_roles: list_from(r.get(11)?),
            is_pinned: r.get(12)?,
            thread_id: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            idempotency_key: r.get(14)?,
            sender_name: r.get(17)?,
            sender_avatar: r.get(18)?,
            media: match r.get::<_, Option<String>>(19)? {
                Some(file_id) => Some(Attachment {
                    file_id,
                    mime_type: r.get(20)?,
                    size: from_sql_int(r.get(21)?),
                    blurhash: r.get(22)?,
                    width: r.get(23)?,
                    height: r.get(24)?,
                }),
                None => None,
            },
            webhook_id: r.get(25)?,
            action: r.get::<_, Option<Vec<u8>>>(26)?.unwrap_or_default(),
        },
        reactions: Vec::new(),
        sender_name: r.get(15)?,
        sender_avatar_url: r.get(16)?,
    })
}

fn with_reactions(
    c: &Connection,
    mut views: Vec<MessageView>,
) -> Result<Vec<MessageView>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT emoji, user_id FROM reactions WHERE message_id = ?1 ORDER BY created_at, emoji, user_id",
    )?;
    for view in &mut views {
        let rows = stmt.query_map([to_sql_int(view.message.id)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (emoji, user) = row?;
            match view.reactions.iter_mut().find(|(e, _)| *e == emoji) {
                Some((_, users)) => users.push(user),
                None => view.reactions.push((emoji, vec![user])),
            }
        }
    }
    Ok(views)
}

/// Inserts a message and moves the channel's and guild's latest message id to it.
pub fn insert_message(c: &Connection, m: &MessageRecord) -> Result<(), StorageError> {
    let metadata =
        (!m.metadata.is_empty()).then(|| serde_json::to_string(&m.metadata).unwrap_or_default());
    c.prepare_cached(
        "INSERT INTO messages (id, channel_id, guild_id, sender_id, created_at, reply_to, text, components,
                               metadata, mentioned_users, mentioned_roles, idempotency_key, sender_name,
                               sender_avatar, media_id, webhook_id, action)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        to_sql_int(m.id),
        m.channel_id,
        m.guild_id,
        m.sender_id,
        to_sql_int(m.created_at),
        m.reply_to.map(to_sql_int),
        m.text,
        (!m.components.is_empty()).then_some(&m.components),
        metadata,
        json_or_null(&m.mentioned_users),
        json_or_null(&m.mentioned_roles),
        m.idempotency_key,
        m.sender_name,
        m.sender_avatar,
        m.media.as_ref().map(|a| &a.file_id),
        m.webhook_id,
        (!m.action.is_empty()).then_some(&m.action),
    ])?;
    let id = m.id.to_string();
    c.prepare_cached("UPDATE channels SET latest_message_id = ?2 WHERE id = ?1")?
        .execute(params![m.channel_id, id])?;
    c.prepare_cached("UPDATE guilds SET latest_message_id = ?2 WHERE id = ?1")?
        .execute(params![m.guild_id, id])?;
    Ok(())
}

/// The id of the message a sender already sent with this idempotency key.
pub fn by_idempotency_key(
    c: &Connection,
    sender_id: &str,
    key: &str,
) -> Result<Option<u64>, StorageError> {
    Ok(
        c.prepare_cached("SELECT id FROM messages WHERE sender_id = ?1 AND idempotency_key = ?2")?
            .query_row(params![sender_id, key], |r| r.get::<_, i64>(0))
            .optional()?
            .map(from_sql_int),
    )
}

/// One message with its reactions and sender.
pub fn view(c: &Connection, id: u64) -> Result<Option<MessageView>, StorageError> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE m.id = ?1");
    let found = c
        .prepare_cached(&sql)?
        .query_row([to_sql_int(id)], view_row)
        .optional()?;
    Ok(with_reactions(c, found.into_iter().collect())?.pop())
}

/// A page of a channel's history after (or before) `cursor`, at most `limit`.
pub fn history(
    c: &Connection,
    channel_id: &str,
    cursor: Option<u64>,
    limit: u32,
    direction: Direction,
) -> Result<Vec<MessageView>, StorageError> {
    let sql = match direction {
        Direction::Older => format!(
            "SELECT {COLUMNS} {FROM} WHERE m.channel_id = ?1 AND m.id < ?2 ORDER BY m.id DESC LIMIT ?3"
        ),
        Direction::Newer => format!(
            "SELECT {COLUMNS} {FROM} WHERE m.channel_id = ?1 AND m.id > ?2 ORDER BY m.id ASC LIMIT ?3"
        ),
    };
    let bound = match (direction, cursor) {
        (_, Some(c)) => to_sql_int(c),
        (Direction::Older, None) => i64::MAX,
        (Direction::Newer, None) => 0,
    };
    let rows = c
        .prepare_cached(&sql)?
        .query_map(params![channel_id, bound, limit], view_row)?
        .collect::<Result<Vec<_>, _>>()?;
    with_reactions(c, rows)
}

/// Replaces a message's text and the mentions parsed from it, and stamps `edited_at` (the search
/// index follows by trigger).
pub fn edit_text(
    c: &Connection,
    id: u64,
    text: &str,
    mentioned_users: &[String],
    mentioned_roles: &[String],
    edited_at: u64,
) -> Result<(), StorageError> {
    c.execute(
        "UPDATE messages SET text = ?2, mentioned_users = ?3, mentioned_roles = ?4, edited_at = ?5
         WHERE id = ?1",
        params![
            to_sql_int(id),
            text,
            json_or_null(mentioned_users),
            json_or_null(mentioned_roles),
            to_sql_int(edited_at)
        ],
    )?;
    Ok(())
}

/// Deletes a message (its reactions go with it).
pub fn delete_message(c: &Connection, id: u64) -> Result<bool, StorageError> {
    Ok(c.execute("DELETE FROM messages WHERE id = ?1", [to_sql_int(id)])? > 0)
}

/// Pins or unpins.
pub fn set_pinned(c: &Connection, id: u64, pinned: bool) -> Result<(), StorageError> {
    c.execute(
        "UPDATE messages SET is_pinned = ?2 WHERE id = ?1",
        params![to_sql_int(id), pinned],
    )?;
    Ok(())
}

/// A channel's pinned messages, newest first.
pub fn pinned(c: &Connection, channel_id: &str) -> Result<Vec<MessageView>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE m.channel_id = ?1 AND m.is_pinned = 1 ORDER BY m.id DESC LIMIT 250"
    );
    let rows = c
        .prepare_cached(&sql)?
        .query_map([channel_id], view_row)?
        .collect::<Result<Vec<_>, _>>()?;
    with_reactions(c, rows)
}

/// Adds or removes a reaction; `true` if that changed anything.
pub fn react(
    c: &Connection,
    message_id: u64,
    emoji: &str,
    user_id: &str,
    add: bool,
    now: u64,
) -> Result<bool, StorageError> {
    let n = if add {
        c.execute(
            "INSERT OR IGNORE INTO reactions (message_id, emoji, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![to_sql_int(message_id), emoji, user_id, to_sql_int(now)],
        )?
    } else {
        c.execute(
            "DELETE FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3",
            params![to_sql_int(message_id), emoji, user_id],
        )?
    };
    Ok(n > 0)
}

/// How many distinct emoji a message has reactions with.
pub fn reaction_kinds(c: &Connection, message_id: u64) -> Result<i64, StorageError> {
    Ok(c.query_row(
        "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = ?1",
        [to_sql_int(message_id)],
        |r| r.get(0),
    )?)
}

/// Records the thread started from a message.
pub fn set_thread(c: &Connection, message_id: u64, thread_id: &str) -> Result<(), StorageError> {
    c.execute(
        "UPDATE messages SET thread_id = ?2 WHERE id = ?1",
        params![to_sql_int(message_id), thread_id],
    )?;
    Ok(())
}

/// Raises a user's delivered or read mark in a channel (never lowers it).
pub fn mark(
    c: &Connection,
    user_id: &str,
    channel_id: &str,
    message_id: u64,
    read: bool,
) -> Result<(), StorageError> {
    let id = to_sql_int(message_id);
    let (d, r) = if read { (id, id) } else { (id, 0) };
    c.execute(
        "INSERT INTO read_states (user_id, channel_id, delivered_through, read_through) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, channel_id) DO UPDATE SET
             delivered_through = max(delivered_through, excluded.delivered_through),
             read_through = max(read_through, excluded.read_through)",
        params![user_id, channel_id, d, r],
    )?;
    Ok(())
}

/// Through which message id the user has read the channel (0: nothing yet).
pub fn read_through(c: &Connection, user_id: &str, channel_id: &str) -> Result<u64, StorageError> {
    let found: Option<i64> = c
        .query_row(
            "SELECT read_through FROM read_states WHERE user_id = ?1 AND channel_id = ?2",
            params![user_id, channel_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(found.map_or(0, from_sql_int))
}

/// The newest message of the channel whose id is at most `bound`.
pub fn newest_at_most(
    c: &Connection,
    channel_id: &str,
    bound: u64,
) -> Result<Option<u64>, StorageError> {
    let found: Option<i64> = c.query_row(
        "SELECT max(id) FROM messages WHERE channel_id = ?1 AND id <= ?2",
        params![channel_id, to_sql_int(bound)],
        |r| r.get(0),
    )?;
    Ok(found.map(from_sql_int))
}

/// Full-text search in `channel_ids`: matching messages newest first, and how many match.
pub fn search(
    c: &Connection,
    channel_ids: &[String],
    fts_query: &str,
    limit: u32,
    offset: u32,
) -> Result<(Vec<MessageView>, u64), StorageError> {
    if channel_ids.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let placeholders = vec!["?"; channel_ids.len()].join(",");
    let filter = format!(
        "m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?) AND m.channel_id IN ({placeholders})"
    );
    let mut values: Vec<rusqlite::types::Value> = vec![fts_query.to_owned().into()];
    values.extend(channel_ids.iter().map(|s| s.clone().into()));
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM messages m WHERE {filter}"),
        rusqlite::params_from_iter(values.iter()),
        |r| r.get(0),
    )?;
    values.push(i64::from(limit).into());
    values.push(i64::from(offset).into());
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE {filter} ORDER BY m.id DESC LIMIT ? OFFSET ?");
    let rows = c
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(values.iter()), view_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((with_reactions(c, rows)?, from_sql_int(total)))
}

/// A user's message count in a guild and their most recent messages in `channel_ids`: what they
/// said, so system messages about them (`action`) are left out.
pub fn by_sender(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
    channel_ids: &[String],
    limit: u32,
) -> Result<(i64, Vec<MessageView>), StorageError> {
    let count: i64 = c.query_row(
        "SELECT count(*) FROM messages WHERE guild_id = ?1 AND sender_id = ?2 AND action IS NULL",
        params![guild_id, user_id],
        |r| r.get(0),
    )?;
    if channel_ids.is_empty() {
        return Ok((count, Vec::new()));
    }
    let placeholders = vec!["?"; channel_ids.len()].join(",");
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE m.guild_id = ? AND m.sender_id = ? AND m.action IS NULL
         AND m.channel_id IN ({placeholders}) ORDER BY m.id DESC LIMIT ?"
    );
    let mut values: Vec<rusqlite::types::Value> =
        vec![guild_id.to_owned().into(), user_id.to_owned().into()];
    values.extend(channel_ids.iter().map(|s| s.clone().into()));
    values.push(i64::from(limit).into());
    let rows = c
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(values), view_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((count, with_reactions(c, rows)?))
}

/// Figures for `GetSearchStatus`: indexed documents, database bytes, newest message time.
pub fn search_stats(c: &Connection) -> Result<(u64, u64, u64), StorageError> {
    let docs: i64 = c.query_row("SELECT count(*) FROM messages WHERE text != ''", [], |r| {
        r.get(0)
    })?;
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let newest: Option<i64> =
        c.query_row("SELECT max(created_at) FROM messages", [], |r| r.get(0))?;
    Ok((
        from_sql_int(docs),
        from_sql_int(pages * page_size),
        newest.map(from_sql_int).unwrap_or(0),
    ))
}

/// The largest id stored in any table whose ids come from the id generator (to seed it).
pub fn max_stored_id(c: &Connection) -> Result<u64, StorageError> {
    let id: Option<i64> = c.query_row(
        "SELECT max(v) FROM (
             SELECT max(id) AS v FROM messages
             UNION ALL SELECT max(CAST(id AS INTEGER)) FROM guilds
             UNION ALL SELECT max(CAST(id AS INTEGER)) FROM channels
             UNION ALL SELECT max(CAST(id AS INTEGER)) FROM roles
             UNION ALL SELECT max(CAST(id AS INTEGER)) FROM folders
             UNION ALL SELECT max(CAST(id AS INTEGER)) FROM webhooks
             UNION ALL SELECT max(CAST(invite_id AS INTEGER)) FROM dm_invites)",
        [],
        |r| r.get(0),
    )?;
    Ok(id.map(from_sql_int).unwrap_or(0))
}
