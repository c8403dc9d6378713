//! The push fan-out: one task that follows the event log and queues pushes for new messages.
//!
//! It reads the same live hub as `SubscribeEvents`, after the message's transaction committed, so
//! sending a message never waits for it and never fails because of it. Its position in the log is
//! kept in the database and moves forward in the same transaction that queues pushes, so after a
//! restart (or when it falls behind the hub) it carries on from the log where it stopped: each
//! message is considered once. Events older than `max_age_secs` are skipped on catch-up.
//!
//! Who gets a push for a message: the members of a DM other than the sender; in other guilds,
//! the members it mentions (`<@user>`, or `<@&role>` for a role they hold; mentioning the guild's
//! default role, whose id is the guild id, mentions everyone). Only members who can read the
//! channel, who have a distributor (or an FCM token, when FCM is on), and who are not
//! [online](super::online) at that moment.
//!
//! A remote member (a user whose homeserver is another node) with no distributor here is pushed
//! through their homeserver: the fan-out queues `PushNotification` in the federation outbox with
//! the delegation token the homeserver handed out at their join (docs/PROTOCOL.md §14.2), in the
//! same transaction as the local pushes and the cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::online::OnlineUsers;
use crate::events::{self, Events};
use crate::federation::outbox::Outbox;
use crate::guilds::{Guilds, permissions};
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::push::{Audience, push_candidates};
use crate::store::{StorageError, Store, StoredEvent, guilds as gdb};

/// Events read from the log per catch-up query.
const CATCH_UP_BATCH: usize = 500;
/// How often a cursor that moved without queuing anything is saved.
const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(5);
/// Guilds whose DM flag is remembered (the flag never changes); the memo is cleared past this.
const DM_MEMO_MAX: usize = 10_000;

/// The minimal push body: which message to fetch, never what it says. Pushes cross the
/// distributor's server (a third party) unencrypted, so message text stays on the node.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct PushPayload {
    /// `"mention"` or `"dm"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The guild (a DM is a guild).
    pub guild_id: String,
    /// The channel or thread.
    pub channel_id: String,
    /// The message.
    pub message_id: String,
    /// Who sent it.
    pub sender_id: String,
}

/// A new message that may warrant pushes.
struct NewMessage<'a> {
    guild_id: &'a str,
    message: &'a pb::Message,
}

/// The message a `MessageCreated` event carries, if it is a real message (not typing, a
/// reaction or a system notice).
fn new_message<'a>(
    event: &'a StoredEvent,
    decoded: &'a pb::StreamResponse,
) -> Option<NewMessage<'a>> {
    let Some(pb::stream_response::Event::MessageCreated(pb::MessageEvent {
        message: Some(message),
        ..
    })) = &decoded.event
    else {
        return None;
    };
    if message.id.is_empty()
        || message.typing.is_some()
        || message.reaction.is_some()
        || message.action.is_some()
    {
        return None;
    }
    let guild_id = event.scopes.iter().find_map(|s| s.strip_prefix("g:"))?;
    Some(NewMessage { guild_id, message })
}

/// The fan-out task's state.
pub(crate) struct Fanout {
    pub(crate) events: Events,
    pub(crate) online: OnlineUsers,
    pub(crate) wake_delivery: Arc<Notify>,
    /// Where pushes for remote members go (`PushNotification` to their homeservers).
    pub(crate) outbox: Outbox,
    pub(crate) max_age_ms: u64,
    /// Whether users' FCM tokens count as somewhere to push (FCM is configured).
    pub(crate) with_fcm: bool,
    pub(crate) dm_memo: HashMap<String, bool>,
    /// Last event handled, and whether that is newer than what is saved.
    pub(crate) cursor: u64,
    pub(crate) unsaved: bool,
}

impl Fanout {
    fn store(&self) -> &Store {
        self.events.store()
    }

    /// Follows the hub until `cancel` fires.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        // Follow before reading the cursor, so nothing committed in between is missed.
        let mut live = self.events.follow();
        match self.start_cursor().await {
            Ok(cursor) => self.cursor = cursor,
            Err(e) => {
                tracing::error!(error = %e, "push fan-out could not read its cursor; not running");
                return;
            }
        }
        self.catch_up().await;
        let mut save = tokio::time::interval(CURSOR_SAVE_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = save.tick() => self.save_cursor().await,
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.stored.id > self.cursor
                            && let Some(decoded) = event.message()
                        {
                            self.handle(&event.stored, decoded).await;
                        }
                        self.advance(event.stored.id);
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "push fan-out lagged; reading the log");
                        self.catch_up().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        self.save_cursor().await;
    }

    /// Where to start: the saved cursor, or (first run) the newest event, so history is not pushed.
    async fn start_cursor(&self) -> Result<u64, StorageError> {
        if let Some(saved) = self.store().push_cursor().await? {
            return Ok(saved);
        }
        let (_, newest) = self.store().event_bounds().await?;
        self.store().save_push_cursor(newest).await?;
        Ok(newest)
    }

    fn advance(&mut self, id: u64) {
        if id > self.cursor {
            self.cursor = id;
            self.unsaved = true;
        }
    }

    async fn save_cursor(&mut self) {
        if !self.unsaved {
            return;
        }
        match self.store().save_push_cursor(self.cursor).await {
            Ok(()) => self.unsaved = false,
            Err(e) => tracing::warn!(error = %e, "saving the push cursor failed"),
        }
    }

    /// Handles everything in the log after the cursor.
    async fn catch_up(&mut self) {
        loop {
            let batch = match self
                .store()
                .all_events_after(self.cursor, CATCH_UP_BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "push fan-out could not read the event log");
                    return;
                }
            };
            let Some(last) = batch.last().map(|e| e.id) else {
                return;
            };
            let oldest = now_ms().saturating_sub(self.max_age_ms);
            for event in &batch {
                if event.created_at >= oldest
                    && let Some(decoded) = events::decode(event)
                {
                    self.handle(event, &decoded).await;
                }
            }
            self.advance(last);
        }
    }

    /// Queues the pushes one event calls for; failures are logged, never passed on.
    async fn handle(&mut self, event: &StoredEvent, decoded: &pb::StreamResponse) {
        let Some(new) = new_message(event, decoded) else {
            return;
        };
        if let Err(e) = self.queue_for(event.id, &new).await {
            tracing::warn!(event = event.id, error = %e, "queuing pushes failed");
        }
    }

    async fn queue_for(&mut self, event_id: u64, new: &NewMessage<'_>) -> Result<(), StorageError> {
        let is_dm = self.is_dm(new.guild_id).await?;
        let m = new.message;
        let audience = if is_dm || m.mentioned_role_ids.iter().any(|r| r == new.guild_id) {
            Audience::AllMembers
        } else if m.mentioned_user_ids.is_empty() && m.mentioned_role_ids.is_empty() {
            return Ok(());
        } else {
            Audience::Mentioned {
                users: m.mentioned_user_ids.clone(),
                roles: m.mentioned_role_ids.clone(),
            }
        };
        let (guild, sender) = (new.guild_id.to_owned(), m.sender_id.clone());
        let with_fcm = self.with_fcm;
        let readers = self
            .store()
            .read(move |c| {
                let candidates = push_candidates(c, &guild, &sender, &audience, with_fcm)?;
                let mut out = Vec::with_capacity(candidates.len());
                for user in candidates {
                    // A user who blocked the sender is not pushed their mentions or DMs.
                    if crate::store::people::blocked(c, &user, &sender)? {
                        continue;
                    }
                    let Some(ctx) = gdb::context(c, &guild, &user)? else {
                        break; // the guild is gone
                    };
                    if Guilds::access_from(ctx, &user)
                        .is_ok_and(|a| a.standing.has(permissions::MESSAGES_READ))
                    {
                        out.push(user);
                    }
                }
                Ok(out)
            })
            .await?;
        let offline: Vec<String> = readers
            .into_iter()
            .filter(|u| !self.online.is_online(u))
            .collect();
        if offline.is_empty() {
            return Ok(());
        }
        let payload = PushPayload {
            kind: if is_dm { "dm" } else { "mention" },
            guild_id: new.guild_id.to_owned(),
            channel_id: m.channel_id.clone(),
            message_id: m.id.clone(),
            sender_id: m.sender_id.clone(),
        };
        let body = serde_json::to_string(&payload)
            .map_err(|e| StorageError::Task(format!("push payload: {e}")))?;
        let queued = self
            .store()
            .enqueue_message_pushes(
                offline,
                body,
                format!("m:{}", m.id),
                now_ms(),
                event_id,
                self.with_fcm,
            )
            .await?;
        // The cursor was saved with the pushes.
        if event_id >= self.cursor {
            self.cursor = event_id;
            self.unsaved = false;
        }
        if queued.local > 0 {
            self.wake_delivery.notify_one();
        }
        if queued.delegated > 0 {
            self.outbox.wake();
        }
        Ok(())
    }

    async fn is_dm(&mut self, guild_id: &str) -> Result<bool, StorageError> {
        if let Some(known) = self.dm_memo.get(guild_id) {
            return Ok(*known);
        }
        let id = guild_id.to_owned();
        let is_dm = self
            .store()
            .read(move |c| Ok(gdb::guild(c, &id)?.is_some_and(|g| g.is_dm)))
            .await?;
        if self.dm_memo.len() >= DM_MEMO_MAX {
            self.dm_memo.clear();
        }
        self.dm_memo.insert(guild_id.to_owned(), is_dm);
        Ok(is_dm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_ids_only() {
        let payload = PushPayload {
            kind: "mention",
            guild_id: "1".into(),
            channel_id: "2".into(),
            message_id: "3".into(),
            sender_id: "ab".into(),
        };
        assert_eq!(
            serde_json::to_string(&payload).expect("json"),
            r#"{"type":"mention","guild_id":"1","channel_id":"2","message_id":"3","sender_id":"ab"}"#
        );
    }
}
