//! Events: the persistent log and live fan-out behind `SubscribeEvents`.
//!
//! Domain writes go through [`Events::write`], which appends their events in the same transaction
//! and publishes them to the [`broadcast`] hub after commit, in id order. A subscriber follows the
//! hub; if it falls behind (the channel lags) it reads what it missed from the log and carries on,
//! so a slow subscriber costs disk reads, never unbounded memory, and never misses an event.

pub mod stream;

use std::sync::Arc;

use prost::Message as _;
use tokio::sync::broadcast;

use crate::proto::guildhall::v1 as pb;
use crate::store::{EventRow, StorageError, Store, StoredEvent};

/// How many events the live channel holds before a slow subscriber lags and falls back to the log.
pub const LIVE_CAPACITY: usize = 4096;

/// The scope of events about a guild: its members see them.
pub fn guild_scope(guild_id: &str) -> String {
    format!("g:{guild_id}")
}

/// The scope of events for one user only.
pub fn user_scope(user_id: &str) -> String {
    format!("u:{user_id}")
}

/// An event to log, visible through `scopes`.
pub fn row(scopes: Vec<String>, event: pb::stream_response::Event) -> EventRow {
    let payload = pb::StreamResponse {
        event_id: 0,
        timestamp: None,
        event: Some(event),
    };
    EventRow {
        scopes,
        payload: payload.encode_to_vec(),
        membership: None,
    }
}

/// An event on the live hub: the stored event, and its message decoded and encoded at most once,
/// by the first subscriber that needs it, for every subscriber to share. Fan-out to many
/// subscribers would otherwise decode, clone and encode the same event once per subscriber: with
/// the shared bytes, a delivery costs a reference count and a copy into the stream's buffer.
#[derive(Debug)]
pub struct LiveEvent {
    /// The stored event.
    pub stored: StoredEvent,
    decoded: std::sync::OnceLock<Option<pb::StreamResponse>>,
    encoded: std::sync::OnceLock<Option<bytes::Bytes>>,
}

impl LiveEvent {
    /// A stored event about to be published.
    pub fn new(stored: StoredEvent) -> Self {
        Self {
            stored,
            decoded: std::sync::OnceLock::new(),
            encoded: std::sync::OnceLock::new(),
        }
    }

    /// The event as sent to clients, with its id and timestamp; `None` if the payload is damaged.
    pub fn message(&self) -> Option<&pb::StreamResponse> {
        self.decoded.get_or_init(|| decode(&self.stored)).as_ref()
    }

    /// [`Self::message`] encoded as it goes on the wire, shared by every stream that sends it.
    pub fn encoded(&self) -> Option<&bytes::Bytes> {
        self.encoded
            .get_or_init(|| {
                self.message()
                    .map(|m| bytes::Bytes::from(m.encode_to_vec()))
            })
            .as_ref()
    }
}

/// Decodes a stored event into the message clients receive.
pub fn decode(event: &StoredEvent) -> Option<pb::StreamResponse> {
    match pb::StreamResponse::decode(event.payload.as_slice()) {
        Ok(mut message) => {
            message.event_id = event.id;
            message.timestamp = crate::convert::timestamp(event.created_at);
            Some(message)
        }
        Err(e) => {
            tracing::error!(event = event.id, error = %e, "undecodable event skipped");
            None
        }
    }
}

/// Work that must commit in the same transaction as a write's events and finish after it, such as
/// announcing a remote member's join to other servers: whatever path changes a membership, the
/// announcement commits with it or not at all.
pub trait CommitHook: Send + Sync + std::fmt::Debug {
    /// Runs inside the write's transaction with the events it logs (cheap when none concern the
    /// hook: it should look only at marks such as [`EventRow::membership`]); what it returns runs
    /// once the transaction has committed.
    fn in_transaction(
        &self,
        tx: &rusqlite::Connection,
        rows: &[EventRow],
        now: u64,
    ) -> Result<Option<AfterCommit>, StorageError>;
}

/// What a [`CommitHook`] runs after the commit (on its own task: the write's caller does not wait).
pub type AfterCommit = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The event log and its live hub.
#[derive(Debug, Clone)]
pub struct Events {
    store: Store,
    live: broadcast::Sender<Arc<LiveEvent>>,
    /// Ends every subscription when the node stops (open streams would otherwise hold the gRPC
    /// server's graceful shutdown forever).
    cancel: tokio_util::sync::CancellationToken,
    hook: Option<Arc<dyn CommitHook>>,
    /// The `SubscribeEvents` streams open now, per user, and their bound.
    streams: stream::OpenStreams,
    /// Who may see a guild's channel content in their stream (`messages.read`); without one,
    /// every member may.
    read_gate: Option<Arc<dyn stream::ReadGate>>,
    /// Bumped by every change of who may read what (roles, their permissions, their holders), so
    /// subscriptions re-ask [`Self::read_gate`] instead of trusting what they cached.
    access_epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Events {
    /// The log over `store`, with a live hub of `capacity` events; subscriptions end when `cancel`
    /// fires.
    pub fn new(store: Store, capacity: usize, cancel: tokio_util::sync::CancellationToken) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        Self {
            store,
            live,
            cancel,
            hook: None,
            streams: stream::OpenStreams::new(stream::STREAMS_PER_USER_DEFAULT),
            read_gate: None,
            access_epoch: Arc::default(),
        }
    }

    /// Subscriptions deliver a guild's channel content (messages, typing, reactions, receipts)
    /// only to members `gate` lets read it (set it before handing out clones).
    pub fn with_read_gate(mut self, gate: Arc<dyn stream::ReadGate>) -> Self {
        self.read_gate = Some(gate);
        self
    }

    /// Says that who may read what changed (a role's permissions or parents, a role deleted,
    /// assigned or unassigned): call it after such a change commits, and every subscription asks
    /// the read gate again before its next delivery.
    pub fn access_changed(&self) {
        self.access_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn access_epoch(&self) -> u64 {
        self.access_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Bounds the streams one user may hold open at once (set it before handing out clones).
    pub fn with_max_streams_per_user(mut self, max: usize) -> Self {
        self.streams = stream::OpenStreams::new(max);
        self
    }

    /// The streams open now: the push fan-out counts a user with one as online.
    pub fn open_streams(&self) -> &stream::OpenStreams {
        &self.streams
    }

    /// Runs `hook` in every write's transaction from now on (set it before handing out clones).
    pub fn with_hook(mut self, hook: Arc<dyn CommitHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Runs a write that produces events: `f` returns its value and the events to log.
    pub async fn write<T, F>(&self, now: u64, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<(T, Vec<EventRow>), StorageError>
            + Send
            + 'static,
    {
        let live = self.live.clone();
        let hook = self.hook.clone();
        let with_hook = move |tx: &rusqlite::Connection| {
            let (value, rows) = f(tx)?;
            let after = match &hook {
                Some(hook) => hook.in_transaction(tx, &rows, now)?,
                None => None,
            };
            Ok(((value, after), rows))
        };
        let (value, after) = self
            .store
            .write_with_events(now, with_hook, move |stored| {
                for stored in stored {
                    // No receivers is fine: nobody is subscribed right now.
                    let _ = live.send(Arc::new(LiveEvent::new(stored)));
                }
            })
            .await?;
        if let Some(after) = after {
            tokio::spawn(after);
        }
        Ok(value)
    }

    /// A receiver of live events, from now on.
    pub fn follow(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.live.subscribe()
    }

    /// The store, for catch-up reads.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
