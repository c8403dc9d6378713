//! IRC credentials: revocable tokens a user with a key-based identity mints over gRPC for their IRC
//! clients (`CreateIrcToken`, `ListIrcTokens`, `RevokeIrcToken`), and the check the IRC gateway
//! makes when a client logs in with `PASS username:token` or SASL PLAIN (`docs/IRC.md`). A token
//! is shown once; only its SHA-256 is kept.

use super::{Accounts, tokens};
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::store::irc_tokens::{self as db, IrcTokenRecord};
use crate::store::{SessionInfo, UserRecord, accounts as users};

/// Most IRC tokens one user holds (one per client or device is plenty).
pub const MAX_IRC_TOKENS: u64 = 20;
/// Longest label of an IRC token, in characters.
pub const IRC_TOKEN_LABEL_MAX: usize = 64;

/// Why an IRC login was refused. The words are what the IRC client shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrcLoginError {
    /// No token matches, or it belongs to another username.
    #[error("invalid username or IRC token (mint one with CreateIrcToken)")]
    BadCredentials,
    /// The account can't log in now.
    #[error("this account can't log in: {0}")]
    Refused(&'static str),
    /// The user has no username, which is their nick on IRC.
    #[error("set a username first (UpdateUser irc_name); it is your nick on IRC")]
    NoUsername,
}

impl Accounts {
    /// `CreateIrcToken`: a new token for the caller, labelled `label`; the token itself is in the
    /// answer only.
    pub async fn create_irc_token(
        &self,
        caller: &SessionInfo,
        label: &str,
    ) -> Result<(IrcTokenRecord, String)> {
        let label = label.trim().to_owned();
        if label.chars().count() > IRC_TOKEN_LABEL_MAX {
            return Err(Error::invalid(
                "label",
                format!("must be at most {IRC_TOKEN_LABEL_MAX} characters"),
            ));
        }
        let me = caller.user_id.clone();
        let user = self
            .store
            .read(move |c| users::load_user(c, &me))
            .await?
            .ok_or_else(|| Error::NotFound("no account here".into()))?;
        if !self.is_own_homeserver(&user.homeserver) {
            return Err(Error::FailedPrecondition(format!(
                "IRC on this server is for its own users; connect to your homeserver {}",
                user.homeserver
            )));
        }
        let token = format!("ghirc_{}", tokens::generate());
        let hash = tokens::hash(&token);
        let record = IrcTokenRecord {
            id: tokens::generate()[..16].to_owned(),
            user_id: caller.user_id.clone(),
            label,
            created_at: now_ms(),
            last_used_at: None,
        };
        let stored = record.clone();
        let full = self
            .store
            .write(move |c| {
                if db::count(c, &stored.user_id)? >= MAX_IRC_TOKENS {
                    return Ok(true);
                }
                db::insert(c, &stored, &hash)?;
                Ok(false)
            })
            .await?;
        if full {
            return Err(Error::FailedPrecondition(format!(
                "you hold {MAX_IRC_TOKENS} IRC tokens, the most there can be; revoke one \
                 (RevokeIrcToken)"
            )));
        }
        Ok((record, token))
    }

    /// `ListIrcTokens`: the caller's tokens (never the tokens themselves).
    pub async fn irc_tokens(&self, caller: &SessionInfo) -> Result<Vec<IrcTokenRecord>> {
        let me = caller.user_id.clone();
        Ok(self.store.read(move |c| db::list(c, &me)).await?)
    }

    /// `RevokeIrcToken`: the token stops working; IRC connections made with it stay until they
    /// quit (they are the user's own).
    pub async fn revoke_irc_token(&self, caller: &SessionInfo, id: &str) -> Result<()> {
        let (me, id) = (caller.user_id.clone(), id.to_owned());
        if self.store.write(move |c| db::revoke(c, &me, &id)).await? {
            Ok(())
        } else {
            Err(Error::NotFound(
                "id: you have no IRC token with this id".into(),
            ))
        }
    }

    /// The IRC gateway's login check: `token` is one of the tokens of the user whose username is
    /// `username` (compared ASCII case-insensitively, the gateway's casemapping), and that user
    /// may log in.
    pub async fn irc_login(
        &self,
        username: &str,
        token: &str,
    ) -> std::result::Result<UserRecord, IrcLoginError> {
        let hash = tokens::hash(token);
        let now = now_ms();
        let found = self
            .store
            .write(move |c| {
                let Some(record) = db::use_by_hash(c, &hash, now)? else {
                    return Ok(None);
                };
                users::load_user(c, &record.user_id)
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "IRC login: storage");
                IrcLoginError::BadCredentials
            })?;
        let user = match found {
            Some(user) => user,
            // Not a token: the password of an account made from IRC, if that is one.
            None => self
                .irc_password_login(username, token)
                .await
                .ok_or(IrcLoginError::BadCredentials)?,
        };
        let Some(name) = user.irc_name.as_deref() else {
            return Err(IrcLoginError::NoUsername);
        };
        // An empty username (a bouncer sending only the token) is taken as the token's owner.
        if !username.is_empty() && !name.eq_ignore_ascii_case(username) {
            return Err(IrcLoginError::BadCredentials);
        }
        if user.deleted_at.is_some() {
            return Err(IrcLoginError::Refused("it was deleted by its owner"));
        }
        if user.disabled_at.is_some() {
            return Err(IrcLoginError::Refused("it was disabled by its owner"));
        }
        if user.deactivated_at.is_some() {
            return Err(IrcLoginError::Refused("a server admin deactivated it"));
        }
        if !self.is_own_homeserver(&user.homeserver) {
            return Err(IrcLoginError::Refused("it moved to another homeserver"));
        }
        Ok(user)
    }
}
