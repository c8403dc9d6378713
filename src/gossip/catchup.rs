//! Catch-up: gossip is best effort, so a node pulls what it missed from its peers.
//!
//! **From whom.** Every peer in the federation directory (each server this node has called or been
//! called by, under its canonical address). **When.** At start, when a kind is registered, when a
//! libp2p connection to a new peer is made, and every [`CATCH_UP_EVERY`]; and from one peer alone
//! as soon as it is pinned for the first time (so a server met in federation joins the mesh now).
//! **What.** For each peer: its `GetServerInfo` (which also hands its libp2p addresses to the
//! swarm, so peers met in federation join the gossip mesh), then `PullServerEvents` with `origin`
//! empty for the heads it holds of the kinds this node handles, then, for each `(origin, kind)`
//! where the peer holds a later sequence than this node's contiguous head, pages of at most
//! [`PAGE`] events after that head, at most [`MAX_PAGES`] pages per `(origin, kind)`, all within
//! [`PEER_BUDGET`] per peer. When the peer is the origin and says it pruned its log up to a
//! sequence, this node's low-water mark moves there once it has the last page: a node far behind
//! takes the live events and skips the superseded ones. A peer's head for this node's *own*
//! events past the last one it remembers (a database restored from an older backup) moves this
//! node's numbering past it, once the peer shows that event signed by this node's key. Every event goes through the same receive path as gossip. A peer that
//! serves a malformed or forged event, or one it was not asked for, is not asked for more this
//! round.

use std::time::Duration;

use super::event::{EventError, ServerEvent};
use super::server_events::{Received, ServerEvents};
use crate::federation::Federation;
use crate::identity::PublicKey;
use crate::proto::guildhall::v1 as pb;
use crate::store::server_events as log;
use tokio_util::sync::CancellationToken;

/// How often a node catches up even if nothing woke it.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(300);
/// Events asked for per page.
pub const PAGE: u32 = 256;
/// Pages per `(origin, kind)` per round.
pub const MAX_PAGES: usize = 64;
/// Heads read per peer per round.
pub const MAX_HEADS: usize = 1024;
/// Time one peer may take per round.
pub const PEER_BUDGET: Duration = Duration::from_secs(30);

/// What one round of catch-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Peers asked.
    pub peers: usize,
    /// Peers that could not be reached or answered with an error or in time.
    pub unreachable: usize,
    /// Events accepted.
    pub accepted: u64,
    /// Events ignored (including unhandled kinds).
    pub ignored: u64,
    /// Events rejected by a validator.
    pub rejected: u64,
    /// Events already held.
    pub duplicates: u64,
    /// Malformed, forged, or unasked-for events (each stops the pull from that peer).
    pub invalid: u64,
}

impl CatchUpReport {
    fn count(&mut self, r: &Received) {
        match r {
            Received::Accepted => self.accepted += 1,
            Received::Rejected(_) => self.rejected += 1,
            Received::Ignored(_) | Received::Deferred(_) => self.ignored += 1,
            Received::Duplicate => self.duplicates += 1,
            Received::Invalid(_) => self.invalid += 1,
        }
    }
}

/// Why a pull from one peer stopped early.
#[derive(Debug)]
enum Stop {
    Unreachable(String),
    Misbehaved(String),
}

/// Runs catch-up rounds until `cancel` fires; see the module docs.
pub async fn run(events: ServerEvents, federation: Federation, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CATCH_UP_EVERY);
    loop {
        let report = tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => round(&events, &federation).await,
            () = events.catch_up_wanted() => round(&events, &federation).await,
            // A server met in federation for the first time: meet it and pull from it now.
            addresses = federation.directory().newly_pinned() => {
                let mut report = CatchUpReport::default();
                for address in addresses {
                    pull_one(&events, &federation, &address, &mut report).await;
                }
                report
            }
        };
        if report.accepted + report.invalid + report.rejected > 0 {
            tracing::info!(?report, "server-event catch-up");
        }
    }
}

/// One round over every known peer.
pub async fn round(events: &ServerEvents, federation: &Federation) -> CatchUpReport {
    let mut report = CatchUpReport::default();
    if events.kinds().is_empty() {
        return report;
    }
    let peers = match federation.directory().list().await {
        Ok(peers) => peers,
        Err(e) => {
            tracing::warn!(error = %e, "catch-up: the peer directory is unreadable");
            return report;
        }
    };
    for peer in peers {
        if peer.key == events.server_id() {
            continue;
        }
        pull_one(events, federation, &peer.address, &mut report).await;
    }
    report
}

/// Pulls from the peer at `address` within [`PEER_BUDGET`], counting what happened in `report`.
async fn pull_one(
    events: &ServerEvents,
    federation: &Federation,
    address: &str,
    report: &mut CatchUpReport,
) {
    report.peers += 1;
    let pull = pull_from(events, federation, address, report);
    match tokio::time::timeout(PEER_BUDGET, pull).await {
        Ok(Ok(())) => {}
        Ok(Err(Stop::Unreachable(why))) => {
            report.unreachable += 1;
            tracing::debug!(peer = %address, %why, "catch-up: peer unreachable");
        }
        Ok(Err(Stop::Misbehaved(why))) => {
            tracing::warn!(peer = %address, %why, "catch-up: peer served bad events");
        }
        Err(_) => {
            report.unreachable += 1;
            tracing::info!(peer = %address, "catch-up: peer took too long");
        }
    }
}

/// Pulls from the peer at `address`.
async fn pull_from(
    events: &ServerEvents,
    federation: &Federation,
    address: &str,
    report: &mut CatchUpReport,
) -> Result<(), Stop> {
    let unreachable = |e: &dyn std::fmt::Display| Stop::Unreachable(e.to_string());
    let info = federation
        .directory()
        .fetch_info(address)
        .await
        .map_err(|e| unreachable(&e))?;
    federation
        .directory()
        .observe(address, &info)
        .await
        .map_err(|e| unreachable(&e))?;
    events.meet_peer(&info).await;
    let mut client = federation
        .client()
        .connect(address)
        .await
        .map_err(|e| unreachable(&e))?;
    let kinds = events.kinds();
    let heads = client
        .pull_server_events(pb::PullServerEventsRequest {
            kinds: kinds.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| Stop::Unreachable(format!("PullServerEvents: {}", s.message())))?
        .into_inner()
        .heads;
    // The server answering, whose word on its own log's low-water mark is taken.
    let peer_key = PublicKey::from_hex(&info.server_pubkey).ok();
    for head in heads.into_iter().take(MAX_HEADS) {
        let origin = PublicKey::from_hex(&head.origin)
            .map_err(|e| Stop::Misbehaved(format!("head origin {e}")))?;
        if !kinds.contains(&head.kind) {
            continue;
        }
        if origin == events.server_id() {
            own_numbering(events, &mut client, address, &head).await?;
            continue;
        }
        let (bytes, kind) = (*origin.as_bytes(), head.kind.clone());
        let mut after = events
            .store()
            .read(move |c| log::contiguous_head(c, &bytes, &kind))
            .await
            .map_err(|e| unreachable(&e))?;
        for _ in 0..MAX_PAGES {
            if head.last_sequence <= after {
                break;
            }
            let answer = client
                .pull_server_events(pb::PullServerEventsRequest {
                    origin: head.origin.clone(),
                    kind: head.kind.clone(),
                    after_sequence: after,
                    limit: PAGE,
                    kinds: Vec::new(),
                })
                .await
                .map_err(|s| Stop::Unreachable(format!("PullServerEvents: {}", s.message())))?
                .into_inner();
            let (page, pruned_through) = (answer.events, answer.pruned_through);
            let whole_page = page.len() >= PAGE as usize;
            let mut taken_all = true;
            for m in page {
                if m.origin != head.origin || m.kind != head.kind || m.sequence <= after {
                    report.invalid += 1;
                    return Err(Stop::Misbehaved(format!(
                        "served ({}, {}, {}) when asked for {} after {after}",
                        m.origin, m.kind, m.sequence, head.kind
                    )));
                }
                after = m.sequence;
                let received = events.receive(ServerEvent::from_proto(m), None).await;
                report.count(&received);
                match received {
                    Received::Invalid(e) => return Err(Stop::Misbehaved(describe(&e))),
                    Received::Deferred(_) => taken_all = false,
                    _ => {}
                }
            }
            // The origin pruned its log up to `pruned_through`: after its last page every live
            // event up to there is taken, the rest up to there is moot, and this node's mark
            // moves there too. Only the origin's word counts: a relay could otherwise make this
            // node skip events it withheld.
            if peer_key == Some(origin) && !whole_page && taken_all {
                let through = pruned_through.min(head.last_sequence);
                if through > 0 {
                    events
                        .raise_mark(origin, &head.kind, through)
                        .await
                        .map_err(|e| unreachable(&e))?;
                    after = after.max(through);
                }
            }
            if !whole_page {
                break;
            }
        }
    }
    Ok(())
}

/// A peer holds this node's own events past the last one it remembers: its database was
/// restored from an older backup. Its next event must not reuse their sequences (peers would keep
/// the first and drop the new one as an equivocation), so once the peer shows the last one,
/// signed by this node's key, this node numbers on from there.
async fn own_numbering(
    events: &ServerEvents,
    client: &mut crate::federation::client::SignedClient,
    address: &str,
    head: &pb::ServerEventHead,
) -> Result<(), Stop> {
    let own = events.server_id();
    let (bytes, kind) = (*own.as_bytes(), head.kind.clone());
    let next = events
        .store()
        .read(move |c| log::next_sequence(c, &bytes, &kind))
        .await
        .map_err(|e| Stop::Unreachable(e.to_string()))?;
    if head.last_sequence < next {
        return Ok(());
    }
    let last = client
        .pull_server_events(pb::PullServerEventsRequest {
            origin: head.origin.clone(),
            kind: head.kind.clone(),
            after_sequence: head.last_sequence - 1,
            limit: 1,
            kinds: Vec::new(),
        })
        .await
        .map_err(|s| Stop::Unreachable(format!("PullServerEvents: {}", s.message())))?
        .into_inner()
        .events
        .into_iter()
        .next();
    let Some(last) = last else {
        return Ok(());
    };
    let verified = ServerEvent::from_proto(last).and_then(ServerEvent::verify);
    match verified {
        Ok(event)
            if event.origin() == own
                && event.kind() == head.kind
                && event.sequence() == head.last_sequence =>
        {
            tracing::warn!(peer = %address, kind = %head.kind, last = head.last_sequence, next,
                "a peer holds this node's own events past the last one it remembers (restored \
                 from an older backup?); numbering goes on after them");
            events
                .raise_mark(own, &head.kind, head.last_sequence)
                .await
                .map_err(|e| Stop::Unreachable(e.to_string()))
        }
        Ok(_) => Err(Stop::Misbehaved(format!(
            "served another event when asked for this node's own {} {}",
            head.kind, head.last_sequence
        ))),
        Err(e) => Err(Stop::Misbehaved(describe(&e))),
    }
}

fn describe(e: &EventError) -> String {
    format!("served an event that is not its origin's: {e}")
}
