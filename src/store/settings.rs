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
