//! Guilds: folders, channels, roles, members, moderation and invites on this node.
//!
//! Every operation loads the guild's [`GuildContext`] (guild, roles, the caller's membership) in
//! one read, computes the caller's [`Standing`], checks the permission it needs, and writes through
//! [`Events::write`] so the change and its event commit together.

pub mod ban_lists;
pub mod lifecycle;
pub mod members;
pub mod permissions;
pub mod remote;
pub mod roles;
pub mod system;

use std::sync::Arc;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::events::{self, Events};
use crate::identity::freshness::now_ms;
use crate::ids::IdGenerator;
use crate::proto::guildhall::v1 as pb;
use crate::store::guilds::{
    self as db, ChannelRecord, FolderRecord, GuildContext, GuildRecord, InviteRecord, RoleRecord,
};
use crate::store::{EventRow, MembershipMark, SessionInfo, StorageError, Store};
use permissions::{RoleGraph, RoleNode, Standing};

/// Longest guild, channel, folder or role name.
pub const NAME_MAX: usize = 100;

/// How long an invite lives when the request does not say.
pub const DEFAULT_INVITE_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Page of `ListGuildMembers` and `ListServerGuilds` when the request asks for 0.
pub const LIST_PAGE_DEFAULT: u32 = 100;
/// Largest page of `ListGuildMembers` and `ListServerGuilds`: bounds one read and one answer.
pub const LIST_PAGE_MAX: u32 = 1000;

/// The caller's view of one guild: the guild, its role graph, and their standing in it.
#[derive(Debug, Clone)]
pub struct Access {
    /// The guild.
    pub guild: GuildRecord,
    /// All its roles.
    pub roles: Vec<RoleRecord>,
    /// The role graph built from them.
    pub graph: RoleGraph,
    /// The caller's standing.
    pub standing: Standing,
    /// The caller's assigned roles.
    pub member_roles: Vec<String>,
}

impl Access {
    /// Refuses unless the caller holds `permission`.
    pub fn require(&self, permission: &str) -> Result<()> {
        if self.standing.has(permission) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "you lack the {permission:?} permission in guild {}",
                self.guild.id
            )))
        }
    }
}

/// The guild operations of one node.
#[derive(Debug, Clone)]
pub struct Guilds {
    store: Store,
    events: Events,
    ids: Arc<IdGenerator>,
    admins: Arc<Vec<String>>,
}

fn field<T>(name: &str, result: std::result::Result<T, String>) -> Result<T> {
    result.map_err(|rule| Error::invalid(name, rule))
}

/// The `pb::User` for a stored user, for event payloads.
fn user_proto(
    c: &rusqlite::Connection,
    user_id: &str,
    admins: &[String],
) -> std::result::Result<pb::User, StorageError> {
    let record = crate::store::accounts::load_user(c, user_id)?;
    Ok(match record {
        Some(r) => crate::convert::user(&r, admins.iter().any(|a| a == user_id)),
        None => pb::User {
            id: user_id.to_owned(),
            id_pubkey: user_id.to_owned(),
            ..Default::default()
        },
    })
}

impl Guilds {
    /// The guild operations over the store and event log.
    pub fn new(store: Store, events: Events, ids: Arc<IdGenerator>, admins: Vec<String>) -> Self {
        Self {
            store,
            events,
            ids,
            admins: Arc::new(admins),
        }
    }

    /// Whether a user is a server admin.
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.admins.iter().any(|a| a == user_id)
    }

    /// Loads the caller's access to a guild; refuses non-members.
    pub async fn access(&self, guild_id: &str, user_id: &str) -> Result<Access> {
        if guild_id.is_empty() {
            return Err(Error::invalid("guild_id", "is required"));
        }
        let (g, u) = (guild_id.to_owned(), user_id.to_owned());
        let ctx = self
            .store
            .read(move |c| db::context(c, &g, &u))
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("guild_id: no guild {guild_id:?} on this server"))
            })?;
        Self::access_from(ctx, user_id)
    }

    /// The caller's access from an already loaded context; refuses non-members.
    pub(crate) fn access_from(ctx: GuildContext, user_id: &str) -> Result<Access> {
        let Some(member) = ctx.member else {
            return Err(Error::PermissionDenied(format!(
                "guild_id: you are not a member of guild {}",
                ctx.guild.id
            )));
        };
        let graph = RoleGraph::new(ctx.roles.iter().map(|r| {
            (
                r.id.clone(),
                RoleNode {
                    position: r.position,
                    permissions: r.permissions.clone(),
                    parents: r.parent_role_ids.clone(),
                },
            )
        }));
        // Nobody owns a DM: its creator is an ordinary member, so nobody can invite a third
        // person or remove the other.
        let is_owner = ctx.guild.owner_id == user_id && !ctx.guild.is_dm;
        let standing = Standing::of(&ctx.guild.id, is_owner, &member.role_ids, &graph);
        Ok(Access {
            guild: ctx.guild,
            roles: ctx.roles,
            graph,
            standing,
            member_roles: member.role_ids,
        })
    }

    /// Loads a channel and the caller's access to its guild.
    pub async fn channel_access(
        &self,
        channel_id: &str,
        user_id: &str,
    ) -> Result<(ChannelRecord, Access)> {
        if channel_id.is_empty() {
            return Err(Error::invalid("channel_id", "is required"));
        }
        // One blocking read for the channel and its guild's context: this runs on every message.
        let (id, user) = (channel_id.to_owned(), user_id.to_owned());
        let found = self
            .store
            .read(move |c| {
                let Some(channel) = db::channel(c, &id)? else {
                    return Ok(None);
                };
                let ctx = db::context(c, &channel.guild_id, &user)?;
                Ok(Some((channel, ctx)))
            })
            .await?;
        let Some((channel, Some(ctx))) = found else {
            return Err(Error::NotFound(format!(
                "channel_id: no channel {channel_id:?} on this server"
            )));
        };
        let access = Self::access_from(ctx, user_id)?;
        Ok((channel, access))
    }

    /// `CreateGuild`: a guild with its default role, a `general` channel, the caller as owner, and
    /// an invite to that channel (returned so the owner can share it at once).
    pub async fn create_guild(
        &self,
        caller: &SessionInfo,
        name: &str,
        avatar_url: Option<&str>,
    ) -> Result<(GuildRecord, String)> {
        let name = field("name", rules::name(name, NAME_MAX))?;
        let avatar_url = avatar_url
            .map(|u| field("avatar_url", rules::avatar_url(u)))
            .transpose()?
            .unwrap_or_default();
        let now = now_ms();
        let guild = GuildRecord {
            id: self.ids.next_string(),
            name,
            owner_id: caller.user_id.clone(),
            avatar_url,
            is_dm: false,
            latest_message_id: String::new(),
            created_at: now,
        };
        let default_role = RoleRecord {
            id: guild.id.clone(),
            guild_id: guild.id.clone(),
            name: "@everyone".into(),
            color: String::new(),
            position: 0,
            permissions: permissions::DEFAULT_ROLE_PERMISSIONS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            parent_role_ids: Vec::new(),
        };
        let channel = ChannelRecord {
            id: self.ids.next_string(),
            guild_id: guild.id.clone(),
            folder_id: String::new(),
            name: "general".into(),
            position: 0,
            latest_message_id: String::new(),
            irc_name: Some("general".into()),
            is_thread: false,
            parent_channel_id: String::new(),
            root_message_id: String::new(),
        };
        let invite = InviteRecord {
            token: crate::accounts::tokens::generate()[..16].to_owned(),
            guild_id: guild.id.clone(),
            channel_id: channel.id.clone(),
            channel_name: channel.name.clone(),
            created_by: caller.user_id.clone(),
            created_at: now,
            updated_at: now,
            expires_at: now + DEFAULT_INVITE_AGE_MS,
            max_uses: 0,
            uses: 0,
            deactivated: false,
            allows_registration: false,
        };
        let (g, admins, owner) = (guild.clone(), self.admins.clone(), caller.user_id.clone());
        let token = self
            .events
            .write(now, move |tx| {
                db::insert_guild(tx, &g)?;
                db::insert_role(tx, &default_role)?;
                db::insert_channel(tx, &channel)?;
                db::add_member(tx, &g.id, &owner, now)?;
                db::insert_invite(tx, &invite)?;
                let joined = member_joined_event(tx, &g.id, &owner, &admins)?;
                Ok((invite.token, vec![joined]))
            })
            .await
            .map_err(Error::from)?;
        tracing::info!(guild = %guild.id, owner = %guild.owner_id, "guild created");
        Ok((guild, token))
    }

    /// `UpdateGuild`: rename or change the avatar (needs `guild.manage`); members get
    /// `guild_updated`.
    pub async fn update_guild(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<GuildRecord> {
        let name = name
            .map(|n| field("name", rules::name(n, NAME_MAX)))
            .transpose()?;
        let avatar_url = avatar_url
            .map(|u| field("avatar_url", rules::avatar_url(u)))
            .transpose()?;
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::GUILD_MANAGE)?;
        let (id, actor) = (guild_id.to_owned(), caller.user_id.clone());
        let (system_id, now) = (self.ids.next(), now_ms());
        let renamed = name.clone().filter(|n| *n != access.guild.name);
        let updated = self
            .events
            .write(now, move |tx| {
                db::update_guild(tx, &id, name.as_deref(), avatar_url.as_deref())?;
                let guild = db::guild(tx, &id)?;
                let mut rows: Vec<EventRow> =
                    guild.iter().map(lifecycle::guild_updated_event).collect();
                if let Some(name) = renamed {
                    let action = system::action(system::GUILD_RENAMED, &actor, &id, &name);
                    rows.extend(system::post_in(
                        tx,
                        system::Place::Guild(&id),
                        system_id,
                        now,
                        action,
                    )?);
                }
                Ok((guild, rows))
            })
            .await?;
        updated.ok_or_else(|| Error::NotFound("guild_id: guild vanished".into()))
    }

    /// `ListGuilds`: the caller's guilds.
    pub async fn list_guilds(&self, caller: &SessionInfo) -> Result<Vec<GuildRecord>> {
        let user = caller.user_id.clone();
        Ok(self.store.read(move |c| db::guilds_of(c, &user)).await?)
    }

    /// `ListServerGuilds`: every guild on the node with counts (server admins only).
    pub async fn list_server_guilds(
        &self,
        caller: &SessionInfo,
        limit: i32,
        offset: i32,
    ) -> Result<(Vec<db::GuildStats>, i64)> {
        if !self.is_admin(&caller.user_id) {
            return Err(Error::PermissionDenied(
                "only server admins may list the server's guilds".into(),
            ));
        }
        let (limit, offset) = page(limit, offset)?;
        Ok(self
            .store
            .read(move |c| db::all_guilds(c, limit, offset))
            .await?)
    }

    /// `CreateFolder` (needs `channels.manage`).
    pub async fn create_folder(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        parent_folder_id: &str,
        name: &str,
    ) -> Result<FolderRecord> {
        let name = field("name", rules::name(name, NAME_MAX))?;
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::CHANNELS_MANAGE)?;
        let folders = self.folders_unchecked(guild_id).await?;
        if !parent_folder_id.is_empty() && !folders.iter().any(|f| f.id == parent_folder_id) {
            return Err(Error::invalid(
                "parent_folder_id",
                "is not a folder of this guild",
            ));
        }
        let folder = FolderRecord {
            id: self.ids.next_string(),
            guild_id: guild_id.to_owned(),
            parent_folder_id: parent_folder_id.to_owned(),
            name,
            position: i32::try_from(folders.len()).unwrap_or(i32::MAX),
        };
        let f = folder.clone();
        self.events
            .write(now_ms(), move |tx| {
                db::insert_folder(tx, &f)?;
                Ok(((), vec![folder_event(&f, false)]))
            })
            .await?;
        Ok(folder)
    }

    /// `UpdateFolder` (needs `channels.manage`): a new name, parent or position.
    pub async fn update_folder(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        folder_id: &str,
        update: FolderUpdate,
    ) -> Result<FolderRecord> {
        let name = update
            .name
            .map(|n| field("name", rules::name(&n, NAME_MAX)))
            .transpose()?;
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::CHANNELS_MANAGE)?;
        let folders = self.folders_unchecked(guild_id).await?;
        let mut folder = find_folder(&folders, folder_id)?;
        if let Some(parent) = update.parent_folder_id {
            if !parent.is_empty() {
                find_folder(&folders, &parent).map_err(|_| {
                    Error::invalid("parent_folder_id", "is not a folder of this guild")
                })?;
                // Walking up from the new parent must not meet the folder itself.
                let mut at = parent.as_str();
                for _ in 0..=folders.len() {
                    if at == folder.id {
                        return Err(Error::invalid(
                            "parent_folder_id",
                            "must not be the folder itself or a folder inside it",
                        ));
                    }
                    match folders.iter().find(|f| f.id == at) {
                        Some(f) if !f.parent_folder_id.is_empty() => at = &f.parent_folder_id,
                        _ => break,
                    }
                }
            }
            folder.parent_folder_id = parent;
        }
        if let Some(name) = name {
            folder.name = name;
        }
        if let Some(position) = update.position {
            folder.position = position;
        }
        let f = folder.clone();
        self.events
            .write(now_ms(), move |tx| {
                db::update_folder(tx, &f)?;
                Ok(((), vec![folder_event(&f, false)]))
            })
            .await?;
        Ok(folder)
    }

    /// `DeleteFolder` (needs `channels.manage`): its channels and folders move up to its parent;
    /// nothing else is lost.
    pub async fn delete_folder(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        folder_id: &str,
    ) -> Result<()> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::CHANNELS_MANAGE)?;
        let folders = self.folders_unchecked(guild_id).await?;
        let folder = find_folder(&folders, folder_id)?;
        self.events
            .write(now_ms(), move |tx| {
                let (channels, moved) = db::delete_folder(tx, &folder)?;
                let mut rows: Vec<EventRow> =
                    channels.iter().map(|c| channel_event(c, false)).collect();
                rows.extend(moved.iter().map(|f| folder_event(f, false)));
                rows.push(folder_event(
                    &FolderRecord {
                        id: folder.id.clone(),
                        guild_id: folder.guild_id.clone(),
                        parent_folder_id: String::new(),
                        name: String::new(),
                        position: 0,
                    },
                    true,
                ));
                Ok(((), rows))
            })
            .await?;
        Ok(())
    }

    async fn folders_unchecked(&self, guild_id: &str) -> Result<Vec<FolderRecord>> {
        let id = guild_id.to_owned();
        Ok(self.store.read(move |c| db::folders(c, &id)).await?)
    }

    /// `ListFolders` (members).
    pub async fn list_folders(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
    ) -> Result<Vec<FolderRecord>> {
        self.access(guild_id, &caller.user_id).await?;
        self.folders_unchecked(guild_id).await
    }

    /// `CreateChannel` (needs `channels.manage`).
    pub async fn create_channel(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        folder_id: &str,
        name: &str,
        irc_name: Option<&str>,
    ) -> Result<ChannelRecord> {
        let name = field("name", rules::name(name, NAME_MAX))?;
        let irc_name = irc_name
            .filter(|n| !n.is_empty())
            .map(|n| field("irc_name", rules::channel_irc_name(n)))
            .transpose()?;
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::CHANNELS_MANAGE)?;
        self.check_folder(guild_id, folder_id).await?;
        let count = self
            .list_channels_unchecked(guild_id)
            .await?
            .iter()
            .filter(|c| !c.is_thread)
            .count();
        let channel = ChannelRecord {
            id: self.ids.next_string(),
            guild_id: guild_id.to_owned(),
            folder_id: folder_id.to_owned(),
            name,
            position: i32::try_from(count).unwrap_or(i32::MAX),
            latest_message_id: String::new(),
            irc_name,
            is_thread: false,
            parent_channel_id: String::new(),
            root_message_id: String::new(),
        };
        let ch = channel.clone();
        self.events
            .write(now_ms(), move |tx| {
                db::insert_channel(tx, &ch)?;
                Ok(((), vec![channel_event(&ch, true)]))
            })
            .await?;
        Ok(channel)
    }

    async fn check_folder(&self, guild_id: &str, folder_id: &str) -> Result<()> {
        if folder_id.is_empty() {
            return Ok(());
        }
        let folders = self.folders_unchecked(guild_id).await?;
        if folders.iter().any(|f| f.id == folder_id) {
            Ok(())
        } else {
            Err(Error::invalid("folder_id", "is not a folder of this guild"))
        }
    }

    /// `UpdateChannel` (needs `channels.manage`).
    pub async fn update_channel(
        &self,
        caller: &SessionInfo,
        update: ChannelUpdate,
    ) -> Result<ChannelRecord> {
        let name = update
            .name
            .as_deref()
            .map(|n| field("name", rules::name(n, NAME_MAX)))
            .transpose()?;
        let irc_name = update
            .irc_name
            .as_deref()
            .map(|n| {
                if n.is_empty() {
                    Ok(None)
                } else {
                    field("irc_name", rules::channel_irc_name(n)).map(Some)
                }
            })
            .transpose()?;
        if update.position.is_some_and(|p| p < 0) {
            return Err(Error::invalid("position", "must not be negative"));
        }
        let (mut channel, access) = self
            .channel_access(&update.channel_id, &caller.user_id)
            .await?;
        access.require(permissions::CHANNELS_MANAGE)?;
        if let Some(folder_id) = &update.folder_id {
            self.check_folder(&channel.guild_id, folder_id).await?;
            channel.folder_id.clone_from(folder_id);
        }
        let renamed = name.filter(|n| *n != channel.name);
        if let Some(name) = &renamed {
            channel.name.clone_from(name);
        }
        if let Some(irc_name) = irc_name {
            channel.irc_name = irc_name;
        }
        if let Some(position) = update.position {
            channel.position = position;
        }
        let (ch, actor) = (channel.clone(), caller.user_id.clone());
        let (system_id, now) = (self.ids.next(), now_ms());
        self.events
            .write(now, move |tx| {
                db::update_channel(tx, &ch)?;
                let mut rows = vec![channel_event(&ch, false)];
                let Some(name) = renamed else {
                    return Ok(((), rows));
                };
                let action = system::action(system::CHANNEL_RENAMED, &actor, &ch.id, &name);
                rows.extend(system::post_in(
                    tx,
                    system::Place::Channel(&ch.id),
                    system_id,
                    now,
                    action,
                )?);
                Ok(((), rows))
            })
            .await?;
        Ok(channel)
    }

    async fn list_channels_unchecked(&self, guild_id: &str) -> Result<Vec<ChannelRecord>> {
        let id = guild_id.to_owned();
        Ok(self.store.read(move |c| db::channels(c, &id)).await?)
    }

    /// `ListChannels` (members who may read).
    pub async fn list_channels(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
    ) -> Result<Vec<ChannelRecord>> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::MESSAGES_READ)?;
        self.list_channels_unchecked(guild_id).await
    }

    /// The `user_updated` event for `user_id`'s record as stored in `tx`, to every guild they are
    /// in and to their own devices: what co-members' clients refresh a member from when an
    /// account changes outside a profile edit (a server admin deactivating or reactivating it).
    pub(crate) fn user_updated_row(
        &self,
        tx: &rusqlite::Connection,
        user_id: &str,
    ) -> std::result::Result<EventRow, StorageError> {
        let mut scopes: Vec<String> = db::guild_ids_of(tx, user_id)?
            .iter()
            .map(|g| events::guild_scope(g))
            .collect();
        scopes.push(events::user_scope(user_id));
        Ok(events::row(
            scopes,
            pb::stream_response::Event::UserUpdated(pb::UserUpdated {
                user: Some(user_proto(tx, user_id, &self.admins)?),
            }),
        ))
    }

    /// Announces `user_id`'s record as stored now ([`Self::user_updated_row`]), in a transaction
    /// of its own: for a change another module committed, such as a homeserver move, which
    /// co-members' clients show ("lives at") and use to reach the user. It runs after that
    /// change committed, so a failure here is logged and undoes nothing; a user unknown here
    /// announces nothing.
    pub async fn announce_user_updated(&self, user_id: &str) {
        let (id, guilds) = (user_id.to_owned(), self.clone());
        let written = self
            .events
            .write(now_ms(), move |tx| {
                if crate::store::accounts::load_user(tx, &id)?.is_none() {
                    return Ok(((), vec![]));
                }
                Ok(((), vec![guilds.user_updated_row(tx, &id)?]))
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "user change applied but not announced");
        }
    }

    /// The store, for sibling modules.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The event log.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The id generator, for sibling modules.
    pub(crate) fn ids(&self) -> &IdGenerator {
        &self.ids
    }

    /// The admin list, for event payloads built in sibling modules.
    pub(crate) fn admins(&self) -> Arc<Vec<String>> {
        self.admins.clone()
    }
}

/// The optional fields of `UpdateChannelRequest`.
#[derive(Debug, Clone, Default)]
pub struct ChannelUpdate {
    /// The channel.
    pub channel_id: String,
    /// New name.
    pub name: Option<String>,
    /// New folder (empty: top level).
    pub folder_id: Option<String>,
    /// New IRC name (empty: none).
    pub irc_name: Option<String>,
    /// New position.
    pub position: Option<i32>,
}

/// Validates paging: limit 1 to [`LIST_PAGE_MAX`] (0 means [`LIST_PAGE_DEFAULT`]), offset ≥ 0.
pub fn page(limit: i32, offset: i32) -> Result<(u32, u32)> {
    let limit = match u32::try_from(limit) {
        Ok(0) => LIST_PAGE_DEFAULT,
        Ok(n) if n <= LIST_PAGE_MAX => n,
        _ => {
            return Err(Error::invalid(
                "limit",
                format!("must be 0 (default {LIST_PAGE_DEFAULT}) to {LIST_PAGE_MAX}"),
            ));
        }
    };
    let offset =
        u32::try_from(offset).map_err(|_| Error::invalid("offset", "must not be negative"))?;
    Ok((limit, offset))
}

/// The `channel_created` (`created`) or `channel_updated` event for `channel` as it now stands,
/// to its guild: members' clients add or refresh it without listing the channels again.
pub(crate) fn channel_event(channel: &ChannelRecord, created: bool) -> EventRow {
    let event = pb::ChannelEvent {
        guild_id: channel.guild_id.clone(),
        channel: Some(crate::convert::channel(channel)),
    };
    events::row(
        vec![events::guild_scope(&channel.guild_id)],
        if created {
            pb::stream_response::Event::ChannelCreated(event)
        } else {
            pb::stream_response::Event::ChannelUpdated(event)
        },
    )
}

/// What `UpdateFolder` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct FolderUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new parent folder (empty: the top level).
    pub parent_folder_id: Option<String>,
    /// A new position among its siblings.
    pub position: Option<i32>,
}

/// The folder `folder_id` among a guild's `folders`, or `NOT_FOUND` naming the field.
fn find_folder(folders: &[FolderRecord], folder_id: &str) -> Result<FolderRecord> {
    folders
        .iter()
        .find(|f| f.id == folder_id)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("folder_id: no folder {folder_id:?} in this guild")))
}

/// The `folder_updated` event for `folder` as it now stands (or its deletion), to its guild.
fn folder_event(folder: &FolderRecord, deleted: bool) -> EventRow {
    events::row(
        vec![events::guild_scope(&folder.guild_id)],
        pb::stream_response::Event::FolderUpdated(pb::FolderEvent {
            guild_id: folder.guild_id.clone(),
            folder: Some(crate::convert::folder(folder)),
            deleted,
        }),
    )
}

/// The `role_updated` event for `role` as it now stands (or its deletion), to its guild.
pub(crate) fn role_event(guild_id: &str, role: pb::Role, deleted: bool) -> EventRow {
    events::row(
        vec![events::guild_scope(guild_id)],
        pb::stream_response::Event::RoleUpdated(pb::RoleEvent {
            guild_id: guild_id.to_owned(),
            role: Some(role),
            deleted,
        }),
    )
}

/// Removes `user_id` from a guild (or DM, with `is_dm`) inside the caller's transaction, with the
/// `member_removed` event a kick sends (and, for a member of another node, its homeserver told):
/// for other domains that end memberships, such as an account's deletion.
pub(crate) fn remove_member_in(
    tx: &rusqlite::Connection,
    guild_id: &str,
    is_dm: bool,
    user_id: &str,
) -> std::result::Result<Vec<EventRow>, StorageError> {
    members::remove_from(tx, guild_id, is_dm, user_id)
}

pub(crate) fn member_joined_event(
    c: &rusqlite::Connection,
    guild_id: &str,
    user_id: &str,
    admins: &[String],
) -> std::result::Result<EventRow, StorageError> {
    let user = user_proto(c, user_id, admins)?;
    let mut row = events::row(
        vec![events::guild_scope(guild_id), events::user_scope(user_id)],
        pb::stream_response::Event::MemberJoined(pb::GuildMemberJoined {
            guild_id: guild_id.to_owned(),
            user: Some(user),
        }),
    );
    row.membership = Some(MembershipMark {
        guild_id: guild_id.to_owned(),
        user_id: user_id.to_owned(),
        joined: true,
        is_dm: db::guild(c, guild_id)?.is_some_and(|g| g.is_dm),
    });
    Ok(row)
}

/// The `member_removed` event: the guild (a DM if `is_dm`) sees it, and so does the removed user.
pub(crate) fn member_removed_event(guild_id: &str, user_id: &str, is_dm: bool) -> EventRow {
    let mut row = events::row(
        vec![events::guild_scope(guild_id), events::user_scope(user_id)],
        pb::stream_response::Event::MemberRemoved(pb::GuildMemberRemoved {
            guild_id: guild_id.to_owned(),
            user_id: user_id.to_owned(),
        }),
    );
    row.membership = Some(MembershipMark {
        guild_id: guild_id.to_owned(),
        user_id: user_id.to_owned(),
        joined: false,
        is_dm,
    });
    row
}
