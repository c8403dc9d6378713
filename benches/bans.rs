//! Propagation across nodes: bans, profile updates and homeserver moves, on N nodes (3, 5, 10
//! unless `GUILDHALL_BENCH_NODES` lists others, e.g. `25,50,100`) on loopback in this process,
//! node `i` meeting node 0 (the host) and node `i-1` in the gossip mesh. Every node's guild owner
//! watches their event stream; a round's clock runs from the call on one node until each node's
//! owner sees what the change means there. Three phases on the same mesh, in this order:
//!
//! - **ban**: every other node trusts the bans of the host's guild (`trusted_ban_lists`). A user
//!   who is a member of a guild on every node is banned on the host; each node's owner sees the
//!   user's `member_removed` (the ban enforced there). The host signs a notice and gossips it as a
//!   server event; every member lives on the host, so gossip alone carries it.
//! - **profile**: one traveller, whose homeserver is the host, is a member of every node's guild
//!   (remote joins vouched for by the host). Each round they change their name with a signed
//!   `UpdateUser` at their homeserver; each owner sees `user_updated` with the new name. The host
//!   queues `UpdateFederatedProfile` for every server in the traveller's list (the outbox) and
//!   gossips the same change as a `profile-update` server event: both paths, as in production.
//! - **move**: each round the traveller moves to another node with a `Login` there carrying the
//!   next statement of their K_id-signed chain and naming every node as a migration target; each
//!   owner sees `user_updated` with the new homeserver. The new homeserver queues
//!   `UpdateHomeServer` for every target and gossips the statement (`homeserver-move`).
//!
//! Before each phase the bench waits for the mesh to go quiet (every outbox empty, no gossip
//! arriving for a second), so one phase's aftermath does not load the next.
//!
//! Prints one JSON object: per phase and N, p50/p99 of the time to the slowest node (the change
//! seen everywhere) and over every node, the rounds that missed the deadline, and each node's
//! gossip traffic per round on the phase's topic, read from its own gossipsub metrics
//! (`/metrics`): message copies received (duplicates included, which is what the mesh costs),
//! distinct messages, bytes, copies sent; for profile and move also the direct calls each node
//! received and how its gossip copies were judged (accepted first, or ignored as already applied).
//!
//! Run: `cargo bench --bench bans` (release). `GUILDHALL_BENCH_ROUNDS=5` for a quicker run,
//! `GUILDHALL_BENCH_NODES=25,50,100` for the large meshes, `GUILDHALL_BENCH_PHASES=profile,move`
//! to run only some phases (the mesh is built either way).

use std::time::{Duration, Instant};

use futures::StreamExt;
use guildhall::client::ClientIdentity;
use guildhall::config::{Config, TrustedBanList};
use guildhall::federation::gossiped::{MOVE_KIND, PROFILE_KIND};
use guildhall::federation::moves::MAX_TARGETS;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use serde_json::json;
use tonic::codec::Streaming;
use tonic::transport::Channel;

/// How long one round may take before it counts as missed.
const ROUND_DEADLINE: Duration = Duration::from_secs(10);
/// How long to wait for the mesh to go quiet before a phase.
const SETTLE_MAX: Duration = Duration::from_secs(180);

fn rounds() -> usize {
    std::env::var("GUILDHALL_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

fn node_counts() -> Vec<usize> {
    std::env::var("GUILDHALL_BENCH_NODES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![3, 5, 10])
}

/// What propagates in a phase.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ban,
    Profile,
    Move,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Ban, Phase::Profile, Phase::Move];

    fn name(self) -> &'static str {
        match self {
            Phase::Ban => "ban",
            Phase::Profile => "profile",
            Phase::Move => "move",
        }
    }

    /// The server-event kind whose topic carries it.
    fn kind(self) -> &'static str {
        match self {
            Phase::Ban => "ban",
            Phase::Profile => PROFILE_KIND,
            Phase::Move => MOVE_KIND,
        }
    }

    /// The server call that carries it directly (the outbox), if any.
    fn direct_method(self) -> Option<&'static str> {
        match self {
            Phase::Ban => None,
            Phase::Profile => Some("guildhall.v1.GuildHall/UpdateFederatedProfile"),
            Phase::Move => Some("guildhall.v1.GuildHall/UpdateHomeServer"),
        }
    }

    /// The phases named in `GUILDHALL_BENCH_PHASES`, all by default.
    fn chosen() -> Vec<Phase> {
        let Ok(list) = std::env::var("GUILDHALL_BENCH_PHASES") else {
            return Self::ALL.to_vec();
        };
        Self::ALL
            .into_iter()
            .filter(|p| list.split(',').any(|n| n.trim() == p.name()))
            .collect()
    }
}

/// The sum of every series of the counter `name` whose labels contain each of `having` (e.g.
/// `result="accepted"`), in an OpenMetrics text.
fn counter(text: &str, name: &str, having: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.chars().next()? {
                '{' => {
                    let (labels, value) = rest.rsplit_once(' ')?;
                    if !having.iter().all(|h| labels.contains(h)) {
                        return None;
                    }
                    value
                }
                ' ' if having.is_empty() => rest.trim(),
                _ => return None,
            };
            value.parse::<f64>().ok()
        })
        .sum()
}

/// One node's counters for one phase at one moment.
#[derive(Clone, Copy, Default)]
struct Traffic {
    received_copies: f64,
    received_distinct: f64,
    received_bytes: f64,
    sent_copies: f64,
    direct_calls: f64,
    gossip_accepted: f64,
    gossip_ignored: f64,
}

impl Traffic {
    fn of(node: &RunningNode, phase: Phase) -> Self {
        let text = node.metrics().encode();
        let name = |n: &str| format!("guildhall_gossipsub_{n}_total");
        let topic = format!("hash=\"guildhall/server-events/v1/{}\"", phase.kind());
        let on_topic = |n: &str| counter(&text, &name(n), &[&topic]);
        let result = |r: &str| {
            counter(
                &text,
                "guildhall_gossip_messages_received_total",
                &[&format!("result=\"{r}\"")],
            )
        };
        Self {
            received_copies: on_topic("topic_msg_recv_counts_unfiltered"),
            received_distinct: on_topic("topic_msg_recv_counts"),
            received_bytes: on_topic("topic_msg_recv_bytes_unfiltered"),
            sent_copies: on_topic("topic_msg_sent_counts"),
            direct_calls: phase.direct_method().map_or(0.0, |m| {
                counter(
                    &text,
                    "guildhall_grpc_requests_total",
                    &[&format!("method=\"{m}\"")],
                )
            }),
            gossip_accepted: result("accepted"),
            gossip_ignored: result("ignored"),
        }
    }

    fn per_round(after: Self, before: Self, rounds: usize) -> Self {
        let r = rounds.max(1) as f64;
        let d = |a: f64, b: f64| (a - b) / r;
        Self {
            received_copies: d(after.received_copies, before.received_copies),
            received_distinct: d(after.received_distinct, before.received_distinct),
            received_bytes: d(after.received_bytes, before.received_bytes),
            sent_copies: d(after.sent_copies, before.sent_copies),
            direct_calls: d(after.direct_calls, before.direct_calls),
            gossip_accepted: d(after.gossip_accepted, before.gossip_accepted),
            gossip_ignored: d(after.gossip_ignored, before.gossip_ignored),
        }
    }
}

/// p50 and max of `values`, rounded to one decimal.
fn spread(mut values: Vec<f64>) -> serde_json::Value {
    values.sort_by(f64::total_cmp);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let at = |p: f64| values.get(((values.len() as f64 - 1.0) * p).round() as usize);
    json!({
        "p50": at(0.5).copied().map(round),
        "max": values.last().copied().map(round),
    })
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[idx].as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// A node with its guild and the guild owner's session.
struct BenchNode {
    node: RunningNode,
    client: GuildHallClient<Channel>,
    owner_token: String,
    guild_id: String,
    invite: String,
    _dir: tempfile::TempDir,
}

async fn register(
    client: &mut GuildHallClient<Channel>,
    node: &RunningNode,
    identity: &ClientIdentity,
) -> String {
    client
        .register(identity.register_request(&node.server_id, "Bench", None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token
}

async fn start(trusted: Vec<TrustedBanList>) -> BenchNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // Nodes on loopback reach each other; load comes from one address.
        allow_private_addresses: true,
        max_connections_per_address: 0,
        settings: guildhall::limits::Settings::default().unlimited(),
        trusted_ban_lists: trusted,
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node starts");
    let mut client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect");
    let owner = ClientIdentity::generate("owner", now_ms() - 1000);
    let owner_token = register(&mut client, &node, &owner).await;
    let guild = client
        .create_guild(authed(
            &owner_token,
            pb::CreateGuildRequest {
                name: "Local".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("guild")
        .into_inner();
    BenchNode {
        node,
        client,
        owner_token,
        guild_id: guild.guild.expect("guild").id,
        invite: guild.token,
        _dir: dir,
    }
}

async fn info(node: &RunningNode) -> pb::ServerInfoResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.p2p_addrs().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect");
    client
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner()
}

/// What one phase measured.
struct Outcome {
    slowest: Vec<Duration>,
    every: Vec<Duration>,
    missed: usize,
    /// Traffic per round, per node (the host first).
    traffic: Vec<Traffic>,
}

/// Waits, on every owner's stream at once, for the event `seen` picks out there (given the
/// node's index); each node's time since `started`, or `None` for a node that missed the
/// deadline.
async fn seen_everywhere(
    streams: &mut [Streaming<pb::StreamResponse>],
    started: Instant,
    seen: impl Fn(usize, &Event) -> bool + Copy,
) -> Vec<Option<Duration>> {
    let waits = streams
        .iter_mut()
        .enumerate()
        .map(|(i, stream)| async move {
            tokio::time::timeout(ROUND_DEADLINE, async {
                while let Some(Ok(message)) = stream.next().await {
                    if message.event.as_ref().is_some_and(|e| seen(i, e)) {
                        return Some(started.elapsed());
                    }
                }
                None
            })
            .await
            .ok()
            .flatten()
        });
    futures::future::join_all(waits).await
}

/// The mesh every phase runs on: the nodes, each owner's live event stream, and the traveller
/// (a user of the host who is a member of every node's guild), with the head of their chain of
/// homeserver moves.
struct Mesh {
    nodes: Vec<BenchNode>,
    streams: Vec<Streaming<pb::StreamResponse>>,
    traveller: ClientIdentity,
    traveller_token: String,
    moves: u64,
    last_move: Vec<u8>,
}

impl Mesh {
    async fn build(n: usize) -> Self {
        let mut nodes = vec![start(Vec::new()).await];
        let trust = TrustedBanList {
            server: nodes[0].node.server_id.to_hex(),
            guild: Some(nodes[0].guild_id.clone()),
        };
        for _ in 1..n {
            nodes.push(start(vec![trust.clone()]).await);
        }
        let mut infos = Vec::with_capacity(n);
        for bench in &nodes {
            infos.push(info(&bench.node).await);
        }
        for i in 1..n {
            nodes[i].node.server_events.meet_peer(&infos[0]).await;
            if i > 1 {
                nodes[i].node.server_events.meet_peer(&infos[i - 1]).await;
            }
        }
        // The host and every other node have pinned each other's keys, as the traveller's
        // homeserver and the hosts of their guilds would have (`GUILDHALL_BENCH_PIN=all`: every
        // node every other, which also has every node dial every other, a full mesh). On one
        // machine all nodes call from one address, and a node learns at most 10 unknown servers
        // a minute per calling address (`DISCOVERY_PER_ADDRESS_PER_MINUTE`), which would
        // throttle the remote joins below to what no real mesh sees. The moves' direct calls
        // between other nodes still meet that limit and are retried; gossip carries the moves.
        let pin_all = std::env::var("GUILDHALL_BENCH_PIN").is_ok_and(|v| v == "all");
        for (i, bench) in nodes.iter().enumerate() {
            for (j, info) in infos.iter().enumerate() {
                if i != j && (pin_all || i == 0 || j == 0) {
                    bench
                        .node
                        .federation
                        .directory()
                        .observe(&info.canonical_address, info)
                        .await
                        .expect("pin a peer's key");
                }
            }
        }
        // Let the mesh form: every node sees at least one mesh peer on each phase's topic.
        let deadline = Instant::now() + Duration::from_secs(30);
        for bench in &nodes {
            let gossip = bench.node.server_events.gossip().clone();
            for phase in Phase::ALL {
                while gossip.mesh_peers(phase.kind()).await == 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // The traveller lives on the host and joins every guild (elsewhere vouched for by it).
        let traveller = ClientIdentity::generate("phone", now_ms() - 1000);
        let home = nodes[0].node.info.canonical_address.clone();
        let host = &mut nodes[0];
        let traveller_token = register(&mut host.client, &host.node, &traveller).await;
        for (i, bench) in nodes.iter_mut().enumerate() {
            let request = if i == 0 {
                traveller.join_invite_request(
                    &bench.node.server_id,
                    &bench.invite,
                    "Traveller",
                    now_ms(),
                )
            } else {
                traveller.join_invite_request_from(
                    &bench.node.server_id,
                    &bench.invite,
                    "Traveller",
                    &home,
                    now_ms(),
                )
            };
            bench.client.join_invite(request).await.expect("join");
        }
        // The owners' event streams, live before the first round.
        let mut streams = Vec::new();
        for bench in &nodes {
            let mut client = bench.client.clone();
            streams.push(
                client
                    .subscribe_events(authed(
                        &bench.owner_token,
                        pb::SubscribeRequest {
                            resume_from_event_id: String::new(),
                        },
                    ))
                    .await
                    .expect("subscribe")
                    .into_inner(),
            );
        }
        Self {
            nodes,
            streams,
            traveller,
            traveller_token,
            moves: 0,
            last_move: Vec::new(),
        }
    }

    /// One ban round: a new user joins every guild, then is banned on the host.
    async fn ban_round(&mut self) -> Vec<Option<Duration>> {
        let user = ClientIdentity::generate("phone", now_ms() - 1000);
        let user_id = user.user_id();
        for bench in &mut self.nodes {
            register(&mut bench.client, &bench.node, &user).await;
            bench
                .client
                .join_invite(user.join_invite_request(
                    &bench.node.server_id,
                    &bench.invite,
                    "Target",
                    now_ms(),
                ))
                .await
                .expect("join");
        }
        let started = Instant::now();
        let host = &mut self.nodes[0];
        host.client
            .ban_user(authed(
                &host.owner_token,
                pb::BanUserRequest {
                    guild_id: host.guild_id.clone(),
                    user_id: user_id.clone(),
                    reason: "bench".into(),
                },
            ))
            .await
            .expect("ban");
        let guilds: Vec<String> = self.nodes.iter().map(|b| b.guild_id.clone()).collect();
        seen_everywhere(&mut self.streams, started, |i, event| {
            matches!(event, Event::MemberRemoved(m) if m.user_id == user_id && m.guild_id == guilds[i])
        })
        .await
    }

    /// One profile round: the traveller renames themselves at their homeserver (the host).
    async fn profile_round(&mut self, round: usize) -> Vec<Option<Duration>> {
        let name = format!("Traveller {round}");
        let mut update = pb::UpdateUserRequest {
            name: Some(name.clone()),
            timestamp: now_ms(),
            ..Default::default()
        };
        self.traveller.sign_update(&mut update);
        let user_id = self.traveller.user_id();
        let started = Instant::now();
        let host = &mut self.nodes[0];
        host.client
            .update_user(authed(&self.traveller_token, update))
            .await
            .expect("update user");
        seen_everywhere(&mut self.streams, started, |_, event| {
            matches!(event, Event::UserUpdated(u)
                if u.user.as_ref().is_some_and(|u| u.id == user_id && u.name == name))
        })
        .await
    }

    /// One move round: the traveller moves to the next node (never the one they live on) with a
    /// login there carrying the next statement of their chain; the first `MAX_TARGETS` other
    /// nodes are named as targets, the rest learn it by gossip.
    async fn move_round(&mut self, round: usize) -> Vec<Option<Duration>> {
        let to = 1 + round % (self.nodes.len() - 1);
        let address = self.nodes[to].node.info.canonical_address.clone();
        self.moves += 1;
        let statement = self.traveller.homeserver_move(
            &address,
            now_ms(),
            self.moves,
            std::mem::take(&mut self.last_move),
        );
        self.last_move = statement.hash().to_vec();
        let audience = self.nodes[to].node.server_id;
        let mut login = self.traveller.login_request(&audience, now_ms());
        statement.apply_to_login(&mut login);
        login.migration_targets = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != to)
            .map(|(_, b)| b.node.info.canonical_address.clone())
            .take(MAX_TARGETS)
            .collect();
        self.traveller.sign_login(&audience, &mut login);
        let user_id = self.traveller.user_id();
        let started = Instant::now();
        let reply = self.nodes[to]
            .client
            .login(login)
            .await
            .expect("login with the move")
            .into_inner();
        self.traveller_token = reply.token;
        seen_everywhere(&mut self.streams, started, |_, event| {
            matches!(event, Event::UserUpdated(u)
                if u.user.as_ref().is_some_and(|u| u.id == user_id && u.homeserver == address))
        })
        .await
    }

    /// Waits (at most `SETTLE_MAX`) until the mesh is quiet: every outbox empty and no node's
    /// gossip counters moving for a second. What a phase leaves behind (the traveller's joins
    /// announced to every node, a backlog of direct calls) would otherwise load the next one.
    async fn settle(&self) {
        let deadline = Instant::now() + SETTLE_MAX;
        let received = |nodes: &[BenchNode]| -> f64 {
            nodes
                .iter()
                .map(|b| {
                    counter(
                        &b.node.metrics().encode(),
                        "guildhall_gossip_messages_received_total",
                        &[],
                    )
                })
                .sum()
        };
        let mut last = received(&self.nodes);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut pending = 0;
            for bench in &self.nodes {
                pending += bench.node.outbox.stats().await.map_or(0, |s| s.pending);
            }
            let now = received(&self.nodes);
            if pending == 0 && now == last {
                return;
            }
            last = now;
        }
        eprintln!("the mesh did not settle within {SETTLE_MAX:?}; measuring anyway");
    }

    /// Runs `rounds` rounds of `phase` and reads every node's counters around them.
    async fn run(&mut self, phase: Phase, rounds: usize) -> Outcome {
        self.settle().await;
        let before: Vec<Traffic> = self
            .nodes
            .iter()
            .map(|b| Traffic::of(&b.node, phase))
            .collect();
        let (mut slowest, mut every, mut missed) = (Vec::new(), Vec::new(), 0);
        for round in 0..rounds {
            let times = match phase {
                Phase::Ban => self.ban_round().await,
                Phase::Profile => self.profile_round(round).await,
                Phase::Move => self.move_round(round).await,
            };
            if times.iter().any(Option::is_none) {
                missed += 1;
                continue;
            }
            let times: Vec<Duration> = times.into_iter().flatten().collect();
            slowest.push(*times.iter().max().expect("nodes"));
            every.extend(times);
        }
        // Late copies and the outbox's direct calls of the last round still count for it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let traffic = self
            .nodes
            .iter()
            .zip(before)
            .map(|(b, before)| Traffic::per_round(Traffic::of(&b.node, phase), before, rounds))
            .collect();
        slowest.sort();
        every.sort();
        Outcome {
            slowest,
            every,
            missed,
            traffic,
        }
    }

    fn shutdown(self) {
        for bench in self.nodes {
            bench.node.shutdown();
        }
    }
}

/// One phase's result as JSON.
fn report(phase: Phase, n: usize, rounds: usize, outcome: Outcome) -> serde_json::Value {
    let Outcome {
        slowest,
        every,
        missed,
        traffic,
    } = outcome;
    let others = &traffic[1..];
    let of = |f: fn(&Traffic) -> f64| spread(others.iter().map(f).collect());
    let all = |f: fn(&Traffic) -> f64| spread(traffic.iter().map(f).collect());
    let mut result = json!({
        "phase": phase.name(),
        "nodes": n,
        "rounds": rounds,
        "missed_rounds": missed,
        "seen_on_all_nodes_ms": {
            "p50": percentile(&slowest, 0.5),
            "p99": percentile(&slowest, 0.99),
            "max": percentile(&slowest, 1.0),
        },
        "seen_per_node_ms": {
            "p50": percentile(&every, 0.5),
            "p99": percentile(&every, 0.99),
        },
        "gossip_per_round_per_other_node": {
            "received_copies": of(|t| t.received_copies),
            "received_distinct": of(|t| t.received_distinct),
            "received_bytes": of(|t| t.received_bytes),
            "sent_copies": of(|t| t.sent_copies),
        },
        "gossip_per_round_host_sent_copies": traffic[0].sent_copies,
    });
    if phase.direct_method().is_some() {
        result["per_round_per_node"] = json!({
            "direct_calls_received": all(|t| t.direct_calls),
            "gossip_accepted": all(|t| t.gossip_accepted),
            "gossip_ignored": all(|t| t.gossip_ignored),
        });
    }
    result
}

#[tokio::main]
async fn main() {
    // Warnings and errors of the nodes on stderr (`RUST_LOG` to change).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rounds = rounds();
    let phases = Phase::chosen();
    let mut results = Vec::new();
    for n in node_counts() {
        let mut mesh = Mesh::build(n).await;
        for &phase in &phases {
            let outcome = mesh.run(phase, rounds).await;
            let result = report(phase, n, rounds, outcome);
            eprintln!("{result}");
            results.push(result);
        }
        mesh.shutdown();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "propagation": results })).expect("json")
    );
}
