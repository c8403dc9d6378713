//! The server-event log: every server event this node published or received, with what it made
//! of it. It de-duplicates events (by `(origin, kind, seq)` and by content id) and answers peers
//! that catch up (`PullServerEvents`).
//!
//! Rows hold raw bytes (keys, signatures, hashes); `crate::gossip` turns them into checked types.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// What the node made of a received event. Own events are `Accepted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Valid and applied; served to peers.
    Accepted,
    /// Validly signed but not applied here (stale, not relevant); still served to peers, who
    /// decide for themselves.
    Ignored,
    /// Validly signed by its origin but breaking a domain rule; kept so the origin's sequence has
    /// no gap here, never served.
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Ignored => "ignored",
            Outcome::Rejected => "rejected",
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// The origin server's key (raw bytes).
    pub origin: [u8; 32],
    /// The event's kind.
    pub kind: String,
    /// The origin's sequence for this kind.
    pub seq: u64,
    /// When the origin signed it (ms).
    pub timestamp: u64,
    /// The kind's payload.
    pub payload: Vec<u8>,
    /// The origin's signature (raw bytes).
    pub signature: [u8; 64],
    /// SHA-256 of the signing bytes.
    pub content_id: [u8; 32],
}

fn blob<const N: usize>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<[u8; N]> {
    let bytes: Vec<u8> = r.get(i)?;
    bytes.as_slice().try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            format!("expected {N} bytes").into(),
        )
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        origin: blob(r, 0)?,
        kind: r.get(1)?,
        seq: from_sql_int(r.get(2)?),
        timestamp: from_sql_int(r.get(3)?),
        payload: r.get(4)?,
        signature: blob(r, 5)?,
        content_id: blob(r, 6)?,
    })
}

/// Stores an event with its outcome; `false` if the log already holds `(origin, kind, seq)` or the
/// same content (a duplicate or an equivocation: the first one stays).
pub fn insert(
    tx: &Connection,
    event: &EventRow,
    outcome: Outcome,
    now: u64,
) -> Result<bool, StorageError> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO server_events
            (origin, kind, seq, timestamp, payload, signature, content_id, outcome, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            &event.origin[..],
            event.kind,
            to_sql_int(event.seq),
            to_sql_int(event.timestamp),
            event.payload,
            &event.signature[..],
            &event.content_id[..],
            outcome.as_str(),
            to_sql_int(now),
        ],
    )?;
    Ok(inserted == 1)
}

/// What the log holds for an incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// This very event (same content id).
    Same,
    /// Another event under the same `(origin, kind, seq)`: a forgery, or the origin signed two.
    SlotTaken,
    /// Nothing.
    Nothing,
}

/// Whether the log holds the event with `content_id`, or another under `(origin, kind, seq)`.
pub fn holds(
    c: &Connection,
    origin: &[u8; 32],
    kind: &str,
    seq: u64,
    content_id: &[u8; 32],
) -> Result<Held, StorageError> {
    let (same, slot): (bool, bool) = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM server_events WHERE content_id = ?4),
                EXISTS (SELECT 1 FROM server_events WHERE origin = ?1 AND kind = ?2 AND seq = ?3)",
        params![&origin[..], kind, to_sql_int(seq), &content_id[..]],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(if same {
        Held::Same
    } else if slot {
        Held::SlotTaken
    } else {
        Held::Nothing
    })
}

/// The next sequence for this node's own events of `kind` (1 for the first).
pub fn next_sequence(tx: &Connection, origin: &[u8; 32], kind: &str) -> Result<u64, StorageError> {
    let max: Option<i64> = tx
        .query_row(
            "SELECT MAX(seq) FROM server_events WHERE origin = ?1 AND kind = ?2",
            params![&origin[..], kind],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(max.map_or(0, from_sql_int).saturating_add(1))
}

/// The largest `n` such that the log holds every sequence `1..=n` of `(origin, kind)`: where
/// catch-up resumes, so a gap left by lost gossip is filled even when later events arrived.
pub fn contiguous_head(c: &Connection, origin: &[u8; 32], kind: &str) -> Result<u64, StorageError> {
    let head: i64 = c.query_row(
        "SELECT COALESCE(MIN(s.seq), 0) FROM
            (SELECT 0 AS seq UNION ALL
             SELECT seq FROM server_events WHERE origin = ?1 AND kind = ?2) s
         WHERE NOT EXISTS (SELECT 1 FROM server_events e
                           WHERE e.origin = ?1 AND e.kind = ?2 AND e.seq = s.seq + 1)",
        params![&origin[..], kind],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(head))
}

/// The highest served sequence per origin for each of `kinds`, at most `limit` rows.
pub fn heads(
    c: &Connection,
    kinds: &[String],
    limit: usize,
) -> Result<Vec<([u8; 32], String, u64)>, StorageError> {
    let mut stmt = c.prepare(
        "SELECT origin, kind, MAX(seq) FROM server_events
          WHERE kind = ?1 AND outcome != 'rejected'
          GROUP BY origin ORDER BY origin LIMIT ?2",
    )?;
    let mut out = Vec::new();
    for kind in kinds {
        let remaining = limit.saturating_sub(out.len());
        if remaining == 0 {
            break;
        }
        let rows = stmt.query_map(
            params![kind, i64::try_from(remaining).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    blob::<32>(r, 0)?,
                    r.get::<_, String>(1)?,
                    from_sql_int(r.get(2)?),
                ))
            },
        )?;
        for head in rows {
            out.push(head?);
        }
    }
    Ok(out)
}

/// Served events of `(origin, kind)` with a sequence above `after`, oldest first, at most `limit`.
pub fn after(
    c: &Connection,
    origin: &[u8; 32],
    kind: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<EventRow>, StorageError> {
    let mut stmt = c.prepare(
        "SELECT origin, kind, seq, timestamp, payload, signature, content_id FROM server_events
          WHERE origin = ?1 AND kind = ?2 AND seq > ?3 AND outcome != 'rejected'
          ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            &origin[..],
            kind,
            to_sql_int(after),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many events of `kind` the log holds with `outcome` (an operator's and a test's view).
pub fn count(c: &Connection, kind: &str, outcome: Outcome) -> Result<u64, StorageError> {
    let n: i64 = c.query_row(
        "SELECT COUNT(*) FROM server_events WHERE kind = ?1 AND outcome = ?2",
        params![kind, outcome.as_str()],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(n))
}
