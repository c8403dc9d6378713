//! Handlers for guilds, folders, channels, roles, members, moderation and invites.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::accounts::{Accounts, JoinInput};
use crate::convert;
use crate::guilds::roles::RoleInput;
use crate::guilds::{ChannelUpdate, Guilds};
use crate::proto::guildhall::v1 as pb;

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub async fn create_guild(
    g: &Guilds,
    r: Request<pb::CreateGuildRequest>,
) -> Reply<pb::CreateGuildResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let (guild, token) = g.create_guild(&s, &r.name, r.avatar_url.as_deref()).await?;
    ok(pb::CreateGuildResponse {
        guild: Some(convert::guild(&guild)),
        token,
    })
}

pub async fn update_guild(g: &Guilds, r: Request<pb::UpdateGuildRequest>) -> Reply<pb::Guild> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let guild = g
        .update_guild(&s, &r.guild_id, r.name.as_deref(), r.avatar_url.as_deref())
        .await?;
    ok(convert::guild(&guild))
}

/// `LeaveGuild` (guildhall addition).
pub async fn leave(g: &Guilds, r: Request<pb::LeaveGuildRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    g.leave(&s, &r.get_ref().guild_id).await?;
    ok(pb::Empty {})
}

/// `TransferGuildOwnership` (guildhall addition).
pub async fn transfer_ownership(
    g: &Guilds,
    r: Request<pb::TransferGuildOwnershipRequest>,
) -> Reply<pb::Guild> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let guild = g
        .transfer_ownership(&s, &r.guild_id, &r.new_owner_id)
        .await?;
    ok(convert::guild(&guild))
}

/// `DeleteChannel` (guildhall addition).
pub async fn delete_channel(g: &Guilds, r: Request<pb::DeleteChannelRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    g.delete_channel(&s, &r.get_ref().channel_id).await?;
    ok(pb::Empty {})
}

/// `DeleteGuild` (guildhall addition).
pub async fn delete_guild(g: &Guilds, r: Request<pb::DeleteGuildRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    g.delete_guild(&s, &r.get_ref().guild_id).await?;
    ok(pb::Empty {})
}

pub async fn list_guilds(
    g: &Guilds,
    r: Request<pb::ListGuildsRequest>,
) -> Reply<pb::ListGuildsResponse> {
    let s = caller(&r)?;
    let guilds = g.list_guilds(&s).await?;
    ok(pb::ListGuildsResponse {
        guilds: guilds.iter().map(convert::guild).collect(),
    })
}

pub async fn list_server_guilds(
    g: &Guilds,
    r: Request<pb::ListServerGuildsRequest>,
) -> Reply<pb::ListServerGuildsResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let (rows, total) = g.list_server_guilds(&s, r.limit, r.offset).await?;
    ok(pb::ListServerGuildsResponse {
        guilds: rows
            .iter()
            .map(|stats| pb::ServerGuildStats {
                guild: Some(convert::guild(&stats.guild)),
                member_count: count(stats.members),
                channel_count: count(stats.channels),
                message_count: count(stats.messages),
            })
            .collect(),
        total: count(total),
    })
}

pub async fn create_folder(g: &Guilds, r: Request<pb::CreateFolderRequest>) -> Reply<pb::Folder> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let folder = g
        .create_folder(&s, &r.guild_id, &r.parent_folder_id, &r.name)
        .await?;
    ok(convert::folder(&folder))
}

pub async fn update_folder(g: &Guilds, r: Request<pb::UpdateFolderRequest>) -> Reply<pb::Folder> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let update = crate::guilds::FolderUpdate {
        name: r.name,
        parent_folder_id: r.parent_folder_id,
        position: r.position,
    };
    let folder = g
        .update_folder(&s, &r.guild_id, &r.folder_id, update)
        .await?;
    ok(convert::folder(&folder))
}

pub async fn delete_folder(g: &Guilds, r: Request<pb::DeleteFolderRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.get_ref();
    g.delete_folder(&s, &r.guild_id, &r.folder_id).await?;
    ok(pb::Empty {})
}

pub async fn list_folders(
    g: &Guilds,
    r: Request<pb::ListFoldersRequest>,
) -> Reply<pb::ListFoldersResponse> {
    let s = caller(&r)?;
    let folders = g.list_folders(&s, &r.get_ref().guild_id).await?;
    ok(pb::ListFoldersResponse {
        folders: folders.iter().map(convert::folder).collect(),
    })
}

pub async fn create_channel(
    g: &Guilds,
    r: Request<pb::CreateChannelRequest>,
) -> Reply<pb::Channel> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let channel = g
        .create_channel(
            &s,
            &r.guild_id,
            &r.folder_id,
            &r.name,
            r.irc_name.as_deref(),
        )
        .await?;
    ok(convert::channel(&channel))
}

pub async fn update_channel(
    g: &Guilds,
    r: Request<pb::UpdateChannelRequest>,
) -> Reply<pb::Channel> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let update = ChannelUpdate {
        channel_id: r.channel_id,
        name: r.name,
        folder_id: r.folder_id,
        irc_name: r.irc_name,
        position: r.position,
    };
    ok(convert::channel(&g.update_channel(&s, update).await?))
}

pub async fn list_channels(
    g: &Guilds,
    r: Request<pb::ListChannelsRequest>,
) -> Reply<pb::ListChannelsResponse> {
    let s = caller(&r)?;
    let channels = g.list_channels(&s, &r.get_ref().guild_id).await?;
    ok(pb::ListChannelsResponse {
        channels: channels.iter().map(convert::channel).collect(),
    })
}

pub async fn create_role(g: &Guilds, r: Request<pb::CreateRoleRequest>) -> Reply<pb::Role> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let input = RoleInput {
        id: String::new(),
        name: r.name,
        color: r.color,
        position: r.position,
        permissions: r.permissions,
        parent_role_ids: r.parent_role_ids,
    };
    ok(convert::role(&g.create_role(&s, &r.guild_id, input).await?))
}

pub async fn update_role(g: &Guilds, r: Request<pb::UpdateRoleRequest>) -> Reply<pb::Role> {
    let s = caller(&r)?;
    let r = r.into_inner();
    if r.role_id.is_empty() {
        return Err(Status::invalid_argument("role_id: is required"));
    }
    let input = RoleInput {
        id: r.role_id,
        name: r.name,
        color: r.color,
        position: r.position,
        permissions: r.permissions,
        parent_role_ids: r.parent_role_ids,
    };
    ok(convert::role(&g.update_role(&s, &r.guild_id, input).await?))
}

pub async fn batch_update_roles(
    g: &Guilds,
    r: Request<pb::BatchUpdateRolesRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let inputs = r
        .roles
        .into_iter()
        .map(|role| RoleInput {
            id: role.id,
            name: role.name,
            color: role.color,
            position: role.position,
            permissions: role.permissions,
            parent_role_ids: role.parent_role_ids,
        })
        .collect();
    g.batch_update_roles(&s, &r.guild_id, inputs, "roles")
        .await?;
    ok(pb::Empty {})
}

pub async fn delete_role(g: &Guilds, r: Request<pb::DeleteRoleRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    g.delete_role(&s, &r.guild_id, &r.role_id).await?;
    ok(pb::Empty {})
}

pub async fn list_roles(
    g: &Guilds,
    r: Request<pb::ListRolesRequest>,
) -> Reply<pb::ListRolesResponse> {
    let s = caller(&r)?;
    let roles = g.list_roles(&s, &r.get_ref().guild_id).await?;
    ok(pb::ListRolesResponse {
        roles: roles.iter().map(convert::role).collect(),
    })
}

pub async fn assign_role(
    g: &Guilds,
    r: Request<pb::AssignRoleRequest>,
    assign: bool,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    g.set_role(&s, &r.guild_id, &r.user_id, &r.role_id, assign)
        .await?;
    ok(pb::Empty {})
}

pub async fn my_permissions(
    g: &Guilds,
    r: Request<pb::GetMyPermissionsRequest>,
) -> Reply<pb::GetMyPermissionsResponse> {
    let s = caller(&r)?;
    let permissions = g.my_permissions(&s, &r.get_ref().guild_id).await?;
    ok(pb::GetMyPermissionsResponse { permissions })
}

pub async fn kick(g: &Guilds, r: Request<pb::KickUserRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    g.kick(&s, &r.guild_id, &r.user_id, &r.reason).await?;
    ok(pb::Empty {})
}

pub async fn list_members(
    g: &Guilds,
    r: Request<pb::ListGuildMembersRequest>,
) -> Reply<pb::ListGuildMembersResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let (members, total) = g.list_members(&s, &r.guild_id, r.limit, r.offset).await?;
    let admins = |id: &str| g.is_admin(id);
    ok(pb::ListGuildMembersResponse {
        members: members
            .iter()
            .map(|m| convert::member(m, &admins))
            .collect(),
        total: count(total),
    })
}

pub async fn generate_invite(
    g: &Guilds,
    r: Request<pb::GenerateInviteRequest>,
) -> Reply<pb::GenerateInviteResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let invite = g
        .generate_invite(
            &s,
            &r.channel_id,
            r.max_age_secs,
            r.max_uses,
            r.allow_registration,
        )
        .await?;
    ok(pb::GenerateInviteResponse {
        token: invite.token,
    })
}

pub async fn preview_invite(
    g: &Guilds,
    r: Request<pb::PreviewInviteRequest>,
) -> Reply<pb::PreviewInviteResponse> {
    let p = g.preview_invite(&r.get_ref().token).await?;
    ok(pb::PreviewInviteResponse {
        channel_id: p.invite.channel_id,
        channel_name: p.invite.channel_name,
        guild_id: p.guild.id,
        guild_name: p.guild.name,
        member_count: count(p.member_count),
        guild_avatar_url: (!p.guild.avatar_url.is_empty()).then_some(p.guild.avatar_url),
    })
}

pub async fn list_invites(
    g: &Guilds,
    r: Request<pb::ListInvitesRequest>,
) -> Reply<pb::ListInvitesResponse> {
    let s = caller(&r)?;
    let invites = g.list_invites(&s, &r.get_ref().guild_id).await?;
    ok(pb::ListInvitesResponse {
        invites: invites.iter().map(convert::invite).collect(),
    })
}

pub async fn deactivate_invite(
    g: &Guilds,
    r: Request<pb::DeactivateInviteRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    g.deactivate_invite(&s, &r.guild_id, &r.token).await?;
    ok(pb::Empty {})
}

pub async fn join_invite(
    a: &Accounts,
    g: &Guilds,
    r: Request<pb::JoinInviteRequest>,
) -> Reply<pb::JoinInviteResponse> {
    let r = r.into_inner();
    let input = JoinInput {
        token: r.token,
        id_key: convert::public_key("public_key", &r.public_key)?,
        cert: convert::device_cert(r.device_cert)?,
        signature: convert::signature_bytes("signature", &r.signature)?,
        timestamp: r.timestamp,
        display_name: r.display_name,
        avatar_url: r.avatar_url,
        homeserver_url: r.homeserver_url,
        registration_token: r.registration_token,
    };
    let mut prepared = a.prepare_join(&input).await?;
    let allows = g.invite_allows_registration(&input.token).await?;
    a.admit_join(&mut prepared, &input.registration_token, allows)
        .await?;
    let user_id = prepared.user_id().to_owned();
    let issued = prepared.issued.clone();
    let (guild, _user) = g
        .join_with(&user_id, &input.token, move |tx| prepared.apply(tx))
        .await?;
    ok(pb::JoinInviteResponse {
        guild: Some(convert::guild(&guild)),
        token: issued.access_token,
        refresh_token: issued.refresh_token,
    })
}
