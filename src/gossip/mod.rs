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
    /// The task; it ends when the token is cancelled.
    pub task: JoinHandle<()>,
}

/// The libp2p keypair for the server key: the same ed25519 key.
pub fn keypair(key: &SecretKey) -> identity::Keypair {
    let mut seed = key.to_seed();
    identity::Keypair::ed25519_from_bytes(&mut seed).expect("a 32-byte seed is a valid ed25519 key")
}

/// Starts the swarm on `listen` and returns once it is listening (addresses may still arrive).
pub fn spawn(
    key: &SecretKey,
    listen: &str,
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
    let (addrs_tx, addrs_rx) = watch::channel(Vec::new());
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
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        tracing::debug!(%peer_id, "p2p connection");
                    }
                    _ => {}
                },
            }
        }
    });
    Ok(Swarm {
        peer_id,
        listen_addrs: addrs_rx,
        task,
    })
}
