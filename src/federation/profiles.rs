//! Sending a user's signed profile change from their homeserver to every server in their server
//! list (`UpdateFederatedProfile`, docs/PROTOCOL.md §11).
//!
//! [`ProfileFanout::queue_in`] queues one call per server in the durable federation outbox, in
//! the transaction of the change itself: an acknowledged change is never left unforwarded,
//! `UpdateUser` never waits on other nodes, and a change reaches a server that is down once it
//! returns (in order with the user's other changes to it). Receivers ignore a change that is not
//! newer than what they hold, so a repeated delivery is harmless.

use super::outbox::Outbox;
use crate::accounts::remote::normalise_address;
use crate::proto::guildhall::v1 as pb;
use crate::store::StorageError;

/// Sends profile changes to the servers in a user's server list; cheap to clone.
#[derive(Debug, Clone)]
pub struct ProfileFanout {
    outbox: Outbox,
    own_address: String,
}

impl ProfileFanout {
    /// A fanout queueing in `outbox`, skipping `own_address` if a user listed it.
    pub fn new(outbox: Outbox, own_address: String) -> Self {
        Self {
            outbox,
            own_address,
        }
    }

    /// The `UpdateFederatedProfileRequest` carrying `update`, the user's signed change exactly as
    /// received; the seed's flat fields are filled from it for readers that look at them.
    pub fn request(
        user_id: &str,
        update: pb::UpdateUserRequest,
    ) -> pb::UpdateFederatedProfileRequest {
        pb::UpdateFederatedProfileRequest {
            user_id: user_id.to_owned(),
            display_name: update.name.clone().unwrap_or_default(),
            avatar_url: update.avatar_url.clone().unwrap_or_default(),
            bio: update.bio.clone().unwrap_or_default(),
            device_cert: update.device_cert.clone(),
            timestamp: update.timestamp,
            signature: update.signature.clone(),
            update: Some(update),
        }
    }

    /// Inside the change's transaction `tx`: queues `body` (an encoded
    /// [`ProfileFanout::request`]) for every server in `user_id`'s server list but this one;
    /// answers how many were queued. Call [`ProfileFanout::wake`] once it committed.
    pub fn queue_in(
        &self,
        tx: &rusqlite::Connection,
        user_id: &str,
        body: &[u8],
        now: u64,
    ) -> Result<usize, StorageError> {
        let own = normalise_address(&self.own_address);
        let mut queued = 0;
        for (destination, _) in crate::store::accounts::servers_of(tx, user_id)? {
            if normalise_address(&destination) == own {
                continue;
            }
            crate::store::outbox::enqueue(tx, &destination, "UpdateFederatedProfile", body, now)?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Tells the outbox that deliveries were queued.
    pub fn wake(&self) {
        self.outbox.wake();
    }
}
