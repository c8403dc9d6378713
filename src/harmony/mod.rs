//! Harmony's `protocol.profile.v1` over this node's users: profiles by numeric id, unsigned
//! profile changes, status as presence, and app data synchronised across a user's devices.
//!
//! The same users, rules and events serve both APIs: a name set here obeys the display-name rules
//! of `UpdateUser` and announces the same `user_updated` event, a status is presence, and
//! `ProfileUpdated` goes only to users who share a guild with the user (and to the user's own
//! devices). What Harmony cannot express (signed, federated changes) is described in
//! docs/HARMONY.md.

pub mod app_data;
pub mod forwarded;
pub mod status;

use crate::accounts::{Accounts, rules};
use crate::error::{Error, Result};
use crate::events;
use crate::guilds::Guilds;
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::presence::Presence;
use crate::proto::guildhall::v1 as pb;
use crate::proto::protocol::profile::v1::{ProfileUpdated, UserStatus};
use crate::store::harmony::{self as hdb, AppDataPut, HarmonyProfileChange};
use crate::store::{EventRow, SessionInfo, StorageError, UserRecord, guilds as gdb};

/// Which user a `GetProfile` asks for.
#[derive(Debug, Clone)]
pub enum ProfileTarget {
    /// Harmony's numeric id.
    Num(u64),
    /// guildhall's id (hex of K_id).
    Hex(String),
}

/// A profile as Harmony shows it.
#[derive(Debug, Clone)]
pub struct HarmonyProfile {
    /// The user's numeric Harmony id.
    pub num: u64,
    /// The stored user.
    pub user: UserRecord,
    /// Whether the user said they are a bot.
    pub is_bot: bool,
    /// The user's status as the caller may see it (offline unless they share a guild).
    pub status: UserStatus,
}

/// The fields of an `UpdateProfile`, as sent.
#[derive(Debug, Clone, Default)]
pub struct ProfileEdit {
    /// `new_user_name`.
    pub name: Option<String>,
    /// `new_user_avatar` (empty removes the avatar).
    pub avatar: Option<String>,
    /// `new_user_status` number.
    pub status: Option<i32>,
    /// `new_is_bot`.
    pub is_bot: Option<bool>,
}

/// Harmony's profile service over the node's accounts, guilds and presence.
#[derive(Debug, Clone)]
pub struct Harmony {
    accounts: Accounts,
    guilds: Guilds,
    presence: Presence,
}

/// Every scope a user's profile events reach: the guilds they are in, and their own devices.
fn profile_scopes(
    c: &rusqlite::Connection,
    user_id: &str,
) -> std::result::Result<Vec<String>, StorageError> {
    let mut scopes: Vec<String> = gdb::guild_ids_of(c, user_id)?
        .iter()
        .map(|g| events::guild_scope(g))
        .collect();
    scopes.push(events::user_scope(user_id));
    Ok(scopes)
}

impl Harmony {
    /// The service over the node's handles; `presence` must be the one the guildhall API uses.
    pub fn new(accounts: Accounts, guilds: Guilds, presence: Presence) -> Self {
        Self {
            accounts,
            guilds,
            presence,
        }
    }

    /// `GetProfile`: any user of this node by numeric or hex id. The status is shown only to the
    /// user and to those who share a guild with them, as `GetPresence` does.
    pub async fn profile(
        &self,
        caller: &SessionInfo,
        target: ProfileTarget,
    ) -> Result<HarmonyProfile> {
        if let ProfileTarget::Hex(id) = &target {
            PublicKey::from_hex(id).map_err(|e| Error::invalid("guildhall_user_id", e))?;
        }
        let me = caller.user_id.clone();
        let found = self
            .guilds
            .store()
            .read(move |c| {
                let user_id = match target {
                    ProfileTarget::Num(num) => hdb::user_by_num(c, num)?,
                    ProfileTarget::Hex(id) => Some(id),
                };
                let Some(user_id) = user_id else {
                    return Ok(None);
                };
                let (Some(user), Some(h)) = (
                    crate::store::accounts::load_user(c, &user_id)?,
                    hdb::harmony_user(c, &user_id)?,
                ) else {
                    return Ok(None);
                };
                let visible = user_id == me || gdb::share_guild(c, &me, &user_id)?;
                Ok(Some((user, h, visible)))
            })
            .await?;
        let (user, h, visible) =
            found.ok_or_else(|| Error::NotFound("user_id: no such user on this server".into()))?;
        let status = if visible {
            let (presence, detail) = self.presence.status_of(&user.id);
            status::from_presence(presence, detail)
        } else {
            UserStatus::OfflineUnspecified
        };
        Ok(HarmonyProfile {
            num: h.num,
            user,
            is_bot: h.is_bot,
            status,
        })
    }

    /// `UpdateProfile`: checks every field first (a refusal changes nothing), then applies the
    /// name, avatar and flag and logs `user_updated` (if the user record changed) and
    /// `ProfileUpdated` in the same transaction, then sets the status as presence.
    pub async fn update_profile(&self, caller: &SessionInfo, edit: ProfileEdit) -> Result<()> {
        let change = HarmonyProfileChange {
            display_name: edit
                .name
                .as_deref()
                .map(|v| rules::display_name(v).map_err(|r| Error::invalid("new_user_name", r)))
                .transpose()?,
            avatar_url: edit
                .avatar
                .as_deref()
                .map(|v| rules::avatar_url(v).map_err(|r| Error::invalid("new_user_avatar", r)))
                .transpose()?,
            is_bot: edit.is_bot,
        };
        let status = edit
            .status
            .map(|n| {
                UserStatus::try_from(n).map_err(|_| {
                    Error::invalid("new_user_status", "must be a UserStatus value (0-5)")
                })
            })
            .transpose()?;
        if change.display_name.is_none()
            && change.avatar_url.is_none()
            && change.is_bot.is_none()
            && status.is_none()
        {
            return Ok(());
        }
        let user_id = caller.user_id.clone();
        let accounts = self.accounts.clone();
        let now = now_ms();
        self.guilds
            .events()
            .write(now, move |tx| {
                let h = hdb::harmony_user(tx, &user_id)?
                    .ok_or_else(|| StorageError::Task("caller has no Harmony id".into()))?;
                let user = hdb::apply_profile_change(tx, &user_id, &change, now)?;
                let scopes = profile_scopes(tx, &user_id)?;
                let mut rows: Vec<EventRow> = Vec::with_capacity(2);
                if change.display_name.is_some() || change.avatar_url.is_some() {
                    let record = crate::convert::user(&user, accounts.is_admin(&user.id));
                    rows.push(events::row(
                        scopes.clone(),
                        pb::stream_response::Event::UserUpdated(pb::UserUpdated {
                            user: Some(record),
                        }),
                    ));
                }
                let updated = ProfileUpdated {
                    user_id: h.num,
                    new_username: change.display_name.clone(),
                    new_avatar: change.avatar_url.clone(),
                    new_status: status.map(|s| s as i32),
                    new_is_bot: change.is_bot,
                };
                rows.push(events::row(
                    scopes,
                    pb::stream_response::Event::ProfileUpdated(updated),
                ));
                Ok(((), rows))
            })
            .await?;
        if let Some(status) = status {
            self.presence
                .set_status_detail(
                    &caller.user_id,
                    status::to_presence(status) as i32,
                    status as i32,
                )
                .await?;
        }
        Ok(())
    }

    /// Announces a signed `UpdateUser` that was applied: `user_updated` (the record) and, if the
    /// name or avatar was in the request, `ProfileUpdated` for Harmony clients, to the same
    /// audience as a Harmony change. It runs after the change committed, so a failure here is
    /// logged and does not undo the change.
    pub async fn announce_signed_update(
        &self,
        user: &UserRecord,
        name_changed: bool,
        avatar_changed: bool,
    ) {
        let record = crate::convert::user(user, self.accounts.is_admin(&user.id));
        let user_id = user.id.clone();
        let new_username = name_changed.then(|| user.display_name.clone());
        let new_avatar = avatar_changed.then(|| user.avatar_url.clone());
        let written = self
            .guilds
            .events()
            .write(now_ms(), move |tx| {
                let scopes = profile_scopes(tx, &user_id)?;
                let mut rows = vec![events::row(
                    scopes.clone(),
                    pb::stream_response::Event::UserUpdated(pb::UserUpdated { user: Some(record) }),
                )];
                let num = hdb::harmony_user(tx, &user_id)?.map(|h| h.num);
                if let Some(num) = num.filter(|_| new_username.is_some() || new_avatar.is_some()) {
                    rows.push(events::row(
                        scopes,
                        pb::stream_response::Event::ProfileUpdated(ProfileUpdated {
                            user_id: num,
                            new_username,
                            new_avatar,
                            new_status: None,
                            new_is_bot: None,
                        }),
                    ));
                }
                Ok(((), rows))
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "profile change applied but not announced");
        }
    }

    /// `GetAppData`: the caller's data for `app_id`, empty if none was set.
    pub async fn app_data(&self, caller: &SessionInfo, app_id: &str) -> Result<Vec<u8>> {
        app_data::check_app_id(app_id)?;
        let (user_id, app_id) = (caller.user_id.clone(), app_id.to_owned());
        let data = self
            .guilds
            .store()
            .read(move |c| hdb::app_data(c, &user_id, &app_id))
            .await?;
        Ok(data.unwrap_or_default())
    }

    /// `SetAppData`: replaces the caller's data for `app_id` (empty clears it) and tells the
    /// caller's devices with an `app_data_updated` event, in the same transaction.
    pub async fn set_app_data(
        &self,
        caller: &SessionInfo,
        app_id: &str,
        data: Vec<u8>,
    ) -> Result<()> {
        app_data::check_app_id(app_id)?;
        app_data::check_app_data(app_id, &data)?;
        let (user_id, app) = (caller.user_id.clone(), app_id.to_owned());
        let now = now_ms();
        let outcome = self
            .guilds
            .events()
            .write(now, move |tx| {
                let outcome =
                    hdb::put_app_data(tx, &user_id, &app, &data, app_data::APPS_PER_USER_MAX, now)?;
                let rows = match outcome {
                    AppDataPut::Done => vec![events::row(
                        vec![events::user_scope(&user_id)],
                        pb::stream_response::Event::AppDataUpdated(pb::AppDataUpdated {
                            app_id: app,
                        }),
                    )],
                    AppDataPut::TooManyApps => Vec::new(),
                };
                Ok((outcome, rows))
            })
            .await?;
        match outcome {
            AppDataPut::Done => Ok(()),
            AppDataPut::TooManyApps => Err(Error::FailedPrecondition(format!(
                "app_id: you already keep data for {} apps; clear one by setting empty app_data",
                app_data::APPS_PER_USER_MAX
            ))),
        }
    }
}
