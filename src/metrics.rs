//! The node's Prometheus metrics: every metric's name, type, labels and help text is here.
//!
//! Domain and storage code records through a [`Metrics`] handle; the operator endpoint
//! (`/metrics`, [`crate::api::ops`]) encodes it. There is one handle per node, made with its
//! [`crate::store::Store`] and reached from it ([`crate::store::Store::metrics`]), since every part
//! of the node that records already holds the store; two nodes in one process (tests) keep
//! separate counts. This module sits below the domain: it imports nothing of the node.
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust client: typed metric
//! families with label structs checked at compile time, no global registry, and the OpenMetrics
//! text format.
//!
//! Label values are bounded: gRPC methods come from the node's own method set (anything else is
//! `other`), codes from the 17 gRPC codes, limits and results from fixed lists, and peers from the
//! first [`PEER_LABELS`] peers seen (the rest are `other`). Every metric is listed in
//! docs/OPERATING.md ("Metrics and health").

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How many peers get a label of their own in the per-peer metrics; later ones share `other`,
/// so a node federating with many servers keeps a bounded number of series.
pub const PEER_LABELS: usize = 64;

/// The label value for everything outside a bounded set.
pub const OTHER: &str = "other";

/// `method` and `code` of a gRPC call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `package.Service/Method`, or `other`.
    pub method: &'static str,
    /// The gRPC status code's name (`OK`, `NotFound`, …).
    pub code: &'static str,
}

/// `method` of a gRPC call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// `package.Service/Method`, or `other`.
    pub method: &'static str,
}

/// One peer server (its canonical address), or `other`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's address as the outbox names it.
    pub peer: String,
}

/// What became of something (a gossip message, a publish).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// One of a fixed list per metric (see docs/OPERATING.md).
    pub result: &'static str,
}

/// A rate limit, by the `ServerSettings` field that sets it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `message_rate_limit`, `login_rate_limit`, …
    pub limit: &'static str,
}

fn call_seconds() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

struct Inner {
    registry: Registry,
    grpc_requests: Family<CallLabels, Counter>,
    grpc_seconds: Family<MethodLabel, Histogram, fn() -> Histogram>,
    event_streams: Gauge,
    events_published: Counter,
    writer_batch: Histogram,
    writer_commit_seconds: Histogram,
    database_bytes: Gauge,
    outbox_depth: Family<PeerLabel, Gauge>,
    outbox_retries: Family<PeerLabel, Counter>,
    outbox_give_ups: Family<PeerLabel, Counter>,
    gossip_received: Family<ResultLabel, Counter>,
    gossip_published: Family<ResultLabel, Counter>,
    p2p_peers: Gauge,
    rate_limited: Family<LimitLabel, Counter>,
    /// Peers that have a label of their own (at most [`PEER_LABELS`]).
    peers: Mutex<HashSet<String>>,
    /// The swarm's own metrics (gossipsub, bandwidth), registered by libp2p as the swarm is
    /// built, which happens after the store (and so this handle) exists.
    swarm: OnceLock<Registry>,
}

/// The node's metrics; cheap to clone, clones share the counts.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric of the node, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("guildhall");
        let grpc_requests = Family::<CallLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC calls answered, by method and status code (a stream counts when it ends)",
            grpc_requests.clone(),
        );
        let grpc_seconds =
            Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(call_seconds);
        registry.register(
            "grpc_request_duration_seconds",
            "Time from a gRPC call's arrival to its response's end (server streams: to the \
             stream's opening)",
            grpc_seconds.clone(),
        );
        let event_streams = Gauge::default();
        registry.register(
            "event_streams_open",
            "SubscribeEvents streams open now",
            event_streams.clone(),
        );
        let events_published = Counter::default();
        registry.register(
            "events_published",
            "Events committed to the event log and handed to live subscribers",
            events_published.clone(),
        );
        // 1 to 256 writes (the writer's group cap).
        let writer_batch = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "store_writer_batch_size",
            "Writes committed together in one group commit",
            writer_batch.clone(),
        );
        // 0.1 ms to ~0.8 s.
        let writer_commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        registry.register(
            "store_commit_duration_seconds",
            "Time of one group commit: its writes and the COMMIT",
            writer_commit_seconds.clone(),
        );
        let database_bytes = Gauge::default();
        registry.register(
            "database_size_bytes",
            "The database file and its write-ahead log, bytes on disk (read at scrape)",
            database_bytes.clone(),
        );
        let outbox_depth = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "outbox_depth",
            "Federation outbox deliveries waiting, per destination server (read at scrape)",
            outbox_depth.clone(),
        );
        let outbox_retries = Family::<PeerLabel, Counter>::default();
        registry.register(
            "outbox_retries",
            "Federation outbox deliveries that failed and were scheduled again, per destination",
            outbox_retries.clone(),
        );
        let outbox_give_ups = Family::<PeerLabel, Counter>::default();
        registry.register(
            "outbox_give_ups",
            "Federation outbox deliveries given up (refused, or failing past give_up_after_secs), \
             per destination",
            outbox_give_ups.clone(),
        );
        let gossip_received = Family::<ResultLabel, Counter>::default();
        registry.register(
            "gossip_messages_received",
            "Gossip messages received, by validation result",
            gossip_received.clone(),
        );
        let gossip_published = Family::<ResultLabel, Counter>::default();
        registry.register(
            "gossip_messages_published",
            "Own server events gossiped, by outcome",
            gossip_published.clone(),
        );
        let p2p_peers = Gauge::default();
        registry.register("p2p_peers", "libp2p peers connected now", p2p_peers.clone());
        let rate_limited = Family::<LimitLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused over a rate limit, by the setting that sets it",
            rate_limited.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                grpc_requests,
                grpc_seconds,
                event_streams,
                events_published,
                writer_batch,
                writer_commit_seconds,
                database_bytes,
                outbox_depth,
                outbox_retries,
                outbox_give_ups,
                gossip_received,
                gossip_published,
                p2p_peers,
                rate_limited,
                peers: Mutex::default(),
                swarm: OnceLock::new(),
            }),
        }
    }

    /// The metrics in the OpenMetrics text format (what `/metrics` serves).
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = encode_registry(&mut text, &self.inner.registry);
        if let Some(swarm) = self.inner.swarm.get() {
            let _ = encode_registry(&mut text, swarm);
        }
        let _ = encode_eof(&mut text);
        text
    }

    /// An empty registry for the swarm's metrics: libp2p registers its families into it while
    /// the swarm is built (`guildhall_gossipsub_*`, `guildhall_libp2p_bandwidth_bytes_total`),
    /// and [`Metrics::attach_swarm`] then adds it to what `/metrics` serves. Their names and
    /// labels are libp2p's (bounded: topics are the node's server-event kinds, protocols and
    /// directions a fixed few).
    pub fn swarm_registry() -> Registry {
        Registry::with_prefix("guildhall")
    }

    /// Serves the swarm's metrics from now on. A node has one swarm; a second registry is
    /// ignored (the first one's counters stay).
    pub fn attach_swarm(&self, registry: Registry) {
        let _ = self.inner.swarm.set(registry);
    }

    /// One gRPC call ended with `code`.
    pub fn grpc_call(&self, method: &'static str, code: &'static str) {
        self.inner
            .grpc_requests
            .get_or_create(&CallLabels { method, code })
            .inc();
    }

    /// One gRPC call took `elapsed` (see the metric's help for where it ends).
    pub fn grpc_duration(&self, method: &'static str, elapsed: Duration) {
        self.inner
            .grpc_seconds
            .get_or_create(&MethodLabel { method })
            .observe(elapsed.as_secs_f64());
    }

    /// `n` events were committed and published.
    pub fn events_published(&self, n: usize) {
        self.inner.events_published.inc_by(n as u64);
    }

    /// A group commit of `writes` writes took `elapsed`.
    pub fn group_commit(&self, writes: usize, elapsed: Duration) {
        self.inner.writer_batch.observe(writes as f64);
        self.inner
            .writer_commit_seconds
            .observe(elapsed.as_secs_f64());
    }

    /// A delivery to `peer` failed and will be retried.
    pub fn outbox_retry(&self, peer: &str) {
        let label = self.peer(peer);
        self.inner.outbox_retries.get_or_create(&label).inc();
    }

    /// A delivery to `peer` was given up.
    pub fn outbox_give_up(&self, peer: &str) {
        let label = self.peer(peer);
        self.inner.outbox_give_ups.get_or_create(&label).inc();
    }

    /// A gossip message was received and judged `result` (`accepted`, `rejected`, `ignored`,
    /// `duplicate`, `invalid`).
    pub fn gossip_received(&self, result: &'static str) {
        self.inner
            .gossip_received
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// An own event was gossiped with `result` (`sent`, `no_peers`, `failed`).
    pub fn gossip_published(&self, result: &'static str) {
        self.inner
            .gossip_published
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A request was refused over the rate limit set by `limit`.
    pub fn rate_limited(&self, limit: &'static str) {
        self.inner
            .rate_limited
            .get_or_create(&LimitLabel { limit })
            .inc();
    }

    /// Sets the gauges read at scrape time: open event streams, database bytes, connected peers,
    /// and outbox depth per destination (`depths`; every destination not listed reads 0).
    pub fn set_gauges(&self, gauges: Gauges) {
        let i = &self.inner;
        i.event_streams.set(clamp(gauges.event_streams));
        i.database_bytes.set(clamp_u64(gauges.database_bytes));
        i.p2p_peers.set(clamp(gauges.p2p_peers));
        let mut depth: Vec<(PeerLabel, u64)> = Vec::new();
        for (peer, n) in gauges.outbox_depths {
            let label = self.peer(&peer);
            match depth.iter_mut().find(|(l, _)| *l == label) {
                Some((_, total)) => *total += n,
                None => depth.push((label, n)),
            }
        }
        // Destinations that drained read 0 rather than keep their last value.
        i.outbox_depth.clear();
        for (label, n) in depth {
            i.outbox_depth.get_or_create(&label).set(clamp_u64(n));
        }
    }

    /// `peer`'s label: its own while fewer than [`PEER_LABELS`] peers have one, else `other`.
    fn peer(&self, peer: &str) -> PeerLabel {
        let mut peers = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if peers.contains(peer) {
            return PeerLabel {
                peer: peer.to_owned(),
            };
        }
        if peers.len() < PEER_LABELS {
            peers.insert(peer.to_owned());
            return PeerLabel {
                peer: peer.to_owned(),
            };
        }
        PeerLabel {
            peer: OTHER.to_owned(),
        }
    }
}

/// The values [`Metrics::set_gauges`] sets, read by the node at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// `SubscribeEvents` streams open.
    pub event_streams: usize,
    /// Database and WAL bytes.
    pub database_bytes: u64,
    /// libp2p peers connected.
    pub p2p_peers: usize,
    /// Deliveries waiting per destination.
    pub outbox_depths: Vec<(String, u64)>,
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family_and_bounds_peer_labels() {
        let m = Metrics::new();
        m.grpc_call("guildhall.v1.GuildHall/Ping", "Ok");
        m.grpc_duration("guildhall.v1.GuildHall/Ping", Duration::from_millis(3));
        m.group_commit(3, Duration::from_micros(250));
        for i in 0..PEER_LABELS + 5 {
            m.outbox_retry(&format!("https://peer{i}.example"));
        }
        m.set_gauges(Gauges {
            outbox_depths: vec![
                ("https://peer0.example".into(), 2),
                ("https://unlabelled.example".into(), 3),
                ("https://another.example".into(), 4),
            ],
            ..Gauges::default()
        });
        let text = m.encode();
        assert!(
            text.contains(
                "guildhall_grpc_requests_total{method=\"guildhall.v1.GuildHall/Ping\",code=\"Ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("guildhall_store_writer_batch_size_count 1"),
            "{text}"
        );
        assert!(
            text.contains("guildhall_outbox_retries_total{peer=\"other\"} 5"),
            "{text}"
        );
        let labelled = text
            .lines()
            .filter(|l| l.starts_with("guildhall_outbox_retries_total{"))
            .count();
        assert_eq!(labelled, PEER_LABELS + 1, "{PEER_LABELS} peers and other");
        assert!(text.contains("guildhall_outbox_depth{peer=\"https://peer0.example\"} 2"));
        assert!(
            text.contains("guildhall_outbox_depth{peer=\"other\"} 7"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
