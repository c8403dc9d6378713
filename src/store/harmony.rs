//! Harmony's `protocol.profile.v1` tables: every user's numeric Harmony id and `is_bot` flag
//! (`harmony_users`, filled by a trigger on `users`; the IRC gateway's bot mode is the same
//! flag), and app data per user and app id
//! (`app_data`). See docs/HARMONY.md.

use rusqlite::{Connection, OptionalExtension, params};

use super::accounts::{UserRecord, load_user};
use super::{StorageError, to_sql_int};

/// A user's Harmony face: their numeric id and the Harmony-only `is_bot` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HarmonyUser {
    /// The numeric id Harmony clients address the user by (from 1, never reused).
    pub num: u64,
    /// Whether the user said they are a bot.
    pub is_bot: bool,
}

/// The guildhall id (hex of K_id) behind a numeric Harmony id, if any user has it.
pub fn user_by_num(c: &Connection, num: u64) -> Result<Option<String>, StorageError> {
    // Ids past i64::MAX were never issued.
    let Ok(num) = i64::try_from(num) else {
        return Ok(None);
    };
    Ok(c.query_row(
        "SELECT user_id FROM harmony_users WHERE num = ?1",
        [num],
        |r| r.get(0),
    )
    .optional()?)
}

/// A user's numeric id and flag, if the user exists.
pub fn harmony_user(c: &Connection, user_id: &str) -> Result<Option<HarmonyUser>, StorageError> {
    Ok(c.query_row(
        "SELECT num, is_bot FROM harmony_users WHERE user_id = ?1",
        [user_id],
        |r| {
            Ok(HarmonyUser {
                num: super::from_sql_int(r.get(0)?),
                is_bot: r.get(1)?,
            })
        },
    )
    .optional()?)
}

/// Whether the user said they are a bot (Harmony's `is_bot`, IRC's `+B`); false for no user.
pub fn is_bot(c: &Connection, user_id: &str) -> Result<bool, StorageError> {
    Ok(harmony_user(c, user_id)?.is_some_and(|h| h.is_bot))
}

/// The members of `guild_id` who said they are bots.
pub fn bots_in_guild(
    c: &Connection,
    guild_id: &str,
) -> Result<std::collections::HashSet<String>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT h.user_id FROM harmony_users h JOIN members m ON m.user_id = h.user_id
         WHERE m.guild_id = ?1 AND h.is_bot = 1",
    )?;
    let rows = stmt.query_map([guild_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A checked profile change from Harmony's `UpdateProfile`. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct HarmonyProfileChange {
    /// New display name (normalised).
    pub display_name: Option<String>,
    /// New avatar URL (empty removes it).
    pub avatar_url: Option<String>,
    /// New `is_bot` flag.
    pub is_bot: Option<bool>,
}

/// Applies an (unsigned) Harmony profile change inside `tx`, returning the user afterwards.
///
/// The change is stamped `max(stored, now)` as the profile time, so a signed `UpdateUser` made
/// before it (delayed or replayed within the clock window) cannot silently undo it.
pub fn apply_profile_change(
    tx: &Connection,
    user_id: &str,
    change: &HarmonyProfileChange,
    now: u64,
) -> Result<UserRecord, StorageError> {
    if change.display_name.is_some() || change.avatar_url.is_some() {
        tx.execute(
            "UPDATE users SET
                 display_name = coalesce(?2, display_name),
                 avatar_url = coalesce(?3, avatar_url),
                 profile_updated_at = max(profile_updated_at, ?4)
             WHERE id = ?1",
            params![
                user_id,
                change.display_name,
                change.avatar_url,
                to_sql_int(now)
            ],
        )?;
    }
    if let Some(is_bot) = change.is_bot {
        tx.execute(
            "UPDATE harmony_users SET is_bot = ?2 WHERE user_id = ?1",
            params![user_id, is_bot],
        )?;
    }
    load_user(tx, user_id)?.ok_or_else(|| StorageError::Task("user vanished".into()))
}

/// The data stored for `(user_id, app_id)`, if any.
pub fn app_data(
    c: &Connection,
    user_id: &str,
    app_id: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(c.query_row(
        "SELECT data FROM app_data WHERE user_id = ?1 AND app_id = ?2",
        params![user_id, app_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// What [`put_app_data`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppDataPut {
    /// The data is stored (or, for empty data, removed).
    Done,
    /// The user already stores data for `max_apps` other apps; nothing changed.
    TooManyApps,
}

/// Stores `data` for `(user_id, app_id)`, replacing what was there; empty `data` removes the
/// entry. A user keeps data for at most `max_apps` apps.
pub fn put_app_data(
    tx: &Connection,
    user_id: &str,
    app_id: &str,
    data: &[u8],
    max_apps: usize,
    now: u64,
) -> Result<AppDataPut, StorageError> {
    if data.is_empty() {
        tx.execute(
            "DELETE FROM app_data WHERE user_id = ?1 AND app_id = ?2",
            params![user_id, app_id],
        )?;
        return Ok(AppDataPut::Done);
    }
    let others: i64 = tx.query_row(
        "SELECT count(*) FROM app_data WHERE user_id = ?1 AND app_id != ?2",
        params![user_id, app_id],
        |r| r.get(0),
    )?;
    if usize::try_from(others).unwrap_or(usize::MAX) >= max_apps {
        return Ok(AppDataPut::TooManyApps);
    }
    tx.execute(
        "INSERT INTO app_data (user_id, app_id, data, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, app_id) DO UPDATE SET data = excluded.data,
             updated_at = excluded.updated_at",
        params![user_id, app_id, data, to_sql_int(now)],
    )?;
    Ok(AppDataPut::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_user(c: &Connection, id: &str, at: i64) {
        c.execute(
            "INSERT INTO users (id, display_name, homeserver, profile_updated_at, created_at)
             VALUES (?1, 'n', 'h', ?2, ?2)",
            params![id, at],
        )
        .expect("insert user");
    }

    #[test]
    fn existing_users_are_numbered_by_the_migration_and_new_ones_by_the_trigger() {
        let mut c = Connection::open_in_memory().expect("open");
        c.pragma_update(None, "foreign_keys", "ON").expect("fk");
        let migrations = super::super::schema::migrations();
        migrations.to_version(&mut c, 7).expect("up to v7");
        add_user(&c, "b", 2);
        add_user(&c, "a", 1);
        migrations.to_latest(&mut c).expect("harmony migration");
        add_user(&c, "c", 3);
        let num = |id: &str| harmony_user(&c, id).expect("read").expect("numbered").num;
        assert_eq!((num("a"), num("b"), num("c")), (1, 2, 3));
        assert_eq!(user_by_num(&c, 2).expect("read").as_deref(), Some("b"));
        assert_eq!(user_by_num(&c, u64::MAX).expect("read"), None);

        // Deleting a user frees nothing: numbers are never reused.
        c.execute("DELETE FROM users WHERE id = 'c'", [])
            .expect("delete");
        assert_eq!(harmony_user(&c, "c").expect("read"), None);
        add_user(&c, "d", 4);
        assert_eq!(num("d"), 4);
    }
}
