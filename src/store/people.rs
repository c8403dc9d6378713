//! What users keep about each other: private notes (`user_notes`) and relationships (friends,
//! friend requests, blocks: `relationships`).

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A note `owner_id` keeps about `target_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteRecord {
    /// Whom it is about.
    pub target_id: String,
    /// The note.
    pub note: String,
    /// Last set (ms).
    pub updated_at: u64,
}

/// Sets `owner_id`'s note about `target_id`, or removes it when `note` is empty.
pub fn set_note(
    c: &Connection,
    owner_id: &str,
    target_id: &str,
    note: &str,
    now: u64,
) -> Result<(), StorageError> {
    if note.is_empty() {
        c.execute(
            "DELETE FROM user_notes WHERE owner_id = ?1 AND target_id = ?2",
            params![owner_id, target_id],
        )?;
    } else {
        c.execute(
            "INSERT INTO user_notes (owner_id, target_id, note, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner_id, target_id) DO UPDATE SET note = ?3, updated_at = ?4",
            params![owner_id, target_id, note, to_sql_int(now)],
        )?;
    }
    Ok(())
}

/// `owner_id`'s note about `target_id`, if any.
pub fn note(
    c: &Connection,
    owner_id: &str,
    target_id: &str,
) -> Result<Option<NoteRecord>, StorageError> {
    Ok(c.query_row(
        "SELECT target_id, note, updated_at FROM user_notes WHERE owner_id = ?1 AND target_id = ?2",
        params![owner_id, target_id],
        |r| {
            Ok(NoteRecord {
                target_id: r.get(0)?,
                note: r.get(1)?,
                updated_at: from_sql_int(r.get(2)?),
            })
        },
    )
    .optional()?)
}

/// Every note `owner_id` keeps, by target.
pub fn notes(c: &Connection, owner_id: &str) -> Result<Vec<NoteRecord>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT target_id, note, updated_at FROM user_notes WHERE owner_id = ?1 ORDER BY target_id",
    )?;
    let rows = stmt.query_map([owner_id], |r| {
        Ok(NoteRecord {
            target_id: r.get(0)?,
            note: r.get(1)?,
            updated_at: from_sql_int(r.get(2)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many notes `owner_id` keeps.
pub fn note_count(c: &Connection, owner_id: &str) -> Result<u64, StorageError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM user_notes WHERE owner_id = ?1",
        [owner_id],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(n))
}

/// What a user is to another, from the first one's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Friends (both sides hold this).
    Friend,
    /// The user sent the other a friend request, not yet answered.
    Outgoing,
    /// The other sent the user a friend request, not yet answered.
    Incoming,
    /// The user blocked the other.
    Blocked,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Friend => "friend",
            Kind::Outgoing => "outgoing",
            Kind::Incoming => "incoming",
            Kind::Blocked => "blocked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "friend" => Kind::Friend,
            "outgoing" => Kind::Outgoing,
            "incoming" => Kind::Incoming,
            "blocked" => Kind::Blocked,
            _ => return None,
        })
    }
}

/// One relationship as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipRecord {
    /// The other user.
    pub other_id: String,
    /// What they are to the user.
    pub kind: Kind,
    /// Since when (ms).
    pub since: u64,
}

fn relationship_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RelationshipRecord> {
    let kind: String = r.get(1)?;
    Ok(RelationshipRecord {
        other_id: r.get(0)?,
        // The table's CHECK admits only the four kinds.
        kind: Kind::parse(&kind).unwrap_or(Kind::Blocked),
        since: from_sql_int(r.get(2)?),
    })
}

/// What `other_id` is to `user_id`, if anything.
pub fn relationship(
    c: &Connection,
    user_id: &str,
    other_id: &str,
) -> Result<Option<RelationshipRecord>, StorageError> {
    Ok(c.prepare_cached(
        "SELECT other_id, kind, since FROM relationships WHERE user_id = ?1 AND other_id = ?2",
    )?
    .query_row(params![user_id, other_id], relationship_row)
    .optional()?)
}

/// Sets what `other_id` is to `user_id` (`None` removes it).
pub fn set_relationship(
    c: &Connection,
    user_id: &str,
    other_id: &str,
    kind: Option<Kind>,
    now: u64,
) -> Result<(), StorageError> {
    match kind {
        Some(kind) => c.execute(
            "INSERT INTO relationships (user_id, other_id, kind, since) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, other_id) DO UPDATE SET kind = ?3, since = ?4",
            params![user_id, other_id, kind.as_str(), to_sql_int(now)],
        )?,
        None => c.execute(
            "DELETE FROM relationships WHERE user_id = ?1 AND other_id = ?2",
            params![user_id, other_id],
        )?,
    };
    Ok(())
}

/// Every relationship `user_id` has, by other user.
pub fn relationships(
    c: &Connection,
    user_id: &str,
) -> Result<Vec<RelationshipRecord>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT other_id, kind, since FROM relationships WHERE user_id = ?1 ORDER BY other_id",
    )?;
    let rows = stmt.query_map([user_id], relationship_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many relationships `user_id` has.
pub fn relationship_count(c: &Connection, user_id: &str) -> Result<u64, StorageError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM relationships WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    Ok(from_sql_int(n))
}

/// Whether `blocker_id` blocked `user_id`: what refuses the blocked user's DM invites, friend
/// requests and DM messages to the blocker, and silences their mentions of the blocker.
pub fn blocked(c: &Connection, blocker_id: &str, user_id: &str) -> Result<bool, StorageError> {
    Ok(relationship(c, blocker_id, user_id)?.is_some_and(|r| r.kind == Kind::Blocked))
}

/// Whether either of two users blocked the other: nothing passes between them directly (no new
/// DM, no message in a DM they share).
pub fn blocked_either(c: &Connection, a: &str, b: &str) -> Result<bool, StorageError> {
    Ok(blocked(c, a, b)? || blocked(c, b, a)?)
}

/// The users both `a` and `b` are friends with, by id.
pub fn mutual_friends(c: &Connection, a: &str, b: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT mine.other_id FROM relationships mine
         JOIN relationships theirs ON theirs.other_id = mine.other_id AND theirs.user_id = ?2
                                   AND theirs.kind = 'friend'
         WHERE mine.user_id = ?1 AND mine.kind = 'friend' ORDER BY mine.other_id",
    )?;
    let rows = stmt.query_map(params![a, b], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The users `user_id` blocked, by id.
pub fn blocked_ids(c: &Connection, user_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT other_id FROM relationships WHERE user_id = ?1 AND kind = 'blocked'",
    )?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where `other_id`, a user of another node, lives as far as `user_id`'s relationship with them
/// goes, and the newest statement from them applied here (ms; 0 for none).
pub fn relationship_peer(
    c: &Connection,
    user_id: &str,
    other_id: &str,
) -> Result<Option<(String, u64)>, StorageError> {
    Ok(c.prepare_cached(
        "SELECT homeserver, last_received FROM relationship_peers
         WHERE user_id = ?1 AND other_id = ?2",
    )?
    .query_row(params![user_id, other_id], |r| {
        Ok((r.get(0)?, from_sql_int(r.get(1)?)))
    })
    .optional()?)
}

/// Records `homeserver` as where `other_id` lives for `user_id`'s relationship with them and,
/// with `received` set, that their statement of that time (ms) was applied.
pub fn set_relationship_peer(
    c: &Connection,
    user_id: &str,
    other_id: &str,
    homeserver: &str,
    received: Option<u64>,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO relationship_peers (user_id, other_id, homeserver, last_received)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, other_id) DO UPDATE SET homeserver = ?3,
             last_received = max(last_received, ?4)",
        params![
            user_id,
            other_id,
            homeserver,
            to_sql_int(received.unwrap_or(0))
        ],
    )?;
    Ok(())
}
