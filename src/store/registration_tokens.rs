//! Registration tokens (`REGISTRATION_TOKENS_V23`): made and revoked by server admins, spent by
//! registration in its own transaction.
//!
//! Only a token's SHA-256 is stored, like session tokens: a leaked database can't be used to
//! register. Tokens are named by a public id for listing and revoking.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A registration token as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenRecord {
    /// Public id.
    pub id: String,
    /// The admin who made it.
    pub created_by: String,
    /// Made (ms).
    pub created_at: u64,
    /// Expiry (ms), 0 for never.
    pub expires_at: u64,
    /// Most registrations, 0 for unlimited.
    pub max_uses: u32,
    /// Registrations so far.
    pub uses: u32,
    /// When revoked (ms), if it was.
    pub revoked_at: Option<u64>,
    /// The admin's note.
    pub note: String,
}

impl RegistrationTokenRecord {
    /// Why the token can't register anyone at `now`, or `None` if it can: the rule, for the
    /// refusal (the field is `registration_token`).
    pub fn problem(&self, now: u64) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("this registration token was revoked by a server admin")
        } else if self.expires_at != 0 && self.expires_at <= now {
            Some("this registration token has expired")
        } else if self.max_uses != 0 && self.uses >= self.max_uses {
            Some("this registration token has been used its maximum number of times")
        } else {
            None
        }
    }
}

const TOKEN_COLUMNS: &str =
    "id, created_by, created_at, expires_at, max_uses, uses, revoked_at, note";

fn token_row(r: &Row<'_>) -> rusqlite::Result<RegistrationTokenRecord> {
    Ok(RegistrationTokenRecord {
        id: r.get(0)?,
        created_by: r.get(1)?,
        created_at: from_sql_int(r.get(2)?),
        expires_at: from_sql_int(r.get(3)?),
        max_uses: r.get(4)?,
        uses: r.get(5)?,
        revoked_at: r.get::<_, Option<i64>>(6)?.map(from_sql_int),
        note: r.get(7)?,
    })
}

/// Stores a new token under the hash of its secret.
pub fn insert_token(
    c: &Connection,
    token: &RegistrationTokenRecord,
    hash: &[u8; 32],
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO registration_tokens
             (id, token_hash, created_by, created_at, expires_at, max_uses, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            token.id,
            &hash[..],
            token.created_by,
            to_sql_int(token.created_at),
            to_sql_int(token.expires_at),
            token.max_uses,
            token.note
        ],
    )?;
    Ok(())
}

/// The token whose secret hashes to `hash`.
pub fn token_by_hash(
    c: &Connection,
    hash: &[u8; 32],
) -> Result<Option<RegistrationTokenRecord>, StorageError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM registration_tokens WHERE token_hash = ?1");
    Ok(c.query_row(&sql, [&hash[..]], token_row).optional()?)
}

/// The token with public id `id`.
pub fn token(c: &Connection, id: &str) -> Result<Option<RegistrationTokenRecord>, StorageError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM registration_tokens WHERE id = ?1");
    Ok(c.query_row(&sql, [id], token_row).optional()?)
}

/// Every token, newest first, at most `limit`.
pub fn tokens(c: &Connection, limit: usize) -> Result<Vec<RegistrationTokenRecord>, StorageError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM registration_tokens ORDER BY created_at DESC, id LIMIT ?1"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a token revoked (keeping the first revocation time); `None` if there is no such token.
pub fn revoke_token(
    c: &Connection,
    id: &str,
    now: u64,
) -> Result<Option<RegistrationTokenRecord>, StorageError> {
    c.execute(
        "UPDATE registration_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, to_sql_int(now)],
    )?;
    token(c, id)
}

/// Spends one use of the token whose secret hashes to `hash`, inside the registration's
/// transaction, so two registrations racing for a last use can't both win. Refuses (naming
/// `registration_token` and the rule) a token that can't register anyone now.
pub fn spend_token(c: &Connection, hash: &[u8; 32], now: u64) -> Result<(), StorageError> {
    let Some(token) = token_by_hash(c, hash)? else {
        return Err(StorageError::Refused(
            "registration_token: no such registration token on this server".into(),
        ));
    };
    if let Some(problem) = token.problem(now) {
        return Err(StorageError::Refused(format!(
            "registration_token: {problem}"
        )));
    }
    c.execute(
        "UPDATE registration_tokens SET uses = uses + 1 WHERE id = ?1",
        [&token.id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, max_uses: u32, expires_at: u64) -> RegistrationTokenRecord {
        RegistrationTokenRecord {
            id: id.into(),
            created_by: "admin".into(),
            created_at: 1,
            expires_at,
            max_uses,
            uses: 0,
            revoked_at: None,
            note: String::new(),
        }
    }

    #[test]
    fn a_token_is_spent_until_used_up_expired_or_revoked() {
        let c = super::super::schema::test_db();
        insert_token(&c, &record("a", 2, 0), &[1; 32]).expect("insert");
        insert_token(&c, &record("b", 0, 100), &[2; 32]).expect("insert");
        spend_token(&c, &[1; 32], 50).expect("first use");
        spend_token(&c, &[1; 32], 50).expect("second use");
        let used = spend_token(&c, &[1; 32], 50).expect_err("used up");
        assert!(
            used.to_string().contains("maximum number of times"),
            "{used}"
        );
        spend_token(&c, &[2; 32], 99).expect("before expiry");
        let expired = spend_token(&c, &[2; 32], 100).expect_err("expired");
        assert!(expired.to_string().contains("expired"), "{expired}");
        let unknown = spend_token(&c, &[3; 32], 1).expect_err("unknown");
        assert!(unknown.to_string().contains("no such"), "{unknown}");
        let revoked = revoke_token(&c, "a", 60).expect("revoke").expect("exists");
        assert_eq!(revoked.revoked_at, Some(60));
        // A second revocation keeps the first time.
        let again = revoke_token(&c, "a", 70).expect("revoke").expect("exists");
        assert_eq!(again.revoked_at, Some(60));
        assert_eq!(again.uses, 2);
        assert!(revoke_token(&c, "zz", 1).expect("revoke").is_none());
        assert_eq!(tokens(&c, 10).expect("list").len(), 2);
    }
}
