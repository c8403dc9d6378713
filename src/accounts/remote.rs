//! Accounts of users whose homeserver is another node (docs/PROTOCOL.md §11).
//!
//! - On the **host** (the node serving a guild): the key proof of a remote `JoinInvite`, checked
//!   before the homeserver is asked to vouch; the sign-in written once it has; the rule that a
//!   remote user's new device signs in only through a vouched join; and profile changes forwarded
//!   by the user's homeserver, applied only after checking the user's own signature.
//! - On the **homeserver**: vouching for one of its users (`Federate`), which checks the user's
//!   forwarded `join-invite` signature and records the host in the user's server list.

use super::{Accounts, JoinInput, PreparedSignIn, UpdateUserInput, field_rule, rules};
use crate::error::{Error, Result};
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::identity::signing;
use crate::store::remote::ForwardedProfile;
use crate::store::{NewUser, StorageError, UserRecord};

/// A verified remote join waiting for its homeserver's word, then to be written inside the
/// guild join's transaction.
#[derive(Debug, Clone)]
pub struct PreparedRemoteSignIn {
    sign_in: PreparedSignIn,
    avatar_url: String,
    profile_at: u64,
    /// The user's homeserver, as it will be stored (the address the host called).
    pub homeserver: String,
}

impl PreparedRemoteSignIn {
    /// The user's id.
    pub fn user_id(&self) -> &str {
        self.sign_in.user_id()
    }

    /// The tokens the client gets once the sign-in is written.
    pub fn issued(&self) -> &super::IssuedSession {
        &self.sign_in.issued
    }

    /// Writes the sign-in inside `tx`: records the join's signature, creates (or refreshes) the
    /// user's row with the remote homeserver, adds the device and opens a session.
    pub fn apply(
        &self,
        tx: &rusqlite::Connection,
    ) -> std::result::Result<UserRecord, StorageError> {
        let s = &self.sign_in;
        crate::store::remember_signature(tx, &s.signature, s.expires_at)?;
        crate::store::remote::upsert_remote_user(
            tx,
            &s.new_user,
            &self.avatar_url,
            self.profile_at,
        )?;
        crate::store::accounts::sign_in(tx, None, &s.device, &s.session)
    }
}

/// An address without its trailing slashes: `https://a.example/` and `https://a.example` name the
/// same server.
pub fn normalise_address(address: &str) -> &str {
    address.trim_end_matches('/')
}

impl Accounts {
    /// Whether `homeserver_url` (from a join) names this node; empty does.
    pub fn is_own_homeserver(&self, homeserver_url: &str) -> bool {
        homeserver_url.is_empty()
            || normalise_address(homeserver_url)
                == normalise_address(&self.config.canonical_address)
    }

    /// Checks a join's key proof (clock window, device cert and revocations, `join-invite`
    /// signature for this server).
    pub(super) async fn verify_join(&self, input: &JoinInput, now: u64) -> Result<()> {
        self.check_fresh(input.timestamp, now)?;
        self.check_cert(&input.id_key, &input.cert, now, "device_cert")
            .await?;
        let payload = signing::JoinInvitePayload {
            audience: self.config.server_id,
            id_key: input.id_key,
            device_key: input.cert.device_key,
            token: input.token.clone(),
            display_name: input.display_name.clone(),
            avatar_url: input.avatar_url.clone(),
            homeserver_url: input.homeserver_url.clone(),
            timestamp: input.timestamp,
        };
        signing::verify(payload, &input.cert.device_key, &input.signature).map_err(|_| {
            Error::unauthenticated(
                "signature",
                "not a signature by device_cert.pubkey over this join for this server",
            )
        })?;
        Ok(())
    }

    /// Host side: checks a join from a user of another node (field rules and the user's key
    /// proof) and prepares their sign-in. Nothing is written until the homeserver vouched.
    pub async fn prepare_remote_join(&self, input: &JoinInput) -> Result<PreparedRemoteSignIn> {
        let now = now_ms();
        let display_name = field_rule("display_name", rules::display_name(&input.display_name))?;
        let avatar_url = field_rule("avatar_url", rules::avatar_url(&input.avatar_url))?;
        let homeserver = field_rule("homeserver_url", rules::http_url(&input.homeserver_url))?;
        let homeserver = normalise_address(&homeserver).to_owned();
        // A device revoked by its owner is refused here, before its homeserver is asked.
        self.verify_join(input, now).await?;
        let user_id = input.id_key.to_hex();
        let (session, issued) = self.new_session(&user_id, &input.cert.device_key, now);
        Ok(PreparedRemoteSignIn {
            sign_in: PreparedSignIn {
                new_user: NewUser {
                    id: user_id.clone(),
                    display_name,
                    homeserver: homeserver.clone(),
                    created_at: now,
                },
                device: Self::device_record(&user_id, &input.cert, None, now),
                session,
                signature: input.signature.to_bytes(),
                expires_at: self.replay_horizon(input.timestamp),
                // Members from other servers are not registering here: the policy is for users
                // whose homeserver this node is.
                registration_token: None,
                issued,
            },
            avatar_url,
            profile_at: input.timestamp,
            homeserver,
        })
    }

    /// Host side, before any network call: refuses a join whose homeserver differs from the one
    /// this node holds for the identity (`None`: the join names this node).
    pub async fn check_homeserver(&self, user_id: &str, claimed: Option<&str>) -> Result<()> {
        let Some(user) = self.store.user(user_id.to_owned()).await? else {
            return Ok(());
        };
        let own = normalise_address(&self.config.canonical_address);
        let held = normalise_address(&user.homeserver);
        match claimed.map(normalise_address) {
            None if held != own => Err(Error::FailedPrecondition(format!(
                "homeserver_url: this user's homeserver is {held}; name it in homeserver_url so it vouches for the join"
            ))),
            Some(_) if held == own => Err(Error::FailedPrecondition(
                "homeserver_url: this identity is registered on this server; leave homeserver_url empty".into(),
            )),
            Some(claimed) if claimed != held => Err(Error::FailedPrecondition(format!(
                "homeserver_url: this user's homeserver here is {held}; a move is announced with UpdateHomeServer, not by a join"
            ))),
            _ => Ok(()),
        }
    }

    /// Host side, in `Login`: a user whose homeserver is another node may log in here only with a
    /// device this node already knows for them (one their homeserver vouched for at a join). A new
    /// device signs in with `JoinInvite`, so the homeserver is asked again.
    pub(super) async fn check_remote_login(
        &self,
        id_key: &PublicKey,
        device: &PublicKey,
    ) -> Result<()> {
        let Some(user) = self.store.user(id_key.to_hex()).await? else {
            return Ok(());
        };
        if normalise_address(&user.homeserver) == normalise_address(&self.config.canonical_address)
        {
            return Ok(());
        }
        let owner = self.store.device_owner(device.to_hex()).await?;
        if owner.as_deref() == Some(user.id.as_str()) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "device_cert.pubkey: this user's homeserver is {}; a new device signs in here with JoinInvite, which the homeserver vouches for",
            user.homeserver
        )))
    }

    /// Homeserver side of `Federate`: the host at `origin` (key `origin_key`, both proven by the
    /// call's signature) forwards `join`, the user's own signed `JoinInviteRequest`. Vouches only if
    /// the join names this node as homeserver, was signed for `origin_key` by a device of one of
    /// this node's users, and is within the clock window; then adds `origin` to the user's server
    /// list, and hands it a push delegation for the user (replacing any earlier one), so it can
    /// push mentions and DMs through this node (docs/PROTOCOL.md §14.2). Returns the user and the
    /// delegation token.
    pub async fn vouch_for_join(
        &self,
        origin: &str,
        origin_key: PublicKey,
        join: &JoinInput,
    ) -> Result<(UserRecord, String)> {
        if join.homeserver_url.is_empty() || !self.is_own_homeserver(&join.homeserver_url) {
            return Err(Error::PermissionDenied(format!(
                "join.homeserver_url: names {:?}, not this server",
                join.homeserver_url
            )));
        }
        let now = now_ms();
        self.check_fresh(join.timestamp, now)
            .map_err(|e| Error::Unauthenticated(format!("join.{e}")))?;
        self.check_cert(&join.id_key, &join.cert, now, "join.device_cert")
            .await?;
        let payload = signing::JoinInvitePayload {
            audience: origin_key,
            id_key: join.id_key,
            device_key: join.cert.device_key,
            token: join.token.clone(),
            display_name: join.display_name.clone(),
            avatar_url: join.avatar_url.clone(),
            homeserver_url: join.homeserver_url.clone(),
            timestamp: join.timestamp,
        };
        signing::verify(payload, &join.cert.device_key, &join.signature).map_err(|_| {
            Error::unauthenticated(
                "join.signature",
                "not a signature by join.device_cert.pubkey over this join for the calling server",
            )
        })?;
        let user_id = join.id_key.to_hex();
        let user = self
            .store
            .user(user_id.clone())
            .await?
            .filter(|u| {
                normalise_address(&u.homeserver)
                    == normalise_address(&self.config.canonical_address)
            })
            .ok_or_else(|| {
                Error::NotFound("user_pubkey: not a user whose homeserver is this server".into())
            })?;
        let owner = self
            .store
            .device_owner(join.cert.device_key.to_hex())
            .await?;
        if owner.as_deref() != Some(user_id.as_str()) {
            return Err(Error::PermissionDenied(
                "join.device_cert.pubkey: not a device of this user on their homeserver; log in here with it first".into(),
            ));
        }
        let token = super::tokens::generate();
        self.store
            .vouch_for(
                user_id,
                normalise_address(origin).to_owned(),
                super::tokens::hash(&token),
                now,
            )
            .await?;
        tracing::info!(user = %join.id_key.fmt_short(), host = origin, "vouched for a remote join");
        Ok((user, token))
    }

    /// Host side of `UpdateFederatedProfile`: applies `update`, a profile change signed by the
    /// user `user_id` and forwarded by `origin`, if `origin` is the user's homeserver here, the
    /// user's own signature holds (through the device cert, valid when the change was signed) and
    /// the change is newer than the stored profile. Returns the user as now stored.
    pub async fn apply_forwarded_profile(
        &self,
        origin: &str,
        user_id: &PublicKey,
        update: &UpdateUserInput,
    ) -> Result<UserRecord> {
        let now = now_ms();
        if update.timestamp > now.saturating_add(self.config.clock_skew_ms) {
            return Err(Error::unauthenticated(
                "update.timestamp",
                "is in the future beyond the allowed clock skew",
            ));
        }
        // The cert must have been valid when the change was signed (deliveries are retried), and
        // a device revoked since can't have its changes applied any more.
        super::check_device(
            &self.store,
            user_id,
            &update.cert,
            update.timestamp,
            self.config.clock_skew_ms,
            "update.device_cert",
        )
        .await?;
        let statement = super::profile_statement(
            *user_id,
            update.cert.device_key,
            &update.fields,
            update.timestamp,
            "update.",
        )?;
        statement
            .verify(&update.cert.device_key, &update.signature)
            .map_err(|_| {
                Error::unauthenticated(
                    "update.signature",
                    "not a signature by update.device_cert.pubkey over this profile change",
                )
            })?;
        let mut change =
            super::profile_change(&update.fields, update.timestamp).map_err(|e| match e {
                Error::InvalidArgument { field, rule } => Error::InvalidArgument {
                    field: format!("update.{field}"),
                    rule,
                },
                other => other,
            })?;
        change.irc_name = None;
        change.guild_order = None;
        let outcome = self
            .store
            .apply_forwarded_profile(
                user_id.to_hex(),
                normalise_address(origin).to_owned(),
                change,
            )
            .await?;
        match outcome {
            ForwardedProfile::Applied(user) => Ok(*user),
            // The same change again, or one a newer change superseded (its direct delivery after
            // gossip brought this one or a later one): what the homeserver wants is here already.
            // The outbox counts ALREADY_EXISTS as delivered.
            ForwardedProfile::Stale(at) if at == update.timestamp => Err(Error::AlreadyExists(
                format!("update.timestamp: this change ({at} ms) is already applied here"),
            )),
            ForwardedProfile::Stale(at) => Err(Error::AlreadyExists(format!(
                "update.timestamp: a newer change ({at} ms) is already applied here; this one is \
                 superseded"
            ))),
            ForwardedProfile::UnknownUser => Err(Error::NotFound(
                "user_id: no user with this identity is known here".into(),
            )),
            ForwardedProfile::NotTheirHomeserver(home) => Err(Error::PermissionDenied(format!(
                "user_id: this user's homeserver here is {home}; only it forwards their profile changes"
            ))),
        }
    }
}
