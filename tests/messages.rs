//! Messages over real gRPC: sending, replies, mentions, components, idempotency, reactions,
//! typing, history paging, deletion, pins, threads, receipts, search, and the refusals.

mod common;

use common::{Room, TestNode, TestUser, assert_status, authed, register};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use tonic::Code;
use tonic::transport::Channel;

async fn room(node: &TestNode, owner: &TestUser, members: &[&TestUser]) -> Room {
    let room = common::create_room(node, owner, "Room").await;
    for m in members {
        common::join_room(node, m, &room.invite).await;
    }
    room
}

fn text(channel: &str, text: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        channel_id: channel.into(),
        text: text.into(),
        ..Default::default()
    }
}

async fn send(
    c: &mut GuildHallClient<Channel>,
    who: &TestUser,
    request: pb::SendMessageRequest,
) -> Result<pb::Message, tonic::Status> {
    c.send_message(authed(&who.token, request))
        .await
        .map(|r| r.into_inner().message.expect("message"))
}

/// How many messages of a history page members sent (system messages left out).
fn said(page: &pb::GetHistoryResponse) -> usize {
    page.messages.iter().filter(|m| m.action.is_none()).count()
}

async fn history(
    c: &mut GuildHallClient<Channel>,
    who: &TestUser,
    channel: &str,
    cursor: &str,
    limit: i32,
    reverse: bool,
) -> pb::GetHistoryResponse {
    c.get_history(authed(
        &who.token,
        pb::GetHistoryRequest {
            channel_id: channel.into(),
            cursor: cursor.into(),
            limit,
            reverse,
        },
    ))
    .await
    .expect("history")
    .into_inner()
}

#[tokio::test]
async fn send_reply_mention_and_idempotency() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let r = room(&node, &ada, &[&bob]).await;
    let mut c = node.client().await;

    let first = send(&mut c, &ada, text(&r.channel, "hello"))
        .await
        .expect("send");
    assert_eq!(first.sender_id, ada.user.id);
    assert_eq!(first.sender_name, "Ada");
    let mut reply = text(
        &r.channel,
        &format!("hi <@{}>, see <@&{}>", ada.user.id, r.guild),
    );
    reply.reply_to_message_id = first.id.clone();
    reply.idempotency_key = "k1".into();
    reply.metadata = [("client".to_owned(), "test".to_owned())].into();
    let second = send(&mut c, &bob, reply.clone()).await.expect("reply");
    assert_eq!(second.reply_to_message_id, first.id);
    assert_eq!(second.mentioned_user_ids, vec![ada.user.id.clone()]);
    // Bob may not mention @everyone (messages.mention_everyone): the text stays, the mention not.
    assert!(second.mentioned_role_ids.is_empty());
    assert_eq!(
        second.metadata.get("client").map(String::as_str),
        Some("test")
    );
    assert!(
        second.id.parse::<u64>().expect("numeric id")
            > first.id.parse::<u64>().expect("numeric id")
    );

    // The same key from the same sender never makes a second message.
    let again = send(&mut c, &bob, reply).await.expect("retry");
    assert_eq!(again.id, second.id);
    assert_eq!(
        said(&history(&mut c, &ada, &r.channel, "", 0, false).await),
        2
    );

    // Refusals.
    let mut bad_reply = text(&r.channel, "x");
    bad_reply.reply_to_message_id = "12345".into();
    assert_status(
        send(&mut c, &bob, bad_reply).await,
        Code::NotFound,
        "reply_to_message_id",
    );
    assert_status(
        send(&mut c, &bob, text(&r.channel, &"x".repeat(4001))).await,
        Code::InvalidArgument,
        "text: must be at most 4000",
    );
    assert_status(
        send(&mut c, &bob, text(&r.channel, "")).await,
        Code::InvalidArgument,
        "exactly one",
    );
    let mut both = text(&r.channel, "x");
    both.typing = Some(pb::TypingContent { is_typing: true });
    assert_status(
        send(&mut c, &bob, both).await,
        Code::InvalidArgument,
        "exactly one",
    );
    assert_status(
        send(&mut c, &bob, text("999", "x")).await,
        Code::NotFound,
        "channel_id",
    );
    let eve = register(&node, "Eve").await;
    assert_status(
        send(&mut c, &eve, text(&r.channel, "let me in")).await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_eq!(
        said(&history(&mut c, &ada, &r.channel, "", 0, false).await),
        2,
        "refusals stored nothing"
    );
}

#[tokio::test]
async fn components_are_validated() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let r = room(&node, &ada, &[]).await;
    let mut c = node.client().await;
    let button = |style: i32, custom_id: &str, url: &str| pb::Component {
        r#type: pb::ComponentType::Button as i32,
        style,
        label: "Go".into(),
        custom_id: custom_id.into(),
        url: url.into(),
        ..Default::default()
    };
    let row = |children: Vec<pb::Component>| pb::Component {
        r#type: pb::ComponentType::ActionRow as i32,
        components: children,
        ..Default::default()
    };
    let with = |components: Vec<pb::Component>| pb::SendMessageRequest {
        channel_id: r.channel.clone(),
        components,
        ..Default::default()
    };

    let ok = send(
        &mut c,
        &ada,
        with(vec![row(vec![
            button(1, "yes", ""),
            button(5, "", "https://example.org"),
        ])]),
    )
    .await
    .expect("valid components");
    assert_eq!(ok.components.len(), 1);
    assert_eq!(ok.components[0].components.len(), 2);
    assert_status(
        send(&mut c, &ada, with(vec![row(vec![button(7, "x", "")])])).await,
        Code::InvalidArgument,
        "components[0].components[0].style",
    );
    assert_status(
        send(&mut c, &ada, with(vec![button(1, "x", "")])).await,
        Code::InvalidArgument,
        "components[0].type",
    );
    assert_status(
        send(&mut c, &ada, with(vec![row(vec![button(5, "", "")])])).await,
        Code::InvalidArgument,
        "url",
    );
    let select = pb::Component {
        r#type: pb::ComponentType::StringSelect as i32,
        custom_id: "pick".into(),
        min_values: 2,
        max_values: 1,
        options: vec![pb::SelectOption {
            label: "A".into(),
            value: "a".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_status(
        send(&mut c, &ada, with(vec![row(vec![select])])).await,
        Code::InvalidArgument,
        "max_values",
    );
    assert_eq!(
        said(&history(&mut c, &ada, &r.channel, "", 0, false).await),
        1
    );
}

#[tokio::test]
async fn history_pages_both_ways_without_gaps() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let r = room(&node, &ada, &[]).await;
    let mut c = node.client().await;
    for i in 0..25 {
        send(&mut c, &ada, text(&r.channel, &format!("m{i}")))
            .await
            .expect("send");
    }
    // Newest first, pages of 10.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = history(&mut c, &ada, &r.channel, &cursor, 10, false).await;
        seen.extend(page.messages.iter().map(|m| m.text.clone()));
        if !page.has_more {
            break;
        }
        // A message arriving mid-paging does not disturb older pages.
        send(&mut c, &ada, text(&r.channel, "late"))
            .await
            .expect("send");
        cursor = page.next_cursor;
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);

    // Oldest first.
    let page = history(&mut c, &ada, &r.channel, "", 5, true).await;
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    let next = history(&mut c, &ada, &r.channel, &page.next_cursor, 5, true).await;
    assert_eq!(next.messages[0].text, "m5");

    assert_status(
        c.get_history(authed(
            &ada.token,
            pb::GetHistoryRequest {
                channel_id: r.channel.clone(),
                cursor: "garbage".into(),
                limit: 0,
                reverse: false,
            },
        ))
        .await,
        Code::InvalidArgument,
        "cursor",
    );
    assert_status(
        c.get_history(authed(
            &ada.token,
            pb::GetHistoryRequest {
                channel_id: r.channel.clone(),
                cursor: String::new(),
                limit: 101,
                reverse: false,
            },
        ))
        .await,
        Code::InvalidArgument,
        "limit",
    );
    let eve = register(&node, "Eve").await;
    assert_status(
        c.get_history(authed(
            &eve.token,
            pb::GetHistoryRequest {
                channel_id: r.channel.clone(),
                cursor: String::new(),
                limit: 0,
                reverse: false,
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
}

#[tokio::test]
async fn reactions_pins_deletes_and_threads() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let r = room(&node, &ada, &[&bob]).await;
    let mut c = node.client().await;
    let msg = send(&mut c, &ada, text(&r.channel, "react to me"))
        .await
        .expect("send");
    let react = |emoji: &str, kind: pb::ReactionType| pb::SendMessageRequest {
        channel_id: r.channel.clone(),
        reaction: Some(pb::ReactionContent {
            message_id: msg.id.clone(),
            emoji: emoji.into(),
            r#type: kind as i32,
        }),
        ..Default::default()
    };
    send(&mut c, &bob, react("👍", pb::ReactionType::Add))
        .await
        .expect("react");
    let after = send(&mut c, &ada, react("👍", pb::ReactionType::Add))
        .await
        .expect("react");
    assert_eq!(after.reactions.len(), 1);
    assert_eq!(
        after.reactions[0].user_ids,
        [bob.user.id.clone(), ada.user.id.clone()]
    );
    let removed = send(&mut c, &bob, react("👍", pb::ReactionType::Remove))
        .await
        .expect("unreact");
    assert_eq!(removed.reactions[0].user_ids, vec![ada.user.id.clone()]);
    assert_status(
        send(&mut c, &bob, react("two words", pb::ReactionType::Add)).await,
        Code::InvalidArgument,
        "reaction.emoji",
    );

    // Typing is delivered but not stored.
    let typing = send(
        &mut c,
        &bob,
        pb::SendMessageRequest {
            channel_id: r.channel.clone(),
            typing: Some(pb::TypingContent { is_typing: true }),
            ..Default::default()
        },
    )
    .await
    .expect("typing");
    assert!(typing.typing.expect("indicator").is_typing);
    assert_eq!(
        said(&history(&mut c, &ada, &r.channel, "", 0, false).await),
        1
    );

    // Pins need messages.manage.
    let pin = pb::PinMessageRequest {
        channel_id: r.channel.clone(),
        message_id: msg.id.clone(),
    };
    assert_status(
        c.pin_message(authed(&bob.token, pin.clone())).await,
        Code::PermissionDenied,
        "messages.manage",
    );
    c.pin_message(authed(&ada.token, pin)).await.expect("pin");
    let pinned = c
        .get_pinned_messages(authed(
            &bob.token,
            pb::GetPinnedMessagesRequest {
                channel_id: r.channel.clone(),
            },
        ))
        .await
        .expect("pins")
        .into_inner()
        .messages;
    assert_eq!(pinned.len(), 1);
    assert!(pinned[0].is_pinned);
    c.unpin_message(authed(
        &ada.token,
        pb::UnpinMessageRequest {
            channel_id: r.channel.clone(),
            message_id: msg.id.clone(),
        },
    ))
    .await
    .expect("unpin");

    // Threads.
    let thread = c
        .create_thread(authed(
            &bob.token,
            pb::CreateThreadRequest {
                parent_channel_id: r.channel.clone(),
                root_message_id: msg.id.clone(),
                name: "Side talk".into(),
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    assert!(thread.is_thread);
    assert_eq!(thread.root_message_id, msg.id);
    send(&mut c, &bob, text(&thread.id, "in the thread"))
        .await
        .expect("thread message");
    let root = history(&mut c, &ada, &r.channel, "", 0, false)
        .await
        .messages;
    let root = root.iter().find(|m| m.id == msg.id).expect("the root");
    assert_eq!(root.thread_id, thread.id);
    assert_status(
        c.create_thread(authed(
            &ada.token,
            pb::CreateThreadRequest {
                parent_channel_id: r.channel.clone(),
                root_message_id: msg.id.clone(),
                name: "Again".into(),
            },
        ))
        .await,
        Code::AlreadyExists,
        "root_message_id",
    );

    // Deleting: one's own, or with messages.manage.
    let bobs = send(&mut c, &bob, text(&r.channel, "mine"))
        .await
        .expect("send");
    assert_status(
        c.delete_message(authed(
            &bob.token,
            pb::DeleteMessageRequest {
                channel_id: r.channel.clone(),
                message_id: msg.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "messages.manage",
    );
    c.delete_message(authed(
        &bob.token,
        pb::DeleteMessageRequest {
            channel_id: r.channel.clone(),
            message_id: bobs.id.clone(),
        },
    ))
    .await
    .expect("own delete");
    c.delete_message(authed(
        &ada.token,
        pb::DeleteMessageRequest {
            channel_id: r.channel.clone(),
            message_id: msg.id.clone(),
        },
    ))
    .await
    .expect("moderator delete");
    assert_eq!(
        said(&history(&mut c, &ada, &r.channel, "", 0, false).await),
        0
    );
    assert_status(
        c.delete_message(authed(
            &ada.token,
            pb::DeleteMessageRequest {
                channel_id: r.channel.clone(),
                message_id: msg.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "message_id",
    );
}

#[tokio::test]
async fn search_finds_only_what_the_caller_may_read() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let eve = register(&node, "Eve").await;
    let r = room(&node, &ada, &[]).await;
    let other = room(&node, &eve, &[]).await;
    let mut c = node.client().await;
    send(
        &mut c,
        &ada,
        text(&r.channel, "the analytical engine weaves patterns"),
    )
    .await
    .expect("send");
    send(&mut c, &ada, text(&r.channel, "bernoulli numbers"))
        .await
        .expect("send");
    send(&mut c, &eve, text(&other.channel, "a secret engine plan"))
        .await
        .expect("send");

    let found = c
        .search_messages(authed(
            &ada.token,
            pb::SearchMessagesRequest {
                channel_id: String::new(),
                query: "engine".into(),
                limit: 0,
                offset: 0,
            },
        ))
        .await
        .expect("search")
        .into_inner();
    assert_eq!(found.total, 1);
    assert!(found.messages[0].text.contains("analytical"));
    let quoted = c
        .search_messages(authed(
            &ada.token,
            pb::SearchMessagesRequest {
                channel_id: r.channel.clone(),
                query: "\"numbers OR".into(),
                limit: 0,
                offset: 0,
            },
        ))
        .await
        .expect("syntax is treated as words")
        .into_inner();
    assert_eq!(quoted.total, 0);
    assert_status(
        c.search_messages(authed(
            &ada.token,
            pb::SearchMessagesRequest {
                channel_id: other.channel.clone(),
                query: "secret".into(),
                limit: 0,
                offset: 0,
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
    assert_status(
        c.search_messages(authed(
            &ada.token,
            pb::SearchMessagesRequest {
                channel_id: String::new(),
                query: "  ".into(),
                limit: 0,
                offset: 0,
            },
        ))
        .await,
        Code::InvalidArgument,
        "query",
    );
    let status = c
        .get_search_status(authed(&ada.token, pb::Empty {}))
        .await
        .expect("status")
        .into_inner();
    assert!(status.reachable);
    assert_eq!(status.indexed_documents, 3);
    assert!(status.database_size > 0);
    let _ = r.invite;
}

#[tokio::test]
async fn member_profile_counts_messages() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let r = room(&node, &ada, &[&bob]).await;
    let mut c = node.client().await;
    for i in 0..3 {
        send(&mut c, &bob, text(&r.channel, &format!("b{i}")))
            .await
            .expect("send");
    }
    let profile = c
        .get_guild_member_profile(authed(
            &ada.token,
            pb::GetGuildMemberProfileRequest {
                guild_id: r.guild.clone(),
                user_id: bob.user.id.clone(),
            },
        ))
        .await
        .expect("profile")
        .into_inner();
    assert_eq!(profile.message_count, 3);
    assert_eq!(profile.recent_messages[0].text, "b2");
    assert_eq!(
        profile.summary.expect("summary").user.expect("user").id,
        bob.user.id
    );
    assert_status(
        c.get_guild_member_profile(authed(
            &ada.token,
            pb::GetGuildMemberProfileRequest {
                guild_id: r.guild.clone(),
                user_id: register(&node, "Zed").await.user.id,
            },
        ))
        .await,
        Code::NotFound,
        "not a member",
    );
}
