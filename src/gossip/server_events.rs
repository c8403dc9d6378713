//! [`ServerEvents`]: what domain code uses to gossip server events and to judge the ones it
//! receives.
//!
//! **Publishing.** [`ServerEvents::publish`] signs the next event of a kind, stores it in the log
//! and gossips it. To store the event in the same transaction as the change it announces, call
//! [`ServerEvents::append_in`] inside a `store.write` closure, then [`ServerEvents::announce`]
//! after the commit. A failed gossip publish (no peers, full queues) is logged as back-pressure:
//! peers get the event by catch-up.
//!
//! **Receiving.** Each kind has one validator, registered with [`ServerEvents::register`]. Every
//! event, whether it came by gossip or by catch-up, goes the same way: formats checked; kinds with
//! no validator ignored; duplicates (by `(origin, kind, sequence)` and by content id) dropped
//! before the signature is checked; the origin's signature checked; the validator run (it checks
//! the domain rules and applies the event; it must be idempotent, since a crash between applying
//! and storing makes catch-up offer the event again); the event stored with the verdict. Gossip is
//! then told: accepted events are forwarded, rejected ones and bad signatures penalise the peer
//! that sent them, ignored ones and duplicates are dropped quietly.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use rusqlite::Connection;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::event::{self, EventError, ServerEvent, VerifiedServerEvent};
use super::event_loop::{GossipEvent, GossipHandle, PublishFailure};
use crate::identity::freshness::now_ms;
use crate::identity::{PublicKey, SecretKey};
use crate::proto::guildhall::v1 as pb;
pub use crate::store::server_events::Subject;
use crate::store::server_events::{self as log, Outcome};
use crate::store::{StorageError, Store};

/// Rows per pruning transaction.
pub const PRUNE_BATCH: usize = 1_000;
/// Transactions per `(origin, kind)` (and for computing subjects) per prune: what is left waits
/// for the next prune.
const MAX_PRUNE_BATCHES: usize = 1_000;

/// How many content ids of recently seen events are remembered in memory, so a duplicate copy is
/// dropped without touching the database or checking a signature.
const RECENT_IDS: usize = 65_536;

/// What a validator makes of a verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid here and applied: stored, served to peers, forwarded.
    Accept,
    /// Breaks a domain rule (e.g. a ban not signed by the guild's host): stored as rejected so the
    /// origin's sequence has no gap, never served or forwarded; the sending peer is penalised.
    Reject(String),
    /// Valid but not applied here (older than what this node holds, not relevant): stored and
    /// served (peers judge for themselves), not forwarded, no penalty. Use this, not `Reject`,
    /// when unsure: it is never re-offered.
    Ignore(String),
}

/// What the receive path did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The validator accepted it.
    Accepted,
    /// The validator rejected it.
    Rejected(String),
    /// The validator ignored it, or the node does not handle its kind.
    Ignored(String),
    /// Not judged now (its timestamp is in the future, or storage failed) and not stored: it is
    /// judged when offered again.
    Deferred(String),
    /// Already held (or this node's own).
    Duplicate,
    /// Malformed or badly signed: not the origin's.
    Invalid(EventError),
}

impl Received {
    /// The outcome's name, as metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            Received::Accepted => "accepted",
            Received::Rejected(_) => "rejected",
            Received::Ignored(_) => "ignored",
            Received::Deferred(_) => "deferred",
            Received::Duplicate => "duplicate",
            Received::Invalid(_) => "invalid",
        }
    }

    fn acceptance(&self) -> MessageAcceptance {
        match self {
            Received::Accepted => MessageAcceptance::Accept,
            Received::Rejected(_) | Received::Invalid(_) => MessageAcceptance::Reject,
            Received::Ignored(_) | Received::Deferred(_) | Received::Duplicate => {
                MessageAcceptance::Ignore
            }
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Validator = Arc<dyn Fn(VerifiedServerEvent) -> BoxFuture<Verdict> + Send + Sync>;

/// What one of a kind's payloads is a statement about, for pruning the log (see
/// [`crate::store::server_events`]): `None` for a payload it can't read (never superseded).
pub type SubjectOf = fn(&[u8]) -> Option<Subject>;

/// Counts of what the receive path did since start (an operator's and a test's view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Accepted by a validator.
    pub accepted: u64,
    /// Rejected by a validator.
    pub rejected: u64,
    /// Ignored by a validator, or of an unhandled kind.
    pub ignored: u64,
    /// Not judged (from the future, or storage failed), to be taken when offered again.
    pub deferred: u64,
    /// Duplicates dropped before the signature check.
    pub duplicates: u64,
    /// Malformed or badly signed.
    pub invalid: u64,
    /// Own events whose gossip publish failed (back-pressure; catch-up covers them).
    pub publish_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    ignored: AtomicU64,
    deferred: AtomicU64,
    duplicates: AtomicU64,
    invalid: AtomicU64,
    publish_failures: AtomicU64,
}

#[derive(Debug, Default)]
struct RecentIds {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl RecentIds {
    fn insert(&mut self, id: [u8; 32]) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > RECENT_IDS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Why publishing failed (gossip failures are not errors: see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum ServerEventError {
    /// The kind or payload breaks a rule.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// For events appended inside a storage transaction: a kind or payload that breaks a rule is a
/// refusal of the whole change (it can't happen for the node's own constant kinds and bounded
/// payloads).
impl From<ServerEventError> for StorageError {
    fn from(e: ServerEventError) -> Self {
        match e {
            ServerEventError::Storage(s) => s,
            ServerEventError::Event(e) => StorageError::Refused(e.to_string()),
        }
    }
}

impl From<ServerEventError> for crate::error::Error {
    fn from(e: ServerEventError) -> Self {
        match e {
            ServerEventError::Event(EventError::Field { field, rule }) => {
                Self::invalid(field, rule)
            }
            ServerEventError::Event(other) => Self::invalid("event", other),
            ServerEventError::Storage(s) => Self::Storage(s),
        }
    }
}

/// Checks an event this node is about to sign.
fn check_new(kind: &str, payload: &[u8]) -> Result<(), EventError> {
    event::check_kind(kind)?;
    if payload.len() > event::MAX_PAYLOAD_BYTES {
        return Err(EventError::Field {
            field: "payload",
            rule: format!("must be at most {} bytes", event::MAX_PAYLOAD_BYTES),
        });
    }
    Ok(())
}

struct Inner {
    key: SecretKey,
    store: Store,
    gossip: GossipHandle,
    clock_skew_ms: u64,
    validators: RwLock<HashMap<String, Validator>>,
    subjects: RwLock<HashMap<String, SubjectOf>>,
    recent: Mutex<RecentIds>,
    /// One event at a time through validate-and-store, so two copies arriving by two paths at
    /// once never run a validator twice.
    processing: tokio::sync::Mutex<()>,
    counters: Counters,
    catch_up: Notify,
}

/// The server-event API of a node; cheap to clone. See the module docs.
#[derive(Clone)]
pub struct ServerEvents {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerEvents(..)")
    }
}

impl ServerEvents {
    /// The API for the node with `key`, over its store and swarm.
    pub fn new(key: SecretKey, store: Store, gossip: GossipHandle, clock_skew_ms: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                key,
                store,
                gossip,
                clock_skew_ms,
                validators: RwLock::new(HashMap::new()),
                subjects: RwLock::new(HashMap::new()),
                recent: Mutex::new(RecentIds::default()),
                processing: tokio::sync::Mutex::new(()),
                counters: Counters::default(),
                catch_up: Notify::new(),
            }),
        }
    }

    /// This node's key (the origin of its own events).
    pub fn server_id(&self) -> PublicKey {
        self.inner.key.public()
    }

    /// The store the log lives in.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The swarm handle (peer scores, mesh sizes, adding peers).
    pub fn gossip(&self) -> &GossipHandle {
        &self.inner.gossip
    }

    /// Registers the validator (and applier) for `kind`, replacing any earlier one; subscribes to
    /// the kind's topic and asks known peers for the kind's events this node missed. The kind's
    /// events are never pruned: see [`ServerEvents::register_pruned`].
    pub async fn register<F, Fut>(&self, kind: &str, validator: F) -> Result<(), EventError>
    where
        F: Fn(VerifiedServerEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        self.register_kind(kind, None, validator).await
    }

    /// [`ServerEvents::register`] for a kind whose statements newer ones make moot: `subject_of`
    /// says what each payload is about, and [`ServerEvents::prune`] deletes superseded events.
    /// Only for kinds whose validator reaches the same state from the newest event of each
    /// subject alone as from all of them.
    pub async fn register_pruned<F, Fut>(
        &self,
        kind: &str,
        subject_of: SubjectOf,
        validator: F,
    ) -> Result<(), EventError>
    where
        F: Fn(VerifiedServerEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        self.register_kind(kind, Some(subject_of), validator).await
    }

    async fn register_kind<F, Fut>(
        &self,
        kind: &str,
        subject_of: Option<SubjectOf>,
        validator: F,
    ) -> Result<(), EventError>
    where
        F: Fn(VerifiedServerEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        event::check_kind(kind)?;
        {
            let mut subjects = self
                .inner
                .subjects
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match subject_of {
                Some(f) => subjects.insert(kind.to_owned(), f),
                None => subjects.remove(kind),
            };
        }
        let validator: Validator = Arc::new(move |e| Box::pin(validator(e)));
        self.inner
            .validators
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kind.to_owned(), validator);
        self.inner.gossip.subscribe(kind).await;
        self.wake_catch_up();
        Ok(())
    }

    /// The kinds with a validator, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .inner
            .validators
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        kinds.sort();
        kinds
    }

    /// What an event of `kind` with `payload` is about, for pruning.
    fn subject(&self, kind: &str, payload: &[u8]) -> Subject {
        let subject_of = self
            .inner
            .subjects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .copied();
        subject_of
            .and_then(|f| f(payload))
            .unwrap_or_else(Subject::never_superseded)
    }

    fn validator(&self, kind: &str) -> Option<Validator> {
        self.inner
            .validators
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .cloned()
    }

    /// Signs the next event of `kind` and stores it, inside the caller's transaction `tx`
    /// (`store.write(move |tx| { …; events.append_in(tx, kind, payload, now) })`). Announce it
    /// with [`ServerEvents::announce`] once the transaction has committed.
    pub fn append_in(
        &self,
        tx: &Connection,
        kind: &str,
        payload: Vec<u8>,
        now: u64,
    ) -> Result<ServerEvent, ServerEventError> {
        check_new(kind, &payload)?;
        let origin = *self.inner.key.public().as_bytes();
        let sequence = log::next_sequence(tx, &origin, kind)?;
        let subject = self.subject(kind, &payload);
        let event = ServerEvent::sign(&self.inner.key, kind, sequence, now, payload);
        log::insert(tx, &event.to_row(), &subject, Outcome::Accepted, now)?;
        Ok(event)
    }

    /// Gossips an event already stored (by [`ServerEvents::append_in`]). A failure is
    /// back-pressure, logged and counted, not an error: peers catch up from the log.
    pub async fn announce(&self, event: &ServerEvent) {
        self.remember(event.content_id());
        match self
            .inner
            .gossip
            .publish(event.kind(), event.encode())
            .await
        {
            Ok(()) => self.inner.store.metrics().gossip_published("sent"),
            Err(PublishFailure::NoPeers) => {
                self.inner.store.metrics().gossip_published("no_peers");
                tracing::debug!(
                    kind = event.kind(),
                    seq = event.sequence(),
                    "no gossip peers for this kind yet; peers will catch up"
                );
            }
            Err(e) => {
                self.inner.store.metrics().gossip_published("failed");
                self.inner
                    .counters
                    .publish_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(kind = event.kind(), seq = event.sequence(), error = %e,
                    "gossip back-pressure: event not published; peers will catch up");
            }
        }
    }

    /// Signs, stores and gossips the next event of `kind`; returns it once it is committed.
    pub async fn publish(
        &self,
        kind: &str,
        payload: Vec<u8>,
    ) -> Result<ServerEvent, ServerEventError> {
        check_new(kind, &payload)?;
        let this = self.clone();
        let kind_owned = kind.to_owned();
        let event = self
            .inner
            .store
            .write(move |tx| Ok(this.append_in(tx, &kind_owned, payload, now_ms())?))
            .await?;
        self.announce(&event).await;
        Ok(event)
    }

    fn remember(&self, id: [u8; 32]) {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
    }

    fn seen_recently(&self, id: &[u8; 32]) -> bool {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set
            .contains(id)
    }

    /// The receive path shared by gossip and catch-up (see the module docs). `topic_kind` is the
    /// kind of the gossip topic the event came on, which it must match.
    pub async fn receive(
        &self,
        event: Result<ServerEvent, EventError>,
        topic_kind: Option<&str>,
    ) -> Received {
        let received = self.judge(event, topic_kind).await;
        let counter = match &received {
            Received::Accepted => &self.inner.counters.accepted,
            Received::Rejected(_) => &self.inner.counters.rejected,
            Received::Ignored(_) => &self.inner.counters.ignored,
            Received::Deferred(_) => &self.inner.counters.deferred,
            Received::Duplicate => &self.inner.counters.duplicates,
            Received::Invalid(_) => &self.inner.counters.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        received
    }

    async fn judge(
        &self,
        event: Result<ServerEvent, EventError>,
        topic_kind: Option<&str>,
    ) -> Received {
        let event = match event {
            Ok(event) => event,
            Err(e) => return Received::Invalid(e),
        };
        if let Some(topic) = topic_kind
            && topic != event.kind()
        {
            return Received::Invalid(EventError::Field {
                field: "kind",
                rule: format!(
                    "is {:?} but the event came on the topic of {topic:?}",
                    event.kind()
                ),
            });
        }
        let Some(validator) = self.validator(event.kind()) else {
            return Received::Ignored(format!("kind {:?} is not handled here", event.kind()));
        };
        if event.origin() == self.server_id() {
            return Received::Duplicate;
        }
        let now = now_ms();
        if event.timestamp() > now.saturating_add(self.inner.clock_skew_ms) {
            return Received::Deferred("timestamp is in the future".into());
        }
        let id = event.content_id();
        if self.seen_recently(&id) {
            return Received::Duplicate;
        }
        let _turn = self.inner.processing.lock().await;
        let row = event.to_row();
        let (origin, kind, seq) = (row.origin, row.kind.clone(), row.seq);
        let held = self
            .inner
            .store
            .read(move |c| log::holds(c, &origin, &kind, seq, &id))
            .await;
        let slot_taken = match held {
            Ok(log::Held::Same | log::Held::BelowMark) => {
                self.remember(id);
                return Received::Duplicate;
            }
            Ok(log::Held::SlotTaken) => true,
            Ok(log::Held::Nothing) => false,
            Err(e) => {
                tracing::warn!(error = %e, "server-event log read failed");
                return Received::Deferred("storage unavailable".into());
            }
        };
        // The signature is checked before a slot conflict is judged: a forgery claiming a held
        // sequence is invalid (and penalised), only a real second statement is a duplicate.
        let verified = match event.verify() {
            Ok(v) => v,
            Err(e) => return Received::Invalid(e),
        };
        if slot_taken {
            tracing::warn!(origin = %verified.origin().fmt_short(), kind = verified.kind(),
                seq = verified.sequence(), "origin signed two events with one sequence; keeping the first");
            return Received::Duplicate;
        }
        let subject = self.subject(verified.kind(), verified.payload());
        let verdict = validator(verified).await;
        let outcome = match &verdict {
            Verdict::Accept => Outcome::Accepted,
            Verdict::Reject(_) => Outcome::Rejected,
            Verdict::Ignore(_) => Outcome::Ignored,
        };
        if let Err(e) = self
            .inner
            .store
            .write(move |tx| log::insert(tx, &row, &subject, outcome, now_ms()))
            .await
        {
            // Applied (validators are idempotent) but not logged: offered again, judged again.
            tracing::warn!(error = %e, "server-event log write failed");
            return Received::Deferred("storage unavailable".into());
        }
        self.remember(id);
        match verdict {
            Verdict::Accept => Received::Accepted,
            Verdict::Reject(reason) => Received::Rejected(reason),
            Verdict::Ignore(reason) => Received::Ignored(reason),
        }
    }

    /// Counts since start.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            deferred: c.deferred.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            publish_failures: c.publish_failures.load(Ordering::Relaxed),
        }
    }

    /// Prunes the log (see [`crate::store::server_events`]): computes the subject of events an
    /// earlier version stored without one, then, for every `(origin, kind)`, raises its low-water
    /// mark to its contiguous head and deletes the superseded and rejected events at or below it
    /// that were received before `before` (ms). Works in transactions of at most
    /// [`PRUNE_BATCH`] rows so writers are not held up; returns how many events it deleted.
    pub async fn prune(&self, before: u64) -> Result<u64, StorageError> {
        let store = &self.inner.store;
        let kinds = self.kinds();
        for _ in 0..MAX_PRUNE_BATCHES {
            let kinds = kinds.clone();
            let rows = store
                .read(move |c| log::without_subject(c, &kinds, PRUNE_BATCH))
                .await?;
            if rows.is_empty() {
                break;
            }
            let subjects: Vec<_> = rows
                .into_iter()
                .map(|(origin, kind, seq, payload)| {
                    let subject = self.subject(&kind, &payload);
                    (origin, kind, seq, subject)
                })
                .collect();
            store
                .write(move |tx| {
                    for (origin, kind, seq, subject) in &subjects {
                        log::set_subject(tx, origin, kind, *seq, subject)?;
                    }
                    Ok(())
                })
                .await?;
        }
        let pairs = store.read(log::pairs).await?;
        let mut removed = 0u64;
        for (origin, kind) in pairs {
            for _ in 0..MAX_PRUNE_BATCHES {
                let kind = kind.clone();
                let n = store
                    .write(move |tx| log::prune(tx, &origin, &kind, before, PRUNE_BATCH))
                    .await?;
                removed += n as u64;
                if n < PRUNE_BATCH {
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "pruned superseded server events");
        }
        Ok(removed)
    }

    /// The low-water mark of `(origin, kind)` here (see [`crate::store::server_events`]).
    pub async fn mark(&self, origin: PublicKey, kind: &str) -> Result<u64, StorageError> {
        let kind = kind.to_owned();
        self.inner
            .store
            .read(move |c| log::mark(c, origin.as_bytes(), &kind))
            .await
    }

    /// Raises the low-water mark of `(origin, kind)`: catch-up does, when the origin itself says
    /// it pruned up to there and every live event up to there was taken.
    pub(crate) async fn raise_mark(
        &self,
        origin: PublicKey,
        kind: &str,
        through: u64,
    ) -> Result<(), StorageError> {
        let kind = kind.to_owned();
        self.inner
            .store
            .write(move |tx| log::raise_mark(tx, origin.as_bytes(), &kind, through))
            .await
    }

    /// How many events of `kind` the log holds as accepted (own events included).
    pub async fn accepted_count(&self, kind: &str) -> Result<u64, StorageError> {
        let kind = kind.to_owned();
        self.inner
            .store
            .read(move |c| log::count(c, &kind, Outcome::Accepted))
            .await
    }

    /// A peer met in federation: feeds its published peer id and libp2p addresses to the swarm
    /// (DHT and a dial). Unparsable entries are skipped.
    pub async fn meet_peer(&self, info: &pb::ServerInfoResponse) {
        let Ok(peer) = info.peer_id.parse::<PeerId>() else {
            return;
        };
        if peer == super::keypair(&self.inner.key).public().to_peer_id() {
            return;
        }
        let addrs: Vec<libp2p::Multiaddr> = info
            .p2p_listen_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if !addrs.is_empty() {
            self.inner.gossip.add_peer(peer, addrs).await;
        }
    }

    /// Asks the catch-up task for a round now (a kind was registered, a peer connected).
    pub fn wake_catch_up(&self) {
        self.inner.catch_up.notify_one();
    }

    pub(crate) async fn catch_up_wanted(&self) {
        self.inner.catch_up.notified().await;
    }

    /// Runs the receive path for gossip messages until `cancel` fires or the swarm stops; each
    /// verdict goes back to gossipsub, and a new connection wakes catch-up.
    pub fn spawn_receiver(
        &self,
        mut events: mpsc::Receiver<GossipEvent>,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => break,
                    next = events.recv() => next,
                };
                match next {
                    None => break,
                    Some(GossipEvent::PeerConnected(_)) => this.wake_catch_up(),
                    Some(GossipEvent::Message {
                        source,
                        id,
                        kind,
                        data,
                    }) => {
                        let received = match kind {
                            Some(kind) => {
                                this.receive(ServerEvent::decode(&data), Some(&kind)).await
                            }
                            None => Received::Ignored("not a server-event topic".into()),
                        };
                        this.inner.store.metrics().gossip_received(received.name());
                        match &received {
                            Received::Invalid(e) => {
                                tracing::info!(peer = %source, reason = %e, "invalid gossip message");
                            }
                            Received::Rejected(reason) => {
                                tracing::info!(peer = %source, %reason, "gossip event rejected");
                            }
                            _ => {}
                        }
                        this.inner
                            .gossip
                            .report(id, source, received.acceptance())
                            .await;
                    }
                }
            }
        })
    }
}
