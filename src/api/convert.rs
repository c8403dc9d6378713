//! Conversions between protobuf messages and domain types. Parsing failures name the field.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::identity::{DeviceCert, PublicKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::UserRecord;

/// Parses a required `DeviceCert` field.
pub fn device_cert(cert: Option<pb::DeviceCert>) -> Result<DeviceCert> {
    let cert = cert.ok_or_else(|| Error::invalid("device_cert", "is required"))?;
    Ok(DeviceCert {
        device_key: PublicKey::from_hex(&cert.pubkey)
            .map_err(|e| Error::invalid("device_cert.pubkey", e))?,
        device_id: cert.device_id,
        issued_at: cert.issued_at,
        expiry: cert.expiry,
        signature: Signature::from_hex(&cert.signature)
            .map_err(|e| Error::invalid("device_cert.signature", e))?,
    })
}

/// The protobuf form of a device cert.
pub fn device_cert_to_proto(cert: &DeviceCert) -> pb::DeviceCert {
    pb::DeviceCert {
        pubkey: cert.device_key.to_hex(),
        device_id: cert.device_id.clone(),
        issued_at: cert.issued_at,
        expiry: cert.expiry,
        signature: cert.signature.to_hex(),
    }
}

/// Parses a public key carried as hex in a string field.
pub fn public_key(field: &str, text: &str) -> Result<PublicKey> {
    PublicKey::from_hex(text).map_err(|e| Error::invalid(field, e))
}

/// Parses a signature carried as raw bytes in a `bytes` field.
pub fn signature_bytes(field: &str, bytes: &[u8]) -> Result<Signature> {
    Signature::from_bytes(bytes).map_err(|e| Error::invalid(field, e))
}

/// Parses a signature carried as hex in a string field.
pub fn signature_hex(field: &str, text: &str) -> Result<Signature> {
    Signature::from_hex(text).map_err(|e| Error::invalid(field, e))
}

/// A colour for a user's default avatar, derived from their id so every server shows the same.
pub fn avatar_color(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    format!("#{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
}

/// The protobuf `User` for a stored user.
pub fn user(record: &UserRecord, is_server_admin: bool) -> pb::User {
    pb::User {
        id: record.id.clone(),
        name: record.display_name.clone(),
        avatar_color: avatar_color(&record.id),
        status: String::new(),
        ephemeral: false,
        public_key: String::new(),
        presence_preference: record.presence_preference,
        is_server_admin,
        avatar_url: record.avatar_url.clone(),
        bio: record.bio.clone(),
        id_pubkey: record.id.clone(),
        homeserver: record.homeserver.clone(),
        is_irc: false,
        guild_order: record.guild_order.clone(),
        is_profile_synced: record.is_profile_synced,
        irc_name: record.irc_name.clone().unwrap_or_default(),
    }
}
