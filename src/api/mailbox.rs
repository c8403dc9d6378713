//! `SyncMailbox`: check the session id, count the call against the session's rate limit, then put
//! or take. The rules are in [`crate::mailbox`] and `docs/PROTOCOL.md`.

use tonic::{Request, Response};

use super::Reply;
use crate::error::Error;
use crate::limits::{Limit, Limits};
use crate::mailbox::{Mailbox, check_session_id};
use crate::proto::guildhall::v1 as pb;

/// One `SyncMailbox` call: a put (with `payload`), a take, or a take that waits.
pub(super) async fn sync(
    mailbox: &Mailbox,
    limits: &Limits,
    request: Request<pb::SyncMailboxRequest>,
) -> Reply<pb::SyncMailboxResponse> {
    let r = request.into_inner();
    // Checked before the limiter sees it, so malformed ids never become limiter keys.
    check_session_id(&r.session_id)?;
    if mailbox.sweep_if_due() {
        // Session ids are client-chosen, so the per-session limiter gains a key per new id;
        // forget the idle ones along with the expired sessions.
        limits.retain_recent();
    }
    limits.check(Limit::SyncMailbox, &r.session_id)?;
    let payload = match r.payload {
        Some(_) if r.wait_for_data => {
            return Err(Error::invalid(
                "wait_for_data",
                "must be false when payload is set (a call either puts or takes)",
            )
            .into());
        }
        Some(payload) => {
            mailbox.put(&r.session_id, payload)?;
            None
        }
        None if r.wait_for_data => mailbox.take_or_wait(&r.session_id).await?,
        None => mailbox.take(&r.session_id)?,
    };
    Ok(Response::new(pb::SyncMailboxResponse { payload }))
}
