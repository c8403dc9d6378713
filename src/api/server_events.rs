//! Server events between servers (docs/PROTOCOL.md §13): `PullServerEvents`, a peer catching up,
//! and `ReceiveServerEvent`, a peer delivering one of its own events directly.

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::gossip::server_events::{Received, ServerEventError};
use crate::gossip::{ServerEvent, ServerEvents};
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

/// `ReceiveServerEvent`: the calling server delivers an event it signed. It goes through the same
/// receive path as gossip; the answer tells the caller's outbox whether to stop: `OK` for an event
/// applied, already held or of no use here (ignored), `UNAVAILABLE` for one not judged now (from
/// the future, or storage failed: the outbox tries again), a definitive refusal for a malformed,
/// forged or rejected one.
pub async fn receive(
    events: Option<&ServerEvents>,
    request: Request<pb::ServerEvent>,
) -> Result<Response<pb::Empty>, Status> {
    let origin = crate::federation::verify::verified_origin(&request)?;
    let events =
        events.ok_or_else(|| Status::unimplemented("ReceiveServerEvent: gossip is off"))?;
    let event = ServerEvent::from_proto(request.into_inner());
    if let Ok(event) = &event
        && event.origin() != origin.key()
    {
        return Err(Error::PermissionDenied(
            "origin: must be the calling server's key; other servers' events travel by gossip"
                .into(),
        )
        .into());
    }
    match events.receive(event, None).await {
        Received::Accepted | Received::Duplicate | Received::Ignored(_) => {
            Ok(Response::new(pb::Empty {}))
        }
        Received::Deferred(why) => Err(Status::unavailable(format!(
            "event: not judged now ({why}); deliver it again later"
        ))),
        Received::Rejected(why) => Err(Error::FailedPrecondition(why).into()),
        Received::Invalid(e) => Err(Error::from(ServerEventError::Event(e)).into()),
    }
}
