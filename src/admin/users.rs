//! Users, as server admins see them: list and search, one user's devices, servers and guilds,
//! and deactivating and reactivating accounts.

use super::{Admin, page};
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::store::DeviceRecord;
use crate::store::admin::{self as db, MemberGuild, UserSummary};

/// Page of `ListUsers` when the request asks for 0.
pub const USERS_PAGE_DEFAULT: u32 = 100;
/// Largest page of `ListUsers`.
pub const USERS_PAGE_MAX: u32 = 1000;
/// Longest `ListUsers` query, characters.
pub const QUERY_MAX: usize = 100;

/// A page of users.
#[derive(Debug, Clone)]
pub struct UsersPage {
    /// Users by id.
    pub users: Vec<UserSummary>,
    /// The next page's token (the last id here); empty when there is no more.
    pub next_page_token: String,
}

/// Everything `GetUser` shows.
#[derive(Debug, Clone)]
pub struct UserDetails {
    /// The user and their counts.
    pub summary: UserSummary,
    /// Their devices, newest first.
    pub devices: Vec<DeviceRecord>,
    /// Their server list (address, when added).
    pub servers: Vec<(String, u64)>,
    /// The guilds they are a member of here.
    pub guilds: Vec<MemberGuild>,
    /// Their unexpired access tokens.
    pub open_sessions: u32,
}

fn no_user(user_id: &str) -> Error {
    Error::NotFound(format!("user_id: no user {user_id:?} on this server"))
}

fn check_user_id(user_id: &str) -> Result<()> {
    if user_id.is_empty() {
        return Err(Error::invalid("user_id", "is required"));
    }
    Ok(())
}

impl Admin {
    /// `ListUsers`: users by id, `query` matching an id prefix or part of a name.
    pub async fn list_users(&self, query: &str, page_token: &str, limit: u32) -> Result<UsersPage> {
        if query.chars().count() > QUERY_MAX {
            return Err(Error::invalid(
                "query",
                format!("must be at most {QUERY_MAX} characters"),
            ));
        }
        let limit = page(limit, USERS_PAGE_DEFAULT, USERS_PAGE_MAX)?;
        let (q, after) = (query.to_owned(), page_token.to_owned());
        let mut users = self
            .store
            .read(move |c| db::users_page(c, &q, &after, limit + 1))
            .await?;
        let next_page_token = if users.len() > limit {
            users.truncate(limit);
            users.last().map(|u| u.user.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(UsersPage {
            users,
            next_page_token,
        })
    }

    /// `GetUser`: one user's record, devices, servers, guilds and open sessions.
    pub async fn user(&self, user_id: &str) -> Result<UserDetails> {
        check_user_id(user_id)?;
        let id = user_id.to_owned();
        let now = now_ms();
        let found = self
            .store
            .read(move |c| {
                let Some(summary) = db::user_summary(c, &id)? else {
                    return Ok(None);
                };
                Ok(Some((
                    summary,
                    crate::store::accounts::servers_of(c, &id)?,
                    db::guilds_of(c, &id)?,
                    db::open_sessions(c, &id, now)?,
                )))
            })
            .await?;
        let Some((summary, servers, guilds, open_sessions)) = found else {
            return Err(no_user(user_id));
        };
        let devices = self.store.devices(user_id.to_owned()).await?;
        Ok(UserDetails {
            summary,
            devices,
            servers,
            guilds,
            open_sessions,
        })
    }

    /// `DeactivateUser` (`deactivate`) or `ReactivateUser`. Deactivating revokes every session
    /// (stored and cached) and keeps new ones from being opened; both send co-members and the
    /// user's devices `user_updated` with the account's new state. Memberships and messages stay,
    /// so reactivating restores the account as it was. Doing it twice changes nothing the second
    /// time. The node's configured admins can't be deactivated: they would be let back in by
    /// their configuration, so it must change first.
    pub async fn set_user_active(&self, user_id: &str, active: bool) -> Result<UserDetails> {
        check_user_id(user_id)?;
        if !active && self.accounts.is_admin(user_id) {
            return Err(Error::FailedPrecondition(format!(
                "user_id: {user_id} is a server admin (the `admins` setting); remove them from \
                 it before deactivating the account"
            )));
        }
        let (id, guilds) = (user_id.to_owned(), self.guilds.clone());
        let now = now_ms();
        let at = (!active).then_some(now);
        self.guilds
            .events()
            .write(now, move |tx| {
                if crate::store::accounts::load_user(tx, &id)?.is_none() {
                    return Ok((Err(no_user(&id)), vec![]));
                }
                if !db::set_deactivated(tx, &id, at)? {
                    return Ok((Ok(()), vec![]));
                }
                Ok((Ok(()), vec![guilds.user_updated_row(tx, &id)?]))
            })
            .await??;
        if !active {
            self.accounts.forget_user_sessions(user_id);
        }
        self.user(user_id).await
    }
}
