//! Direct messages between users of this node.
//!
//! A DM is a guild with `is_dm`: its owner is the user who started it, its default role lets
//! members read and send but not invite, and it has one channel. `CreateDM` makes the guild and a
//! DM invite for the other user, who sees it in `ListDMInvites` and accepts (and so joins) or
//! rejects it. Asking again for a DM with someone returns the existing one. A user of another
//! server gets the same DM and invite here; the inviter's client then signs the invite and sends it
//! to the target's homeserver with `SendDMInvite` (see [`crate::dm_invites`]).

use crate::error::{Error, Result};
use crate::guilds::{Guilds, member_joined_event, permissions};
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::store::dms::{self as db, DmInviteRecord};
use crate::store::guilds::{self as gdb, ChannelRecord, GuildRecord, RoleRecord};
use crate::store::{SessionInfo, StorageError, accounts};

/// What a member of a DM may do.
const DM_PERMISSIONS: &[&str] = &[
    permissions::MESSAGES_READ,
    permissions::MESSAGES_SEND,
    permissions::THREADS_CREATE,
];

/// How long a DM invite's token admits its target with `JoinInvite`: 30 days.
pub const DM_INVITE_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// A DM invite with its guild's name.
#[derive(Debug, Clone)]
pub struct DmInviteView {
    /// The invite.
    pub invite: DmInviteRecord,
    /// The DM guild's name.
    pub guild_name: String,
}

/// The DM operations of one node.
#[derive(Debug, Clone)]
pub struct Dms {
    guilds: Guilds,
    canonical_address: String,
}

impl Dms {
    /// DMs over the guild machinery; `canonical_address` is where they live.
    pub fn new(guilds: Guilds, canonical_address: String) -> Self {
        Self {
            guilds,
            canonical_address,
        }
    }

    /// Where the DMs this node starts live (its canonical address).
    pub fn address(&self) -> &str {
        &self.canonical_address
    }

    /// `CreateDM`: the DM guild and an invite for `target_user_id`; an existing pending or accepted
    /// DM between the two is returned instead of a new one.
    pub async fn create(
        &self,
        caller: &SessionInfo,
        target_user_id: &str,
    ) -> Result<(GuildRecord, DmInviteRecord)> {
        PublicKey::from_hex(target_user_id).map_err(|e| Error::invalid("target_user_id", e))?;
        if target_user_id == caller.user_id {
            return Err(Error::invalid(
                "target_user_id",
                "you cannot start a DM with yourself",
            ));
        }
        let (me, them) = (caller.user_id.clone(), target_user_id.to_owned());
        let store = self.guilds.store().clone();
        let (names, existing, blocked) = store
            .read(move |c| {
                let mine = accounts::load_user(c, &me)?.map(|u| u.display_name);
                let theirs = accounts::load_user(c, &them)?.map(|u| u.display_name);
                let existing = match db::between(c, &me, &them)? {
                    Some(i) => gdb::guild(c, &i.guild_id)?.map(|g| (g, i)),
                    None => None,
                };
                let blocked = crate::store::people::blocked_either(c, &me, &them)?;
                Ok(((mine, theirs), existing, blocked))
            })
            .await?;
        if blocked {
            return Err(Error::FailedPrecondition(
                "target_user_id: one of you blocked the other; no DM can be started".into(),
            ));
        }
        if let Some(found) = existing {
            return Ok(found);
        }
        let (Some(my_name), their_name) = names else {
            return Err(Error::NotFound(
                "your user record is missing on this server".into(),
            ));
        };
        // A user of another server is named by the start of their id until they join.
        let their_name = their_name.unwrap_or_else(|| target_user_id[..8].to_owned());
        let now = now_ms();
        let ids = self.guilds.ids();
        let name: String = format!("{my_name} & {their_name}")
            .chars()
            .take(crate::guilds::NAME_MAX)
            .collect();
        let guild = GuildRecord {
            id: ids.next_string(),
            name,
            owner_id: caller.user_id.clone(),
            avatar_url: String::new(),
            is_dm: true,
            latest_message_id: String::new(),
            created_at: now,
        };
        let role = RoleRecord {
            id: guild.id.clone(),
            guild_id: guild.id.clone(),
            name: "@everyone".into(),
            color: String::new(),
            position: 0,
            permissions: DM_PERMISSIONS.iter().map(|p| (*p).to_owned()).collect(),
            parent_role_ids: Vec::new(),
        };
        let channel = ChannelRecord {
            id: ids.next_string(),
            guild_id: guild.id.clone(),
            folder_id: String::new(),
            name: "dm".into(),
            position: 0,
            latest_message_id: String::new(),
            irc_name: None,
            is_thread: false,
            parent_channel_id: String::new(),
            root_message_id: String::new(),
        };
        let invite = DmInviteRecord {
            invite_id: ids.next_string(),
            token: crate::accounts::tokens::generate()[..16].to_owned(),
            inviter_id: caller.user_id.clone(),
            target_user_id: target_user_id.to_owned(),
            guild_id: guild.id.clone(),
            host_server_url: self.canonical_address.clone(),
            status: "pending".into(),
            created_at: now,
        };
        // The token is also a single-use guild invite, so the target can join with `JoinInvite`
        // on this node from any homeserver; only the target may use it (see `Guilds::join_with`).
        let join = crate::store::guilds::InviteRecord {
            token: invite.token.clone(),
            guild_id: guild.id.clone(),
            channel_id: channel.id.clone(),
            channel_name: channel.name.clone(),
            created_by: caller.user_id.clone(),
            created_at: now,
            updated_at: now,
            expires_at: now.saturating_add(DM_INVITE_TTL_MS),
            max_uses: 1,
            uses: 0,
            deactivated: false,
            allows_registration: false,
        };
        let (g, i, admins) = (guild.clone(), invite.clone(), self.guilds.admins());
        self.guilds
            .events()
            .write(now, move |tx| {
                gdb::insert_guild(tx, &g)?;
                gdb::insert_role(tx, &role)?;
                gdb::insert_channel(tx, &channel)?;
                gdb::add_member(tx, &g.id, &g.owner_id, now)?;
                db::insert(tx, &i)?;
                gdb::insert_invite(tx, &join)?;
                Ok((
                    (),
                    vec![member_joined_event(tx, &g.id, &g.owner_id, &admins)?],
                ))
            })
            .await?;
        Ok((guild, invite))
    }

    /// `ListDMInvites`: the caller's pending invites.
    pub async fn pending(&self, caller: &SessionInfo) -> Result<Vec<DmInviteView>> {
        let me = caller.user_id.clone();
        Ok(self
            .guilds
            .store()
            .read(move |c| {
                db::pending_for(c, &me)?
                    .into_iter()
                    .map(|invite| {
                        let guild_name = gdb::guild(c, &invite.guild_id)?
                            .map(|g| g.name)
                            .unwrap_or_default();
                        Ok(DmInviteView { invite, guild_name })
                    })
                    .collect::<std::result::Result<_, StorageError>>()
            })
            .await?)
    }

    async fn own_pending(&self, caller: &SessionInfo, invite_id: &str) -> Result<DmInviteRecord> {
        if invite_id.is_empty() {
            return Err(Error::invalid("invite_id", "is required"));
        }
        let id = invite_id.to_owned();
        let invite = self.guilds.store().read(move |c| db::get(c, &id)).await?;
        match invite {
            Some(i) if i.target_user_id == caller.user_id => {
                if i.status == "pending" {
                    Ok(i)
                } else {
                    Err(Error::FailedPrecondition(format!(
                        "invite_id: this invite was already {}",
                        i.status
                    )))
                }
            }
            _ => Err(Error::NotFound("invite_id: no such invite for you".into())),
        }
    }

    /// `AcceptDMInvite`: joins the DM (it lives on this node) and says where it is.
    pub async fn accept(&self, caller: &SessionInfo, invite_id: &str) -> Result<DmInviteRecord> {
        let invite = self.own_pending(caller, invite_id).await?;
        let (i, me, admins, now) = (
            invite.clone(),
            caller.user_id.clone(),
            self.guilds.admins(),
            now_ms(),
        );
        self.guilds
            .events()
            .write(now, move |tx| {
                if !db::resolve(tx, &i.invite_id, "accepted", now)? {
                    return Err(StorageError::Conflict(
                        "invite_id: this invite was already answered".into(),
                    ));
                }
                let events = if gdb::add_member(tx, &i.guild_id, &me, now)? {
                    vec![member_joined_event(tx, &i.guild_id, &me, &admins)?]
                } else {
                    vec![]
                };
                Ok(((), events))
            })
            .await?;
        Ok(invite)
    }

    /// `RejectDMInvite`.
    pub async fn reject(&self, caller: &SessionInfo, invite_id: &str) -> Result<()> {
        let invite = self.own_pending(caller, invite_id).await?;
        let now = now_ms();
        self.guilds
            .store()
            .write(move |tx| db::resolve(tx, &invite.invite_id, "rejected", now))
            .await?;
        Ok(())
    }
}
