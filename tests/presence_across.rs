//! Presence and typing across nodes (docs/PROTOCOL.md §14.5): a remote member's homeserver tells
//! the guild's host their presence, and the host tells the remote member's homeserver the
//! presence of the members they share a guild with; typing travels through the host, where every
//! member of the guild sends and reads it; a peer that stops speaking has its users read as
//! offline after the timeout; over three nodes, the host's member is seen at both homeservers and
//! each remote member at the host, and going offline is said, not waited out; a server that is
//! not a user's homeserver can't speak for them, and a malformed batch is refused whole.

mod common;

use std::time::Duration;

use common::*;
use guildhall::proto::guildhall::v1 as pb;

const WAIT: Duration = Duration::from_secs(15);

/// Presence refreshed every 300 ms, a peer's word lasting 1.5 s: the timeout shows in a test.
fn fast_presence(config: &mut guildhall::config::Config) {
    config.presence_refresh_ms = 300;
    config.presence_timeout_ms = 1500;
}

async fn presence_of(node: &TestNode, token: &str, user: &str) -> Option<i32> {
    node.client()
        .await
        .get_presence(authed(
            token,
            pb::GetPresenceRequest {
                user_ids: vec![user.into()],
            },
        ))
        .await
        .expect("presence")
        .into_inner()
        .presence
        .first()
        .map(|p| p.status)
}

async fn set_status(node: &TestNode, token: &str, status: pb::PresenceStatus) {
    node.client()
        .await
        .update_presence(authed(
            token,
            pb::UpdatePresenceRequest {
                status: status as i32,
                active_call_channel_id: String::new(),
            },
        ))
        .await
        .expect("update presence");
}

async fn typing(node: &TestNode, token: &str, channel: &str) {
    node.client()
        .await
        .send_message(authed(
            token,
            pb::SendMessageRequest {
                channel_id: channel.into(),
                typing: Some(pb::TypingContent { is_typing: true }),
                ..Default::default()
            },
        ))
        .await
        .expect("typing");
}

/// Waits on `events` for `user`'s presence to become `status`.
async fn presence_event(
    events: &mut tonic::codec::Streaming<pb::StreamResponse>,
    user: &str,
    status: pb::PresenceStatus,
) {
    until(events, |e| match e {
        pb::stream_response::Event::Presence(p)
            if p.user_id == user && p.status == status as i32 =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn presence_and_typing_cross_nodes_and_a_dead_node_reads_offline() {
    let host = TestNode::spawn_with(fast_presence).await;
    let mut home = TestNode::spawn_with(fast_presence).await;
    let alice = register(&host, "Alice").await;
    let room = create_room(&host, &alice, "Hall").await;
    let bob = register(&home, "Bob").await;
    let joined = remote_join(&host, &bob, &home.address(), &room.invite, "Bob")
        .await
        .expect("bob joins the host's guild from his homeserver");
    let bob_at_host = joined.token;

    // Bob comes online at his homeserver: the host and its members see it.
    let mut alice_sees = subscribe(&host, &alice.token).await;
    home.client()
        .await
        .signal_online(authed(&bob.token, pb::Empty {}))
        .await
        .expect("online");
    presence_event(&mut alice_sees, &bob.user.id, pb::PresenceStatus::Online).await;
    assert_eq!(
        presence_of(&host, &alice.token, &bob.user.id).await,
        Some(pb::PresenceStatus::Online as i32)
    );
    set_status(&home, &bob.token, pb::PresenceStatus::Busy).await;
    presence_event(&mut alice_sees, &bob.user.id, pb::PresenceStatus::Busy).await;

    // Alice, a member of the host, comes online: Bob's homeserver shows it to Bob.
    let mut bob_sees_at_home = subscribe(&home, &bob.token).await;
    host.client()
        .await
        .signal_online(authed(&alice.token, pb::Empty {}))
        .await
        .expect("online");
    presence_event(
        &mut bob_sees_at_home,
        &alice.user.id,
        pb::PresenceStatus::Online,
    )
    .await;
    assert_eq!(
        presence_of(&home, &bob.token, &alice.user.id).await,
        Some(pb::PresenceStatus::Online as i32)
    );
    // ... and to no one else there.
    let eve = register(&home, "Eve").await;
    assert_eq!(presence_of(&home, &eve.token, &alice.user.id).await, None);

    // Typing goes through the host, both ways.
    let mut bob_sees_at_host = subscribe(&host, &bob_at_host).await;
    typing(&host, &bob_at_host, &room.channel).await;
    let typed = until(&mut alice_sees, |e| match e {
        pb::stream_response::Event::MessageCreated(m) => m
            .message
            .as_ref()
            .and_then(|m| m.typing.clone())
            .filter(|t| t.user_id == bob.user.id),
        _ => None,
    })
    .await;
    assert!(typed.is_typing);
    typing(&host, &alice.token, &room.channel).await;
    until(&mut bob_sees_at_host, |e| match e {
        pb::stream_response::Event::MessageCreated(m) => m
            .message
            .as_ref()
            .and_then(|m| m.typing.clone())
            .filter(|t| t.user_id == alice.user.id),
        _ => None,
    })
    .await;

    // The state is refreshed while nothing changes: still busy well past the timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        presence_of(&host, &alice.token, &bob.user.id).await,
        Some(pb::PresenceStatus::Busy as i32)
    );

    // Bob's homeserver dies: after the timeout the host shows him offline.
    home.stop().await;
    presence_event(&mut alice_sees, &bob.user.id, pb::PresenceStatus::Offline).await;
    assert_eq!(
        presence_of(&host, &alice.token, &bob.user.id).await,
        Some(pb::PresenceStatus::Offline as i32)
    );
}

#[tokio::test]
async fn only_a_users_homeserver_speaks_for_their_presence() {
    let host = TestNode::spawn_with(fast_presence).await;
    let home = TestNode::spawn_with(fast_presence).await;
    let other = TestNode::spawn_with(fast_presence).await;
    let alice = register(&host, "Alice").await;
    let room = create_room(&host, &alice, "Hall").await;
    let bob = register(&home, "Bob").await;
    remote_join(&host, &bob, &home.address(), &room.invite, "Bob")
        .await
        .expect("join");
    set_status(&home, &bob.token, pb::PresenceStatus::Busy).await;
    wait_for(WAIT, || async {
        presence_of(&host, &alice.token, &bob.user.id).await
            == Some(pb::PresenceStatus::Busy as i32)
    })
    .await;

    // Another server says Bob is online, and that Alice (the host's own user) is offline:
    // accepted as a call, ignored for both.
    let mut forger = other.federation_client(&host).await;
    let entry = |user: &str, status: pb::PresenceStatus| pb::RemotePresence {
        user_id: user.into(),
        status: status as i32,
        ..Default::default()
    };
    host.client()
        .await
        .signal_online(authed(&alice.token, pb::Empty {}))
        .await
        .expect("online");
    forger
        .receive_presence(pb::PresenceBatch {
            entries: vec![
                entry(&bob.user.id, pb::PresenceStatus::Online),
                entry(&alice.user.id, pb::PresenceStatus::Offline),
            ],
            valid_for_ms: 60_000,
        })
        .await
        .expect("a well-formed call is answered");
    assert_eq!(
        presence_of(&host, &alice.token, &bob.user.id).await,
        Some(pb::PresenceStatus::Busy as i32)
    );
    assert_eq!(
        presence_of(&host, &alice.token, &alice.user.id).await,
        Some(pb::PresenceStatus::Online as i32)
    );

    // Malformed batches are refused whole, naming the field.
    let mut home_client = home.federation_client(&host).await;
    let cases = [
        (
            pb::PresenceBatch {
                entries: vec![entry("not-a-key", pb::PresenceStatus::Online)],
                valid_for_ms: 1000,
            },
            "entries[0].user_id",
        ),
        (
            pb::PresenceBatch {
                entries: vec![entry(&bob.user.id, pb::PresenceStatus::Unspecified)],
                valid_for_ms: 1000,
            },
            "entries[0].status",
        ),
        (
            pb::PresenceBatch {
                entries: vec![entry(&bob.user.id, pb::PresenceStatus::Online)],
                valid_for_ms: 0,
            },
            "valid_for_ms",
        ),
        (
            pb::PresenceBatch {
                entries: vec![entry(&bob.user.id, pb::PresenceStatus::Online); 1001],
                valid_for_ms: 1000,
            },
            "entries",
        ),
        (
            pb::PresenceBatch {
                entries: vec![pb::RemotePresence {
                    visible_to: vec!["nobody".into()],
                    ..entry(&bob.user.id, pb::PresenceStatus::Online)
                }],
                valid_for_ms: 1000,
            },
            "entries[0].visible_to[0]",
        ),
        (
            pb::PresenceBatch {
                entries: vec![pb::RemotePresence {
                    active_call_channel_id: "a call".into(),
                    ..entry(&bob.user.id, pb::PresenceStatus::Online)
                }],
                valid_for_ms: 1000,
            },
            "entries[0].active_call_channel_id",
        ),
    ];
    for (batch, field) in cases {
        let refused = home_client.receive_presence(batch).await;
        assert_status(refused, tonic::Code::InvalidArgument, field);
    }
    assert_eq!(
        presence_of(&host, &alice.token, &bob.user.id).await,
        Some(pb::PresenceStatus::Busy as i32),
        "a refused batch changes nothing"
    );

    // Without a server call's signature, the method is refused.
    let unsigned = host
        .client()
        .await
        .receive_presence(pb::PresenceBatch {
            entries: vec![],
            valid_for_ms: 1000,
        })
        .await;
    assert!(unsigned.is_err());
}

/// Three nodes: a host and the homeservers of two of its members. The host's member is seen at
/// both homeservers (each told who there may see it); each remote member is seen at the host, by
/// the host's member and by the other remote member, who reads the host as every member does.
#[tokio::test]
async fn presence_reaches_every_node_that_shares_a_guild() {
    // A minute's timeout: whatever turns offline here was said, not timed out.
    let slow_expiry = |config: &mut guildhall::config::Config| {
        config.presence_refresh_ms = 300;
        config.presence_timeout_ms = 60_000;
    };
    let host = TestNode::spawn_with(slow_expiry).await;
    let b = TestNode::spawn_with(slow_expiry).await;
    let c = TestNode::spawn_with(slow_expiry).await;
    let alice = register(&host, "Alice").await;
    let room = create_room(&host, &alice, "Hall").await;
    let bob = register(&b, "Bob").await;
    let carol = register(&c, "Carol").await;
    remote_join(&host, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("bob joins");
    let carol_at_host = remote_join(&host, &carol, &c.address(), &room.invite, "Carol")
        .await
        .expect("carol joins")
        .token;

    host.client()
        .await
        .signal_online(authed(&alice.token, pb::Empty {}))
        .await
        .expect("alice online");
    b.client()
        .await
        .signal_online(authed(&bob.token, pb::Empty {}))
        .await
        .expect("bob online");
    set_status(&c, &carol.token, pb::PresenceStatus::Busy).await;

    let online = Some(pb::PresenceStatus::Online as i32);
    let busy = Some(pb::PresenceStatus::Busy as i32);
    // Alice, at both homeservers.
    wait_for(WAIT, || async {
        presence_of(&b, &bob.token, &alice.user.id).await == online
            && presence_of(&c, &carol.token, &alice.user.id).await == online
    })
    .await;
    // Bob and Carol, at the host, for Alice and for each other.
    wait_for(WAIT, || async {
        presence_of(&host, &alice.token, &bob.user.id).await == online
            && presence_of(&host, &alice.token, &carol.user.id).await == busy
            && presence_of(&host, &carol_at_host, &bob.user.id).await == online
    })
    .await;

    // Bob goes offline at his homeserver: the host hears it from his homeserver (the timeout is
    // a minute away).
    b.client()
        .await
        .signal_offline(authed(&bob.token, pb::Empty {}))
        .await
        .expect("bob offline");
    wait_for(WAIT, || async {
        presence_of(&host, &carol_at_host, &bob.user.id).await
            == Some(pb::PresenceStatus::Offline as i32)
    })
    .await;
}
