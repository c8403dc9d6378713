//! Key and signature newtypes.
//!
//! Every key that enters the node from outside is parsed here, once, so the rest of the code only
//! ever holds keys that are valid curve points. Public keys travel as lowercase hex of their 32 raw
//! bytes, signatures as lowercase hex of their 64 raw bytes (in `string` fields) or as the raw bytes
//! (in `bytes` fields); see `docs/PROTOCOL.md`.

use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a key or signature from outside was refused. The API layer adds the field name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text was not lowercase hexadecimal.
    #[error("must be lowercase hex")]
    NotHex,
    /// The bytes had the wrong length.
    #[error("must be {expected} bytes ({} hex characters), got {got} bytes", expected * 2)]
    WrongLength {
        /// How many bytes the value must have.
        expected: usize,
        /// How many it had.
        got: usize,
    },
    /// The 32 bytes do not decode to a usable ed25519 point (or are a weak, small-order key).
    #[error("is not a valid ed25519 public key")]
    NotAPoint,
}

/// Decodes strictly lowercase hex: uppercase is refused so each key has exactly one spelling,
/// which keeps ids usable as database keys and map keys.
fn decode_lower_hex(text: &str) -> Result<Vec<u8>, KeyError> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(KeyError::NotHex);
    }
    hex::decode(text).map_err(|_| KeyError::NotHex)
}

/// An ed25519 public key: a user's K_id, a device's K_dev, or a server's key.
///
/// Constructed only from bytes that decompress to a curve point of full order, so holding one means
/// it can be used for strict verification.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

/// Servers are addressed by their public key: the same key is their libp2p identity.
pub type ServerId = PublicKey;

impl PublicKey {
    /// Parses 32 raw bytes, refusing non-points and weak (small-order) keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| KeyError::WrongLength {
            expected: 32,
            got: bytes.len(),
        })?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::NotAPoint)?;
        if key.is_weak() {
            return Err(KeyError::NotAPoint);
        }
        Ok(Self(key))
    }

    /// Parses the 64-character lowercase hex form used in string fields and as user ids.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&decode_lower_hex(text)?)
    }

    /// The 32 raw bytes, as they go into signing bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The canonical lowercase hex form (a user's global id, a server's id).
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// First 8 hex characters: enough to tell keys apart in logs without flooding them.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.as_bytes()[..4])
    }

    /// Verifies with `verify_strict`, which refuses malleable and small-order signatures, so one
    /// message has one valid signature per key and the replay cache can key on signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify_strict(message, &signature.0).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fmt_short())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// Parses the 64 raw bytes carried in `bytes` fields.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 64] = bytes.try_into().map_err(|_| KeyError::WrongLength {
            expected: 64,
            got: bytes.len(),
        })?;
        Ok(Self(ed25519_dalek::Signature::from_bytes(&raw)))
    }

    /// Parses the 128-character lowercase hex form carried in `string` fields.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&decode_lower_hex(text)?)
    }

    /// The 64 raw bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// The lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", &self.to_hex()[..8])
    }
}

/// An ed25519 secret key. Its `Debug` never prints the key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source is available");
        Self::from_seed(&seed)
    }

    /// The key for a 32-byte seed (the form stored in key files).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Parses a 64-character lowercase hex seed, as stored in identity files.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_lower_hex(text)?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength {
                expected: 32,
                got: bytes.len(),
            })?;
        Ok(Self::from_seed(&seed))
    }

    /// The 32-byte seed, for writing key files. Handle with care.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs raw bytes. Callers sign only envelopes built by [`crate::identity::signing`].
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.0.sign(message))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_strictness() {
        let key = SecretKey::from_seed(&[7; 32]).public();
        assert_eq!(PublicKey::from_hex(&key.to_hex()), Ok(key));
        assert_eq!(
            PublicKey::from_hex(&key.to_hex().to_uppercase()),
            Err(KeyError::NotHex)
        );
        assert_eq!(
            PublicKey::from_hex("abcd"),
            Err(KeyError::WrongLength {
                expected: 32,
                got: 2
            })
        );
        // The identity point is small-order: refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::NotAPoint));
    }

    #[test]
    fn sign_verify_and_debug_hides_secret() {
        let secret = SecretKey::generate();
        let sig = secret.sign(b"hello");
        assert!(secret.public().verify(b"hello", &sig));
        assert!(!secret.public().verify(b"hellp", &sig));
        assert_eq!(format!("{secret:?}"), "SecretKey(..)");
        assert_eq!(Signature::from_hex(&sig.to_hex()), Ok(sig));
    }
}
