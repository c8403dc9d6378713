//! `SubscribeEvents` over real gRPC: live delivery, resume after a disconnect in the middle of a
//! burst (no loss, no duplicate), a subscriber too slow for the live hub, visibility (outsiders
//! get nothing; the kicked stop receiving), receipts, and resume refusals.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Room, TestNode, TestUser, assert_status, authed, register};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(10);

async fn subscribe(
    node: &TestNode,
    who: &TestUser,
    resume: Option<u64>,
) -> Streaming<pb::StreamResponse> {
    node.client()
        .await
        .subscribe_events(authed(
            &who.token,
            pb::SubscribeRequest {
                resume_from_event_id: resume.map(|r| r.to_string()).unwrap_or_default(),
            },
        ))
        .await
        .expect("subscribe")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::StreamResponse>) -> pb::StreamResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an event within the wait")
        .expect("stream ok")
        .expect("stream open")
}

fn text_of(e: &pb::StreamResponse) -> Option<String> {
    match &e.event {
        Some(Event::MessageCreated(m)) => m.message.as_ref().map(|m| m.text.clone()),
        _ => None,
    }
}

/// Skips events until one carries a message with this text.
async fn until_text(stream: &mut Streaming<pb::StreamResponse>, text: &str) -> pb::StreamResponse {
    for _ in 0..10_000 {
        let e = next(stream).await;
        if text_of(&e).as_deref() == Some(text) {
            return e;
        }
    }
    panic!("no message {text:?}");
}

async fn room(node: &TestNode, owner: &TestUser) -> Room {
    common::create_room(node, owner, "Room").await
}

async fn join(node: &TestNode, who: &TestUser, r: &Room) {
    common::join_room(node, who, &r.invite).await;
}

async fn say(c: &mut GuildHallClient<Channel>, who: &TestUser, channel: &str, text: &str) {
    c.send_message(authed(
        &who.token,
        pb::SendMessageRequest {
            channel_id: channel.into(),
            text: text.into(),
            ..Default::default()
        },
    ))
    .await
    .expect("send");
}

#[tokio::test]
async fn live_events_reach_members_in_order() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let r = room(&node, &ada).await;
    let mut stream = subscribe(&node, &bob, None).await;
    join(&node, &bob, &r).await;
    let joined = next(&mut stream).await;
    assert!(
        matches!(&joined.event, Some(Event::MemberJoined(j)) if j.guild_id == r.guild),
        "the joiner sees their own join first"
    );
    let announced = next(&mut stream).await;
    assert!(
        matches!(&announced.event, Some(Event::MessageCreated(m))
            if m.message.as_ref().and_then(|m| m.action.as_ref()).is_some_and(|a| a.kind == "member_joined")),
        "then the system message about it"
    );
    let mut c = node.client().await;
    say(&mut c, &ada, &r.channel, "one").await;
    say(&mut c, &ada, &r.channel, "two").await;
    let one = next(&mut stream).await;
    let two = next(&mut stream).await;
    assert_eq!(
        (text_of(&one).as_deref(), text_of(&two).as_deref()),
        (Some("one"), Some("two"))
    );
    assert!(joined.event_id < one.event_id && one.event_id < two.event_id);
    assert!(one.timestamp.is_some());
}

#[tokio::test]
async fn resume_after_a_disconnect_mid_burst_loses_and_repeats_nothing() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let r = room(&node, &ada).await;
    join(&node, &bob, &r).await;
    let mut stream = subscribe(&node, &bob, None).await;

    const BURST: usize = 300;
    let sender = {
        let mut c = node.client().await;
        let (token, channel) = (ada.token.clone(), r.channel.clone());
        tokio::spawn(async move {
            for i in 0..BURST {
                c.send_message(authed(
                    &token,
                    pb::SendMessageRequest {
                        channel_id: channel.clone(),
                        text: format!("burst {i}"),
                        ..Default::default()
                    },
                ))
                .await
                .expect("send");
            }
        })
    };
    // Take a few events, then drop the connection while the burst is still going.
    let mut got = Vec::new();
    for _ in 0..20 {
        let e = next(&mut stream).await;
        got.push((e.event_id, text_of(&e).expect("a message")));
    }
    drop(stream);
    let last = got.last().expect("some").0;
    let mut resumed = subscribe(&node, &bob, Some(last)).await;
    while got.len() < BURST {
        let e = next(&mut resumed).await;
        got.push((e.event_id, text_of(&e).expect("a message")));
    }
    sender.await.expect("sender");
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: no duplicate, in order"
    );
    let texts: BTreeSet<String> = got.iter().map(|(_, t)| t.clone()).collect();
    let expected: BTreeSet<String> = (0..BURST).map(|i| format!("burst {i}")).collect();
    assert_eq!(texts, expected, "every message exactly once");
}

#[tokio::test]
async fn a_subscriber_too_slow_for_the_live_hub_catches_up_from_the_log() {
    let node = TestNode::spawn_with(|c| c.live_event_capacity = 8).await;
    let ada = register(&node, "Ada").await;
    let r = room(&node, &ada).await;
    let mut stream = subscribe(&node, &ada, None).await;
    let mut c = node.client().await;
    // Far more than the hub (8) plus the output buffer hold, while nobody reads.
    const N: usize = 400;
    for i in 0..N {
        say(&mut c, &ada, &r.channel, &format!("m{i}")).await;
    }
    let mut last = 0;
    for i in 0..N {
        let e = until_text(&mut stream, &format!("m{i}")).await;
        assert!(e.event_id > last);
        last = e.event_id;
    }
}

#[tokio::test]
async fn outsiders_get_nothing_and_the_kicked_stop_receiving() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let eve = register(&node, "Eve").await;
    let r = room(&node, &ada).await;
    let eves = room(&node, &eve).await;
    join(&node, &bob, &r).await;
    let mut eve_stream = subscribe(&node, &eve, None).await;
    let mut bob_stream = subscribe(&node, &bob, None).await;
    let mut c = node.client().await;
    say(&mut c, &ada, &r.channel, "private to the room").await;
    say(&mut c, &eve, &eves.channel, "eve's marker").await;
    // The first thing Eve sees is her own marker: nothing of Ada's guild came before it.
    assert_eq!(
        text_of(&next(&mut eve_stream).await).as_deref(),
        Some("eve's marker")
    );

    until_text(&mut bob_stream, "private to the room").await;
    c.kick_user(authed(
        &ada.token,
        pb::KickUserRequest {
            guild_id: r.guild.clone(),
            user_id: bob.user.id.clone(),
            reason: String::new(),
        },
    ))
    .await
    .expect("kick");
    let removed = next(&mut bob_stream).await;
    assert!(matches!(&removed.event, Some(Event::MemberRemoved(m)) if m.user_id == bob.user.id));
    say(&mut c, &ada, &r.channel, "after the kick").await;
    // Bob joins Eve's guild and she posts: that is the next thing he sees.
    join(&node, &bob, &eves).await;
    say(&mut c, &eve, &eves.channel, "welcome bob").await;
    for _ in 0..3 {
        let e = next(&mut bob_stream).await;
        assert_ne!(
            text_of(&e).as_deref(),
            Some("after the kick"),
            "a kicked member must not see the guild"
        );
        if text_of(&e).as_deref() == Some("welcome bob") {
            return;
        }
    }
    panic!("bob never saw the welcome");
}

#[tokio::test]
async fn acknowledgements_send_receipts() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let r = room(&node, &ada).await;
    join(&node, &bob, &r).await;
    let mut ada_stream = subscribe(&node, &ada, None).await;
    let mut bob_stream = subscribe(&node, &bob, None).await;
    let mut c = node.client().await;
    say(&mut c, &ada, &r.channel, "did you get this").await;
    let event = until_text(&mut bob_stream, "did you get this").await;
    c.ack_message(authed(
        &bob.token,
        pb::AcknowledgeRequest {
            event_id: event.event_id,
            status: pb::ReceiptType::Read as i32,
        },
    ))
    .await
    .expect("ack");
    for _ in 0..10 {
        if let Some(Event::Delivery(d)) = next(&mut ada_stream).await.event {
            assert_eq!(d.user_id, bob.user.id);
            assert_eq!(d.status, pb::ReceiptType::Read as i32);
            let eve = register(&node, "Eve").await;
            assert_status(
                c.ack_message(authed(
                    &eve.token,
                    pb::AcknowledgeRequest {
                        event_id: event.event_id,
                        status: 0,
                    },
                ))
                .await,
                Code::NotFound,
                "event_id",
            );
            assert_status(
                c.ack_message(authed(
                    &bob.token,
                    pb::AcknowledgeRequest {
                        event_id: event.event_id,
                        status: 9,
                    },
                ))
                .await,
                Code::InvalidArgument,
                "status",
            );
            return;
        }
    }
    panic!("no receipt");
}

#[tokio::test]
async fn resume_refusals() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let mut c = node.client().await;
    assert_status(
        c.subscribe_events(authed(
            &ada.token,
            pb::SubscribeRequest {
                resume_from_event_id: "999999".into(),
            },
        ))
        .await,
        Code::OutOfRange,
        "newer than the newest",
    );
    assert_status(
        c.subscribe_events(authed(
            &ada.token,
            pb::SubscribeRequest {
                resume_from_event_id: "abc".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "resume_from_event_id",
    );
    assert_status(
        c.subscribe_events(pb::SubscribeRequest {
            resume_from_event_id: String::new(),
        })
        .await,
        Code::Unauthenticated,
        "authorization",
    );
}

#[tokio::test]
async fn shutdown_ends_open_subscriptions() {
    let mut node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let mut stream = subscribe(&node, &ada, None).await;
    tokio::time::timeout(WAIT, node.restart())
        .await
        .expect("a node with an open subscription still stops");
    let end = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))), "no event after shutdown");
}

#[tokio::test]
async fn open_event_streams_are_capped_per_user() {
    let node = TestNode::spawn_with(|c| c.max_event_streams_per_user = 2).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let open = || async {
        node.client()
            .await
            .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
            .await
    };
    let first = subscribe(&node, &ada, None).await;
    let _second = subscribe(&node, &ada, None).await;
    assert_status(
        open().await,
        Code::ResourceExhausted,
        "max_event_streams_per_user",
    );
    // Each user has their own slots.
    let _bob = subscribe(&node, &bob, None).await;

    // A closed stream gives its slot back (once the node sees the client go away), and the
    // refused call took none: exactly one more opens.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    let _third = loop {
        match open().await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "the slot came back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    };
    assert_status(
        open().await,
        Code::ResourceExhausted,
        "max_event_streams_per_user",
    );
}

/// `messages.read` gates a guild's channel content in the stream (docs/PERMISSIONS.md): a member
/// without it gets the guild's other events but not its messages, live or on resume, and gets them
/// again as soon as a role grants it.
#[tokio::test]
async fn members_without_messages_read_do_not_receive_message_events() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let r = room(&node, &ada).await;
    join(&node, &bob, &r).await;
    let mut c = node.client().await;
    let mut stream = subscribe(&node, &bob, None).await;
    let mut ada_stream = subscribe(&node, &ada, None).await;
    say(&mut c, &ada, &r.channel, "before").await;
    let before = until_text(&mut stream, "before").await;

    // The default role stops granting messages.read.
    let roles = c
        .list_roles(authed(
            &ada.token,
            pb::ListRolesRequest {
                guild_id: r.guild.clone(),
            },
        ))
        .await
        .expect("roles")
        .into_inner()
        .roles;
    let everyone = roles
        .iter()
        .find(|role| role.id == r.guild)
        .expect("default");
    c.update_role(authed(
        &ada.token,
        pb::UpdateRoleRequest {
            role_id: everyone.id.clone(),
            guild_id: r.guild.clone(),
            name: everyone.name.clone(),
            color: everyone.color.clone(),
            position: everyone.position,
            permissions: vec!["messages.send".into()],
            parent_role_ids: vec![],
        },
    ))
    .await
    .expect("update the default role");
    say(&mut c, &ada, &r.channel, "secret").await;
    c.send_message(authed(
        &ada.token,
        pb::SendMessageRequest {
            channel_id: r.channel.clone(),
            typing: Some(pb::TypingContent { is_typing: true }),
            ..Default::default()
        },
    ))
    .await
    .expect("typing");
    join(&node, &cy, &r).await;
    // Bob hears the role change (what members may do changed), then Cy's join: neither the
    // message nor the typing indicator reached him.
    let changed = next(&mut stream).await;
    assert!(
        matches!(&changed.event, Some(Event::RoleUpdated(u)) if u.role.as_ref().is_some_and(|role| role.id == r.guild)),
        "expected the default role's change, got {changed:?}"
    );
    let joined = next(&mut stream).await;
    assert!(
        matches!(&joined.event, Some(Event::MemberJoined(j)) if j.user.as_ref().is_some_and(|u| u.id == cy.user.id)),
        "expected Cy's join, got {joined:?}"
    );
    // Resuming replays the join, not the message.
    let mut resumed = subscribe(&node, &bob, Some(before.event_id)).await;
    assert_eq!(next(&mut resumed).await.event_id, changed.event_id);
    let replayed = next(&mut resumed).await;
    assert_eq!(replayed.event_id, joined.event_id, "{replayed:?}");
    drop(resumed);
    // He can't acknowledge what he may not read either (Ada, who can, knows its event id).
    let secret = until_text(&mut ada_stream, "secret").await;
    assert_status(
        c.ack_message(authed(
            &bob.token,
            pb::AcknowledgeRequest {
                event_id: secret.event_id,
                status: pb::ReceiptType::Read as i32,
            },
        ))
        .await,
        Code::PermissionDenied,
        "messages.read",
    );

    // A role that grants messages.read brings the messages back at once.
    let readers = c
        .create_role(authed(
            &ada.token,
            pb::CreateRoleRequest {
                guild_id: r.guild.clone(),
                name: "Readers".into(),
                position: 1,
                permissions: vec!["messages.read".into()],
                ..Default::default()
            },
        ))
        .await
        .expect("create role")
        .into_inner();
    c.assign_role(authed(
        &ada.token,
        pb::AssignRoleRequest {
            guild_id: r.guild.clone(),
            user_id: bob.user.id.clone(),
            role_id: readers.id.clone(),
        },
    ))
    .await
    .expect("assign");
    // The new role is announced (`role_updated`), then the assignment (`member_updated`, Bob
    // with the role).
    let created = next(&mut stream).await;
    assert!(
        matches!(&created.event, Some(Event::RoleUpdated(u)) if !u.deleted && u.role.as_ref().is_some_and(|role| role.id == readers.id)),
        "expected the new role, got {created:?}"
    );
    let assigned = next(&mut stream).await;
    match &assigned.event {
        Some(pb::stream_response::Event::MemberUpdated(m)) => {
            let roles = m
                .member
                .as_ref()
                .map(|m| m.roles.clone())
                .unwrap_or_default();
            assert!(roles.contains(&readers.id), "{assigned:?}");
        }
        other => panic!("expected member_updated, got {other:?}"),
    }
    say(&mut c, &ada, &r.channel, "welcome back").await;
    let back = next(&mut stream).await;
    assert_eq!(text_of(&back).as_deref(), Some("welcome back"), "{back:?}");
}
