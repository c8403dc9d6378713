//! Device linking over the mailbox: how a new device gets a `DeviceCert` from a device that holds
//! the user's identity key K_id, with the user comparing a short fingerprint in between.
//!
//! 1. The new device makes K_dev and a random [`LinkCode`], posts a [`LinkRequest`] (its public
//!    key, device id, optional name) to the mailbox id [`LinkCode::request_box`], shows the code
//!    and the [`fingerprint`] of K_dev, and long-polls [`LinkCode::cert_box`].
//! 2. The user carries the code to the existing device, which takes the request, shows the
//!    fingerprint of the key in it, and only when the user confirms it matches, signs a
//!    `DeviceCert` for that key with K_id and posts a [`LinkCert`] to the cert box.
//! 3. The new device checks that the cert names its own key and device id and is signed by the
//!    K_id it expects, keeps a device-only identity, and logs in with `user_id`.
//!
//! The server only relays bytes: the fingerprint check stops it (or anyone who learns the code)
//! from slipping in another key, and the expected K_id stops it from handing the new device a
//! cert from someone else's identity. The JSON shapes are in `docs/PROTOCOL.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{ClientIdentity, DEFAULT_CERT_LIFETIME_MS, DeviceIdentity};
use crate::identity::{CertError, DeviceCert, KeyError, PublicKey, SecretKey, Signature};

/// Length of a link code: 32 lowercase hex characters, 128 random bits.
pub const CODE_LEN: usize = 32;
/// Appended to the code for the mailbox that carries the request (new device → existing one).
pub const REQUEST_SUFFIX: &str = "-request";
/// Appended to the code for the mailbox that carries the cert (existing device → new one).
pub const CERT_SUFFIX: &str = "-cert";
/// The `type` of a link request.
pub const REQUEST_TYPE: &str = "guildhall.link-request.v1";
/// The `type` of a link cert.
pub const CERT_TYPE: &str = "guildhall.link-cert.v1";
/// The `type` of the answer that says the user declined (`{"type": REFUSED_TYPE}`).
pub const REFUSED_TYPE: &str = "guildhall.link-refused.v1";

/// Why a link step failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The code the user typed is not a link code.
    #[error("link code must be {CODE_LEN} lowercase hex characters")]
    BadCode,
    /// A payload is not the JSON this step expects.
    #[error("payload is not a {expected}: {why}")]
    Malformed {
        /// The `type` expected.
        expected: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A key or signature in a payload is malformed.
    #[error("{field}: {source}")]
    Key {
        /// The JSON field.
        field: &'static str,
        /// Why.
        source: KeyError,
    },
    /// The cert is for another user than the one expected.
    #[error("the cert is from user {got}, not the expected {expected}")]
    WrongUser {
        /// The user expected.
        expected: String,
        /// The user in the cert.
        got: String,
    },
    /// The user declined on the existing device.
    #[error("the link was declined on the other device")]
    Refused,
    /// The cert names another key or device id than this device's.
    #[error("the cert is for another device (key or device id differ from this device's)")]
    WrongDevice,
    /// The cert does not verify (or the requested device id breaks the cert rules).
    #[error("device_cert: {0}")]
    Cert(#[from] CertError),
}

/// The secret both devices share for one link: it names the two mailbox sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCode(String);

impl LinkCode {
    /// A fresh code from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; CODE_LEN / 2];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        Self(hex::encode(bytes))
    }

    /// Parses a code the user carried over (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, LinkError> {
        let text = text.trim();
        let ok = text.len() == CODE_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(LinkError::BadCode)
        }
    }

    /// The code as shown to the user.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mailbox session id for the request.
    pub fn request_box(&self) -> String {
        format!("{}{REQUEST_SUFFIX}", self.0)
    }

    /// The mailbox session id for the cert.
    pub fn cert_box(&self) -> String {
        format!("{}{CERT_SUFFIX}", self.0)
    }
}

/// A short fingerprint of a device key for people to compare: the first 10 bytes of
/// SHA-256(the 32 raw key bytes) as lowercase hex, in five groups of four (`1a2b-…`).
pub fn fingerprint(key: &PublicKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex = hex::encode(&digest[..10]);
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The new device's request (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    /// Always [`REQUEST_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Hex of K_dev.
    pub device_key: String,
    /// The device id the cert should carry.
    pub device_id: String,
    /// A name for people (`LoginRequest.device_name`), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

/// A device cert in JSON: the fields of the protobuf `DeviceCert`, with the same encodings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertJson {
    /// Hex of K_dev.
    pub pubkey: String,
    /// The device id.
    pub device_id: String,
    /// Issue time, ms since the epoch.
    pub issued_at: u64,
    /// Expiry, ms since the epoch.
    pub expiry: u64,
    /// Hex of K_id's `device-cert` signature.
    pub signature: String,
}

/// The existing device's answer (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCert {
    /// Always [`CERT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Hex of K_id.
    pub user_id: String,
    /// The cert for the new device.
    pub device_cert: CertJson,
}

/// Just the `type` of a payload, read first to tell a refusal from a cert.
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: String,
}

/// The payload that tells the new device the user declined.
pub fn refusal_payload() -> Vec<u8> {
    format!("{{\"type\":\"{REFUSED_TYPE}\"}}").into_bytes()
}

/// A request as the existing device sees it, with its key parsed.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The key to certify.
    pub device_key: PublicKey,
    /// The device id asked for.
    pub device_id: String,
    /// The name, if any.
    pub device_name: Option<String>,
}

impl ReceivedRequest {
    /// Parses a request payload taken from the mailbox.
    pub fn parse(payload: &[u8]) -> Result<Self, LinkError> {
        let malformed = |why: String| LinkError::Malformed {
            expected: REQUEST_TYPE,
            why,
        };
        let request: LinkRequest =
            serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
        if request.kind != REQUEST_TYPE {
            return Err(malformed(format!("type is {:?}", request.kind)));
        }
        Ok(Self {
            device_key: PublicKey::from_hex(&request.device_key).map_err(|source| {
                LinkError::Key {
                    field: "device_key",
                    source,
                }
            })?,
            device_id: request.device_id,
            device_name: request.device_name,
        })
    }

    /// The fingerprint the user compares with the one the new device shows.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.device_key)
    }

    /// Certifies the requested key with `identity`'s K_id (valid from `now_ms` for
    /// [`DEFAULT_CERT_LIFETIME_MS`]); returns the [`LinkCert`] payload to post. Call only after
    /// the user confirmed the fingerprint.
    pub fn approve(&self, identity: &ClientIdentity, now_ms: u64) -> Result<Vec<u8>, LinkError> {
        let cert = DeviceCert::issue(
            &identity.id_key,
            self.device_key,
            &self.device_id,
            now_ms,
            now_ms.saturating_add(DEFAULT_CERT_LIFETIME_MS),
        );
        // Refuses a device id the server would refuse, before anything is posted.
        cert.verify(&identity.id_key.public(), now_ms, 0)?;
        let answer = LinkCert {
            kind: CERT_TYPE.to_owned(),
            user_id: identity.user_id(),
            device_cert: CertJson {
                pubkey: cert.device_key.to_hex(),
                device_id: cert.device_id,
                issued_at: cert.issued_at,
                expiry: cert.expiry,
                signature: cert.signature.to_hex(),
            },
        };
        Ok(serde_json::to_vec(&answer).expect("a struct of strings and numbers serializes"))
    }
}

/// The new device's side of a link in progress.
#[derive(Debug, Clone)]
pub struct PendingLink {
    /// The code to show the user.
    pub code: LinkCode,
    /// The new device key (K_dev).
    pub device_key: SecretKey,
    /// The device id asked for.
    pub device_id: String,
    /// The name asked for.
    pub device_name: Option<String>,
}

impl PendingLink {
    /// A new K_dev and code for a device called `device_id`.
    pub fn new(device_id: &str, device_name: Option<&str>) -> Self {
        Self {
            code: LinkCode::generate(),
            device_key: SecretKey::generate(),
            device_id: device_id.to_owned(),
            device_name: device_name.map(str::to_owned),
        }
    }

    /// The request payload to post to [`LinkCode::request_box`].
    pub fn request_payload(&self) -> Vec<u8> {
        let request = LinkRequest {
            kind: REQUEST_TYPE.to_owned(),
            device_key: self.device_key.public().to_hex(),
            device_id: self.device_id.clone(),
            device_name: self.device_name.clone(),
        };
        serde_json::to_vec(&request).expect("a struct of strings serializes")
    }

    /// The fingerprint of this device's key, to show next to the code.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.device_key.public())
    }

    /// Checks the answer taken from [`LinkCode::cert_box`]: it must be a cert for this device's
    /// key and id, by `expected_user`'s K_id, valid at `now_ms` (allowing `skew_ms` on its issue
    /// time). Returns the device-only identity to keep.
    pub fn accept(
        &self,
        payload: &[u8],
        expected_user: &PublicKey,
        now_ms: u64,
        skew_ms: u64,
    ) -> Result<DeviceIdentity, LinkError> {
        let malformed = |why: String| LinkError::Malformed {
            expected: CERT_TYPE,
            why,
        };
        let kind: Kind = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
        if kind.kind == REFUSED_TYPE {
            return Err(LinkError::Refused);
        }
        let answer: LinkCert =
            serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
        if answer.kind != CERT_TYPE {
            return Err(malformed(format!("type is {:?}", answer.kind)));
        }
        if answer.user_id != expected_user.to_hex() {
            return Err(LinkError::WrongUser {
                expected: expected_user.to_hex(),
                got: answer.user_id,
            });
        }
        let key = |field: &'static str| move |source| LinkError::Key { field, source };
        let c = answer.device_cert;
        let cert = DeviceCert {
            device_key: PublicKey::from_hex(&c.pubkey).map_err(key("device_cert.pubkey"))?,
            device_id: c.device_id,
            issued_at: c.issued_at,
            expiry: c.expiry,
            signature: Signature::from_hex(&c.signature).map_err(key("device_cert.signature"))?,
        };
        if cert.device_key != self.device_key.public() || cert.device_id != self.device_id {
            return Err(LinkError::WrongDevice);
        }
        cert.verify(expected_user, now_ms, skew_ms)?;
        Ok(DeviceIdentity {
            user_key: *expected_user,
            device_key: self.device_key.clone(),
            cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600_000;

    #[test]
    fn link_roundtrip_and_refusals() {
        let owner = ClientIdentity::from_keys(
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
            "phone",
            NOW,
        );
        let pending = PendingLink::new("laptop", Some("Laptop"));
        assert!(LinkCode::parse(pending.code.as_str()).is_ok());
        let request = ReceivedRequest::parse(&pending.request_payload()).expect("parses");
        assert_eq!(request.fingerprint(), pending.fingerprint());
        assert_eq!(request.device_name.as_deref(), Some("Laptop"));
        let answer = request.approve(&owner, NOW).expect("approves");
        let device = pending
            .accept(&answer, &owner.id_key.public(), NOW, 1000)
            .expect("accepts");
        assert_eq!(device.user_id(), owner.user_id());
        assert_eq!(device.cert.device_key, pending.device_key.public());

        // Another user's cert for this very key is refused.
        let stranger = ClientIdentity::generate("x", NOW);
        let foreign = request.approve(&stranger, NOW).expect("approves");
        assert!(matches!(
            pending.accept(&foreign, &owner.id_key.public(), NOW, 1000),
            Err(LinkError::WrongUser { .. })
        ));
        // A cert for another device is refused.
        let other = PendingLink::new("laptop", None);
        assert!(matches!(
            other.accept(&answer, &owner.id_key.public(), NOW, 1000),
            Err(LinkError::WrongDevice)
        ));
        // A tampered cert is refused.
        let mut tampered: LinkCert = serde_json::from_slice(&answer).expect("json");
        tampered.device_cert.expiry += 1;
        let tampered = serde_json::to_vec(&tampered).expect("json");
        assert!(matches!(
            pending.accept(&tampered, &owner.id_key.public(), NOW, 1000),
            Err(LinkError::Cert(CertError::BadSignature))
        ));
        assert!(matches!(
            pending.accept(&refusal_payload(), &owner.id_key.public(), NOW, 0),
            Err(LinkError::Refused)
        ));
        // Garbage and a bad device id are refused.
        assert!(ReceivedRequest::parse(b"{}").is_err());
        assert!(
            pending
                .accept(b"not json", &owner.id_key.public(), NOW, 0)
                .is_err()
        );
        let bad_id = PendingLink::new("", None);
        let bad = ReceivedRequest::parse(&bad_id.request_payload()).expect("parses");
        assert!(matches!(
            bad.approve(&owner, NOW),
            Err(LinkError::Cert(CertError::BadDeviceId))
        ));
    }

    #[test]
    fn codes_and_fingerprints() {
        assert!(LinkCode::parse("0123456789abcdef0123456789abcdef").is_ok());
        assert!(LinkCode::parse("0123456789ABCDEF0123456789abcdef").is_err());
        assert!(LinkCode::parse("0123").is_err());
        let code = LinkCode::generate();
        assert_ne!(code, LinkCode::generate());
        assert!(crate::mailbox::check_session_id(&code.request_box()).is_ok());
        assert!(crate::mailbox::check_session_id(&code.cert_box()).is_ok());
        // Pinned: SHA-256 of the K_dev test-vector key (docs/PROTOCOL.md).
        let key = SecretKey::from_seed(&[2; 32]).public();
        assert_eq!(fingerprint(&key), "6a38-03d5-f059-902a-1c6d");
    }
}
