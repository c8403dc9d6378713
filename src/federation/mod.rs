//! Federation: signed server-to-server calls and the directory of peers' keys.
//!
//! - [`wire`]: which methods are server calls, the metadata headers, the body hash.
//! - [`peers`]: the peer directory: fetches a peer's `GetServerInfo`, pins its key by address
//!   (trust on first use), accepts a new key only through a rotation signed by the pinned one.
//! - [`verify`]: the tower layer that checks every incoming server call before its handler runs.
//! - [`client`]: [`FederationClient`], whose channels sign every outgoing call.
//! - [`local`]: this node's own key validity and the rotation statement it publishes.
//! - [`bans`]: signed ban notices: made for every ban on this node, checked and kept when they
//!   arrive (`PropagateBan`), applied here when their origin is trusted.
//! - [`outbox`]: the durable outbox that delivers server calls that must arrive, in order per
//!   destination, across restarts ([`raw_codec`] sends its pre-encoded requests).
//! - [`moves`], [`revocation`]: homeserver moves and device revocations (PROTOCOL.md §12).
//! - [`vouch`]: a host asks a user's homeserver to vouch for a join (`Federate`).
//! - [`profiles`]: a homeserver sends its user's signed profile changes to their other servers.
//! - [`gossiped`], [`membership`]: statements that travel as gossiped server events too, and the
//!   hosts' announcements of remote members' joins and leaves, kept by the members' homeservers.
//!
//! The protocol is `docs/PROTOCOL.md` §8.

pub mod bans;
pub mod client;
pub mod gossiped;
pub mod local;
pub mod membership;
pub mod moves;
pub mod outbox;
pub mod peers;
pub mod profiles;
pub mod raw_codec;
pub mod revocation;
pub mod verify;
pub mod vouch;
pub mod wire;

use std::sync::Arc;

pub use client::FederationClient;
pub use peers::{Peer, PeerDirectory};
pub use verify::{S2sVerifyLayer, VerifiedOrigin};

use crate::identity::freshness::StaleTimestamp;
use crate::identity::{PublicKey, SecretKey};
use crate::store::{StorageError, Store};

/// Why a server call was refused, or a peer could not be used. Mapped to a status in
/// `crate::error`; every message starts with the header or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// A signature header is missing or malformed.
    #[error("{header}: {rule}")]
    Header {
        /// The header.
        header: &'static str,
        /// The rule it broke.
        rule: String,
    },
    /// The call was signed for another server.
    #[error("guildhall-destination: the call was signed for server {0}, not for this server")]
    WrongDestination(String),
    /// The timestamp is outside the clock-skew window.
    #[error("guildhall-timestamp: {0}")]
    Stale(StaleTimestamp),
    /// The signature does not cover what arrived.
    #[error(
        "guildhall-signature: not a signature by guildhall-origin-key over this call (method, body, headers) for this server"
    )]
    BadSignature,
    /// The origin already used this nonce.
    #[error("guildhall-nonce: already used by this origin (replayed request)")]
    Replay,
    /// The origin's key could not be established.
    #[error("guildhall-origin: {0}")]
    UnknownOrigin(String),
    /// The key differs from the one pinned for the address, with no valid rotation.
    #[error("guildhall-origin-key: {0}")]
    KeyNotPinned(String),
    /// A peer's published key or rotation is refused.
    #[error("server key of {address}: {reason}")]
    PeerKey {
        /// The peer's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Unknown origins are looked up at a bounded rate; the bound is reached.
    #[error("guildhall-origin: unknown server and the key-discovery limit is reached; retry later")]
    DiscoveryLimited,
    /// The body is larger than a server call may be.
    #[error("request body: larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A peer could not be reached or answered nonsense (outgoing calls and key fetches).
    #[error("peer {address}: {reason}")]
    Unreachable {
        /// The peer's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How a refused server call or an unusable peer reaches a client: a forged, misdirected, stale
/// or replayed call is `UNAUTHENTICATED`; a proof that holds but for the wrong server or key is
/// `PERMISSION_DENIED`; an unreachable peer is `UNAVAILABLE`, in the same words whatever the cause.
impl From<FederationError> for crate::error::Error {
    fn from(err: FederationError) -> Self {
        use crate::error::Error;
        use FederationError as F;
        let message = err.to_string();
        match err {
            F::Header { .. } | F::Stale(_) | F::BadSignature | F::Replay | F::UnknownOrigin(_) => {
                Error::Unauthenticated(message)
            }
            F::WrongDestination(_) | F::KeyNotPinned(_) | F::PeerKey { .. } => {
                Error::PermissionDenied(message)
            }
            F::DiscoveryLimited | F::BodyTooLarge(_) => Error::Exhausted(message),
            F::Unreachable { address, reason } => {
                tracing::info!(peer = %address, %reason, "peer unreachable");
                Error::Unavailable(format!(
                    "peer {address} is {}",
                    crate::outbound::UNREACHABLE
                ))
            }
            F::Storage(e) => Error::Storage(e),
        }
    }
}

/// The node's federation parts: its directory of peers, the verifier for incoming calls and the
/// client for outgoing ones. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Federation {
    directory: PeerDirectory,
    client: FederationClient,
    layer: S2sVerifyLayer,
    store: Store,
    key: Arc<SecretKey>,
}

impl Federation {
    /// Builds the parts for a node whose key is `key` and whose canonical address is `address`,
    /// reaching other servers through `outbound`.
    pub fn new(
        store: Store,
        key: SecretKey,
        address: String,
        clock_skew_ms: u64,
        outbound: crate::outbound::Outbound,
    ) -> Self {
        let directory = PeerDirectory::new(store.clone(), outbound);
        let client = FederationClient::new(Arc::new(key.clone()), address, directory.clone());
        let layer = S2sVerifyLayer::new(verify::Verifier::new(
            key.public(),
            clock_skew_ms,
            directory.clone(),
            store.clone(),
        ));
        Self {
            directory,
            client,
            layer,
            store,
            key: Arc::new(key),
        }
    }

    /// The peer directory.
    pub fn directory(&self) -> &PeerDirectory {
        &self.directory
    }

    /// This node's key (it signs ban notices and other server statements).
    pub fn key(&self) -> Arc<SecretKey> {
        self.key.clone()
    }

    /// The client for signed calls to other servers.
    pub fn client(&self) -> &FederationClient {
        &self.client
    }

    /// The layer that verifies incoming server calls (installed on the node's gRPC server).
    pub fn layer(&self) -> S2sVerifyLayer {
        self.layer.clone()
    }

    /// How many accepted-call nonces are remembered (calls accepted within the clock window).
    pub async fn remembered_nonces(&self) -> Result<u64, FederationError> {
        Ok(self
            .store
            .read(crate::store::federation::nonce_count)
            .await?)
    }

    /// Whether the call from `origin` with `nonce` was accepted here (and is still remembered):
    /// lets an operator, or a test, ask about one call rather than count them all.
    pub async fn nonce_remembered(
        &self,
        origin: &PublicKey,
        nonce: [u8; 16],
    ) -> Result<bool, FederationError> {
        let key = *origin.as_bytes();
        Ok(self
            .store
            .read(move |c| crate::store::federation::nonce_used(c, &key, &nonce))
            .await?)
    }

    /// Forgets nonces past their window; called by the node's prune loop.
    pub async fn prune(&self, now: u64) -> Result<usize, FederationError> {
        Ok(self
            .store
            .write(move |tx| crate::store::federation::prune_nonces(tx, now))
            .await?)
    }
}
