//! Users' chains of signed homeserver moves, and revoked devices.
//!
//! Callers hand in statements whose signatures they verified (`crate::federation::moves`,
//! `crate::federation::revocation`); these functions enforce the state rules inside the caller's
//! transaction: a move must be newer than the user's current one (and chained to it when it
//! directly follows), and a revoked device is deleted (its sessions with it, by cascade) and kept
//! out by the triggers of migrations `OUTBOX_V13` and `REVOKED_KEYS_V21` (a key that was the
//! revoker's device here stays refused for every identity).

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, Store, from_sql_int, to_sql_int};

/// A verified `homeserver-move-v2` statement, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRecord {
    /// Hex K_id.
    pub user_id: String,
    /// The new homeserver's address.
    pub new_homeserver: String,
    /// The statement's timestamp (ms).
    pub timestamp: u64,
    /// Its place in the chain (from 1).
    pub sequence: u64,
    /// Hash of the previous statement's signing bytes; empty for the first.
    pub prev: Vec<u8>,
    /// SHA-256 of its own signing bytes: the next statement's `prev`.
    pub hash: [u8; 32],
    /// K_id's signature, hex.
    pub signature: String,
}

/// A verified move carried by a login at the new homeserver, with the calls it owes.
#[derive(Debug, Clone)]
pub struct HomeserverMove {
    /// The statement.
    pub record: MoveRecord,
    /// `(destination, encoded UpdateHomeServerRequest)` for each migration target.
    pub deliveries: Vec<(String, Vec<u8>)>,
}

/// What applying a statement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It is the user's new current statement and their homeserver changed.
    Applied,
    /// The user is not known here; nothing was stored.
    UnknownUser,
}

/// The user's current statement: `(sequence, hash)`.
pub fn head(conn: &Connection, user_id: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT sequence, hash FROM homeserver_statements WHERE user_id = ?1
             ORDER BY sequence DESC LIMIT 1",
            [user_id],
            |r| Ok((from_sql_int(r.get(0)?), r.get(1)?)),
        )
        .optional()?)
}

/// Applies a verified statement: refuses a replay (`Conflict`, shown as `ALREADY_EXISTS`), an
/// older or equal sequence, or a wrong `prev` for the directly following sequence (`Refused`,
/// `FAILED_PRECONDITION`); otherwise stores it as the user's current statement and sets their
/// homeserver. Memberships, roles and everything else about the user stay as they are.
pub fn apply_statement(tx: &Connection, m: &MoveRecord, now: u64) -> Result<Applied, StorageError> {
    let known: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
        [&m.user_id],
        |r| r.get(0),
    )?;
    if !known {
        return Ok(Applied::UnknownUser);
    }
    if let Some((current, current_hash)) = head(tx, &m.user_id)? {
        if m.sequence <= current {
            let same: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT hash FROM homeserver_statements WHERE user_id = ?1 AND sequence = ?2",
                    params![m.user_id, to_sql_int(m.sequence)],
                    |r| r.get(0),
                )
                .optional()?;
            if same.as_deref() == Some(&m.hash[..]) {
                return Err(StorageError::Conflict(format!(
                    "statement: already applied (sequence {}); a replayed statement changes nothing",
                    m.sequence
                )));
            }
            return Err(StorageError::Refused(format!(
                "sequence: {} is not newer than the user's current homeserver statement (sequence {current})",
                m.sequence
            )));
        }
        if m.sequence == current + 1 && m.prev != current_hash {
            return Err(StorageError::Refused(format!(
                "prev: is not the hash of the user's current homeserver statement (sequence {current})"
            )));
        }
    }
    tx.execute(
        "INSERT INTO homeserver_statements
             (user_id, sequence, new_homeserver, timestamp, prev, hash, signature, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            m.user_id,
            to_sql_int(m.sequence),
            m.new_homeserver,
            to_sql_int(m.timestamp),
            m.prev,
            &m.hash[..],
            m.signature,
            to_sql_int(now)
        ],
    )?;
    tx.execute(
        "UPDATE users SET homeserver = ?2 WHERE id = ?1",
        params![m.user_id, m.new_homeserver],
    )?;
    Ok(Applied::Applied)
}

/// Applies a login's move and queues its `UpdateHomeServer` calls, in the login's transaction.
pub fn apply_login_move(tx: &Connection, m: &HomeserverMove, now: u64) -> Result<(), StorageError> {
    if apply_statement(tx, &m.record, now)? == Applied::UnknownUser {
        return Err(StorageError::Conflict(
            "user_id: not registered here".into(),
        ));
    }
    for (destination, body) in &m.deliveries {
        super::outbox::enqueue(tx, destination, "UpdateHomeServer", body, now)?;
    }
    Ok(())
}

/// Records a verified revocation of `device_pubkey` (hex) of `user_id` and deletes the device, with
/// its sessions. Returns whether it was new here. If the key was the user's device here, the
/// revocation is *held*: the key is refused for every identity from now on (migration
/// `REVOKED_KEYS_V21`); otherwise it is refused for this user only, since anyone can sign a
/// revocation of a key that is not theirs.
pub fn revoke_device(
    tx: &Connection,
    user_id: &str,
    device_pubkey: &str,
    timestamp: u64,
    signature: &str,
    now: u64,
) -> Result<bool, StorageError> {
    let held: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE pubkey = ?1 AND user_id = ?2)",
        [device_pubkey, user_id],
        |r| r.get(0),
    )?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO revoked_devices
             (user_id, device_pubkey, timestamp, signature, received_at, held)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user_id,
            device_pubkey,
            to_sql_int(timestamp),
            signature,
            to_sql_int(now),
            held
        ],
    )?;
    tx.execute(
        "DELETE FROM devices WHERE pubkey = ?1 AND user_id = ?2",
        params![device_pubkey, user_id],
    )?;
    Ok(inserted > 0)
}

/// The servers in a user's server list (`AddServer`), to forward the user's revocations to.
pub fn user_servers(conn: &Connection, user_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT server_url FROM user_servers WHERE user_id = ?1")?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether the key `device_pubkey` is refused as a device of `user_id` because of a revocation:
/// one by that user, or a held one by anyone (the same rule as the triggers of migration
/// `REVOKED_KEYS_V21`, asked before a request does any work). An empty `user_id` asks about held
/// revocations only.
pub fn device_refused(
    conn: &Connection,
    user_id: &str,
    device_pubkey: &str,
) -> Result<bool, StorageError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM revoked_devices WHERE device_pubkey = ?2
                        AND (user_id = ?1 OR held = 1))",
        [user_id, device_pubkey],
        |r| r.get(0),
    )?)
}

impl Store {
    /// The user's current homeserver statement, `(sequence, hash)`.
    pub async fn homeserver_head(
        &self,
        user_id: String,
    ) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        self.read(move |c| head(c, &user_id)).await
    }

    /// Whether `device_pubkey` is refused as a device of `user_id` (see [`device_refused`]).
    pub async fn device_refused(
        &self,
        user_id: String,
        device_pubkey: String,
    ) -> Result<bool, StorageError> {
        self.read(move |c| device_refused(c, &user_id, &device_pubkey))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        super::super::schema::test_db_with_user("u", "http://a")
    }

    fn record(sequence: u64, prev: Vec<u8>, hash: u8, to: &str) -> MoveRecord {
        MoveRecord {
            user_id: "u".into(),
            new_homeserver: to.into(),
            timestamp: sequence,
            sequence,
            prev,
            hash: [hash; 32],
            signature: String::new(),
        }
    }

    #[test]
    fn chain_rules() {
        let c = db();
        assert_eq!(
            apply_statement(&c, &record(1, vec![], 1, "http://b"), 0).expect("first"),
            Applied::Applied
        );
        assert!(matches!(
            apply_statement(&c, &record(1, vec![], 1, "http://b"), 0),
            Err(StorageError::Conflict(_))
        ));
        assert!(matches!(
            apply_statement(&c, &record(1, vec![], 9, "http://c"), 0),
            Err(StorageError::Refused(m)) if m.starts_with("sequence:")
        ));
        assert!(matches!(
            apply_statement(&c, &record(2, vec![7; 32], 2, "http://c"), 0),
            Err(StorageError::Refused(m)) if m.starts_with("prev:")
        ));
        apply_statement(&c, &record(2, vec![1; 32], 2, "http://c"), 0).expect("second");
        // A node that missed statements accepts a later one.
        apply_statement(&c, &record(5, vec![4; 32], 5, "http://d"), 0).expect("gap");
        let home: String = c
            .query_row("SELECT homeserver FROM users WHERE id = 'u'", [], |r| {
                r.get(0)
            })
            .expect("home");
        assert_eq!(home, "http://d");
        let mut other = record(1, vec![], 1, "http://b");
        other.user_id = "stranger".into();
        assert_eq!(
            apply_statement(&c, &other, 0).expect("unknown"),
            Applied::UnknownUser
        );
    }

    #[test]
    fn revoked_devices_are_kept_out() {
        let c = db();
        let insert = |c: &Connection| {
            c.execute(
                "INSERT INTO devices (pubkey, user_id, device_id, cert_issued_at, cert_expiry,
                     cert_signature, created_at, last_seen_at) VALUES ('d', 'u', 'x', 0, 1, '', 0, 0)",
                [],
            )
        };
        insert(&c).expect("device");
        assert!(revoke_device(&c, "u", "d", 1, "", 2).expect("revoke"));
        assert!(!revoke_device(&c, "u", "d", 1, "", 2).expect("again"));
        let err = StorageError::from(insert(&c).expect_err("refused"));
        assert!(
            matches!(&err, StorageError::Refused(m) if m.starts_with("device_cert.pubkey:")),
            "{err:?}"
        );
        assert!(device_refused(&c, "u", "d").expect("read"));
    }

    #[test]
    fn a_held_revocation_refuses_the_key_for_every_identity() {
        let c = db();
        c.execute(
            "INSERT INTO users (id, display_name, homeserver, profile_updated_at, created_at)
             VALUES ('v', 'V', 'http://a', 0, 0)",
            [],
        )
        .expect("second user");
        let insert = |c: &Connection, user: &str, key: &str| {
            c.execute(
                "INSERT INTO devices (pubkey, user_id, device_id, cert_issued_at, cert_expiry,
                     cert_signature, created_at, last_seen_at) VALUES (?1, ?2, 'x', 0, 1, '', 0, 0)",
                [key, user],
            )
        };
        // u's own device, revoked: held, so v can't take the key either.
        insert(&c, "u", "held").expect("device");
        assert!(revoke_device(&c, "u", "held", 1, "", 2).expect("revoke"));
        assert!(device_refused(&c, "v", "held").expect("read"));
        assert!(device_refused(&c, "", "held").expect("read"));
        let err = StorageError::from(insert(&c, "v", "held").expect_err("refused"));
        assert!(matches!(&err, StorageError::Refused(_)), "{err:?}");
        // u revokes a key that is v's here: it binds u alone, and v keeps the key.
        insert(&c, "v", "theirs").expect("device");
        assert!(revoke_device(&c, "u", "theirs", 1, "", 2).expect("revoke"));
        assert!(!device_refused(&c, "v", "theirs").expect("read"));
        assert!(device_refused(&c, "u", "theirs").expect("read"));
        c.execute(
            "UPDATE devices SET last_seen_at = 5 WHERE pubkey = 'theirs'",
            [],
        )
        .expect("v's device still renews");
    }
}
