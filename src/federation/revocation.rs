//! Device revocation: a user's K_id-signed `device-revocation` (docs/PROTOCOL.md §12).
//!
//! The user sends it to their homeserver (`RevokeDevice`, with a session of theirs); the homeserver
//! verifies it, deletes the device with its sessions, remembers the revocation (so the device's
//! certificate is refused from then on, whatever request carries it) and, in the same
//! transaction, queues `ReceiveDeviceRevocation` through the outbox to every server in the user's
//! server list, which do the same. Revocation is final: a replay repeats what is already true.

use prost::Message as _;

use crate::error::{Error, Result};
use crate::gossip::{ServerEvent, ServerEvents};
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, DeviceRevocationPayload};
use crate::identity::{PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::Store;

/// The server method that carries a revocation to the user's other servers.
pub const RECEIVE_DEVICE_REVOCATION: &str = "ReceiveDeviceRevocation";
/// The server-event kind of a device revocation (payload: an encoded `DeviceRevocation`), gossiped
/// beside the direct calls ([`super::gossiped`] registers its validator).
pub const REVOCATION_KIND: &str = "device-revocation";

/// A revocation whose K_id signature verified. Only [`verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRevocation {
    payload: DeviceRevocationPayload,
    signature: Signature,
}

impl VerifiedRevocation {
    /// The user's id (hex K_id).
    pub fn user_id(&self) -> String {
        self.payload.id_key.to_hex()
    }

    /// The revoked device key (hex).
    pub fn device_pubkey(&self) -> String {
        self.payload.device_key.to_hex()
    }

    /// The message that carries it.
    pub fn to_proto(&self) -> pb::DeviceRevocation {
        pb::DeviceRevocation {
            user_id: self.user_id(),
            device_pubkey: self.device_pubkey(),
            timestamp: self.payload.timestamp,
            signature: self.signature.to_hex(),
        }
    }
}

/// Signs a revocation of `device` (clients, tests).
pub fn sign(id_key: &SecretKey, device: &PublicKey, timestamp: u64) -> pb::DeviceRevocation {
    let payload = DeviceRevocationPayload {
        id_key: id_key.public(),
        device_key: *device,
        timestamp,
    };
    pb::DeviceRevocation {
        user_id: payload.id_key.to_hex(),
        device_pubkey: device.to_hex(),
        timestamp,
        signature: signing::sign(&payload, id_key).to_hex(),
    }
}

/// Parses a revocation and checks K_id's signature.
pub fn verify(r: &pb::DeviceRevocation) -> Result<VerifiedRevocation> {
    let id_key = PublicKey::from_hex(&r.user_id).map_err(|e| Error::invalid("user_id", e))?;
    let device_key =
        PublicKey::from_hex(&r.device_pubkey).map_err(|e| Error::invalid("device_pubkey", e))?;
    let signature =
        Signature::from_hex(&r.signature).map_err(|e| Error::invalid("signature", e))?;
    let payload = DeviceRevocationPayload {
        id_key,
        device_key,
        timestamp: r.timestamp,
    };
    let verified = signing::verify(payload, &id_key, &signature).map_err(|_| {
        Error::unauthenticated(
            "signature",
            "not a signature by user_id over this device-revocation",
        )
    })?;
    Ok(VerifiedRevocation {
        payload: verified.into_inner(),
        signature,
    })
}

/// Applies a verified revocation: records it, deletes the device and its sessions, and queues it
/// for each of `forward_to` (inside the same transaction). Returns whether it was new here.
/// With `gossip` (the homeserver accepting the revocation first-hand), a new revocation is also
/// appended to the log as a `device-revocation` server event in the same transaction, and
/// returned for the caller to gossip once committed.
pub async fn apply(
    store: &Store,
    revocation: &VerifiedRevocation,
    forward_to: Vec<String>,
    gossip: Option<&ServerEvents>,
) -> Result<(bool, Option<ServerEvent>)> {
    let (user, device) = (revocation.user_id(), revocation.device_pubkey());
    let (timestamp, signature) = (revocation.payload.timestamp, revocation.signature.to_hex());
    let body = revocation.to_proto().encode_to_vec();
    let gossip = gossip.cloned();
    Ok(store
        .write(move |tx| {
            let now = now_ms();
            let new =
                crate::store::moves::revoke_device(tx, &user, &device, timestamp, &signature, now)?;
            for destination in &forward_to {
                crate::store::outbox::enqueue(
                    tx,
                    destination,
                    RECEIVE_DEVICE_REVOCATION,
                    &body,
                    now,
                )?;
            }
            let event = match (&gossip, new) {
                (Some(events), true) => Some(events.append_in(tx, REVOCATION_KIND, body, now)?),
                _ => None,
            };
            Ok((new, event))
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_forgery() {
        let id = SecretKey::from_seed(&[1; 32]);
        let dev = SecretKey::from_seed(&[2; 32]).public();
        let r = sign(&id, &dev, 7);
        let v = verify(&r).expect("verifies");
        assert_eq!(v.to_proto(), r);
        let mut forged = r.clone();
        forged.timestamp = 8;
        assert!(verify(&forged).is_err());
        let mut bad = r;
        bad.device_pubkey = "zz".into();
        assert!(
            verify(&bad)
                .expect_err("bad key")
                .to_string()
                .starts_with("device_pubkey:")
        );
    }
}
