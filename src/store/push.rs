//! Push storage: UnifiedPush distributors and FCM tokens per user, the durable delivery queue, and
//! the event-log cursor of the push fan-out.
//!
//! A queued push references its distributor or FCM token, so removing one (a 404/410 answer, FCM's
//! `UNREGISTERED`, the user unregistering it, or the user's account going) removes its queued
//! pushes in the same statement.
//!
//! Pushes go to FCM tokens only while the node can send to FCM (`with_fcm`, set when a service
//! account is configured): otherwise tokens are kept but nothing is queued for them.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{StorageError, Store, StoredEvent, from_sql_int, to_sql_int};

/// What adding a per-user item (distributor or token) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// It was stored.
    Added,
    /// It was there already; nothing changed (registering twice is idempotent).
    Existed,
    /// The user already has the most allowed; nothing changed.
    Full,
}

/// Where a queued push goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// A UnifiedPush distributor URL, POSTed to.
    Distributor(String),
    /// An FCM registration token, sent through the FCM HTTP v1 API.
    Fcm(String),
}

/// A push waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPush {
    /// Queue row id.
    pub id: i64,
    /// The user it is for.
    pub user_id: String,
    /// Where it goes.
    pub target: PushTarget,
    /// The notice (JSON, ids only).
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was queued (ms).
    pub created_at: u64,
}

/// Who a message should reach through push, before the online and permission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every member (a DM, or a mention of the guild's default role).
    AllMembers,
    /// Members mentioned by id, and members holding one of the mentioned roles.
    Mentioned {
        /// Mentioned user ids.
        users: Vec<String>,
        /// Mentioned role ids.
        roles: Vec<String>,
    },
}

impl Store {
    /// Adds a distributor URL for a user, unless they already have `cap` of them.
    pub async fn add_push_distributor(
        &self,
        user_id: String,
        url: String,
        now: u64,
        cap: usize,
    ) -> Result<AddOutcome, StorageError> {
        self.write(move |tx| add_capped(tx, "push_distributors", "url", &user_id, &url, now, cap))
            .await
    }

    /// Forgets a distributor (and, through the foreign key, its queued pushes); `false` if absent.
    pub async fn remove_push_distributor(
        &self,
        user_id: String,
        url: String,
    ) -> Result<bool, StorageError> {
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM push_distributors WHERE user_id = ?1 AND url = ?2",
                params![user_id, url],
            )? > 0)
        })
        .await
    }

    /// Adds an FCM token for a user, unless they already have `cap` of them.
    pub async fn add_fcm_token(
        &self,
        user_id: String,
        token: String,
        now: u64,
        cap: usize,
    ) -> Result<AddOutcome, StorageError> {
        self.write(move |tx| add_capped(tx, "fcm_tokens", "token", &user_id, &token, now, cap))
            .await
    }

    /// Forgets an FCM token; `false` if the user had not registered it.
    pub async fn remove_fcm_token(
        &self,
        user_id: String,
        token: String,
    ) -> Result<bool, StorageError> {
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM fcm_tokens WHERE user_id = ?1 AND token = ?2",
                params![user_id, token],
            )? > 0)
        })
        .await
    }

    /// The user's FCM tokens, oldest first.
    pub async fn fcm_tokens(&self, user_id: String) -> Result<Vec<String>, StorageError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT token FROM fcm_tokens WHERE user_id = ?1 ORDER BY created_at, token",
            )?;
            let rows = stmt.query_map([user_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Queues `payload` once per distributor (and, `with_fcm`, per FCM token) of each user in
    /// `user_ids`, and moves the fan-out cursor to `cursor` if given, in one transaction. With a
    /// `dedup_key`, a push already queued under that key for the same target is not queued twice.
    /// Returns how many were queued.
    pub async fn enqueue_pushes(
        &self,
        user_ids: Vec<String>,
        payload: String,
        dedup_key: Option<String>,
        now: u64,
        cursor: Option<u64>,
        with_fcm: bool,
    ) -> Result<usize, StorageError> {
        self.write(move |tx| {
            let queued = queue_local(tx, &user_ids, &payload, dedup_key.as_deref(), now, with_fcm)?;
            if let Some(cursor) = cursor {
                save_cursor(tx, cursor)?;
            }
            Ok(queued)
        })
        .await
    }

    /// The fan-out's write for one message: [`Store::enqueue_pushes`] for the users with
    /// distributors (or, `with_fcm`, FCM tokens) here, plus a `PushNotification` in the federation
    /// outbox for each remote member with none here whose homeserver handed this node a push
    /// delegation ([`super::remote_push::queue_delegated`]), and the cursor, in one transaction.
    /// Returns how many were queued each way.
    pub async fn enqueue_message_pushes(
        &self,
        user_ids: Vec<String>,
        payload: String,
        dedup_key: String,
        now: u64,
        cursor: u64,
        with_fcm: bool,
    ) -> Result<QueuedPushes, StorageError> {
        self.write(move |tx| {
            let queued = QueuedPushes {
                local: queue_local(tx, &user_ids, &payload, Some(&dedup_key), now, with_fcm)?,
                delegated: super::remote_push::queue_delegated(
                    tx, &user_ids, &payload, now, with_fcm,
                )?,
            };
            save_cursor(tx, cursor)?;
            Ok(queued)
        })
        .await
    }

    /// Up to `limit` pushes due at `now` and queued at or after `oldest`, leaving out `busy` (being
    /// delivered now), soonest first; and when the next push not in `busy` falls due.
    pub async fn due_pushes(
        &self,
        now: u64,
        oldest: u64,
        limit: usize,
        busy: Vec<i64>,
    ) -> Result<(Vec<QueuedPush>, Option<u64>), StorageError> {
        self.read(move |c| {
            let busy_list = vec!["?"; busy.len()].join(",");
            let sql = format!(
                "SELECT id, user_id, url, fcm_token, payload, attempts, created_at FROM push_queue
                 WHERE next_attempt_at <= ? AND created_at >= ? AND id NOT IN ({busy_list})
                 ORDER BY next_attempt_at, id LIMIT ?"
            );
            let mut values: Vec<rusqlite::types::Value> =
                vec![to_sql_int(now).into(), to_sql_int(oldest).into()];
            values.extend(busy.iter().map(|id| (*id).into()));
            values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
            let mut stmt = c.prepare(&sql)?;
            let due = stmt
                .query_map(params_from_iter(values), |r| {
                    let url: Option<String> = r.get(2)?;
                    let fcm_token: Option<String> = r.get(3)?;
                    // The CHECK constraint keeps exactly one of them set.
                    let target = match (url, fcm_token) {
                        (Some(url), _) => PushTarget::Distributor(url),
                        (None, token) => PushTarget::Fcm(token.unwrap_or_default()),
                    };
                    Ok(QueuedPush {
                        id: r.get(0)?,
                        user_id: r.get(1)?,
                        target,
                        payload: r.get(4)?,
                        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                        created_at: from_sql_int(r.get(6)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let sql = format!(
                "SELECT min(next_attempt_at) FROM push_queue WHERE id NOT IN ({busy_list})"
            );
            let next: Option<i64> =
                c.query_row(&sql, params_from_iter(busy.iter()), |r| r.get(0))?;
            Ok((due, next.map(from_sql_int)))
        })
        .await
    }

    /// Removes a queued push (delivered, or given up on).
    pub async fn remove_push(&self, id: i64) -> Result<(), StorageError> {
        self.write(move |tx| {
            tx.execute("DELETE FROM push_queue WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    /// Records a failed attempt and when to try again.
    pub async fn retry_push_at(
        &self,
        id: i64,
        next_attempt_at: u64,
        error: String,
    ) -> Result<(), StorageError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE push_queue SET attempts = attempts + 1, next_attempt_at = ?2,
                     last_error = ?3 WHERE id = ?1",
                params![id, to_sql_int(next_attempt_at), error],
            )?;
            Ok(())
        })
        .await
    }

    /// Drops pushes queued before `before` (ms): too old to be worth a notification.
    pub async fn drop_pushes_before(&self, before: u64) -> Result<usize, StorageError> {
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM push_queue WHERE created_at < ?1",
                [to_sql_int(before)],
            )?)
        })
        .await
    }

    /// How many pushes are queued (for operators and tests).
    pub async fn queued_push_count(&self) -> Result<u64, StorageError> {
        self.read(|c| {
            Ok(from_sql_int(c.query_row(
                "SELECT count(*) FROM push_queue",
                [],
                |r| r.get(0),
            )?))
        })
        .await
    }

    /// The last event id the push fan-out has handled, if it ever ran.
    pub async fn push_cursor(&self) -> Result<Option<u64>, StorageError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT event_id FROM push_cursor WHERE id = 1", [], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
                .map(from_sql_int),
            )
        })
        .await
    }

    /// Moves the fan-out cursor forward (never back).
    pub async fn save_push_cursor(&self, event_id: u64) -> Result<(), StorageError> {
        self.write(move |tx| save_cursor(tx, event_id)).await
    }

    /// Events after `after`, whatever their scopes, oldest first, at most `limit`.
    pub async fn all_events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        self.read(move |c| {
            let mut events = c.prepare_cached(
                "SELECT id, created_at, payload FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let mut scopes =
                c.prepare_cached("SELECT scope FROM event_scopes WHERE event_id = ?1")?;
            let rows = events
                .query_map(
                    params![to_sql_int(after), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?)),
                )?
                .collect::<Result<Vec<(i64, i64, Vec<u8>)>, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (id, created_at, payload) in rows {
                let scopes = scopes
                    .query_map([id], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                out.push(StoredEvent {
                    id: from_sql_int(id),
                    created_at: from_sql_int(created_at),
                    scopes,
                    payload,
                });
            }
            Ok(out)
        })
        .await
    }
}

fn add_capped(
    tx: &Connection,
    table: &str,
    column: &str,
    user_id: &str,
    value: &str,
    now: u64,
    cap: usize,
) -> Result<AddOutcome, StorageError> {
    let exists = tx
        .query_row(
            &format!("SELECT 1 FROM {table} WHERE user_id = ?1 AND {column} = ?2"),
            params![user_id, value],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Ok(AddOutcome::Existed);
    }
    let count: i64 = tx.query_row(
        &format!("SELECT count(*) FROM {table} WHERE user_id = ?1"),
        [user_id],
        |r| r.get(0),
    )?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= cap {
        return Ok(AddOutcome::Full);
    }
    tx.execute(
        &format!("INSERT INTO {table} (user_id, {column}, created_at) VALUES (?1, ?2, ?3)"),
        params![user_id, value, to_sql_int(now)],
    )?;
    Ok(AddOutcome::Added)
}

/// How many pushes one message queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuedPushes {
    /// Pushes to distributors registered on this node.
    pub local: usize,
    /// `PushNotification` calls to remote members' homeservers, in the federation outbox.
    pub delegated: usize,
}

/// Queues `payload` once per distributor of each user, and once per FCM token `with_fcm`;
/// returns how many were queued.
fn queue_local(
    tx: &Connection,
    user_ids: &[String],
    payload: &str,
    dedup_key: Option<&str>,
    now: u64,
    with_fcm: bool,
) -> Result<usize, StorageError> {
    let mut to_distributors = tx.prepare_cached(
        "INSERT OR IGNORE INTO push_queue
             (user_id, url, payload, dedup_key, attempts, next_attempt_at, created_at)
         SELECT user_id, url, ?2, ?3, 0, ?4, ?4 FROM push_distributors WHERE user_id = ?1",
    )?;
    let mut to_fcm = tx.prepare_cached(
        "INSERT OR IGNORE INTO push_queue
             (user_id, fcm_token, payload, dedup_key, attempts, next_attempt_at, created_at)
         SELECT user_id, token, ?2, ?3, 0, ?4, ?4 FROM fcm_tokens WHERE user_id = ?1",
    )?;
    let mut queued = 0;
    for user in user_ids {
        let values = params![user, payload, dedup_key, to_sql_int(now)];
        queued += to_distributors.execute(values)?;
        if with_fcm {
            queued += to_fcm.execute(values)?;
        }
    }
    Ok(queued)
}

fn save_cursor(tx: &Connection, event_id: u64) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO push_cursor (id, event_id) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET event_id = max(event_id, excluded.event_id)",
        [to_sql_int(event_id)],
    )?;
    Ok(())
}

/// The members of `guild_id` other than `sender` who can be pushed to (at least one distributor
/// here, `with_fcm` an FCM token here, or a push delegation from their homeserver) and are in
/// `audience`.
pub fn push_candidates(
    c: &Connection,
    guild_id: &str,
    sender: &str,
    audience: &Audience,
    with_fcm: bool,
) -> Result<Vec<String>, StorageError> {
    let fcm = if with_fcm {
        "OR EXISTS (SELECT 1 FROM fcm_tokens f WHERE f.user_id = m.user_id)"
    } else {
        ""
    };
    let mut sql = format!(
        "SELECT m.user_id FROM members m
         WHERE m.guild_id = ? AND m.user_id != ?
           AND (EXISTS (SELECT 1 FROM push_distributors d WHERE d.user_id = m.user_id)
                {fcm}
                OR EXISTS (SELECT 1 FROM remote_push_tokens t WHERE t.user_id = m.user_id))",
    );
    let mut values: Vec<rusqlite::types::Value> =
        vec![guild_id.to_owned().into(), sender.to_owned().into()];
    if let Audience::Mentioned { users, roles } = audience {
        let users_list = vec!["?"; users.len()].join(",");
        let roles_list = vec!["?"; roles.len()].join(",");
        sql.push_str(&format!(
            " AND (m.user_id IN ({users_list}) OR EXISTS (SELECT 1 FROM member_roles r
                  WHERE r.guild_id = m.guild_id AND r.user_id = m.user_id
                    AND r.role_id IN ({roles_list})))"
        ));
        values.extend(users.iter().map(|u| u.clone().into()));
        values.extend(roles.iter().map(|r| r.clone().into()));
    }
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::test_db_with_user;

    fn queued(c: &Connection) -> Vec<(Option<String>, Option<String>)> {
        let mut stmt = c
            .prepare("SELECT url, fcm_token FROM push_queue ORDER BY id")
            .expect("select");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("values")
    }

    #[test]
    fn fcm_tokens_share_the_queue_and_go_with_their_pushes() {
        let c = test_db_with_user("u", "https://home.example");
        assert_eq!(
            add_capped(&c, "push_distributors", "url", "u", "https://d", 1, 4).expect("d"),
            AddOutcome::Added
        );
        add_capped(&c, "fcm_tokens", "token", "u", "tok", 1, 4).expect("t");
        let users = ["u".to_owned()];

        let off = queue_local(&c, &users, "{}", Some("m:1"), 5, false).expect("queue");
        assert_eq!(off, 1, "FCM off: the distributor only");
        let on = queue_local(&c, &users, "{}", Some("m:1"), 5, true).expect("queue");
        assert_eq!(
            on, 1,
            "the distributor's push is there already; the token's is new"
        );
        let again = queue_local(&c, &users, "{}", Some("m:1"), 5, true).expect("queue");
        assert_eq!(again, 0, "one push per message and target");
        assert_eq!(
            queued(&c),
            [(Some("https://d".into()), None), (None, Some("tok".into()))]
        );
        c.execute("DELETE FROM fcm_tokens WHERE token = 'tok'", [])
            .expect("forget");
        assert_eq!(
            queued(&c),
            [(Some("https://d".into()), None)],
            "the token's push went with it"
        );
        let neither = c.execute(
            "INSERT INTO push_queue (user_id, payload, next_attempt_at, created_at)
             VALUES ('u', '{}', 1, 1)",
            [],
        );
        assert!(neither.is_err(), "a push names a distributor or a token");
    }
}
