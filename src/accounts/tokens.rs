//! Opaque session tokens: 32 random bytes as hex for the client, only their sha256 for the store.

use sha2::{Digest, Sha256};

/// A fresh random token, as given to the client.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

/// A fresh random session-family id.
pub fn family_id() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

/// What the store keeps of a token: a leaked database can't be replayed as sessions.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
