//! The federation outbox's tables: server calls queued per destination, in order, and the ones
//! given up. [`enqueue`] takes the caller's connection so a change and the delivery it owes commit
//! together; the delivery worker (`crate::federation::outbox`) reads heads and records outcomes.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, Store, from_sql_int, to_sql_int};

/// A queued server call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id: deliveries to one destination go out in id order.
    pub id: i64,
    /// The peer's canonical address.
    pub destination: String,
    /// The GuildHall method name (`UpdateHomeServer`).
    pub method: String,
    /// The encoded request message.
    pub body: Vec<u8>,
    /// When it was queued (ms).
    pub created_at: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it may be tried next (ms).
    pub next_attempt_at: u64,
}

/// The first queued delivery of one destination and when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The peer's canonical address.
    pub destination: String,
    /// When its head may be tried (ms).
    pub next_attempt_at: u64,
}

/// What an operator sees of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Deliveries waiting (including ones being retried).
    pub pending: u64,
    /// Destinations with something waiting.
    pub destinations: u64,
    /// Deliveries given up (kept in `federation_outbox_failed`).
    pub failed: u64,
}

/// A delivery that was given up, as kept for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    /// Its id.
    pub id: i64,
    /// The peer's canonical address.
    pub destination: String,
    /// The method.
    pub method: String,
    /// Failed attempts.
    pub attempts: u32,
    /// Why it was given up.
    pub reason: String,
}

/// Queues a call of `method` with the encoded request `body` for `destination`, inside the caller's
/// transaction: it exists if and only if the caller's change commits. Due at once.
pub fn enqueue(
    tx: &Connection,
    destination: &str,
    method: &str,
    body: &[u8],
    now: u64,
) -> Result<i64, StorageError> {
    tx.execute(
        "INSERT INTO federation_outbox (destination, method, body, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![destination, method, body, to_sql_int(now)],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Every destination's head (its oldest queued delivery) and when it is due.
pub fn heads(conn: &Connection) -> Result<Vec<Head>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.destination, o.next_attempt_at FROM federation_outbox o
         JOIN (SELECT MIN(id) AS head FROM federation_outbox GROUP BY destination) h
           ON o.id = h.head",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Head {
            destination: r.get(0)?,
            next_attempt_at: from_sql_int(r.get(1)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The head of one destination, if any.
pub fn head(conn: &Connection, destination: &str) -> Result<Option<Delivery>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, destination, method, body, created_at, attempts, next_attempt_at
             FROM federation_outbox WHERE destination = ?1 ORDER BY id LIMIT 1",
            [destination],
            delivery_from_row,
        )
        .optional()?)
}

/// The queued deliveries, oldest first.
pub fn queued(conn: &Connection, limit: u32) -> Result<Vec<Delivery>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, destination, method, body, created_at, attempts, next_attempt_at
         FROM federation_outbox ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], delivery_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        destination: r.get(1)?,
        method: r.get(2)?,
        body: r.get(3)?,
        created_at: from_sql_int(r.get(4)?),
        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
        next_attempt_at: from_sql_int(r.get(6)?),
    })
}

/// The delivery was acknowledged: it leaves the queue.
pub fn acknowledge(tx: &Connection, id: i64) -> Result<(), StorageError> {
    tx.execute("DELETE FROM federation_outbox WHERE id = ?1", [id])?;
    Ok(())
}

/// The attempt failed and will be retried at `next_attempt_at`.
pub fn retry_later(
    tx: &Connection,
    id: i64,
    next_attempt_at: u64,
    error: &str,
) -> Result<(), StorageError> {
    tx.execute(
        "UPDATE federation_outbox
         SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
        params![id, to_sql_int(next_attempt_at), error],
    )?;
    Ok(())
}

/// The delivery is given up: it moves to `federation_outbox_failed` with the reason, and the
/// destination's next delivery becomes its head.
pub fn give_up(tx: &Connection, id: i64, now: u64, reason: &str) -> Result<(), StorageError> {
    tx.execute(
        "INSERT OR REPLACE INTO federation_outbox_failed
             (id, destination, method, body, created_at, attempts, failed_at, reason)
         SELECT id, destination, method, body, created_at, attempts + 1, ?2, ?3
         FROM federation_outbox WHERE id = ?1",
        params![id, to_sql_int(now), reason],
    )?;
    tx.execute("DELETE FROM federation_outbox WHERE id = ?1", [id])?;
    Ok(())
}

/// Counts for the operator (logs, tests).
pub fn stats(conn: &Connection) -> Result<OutboxStats, StorageError> {
    let (pending, destinations): (i64, i64) = conn.query_row(
        "SELECT count(*), count(DISTINCT destination) FROM federation_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let failed: i64 = conn.query_row("SELECT count(*) FROM federation_outbox_failed", [], |r| {
        r.get(0)
    })?;
    Ok(OutboxStats {
        pending: from_sql_int(pending),
        destinations: from_sql_int(destinations),
        failed: from_sql_int(failed),
    })
}

/// Deliveries waiting per destination (the `guildhall_outbox_depth` metric).
pub fn depths(conn: &Connection) -> Result<Vec<(String, u64)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT destination, count(*) FROM federation_outbox GROUP BY destination",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut depths = Vec::new();
    for row in rows {
        let (destination, n) = row?;
        depths.push((destination, from_sql_int(n)));
    }
    Ok(depths)
}

/// One destination's queue, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationQueue {
    /// The peer's canonical address.
    pub destination: String,
    /// Deliveries waiting.
    pub depth: u64,
    /// When the oldest was queued (ms).
    pub oldest_created_at: u64,
    /// The head's method: the one being tried (deliveries go out in order).
    pub head_method: String,
    /// The head's failed attempts so far.
    pub head_attempts: u32,
    /// When the head is tried next (ms).
    pub next_attempt_at: u64,
    /// Why the head's last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// Every destination with something queued, by address.
pub fn destinations(conn: &Connection) -> Result<Vec<DestinationQueue>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.destination, q.depth, q.oldest, o.method, o.attempts, o.next_attempt_at,
                o.last_error
         FROM (SELECT destination, count(*) AS depth, min(created_at) AS oldest, min(id) AS head
               FROM federation_outbox GROUP BY destination) q
         JOIN federation_outbox o ON o.id = q.head
         ORDER BY o.destination",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DestinationQueue {
            destination: r.get(0)?,
            depth: from_sql_int(r.get(1)?),
            oldest_created_at: from_sql_int(r.get(2)?),
            head_method: r.get(3)?,
            head_attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
            next_attempt_at: from_sql_int(r.get(5)?),
            last_error: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes every delivery queued for `destination` due now (an operator's retry-now); returns how
/// many are queued.
pub fn retry_now(tx: &Connection, destination: &str, now: u64) -> Result<usize, StorageError> {
    Ok(tx.execute(
        "UPDATE federation_outbox SET next_attempt_at = min(next_attempt_at, ?2)
         WHERE destination = ?1",
        params![destination, to_sql_int(now)],
    )?)
}

/// Gives up every delivery queued for `destination` (an operator's drop): they move to
/// `federation_outbox_failed` with `reason`, as if each had been given up. Returns how many.
pub fn drop_destination(
    tx: &Connection,
    destination: &str,
    now: u64,
    reason: &str,
) -> Result<usize, StorageError> {
    tx.execute(
        "INSERT OR REPLACE INTO federation_outbox_failed
             (id, destination, method, body, created_at, attempts, failed_at, reason)
         SELECT id, destination, method, body, created_at, attempts, ?2, ?3
         FROM federation_outbox WHERE destination = ?1",
        params![destination, to_sql_int(now), reason],
    )?;
    Ok(tx.execute(
        "DELETE FROM federation_outbox WHERE destination = ?1",
        [destination],
    )?)
}

/// The most recent deliveries given up, newest first.
pub fn failed(conn: &Connection, limit: u32) -> Result<Vec<FailedDelivery>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, destination, method, attempts, reason FROM federation_outbox_failed
         ORDER BY failed_at DESC, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(FailedDelivery {
            id: r.get(0)?,
            destination: r.get(1)?,
            method: r.get(2)?,
            attempts: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
            reason: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store {
    /// Queues one call on its own (for callers with no change of their own to commit with it).
    pub async fn enqueue_delivery(
        &self,
        destination: String,
        method: String,
        body: Vec<u8>,
        now: u64,
    ) -> Result<i64, StorageError> {
        self.write(move |tx| enqueue(tx, &destination, &method, &body, now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        super::super::schema::test_db()
    }

    #[test]
    fn heads_are_per_destination_in_order_and_give_up_moves_on() {
        let c = db();
        let a1 = enqueue(&c, "http://a", "M", b"1", 10).expect("a1");
        let a2 = enqueue(&c, "http://a", "M", b"2", 11).expect("a2");
        enqueue(&c, "http://b", "M", b"3", 12).expect("b1");
        let mut h = heads(&c).expect("heads");
        h.sort_by(|x, y| x.destination.cmp(&y.destination));
        assert_eq!(h.len(), 2);
        assert_eq!(head(&c, "http://a").expect("head").map(|d| d.id), Some(a1));
        retry_later(&c, a1, 99, "down").expect("retry");
        let d = head(&c, "http://a").expect("head").expect("some");
        assert_eq!((d.attempts, d.next_attempt_at), (1, 99));
        give_up(&c, a1, 100, "refused").expect("give up");
        assert_eq!(head(&c, "http://a").expect("head").map(|d| d.id), Some(a2));
        acknowledge(&c, a2).expect("ack");
        assert_eq!(
            stats(&c).expect("stats"),
            OutboxStats {
                pending: 1,
                destinations: 1,
                failed: 1
            }
        );
        let f = failed(&c, 10).expect("failed");
        assert_eq!((f[0].attempts, f[0].reason.as_str()), (2, "refused"));
    }
}
