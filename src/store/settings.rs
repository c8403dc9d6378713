//! Server settings an admin changed: key → integer value.

use rusqlite::{Connection, params};

use super::StorageError;

/// Every stored setting.
pub fn load(c: &Connection) -> Result<Vec<(String, i64)>, StorageError> {
    let mut stmt = c.prepare("SELECT key, value FROM server_settings ORDER BY key")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores settings (replacing earlier values).
pub fn save(c: &Connection, values: &[(String, i64)]) -> Result<(), StorageError> {
    for (key, value) in values {
        c.execute(
            "INSERT INTO server_settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
    }
    Ok(())
}

/// The rate-limit buckets saved at the last save: (setting name, key, until when in ms since the
/// epoch the key's bucket is not full), for those not full by `now` (ms).
pub fn load_rate_limits(
    c: &Connection,
    now: u64,
) -> Result<Vec<(String, String, u64)>, StorageError> {
    let mut stmt =
        c.prepare("SELECT limit_name, key, until_ms FROM rate_limit_state WHERE until_ms > ?1")?;
    let rows = stmt.query_map([super::to_sql_int(now)], |r| {
        Ok((r.get(0)?, r.get(1)?, super::from_sql_int(r.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the saved rate-limit buckets with `buckets` (as [`load_rate_limits`] answers them).
pub fn save_rate_limits(
    tx: &Connection,
    buckets: &[(&'static str, String, u64)],
) -> Result<(), StorageError> {
    tx.execute("DELETE FROM rate_limit_state", [])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO rate_limit_state (limit_name, key, until_ms) VALUES (?1, ?2, ?3)",
    )?;
    for (limit, key, until) in buckets {
        insert.execute(params![limit, key, super::to_sql_int(*until)])?;
    }
    Ok(())
}
