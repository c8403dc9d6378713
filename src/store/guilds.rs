//! Guilds, folders, channels, roles, members, bans and invites.
//!
//! These are synchronous functions over a connection, so a domain write can combine several in
//! one transaction (through `Events::write`) and reads can run on a reader through `Store::read`.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StorageError, from_sql_int, to_sql_int};

/// A guild (or DM, with `is_dm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildRecord {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner's user id.
    pub owner_id: String,
    /// Avatar URL or empty.
    pub avatar_url: String,
    /// Whether this is a DM.
    pub is_dm: bool,
    /// Newest message id in any of its channels, or empty.
    pub latest_message_id: String,
    /// Creation time (ms).
    pub created_at: u64,
}

/// A folder of channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRecord {
    /// Id.
    pub id: String,
    /// Guild.
    pub guild_id: String,
    /// Parent folder, or empty for the top level.
    pub parent_folder_id: String,
    /// Name.
    pub name: String,
    /// Order among siblings.
    pub position: i32,
}

/// A channel or thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Id.
    pub id: String,
    /// Guild.
    pub guild_id: String,
    /// Folder, or empty.
    pub folder_id: String,
    /// Name.
    pub name: String,
    /// Order.
    pub position: i32,
    /// Newest message id, or empty.
    pub latest_message_id: String,
    /// IRC-style name, unique per guild.
    pub irc_name: Option<String>,
    /// Whether this is a thread.
    pub is_thread: bool,
    /// For threads: the channel it branches from.
    pub parent_channel_id: String,
    /// For threads: the message it starts from.
    pub root_message_id: String,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// Id (the guild's id for its default role).
    pub id: String,
    /// Guild.
    pub guild_id: String,
    /// Name.
    pub name: String,
    /// Colour, e.g. `#ff8800`, or empty.
    pub color: String,
    /// Rank.
    pub position: i32,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// Inherited roles.
    pub parent_role_ids: Vec<String>,
}

/// A member of a guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// User id.
    pub user_id: String,
    /// When they joined (ms).
    pub joined_at: u64,
    /// Roles assigned (the default role is implicit and not listed).
    pub role_ids: Vec<String>,
    /// The member's nickname in this guild, if they (or a moderator) set one.
    pub nick: Option<String>,
}

/// A member with their user record (if the user is known here): what member lists and profiles
/// show, and what `convert` turns into a `GuildMember`.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// Membership.
    pub member: MemberRecord,
    /// The user.
    pub user: Option<super::UserRecord>,
}

/// An invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    /// The token.
    pub token: String,
    /// Guild.
    pub guild_id: String,
    /// Channel it lands in.
    pub channel_id: String,
    /// That channel's name (read with the invite).
    pub channel_name: String,
    /// Creator.
    pub created_by: String,
    /// Created (ms).
    pub created_at: u64,
    /// Last changed (ms).
    pub updated_at: u64,
    /// Expiry (ms), 0 for never.
    pub expires_at: u64,
    /// Most uses, 0 for unlimited.
    pub max_uses: i32,
    /// Uses so far.
    pub uses: i32,
    /// Whether deactivated.
    pub deactivated: bool,
    /// Whether people new to the node may register by joining with it (an admin's invite).
    pub allows_registration: bool,
}

/// A guild with its member and channel counts, for server admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildStats {
    /// The guild.
    pub guild: GuildRecord,
    /// Members.
    pub members: i64,
    /// Channels and threads.
    pub channels: i64,
    /// Messages.
    pub messages: i64,
}

/// Everything an authorisation decision in one guild needs.
#[derive(Debug, Clone)]
pub struct GuildContext {
    /// The guild.
    pub guild: GuildRecord,
    /// All its roles.
    pub roles: Vec<RoleRecord>,
    /// The caller's membership, if any.
    pub member: Option<MemberRecord>,
}

fn json_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

const GUILD_COLUMNS: &str = "id, name, owner_id, avatar_url, is_dm, latest_message_id, created_at";

fn guild_row(r: &Row<'_>) -> rusqlite::Result<GuildRecord> {
    Ok(GuildRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        owner_id: r.get(2)?,
        avatar_url: r.get(3)?,
        is_dm: r.get(4)?,
        latest_message_id: r.get(5)?,
        created_at: from_sql_int(r.get(6)?),
    })
}

const CHANNEL_COLUMNS: &str = "id, guild_id, folder_id, name, position, latest_message_id, irc_name, \
     is_thread, parent_channel_id, root_message_id";

fn channel_row(r: &Row<'_>) -> rusqlite::Result<ChannelRecord> {
    Ok(ChannelRecord {
        id: r.get(0)?,
        guild_id: r.get(1)?,
        folder_id: r.get(2)?,
        name: r.get(3)?,
        position: r.get(4)?,
        latest_message_id: r.get(5)?,
        irc_name: r.get(6)?,
        is_thread: r.get(7)?,
        parent_channel_id: r.get(8)?,
        root_message_id: r.get(9)?,
    })
}

fn role_row(r: &Row<'_>) -> rusqlite::Result<RoleRecord> {
    Ok(RoleRecord {
        id: r.get(0)?,
        guild_id: r.get(1)?,
        name: r.get(2)?,
        color: r.get(3)?,
        position: r.get(4)?,
        permissions: json_list(r.get(5)?),
        parent_role_ids: json_list(r.get(6)?),
    })
}

const INVITE_COLUMNS: &str = "i.token, i.guild_id, i.channel_id, c.name, i.created_by, i.created_at, \
     i.updated_at, i.expires_at, i.max_uses, i.uses, i.deactivated, i.allow_registration";

fn invite_row(r: &Row<'_>) -> rusqlite::Result<InviteRecord> {
    Ok(InviteRecord {
        token: r.get(0)?,
        guild_id: r.get(1)?,
        channel_id: r.get(2)?,
        channel_name: r.get(3)?,
        created_by: r.get(4)?,
        created_at: from_sql_int(r.get(5)?),
        updated_at: from_sql_int(r.get(6)?),
        expires_at: from_sql_int(r.get(7)?),
        max_uses: r.get(8)?,
        uses: r.get(9)?,
        deactivated: r.get(10)?,
        allows_registration: r.get(11)?,
    })
}

/// Inserts a guild.
pub fn insert_guild(c: &Connection, g: &GuildRecord) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO guilds (id, name, owner_id, avatar_url, is_dm, latest_message_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            g.id,
            g.name,
            g.owner_id,
            g.avatar_url,
            g.is_dm,
            g.latest_message_id,
            to_sql_int(g.created_at)
        ],
    )?;
    Ok(())
}

/// A guild by id.
pub fn guild(c: &Connection, id: &str) -> Result<Option<GuildRecord>, StorageError> {
    let sql = format!("SELECT {GUILD_COLUMNS} FROM guilds WHERE id = ?1");
    Ok(c.query_row(&sql, [id], guild_row).optional()?)
}

/// Renames a guild and/or changes its avatar.
pub fn update_guild(
    c: &Connection,
    id: &str,
    name: Option<&str>,
    avatar_url: Option<&str>,
) -> Result<(), StorageError> {
    c.execute(
        "UPDATE guilds SET name = coalesce(?2, name), avatar_url = coalesce(?3, avatar_url) WHERE id = ?1",
        params![id, name, avatar_url],
    )?;
    Ok(())
}

/// Makes `user_id` the guild's owner.
pub fn set_owner(c: &Connection, guild_id: &str, user_id: &str) -> Result<(), StorageError> {
    c.execute(
        "UPDATE guilds SET owner_id = ?2 WHERE id = ?1",
        params![guild_id, user_id],
    )?;
    Ok(())
}

/// The guilds a user is a member of, oldest membership first.
pub fn guilds_of(c: &Connection, user_id: &str) -> Result<Vec<GuildRecord>, StorageError> {
    let sql = format!(
        "SELECT {} FROM guilds g JOIN members m ON m.guild_id = g.id WHERE m.user_id = ?1
         ORDER BY m.joined_at, g.id",
        GUILD_COLUMNS
            .split(", ")
            .map(|c| format!("g.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([user_id], guild_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of the guilds a user is a member of.
pub fn guild_ids_of(c: &Connection, user_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare_cached("SELECT guild_id FROM members WHERE user_id = ?1")?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every guild on this node with member and channel counts, newest first, paged.
pub fn all_guilds(
    c: &Connection,
    limit: u32,
    offset: u32,
) -> Result<(Vec<GuildStats>, i64), StorageError> {
    let total: i64 = c.query_row("SELECT count(*) FROM guilds WHERE is_dm = 0", [], |r| {
        r.get(0)
    })?;
    let sql = format!(
        "SELECT {GUILD_COLUMNS},
            (SELECT count(*) FROM members m WHERE m.guild_id = guilds.id),
            (SELECT count(*) FROM channels ch WHERE ch.guild_id = guilds.id),
            (SELECT count(*) FROM messages ms WHERE ms.guild_id = guilds.id)
         FROM guilds WHERE is_dm = 0 ORDER BY created_at DESC, id LIMIT ?1 OFFSET ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![limit, offset], |r| {
        Ok(GuildStats {
            guild: guild_row(r)?,
            members: r.get(7)?,
            channels: r.get(8)?,
            messages: r.get(9)?,
        })
    })?;
    Ok((rows.collect::<Result<_, _>>()?, total))
}

/// Inserts a folder.
pub fn insert_folder(c: &Connection, f: &FolderRecord) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO folders (id, guild_id, parent_folder_id, name, position) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![f.id, f.guild_id, f.parent_folder_id, f.name, f.position],
    )?;
    Ok(())
}

/// Writes a folder's name, parent and position.
pub fn update_folder(c: &Connection, f: &FolderRecord) -> Result<(), StorageError> {
    c.execute(
        "UPDATE folders SET parent_folder_id = ?2, name = ?3, position = ?4 WHERE id = ?1",
        params![f.id, f.parent_folder_id, f.name, f.position],
    )?;
    Ok(())
}

/// Deletes a folder, moving its channels and folders up to its parent; returns the channels and
/// folders that moved, as they now stand.
pub fn delete_folder(
    c: &Connection,
    folder: &FolderRecord,
) -> Result<(Vec<ChannelRecord>, Vec<FolderRecord>), StorageError> {
    let (guild, id, parent) = (&folder.guild_id, &folder.id, &folder.parent_folder_id);
    let moved_channels: Vec<String> = c
        .prepare_cached("SELECT id FROM channels WHERE guild_id = ?1 AND folder_id = ?2")?
        .query_map(params![guild, id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let moved_folders: Vec<String> = c
        .prepare_cached("SELECT id FROM folders WHERE guild_id = ?1 AND parent_folder_id = ?2")?
        .query_map(params![guild, id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    c.execute(
        "UPDATE channels SET folder_id = ?3 WHERE guild_id = ?1 AND folder_id = ?2",
        params![guild, id, parent],
    )?;
    c.execute(
        "UPDATE folders SET parent_folder_id = ?3 WHERE guild_id = ?1 AND parent_folder_id = ?2",
        params![guild, id, parent],
    )?;
    c.execute("DELETE FROM folders WHERE id = ?1", [id])?;
    let mut channels_now = Vec::with_capacity(moved_channels.len());
    for channel_id in &moved_channels {
        if let Some(ch) = channel(c, channel_id)? {
            channels_now.push(ch);
        }
    }
    let folders_now = folders(c, guild)?
        .into_iter()
        .filter(|f| moved_folders.contains(&f.id))
        .collect();
    Ok((channels_now, folders_now))
}

/// A guild's folders in order.
pub fn folders(c: &Connection, guild_id: &str) -> Result<Vec<FolderRecord>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, guild_id, parent_folder_id, name, position FROM folders WHERE guild_id = ?1
         ORDER BY position, id",
    )?;
    let rows = stmt.query_map([guild_id], |r| {
        Ok(FolderRecord {
            id: r.get(0)?,
            guild_id: r.get(1)?,
            parent_folder_id: r.get(2)?,
            name: r.get(3)?,
            position: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts a channel; a taken `irc_name` is a conflict.
pub fn insert_channel(c: &Connection, ch: &ChannelRecord) -> Result<(), StorageError> {
    irc_name_free(c, &ch.guild_id, ch.irc_name.as_deref(), &ch.id)?;
    c.execute(
        "INSERT INTO channels (id, guild_id, folder_id, name, position, latest_message_id, irc_name,
                               is_thread, parent_channel_id, root_message_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            ch.id, ch.guild_id, ch.folder_id, ch.name, ch.position, ch.latest_message_id,
            ch.irc_name, ch.is_thread, ch.parent_channel_id, ch.root_message_id
        ],
    )?;
    Ok(())
}

fn irc_name_free(
    c: &Connection,
    guild_id: &str,
    irc_name: Option<&str>,
    except: &str,
) -> Result<(), StorageError> {
    if let Some(name) = irc_name {
        let taken: Option<String> = c
            .query_row(
                "SELECT id FROM channels WHERE guild_id = ?1 AND irc_name = ?2 AND id != ?3",
                params![guild_id, name, except],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(StorageError::Conflict(
                "irc_name: already used by another channel in this guild".into(),
            ));
        }
    }
    Ok(())
}

/// Writes a channel's editable fields.
pub fn update_channel(c: &Connection, ch: &ChannelRecord) -> Result<(), StorageError> {
    irc_name_free(c, &ch.guild_id, ch.irc_name.as_deref(), &ch.id)?;
    c.execute(
        "UPDATE channels SET name = ?2, folder_id = ?3, irc_name = ?4, position = ?5 WHERE id = ?1",
        params![ch.id, ch.name, ch.folder_id, ch.irc_name, ch.position],
    )?;
    Ok(())
}

/// A channel by id.
pub fn channel(c: &Connection, id: &str) -> Result<Option<ChannelRecord>, StorageError> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ?1");
    Ok(c.query_row(&sql, [id], channel_row).optional()?)
}

/// A guild's channels and threads in order.
pub fn channels(c: &Connection, guild_id: &str) -> Result<Vec<ChannelRecord>, StorageError> {
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE guild_id = ?1 ORDER BY is_thread, position, id"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([guild_id], channel_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts a role.
pub fn insert_role(c: &Connection, r: &RoleRecord) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO roles (id, guild_id, name, color, position, permissions, parent_role_ids)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.id,
            r.guild_id,
            r.name,
            r.color,
            r.position,
            to_json(&r.permissions),
            to_json(&r.parent_role_ids)
        ],
    )?;
    Ok(())
}

/// Writes a role's editable fields.
pub fn update_role(c: &Connection, r: &RoleRecord) -> Result<(), StorageError> {
    c.execute(
        "UPDATE roles SET name = ?2, color = ?3, position = ?4, permissions = ?5, parent_role_ids = ?6
         WHERE id = ?1",
        params![r.id, r.name, r.color, r.position, to_json(&r.permissions), to_json(&r.parent_role_ids)],
    )?;
    Ok(())
}

/// Deletes a role, its assignments, and its use as a parent.
pub fn delete_role(c: &Connection, guild_id: &str, role_id: &str) -> Result<(), StorageError> {
    c.execute(
        "DELETE FROM roles WHERE id = ?1 AND guild_id = ?2",
        params![role_id, guild_id],
    )?;
    for mut role in roles(c, guild_id)? {
        let before = role.parent_role_ids.len();
        role.parent_role_ids.retain(|p| p != role_id);
        if role.parent_role_ids.len() != before {
            update_role(c, &role)?;
        }
    }
    Ok(())
}

/// A guild's roles, highest first.
pub fn roles(c: &Connection, guild_id: &str) -> Result<Vec<RoleRecord>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, guild_id, name, color, position, permissions, parent_role_ids FROM roles
         WHERE guild_id = ?1 ORDER BY position DESC, id",
    )?;
    let rows = stmt.query_map([guild_id], role_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds a member; `false` if they already were one.
pub fn add_member(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
    now: u64,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "INSERT OR IGNORE INTO members (guild_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
        params![guild_id, user_id, to_sql_int(now)],
    )?;
    Ok(n > 0)
}

/// Removes a member and their role assignments; `false` if they were not one.
pub fn remove_member(c: &Connection, guild_id: &str, user_id: &str) -> Result<bool, StorageError> {
    let n = c.execute(
        "DELETE FROM members WHERE guild_id = ?1 AND user_id = ?2",
        params![guild_id, user_id],
    )?;
    Ok(n > 0)
}

/// One member.
pub fn member(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
) -> Result<Option<MemberRecord>, StorageError> {
    let row: Option<(i64, Option<String>)> = c
        .query_row(
            "SELECT joined_at, nick FROM members WHERE guild_id = ?1 AND user_id = ?2",
            params![guild_id, user_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((joined, nick)) = row else {
        return Ok(None);
    };
    Ok(Some(MemberRecord {
        user_id: user_id.to_owned(),
        joined_at: from_sql_int(joined),
        role_ids: member_roles(c, guild_id, user_id)?,
        nick,
    }))
}

/// Sets (`Some`) or clears (`None`) a member's nickname; `false` if they are not a member.
pub fn set_nick(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
    nick: Option<&str>,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "UPDATE members SET nick = ?3 WHERE guild_id = ?1 AND user_id = ?2",
        params![guild_id, user_id, nick],
    )?;
    Ok(n > 0)
}

/// The guilds (not DMs) both users are members of, with `other`'s nickname in each, by guild id.
pub fn mutual_guilds(
    c: &Connection,
    user_id: &str,
    other: &str,
) -> Result<Vec<(String, Option<String>)>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT theirs.guild_id, theirs.nick FROM members mine
         JOIN members theirs ON theirs.guild_id = mine.guild_id AND theirs.user_id = ?2
         JOIN guilds g ON g.id = mine.guild_id AND NOT g.is_dm
         WHERE mine.user_id = ?1 ORDER BY theirs.guild_id",
    )?;
    let rows = stmt.query_map(params![user_id, other], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn member_roles(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT role_id FROM member_roles WHERE guild_id = ?1 AND user_id = ?2 ORDER BY role_id",
    )?;
    let rows = stmt.query_map(params![guild_id, user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A member as a roster shows them: who, their names and their roles.
#[derive(Debug, Clone)]
pub struct RosterRow {
    /// The member.
    pub user_id: String,
    /// Their username, if they have one.
    pub irc_name: Option<String>,
    /// Their display name (empty if the node has no record of them).
    pub display_name: String,
    /// Their roles in the guild (not the default role).
    pub role_ids: Vec<String>,
}

/// The first `limit` members of a guild (oldest first) with their names and roles, in one query.
pub fn roster(c: &Connection, guild_id: &str, limit: u32) -> Result<Vec<RosterRow>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT m.user_id, u.irc_name, coalesce(u.display_name, ''),
                (SELECT group_concat(mr.role_id, ',') FROM member_roles mr
                  WHERE mr.guild_id = m.guild_id AND mr.user_id = m.user_id)
         FROM members m LEFT JOIN users u ON u.id = m.user_id
         WHERE m.guild_id = ?1 ORDER BY m.joined_at, m.user_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![guild_id, limit], |r| {
        let roles: Option<String> = r.get(3)?;
        Ok(RosterRow {
            user_id: r.get(0)?,
            irc_name: r.get(1)?,
            display_name: r.get(2)?,
            role_ids: roles
                .map(|list| list.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The users banned from a guild, newest first, at most `limit`.
pub fn bans(
    c: &Connection,
    guild_id: &str,
    limit: u32,
) -> Result<Vec<(String, String, u64)>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT user_id, banned_by, created_at FROM bans WHERE guild_id = ?1
         ORDER BY created_at DESC, user_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![guild_id, limit], |r| {
        Ok((r.get(0)?, r.get(1)?, from_sql_int(r.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A page of members (oldest first) and the total.
pub fn members(
    c: &Connection,
    guild_id: &str,
    limit: u32,
    offset: u32,
) -> Result<(Vec<MemberRecord>, i64), StorageError> {
    let total: i64 = c.query_row(
        "SELECT count(*) FROM members WHERE guild_id = ?1",
        [guild_id],
        |r| r.get(0),
    )?;
    let mut stmt = c.prepare_cached(
        "SELECT user_id, joined_at, nick FROM members WHERE guild_id = ?1
         ORDER BY joined_at, user_id LIMIT ?2 OFFSET ?3",
    )?;
    let rows: Vec<(String, i64, Option<String>)> = stmt
        .query_map(params![guild_id, limit, offset], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (user_id, joined, nick) in rows {
        let role_ids = member_roles(c, guild_id, &user_id)?;
        out.push(MemberRecord {
            user_id,
            joined_at: from_sql_int(joined),
            role_ids,
            nick,
        });
    }
    Ok((out, total))
}

/// Gives a member a role; `false` if they had it.
pub fn assign_role(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
    role_id: &str,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "INSERT OR IGNORE INTO member_roles (guild_id, user_id, role_id) VALUES (?1, ?2, ?3)",
        params![guild_id, user_id, role_id],
    )?;
    Ok(n > 0)
}

/// Takes a role from a member; `false` if they did not have it.
pub fn unassign_role(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
    role_id: &str,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "DELETE FROM member_roles WHERE guild_id = ?1 AND user_id = ?2 AND role_id = ?3",
        params![guild_id, user_id, role_id],
    )?;
    Ok(n > 0)
}

/// Records a ban (replacing an earlier one).
pub fn insert_ban(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
    reason: &str,
    by: &str,
    now: u64,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT OR REPLACE INTO bans (guild_id, user_id, reason, banned_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![guild_id, user_id, reason, by, to_sql_int(now)],
    )?;
    Ok(())
}

/// Whether a user is banned from a guild.
pub fn is_banned(c: &Connection, guild_id: &str, user_id: &str) -> Result<bool, StorageError> {
    Ok(c.query_row(
        "SELECT 1 FROM bans WHERE guild_id = ?1 AND user_id = ?2",
        params![guild_id, user_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Inserts an invite.
pub fn insert_invite(c: &Connection, i: &InviteRecord) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO invites (token, guild_id, channel_id, created_by, created_at, updated_at, expires_at, max_uses, allow_registration)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
        params![i.token, i.guild_id, i.channel_id, i.created_by, to_sql_int(i.created_at), to_sql_int(i.expires_at), i.max_uses, i.allows_registration],
    )?;
    Ok(())
}

/// An invite by token.
pub fn invite(c: &Connection, token: &str) -> Result<Option<InviteRecord>, StorageError> {
    let sql = format!(
        "SELECT {INVITE_COLUMNS} FROM invites i JOIN channels c ON c.id = i.channel_id WHERE i.token = ?1"
    );
    Ok(c.query_row(&sql, [token], invite_row).optional()?)
}

/// A guild's invites, newest first.
pub fn invites(c: &Connection, guild_id: &str) -> Result<Vec<InviteRecord>, StorageError> {
    let sql = format!(
        "SELECT {INVITE_COLUMNS} FROM invites i JOIN channels c ON c.id = i.channel_id
         WHERE i.guild_id = ?1 ORDER BY i.created_at DESC, i.token"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([guild_id], invite_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deactivates an invite; `false` if the guild has no such invite.
pub fn deactivate_invite(
    c: &Connection,
    guild_id: &str,
    token: &str,
    now: u64,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "UPDATE invites SET deactivated = 1, updated_at = ?3 WHERE guild_id = ?1 AND token = ?2",
        params![guild_id, token, to_sql_int(now)],
    )?;
    Ok(n > 0)
}

/// The user ids of a guild's members.
pub fn member_user_ids(c: &Connection, guild_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt =
        c.prepare_cached("SELECT user_id FROM members WHERE guild_id = ?1 ORDER BY user_id")?;
    let rows = stmt.query_map([guild_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a guild and, by the schema's cascades, everything in it (channels, messages, roles,
/// members, invites, webhooks); `false` if there was none.
pub fn delete_guild(c: &Connection, guild_id: &str) -> Result<bool, StorageError> {
    Ok(c.execute("DELETE FROM guilds WHERE id = ?1", [guild_id])? > 0)
}

/// Deletes a channel and its threads (their messages, invites and webhooks go by cascade);
/// answers the ids deleted, the channel's first.
pub fn delete_channel(c: &Connection, channel_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare_cached(
        "DELETE FROM channels WHERE id = ?1 OR (is_thread = 1 AND parent_channel_id = ?1)
         RETURNING id",
    )?;
    let mut ids: Vec<String> = stmt
        .query_map([channel_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ids.sort_by_key(|id| id != channel_id);
    Ok(ids)
}

/// Counts one use of an invite.
pub fn use_invite(c: &Connection, token: &str, now: u64) -> Result<(), StorageError> {
    c.execute(
        "UPDATE invites SET uses = uses + 1, updated_at = ?2 WHERE token = ?1",
        params![token, to_sql_int(now)],
    )?;
    Ok(())
}

/// Number of members of a guild.
pub fn member_count(c: &Connection, guild_id: &str) -> Result<i64, StorageError> {
    Ok(c.query_row(
        "SELECT count(*) FROM members WHERE guild_id = ?1",
        [guild_id],
        |r| r.get(0),
    )?)
}

/// The guild, its roles, and the user's membership: what every permission check needs, in one read.
pub fn context(
    c: &Connection,
    guild_id: &str,
    user_id: &str,
) -> Result<Option<GuildContext>, StorageError> {
    let Some(guild) = guild(c, guild_id)? else {
        return Ok(None);
    };
    Ok(Some(GuildContext {
        roles: roles(c, guild_id)?,
        member: member(c, guild_id, user_id)?,
        guild,
    }))
}

/// Whether two users are members of a common guild (so each may see the other's presence).
pub fn share_guild(c: &Connection, a: &str, b: &str) -> Result<bool, StorageError> {
    Ok(c.query_row(
        "SELECT 1 FROM members x JOIN members y ON x.guild_id = y.guild_id
             WHERE x.user_id = ?1 AND y.user_id = ?2 LIMIT 1",
        params![a, b],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}
