//! Device certificates: the K_dev → DeviceCert → K_id chain.
//!
//! A user's identity key never needs to be online: it signs a `DeviceCert` for each device once, and
//! every request a device makes is signed by the device key and carries the cert. A server checks the
//! chain here and the clock window in [`super::freshness`].

use super::keys::{PublicKey, SecretKey, Signature};
use super::signing::{self, DeviceCertPayload, Verified};

/// The longest a device id may be, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// Whether `device_id` is 1 to [`MAX_DEVICE_ID_LEN`] bytes with no control characters (the
/// `device-cert` rule of docs/PROTOCOL.md §3), so request parsing can refuse it as malformed
/// before any signature is checked.
pub fn device_id_ok(device_id: &str) -> bool {
    !device_id.is_empty()
        && device_id.len() <= MAX_DEVICE_ID_LEN
        && !device_id.chars().any(char::is_control)
}

/// A device certificate as received, with its keys already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCert {
    /// The certified device key (K_dev).
    pub device_key: PublicKey,
    /// The client's name for the device slot.
    pub device_id: String,
    /// When it was made (ms since the epoch).
    pub issued_at: u64,
    /// When it stops being valid (ms since the epoch).
    pub expiry: u64,
    /// K_id's signature over the `device-cert` payload.
    pub signature: Signature,
}

/// Why a device certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The device id is empty, too long, or has control characters.
    #[error("device_id must be 1-{MAX_DEVICE_ID_LEN} bytes of printable text")]
    BadDeviceId,
    /// `expiry` is not after `issued_at`.
    #[error("expiry must be after issued_at")]
    ExpiryBeforeIssue,
    /// The cert's validity ended.
    #[error("expired at {expiry} ms, now is {now} ms")]
    Expired {
        /// The cert's expiry.
        expiry: u64,
        /// The server's clock.
        now: u64,
    },
    /// The cert claims to be issued further in the future than the clock-skew window allows.
    #[error("not valid until {issued_at} ms, now is {now} ms")]
    NotYetValid {
        /// The cert's issue time.
        issued_at: u64,
        /// The server's clock.
        now: u64,
    },
    /// K_id's signature does not verify: the cert was made by another key or altered.
    #[error("signature is not by the user's identity key")]
    BadSignature,
}

impl DeviceCert {
    /// Makes a cert: what a client does with its identity key when it adds a device.
    pub fn issue(
        id_secret: &SecretKey,
        device_key: PublicKey,
        device_id: &str,
        issued_at: u64,
        expiry: u64,
    ) -> Self {
        let payload = DeviceCertPayload {
            id_key: id_secret.public(),
            device_key,
            device_id: device_id.to_owned(),
            issued_at,
            expiry,
        };
        Self {
            device_key,
            device_id: payload.device_id.clone(),
            issued_at,
            expiry,
            signature: signing::sign(&payload, id_secret),
        }
    }

    /// Checks that `id_key` certified this device and that the cert is valid at `now_ms`, allowing
    /// `skew_ms` of clock difference on the issue time.
    pub fn verify(
        &self,
        id_key: &PublicKey,
        now_ms: u64,
        skew_ms: u64,
    ) -> Result<Verified<DeviceCertPayload>, CertError> {
        if !device_id_ok(&self.device_id) {
            return Err(CertError::BadDeviceId);
        }
        if self.expiry <= self.issued_at {
            return Err(CertError::ExpiryBeforeIssue);
        }
        if self.issued_at > now_ms.saturating_add(skew_ms) {
            return Err(CertError::NotYetValid {
                issued_at: self.issued_at,
                now: now_ms,
            });
        }
        if self.expiry <= now_ms {
            return Err(CertError::Expired {
                expiry: self.expiry,
                now: now_ms,
            });
        }
        let payload = DeviceCertPayload {
            id_key: *id_key,
            device_key: self.device_key,
            device_id: self.device_id.clone(),
            issued_at: self.issued_at,
            expiry: self.expiry,
        };
        signing::verify(payload, id_key, &self.signature).map_err(|_| CertError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000_000;
    const SKEW: u64 = 300_000;

    fn cert(id: &SecretKey, issued_at: u64, expiry: u64) -> DeviceCert {
        DeviceCert::issue(
            id,
            SecretKey::generate().public(),
            "laptop",
            issued_at,
            expiry,
        )
    }

    #[test]
    fn valid_chain_verifies() {
        let id = SecretKey::generate();
        let c = cert(&id, NOW - 1000, NOW + 1000);
        assert!(c.verify(&id.public(), NOW, SKEW).is_ok());
    }

    #[test]
    fn refusals() {
        let id = SecretKey::generate();
        let other = SecretKey::generate();
        let c = cert(&other, NOW - 1000, NOW + 1000);
        assert_eq!(
            c.verify(&id.public(), NOW, SKEW),
            Err(CertError::BadSignature)
        );
        let expired = cert(&id, NOW - 2000, NOW - 1);
        assert!(matches!(
            expired.verify(&id.public(), NOW, SKEW),
            Err(CertError::Expired { .. })
        ));
        let future = cert(&id, NOW + SKEW + 1, NOW + SKEW + 10_000);
        assert!(matches!(
            future.verify(&id.public(), NOW, SKEW),
            Err(CertError::NotYetValid { .. })
        ));
        let inverted = cert(&id, NOW, NOW);
        assert_eq!(
            inverted.verify(&id.public(), NOW, SKEW),
            Err(CertError::ExpiryBeforeIssue)
        );
        let mut tampered = cert(&id, NOW - 1000, NOW + 1000);
        tampered.expiry += 1;
        assert_eq!(
            tampered.verify(&id.public(), NOW, SKEW),
            Err(CertError::BadSignature)
        );
        let mut bad_id = cert(&id, NOW - 1000, NOW + 1000);
        bad_id.device_id = String::new();
        assert_eq!(
            bad_id.verify(&id.public(), NOW, SKEW),
            Err(CertError::BadDeviceId)
        );
    }
}
