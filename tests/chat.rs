//! The chat basics (docs/CHAT.md) over gRPC: editing one's message, leaving a guild, handing it
//! over, deleting channels and guilds, the events each sends, every refusal, and, across two
//! nodes, a member of another node editing on the host and the host telling that member's
//! homeserver when they leave or the guild is deleted.

mod common;

use std::time::Duration;

use common::*;
use guildhall::proto::guildhall::v1 as pb;
use pb::stream_response::Event;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

async fn edit(
    node: &TestNode,
    token: &str,
    channel: &str,
    message: &str,
    text: &str,
) -> Result<pb::Message, tonic::Status> {
    node.client()
        .await
        .edit_message(authed(
            token,
            pb::EditMessageRequest {
                channel_id: channel.into(),
                message_id: message.into(),
                text: text.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The texts in `channel`'s history, newest first, system messages left out.
async fn history_texts(node: &TestNode, token: &str, channel: &str) -> Vec<String> {
    node.client()
        .await
        .get_history(authed(
            token,
            pb::GetHistoryRequest {
                channel_id: channel.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages
        .into_iter()
        .filter(|m| m.action.is_none())
        .map(|m| m.text)
        .collect()
}

async fn search_count(node: &TestNode, token: &str, channel: &str, query: &str) -> u32 {
    node.client()
        .await
        .search_messages(authed(
            token,
            pb::SearchMessagesRequest {
                channel_id: channel.into(),
                query: query.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("search")
        .into_inner()
        .total
}

async fn guild_ids(node: &TestNode, token: &str) -> Vec<String> {
    node.client()
        .await
        .list_guilds(authed(token, pb::ListGuildsRequest {}))
        .await
        .expect("list guilds")
        .into_inner()
        .guilds
        .into_iter()
        .map(|g| g.id)
        .collect()
}

#[tokio::test]
async fn the_author_edits_a_message_and_readers_see_the_new_text() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Edits").await;
    let bob = register(&node, "Bob").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    let sent = send_text(&node, &bob_token, &room.channel, "teh quick fox").await;
    assert!(sent.edited_at.is_none());
    let mut watching = subscribe(&node, &owner.token).await;

    let edited = edit(&node, &bob_token, &room.channel, &sent.id, "the quick fox")
        .await
        .expect("the author edits");
    assert_eq!(edited.text, "the quick fox");
    assert_eq!(edited.id, sent.id);
    assert!(edited.edited_at.is_some(), "edited_at is stamped");
    let seen = until(&mut watching, |e| match e {
        Event::MessageUpdated(u) => u.message.clone().filter(|m| m.id == sent.id),
        _ => None,
    })
    .await;
    assert_eq!(seen.text, "the quick fox");
    assert!(seen.edited_at.is_some());
    assert_eq!(
        history_texts(&node, &owner.token, &room.channel).await,
        vec!["the quick fox".to_owned()]
    );
    // The search index follows the edit.
    assert_eq!(
        search_count(&node, &owner.token, &room.channel, "the").await,
        1
    );
    assert_eq!(
        search_count(&node, &owner.token, &room.channel, "teh").await,
        0
    );

    // Mentions are parsed again from the new text.
    let mention = format!("hello <@{}>", owner.user.id);
    let edited = edit(&node, &bob_token, &room.channel, &sent.id, &mention)
        .await
        .expect("edit with a mention");
    assert_eq!(edited.mentioned_user_ids, vec![owner.user.id.clone()]);

    // The same text again changes nothing: edited_at stays.
    let again = edit(&node, &bob_token, &room.channel, &sent.id, &mention)
        .await
        .expect("same text");
    assert_eq!(again.edited_at, edited.edited_at);

    // Refusals, each changing nothing.
    assert_status(
        edit(
            &node,
            &owner.token,
            &room.channel,
            &sent.id,
            "owner's words",
        )
        .await,
        Code::PermissionDenied,
        "only its author may edit",
    );
    assert_status(
        edit(&node, &bob_token, &room.channel, &sent.id, "").await,
        Code::InvalidArgument,
        "text: must not be empty",
    );
    assert_status(
        edit(&node, &bob_token, &room.channel, &"x".repeat(4001), "long").await,
        Code::InvalidArgument,
        "message_id: must be a message id",
    );
    assert_status(
        edit(
            &node,
            &bob_token,
            &room.channel,
            &sent.id,
            &"x".repeat(4001),
        )
        .await,
        Code::InvalidArgument,
        "text: must be at most 4000 characters",
    );
    assert_status(
        edit(&node, &bob_token, &room.channel, "12345", "nothing here").await,
        Code::NotFound,
        "message_id: no such message in this channel",
    );
    assert_status(
        edit(&node, &bob_token, &room.channel, &sent.id, "bad\u{7}bell").await,
        Code::InvalidArgument,
        "text",
    );
    let stranger = register(&node, "Stranger").await;
    assert_status(
        edit(&node, &stranger.token, &room.channel, &sent.id, "hijack").await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_eq!(
        history_texts(&node, &owner.token, &room.channel).await,
        vec![mention]
    );
}

#[tokio::test]
async fn a_member_leaves_and_the_owner_may_not() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let bob = register(&node, "Bob").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    let mut owner_sees = subscribe(&node, &owner.token).await;
    let mut bob_sees = subscribe(&node, &bob_token).await;

    let leave = |token: String, guild: String| {
        let node = &node;
        async move {
            node.client()
                .await
                .leave_guild(authed(&token, pb::LeaveGuildRequest { guild_id: guild }))
                .await
        }
    };
    assert_status(
        leave(owner.token.clone(), room.guild.clone()).await,
        Code::FailedPrecondition,
        "the owner can't leave",
    );
    assert_status(
        leave(bob_token.clone(), String::new()).await,
        Code::InvalidArgument,
        "guild_id: is required",
    );
    leave(bob_token.clone(), room.guild.clone())
        .await
        .expect("Bob leaves");
    for stream in [&mut owner_sees, &mut bob_sees] {
        until(stream, |e| match e {
            Event::MemberRemoved(m) if m.user_id == bob.user.id && m.guild_id == room.guild => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert!(
        !member_ids(&node, &owner.token, &room.guild)
            .await
            .contains(&bob.user.id)
    );
    assert!(guild_ids(&node, &bob_token).await.is_empty());
    assert_status(
        leave(bob_token.clone(), room.guild.clone()).await,
        Code::PermissionDenied,
        "not a member",
    );
}

#[tokio::test]
async fn the_owner_hands_the_guild_over_and_only_the_owner_deletes_it() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let bob = register(&node, "Bob").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    let stranger = register(&node, "Stranger").await;
    let mut bob_sees = subscribe(&node, &bob_token).await;

    let transfer = |token: String, to: String| {
        let (node, guild) = (&node, room.guild.clone());
        async move {
            node.client()
                .await
                .transfer_guild_ownership(authed(
                    &token,
                    pb::TransferGuildOwnershipRequest {
                        guild_id: guild,
                        new_owner_id: to,
                    },
                ))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let delete = |token: String| {
        let (node, guild) = (&node, room.guild.clone());
        async move {
            node.client()
                .await
                .delete_guild(authed(&token, pb::DeleteGuildRequest { guild_id: guild }))
                .await
        }
    };
    assert_status(
        transfer(bob_token.clone(), bob.user.id.clone()).await,
        Code::PermissionDenied,
        "only the guild's owner may transfer",
    );
    assert_status(
        transfer(owner.token.clone(), stranger.user.id.clone()).await,
        Code::NotFound,
        "new_owner_id",
    );
    assert_status(
        transfer(owner.token.clone(), owner.user.id.clone()).await,
        Code::InvalidArgument,
        "you already own this guild",
    );
    assert_status(
        delete(bob_token.clone()).await,
        Code::PermissionDenied,
        "only the guild's owner may delete",
    );

    let guild = transfer(owner.token.clone(), bob.user.id.clone())
        .await
        .expect("the owner hands over");
    assert_eq!(guild.owner_id, bob.user.id);
    let updated = until(&mut bob_sees, |e| match e {
        Event::GuildUpdated(g) => g.guild.clone(),
        _ => None,
    })
    .await;
    assert_eq!(updated.owner_id, bob.user.id);

    // The old owner is a member now: may leave, may no longer delete.
    assert_status(
        delete(owner.token.clone()).await,
        Code::PermissionDenied,
        "only the guild's owner may delete",
    );
    let owner_token = owner.token.clone();
    node.client()
        .await
        .leave_guild(authed(
            &owner_token,
            pb::LeaveGuildRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("the old owner leaves");

    // UpdateGuild announces too.
    node.client()
        .await
        .update_guild(authed(
            &bob_token,
            pb::UpdateGuildRequest {
                guild_id: room.guild.clone(),
                name: Some("Bob's hall".into()),
                avatar_url: None,
            },
        ))
        .await
        .expect("rename");
    let renamed = until(&mut bob_sees, |e| match e {
        Event::GuildUpdated(g) => g.guild.clone().filter(|g| g.name == "Bob's hall"),
        _ => None,
    })
    .await;
    assert_eq!(renamed.owner_id, bob.user.id);

    delete(bob_token.clone())
        .await
        .expect("the new owner deletes");
    until(&mut bob_sees, |e| match e {
        Event::MemberRemoved(m) if m.guild_id == room.guild && m.user_id == bob.user.id => Some(()),
        _ => None,
    })
    .await;
    assert!(guild_ids(&node, &bob_token).await.is_empty());
    assert_status(delete(bob_token.clone()).await, Code::NotFound, "no guild");
}

#[tokio::test]
async fn deleting_a_channel_needs_channels_manage_and_takes_its_threads() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let bob = register(&node, "Bob").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    let root = send_text(&node, &owner.token, &room.channel, "a thread starts here").await;
    let thread = node
        .client()
        .await
        .create_thread(authed(
            &owner.token,
            pb::CreateThreadRequest {
                parent_channel_id: room.channel.clone(),
                root_message_id: root.id.clone(),
                name: "side".into(),
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    let mut bob_sees = subscribe(&node, &bob_token).await;
    let delete = |token: String, channel: String| {
        let node = &node;
        async move {
            node.client()
                .await
                .delete_channel(authed(
                    &token,
                    pb::DeleteChannelRequest {
                        channel_id: channel,
                    },
                ))
                .await
        }
    };
    assert_status(
        delete(bob_token.clone(), room.channel.clone()).await,
        Code::PermissionDenied,
        "channels.manage",
    );
    assert_status(
        delete(owner.token.clone(), String::new()).await,
        Code::InvalidArgument,
        "channel_id: is required",
    );
    assert_status(
        delete(owner.token.clone(), "nope".into()).await,
        Code::NotFound,
        "channel_id",
    );
    delete(owner.token.clone(), room.channel.clone())
        .await
        .expect("the owner deletes the channel");
    let mut gone = Vec::new();
    for _ in 0..2 {
        gone.push(
            until(&mut bob_sees, |e| match e {
                Event::ChannelDeleted(c) if c.guild_id == room.guild => Some(c.channel_id.clone()),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(gone, vec![room.channel.clone(), thread.id.clone()]);
    assert_status(
        node.client()
            .await
            .get_history(authed(
                &owner.token,
                pb::GetHistoryRequest {
                    channel_id: room.channel.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "channel_id",
    );
}

/// A member of another node edits on the host and leaves; a guild deleted on the host is dropped
/// from its remote members' lists at their homeserver.
#[tokio::test]
async fn members_of_other_nodes_edit_leave_and_hear_of_a_deleted_guild() {
    let host = TestNode::spawn_fast_outbox().await;
    let home = TestNode::spawn_fast_outbox().await;
    let owner = register(&host, "Owner").await;
    let first = create_room(&host, &owner, "First").await;
    let second = create_room(&host, &owner, "Second").await;
    let bob = register(&home, "Bob").await;
    let mut bob_on_host = String::new();
    for room in [&first, &second] {
        bob_on_host = remote_join(&host, &bob, &home.address(), &room.invite, "Bob")
            .await
            .expect("Bob joins from his homeserver")
            .token;
    }
    let listed = |expected: Vec<String>| {
        let (home, bob) = (&home, &bob);
        let host_address = host.address();
        async move {
            let mut expected = expected;
            expected.sort();
            wait_for(WAIT, || async {
                let servers = my_servers(home, bob).await;
                let mut on_host = servers
                    .into_iter()
                    .find(|s| s.server_url == host_address)
                    .map(|s| s.guild_ids)
                    .unwrap_or_default();
                on_host.sort();
                on_host == expected
            })
            .await;
        }
    };
    listed(vec![first.guild.clone(), second.guild.clone()]).await;

    // He edits on the host; the owner sees it.
    let mut owner_sees = subscribe(&host, &owner.token).await;
    let sent = send_text(&host, &bob_on_host, &first.channel, "helo").await;
    edit(&host, &bob_on_host, &first.channel, &sent.id, "hello")
        .await
        .expect("a remote member edits");
    let seen = until(&mut owner_sees, |e| match e {
        Event::MessageUpdated(u) => u.message.clone().filter(|m| m.id == sent.id),
        _ => None,
    })
    .await;
    assert_eq!(seen.text, "hello");

    // He leaves the first guild: his homeserver hears of it.
    host.client()
        .await
        .leave_guild(authed(
            &bob_on_host,
            pb::LeaveGuildRequest {
                guild_id: first.guild.clone(),
            },
        ))
        .await
        .expect("leave");
    listed(vec![second.guild.clone()]).await;

    // The owner deletes the second: his homeserver hears of that too.
    host.client()
        .await
        .delete_guild(authed(
            &owner.token,
            pb::DeleteGuildRequest {
                guild_id: second.guild.clone(),
            },
        ))
        .await
        .expect("delete");
    listed(Vec::new()).await;
}

/// The system messages in `channel`'s history, oldest first: `(kind, actor, target, detail)`.
async fn system_messages(
    node: &TestNode,
    token: &str,
    channel: &str,
) -> Vec<(String, String, String, String)> {
    let mut messages = node
        .client()
        .await
        .get_history(authed(
            token,
            pb::GetHistoryRequest {
                channel_id: channel.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages;
    messages.reverse();
    messages
        .into_iter()
        .filter_map(|m| {
            let a = m.action?;
            assert!(m.text.is_empty(), "a system message has no text");
            assert_eq!(m.sender_id, a.actor_id, "sent by the member who acted");
            Some((a.kind, a.actor_id, a.target_id, a.detail))
        })
        .collect()
}

#[tokio::test]
async fn system_messages_report_joins_leaves_pins_and_renames() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let mut watching = subscribe(&node, &owner.token).await;
    let bob = register(&node, "Bob").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    // The join arrives live as a message like any other.
    let live = until(&mut watching, |e| match e {
        Event::MessageCreated(m) => m.message.clone().filter(|m| m.action.is_some()),
        _ => None,
    })
    .await;
    let action = live.action.expect("action");
    assert_eq!(
        (action.kind.as_str(), action.actor_id.as_str()),
        ("member_joined", bob.user.id.as_str())
    );

    let said = send_text(&node, &bob_token, &room.channel, "pin me").await;
    node.client()
        .await
        .pin_message(authed(
            &owner.token,
            pb::PinMessageRequest {
                channel_id: room.channel.clone(),
                message_id: said.id.clone(),
            },
        ))
        .await
        .expect("pin");
    node.client()
        .await
        .update_channel(authed(
            &owner.token,
            pb::UpdateChannelRequest {
                channel_id: room.channel.clone(),
                name: Some("lobby".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("rename the channel");
    node.client()
        .await
        .update_guild(authed(
            &owner.token,
            pb::UpdateGuildRequest {
                guild_id: room.guild.clone(),
                name: Some("Great Hall".into()),
                avatar_url: None,
            },
        ))
        .await
        .expect("rename the guild");
    // The same name again is no rename.
    node.client()
        .await
        .update_guild(authed(
            &owner.token,
            pb::UpdateGuildRequest {
                guild_id: room.guild.clone(),
                name: Some("Great Hall".into()),
                avatar_url: None,
            },
        ))
        .await
        .expect("same name");
    node.client()
        .await
        .leave_guild(authed(
            &bob_token,
            pb::LeaveGuildRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("leave");

    let (o, b) = (owner.user.id.clone(), bob.user.id.clone());
    let s = |v: &str| v.to_owned();
    assert_eq!(
        system_messages(&node, &owner.token, &room.channel).await,
        vec![
            (s("member_joined"), b.clone(), b.clone(), s("")),
            (s("message_pinned"), o.clone(), said.id.clone(), s("")),
            (
                s("channel_renamed"),
                o.clone(),
                room.channel.clone(),
                s("lobby")
            ),
            (
                s("guild_renamed"),
                o.clone(),
                room.guild.clone(),
                s("Great Hall")
            ),
            (s("member_left"), b.clone(), b.clone(), s("")),
        ]
    );
}

#[tokio::test]
async fn reactions_say_which_change_and_get_users_narrows_to_a_guild() {
    let node = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let bob = register(&node, "Bob").await;
    let bob_token = join_room(&node, &bob, &room.invite).await;
    let stranger = register(&node, "Stranger").await;
    let said = send_text(&node, &owner.token, &room.channel, "react to me").await;
    let mut watching = subscribe(&node, &owner.token).await;
    for add in [true, false] {
        node.client()
            .await
            .send_message(authed(
                &bob_token,
                pb::SendMessageRequest {
                    channel_id: room.channel.clone(),
                    reaction: Some(pb::ReactionContent {
                        message_id: said.id.clone(),
                        emoji: "👍".into(),
                        r#type: if add {
                            pb::ReactionType::Add
                        } else {
                            pb::ReactionType::Remove
                        } as i32,
                    }),
                    ..Default::default()
                },
            ))
            .await
            .expect("react");
        let updated = until(&mut watching, |e| match e {
            Event::MessageUpdated(u) => u.message.clone().filter(|m| m.id == said.id),
            _ => None,
        })
        .await;
        let indicator = updated.reaction.expect("reaction indicator");
        assert_eq!(indicator.target_message_id, said.id);
        assert_eq!(indicator.emoji, "👍");
        assert_eq!(indicator.added, add);
        assert_eq!(updated.reactions.len(), usize::from(add));
    }

    let get = |token: String, guild: String| {
        let ids = vec![bob.user.id.clone(), stranger.user.id.clone()];
        let node = &node;
        async move {
            node.client()
                .await
                .get_users(authed(
                    &token,
                    pb::GetUsersRequest {
                        user_ids: ids,
                        guild_id: guild,
                    },
                ))
                .await
                .map(|r| {
                    r.into_inner()
                        .users
                        .into_iter()
                        .map(|u| u.id)
                        .collect::<Vec<_>>()
                })
        }
    };
    assert_eq!(
        get(owner.token.clone(), room.guild.clone())
            .await
            .expect("members only"),
        vec![bob.user.id.clone()]
    );
    assert_eq!(
        get(owner.token.clone(), String::new())
            .await
            .expect("everyone")
            .len(),
        2
    );
    assert_status(
        get(stranger.token.clone(), room.guild.clone()).await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_status(
        get(owner.token.clone(), "nope".into()).await,
        Code::NotFound,
        "guild_id",
    );
}

/// A DM has no owner: nobody may hand it over or delete it; its members may leave.
#[tokio::test]
async fn a_dm_is_neither_handed_over_nor_deleted() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let dm = create_dm(&node, &ada, &bob.user.id).await;
    let guild_id = dm.guild.expect("dm").id;
    join_room(&node, &bob, &dm.token).await;
    assert_status(
        node.client()
            .await
            .transfer_guild_ownership(authed(
                &ada.token,
                pb::TransferGuildOwnershipRequest {
                    guild_id: guild_id.clone(),
                    new_owner_id: bob.user.id.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "a DM has no owner to transfer",
    );
    assert_status(
        node.client()
            .await
            .delete_guild(authed(
                &ada.token,
                pb::DeleteGuildRequest {
                    guild_id: guild_id.clone(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "only the guild's owner may delete",
    );
    node.client()
        .await
        .leave_guild(authed(&bob.token, pb::LeaveGuildRequest { guild_id }))
        .await
        .expect("a DM member leaves");
}

#[tokio::test]
async fn members_hear_of_channels_created_renamed_and_threads_started() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Room").await;
    join_room(&node, &bob, &room.invite).await;
    let mut bob_sees = subscribe(&node, &bob.token).await;

    let created = node
        .client()
        .await
        .create_channel(authed(
            &ada.token,
            pb::CreateChannelRequest {
                guild_id: room.guild.clone(),
                name: "plans".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create channel")
        .into_inner();
    let heard = until(&mut bob_sees, |e| match e {
        Event::ChannelCreated(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(heard.guild_id, room.guild);
    assert_eq!(heard.channel.expect("channel").id, created.id);

    node.client()
        .await
        .update_channel(authed(
            &ada.token,
            pb::UpdateChannelRequest {
                channel_id: created.id.clone(),
                name: Some("big plans".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("rename");
    let renamed = until(&mut bob_sees, |e| match e {
        Event::ChannelUpdated(c) => c.channel.clone(),
        _ => None,
    })
    .await;
    assert_eq!(
        (renamed.id.as_str(), renamed.name.as_str()),
        (created.id.as_str(), "big plans")
    );

    let root = send_text(&node, &bob.token, &created.id, "shall we?").await;
    let thread = node
        .client()
        .await
        .create_thread(authed(
            &bob.token,
            pb::CreateThreadRequest {
                parent_channel_id: created.id.clone(),
                root_message_id: root.id.clone(),
                name: "details".into(),
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    let started = until(&mut bob_sees, |e| match e {
        Event::ChannelCreated(c) => c.channel.clone(),
        _ => None,
    })
    .await;
    assert_eq!(started.id, thread.id);
    assert!(started.is_thread);
}
