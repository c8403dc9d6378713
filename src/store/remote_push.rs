//! Pushes for remote members, on the host: the push delegation token each remote member's
//! homeserver handed this node at their join, and the `PushNotification` calls queued in the
//! federation outbox when such a member is mentioned or sent a DM while offline here
//! (docs/PROTOCOL.md §14.2).

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, to_sql_int};
use crate::proto::guildhall::v1 as pb;

/// Inside a remote join's transaction: keeps the token `homeserver` handed out for `user_id`,
/// replacing an older one. An empty token (a homeserver that hands none out) changes nothing.
pub fn save_token(
    tx: &Connection,
    user_id: &str,
    homeserver: &str,
    token: &str,
    now: u64,
) -> Result<(), StorageError> {
    if token.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO remote_push_tokens (user_id, homeserver, token, received_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE SET homeserver = excluded.homeserver,
             token = excluded.token, received_at = excluded.received_at",
        params![user_id, homeserver, token, to_sql_int(now)],
    )?;
    Ok(())
}

/// Inside the fan-out's transaction: for each of `user_ids` that has no push distributor on this
/// node (nor, `with_fcm`, an FCM token, which would be pushed here) but a token from the
/// homeserver they have now (a token from a homeserver they moved away from is useless), queues
/// `PushNotification { payload }` to that homeserver in the outbox. Returns how many were queued.
pub fn queue_delegated(
    tx: &Connection,
    user_ids: &[String],
    payload: &str,
    now: u64,
    with_fcm: bool,
) -> Result<usize, StorageError> {
    let mut target = tx.prepare_cached(
        "SELECT t.homeserver, t.token FROM remote_push_tokens t
         JOIN users u ON u.id = t.user_id AND u.homeserver = t.homeserver
         WHERE t.user_id = ?1
           AND NOT EXISTS (SELECT 1 FROM push_distributors d WHERE d.user_id = t.user_id)
           AND NOT (?2 AND EXISTS (SELECT 1 FROM fcm_tokens f WHERE f.user_id = t.user_id))",
    )?;
    let mut queued = 0;
    for user in user_ids {
        let Some((homeserver, token)) = target
            .query_row(params![user, with_fcm], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?
        else {
            continue;
        };
        let request = pb::PushNotificationRequest {
            target_user_id: user.clone(),
            push_delegation_token: token,
            payload: payload.to_owned(),
        };
        super::outbox::enqueue(
            tx,
            &homeserver,
            "PushNotification",
            &request.encode_to_vec(),
            now,
        )?;
        queued += 1;
    }
    Ok(queued)
}
