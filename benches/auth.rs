//! Load program for the node foundation: prints one JSON object.
//!
//! - signature verifications per second (one core, the `register` payload);
//! - registrations per second over loopback gRPC (sequential, and 16 in flight);
//! - authenticated unary calls per second (`GetMyData`) with 1 and 64 in flight, with p50/p99.
//!
//! Run: `cargo bench --bench auth` (release build). Sizes: `GUILDHALL_BENCH_SCALE=0.1` for a
//! quick run.

use std::time::{Duration, Instant};

use guildhall::client::ClientIdentity;
use guildhall::config::Config;
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::identity::signing::{self, RegisterPayload, Signable};
use guildhall::node::Node;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::json;
use tonic::transport::Channel;

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

fn verifies_per_sec() -> f64 {
    let id = SecretKey::generate();
    let dev = SecretKey::generate();
    let payload = RegisterPayload {
        audience: SecretKey::generate().public(),
        id_key: id.public(),
        device_key: dev.public(),
        display_name: "Bench".into(),
        device_name: None,
        timestamp: now_ms(),
    };
    let sig = signing::sign(&payload, &dev);
    let bytes = payload.signing_bytes();
    let n = scaled(20_000);
    let start = Instant::now();
    for _ in 0..n {
        assert!(dev.public().verify(&bytes, &sig));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn registrations(
    channel: &Channel,
    audience: &guildhall::identity::PublicKey,
    n: usize,
    in_flight: usize,
) -> (f64, Vec<String>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    let per_task = n / in_flight;
    for _ in 0..in_flight {
        let mut client = GuildHallClient::new(channel.clone());
        let audience = *audience;
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let id = ClientIdentity::generate("bench", now_ms() - 1000);
                let reply = client
                    .register(id.register_request(&audience, "Bench User", None, now_ms()))
                    .await
                    .expect("register")
                    .into_inner();
                tokens.push(reply.token);
            }
            tokens
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.extend(t.await.expect("task"));
    }
    (tokens.len() as f64 / start.elapsed().as_secs_f64(), tokens)
}

async fn authed_calls(
    channel: &Channel,
    tokens: &[String],
    n: usize,
    in_flight: usize,
) -> serde_json::Value {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..in_flight {
        let mut client = GuildHallClient::new(channel.clone());
        let token = tokens[i % tokens.len()].clone();
        let per_task = n / in_flight;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let mut request = tonic::Request::new(pb::Empty {});
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("ascii"),
                );
                let t = Instant::now();
                client.get_my_data(request).await.expect("get_my_data");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    json!({
        "in_flight": in_flight,
        "calls": latencies.len(),
        "calls_per_sec": (latencies.len() as f64 / elapsed).round(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
    })
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // Nodes on loopback reach each other; load comes from one address.
        allow_private_addresses: true,
        max_connections_per_address: 0,
        // Measure the node, not its rate limits.
        settings: guildhall::limits::Settings::default().unlimited(),
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node");
    let channel = Channel::from_shared(format!("http://{}", node.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let audience = node.server_id;

    let verify_rate = verifies_per_sec();
    let (reg_seq, _) = registrations(&channel, &audience, scaled(500), 1).await;
    let (reg_par, tokens) = registrations(&channel, &audience, scaled(2_000), 16).await;
    let one = authed_calls(&channel, &tokens, scaled(5_000), 1).await;
    let many = authed_calls(&channel, &tokens, scaled(50_000), 64).await;

    let report = json!({
        "benchmark": "auth",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "signature_verifications_per_sec": verify_rate.round(),
        "registrations_per_sec": { "in_flight_1": reg_seq.round(), "in_flight_16": reg_par.round() },
        "authenticated_unary_calls": [one, many],
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    node.shutdown();
    node.stopped().await;
}
