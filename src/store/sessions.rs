//! Sessions and refresh tokens, stored only as sha256 hashes.
//!
//! A login opens a *family*: one access token and one refresh token. Refreshing spends the refresh
//! token and replaces both within the family. Presenting a spent refresh token means it was copied,
//! so the whole family is revoked (the thief's and the owner's tokens alike) and the user logs in
//! again.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, Store, from_sql_int, to_sql_int};

/// The hashes and lifetimes of a fresh access/refresh token pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// sha256 of the access token.
    pub access_hash: [u8; 32],
    /// sha256 of the refresh token.
    pub refresh_hash: [u8; 32],
    /// Now (ms).
    pub now: u64,
    /// When the access token stops working (ms).
    pub access_expires_at: u64,
    /// When the refresh token stops working (ms).
    pub refresh_expires_at: u64,
}

/// A session to open: a token pair and who it belongs to.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The tokens.
    pub tokens: TokenPair,
    /// The family (one login and its refresh chain).
    pub family_id: [u8; 16],
    /// Hex K_id.
    pub user_id: String,
    /// Hex K_dev.
    pub device_pubkey: String,
}

/// Who an access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Hex K_id.
    pub user_id: String,
    /// Hex K_dev of the device that opened the session.
    pub device_pubkey: String,
    /// The login (refresh chain) the session belongs to; revoked together.
    pub family_id: [u8; 16],
    /// When the access token stops working (ms).
    pub expires_at: u64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was valid; the new session replaced the family's old one.
    Rotated(SessionInfo),
    /// No such token.
    Unknown,
    /// The token's lifetime is over.
    Expired,
    /// The token was already spent: the family has been revoked.
    Reused([u8; 16]),
}

pub(super) fn insert_session(tx: &Connection, s: &NewSession) -> Result<(), StorageError> {
    let t = &s.tokens;
    tx.execute(
        "INSERT INTO sessions (token_hash, user_id, device_pubkey, family_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &t.access_hash[..],
            s.user_id,
            s.device_pubkey,
            &s.family_id[..],
            to_sql_int(t.now),
            to_sql_int(t.access_expires_at)
        ],
    )?;
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, device_pubkey, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &t.refresh_hash[..],
            &s.family_id[..],
            s.user_id,
            s.device_pubkey,
            to_sql_int(t.now),
            to_sql_int(t.refresh_expires_at)
        ],
    )?;
    Ok(())
}

pub(super) fn prune(tx: &Connection, now: u64) -> Result<usize, StorageError> {
    let now = to_sql_int(now);
    let mut removed = tx.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
    removed += tx.execute("DELETE FROM refresh_tokens WHERE expires_at < ?1", [now])?;
    removed += tx.execute("DELETE FROM replay_cache WHERE expires_at < ?1", [now])?;
    Ok(removed)
}

impl Store {
    /// Who holds the access token with this hash, if it is live at `now`.
    pub async fn session(
        &self,
        access_hash: [u8; 32],
        now: u64,
    ) -> Result<Option<SessionInfo>, StorageError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT user_id, device_pubkey, family_id, expires_at FROM sessions
                     WHERE token_hash = ?1 AND expires_at > ?2",
                    params![&access_hash[..], to_sql_int(now)],
                    |r| {
                        let family: Vec<u8> = r.get(2)?;
                        Ok(SessionInfo {
                            user_id: r.get(0)?,
                            device_pubkey: r.get(1)?,
                            family_id: family.as_slice().try_into().unwrap_or_default(),
                            expires_at: from_sql_int(r.get(3)?),
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Spends a refresh token and, if it was live, opens a session with the `next` tokens in the
    /// same family, for the same user and device.
    pub async fn refresh(
        &self,
        refresh_hash: [u8; 32],
        next: TokenPair,
    ) -> Result<RefreshOutcome, StorageError> {
        self.write(move |tx| {
            type Row = (Vec<u8>, String, String, i64, Option<i64>);
            let row: Option<Row> = tx
                .query_row(
                    "SELECT family_id, user_id, device_pubkey, expires_at, spent_at
                     FROM refresh_tokens WHERE token_hash = ?1",
                    [&refresh_hash[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((family, user_id, device_pubkey, expires_at, spent_at)) = row else {
                return Ok(RefreshOutcome::Unknown);
            };
            if spent_at.is_some() {
                tx.execute("DELETE FROM sessions WHERE family_id = ?1", [&family])?;
                tx.execute(
                    "UPDATE refresh_tokens SET spent_at = coalesce(spent_at, ?2) WHERE family_id = ?1",
                    params![&family, to_sql_int(next.now)],
                )?;
                return Ok(RefreshOutcome::Reused(
                    family.as_slice().try_into().unwrap_or_default(),
                ));
            }
            if from_sql_int(expires_at) <= next.now {
                return Ok(RefreshOutcome::Expired);
            }
            tx.execute(
                "UPDATE refresh_tokens SET spent_at = ?2 WHERE token_hash = ?1",
                params![&refresh_hash[..], to_sql_int(next.now)],
            )?;
            tx.execute("DELETE FROM sessions WHERE family_id = ?1", [&family])?;
            let now = next.now;
            let expires_at = next.access_expires_at;
            let family_id: [u8; 16] = family
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::Task("family id is not 16 bytes".into()))?;
            let session = NewSession {
                tokens: next,
                family_id,
                user_id: user_id.clone(),
                device_pubkey: device_pubkey.clone(),
            };
            insert_session(tx, &session)?;
            tx.execute(
                "UPDATE devices SET last_seen_at = ?2 WHERE pubkey = ?1",
                params![device_pubkey, to_sql_int(now)],
            )?;
            Ok(RefreshOutcome::Rotated(SessionInfo {
                user_id,
                device_pubkey,
                family_id,
                expires_at,
            }))
        })
        .await
    }
}
