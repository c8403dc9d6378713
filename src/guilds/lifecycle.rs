//! How guilds and channels change hands and end: a member leaving, the owner handing the guild
//! to another member, a channel or a whole guild deleted by its members (`LeaveGuild`,
//! `TransferGuildOwnership`, `DeleteChannel`, `DeleteGuild`) or by a server admin.
//!
//! Every removal goes through the same transaction shapes as a kick: a member leaves with the
//! `member_removed` event a kick sends, so their clients drop the guild and, for a member of
//! another node, the event log's hook announces it to their homeserver (a `membership` server
//! event). Permission checks that decide the outcome (who owns the guild) are made again inside
//! the transaction, so a transfer racing a deletion can't let the old owner delete.

use super::system::{self, Place};
use super::{Guilds, members, permissions};
use crate::error::{Error, Result};
use crate::events;
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::guilds::{self as db, GuildRecord};
use crate::store::{EventRow, SessionInfo, StorageError};

/// The `guild_updated` event for `guild` as it now stands, to its members.
pub(crate) fn guild_updated_event(guild: &GuildRecord) -> EventRow {
    events::row(
        vec![events::guild_scope(&guild.id)],
        pb::stream_response::Event::GuildUpdated(pb::GuildUpdatedEvent {
            guild: Some(crate::convert::guild(guild)),
        }),
    )
}

/// The refusal for a guild that is gone (deleted between the check and the write).
fn no_guild(guild_id: &str) -> Error {
    Error::NotFound(format!("guild_id: no guild {guild_id:?} on this server"))
}

/// Whether `user_id` owns the guild as stored in `tx` (`None`: the guild is gone).
fn owned_by(
    tx: &rusqlite::Connection,
    guild_id: &str,
    user_id: &str,
) -> std::result::Result<Option<bool>, StorageError> {
    Ok(db::guild(tx, guild_id)?.map(|g| g.owner_id == user_id))
}

impl Guilds {
    /// `LeaveGuild`: the caller stops being a member (of a guild or a DM). The owner can't leave
    /// a guild they own (it would have no owner): they transfer it or delete it first.
    pub async fn leave(&self, caller: &SessionInfo, guild_id: &str) -> Result<()> {
        let access = self.access(guild_id, &caller.user_id).await?;
        if access.standing.is_owner {
            return Err(owner_cannot_leave());
        }
        let (g, u) = (guild_id.to_owned(), caller.user_id.clone());
        let (system_id, now) = (self.ids().next(), now_ms());
        self.events()
            .write(now, move |tx| {
                if owned_by(tx, &g, &u)? == Some(true) {
                    return Ok((Err(owner_cannot_leave()), vec![]));
                }
                let mut rows = members::remove_and_announce(tx, &g, &u)?;
                if !rows.is_empty() {
                    let left = system::action(system::MEMBER_LEFT, &u, &u, "");
                    rows.extend(system::post_in(tx, Place::Guild(&g), system_id, now, left)?);
                }
                Ok((Ok(()), rows))
            })
            .await??;
        tracing::info!(guild = guild_id, user = %caller.user_id, "left");
        Ok(())
    }

    /// `TransferGuildOwnership`: the owner makes another member the owner; members get
    /// `guild_updated`. The old owner stays a member with their roles. DMs have no owner.
    pub async fn transfer_ownership(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        new_owner_id: &str,
    ) -> Result<GuildRecord> {
        let access = self.access(guild_id, &caller.user_id).await?;
        if access.guild.is_dm {
            return Err(Error::FailedPrecondition(
                "guild_id: a DM has no owner to transfer".into(),
            ));
        }
        if !access.standing.is_owner {
            return Err(only_the_owner("transfer"));
        }
        if new_owner_id.is_empty() {
            return Err(Error::invalid("new_owner_id", "is required"));
        }
        if new_owner_id == caller.user_id {
            return Err(Error::invalid("new_owner_id", "you already own this guild"));
        }
        let (g, from, to) = (
            guild_id.to_owned(),
            caller.user_id.clone(),
            new_owner_id.to_owned(),
        );
        let guild = self
            .events()
            .write(now_ms(), move |tx| {
                match owned_by(tx, &g, &from)? {
                    None => return Ok((Err(no_guild(&g)), vec![])),
                    Some(false) => return Ok((Err(only_the_owner("transfer")), vec![])),
                    Some(true) => {}
                }
                if db::member(tx, &g, &to)?.is_none() {
                    let refusal = Error::NotFound(format!(
                        "new_owner_id: {to} is not a member of this guild"
                    ));
                    return Ok((Err(refusal), vec![]));
                }
                db::set_owner(tx, &g, &to)?;
                let Some(guild) = db::guild(tx, &g)? else {
                    return Ok((Err(no_guild(&g)), vec![]));
                };
                let event = guild_updated_event(&guild);
                Ok((Ok(guild), vec![event]))
            })
            .await??;
        tracing::info!(guild = guild_id, from = %caller.user_id, to = new_owner_id, "ownership transferred");
        Ok(guild)
    }

    /// `DeleteChannel` (needs `channels.manage`): the channel or thread and, for a channel, its
    /// threads, with their messages, invites and webhooks; members get `channel_deleted` for
    /// each. Answers the ids deleted.
    pub async fn delete_channel(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
    ) -> Result<Vec<String>> {
        let (_, access) = self.channel_access(channel_id, &caller.user_id).await?;
        access.require(permissions::CHANNELS_MANAGE)?;
        self.remove_channel(channel_id).await
    }

    /// `DeleteGuild` (the owner only): as [`Self::remove_guild`].
    pub async fn delete_guild(&self, caller: &SessionInfo, guild_id: &str) -> Result<usize> {
        let access = self.access(guild_id, &caller.user_id).await?;
        if !access.standing.is_owner || access.guild.is_dm {
            return Err(only_the_owner("delete"));
        }
        let removed = self
            .remove_guild_if(guild_id, Some(caller.user_id.clone()))
            .await?;
        tracing::info!(guild = guild_id, by = %caller.user_id, members = removed, "guild deleted");
        Ok(removed)
    }

    /// Deletes a guild for a server admin (`guildhall.admin.v1`, which checked who asks): every
    /// member is removed first with the `member_removed` event a kick sends (so their clients
    /// drop the guild, and homeservers of members from other servers hear they left), then the
    /// guild goes with everything in it. Answers how many members were removed.
    pub async fn remove_guild(&self, guild_id: &str) -> Result<usize> {
        self.remove_guild_if(guild_id, None).await
    }

    /// [`Self::remove_guild`], only if `owner` (when given) still owns the guild.
    async fn remove_guild_if(&self, guild_id: &str, owner: Option<String>) -> Result<usize> {
        if guild_id.is_empty() {
            return Err(Error::invalid("guild_id", "is required"));
        }
        let g = guild_id.to_owned();
        self.events()
            .write(now_ms(), move |tx| {
                let Some(guild) = db::guild(tx, &g)? else {
                    return Ok((Err(no_guild(&g)), vec![]));
                };
                if owner.as_ref().is_some_and(|o| *o != guild.owner_id) {
                    return Ok((Err(only_the_owner("delete")), vec![]));
                }
                let mut rows = Vec::new();
                for user in db::member_user_ids(tx, &g)? {
                    rows.extend(members::remove_from(tx, &g, guild.is_dm, &user)?);
                }
                let removed = rows.len();
                db::delete_guild(tx, &g)?;
                Ok((Ok(removed), rows))
            })
            .await?
    }

    /// Deletes a channel (and its threads) with no permission check, for a server admin and for
    /// [`Self::delete_channel`]: members get `channel_deleted` for each, and its messages,
    /// invites and webhooks go with it. Answers the ids deleted.
    pub async fn remove_channel(&self, channel_id: &str) -> Result<Vec<String>> {
        if channel_id.is_empty() {
            return Err(Error::invalid("channel_id", "is required"));
        }
        let c = channel_id.to_owned();
        self.events()
            .write(now_ms(), move |tx| {
                let Some(channel) = db::channel(tx, &c)? else {
                    return Ok((
                        Err(Error::NotFound(format!(
                            "channel_id: no channel {c:?} on this server"
                        ))),
                        vec![],
                    ));
                };
                let ids = db::delete_channel(tx, &c)?;
                let rows = ids
                    .iter()
                    .map(|id| {
                        events::row(
                            vec![events::guild_scope(&channel.guild_id)],
                            pb::stream_response::Event::ChannelDeleted(pb::ChannelDeletedEvent {
                                guild_id: channel.guild_id.clone(),
                                channel_id: id.clone(),
                            }),
                        )
                    })
                    .collect();
                Ok((Ok(ids), rows))
            })
            .await?
    }
}

fn owner_cannot_leave() -> Error {
    Error::FailedPrecondition(
        "guild_id: the owner can't leave their guild; transfer it (TransferGuildOwnership) or \
         delete it (DeleteGuild) first"
            .into(),
    )
}

fn only_the_owner(what: &str) -> Error {
    Error::PermissionDenied(format!("guild_id: only the guild's owner may {what} it"))
}
