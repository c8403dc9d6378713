//! The peer directory: which key each peer server holds, pinned by the peer's canonical address.
//!
//! **Trust on first use.** The first time this node meets an address (it calls the peer, or the
//! peer calls it), it fetches the peer's `GetServerInfo` from that address and pins the published
//! key. `GetServerInfo` is unauthenticated, so the first fetch trusts the network path, as SSH does
//! with host keys; reach peers over `https://` to close that gap. After that the pin holds: a
//! different key at the same address is refused unless the peer publishes a `server-key-rotation`
//! signed by the pinned key (`ServerInfoResponse.key_rotation`), signed while that key was still
//! valid. A renewal is a rotation to the same key. A pinned key past its `key_valid_until` no longer
//! counts, and the address is pinned afresh on next use (logged as a warning): the validity bounds
//! how long a stolen key is useful.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::FederationError;
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, ServerKeyRotationPayload};
use crate::identity::{PublicKey, Signature};
use crate::outbound::Outbound;
use crate::proto::guildhall::v1 as pb;
use crate::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use crate::store::federation::{self as table, PeerRecord, PinChange};
use crate::store::{StorageError, Store};

/// How long connecting to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a `GetServerInfo` fetch may take in all.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Key fetches for unknown callers per minute, node-wide: an unauthenticated caller can make the
/// node contact an address it names, so that is rationed.
pub const DISCOVERY_PER_MINUTE: u32 = 60;
/// Key fetches for unknown callers per minute from one client address: an unauthenticated
/// caller makes the node dial out, so one address can't spend the node-wide allowance alone.
pub const DISCOVERY_PER_ADDRESS_PER_MINUTE: u32 = 10;
/// Key fetches for unknown callers in flight at once.
pub const DISCOVERY_CONCURRENCY: usize = 4;

/// One pinned peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its canonical address.
    pub address: String,
    /// Its pinned key.
    pub key: PublicKey,
    /// Until when the pinned key is valid (ms).
    pub key_valid_until: u64,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// When it was first pinned (ms).
    pub pinned_at: u64,
    /// When its key last changed (ms).
    pub key_changed_at: u64,
    /// When a signed call from it was last accepted (ms; 0 = never).
    pub last_seen_at: u64,
}

impl Peer {
    fn from_record(r: PeerRecord) -> Result<Self, FederationError> {
        let key = PublicKey::from_bytes(&r.server_key).map_err(|e| FederationError::PeerKey {
            address: r.address.clone(),
            reason: format!("stored key {e}"),
        })?;
        Ok(Self {
            address: r.address,
            key,
            key_valid_until: r.key_valid_until,
            peer_id: r.peer_id,
            pinned_at: r.pinned_at,
            key_changed_at: r.key_changed_at,
            last_seen_at: r.last_seen_at,
        })
    }
}

/// What a fetched `GetServerInfo` means for an address's pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The key the peer holds now.
    pub key: PublicKey,
    /// The change to store, if any.
    pub change: Option<PinChange>,
}

/// Most newly pinned addresses kept for the catch-up task before it takes them; past this they
/// wait for its periodic round.
const NEW_PEERS_MAX: usize = 1024;

/// Addresses pinned for the first time, for the catch-up task to meet at once (so a peer met in
/// federation joins the gossip mesh now, not at the next periodic round).
#[derive(Debug, Default)]
struct NewPeers {
    addresses: std::sync::Mutex<Vec<String>>,
    added: tokio::sync::Notify,
}

/// The peer directory; cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerDirectory {
    store: Store,
    discovery: Arc<DefaultDirectRateLimiter>,
    discovery_by_address: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>,
    discovery_slots: Arc<Semaphore>,
    new_peers: Arc<NewPeers>,
    outbound: Outbound,
}

impl PeerDirectory {
    /// A directory over the node's store, reaching peers through `outbound` (its address policy
    /// and TLS roots).
    pub fn new(store: Store, outbound: Outbound) -> Self {
        let per_minute = NonZeroU32::new(DISCOVERY_PER_MINUTE).expect("constant is non-zero");
        let per_address =
            NonZeroU32::new(DISCOVERY_PER_ADDRESS_PER_MINUTE).expect("constant is non-zero");
        Self {
            store,
            outbound,
            discovery_by_address: Arc::new(RateLimiter::keyed(Quota::per_minute(per_address))),
            discovery: Arc::new(RateLimiter::direct(Quota::per_minute(per_minute))),
            discovery_slots: Arc::new(Semaphore::new(DISCOVERY_CONCURRENCY)),
            new_peers: Arc::default(),
        }
    }

    /// Records that `address` was pinned for the first time (see [`Self::newly_pinned`]).
    pub(crate) fn pinned_new(&self, address: &str) {
        let mut addresses = self
            .new_peers
            .addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if addresses.len() < NEW_PEERS_MAX && !addresses.iter().any(|a| a == address) {
            addresses.push(address.to_owned());
        }
        drop(addresses);
        self.new_peers.added.notify_one();
    }

    /// Waits until some address was pinned for the first time, and takes those pinned since the
    /// last call.
    pub async fn newly_pinned(&self) -> Vec<String> {
        loop {
            let taken = std::mem::take(
                &mut *self
                    .new_peers
                    .addresses
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if !taken.is_empty() {
                return taken;
            }
            self.new_peers.added.notified().await;
        }
    }

    /// The key a statement for the server at `address` is signed for (its audience): the key it
    /// publishes if it answers now (checked against the pin), else the key pinned for it; `None`
    /// if it is down and was never met. A key the server changed without a valid rotation is
    /// refused.
    pub async fn audience_key(&self, address: &str) -> Result<Option<PublicKey>, FederationError> {
        match self.refresh(address).await {
            Ok(key) => Ok(Some(key)),
            Err(FederationError::Unreachable { .. }) => {
                Ok(self.get(address).await?.map(|peer| peer.key))
            }
            Err(other) => Err(other),
        }
    }

    /// The peer pinned under `address`, if any.
    pub async fn get(&self, address: &str) -> Result<Option<Peer>, FederationError> {
        let address = address.to_owned();
        self.store
            .read(move |c| table::peer(c, &address))
            .await?
            .map(Peer::from_record)
            .transpose()
    }

    /// Every pinned peer.
    pub async fn list(&self) -> Result<Vec<Peer>, FederationError> {
        self.store
            .read(table::peers)
            .await?
            .into_iter()
            .map(Peer::from_record)
            .collect()
    }

    /// The address pinned to `key`, if this node has met a server with that key (a server event's
    /// origin is named by key; what it may say depends on the address, e.g. a user's homeserver).
    pub async fn address_of(&self, key: &PublicKey) -> Result<Option<String>, FederationError> {
        let key = *key.as_bytes();
        Ok(self
            .store
            .read(move |c| table::address_of_key(c, &key))
            .await?)
    }

    /// Fetches `address`'s `GetServerInfo`, checks it against the pin and stores any change: the
    /// key to sign outgoing calls to `address` for. Called before talking to a peer, so a peer
    /// that changed its key without a valid rotation is never trusted.
    pub async fn refresh(&self, address: &str) -> Result<PublicKey, FederationError> {
        let info = self.fetch_info(address).await?;
        self.observe(address, &info).await
    }

    /// Applies a `GetServerInfo` fetched from `address`: pins on first use, accepts a rotation or
    /// renewal signed by the pinned key, refuses any other key change. Returns the peer's key.
    pub async fn observe(
        &self,
        address: &str,
        info: &pb::ServerInfoResponse,
    ) -> Result<PublicKey, FederationError> {
        let current = self.get(address).await?;
        let judgement = judge(current.as_ref(), address, info, now_ms())?;
        if let Some(change) = judgement.change {
            let first = matches!(change, PinChange::New { .. });
            let owned = address.to_owned();
            self.store
                .write(move |tx| table::apply_pin(tx, &owned, &change, now_ms()))
                .await
                .map_err(|e| pin_race(address, e))?;
            if first {
                self.pinned_new(address);
            }
        }
        Ok(judgement.key)
    }

    /// For an incoming call from `address` signed by `claimed`: the pin change accepting the call
    /// needs (`None` when the pin already holds `claimed`). Nothing is written here; the verifier
    /// stores the change with the call's nonce only once the whole call is accepted. Fetches the
    /// caller's `GetServerInfo` only when the pin can't answer, at a bounded rate (node-wide and
    /// per `client` address) and concurrency.
    pub(crate) async fn resolve_origin(
        &self,
        address: &str,
        claimed: PublicKey,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<PinChange>, FederationError> {
        let now = now_ms();
        let current = self.get(address).await?;
        if let Some(peer) = &current
            && peer.key == claimed
            && peer.key_valid_until >= now
        {
            return Ok(None);
        }
        if let Some(ip) = client
            && self.discovery_by_address.check_key(&ip).is_err()
        {
            return Err(FederationError::DiscoveryLimited);
        }
        if self.discovery.check().is_err() {
            return Err(FederationError::DiscoveryLimited);
        }
        let _slot = self
            .discovery_slots
            .try_acquire()
            .map_err(|_| FederationError::DiscoveryLimited)?;
        let info = self.fetch_info(address).await.map_err(|e| {
            tracing::info!(peer = %address, error = %e, "key fetch for an unknown caller failed");
            FederationError::UnknownOrigin(format!(
                "{address} is not a known server and its key could not be fetched: {}",
                crate::outbound::UNREACHABLE
            ))
        })?;
        let judgement = judge(current.as_ref(), address, &info, now)?;
        if judgement.key != claimed {
            return Err(FederationError::KeyNotPinned(match &current {
                Some(peer) => format!(
                    "{address} is pinned to key {} and publishes {}; the call was signed by {} \
                     (a new key is accepted only with a rotation signed by the pinned key)",
                    peer.key.fmt_short(),
                    judgement.key.fmt_short(),
                    claimed.fmt_short()
                ),
                None => format!(
                    "the server at {address} publishes key {}, not the key that signed the call",
                    judgement.key.fmt_short()
                ),
            }));
        }
        Ok(judgement.change)
    }
}

fn pin_race(address: &str, e: StorageError) -> FederationError {
    match e {
        StorageError::Conflict(_) => FederationError::UnknownOrigin(format!(
            "the pinned key of {address} changed while this call was checked; retry"
        )),
        other => other.into(),
    }
}

/// Decides what `info`, fetched from `address`, means for the pin `current` at time `now`.
pub fn judge(
    current: Option<&Peer>,
    address: &str,
    info: &pb::ServerInfoResponse,
    now: u64,
) -> Result<Judgement, FederationError> {
    let refuse = |reason: String| FederationError::PeerKey {
        address: address.to_owned(),
        reason,
    };
    let key = PublicKey::from_hex(&info.server_pubkey)
        .map_err(|e| refuse(format!("server_pubkey {e}")))?;
    if info.canonical_address != address {
        return Err(refuse(format!(
            "the server calls itself {:?}; its key is pinned only under its canonical address",
            info.canonical_address
        )));
    }
    if info.key_valid_until < now {
        return Err(refuse(format!(
            "key_valid_until {} has passed",
            info.key_valid_until
        )));
    }
    let new_pin = |expected: Option<PublicKey>| match expected {
        None => PinChange::New {
            key: *key.as_bytes(),
            valid_until: info.key_valid_until,
            peer_id: info.peer_id.clone(),
        },
        Some(old) => PinChange::Replace {
            expected: *old.as_bytes(),
            key: *key.as_bytes(),
            valid_until: info.key_valid_until,
            peer_id: info.peer_id.clone(),
        },
    };
    let Some(pinned) = current else {
        return Ok(Judgement {
            key,
            change: Some(new_pin(None)),
        });
    };
    if pinned.key_valid_until < now {
        tracing::warn!(%address, old = %pinned.key.fmt_short(), new = %key.fmt_short(),
            "pinned server key expired; pinning the published key afresh");
        return Ok(Judgement {
            key,
            change: Some(new_pin(Some(pinned.key))),
        });
    }
    if pinned.key == key {
        // The same key: only a renewal (a statement from this key to itself with a later
        // validity) changes anything; an older rotation that led to this key is history.
        let renewal = info
            .key_rotation
            .as_ref()
            .filter(|r| r.old_key == r.new_key && info.key_valid_until > pinned.key_valid_until);
        let Some(r) = renewal else {
            return Ok(Judgement { key, change: None });
        };
        check_rotation(pinned, key, info.key_valid_until, r).map_err(refuse)?;
        return Ok(Judgement {
            key,
            change: Some(new_pin(Some(pinned.key))),
        });
    }
    let Some(r) = &info.key_rotation else {
        return Err(refuse(format!(
            "publishes key {} but {} is pinned, with no rotation signed by the pinned key",
            key.fmt_short(),
            pinned.key.fmt_short()
        )));
    };
    check_rotation(pinned, key, info.key_valid_until, r).map_err(refuse)?;
    Ok(Judgement {
        key,
        change: Some(new_pin(Some(pinned.key))),
    })
}

/// Checks that `r` hands `pinned`'s key over to `key` (valid until `valid_until`), signed by the
/// pinned key while it was valid.
fn check_rotation(
    pinned: &Peer,
    key: PublicKey,
    valid_until: u64,
    r: &pb::ServerKeyRotation,
) -> Result<(), String> {
    let old_key =
        PublicKey::from_hex(&r.old_key).map_err(|e| format!("key_rotation.old_key {e}"))?;
    let new_key =
        PublicKey::from_hex(&r.new_key).map_err(|e| format!("key_rotation.new_key {e}"))?;
    if old_key != pinned.key {
        return Err(format!(
            "key_rotation.old_key is {}, but {} is pinned: a rotation must be signed by the pinned key",
            old_key.fmt_short(),
            pinned.key.fmt_short()
        ));
    }
    if new_key != key || r.new_key_valid_until != valid_until {
        return Err(
            "key_rotation does not name the published server_pubkey and key_valid_until".into(),
        );
    }
    if r.timestamp > pinned.key_valid_until {
        return Err("key_rotation was signed after the pinned key expired".into());
    }
    let signature =
        Signature::from_hex(&r.signature).map_err(|e| format!("key_rotation.signature {e}"))?;
    let payload = ServerKeyRotationPayload {
        old_key,
        new_key,
        new_key_valid_until: r.new_key_valid_until,
        timestamp: r.timestamp,
    };
    signing::verify(payload, &old_key, &signature)
        .map(|_| ())
        .map_err(|_| "key_rotation.signature: not a signature by the pinned key".into())
}

impl PeerDirectory {
    /// Fetches `GetServerInfo` from `address`, bounded by [`FETCH_TIMEOUT`], through the
    /// outbound policy and TLS.
    pub async fn fetch_info(
        &self,
        address: &str,
    ) -> Result<pb::ServerInfoResponse, FederationError> {
        let fail = |reason: String| FederationError::Unreachable {
            address: address.to_owned(),
            reason,
        };
        if address.len() > super::wire::MAX_ADDRESS_BYTES {
            return Err(fail(format!(
                "must be an address of at most {} bytes",
                super::wire::MAX_ADDRESS_BYTES
            )));
        }
        let fetch = async {
            let channel = self
                .outbound
                .channel(address, CONNECT_TIMEOUT)
                .await
                .map_err(|e| fail(e.to_string()))?;
            GuildHallClient::new(channel)
                .get_server_info(pb::Empty {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| fail(format!("GetServerInfo: {}", s.message())))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))?
    }

    /// The outbound policy and TLS roots peers are reached through.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }
}
