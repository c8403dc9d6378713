//! Recent mentions: which messages mention a target (`mentions`, kept by triggers on `messages`),
//! and what each user removed from their list or acknowledged.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{StorageError, from_sql_int, to_sql_int};

/// The ids of messages that mention any of `targets` (user, role and guild ids), below `before`,
/// newer than what `user_id` acknowledged and not removed by them; newest first, at most `limit`.
pub fn mentioning(
    c: &Connection,
    user_id: &str,
    targets: &[String],
    before: u64,
    limit: u32,
) -> Result<Vec<u64>, StorageError> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let acked = acked_through(c, user_id)?;
    let marks = vec!["?"; targets.len()].join(",");
    let sql = format!(
        "SELECT DISTINCT m.message_id FROM mentions m
         WHERE m.target IN ({marks}) AND m.message_id < ? AND m.message_id > ?
           AND NOT EXISTS (SELECT 1 FROM mention_removals r
                           WHERE r.user_id = ? AND r.message_id = m.message_id)
         ORDER BY m.message_id DESC LIMIT ?"
    );
    let mut values: Vec<rusqlite::types::Value> =
        targets.iter().map(|t| t.clone().into()).collect();
    values.push(to_sql_int(before).into());
    values.push(to_sql_int(acked).into());
    values.push(user_id.to_owned().into());
    values.push(i64::from(limit).into());
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values.iter()), |r| r.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(from_sql_int))
        .collect::<Result<_, _>>()?)
}

/// Removes one message from `user_id`'s recent mentions.
pub fn remove(c: &Connection, user_id: &str, message_id: u64) -> Result<(), StorageError> {
    c.execute(
        "INSERT OR IGNORE INTO mention_removals (user_id, message_id) VALUES (?1, ?2)",
        params![user_id, to_sql_int(message_id)],
    )?;
    Ok(())
}

/// Acknowledges every mention of `user_id` up to `message_id` (never moving back); removals at
/// or below the mark are forgotten, since the mark covers them.
pub fn acknowledge(c: &Connection, user_id: &str, message_id: u64) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO mention_acks (user_id, acked_through) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET acked_through = max(acked_through, ?2)",
        params![user_id, to_sql_int(message_id)],
    )?;
    c.execute(
        "DELETE FROM mention_removals WHERE user_id = ?1 AND message_id <= ?2",
        params![user_id, to_sql_int(message_id)],
    )?;
    Ok(())
}

/// Up to which message `user_id` acknowledged their mentions (0: none).
pub fn acked_through(c: &Connection, user_id: &str) -> Result<u64, StorageError> {
    Ok(c.query_row(
        "SELECT acked_through FROM mention_acks WHERE user_id = ?1",
        [user_id],
        |r| r.get::<_, i64>(0),
    )
    .optional()?
    .map(from_sql_int)
    .unwrap_or(0))
}
