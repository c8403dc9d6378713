//! Load program for gossip of server events: prints one JSON object.
//!
//! For 3, 5 and 10 nodes on loopback in one process (node `i` meets node 0 and node `i-1`, so
//! most events need forwarding), node 0 publishes signed server events of a bench kind:
//!
//! - **latency**: events paced at 500/s; for each (event, receiving node), the time from the
//!   publish call to the receiving node's validator seeing it (signature checked, de-duplicated),
//!   p50/p99, and the share delivered by gossip alone within the wait;
//! - **burst**: events published as fast as publish returns; events/s until every node holds every
//!   event (gossip alone), and how many publishes hit back-pressure.
//!
//! Run: `cargo bench --bench gossip`. Sizes: `GUILDHALL_BENCH_SCALE=0.1` for a quick run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guildhall::config::Config;
use guildhall::gossip::Verdict;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::json;

const KIND: &str = "bench-note";
/// How long a phase waits for delivery before it reports what arrived.
const PHASE_WAIT: Duration = Duration::from_secs(60);

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("GUILDHALL_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(10)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// When each sequence reached one node's validator.
type Arrivals = Arc<Mutex<Vec<Option<Instant>>>>;

struct BenchNode {
    node: RunningNode,
    arrivals: Arrivals,
    _dir: tempfile::TempDir,
}

async fn start(capacity: usize) -> BenchNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // Nodes on loopback reach each other; load comes from one address.
        allow_private_addresses: true,
        max_connections_per_address: 0,
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node starts");
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![None; capacity + 1]));
    let record = arrivals.clone();
    node.server_events
        .register(KIND, move |event| {
            let record = record.clone();
            async move {
                let now = Instant::now();
                if let Ok(seq) = usize::try_from(event.sequence())
                    && let Some(slot) = record.lock().expect("lock").get_mut(seq)
                {
                    slot.get_or_insert(now);
                }
                Verdict::Accept
            }
        })
        .await
        .expect("register");
    BenchNode {
        node,
        arrivals,
        _dir: dir,
    }
}

async fn info(node: &RunningNode) -> pb::ServerInfoResponse {
    let mut client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect");
    client
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner()
}

async fn wait_until<F: Fn() -> bool>(limit: Duration, done: F) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

fn delivered(nodes: &[BenchNode], seqs: std::ops::RangeInclusive<usize>) -> usize {
    nodes[1..]
        .iter()
        .map(|n| {
            let a = n.arrivals.lock().expect("lock");
            seqs.clone().filter(|s| a[*s].is_some()).count()
        })
        .sum()
}

async fn run(n: usize, paced: usize, burst: usize) -> serde_json::Value {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(start(paced + burst).await);
    }
    while nodes.iter().any(|b| b.node.p2p_addrs().is_empty()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 1..n {
        let first = info(&nodes[0].node).await;
        nodes[i].node.server_events.meet_peer(&first).await;
        if i > 1 {
            let previous = info(&nodes[i - 1].node).await;
            nodes[i].node.server_events.meet_peer(&previous).await;
        }
    }
    for b in &nodes {
        let handle = b.node.server_events.gossip().clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        while handle.mesh_peers(KIND).await == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let publisher = nodes[0].node.server_events.clone();

    // Paced: 500 events/s.
    let mut published = vec![None; paced + burst + 1];
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    for _ in 0..paced {
        tick.tick().await;
        let at = Instant::now();
        let event = publisher
            .publish(KIND, vec![0u8; 128])
            .await
            .expect("publish");
        published[event.sequence() as usize] = Some(at);
    }
    let want = (n - 1) * paced;
    wait_until(PHASE_WAIT, || delivered(&nodes, 1..=paced) == want).await;
    let mut latencies = Vec::new();
    for b in &nodes[1..] {
        let a = b.arrivals.lock().expect("lock");
        for seq in 1..=paced {
            if let (Some(sent), Some(got)) = (published[seq], a[seq]) {
                latencies.push(got.saturating_duration_since(sent));
            }
        }
    }
    latencies.sort();
    let paced_delivered = delivered(&nodes, 1..=paced);

    // Burst.
    let failures_before = publisher.stats().publish_failures;
    let start = Instant::now();
    for _ in 0..burst {
        publisher
            .publish(KIND, vec![0u8; 128])
            .await
            .expect("publish");
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let range = paced + 1..=paced + burst;
    let want = (n - 1) * burst;
    let complete = wait_until(PHASE_WAIT, || delivered(&nodes, range.clone()) == want).await;
    let burst_secs = start.elapsed().as_secs_f64();
    let burst_delivered = delivered(&nodes, range);
    let result = json!({
        "nodes": n,
        "latency": {
            "events": paced,
            "rate_per_s": 500,
            "deliveries": latencies.len(),
            "delivered_share": paced_delivered as f64 / ((n - 1) * paced) as f64,
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        },
        "burst": {
            "events": burst,
            "publish_per_s": burst as f64 / publish_secs,
            "all_delivered": complete,
            "delivered_share": burst_delivered as f64 / want as f64,
            "events_per_s_to_every_node": if complete { burst as f64 / burst_secs } else { f64::NAN },
            "publish_backpressure": publisher.stats().publish_failures - failures_before,
        },
    });
    for b in &nodes {
        b.node.shutdown();
    }
    for b in nodes {
        b.node.stopped().await;
    }
    result
}

#[tokio::main]
async fn main() {
    let paced = scaled(1000);
    let burst = scaled(5000);
    let mut runs = Vec::new();
    for n in [3, 5, 10] {
        runs.push(run(n, paced, burst).await);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "bench": "gossip", "runs": runs })).expect("json")
    );
}
