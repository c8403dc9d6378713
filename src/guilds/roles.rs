//! Roles: create, edit, delete, assign, and the caller's effective permissions.
//!
//! A non-owner may only touch roles ranked strictly below their own highest role, may only place
//! roles below it, and may only grant permissions they hold themselves (directly or through the
//! roles a new role inherits), so nobody can climb above their own standing.

use super::permissions::{self, MAX_ROLE_LIST, RoleGraph, RoleNode};
use super::{Access, Guilds, NAME_MAX, field, role_event};
use crate::accounts::rules;
use crate::convert;
use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;
use crate::store::SessionInfo;
use crate::store::guilds::{self as db, RoleRecord};

/// A role as sent by a client (create or update).
#[derive(Debug, Clone, Default)]
pub struct RoleInput {
    /// For updates: the role. Empty for creation.
    pub id: String,
    /// Name.
    pub name: String,
    /// Colour.
    pub color: String,
    /// Rank.
    pub position: i32,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Parent roles.
    pub parent_role_ids: Vec<String>,
}

/// Most roles one `BatchUpdateRoles` may change: every change is checked against the whole role
/// graph, so a batch costs its size times the graph.
pub const MAX_ROLES_PER_BATCH: usize = 256;

fn node(role: &RoleRecord) -> RoleNode {
    RoleNode {
        position: role.position,
        permissions: role.permissions.clone(),
        parents: role.parent_role_ids.clone(),
    }
}

/// Checks a role's new content against the rules and the caller's standing, given the graph with
/// every other change already applied; returns the normalised record.
fn checked(
    access: &Access,
    graph: &RoleGraph,
    input: RoleInput,
    field_prefix: &str,
) -> Result<RoleRecord> {
    let f = |name: &str| format!("{field_prefix}{name}");
    let is_default = input.id == access.guild.id;
    let name = if is_default {
        "@everyone".to_owned()
    } else {
        field(&f("name"), rules::name(&input.name, NAME_MAX))?
    };
    let color = field(&f("color"), rules::color(&input.color))?;
    if input.permissions.len() > MAX_ROLE_LIST || input.parent_role_ids.len() > MAX_ROLE_LIST {
        return Err(Error::invalid(
            f("permissions"),
            format!("at most {MAX_ROLE_LIST} permissions and {MAX_ROLE_LIST} parents"),
        ));
    }
    for (i, p) in input.permissions.iter().enumerate() {
        if !permissions::is_known(p) {
            return Err(Error::invalid(
                format!("{}[{i}]", f("permissions")),
                format!("{p:?} is not a permission (see docs/PERMISSIONS.md)"),
            ));
        }
    }
    if is_default && (input.position != 0 || !input.parent_role_ids.is_empty()) {
        return Err(Error::invalid(
            f("position"),
            "the default role stays at position 0 with no parents",
        ));
    }
    if !is_default && input.position < 1 {
        return Err(Error::invalid(
            f("position"),
            "must be at least 1 (0 is the default role's)",
        ));
    }
    for (i, parent) in input.parent_role_ids.iter().enumerate() {
        if !graph.contains(parent) {
            return Err(Error::invalid(
                format!("{}[{i}]", f("parent_role_ids")),
                "is not a role of this guild",
            ));
        }
    }
    if !input.id.is_empty() && graph.would_cycle(&input.id, &input.parent_role_ids) {
        return Err(Error::invalid(
            f("parent_role_ids"),
            "would make the role inherit from itself",
        ));
    }
    let standing = &access.standing;
    if !standing.is_owner {
        if input.position >= standing.rank && !is_default {
            return Err(Error::PermissionDenied(format!(
                "{}: must be below your highest role (position {})",
                f("position"),
                standing.rank
            )));
        }
        let mut granted: std::collections::BTreeSet<String> =
            input.permissions.iter().cloned().collect();
        granted.extend(graph.permissions_of(input.parent_role_ids.iter().map(String::as_str)));
        if let Some(missing) = granted.iter().find(|p| !standing.has(p)) {
            return Err(Error::PermissionDenied(format!(
                "{}: you cannot grant {missing:?}, which you do not hold",
                f("permissions")
            )));
        }
    }
    Ok(RoleRecord {
        id: input.id,
        guild_id: access.guild.id.clone(),
        name,
        color,
        position: input.position,
        permissions: input.permissions,
        parent_role_ids: input.parent_role_ids,
    })
}

/// Refuses unless the caller outranks an existing role.
fn outranks(access: &Access, role: &RoleRecord, what: &str) -> Result<()> {
    let standing = &access.standing;
    if standing.is_owner || role.position < standing.rank {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{what}: role {} is not below your highest role",
            role.id
        )))
    }
}

impl Guilds {
    fn find_role<'a>(access: &'a Access, role_id: &str, what: &str) -> Result<&'a RoleRecord> {
        access
            .roles
            .iter()
            .find(|r| r.id == role_id)
            .ok_or_else(|| Error::NotFound(format!("{what}: no role {role_id:?} in this guild")))
    }

    /// `CreateRole`.
    pub async fn create_role(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        mut input: RoleInput,
    ) -> Result<RoleRecord> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::ROLES_MANAGE)?;
        input.id = self.ids().next_string();
        let role = checked(&access, &access.graph, input, "")?;
        let r = role.clone();
        self.events
            .write(now_ms(), move |tx| {
                db::insert_role(tx, &r)?;
                Ok(((), vec![role_event(&r.guild_id, convert::role(&r), false)]))
            })
            .await?;
        Ok(role)
    }

    /// `UpdateRole`.
    pub async fn update_role(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        input: RoleInput,
    ) -> Result<RoleRecord> {
        let mut updated = self
            .batch_update_roles(caller, guild_id, vec![input], "")
            .await?;
        updated
            .pop()
            .ok_or_else(|| Error::invalid("role_id", "is required"))
    }

    /// `BatchUpdateRoles`: all or nothing.
    pub async fn batch_update_roles(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        inputs: Vec<RoleInput>,
        prefix: &str,
    ) -> Result<Vec<RoleRecord>> {
        if inputs.len() > MAX_ROLES_PER_BATCH {
            return Err(Error::invalid(
                "roles",
                format!("at most {MAX_ROLES_PER_BATCH} per batch"),
            ));
        }
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::ROLES_MANAGE)?;
        let mut roles = access.roles.clone();
        let mut out = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let at = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}[{i}].")
            };
            if input.id.is_empty() {
                return Err(Error::invalid(format!("{at}id"), "is required"));
            }
            let existing = Self::find_role(&access, &input.id, &format!("{at}id"))?;
            if existing.id != access.guild.id {
                outranks(&access, existing, &format!("{at}id"))?;
            } else if !access.standing.is_owner && access.standing.rank == 0 {
                return Err(Error::PermissionDenied(
                    "only members with a role may edit the default role".into(),
                ));
            }
            let graph = RoleGraph::new(roles.iter().map(|r| (r.id.clone(), node(r))));
            let role = checked(&access, &graph, input, &at)?;
            if let Some(slot) = roles.iter_mut().find(|r| r.id == role.id) {
                *slot = role.clone();
            }
            out.push(role);
        }
        let writes = out.clone();
        self.events
            .write(now_ms(), move |tx| {
                let mut rows = Vec::with_capacity(writes.len());
                for role in &writes {
                    db::update_role(tx, role)?;
                    rows.push(role_event(&role.guild_id, convert::role(role), false));
                }
                Ok(((), rows))
            })
            .await?;
        // Permissions and parents may have moved: event streams ask who may read again.
        self.events().access_changed();
        Ok(out)
    }

    /// `DeleteRole`.
    pub async fn delete_role(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        role_id: &str,
    ) -> Result<()> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::ROLES_MANAGE)?;
        if role_id == guild_id {
            return Err(Error::invalid(
                "role_id",
                "the default role cannot be deleted",
            ));
        }
        let role = Self::find_role(&access, role_id, "role_id")?;
        outranks(&access, role, "role_id")?;
        let (g, r) = (guild_id.to_owned(), role_id.to_owned());
        self.events
            .write(now_ms(), move |tx| {
                db::delete_role(tx, &g, &r)?;
                let gone = pb::Role {
                    id: r.clone(),
                    guild_id: g.clone(),
                    ..Default::default()
                };
                Ok(((), vec![role_event(&g, gone, true)]))
            })
            .await?;
        self.events().access_changed();
        Ok(())
    }

    /// `ListRoles` (members).
    pub async fn list_roles(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
    ) -> Result<Vec<RoleRecord>> {
        Ok(self.access(guild_id, &caller.user_id).await?.roles)
    }

    /// `AssignRole` / `UnassignRole`.
    pub async fn set_role(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_id: &str,
        role_id: &str,
        assign: bool,
    ) -> Result<()> {
        let access = self.access(guild_id, &caller.user_id).await?;
        access.require(permissions::ROLES_MANAGE)?;
        if role_id == guild_id {
            return Err(Error::invalid(
                "role_id",
                "every member holds the default role",
            ));
        }
        let role = Self::find_role(&access, role_id, "role_id")?;
        outranks(&access, role, "role_id")?;
        let (g, u, r) = (guild_id.to_owned(), user_id.to_owned(), role_id.to_owned());
        let admins = self.admins();
        let changed = self
            .events()
            .write(crate::identity::freshness::now_ms(), move |tx| {
                if db::member(tx, &g, &u)?.is_none() {
                    return Ok((false, vec![]));
                }
                if assign {
                    db::assign_role(tx, &g, &u, &r)?;
                } else {
                    db::unassign_role(tx, &g, &u, &r)?;
                }
                // Members see the member's roles as they now stand (`member_updated`).
                let member = db::member(tx, &g, &u)?
                    .ok_or_else(|| crate::store::StorageError::Task("member vanished".into()))?;
                let view = db::MemberView {
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
                Ok((true, vec![event]))
            })
            .await?;
        if changed {
            self.events().access_changed();
        }
        changed.then_some(()).ok_or_else(|| {
            Error::NotFound(format!("user_id: {user_id} is not a member of this guild"))
        })
    }

    /// `GetMyPermissions`.
    pub async fn my_permissions(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
    ) -> Result<Vec<String>> {
        let access = self.access(guild_id, &caller.user_id).await?;
        Ok(access.standing.permissions.into_iter().collect())
    }
}
