//! The server-event log: every server event this node published or received, with what it made
//! of it. It de-duplicates events (by `(origin, kind, seq)` and by content id) and answers peers
//! that catch up (`PullServerEvents`).
//!
//! Rows hold raw bytes (keys, signatures, hashes); `crate::gossip` turns them into checked types.
//!
//! **Pruning.** An event whose statement a later event of the same origin and kind makes moot (a
//! newer statement about the same subject, covering the same fields) is *superseded*; rejected
//! events only close sequence gaps. [`prune`] deletes both once they are older than the retention
//! and at or below the `(origin, kind)`'s contiguous head, and records that head as the pair's
//! low-water mark ([`mark`]): every sequence up to it was processed here, held or not. Catch-up
//! resumes above the mark, an event at or below it is a duplicate, and `PullServerEvents` tells the
//! asker the mark so a peer far behind takes the live events and skips the rest.

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

/// What an event is a statement about, for pruning: a later event of the same origin, kind and
/// `key` whose `fields` bits include all of this one's supersedes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// The subject (e.g. a guild and a user); empty: never superseded.
    pub key: Vec<u8>,
    /// Which parts of the subject the event states, as bits.
    pub fields: u64,
}

impl Subject {
    /// For events that no later event makes moot.
    pub fn never_superseded() -> Self {
        Self::default()
    }
}

/// Stores an event with its outcome and subject; `false` if the log already holds
/// `(origin, kind, seq)` or the same content (a duplicate or an equivocation: the first one stays).
pub fn insert(
    tx: &Connection,
    event: &EventRow,
    subject: &Subject,
    outcome: Outcome,
    now: u64,
) -> Result<bool, StorageError> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO server_events
            (origin, kind, seq, timestamp, payload, signature, content_id, outcome, received_at,
             subject, fields)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            subject.key,
            // The bits are stored as the same 64 bits, signed.
            subject.fields as i64,
        ],
    )?;
    Ok(inserted == 1)
}

/// What the log holds for an incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// This very event (same content id).
    Same,
    /// Nothing, but its sequence is at or below the low-water mark: processed (and pruned, or
    /// skipped as superseded at its origin).
    BelowMark,
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
    let (same, slot, below): (bool, bool, bool) = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM server_events WHERE content_id = ?4),
                EXISTS (SELECT 1 FROM server_events WHERE origin = ?1 AND kind = ?2 AND seq = ?3),
                EXISTS (SELECT 1 FROM server_event_marks
                         WHERE origin = ?1 AND kind = ?2 AND pruned_through >= ?3)",
        params![&origin[..], kind, to_sql_int(seq), &content_id[..]],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(if same {
        Held::Same
    } else if slot {
        Held::SlotTaken
    } else if below {
        Held::BelowMark
    } else {
        Held::Nothing
    })
}

/// The next sequence for this node's own events of `kind` (1 for the first): above every one it
/// holds and its low-water mark.
pub fn next_sequence(tx: &Connection, origin: &[u8; 32], kind: &str) -> Result<u64, StorageError> {
    let max: Option<i64> = tx
        .query_row(
            "SELECT MAX(seq) FROM server_events WHERE origin = ?1 AND kind = ?2",
            params![&origin[..], kind],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let held = max.map_or(0, from_sql_int);
    Ok(held.max(mark(tx, origin, kind)?).saturating_add(1))
}

/// The low-water mark of `(origin, kind)`: every sequence up to it was processed here (0: none
/// recorded).
pub fn mark(c: &Connection, origin: &[u8; 32], kind: &str) -> Result<u64, StorageError> {
    let through: Option<i64> = c
        .query_row(
            "SELECT pruned_through FROM server_event_marks WHERE origin = ?1 AND kind = ?2",
            params![&origin[..], kind],
            |r| r.get(0),
        )
        .optional()?;
    Ok(through.map_or(0, from_sql_int))
}

/// Raises the low-water mark of `(origin, kind)` to `through` (never lowers it).
pub fn raise_mark(
    tx: &Connection,
    origin: &[u8; 32],
    kind: &str,
    through: u64,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO server_event_marks (origin, kind, pruned_through) VALUES (?1, ?2, ?3)
         ON CONFLICT (origin, kind) DO UPDATE SET pruned_through = excluded.pruned_through
         WHERE excluded.pruned_through > server_event_marks.pruned_through",
        params![&origin[..], kind, to_sql_int(through)],
    )?;
    Ok(())
}

/// The largest `n` at or above the low-water mark such that the log holds every sequence from the
/// mark to `n` of `(origin, kind)`: where catch-up resumes, so a gap left by lost gossip is filled
/// even when later events arrived.
pub fn contiguous_head(c: &Connection, origin: &[u8; 32], kind: &str) -> Result<u64, StorageError> {
    let head: i64 = c.query_row(
        "SELECT COALESCE(MIN(s.seq), 0) FROM
            (SELECT COALESCE((SELECT pruned_through FROM server_event_marks
                               WHERE origin = ?1 AND kind = ?2), 0) AS seq
             UNION ALL
             SELECT seq FROM server_events
              WHERE origin = ?1 AND kind = ?2
                AND seq > COALESCE((SELECT pruned_through FROM server_event_marks
                                     WHERE origin = ?1 AND kind = ?2), 0)) s
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

/// An event whose subject is not known yet: (origin, kind, sequence, payload).
pub type Unsubjected = ([u8; 32], String, u64, Vec<u8>);

/// Events of `kinds` stored before their subject was computed (by an earlier version), at most
/// `limit`, for [`set_subject`].
pub fn without_subject(
    c: &Connection,
    kinds: &[String],
    limit: usize,
) -> Result<Vec<Unsubjected>, StorageError> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; kinds.len()].join(",");
    let mut stmt = c.prepare(&format!(
        "SELECT origin, kind, seq, payload FROM server_events
          WHERE subject IS NULL AND kind IN ({placeholders}) LIMIT ?"
    ))?;
    let mut values: Vec<rusqlite::types::Value> = kinds.iter().map(|k| k.clone().into()).collect();
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
        Ok((
            blob::<32>(r, 0)?,
            r.get(1)?,
            from_sql_int(r.get(2)?),
            r.get(3)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records the subject of a stored event.
pub fn set_subject(
    tx: &Connection,
    origin: &[u8; 32],
    kind: &str,
    seq: u64,
    subject: &Subject,
) -> Result<(), StorageError> {
    tx.execute(
        "UPDATE server_events SET subject = ?4, fields = ?5
          WHERE origin = ?1 AND kind = ?2 AND seq = ?3",
        params![
            &origin[..],
            kind,
            to_sql_int(seq),
            subject.key,
            subject.fields as i64
        ],
    )?;
    Ok(())
}

/// Every `(origin, kind)` the log holds events of.
pub fn pairs(c: &Connection) -> Result<Vec<([u8; 32], String)>, StorageError> {
    let mut stmt = c.prepare("SELECT DISTINCT origin, kind FROM server_events")?;
    let rows = stmt.query_map([], |r| Ok((blob::<32>(r, 0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Prunes `(origin, kind)` (see the module docs): raises its low-water mark to its contiguous
/// head, then deletes at most `limit` superseded or rejected events at or below the mark that
/// were received before `before` (ms). Returns how many it deleted.
pub fn prune(
    tx: &Connection,
    origin: &[u8; 32],
    kind: &str,
    before: u64,
    limit: usize,
) -> Result<usize, StorageError> {
    let head = contiguous_head(tx, origin, kind)?;
    raise_mark(tx, origin, kind, head)?;
    let removed = tx.execute(
        "DELETE FROM server_events WHERE rowid IN (
            SELECT e.rowid FROM server_events e
             WHERE e.origin = ?1 AND e.kind = ?2 AND e.seq <= ?3 AND e.received_at < ?4
               AND (e.outcome = 'rejected'
                    OR (length(e.subject) > 0 AND EXISTS (
                          SELECT 1 FROM server_events l
                           WHERE l.origin = e.origin AND l.kind = e.kind
                             AND l.subject = e.subject AND l.seq > e.seq
                             AND (l.fields & e.fields) = e.fields
                             AND l.outcome != 'rejected')))
             LIMIT ?5)",
        params![
            &origin[..],
            kind,
            to_sql_int(head),
            to_sql_int(before),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(removed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::test_db;

    const A: [u8; 32] = [1; 32];
    const KIND: &str = "membership";

    fn event(seq: u64) -> EventRow {
        let mut content_id = [0; 32];
        content_id[..8].copy_from_slice(&seq.to_be_bytes());
        EventRow {
            origin: A,
            kind: KIND.into(),
            seq,
            timestamp: seq,
            payload: Vec::new(),
            signature: [0; 64],
            content_id,
        }
    }

    fn about(key: &str, fields: u64) -> Subject {
        Subject {
            key: key.as_bytes().to_vec(),
            fields,
        }
    }

    fn seqs(c: &Connection) -> Vec<u64> {
        after(c, &A, KIND, 0, 1000)
            .expect("after")
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn prune_keeps_the_newest_per_subject_and_what_lies_above_a_gap() {
        let c = test_db();
        let subjects = [
            about("x", 1),
            about("y", 1),
            about("x", 1),
            Subject::never_superseded(),
            about("p", 0b01),
            about("p", 0b10),
            about("y", 1),
            about("x", 1),
        ];
        for (i, subject) in subjects.iter().enumerate() {
            let outcome = if i == 3 {
                Outcome::Rejected
            } else {
                Outcome::Accepted
            };
            insert(&c, &event(i as u64 + 1), subject, outcome, 10).expect("insert");
        }
        // 9 is missing, 10 held: nothing above the gap is pruned.
        insert(&c, &event(10), &about("x", 1), Outcome::Accepted, 10).expect("insert");
        // Not old enough yet.
        assert_eq!(prune(&c, &A, KIND, 10, 100).expect("prune"), 0);
        assert_eq!(mark(&c, &A, KIND).expect("mark"), 8);
        let removed = prune(&c, &A, KIND, 11, 100).expect("prune");
        // x@1, x@3, x@8 (x@10 is newer), y@2 (y@7), the rejected 4: gone. p@5 and p@6 state
        // different fields; 10 is above the gap at 9, so it stays whatever it says.
        assert_eq!(removed, 5);
        assert_eq!(seqs(&c), vec![5, 6, 7, 10]);
        assert_eq!(mark(&c, &A, KIND).expect("mark"), 8);
        assert_eq!(contiguous_head(&c, &A, KIND).expect("head"), 8);
        // An event at or below the mark is processed, held or not.
        assert_eq!(
            holds(&c, &A, KIND, 3, &[9; 32]).expect("holds"),
            Held::BelowMark
        );
        assert_eq!(
            holds(&c, &A, KIND, 9, &[9; 32]).expect("holds"),
            Held::Nothing
        );
        // The gap closes: the head and the mark move past it.
        insert(&c, &event(9), &about("z", 1), Outcome::Accepted, 10).expect("insert");
        assert_eq!(contiguous_head(&c, &A, KIND).expect("head"), 10);
        assert_eq!(prune(&c, &A, KIND, 11, 100).expect("prune"), 0);
        assert_eq!(seqs(&c), vec![5, 6, 7, 9, 10]);
        assert_eq!(mark(&c, &A, KIND).expect("mark"), 10);
        // The origin's next sequence stays above everything, pruned or not.
        assert_eq!(next_sequence(&c, &A, KIND).expect("next"), 11);
        raise_mark(&c, &A, KIND, 20).expect("raise");
        raise_mark(&c, &A, KIND, 15).expect("never lowered");
        assert_eq!(mark(&c, &A, KIND).expect("mark"), 20);
        assert_eq!(next_sequence(&c, &A, KIND).expect("next"), 21);
        assert_eq!(contiguous_head(&c, &A, KIND).expect("head"), 20);
    }

    #[test]
    fn events_stored_before_subjects_existed_are_found_and_filled() {
        let c = test_db();
        insert(&c, &event(1), &about("x", 1), Outcome::Accepted, 1).expect("insert");
        insert(&c, &event(2), &about("x", 1), Outcome::Accepted, 1).expect("insert");
        c.execute("UPDATE server_events SET subject = NULL", [])
            .expect("as an earlier version stored them");
        // Not pruned while the subject is unknown.
        assert_eq!(prune(&c, &A, KIND, 5, 100).expect("prune"), 0);
        assert!(
            without_subject(&c, &["other".into()], 10)
                .expect("none")
                .is_empty()
        );
        let missing = without_subject(&c, &[KIND.into()], 10).expect("missing");
        assert_eq!(missing.len(), 2);
        for (origin, kind, seq, _) in &missing {
            set_subject(&c, origin, kind, *seq, &about("x", 1)).expect("set");
        }
        assert!(
            without_subject(&c, &[KIND.into()], 10)
                .expect("none")
                .is_empty()
        );
        assert_eq!(prune(&c, &A, KIND, 5, 100).expect("prune"), 1);
        assert_eq!(seqs(&c), vec![2]);
    }
}
