//! Sending a user's signed profile change from their homeserver to every server in their server
//! list (`UpdateFederatedProfile`, docs/PROTOCOL.md §11).
//!
//! [`ProfileFanout::spawn`] runs in the background, so `UpdateUser` never waits on other nodes.
//! Each destination gets [`DELIVERY_ATTEMPTS`] tries, each bounded by [`ATTEMPT_TIMEOUT`]; a
//! destination that refuses the change for good (a status other than unavailable or timed out)
//! is not retried. This is best effort and lives in memory: a change still being retried when the
//! node stops is not sent. The durable outbox takes over from [`ProfileFanout::spawn`]: it
//! enqueues one [`ProfileFanout::request`] per destination in the transaction that applied the
//! change, and its worker calls [`ProfileFanout::deliver_once`], retrying on
//! [`Delivery::Retry`] and dropping the entry on [`Delivery::Done`] or [`Delivery::Refused`].

use std::time::Duration;

use super::FederationClient;
use crate::accounts::remote::normalise_address;
use crate::proto::guildhall::v1 as pb;
use crate::store::Store;

/// Tries per destination.
pub const DELIVERY_ATTEMPTS: u32 = 3;
/// How long one try may take (key check, connect, call).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before the second try; it doubles for each further one.
pub const FIRST_RETRY_AFTER: Duration = Duration::from_millis(250);

/// What one try to deliver a change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination applied it.
    Done,
    /// The destination answered no for good (e.g. an older change, or it does not know the
    /// user); trying again would not change that.
    Refused(String),
    /// The destination could not be reached or timed out: try again later.
    Retry(String),
}

/// Sends profile changes to the servers in a user's server list; cheap to clone.
#[derive(Debug, Clone)]
pub struct ProfileFanout {
    client: FederationClient,
    store: Store,
    own_address: String,
}

impl ProfileFanout {
    /// A fanout signing as this node (`client`), reading server lists from `store`, and skipping
    /// `own_address` if a user listed it.
    pub fn new(client: FederationClient, store: Store, own_address: String) -> Self {
        Self {
            client,
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

    /// Sends `update`, just applied for `user_id` here, to every server in the user's list, in a
    /// background task; returns at once.
    pub fn spawn(&self, user_id: String, update: pb::UpdateUserRequest) {
        let fanout = self.clone();
        tokio::spawn(async move {
            let servers = match fanout.store.servers(user_id.clone()).await {
                Ok(servers) => servers,
                Err(e) => {
                    tracing::warn!(error = %e, "profile change not forwarded: server list unreadable");
                    return;
                }
            };
            let request = Self::request(&user_id, update);
            let own = normalise_address(&fanout.own_address).to_owned();
            let sends = servers
                .into_iter()
                .map(|(server, _)| normalise_address(&server).to_owned())
                .filter(|server| *server != own)
                .map(|server| {
                    let (fanout, request) = (fanout.clone(), request.clone());
                    async move {
                        let outcome = fanout.deliver(&server, &request).await;
                        (server, outcome)
                    }
                });
            for (server, outcome) in futures::future::join_all(sends).await {
                match outcome {
                    Delivery::Done => tracing::debug!(%server, "profile change forwarded"),
                    Delivery::Refused(why) | Delivery::Retry(why) => {
                        tracing::warn!(%server, reason = %why, "profile change not forwarded");
                    }
                }
            }
        });
    }

    /// Delivers `request` to `destination`, trying up to [`DELIVERY_ATTEMPTS`] times with a
    /// doubling pause while it is unreachable.
    pub async fn deliver(
        &self,
        destination: &str,
        request: &pb::UpdateFederatedProfileRequest,
    ) -> Delivery {
        let mut pause = FIRST_RETRY_AFTER;
        let mut attempt = 1;
        loop {
            match self.deliver_once(destination, request).await {
                Delivery::Retry(why) if attempt < DELIVERY_ATTEMPTS => {
                    tracing::debug!(%destination, attempt, reason = %why, "profile change: retrying");
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// One try, bounded by [`ATTEMPT_TIMEOUT`].
    pub async fn deliver_once(
        &self,
        destination: &str,
        request: &pb::UpdateFederatedProfileRequest,
    ) -> Delivery {
        let call = async {
            let mut peer = match self.client.connect(destination).await {
                Ok(peer) => peer,
                Err(super::FederationError::Unreachable { reason, .. }) => {
                    return Delivery::Retry(reason);
                }
                Err(other) => return Delivery::Refused(other.to_string()),
            };
            match peer.update_federated_profile(request.clone()).await {
                Ok(_) => Delivery::Done,
                Err(s) => match s.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::ResourceExhausted => {
                        Delivery::Retry(format!("{:?}: {}", s.code(), s.message()))
                    }
                    code => Delivery::Refused(format!("{code:?}: {}", s.message())),
                },
            }
        };
        tokio::time::timeout(ATTEMPT_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Delivery::Retry(format!("no answer within {ATTEMPT_TIMEOUT:?}")))
    }
}
