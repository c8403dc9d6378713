//! The swarm's behaviours and their settings: gossipsub for server events, Kademlia to find more
//! peers, identify to learn peers' listen addresses, ping to keep connections honest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, StreamProtocol, identify, identity, kad, ping};
use sha2::{Digest, Sha256};

use super::GossipError;

/// The identify protocol version peers announce.
pub const PROTOCOL_VERSION: &str = "/guildhall/1.0.0";

/// The Kademlia protocol: guildhall nodes form their own DHT, apart from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/guildhall/kad/1.0.0");

/// Largest gossip message: a server event's payload (64 KiB) plus its fields and framing.
pub const MAX_TRANSMIT_BYTES: usize = 80 * 1024;

/// How often gossipsub maintains its meshes. Shorter than the 1 s default so a new peer joins the
/// mesh of a quiet topic quickly; server events are few, so the extra control traffic is small.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// The topic a kind of server event travels on.
pub fn topic(kind: &str) -> IdentTopic {
    IdentTopic::new(format!("guildhall/server-events/v1/{kind}"))
}

/// The kind a topic carries, if it is a server-event topic.
pub fn kind_of(topic: &gossipsub::TopicHash) -> Option<&str> {
    topic.as_str().strip_prefix("guildhall/server-events/v1/")
}

/// Every behaviour of the node's swarm.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Server events, one topic per kind.
    pub gossipsub: gossipsub::Behaviour,
    /// Peer discovery beyond the bootstrap list.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Peers' listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
}

/// Score weights for a server-event topic: an invalid message (a bad signature or a broken domain
/// rule) costs its sender more than a long, useful stay in the mesh earns (at most +10 for time in
/// mesh, +10 for first deliveries), and is forgotten slowly; two invalid messages put a peer below
/// the graylist threshold (-80), so its messages are dropped. A quiet topic costs no one anything
/// (server events are rare, so mesh-delivery deficits are not held against peers).
pub fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 1000.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -50.0,
        // Per decay interval (1 s): ~0.99^70 ≈ 0.5, so an offence counts for minutes.
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    }
}

/// Gossipsub's default scoring, except that peers on loopback are exempt from the IP colocation
/// penalty. That penalty (−5 × (peers from one address − 10)², so 14 peers from one address fall
/// below the publish threshold) stops one internet host from filling a mesh with Sybil peers;
/// peers on loopback run on this very machine, which only its operator does (several nodes on one
/// host, or a test). Without the exemption a node with more than 13 loopback peers stops
/// publishing to any of them. Peers from any other address are scored as gossipsub's defaults
/// say.
pub fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        ip_colocation_factor_whitelist: [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
        .into(),
        ..PeerScoreParams::default()
    }
}

fn content_id(message: &gossipsub::Message) -> MessageId {
    MessageId::from(Sha256::digest(&message.data).to_vec())
}

/// Builds the behaviours for the node with `key`; gossipsub records its metrics (messages and
/// bytes per topic, duplicates included, mesh sizes, peer scores) into `registry`.
pub fn build(
    key: &identity::Keypair,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Behaviour, GossipError> {
    let fail = |e: String| GossipError::Transport(e);
    let config = gossipsub::ConfigBuilder::default()
        // Every message is signed by its publisher's libp2p key (the publishing node's server
        // key); the application then checks the event's own `server-event` signature.
        .validation_mode(ValidationMode::Strict)
        // Nothing is forwarded until the application reports Accept.
        .validate_messages()
        // Content-addressed ids: the same bytes from two paths are one message.
        .message_id_fn(content_id)
        .max_transmit_size(MAX_TRANSMIT_BYTES)
        .heartbeat_interval(HEARTBEAT)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| fail(e.to_string()))?
        .with_metrics(
            registry.sub_registry_with_prefix("gossipsub"),
            gossipsub::MetricsConfig::default(),
        );
    gossipsub
        .with_peer_score(peer_score_params(), PeerScoreThresholds::default())
        .map_err(fail)?;
    let peer_id = key.public().to_peer_id();
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::new(peer_id),
        kad::Config::new(KAD_PROTOCOL),
    );
    // Nodes are servers with reachable addresses: answer DHT queries without waiting for an
    // external-address confirmation (which loopback and LAN setups never get).
    kad.set_mode(Some(kad::Mode::Server));
    Ok(Behaviour {
        gossipsub,
        kad,
        identify: identify::Behaviour::new(identify::Config::new(
            PROTOCOL_VERSION.into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
    })
}

/// Whether a peer speaks our Kademlia protocol (learned through identify).
pub fn speaks_kad(info: &identify::Info) -> bool {
    info.protocols.contains(&KAD_PROTOCOL)
}

/// The peer id a multiaddr ends with, if any.
pub fn peer_of(addr: &libp2p::Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}
