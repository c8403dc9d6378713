//! Guilds, channels, roles, members, moderation and invites on one node, with several users over
//! real gRPC. Every permission denial and hierarchy escape attempt is checked.

mod common;

use std::time::Duration;

use common::{TestNode, TestUser, assert_status, authed, register, wait_for};
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use tonic::Code;
use tonic::transport::Channel;

struct Guild {
    id: String,
    general: String,
    invite: String,
}

async fn create_guild(c: &mut GuildHallClient<Channel>, owner: &TestUser, name: &str) -> Guild {
    let reply = c
        .create_guild(authed(
            &owner.token,
            pb::CreateGuildRequest {
                name: name.into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create guild")
        .into_inner();
    let guild = reply.guild.expect("guild");
    let channels = c
        .list_channels(authed(
            &owner.token,
            pb::ListChannelsRequest {
                guild_id: guild.id.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels;
    Guild {
        id: guild.id,
        general: channels[0].id.clone(),
        invite: reply.token,
    }
}

/// `user` joins with `token` (signed JoinInvite); returns the new session token.
async fn join(node: &TestNode, user: &TestUser, token: &str) -> Result<String, tonic::Status> {
    let request = user
        .identity
        .join_invite_request(&node.audience(), token, "Joiner", now_ms());
    node.client()
        .await
        .join_invite(request)
        .await
        .map(|r| r.into_inner().token)
}

async fn members(c: &mut GuildHallClient<Channel>, who: &TestUser, guild: &Guild) -> Vec<String> {
    c.list_guild_members(authed(
        &who.token,
        pb::ListGuildMembersRequest {
            guild_id: guild.id.clone(),
            limit: 0,
            offset: 0,
        },
    ))
    .await
    .expect("members")
    .into_inner()
    .members
    .into_iter()
    .map(|m| m.user.expect("user").id)
    .collect()
}

async fn create_role(
    c: &mut GuildHallClient<Channel>,
    who: &TestUser,
    guild: &Guild,
    name: &str,
    position: i32,
    permissions: &[&str],
) -> Result<pb::Role, tonic::Status> {
    c.create_role(authed(
        &who.token,
        pb::CreateRoleRequest {
            guild_id: guild.id.clone(),
            name: name.into(),
            color: "#336699".into(),
            position,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            parent_role_ids: vec![],
        },
    ))
    .await
    .map(|r| r.into_inner())
}

async fn assign(
    c: &mut GuildHallClient<Channel>,
    who: &TestUser,
    guild: &Guild,
    user: &TestUser,
    role: &str,
) -> Result<(), tonic::Status> {
    c.assign_role(authed(
        &who.token,
        pb::AssignRoleRequest {
            guild_id: guild.id.clone(),
            user_id: user.user.id.clone(),
            role_id: role.into(),
        },
    ))
    .await
    .map(|_| ())
}

#[tokio::test]
async fn owner_creates_and_shapes_a_guild() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let mut c = node.client().await;
    let g = create_guild(&mut c, &ada, "  Analytical   Engines ").await;

    let guilds = c
        .list_guilds(authed(&ada.token, pb::ListGuildsRequest {}))
        .await
        .expect("list")
        .into_inner()
        .guilds;
    assert_eq!(guilds.len(), 1);
    assert_eq!(guilds[0].name, "Analytical Engines");
    assert_eq!(guilds[0].owner_id, ada.user.id);

    let perms = c
        .get_my_permissions(authed(
            &ada.token,
            pb::GetMyPermissionsRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await
        .expect("perms")
        .into_inner()
        .permissions;
    assert!(
        perms.contains(&"administrator".to_owned()) && perms.contains(&"members.ban".to_owned())
    );

    let roles = c
        .list_roles(authed(
            &ada.token,
            pb::ListRolesRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await
        .expect("roles")
        .into_inner()
        .roles;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].id, g.id, "the default role has the guild's id");

    let folder = c
        .create_folder(authed(
            &ada.token,
            pb::CreateFolderRequest {
                guild_id: g.id.clone(),
                parent_folder_id: String::new(),
                name: "Projects".into(),
            },
        ))
        .await
        .expect("folder")
        .into_inner();
    let channel = c
        .create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: g.id.clone(),
                folder_id: folder.id.clone(),
                name: "Difference engine".into(),
                irc_name: Some("diff-engine".into()),
            },
        ))
        .await
        .expect("channel")
        .into_inner();
    assert_eq!(channel.folder_id, folder.id);
    let folders = c
        .list_folders(authed(
            &ada.token,
            pb::ListFoldersRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await
        .expect("folders")
        .into_inner()
        .folders;
    assert_eq!(folders.len(), 1);

    let renamed = c
        .update_channel(authed(
            &ada.token,
            pb::UpdateChannelRequest {
                channel_id: channel.id.clone(),
                name: Some("Engine".into()),
                folder_id: Some(String::new()),
                irc_name: None,
                position: Some(3),
            },
        ))
        .await
        .expect("update channel")
        .into_inner();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.folder_id.as_str(),
            renamed.position
        ),
        ("Engine", "", 3)
    );
    assert_eq!(renamed.irc_name, "diff-engine");

    assert_status(
        c.create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: g.id.clone(),
                folder_id: String::new(),
                name: "Dup".into(),
                irc_name: Some("diff-engine".into()),
            },
        ))
        .await,
        Code::AlreadyExists,
        "irc_name",
    );
    assert_status(
        c.create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: g.id.clone(),
                folder_id: "nope".into(),
                name: "X".into(),
                irc_name: None,
            },
        ))
        .await,
        Code::InvalidArgument,
        "folder_id",
    );
    assert_status(
        c.create_guild(authed(
            &ada.token,
            pb::CreateGuildRequest {
                name: " ".into(),
                avatar_url: None,
            },
        ))
        .await,
        Code::InvalidArgument,
        "name",
    );

    let updated = c
        .update_guild(authed(
            &ada.token,
            pb::UpdateGuildRequest {
                guild_id: g.id.clone(),
                name: Some("Engines".into()),
                avatar_url: Some("https://example.org/e.png".into()),
            },
        ))
        .await
        .expect("update guild")
        .into_inner();
    assert_eq!(updated.name, "Engines");
    assert_eq!(updated.avatar_url, "https://example.org/e.png");
}

#[tokio::test]
async fn invites_join_preview_limits_and_deactivation() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let mut c = node.client().await;
    let g = create_guild(&mut c, &ada, "Lovelace").await;

    let preview = c
        .preview_invite(pb::PreviewInviteRequest {
            token: g.invite.clone(),
        })
        .await
        .expect("preview")
        .into_inner();
    assert_eq!(
        (preview.guild_id.as_str(), preview.member_count),
        (g.id.as_str(), 1)
    );
    assert_eq!(preview.channel_name, "general");

    let bob_token = join(&node, &bob, &g.invite).await.expect("bob joins");
    assert_eq!(
        members(&mut c, &ada, &g).await,
        [ada.user.id.clone(), bob.user.id.clone()]
    );
    // The join's session works, and joining again changes nothing.
    c.list_guilds(authed(&bob_token, pb::ListGuildsRequest {}))
        .await
        .expect("bob's new session");
    join(&node, &bob, &g.invite)
        .await
        .expect("joining twice is harmless");
    assert_eq!(members(&mut c, &ada, &g).await.len(), 2);

    // A one-use invite.
    let once = c
        .generate_invite(authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: g.general.clone(),
                max_age_secs: Some(0),
                max_uses: Some(1),
                allow_registration: false,
            },
        ))
        .await
        .expect("invite")
        .into_inner()
        .token;
    let carol = register(&node, "Carol").await;
    let dave = register(&node, "Dave").await;
    join(&node, &carol, &once).await.expect("first use");
    assert_status(
        join(&node, &dave, &once).await,
        Code::FailedPrecondition,
        "maximum uses",
    );

    // A short-lived invite expires.
    let short = c
        .generate_invite(authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: g.general.clone(),
                max_age_secs: Some(1),
                max_uses: None,
                allow_registration: false,
            },
        ))
        .await
        .expect("invite")
        .into_inner()
        .token;
    let mut probe = node.client().await;
    wait_for(Duration::from_secs(5), || {
        let token = short.clone();
        let mut probe = probe.clone();
        async move {
            probe
                .preview_invite(pb::PreviewInviteRequest { token })
                .await
                .is_err()
        }
    })
    .await;
    assert_status(
        probe
            .preview_invite(pb::PreviewInviteRequest {
                token: short.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "expired",
    );
    assert_status(
        join(&node, &dave, &short).await,
        Code::FailedPrecondition,
        "expired",
    );

    // Deactivation, and who may list and deactivate.
    let listed = c
        .list_invites(authed(
            &ada.token,
            pb::ListInvitesRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .invites;
    assert_eq!(listed.len(), 3);
    assert_status(
        c.list_invites(authed(
            &bob.token,
            pb::ListInvitesRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "invites.manage",
    );
    assert_status(
        c.deactivate_invite(authed(
            &bob.token,
            pb::DeactivateInviteRequest {
                guild_id: g.id.clone(),
                token: g.invite.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "invites.manage",
    );
    c.deactivate_invite(authed(
        &ada.token,
        pb::DeactivateInviteRequest {
            guild_id: g.id.clone(),
            token: g.invite.clone(),
        },
    ))
    .await
    .expect("deactivate");
    assert_status(
        join(&node, &dave, &g.invite).await,
        Code::FailedPrecondition,
        "deactivated",
    );
    assert_status(
        join(&node, &dave, "no-such-invite").await,
        Code::NotFound,
        "token",
    );
    assert_eq!(
        members(&mut c, &ada, &g).await.len(),
        3,
        "refused joins changed nothing"
    );

    // Bad invite parameters.
    assert_status(
        c.generate_invite(authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: g.general.clone(),
                max_age_secs: None,
                max_uses: Some(-1),
                allow_registration: false,
            },
        ))
        .await,
        Code::InvalidArgument,
        "max_uses",
    );
    assert_status(
        c.generate_invite(authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: g.general.clone(),
                max_age_secs: Some(10 * 365 * 24 * 3600),
                max_uses: None,
                allow_registration: false,
            },
        ))
        .await,
        Code::InvalidArgument,
        "max_age_secs",
    );
}

#[tokio::test]
async fn join_invite_refusals_change_nothing() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let mut c = node.client().await;
    let g = create_guild(&mut c, &ada, "Lovelace").await;
    let aud = node.audience();

    let mut forged = bob
        .identity
        .join_invite_request(&aud, &g.invite, "Bob", now_ms());
    forged.display_name = "Mallory".into();
    assert_status(
        c.join_invite(forged).await,
        Code::Unauthenticated,
        "signature",
    );
    let elsewhere = bob.identity.join_invite_request(
        &guildhall::identity::SecretKey::generate().public(),
        &g.invite,
        "Bob",
        now_ms(),
    );
    assert_status(
        c.join_invite(elsewhere).await,
        Code::Unauthenticated,
        "signature",
    );
    let stale = bob
        .identity
        .join_invite_request(&aud, &g.invite, "Bob", now_ms() - 600_000);
    assert_status(
        c.join_invite(stale).await,
        Code::Unauthenticated,
        "timestamp",
    );
    let mut remote = bob
        .identity
        .join_invite_request(&aud, &g.invite, "Bob", now_ms());
    // The signature covers homeserver_url: it can't be changed after signing (remote joins that
    // are signed as such are tested in tests/federation_members.rs).
    remote.homeserver_url = "https://elsewhere.example".into();
    assert_status(
        c.join_invite(remote).await,
        Code::Unauthenticated,
        "signature",
    );
    assert_eq!(members(&mut c, &ada, &g).await.len(), 1);

    let request = bob
        .identity
        .join_invite_request(&aud, &g.invite, "Bob", now_ms());
    c.join_invite(request.clone()).await.expect("join");
    assert_status(
        c.join_invite(request).await,
        Code::Unauthenticated,
        "already used",
    );

    // A newcomer is registered by the join itself.
    let newcomer = common::new_identity("phone");
    let reply = c
        .join_invite(newcomer.join_invite_request(&aud, &g.invite, "New  Person", now_ms()))
        .await
        .expect("newcomer")
        .into_inner();
    let me = c
        .get_my_data(authed(&reply.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(me.name, "New Person");
}

#[tokio::test]
async fn outsiders_and_members_without_permission_are_refused() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let eve = register(&node, "Eve").await;
    let mut c = node.client().await;
    let g = create_guild(&mut c, &ada, "Lovelace").await;
    join(&node, &bob, &g.invite).await.expect("join");

    // Eve is not a member: she sees nothing.
    assert_status(
        c.list_channels(authed(
            &eve.token,
            pb::ListChannelsRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_status(
        c.list_roles(authed(
            &eve.token,
            pb::ListRolesRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_status(
        c.list_guild_members(authed(
            &eve.token,
            pb::ListGuildMembersRequest {
                guild_id: g.id.clone(),
                limit: 0,
                offset: 0,
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_status(
        c.generate_invite(authed(
            &eve.token,
            pb::GenerateInviteRequest {
                channel_id: g.general.clone(),
                max_age_secs: None,
                max_uses: None,
                allow_registration: false,
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_status(
        c.list_channels(authed(
            &eve.token,
            pb::ListChannelsRequest {
                guild_id: "404".into(),
            },
        ))
        .await,
        Code::NotFound,
        "guild_id",
    );

    // Bob is a plain member.
    for (result, needle) in [
        (
            c.create_channel(authed(
                &bob.token,
                pb::CreateChannelRequest {
                    guild_id: g.id.clone(),
                    folder_id: String::new(),
                    name: "x".into(),
                    irc_name: None,
                },
            ))
            .await
            .map(|_| ()),
            "channels.manage",
        ),
        (
            c.create_folder(authed(
                &bob.token,
                pb::CreateFolderRequest {
                    guild_id: g.id.clone(),
                    parent_folder_id: String::new(),
                    name: "x".into(),
                },
            ))
            .await
            .map(|_| ()),
            "channels.manage",
        ),
        (
            c.update_guild(authed(
                &bob.token,
                pb::UpdateGuildRequest {
                    guild_id: g.id.clone(),
                    name: Some("Mine".into()),
                    avatar_url: None,
                },
            ))
            .await
            .map(|_| ()),
            "guild.manage",
        ),
        (
            create_role(&mut c, &bob, &g, "x", 1, &[]).await.map(|_| ()),
            "roles.manage",
        ),
        (
            c.kick_user(authed(
                &bob.token,
                pb::KickUserRequest {
                    guild_id: g.id.clone(),
                    user_id: ada.user.id.clone(),
                    reason: String::new(),
                },
            ))
            .await
            .map(|_| ()),
            "members.kick",
        ),
        (
            c.ban_user(authed(
                &bob.token,
                pb::BanUserRequest {
                    guild_id: g.id.clone(),
                    user_id: ada.user.id.clone(),
                    reason: String::new(),
                },
            ))
            .await
            .map(|_| ()),
            "members.ban",
        ),
        (
            c.list_server_guilds(authed(
                &bob.token,
                pb::ListServerGuildsRequest {
                    limit: 0,
                    offset: 0,
                },
            ))
            .await
            .map(|_| ()),
            "server admins",
        ),
    ] {
        assert_status(result, Code::PermissionDenied, needle);
    }
    // Bob may still invite (the default role allows it).
    c.generate_invite(authed(
        &bob.token,
        pb::GenerateInviteRequest {
            channel_id: g.general.clone(),
            max_age_secs: None,
            max_uses: None,
            allow_registration: false,
        },
    ))
    .await
    .expect("members may invite");
}

#[tokio::test]
async fn role_hierarchy_cannot_be_escaped() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let carol = register(&node, "Carol").await;
    let mut c = node.client().await;
    let g = create_guild(&mut c, &ada, "Lovelace").await;
    join(&node, &bob, &g.invite).await.expect("join");
    join(&node, &carol, &g.invite).await.expect("join");

    let admin = create_role(&mut c, &ada, &g, "Admin", 20, &["administrator"])
        .await
        .expect("admin role");
    let moderator = create_role(
        &mut c,
        &ada,
        &g,
        "Moderator",
        10,
        &["roles.manage", "members.kick", "messages.read"],
    )
    .await
    .expect("mod role");
    assign(&mut c, &ada, &g, &bob, &moderator.id)
        .await
        .expect("bob is a moderator");

    // Bob can't create roles at or above his own rank, or grant what he lacks.
    assert_status(
        create_role(&mut c, &bob, &g, "Peer", 10, &[]).await,
        Code::PermissionDenied,
        "below your highest role",
    );
    assert_status(
        create_role(&mut c, &bob, &g, "Banner", 5, &["members.ban"]).await,
        Code::PermissionDenied,
        "members.ban",
    );
    let helper = create_role(&mut c, &bob, &g, "Helper", 5, &["members.kick"])
        .await
        .expect("a lower role with what Bob holds");
    // Nor inherit from a role above him to smuggle permissions in.
    let mut sneaky = pb::CreateRoleRequest {
        guild_id: g.id.clone(),
        name: "Sneaky".into(),
        color: String::new(),
        position: 4,
        permissions: vec![],
        parent_role_ids: vec![admin.id.clone()],
    };
    assert_status(
        c.create_role(authed(&bob.token, sneaky.clone())).await,
        Code::PermissionDenied,
        "you cannot grant",
    );
    sneaky.parent_role_ids = vec![helper.id.clone()];
    c.create_role(authed(&bob.token, sneaky))
        .await
        .expect("inheriting from a lower role is fine");

    // Bob can't edit, delete or assign his own role or higher ones.
    let edit = |role: &pb::Role, position: i32| pb::UpdateRoleRequest {
        role_id: role.id.clone(),
        guild_id: g.id.clone(),
        name: role.name.clone(),
        color: role.color.clone(),
        position,
        permissions: role.permissions.clone(),
        parent_role_ids: role.parent_role_ids.clone(),
    };
    assert_status(
        c.update_role(authed(&bob.token, edit(&moderator, 9))).await,
        Code::PermissionDenied,
        "not below your highest role",
    );
    assert_status(
        c.update_role(authed(&bob.token, edit(&helper, 15))).await,
        Code::PermissionDenied,
        "below your highest role",
    );
    assert_status(
        c.delete_role(authed(
            &bob.token,
            pb::DeleteRoleRequest {
                guild_id: g.id.clone(),
                role_id: admin.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "not below",
    );
    assert_status(
        assign(&mut c, &bob, &g, &carol, &admin.id).await,
        Code::PermissionDenied,
        "not below",
    );
    assert_status(
        assign(&mut c, &bob, &g, &bob, &moderator.id).await,
        Code::PermissionDenied,
        "not below",
    );
    assign(&mut c, &bob, &g, &carol, &helper.id)
        .await
        .expect("Bob assigns a lower role");

    // Kicking follows rank: Carol (Helper, 5) can't kick Bob (10); Bob can kick Carol; nobody kicks the owner.
    assert_status(
        c.kick_user(authed(
            &carol.token,
            pb::KickUserRequest {
                guild_id: g.id.clone(),
                user_id: bob.user.id.clone(),
                reason: String::new(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "not below yours",
    );
    assert_status(
        c.kick_user(authed(
            &bob.token,
            pb::KickUserRequest {
                guild_id: g.id.clone(),
                user_id: ada.user.id.clone(),
                reason: String::new(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "owner",
    );
    c.kick_user(authed(
        &bob.token,
        pb::KickUserRequest {
            guild_id: g.id.clone(),
            user_id: carol.user.id.clone(),
            reason: "spam".into(),
        },
    ))
    .await
    .expect("kick");
    assert!(!members(&mut c, &ada, &g).await.contains(&carol.user.id));

    // Cycles are refused; the default role can't be deleted or assigned.
    let a = create_role(&mut c, &ada, &g, "A", 3, &[]).await.expect("a");
    let b = c
        .create_role(authed(
            &ada.token,
            pb::CreateRoleRequest {
                guild_id: g.id.clone(),
                name: "B".into(),
                color: String::new(),
                position: 2,
                permissions: vec![],
                parent_role_ids: vec![a.id.clone()],
            },
        ))
        .await
        .expect("b")
        .into_inner();
    let mut cyclic = edit(&a, 3);
    cyclic.parent_role_ids = vec![b.id.clone()];
    assert_status(
        c.update_role(authed(&ada.token, cyclic)).await,
        Code::InvalidArgument,
        "inherit from itself",
    );
    assert_status(
        c.delete_role(authed(
            &ada.token,
            pb::DeleteRoleRequest {
                guild_id: g.id.clone(),
                role_id: g.id.clone(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "default role",
    );
    assert_status(
        create_role(&mut c, &ada, &g, "Bad", 1, &["root"]).await,
        Code::InvalidArgument,
        "permissions[0]",
    );
    assert_status(
        create_role(&mut c, &ada, &g, "Zero", 0, &[]).await,
        Code::InvalidArgument,
        "position",
    );

    // A batch is all or nothing.
    let batch = pb::BatchUpdateRolesRequest {
        guild_id: g.id.clone(),
        roles: vec![
            pb::Role {
                id: a.id.clone(),
                guild_id: g.id.clone(),
                name: "A2".into(),
                color: String::new(),
                position: 3,
                permissions: vec![],
                parent_role_ids: vec![],
            },
            pb::Role {
                id: b.id.clone(),
                guild_id: g.id.clone(),
                name: "B2".into(),
                color: "purple".into(),
                position: 2,
                permissions: vec![],
                parent_role_ids: vec![],
            },
        ],
    };
    assert_status(
        c.batch_update_roles(authed(&ada.token, batch)).await,
        Code::InvalidArgument,
        "roles[1].color",
    );
    let roles = c
        .list_roles(authed(
            &ada.token,
            pb::ListRolesRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await
        .expect("roles")
        .into_inner()
        .roles;
    assert!(
        roles.iter().any(|r| r.name == "A"),
        "the failed batch changed nothing"
    );

    // Deleting a role removes it from members and from children.
    c.delete_role(authed(
        &ada.token,
        pb::DeleteRoleRequest {
            guild_id: g.id.clone(),
            role_id: a.id.clone(),
        },
    ))
    .await
    .expect("delete");
    let roles = c
        .list_roles(authed(
            &ada.token,
            pb::ListRolesRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await
        .expect("roles")
        .into_inner()
        .roles;
    assert!(
        roles
            .iter()
            .all(|r| r.id != a.id && !r.parent_role_ids.contains(&a.id))
    );
}

#[tokio::test]
async fn bans_remove_and_keep_out() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let mut c = node.client().await;
    let g = create_guild(&mut c, &ada, "Lovelace").await;
    join(&node, &bob, &g.invite).await.expect("join");

    assert_status(
        c.ban_user(authed(
            &ada.token,
            pb::BanUserRequest {
                guild_id: g.id.clone(),
                user_id: "nope".into(),
                reason: String::new(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_status(
        c.ban_user(authed(
            &ada.token,
            pb::BanUserRequest {
                guild_id: g.id.clone(),
                user_id: ada.user.id.clone(),
                reason: String::new(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "yourself",
    );
    c.ban_user(authed(
        &ada.token,
        pb::BanUserRequest {
            guild_id: g.id.clone(),
            user_id: bob.user.id.clone(),
            reason: "abuse".into(),
        },
    ))
    .await
    .expect("ban");
    assert_eq!(members(&mut c, &ada, &g).await, vec![ada.user.id.clone()]);
    let fresh = c
        .generate_invite(authed(
            &ada.token,
            pb::GenerateInviteRequest {
                channel_id: g.general.clone(),
                max_age_secs: None,
                max_uses: None,
                allow_registration: false,
            },
        ))
        .await
        .expect("invite")
        .into_inner()
        .token;
    assert_status(
        join(&node, &bob, &fresh).await,
        Code::PermissionDenied,
        "banned",
    );
    assert_status(
        c.list_channels(authed(
            &bob.token,
            pb::ListChannelsRequest {
                guild_id: g.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
}

#[tokio::test]
async fn server_admins_list_every_guild() {
    let admin_identity = common::new_identity("phone");
    let admin_id = admin_identity.user_id();
    let node = TestNode::spawn_with(|c| c.admins = vec![admin_id]).await;
    let reply = node
        .client()
        .await
        .register(admin_identity.register_request(&node.audience(), "Root", None, now_ms()))
        .await
        .expect("register admin")
        .into_inner();
    assert!(reply.user.expect("user").is_server_admin);
    let ada = register(&node, "Ada").await;
    let mut c = node.client().await;
    create_guild(&mut c, &ada, "One").await;
    create_guild(&mut c, &ada, "Two").await;
    let listed = c
        .list_server_guilds(authed(
            &reply.token,
            pb::ListServerGuildsRequest {
                limit: 1,
                offset: 0,
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.guilds.len(), 1);
    assert_eq!(listed.guilds[0].member_count, 1);
    assert_eq!(listed.guilds[0].channel_count, 1);
    assert_status(
        c.list_server_guilds(authed(
            &reply.token,
            pb::ListServerGuildsRequest {
                limit: 5000,
                offset: 0,
            },
        ))
        .await,
        Code::InvalidArgument,
        "limit",
    );
}

/// Folders are renamed, moved (never under themselves) and deleted by members with
/// `channels.manage`; a deleted folder's channels and folders move up to its parent, and members
/// hear every change (`folder_updated`, `channel_updated`).
#[tokio::test]
async fn folders_are_renamed_moved_and_deleted_without_losing_channels() {
    let node = TestNode::spawn().await;
    let mut c = node.client().await;
    let ada = register(&node, "Ada").await;
    let guild = create_guild(&mut c, &ada, "Rooms").await;
    let bob = register(&node, "Bob").await;
    join(&node, &bob, &guild.invite).await.expect("bob joins");
    let mut events = common::subscribe(&node, &bob.token).await;
    let folder = |parent: &str, name: &str| pb::CreateFolderRequest {
        guild_id: guild.id.clone(),
        parent_folder_id: parent.into(),
        name: name.into(),
    };
    let outer = c
        .create_folder(authed(&ada.token, folder("", "Outer")))
        .await
        .expect("outer")
        .into_inner();
    let inner = c
        .create_folder(authed(&ada.token, folder(&outer.id, "Inner")))
        .await
        .expect("inner")
        .into_inner();
    // Creating a folder is heard at once.
    let made = common::until(&mut events, |e| match e {
        pb::stream_response::Event::FolderUpdated(f) => f.folder.clone(),
        _ => None,
    })
    .await;
    assert_eq!(made.id, outer.id);
    let channel = c
        .create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: guild.id.clone(),
                folder_id: outer.id.clone(),
                name: "kept".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("channel")
        .into_inner();

    let update = |folder_id: &str| pb::UpdateFolderRequest {
        guild_id: guild.id.clone(),
        folder_id: folder_id.into(),
        ..Default::default()
    };
    // Renamed; a bad name, a folder under itself or under its own child, an unknown parent or
    // folder, and a member without channels.manage are refused.
    let renamed = c
        .update_folder(authed(
            &ada.token,
            pb::UpdateFolderRequest {
                name: Some("Outside".into()),
                ..update(&outer.id)
            },
        ))
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.parent_folder_id.as_str()),
        ("Outside", "")
    );
    for (request, code, needle) in [
        (
            pb::UpdateFolderRequest {
                name: Some("  ".into()),
                ..update(&outer.id)
            },
            Code::InvalidArgument,
            "name:",
        ),
        (
            pb::UpdateFolderRequest {
                parent_folder_id: Some(outer.id.clone()),
                ..update(&outer.id)
            },
            Code::InvalidArgument,
            "parent_folder_id: must not be the folder itself",
        ),
        (
            pb::UpdateFolderRequest {
                parent_folder_id: Some(inner.id.clone()),
                ..update(&outer.id)
            },
            Code::InvalidArgument,
            "parent_folder_id: must not be the folder itself or a folder inside it",
        ),
        (
            pb::UpdateFolderRequest {
                parent_folder_id: Some("nope".into()),
                ..update(&outer.id)
            },
            Code::InvalidArgument,
            "parent_folder_id: is not a folder of this guild",
        ),
        (update("nope"), Code::NotFound, "folder_id:"),
    ] {
        assert_status(
            c.update_folder(authed(&ada.token, request)).await,
            code,
            needle,
        );
    }
    assert_status(
        c.update_folder(authed(
            &bob.token,
            pb::UpdateFolderRequest {
                name: Some("Mine".into()),
                ..update(&outer.id)
            },
        ))
        .await,
        Code::PermissionDenied,
        "channels.manage",
    );
    assert_status(
        c.delete_folder(authed(
            &bob.token,
            pb::DeleteFolderRequest {
                guild_id: guild.id.clone(),
                folder_id: outer.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "channels.manage",
    );

    assert_status(
        c.delete_folder(authed(
            &ada.token,
            pb::DeleteFolderRequest {
                guild_id: guild.id.clone(),
                folder_id: "nope".into(),
            },
        ))
        .await,
        Code::NotFound,
        "folder_id:",
    );

    // Deleted: its channel and its inner folder move up to the top level.
    c.delete_folder(authed(
        &ada.token,
        pb::DeleteFolderRequest {
            guild_id: guild.id.clone(),
            folder_id: outer.id.clone(),
        },
    ))
    .await
    .expect("delete");
    let folders = c
        .list_folders(authed(
            &bob.token,
            pb::ListFoldersRequest {
                guild_id: guild.id.clone(),
            },
        ))
        .await
        .expect("folders")
        .into_inner()
        .folders;
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert_eq!(
        (folders[0].id.as_str(), folders[0].parent_folder_id.as_str()),
        (inner.id.as_str(), "")
    );
    let channels = c
        .list_channels(authed(
            &bob.token,
            pb::ListChannelsRequest {
                guild_id: guild.id.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels;
    let kept = channels
        .iter()
        .find(|ch| ch.id == channel.id)
        .expect("the channel is kept");
    assert_eq!(kept.folder_id, "");
    // Bob heard the channel move, the inner folder move and the deletion.
    let moved = common::until(&mut events, |e| match e {
        pb::stream_response::Event::ChannelUpdated(u) => u.channel.clone(),
        _ => None,
    })
    .await;
    assert_eq!(
        (moved.id.as_str(), moved.folder_id.as_str()),
        (channel.id.as_str(), "")
    );
    let deleted = common::until(&mut events, |e| match e {
        pb::stream_response::Event::FolderUpdated(f) if f.deleted => f.folder.clone(),
        _ => None,
    })
    .await;
    assert_eq!(deleted.id, outer.id);
}
