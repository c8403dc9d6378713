//! Running a guild from the CLI: roles (docs/PERMISSIONS.md) and webhooks (docs/WEBHOOKS.md).
//! Guilds, channels, members and roles are taken by name or id, as elsewhere in the CLI.

use anyhow::{Result, bail};
use clap::Subcommand;
use guildhall::proto::guildhall::v1 as pb;

use super::chat::open_member;
use super::{Session, Target, names};

/// The `role` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCommand {
    /// List a guild's roles and what they grant.
    List {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
    },
    /// Create a role.
    Create {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
        /// The role's name.
        #[arg(long)]
        name: String,
        /// A permission it grants (repeat for more; see docs/PERMISSIONS.md).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// Its colour, e.g. `#ff8800`.
        #[arg(long, default_value = "")]
        color: String,
        /// Its rank (1 and up; higher outranks lower). Default: above every existing role.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        position: Option<i32>,
    },
    /// Delete a role.
    Delete {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
        /// The role: its id or name.
        role: String,
    },
    /// Give a member a role.
    Assign {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
        /// The member: their user id, or their name if only one member has it.
        user: String,
        /// The role: its id or name.
        role: String,
    },
    /// Take a role from a member.
    Unassign {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
        /// The member: their user id, or their name if only one member has it.
        user: String,
        /// The role: its id or name.
        role: String,
    },
}

/// The `webhook` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Create a webhook that posts to a channel; prints its id and its token (shown only now).
    Create {
        #[command(flatten)]
        target: Target,
        /// The channel: its id, `name`, `#name` or `Guild#name`.
        #[arg(long)]
        channel: String,
        /// The name its messages show.
        #[arg(long)]
        name: String,
    },
    /// List a guild's webhooks.
    List {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
    },
    /// Rename a webhook, change its picture, or move it to another channel; its token stays.
    Update {
        #[command(flatten)]
        target: Target,
        /// The webhook's id.
        id: String,
        /// A new name for its messages.
        #[arg(long)]
        name: Option<String>,
        /// A new picture (an http(s) URL; empty to remove it).
        #[arg(long)]
        avatar_url: Option<String>,
        /// Another channel of the same guild: its id, `name`, `#name` or `Guild#name`.
        #[arg(long)]
        channel: Option<String>,
    },
    /// Delete a webhook: its token stops working.
    Delete {
        #[command(flatten)]
        target: Target,
        /// The webhook's id.
        id: String,
    },
}

/// The guild's roles.
async fn roles(s: &mut Session, guild_id: &str) -> Result<Vec<pb::Role>> {
    let request = pb::ListRolesRequest {
        guild_id: guild_id.to_owned(),
    };
    Ok(rpc!(s, list_roles, request)?.into_inner().roles)
}

/// The id of the role `arg` names in the guild: its id, or the name of exactly one role.
async fn role(s: &mut Session, guild_id: &str, arg: &str) -> Result<String> {
    let all = roles(s, guild_id).await?;
    if all.iter().any(|r| r.id == arg) {
        return Ok(arg.to_owned());
    }
    let found: Vec<&pb::Role> = all
        .iter()
        .filter(|r| r.name.eq_ignore_ascii_case(arg))
        .collect();
    match found.as_slice() {
        [] => bail!("this guild has no role named {arg:?} (see `guildhall role list`)"),
        [one] => Ok(one.id.clone()),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|r| format!("  {}  {}", r.id, r.name))
                .collect();
            bail!(
                "{} roles are named {arg:?}; give one of these ids instead:\n{}",
                many.len(),
                list.join("\n")
            )
        }
    }
}

fn print_role(r: &pb::Role) {
    println!("{}  {}  [{}]", r.id, r.name, r.permissions.join(", "));
}

/// Runs one `role` command.
pub(crate) async fn role_command(command: RoleCommand) -> Result<()> {
    match command {
        RoleCommand::List { target, guild } => {
            let (mut s, guild_id) = names::open_guild(&target, &guild).await?;
            roles(&mut s, &guild_id).await?.iter().for_each(print_role);
        }
        RoleCommand::Create {
            target,
            guild,
            name,
            permissions,
            color,
            position,
        } => {
            let (mut s, guild_id) = names::open_guild(&target, &guild).await?;
            let position = match position {
                Some(p) => p,
                None => {
                    let top = roles(&mut s, &guild_id)
                        .await?
                        .iter()
                        .map(|r| r.position)
                        .max();
                    top.unwrap_or(0).saturating_add(1).max(1)
                }
            };
            let request = pb::CreateRoleRequest {
                guild_id,
                name,
                color,
                position,
                permissions,
                ..Default::default()
            };
            print_role(&rpc!(s, create_role, request)?.into_inner());
        }
        RoleCommand::Delete {
            target,
            guild,
            role: arg,
        } => {
            let (mut s, guild_id) = names::open_guild(&target, &guild).await?;
            let role_id = role(&mut s, &guild_id, &arg).await?;
            let request = pb::DeleteRoleRequest {
                guild_id,
                role_id: role_id.clone(),
            };
            rpc!(s, delete_role, request)?;
            println!("deleted role {role_id}");
        }
        RoleCommand::Assign {
            target,
            guild,
            user,
            role: arg,
        } => {
            let (mut s, guild_id, user_id) = open_member(&target, &guild, &user).await?;
            let role_id = role(&mut s, &guild_id, &arg).await?;
            let request = pb::AssignRoleRequest {
                guild_id,
                user_id: user_id.clone(),
                role_id: role_id.clone(),
            };
            rpc!(s, assign_role, request)?;
            println!("gave {user_id} the role {role_id}");
        }
        RoleCommand::Unassign {
            target,
            guild,
            user,
            role: arg,
        } => {
            let (mut s, guild_id, user_id) = open_member(&target, &guild, &user).await?;
            let role_id = role(&mut s, &guild_id, &arg).await?;
            let request = pb::UnassignRoleRequest {
                guild_id,
                user_id: user_id.clone(),
                role_id: role_id.clone(),
            };
            rpc!(s, unassign_role, request)?;
            println!("took the role {role_id} from {user_id}");
        }
    }
    Ok(())
}

/// Runs one `webhook` command.
pub(crate) async fn webhook_command(command: WebhookCommand) -> Result<()> {
    match command {
        WebhookCommand::Create {
            target,
            channel,
            name,
        } => {
            let (mut s, channel_id) = names::open_channel(&target, &channel).await?;
            let request = pb::CreateWebhookRequest {
                channel_id,
                name,
                avatar_url: None,
            };
            let hook = rpc!(s, create_webhook, request)?.into_inner();
            println!("webhook: {}  {}", hook.id, hook.name);
            println!("token:   {}  (shown only now: keep it secret)", hook.token);
            println!(
                "post:    POST /webhooks/{}/{} (docs/WEBHOOKS.md)",
                hook.id, hook.token
            );
        }
        WebhookCommand::List { target, guild } => {
            let (mut s, guild_id) = names::open_guild(&target, &guild).await?;
            let request = pb::ListWebhooksRequest {
                guild_id,
                channel_id: None,
            };
            for hook in rpc!(s, list_webhooks, request)?.into_inner().webhooks {
                println!(
                    "{}  {}  channel {}  by {}",
                    hook.id, hook.name, hook.channel_id, hook.creator_id
                );
            }
        }
        WebhookCommand::Update {
            target,
            id,
            name,
            avatar_url,
            channel,
        } => {
            if name.is_none() && avatar_url.is_none() && channel.is_none() {
                anyhow::bail!("nothing to change: give --name, --avatar-url or --channel");
            }
            let (mut s, channel_id) = match channel {
                Some(channel) => {
                    let (s, id) = names::open_channel(&target, &channel).await?;
                    (s, Some(id))
                }
                None => (Session::open(&target).await?, None),
            };
            let request = pb::UpdateWebhookRequest {
                webhook_id: id,
                name,
                avatar_url,
                channel_id,
            };
            let hook = rpc!(s, update_webhook, request)?.into_inner();
            println!(
                "webhook: {}  {}  channel {}",
                hook.id, hook.name, hook.channel_id
            );
        }
        WebhookCommand::Delete { target, id } => {
            let mut s = Session::open(&target).await?;
            let request = pb::DeleteWebhookRequest {
                webhook_id: id.clone(),
            };
            rpc!(s, delete_webhook, request)?;
            println!("deleted webhook {id}");
        }
    }
    Ok(())
}
