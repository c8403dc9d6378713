//! The serving side of catch-up: answers `PullServerEvents` from the log.
//!
//! With `origin` empty it lists heads (the highest served sequence per origin) for the requested
//! kinds; otherwise it lists the served events of `(origin, kind)` after `after_sequence`, with the
//! pair's low-water mark (`pruned_through`: at or below it only live events are held). Served
//! means accepted or ignored here: rejected events are kept only to close sequence gaps.

use super::event::{self, ServerEvent};
use super::server_events::ServerEvents;
use crate::error::Error;
use crate::identity::PublicKey;
use crate::proto::guildhall::v1 as pb;
use crate::store::server_events as log;

/// Most events one answer carries.
pub const MAX_EVENTS: usize = 256;
/// Most kinds one heads request may name.
pub const MAX_KINDS: usize = 64;
/// Most heads one answer carries.
pub const MAX_HEADS: usize = 1024;

/// What a well-formed `PullServerEvents` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullQuery {
    /// The heads of these kinds (at most [`MAX_KINDS`], each a valid kind).
    Heads(Vec<String>),
    /// The served events of `(origin, kind)` after `after`, at most `limit` (1 to
    /// [`MAX_EVENTS`]).
    Events {
        /// The origin server's key, as its 32 raw bytes (checked to be a valid key).
        origin: [u8; 32],
        /// The kind.
        kind: String,
        /// Events with a larger sequence than this.
        after: u64,
        /// How many at most.
        limit: usize,
    },
}

/// Checks a `PullServerEvents` request against its field rules (`docs/PROTOCOL.md` §13) and says
/// what it asks for. Public so the fuzz targets (`fuzz/`, `tests/fuzz.rs`) run these very checks.
pub fn check_pull(r: pb::PullServerEventsRequest) -> Result<PullQuery, Error> {
    if r.origin.is_empty() {
        if r.kinds.len() > MAX_KINDS {
            return Err(Error::invalid(
                "kinds",
                format!("at most {MAX_KINDS} kinds"),
            ));
        }
        for (i, kind) in r.kinds.iter().enumerate() {
            event::check_kind(kind).map_err(|e| Error::invalid(format!("kinds[{i}]"), rule(e)))?;
        }
        return Ok(PullQuery::Heads(r.kinds));
    }
    let origin = PublicKey::from_hex(&r.origin).map_err(|e| Error::invalid("origin", e))?;
    event::check_kind(&r.kind).map_err(|e| Error::invalid("kind", rule(e)))?;
    let limit = match usize::try_from(r.limit) {
        Ok(0) | Err(_) => MAX_EVENTS,
        Ok(n) => n.min(MAX_EVENTS),
    };
    Ok(PullQuery::Events {
        origin: *origin.as_bytes(),
        kind: r.kind,
        after: r.after_sequence,
        limit,
    })
}

impl ServerEvents {
    /// Answers a `PullServerEvents` call (already verified as a signed server call).
    pub async fn serve_pull(
        &self,
        r: pb::PullServerEventsRequest,
    ) -> Result<pb::PullServerEventsResponse, Error> {
        let (origin, kind, after, limit) = match check_pull(r)? {
            PullQuery::Heads(kinds) => {
                let heads = self
                    .store()
                    .read(move |c| log::heads(c, &kinds, MAX_HEADS))
                    .await?;
                return Ok(pb::PullServerEventsResponse {
                    events: Vec::new(),
                    pruned_through: 0,
                    heads: heads
                        .into_iter()
                        .map(|(origin, kind, last_sequence)| pb::ServerEventHead {
                            origin: hex::encode(origin),
                            kind,
                            last_sequence,
                        })
                        .collect(),
                });
            }
            PullQuery::Events {
                origin,
                kind,
                after,
                limit,
            } => (origin, kind, after, limit),
        };
        let (rows, pruned_through) = self
            .store()
            .read(move |c| {
                Ok((
                    log::after(c, &origin, &kind, after, limit)?,
                    log::mark(c, &origin, &kind)?,
                ))
            })
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            match ServerEvent::from_row(row) {
                Ok(e) => events.push(e.to_proto()),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable server-event row"),
            }
        }
        Ok(pb::PullServerEventsResponse {
            events,
            heads: Vec::new(),
            pruned_through,
        })
    }
}

/// The rule an event field broke, without the field name (the caller names its own field).
fn rule(e: event::EventError) -> String {
    match e {
        event::EventError::Field { rule, .. } => rule,
        other => other.to_string(),
    }
}
