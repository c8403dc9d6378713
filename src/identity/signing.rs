//! The one place that builds the bytes that get signed.
//!
//! `signing_bytes = "guildhall-sig-v1" ‖ lp(label) ‖ lp(field_1) ‖ … ‖ lp(field_n)`, where `lp(x)` is
//! the length of `x` as a 4-byte big-endian integer followed by `x`. Strings are UTF-8, unsigned
//! integers 8 bytes big-endian, booleans one byte, keys and signatures their raw bytes, a list
//! `lp(count as 4 bytes ‖ lp(item_1) ‖ …)`. A proto3 `optional` field is the empty string when
//! absent and `0x01 ‖ value` when present, so "absent" and "present but empty" can never be confused
//! (see `docs/PROTOCOL.md` for why). Nothing here ever signs an encoded protobuf: protobuf encoding
//! is not canonical across languages, these bytes are.
//!
//! Each signed message kind is a [`Signable`] struct; [`verify`] is the only way to obtain a
//! [`Verified`] value, so code that takes `Verified<T>` can rely on the signature having been checked.

use super::keys::{PublicKey, SecretKey, Signature};

/// The protocol prefix that starts every signed byte string.
pub const PREFIX: &[u8] = b"guildhall-sig-v1";

/// One label per signed message kind: domain separation, so a signature for one kind can never be
/// passed off as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// `DeviceCert`: K_id certifies a device key.
    DeviceCert,
    /// `RegisterRequest.id_proof`: K_id proves possession to one server.
    IdProof,
    /// `RegisterRequest.signature`: K_dev signs the registration.
    Register,
    /// `LoginRequest.signature`: K_dev signs the login.
    Login,
    /// `LoginRequest.migration_signature`: K_id moves the user to a new homeserver.
    HomeserverMove,
    /// `UpdateUserRequest.signature`: K_dev signs a profile change.
    UpdateUser,
    /// `UpdateUserRequest.signature` with `signature_version` 2: a profile change that may carry
    /// pronouns, a banner and an accent colour.
    UpdateUserV2,
    /// `VerifyUserRequest.challenge`: K_id asks one server to vouch for the user.
    VerifyUser,
    /// `JoinInviteRequest.signature`: K_dev joins a guild with an invite at one server.
    JoinInvite,
    /// A server-to-server call: the origin server signs one request for one destination server.
    S2sRequest,
    /// A server's old key hands its identity over to a new key (or renews itself).
    ServerKeyRotation,
    /// `BanNotification.signature`: a guild's host server bans a user from that guild.
    Ban,
    /// K_id moves the user to a new homeserver, chained to its previous move (PROTOCOL.md §12).
    HomeserverMoveV2,
    /// K_id revokes one of the user's device keys everywhere (PROTOCOL.md §12).
    DeviceRevocation,
    /// `DMInvite.signature`: K_dev invites one user to a DM hosted on one server.
    DmInvite,
    /// A server event (a ban, a profile update, …) its origin server gossips to every node.
    ServerEvent,
    /// An entry of a server's own moderation list (a ban or its lift), made at one of its admins'
    /// request; distinct from [`Label::Ban`] so a guild owner's ban can never pass for one.
    ServerBan,
    /// K_id disables, enables or deletes the user's account (docs/PEOPLE.md, "Accounts").
    AccountStatus,
    /// `relationship`: a user's word about a relationship to the other user's homeserver.
    Relationship,
}

impl Label {
    /// The label's bytes as they appear in the envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::DeviceCert => "device-cert",
            Label::IdProof => "id-proof",
            Label::Register => "register",
            Label::Login => "login",
            Label::HomeserverMove => "homeserver-move",
            Label::UpdateUser => "update-user",
            Label::UpdateUserV2 => "update-user-v2",
            Label::VerifyUser => "verify-user",
            Label::JoinInvite => "join-invite",
            Label::S2sRequest => "s2s-request",
            Label::ServerKeyRotation => "server-key-rotation",
            Label::Ban => "ban",
            Label::HomeserverMoveV2 => "homeserver-move-v2",
            Label::DeviceRevocation => "device-revocation",
            Label::DmInvite => "dm-invite",
            Label::ServerEvent => "server-event",
            Label::ServerBan => "server-ban",
            Label::AccountStatus => "account-status",
            Label::Relationship => "relationship",
        }
    }
}

/// Builds an envelope field by field. Only this module writes envelopes.
#[derive(Debug)]
pub struct Envelope {
    buf: Vec<u8>,
}

impl Envelope {
    fn new(label: Label) -> Self {
        let mut env = Self {
            buf: Vec::with_capacity(256),
        };
        env.buf.extend_from_slice(PREFIX);
        env.raw(label.as_str().as_bytes());
        env
    }

    fn raw(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("signed fields are bounded far below 4 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// A UTF-8 string field.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.raw(value.as_bytes());
        self
    }

    /// An unsigned integer field: 8 bytes big-endian.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.raw(&value.to_be_bytes());
        self
    }

    /// A boolean field: one byte, 0 or 1.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.raw(&[u8::from(value)]);
        self
    }

    /// A key field: its 32 raw bytes.
    pub fn key(&mut self, key: &PublicKey) -> &mut Self {
        self.raw(key.as_bytes());
        self
    }

    /// A fixed-size byte field (a hash, a nonce): its raw bytes.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.raw(value);
        self
    }

    /// An optional string: empty when absent, `0x01 ‖ utf8` when present.
    pub fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        self.optional(value.map(|v| v.as_bytes().to_vec()))
    }

    /// An optional unsigned integer: empty when absent, `0x01 ‖ 8 bytes` when present.
    pub fn opt_u64(&mut self, value: Option<u64>) -> &mut Self {
        self.optional(value.map(|v| v.to_be_bytes().to_vec()))
    }

    /// An optional boolean: empty when absent, `0x01 ‖ (0|1)` when present.
    pub fn opt_bool(&mut self, value: Option<bool>) -> &mut Self {
        self.optional(value.map(|v| vec![u8::from(v)]))
    }

    fn optional(&mut self, value: Option<Vec<u8>>) -> &mut Self {
        match value {
            None => self.raw(&[]),
            Some(bytes) => {
                let mut tagged = Vec::with_capacity(bytes.len() + 1);
                tagged.push(1);
                tagged.extend_from_slice(&bytes);
                self.raw(&tagged);
            }
        }
        self
    }

    /// A list of strings: `lp(count as 4 bytes ‖ lp(item_1) ‖ …)`.
    pub fn str_list(&mut self, items: &[String]) -> &mut Self {
        let mut inner = Envelope { buf: Vec::new() };
        let count = u32::try_from(items.len()).expect("lists are bounded far below 2^32");
        inner.buf.extend_from_slice(&count.to_be_bytes());
        for item in items {
            inner.str(item);
        }
        self.raw(&inner.buf);
        self
    }
}

/// A message kind that can be signed: its label and its fields in the documented order.
pub trait Signable {
    /// The domain-separation label.
    const LABEL: Label;

    /// Writes the fields, in the order `docs/PROTOCOL.md` lists them.
    fn write_fields(&self, env: &mut Envelope);

    /// The exact bytes that are signed.
    fn signing_bytes(&self) -> Vec<u8> {
        let mut env = Envelope::new(Self::LABEL);
        self.write_fields(&mut env);
        env.buf
    }
}

/// Signs a message with a secret key.
pub fn sign<T: Signable>(value: &T, key: &SecretKey) -> Signature {
    key.sign(&value.signing_bytes())
}

/// A value whose signature has been checked. Only [`verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    /// The verified value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The signature did not verify under the key: wrong key, wrong bytes, or made for another
/// audience (the bytes include the audience, so a signature for another server fails here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

/// Checks `signature` over `value` under `key` (strict ed25519).
pub fn verify<T: Signable>(
    value: T,
    key: &PublicKey,
    signature: &Signature,
) -> Result<Verified<T>, BadSignature> {
    if key.verify(&value.signing_bytes(), signature) {
        Ok(Verified(value))
    } else {
        Err(BadSignature)
    }
}

/// `device-cert`: K_id certifies that `device_key` belongs to the user until `expiry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertPayload {
    /// The user's identity key (the signer).
    pub id_key: PublicKey,
    /// The certified device key.
    pub device_key: PublicKey,
    /// The client's name for the device slot.
    pub device_id: String,
    /// When the cert was made (ms since the epoch).
    pub issued_at: u64,
    /// When it stops being valid (ms since the epoch).
    pub expiry: u64,
}

impl Signable for DeviceCertPayload {
    const LABEL: Label = Label::DeviceCert;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.id_key)
            .key(&self.device_key)
            .str(&self.device_id)
            .u64(self.issued_at)
            .u64(self.expiry);
    }
}

/// `id-proof`: K_id proves possession to one server at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdProofPayload {
    /// The server the proof is for.
    pub audience: PublicKey,
    /// The identity key (the signer).
    pub id_key: PublicKey,
    /// The request's timestamp (ms).
    pub timestamp: u64,
}

impl Signable for IdProofPayload {
    const LABEL: Label = Label::IdProof;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.id_key)
            .u64(self.timestamp);
    }
}

/// `register`: K_dev signs a registration for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPayload {
    /// The server registered with.
    pub audience: PublicKey,
    /// The user's identity key.
    pub id_key: PublicKey,
    /// The device key (the signer).
    pub device_key: PublicKey,
    /// `RegisterRequest.display_name`, exactly as sent.
    pub display_name: String,
    /// `RegisterRequest.device_name`.
    pub device_name: Option<String>,
    /// `RegisterRequest.timestamp` (ms).
    pub timestamp: u64,
}

impl Signable for RegisterPayload {
    const LABEL: Label = Label::Register;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.id_key)
            .key(&self.device_key)
            .str(&self.display_name)
            .opt_str(self.device_name.as_deref())
            .u64(self.timestamp);
    }
}

/// `login`: K_dev signs a login at one server, including any migration fields it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPayload {
    /// The server logged in to.
    pub audience: PublicKey,
    /// The user's identity key.
    pub id_key: PublicKey,
    /// The device key (the signer).
    pub device_key: PublicKey,
    /// `LoginRequest.device_name`.
    pub device_name: Option<String>,
    /// `LoginRequest.new_homeserver`.
    pub new_homeserver: Option<String>,
    /// `LoginRequest.migration_timestamp`.
    pub migration_timestamp: Option<u64>,
    /// `LoginRequest.migration_signature` (its hex text, as sent).
    pub migration_signature: Option<String>,
    /// `LoginRequest.migration_targets`.
    pub migration_targets: Vec<String>,
    /// `LoginRequest.timestamp` (ms).
    pub timestamp: u64,
}

impl Signable for LoginPayload {
    const LABEL: Label = Label::Login;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.id_key)
            .key(&self.device_key)
            .opt_str(self.device_name.as_deref())
            .opt_str(self.new_homeserver.as_deref())
            .opt_u64(self.migration_timestamp)
            .opt_str(self.migration_signature.as_deref())
            .str_list(&self.migration_targets)
            .u64(self.timestamp);
    }
}

/// `homeserver-move`: K_id states that the user now lives at `new_homeserver`. Not bound to an
/// audience: it is meant to be shown to every server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeserverMovePayload {
    /// The user's identity key (the signer).
    pub id_key: PublicKey,
    /// The new homeserver's address.
    pub new_homeserver: String,
    /// When the move was stated (ms).
    pub timestamp: u64,
}

impl Signable for HomeserverMovePayload {
    const LABEL: Label = Label::HomeserverMove;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.id_key)
            .str(&self.new_homeserver)
            .u64(self.timestamp);
    }
}

/// `update-user`: K_dev signs a profile change. Not bound to an audience: the homeserver forwards it
/// unchanged to the user's other servers, which check the user's signature themselves; timestamps
/// order updates, so a replay can never roll a profile back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateUserPayload {
    /// The user's identity key.
    pub id_key: PublicKey,
    /// The device key (the signer).
    pub device_key: PublicKey,
    /// `name`.
    pub name: Option<String>,
    /// `avatar_url`.
    pub avatar_url: Option<String>,
    /// `presence_preference`, as its enum number.
    pub presence_preference: Option<u64>,
    /// `bio`.
    pub bio: Option<String>,
    /// `guild_order`.
    pub guild_order: Option<String>,
    /// `is_profile_synced`.
    pub is_profile_synced: Option<bool>,
    /// `irc_name`.
    pub irc_name: Option<String>,
    /// `timestamp` (ms).
    pub timestamp: u64,
}

impl UpdateUserPayload {
    /// Every field but the timestamp, which both versions write last.
    fn write_profile_fields(&self, env: &mut Envelope) {
        env.key(&self.id_key)
            .key(&self.device_key)
            .opt_str(self.name.as_deref())
            .opt_str(self.avatar_url.as_deref())
            .opt_u64(self.presence_preference)
            .opt_str(self.bio.as_deref())
            .opt_str(self.guild_order.as_deref())
            .opt_bool(self.is_profile_synced)
            .opt_str(self.irc_name.as_deref());
    }
}

impl Signable for UpdateUserPayload {
    const LABEL: Label = Label::UpdateUser;
    fn write_fields(&self, env: &mut Envelope) {
        self.write_profile_fields(env);
        env.u64(self.timestamp);
    }
}

/// `update-user-v2`: `update-user`'s fields, then the profile fields version 2 added, then the
/// timestamp. A distinct label, so a version-1 signature can never be replayed with fields it did
/// not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateUserV2Payload {
    /// The version-1 fields (its timestamp is this statement's).
    pub v1: UpdateUserPayload,
    /// `pronouns`.
    pub pronouns: Option<String>,
    /// `banner_url`.
    pub banner_url: Option<String>,
    /// `accent_color`, as sent (`"#rrggbb"` or empty).
    pub accent_color: Option<String>,
}

impl Signable for UpdateUserV2Payload {
    const LABEL: Label = Label::UpdateUserV2;
    fn write_fields(&self, env: &mut Envelope) {
        self.v1.write_profile_fields(env);
        env.opt_str(self.pronouns.as_deref())
            .opt_str(self.banner_url.as_deref())
            .opt_str(self.accent_color.as_deref())
            .u64(self.v1.timestamp);
    }
}

/// A signed profile change of either version, as `UpdateUserRequest.signature_version` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileStatement {
    /// `update-user`.
    V1(UpdateUserPayload),
    /// `update-user-v2`.
    V2(UpdateUserV2Payload),
}

impl ProfileStatement {
    /// Whether `signature` is `key`'s over this statement.
    pub fn verify(self, key: &PublicKey, signature: &Signature) -> Result<(), BadSignature> {
        match self {
            ProfileStatement::V1(p) => verify(p, key, signature).map(|_| ()),
            ProfileStatement::V2(p) => verify(p, key, signature).map(|_| ()),
        }
    }

    /// `key`'s signature over this statement.
    pub fn sign(&self, key: &SecretKey) -> Signature {
        match self {
            ProfileStatement::V1(p) => sign(p, key),
            ProfileStatement::V2(p) => sign(p, key),
        }
    }
}

/// `account-status`: K_id states what the user's account is from now on (`enabled`, `disabled` or
/// `deleted`). Not bound to an audience: the homeserver forwards it to every server on the
/// user's list and gossips a deletion, and each checks the user's own signature; timestamps
/// order statements, and a deletion is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatusPayload {
    /// The user's identity key (the signer).
    pub id_key: PublicKey,
    /// `enabled`, `disabled` or `deleted`.
    pub status: String,
    /// When it was made (ms).
    pub timestamp: u64,
}

impl Signable for AccountStatusPayload {
    const LABEL: Label = Label::AccountStatus;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.id_key).str(&self.status).u64(self.timestamp);
    }
}

/// `verify-user`: K_id asks one server (the user's homeserver) to vouch for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyUserPayload {
    /// The server asked to vouch.
    pub audience: PublicKey,
    /// The user's identity key (the signer).
    pub id_key: PublicKey,
    /// When the challenge was made (ms).
    pub timestamp: u64,
}

impl Signable for VerifyUserPayload {
    const LABEL: Label = Label::VerifyUser;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.id_key)
            .u64(self.timestamp);
    }
}

/// `join-invite`: K_dev joins a guild on one server with an invite token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinInvitePayload {
    /// The server hosting the guild.
    pub audience: PublicKey,
    /// The user's identity key.
    pub id_key: PublicKey,
    /// The device key (the signer).
    pub device_key: PublicKey,
    /// `JoinInviteRequest.token`.
    pub token: String,
    /// `JoinInviteRequest.display_name`, as sent.
    pub display_name: String,
    /// `JoinInviteRequest.avatar_url`.
    pub avatar_url: String,
    /// `JoinInviteRequest.homeserver_url`.
    pub homeserver_url: String,
    /// `JoinInviteRequest.timestamp` (ms).
    pub timestamp: u64,
}

impl Signable for JoinInvitePayload {
    const LABEL: Label = Label::JoinInvite;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.id_key)
            .key(&self.device_key)
            .str(&self.token)
            .str(&self.display_name)
            .str(&self.avatar_url)
            .str(&self.homeserver_url)
            .u64(self.timestamp);
    }
}

/// `s2s-request`: the origin server signs one server-to-server call for one destination.
///
/// Carried in gRPC metadata (see `docs/PROTOCOL.md` §10), never in the request message, so one
/// layer can sign and verify every server call whatever its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2sRequestPayload {
    /// The destination server's key: a call signed for one server is refused by every other.
    pub audience: PublicKey,
    /// The origin server's key (the signer).
    pub origin_key: PublicKey,
    /// The origin server's canonical address, which its key is pinned under.
    pub origin: String,
    /// The gRPC method path, e.g. `/guildhall.v1.GuildHall/VerifyUser`.
    pub method: String,
    /// SHA-256 of the HTTP request body exactly as sent (the gRPC length-prefixed message).
    pub body_sha256: [u8; 32],
    /// When the call was signed (ms).
    pub timestamp: u64,
    /// 16 random bytes, so two calls with the same content are still two calls.
    pub nonce: [u8; 16],
}

impl Signable for S2sRequestPayload {
    const LABEL: Label = Label::S2sRequest;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.origin_key)
            .str(&self.origin)
            .str(&self.method)
            .bytes(&self.body_sha256)
            .u64(self.timestamp)
            .bytes(&self.nonce);
    }
}

/// `server-key-rotation`: a server's current key names its successor and how long the successor is
/// valid. Signed by the old key; `old_key == new_key` renews the key's validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRotationPayload {
    /// The key being replaced (the signer).
    pub old_key: PublicKey,
    /// The key that replaces it.
    pub new_key: PublicKey,
    /// Until when the new key is valid (ms).
    pub new_key_valid_until: u64,
    /// When the rotation was signed (ms).
    pub timestamp: u64,
}

impl Signable for ServerKeyRotationPayload {
    const LABEL: Label = Label::ServerKeyRotation;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.old_key)
            .key(&self.new_key)
            .u64(self.new_key_valid_until)
            .u64(self.timestamp);
    }
}

/// `BanNotification`: the server hosting a guild bans a user from it. Not bound to an audience:
/// the statement is public, delivered to several servers and gossiped, and applying it twice
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanPayload {
    /// The server that bans (the signer): the guild's host.
    pub origin: PublicKey,
    /// The banned user's identity key.
    pub banned: PublicKey,
    /// The guild, as its host names it.
    pub guild_id: String,
    /// Why, for people.
    pub reason: String,
    /// Hex SHA-256 of the evidence the host keeps (e.g. the offending messages), or empty.
    pub evidence_hash: String,
    /// When the ban was made (ms).
    pub timestamp: u64,
}

impl Signable for BanPayload {
    const LABEL: Label = Label::Ban;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.origin)
            .key(&self.banned)
            .str(&self.guild_id)
            .str(&self.reason)
            .str(&self.evidence_hash)
            .u64(self.timestamp);
    }
}

/// `homeserver-move-v2`: K_id states that the user now lives at `new_homeserver`, as the
/// `sequence`-th statement of the user's chain of moves, chained to the one before by `prev`. Not
/// bound to an audience: every server that knows the user is shown it, by any server (it is
/// self-certifying), and the chain makes an older statement unable to roll a newer one back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeserverMoveV2Payload {
    /// The user's identity key (the signer).
    pub id_key: PublicKey,
    /// The new homeserver's address.
    pub new_homeserver: String,
    /// When the move was stated (ms).
    pub timestamp: u64,
    /// The statement's place in the chain: 1 for the first move, then one more each time.
    pub sequence: u64,
    /// SHA-256 of the previous statement's signing bytes (32 bytes); empty for the first.
    pub prev: Vec<u8>,
}

impl Signable for HomeserverMoveV2Payload {
    const LABEL: Label = Label::HomeserverMoveV2;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.id_key)
            .str(&self.new_homeserver)
            .u64(self.timestamp)
            .u64(self.sequence)
            .bytes(&self.prev);
    }
}

/// `device-revocation`: K_id states that `device_key` no longer speaks for the user. Not bound to
/// an audience: the homeserver forwards it to every server of the user. Revocation is final, so a
/// replay can only repeat what is already true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRevocationPayload {
    /// The user's identity key (the signer).
    pub id_key: PublicKey,
    /// The revoked device key.
    pub device_key: PublicKey,
    /// When the device was revoked (ms).
    pub timestamp: u64,
}

impl Signable for DeviceRevocationPayload {
    const LABEL: Label = Label::DeviceRevocation;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.id_key)
            .key(&self.device_key)
            .u64(self.timestamp);
    }
}

/// `dm-invite`: the inviter's device invites one user to a DM guild on its host server. Bound to the
/// target's homeserver (the audience), so the invite is refused by every other server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmInvitePayload {
    /// The key of the target's homeserver (the server receiving `ReceiveDMInvite`).
    pub audience: PublicKey,
    /// The inviter's identity key (`DMInvite.inviter_pubkey`).
    pub inviter_key: PublicKey,
    /// The inviter's device key (the signer, `DMInvite.device_cert.pubkey`).
    pub device_key: PublicKey,
    /// The invited user's identity key (`DMInvite.target_user_id`).
    pub target: PublicKey,
    /// `DMInvite.token`: what admits the target to the DM's guild on the host.
    pub token: String,
    /// `DMInvite.guild_id`: the DM's guild on the host.
    pub guild_id: String,
    /// `DMInvite.host_server_url`: the host's canonical address.
    pub host_server_url: String,
    /// `DMInvite.timestamp` (ms).
    pub timestamp: u64,
}

impl Signable for DmInvitePayload {
    const LABEL: Label = Label::DmInvite;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.inviter_key)
            .key(&self.device_key)
            .key(&self.target)
            .str(&self.token)
            .str(&self.guild_id)
            .str(&self.host_server_url)
            .u64(self.timestamp);
    }
}

/// `relationship`: a user's device tells another user's homeserver about their relationship
/// (`"request"`, `"accept"` or `"remove"`). Bound to that homeserver (the audience), so no other
/// server takes it; the timestamp orders one user's statements about another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipPayload {
    /// The key of the other user's homeserver (the server receiving `ReceiveRelationship`).
    pub audience: PublicKey,
    /// The signer's identity key (`RelationshipStatement.user_id`).
    pub user_key: PublicKey,
    /// The signer's device key (`RelationshipStatement.device_cert.pubkey`).
    pub device_key: PublicKey,
    /// The other user's identity key (`RelationshipStatement.other_user_id`).
    pub other: PublicKey,
    /// `RelationshipStatement.action`.
    pub action: String,
    /// `RelationshipStatement.homeserver_url`: the signer's homeserver.
    pub homeserver_url: String,
    /// `RelationshipStatement.timestamp` (ms).
    pub timestamp: u64,
}

impl Signable for RelationshipPayload {
    const LABEL: Label = Label::Relationship;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.audience)
            .key(&self.user_key)
            .key(&self.device_key)
            .key(&self.other)
            .str(&self.action)
            .str(&self.homeserver_url)
            .u64(self.timestamp);
    }
}

/// `server-event`: an origin server states one server event of `kind`. Not bound to an audience:
/// it is gossiped to every node and served to any node catching up, and each checks it itself
/// (`docs/PROTOCOL.md` §13). `(origin_key, kind, sequence)` names it: the origin numbers its
/// events of each kind 1, 2, 3, … so a node can tell what it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEventPayload {
    /// The origin server's key (the signer).
    pub origin_key: PublicKey,
    /// What kind of event, e.g. `ban`; also the gossip topic it travels on.
    pub kind: String,
    /// The origin's sequence number for this kind, from 1.
    pub sequence: u64,
    /// When the origin signed it (ms).
    pub timestamp: u64,
    /// The kind's own payload bytes (each kind documents its encoding).
    pub payload: Vec<u8>,
}

impl Signable for ServerEventPayload {
    const LABEL: Label = Label::ServerEvent;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.origin_key)
            .str(&self.kind)
            .u64(self.sequence)
            .u64(self.timestamp)
            .bytes(&self.payload);
    }
}

/// `server-ban`: an entry of a server's own moderation list: the server bans `user` from all of
/// its guilds (`banned`) or lifts that ban (`!banned`). Signed by the server key, and made only at
/// the request of one of the server's admins, so a node that trusts the server's moderation list
/// trusts its admins, not every guild owner on it (a guild owner's bans are [`BanPayload`]s, a
/// different label). Not bound to an audience: the list is public and gossiped; for one
/// (origin, user) the newest entry wins, so replaying an old one changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBanPayload {
    /// The server whose list this is (the signer).
    pub origin: PublicKey,
    /// The user the entry is about (their identity key).
    pub user: PublicKey,
    /// `true`: banned; `false`: a ban lifted.
    pub banned: bool,
    /// Why, for people.
    pub reason: String,
    /// When the entry was made (ms); orders the entries for one user.
    pub timestamp: u64,
}

impl Signable for ServerBanPayload {
    const LABEL: Label = Label::ServerBan;
    fn write_fields(&self, env: &mut Envelope) {
        env.key(&self.origin)
            .key(&self.user)
            .bool(self.banned)
            .str(&self.reason)
            .u64(self.timestamp);
    }
}
