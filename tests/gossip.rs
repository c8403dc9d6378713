//! Gossip of server events between nodes on loopback: an event published on one node reaches the
//! others through gossip, once each; a forged event from a malicious libp2p peer is rejected, not
//! forwarded, and costs that peer its score; a node that was down catches up with
//! `PullServerEvents` and refuses forged events there too, and converges from far behind after the
//! origin pruned its log; a node restored from an older backup numbers its events after the
//! ones its peers hold; a server met in federation is caught
//! up with and meshed at once; Kademlia connects two nodes that only know a third; fifteen nodes on
//! one machine still gossip to each other.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use guildhall::gossip::server_events::{Subject, SubjectOf};
use guildhall::gossip::{ServerEvent, ServerEvents, Verdict, VerifiedServerEvent};
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, identify, noise, tcp, yamux};
use prost::Message;
use tokio::sync::mpsc;
use tonic::Code;

const KIND: &str = "test-note";
const WAIT: Duration = Duration::from_secs(20);

/// What a node's test-note validator saw: (origin hex, sequence, payload).
type Seen = Arc<Mutex<Vec<(String, u64, Vec<u8>)>>>;

/// Registers the test kind on `node`: payloads starting with "reject" break the "test rule";
/// everything else is accepted and recorded.
async fn register(node: &TestNode) -> Seen {
    register_kind(node, None).await
}

/// A pruned test kind's subject: a payload `subject:text` is about its subject.
fn subject_of(payload: &[u8]) -> Option<Subject> {
    let at = payload.iter().position(|b| *b == b':')?;
    Some(Subject {
        key: payload[..at].to_vec(),
        fields: 1,
    })
}

/// [`register`], pruned by [`subject_of`] when `subject` is given.
async fn register_kind(node: &TestNode, subject: Option<SubjectOf>) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let validator = move |event: VerifiedServerEvent| {
        let record = record.clone();
        async move {
            if event.payload().starts_with(b"reject") {
                return Verdict::Reject("test rule".into());
            }
            record.lock().expect("lock").push((
                event.origin().to_hex(),
                event.sequence(),
                event.payload().to_vec(),
            ));
            Verdict::Accept
        }
    };
    let events = &node.node().server_events;
    match subject {
        Some(subject) => events.register_pruned(KIND, subject, validator).await,
        None => events.register(KIND, validator).await,
    }
    .expect("register");
    seen
}

fn count(seen: &Seen, payload: &[u8]) -> usize {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|(_, _, p)| p == payload)
        .count()
}

fn events(node: &TestNode) -> &ServerEvents {
    &node.node().server_events
}

async fn mesh_at_least(node: &TestNode, n: usize) {
    let handle = events(node).gossip().clone();
    wait_for(WAIT, || {
        let handle = handle.clone();
        async move { handle.mesh_peers(KIND).await >= n }
    })
    .await;
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Rogue {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
}

/// A libp2p peer outside guildhall's code: it dials `target`, subscribes to the test topic and
/// publishes whatever bytes it is sent, signed at the gossipsub layer by its own key.
async fn rogue_peer(
    key: &SecretKey,
    target: Multiaddr,
) -> (
    libp2p::PeerId,
    mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<()>,
) {
    let keypair = guildhall::gossip::keypair(key);
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Strict)
                .build()
                .expect("config");
            Rogue {
                gossipsub: gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    config,
                )
                .expect("gossipsub"),
                identify: identify::Behaviour::new(identify::Config::new(
                    guildhall::gossip::PROTOCOL_VERSION.into(),
                    key.public(),
                )),
            }
        })
        .expect("behaviour")
        .build();
    let topic = IdentTopic::new(format!("guildhall/server-events/v1/{KIND}"));
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .expect("subscribe");
    swarm.dial(target).expect("dial");
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let task = tokio::spawn(async move {
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut target_subscribed = false;
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(RogueEvent::Gossipsub(
                        gossipsub::Event::Subscribed { .. },
                    )) = event
                    {
                        target_subscribed = true;
                    }
                }
                Some(data) = rx.recv() => pending.push(data),
            }
            if target_subscribed {
                for data in pending.drain(..) {
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic.clone(), data)
                        .expect("publish");
                }
            }
        }
    });
    (peer_id, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_delivers_once_and_rejects_forgeries_without_forwarding() {
    let a = TestNode::spawn().await;
    let b = TestNode::spawn().await;
    let c = TestNode::spawn().await;
    let (_seen_a, seen_b, seen_c) = (register(&a).await, register(&b).await, register(&c).await);
    // A line: A - B - C. C hears A only through B's forwarding.
    meet(&a, &b).await;
    meet(&c, &b).await;
    mesh_at_least(&a, 1).await;
    mesh_at_least(&b, 2).await;
    mesh_at_least(&c, 1).await;

    let hello = events(&a)
        .publish(KIND, b"hello".to_vec())
        .await
        .expect("publish");
    assert_eq!(hello.sequence(), 1);
    wait_for(WAIT, || async {
        count(&seen_b, b"hello") == 1 && count(&seen_c, b"hello") == 1
    })
    .await;
    // The swarm's own metrics (on `/metrics`) count it: C received the message on the kind's
    // topic, from B, and bytes crossed C's transport both ways.
    let scraped = c.node().metrics().encode();
    let series = |name: &str, labels: &str| {
        scraped
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    };
    let topic = format!("hash=\"guildhall/server-events/v1/{KIND}\"");
    assert!(series("guildhall_gossipsub_topic_msg_recv_counts_total", &topic) >= 1.0);
    assert!(
        series(
            "guildhall_libp2p_bandwidth_bytes_total",
            "direction=\"Inbound\""
        ) > 0.0
    );
    assert!(
        series(
            "guildhall_libp2p_bandwidth_bytes_total",
            "direction=\"Outbound\""
        ) > 0.0
    );

    // A rogue libp2p peer connected to B only.
    let rogue_key = SecretKey::generate();
    let b_addr: Multiaddr = format!("{}/p2p/{}", b.node().p2p_addrs()[0], b.node().info.peer_id)
        .parse()
        .expect("multiaddr");
    let (rogue_id, rogue, _task) = rogue_peer(&rogue_key, b_addr).await;
    let score_before = events(&b).gossip().peer_score(rogue_id).await;

    // 1. A's event with its payload changed: the signature no longer holds.
    let mut forged = hello.to_proto();
    forged.payload = b"forged".to_vec();
    rogue.send(forged.encode_to_vec()).await.expect("send");
    // 2. A's real event, re-encoded (an unknown field appended): new gossip id, same event.
    let mut duplicate = hello.encode();
    duplicate.extend_from_slice(&[0x7a, 0x01, 0x00]); // field 15, bytes, length 1
    rogue.send(duplicate).await.expect("send");
    // 3. A valid event of the rogue's own: proves B processed the two before it.
    let marker = ServerEvent::sign(&rogue_key, KIND, 1, now_ms(), b"marker".to_vec());
    rogue.send(marker.encode()).await.expect("send");

    wait_for(WAIT, || async {
        count(&seen_b, b"marker") == 1 && count(&seen_c, b"marker") == 1
    })
    .await;
    assert_eq!(
        count(&seen_b, b"hello"),
        1,
        "the duplicate reached B's validator"
    );
    assert_eq!(count(&seen_b, b"forged"), 0);
    assert_eq!(count(&seen_c, b"forged"), 0);
    let stats_b = events(&b).stats();
    assert!(stats_b.invalid >= 1, "B refused the forgery: {stats_b:?}");
    assert!(
        stats_b.duplicates >= 1,
        "B dropped the duplicate: {stats_b:?}"
    );
    assert_eq!(
        events(&c).stats().invalid,
        0,
        "B did not forward the forgery to C"
    );
    let score_after = events(&b)
        .gossip()
        .peer_score(rogue_id)
        .await
        .expect("scoring is on");
    assert!(
        score_after < score_before.unwrap_or(0.0) && score_after < 0.0,
        "the rogue's score dropped: {score_before:?} -> {score_after}"
    );
    // The forgery is in no log; the real events are in each once (stored just after the
    // validator ran, so waited for).
    for node in [&b, &c] {
        wait_for(WAIT, || async {
            events(node).accepted_count(KIND).await.expect("count") == 2
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_rejections_are_not_applied_or_forwarded() {
    let a = TestNode::spawn().await;
    let b = TestNode::spawn().await;
    let (_seen_a, seen_b) = (register(&a).await, register(&b).await);
    meet(&b, &a).await;
    mesh_at_least(&a, 1).await;
    events(&a)
        .publish(KIND, b"reject me".to_vec())
        .await
        .expect("publish");
    events(&a)
        .publish(KIND, b"fine".to_vec())
        .await
        .expect("publish");
    wait_for(WAIT, || async { count(&seen_b, b"fine") == 1 }).await;
    assert_eq!(count(&seen_b, b"reject me"), 0);
    assert_eq!(events(&b).stats().rejected, 1);
    wait_for(WAIT, || async {
        events(&b).accepted_count(KIND).await.expect("count") == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_and_refuses_forged_events() {
    let a = TestNode::spawn().await;
    let mut b = TestNode::spawn().await;
    let c = TestNode::spawn().await;
    let (_seen_a, _seen_c) = (register(&a).await, register(&c).await);
    // B has met A and C in federation (their keys are pinned in its directory).
    for peer in [&a, &c] {
        b.node()
            .federation
            .directory()
            .refresh(&peer.address())
            .await
            .expect("pin");
    }
    // B goes down; A and C publish meanwhile.
    let stopped = b.node.take().expect("running");
    stopped.shutdown();
    stopped.stopped().await;
    for text in ["one", "two", "three"] {
        events(&a)
            .publish(KIND, text.as_bytes().to_vec())
            .await
            .expect("publish");
    }
    events(&c)
        .publish(KIND, b"c-one".to_vec())
        .await
        .expect("publish");
    events(&c)
        .publish(KIND, b"c-two".to_vec())
        .await
        .expect("publish");
    // C's log is corrupted (or C is hostile): its second event no longer matches its signature.
    let db = rusqlite::Connection::open(c.config.database_path()).expect("open C's db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let changed = db
        .execute(
            "UPDATE server_events SET payload = CAST('c-evil' AS BLOB) WHERE seq = 2",
            [],
        )
        .expect("tamper");
    assert_eq!(changed, 1);

    // B comes back; registering the kind makes it pull from the peers it knows.
    let node = guildhall::node::Node::start(b.config.clone())
        .await
        .expect("restart");
    b.node = Some(node);
    let seen_b = register(&b).await;
    wait_for(WAIT, || async {
        ["one", "two", "three", "c-one"]
            .iter()
            .all(|t| count(&seen_b, t.as_bytes()) == 1)
    })
    .await;
    wait_for(WAIT, || async { events(&b).stats().invalid >= 1 }).await;
    assert_eq!(count(&seen_b, b"c-evil"), 0);
    assert_eq!(count(&seen_b, b"c-two"), 0);
    wait_for(WAIT, || async {
        events(&b).accepted_count(KIND).await.expect("count") == 4
    })
    .await;

    // Another round brings nothing new and applies nothing twice.
    let report = guildhall::gossip::catchup::round(events(&b), &b.node().federation).await;
    assert_eq!(report.accepted, 0, "{report:?}");
    assert_eq!(
        report.invalid, 1,
        "the forgery is refused again: {report:?}"
    );
    assert_eq!(seen_b.lock().expect("lock").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_far_behind_converges_after_the_origin_pruned_and_a_relay_cannot_skip_it_ahead() {
    let a = TestNode::spawn().await;
    let mut b = TestNode::spawn().await;
    let c = TestNode::spawn().await;
    let _seen_a = register_kind(&a, Some(subject_of)).await;
    let origin = a.node().server_id;
    b.node()
        .federation
        .directory()
        .refresh(&a.address())
        .await
        .expect("pin");
    let stopped = b.node.take().expect("running");
    stopped.shutdown();
    stopped.stopped().await;

    // While B is down, A says 600 things about 10 subjects, then prunes what is moot.
    for i in 0..600 {
        events(&a)
            .publish(KIND, format!("s{}:{i}", i % 10).into_bytes())
            .await
            .expect("publish");
    }
    let removed = events(&a).prune(now_ms() + 1).await.expect("prune");
    assert_eq!(removed, 590);
    assert_eq!(events(&a).mark(origin, KIND).await.expect("mark"), 600);
    assert_eq!(events(&a).prune(now_ms() + 1).await.expect("again"), 0);

    // B comes back: it takes the newest statement about each subject, once, and moves its mark
    // to A's (A is the origin, so its word on its own log counts).
    let node = guildhall::node::Node::start(b.config.clone())
        .await
        .expect("restart");
    b.node = Some(node);
    let seen_b = register_kind(&b, Some(subject_of)).await;
    wait_for(WAIT, || async {
        events(&b).mark(origin, KIND).await.expect("mark") == 600
    })
    .await;
    let payloads = |seen: &Seen| {
        let mut got: Vec<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, p)| String::from_utf8_lossy(p).into_owned())
            .collect();
        got.sort();
        got
    };
    let mut newest: Vec<String> = (590..600).map(|i| format!("s{}:{i}", i % 10)).collect();
    newest.sort();
    assert_eq!(payloads(&seen_b), newest);
    let report = guildhall::gossip::catchup::round(events(&b), &b.node().federation).await;
    assert_eq!(
        (report.accepted, report.duplicates),
        (0, 0),
        "nothing left to pull: {report:?}"
    );
    // A's sequence goes on from where it was, and B takes what follows.
    let next = events(&a)
        .publish(KIND, b"s0:next".to_vec())
        .await
        .expect("publish");
    assert_eq!(next.sequence(), 601);
    guildhall::gossip::catchup::round(events(&b), &b.node().federation).await;
    wait_for(WAIT, || async { count(&seen_b, b"s0:next") == 1 }).await;

    // C knows only B, which relays A's live events but can't move C's mark for A's log: a relay's
    // word would let it hide events by claiming they were pruned.
    c.node()
        .federation
        .directory()
        .refresh(&b.address())
        .await
        .expect("pin");
    let seen_c = register_kind(&c, Some(subject_of)).await;
    wait_for(WAIT, || async { seen_c.lock().expect("lock").len() == 11 }).await;
    assert_eq!(events(&c).mark(origin, KIND).await.expect("mark"), 0);
    newest.push("s0:next".into());
    newest.sort();
    assert_eq!(payloads(&seen_c), newest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_older_backup_numbers_its_events_after_what_peers_hold() {
    let mut a = TestNode::spawn().await;
    let b = TestNode::spawn().await;
    let (_seen_a, seen_b) = (register(&a).await, register(&b).await);
    let own = a.node().server_id;
    for (node, peer) in [(&a, &b), (&b, &a)] {
        node.node()
            .federation
            .directory()
            .refresh(&peer.address())
            .await
            .expect("pin");
    }
    for text in ["one", "two", "three"] {
        events(&a)
            .publish(KIND, text.as_bytes().to_vec())
            .await
            .expect("publish");
    }
    wait_for(WAIT, || async {
        guildhall::gossip::catchup::round(events(&b), &b.node().federation).await;
        count(&seen_b, b"three") == 1
    })
    .await;

    // A loses its last two events, as a restore from a backup taken after "one" would.
    let addr = a.stop().await;
    let db = rusqlite::Connection::open(a.config.database_path()).expect("open A's db");
    let lost = db
        .execute(
            "DELETE FROM server_events WHERE origin = ?1 AND seq > 1",
            [&own.as_bytes()[..]],
        )
        .expect("lose");
    assert_eq!(lost, 2);
    drop(db);
    a.start_on(addr).await;
    let _seen_a = register(&a).await;
    // Its catch-up finds B holding its own events up to 3, signed by its key: it numbers on.
    wait_for(WAIT, || async {
        events(&a).mark(own, KIND).await.expect("mark") == 3
    })
    .await;
    let next = events(&a)
        .publish(KIND, b"four".to_vec())
        .await
        .expect("publish");
    assert_eq!(next.sequence(), 4);
    wait_for(WAIT, || async {
        guildhall::gossip::catchup::round(events(&b), &b.node().federation).await;
        count(&seen_b, b"four") == 1
    })
    .await;
}

/// How many copies of gossip messages on the test topic `node` has received, from its swarm's
/// metrics (duplicates included; messages pulled by catch-up are not counted).
fn gossip_received(node: &TestNode) -> f64 {
    let topic = format!("hash=\"guildhall/server-events/v1/{KIND}\"");
    node.node()
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("guildhall_gossipsub_topic_msg_recv_counts_unfiltered_total{"))
        .filter(|l| l.contains(&topic))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Fifteen nodes on one machine (all from 127.0.0.1): gossipsub's IP colocation penalty would put
/// every peer of a node with 14 of them below the publish threshold, and nothing would be gossiped.
/// Peers on loopback are exempt, so an event reaches all of them by gossip, not only by pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_nodes_on_one_machine_gossip_to_each_other() {
    const NODES: usize = 15;
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(TestNode::spawn().await);
    }
    let mut seen = Vec::new();
    for node in &nodes {
        seen.push(register(node).await);
    }
    for node in &nodes[1..] {
        meet(node, &nodes[0]).await;
    }
    let hub = nodes[0].node();
    wait_for(WAIT, || async { hub.p2p_peer_count() >= NODES - 1 }).await;
    for node in &nodes {
        mesh_at_least(node, 1).await;
    }
    events(&nodes[0])
        .publish(KIND, b"to everyone".to_vec())
        .await
        .expect("publish");
    for (node, seen) in nodes[1..].iter().zip(&seen[1..]) {
        wait_for(WAIT, || async { count(seen, b"to everyone") == 1 }).await;
        assert!(
            gossip_received(node) >= 1.0,
            "the event came by gossip, not only by catch-up"
        );
    }
}

#[tokio::test]
async fn a_server_met_in_federation_is_caught_up_and_joins_the_mesh_at_once() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let (_seen_a, seen_b) = (register(&a).await, register(&b).await);
    events(&a)
        .publish(KIND, b"before we met".to_vec())
        .await
        .expect("publish");
    // A's first signed call to B is all that introduces them: each pins the other, and neither
    // waits for its periodic catch-up round to pull from and dial the other.
    a.federation_client(&b)
        .await
        .pull_server_events(pb::PullServerEventsRequest {
            kinds: vec![KIND.into()],
            ..Default::default()
        })
        .await
        .expect("a signed call");
    wait_for(WAIT, || async { count(&seen_b, b"before we met") == 1 }).await;
    mesh_at_least(&a, 1).await;
    events(&a)
        .publish(KIND, b"after".to_vec())
        .await
        .expect("publish");
    wait_for(WAIT, || async { count(&seen_b, b"after") == 1 }).await;
}

#[tokio::test]
async fn kademlia_finds_a_peer_nobody_introduced() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let (_seen_a, _seen_b, seen_c) = (register(&a).await, register(&b).await, register(&c).await);
    // A and C each know only B (and no server call pins anyone); A finds C through B's DHT.
    meet(&a, &b).await;
    meet(&c, &b).await;
    wait_for(WAIT, || async {
        a.node().p2p_peer_count() == 2 && c.node().p2p_peer_count() == 2
    })
    .await;
    // With B gone, gossip still gets from A to C over the link Kademlia made.
    drop(b);
    wait_for(WAIT, || async { a.node().p2p_peer_count() == 1 }).await;
    mesh_at_least(&a, 1).await;
    events(&a)
        .publish(KIND, b"found you".to_vec())
        .await
        .expect("publish");
    wait_for(WAIT, || async { count(&seen_c, b"found you") == 1 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_server_events_is_a_signed_call_with_checked_fields() {
    let a = TestNode::spawn().await;
    let b = TestNode::spawn().await;
    let _seen = register(&b).await;
    events(&b)
        .publish(KIND, b"x".to_vec())
        .await
        .expect("publish");
    // Unsigned: refused by the verify layer.
    assert_status(
        b.client()
            .await
            .pull_server_events(pb::PullServerEventsRequest::default())
            .await,
        Code::Unauthenticated,
        "guildhall-origin",
    );
    let mut signed = a.federation_client(&b).await;
    let bad_kind = pb::PullServerEventsRequest {
        origin: b.audience().to_hex(),
        kind: "Not A Kind".into(),
        ..Default::default()
    };
    assert_status(
        signed.pull_server_events(bad_kind).await,
        Code::InvalidArgument,
        "kind: must be 1-64 characters",
    );
    let bad_origin = pb::PullServerEventsRequest {
        origin: "zz".into(),
        kind: KIND.into(),
        ..Default::default()
    };
    assert_status(
        signed.pull_server_events(bad_origin).await,
        Code::InvalidArgument,
        "origin: must be lowercase hex",
    );
    let heads = signed
        .pull_server_events(pb::PullServerEventsRequest {
            kinds: vec![KIND.into()],
            ..Default::default()
        })
        .await
        .expect("heads")
        .into_inner()
        .heads;
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].last_sequence, 1);
    let page = signed
        .pull_server_events(pb::PullServerEventsRequest {
            origin: b.audience().to_hex(),
            kind: KIND.into(),
            after_sequence: 0,
            limit: 10,
            kinds: Vec::new(),
        })
        .await
        .expect("events")
        .into_inner()
        .events;
    assert_eq!(page.len(), 1);
    let event = ServerEvent::from_proto(page[0].clone()).expect("well formed");
    assert!(
        event.verify().is_ok(),
        "served events carry the origin's signature"
    );
}
