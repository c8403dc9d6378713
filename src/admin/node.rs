//! The node as server admins see it: its status, and its federation (pinned peers, the outbox
//! per destination with retry-now and drop, the gossip mesh, trusted ban lists and the bans
//! held). Everything here reads what the node already keeps; nothing is counted twice.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::Admin;
use crate::error::{Error, Result};
use crate::guilds::ban_lists::TrustedList;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::store::admin::{self as db, NodeCounts};
use crate::store::federation::PeerRecord;
use crate::store::outbox::{self as outbox_db, DestinationQueue, OutboxStats};
use crate::store::server_bans::HeldBan;

/// What the admin views need of the running node, handed over by `crate::node` when it starts.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// The node's key.
    pub server_id: PublicKey,
    /// Its canonical address.
    pub canonical_address: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Connected libp2p peers, as the swarm reports them.
    pub p2p_peers: watch::Receiver<usize>,
    /// The database file (its WAL beside it, with `-wal` appended).
    pub database_path: PathBuf,
    /// Where uploaded files live.
    pub media_dir: PathBuf,
    /// When the node started (ms).
    pub started_at: u64,
    /// The ban lists the node enforces (configured; its own moderation list is implied).
    pub trusted_lists: Vec<TrustedList>,
    /// The federation outbox, woken after a retry-now.
    pub outbox: crate::federation::outbox::Outbox,
    /// Gossiped server events: their kinds and the swarm handle.
    pub server_events: crate::gossip::ServerEvents,
}

/// `GetNodeStatus`.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The build's version.
    pub version: &'static str,
    /// When the node started (ms).
    pub started_at: u64,
    /// Now (ms), for the uptime.
    pub now: u64,
    /// The node's key.
    pub server_id: PublicKey,
    /// Its canonical address.
    pub canonical_address: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Bytes of the database (with its WAL).
    pub database_bytes: u64,
    /// Bytes of uploaded files on disk.
    pub media_bytes: u64,
    /// What the store holds.
    pub counts: NodeCounts,
    /// `SubscribeEvents` streams open now.
    pub event_streams: u64,
    /// Connected libp2p peers.
    pub p2p_peers: u64,
    /// The outbox's counts.
    pub outbox: OutboxStats,
}

/// One gossip topic's mesh.
#[derive(Debug, Clone)]
pub struct Mesh {
    /// The server-event kind (its topic).
    pub kind: String,
    /// Peer ids in this node's mesh for it.
    pub peers: Vec<String>,
}

/// The longest destination address an outbox request may name: the longest URL a peer can have.
pub const DESTINATION_MAX: usize = crate::accounts::rules::URL_MAX;

/// Bytes under `path` (a file, or a directory walked without following links); what can't be
/// read counts 0.
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => {
                    total = total.saturating_add(entry.metadata().map_or(0, |m| m.len()));
                }
                _ => {}
            }
        }
    }
    total
}

fn check_destination(destination: &str) -> Result<()> {
    if destination.is_empty() {
        return Err(Error::invalid("destination", "is required"));
    }
    if destination.len() > DESTINATION_MAX {
        return Err(Error::invalid(
            "destination",
            format!("must be at most {DESTINATION_MAX} bytes"),
        ));
    }
    Ok(())
}

fn nothing_queued(destination: &str) -> Error {
    Error::NotFound(format!(
        "destination: nothing is queued for {destination:?}"
    ))
}

impl Admin {
    /// The admin operations with the running node's views (status, federation).
    pub fn with_node(mut self, node: NodeView) -> Self {
        self.node = Some(node);
        self
    }

    fn node(&self) -> Result<&NodeView> {
        self.node.as_ref().ok_or_else(|| {
            Error::Unimplemented("the node's status: this service runs outside a node".into())
        })
    }

    /// `GetNodeStatus`: version, uptime, data size, counts, open streams, peers.
    pub async fn status(&self) -> Result<NodeStatus> {
        let node = self.node()?.clone();
        let counts = self.store.read(db::counts).await?;
        let outbox = self.store.read(outbox_db::stats).await?;
        let (database, media) = (node.database_path.clone(), node.media_dir.clone());
        let (database_bytes, media_bytes) = tokio::task::spawn_blocking(move || {
            let mut wal = database.clone().into_os_string();
            wal.push("-wal");
            let db = disk_bytes(&database).saturating_add(disk_bytes(Path::new(&wal)));
            (db, disk_bytes(&media))
        })
        .await
        .map_err(|e| crate::store::StorageError::Task(e.to_string()))?;
        let p2p_peers = *node.p2p_peers.borrow() as u64;
        Ok(NodeStatus {
            version: env!("CARGO_PKG_VERSION"),
            started_at: node.started_at,
            now: now_ms(),
            server_id: node.server_id,
            canonical_address: node.canonical_address,
            peer_id: node.peer_id,
            database_bytes,
            media_bytes,
            counts,
            event_streams: self.guilds.events().open_streams().total() as u64,
            p2p_peers,
            outbox,
        })
    }

    /// `ListPeers`: every pinned peer with its key and last contact, and its outbox queue.
    pub async fn peers(&self) -> Result<Vec<(PeerRecord, Option<DestinationQueue>)>> {
        let (peers, queues) = self
            .store
            .read(|c| {
                Ok((
                    crate::store::federation::peers(c)?,
                    outbox_db::destinations(c)?,
                ))
            })
            .await?;
        Ok(peers
            .into_iter()
            .map(|p| {
                let queue = queues.iter().find(|q| q.destination == p.address).cloned();
                (p, queue)
            })
            .collect())
    }

    /// `ListOutbox`: each destination's queue, and the outbox's counts.
    pub async fn outbox(&self) -> Result<(Vec<DestinationQueue>, OutboxStats)> {
        Ok(self
            .store
            .read(|c| Ok((outbox_db::destinations(c)?, outbox_db::stats(c)?)))
            .await?)
    }

    /// `RetryOutbox`: everything queued for `destination` is due now, and the worker is woken.
    pub async fn retry_outbox(&self, destination: &str) -> Result<DestinationQueue> {
        check_destination(destination)?;
        let node = self.node()?;
        let d = destination.to_owned();
        let queued = self
            .store
            .write(move |tx| outbox_db::retry_now(tx, &d, now_ms()))
            .await?;
        if queued == 0 {
            return Err(nothing_queued(destination));
        }
        node.outbox.wake();
        let (queues, _) = self.outbox().await?;
        queues
            .into_iter()
            .find(|q| q.destination == destination)
            .ok_or_else(|| nothing_queued(destination))
    }

    /// `DropOutbox`: everything queued for `destination` is given up (kept with the other given-up
    /// deliveries, reason naming the admin); returns how many.
    pub async fn drop_outbox(&self, actor: &str, destination: &str) -> Result<u64> {
        check_destination(destination)?;
        let (d, reason) = (
            destination.to_owned(),
            format!("dropped by server admin {actor}"),
        );
        let dropped = self
            .store
            .write(move |tx| outbox_db::drop_destination(tx, &d, now_ms(), &reason))
            .await?;
        if dropped == 0 {
            return Err(nothing_queued(destination));
        }
        Ok(dropped as u64)
    }

    /// `ListGossipMesh`: for each server-event kind, the peers in this node's mesh for it.
    pub async fn gossip_mesh(&self) -> Result<(Vec<Mesh>, u64)> {
        let node = self.node()?;
        let mut meshes = Vec::new();
        for kind in node.server_events.kinds() {
            let peers = node.server_events.gossip().mesh_peer_ids(&kind).await;
            meshes.push(Mesh { kind, peers });
        }
        Ok((meshes, *node.p2p_peers.borrow() as u64))
    }

    /// `ListBanLists`: the lists this node enforces (its own moderation list first), and a page
    /// of the bans it holds from lists (its own guilds' bans left out), newest first.
    pub async fn ban_lists(
        &self,
        advisories_only: bool,
        limit: i32,
        offset: i32,
    ) -> Result<(Vec<TrustedList>, Vec<HeldBan>, u64)> {
        let node = self.node()?;
        let (limit, offset) = crate::guilds::page(limit, offset)?;
        let own = node.server_id.to_hex();
        let (held, total) = self
            .store
            .read(move |c| crate::store::server_bans::held(c, &own, advisories_only, limit, offset))
            .await?;
        let mut lists = vec![TrustedList {
            server: node.server_id,
            guild: None,
        }];
        lists.extend(node.trusted_lists.iter().cloned());
        Ok((lists, held, total))
    }
}
