//! The libp2p swarm task. Only this module touches `libp2p::Swarm`.
//!
//! The node's server key is its libp2p identity, so its `PeerId` and its federation identity are
//! one key. This task listens, answers identify and ping, and publishes its listen addresses; the
//! federation issue adds gossipsub topics and Kademlia on the same swarm.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, identity, noise, ping, tcp, yamux};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::identity::SecretKey;

/// The identify protocol version peers announce.
pub const PROTOCOL_VERSION: &str = "/guildhall/1.0.0";

/// How long an idle connection to a peer is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

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

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// A running swarm: its peer id and its listen addresses as they are bound.
#[derive(Debug)]
pub struct Swarm {
    /// This node's peer id (derived from the server key).
    pub peer_id: PeerId,
    /// Listen addresses, updated as the swarm binds or loses them.
    pub listen_addrs: watch::Receiver<Vec<String>>,
    /// How many peers are connected now.
    pub connected_peers: watch::Receiver<usize>,
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
/// may still arrive).
pub fn spawn(
    key: &SecretKey,
    listen: &str,
    bootstrap: Vec<Multiaddr>,
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
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| GossipError::Transport(e.to_string()))?
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                PROTOCOL_VERSION.into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        })
        .map_err(|e| GossipError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    swarm
        .listen_on(addr)
        .map_err(|e| GossipError::Transport(e.to_string()))?;
    for peer in bootstrap {
        if let Err(e) = swarm.dial(peer.clone()) {
            tracing::warn!(%peer, error = %e, "bootstrap dial failed");
        }
    }
    let (addrs_tx, addrs_rx) = watch::channel(Vec::new());
    let (peers_tx, peers_rx) = watch::channel(0usize);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        tracing::info!(%address, "p2p listening");
                        addrs_tx.send_modify(|a| a.push(address.to_string()));
                    }
                    SwarmEvent::ExpiredListenAddr { address, .. } => {
                        let gone = address.to_string();
                        addrs_tx.send_modify(|a| a.retain(|x| *x != gone));
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } => {
                        tracing::info!(%peer_id, "p2p connection");
                        if num_established.get() == 1 {
                            peers_tx.send_modify(|n| *n += 1);
                        }
                    }
                    SwarmEvent::ConnectionClosed { num_established: 0, .. } => {
                        peers_tx.send_modify(|n| *n = n.saturating_sub(1));
                    }
                    SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                        tracing::warn!(?peer_id, %error, "p2p dial failed");
                    }
                    _ => {}
                },
            }
        }
    });
    Ok(Swarm {
        peer_id,
        listen_addrs: addrs_rx,
        connected_peers: peers_rx,
        task,
    })
}
