//! `GetUserProfile`: one user as the caller may see them, with what the two share here (guilds,
//! friends) and, for a guild the caller names, the user's nickname there.

use super::People;
use crate::error::{Error, Result};
use crate::identity::PublicKey;
use crate::store::SessionInfo;
use crate::store::accounts::{UserRecord, load_user};
use crate::store::guilds as gdb;
use crate::store::people as db;

/// Most mutual friends a profile lists (the count covers them all).
pub const MUTUAL_FRIENDS_SHOWN_MAX: usize = 100;

/// A user's profile as one caller sees it.
#[derive(Debug, Clone)]
pub struct ProfileView {
    /// The user.
    pub user: UserRecord,
    /// The guilds (not DMs) the caller shares with the user, with the user's nickname in each.
    pub mutual_guilds: Vec<(String, Option<String>)>,
    /// Friends of both, known here (at most [`MUTUAL_FRIENDS_SHOWN_MAX`]).
    pub mutual_friends: Vec<UserRecord>,
    /// How many friends they share.
    pub mutual_friends_count: u32,
    /// The user's nickname in the guild the caller asked about.
    pub nick: Option<String>,
}

impl People {
    /// `GetUserProfile`. A user who blocked the caller shows only their user record: what the
    /// two share is not the blocked user's to see (the Users-resource seed does the same).
    pub async fn profile(
        &self,
        caller: &SessionInfo,
        user_id: &str,
        guild_id: &str,
    ) -> Result<ProfileView> {
        PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
        if !guild_id.is_empty() {
            // The guild's member list is for its members.
            self.guilds.access(guild_id, &caller.user_id).await?;
        }
        let (me, them, guild) = (
            caller.user_id.clone(),
            user_id.to_owned(),
            guild_id.to_owned(),
        );
        let view = self
            .guilds
            .store()
            .read(move |c| {
                let Some(user) = load_user(c, &them)? else {
                    return Ok(Err(Error::NotFound(format!(
                        "user_id: no user {them} known to this server"
                    ))));
                };
                let nick = if guild.is_empty() {
                    None
                } else {
                    match gdb::member(c, &guild, &them)? {
                        Some(m) => m.nick,
                        None => {
                            return Ok(Err(Error::NotFound(format!(
                                "user_id: {them} is not a member of guild {guild}"
                            ))));
                        }
                    }
                };
                let mut view = ProfileView {
                    user,
                    mutual_guilds: Vec::new(),
                    mutual_friends: Vec::new(),
                    mutual_friends_count: 0,
                    nick,
                };
                if me == them || db::blocked(c, &them, &me)? {
                    return Ok(Ok(view));
                }
                view.mutual_guilds = gdb::mutual_guilds(c, &me, &them)?;
                let friends = db::mutual_friends(c, &me, &them)?;
                view.mutual_friends_count = u32::try_from(friends.len()).unwrap_or(u32::MAX);
                for id in friends.iter().take(MUTUAL_FRIENDS_SHOWN_MAX) {
                    view.mutual_friends.extend(load_user(c, id)?);
                }
                Ok(Ok(view))
            })
            .await??;
        Ok(view)
    }
}
