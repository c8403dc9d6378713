//! The event log: events are appended in the same transaction as the change they describe, and
//! handed to a callback after the commit while the writer lock is still held, so live subscribers
//! see events in id order and never an event whose change was rolled back.

use rusqlite::{Connection, params};

use super::{StorageError, Store, from_sql_int, to_sql_int};

/// An event to append: who may see it and its encoded payload.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Visibility scopes (`g:<guild>` or `u:<user>`).
    pub scopes: Vec<String>,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// Set on the events that record a membership change, so work that must commit with such a
    /// change (announcing a remote member's join to other servers) finds it without decoding
    /// every payload.
    pub membership: Option<MembershipMark>,
}

/// Which membership an event's change is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipMark {
    /// The guild.
    pub guild_id: String,
    /// The user who joined or left.
    pub user_id: String,
    /// `true`: they joined; `false`: they left or were removed.
    pub joined: bool,
    /// Whether the guild is a DM (never announced), as it was when the row was made: the
    /// announcement is appended after the write's own changes, by which time a deleted guild is
    /// gone and can't be asked.
    pub is_dm: bool,
}

/// An appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id: increasing, never reused.
    pub id: u64,
    /// When it was appended (ms).
    pub created_at: u64,
    /// Visibility scopes.
    pub scopes: Vec<String>,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

fn append(
    tx: &Connection,
    rows: Vec<EventRow>,
    now: u64,
) -> Result<Vec<StoredEvent>, StorageError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut insert =
        tx.prepare_cached("INSERT INTO events (created_at, payload) VALUES (?1, ?2)")?;
    let mut scope =
        tx.prepare_cached("INSERT OR IGNORE INTO event_scopes (scope, event_id) VALUES (?1, ?2)")?;
    for row in rows {
        insert.execute(params![to_sql_int(now), row.payload])?;
        let id = tx.last_insert_rowid();
        for s in &row.scopes {
            scope.execute(params![s, id])?;
        }
        out.push(StoredEvent {
            id: from_sql_int(id),
            created_at: now,
            scopes: row.scopes,
            payload: row.payload,
        });
    }
    Ok(out)
}

impl Store {
    /// Runs `f` in the next group commit, appends the events it returns, and after the commit
    /// calls `on_commit` with the stored events, in commit order, once every caller of the group
    /// has been answered (see [`super::writer`]).
    pub(crate) async fn write_with_events<T, F, P>(
        &self,
        now: u64,
        f: F,
        on_commit: P,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Vec<EventRow>), StorageError> + Send + 'static,
        P: FnOnce(Vec<StoredEvent>) + Send + 'static,
    {
        let metrics = self.inner.metrics.clone();
        self.inner
            .writer
            .write(
                move |conn| {
                    let (value, rows) = f(conn)?;
                    let stored = append(conn, rows, now)?;
                    Ok((value, stored))
                },
                move |(value, stored): (T, Vec<StoredEvent>)| {
                    metrics.events_published(stored.len());
                    let publish: Option<super::writer::AfterAnswers> = if stored.is_empty() {
                        None
                    } else {
                        Some(Box::new(move || on_commit(stored)))
                    };
                    (value, publish)
                },
            )
            .await
    }

    /// Events after `after` visible through any of `scopes`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        after: u64,
        scopes: Vec<String>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        self.read(move |conn| events_after(conn, after, &scopes, limit))
            .await
    }

    /// The oldest and newest event ids in the log (0 when empty).
    pub async fn event_bounds(&self) -> Result<(u64, u64), StorageError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM events",
                [],
                |r| Ok((from_sql_int(r.get(0)?), from_sql_int(r.get(1)?))),
            )?)
        })
        .await
    }

    /// Deletes events older than `before` (ms), keeping at least the newest one so ids keep
    /// increasing from where they were. Returns how many were removed.
    pub async fn prune_events(&self, before: u64) -> Result<usize, StorageError> {
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM events WHERE created_at < ?1 AND id < (SELECT max(id) FROM events)",
                [to_sql_int(before)],
            )?)
        })
        .await
    }
}

fn events_after(
    conn: &Connection,
    after: u64,
    scopes: &[String],
    limit: usize,
) -> Result<Vec<StoredEvent>, StorageError> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; scopes.len()].join(",");
    let sql = format!(
        "SELECT e.id, e.created_at, e.payload FROM events e
         WHERE e.id IN (SELECT DISTINCT event_id FROM event_scopes
                        WHERE event_id > ? AND scope IN ({placeholders}))
         ORDER BY e.id LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(scopes.len() + 2);
    values.push(to_sql_int(after).into());
    values.extend(scopes.iter().map(|s| s.clone().into()));
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
        Ok((
            from_sql_int(r.get(0)?),
            from_sql_int(r.get(1)?),
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut scope_stmt =
        conn.prepare_cached("SELECT scope FROM event_scopes WHERE event_id = ?1")?;
    for row in rows {
        let (id, created_at, payload) = row?;
        let scopes = scope_stmt
            .query_map([to_sql_int(id)], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        out.push(StoredEvent {
            id,
            created_at,
            scopes,
            payload,
        });
    }
    Ok(out)
}
