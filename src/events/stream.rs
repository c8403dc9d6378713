//! `SubscribeEvents`: a stream per subscriber that replays what the client missed and then follows
//! the live hub.
//!
//! The stream subscribes to the hub *before* reading the log, so nothing committed in between is
//! lost; it skips live events at or below the last id it sent, so nothing is sent twice. It has no
//! task of its own: the HTTP/2 stream pulls it as the client reads. If the subscriber is slow, its
//! stream's send window fills, the stream stops pulling, the hub reports a lag, and the stream
//! catches up from the log: memory stays bounded and nothing is dropped. A live event is encoded
//! once for every stream ([`LiveEvent::encoded`]).
//!
//! A subscriber sees an event when one of the event's scopes is one of its own: its user scope
//! and the scopes of the guilds it is a member of (updated as it joins and leaves).
//!
//! Each user holds at most `max_event_streams_per_user` streams open at once ([`OpenStreams`]):
//! a stream takes its slot before anything else and gives it back when the client goes away.
//!
//! A guild's channel content (messages created, updated and deleted, typing, receipts) goes only
//! to members allowed to read it (`messages.read`, docs/PERMISSIONS.md): the rule lives with the
//! guilds, above this floor, and is handed in as a [`ReadGate`]. A subscription asks it once per
//! guild and caches the answer until [`Events::access_changed`] says permissions moved, so a
//! message fanned out to many subscribers costs no read per subscriber.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::broadcast;
use tonic::Status;

use super::{Events, LiveEvent, decode, guild_scope, user_scope};
use crate::error::{Error, Result};
use crate::proto::guildhall::v1 as pb;
use crate::store::{StorageError, StoredEvent, guilds as gdb};

/// Events read from the log per catch-up query.
const CATCH_UP_BATCH: usize = 500;
/// Default for the `max_event_streams_per_user` setting: room for a user's phone, laptop, tablet
/// and a handful of browser tabs, far below what would strain the node.
pub const STREAMS_PER_USER_DEFAULT: usize = 16;

/// Whether a user may see a guild's channel content in their event stream. The permission rules
/// are the guilds' (a floor above the event log), so they come in through this trait.
pub trait ReadGate: Send + Sync + std::fmt::Debug {
    /// Whether `user_id` may read the channels of `guild_id` now, read through `conn`.
    fn may_read(
        &self,
        conn: &rusqlite::Connection,
        guild_id: &str,
        user_id: &str,
    ) -> std::result::Result<bool, StorageError>;
}

/// Whether an event is a guild's channel content, which only its readers receive.
fn is_channel_content(message: &pb::StreamResponse) -> bool {
    use pb::stream_response::Event as E;
    matches!(
        message.event,
        Some(E::MessageCreated(_) | E::MessageUpdated(_) | E::MessageDeleted(_) | E::Delivery(_))
    )
}

/// The `SubscribeEvents` streams open on this node, counted per user and bounded per user. Cheap
/// to clone; clones share the counts.
#[derive(Debug, Clone)]
pub struct OpenStreams {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    max_per_user: usize,
}

impl OpenStreams {
    /// No streams open yet; each user may open `max_per_user`.
    pub fn new(max_per_user: usize) -> Self {
        Self {
            counts: Arc::default(),
            max_per_user,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many streams `user_id` has open now.
    pub fn count(&self, user_id: &str) -> usize {
        self.lock().get(user_id).copied().unwrap_or(0)
    }

    /// How many streams are open now, all users together (the `guildhall_event_streams_open`
    /// metric and the admin node status).
    pub fn total(&self) -> usize {
        self.lock().values().sum()
    }

    /// Takes one of `user_id`'s slots, held until the returned [`StreamSlot`] is dropped; refuses
    /// (`RESOURCE_EXHAUSTED`, naming the setting) when all are taken.
    pub fn open(&self, user_id: &str) -> Result<StreamSlot> {
        let mut counts = self.lock();
        let open = counts.entry(user_id.to_owned()).or_default();
        if *open >= self.max_per_user {
            return Err(Error::Exhausted(format!(
                "max_event_streams_per_user: you already have {} event streams open on this \
                 node, the most it allows; close one first",
                self.max_per_user
            )));
        }
        *open += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            user_id: user_id.to_owned(),
        })
    }
}

/// One open stream's place in [`OpenStreams`], given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: OpenStreams,
    user_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.streams.lock();
        if let Some(n) = counts.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.user_id);
            }
        }
    }
}

/// One `SubscribeEvents` stream: each item is a `StreamResponse` already encoded for the wire (a
/// live event's bytes are shared by every stream that sends it), or the status that ends the
/// stream. It is the subscription itself, pulled by the HTTP/2 stream that sends it, with no task
/// or channel of its own: a client that stops reading stops pulling, so the hub reports a lag and
/// the stream catches up from the log once it is read again. Dropping it (the client went away)
/// gives the user's slot back.
pub struct EventStream {
    inner: Pin<Box<dyn futures::Stream<Item = Item> + Send>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// What an [`EventStream`] yields: an encoded `StreamResponse`, or the status that ends it.
pub type Item = std::result::Result<bytes::Bytes, Status>;

impl futures::Stream for EventStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

async fn scopes_of(
    events: &Events,
    user_id: &str,
) -> std::result::Result<HashSet<String>, StorageError> {
    let user = user_id.to_owned();
    let guilds = events
        .store()
        .read(move |c| gdb::guild_ids_of(c, &user))
        .await?;
    let mut scopes: HashSet<String> = guilds.iter().map(|g| guild_scope(g)).collect();
    scopes.insert(user_scope(user_id));
    Ok(scopes)
}

/// Starts a subscription for `user_id`, replaying everything after `resume_from` first; refused
/// when the user already holds every stream slot.
pub async fn subscribe(
    events: &Events,
    user_id: &str,
    resume_from: Option<u64>,
) -> Result<EventStream> {
    let slot = events.open_streams().open(user_id)?;
    // Follow the hub before reading the log, so nothing committed in between is lost.
    let live = events.follow();
    let (oldest, newest) = events.store().event_bounds().await?;
    let cursor = match resume_from {
        None => newest,
        Some(id) if id > newest => {
            return Err(Error::OutOfRange(format!(
                "resume_from_event_id: {id} is newer than the newest event ({newest}); subscribe without it"
            )));
        }
        Some(id) if oldest > 0 && id + 1 < oldest => {
            return Err(Error::OutOfRange(format!(
                "resume_from_event_id: events after {id} are past retention (oldest kept is {oldest}); reload state and subscribe without it"
            )));
        }
        Some(id) => id,
    };
    let scopes = scopes_of(events, user_id).await?;
    let subscription = Subscription {
        events: events.clone(),
        user_id: user_id.to_owned(),
        scopes,
        readable: HashMap::new(),
        epoch: 0,
        cursor,
        live,
        behind: resume_from.is_some(),
        ready: VecDeque::new(),
        done: false,
        _slot: slot,
    };
    let inner = futures::stream::unfold(subscription, |mut subscription| async move {
        let item = subscription.next().await?;
        Some((item, subscription))
    });
    Ok(EventStream {
        inner: Box::pin(inner),
    })
}

struct Subscription {
    events: Events,
    user_id: String,
    scopes: HashSet<String>,
    /// The read gate's answers per guild, valid while the access epoch is `epoch`.
    readable: HashMap<String, bool>,
    epoch: u64,
    /// The id of the last event this subscriber was sent or skipped.
    cursor: u64,
    live: broadcast::Receiver<Arc<LiveEvent>>,
    /// The log holds events after the cursor that the hub no longer does (a resume, or a lag):
    /// read them from the log before following the hub again.
    behind: bool,
    /// Items to send, in order: at most one catch-up batch, and the status that ends the stream.
    ready: VecDeque<Item>,
    /// Nothing more after `ready`.
    done: bool,
    _slot: StreamSlot,
}

impl Subscription {
    /// The next item to send; `None` ends the stream (the node is stopping, or a closing status
    /// was sent).
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            if self.behind {
                self.catch_up_batch().await;
                continue;
            }
            let received = tokio::select! {
                () = self.events.cancel.cancelled() => return None,
                received = self.live.recv() => received,
            };
            match received {
                Ok(event) => {
                    if let Some(message) = event.message() {
                        self.deliver(&event.stored, message, || event.encoded().cloned())
                            .await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.behind = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next batch after the cursor from the log and makes ready what this subscriber may
    /// see; clears `behind` once the log has nothing more.
    async fn catch_up_batch(&mut self) {
        let scopes: Vec<String> = self.scopes.iter().cloned().collect();
        let batch = match self
            .events
            .store()
            .events_after(self.cursor, scopes, CATCH_UP_BATCH)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "event catch-up failed");
                self.end(Status::internal("event log unavailable"));
                return;
            }
        };
        if batch.is_empty() {
            self.behind = false;
            return;
        }
        for event in &batch {
            let Some(message) = decode(event) else {
                // Move past it, so a damaged row can't stall catch-up.
                self.cursor = self.cursor.max(event.id);
                continue;
            };
            self.deliver(event, &message, || {
                Some(bytes::Bytes::from(prost::Message::encode_to_vec(&message)))
            })
            .await;
            if self.done {
                return;
            }
        }
    }

    fn end(&mut self, status: Status) {
        self.ready.push_back(Err(status));
        self.done = true;
    }

    /// Makes one event ready if it is new and visible (`encoded` gives its wire bytes), and
    /// follows the subscriber's own joins and leaves.
    async fn deliver(
        &mut self,
        event: &StoredEvent,
        message: &pb::StreamResponse,
        encoded: impl FnOnce() -> Option<bytes::Bytes>,
    ) {
        if event.id <= self.cursor {
            return;
        }
        if !event.scopes.iter().any(|s| self.scopes.contains(s)) {
            return;
        }
        self.cursor = event.id;
        // Channel content is gated by its guild, whichever of the event's scopes let it through.
        if is_channel_content(message)
            && let Some(guild_id) = event.scopes.iter().find_map(|s| s.strip_prefix("g:"))
        {
            match self.may_read(guild_id).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(error = %e, "reading a subscriber's permissions failed");
                    self.end(Status::internal("event log unavailable"));
                    return;
                }
            }
        }
        match &message.event {
            Some(pb::stream_response::Event::MemberJoined(j))
                if j.user.as_ref().is_some_and(|u| u.id == self.user_id) =>
            {
                // A member who comes back holds only the default role again: ask anew.
                self.scopes.insert(guild_scope(&j.guild_id));
                self.readable.remove(&j.guild_id);
            }
            Some(pb::stream_response::Event::MemberRemoved(r)) if r.user_id == self.user_id => {
                self.scopes.remove(&guild_scope(&r.guild_id));
                self.readable.remove(&r.guild_id);
            }
            _ => {}
        }
        if let Some(bytes) = encoded() {
            self.ready.push_back(Ok(bytes));
        }
        // The subscriber's own account was deactivated, disabled or deleted: its sessions are
        // gone, and so is this stream, once it has carried the news.
        if let Some(pb::stream_response::Event::UserUpdated(u)) = &message.event
            && let Some(u) = u.user.as_ref().filter(|u| u.id == self.user_id)
        {
            let why = if u.is_deactivated {
                Some("authorization: this account was deactivated by a server admin")
            } else if u.is_deleted {
                Some("authorization: this account was deleted by its owner")
            } else if u.is_disabled {
                Some("authorization: this account was disabled by its owner")
            } else {
                None
            };
            if let Some(why) = why {
                self.end(Status::unauthenticated(why));
            }
        }
    }

    /// Whether the subscriber may read `guild_id`'s channels: the cached answer while no access
    /// change happened since it was asked, else the read gate's (the epoch is taken before the
    /// read, so a change that lands during it is seen next time).
    async fn may_read(&mut self, guild_id: &str) -> std::result::Result<bool, StorageError> {
        let Some(gate) = self.events.read_gate.clone() else {
            return Ok(true);
        };
        let epoch = self.events.access_epoch();
        if epoch != self.epoch {
            self.readable.clear();
            self.epoch = epoch;
        }
        if let Some(&readable) = self.readable.get(guild_id) {
            return Ok(readable);
        }
        let (guild, user) = (guild_id.to_owned(), self.user_id.clone());
        let readable = self
            .events
            .store()
            .read(move |c| gate.may_read(c, &guild, &user))
            .await?;
        self.readable.insert(guild_id.to_owned(), readable);
        Ok(readable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn resuming_from_pruned_events_is_out_of_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("db.sqlite3"),
            crate::store::Synchronous::Normal,
        )
        .await
        .expect("open");
        let events = Events::new(
            store.clone(),
            16,
            tokio_util::sync::CancellationToken::new(),
        );
        for i in 0..5u64 {
            let row = super::super::row(
                vec![user_scope("u")],
                pb::stream_response::Event::MemberRemoved(pb::GuildMemberRemoved {
                    guild_id: i.to_string(),
                    user_id: "u".into(),
                }),
            );
            events
                .write(i, move |_| Ok(((), vec![row])))
                .await
                .expect("append");
        }
        // Everything older than t=3 goes; ids 4 and 5 stay.
        assert_eq!(store.prune_events(3).await.expect("prune"), 3);
        assert_eq!(store.event_bounds().await.expect("bounds"), (4, 5));
        let too_old = subscribe(&events, "u", Some(2)).await.expect_err("pruned");
        assert!(
            matches!(too_old, Error::OutOfRange(ref m) if m.contains("past retention")),
            "{too_old}"
        );
        // Resuming right before the oldest kept event is fine, and replays it.
        let mut stream = subscribe(&events, "u", Some(3)).await.expect("resumable");
        let first = tokio_stream::StreamExt::next(&mut stream)
            .await
            .expect("event")
            .expect("ok");
        let first = <pb::StreamResponse as prost::Message>::decode(first).expect("decodes");
        assert_eq!(first.event_id, 4);
    }

    #[test]
    fn stream_slots_are_bounded_per_user_and_given_back() {
        let streams = OpenStreams::new(2);
        let a = streams.open("u").expect("first");
        let _b = streams.open("u").expect("second");
        let refused = streams.open("u").expect_err("third");
        assert!(
            refused
                .to_string()
                .starts_with("max_event_streams_per_user:"),
            "{refused}"
        );
        assert_eq!(streams.count("u"), 2, "a refusal takes no slot");
        let _other = streams.open("v").expect("another user has their own slots");
        drop(a);
        assert_eq!(streams.count("u"), 1);
        let _again = streams.open("u").expect("a freed slot");
    }
}
