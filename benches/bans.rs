//! Ban enforcement across nodes: N nodes (3, 5, 10 unless `GUILDHALL_BENCH_NODES` lists others,
//! e.g. `25,50,100`) on loopback in this process, node `i` meeting
//! node 0 (the host) and node `i-1` in the gossip mesh; every other node trusts the bans of the
//! host's guild (`trusted_ban_lists` naming the host and that guild). Each round, one user who is
//! a member of a guild on every node is banned on the host; the clock runs from the `BanUser` call until that node's guild owner sees
//! the user's `member_removed` on their event stream, i.e. the ban is enforced there. Prints one
//! JSON object: per N, p50/p99 of the time to enforcement on the slowest node (the ban enforced
//! everywhere) and over every node, the rounds that missed the deadline, and each node's gossip
//! traffic per ban, read from its own gossipsub metrics (`/metrics`): message copies received
//! (duplicates included, which is what the mesh costs), distinct messages, and copies sent.
//!
//! The path measured: the host signs the notice and publishes it as a server event (gossipsub);
//! each node verifies the event and the notice, stores it, bans the user from its own guilds and
//! announces the removal. (`PropagateBan` through the outbox reaches homeservers of the host's
//! members too; here every member lives on the host, so gossip alone carries the ban.)
//!
//! Run: `cargo bench --bench bans` (release). `GUILDHALL_BENCH_ROUNDS=5` for a quicker run,
//! `GUILDHALL_BENCH_NODES=25,50,100` for the large meshes.

use std::time::{Duration, Instant};

use futures::StreamExt;
use guildhall::client::ClientIdentity;
use guildhall::config::{Config, TrustedBanList};
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use serde_json::json;
use tonic::transport::Channel;

/// How long one round may take before it counts as missed.
const ROUND_DEADLINE: Duration = Duration::from_secs(10);

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

/// The sum of every series of the counter `name` (all label sets) in an OpenMetrics text.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.chars().next()? {
                '{' => rest.rsplit_once(' ')?.1,
                ' ' => rest.trim(),
                _ => return None,
            };
            value.parse::<f64>().ok()
        })
        .sum()
}

/// One node's gossip counters at one moment.
#[derive(Clone, Copy, Default)]
struct Traffic {
    received_copies: f64,
    received_distinct: f64,
    received_bytes: f64,
    sent_copies: f64,
}

impl Traffic {
    fn of(node: &RunningNode) -> Self {
        let text = node.metrics().encode();
        let name = |n: &str| format!("guildhall_gossipsub_{n}_total");
        Self {
            received_copies: counter(&text, &name("topic_msg_recv_counts_unfiltered")),
            received_distinct: counter(&text, &name("topic_msg_recv_counts")),
            received_bytes: counter(&text, &name("topic_msg_recv_bytes_unfiltered")),
            sent_copies: counter(&text, &name("topic_msg_sent_counts")),
        }
    }

    fn per_round(after: Self, before: Self, rounds: usize) -> Self {
        let r = rounds.max(1) as f64;
        Self {
            received_copies: (after.received_copies - before.received_copies) / r,
            received_distinct: (after.received_distinct - before.received_distinct) / r,
            received_bytes: (after.received_bytes - before.received_bytes) / r,
            sent_copies: (after.sent_copies - before.sent_copies) / r,
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

async fn meet(node: &RunningNode, peer: &RunningNode) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.p2p_addrs().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = GuildHallClient::connect(format!("http://{}", peer.grpc_addr))
        .await
        .expect("connect");
    let info = client
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner();
    node.server_events.meet_peer(&info).await;
}

/// What one scenario measured.
struct Outcome {
    slowest: Vec<Duration>,
    every: Vec<Duration>,
    missed: usize,
    /// Gossip traffic per ban round, per node (the host first).
    traffic: Vec<Traffic>,
}

/// One scenario of `n` nodes and `rounds` bans.
async fn scenario(n: usize, rounds: usize) -> Outcome {
    let mut nodes = vec![start(Vec::new()).await];
    let trust = TrustedBanList {
        server: nodes[0].node.server_id.to_hex(),
        guild: Some(nodes[0].guild_id.clone()),
    };
    for _ in 1..n {
        nodes.push(start(vec![trust.clone()]).await);
    }
    for i in 1..n {
        meet(&nodes[i].node, &nodes[0].node).await;
        if i > 1 {
            meet(&nodes[i].node, &nodes[i - 1].node).await;
        }
    }
    // Let the mesh form: every node sees at least one mesh peer on the ban topic.
    let deadline = Instant::now() + Duration::from_secs(30);
    for bench in &nodes {
        let gossip = bench.node.server_events.gossip().clone();
        while gossip.mesh_peers("ban").await == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

    let before: Vec<Traffic> = nodes.iter().map(|b| Traffic::of(&b.node)).collect();
    let (mut slowest, mut every, mut missed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let user = ClientIdentity::generate("phone", now_ms() - 1000);
        let user_id = user.user_id();
        for bench in &mut nodes {
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
        let host = &mut nodes[0];
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
        let waits = streams.iter_mut().zip(&nodes).map(|(stream, bench)| {
            let (user_id, guild_id) = (user_id.clone(), bench.guild_id.clone());
            async move {
                tokio::time::timeout(ROUND_DEADLINE, async {
                    while let Some(Ok(message)) = stream.next().await {
                        if let Some(Event::MemberRemoved(m)) = message.event
                            && m.user_id == user_id
                            && m.guild_id == guild_id
                        {
                            return Some(started.elapsed());
                        }
                    }
                    None
                })
                .await
                .ok()
                .flatten()
            }
        });
        let times = futures::future::join_all(waits).await;
        if times.iter().any(Option::is_none) {
            missed += 1;
            continue;
        }
        let times: Vec<Duration> = times.into_iter().flatten().collect();
        slowest.push(*times.iter().max().expect("nodes"));
        every.extend(times);
    }
    // Late copies of the last round's messages still count for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let traffic = nodes
        .iter()
        .zip(before)
        .map(|(b, before)| Traffic::per_round(Traffic::of(&b.node), before, rounds))
        .collect();
    for bench in nodes {
        bench.node.shutdown();
    }
    slowest.sort();
    every.sort();
    Outcome {
        slowest,
        every,
        missed,
        traffic,
    }
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
    let mut results = Vec::new();
    for n in node_counts() {
        let Outcome {
            slowest,
            every,
            missed,
            traffic,
        } = scenario(n, rounds).await;
        let others = &traffic[1..];
        let of = |f: fn(&Traffic) -> f64| spread(others.iter().map(f).collect());
        results.push(json!({
            "nodes": n,
            "rounds": rounds,
            "missed_rounds": missed,
            "enforced_on_all_nodes_ms": {
                "p50": percentile(&slowest, 0.5),
                "p99": percentile(&slowest, 0.99),
                "max": percentile(&slowest, 1.0),
            },
            "enforced_per_node_ms": {
                "p50": percentile(&every, 0.5),
                "p99": percentile(&every, 0.99),
            },
            "gossip_per_ban_per_node": {
                "received_copies": of(|t| t.received_copies),
                "received_distinct": of(|t| t.received_distinct),
                "received_bytes": of(|t| t.received_bytes),
                "sent_copies": of(|t| t.sent_copies),
            },
            "gossip_per_ban_host_sent_copies": traffic[0].sent_copies,
        }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "ban_enforcement": results })).expect("json")
    );
}
