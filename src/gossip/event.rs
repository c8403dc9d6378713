//! The signed server-event envelope (`server-event`, `docs/PROTOCOL.md` §13): its wire form (the
//! `ServerEvent` protobuf message, for gossip and catch-up alike), its format rules, its content
//! id, and the signature check that turns it into a [`VerifiedServerEvent`].
//!
//! The protobuf encoding is only transport: the signature covers the `server-event` signing bytes
//! built in `crate::identity::signing`, so two encodings of one event are one event.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::identity::signing::{self, ServerEventPayload, Signable};
use crate::identity::{PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::server_events::EventRow;

/// Largest payload a server event may carry.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest kind name.
pub const MAX_KIND_BYTES: usize = 64;

/// Why a server event was refused before or at its signature check. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A field breaks a format rule.
    #[error("{field}: {rule}")]
    Field {
        /// The `ServerEvent` field.
        field: &'static str,
        /// The rule it broke.
        rule: String,
    },
    /// The bytes are not a `ServerEvent` message.
    #[error("not a ServerEvent message: {0}")]
    Decode(String),
    /// The signature does not verify under `origin`.
    #[error("signature: not a server-event signature by origin over these fields")]
    BadSignature,
}

fn field(field: &'static str, rule: impl Into<String>) -> EventError {
    EventError::Field {
        field,
        rule: rule.into(),
    }
}

/// Checks a kind name: 1-64 bytes of `a-z`, `0-9`, `-`, not starting with `-`. Kinds name gossip
/// topics and rows, so they are kept plain.
pub fn check_kind(kind: &str) -> Result<(), EventError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_BYTES
        && !kind.starts_with('-')
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(field(
            "kind",
            "must be 1-64 characters of a-z, 0-9 and '-', not starting with '-'",
        ))
    }
}

/// A server event whose fields are well formed; its signature is not checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    payload: ServerEventPayload,
    signature: Signature,
}

impl ServerEvent {
    /// Signs an event of `kind` with this node's `key`.
    pub fn sign(
        key: &SecretKey,
        kind: &str,
        sequence: u64,
        timestamp: u64,
        payload: Vec<u8>,
    ) -> Self {
        let payload = ServerEventPayload {
            origin_key: key.public(),
            kind: kind.to_owned(),
            sequence,
            timestamp,
            payload,
        };
        let signature = signing::sign(&payload, key);
        Self { payload, signature }
    }

    /// Checks the formats of a received `ServerEvent` message (not its signature).
    pub fn from_proto(m: pb::ServerEvent) -> Result<Self, EventError> {
        let origin_key =
            PublicKey::from_hex(&m.origin).map_err(|e| field("origin", e.to_string()))?;
        check_kind(&m.kind)?;
        if m.sequence == 0 {
            return Err(field("sequence", "must be at least 1"));
        }
        if m.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(field(
                "payload",
                format!("must be at most {MAX_PAYLOAD_BYTES} bytes"),
            ));
        }
        let signature =
            Signature::from_bytes(&m.signature).map_err(|e| field("signature", e.to_string()))?;
        Ok(Self {
            payload: ServerEventPayload {
                origin_key,
                kind: m.kind,
                sequence: m.sequence,
                timestamp: m.timestamp,
                payload: m.payload,
            },
            signature,
        })
    }

    /// Decodes a gossip message.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let m = pb::ServerEvent::decode(bytes).map_err(|e| EventError::Decode(e.to_string()))?;
        Self::from_proto(m)
    }

    /// The wire message.
    pub fn to_proto(&self) -> pb::ServerEvent {
        let p = &self.payload;
        pb::ServerEvent {
            origin: p.origin_key.to_hex(),
            kind: p.kind.clone(),
            sequence: p.sequence,
            timestamp: p.timestamp,
            payload: p.payload.clone(),
            signature: self.signature.to_bytes().to_vec(),
        }
    }

    /// The gossip message bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// SHA-256 of the signing bytes: the event's identity for de-duplication, whatever its
    /// encoding or the path it came by.
    pub fn content_id(&self) -> [u8; 32] {
        Sha256::digest(self.payload.signing_bytes()).into()
    }

    /// The origin server's key.
    pub fn origin(&self) -> PublicKey {
        self.payload.origin_key
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        &self.payload.kind
    }

    /// The origin's sequence for this kind.
    pub fn sequence(&self) -> u64 {
        self.payload.sequence
    }

    /// When the origin signed it (ms).
    pub fn timestamp(&self) -> u64 {
        self.payload.timestamp
    }

    /// The kind's payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload.payload
    }

    /// The origin's signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// Checks the signature under `origin` (strict ed25519).
    pub fn verify(self) -> Result<VerifiedServerEvent, EventError> {
        let key = self.payload.origin_key;
        let verified = signing::verify(self.payload, &key, &self.signature)
            .map_err(|_| EventError::BadSignature)?;
        Ok(VerifiedServerEvent(Self {
            payload: verified.into_inner(),
            signature: self.signature,
        }))
    }

    /// The row the log stores.
    pub fn to_row(&self) -> EventRow {
        let p = &self.payload;
        EventRow {
            origin: *p.origin_key.as_bytes(),
            kind: p.kind.clone(),
            seq: p.sequence,
            timestamp: p.timestamp,
            payload: p.payload.clone(),
            signature: self.signature.to_bytes(),
            content_id: self.content_id(),
        }
    }

    /// An event read back from the log (checked again, as stored bytes are input too).
    pub fn from_row(row: EventRow) -> Result<Self, EventError> {
        Self::from_proto(pb::ServerEvent {
            origin: hex::encode(row.origin),
            kind: row.kind,
            sequence: row.seq,
            timestamp: row.timestamp,
            payload: row.payload,
            signature: row.signature.to_vec(),
        })
    }
}

/// A server event whose origin signature has been checked. Only [`ServerEvent::verify`] makes
/// one, so validators and appliers that take it can rely on the origin having said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedServerEvent(ServerEvent);

impl std::ops::Deref for VerifiedServerEvent {
    type Target = ServerEvent;
    fn deref(&self) -> &ServerEvent {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_encode_decode_verify() {
        let key = SecretKey::from_seed(&[9; 32]);
        let event = ServerEvent::sign(&key, "test-note", 1, 5, b"hi".to_vec());
        let back = ServerEvent::decode(&event.encode()).expect("decodes");
        assert_eq!(back, event);
        assert_eq!(back.content_id(), event.content_id());
        assert!(back.verify().is_ok());
        let mut m = event.to_proto();
        m.payload = b"ho".to_vec();
        let tampered = ServerEvent::from_proto(m).expect("formats hold");
        assert_eq!(tampered.verify(), Err(EventError::BadSignature));
        assert!(check_kind("Bad").is_err());
        assert!(check_kind("-x").is_err());
        assert!(check_kind("ban").is_ok());
        let mut m = event.to_proto();
        m.sequence = 0;
        assert!(ServerEvent::from_proto(m).is_err());
    }
}
