//! On a homeserver: where its users are members of guilds hosted by other nodes, as those hosts
//! announced it in signed `membership` server events (docs/PROTOCOL.md §13). Shown to the user in
//! `GetMyData` (each server's `guild_ids`), so any of their devices can find its guilds again.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, Store, from_sql_int, to_sql_int};

/// One host's announcement about one of this node's users, already verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The user (hex K_id).
    pub user_id: String,
    /// The host's key (hex), the event's origin.
    pub host_key: String,
    /// The host's address as pinned here.
    pub host_url: String,
    /// The guild, as the host names it.
    pub guild_id: String,
    /// Joined (`true`) or left / removed.
    pub joined: bool,
    /// The event's sequence in the host's `membership` events.
    pub seq: u64,
}

/// Whether an announcement changed what is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Newer than what was held: recorded.
    Applied,
    /// Not newer than what was held (sequence given): nothing changed.
    Stale(u64),
}

/// Records `a` unless a newer or equal announcement for the same user, host and guild is held.
pub fn record(tx: &Connection, a: &Announced, now: u64) -> Result<Recorded, StorageError> {
    let held: Option<i64> = tx
        .query_row(
            "SELECT seq FROM remote_memberships
             WHERE user_id = ?1 AND host_key = ?2 AND guild_id = ?3",
            params![a.user_id, a.host_key, a.guild_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(held) = held.map(from_sql_int)
        && held >= a.seq
    {
        return Ok(Recorded::Stale(held));
    }
    tx.execute(
        "INSERT INTO remote_memberships
             (user_id, host_key, guild_id, host_url, joined, seq, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_id, host_key, guild_id) DO UPDATE SET host_url = excluded.host_url,
             joined = excluded.joined, seq = excluded.seq, updated_at = excluded.updated_at",
        params![
            a.user_id,
            a.host_key,
            a.guild_id,
            a.host_url,
            a.joined,
            to_sql_int(a.seq),
            to_sql_int(now)
        ],
    )?;
    Ok(Recorded::Applied)
}

impl Store {
    /// Records a verified announcement (see [`record`]).
    pub async fn record_membership(
        &self,
        announced: Announced,
        now: u64,
    ) -> Result<Recorded, StorageError> {
        self.write(move |tx| record(tx, &announced, now)).await
    }

    /// The guilds `user_id` is a member of now on other servers: `(host address, guild id)`,
    /// sorted.
    pub async fn remote_guilds(
        &self,
        user_id: String,
    ) -> Result<Vec<(String, String)>, StorageError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT host_url, guild_id FROM remote_memberships
                 WHERE user_id = ?1 AND joined = 1 ORDER BY host_url, guild_id",
            )?;
            let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        super::super::schema::test_db_with_user("u", "h")
    }

    fn announced(joined: bool, seq: u64) -> Announced {
        Announced {
            user_id: "u".into(),
            host_key: "k".into(),
            host_url: "http://host".into(),
            guild_id: "g".into(),
            joined,
            seq,
        }
    }

    #[test]
    fn only_newer_announcements_apply() {
        let c = db();
        assert_eq!(
            record(&c, &announced(true, 2), 1).expect("join"),
            Recorded::Applied
        );
        assert_eq!(
            record(&c, &announced(false, 1), 2).expect("older leave"),
            Recorded::Stale(2)
        );
        assert_eq!(
            record(&c, &announced(false, 3), 3).expect("leave"),
            Recorded::Applied
        );
        assert_eq!(
            record(&c, &announced(true, 2), 4).expect("replayed join"),
            Recorded::Stale(3)
        );
        let joined: i64 = c
            .query_row("SELECT joined FROM remote_memberships", [], |r| r.get(0))
            .expect("row");
        assert_eq!(joined, 0, "the leave stands");
    }
}
