//! Accounts made from an IRC client (`irc_accounts`, docs/IRC.md): the node holds the account's
//! K_id and K_dev seeds (it signs for them) and an Argon2id hash of the password the person
//! chose. `users.is_irc` marks the account as such wherever it is shown.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, to_sql_int};

/// What the node keeps for an IRC-made account.
#[derive(Clone)]
pub struct IrcAccountRecord {
    /// The user, hex K_id.
    pub user_id: String,
    /// Hex seed of K_id.
    pub id_secret: String,
    /// Hex seed of the node-held device key.
    pub device_secret: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// When it was made (ms).
    pub created_at: u64,
}

impl std::fmt::Debug for IrcAccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrcAccountRecord")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Stores an IRC-made account's keys and password hash, and marks the user `is_irc`.
pub fn insert(c: &Connection, record: &IrcAccountRecord) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO irc_accounts (user_id, id_secret, device_secret, password_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record.user_id,
            record.id_secret,
            record.device_secret,
            record.password_hash,
            to_sql_int(record.created_at)
        ],
    )?;
    c.execute(
        "UPDATE users SET is_irc = 1 WHERE id = ?1",
        [&record.user_id],
    )?;
    Ok(())
}

/// The password hash of the IRC-made account with username `irc_name`: (user id, hash).
pub fn password_hash_by_name(
    c: &Connection,
    irc_name: &str,
) -> Result<Option<(String, String)>, StorageError> {
    Ok(c.query_row(
        "SELECT a.user_id, a.password_hash FROM irc_accounts a JOIN users u ON u.id = a.user_id
         WHERE u.irc_name = ?1",
        [irc_name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Takes an IRC-made account's record out (its owner claimed its identity key): the row is
/// deleted and `is_irc` cleared, in the caller's transaction. `None` if the user has none.
pub fn take(c: &Connection, user_id: &str) -> Result<Option<IrcAccountRecord>, StorageError> {
    let record = c
        .query_row(
            "SELECT user_id, id_secret, device_secret, password_hash, created_at
             FROM irc_accounts WHERE user_id = ?1",
            [user_id],
            |r| {
                Ok(IrcAccountRecord {
                    user_id: r.get(0)?,
                    id_secret: r.get(1)?,
                    device_secret: r.get(2)?,
                    password_hash: r.get(3)?,
                    created_at: super::from_sql_int(r.get(4)?),
                })
            },
        )
        .optional()?;
    if record.is_some() {
        c.execute("DELETE FROM irc_accounts WHERE user_id = ?1", [user_id])?;
        c.execute("UPDATE users SET is_irc = 0 WHERE id = ?1", [user_id])?;
    }
    Ok(record)
}
