//! Load program for messaging: one guild, N senders and M live subscribers on one node, everything
//! (node and clients) in this process over loopback gRPC. Prints one JSON object with, per scenario
//! (N/M = 1/1, 16/1, 16/100, 16/1000, a fresh node and data directory each):
//!
//! - durable messages per second: messages / wall time of the send phase (`SendMessage` returns
//!   only after the commit);
//! - `SendMessage` latency p50/p99;
//! - send-start-to-delivery latency p50/p99 at the farthest subscriber (see [`Tracker`]), and at
//!   the nearest one for contrast;
//! - resident memory of the whole process (`VmRSS`, and `VmHWM` reset per scenario where the
//!   kernel allows) at the end of the scenario, with the node and every subscriber still live;
//! - bytes on disk per message: the database files including the WAL, and the growth of the
//!   checkpointed database over the send phase.
//!
//! Senders send sequentially, each from its own task; subscribers each read their own
//! `SubscribeEvents` stream with their own session, spread over several HTTP/2 connections.
//!
//! Run: `cargo bench --bench messages` (release build). Sizes: `GUILDHALL_BENCH_SCALE=0.1` for a
//! quick run (scales the message counts, not the number of senders or subscribers).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use guildhall::client::ClientIdentity;
use guildhall::config::Config;
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use serde_json::json;
use tokio::task::JoinHandle;
use tonic::codec::Streaming;
use tonic::transport::Channel;

/// How long to wait, after the last send returned, for every subscriber to see every message.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests in flight while registering, joining and subscribing.
const SETUP_IN_FLIGHT: usize = 16;
/// HTTP/2 connections the subscribers are spread over, round robin. The server sets no stream
/// limit, so one would do; several let the server's connection tasks use both cores.
const SUBSCRIBER_CONNECTIONS: usize = 8;
/// Database files in the data directory.
const DB_FILES: [&str; 3] = [
    "guildhall.sqlite3",
    "guildhall.sqlite3-wal",
    "guildhall.sqlite3-shm",
];

/// One run: `senders` tasks send `messages` in total while `subscribers` streams receive them.
struct Scenario {
    senders: usize,
    subscribers: usize,
    messages: usize,
}

/// A registered user with its own session.
struct User {
    identity: ClientIdentity,
    token: String,
}

/// The guild's first channel and an invite to the guild.
struct Room {
    channel_id: String,
    invite: String,
}

fn scale() -> f64 {
    std::env::var("GUILDHALL_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// `total_default` messages (scaled) split evenly over `senders`, at least one each.
fn scenario(senders: usize, subscribers: usize, total_default: usize) -> Scenario {
    let per_sender = ((total_default as f64 * scale()) as usize / senders).max(1);
    Scenario {
        senders,
        subscribers,
        messages: per_sender * senders,
    }
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Milliseconds at quantile `p` of ascending microsecond samples; 0 with no samples.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[idx] as f64 / 1000.0
}

fn latency_summary(mut samples_us: Vec<u64>) -> serde_json::Value {
    samples_us.sort_unstable();
    json!({
        "samples": samples_us.len(),
        "p50_ms": percentile_ms(&samples_us, 0.50),
        "p99_ms": percentile_ms(&samples_us, 0.99),
        "max_ms": percentile_ms(&samples_us, 1.0),
    })
}

async fn start_node() -> (RunningNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir for the data directory");
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
    let node = Node::start(config).await.expect("node starts");
    (node, dir)
}

/// A new HTTP/2 connection to the node.
async fn connect(node: &RunningNode) -> Channel {
    Channel::from_shared(format!("http://{}", node.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the node")
}

async fn register_users(channel: &Channel, audience: PublicKey, n: usize) -> Vec<User> {
    futures::stream::iter(0..n)
        .map(|_| {
            let mut client = GuildHallClient::new(channel.clone());
            async move {
                let identity = ClientIdentity::generate("bench", now_ms() - 1000);
                let reply = client
                    .register(identity.register_request(&audience, "Bench User", None, now_ms()))
                    .await
                    .expect("register")
                    .into_inner();
                User {
                    identity,
                    token: reply.token,
                }
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .collect()
        .await
}

async fn create_room(channel: &Channel, owner: &User) -> Room {
    let mut client = GuildHallClient::new(channel.clone());
    let reply = client
        .create_guild(authed(
            &owner.token,
            pb::CreateGuildRequest {
                name: "Bench".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create guild")
        .into_inner();
    let guild_id = reply.guild.expect("guild in reply").id;
    let channels = client
        .list_channels(authed(&owner.token, pb::ListChannelsRequest { guild_id }))
        .await
        .expect("list channels")
        .into_inner()
        .channels;
    Room {
        channel_id: channels.first().expect("a default channel").id.clone(),
        invite: reply.token,
    }
}

async fn join_all(channel: &Channel, audience: PublicKey, invite: &str, users: &[User]) {
    futures::stream::iter(users)
        .map(|user| {
            let mut client = GuildHallClient::new(channel.clone());
            let request = user
                .identity
                .join_invite_request(&audience, invite, "Member", now_ms());
            async move { client.join_invite(request).await.expect("join") }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .for_each(|_| async {})
        .await;
}

/// Opens one event stream per user, round robin over `channels`. Each stream is live when this
/// returns (the server subscribes to its hub before answering).
async fn subscribe_all(channels: &[Channel], users: &[User]) -> Vec<Streaming<pb::StreamResponse>> {
    futures::stream::iter(users.iter().enumerate())
        .map(|(i, user)| {
            let mut client = GuildHallClient::new(channels[i % channels.len()].clone());
            let request = authed(
                &user.token,
                pb::SubscribeRequest {
                    resume_from_event_id: String::new(),
                },
            );
            async move {
                client
                    .subscribe_events(request)
                    .await
                    .expect("subscribe")
                    .into_inner()
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .collect()
        .await
}

/// Delivery bookkeeping shared by the subscribers, O(messages) in size whatever the subscriber
/// count, so it barely shows in the memory figures.
///
/// Each message carries `seq` and `t0` (microseconds since `baseline`, taken just before its
/// `SendMessage` call) in its metadata. A subscriber receiving it records `now - t0`; per message
/// we keep the maximum over subscribers (the latency to the *last* subscriber to receive it) and
/// the minimum (the first). The reported "farthest subscriber" percentiles are over the per-message
/// maxima.
struct Tracker {
    baseline: Instant,
    last_us: Vec<AtomicU64>,
    first_us: Vec<AtomicU64>,
    deliveries: AtomicUsize,
}

impl Tracker {
    fn new(messages: usize) -> Self {
        Self {
            baseline: Instant::now(),
            last_us: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            first_us: (0..messages).map(|_| AtomicU64::new(u64::MAX)).collect(),
            deliveries: AtomicUsize::new(0),
        }
    }

    fn micros_since_baseline(&self, at: Instant) -> u64 {
        at.duration_since(self.baseline).as_micros() as u64
    }

    fn record(&self, seq: usize, t0_us: u64) {
        let latency = self
            .micros_since_baseline(Instant::now())
            .saturating_sub(t0_us);
        if let (Some(last), Some(first)) = (self.last_us.get(seq), self.first_us.get(seq)) {
            last.fetch_max(latency, Ordering::Relaxed);
            first.fetch_min(latency, Ordering::Relaxed);
            self.deliveries.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn delivered(&self) -> usize {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// (per-message latency to the last subscriber, to the first), over delivered messages.
    fn latencies(&self) -> (Vec<u64>, Vec<u64>) {
        let last = self
            .last_us
            .iter()
            .zip(&self.first_us)
            .filter(|(_, first)| first.load(Ordering::Relaxed) != u64::MAX)
            .map(|(last, _)| last.load(Ordering::Relaxed))
            .collect();
        let first = self
            .first_us
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .filter(|&f| f != u64::MAX)
            .collect();
        (last, first)
    }
}

/// `(seq, t0)` of a `message_created` event sent by this program.
fn stamp(event: &pb::StreamResponse) -> Option<(usize, u64)> {
    let Some(Event::MessageCreated(created)) = &event.event else {
        return None;
    };
    let metadata = &created.message.as_ref()?.metadata;
    Some((
        metadata.get("seq")?.parse().ok()?,
        metadata.get("t0")?.parse().ok()?,
    ))
}

/// Reads `stream` until it has seen `expected` messages or it ends.
fn spawn_subscriber(
    mut stream: Streaming<pb::StreamResponse>,
    tracker: Arc<Tracker>,
    expected: usize,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = 0;
        while seen < expected {
            match stream.message().await {
                Ok(Some(event)) => {
                    if let Some((seq, t0)) = stamp(&event) {
                        tracker.record(seq, t0);
                        seen += 1;
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    })
}

/// One sender's messages, sequentially; returns each call's latency in microseconds.
async fn send_sequentially(
    mut client: GuildHallClient<Channel>,
    token: String,
    channel_id: String,
    seqs: std::ops::Range<usize>,
    tracker: Arc<Tracker>,
) -> Vec<u64> {
    let mut latencies = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let start = Instant::now();
        let request = pb::SendMessageRequest {
            channel_id: channel_id.clone(),
            text: format!("bench message {seq:06}: the quick brown fox jumps over the lazy dog"),
            metadata: [
                ("seq".to_owned(), seq.to_string()),
                (
                    "t0".to_owned(),
                    tracker.micros_since_baseline(start).to_string(),
                ),
            ]
            .into(),
            ..Default::default()
        };
        client
            .send_message(authed(&token, request))
            .await
            .expect("send message");
        latencies.push(start.elapsed().as_micros() as u64);
    }
    latencies
}

/// Runs every sender to completion; returns the wall time and every call's latency (µs).
async fn send_phase(
    channel: &Channel,
    senders: &[User],
    channel_id: &str,
    per_sender: usize,
    tracker: &Arc<Tracker>,
) -> (Duration, Vec<u64>) {
    let start = Instant::now();
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, sender)| {
            tokio::spawn(send_sequentially(
                GuildHallClient::new(channel.clone()),
                sender.token.clone(),
                channel_id.to_owned(),
                i * per_sender..(i + 1) * per_sender,
                tracker.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("sender task"));
    }
    (start.elapsed(), latencies)
}

/// Waits until `expected` deliveries are recorded or the timeout passes; returns the time waited.
async fn wait_for_deliveries(tracker: &Tracker, expected: usize) -> Duration {
    let start = Instant::now();
    while tracker.delivered() < expected && start.elapsed() < DELIVERY_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// `VmRSS` and `VmHWM` from `/proc/self/status`, in MiB.
fn memory() -> serde_json::Value {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field_mib = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((kib / 1024.0 * 10.0).round() / 10.0)
    };
    json!({ "vm_rss_mib": field_mib("VmRSS:"), "vm_hwm_mib": field_mib("VmHWM:") })
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS; false if the kernel refused.
fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Total size of the database files, WAL and shared-memory index included.
fn database_bytes(dir: &Path) -> u64 {
    DB_FILES
        .iter()
        .map(|name| match std::fs::metadata(dir.join(name)) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("stat {name}: {e}"),
        })
        .sum()
}

/// Folds the WAL into the database from a side connection (the node is idle when this runs) and
/// returns the database size afterwards, and whether the checkpoint completed (was not busy).
async fn checkpointed_database_bytes(dir: &Path) -> (u64, bool) {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn =
            rusqlite::Connection::open(dir.join(DB_FILES[0])).expect("open the database to check");
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .expect("checkpoint");
        drop(conn);
        (database_bytes(&dir), busy == 0)
    })
    .await
    .expect("checkpoint task")
}

async fn run(s: &Scenario) -> serde_json::Value {
    let peak_reset = reset_peak_memory();
    let setup_start = Instant::now();
    let (node, dir) = start_node().await;
    let audience = node.server_id;
    let control = connect(&node).await;
    let mut users = register_users(&control, audience, 1 + s.senders + s.subscribers).await;
    let subscribers = users.split_off(1 + s.senders);
    let senders = users.split_off(1);
    let room = create_room(&control, &users[0]).await;
    join_all(&control, audience, &room.invite, &senders).await;
    join_all(&control, audience, &room.invite, &subscribers).await;

    let mut sub_channels = Vec::new();
    for _ in 0..SUBSCRIBER_CONNECTIONS.min(s.subscribers) {
        sub_channels.push(connect(&node).await);
    }
    let streams = subscribe_all(&sub_channels, &subscribers).await;
    let tracker = Arc::new(Tracker::new(s.messages));
    let readers: Vec<_> = streams
        .into_iter()
        .map(|stream| spawn_subscriber(stream, tracker.clone(), s.messages))
        .collect();
    let (bytes_before, complete_before) = checkpointed_database_bytes(dir.path()).await;
    let setup = setup_start.elapsed();

    let per_sender = s.messages / s.senders;
    let (wall, send_latencies) =
        send_phase(&control, &senders, &room.channel_id, per_sender, &tracker).await;
    let expected = s.messages * s.subscribers;
    let waited = wait_for_deliveries(&tracker, expected).await;
    let delivered = tracker.delivered();
    let memory = memory();
    let bytes_with_wal = database_bytes(dir.path());
    let (bytes_after, complete_after) = checkpointed_database_bytes(dir.path()).await;

    for reader in &readers {
        reader.abort();
    }
    drop((control, sub_channels));
    node.shutdown();
    tokio::time::timeout(Duration::from_secs(10), node.stopped())
        .await
        .expect("node stops within 10 s");

    let (last, first) = tracker.latencies();
    let messages = s.messages as f64;
    json!({
        "case": { "senders": s.senders, "subscribers": s.subscribers, "messages": s.messages },
        "setup_secs": (setup.as_secs_f64() * 100.0).round() / 100.0,
        "send": {
            "wall_secs": (wall.as_secs_f64() * 1000.0).round() / 1000.0,
            "messages_per_sec": (messages / wall.as_secs_f64()).round(),
            "latency": latency_summary(send_latencies),
        },
        "delivery": {
            "expected": expected,
            "delivered": delivered,
            "missing": expected - delivered.min(expected),
            "waited_after_last_send_ms": waited.as_millis(),
            "to_last_subscriber": latency_summary(last),
            "to_first_subscriber": latency_summary(first),
        },
        "memory": { "peak_reset_at_scenario_start": peak_reset, "at_end": memory },
        "disk": {
            "database_bytes_including_wal": bytes_with_wal,
            "bytes_per_message_including_wal": (bytes_with_wal as f64 / messages).round(),
            "checkpoints_completed": complete_before && complete_after,
            "checkpointed_growth_bytes_per_message":
                ((bytes_after as f64 - bytes_before as f64) / messages).round(),
        },
    })
}

#[tokio::main]
async fn main() {
    let scenarios = [
        scenario(1, 1, 2000),
        scenario(16, 1, 4000),
        scenario(16, 100, 4000),
        scenario(16, 1000, 4000),
    ];
    let mut results = Vec::new();
    for s in &scenarios {
        eprintln!(
            "messages bench: {} senders, {} subscribers, {} messages",
            s.senders, s.subscribers, s.messages
        );
        results.push(run(s).await);
    }
    let report = json!({
        "benchmark": "messages",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "scale": scale(),
        "notes": [
            "One node and every client in this process, over loopback gRPC; a fresh node per scenario.",
            "send.latency: SendMessage round trip; it returns after the commit.",
            "delivery.to_last_subscriber: per message, send start to its arrival at the last subscriber to receive it (max over subscribers); percentiles over messages. to_first_subscriber: the min.",
            "memory: whole process (node and clients), with everything still live; VmHWM is the peak since the scenario started when peak_reset_at_scenario_start is true.",
            "disk: database_bytes_including_wal sums guildhall.sqlite3, -wal and -shm after the deliveries, before any checkpoint, and includes the setup (users, sessions, joins); checkpointed_growth is the main file's growth over the send phase with the WAL folded in before and after.",
        ],
        "scenarios": results,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report serializes")
    );
}
