//! Accounts for people who only have an IRC client (IRCv3 `draft/account-registration`'s
//! `REGISTER`, docs/IRC.md). Such a person has no key of their own, so the node makes the keys:
//! it generates K_id and a device key, signs the account's registration and username exactly as
//! a client would (the same checks run, the registration policy included), keeps both seeds, and
//! marks the user `is_irc` so everyone sees the account is node-held. The password the person
//! chose is kept as an Argon2id hash and works where an IRC token does.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::{Accounts, RegisterInput, UpdateFields, UpdateUserInput, profile_statement, rules};
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, IdProofPayload, RegisterPayload};
use crate::identity::{DeviceCert, SecretKey};
use crate::store::irc_accounts::{self as db, IrcAccountRecord};
use crate::store::{SessionInfo, StorageError, UserRecord, accounts as users};

/// Shortest password of an IRC-made account, in characters.
pub const IRC_PASSWORD_MIN: usize = 8;
/// Longest password of an IRC-made account, in bytes (it is hashed as sent).
pub const IRC_PASSWORD_MAX: usize = 256;
/// How long the node-held device key's cert is valid.
const CERT_LIFETIME_MS: u64 = 10 * 365 * 24 * 60 * 60 * 1000;
/// The node-held device's id and name.
const DEVICE: &str = "irc";

/// Why a `REGISTER` was refused; each is one of the specification's `FAIL REGISTER` codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrcRegisterError {
    /// The username is taken.
    #[error("that username is taken")]
    AccountExists,
    /// The username breaks the username rules.
    #[error("not a valid username: {0}")]
    BadAccountName(String),
    /// The password is too short.
    #[error("the password must be at least {IRC_PASSWORD_MIN} characters")]
    WeakPassword,
    /// The password is too long or otherwise unusable.
    #[error("the password must be at most {IRC_PASSWORD_MAX} bytes, without spaces")]
    UnacceptablePassword,
    /// The node does not take registrations now (its policy, or a failure).
    #[error("{0}")]
    Unavailable(String),
}

impl IrcRegisterError {
    /// The `FAIL REGISTER` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccountExists => "ACCOUNT_EXISTS",
            Self::BadAccountName(_) => "BAD_ACCOUNT_NAME",
            Self::WeakPassword => "WEAK_PASSWORD",
            Self::UnacceptablePassword => "UNACCEPTABLE_PASSWORD",
            Self::Unavailable(_) => "TEMPORARILY_UNAVAILABLE",
        }
    }
}

/// An account made from IRC whose owner claimed its identity key.
pub struct ClaimedIrcAccount {
    /// The user, now without `is_irc`.
    pub user: UserRecord,
    /// K_id, which the node no longer stores.
    pub id_key: SecretKey,
    /// The device key the node held for the account, to be revoked.
    pub node_device: crate::identity::PublicKey,
}

impl std::fmt::Debug for ClaimedIrcAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedIrcAccount")
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// `REGISTER <account> * <password>`: a new account of this node named `name`, with
    /// node-held keys and `password`, under the node's registration policy.
    pub async fn register_irc_account(
        &self,
        name: &str,
        password: &str,
    ) -> std::result::Result<UserRecord, IrcRegisterError> {
        let name = rules::irc_name(name).map_err(IrcRegisterError::BadAccountName)?;
        if password.chars().count() < IRC_PASSWORD_MIN {
            return Err(IrcRegisterError::WeakPassword);
        }
        if password.len() > IRC_PASSWORD_MAX || password.contains(char::is_whitespace) {
            return Err(IrcRegisterError::UnacceptablePassword);
        }
        let taken = {
            let name = name.clone();
            self.store
                .read(move |c| users::load_user_by_irc_name(c, &name))
                .await
                .map_err(unavailable)?
        };
        if taken.is_some() {
            return Err(IrcRegisterError::AccountExists);
        }
        let password_hash = hash_password(password.to_owned()).await?;

        let (id_key, device_key) = (SecretKey::generate(), SecretKey::generate());
        let now = now_ms();
        let cert = DeviceCert::issue(
            &id_key,
            device_key.public(),
            DEVICE,
            now,
            now.saturating_add(CERT_LIFETIME_MS),
        );
        let audience = self.config.server_id;
        let proof = IdProofPayload {
            audience,
            id_key: id_key.public(),
            timestamp: now,
        };
        let payload = RegisterPayload {
            audience,
            id_key: id_key.public(),
            device_key: device_key.public(),
            display_name: name.clone(),
            device_name: Some("IRC".into()),
            timestamp: now,
        };
        let registration = RegisterInput {
            display_name: name.clone(),
            id_key: id_key.public(),
            cert: cert.clone(),
            id_proof: signing::sign(&proof, &id_key),
            device_name: Some("IRC".into()),
            signature: signing::sign(&payload, &device_key),
            timestamp: now,
            registration_token: String::new(),
        };
        let (user, _) = self.register(registration).await.map_err(|e| match e {
            Error::PermissionDenied(m) | Error::FailedPrecondition(m) => {
                IrcRegisterError::Unavailable(format!("registration is closed here: {m}"))
            }
            other => unavailable(other),
        })?;

        // The username, signed by the node-held device as a client signs it.
        let fields = UpdateFields {
            irc_name: Some(name.clone()),
            ..UpdateFields::default()
        };
        // Newer than the registration's own profile stamp, which the store may have set later
        // than `now`.
        let stamp = now_ms().max(user.profile_updated_at.saturating_add(1));
        let statement = profile_statement(id_key.public(), device_key.public(), &fields, stamp, "")
            .map_err(unavailable)?;
        let update = UpdateUserInput {
            signature: statement.sign(&device_key),
            fields,
            cert,
            timestamp: stamp,
        };
        let session = SessionInfo {
            user_id: user.id.clone(),
            device_pubkey: device_key.public().to_hex(),
            family_id: [0; 16],
            expires_at: u64::MAX,
        };
        let record = IrcAccountRecord {
            user_id: user.id.clone(),
            id_secret: hex::encode(id_key.to_seed()),
            device_secret: hex::encode(device_key.to_seed()),
            password_hash,
            created_at: now,
        };
        let named = self
            .update_user(&session, update, move |c, _| db::insert(c, &record))
            .await;
        match named {
            Ok((user, ())) => Ok(user),
            // Taken meanwhile: the account stays without a username, so no one can log in to it.
            Err(Error::Storage(crate::store::StorageError::Conflict(_))) => {
                Err(IrcRegisterError::AccountExists)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// `ClaimIrcAccount`: the person who made the account from IRC (they know its password)
    /// takes its identity key. The node's record (both seeds, the password hash) is deleted and
    /// `is_irc` cleared in one write, so a second claim finds nothing; the caller then revokes
    /// the node-held device with the key (the node must not keep a working device of an account
    /// it no longer holds). A wrong password and a name that is not an IRC-made account are the
    /// same refusal, so the answer tells nothing about which names exist.
    pub async fn claim_irc_account(
        &self,
        username: &str,
        password: &str,
    ) -> Result<ClaimedIrcAccount> {
        let refused = || {
            Error::Unauthenticated(
                "username or password: not an account made from IRC with that password".into(),
            )
        };
        let user = self
            .irc_password_login(username, password)
            .await
            .ok_or_else(refused)?;
        let id = user.id.clone();
        // Parsed inside the write: a stored seed that does not parse rolls the claim back
        // rather than lose the account's key.
        let taken = self
            .store
            .write(move |c| {
                let Some(record) = db::take(c, &id)? else {
                    return Ok(None);
                };
                let parse = |hex: &str| {
                    SecretKey::from_hex(hex)
                        .map_err(|e| StorageError::Task(format!("a stored IRC account key: {e}")))
                };
                let (id_key, device_key) =
                    (parse(&record.id_secret)?, parse(&record.device_secret)?);
                let user = users::load_user(c, &id)?
                    .ok_or_else(|| StorageError::Task("user vanished".into()))?;
                Ok(Some((user, id_key, device_key.public())))
            })
            .await?;
        let (user, id_key, node_device) = taken.ok_or_else(refused)?;
        Ok(ClaimedIrcAccount {
            user,
            id_key,
            node_device,
        })
    }

    /// The account made from IRC whose username is `username`, if `password` is its password.
    pub(super) async fn irc_password_login(
        &self,
        username: &str,
        password: &str,
    ) -> Option<UserRecord> {
        if password.len() > IRC_PASSWORD_MAX {
            return None;
        }
        let name = username.to_ascii_lowercase();
        let (user_id, hash) = self
            .store
            .read(move |c| db::password_hash_by_name(c, &name))
            .await
            .ok()??;
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if !matches {
            return None;
        }
        self.store
            .read(move |c| users::load_user(c, &user_id))
            .await
            .ok()
            .flatten()
    }
}

/// An Argon2id hash (the crate's default parameters) of `password` with a fresh salt, as a PHC
/// string; computed off the async threads.
async fn hash_password(password: String) -> std::result::Result<String, IrcRegisterError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| IrcRegisterError::Unavailable(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| IrcRegisterError::Unavailable(e.to_string()))?
    .map_err(IrcRegisterError::Unavailable)
}

fn unavailable(e: impl std::fmt::Display) -> IrcRegisterError {
    tracing::warn!(error = %e, "IRC registration failed");
    IrcRegisterError::Unavailable("registration failed; try again later".into())
}
