//! What server admins read and keep: the audit log of admin actions (`REGISTRATION_TOKENS_V23`),
//! user summaries, node counts. Registration tokens are in [`super::registration_tokens`]
//! (re-exported here), which registration uses too.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::accounts::{USER_COLUMN_COUNT, USER_COLUMNS, UserRecord, user_from_row};
pub use super::registration_tokens::*;
use super::{StorageError, from_sql_int, to_sql_int};

/// One recorded admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increasing id.
    pub id: u64,
    /// When (ms).
    pub at: u64,
    /// The admin's user id.
    pub actor: String,
    /// The method.
    pub action: String,
    /// What it acted on.
    pub target: String,
    /// `ok` or the refusal.
    pub result: String,
}

/// Records an admin action; returns its id.
pub fn insert_audit(
    c: &Connection,
    at: u64,
    actor: &str,
    action: &str,
    target: &str,
    result: &str,
) -> Result<u64, StorageError> {
    c.execute(
        "INSERT INTO admin_audit (at, actor, action, target, result) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![to_sql_int(at), actor, action, target, result],
    )?;
    Ok(from_sql_int(c.last_insert_rowid()))
}

/// A page of the audit log, newest first: entries with ids below `before` (0: from the newest),
/// only `actor`'s and only `action`'s when those are not empty.
pub fn audit_page(
    c: &Connection,
    before: u64,
    actor: &str,
    action: &str,
    limit: usize,
) -> Result<Vec<AuditRecord>, StorageError> {
    let before = if before == 0 {
        i64::MAX
    } else {
        to_sql_int(before)
    };
    let mut stmt = c.prepare_cached(
        "SELECT id, at, actor, action, target, result FROM admin_audit
         WHERE id < ?1 AND (?2 = '' OR actor = ?2) AND (?3 = '' OR action = ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            before,
            actor,
            action,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            Ok(AuditRecord {
                id: from_sql_int(r.get(0)?),
                at: from_sql_int(r.get(1)?),
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                result: r.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A user as an admin lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The user.
    pub user: UserRecord,
    /// The latest sign-in of any of their devices (ms), 0 for none.
    pub last_seen_at: u64,
    /// Their devices here.
    pub devices: u32,
    /// The guilds (DMs included) they are a member of here.
    pub guilds: u32,
}

const SUMMARY_EXTRA: &str = "(SELECT max(last_seen_at) FROM devices d WHERE d.user_id = users.id), \
     (SELECT count(*) FROM devices d WHERE d.user_id = users.id), \
     (SELECT count(*) FROM members m WHERE m.user_id = users.id)";

fn summary_row(r: &Row<'_>) -> rusqlite::Result<UserSummary> {
    Ok(UserSummary {
        user: user_from_row(r)?,
        last_seen_at: r
            .get::<_, Option<i64>>(USER_COLUMN_COUNT)?
            .map_or(0, from_sql_int),
        devices: r.get(USER_COLUMN_COUNT + 1)?,
        guilds: r.get(USER_COLUMN_COUNT + 2)?,
    })
}

/// `text` with LIKE's wildcards escaped (`\` is the escape).
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A page of users by id, after `after` (empty: from the first): those whose id starts with
/// `query` or whose display or IRC name contains it (ASCII case ignored), everyone when `query`
/// is empty.
pub fn users_page(
    c: &Connection,
    query: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<UserSummary>, StorageError> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, {SUMMARY_EXTRA} FROM users
         WHERE id > ?1 AND (?2 = '' OR id LIKE ?3 ESCAPE '\\'
                            OR display_name LIKE ?4 ESCAPE '\\' OR irc_name LIKE ?4 ESCAPE '\\')
         ORDER BY id LIMIT ?5"
    );
    let escaped = like_escaped(query);
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            after,
            query,
            format!("{}%", escaped.to_ascii_lowercase()),
            format!("%{escaped}%"),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        summary_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One user's summary.
pub fn user_summary(c: &Connection, user_id: &str) -> Result<Option<UserSummary>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS}, {SUMMARY_EXTRA} FROM users WHERE id = ?1");
    Ok(c.query_row(&sql, [user_id], summary_row).optional()?)
}

/// A guild a user is a member of: id, name, whether they own it, whether it is a DM.
pub type MemberGuild = (String, String, bool, bool);

/// The guilds a user is a member of here, by id.
pub fn guilds_of(c: &Connection, user_id: &str) -> Result<Vec<MemberGuild>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT g.id, g.name, g.owner_id = ?1, g.is_dm FROM members m JOIN guilds g ON g.id = m.guild_id
         WHERE m.user_id = ?1 ORDER BY g.id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many unexpired access tokens a user holds.
pub fn open_sessions(c: &Connection, user_id: &str, now: u64) -> Result<u32, StorageError> {
    Ok(c.query_row(
        "SELECT count(*) FROM sessions WHERE user_id = ?1 AND expires_at > ?2",
        params![user_id, to_sql_int(now)],
        |r| r.get(0),
    )?)
}

/// Deactivates (`Some(now)`) or reactivates (`None`) a user. Deactivating deletes their sessions
/// and refresh tokens (the schema's trigger then refuses new ones). Returns whether anything
/// changed: deactivating a deactivated user, or reactivating an active one, changes nothing.
pub fn set_deactivated(
    c: &Connection,
    user_id: &str,
    at: Option<u64>,
) -> Result<bool, StorageError> {
    let changed = match at {
        Some(now) => c.execute(
            "UPDATE users SET deactivated_at = ?2 WHERE id = ?1 AND deactivated_at IS NULL",
            params![user_id, to_sql_int(now)],
        )?,
        None => c.execute(
            "UPDATE users SET deactivated_at = NULL WHERE id = ?1 AND deactivated_at IS NOT NULL",
            [user_id],
        )?,
    };
    if at.is_some() {
        c.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
        c.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [user_id])?;
    }
    Ok(changed > 0)
}

/// What the node holds, counted for `GetNodeStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCounts {
    /// Users (this node's and members from other servers).
    pub users: u64,
    /// Of them, deactivated.
    pub deactivated_users: u64,
    /// Guilds, DMs not counted.
    pub guilds: u64,
    /// DMs.
    pub dms: u64,
    /// Channels and threads.
    pub channels: u64,
    /// Stored messages.
    pub messages: u64,
    /// Uploaded files (thumbnails included).
    pub files: u64,
    /// Pinned federation peers.
    pub peers: u64,
}

/// Counts every kind of thing [`NodeCounts`] names, in one read.
pub fn counts(c: &Connection) -> Result<NodeCounts, StorageError> {
    Ok(c.query_row(
        "SELECT (SELECT count(*) FROM users),
                (SELECT count(*) FROM users WHERE deactivated_at IS NOT NULL),
                (SELECT count(*) FROM guilds WHERE is_dm = 0),
                (SELECT count(*) FROM guilds WHERE is_dm = 1),
                (SELECT count(*) FROM channels),
                (SELECT count(*) FROM messages),
                (SELECT count(*) FROM media_files),
                (SELECT count(*) FROM federation_peers)",
        [],
        |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(from_sql_int);
            Ok(NodeCounts {
                users: n(0)?,
                deactivated_users: n(1)?,
                guilds: n(2)?,
                dms: n(3)?,
                channels: n(4)?,
                messages: n(5)?,
                files: n(6)?,
                peers: n(7)?,
            })
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_pages_newest_first_and_filters() {
        let c = super::super::schema::test_db();
        for i in 0..5u64 {
            let actor = if i % 2 == 0 { "a" } else { "b" };
            insert_audit(&c, i, actor, "Act", "t", "ok").expect("insert");
        }
        let page = audit_page(&c, 0, "", "", 2).expect("page");
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), vec![5, 4]);
        let next = audit_page(&c, 4, "", "", 10).expect("page");
        assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2, 1]);
        let a = audit_page(&c, 0, "a", "", 10).expect("page");
        assert_eq!(a.len(), 3);
        assert!(audit_page(&c, 0, "", "Other", 10).expect("page").is_empty());
    }

    #[test]
    fn users_are_paged_by_id_and_searched_by_id_prefix_or_name() {
        let c = super::super::schema::test_db();
        for (id, name) in [("aa01", "Ada"), ("ab02", "Bob_x"), ("bb03", "Adalbert")] {
            c.execute(
                "INSERT INTO users (id, display_name, homeserver, profile_updated_at, created_at)
                 VALUES (?1, ?2, 'h', 0, 0)",
                [id, name],
            )
            .expect("user");
        }
        let ids = |page: Vec<UserSummary>| page.into_iter().map(|s| s.user.id).collect::<Vec<_>>();
        assert_eq!(
            ids(users_page(&c, "", "", 2).expect("page")),
            ["aa01", "ab02"]
        );
        assert_eq!(ids(users_page(&c, "", "ab02", 2).expect("page")), ["bb03"]);
        assert_eq!(
            ids(users_page(&c, "A", "", 10).expect("page")),
            ["aa01", "ab02", "bb03"]
        );
        assert_eq!(
            ids(users_page(&c, "ada", "", 10).expect("page")),
            ["aa01", "bb03"]
        );
        assert_eq!(ids(users_page(&c, "b_", "", 10).expect("page")), ["ab02"]);
        assert_eq!(
            ids(users_page(&c, "%", "", 10).expect("page")),
            Vec::<String>::new()
        );
        assert!(set_deactivated(&c, "aa01", Some(5)).expect("deactivate"));
        assert!(!set_deactivated(&c, "aa01", Some(6)).expect("again"));
        let s = user_summary(&c, "aa01").expect("read").expect("exists");
        assert_eq!(s.user.deactivated_at, Some(5));
        assert!(set_deactivated(&c, "aa01", None).expect("reactivate"));
        assert!(!set_deactivated(&c, "aa01", None).expect("again"));
    }
}
