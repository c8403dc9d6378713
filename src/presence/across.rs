//! Presence across nodes (docs/PROTOCOL.md §14.5): a user's homeserver is the source of truth
//! for their presence, and tells the servers that share them. Those are the hosts of guilds the
//! user joined from here (their server list and the memberships hosts announced), told the
//! user's state for their own members to see, and the homeservers of members of other nodes in
//! this node's guilds, told it with the list of their users who share a guild with the user
//! (`visible_to`), since those servers can't see this node's member lists.
//!
//! Nothing of it is stored or gossiped: a change goes out at once to the servers concerned
//! (changes close together are sent together, at most one batch per [`FLUSH_GAP`]), and every
//! `refresh` the state of every user who is not offline is sent again. A receiver keeps what it
//! was told for `timeout`; what is not refreshed by then reads as offline, so a node that went
//! down shows its users offline at its peers within `timeout`.
//!
//! A server speaks only for its own users: a receiver takes an entry only from the server its
//! record names as the user's homeserver (or, for a user it has no record of, from the first
//! server that speaks for them while that word is fresh).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use rusqlite::params;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Presence, Remote};
use crate::accounts::remote::normalise_address;
use crate::error::{Error, Result};
use crate::federation::FederationClient;
use crate::federation::client::SignedClient;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1::{self as pb, PresenceStatus};
use crate::store::{StorageError, accounts};

/// Most entries one `ReceivePresence` call may carry.
pub const MAX_PRESENCE_ENTRIES: usize = 1000;
/// Most users one entry's `visible_to` may name.
pub const MAX_PRESENCE_AUDIENCE: usize = 1000;
/// Longest `valid_for_ms` a sender may ask for: ten minutes.
pub const MAX_PRESENCE_VALID_MS: u64 = 10 * 60 * 1000;
/// Shortest time between two batches of changes from this node: changes closer together travel
/// together.
pub const FLUSH_GAP: Duration = Duration::from_millis(50);
/// How long one `ReceivePresence` call may take; a peer that is slower misses that batch (the
/// next refresh repairs it).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Changes waiting to be sent before more are dropped (the next refresh repairs them).
const PENDING_MAX: usize = 100_000;
/// Peers sent to at once.
const SENDS_AT_ONCE: usize = 8;

/// How often presence is refreshed and how long a peer's word lasts (`presence_refresh_ms`,
/// `presence_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct SharingConfig {
    /// Every this long, the state of every user who is not offline is sent again.
    pub refresh: Duration,
    /// What a peer said lasts this long unless refreshed (and is sent as `valid_for_ms`).
    pub timeout: Duration,
}

/// Counters of what this node sent, for operators and measurements.
#[derive(Debug, Default)]
pub struct SharingStats {
    /// `ReceivePresence` calls sent.
    pub batches: AtomicU64,
    /// Entries in them.
    pub entries: AtomicU64,
    /// Encoded bytes of the requests.
    pub bytes: AtomicU64,
    /// Calls that failed (peer down, refused, too slow).
    pub failures: AtomicU64,
}

/// The handle [`Presence`] tells changes of its users to.
#[derive(Debug)]
pub(super) struct Sharing {
    changed: mpsc::Sender<String>,
    pub(super) stats: Arc<SharingStats>,
}

impl Sharing {
    /// Tells the worker `user_id`'s presence changed (dropped if it is far behind: the next
    /// refresh sends the state anyway).
    pub(super) fn changed(&self, user_id: &str) {
        let _ = self.changed.try_send(user_id.to_owned());
    }
}

/// Starts sharing `presence` with peers through `client`, for a node whose address is `own`,
/// until `cancel`. Incoming presence needs nothing started: [`Presence::receive_remote`].
pub fn start(
    presence: &Presence,
    client: FederationClient,
    own: String,
    config: SharingConfig,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel(PENDING_MAX);
    let stats = Arc::new(SharingStats::default());
    let _ = presence.sharing.set(Sharing {
        changed: tx,
        stats: stats.clone(),
    });
    let worker = Worker {
        presence: presence.clone(),
        client,
        own,
        config,
        stats,
        clients: HashMap::new(),
    };
    tokio::spawn(worker.run(rx, cancel))
}

/// One peer's batch: entry per user.
type Batches = BTreeMap<String, Vec<pb::RemotePresence>>;

struct Worker {
    presence: Presence,
    client: FederationClient,
    own: String,
    config: SharingConfig,
    stats: Arc<SharingStats>,
    /// Connected clients by peer address, kept while they work.
    clients: HashMap<String, SignedClient>,
}

impl Worker {
    async fn run(mut self, mut changes: mpsc::Receiver<String>, cancel: CancellationToken) {
        let mut refresh = tokio::time::interval(self.config.refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sweep_every = (self.config.timeout / 4).max(Duration::from_millis(100));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: HashSet<String> = HashSet::new();
        let mut last_flush = tokio::time::Instant::now() - FLUSH_GAP;
        loop {
            let flush_at = last_flush + FLUSH_GAP;
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = changes.recv() => match changed {
                    Some(user) => { pending.insert(user); }
                    None => break,
                },
                () = tokio::time::sleep_until(flush_at), if !pending.is_empty() => {
                    let users: Vec<String> = pending.drain().collect();
                    self.send(users).await;
                    last_flush = tokio::time::Instant::now();
                }
                _ = refresh.tick() => {
                    let users = self.presence.present_users();
                    if !users.is_empty() {
                        self.send(users).await;
                    }
                }
                _ = sweep.tick() => self.presence.expire(now_ms()).await,
            }
        }
    }

    /// Sends the current state of `users` (those who live here) to every peer that shares them.
    async fn send(&mut self, users: Vec<String>) {
        let own = self.own.clone();
        let audiences = self
            .presence
            .guilds
            .store()
            .read(move |c| {
                let mut out = Vec::new();
                for user in users {
                    if let Some(peers) = peers_of(c, &user, &own)? {
                        out.push((user, peers));
                    }
                }
                Ok(out)
            })
            .await;
        let audiences = match audiences {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "presence: reading who shares a user failed");
                return;
            }
        };
        let mut batches = Batches::new();
        for (user, peers) in audiences {
            let state = self.presence.local_state(&user);
            for (peer, visible_to) in peers {
                let mut entry = state.clone();
                entry.visible_to = visible_to;
                batches.entry(peer).or_default().push(entry);
            }
        }
        let valid_for_ms = u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut sends = JoinSet::new();
        for (peer, entries) in batches {
            for chunk in entries.chunks(MAX_PRESENCE_ENTRIES) {
                let batch = pb::PresenceBatch {
                    entries: chunk.to_vec(),
                    valid_for_ms,
                };
                let client = match self.clients.get(&peer) {
                    Some(client) => client.clone(),
                    None => match self.client.connect(&peer).await {
                        Ok(client) => {
                            self.clients.insert(peer.clone(), client.clone());
                            client
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "presence: peer not reachable");
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    },
                };
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .entries
                    .fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
                self.stats
                    .bytes
                    .fetch_add(batch.encoded_len() as u64, Ordering::Relaxed);
                if sends.len() >= SENDS_AT_ONCE {
                    self.collect(sends.join_next().await);
                }
                let peer = peer.clone();
                sends.spawn(async move {
                    let mut client = client;
                    let sent =
                        tokio::time::timeout(SEND_TIMEOUT, client.receive_presence(batch)).await;
                    let ok = matches!(sent, Ok(Ok(_)));
                    if !ok {
                        tracing::debug!(%peer, outcome = ?sent.map(|r| r.map(|_| ())), "presence: not delivered");
                    }
                    (peer, ok)
                });
            }
        }
        while let Some(done) = sends.join_next().await {
            self.collect(Some(done));
        }
    }

    /// Counts a finished send; a failed peer's client is dropped so the next send reconnects.
    fn collect(
        &mut self,
        done: Option<std::result::Result<(String, bool), tokio::task::JoinError>>,
    ) {
        if let Some(Ok((peer, ok))) = done
            && !ok
        {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            self.clients.remove(&peer);
        }
    }
}

/// The peers that share `user` (if they live here), each with the users of that peer who may
/// see them (empty: the peer decides by its own guilds, which the user is a member of).
fn peers_of(
    c: &rusqlite::Connection,
    user: &str,
    own: &str,
) -> std::result::Result<Option<BTreeMap<String, Vec<String>>>, StorageError> {
    let Some(record) = accounts::load_user(c, user)? else {
        return Ok(None);
    };
    if normalise_address(&record.homeserver) != normalise_address(own) {
        return Ok(None);
    }
    let mut peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Hosts of guilds the user joined from here.
    let mut hosts = c.prepare_cached(
        "SELECT server_url FROM user_servers WHERE user_id = ?1
         UNION SELECT host_url FROM remote_memberships WHERE user_id = ?1 AND joined = 1",
    )?;
    for host in hosts.query_map([user], |r| r.get::<_, String>(0))? {
        let host = normalise_address(&host?).to_owned();
        if host != normalise_address(own) {
            peers.entry(host).or_default();
        }
    }
    // Homeservers of other nodes' members of this node's guilds the user is in.
    let mut members = c.prepare_cached(
        "SELECT DISTINCT u.homeserver, u.id FROM members mine
           JOIN members theirs ON theirs.guild_id = mine.guild_id AND theirs.user_id != mine.user_id
           JOIN users u ON u.id = theirs.user_id
         WHERE mine.user_id = ?1 AND u.homeserver != '' AND rtrim(u.homeserver, '/') != ?2",
    )?;
    let rows = members.query_map(params![user, normalise_address(own)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (home, member) = row?;
        let audience = peers
            .entry(normalise_address(&home).to_owned())
            .or_default();
        if audience.len() < MAX_PRESENCE_AUDIENCE {
            audience.push(member);
        }
    }
    Ok(Some(peers))
}

impl Presence {
    /// What this node sent to peers so far (`None` before sharing started).
    pub fn sharing_stats(&self) -> Option<Arc<SharingStats>> {
        self.sharing.get().map(|s| s.stats.clone())
    }

    /// `ReceivePresence` (a server call from `origin`): takes the state of the users `origin` is
    /// the homeserver of, for `valid_for_ms`. A malformed batch is refused whole; entries for
    /// users `origin` does not speak for are skipped.
    pub async fn receive_remote(&self, origin: &str, batch: &pb::PresenceBatch) -> Result<()> {
        check_batch(batch)?;
        let now = now_ms();
        let expires_at = now.saturating_add(batch.valid_for_ms);
        let origin = normalise_address(origin).to_owned();
        let ids: Vec<String> = batch.entries.iter().map(|e| e.user_id.clone()).collect();
        let homes = self
            .guilds
            .store()
            .read(move |c| {
                let mut out = HashMap::new();
                for id in ids {
                    if let Some(user) = accounts::load_user(c, &id)? {
                        out.insert(id, normalise_address(&user.homeserver).to_owned());
                    }
                }
                Ok(out)
            })
            .await?;
        let mut skipped = 0usize;
        for entry in &batch.entries {
            let speaks_for = match homes.get(&entry.user_id) {
                Some(home) => *home == origin,
                None => self.unclaimed_or_by(&entry.user_id, &origin, now),
            };
            if !speaks_for {
                skipped += 1;
                continue;
            }
            let remote = Remote {
                origin: origin.clone(),
                expires_at,
                visible_to: entry.visible_to.iter().cloned().collect(),
            };
            self.apply_remote(entry, remote, now).await?;
        }
        if skipped > 0 {
            tracing::debug!(%origin, skipped, "presence for users this peer is not the homeserver of ignored");
        }
        Ok(())
    }
}

/// The rules of a `PresenceBatch`, checked before anything is applied.
fn check_batch(batch: &pb::PresenceBatch) -> Result<()> {
    if batch.entries.len() > MAX_PRESENCE_ENTRIES {
        return Err(Error::invalid(
            "entries",
            format!("at most {MAX_PRESENCE_ENTRIES} per call"),
        ));
    }
    if batch.valid_for_ms == 0 || batch.valid_for_ms > MAX_PRESENCE_VALID_MS {
        return Err(Error::invalid(
            "valid_for_ms",
            format!("must be 1 to {MAX_PRESENCE_VALID_MS}"),
        ));
    }
    for (i, entry) in batch.entries.iter().enumerate() {
        PublicKey::from_hex(&entry.user_id)
            .map_err(|e| Error::invalid(format!("entries[{i}].user_id"), e))?;
        match PresenceStatus::try_from(entry.status) {
            Ok(PresenceStatus::Online | PresenceStatus::Offline | PresenceStatus::Busy) => {}
            _ => {
                return Err(Error::invalid(
                    format!("entries[{i}].status"),
                    "must be ONLINE (1), OFFLINE (3) or BUSY (4)",
                ));
            }
        }
        if entry.visible_to.len() > MAX_PRESENCE_AUDIENCE {
            return Err(Error::invalid(
                format!("entries[{i}].visible_to"),
                format!("at most {MAX_PRESENCE_AUDIENCE} users"),
            ));
        }
        for (j, id) in entry.visible_to.iter().enumerate() {
            PublicKey::from_hex(id)
                .map_err(|e| Error::invalid(format!("entries[{i}].visible_to[{j}]"), e))?;
        }
        if !entry.active_call_channel_id.is_empty()
            && entry.active_call_channel_id.parse::<u64>().is_err()
        {
            return Err(Error::invalid(
                format!("entries[{i}].active_call_channel_id"),
                "must be empty or a channel id",
            ));
        }
    }
    Ok(())
}
