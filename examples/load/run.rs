//! One load run against a node over the network: register fresh users, make a guild, join everyone
//! to it, open the subscribers' event streams, send for a while, wait until every subscriber has
//! every message, and describe what happened as one JSON value. `main.rs` parses the command line
//! and prints the value; `tests/load_program.rs` calls [`run`] directly with a tiny shape.
//!
//! Every call goes through the public gRPC API with the request builders of `guildhall::client`,
//! as any client's would, so the program measures a node wherever it runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::outbound::Outbound;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::{JoinHandle, JoinSet};
use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::measure::{self, DeliveryTracker, ProcessSample};
use crate::setup::{
    SlimEvent, User, authed, connect, create_room, join_all, refused, register_users, subscribe_all,
};

/// How often the drain phase checks whether every delivery has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// First word of every message this program sends; with the run's id it tells our messages from
/// anything else on the stream.
const MARKER: &str = "load";

/// What to run: the shape of the load and where to find the node.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node's gRPC address, `http://host:port` (or `https://` for a node serving TLS).
    pub addr: String,
    /// An extra CA certificate (PEM) to trust for an `https://` node with a private certificate.
    pub ca_file: Option<PathBuf>,
    /// Users sending at once, each with one `SendMessage` outstanding.
    pub senders: usize,
    /// Users holding a `SubscribeEvents` stream, each of whom must see every message.
    pub subscribers: usize,
    /// HTTP/2 connections that senders and subscribers are spread over, round robin: many
    /// streams share one connection, as real clients behind one gateway would.
    pub connections: usize,
    /// How long to send, when `messages` is not given.
    pub duration: Duration,
    /// Send exactly this many messages in all (split over the senders) instead of for `duration`.
    pub messages: Option<u64>,
    /// Messages per second per sender; `None` sends as fast as the node acknowledges.
    pub rate: Option<f64>,
    /// After the last send, how long to wait for the subscribers to see every message.
    pub drain_timeout: Duration,
    /// The node's process id, to report its CPU time per message and peak memory.
    pub pid: Option<u32>,
    /// The node's data directory, to report bytes on disk per message.
    pub data_dir: Option<PathBuf>,
    /// A registration token for a node with `registration = "token"` (it must allow as many
    /// uses as users this run registers: 1 + senders + subscribers).
    pub registration_token: String,
}

impl Options {
    fn check(&self) -> Result<()> {
        if self.senders == 0 {
            bail!("--senders must be at least 1");
        }
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.messages == Some(0) {
            bail!("--messages must be at least 1");
        }
        if self.messages.is_none() && self.duration.is_zero() {
            bail!("--duration must be more than 0 s");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of messages per second per sender");
        }
        Ok(())
    }
}

/// `(seq, sent_us)` from a message this run sent: `"load <run> <seq> <sent_us> …"`.
fn stamp(event: &SlimEvent, run_id: &str) -> Option<(u64, u64)> {
    let text = &event.message_created.as_ref()?.message.as_ref()?.text;
    let mut words = text.split(' ');
    if words.next()? != MARKER || words.next()? != run_id {
        return None;
    }
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// Reads one subscriber's stream until it ends (or the task is aborted after the drain); the
/// answer says why it ended.
fn spawn_reader(
    index: usize,
    mut stream: Streaming<SlimEvent>,
    tracker: Arc<DeliveryTracker>,
    run_id: Arc<str>,
) -> JoinHandle<String> {
    tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    if let Some((seq, sent_us)) = stamp(&event, &run_id) {
                        tracker.record(index, seq, sent_us);
                    }
                }
                Ok(None) => return "the node ended the stream".to_owned(),
                Err(status) => return format!("{:?}: {}", status.code(), status.message()),
            }
        }
    })
}

/// The senders' shared plan: which sequence number is next, and when to stop.
struct SendPlan {
    next_seq: AtomicU64,
    limit: u64,
    deadline: Option<Instant>,
    interval: Option<Duration>,
    acked: AtomicU64,
    run_id: Arc<str>,
    channel_id: String,
}

/// One sender: one `SendMessage` outstanding at a time (paced by `plan.interval` if set) until
/// the plan's count or deadline. Answers its `SendMessage` latencies; the first refusal ends the
/// run, since numbers measured past it would not mean what they say.
async fn send_loop(
    mut client: GuildHallClient<Channel>,
    token: String,
    plan: Arc<SendPlan>,
    tracker: Arc<DeliveryTracker>,
) -> Result<Histogram<u64>> {
    let mut latencies = measure::latency_histogram();
    let mut ticker = plan.interval.map(|period| {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        if plan.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let seq = plan.next_seq.fetch_add(1, Ordering::Relaxed);
        if seq >= plan.limit {
            break;
        }
        let start = Instant::now();
        let request = pb::SendMessageRequest {
            channel_id: plan.channel_id.clone(),
            text: format!(
                "{MARKER} {} {seq} {} the quick brown fox jumps over the lazy dog",
                plan.run_id,
                tracker.micros(start)
            ),
            ..Default::default()
        };
        client
            .send_message(authed(&token, request)?)
            .await
            .map_err(|s| refused("SendMessage", s))?;
        latencies.saturating_record(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        plan.acked.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// Runs every sender to the end of the plan; answers the wall time and every call's latency.
async fn send_phase(
    pool: &[Channel],
    senders: &[User],
    plan: &Arc<SendPlan>,
    tracker: &Arc<DeliveryTracker>,
) -> Result<(Duration, Histogram<u64>)> {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, sender) in senders.iter().enumerate() {
        tasks.spawn(send_loop(
            GuildHallClient::new(pool[i % pool.len()].clone()),
            sender.token.clone(),
            plan.clone(),
            tracker.clone(),
        ));
    }
    let mut latencies = measure::latency_histogram();
    while let Some(joined) = tasks.join_next().await {
        let histogram = match joined {
            Ok(Ok(histogram)) => histogram,
            Ok(Err(e)) => {
                tasks.abort_all();
                return Err(e);
            }
            Err(e) => {
                tasks.abort_all();
                bail!("a sender task failed: {e}");
            }
        };
        latencies
            .add(&histogram)
            .context("merge the senders' histograms")?;
    }
    Ok((start.elapsed(), latencies))
}

/// Waits until `expected` deliveries are recorded, every reader has stopped, or `timeout`
/// passes; answers the time waited.
async fn drain(
    tracker: &DeliveryTracker,
    readers: &[JoinHandle<String>],
    expected: u64,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    while tracker.deliveries() < expected
        && start.elapsed() < timeout
        && !readers.iter().all(|r| r.is_finished())
    {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    start.elapsed()
}

/// The node's process and data directory before or after the measured phase.
struct NodeSample {
    process: Option<ProcessSample>,
    disk_bytes: Option<u64>,
    client: ProcessSample,
}

fn sample(options: &Options) -> Result<NodeSample> {
    Ok(NodeSample {
        process: options
            .pid
            .map(|pid| measure::read_process(&pid.to_string()))
            .transpose()?,
        disk_bytes: options
            .data_dir
            .as_deref()
            .map(measure::directory_bytes)
            .transpose()?,
        client: measure::read_process("self")?,
    })
}

/// How long the program waits after closing the streams before reading the node's memory.
const STREAMS_CLOSED_SETTLE: Duration = Duration::from_secs(2);

fn per_message(total: f64, messages: u64) -> Value {
    if messages == 0 {
        return Value::Null;
    }
    json!((total / messages as f64 * 1000.0).round() / 1000.0)
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// A fresh id for this run, so its messages can't be confused with another run's on the node.
fn run_id() -> String {
    let mut bytes = [0u8; 6];
    // Uniqueness, not secrecy: the clock will do if the system's randomness is unavailable.
    if getrandom::fill(&mut bytes).is_err() {
        bytes.copy_from_slice(&now_ms().to_be_bytes()[2..]);
    }
    hex::encode(bytes)
}

/// Runs the load described by `options` against the node and answers the report (the JSON
/// object `main.rs` prints). Notes on progress go to stderr.
pub async fn run(options: &Options) -> Result<Value> {
    options.check()?;
    let outbound =
        Outbound::unrestricted(options.ca_file.as_deref()).context("set up TLS for the client")?;
    let control = connect(&outbound, &options.addr).await?;
    let info = GuildHallClient::new(control.clone())
        .get_server_info(pb::Empty {})
        .await
        .map_err(|s| refused("GetServerInfo", s))?
        .into_inner();
    let audience = PublicKey::from_hex(&info.server_pubkey)
        .context("GetServerInfo.server_pubkey is not a key")?;
    eprintln!(
        "load: node {} (guildhall {}, key {}…)",
        options.addr,
        info.version,
        info.server_pubkey.get(..12).unwrap_or_default()
    );

    let setup_start = Instant::now();
    let mut pool = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        pool.push(connect(&outbound, &options.addr).await?);
    }
    let users = 1 + options.senders + options.subscribers;
    eprintln!("load: registering {users} users");
    let mut senders =
        register_users(&control, audience, users, &options.registration_token).await?;
    let subscribers = senders.split_off(1 + options.senders);
    let owner = senders.remove(0);
    let (channel_id, invite) = create_room(&control, &owner).await?;
    eprintln!("load: joining {} users to the guild", users - 1);
    join_all(
        &control,
        audience,
        &invite,
        &senders,
        &options.registration_token,
    )
    .await?;
    join_all(
        &control,
        audience,
        &invite,
        &subscribers,
        &options.registration_token,
    )
    .await?;
    eprintln!(
        "load: opening {} event streams over {} connections",
        subscribers.len(),
        pool.len()
    );
    let streams = subscribe_all(&pool, &subscribers).await?;
    let tracker = Arc::new(DeliveryTracker::new(subscribers.len()));
    let run_id: Arc<str> = run_id().into();
    let readers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| spawn_reader(i, stream, tracker.clone(), run_id.clone()))
        .collect();
    let setup = setup_start.elapsed();

    let plan = Arc::new(SendPlan {
        next_seq: AtomicU64::new(0),
        limit: options
            .messages
            .unwrap_or(u64::MAX)
            .min(DeliveryTracker::capacity()),
        deadline: match options.messages {
            Some(_) => None,
            None => Some(Instant::now() + options.duration),
        },
        interval: options.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
        acked: AtomicU64::new(0),
        run_id: run_id.clone(),
        channel_id,
    });
    eprintln!(
        "load: sending from {} senders ({})",
        options.senders,
        match options.messages {
            Some(n) => format!("{n} messages"),
            None => format!("{} s", options.duration.as_secs_f64()),
        }
    );
    let before = sample(options)?;
    let (wall, send_latency) = send_phase(&pool, &senders, &plan, &tracker).await?;
    let sent = plan.acked.load(Ordering::Relaxed);
    let expected = sent * subscribers.len() as u64;
    eprintln!(
        "load: {sent} messages acknowledged in {:.2} s; waiting for {expected} deliveries",
        wall.as_secs_f64()
    );
    let waited = drain(&tracker, &readers, expected, options.drain_timeout).await;
    let after = sample(options)?;

    let mut stream_errors = Vec::new();
    for reader in readers {
        if reader.is_finished() {
            match reader.await {
                Ok(why) => stream_errors.push(why),
                Err(e) => stream_errors.push(format!("reader task failed: {e}")),
            }
        } else {
            reader.abort();
        }
    }
    // The streams are gone now (aborting a reader drops its stream, which resets it on the node):
    // give the node a moment to let go of them, then see how much memory it gave back.
    let closed = match options.pid {
        Some(_) if !subscribers.is_empty() => {
            tokio::time::sleep(STREAMS_CLOSED_SETTLE).await;
            sample(options)?.process
        }
        _ => None,
    };
    let delivered = tracker.deliveries();
    if delivered < expected {
        eprintln!(
            "load: only {delivered} of {expected} deliveries arrived within {} s",
            options.drain_timeout.as_secs_f64()
        );
    }

    let delivery = if subscribers.is_empty() {
        Value::Null
    } else {
        let (complete, fewest, most) = tracker.per_subscriber(sent);
        let (seen_by_all, farthest) = tracker.farthest(sent, subscribers.len());
        json!({
            "expected": expected,
            "delivered": delivered,
            "subscribers_with_every_message": complete,
            "fewest_received_by_a_subscriber": fewest,
            "most_received_by_a_subscriber": most,
            "messages_seen_by_every_subscriber": seen_by_all,
            "streams_ended": stream_errors.len(),
            "first_stream_end": stream_errors.first(),
            "waited_after_last_send_ms": waited.as_millis() as u64,
            "farthest_subscriber_latency": measure::summary_ms(&farthest),
        })
    };
    let node_process = match (options.pid, before.process, after.process) {
        (Some(pid), Some(b), Some(a)) => json!({
            "pid": pid,
            "cpu_ms": a.cpu_ms.saturating_sub(b.cpu_ms),
            "cpu_ms_per_message": per_message(a.cpu_ms.saturating_sub(b.cpu_ms) as f64, sent),
            "vm_hwm_mib": mib(a.vm_hwm_kib),
            "vm_rss_mib_before": mib(b.vm_rss_kib),
            "vm_rss_mib_after": mib(a.vm_rss_kib),
            "vm_rss_mib_after_streams_closed": closed.map(|c| mib(c.vm_rss_kib)),
        }),
        _ => Value::Null,
    };
    let disk = match (&options.data_dir, before.disk_bytes, after.disk_bytes) {
        (Some(dir), Some(b), Some(a)) => json!({
            "data_dir": dir.display().to_string(),
            "bytes_before": b,
            "bytes_after": a,
            "bytes_per_message": per_message(a as f64 - b as f64, sent),
        }),
        _ => Value::Null,
    };
    let client_cpu_ms = after.client.cpu_ms.saturating_sub(before.client.cpu_ms);
    Ok(json!({
        "program": "load",
        "node": { "addr": options.addr, "version": info.version, "server_pubkey": info.server_pubkey },
        "shape": {
            "senders": options.senders,
            "subscribers": options.subscribers,
            "connections": options.connections,
            "duration_secs": options.messages.is_none().then_some(options.duration.as_secs_f64()),
            "messages": options.messages,
            "rate_per_sender": options.rate,
        },
        "setup_secs": (setup.as_secs_f64() * 100.0).round() / 100.0,
        "send": {
            "messages": sent,
            "wall_secs": (wall.as_secs_f64() * 1000.0).round() / 1000.0,
            "messages_per_sec": (sent as f64 / wall.as_secs_f64().max(1e-9)).round(),
            "latency": measure::summary_ms(&send_latency),
        },
        "delivery": delivery,
        "node_process": node_process,
        "disk": disk,
        "client_process": {
            "cpu_ms": client_cpu_ms,
            "cpu_ms_per_message": per_message(client_cpu_ms as f64, sent),
            "vm_hwm_mib": mib(after.client.vm_hwm_kib),
        },
    }))
}
