//! Federation tables: peers' pinned keys (by address), nonces of accepted server-to-server calls,
//! and the validity of this node's own keys.
//!
//! Keys are stored as their 32 raw bytes; `crate::federation` turns them into checked keys.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// One peer's pinned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer's canonical address: what its key is pinned under.
    pub address: String,
    /// The pinned key's raw bytes.
    pub server_key: [u8; 32],
    /// Until when the pinned key is valid (ms).
    pub key_valid_until: u64,
    /// The libp2p peer id the peer published (same key).
    pub peer_id: String,
    /// When the address was first pinned (ms).
    pub pinned_at: u64,
    /// When the pinned key last changed: first use or the last rotation or renewal (ms).
    pub key_changed_at: u64,
    /// When the last signed call from this peer was accepted (ms; 0 = never).
    pub last_seen_at: u64,
}

/// A change to the peer directory, applied only if the state it was decided on still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinChange {
    /// Trust on first use: the address had no pin.
    New {
        /// The key to pin.
        key: [u8; 32],
        /// Its validity (ms).
        valid_until: u64,
        /// The peer id it published.
        peer_id: String,
    },
    /// A rotation or renewal signed by the pinned key, or a re-pin after the pinned key expired.
    Replace {
        /// The key the decision was made against; nothing changes if another key is pinned now.
        expected: [u8; 32],
        /// The new key.
        key: [u8; 32],
        /// Its validity (ms).
        valid_until: u64,
        /// The peer id it published.
        peer_id: String,
    },
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PeerRecord> {
    let key: Vec<u8> = r.get(1)?;
    let server_key = key.as_slice().try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Blob,
            "server_key is not 32 bytes".into(),
        )
    })?;
    Ok(PeerRecord {
        address: r.get(0)?,
        server_key,
        key_valid_until: from_sql_int(r.get(2)?),
        peer_id: r.get(3)?,
        pinned_at: from_sql_int(r.get(4)?),
        key_changed_at: from_sql_int(r.get(5)?),
        last_seen_at: from_sql_int(r.get(6)?),
    })
}

const PEER_COLUMNS: &str =
    "address, server_key, key_valid_until, peer_id, pinned_at, key_changed_at, last_seen_at";

/// The peer pinned under `address`, if any.
pub fn peer(c: &Connection, address: &str) -> Result<Option<PeerRecord>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {PEER_COLUMNS} FROM federation_peers WHERE address = ?1"),
        [address],
        row,
    )
    .optional()?)
}

/// The address pinned to `key` (the first by address, should two share it).
pub fn address_of_key(c: &Connection, key: &[u8; 32]) -> Result<Option<String>, StorageError> {
    Ok(c.query_row(
        "SELECT address FROM federation_peers WHERE server_key = ?1 ORDER BY address LIMIT 1",
        [&key[..]],
        |r| r.get(0),
    )
    .optional()?)
}

/// Every pinned peer, by address.
pub fn peers(c: &Connection) -> Result<Vec<PeerRecord>, StorageError> {
    let mut stmt = c.prepare(&format!(
        "SELECT {PEER_COLUMNS} FROM federation_peers ORDER BY address"
    ))?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Applies a pin change; [`StorageError::Conflict`] if the directory moved since it was decided.
pub fn apply_pin(
    tx: &Connection,
    address: &str,
    change: &PinChange,
    now: u64,
) -> Result<(), StorageError> {
    let changed = match change {
        PinChange::New {
            key,
            valid_until,
            peer_id,
        } => tx.execute(
            "INSERT OR IGNORE INTO federation_peers
                (address, server_key, key_valid_until, peer_id, pinned_at, key_changed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![
                address,
                &key[..],
                to_sql_int(*valid_until),
                peer_id,
                to_sql_int(now)
            ],
        )?,
        PinChange::Replace {
            expected,
            key,
            valid_until,
            peer_id,
        } => tx.execute(
            "UPDATE federation_peers
                SET server_key = ?3, key_valid_until = ?4, peer_id = ?5, key_changed_at = ?6
              WHERE address = ?1 AND server_key = ?2",
            params![
                address,
                &expected[..],
                &key[..],
                to_sql_int(*valid_until),
                peer_id,
                to_sql_int(now)
            ],
        )?,
    };
    if changed == 0 {
        // Two calls that brought the same change at once (the first calls after a rotation, say):
        // the pin already holds the key, which is all either needed.
        let wanted = match change {
            PinChange::New { key, .. } | PinChange::Replace { key, .. } => key,
        };
        let held: Option<Vec<u8>> = tx
            .query_row(
                "SELECT server_key FROM federation_peers WHERE address = ?1",
                [address],
                |r| r.get(0),
            )
            .optional()?;
        if held.as_deref() != Some(&wanted[..]) {
            return Err(StorageError::Conflict(format!(
                "the pinned key of {address} changed meanwhile"
            )));
        }
    }
    Ok(())
}

/// Records an accepted signed call in one transaction: its nonce (refusing one already used by the
/// same origin with [`StorageError::Replay`]), any pin change it brought, and when the origin was
/// last seen. A refused call never reaches this function, so it leaves nothing behind.
pub fn accept_call(
    tx: &Connection,
    origin_key: &[u8; 32],
    nonce: &[u8; 16],
    nonce_expires_at: u64,
    address: &str,
    pin: Option<&PinChange>,
    now: u64,
) -> Result<(), StorageError> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO federation_nonces (origin_key, nonce, expires_at) VALUES (?1, ?2, ?3)",
        params![&origin_key[..], &nonce[..], to_sql_int(nonce_expires_at)],
    )?;
    if inserted == 0 {
        return Err(StorageError::Replay);
    }
    if let Some(change) = pin {
        apply_pin(tx, address, change, now)?;
    }
    tx.execute(
        "UPDATE federation_peers SET last_seen_at = ?2 WHERE address = ?1",
        params![address, to_sql_int(now)],
    )?;
    Ok(())
}

/// Whether `origin_key` already used `nonce` in a call this node accepted (and still remembers).
pub fn nonce_used(
    c: &Connection,
    origin_key: &[u8; 32],
    nonce: &[u8; 16],
) -> Result<bool, StorageError> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM federation_nonces WHERE origin_key = ?1 AND nonce = ?2)",
        params![&origin_key[..], &nonce[..]],
        |r| r.get(0),
    )?)
}

/// How many nonces are remembered: an operator's view of signed-call traffic in the window.
pub fn nonce_count(c: &Connection) -> Result<u64, StorageError> {
    let n: i64 = c.query_row("SELECT COUNT(*) FROM federation_nonces", [], |r| r.get(0))?;
    Ok(from_sql_int(n))
}

/// Forgets nonces whose clock window has passed: a replay of them is refused for its age anyway.
pub fn prune_nonces(tx: &Connection, now: u64) -> Result<usize, StorageError> {
    Ok(tx.execute(
        "DELETE FROM federation_nonces WHERE expires_at < ?1",
        [to_sql_int(now)],
    )?)
}

/// The validity of this node's own `key`: recorded on the key's first start as `now + validity_ms`
/// and stable after that, so every peer sees the same bound.
pub fn local_key_valid_until(
    tx: &Connection,
    key: &[u8; 32],
    now: u64,
    validity_ms: u64,
) -> Result<u64, StorageError> {
    tx.execute(
        "INSERT OR IGNORE INTO local_server_keys (server_key, created_at, valid_until)
         VALUES (?1, ?2, ?3)",
        params![
            &key[..],
            to_sql_int(now),
            to_sql_int(now.saturating_add(validity_ms))
        ],
    )?;
    let until: i64 = tx.query_row(
        "SELECT valid_until FROM local_server_keys WHERE server_key = ?1",
        [&key[..]],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(until))
}

/// Sets this node's own key validity (a renewal or a rotation to this key was signed).
pub fn set_local_key_valid_until(
    tx: &Connection,
    key: &[u8; 32],
    now: u64,
    valid_until: u64,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO local_server_keys (server_key, created_at, valid_until) VALUES (?1, ?2, ?3)
         ON CONFLICT (server_key) DO UPDATE SET valid_until = excluded.valid_until",
        params![&key[..], to_sql_int(now), to_sql_int(valid_until)],
    )?;
    Ok(())
}
