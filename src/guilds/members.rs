//! Members, kicks, bans and invites.

use super::permissions;
use super::system::{self, Place};
use super::{Guilds, member_joined_event, member_removed_event, page};
use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::store::guilds::{self as db, GuildRecord, InviteRecord, MemberRecord};
use crate::store::{SessionInfo, StorageError};

/// Longest kick or ban reason, in characters.
pub const REASON_MAX: usize = 512;
/// The refusal of a join by a user a trusted ban list bans from this node's guilds.
pub(super) const BLOCKED_HERE: &str =
    "you are banned from this server's guilds by a ban list it trusts";
/// Longest invite lifetime a request may ask for.
pub const MAX_INVITE_AGE_SECS: u64 = 365 * 24 * 60 * 60;
/// Most joins one invite may allow (0 means unlimited): a bound that still fits an `int32`.
pub const MAX_INVITE_USES: i32 = 1_000_000;

pub use crate::store::guilds::{MemberView, RosterRow};

/// What `PreviewInvite` shows.
#[derive(Debug, Clone)]
pub struct InvitePreview {
    /// The invite.
    pub invite: InviteRecord,
    /// Its guild.
    pub guild: GuildRecord,
    /// How many members the guild has.
    pub member_count: i64,
}

/// Why an invite can't be used now, or `None` if it can.
pub(super) fn invite_problem(invite: &InviteRecord, now: u64) -> Option<&'static str> {
    if invite.deactivated {
        Some("token: this invite was deactivated")
    } else if invite.expires_at != 0 && invite.expires_at <= now {
        Some("token: this invite has expired")
    } else if invite.max_uses > 0 && invite.uses >= invite.max_uses {
        Some("token: this invite has reached its maximum uses")
    } else {
        None
    }
}

/// Removes a member; if they were one, the `member_removed` event to log with it.
pub(super) fn remove_and_announce(
    tx: &rusqlite::Connection,
    guild_id: &str,
    user_id: &str,
) -> std::result::Result<Vec<crate::store::EventRow>, StorageError> {
    let is_dm = db::guild(tx, guild_id)?.is_some_and(|g| g.is_dm);
    remove_from(tx, guild_id, is_dm, user_id)
}

/// [`remove_and_announce`] for a caller that knows whether the guild is a DM (removing every
/// member of a guild reads the guild once, not once per member).
pub(super) fn remove_from(
    tx: &rusqlite::Connection,
    guild_id: &str,
    is_dm: bool,
    user_id: &str,
) -> std::result::Result<Vec<crate::store::EventRow>, StorageError> {
    Ok(if db::remove_member(tx, guild_id, user_id)? {
        vec![member_removed_event(guild_id, user_id, is_dm)]
    } else {
        Vec::new()
    })
}

/// A kick or ban reason: one line without control characters, at most [`REASON_MAX`] characters
/// (also the rule for a ban notice's or a moderation-list entry's from another server).
pub(crate) fn check_reason(reason: &str) -> Result<()> {
    rules::no_controls(reason, rules::Lines::Single)
        .map_err(|rule| Error::invalid("reason", rule))?;
    if reason.chars().count() > REASON_MAX {
        return Err(Error::invalid(
            "reason",
            format!("must be at most {REASON_MAX} characters"),
        ));
    }
    Ok(())
}

impl Guilds {
    /// `ListGuildMembers` (members).
    pub async fn list_members(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        limit: i32,
        offset: i32,
    ) -> Result<(Vec<MemberView>, i64)> {
        let (limit, offset) = page(limit, offset)?;
        self.access(guild_id, &caller.user_id).await?;
        let g = guild_id.to_owned();
        Ok(self
            .store()
            .read(move |c| {
                let (members, total) = db::members(c, &g, limit, offset)?;
                let views = members
                    .into_iter()
                    .map(|m| {
                        let user = crate::store::accounts::load_user(c, &m.user_id)?;
                        Ok(MemberView { member: m, user })
                    })
                    .collect::<std::result::Result<_, StorageError>>()?;
                Ok((views, total))
            })
            .await?)
    }

    /// Which of `user_ids` are members of `guild_id`, for `GetUsers` with a `guild_id`: the caller
    /// must be a member themselves (a guild's member list is for its members).
    pub async fn members_among(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_ids: Vec<String>,
    ) -> Result<Vec<String>> {
        self.access(guild_id, &caller.user_id).await?;
        let g = guild_id.to_owned();
        Ok(self
            .store()
            .read(move |c| {
                let mut members = Vec::with_capacity(user_ids.len());
                for id in user_ids {
                    if db::member(c, &g, &id)?.is_some() {
                        members.push(id);
                    }
                }
                Ok(members)
            })
            .await?)
    }

    /// One member of a guild the caller belongs to.
    pub async fn member(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_id: &str,
    ) -> Result<MemberView> {
        let access = self.access(guild_id, &caller.user_id).await?;
        self.member_of(&access, user_id).await
    }

    /// One member of the guild the caller's `access` is for (access already checked).
    pub(crate) async fn member_of(
        &self,
        access: &super::Access,
        user_id: &str,
    ) -> Result<MemberView> {
        let (g, u) = (access.guild.id.clone(), user_id.to_owned());
        let view = self
            .store()
            .read(move |c| {
                let Some(member) = db::member(c, &g, &u)? else {
                    return Ok(None);
                };
                let user = crate::store::accounts::load_user(c, &u)?;
                Ok(Some(MemberView { member, user }))
            })
            .await?;
        view.ok_or_else(|| {
            Error::NotFound(format!("user_id: {user_id} is not a member of this guild"))
        })
    }

    /// Refuses acting on the owner, on oneself, or on someone not ranked below the caller.
    async fn check_target(
        &self,
        access: &super::Access,
        guild_id: &str,
        caller: &str,
        target: &str,
    ) -> Result<Option<MemberRecord>> {
        if target == caller {
            return Err(Error::invalid("user_id", "you cannot do this to yourself"));
        }
        if target == access.guild.owner_id {
            return Err(Error::PermissionDenied(
                "user_id: the guild's owner cannot be kicked or banned".into(),
            ));
        }
        let (g, t) = (guild_id.to_owned(), target.to_owned());
        let member = self.store().read(move |c| db::member(c, &g, &t)).await?;
        if let Some(m) = &member {
            let theirs = permissions::Standing::of(guild_id, false, &m.role_ids, &access.graph);
            if !access.standing.is_owner && theirs.rank >= access.standing.rank {
                return Err(Error::PermissionDenied(
                    "user_id: their highest role is not below yours".into(),
                ));
            }
        }
        Ok(member)
    }

    /// `SetMemberNickname`: sets (non-empty `nick`, the display-name rules) or clears a member's
    /// nickname in the guild. One's own always; another member's needs `members.nicknames` and a
    /// higher rank (the owner's only the owner may change). Members get `member_updated`.
    pub async fn set_nickname(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_id: &str,
        nick: &str,
    ) -> Result<MemberView> {
        let target = if user_id.is_empty() {
            caller.user_id.as_str()
        } else {
            PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
            user_id
        };
        let nick = if nick.is_empty() {
            None
        } else {
            Some(rules::display_name(nick).map_err(|rule| Error::invalid("nick", rule))?)
        };
        let access = self.access(guild_id, &caller.user_id).await?;
        if access.guild.is_dm {
            return Err(Error::FailedPrecondition(
                "guild_id: a DM has no nicknames".into(),
            ));
        }
        if target != caller.user_id {
            access.require(permissions::MEMBERS_NICKNAMES)?;
            let member = self.member_of(&access, target).await?;
            if target == access.guild.owner_id {
                return Err(Error::PermissionDenied(
                    "user_id: only the guild's owner may change the owner's nickname".into(),
                ));
            }
            let theirs =
                permissions::Standing::of(guild_id, false, &member.member.role_ids, &access.graph);
            if !access.standing.is_owner && theirs.rank >= access.standing.rank {
                return Err(Error::PermissionDenied(
                    "user_id: their highest role is not below yours".into(),
                ));
            }
        }
        let (g, u, admins) = (guild_id.to_owned(), target.to_owned(), self.admins());
        self.events()
            .write(now_ms(), move |tx| {
                if !db::set_nick(tx, &g, &u, nick.as_deref())? {
                    let refusal =
                        Error::NotFound(format!("user_id: {u} is not a member of this guild"));
                    return Ok((Err(refusal), vec![]));
                }
                let member = db::member(tx, &g, &u)?
                    .ok_or_else(|| StorageError::Task("member vanished".into()))?;
                let view = MemberView {
                    member,
                    user: crate::store::accounts::load_user(tx, &u)?,
                };
                let summary =
                    crate::convert::member(&view, &|id: &str| admins.iter().any(|a| a == id));
                let event = crate::events::row(
                    vec![crate::events::guild_scope(&g)],
                    crate::proto::guildhall::v1::stream_response::Event::MemberUpdated(
                        crate::proto::guildhall::v1::GuildMemberUpdated {
                            guild_id: g.clone(),
                            member: Some(summary),
                        },
                    ),
                );
                Ok((Ok(view), vec![event]))
            })
            .await?
    }

    /// `KickUser`: removes a member (needs `members.kick` and a higher rank).
    pub async fn kick(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_id: &str,
        reason: &str,
    ) -> Result<()> {
        check_reason(reason)?;
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::MEMBERS_KICK)?;
        if self
            .check_target(&access, guild_id, &caller.user_id, user_id)
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!(
                "user_id: {user_id} is not a member of this guild"
            )));
        }
        let (g, u) = (guild_id.to_owned(), user_id.to_owned());
        self.events()
            .write(now_ms(), move |tx| {
                Ok(((), remove_and_announce(tx, &g, &u)?))
            })
            .await?;
        tracing::info!(guild = guild_id, user = user_id, reason, "kicked");
        Ok(())
    }

    /// `BanUser`: bans a user (member or not) and removes them if they are a member. Banned users
    /// can't rejoin through any invite.
    ///
    /// `within` runs inside the ban's transaction before the user leaves the guild's members
    /// (with the time of the ban): the host stores its signed `BanNotification` there, queues its
    /// deliveries and appends the gossiped event, so all of it commits with the ban or not at
    /// all. Answers what `within` returned.
    pub async fn ban<T, F>(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_id: &str,
        reason: &str,
        within: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, u64) -> std::result::Result<T, StorageError>
            + Send
            + 'static,
    {
        check_reason(reason)?;
        PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::MEMBERS_BAN)?;
        self.check_target(&access, guild_id, &caller.user_id, user_id)
            .await?;
        let now = now_ms();
        let (g, u, r, by) = (
            guild_id.to_owned(),
            user_id.to_owned(),
            reason.to_owned(),
            caller.user_id.clone(),
        );
        let value = self
            .events()
            .write(now, move |tx| {
                db::insert_ban(tx, &g, &u, &r, &by, now)?;
                let value = within(tx, now)?;
                Ok((value, remove_and_announce(tx, &g, &u)?))
            })
            .await?;
        tracing::info!(guild = guild_id, user = user_id, reason, "banned");
        Ok(value)
    }

    /// Whether this node hosts a guild with this id.
    pub async fn guild_exists(&self, guild_id: &str) -> Result<bool> {
        let id = guild_id.to_owned();
        Ok(self
            .store()
            .read(move |c| db::guild(c, &id))
            .await?
            .is_some())
    }

    /// `GenerateInvite` (needs `invites.create`). An invite that lets people new to the node
    /// register whatever its registration policy (`allow_registration`) is a server admin's
    /// decision, not a guild's: anyone else is refused, so a guild owner can't open a node that
    /// its operator closed.
    pub async fn generate_invite(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        max_age_secs: Option<u64>,
        max_uses: Option<i32>,
        allow_registration: bool,
    ) -> Result<InviteRecord> {
        if allow_registration && !self.is_admin(&caller.user_id) {
            return Err(Error::PermissionDenied(
                "allow_registration: only server admins may make invites that register new \
                 accounts"
                    .into(),
            ));
        }
        if max_age_secs.is_some_and(|s| s > MAX_INVITE_AGE_SECS) {
            return Err(Error::invalid(
                "max_age_secs",
                format!("must be at most {MAX_INVITE_AGE_SECS} (one year); 0 means never"),
            ));
        }
        let max_uses = max_uses.unwrap_or(0);
        if !(0..=MAX_INVITE_USES).contains(&max_uses) {
            return Err(Error::invalid(
                "max_uses",
                format!("must be 0 (unlimited) to {MAX_INVITE_USES}"),
            ));
        }
        let (channel, access) = self.channel_access(channel_id, &caller.user_id).await?;
        access.require(permissions::INVITES_CREATE)?;
        let now = now_ms();
        let expires_at = match max_age_secs {
            None => now + super::DEFAULT_INVITE_AGE_MS,
            Some(0) => 0,
            Some(s) => now + s * 1000,
        };
        let invite = InviteRecord {
            token: crate::accounts::tokens::generate()[..16].to_owned(),
            guild_id: channel.guild_id.clone(),
            channel_id: channel.id.clone(),
            channel_name: channel.name.clone(),
            created_by: caller.user_id.clone(),
            created_at: now,
            updated_at: now,
            expires_at,
            max_uses,
            uses: 0,
            deactivated: false,
            allows_registration: allow_registration,
        };
        let i = invite.clone();
        self.store()
            .write(move |tx| db::insert_invite(tx, &i))
            .await?;
        Ok(invite)
    }

    async fn load_invite(&self, token: &str) -> Result<InviteRecord> {
        if token.is_empty() {
            return Err(Error::invalid("token", "is required"));
        }
        let t = token.to_owned();
        self.store()
            .read(move |c| db::invite(c, &t))
            .await?
            .ok_or_else(|| Error::NotFound("token: no such invite".into()))
    }

    /// Whether an invite lets people new to the node register by joining with it (`NOT_FOUND`
    /// for an unknown token, as a join would answer).
    pub async fn invite_allows_registration(&self, token: &str) -> Result<bool> {
        Ok(self.load_invite(token).await?.allows_registration)
    }

    /// `PreviewInvite`: public; only usable invites are shown.
    pub async fn preview_invite(&self, token: &str) -> Result<InvitePreview> {
        let invite = self.load_invite(token).await?;
        if let Some(problem) = invite_problem(&invite, now_ms()) {
            return Err(Error::FailedPrecondition(problem.into()));
        }
        let g = invite.guild_id.clone();
        let (guild, member_count) = self
            .store()
            .read(move |c| Ok((db::guild(c, &g)?, db::member_count(c, &g)?)))
            .await?;
        let guild =
            guild.ok_or_else(|| Error::NotFound("token: the invite's guild is gone".into()))?;
        Ok(InvitePreview {
            invite,
            guild,
            member_count,
        })
    }

    /// `ListInvites` (needs `invites.manage`).
    pub async fn list_invites(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
    ) -> Result<Vec<InviteRecord>> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::INVITES_MANAGE)?;
        let g = guild_id.to_owned();
        Ok(self.store().read(move |c| db::invites(c, &g)).await?)
    }

    /// `DeactivateInvite` (needs `invites.manage`).
    pub async fn deactivate_invite(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        token: &str,
    ) -> Result<()> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::INVITES_MANAGE)?;
        let (g, t) = (guild_id.to_owned(), token.to_owned());
        if self
            .store()
            .write(move |tx| db::deactivate_invite(tx, &g, &t, now_ms()))
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(
                "token: no such invite in this guild".into(),
            ))
        }
    }

    /// Adds a verified user to an invite's guild. Joining a guild one is already in changes
    /// nothing and uses nothing. Checks run again inside the transaction, so two joins racing for
    /// an invite's last use can't both win.
    pub async fn join(&self, user_id: &str, token: &str) -> Result<GuildRecord> {
        self.join_with(user_id, token, |_| Ok(()))
            .await
            .map(|(guild, ())| guild)
    }

    /// [`Guilds::join`], running `first` inside the same transaction before the membership
    /// change (a sign-in for `JoinInvite`), so both commit or neither does.
    pub async fn join_with<T, F>(
        &self,
        user_id: &str,
        token: &str,
        first: F,
    ) -> Result<(GuildRecord, T)>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> std::result::Result<T, StorageError> + Send + 'static,
    {
        if token.is_empty() {
            return Err(Error::invalid("token", "is required"));
        }
        let now = now_ms();
        let system_id = self.ids().next();
        let (t, u, admins) = (token.to_owned(), user_id.to_owned(), self.admins());
        let (guild, value, joined) = self
            .events()
            .write(now, move |tx| {
                let Some(invite) = db::invite(tx, &t)? else {
                    return Ok((Err(Error::NotFound("token: no such invite".into())), vec![]));
                };
                if db::is_banned(tx, &invite.guild_id, &u)? {
                    return Ok((
                        Err(Error::PermissionDenied(
                            "you are banned from this guild".into(),
                        )),
                        vec![],
                    ));
                }
                if crate::store::bans::blocked_here(tx, &u)? {
                    return Ok((Err(Error::PermissionDenied(BLOCKED_HERE.into())), vec![]));
                }
                let Some(guild) = db::guild(tx, &invite.guild_id)? else {
                    return Ok((
                        Err(Error::NotFound("token: the invite's guild is gone".into())),
                        vec![],
                    ));
                };
                let already = db::member(tx, &guild.id, &u)?.is_some();
                if !already && let Some(problem) = invite_problem(&invite, now) {
                    return Ok((Err(Error::FailedPrecondition(problem.into())), vec![]));
                }
                // A DM's invite admits only the user it was made for.
                if !already && guild.is_dm && !crate::store::dm_remote::admits(tx, &t, &u)? {
                    return Ok((
                        Err(Error::PermissionDenied(
                            "token: this DM invite is for another user".into(),
                        )),
                        vec![],
                    ));
                }
                let value = first(tx)?;
                if already {
                    return Ok((Ok((guild, value, false)), vec![]));
                }
                db::use_invite(tx, &t, now)?;
                db::add_member(tx, &guild.id, &u, now)?;
                if guild.is_dm {
                    crate::store::dm_remote::mark_joined(tx, &t, &u, now)?;
                }
                let mut rows = vec![member_joined_event(tx, &guild.id, &u, &admins)?];
                let joined = system::action(system::MEMBER_JOINED, &u, &u, "");
                rows.extend(system::post_in(
                    tx,
                    Place::Guild(&guild.id),
                    system_id,
                    now,
                    joined,
                )?);
                Ok((Ok((guild, value, true)), rows))
            })
            .await??;
        if joined {
            tracing::info!(guild = %guild.id, user = user_id, dm = guild.is_dm, "joined a guild");
        }
        Ok((guild, value))
    }
}

impl Guilds {
    /// Makes `user_id` a member of `guild_id` without an invite: the operator's default IRC
    /// guild takes in the accounts made from IRC, which have no client to open an invite with
    /// (docs/IRC.md). Guild bans and trusted ban lists hold as for any join; members and the
    /// guild hear of it as of any join.
    pub async fn admit(&self, guild_id: &str, user_id: &str) -> Result<()> {
        let now = now_ms();
        let system_id = self.ids().next();
        let (g, u, admins) = (guild_id.to_owned(), user_id.to_owned(), self.admins());
        self.events()
            .write(now, move |tx| {
                let Some(guild) = db::guild(tx, &g)? else {
                    return Ok((
                        Err(Error::NotFound(format!("guild_id: no guild {g:?}"))),
                        vec![],
                    ));
                };
                if guild.is_dm {
                    return Ok((Err(Error::invalid("guild_id", "is a DM")), vec![]));
                }
                if db::is_banned(tx, &g, &u)? || crate::store::bans::blocked_here(tx, &u)? {
                    return Ok((
                        Err(Error::PermissionDenied(
                            "you are banned from this guild".into(),
                        )),
                        vec![],
                    ));
                }
                if !db::add_member(tx, &g, &u, now)? {
                    return Ok((Ok(()), vec![]));
                }
                let mut rows = vec![member_joined_event(tx, &g, &u, &admins)?];
                let joined = system::action(system::MEMBER_JOINED, &u, &u, "");
                rows.extend(system::post_in(
                    tx,
                    Place::Guild(&g),
                    system_id,
                    now,
                    joined,
                )?);
                Ok((Ok(()), rows))
            })
            .await?
    }

    /// The first `limit` members of a guild with each one's standing (owner, permissions), for
    /// adapters that show ranks beside names (the IRC gateway's status prefixes). Two reads:
    /// the guild with its roles, then the members with theirs.
    pub async fn roster(
        &self,
        guild_id: &str,
        limit: u32,
    ) -> Result<Vec<(RosterRow, permissions::Standing)>> {
        let guild = guild_id.to_owned();
        let (record, roles, rows) = self
            .store
            .read(move |c| {
                Ok((
                    db::guild(c, &guild)?,
                    db::roles(c, &guild)?,
                    db::roster(c, &guild, limit)?,
                ))
            })
            .await?;
        let Some(record) = record else {
            return Err(Error::NotFound(format!(
                "guild_id: no guild {guild_id:?} on this server"
            )));
        };
        let graph = permissions::RoleGraph::new(roles.iter().map(|r| {
            (
                r.id.clone(),
                permissions::RoleNode {
                    position: r.position,
                    permissions: r.permissions.clone(),
                    parents: r.parent_role_ids.clone(),
                },
            )
        }));
        Ok(rows
            .into_iter()
            .map(|row| {
                let is_owner = row.user_id == record.owner_id && !record.is_dm;
                let standing =
                    permissions::Standing::of(&record.id, is_owner, &row.role_ids, &graph);
                (row, standing)
            })
            .collect())
    }

    /// The users banned from a guild, newest first (at most `limit`), for members who may ban:
    /// (user id, banned by, when in ms).
    pub async fn bans(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        limit: u32,
    ) -> Result<Vec<(String, String, u64)>> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::MEMBERS_BAN)?;
        let guild = guild_id.to_owned();
        Ok(self.store.read(move |c| db::bans(c, &guild, limit)).await?)
    }
}
