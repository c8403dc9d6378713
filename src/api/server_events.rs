//! `PullServerEvents`: a peer server catching up on server events (docs/PROTOCOL.md §13).

use tonic::{Request, Response, Status};

use crate::gossip::ServerEvents;
use crate::proto::guildhall::v1 as pb;

/// Answers from the log; the verify layer has already proven which server asks.
pub async fn pull(
    events: Option<&ServerEvents>,
    request: Request<pb::PullServerEventsRequest>,
) -> Result<Response<pb::PullServerEventsResponse>, Status> {
    let origin = crate::federation::verify::verified_origin(&request)?;
    let events = events.ok_or_else(|| Status::unimplemented("PullServerEvents: gossip is off"))?;
    tracing::debug!(origin = %origin.address(), "PullServerEvents from a peer server");
    Ok(Response::new(
        events.serve_pull(request.into_inner()).await?,
    ))
}
