//! The task that owns the `Swarm`. Other tasks talk to it through a [`GossipHandle`] (commands
//! with `oneshot` replies) and hear from it through [`GossipEvent`]s. Its `select!` arms only call
//! `handle_event` / `handle_command`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::behaviour::{self, Behaviour, BehaviourEvent};

/// Commands queued for the swarm task before senders wait.
pub const COMMAND_CAPACITY: usize = 1024;
/// Gossip messages queued for validation; when full, new messages are ignored (not forwarded, no
/// penalty) and left to catch-up.
pub const EVENT_CAPACITY: usize = 4096;
/// How often the node asks the DHT for peers near itself.
const KAD_BOOTSTRAP_EVERY: Duration = Duration::from_secs(60);
/// Peers the node dials on its own when Kademlia names new ones, until it has this many.
const TARGET_PEERS: usize = 16;

/// Why a publish did not go out. Gossip is best effort: callers log this as back-pressure and
/// rely on catch-up, never on delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishFailure {
    /// No connected peer is subscribed to the topic yet.
    #[error("no peer subscribed to the topic")]
    NoPeers,
    /// Every peer's send queue is full.
    #[error("all peer queues full")]
    QueuesFull,
    /// The same bytes were published already.
    #[error("already published")]
    Duplicate,
    /// Anything else (too large, signing failed, the swarm stopped).
    #[error("{0}")]
    Other(String),
}

/// What the swarm task tells the rest of the node.
#[derive(Debug)]
pub enum GossipEvent {
    /// A gossip message to validate; answer with [`GossipHandle::report`].
    Message {
        /// The peer that sent it to us (penalised if it is rejected).
        source: PeerId,
        /// Its gossipsub id.
        id: MessageId,
        /// The kind its topic carries (`None`: not a server-event topic).
        kind: Option<String>,
        /// The message bytes.
        data: Vec<u8>,
    },
    /// A connection to a peer was established (first connection to it).
    PeerConnected(PeerId),
}

enum Command {
    Publish {
        kind: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), PublishFailure>>,
    },
    Subscribe {
        kind: String,
    },
    AddPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    Report {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    MeshPeers {
        kind: String,
        reply: oneshot::Sender<usize>,
    },
    MeshPeerIds {
        kind: String,
        reply: oneshot::Sender<Vec<String>>,
    },
}

/// A cheap-`Clone` handle to the swarm task.
#[derive(Debug, Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command(..)")
    }
}

impl GossipHandle {
    /// Whether the swarm task is still running (it dropped its command queue if not).
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Publishes `data` on the topic of `kind`.
    pub async fn publish(&self, kind: &str, data: Vec<u8>) -> Result<(), PublishFailure> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Publish {
            kind: kind.to_owned(),
            data,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| PublishFailure::Other("the swarm has stopped".into()))?;
        answer
            .await
            .map_err(|_| PublishFailure::Other("the swarm has stopped".into()))?
    }

    /// Subscribes to the topic of `kind` (and gives it the server-event score weights).
    pub async fn subscribe(&self, kind: &str) {
        let _ = self
            .commands
            .send(Command::Subscribe {
                kind: kind.to_owned(),
            })
            .await;
    }

    /// Adds a peer met elsewhere (in federation: `GetServerInfo.peer_id` and `p2p_listen_addrs`)
    /// to the DHT and dials it.
    pub async fn add_peer(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let _ = self.commands.send(Command::AddPeer { peer, addrs }).await;
    }

    /// Tells gossipsub what the application made of a message: forward it, penalise its sender,
    /// or drop it quietly.
    pub async fn report(&self, id: MessageId, source: PeerId, acceptance: MessageAcceptance) {
        let _ = self
            .commands
            .send(Command::Report {
                id,
                source,
                acceptance,
            })
            .await;
    }

    /// A peer's gossipsub score (`None` if the swarm has stopped).
    pub async fn peer_score(&self, peer: PeerId) -> Option<f64> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::PeerScore { peer, reply })
            .await
            .ok()?;
        answer.await.ok().flatten()
    }

    /// How many peers are in this node's mesh for `kind`'s topic.
    pub async fn mesh_peers(&self, kind: &str) -> usize {
        let (reply, answer) = oneshot::channel();
        let command = Command::MeshPeers {
            kind: kind.to_owned(),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return 0;
        }
        answer.await.unwrap_or(0)
    }

    /// The peer ids in this node's mesh for `kind`'s topic, sorted (empty if the swarm stopped).
    pub async fn mesh_peer_ids(&self, kind: &str) -> Vec<String> {
        let (reply, answer) = oneshot::channel();
        let command = Command::MeshPeerIds {
            kind: kind.to_owned(),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

/// The swarm task's state.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<GossipEvent>,
    addrs: watch::Sender<Vec<String>>,
    peers: watch::Sender<usize>,
}

/// Makes the handle and the loop over `swarm`; the loop's events go to the returned receiver.
pub fn new(
    swarm: Swarm<Behaviour>,
    addrs: watch::Sender<Vec<String>>,
    peers: watch::Sender<usize>,
) -> (GossipHandle, EventLoop, mpsc::Receiver<GossipEvent>) {
    let (commands_tx, commands) = mpsc::channel(COMMAND_CAPACITY);
    let (events, events_rx) = mpsc::channel(EVENT_CAPACITY);
    let handle = GossipHandle {
        commands: commands_tx,
    };
    let event_loop = EventLoop {
        swarm,
        commands,
        events,
        addrs,
        peers,
    };
    (handle, event_loop, events_rx)
}

impl EventLoop {
    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut kad_tick = tokio::time::interval(KAD_BOOTSTRAP_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                event = self.swarm.select_next_some() => self.handle_event(event),
                Some(command) = self.commands.recv() => self.handle_command(command),
                _ = kad_tick.tick() => {
                    // Fails only while the routing table is empty; the next tick retries.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        match command {
            Command::Publish { kind, data, reply } => {
                let result = gossip
                    .publish(behaviour::topic(&kind), data)
                    .map(|_| ())
                    .map_err(|e| match e {
                        PublishError::NoPeersSubscribedToTopic => PublishFailure::NoPeers,
                        PublishError::AllQueuesFull(_) => PublishFailure::QueuesFull,
                        PublishError::Duplicate => PublishFailure::Duplicate,
                        other => PublishFailure::Other(other.to_string()),
                    });
                let _ = reply.send(result);
            }
            Command::Subscribe { kind } => {
                let topic = behaviour::topic(&kind);
                if let Err(e) =
                    gossip.set_topic_params(topic.clone(), behaviour::topic_score_params())
                {
                    tracing::warn!(%kind, error = e, "topic score parameters not set");
                }
                if let Err(e) = gossip.subscribe(&topic) {
                    tracing::warn!(%kind, error = ?e, "gossip subscribe failed");
                }
            }
            Command::AddPeer { peer, addrs } => {
                for addr in &addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                }
                if !self.swarm.is_connected(&peer) {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "dial to a federation peer failed");
                    }
                }
            }
            Command::Report {
                id,
                source,
                acceptance,
            } => {
                gossip.report_message_validation_result(&id, &source, acceptance);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(gossip.peer_score(&peer));
            }
            Command::MeshPeers { kind, reply } => {
                let hash = behaviour::topic(&kind).hash();
                let _ = reply.send(gossip.mesh_peers(&hash).count());
            }
            Command::MeshPeerIds { kind, reply } => {
                let hash = behaviour::topic(&kind).hash();
                let mut ids: Vec<String> =
                    gossip.mesh_peers(&hash).map(|p| p.to_string()).collect();
                ids.sort();
                let _ = reply.send(ids);
            }
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let kind = behaviour::kind_of(&message.topic).map(str::to_owned);
                let event = GossipEvent::Message {
                    source: propagation_source,
                    id: message_id.clone(),
                    kind,
                    data: message.data,
                };
                if self.events.try_send(event).is_err() {
                    // The validator is behind: drop quietly (no forward, no penalty); catch-up
                    // brings the event later.
                    tracing::debug!("server-event queue full; ignoring a gossip message");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if behaviour::speaks_kad(&info) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                addresses,
                ..
            })) if *self.peers.borrow() < TARGET_PEERS && !self.swarm.is_connected(&peer) => {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addresses.into_vec())
                    .build();
                let _ = self.swarm.dial(opts);
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                self.addrs.send_modify(|a| a.push(address.to_string()));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let gone = address.to_string();
                self.addrs.send_modify(|a| a.retain(|x| *x != gone));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                tracing::debug!(%peer_id, "p2p connection");
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "p2p peer connected");
                    self.peers.send_modify(|n| *n += 1);
                    let _ = self.events.try_send(GossipEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                let cause = cause.map(|c| c.to_string());
                tracing::info!(peer = %peer_id, cause = cause.as_deref().unwrap_or("closed"), "p2p peer disconnected");
                self.peers.send_modify(|n| *n = n.saturating_sub(1));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "p2p dial failed");
            }
            _ => {}
        }
    }
}
