//! Load program for the device-linking mailbox (`SyncMailbox`): prints one JSON object.
//!
//! - put + take round trips per second over loopback gRPC, 1 and 64 in flight, with p50/p99;
//! - long-poll wake-up: from the start of a put to the waiting take's answer, p50/p99;
//! - memory: resident memory before and after filling the mailbox to its session cap with 1 KiB
//!   payloads (the worst case an attacker within the rate limits can hold).
//!
//! Run: `cargo bench --bench mailbox` (release build). Sizes: `GUILDHALL_BENCH_SCALE=0.1` for a
//! quick run.

use std::time::{Duration, Instant};

use guildhall::config::Config;
use guildhall::node::Node;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::{Value, json};
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

fn request(id: String, payload: Option<Vec<u8>>, wait: bool) -> pb::SyncMailboxRequest {
    pb::SyncMailboxRequest {
        session_id: id,
        payload,
        wait_for_data: wait,
    }
}

/// `n` put + take pairs spread over `in_flight` tasks, each on its own session.
async fn round_trips(channel: &Channel, n: usize, in_flight: usize) -> Value {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let mut client = GuildHallClient::new(channel.clone());
        let per_task = n / in_flight;
        tasks.push(tokio::spawn(async move {
            let id = format!("bench-round-trip-{t:0>24}");
            let mut times = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let begun = Instant::now();
                client
                    .sync_mailbox(request(id.clone(), Some(vec![1; 512]), false))
                    .await
                    .expect("put");
                let got = client
                    .sync_mailbox(request(id.clone(), None, false))
                    .await
                    .expect("take");
                assert!(got.into_inner().payload.is_some());
                times.push(begun.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    times.sort();
    json!({
        "in_flight": in_flight,
        "round_trips_per_sec": (times.len() as f64 / secs).round(),
        "p50_ms": percentile(&times, 0.5),
        "p99_ms": percentile(&times, 0.99),
    })
}

/// `n` long polls, each answered by a put made once the poll is waiting on the server.
async fn wake_ups(channel: &Channel, n: usize) -> Value {
    let mut times = Vec::with_capacity(n);
    let mut putter = GuildHallClient::new(channel.clone());
    for i in 0..n {
        let id = format!("bench-wake-{i:0>32}");
        let mut waiter = GuildHallClient::new(channel.clone());
        let poll = tokio::spawn({
            let id = id.clone();
            async move { waiter.sync_mailbox(request(id, None, true)).await }
        });
        // Give the poll time to reach the server (a benchmark, not a test: a late poll only
        // makes this sample look faster, as the put is then found at once).
        tokio::time::sleep(Duration::from_millis(2)).await;
        let begun = Instant::now();
        putter
            .sync_mailbox(request(id, Some(b"wake".to_vec()), false))
            .await
            .expect("put");
        let got = poll.await.expect("task").expect("take");
        assert!(got.into_inner().payload.is_some());
        times.push(begun.elapsed());
    }
    times.sort();
    json!({ "samples": n, "p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99) })
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Fills the mailbox to its session cap with 1 KiB payloads; reports memory and the refusal.
async fn fill(channel: &Channel, sessions: usize) -> Value {
    let mut client = GuildHallClient::new(channel.clone());
    let before = rss_mib();
    let start = Instant::now();
    for i in 0..sessions {
        client
            .sync_mailbox(request(
                format!("bench-fill-{i:0>32}"),
                Some(vec![7; 1024]),
                false,
            ))
            .await
            .expect("put within the caps");
    }
    let secs = start.elapsed().as_secs_f64();
    let refused = client
        .sync_mailbox(request(
            format!("bench-fill-{:0>32}", sessions),
            Some(vec![7; 1024]),
            false,
        ))
        .await
        .err()
        .map(|s| format!("{:?}: {}", s.code(), s.message()));
    json!({
        "sessions": sessions,
        "puts_per_sec": (sessions as f64 / secs).round(),
        "vm_rss_mib_before": before,
        "vm_rss_mib_after": rss_mib(),
        "next_put": refused,
    })
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // Nodes on loopback reach each other; load comes from one address.
        allow_private_addresses: true,
        max_connections_per_address: 0,
        // Measure the mailbox, not its rate limit.
        settings: guildhall::limits::Settings::default().unlimited(),
        ..Config::default()
    };
    let sessions = scaled(10_000);
    config.mailbox.max_sessions = sessions;
    let node = Node::start(config).await.expect("node");
    let channel = Channel::from_shared(format!("http://{}", node.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let one = round_trips(&channel, scaled(5_000), 1).await;
    let many = round_trips(&channel, scaled(50_000), 64).await;
    let wake = wake_ups(&channel, scaled(300)).await;
    let filled = fill(&channel, sessions).await;

    let report = json!({
        "benchmark": "mailbox",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "put_take_round_trips": [one, many],
        "long_poll_wake_up": wake,
        "filled_to_session_cap": filled,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    node.shutdown();
    node.stopped().await;
}
