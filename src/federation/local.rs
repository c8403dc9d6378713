//! This node's own key: how long it is valid, and the rotation statement it publishes.
//!
//! A key's validity is fixed the first time the node starts with it (`now +` [`KEY_VALIDITY_MS`])
//! and published as `ServerInfoResponse.key_valid_until`. To rotate, the operator runs
//! [`rotate_key_file`] (CLI: `guildhall rotate-server-key`): it makes a new key, has the old one
//! sign a `server-key-rotation` naming it, and writes both; on its next start the node publishes
//! the statement as `ServerInfoResponse.key_rotation`, so peers that pinned the old key move to
//! the new one (see [`super::peers`]).

use std::path::{Path, PathBuf};

use super::FederationError;
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, ServerKeyRotationPayload};
use crate::identity::{PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::Store;

/// How long a server key is valid from its first start: one year.
pub const KEY_VALIDITY_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// What the node publishes about its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKey {
    /// `ServerInfoResponse.key_valid_until`.
    pub valid_until: u64,
    /// `ServerInfoResponse.key_rotation`: the statement that handed the identity to this key.
    pub rotation: Option<pb::ServerKeyRotation>,
}

/// Where the rotation statement for the key at `key_path` is kept.
pub fn rotation_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".rotation");
    PathBuf::from(name)
}

/// The statement's file form: one `name = value` line per field of `ServerKeyRotation`.
fn encode(r: &pb::ServerKeyRotation) -> String {
    format!(
        "old_key = {}\nnew_key = {}\nnew_key_valid_until = {}\ntimestamp = {}\nsignature = {}\n",
        r.old_key, r.new_key, r.new_key_valid_until, r.timestamp, r.signature
    )
}

fn decode(text: &str) -> Option<pb::ServerKeyRotation> {
    let mut r = pb::ServerKeyRotation::default();
    for line in text.lines() {
        let (name, value) = line.split_once('=')?;
        let value = value.trim().to_owned();
        match name.trim() {
            "old_key" => r.old_key = value,
            "new_key" => r.new_key = value,
            "new_key_valid_until" => r.new_key_valid_until = value.parse().ok()?,
            "timestamp" => r.timestamp = value.parse().ok()?,
            "signature" => r.signature = value,
            _ => return None,
        }
    }
    Some(r)
}

/// Checks a statement's own signature and that it names `key`; returns its validity.
fn check(r: &pb::ServerKeyRotation, key: PublicKey) -> Option<u64> {
    let old_key = PublicKey::from_hex(&r.old_key).ok()?;
    let new_key = PublicKey::from_hex(&r.new_key).ok()?;
    let signature = Signature::from_hex(&r.signature).ok()?;
    let payload = ServerKeyRotationPayload {
        old_key,
        new_key,
        new_key_valid_until: r.new_key_valid_until,
        timestamp: r.timestamp,
    };
    (new_key == key && signing::verify(payload, &old_key, &signature).is_ok())
        .then_some(r.new_key_valid_until)
}

/// Signs a rotation from `old` to `new`, valid until `valid_until`.
pub fn sign_rotation(
    old: &SecretKey,
    new: PublicKey,
    valid_until: u64,
    timestamp: u64,
) -> pb::ServerKeyRotation {
    let payload = ServerKeyRotationPayload {
        old_key: old.public(),
        new_key: new,
        new_key_valid_until: valid_until,
        timestamp,
    };
    pb::ServerKeyRotation {
        old_key: payload.old_key.to_hex(),
        new_key: new.to_hex(),
        new_key_valid_until: valid_until,
        timestamp,
        signature: signing::sign(&payload, old).to_hex(),
    }
}

/// Loads what the node publishes about `key`: the rotation statement next to `key_path` if it
/// names this key and verifies (its validity then applies), otherwise the key's recorded validity.
pub async fn load(
    store: &Store,
    key: &SecretKey,
    key_path: &Path,
) -> Result<LocalKey, FederationError> {
    let public = key.public();
    let bytes = *public.as_bytes();
    let path = rotation_path(key_path);
    let rotation = match std::fs::read_to_string(&path) {
        Ok(text) => match decode(&text).filter(|r| check(r, public).is_some()) {
            Some(r) => Some(r),
            None => {
                tracing::warn!(path = %path.display(), "ignoring a rotation statement that does not verify for this key");
                None
            }
        },
        Err(_) => None,
    };
    let now = now_ms();
    let valid_until = match &rotation {
        Some(r) => {
            let until = r.new_key_valid_until;
            store
                .write(move |tx| {
                    crate::store::federation::set_local_key_valid_until(tx, &bytes, now, until)
                })
                .await?;
            until
        }
        None => {
            store
                .write(move |tx| {
                    crate::store::federation::local_key_valid_until(
                        tx,
                        &bytes,
                        now,
                        KEY_VALIDITY_MS,
                    )
                })
                .await?
        }
    };
    Ok(LocalKey {
        valid_until,
        rotation,
    })
}

/// Rotates the key stored at `key_path`: makes a new key, writes the old key's signed statement
/// naming it (valid [`KEY_VALIDITY_MS`] from now) to [`rotation_path`], then replaces the key file.
/// Run while the node is stopped; the node publishes the statement on its next start.
pub fn rotate_key_file(key_path: &Path) -> Result<pb::ServerKeyRotation, std::io::Error> {
    let text = std::fs::read_to_string(key_path)?;
    let old = SecretKey::from_hex(text.trim())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let new = SecretKey::generate();
    let now = now_ms();
    let rotation = sign_rotation(&old, new.public(), now.saturating_add(KEY_VALIDITY_MS), now);
    crate::identity::key_file::write_private(&rotation_path(key_path), &encode(&rotation))?;
    crate::identity::key_file::write_private(key_path, &hex::encode(new.to_seed()))?;
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_file_roundtrips_and_checks() {
        let old = SecretKey::from_seed(&[1; 32]);
        let new = SecretKey::from_seed(&[2; 32]).public();
        let r = sign_rotation(&old, new, 99, 5);
        assert_eq!(decode(&encode(&r)), Some(r.clone()));
        assert_eq!(check(&r, new), Some(99));
        assert_eq!(check(&r, old.public()), None);
        assert_eq!(decode("nonsense"), None);
    }
}
