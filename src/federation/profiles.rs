//! Sending a user's signed profile change from their homeserver to every server in their server
//! list (`UpdateFederatedProfile`, docs/PROTOCOL.md §11).
//!
//! [`ProfileFanout::forward`] queues one call per server in the durable federation outbox, so
//! `UpdateUser` never waits on other nodes and a change reaches a server that is down once it
//! returns (in order with the user's other changes to it). Receivers ignore a change that is not
//! newer than what they hold, so a repeated delivery is harmless.

use prost::Message;

use super::outbox::Outbox;
use crate::accounts::remote::normalise_address;
use crate::proto::guildhall::v1 as pb;
use crate::store::{StorageError, Store};

/// Sends profile changes to the servers in a user's server list; cheap to clone.
#[derive(Debug, Clone)]
pub struct ProfileFanout {
    outbox: Outbox,
    store: Store,
    own_address: String,
}

impl ProfileFanout {
    /// A fanout queueing in `outbox`, reading server lists from `store`, and skipping
    /// `own_address` if a user listed it.
    pub fn new(outbox: Outbox, store: Store, own_address: String) -> Self {
        Self {
            outbox,
            store,
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

    /// Queues `update` (the user's signed change, as received) for every server in the user's
    /// server list, in one transaction; answers how many were queued.
    pub async fn forward(
        &self,
        user_id: &str,
        update: pb::UpdateUserRequest,
    ) -> Result<usize, StorageError> {
        let servers = self.store.servers(user_id.to_owned()).await?;
        let own = normalise_address(&self.own_address).to_owned();
        let destinations: Vec<String> = servers
            .into_iter()
            .map(|(url, _)| url)
            .filter(|url| normalise_address(url) != own)
            .collect();
        if destinations.is_empty() {
            return Ok(0);
        }
        let body = Self::request(user_id, update).encode_to_vec();
        let now = crate::identity::freshness::now_ms();
        let count = destinations.len();
        self.store
            .write(move |tx| {
                for destination in &destinations {
                    crate::store::outbox::enqueue(
                        tx,
                        destination,
                        "UpdateFederatedProfile",
                        &body,
                        now,
                    )?;
                }
                Ok(())
            })
            .await?;
        self.outbox.wake();
        Ok(count)
    }
}
