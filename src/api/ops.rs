//! The operator's HTTP endpoints on the node's port: `/healthz`, `/readyz` and `/metrics`.
//!
//! - `GET /healthz`: `200 ok` while the process serves requests (liveness; it checks nothing
//!   else, so a slow disk never gets a live node restarted).
//! - `GET /readyz`: `200 ready` when the database takes a write and the libp2p swarm runs and
//!   listens; otherwise `503` naming what is not ready (readiness: take the node out of a load
//!   balancer, don't restart it).
//! - `GET /metrics`: the Prometheus metrics ([`crate::metrics`]), served only to clients on
//!   loopback or in `trusted_proxies` (after `X-Forwarded-For` is read from a trusted proxy, so a
//!   request relayed by a local reverse proxy for someone on the internet is refused). Others get
//!   `403`. The gauges read at scrape time (open streams, database size, connected peers, outbox
//!   depth) are read here, just before encoding.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ipnet::IpNet;
use tokio::sync::watch;
use tonic::transport::server::TcpConnectInfo;

use crate::events::stream::OpenStreams;
use crate::gossip::GossipHandle;
use crate::metrics::Gauges;
use crate::store::Store;

/// How long `/readyz` waits for its probe write to commit before it answers that the database
/// is not ready: far longer than a commit takes, short enough that a probe gets an answer.
const READY_WRITE_WAIT: Duration = Duration::from_secs(3);

/// The content type of the Prometheus text format this endpoint serves (OpenMetrics).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints read: the node's handles.
#[derive(Debug, Clone)]
pub struct Ops {
    /// The store: its metrics, and the probe write.
    pub store: Store,
    /// The database files whose sizes make `guildhall_database_size_bytes`.
    pub database_files: Vec<PathBuf>,
    /// The `SubscribeEvents` streams open.
    pub streams: OpenStreams,
    /// The swarm task.
    pub gossip: GossipHandle,
    /// The swarm's listen addresses.
    pub p2p_addrs: watch::Receiver<Vec<String>>,
    /// How many peers the swarm is connected to.
    pub p2p_peers: watch::Receiver<usize>,
    /// Who besides loopback may read `/metrics`.
    pub trusted_proxies: Arc<Vec<IpNet>>,
}

/// The routes, to merge into the node's HTTP router.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n".into())
}

/// Why the node is not ready, if it isn't.
pub async fn not_ready(ops: &Ops) -> Vec<String> {
    let mut problems = Vec::new();
    match tokio::time::timeout(READY_WRITE_WAIT, ops.store.probe_write()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("database: not writable: {e}")),
        Err(_) => problems.push(format!(
            "database: a write did not commit within {} s",
            READY_WRITE_WAIT.as_secs()
        )),
    }
    if !ops.gossip.is_running() {
        problems.push("swarm: stopped".into());
    } else if ops.p2p_addrs.borrow().is_empty() {
        problems.push("swarm: not listening on any address yet".into());
    }
    problems
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let problems = not_ready(&ops).await;
    if problems.is_empty() {
        text(StatusCode::OK, "ready\n".into())
    } else {
        tracing::warn!(problems = %problems.join("; "), "readiness check failed");
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}

/// Whether a client at `ip` may read the metrics.
fn may_scrape(proxies: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || crate::listener::trusted(proxies, ip)
}

async fn metrics(State(ops): State<Ops>, request: axum::http::request::Parts) -> Response {
    let client = request
        .extensions
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr)
        .map(|a| a.ip());
    if !client.is_some_and(|ip| may_scrape(&ops.trusted_proxies, ip)) {
        return text(
            StatusCode::FORBIDDEN,
            "/metrics is served only to loopback and trusted_proxies (docs/OPERATING.md)\n".into(),
        );
    }
    // Both off the async threads: a read connection, and the files' sizes.
    let files = ops.database_files.clone();
    let read = ops
        .store
        .read(move |conn| {
            let bytes = files
                .iter()
                .filter_map(|path| std::fs::metadata(path).ok())
                .map(|m| m.len())
                .sum::<u64>();
            Ok((crate::store::outbox::depths(conn)?, bytes))
        })
        .await;
    let (outbox_depths, database_bytes) = match read {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the outbox depth failed");
            (Vec::new(), 0)
        }
    };
    let metrics = ops.store.metrics();
    metrics.set_gauges(Gauges {
        event_streams: ops.streams.total(),
        database_bytes,
        p2p_peers: *ops.p2p_peers.borrow(),
        outbox_depths,
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OPENMETRICS)],
        metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_for_loopback_and_trusted_proxies_only() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(may_scrape(&proxies, ip("127.0.0.1")));
        assert!(may_scrape(&proxies, ip("::1")));
        assert!(may_scrape(&proxies, ip("::ffff:127.0.0.1")));
        assert!(may_scrape(&proxies, ip("10.1.2.3")));
        assert!(!may_scrape(&proxies, ip("203.0.113.7")));
        assert!(!may_scrape(&[], ip("10.1.2.3")));
    }
}
