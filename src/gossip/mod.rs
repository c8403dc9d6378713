//! The libp2p swarm task and the server events it gossips. Only this module touches
//! `libp2p::Swarm`.
//!
//! The node's server key is its libp2p identity, so its `PeerId` and its federation identity are
//! one key.
//!
//! - [`behaviour`]: gossipsub (signed, application-validated, scored), Kademlia, identify, ping.
//! - [`event_loop`]: the task owning the swarm; [`GossipHandle`] sends it commands.
//! - [`event`]: the signed server-event envelope, its content id and its checks.
//! - [`server_events`]: [`ServerEvents`], the API domain code uses: publish, register a
//!   validator per kind, the receive path (verify, de-duplicate, validate, store, forward).
//! - [`catchup`]: pulling missed events from known peers with `PullServerEvents`.
//!
//! The protocol is `docs/PROTOCOL.md` §13.

pub mod behaviour;
pub mod catchup;
pub mod event;
pub mod event_loop;
pub mod pull;
pub mod server_events;

use libp2p::{Multiaddr, PeerId, identity, noise, tcp, yamux};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::identity::SecretKey;

pub use behaviour::PROTOCOL_VERSION;
pub use event::{ServerEvent, VerifiedServerEvent};
pub use event_loop::{GossipEvent, GossipHandle, PublishFailure};
pub use server_events::{ServerEvents, Verdict};

/// How long an idle connection to a peer is kept.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Why the swarm could not start.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The listen address is not a multiaddr.
    #[error("p2p_listen: {0}")]
    BadAddress(String),
    /// The transport could not be built or could not listen.
    #[error("libp2p: {0}")]
    Transport(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn bootstrap_lines() {
        let ok = "# comment\n\n/ip4/127.0.0.1/tcp/7401/p2p/12D3KooWSXWV5KDQx3sA6PaBokFUixdJGQdi4oLD45CcHNgo7QhY\n";
        assert_eq!(super::parse_bootstrap(ok).expect("parses").len(), 1);
        assert!(super::parse_bootstrap("/ip4/127.0.0.1/tcp/7401").is_err());
        assert!(super::parse_bootstrap("not an addr").is_err());
    }
}

/// A running swarm: its peer id, its listen addresses as they are bound, and the handle and
/// events of its task.
#[derive(Debug)]
pub struct Swarm {
    /// This node's peer id (derived from the server key).
    pub peer_id: PeerId,
    /// Listen addresses, updated as the swarm binds or loses them.
    pub listen_addrs: watch::Receiver<Vec<String>>,
    /// How many peers are connected now.
    pub connected_peers: watch::Receiver<usize>,
    /// Commands to the swarm task.
    pub handle: GossipHandle,
    /// What the swarm task reports (gossip messages to validate, new connections).
    pub events: mpsc::Receiver<GossipEvent>,
    /// The task; it ends when the token is cancelled.
    pub task: JoinHandle<()>,
}

/// The libp2p keypair for the server key: the same ed25519 key.
pub fn keypair(key: &SecretKey) -> identity::Keypair {
    let mut seed = key.to_seed();
    identity::Keypair::ed25519_from_bytes(&mut seed).expect("a 32-byte seed is a valid ed25519 key")
}

/// Parses a bootstrap file: one multiaddr (with `/p2p/<peer id>`) per line; blank lines and `#`
/// comments are skipped. A bad line is reported with its number.
pub fn parse_bootstrap(text: &str) -> Result<Vec<Multiaddr>, GossipError> {
    let mut peers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let addr: Multiaddr = line
            .parse()
            .map_err(|e| GossipError::BadAddress(format!("bootstrap line {}: {e}", i + 1)))?;
        let has_peer = addr
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)));
        if !has_peer {
            return Err(GossipError::BadAddress(format!(
                "bootstrap line {}: must end with /p2p/<peer id>",
                i + 1
            )));
        }
        peers.push(addr);
    }
    Ok(peers)
}

/// Starts the swarm on `listen`, dials `bootstrap`, and returns once it is listening (addresses
/// may still arrive). The transport's bytes in and out and gossipsub's counts go into `registry`.
pub fn spawn(
    key: &SecretKey,
    listen: &str,
    bootstrap: Vec<Multiaddr>,
    registry: &mut prometheus_client::registry::Registry,
    cancel: CancellationToken,
) -> Result<Swarm, GossipError> {
    let addr: Multiaddr = listen
        .parse()
        .map_err(|e| GossipError::BadAddress(format!("{listen:?}: {e}")))?;
    let keypair = keypair(key);
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| GossipError::Transport(e.to_string()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| behaviour::build(key, registry).map_err(Box::from))
        .map_err(|e| GossipError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    swarm
        .listen_on(addr)
        .map_err(|e| GossipError::Transport(e.to_string()))?;
    for peer in bootstrap {
        if let Some(id) = behaviour::peer_of(&peer) {
            swarm.behaviour_mut().kad.add_address(&id, peer.clone());
        }
        if let Err(e) = swarm.dial(peer.clone()) {
            tracing::warn!(%peer, error = %e, "bootstrap dial failed");
        }
    }
    let (addrs_tx, addrs_rx) = watch::channel(Vec::new());
    let (peers_tx, peers_rx) = watch::channel(0usize);
    let (handle, event_loop, events) = event_loop::new(swarm, addrs_tx, peers_tx);
    let task = tokio::spawn(event_loop.run(cancel));
    Ok(Swarm {
        peer_id,
        listen_addrs: addrs_rx,
        connected_peers: peers_rx,
        handle,
        events,
        task,
    })
}
