//! Load program for signed server-to-server calls: prints one JSON object.
//!
//! Two nodes on loopback; node A calls `VerifyUser` on node B through its `FederationClient`
//! (every call signed by A, verified by B's layer: signature, clock window, nonce stored in B's
//! database), sequentially and with 64 calls in flight, with p50/p99 latency. For comparison, the
//! same client shape calling the unsigned `GetServerInfo`.
//!
//! Then meshes of 3, 5 and 10 nodes in one process: every node calls `VerifyUser` on every other
//! node at once (one call in flight per ordered pair, so 6, 20 and 90 in flight), for the
//! aggregate signed calls per second and their latency.
//!
//! Run: `cargo bench --bench federation` (release build). Sizes: `GUILDHALL_BENCH_SCALE=0.1` for a
//! quick run.

use std::time::{Duration, Instant};

use guildhall::client::ClientIdentity;
use guildhall::config::Config;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::json;

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("GUILDHALL_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(10)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

async fn start(dir: &std::path::Path) -> RunningNode {
    let config = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // Nodes on loopback reach each other; load comes from one address.
        allow_private_addresses: true,
        max_connections_per_address: 0,
        settings: guildhall::limits::Settings::default().unlimited(),
        ..Config::default()
    };
    Node::start(config).await.expect("node starts")
}

/// Runs `n` calls with `in_flight` at a time; `call(i)` makes call number `i`.
async fn measure<F, Fut>(n: usize, in_flight: usize, call: F) -> serde_json::Value
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Duration> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker;
            while i < n {
                latencies.push(call(i).await);
                i += in_flight;
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for task in tasks {
        latencies.extend(task.await.expect("worker"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    json!({
        "calls": n,
        "in_flight": in_flight,
        "calls_per_sec": (n as f64 / elapsed).round(),
        "p50_ms": percentile(&latencies, 0.5),
        "p99_ms": percentile(&latencies, 0.99),
    })
}

#[tokio::main]
async fn main() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (a, b) = (start(dir_a.path()).await, start(dir_b.path()).await);
    let b_addr = b.info.canonical_address.clone();

    // A user of B, whose K_id-signed challenges A presents.
    let user = ClientIdentity::generate("bench", now_ms() - 1000);
    GuildHallClient::connect(b_addr.clone())
        .await
        .expect("connect")
        .register(user.register_request(&b.server_id, "Bench", None, now_ms()))
        .await
        .expect("register");
    let signed = a
        .federation
        .client()
        .connect(&b_addr)
        .await
        .expect("federation connect");
    let base = now_ms();
    let audience = b.server_id;
    let user = std::sync::Arc::new(user);

    let mut results = serde_json::Map::new();
    let mut offset = 0;
    for (name, n, in_flight) in [
        ("signed_verify_user_sequential", scaled(2_000), 1),
        ("signed_verify_user_64_in_flight", scaled(10_000), 64),
    ] {
        let (client, user) = (signed.clone(), user.clone());
        let start_offset = offset;
        offset += n;
        let value = measure(n, in_flight, move |i| {
            let (mut client, user) = (client.clone(), user.clone());
            async move {
                // Distinct challenge timestamps (all inside the clock window): no user-level replay.
                let request = pb::VerifyUserRequest {
                    user_id: user.user_id(),
                    challenge: user.verify_challenge(&audience, base - (start_offset + i) as u64),
                };
                let t = Instant::now();
                client.verify_user(request).await.expect("signed call");
                t.elapsed()
            }
        })
        .await;
        results.insert(name.into(), value);
    }
    let plain = GuildHallClient::connect(b_addr.clone())
        .await
        .expect("connect");
    for (name, n, in_flight) in [
        ("unsigned_get_server_info_sequential", scaled(2_000), 1),
        ("unsigned_get_server_info_64_in_flight", scaled(10_000), 64),
    ] {
        let client = plain.clone();
        let value = measure(n, in_flight, move |_| {
            let mut client = client.clone();
            async move {
                let t = Instant::now();
                client.get_server_info(pb::Empty {}).await.expect("call");
                t.elapsed()
            }
        })
        .await;
        results.insert(name.into(), value);
    }
    a.shutdown();
    b.shutdown();
    for n in [3, 5, 10] {
        results.insert(format!("mesh_{n}_nodes_all_to_all"), mesh(n).await);
    }
    println!("{}", serde_json::Value::Object(results));
}

/// `n` nodes, each with one user; every node calls `VerifyUser` on every other for its user,
/// one call in flight per ordered pair, `scaled(6000)` calls in all.
async fn mesh(n: usize) -> serde_json::Value {
    let dirs: Vec<_> = (0..n)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    for dir in &dirs {
        nodes.push(start(dir.path()).await);
    }
    let mut users = Vec::new();
    for node in &nodes {
        let user = ClientIdentity::generate("bench", now_ms() - 1000);
        GuildHallClient::connect(node.info.canonical_address.clone())
            .await
            .expect("connect")
            .register(user.register_request(&node.server_id, "Bench", None, now_ms()))
            .await
            .expect("register");
        users.push(std::sync::Arc::new(user));
    }
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|from| {
            (0..n)
                .filter(move |to| *to != from)
                .map(move |to| (from, to))
        })
        .collect();
    let mut clients = Vec::new();
    for (from, to) in &pairs {
        let address = nodes[*to].info.canonical_address.clone();
        let client = nodes[*from]
            .federation
            .client()
            .connect(&address)
            .await
            .expect("federation connect");
        clients.push((client, nodes[*to].server_id, users[*to].clone()));
    }
    let calls = scaled(6_000);
    let base = now_ms();
    let clients = std::sync::Arc::new(clients);
    let value = measure(calls, pairs.len(), move |i| {
        let clients = clients.clone();
        async move {
            // Worker w makes calls w, w + pairs, …: one ordered pair per worker.
            let (client, audience, user) = &clients[i % clients.len()];
            let request = pb::VerifyUserRequest {
                user_id: user.user_id(),
                // Distinct timestamps: a challenge is refused the second time at its homeserver.
                challenge: user.verify_challenge(audience, base - i as u64),
            };
            let t = Instant::now();
            client
                .clone()
                .verify_user(request)
                .await
                .expect("signed call");
            t.elapsed()
        }
    })
    .await;
    for node in &nodes {
        node.shutdown();
    }
    value
}
