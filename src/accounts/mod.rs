//! Accounts: registration, login, sessions, identity proofs and profile changes.
//!
//! Every flow checks in the same order: field rules, the clock window, the device-cert chain, the
//! signatures, and finally the store, which records the request's signature in the replay cache
//! in the same transaction as the change. A refused request therefore changes nothing.

pub mod irc;
pub mod irc_accounts;
pub mod registration;
pub mod remote;
pub mod rules;
pub mod tokens;

use crate::error::{Error, Result};
use crate::identity::freshness::{self, now_ms};
use crate::identity::signing::{
    self, IdProofPayload, LoginPayload, ProfileStatement, RegisterPayload, UpdateUserPayload,
    UpdateUserV2Payload, VerifyUserPayload,
};
use crate::identity::{DeviceCert, PublicKey, Signature};
use crate::store::{
    DeviceRecord, NewDevice, NewSession, NewUser, ProfileChange, RefreshOutcome, SessionInfo,
    StorageError, Store, TokenPair, UserRecord,
};

/// The settings the account flows need.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// This node's key: the audience that signed requests must name.
    pub server_id: PublicKey,
    /// This node's address, the homeserver of users who register here.
    pub canonical_address: String,
    /// Allowed clock difference for signed requests (ms).
    pub clock_skew_ms: u64,
    /// Access token lifetime (ms).
    pub access_ttl_ms: u64,
    /// Refresh token lifetime (ms).
    pub refresh_ttl_ms: u64,
    /// Hex K_ids of server admins.
    pub admins: Vec<String>,
    /// Which addresses the node connects to: a server-list entry the node would never reach is
    /// refused when it is added.
    pub address_policy: crate::outbound::AddressPolicy,
    /// Who may register (`Config::registration_policy`, already resolved from its default).
    pub registration: registration::RegistrationPolicy,
}

/// A registration as received, with keys parsed.
#[derive(Debug, Clone)]
pub struct RegisterInput {
    /// Requested display name, as sent (it is signed as sent, then normalised).
    pub display_name: String,
    /// K_id.
    pub id_key: PublicKey,
    /// The first device's cert.
    pub cert: DeviceCert,
    /// K_id's `id-proof` signature.
    pub id_proof: Signature,
    /// Optional device name.
    pub device_name: Option<String>,
    /// K_dev's `register` signature.
    pub signature: Signature,
    /// Request time (ms).
    pub timestamp: u64,
    /// A registration token from the node's admins (empty: none); not signed.
    pub registration_token: String,
}

/// A login as received.
#[derive(Debug, Clone)]
pub struct LoginInput {
    /// The device's cert.
    pub cert: DeviceCert,
    /// K_dev's `login` signature.
    pub signature: Signature,
    /// Request time (ms).
    pub timestamp: u64,
    /// Optional device name.
    pub device_name: Option<String>,
    /// Migration: the new homeserver.
    pub new_homeserver: Option<String>,
    /// Migration: the statement's time.
    pub migration_timestamp: Option<u64>,
    /// Migration: K_id's `homeserver-move-v2` signature, hex as sent.
    pub migration_signature: Option<String>,
    /// Migration: the statement's place in the user's chain of moves.
    pub migration_sequence: Option<u64>,
    /// Migration: hash of the previous statement's signing bytes.
    pub migration_prev: Option<Vec<u8>>,
    /// Migration: servers to tell.
    pub migration_targets: Vec<String>,
    /// K_id, needed when the device is new to this server.
    pub user_id: Option<PublicKey>,
}

/// A profile change as received.
#[derive(Debug, Clone)]
pub struct UpdateUserInput {
    /// The fields as sent (signed as sent).
    pub fields: UpdateFields,
    /// The signing device's cert.
    pub cert: DeviceCert,
    /// Request time (ms).
    pub timestamp: u64,
    /// K_dev's `update-user` signature.
    pub signature: Signature,
}

/// The optional fields of `UpdateUserRequest`.
#[derive(Debug, Clone, Default)]
pub struct UpdateFields {
    /// `name`.
    pub name: Option<String>,
    /// `avatar_url`.
    pub avatar_url: Option<String>,
    /// `presence_preference` number.
    pub presence_preference: Option<i32>,
    /// `bio`.
    pub bio: Option<String>,
    /// `guild_order`.
    pub guild_order: Option<String>,
    /// `is_profile_synced`.
    pub is_profile_synced: Option<bool>,
    /// `irc_name`.
    pub irc_name: Option<String>,
    /// `pronouns` (version 2).
    pub pronouns: Option<String>,
    /// `banner_url` (version 2).
    pub banner_url: Option<String>,
    /// `accent_color`, `"#rrggbb"` or empty (version 2).
    pub accent_color: Option<String>,
    /// `signature_version`: which signed kind covers these fields.
    pub signature_version: u32,
}

impl UpdateFields {
    /// The fields of a request as sent (they are checked when the change is applied).
    pub fn from_request(r: &crate::proto::guildhall::v1::UpdateUserRequest) -> Self {
        UpdateFields {
            name: r.name.clone(),
            avatar_url: r.avatar_url.clone(),
            presence_preference: r.presence_preference,
            bio: r.bio.clone(),
            guild_order: r.guild_order.clone(),
            is_profile_synced: r.is_profile_synced,
            irc_name: r.irc_name.clone(),
            pronouns: r.pronouns.clone(),
            banner_url: r.banner_url.clone(),
            accent_color: r.accent_color.clone(),
            signature_version: r.signature_version,
        }
    }

    /// The name of the first field only `update-user-v2` can sign, if any is set.
    fn first_v2_field(&self) -> Option<&'static str> {
        if self.pronouns.is_some() {
            Some("pronouns")
        } else if self.banner_url.is_some() {
            Some("banner_url")
        } else if self.accent_color.is_some() {
            Some("accent_color")
        } else {
            None
        }
    }
}

/// Tokens handed to a client after register, login or refresh.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The access token (`authorization: Bearer …`).
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
}

/// Everything `GetMyData` returns.
#[derive(Debug, Clone)]
pub struct MyData {
    /// The user.
    pub user: UserRecord,
    /// Their server list.
    pub servers: Vec<ServerEntry>,
    /// Their devices.
    pub devices: Vec<DeviceRecord>,
    /// Their push distributors.
    pub push_distributors: Vec<String>,
}

/// A server in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// Its address.
    pub url: String,
    /// When it was added (ms).
    pub created_at: u64,
    /// The guilds the user is a member of there, as its signed `membership` events said.
    pub guild_ids: Vec<String>,
}

/// A `JoinInvite` as received.
#[derive(Debug, Clone)]
pub struct JoinInput {
    /// The invite token.
    pub token: String,
    /// K_id.
    pub id_key: PublicKey,
    /// The device's cert.
    pub cert: DeviceCert,
    /// K_dev's `join-invite` signature.
    pub signature: Signature,
    /// Request time (ms).
    pub timestamp: u64,
    /// Display name (used if the user is new here), as sent.
    pub display_name: String,
    /// Avatar URL, as sent.
    pub avatar_url: String,
    /// The user's homeserver, as sent (empty: this server).
    pub homeserver_url: String,
    /// A registration token from the node's admins, for a user new here (empty: none).
    pub registration_token: String,
}

/// A verified sign-in waiting to be written inside another transaction (a guild join): it records
/// the signature, creates the user if new, adds the device and opens a session.
#[derive(Debug, Clone)]
pub struct PreparedSignIn {
    new_user: NewUser,
    device: NewDevice,
    session: NewSession,
    signature: [u8; 64],
    expires_at: u64,
    /// The registration token whose use a new user spends ([`Accounts::admit_join`]).
    registration_token: Option<[u8; 32]>,
    /// The tokens the client gets once it is written.
    pub issued: IssuedSession,
}

impl PreparedSignIn {
    /// The user's id.
    pub fn user_id(&self) -> &str {
        &self.new_user.id
    }

    /// Writes the sign-in inside `tx`.
    pub fn apply(
        &self,
        tx: &rusqlite::Connection,
    ) -> std::result::Result<UserRecord, StorageError> {
        crate::store::remember_signature(tx, &self.signature, self.expires_at)?;
        if let Some(hash) = &self.registration_token
            && crate::store::accounts::load_user(tx, &self.new_user.id)?.is_none()
        {
            crate::store::registration_tokens::spend_token(tx, hash, self.new_user.created_at)?;
        }
        crate::store::accounts::sign_in(tx, Some(&self.new_user), &self.device, &self.session)
    }
}

/// Most users one `GetUsers` call may ask for.
pub const GET_USERS_MAX: usize = 100;

/// The `PresenceStatus` numbers a user may prefer (the seed skips 2).
const PRESENCE_VALUES: [i32; 4] = [0, 1, 3, 4];

/// Most sessions the cache holds before it starts over.
const SESSION_CACHE_MAX: usize = 100_000;

/// Sessions recently resolved from their token hash, so an authenticated call costs no disk read.
/// Entries carry their expiry (checked on every hit) and their family, and a refresh rotation or a
/// refresh-token reuse drops every entry of its family, so the cache never outlives a revocation.
/// A lookup that read the store before a revocation must not re-insert what was revoked: every
/// revocation bumps `epoch`, and a lookup inserts only if the epoch it started in is still current.
#[derive(Debug, Default)]
struct SessionCache {
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: std::collections::HashMap<[u8; 32], SessionInfo>,
    epoch: u64,
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A live cached session, or the epoch to quote when inserting after a store read.
    fn get(&self, hash: &[u8; 32], now: u64) -> Result<SessionInfo, u64> {
        let inner = self.lock();
        match inner.map.get(hash) {
            Some(s) if s.expires_at > now => Ok(s.clone()),
            _ => Err(inner.epoch),
        }
    }

    fn put(&self, hash: [u8; 32], session: SessionInfo, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.map.len() >= SESSION_CACHE_MAX {
            inner.map.clear();
        }
        inner.map.insert(hash, session);
    }

    fn forget_device(&self, device_pubkey: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.retain(|_, s| s.device_pubkey != device_pubkey);
    }

    fn forget_user(&self, user_id: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.retain(|_, s| s.user_id != user_id);
    }

    fn forget_family(&self, family: &[u8; 16]) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.retain(|_, s| s.family_id != *family);
    }
}

/// The account flows, over the store.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: Store,
    config: AccountsConfig,
    sessions: std::sync::Arc<SessionCache>,
}

fn field_rule<T>(field: &str, result: std::result::Result<T, String>) -> Result<T> {
    result.map_err(|rule| Error::invalid(field, rule))
}

/// The one check a device key passes wherever a request offers one (registration, login, joins
/// here and vouching for joins elsewhere, profile changes, DM invites): its cert chains to
/// `id_key` and is valid at `at` (`UNAUTHENTICATED`), and the key is not revoked for that identity,
/// by its owner or, for a key this node knew as another identity's device, by that owner
/// (`FAILED_PRECONDITION`, docs/PROTOCOL.md §12.2). `field` names the cert in the request
/// (`device_cert`, `join.device_cert`, `invite.device_cert`). The store's triggers refuse the
/// same keys again when a device or session is written, so a path that forgot this check still
/// can't bring a revoked key back; checking here answers before any other work (a homeserver
/// asked to vouch, an invite delivered).
pub async fn check_device(
    store: &Store,
    id_key: &PublicKey,
    cert: &DeviceCert,
    at: u64,
    skew_ms: u64,
    field: &str,
) -> Result<()> {
    cert.verify(id_key, at, skew_ms)
        .map_err(|e| Error::unauthenticated(field, e))?;
    if store
        .device_refused(id_key.to_hex(), cert.device_key.to_hex())
        .await?
    {
        return Err(revoked(field));
    }
    Ok(())
}

/// The refusal of a revoked device key; the same words as the store triggers' refusal.
fn revoked(field: &str) -> Error {
    Error::FailedPrecondition(format!(
        "{field}.pubkey: this device was revoked by its owner"
    ))
}

impl Accounts {
    /// The account flows of one node.
    pub fn new(store: Store, config: AccountsConfig) -> Self {
        Self {
            store,
            config,
            sessions: std::sync::Arc::default(),
        }
    }

    /// The node's key, the audience its signed requests must name.
    pub fn server_id(&self) -> &PublicKey {
        &self.config.server_id
    }

    /// Drops the cached sessions of a revoked device, so none outlives its revocation (the stored
    /// ones went with the device).
    pub fn forget_device_sessions(&self, device_pubkey: &str) {
        self.sessions.forget_device(device_pubkey);
    }

    /// Drops every cached session of a user whose stored sessions were revoked (a deactivated
    /// account), so none outlives the revocation.
    pub fn forget_user_sessions(&self, user_id: &str) {
        self.sessions.forget_user(user_id);
    }

    /// How far a signed request's timestamp may be from this node's clock (ms).
    pub fn clock_skew_ms(&self) -> u64 {
        self.config.clock_skew_ms
    }

    /// This node's address: the homeserver of users who register here.
    pub fn canonical_address(&self) -> &str {
        &self.config.canonical_address
    }

    /// Whether a user is a server admin (from configuration, so it is never stale in storage).
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.config.admins.iter().any(|a| a == user_id)
    }

    fn check_fresh(&self, timestamp: u64, now: u64) -> Result<()> {
        freshness::check(timestamp, now, self.config.clock_skew_ms)
            .map_err(|e| Error::unauthenticated("timestamp", e))
    }

    /// [`check_device`] for a request's `field` with this node's clock window.
    async fn check_cert(
        &self,
        id_key: &PublicKey,
        cert: &DeviceCert,
        now: u64,
        field: &str,
    ) -> Result<()> {
        check_device(
            &self.store,
            id_key,
            cert,
            now,
            self.config.clock_skew_ms,
            field,
        )
        .await
    }

    /// Until when the replay cache must remember a signature made at `timestamp`.
    fn replay_horizon(&self, timestamp: u64) -> u64 {
        timestamp.saturating_add(self.config.clock_skew_ms)
    }

    fn new_tokens(&self, now: u64) -> (TokenPair, IssuedSession) {
        let access_token = tokens::generate();
        let refresh_token = tokens::generate();
        let pair = TokenPair {
            access_hash: tokens::hash(&access_token),
            refresh_hash: tokens::hash(&refresh_token),
            now,
            access_expires_at: now.saturating_add(self.config.access_ttl_ms),
            refresh_expires_at: now.saturating_add(self.config.refresh_ttl_ms),
        };
        (
            pair,
            IssuedSession {
                access_token,
                refresh_token,
            },
        )
    }

    fn new_session(
        &self,
        user_id: &str,
        device: &PublicKey,
        now: u64,
    ) -> (NewSession, IssuedSession) {
        let (tokens, issued) = self.new_tokens(now);
        let session = NewSession {
            tokens,
            family_id: tokens::family_id(),
            user_id: user_id.to_owned(),
            device_pubkey: device.to_hex(),
        };
        (session, issued)
    }

    fn device_record(
        user_id: &str,
        cert: &DeviceCert,
        name: Option<String>,
        now: u64,
    ) -> NewDevice {
        NewDevice {
            pubkey: cert.device_key.to_hex(),
            user_id: user_id.to_owned(),
            device_id: cert.device_id.clone(),
            name,
            issued_at: cert.issued_at,
            expiry: cert.expiry,
            cert_signature: cert.signature.to_hex(),
            now,
        }
    }

    /// `Register`: a new identity with its first device.
    pub async fn register(&self, input: RegisterInput) -> Result<(UserRecord, IssuedSession)> {
        let now = now_ms();
        let display_name = field_rule("display_name", rules::display_name(&input.display_name))?;
        let device_name = input
            .device_name
            .as_deref()
            .map(|n| field_rule("device_name", rules::device_name(n)))
            .transpose()?;
        self.check_fresh(input.timestamp, now)?;
        self.check_cert(&input.id_key, &input.cert, now, "device_cert")
            .await?;
        let proof = IdProofPayload {
            audience: self.config.server_id,
            id_key: input.id_key,
            timestamp: input.timestamp,
        };
        signing::verify(proof, &input.id_key, &input.id_proof).map_err(|_| {
            Error::unauthenticated(
                "id_proof",
                "not a signature by public_key over the id-proof for this server and timestamp",
            )
        })?;
        let payload = RegisterPayload {
            audience: self.config.server_id,
            id_key: input.id_key,
            device_key: input.cert.device_key,
            display_name: input.display_name.clone(),
            device_name: input.device_name.clone(),
            timestamp: input.timestamp,
        };
        signing::verify(payload, &input.cert.device_key, &input.signature).map_err(|_| {
            Error::unauthenticated(
                "signature",
                "not a signature by device_cert.pubkey over this request for this server",
            )
        })?;

        let user_id = input.id_key.to_hex();
        let token = self
            .admit(
                &user_id,
                registration::Way::Register,
                &input.registration_token,
            )
            .await?;
        let (session, issued) = self.new_session(&user_id, &input.cert.device_key, now);
        let user = NewUser {
            id: user_id.clone(),
            display_name,
            homeserver: self.config.canonical_address.clone(),
            created_at: now,
        };
        let device = Self::device_record(&user_id, &input.cert, device_name, now);
        let record = self
            .store
            .register(
                user,
                device,
                session,
                input.signature.to_bytes(),
                self.replay_horizon(input.timestamp),
                token,
            )
            .await?;
        tracing::info!(user = %input.id_key.fmt_short(), "registered");
        Ok((record, issued))
    }

    /// `Login`: a device of a registered user opens a session; a login may carry a K_id-signed
    /// homeserver move to this node, which is verified, applied and, in the same transaction,
    /// queued as `UpdateHomeServer` for every migration target (`crate::federation::moves`).
    /// `then` runs in the same transaction with the user (the new homeserver appends the move's
    /// server event there) and whether the login carried a move.
    pub async fn login<T, F>(
        &self,
        input: LoginInput,
        then: F,
    ) -> Result<(UserRecord, IssuedSession, T)>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &UserRecord, bool) -> std::result::Result<T, StorageError>
            + Send
            + 'static,
    {
        let now = now_ms();
        let device_name = input
            .device_name
            .as_deref()
            .map(|n| field_rule("device_name", rules::device_name(n)))
            .transpose()?;
        self.check_fresh(input.timestamp, now)?;
        let id_key = match input.user_id {
            Some(key) => key,
            None => {
                let device = input.cert.device_key.to_hex();
                let Some(owner) = self.store.device_owner(device.clone()).await? else {
                    // A revoked key is gone from the devices: say why rather than "unknown".
                    if self.store.device_refused(String::new(), device).await? {
                        return Err(revoked("device_cert"));
                    }
                    return Err(Error::NotFound(
                        "device_cert.pubkey: unknown device; send user_id to log in a new device"
                            .into(),
                    ));
                };
                PublicKey::from_hex(&owner)
                    .map_err(|e| Error::Storage(StorageError::Task(format!("stored id: {e}"))))?
            }
        };
        self.check_cert(&id_key, &input.cert, now, "device_cert")
            .await?;
        let homeserver_move = crate::federation::moves::login_move(
            &crate::federation::moves::LoginMoveFields {
                new_homeserver: input.new_homeserver.clone(),
                timestamp: input.migration_timestamp,
                signature: input.migration_signature.clone(),
                sequence: input.migration_sequence,
                prev: input.migration_prev.clone(),
                targets: input.migration_targets.clone(),
            },
            &id_key,
            &self.config.canonical_address,
        )?;
        if homeserver_move.is_none() {
            self.check_remote_login(&id_key, &input.cert.device_key)
                .await?;
        }
        let payload = LoginPayload {
            audience: self.config.server_id,
            id_key,
            device_key: input.cert.device_key,
            device_name: input.device_name.clone(),
            new_homeserver: input.new_homeserver.clone(),
            migration_timestamp: input.migration_timestamp,
            migration_signature: input.migration_signature.clone(),
            migration_targets: input.migration_targets.clone(),
            timestamp: input.timestamp,
        };
        signing::verify(payload, &input.cert.device_key, &input.signature).map_err(|_| {
            Error::unauthenticated(
                "signature",
                "not a signature by device_cert.pubkey over this request for this server",
            )
        })?;

        let user_id = id_key.to_hex();
        let (session, issued) = self.new_session(&user_id, &input.cert.device_key, now);
        let device = Self::device_record(&user_id, &input.cert, device_name, now);
        let moving = homeserver_move.is_some();
        let (user, value) = self
            .store
            .login(
                device,
                session,
                input.signature.to_bytes(),
                self.replay_horizon(input.timestamp),
                homeserver_move,
                move |tx, user| then(tx, user, moving),
            )
            .await?
            .ok_or_else(|| {
                Error::NotFound("user_id: no user with this identity is registered here".into())
            })?;
        tracing::info!(user = %id_key.fmt_short(), "logged in");
        Ok((user, issued, value))
    }

    /// Verifies a `JoinInvite` key proof from a user of this server and prepares their sign-in.
    /// Members from other servers join through [`Accounts::prepare_remote_join`].
    pub async fn prepare_join(&self, input: &JoinInput) -> Result<PreparedSignIn> {
        let now = now_ms();
        let display_name = field_rule("display_name", rules::display_name(&input.display_name))?;
        field_rule("avatar_url", rules::avatar_url(&input.avatar_url))?;
        let ours = input.homeserver_url.is_empty()
            || input.homeserver_url.trim_end_matches('/')
                == self.config.canonical_address.trim_end_matches('/');
        if !ours {
            return Err(Error::Unimplemented(
                "homeserver_url: this node was started without federation, so only its own users can join".into(),
            ));
        }
        self.verify_join(input, now).await?;
        let user_id = input.id_key.to_hex();
        // After the key checks, so a revoked device hears that, not where its homeserver is.
        self.check_homeserver(&user_id, None).await?;
        let (session, issued) = self.new_session(&user_id, &input.cert.device_key, now);
        Ok(PreparedSignIn {
            new_user: NewUser {
                id: user_id.clone(),
                display_name,
                homeserver: self.config.canonical_address.clone(),
                created_at: now,
            },
            device: Self::device_record(&user_id, &input.cert, None, now),
            session,
            signature: input.signature.to_bytes(),
            expires_at: self.replay_horizon(input.timestamp),
            registration_token: None,
            issued,
        })
    }

    /// Applies the registration policy to a `JoinInvite` that would create a user of this node:
    /// a user already here passes; a new one needs what [`registration::admit`] asks, unless the
    /// invite was made with `allow_registration` (`invite_allows`). A token's use is spent when
    /// the join is written.
    pub async fn admit_join(
        &self,
        prepared: &mut PreparedSignIn,
        registration_token: &str,
        invite_allows: bool,
    ) -> Result<()> {
        if self
            .store
            .user(prepared.new_user.id.clone())
            .await?
            .is_some()
        {
            return Ok(());
        }
        let user_id = prepared.new_user.id.clone();
        prepared.registration_token = self
            .admit(
                &user_id,
                registration::Way::Invite(invite_allows),
                registration_token,
            )
            .await?;
        Ok(())
    }

    /// The registration policy for a new user `user_id`: the node's configured admins always
    /// register (the operator named them, and a closed node needs its admins), anyone else as
    /// [`registration::admit`] says.
    async fn admit(
        &self,
        user_id: &str,
        way: registration::Way,
        token: &str,
    ) -> Result<Option<[u8; 32]>> {
        if self.is_admin(user_id) {
            return Ok(None);
        }
        registration::admit(&self.store, self.config.registration, way, token, now_ms()).await
    }

    /// `Refresh`: spends a refresh token for a new pair. Reusing a spent token revokes its family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(UserRecord, IssuedSession)> {
        if refresh_token.is_empty() {
            return Err(Error::invalid("refresh_token", "must not be empty"));
        }
        let now = now_ms();
        let (next, issued) = self.new_tokens(now);
        match self
            .store
            .refresh(tokens::hash(refresh_token), next)
            .await?
        {
            RefreshOutcome::Rotated(info) => {
                self.sessions.forget_family(&info.family_id);
                let user = self.store.user(info.user_id).await?.ok_or_else(|| {
                    Error::Unauthenticated("refresh_token: the user no longer exists".into())
                })?;
                Ok((user, issued))
            }
            RefreshOutcome::Unknown => Err(Error::unauthenticated(
                "refresh_token",
                "unknown or revoked",
            )),
            RefreshOutcome::Expired => Err(Error::unauthenticated("refresh_token", "expired")),
            RefreshOutcome::Reused(family) => {
                self.sessions.forget_family(&family);
                Err(Error::unauthenticated(
                    "refresh_token",
                    "already used; every session of this login has been revoked, log in again",
                ))
            }
        }
    }

    /// Resolves an access token to its session (from the cache when it can).
    pub async fn authenticate(&self, access_token: &str) -> Result<SessionInfo> {
        let hash = tokens::hash(access_token);
        let now = now_ms();
        let epoch = match self.sessions.get(&hash, now) {
            Ok(session) => return Ok(session),
            Err(epoch) => epoch,
        };
        let session = self.store.session(hash, now).await?.ok_or_else(|| {
            Error::Unauthenticated("authorization: token is unknown, expired or revoked".into())
        })?;
        self.sessions.put(hash, session.clone(), epoch);
        Ok(session)
    }

    /// `VerifyUser`: the user's K_id-signed challenge asks this node to vouch for them; the answer
    /// carries their profile and a push delegation token for the asking server `origin` (the
    /// token is tied to it: `PushNotification` accepts it only from that server, for that user).
    pub async fn verify_user(
        &self,
        origin: &str,
        user_id: &str,
        challenge: &str,
    ) -> Result<(UserRecord, String)> {
        let now = now_ms();
        let (id_key, timestamp, sig) = check_verify_user(
            user_id,
            challenge,
            self.config.server_id,
            now,
            self.config.clock_skew_ms,
        )?;
        let user = self
            .store
            .user(id_key.to_hex())
            .await?
            .ok_or_else(|| Error::NotFound("user_id: not registered on this server".into()))?;
        let token = tokens::generate();
        self.store
            .create_push_delegation(
                user.id.clone(),
                origin.to_owned(),
                tokens::hash(&token),
                now,
                sig.to_bytes(),
                self.replay_horizon(timestamp),
            )
            .await?;
        Ok((user, token))
    }

    /// `UpdateUser`: a signed profile change from one of the session user's devices.
    ///
    /// `then` runs in the change's transaction with the updated user: the homeserver queues the
    /// change for the user's other servers there, so an acknowledged change is never left
    /// unforwarded.
    pub async fn update_user<T, F>(
        &self,
        session: &SessionInfo,
        input: UpdateUserInput,
        then: F,
    ) -> Result<(UserRecord, T)>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &UserRecord) -> std::result::Result<T, StorageError>
            + Send
            + 'static,
    {
        let f = &input.fields;
        let change = profile_change(f, input.timestamp)?;
        let now = now_ms();
        self.check_fresh(input.timestamp, now)?;
        let id_key = PublicKey::from_hex(&session.user_id)
            .map_err(|e| Error::Storage(StorageError::Task(format!("stored id: {e}"))))?;
        self.check_cert(&id_key, &input.cert, now, "device_cert")
            .await?;
        if input.cert.device_key.to_hex() != session.device_pubkey {
            return Err(Error::PermissionDenied(
                "device_cert.pubkey: is not the device this session was opened with".into(),
            ));
        }
        let statement = profile_statement(id_key, input.cert.device_key, f, input.timestamp, "")?;
        statement
            .verify(&input.cert.device_key, &input.signature)
            .map_err(|_| {
                Error::unauthenticated(
                    "signature",
                    "not a signature by device_cert.pubkey over this update",
                )
            })?;
        self.store
            .update_profile(
                session.user_id.clone(),
                change,
                input.signature.to_bytes(),
                self.replay_horizon(input.timestamp),
                then,
            )
            .await
            .map_err(|e| match e {
                StorageError::Conflict(m) if m.starts_with("timestamp") => {
                    Error::FailedPrecondition(m)
                }
                other => Error::Storage(other),
            })
    }

    /// `GetUsers`: the known users among `ids`.
    pub async fn get_users(&self, ids: &[String]) -> Result<Vec<UserRecord>> {
        if ids.len() > GET_USERS_MAX {
            return Err(Error::invalid(
                "user_ids",
                format!("at most {GET_USERS_MAX} per call"),
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            PublicKey::from_hex(id).map_err(|e| Error::invalid(format!("user_ids[{i}]"), e))?;
        }
        Ok(self.store.users(ids.to_vec()).await?)
    }

    /// `GetUserByUsername`: the user of this server whose username (`irc_name`) is `username`.
    pub async fn user_by_username(&self, username: &str) -> Result<UserRecord> {
        let name = field_rule("username", rules::irc_name(username))?;
        self.store.user_by_irc_name(name).await?.ok_or_else(|| {
            Error::NotFound(format!("username: no user {username:?} on this server"))
        })
    }

    /// `GetMyData`: the caller's own account.
    pub async fn my_data(&self, session: &SessionInfo) -> Result<MyData> {
        let user_id = session.user_id.clone();
        let user = self.store.user(user_id.clone()).await?.ok_or_else(|| {
            Error::Unauthenticated("authorization: the user no longer exists".into())
        })?;
        let guilds = self.store.remote_guilds(user_id.clone()).await?;
        let servers = self
            .store
            .servers(user_id.clone())
            .await?
            .into_iter()
            .map(|(url, created_at)| {
                let here = remote::normalise_address(&url);
                let guild_ids = guilds
                    .iter()
                    .filter(|(host, _)| remote::normalise_address(host) == here)
                    .map(|(_, guild)| guild.clone())
                    .collect();
                ServerEntry {
                    url,
                    created_at,
                    guild_ids,
                }
            })
            .collect();
        Ok(MyData {
            user,
            servers,
            devices: self.store.devices(user_id.clone()).await?,
            push_distributors: self.store.push_distributors(user_id).await?,
        })
    }

    /// `AddServer`: records a server the user belongs to.
    pub async fn add_server(&self, session: &SessionInfo, server_url: &str) -> Result<()> {
        let url = field_rule("server_url", rules::http_url(server_url))?;
        // The node forwards the user's profile changes and revocations to every listed server:
        // an address literal it won't connect to is refused now; a name is checked at connect time.
        self.config
            .address_policy
            .check_url(&url)
            .map_err(|why| Error::invalid("server_url", why))?;
        Ok(self
            .store
            .add_server(session.user_id.clone(), url, now_ms())
            .await?)
    }

    /// `RemoveServer`: forgets a server from the user's list.
    pub async fn remove_server(&self, session: &SessionInfo, server_url: &str) -> Result<()> {
        let url = field_rule("server_url", rules::http_url(server_url))?;
        if self
            .store
            .remove_server(session.user_id.clone(), url)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(
                "server_url: not in your server list".into(),
            ))
        }
    }
}

/// The signed statement (`update-user` or `update-user-v2`, as `signature_version` says) of a
/// profile change by `device_key` of `id_key`. `at` prefixes field names in refusals (`update.`
/// for a forwarded change).
fn profile_statement(
    id_key: PublicKey,
    device_key: PublicKey,
    f: &UpdateFields,
    timestamp: u64,
    at: &str,
) -> Result<ProfileStatement> {
    let v1 = update_payload(id_key, device_key, f, timestamp);
    match f.signature_version {
        0 | 1 => match f.first_v2_field() {
            Some(field) => Err(Error::invalid(
                format!("{at}{field}"),
                "is signed only by update-user-v2: set signature_version to 2",
            )),
            None => Ok(ProfileStatement::V1(v1)),
        },
        2 => Ok(ProfileStatement::V2(UpdateUserV2Payload {
            v1,
            pronouns: f.pronouns.clone(),
            banner_url: f.banner_url.clone(),
            accent_color: f.accent_color.clone(),
        })),
        other => Err(Error::invalid(
            format!("{at}signature_version"),
            format!("must be 0, 1 or 2 (got {other})"),
        )),
    }
}

/// The `update-user` signing payload of a profile change by `device_key` of `id_key`.
fn update_payload(
    id_key: PublicKey,
    device_key: PublicKey,
    f: &UpdateFields,
    timestamp: u64,
) -> UpdateUserPayload {
    UpdateUserPayload {
        id_key,
        device_key,
        name: f.name.clone(),
        avatar_url: f.avatar_url.clone(),
        presence_preference: f.presence_preference.and_then(|v| u64::try_from(v).ok()),
        bio: f.bio.clone(),
        guild_order: f.guild_order.clone(),
        is_profile_synced: f.is_profile_synced,
        irc_name: f.irc_name.clone(),
        timestamp,
    }
}

/// Checks the field rules of a signed profile change and turns it into the change to store.
fn profile_change(f: &UpdateFields, timestamp: u64) -> Result<ProfileChange> {
    Ok(ProfileChange {
        display_name: f
            .name
            .as_deref()
            .map(|v| field_rule("name", rules::display_name(v)))
            .transpose()?,
        avatar_url: f
            .avatar_url
            .as_deref()
            .map(|v| field_rule("avatar_url", rules::avatar_url(v)))
            .transpose()?,
        presence_preference: f
            .presence_preference
            .map(|v| {
                if PRESENCE_VALUES.contains(&v) {
                    Ok(v)
                } else {
                    Err(Error::invalid(
                        "presence_preference",
                        "must be a PresenceStatus value (0, 1, 3 or 4)",
                    ))
                }
            })
            .transpose()?,
        bio: f
            .bio
            .as_deref()
            .map(|v| field_rule("bio", rules::bio(v)))
            .transpose()?,
        guild_order: f
            .guild_order
            .as_deref()
            .map(|v| field_rule("guild_order", rules::guild_order(v)))
            .transpose()?,
        is_profile_synced: f.is_profile_synced,
        irc_name: f
            .irc_name
            .as_deref()
            .map(|v| {
                if v.is_empty() {
                    Ok(String::new())
                } else {
                    field_rule("irc_name", rules::irc_name(v))
                }
            })
            .transpose()?,
        pronouns: f
            .pronouns
            .as_deref()
            .map(|v| field_rule("pronouns", rules::pronouns(v)))
            .transpose()?,
        banner_url: f
            .banner_url
            .as_deref()
            .map(|v| field_rule("banner_url", rules::avatar_url(v)))
            .transpose()?,
        accent_color: f
            .accent_color
            .as_deref()
            .map(|v| field_rule("accent_color", rules::accent_color(v)))
            .transpose()?,
        timestamp,
    })
}

/// The checks of a `VerifyUser` call that need no storage: `user_id` is a key, `challenge` is
/// `"<timestamp ms>:<signature hex>"` with a timestamp within `skew_ms` of `now` and a
/// `verify-user` signature by that key for `audience`. Answers the key, the timestamp and the
/// signature. Public so the fuzz targets (`fuzz/`, `tests/fuzz.rs`) run these very checks.
pub fn check_verify_user(
    user_id: &str,
    challenge: &str,
    audience: PublicKey,
    now: u64,
    skew_ms: u64,
) -> Result<(PublicKey, u64, Signature)> {
    let id_key = PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
    let (timestamp, sig) = parse_challenge(challenge)?;
    freshness::check(timestamp, now, skew_ms).map_err(|_| {
        Error::unauthenticated("challenge", "timestamp is outside the allowed clock skew")
    })?;
    let payload = VerifyUserPayload {
        audience,
        id_key,
        timestamp,
    };
    signing::verify(payload, &id_key, &sig).map_err(|_| {
        Error::unauthenticated(
            "challenge",
            "not a signature by user_id over the verify-user statement for this server",
        )
    })?;
    Ok((id_key, timestamp, sig))
}

/// `VerifyUserRequest.challenge` is `"<timestamp ms>:<signature hex>"` (see `docs/PROTOCOL.md`).
fn parse_challenge(challenge: &str) -> Result<(u64, Signature)> {
    let rule = "must be \"<timestamp ms>:<128 hex characters of signature>\"";
    let (ts, sig) = challenge
        .split_once(':')
        .ok_or_else(|| Error::invalid("challenge", rule))?;
    let timestamp = ts
        .parse::<u64>()
        .map_err(|_| Error::invalid("challenge", rule))?;
    let sig = Signature::from_hex(sig).map_err(|_| Error::invalid("challenge", rule))?;
    Ok((timestamp, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(family: u8, expires_at: u64) -> SessionInfo {
        SessionInfo {
            user_id: "u".into(),
            device_pubkey: "d".into(),
            family_id: [family; 16],
            expires_at,
        }
    }

    #[test]
    fn session_cache_honours_expiry_and_revocation() {
        let cache = SessionCache::default();
        let epoch = cache.get(&[1; 32], 0).expect_err("empty");
        cache.put([1; 32], session(7, 100), epoch);
        assert!(cache.get(&[1; 32], 50).is_ok());
        assert!(
            cache.get(&[1; 32], 100).is_err(),
            "expired entries are not served"
        );

        // A lookup that read the store before a revocation can't re-insert what was revoked.
        let stale = cache.get(&[2; 32], 0).expect_err("not cached");
        cache.forget_family(&[7; 16]);
        cache.put([2; 32], session(7, 100), stale);
        assert!(cache.get(&[2; 32], 0).is_err());
        assert!(
            cache.get(&[1; 32], 0).is_err(),
            "the whole family is forgotten"
        );
        let fresh = cache.get(&[3; 32], 0).expect_err("not cached");
        cache.put([3; 32], session(8, 100), fresh);
        assert!(cache.get(&[3; 32], 0).is_ok());
    }
}
