//! Client-side identity: a user's K_id, one device's K_dev and its cert, and the signed requests a
//! client sends. The CLI, the examples, the benchmarks and the tests all build requests here, with
//! the same signing code the server verifies with; `docs/PROTOCOL.md`'s vectors pin those bytes so a
//! client in another language can do the same.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::convert::device_cert_to_proto;
use crate::federation::moves::MoveStatement;
use crate::identity::signing::{
    self, IdProofPayload, LoginPayload, ProfileStatement, RegisterPayload, UpdateUserPayload,
    UpdateUserV2Payload, VerifyUserPayload,
};
use crate::identity::{DeviceCert, KeyError, PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;

/// How long a device cert made by [`ClientIdentity::generate`] is valid: one year.
pub const DEFAULT_CERT_LIFETIME_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// A user's keys on one device.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// K_id: the user's identity key.
    pub id_key: SecretKey,
    /// K_dev: this device's key.
    pub device_key: SecretKey,
    /// K_id's certificate for K_dev.
    pub cert: DeviceCert,
}

/// One device's keys without the user's identity key: what a device linked through the mailbox
/// holds (`docs/PROTOCOL.md`, "Device linking mailbox"). It can log in, join and sign profile
/// changes (all signed by K_dev), but not register or certify further devices (signed by K_id).
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    /// The user's K_id (public half only): the user id the cert chains to.
    pub user_key: PublicKey,
    /// K_dev: this device's key.
    pub device_key: SecretKey,
    /// K_id's certificate for K_dev.
    pub cert: DeviceCert,
}

/// An identity file's keys: a whole identity, or one device of it.
#[derive(Debug, Clone)]
pub enum StoredIdentity {
    /// K_id and a device: can do everything, including certifying new devices.
    Full(ClientIdentity),
    /// A device only (no K_id secret): made by device linking.
    Device(DeviceIdentity),
}

/// The JSON form of an identity file.
///
/// A full identity has `id_secret`; a device-only identity (from device linking) leaves it out and
/// has `user_id` instead. Files written before device linking (with `id_secret`, without
/// `user_id`) read as full identities, unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityFile {
    /// Hex seed of K_id; absent in a device-only identity.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_secret: String,
    /// Hex of the K_id public key (the user id). Required when `id_secret` is absent; when both
    /// are present they must agree.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Hex seed of K_dev.
    pub device_secret: String,
    /// The device id in the cert.
    pub device_id: String,
    /// The cert's issue time.
    pub issued_at: u64,
    /// The cert's expiry.
    pub expiry: u64,
    /// The cert's signature, hex.
    pub cert_signature: String,
    /// The last session's access token, if logged in (CLI convenience).
    #[serde(default)]
    pub access_token: String,
    /// The last session's refresh token.
    #[serde(default)]
    pub refresh_token: String,
    /// The server the tokens are for.
    #[serde(default)]
    pub server: String,
}

/// An identity file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The JSON is malformed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A key in it is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Its fields do not describe one identity.
    #[error("identity file: {0}")]
    Inconsistent(&'static str),
}

impl ClientIdentity {
    /// A new identity with one certified device.
    pub fn generate(device_id: &str, now_ms: u64) -> Self {
        Self::from_keys(
            SecretKey::generate(),
            SecretKey::generate(),
            device_id,
            now_ms,
        )
    }

    /// An identity from given keys (deterministic, for tests and vectors).
    pub fn from_keys(
        id_key: SecretKey,
        device_key: SecretKey,
        device_id: &str,
        now_ms: u64,
    ) -> Self {
        let cert = DeviceCert::issue(
            &id_key,
            device_key.public(),
            device_id,
            now_ms,
            now_ms + DEFAULT_CERT_LIFETIME_MS,
        );
        Self {
            id_key,
            device_key,
            cert,
        }
    }

    /// The user's global id: hex of K_id.
    pub fn user_id(&self) -> String {
        self.id_key.public().to_hex()
    }

    /// A new device for the same user: K_id certifies a fresh K_dev.
    pub fn new_device(&self, device_id: &str, now_ms: u64) -> Self {
        Self::from_keys(
            self.id_key.clone(),
            SecretKey::generate(),
            device_id,
            now_ms,
        )
    }

    /// The signed `RegisterRequest` for the server `audience`.
    pub fn register_request(
        &self,
        audience: &PublicKey,
        display_name: &str,
        device_name: Option<&str>,
        timestamp: u64,
    ) -> pb::RegisterRequest {
        let id_key = self.id_key.public();
        let proof = IdProofPayload {
            audience: *audience,
            id_key,
            timestamp,
        };
        let payload = RegisterPayload {
            audience: *audience,
            id_key,
            device_key: self.device_key.public(),
            display_name: display_name.to_owned(),
            device_name: device_name.map(str::to_owned),
            timestamp,
        };
        pb::RegisterRequest {
            display_name: display_name.to_owned(),
            public_key: id_key.to_hex(),
            device_cert: Some(device_cert_to_proto(&self.cert)),
            id_proof: signing::sign(&proof, &self.id_key).to_hex(),
            device_name: device_name.map(str::to_owned),
            signature: signing::sign(&payload, &self.device_key)
                .to_bytes()
                .to_vec(),
            timestamp,
            registration_token: String::new(),
        }
    }

    /// The signed `LoginRequest` for the server `audience` (no migration).
    pub fn login_request(&self, audience: &PublicKey, timestamp: u64) -> pb::LoginRequest {
        self.device().login_request(audience, timestamp)
    }

    /// This identity's device part (what a device without K_id holds).
    pub fn device(&self) -> DeviceIdentity {
        DeviceIdentity {
            user_key: self.id_key.public(),
            device_key: self.device_key.clone(),
            cert: self.cert.clone(),
        }
    }

    /// A K_id-signed `homeserver-move-v2` statement: the user's `sequence`-th move (from 1), to
    /// `new_homeserver`, chained to the previous statement by `prev` (its
    /// [`MoveStatement::hash`]; empty for the first). Put it on a login with
    /// [`MoveStatement::apply_to_login`], then [`Self::sign_login`].
    pub fn homeserver_move(
        &self,
        new_homeserver: &str,
        timestamp: u64,
        sequence: u64,
        prev: Vec<u8>,
    ) -> MoveStatement {
        MoveStatement::sign(&self.id_key, new_homeserver, timestamp, sequence, prev)
    }

    /// (Re)computes `request.signature` over its current fields: use after editing a login.
    pub fn sign_login(&self, audience: &PublicKey, request: &mut pb::LoginRequest) {
        self.device().sign_login(audience, request);
    }

    /// (Re)computes `request.signature` for an `UpdateUserRequest` (and sets its cert).
    pub fn sign_update(&self, request: &mut pb::UpdateUserRequest) {
        self.device().sign_update(request);
    }

    /// The signed `JoinInviteRequest` for the server `audience` (a user of that server).
    pub fn join_invite_request(
        &self,
        audience: &PublicKey,
        token: &str,
        display_name: &str,
        timestamp: u64,
    ) -> pb::JoinInviteRequest {
        self.device()
            .join_invite_request(audience, token, display_name, timestamp)
    }

    /// The signed `JoinInviteRequest` for the server `audience` by a user of `homeserver_url`.
    pub fn join_invite_request_from(
        &self,
        audience: &PublicKey,
        token: &str,
        display_name: &str,
        homeserver_url: &str,
        timestamp: u64,
    ) -> pb::JoinInviteRequest {
        self.device().join_invite_request_from(
            audience,
            token,
            display_name,
            homeserver_url,
            timestamp,
        )
    }

    /// Signs `invite` (`dm-invite`) for the target's homeserver `audience`; see
    /// [`DeviceIdentity::sign_dm_invite`].
    pub fn sign_dm_invite(
        &self,
        audience: &PublicKey,
        invite: &mut pb::DmInvite,
    ) -> Result<(), KeyError> {
        self.device().sign_dm_invite(audience, invite)
    }

    /// A `relationship` statement about `other_user_id` for their homeserver `audience`; see
    /// [`DeviceIdentity::sign_relationship`].
    pub fn sign_relationship(
        &self,
        audience: &PublicKey,
        other_user_id: &str,
        action: &str,
        homeserver_url: &str,
        timestamp: u64,
    ) -> Result<pb::RelationshipStatement, KeyError> {
        self.device()
            .sign_relationship(audience, other_user_id, action, homeserver_url, timestamp)
    }

    /// The `VerifyUserRequest.challenge` string for the server `audience`.
    pub fn verify_challenge(&self, audience: &PublicKey, timestamp: u64) -> String {
        let payload = VerifyUserPayload {
            audience: *audience,
            id_key: self.id_key.public(),
            timestamp,
        };
        let sig: Signature = signing::sign(&payload, &self.id_key);
        format!("{timestamp}:{}", sig.to_hex())
    }

    /// The identity as an identity file (without tokens).
    pub fn to_file(&self) -> IdentityFile {
        IdentityFile {
            id_secret: hex::encode(self.id_key.to_seed()),
            user_id: self.user_id(),
            device_secret: hex::encode(self.device_key.to_seed()),
            device_id: self.cert.device_id.clone(),
            issued_at: self.cert.issued_at,
            expiry: self.cert.expiry,
            cert_signature: self.cert.signature.to_hex(),
            access_token: String::new(),
            refresh_token: String::new(),
            server: String::new(),
        }
    }

    /// The identity in an identity file; fails for a device-only file (see [`IdentityFile::identity`]).
    pub fn from_file(file: &IdentityFile) -> Result<Self, IdentityFileError> {
        match file.identity()? {
            StoredIdentity::Full(identity) => Ok(identity),
            StoredIdentity::Device(_) => Err(IdentityFileError::Inconsistent(
                "this device-only identity has no identity key (K_id); use the device that has it",
            )),
        }
    }
}

impl DeviceIdentity {
    /// The user's global id: hex of K_id.
    pub fn user_id(&self) -> String {
        self.user_key.to_hex()
    }

    /// This device's key, hex (K_dev).
    pub fn device_key_hex(&self) -> String {
        self.device_key.public().to_hex()
    }

    /// The signed `LoginRequest` for the server `audience` (no migration). It carries `user_id`,
    /// so a server that has not seen this device yet accepts its cert.
    pub fn login_request(&self, audience: &PublicKey, timestamp: u64) -> pb::LoginRequest {
        let mut request = pb::LoginRequest {
            device_cert: Some(device_cert_to_proto(&self.cert)),
            timestamp,
            user_id: Some(self.user_id()),
            ..Default::default()
        };
        self.sign_login(audience, &mut request);
        request
    }

    /// (Re)computes `request.signature` over its current fields: use after editing a login.
    pub fn sign_login(&self, audience: &PublicKey, request: &mut pb::LoginRequest) {
        let payload = LoginPayload {
            audience: *audience,
            id_key: self.user_key,
            device_key: self.device_key.public(),
            device_name: request.device_name.clone(),
            new_homeserver: request.new_homeserver.clone(),
            migration_timestamp: request.migration_timestamp,
            migration_signature: request.migration_signature.clone(),
            migration_targets: request.migration_targets.clone(),
            timestamp: request.timestamp,
        };
        request.signature = signing::sign(&payload, &self.device_key)
            .to_bytes()
            .to_vec();
    }

    /// (Re)computes `request.signature` for an `UpdateUserRequest` (and sets its cert): an
    /// `update-user-v2` statement when the request sets a field only version 2 signs (or asks for
    /// version 2), else `update-user`.
    pub fn sign_update(&self, request: &mut pb::UpdateUserRequest) {
        request.device_cert = Some(device_cert_to_proto(&self.cert));
        if request.pronouns.is_some()
            || request.banner_url.is_some()
            || request.accent_color.is_some()
        {
            request.signature_version = 2;
        }
        let v1 = UpdateUserPayload {
            id_key: self.user_key,
            device_key: self.device_key.public(),
            name: request.name.clone(),
            avatar_url: request.avatar_url.clone(),
            presence_preference: request
                .presence_preference
                .and_then(|v| u64::try_from(v).ok()),
            bio: request.bio.clone(),
            guild_order: request.guild_order.clone(),
            is_profile_synced: request.is_profile_synced,
            irc_name: request.irc_name.clone(),
            timestamp: request.timestamp,
        };
        let statement = if request.signature_version == 2 {
            ProfileStatement::V2(UpdateUserV2Payload {
                v1,
                pronouns: request.pronouns.clone(),
                banner_url: request.banner_url.clone(),
                accent_color: request.accent_color.clone(),
            })
        } else {
            ProfileStatement::V1(v1)
        };
        request.signature = statement.sign(&self.device_key).to_bytes().to_vec();
    }

    /// The signed `JoinInviteRequest` for the server `audience` (a user of that server).
    pub fn join_invite_request(
        &self,
        audience: &PublicKey,
        token: &str,
        display_name: &str,
        timestamp: u64,
    ) -> pb::JoinInviteRequest {
        self.join_invite_request_from(audience, token, display_name, "", timestamp)
    }

    /// The signed `JoinInviteRequest` for the server `audience`, by a user whose homeserver is
    /// `homeserver_url` (another node, which the server asks to vouch; docs/PROTOCOL.md §11).
    pub fn join_invite_request_from(
        &self,
        audience: &PublicKey,
        token: &str,
        display_name: &str,
        homeserver_url: &str,
        timestamp: u64,
    ) -> pb::JoinInviteRequest {
        let payload = signing::JoinInvitePayload {
            audience: *audience,
            id_key: self.user_key,
            device_key: self.device_key.public(),
            token: token.to_owned(),
            display_name: display_name.to_owned(),
            avatar_url: String::new(),
            homeserver_url: homeserver_url.to_owned(),
            timestamp,
        };
        pb::JoinInviteRequest {
            token: token.to_owned(),
            public_key: self.user_key.to_hex(),
            device_cert: Some(device_cert_to_proto(&self.cert)),
            signature: signing::sign(&payload, &self.device_key)
                .to_bytes()
                .to_vec(),
            timestamp,
            display_name: display_name.to_owned(),
            avatar_url: String::new(),
            homeserver_url: homeserver_url.to_owned(),
            registration_token: String::new(),
        }
    }

    /// Signs `invite` (`dm-invite`) for the target's homeserver `audience`: sets `inviter_id`,
    /// `inviter_pubkey` and `device_cert` to this device's, then `signature` over the invite's
    /// target, token, guild, host and timestamp (fill those first). Fails if `target_user_id` is
    /// not a key.
    pub fn sign_dm_invite(
        &self,
        audience: &PublicKey,
        invite: &mut pb::DmInvite,
    ) -> Result<(), KeyError> {
        let target = PublicKey::from_hex(&invite.target_user_id)?;
        invite.inviter_id = self.user_id();
        invite.inviter_pubkey = self.user_id();
        invite.device_cert = Some(device_cert_to_proto(&self.cert));
        let payload = signing::DmInvitePayload {
            audience: *audience,
            inviter_key: self.user_key,
            device_key: self.device_key.public(),
            target,
            token: invite.token.clone(),
            guild_id: invite.guild_id.clone(),
            host_server_url: invite.host_server_url.clone(),
            timestamp: invite.timestamp,
        };
        invite.signature = signing::sign(&payload, &self.device_key)
            .to_bytes()
            .to_vec();
        Ok(())
    }

    /// A `relationship` statement by this device about `other_user_id` (`"request"`, `"accept"`
    /// or `"remove"`), signed for their homeserver `audience`; `homeserver_url` is this user's
    /// homeserver. Fails if `other_user_id` is not a key.
    pub fn sign_relationship(
        &self,
        audience: &PublicKey,
        other_user_id: &str,
        action: &str,
        homeserver_url: &str,
        timestamp: u64,
    ) -> Result<pb::RelationshipStatement, KeyError> {
        let other = PublicKey::from_hex(other_user_id)?;
        let payload = signing::RelationshipPayload {
            audience: *audience,
            user_key: self.user_key,
            device_key: self.device_key.public(),
            other,
            action: action.to_owned(),
            homeserver_url: homeserver_url.to_owned(),
            timestamp,
        };
        Ok(pb::RelationshipStatement {
            user_id: self.user_id(),
            other_user_id: other_user_id.to_owned(),
            action: action.to_owned(),
            homeserver_url: homeserver_url.to_owned(),
            timestamp,
            device_cert: Some(device_cert_to_proto(&self.cert)),
            signature: signing::sign(&payload, &self.device_key)
                .to_bytes()
                .to_vec(),
        })
    }

    /// The identity as a device-only identity file (without tokens).
    pub fn to_file(&self) -> IdentityFile {
        IdentityFile {
            id_secret: String::new(),
            user_id: self.user_id(),
            device_secret: hex::encode(self.device_key.to_seed()),
            device_id: self.cert.device_id.clone(),
            issued_at: self.cert.issued_at,
            expiry: self.cert.expiry,
            cert_signature: self.cert.signature.to_hex(),
            access_token: String::new(),
            refresh_token: String::new(),
            server: String::new(),
        }
    }
}

impl StoredIdentity {
    /// The device part, which every identity has: what signs logins, joins and profile changes.
    pub fn device(&self) -> DeviceIdentity {
        match self {
            StoredIdentity::Full(identity) => identity.device(),
            StoredIdentity::Device(device) => device.clone(),
        }
    }

    /// The whole identity, if this file holds K_id.
    pub fn full(&self) -> Option<&ClientIdentity> {
        match self {
            StoredIdentity::Full(identity) => Some(identity),
            StoredIdentity::Device(_) => None,
        }
    }
}

impl IdentityFile {
    /// The keys in the file: full when it has `id_secret`, device-only otherwise.
    pub fn identity(&self) -> Result<StoredIdentity, IdentityFileError> {
        let device_key = SecretKey::from_hex(&self.device_secret)?;
        let cert = DeviceCert {
            device_key: device_key.public(),
            device_id: self.device_id.clone(),
            issued_at: self.issued_at,
            expiry: self.expiry,
            signature: Signature::from_hex(&self.cert_signature)?,
        };
        let named = if self.user_id.is_empty() {
            None
        } else {
            Some(PublicKey::from_hex(&self.user_id)?)
        };
        if self.id_secret.is_empty() {
            let user_key = named.ok_or(IdentityFileError::Inconsistent(
                "has neither id_secret nor user_id",
            ))?;
            return Ok(StoredIdentity::Device(DeviceIdentity {
                user_key,
                device_key,
                cert,
            }));
        }
        let id_key = SecretKey::from_hex(&self.id_secret)?;
        if named.is_some_and(|k| k != id_key.public()) {
            return Err(IdentityFileError::Inconsistent(
                "user_id is not the public key of id_secret",
            ));
        }
        Ok(StoredIdentity::Full(ClientIdentity {
            id_key,
            device_key,
            cert,
        }))
    }

    /// Reads an identity file.
    pub fn load(path: &Path) -> Result<Self, IdentityFileError> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    /// Writes an identity file readable only by its owner.
    pub fn save(&self, path: &Path) -> Result<(), IdentityFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        crate::identity::key_file::write_private(path, &serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}
