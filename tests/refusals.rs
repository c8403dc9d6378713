//! Refusals not covered by the feature tests: each sends the bad thing and checks the status, the
//! field named, and (where a change could slip through) that nothing changed.

mod common;

use common::{
    TestNode, TestUser, assert_status, authed, create_room, join_room, new_identity, register,
};
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

fn text(channel: &str, text: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        channel_id: channel.into(),
        text: text.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn channel_folder_and_thread_refusals() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "R").await;
    let mut c = node.client().await;
    assert_status(
        c.update_channel(authed(
            &ada.token,
            pb::UpdateChannelRequest {
                channel_id: room.channel.clone(),
                position: Some(-1),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "position",
    );
    assert_status(
        c.create_folder(authed(
            &ada.token,
            pb::CreateFolderRequest {
                guild_id: room.guild.clone(),
                parent_folder_id: "404".into(),
                name: "F".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "parent_folder_id",
    );
    assert!(
        c.list_folders(authed(
            &ada.token,
            pb::ListFoldersRequest {
                guild_id: room.guild.clone()
            }
        ))
        .await
        .expect("folders")
        .into_inner()
        .folders
        .is_empty()
    );

    let root = c
        .send_message(authed(&ada.token, text(&room.channel, "root")))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("m");
    assert_status(
        c.create_thread(authed(
            &ada.token,
            pb::CreateThreadRequest {
                parent_channel_id: room.channel.clone(),
                root_message_id: root.id.clone(),
                name: " ".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "name",
    );
    let thread = c
        .create_thread(authed(
            &ada.token,
            pb::CreateThreadRequest {
                parent_channel_id: room.channel.clone(),
                root_message_id: root.id.clone(),
                name: "T".into(),
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    let in_thread = c
        .send_message(authed(&ada.token, text(&thread.id, "inside")))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("m");
    assert_status(
        c.create_thread(authed(
            &ada.token,
            pb::CreateThreadRequest {
                parent_channel_id: thread.id.clone(),
                root_message_id: in_thread.id,
                name: "Nested".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "parent_channel_id",
    );
    // A message of another channel can't be pinned through this one.
    assert_status(
        c.pin_message(authed(
            &ada.token,
            pb::PinMessageRequest {
                channel_id: thread.id.clone(),
                message_id: root.id,
            },
        ))
        .await,
        Code::NotFound,
        "message_id",
    );
}

#[tokio::test]
async fn message_field_limits() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "R").await;
    let mut c = node.client().await;
    let mut too_much = text(&room.channel, "x");
    too_much.metadata = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    assert_status(
        c.send_message(authed(&ada.token, too_much)).await,
        Code::InvalidArgument,
        "metadata",
    );
    let mut long_key = text(&room.channel, "x");
    long_key.idempotency_key = "k".repeat(129);
    assert_status(
        c.send_message(authed(&ada.token, long_key)).await,
        Code::InvalidArgument,
        "idempotency_key",
    );

    let target = c
        .send_message(authed(&ada.token, text(&room.channel, "react")))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("m");
    let react = |emoji: String| {
        authed(
            &ada.token,
            pb::SendMessageRequest {
                channel_id: room.channel.clone(),
                reaction: Some(pb::ReactionContent {
                    message_id: target.id.clone(),
                    emoji,
                    r#type: pb::ReactionType::Add as i32,
                }),
                ..Default::default()
            },
        )
    };
    for i in 0..50 {
        c.send_message(react(format!("e{i}")))
            .await
            .expect("within the cap");
    }
    assert_status(
        c.send_message(react("e50".into())).await,
        Code::FailedPrecondition,
        "at most 50",
    );

    for (limit, offset, needle) in [(101, 0, "limit"), (0, 10_001, "offset")] {
        assert_status(
            c.search_messages(authed(
                &ada.token,
                pb::SearchMessagesRequest {
                    channel_id: room.channel.clone(),
                    query: "x".into(),
                    limit,
                    offset,
                },
            ))
            .await,
            Code::InvalidArgument,
            needle,
        );
    }
    let history = c
        .get_history(authed(
            &ada.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                cursor: String::new(),
                limit: 0,
                reverse: false,
            },
        ))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.messages.len(), 1, "refused sends stored nothing");
}

#[tokio::test]
async fn role_and_moderation_refusals() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let eve = register(&node, "Eve").await;
    let room = create_room(&node, &ada, "R").await;
    join_room(&node, &bob, &room.invite).await;
    let mut c = node.client().await;
    let role = c
        .create_role(authed(
            &ada.token,
            pb::CreateRoleRequest {
                guild_id: room.guild.clone(),
                name: "Mod".into(),
                color: String::new(),
                position: 5,
                permissions: vec![],
                parent_role_ids: vec![],
            },
        ))
        .await
        .expect("role")
        .into_inner();
    assert_status(
        c.assign_role(authed(
            &ada.token,
            pb::AssignRoleRequest {
                guild_id: room.guild.clone(),
                user_id: eve.user.id.clone(),
                role_id: role.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "not a member",
    );
    assert_status(
        c.assign_role(authed(
            &ada.token,
            pb::AssignRoleRequest {
                guild_id: room.guild.clone(),
                user_id: bob.user.id.clone(),
                role_id: room.guild.clone(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "default role",
    );
    assert_status(
        c.batch_update_roles(authed(
            &ada.token,
            pb::BatchUpdateRolesRequest {
                guild_id: room.guild.clone(),
                roles: vec![pb::Role {
                    name: "X".into(),
                    position: 1,
                    ..Default::default()
                }],
            },
        ))
        .await,
        Code::InvalidArgument,
        "roles[0].id",
    );
    assert_status(
        c.update_role(authed(
            &ada.token,
            pb::UpdateRoleRequest {
                guild_id: room.guild.clone(),
                name: "X".into(),
                position: 1,
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "role_id",
    );
    assert_status(
        c.kick_user(authed(
            &ada.token,
            pb::KickUserRequest {
                guild_id: room.guild.clone(),
                user_id: bob.user.id.clone(),
                reason: "r".repeat(513),
            },
        ))
        .await,
        Code::InvalidArgument,
        "reason",
    );

    // A member with only the default role can't edit it, even when it grants roles.manage.
    let default_role = |permissions: Vec<String>| pb::UpdateRoleRequest {
        role_id: room.guild.clone(),
        guild_id: room.guild.clone(),
        name: "@everyone".into(),
        color: String::new(),
        position: 0,
        permissions,
        parent_role_ids: vec![],
    };
    let with_manage = vec![
        "messages.read".to_owned(),
        "messages.send".to_owned(),
        "roles.manage".to_owned(),
    ];
    c.update_role(authed(&ada.token, default_role(with_manage)))
        .await
        .expect("owner edits the default role");
    assert_status(
        c.update_role(authed(&bob.token, default_role(vec![])))
            .await,
        Code::PermissionDenied,
        "only members with a role",
    );

    let members = c
        .list_guild_members(authed(
            &ada.token,
            pb::ListGuildMembersRequest {
                guild_id: room.guild.clone(),
                limit: 0,
                offset: 0,
            },
        ))
        .await
        .expect("members")
        .into_inner();
    assert_eq!(members.total, 2, "the refused kick changed nothing");
}

#[tokio::test]
async fn invite_join_and_dm_refusals() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let carol = register(&node, "Carol").await;
    let room = create_room(&node, &ada, "R").await;
    let mut c = node.client().await;
    assert_status(
        c.preview_invite(pb::PreviewInviteRequest {
            token: "nope".into(),
        })
        .await,
        Code::NotFound,
        "token",
    );

    let newcomer = new_identity("phone");
    let bad_name =
        newcomer.join_invite_request(&node.audience(), &room.invite, "everyone", now_ms());
    assert_status(
        c.join_invite(bad_name).await,
        Code::InvalidArgument,
        "display_name",
    );
    let mut bad_avatar =
        newcomer.join_invite_request(&node.audience(), &room.invite, "New", now_ms());
    bad_avatar.avatar_url = "not a url".into();
    assert_status(
        c.join_invite(bad_avatar).await,
        Code::InvalidArgument,
        "avatar_url",
    );
    let preview = c
        .preview_invite(pb::PreviewInviteRequest {
            token: room.invite.clone(),
        })
        .await
        .expect("preview")
        .into_inner();
    assert_eq!(preview.member_count, 1, "refused joins added nobody");

    c.create_dm(authed(
        &ada.token,
        pb::CreateDmRequest {
            target_user_id: bob.user.id.clone(),
        },
    ))
    .await
    .expect("dm");
    let invite_id = c
        .list_dm_invites(authed(&bob.token, pb::ListDmInvitesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .invites[0]
        .invite_id
        .clone();
    assert_status(
        c.reject_dm_invite(authed(
            &carol.token,
            pb::RejectDmInviteRequest {
                invite_id: invite_id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "invite_id",
    );
    c.reject_dm_invite(authed(
        &bob.token,
        pb::RejectDmInviteRequest {
            invite_id: invite_id.clone(),
        },
    ))
    .await
    .expect("reject");
    assert_status(
        c.accept_dm_invite(authed(&bob.token, pb::AcceptDmInviteRequest { invite_id }))
            .await,
        Code::FailedPrecondition,
        "already rejected",
    );
    assert_status(
        c.accept_dm_invite(authed(
            &bob.token,
            pb::AcceptDmInviteRequest {
                invite_id: String::new(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "invite_id",
    );
}

#[tokio::test]
async fn acknowledging_what_is_not_a_stored_message() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "R").await;
    let mut c = node.client().await;
    let mut stream = c
        .subscribe_events(authed(
            &ada.token,
            pb::SubscribeRequest {
                resume_from_event_id: "0".into(),
            },
        ))
        .await
        .expect("sub")
        .into_inner();
    let joined = stream.message().await.expect("ok").expect("event");
    assert_status(
        c.ack_message(authed(
            &ada.token,
            pb::AcknowledgeRequest {
                event_id: 0,
                status: 0,
            },
        ))
        .await,
        Code::InvalidArgument,
        "event_id",
    );
    assert_status(
        c.ack_message(authed(
            &ada.token,
            pb::AcknowledgeRequest {
                event_id: joined.event_id,
                status: 0,
            },
        ))
        .await,
        Code::InvalidArgument,
        "not a message_created",
    );
    c.send_message(authed(
        &ada.token,
        pb::SendMessageRequest {
            channel_id: room.channel.clone(),
            typing: Some(pb::TypingContent { is_typing: true }),
            ..Default::default()
        },
    ))
    .await
    .expect("typing");
    let typing = stream.message().await.expect("ok").expect("event");
    assert_status(
        c.ack_message(authed(
            &ada.token,
            pb::AcknowledgeRequest {
                event_id: typing.event_id,
                status: 0,
            },
        ))
        .await,
        Code::InvalidArgument,
        "typing",
    );
}

#[tokio::test]
async fn webhook_field_refusals() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "R").await;
    let mut c = node.client().await;
    assert_status(
        c.create_webhook(authed(
            &ada.token,
            pb::CreateWebhookRequest {
                channel_id: room.channel.clone(),
                name: "Hook".into(),
                avatar_url: Some("ftp://x".into()),
            },
        ))
        .await,
        Code::InvalidArgument,
        "avatar_url",
    );
    let hook = c
        .create_webhook(authed(
            &ada.token,
            pb::CreateWebhookRequest {
                channel_id: room.channel.clone(),
                name: "Hook".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("hook")
        .into_inner();
    assert_status(
        c.update_webhook(authed(
            &ada.token,
            pb::UpdateWebhookRequest {
                webhook_id: hook.id.clone(),
                name: Some("clyde".into()),
                avatar_url: None,
                channel_id: None,
            },
        ))
        .await,
        Code::InvalidArgument,
        "clyde",
    );
    let listed = c
        .list_webhooks(authed(
            &ada.token,
            pb::ListWebhooksRequest {
                guild_id: room.guild.clone(),
                channel_id: None,
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .webhooks;
    assert_eq!(listed[0].name, "Hook", "the refused update changed nothing");
}

async fn admin_node() -> (TestNode, TestUser) {
    let identity = new_identity("phone");
    let id = identity.user_id();
    let node = TestNode::spawn_with(|c| {
        c.admins = vec![id];
        c.settings = guildhall::limits::Settings::default();
    })
    .await;
    let reply = node
        .client()
        .await
        .register(identity.register_request(&node.audience(), "Root", None, now_ms()))
        .await
        .expect("admin")
        .into_inner();
    let admin = TestUser {
        identity,
        token: reply.token,
        refresh_token: reply.refresh_token,
        user: reply.user.expect("user"),
    };
    (node, admin)
}

#[tokio::test]
async fn admin_paging_and_the_remaining_rate_limits() {
    let (node, admin) = admin_node().await;
    let mut c = node.client().await;
    assert_status(
        c.list_server_guilds(authed(
            &admin.token,
            pb::ListServerGuildsRequest {
                limit: 0,
                offset: -1,
            },
        ))
        .await,
        Code::InvalidArgument,
        "offset",
    );
    let room = create_room(&node, &admin, "R").await;
    c.update_server_settings(authed(
        &admin.token,
        pb::UpdateServerSettingsRequest {
            login_rate_limit: Some(1),
            invite_rate_limit: Some(1),
            discovery_rate_limit: Some(1),
            ..Default::default()
        },
    ))
    .await
    .expect("settings");
    c.login(admin.identity.login_request(&node.audience(), now_ms()))
        .await
        .expect("first login");
    assert_status(
        c.login(admin.identity.login_request(&node.audience(), now_ms() + 1))
            .await,
        Code::ResourceExhausted,
        "login_rate_limit",
    );
    c.preview_invite(pb::PreviewInviteRequest {
        token: room.invite.clone(),
    })
    .await
    .expect("first preview");
    assert_status(
        c.preview_invite(pb::PreviewInviteRequest {
            token: room.invite.clone(),
        })
        .await,
        Code::ResourceExhausted,
        "discovery_rate_limit",
    );
    let invite = || {
        authed(
            &admin.token,
            pb::GenerateInviteRequest {
                channel_id: room.channel.clone(),
                max_age_secs: None,
                max_uses: None,
                allow_registration: false,
            },
        )
    };
    c.generate_invite(invite()).await.expect("first invite");
    assert_status(
        c.generate_invite(invite()).await,
        Code::ResourceExhausted,
        "invite_rate_limit",
    );
}

/// Control characters are refused in every text field of every request, by one check before any
/// handler runs (`api::text`), with the field named; line breaks and tabs are text only in
/// multi-line fields such as a message's.
#[tokio::test]
async fn control_characters_are_refused_in_every_text_field() {
    use guildhall::proto::protocol::profile::v1 as profile;
    use guildhall::proto::protocol::profile::v1::profile_service_client::ProfileServiceClient;
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "R").await;
    let mut c = node.client().await;
    const RULE: &str = "must not contain control characters";

    // A NUL in a search query used to reach the full-text engine and answer INTERNAL.
    for query in ["a\u{0}b", "\u{0}", "tab\tbed"] {
        assert_status(
            c.search_messages(authed(
                &ada.token,
                pb::SearchMessagesRequest {
                    channel_id: room.channel.clone(),
                    query: query.into(),
                    ..Default::default()
                },
            ))
            .await,
            Code::InvalidArgument,
            &format!("query: {RULE}"),
        );
    }
    // Message text keeps line breaks and tabs, nothing else.
    c.send_message(authed(
        &ada.token,
        text(&room.channel, "two\r\nlines\tand a tab"),
    ))
    .await
    .expect("multi-line text");
    for bad in ["bell\u{7}", "nul\u{0}", "esc\u{1b}[2J", "c1\u{9b}"] {
        assert_status(
            c.send_message(authed(&ada.token, text(&room.channel, bad)))
                .await,
            Code::InvalidArgument,
            &format!("text: {RULE}"),
        );
    }
    // Names and other one-line fields, in any service.
    assert_status(
        c.create_guild(authed(
            &ada.token,
            pb::CreateGuildRequest {
                name: "Evil\u{0}".into(),
                avatar_url: None,
            },
        ))
        .await,
        Code::InvalidArgument,
        &format!("name: {RULE}"),
    );
    assert_status(
        c.create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: room.guild.clone(),
                name: "line\nbreak".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        &format!("name: {RULE}"),
    );
    let eve = new_identity("phone");
    assert_status(
        c.register(eve.register_request(&node.audience(), "Eve\u{1b}[31m", None, now_ms()))
            .await,
        Code::InvalidArgument,
        &format!("display_name: {RULE}"),
    );
    let mut profiles = ProfileServiceClient::connect(format!("http://{}", node.node().grpc_addr))
        .await
        .expect("connect");
    assert_status(
        profiles
            .update_profile(authed(
                &ada.token,
                profile::UpdateProfileRequest {
                    new_user_name: Some("Ada\u{0}".into()),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        &format!("new_user_name: {RULE}"),
    );

    // Nothing changed: one message, one guild, one channel, Eve unknown, Ada's name as it was.
    let history = c
        .get_history(authed(
            &ada.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "two\r\nlines\tand a tab");
    let guilds = c
        .list_guilds(authed(&ada.token, pb::ListGuildsRequest {}))
        .await
        .expect("guilds")
        .into_inner()
        .guilds;
    assert_eq!(guilds.len(), 1);
    let channels = c
        .list_channels(authed(
            &ada.token,
            pb::ListChannelsRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels;
    assert_eq!(channels.len(), 1);
    let users = c
        .get_users(authed(
            &ada.token,
            pb::GetUsersRequest {
                user_ids: vec![eve.user_id(), ada.user.id.clone()],
                ..Default::default()
            },
        ))
        .await
        .expect("users")
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "Ada");
}
