//! The permission catalogue and how a member's effective permissions are computed.
//!
//! Permissions are strings (the API's `repeated string permissions`). A role grants its own
//! permissions plus those of every role in `parent_role_ids`, transitively; parent links may not
//! form a cycle. Every guild has a default role whose id is the guild's id: every member holds it.
//! The owner holds every permission, and so does anyone with `administrator`. Roles are ranked by
//! `position` (higher outranks lower): a member may only manage roles, and act on members, ranked
//! strictly below their own highest role.

use std::collections::{BTreeSet, HashMap, HashSet};

/// Every permission: its name and what it allows. Documented in `docs/PERMISSIONS.md`.
pub const CATALOGUE: &[(&str, &str)] = &[
    (
        ADMINISTRATOR,
        "everything, as if owner (but cannot act on the owner)",
    ),
    (GUILD_MANAGE, "rename the guild, change its avatar"),
    (
        CHANNELS_MANAGE,
        "create, edit and delete channels and folders",
    ),
    (
        ROLES_MANAGE,
        "create, edit, delete, assign and unassign roles below one's own",
    ),
    (INVITES_CREATE, "create invites"),
    (INVITES_MANAGE, "list and deactivate the guild's invites"),
    (
        MESSAGES_READ,
        "read channels, history, pins and search; receive their events",
    ),
    (
        MESSAGES_SEND,
        "send messages, typing indicators and reactions",
    ),
    (MESSAGES_MANAGE, "delete and pin others' messages"),
    (
        MESSAGES_MENTION_EVERYONE,
        "mention @everyone (<@&GUILD_ID>): notify every member",
    ),
    (THREADS_CREATE, "start threads from messages"),
    (MEMBERS_KICK, "remove members ranked below one's own"),
    (MEMBERS_BAN, "ban members ranked below one's own"),
    (WEBHOOKS_MANAGE, "create, edit and delete webhooks"),
    (
        MEMBERS_NICKNAMES,
        "set and clear nicknames of members ranked below one's own",
    ),
];

/// Everything, as if owner.
pub const ADMINISTRATOR: &str = "administrator";
/// Rename the guild, change its avatar.
pub const GUILD_MANAGE: &str = "guild.manage";
/// Create and edit channels and folders.
pub const CHANNELS_MANAGE: &str = "channels.manage";
/// Manage roles below one's own.
pub const ROLES_MANAGE: &str = "roles.manage";
/// Create invites.
pub const INVITES_CREATE: &str = "invites.create";
/// List and deactivate invites.
pub const INVITES_MANAGE: &str = "invites.manage";
/// Read channels and their events.
pub const MESSAGES_READ: &str = "messages.read";
/// Send messages, typing and reactions.
pub const MESSAGES_SEND: &str = "messages.send";
/// Delete and pin others' messages.
pub const MESSAGES_MANAGE: &str = "messages.manage";
/// Mention `@everyone` so that it notifies: without it the text stays but the mention is
/// dropped (guildhall addition; not in the default role).
pub const MESSAGES_MENTION_EVERYONE: &str = "messages.mention_everyone";
/// Start threads.
pub const THREADS_CREATE: &str = "threads.create";
/// Kick members.
pub const MEMBERS_KICK: &str = "members.kick";
/// Ban members.
pub const MEMBERS_BAN: &str = "members.ban";
/// Manage webhooks.
pub const WEBHOOKS_MANAGE: &str = "webhooks.manage";
/// Set other members' nicknames (anyone may set their own).
pub const MEMBERS_NICKNAMES: &str = "members.nicknames";

/// What the default role of a new guild grants: take part, and invite friends.
pub const DEFAULT_ROLE_PERMISSIONS: &[&str] =
    &[MESSAGES_READ, MESSAGES_SEND, THREADS_CREATE, INVITES_CREATE];

/// Most permissions one role may list, and most parents.
pub const MAX_ROLE_LIST: usize = 64;

/// Whether `name` is in the catalogue.
pub fn is_known(name: &str) -> bool {
    CATALOGUE.iter().any(|(p, _)| *p == name)
}

/// A role as the permission logic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNode {
    /// Rank: higher outranks lower.
    pub position: i32,
    /// Granted directly.
    pub permissions: Vec<String>,
    /// Inherited from.
    pub parents: Vec<String>,
}

/// One guild's roles, for computing effective permissions.
#[derive(Debug, Clone, Default)]
pub struct RoleGraph {
    roles: HashMap<String, RoleNode>,
}

impl RoleGraph {
    /// The graph of a guild's roles, by id.
    pub fn new(roles: impl IntoIterator<Item = (String, RoleNode)>) -> Self {
        Self {
            roles: roles.into_iter().collect(),
        }
    }

    /// Whether the role exists.
    pub fn contains(&self, id: &str) -> bool {
        self.roles.contains_key(id)
    }

    /// A role's rank.
    pub fn position(&self, id: &str) -> Option<i32> {
        self.roles.get(id).map(|r| r.position)
    }

    /// The permissions a set of roles grants, with inheritance (each role visited once, so a
    /// cycle that slipped into storage can't loop).
    pub fn permissions_of<'a>(
        &self,
        role_ids: impl IntoIterator<Item = &'a str>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<&str> = role_ids.into_iter().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.to_owned()) {
                continue;
            }
            if let Some(role) = self.roles.get(id) {
                out.extend(role.permissions.iter().cloned());
                stack.extend(role.parents.iter().map(String::as_str));
            }
        }
        out
    }

    /// Whether giving `role_id` the parents `parents` would make a cycle.
    pub fn would_cycle(&self, role_id: &str, parents: &[String]) -> bool {
        let mut stack: Vec<&str> = parents.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if id == role_id {
                return true;
            }
            if !seen.insert(id.to_owned()) {
                continue;
            }
            if let Some(role) = self.roles.get(id) {
                stack.extend(role.parents.iter().map(String::as_str));
            }
        }
        false
    }
}

/// A member's standing in one guild: what they may do and how high they rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The guild's owner: holds everything, outranks everyone.
    pub is_owner: bool,
    /// Effective permissions (all of the catalogue for owners and administrators).
    pub permissions: BTreeSet<String>,
    /// The position of the member's highest role (`i32::MAX` for the owner, the default role's
    /// position for members with no other role).
    pub rank: i32,
}

impl Standing {
    /// Computes a member's standing from their roles (the default role is added here).
    pub fn of(guild_id: &str, is_owner: bool, member_roles: &[String], graph: &RoleGraph) -> Self {
        if is_owner {
            return Self {
                is_owner,
                permissions: CATALOGUE.iter().map(|(p, _)| (*p).to_owned()).collect(),
                rank: i32::MAX,
            };
        }
        let ids = member_roles
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(guild_id));
        let mut permissions = graph.permissions_of(ids);
        if permissions.contains(ADMINISTRATOR) {
            permissions = CATALOGUE.iter().map(|(p, _)| (*p).to_owned()).collect();
        }
        let rank = member_roles
            .iter()
            .filter_map(|r| graph.position(r))
            .chain(graph.position(guild_id))
            .max()
            .unwrap_or(0);
        Self {
            is_owner,
            permissions,
            rank,
        }
    }

    /// Whether the member holds `permission`.
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(position: i32, permissions: &[&str], parents: &[&str]) -> RoleNode {
        RoleNode {
            position,
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            parents: parents.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn graph() -> RoleGraph {
        RoleGraph::new([
            ("g".to_owned(), node(0, &[MESSAGES_READ], &[])),
            ("mod".to_owned(), node(10, &[MEMBERS_KICK], &["helper"])),
            ("helper".to_owned(), node(5, &[MESSAGES_MANAGE], &[])),
            ("admin".to_owned(), node(20, &[ADMINISTRATOR], &[])),
        ])
    }

    #[test]
    fn inheritance_and_default_role() {
        let s = Standing::of("g", false, &["mod".into()], &graph());
        assert!(s.has(MEMBERS_KICK) && s.has(MESSAGES_MANAGE) && s.has(MESSAGES_READ));
        assert!(!s.has(MEMBERS_BAN));
        assert_eq!(s.rank, 10);
        let plain = Standing::of("g", false, &[], &graph());
        assert_eq!(plain.rank, 0);
        assert!(plain.has(MESSAGES_READ) && !plain.has(MESSAGES_SEND));
    }

    #[test]
    fn owner_and_administrator_hold_everything() {
        let owner = Standing::of("g", true, &[], &graph());
        assert!(CATALOGUE.iter().all(|(p, _)| owner.has(p)));
        assert_eq!(owner.rank, i32::MAX);
        let admin = Standing::of("g", false, &["admin".into()], &graph());
        assert!(admin.has(MEMBERS_BAN));
        assert_eq!(admin.rank, 20);
    }

    #[test]
    fn cycles_are_detected() {
        let g = graph();
        assert!(g.would_cycle("helper", &["mod".into()]));
        assert!(g.would_cycle("mod", &["mod".into()]));
        assert!(!g.would_cycle("admin", &["mod".into()]));
        let looped = RoleGraph::new([
            ("a".to_owned(), node(1, &["x"], &["b"])),
            ("b".to_owned(), node(1, &["y"], &["a"])),
        ]);
        assert_eq!(
            looped.permissions_of(["a"]).len(),
            2,
            "a stored cycle does not loop"
        );
    }

    #[test]
    fn catalogue_names_are_unique_and_known() {
        let names: HashSet<_> = CATALOGUE.iter().map(|(p, _)| p).collect();
        assert_eq!(names.len(), CATALOGUE.len());
        assert!(DEFAULT_ROLE_PERMISSIONS.iter().all(|p| is_known(p)));
        assert!(!is_known("root"));
    }
}

/// The `messages.read` rule as the event streams apply it: a member receives a guild's channel
/// content (messages, typing, reactions, receipts) only while they may read its channels.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadPermission;

impl crate::events::stream::ReadGate for ReadPermission {
    fn may_read(
        &self,
        conn: &rusqlite::Connection,
        guild_id: &str,
        user_id: &str,
    ) -> Result<bool, crate::store::StorageError> {
        let Some(ctx) = crate::store::guilds::context(conn, guild_id, user_id)? else {
            return Ok(false);
        };
        Ok(super::Guilds::access_from(ctx, user_id)
            .is_ok_and(|access| access.standing.has(MESSAGES_READ)))
    }
}
