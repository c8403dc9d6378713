//! Membership changes as gossiped server events, between nodes on loopback: hosts announce their
//! remote members' joins, kicks and bans (signed `membership` events, never their own users'), and
//! the member's homeserver lists where its user is a member (`GetMyData`, each server's
//! `guild_ids`), delivered straight to it (`ReceiveServerEvent`, through the host's outbox) and
//! gossiped; DMs are not announced. A host can't list a user where they did not join through it,
//! a malformed announcement is rejected, a leave from a host stands, and `ReceiveServerEvent`
//! takes only the caller's own, well-formed events.

mod common;

use std::time::Duration;

use common::*;
use guildhall::federation::membership::MEMBERSHIP_KIND;
use guildhall::gossip::ServerEvent;
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use prost::Message;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// `who`'s server list at `home`: each server's address and the guilds listed there.
async fn where_member(home: &TestNode, who: &TestUser) -> Vec<(String, Vec<String>)> {
    let servers = my_servers(home, who).await;
    servers
        .into_iter()
        .map(|s| (s.server_url, s.guild_ids))
        .collect()
}

/// Waits until `who`'s list at `home` is `expected`.
async fn lists(home: &TestNode, who: &TestUser, expected: Vec<(String, Vec<String>)>) {
    let mut sorted = expected;
    sorted.sort();
    wait_for(WAIT, || async {
        let mut seen = where_member(home, who).await;
        seen.sort();
        seen == sorted
    })
    .await;
}

/// Waits until `node` has `membership` mesh peers, so what is published next is gossiped to them.
async fn meshed(node: &TestNode) {
    let gossip = node.node().server_events.gossip().clone();
    wait_for(WAIT, || {
        let gossip = gossip.clone();
        async move { gossip.mesh_peers(MEMBERSHIP_KIND).await >= 1 }
    })
    .await;
}

#[tokio::test]
async fn hosts_announce_remote_members_and_the_homeserver_lists_where_they_are() {
    let (a, e, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let ada = register(&a, "Ada").await;
    let eve = register(&e, "Eve").await;
    let bob = register(&b, "Bob").await;
    let on_a = create_room(&a, &ada, "Engines").await;
    let on_e = create_room(&e, &eve, "Looms").await;
    // A local member of A: nobody else needs to hear of her.
    let dee = register(&a, "Dee").await;
    join_room(&a, &dee, &on_a.invite).await;
    // No gossip mesh is needed: each host delivers its announcement to B through its outbox.
    for (host, room) in [(&a, &on_a), (&e, &on_e)] {
        remote_join(host, &bob, &b.address(), &room.invite, "Bob")
            .await
            .expect("Bob joins");
    }
    lists(
        &b,
        &bob,
        vec![
            (a.address(), vec![on_a.guild.clone()]),
            (e.address(), vec![on_e.guild.clone()]),
        ],
    )
    .await;

    // A DM with Ada on A is nobody else's business: not announced, not listed.
    let dm = create_dm(&a, &ada, &bob.user.id).await;
    remote_join(&a, &bob, &b.address(), &dm.token, "Bob")
        .await
        .expect("Bob joins the DM");

    // Kicked on A, banned on E: both leave the list, the servers stay (Bob's to drop).
    a.client()
        .await
        .kick_user(authed(
            &ada.token,
            pb::KickUserRequest {
                guild_id: on_a.guild.clone(),
                user_id: bob.user.id.clone(),
                reason: String::new(),
            },
        ))
        .await
        .expect("kick");
    e.client()
        .await
        .ban_user(authed(
            &eve.token,
            pb::BanUserRequest {
                guild_id: on_e.guild.clone(),
                user_id: bob.user.id.clone(),
                reason: "spam".into(),
            },
        ))
        .await
        .expect("ban");
    lists(&b, &bob, vec![(a.address(), vec![]), (e.address(), vec![])]).await;

    // A's log holds Bob's join and kick, signed by A, and nothing about Ada, Dee or the DM.
    let pulled = c
        .federation_client(&a)
        .await
        .pull_server_events(pb::PullServerEventsRequest {
            origin: a.audience().to_hex(),
            kind: MEMBERSHIP_KIND.into(),
            after_sequence: 0,
            limit: 0,
            kinds: vec![],
        })
        .await
        .expect("pull")
        .into_inner()
        .events;
    let changes: Vec<(String, bool)> = pulled
        .iter()
        .map(|event| {
            let change = pb::MembershipChange::decode(event.payload.as_slice()).expect("payload");
            assert_eq!(change.guild_id, on_a.guild);
            assert_eq!(change.homeserver, b.address());
            (change.user_id, change.joined)
        })
        .collect();
    assert_eq!(
        changes,
        vec![(bob.user.id.clone(), true), (bob.user.id.clone(), false)]
    );
}

#[tokio::test]
async fn a_host_cannot_list_a_user_where_they_did_not_join_and_malformed_news_is_rejected() {
    let (x, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let xavier = register(&x, "Xavier").await;
    let bob = register(&b, "Bob").await;
    let room = create_room(&x, &xavier, "Hall").await;
    remote_join(&x, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins X");
    meet(&b, &x).await;
    lists(&b, &bob, vec![(x.address(), vec![room.guild.clone()])]).await;

    // Bob drops X from his list; X then claims he joined another of its guilds.
    b.client()
        .await
        .remove_server(authed(
            &bob.token,
            pb::RemoveServerRequest {
                server_url: x.address(),
            },
        ))
        .await
        .expect("remove server");
    meshed(&x).await;
    let announce = |guild: &str, joined: bool| pb::MembershipChange {
        guild_id: guild.into(),
        user_id: bob.user.id.clone(),
        homeserver: b.address(),
        joined,
    };
    let events = x.node().server_events.clone();
    let before = b.node().server_events.stats();
    events
        .publish(MEMBERSHIP_KIND, announce("999", true).encode_to_vec())
        .await
        .expect("publish forged join");
    events
        .publish(
            MEMBERSHIP_KIND,
            announce(&room.guild, false).encode_to_vec(),
        )
        .await
        .expect("publish leave");
    events
        .publish(MEMBERSHIP_KIND, b"not a MembershipChange".to_vec())
        .await
        .expect("publish junk");
    events
        .publish(
            MEMBERSHIP_KIND,
            announce("no spaces allowed", false).encode_to_vec(),
        )
        .await
        .expect("publish bad guild id");
    let at_b = b.node().server_events.clone();
    wait_for(WAIT, || async {
        let now = at_b.stats();
        now.ignored > before.ignored
            && now.rejected >= before.rejected + 2
            && at_b.accepted_count(MEMBERSHIP_KIND).await.expect("count") == 2
    })
    .await;

    // A server B never met (in its swarm, but never pinned by a call) has no say, even on a leave.
    let y = TestNode::spawn().await;
    meet(&b, &y).await;
    meshed(&y).await;
    let before = at_b.stats();
    y.node()
        .server_events
        .publish(MEMBERSHIP_KIND, announce("5", false).encode_to_vec())
        .await
        .expect("publish from an unmet server");
    wait_for(WAIT, || async { at_b.stats().ignored > before.ignored }).await;
    assert_eq!(
        at_b.accepted_count(MEMBERSHIP_KIND).await.expect("count"),
        2
    );

    // Listed again: the leave stands, the forged join never did.
    b.client()
        .await
        .add_server(authed(
            &bob.token,
            pb::AddServerRequest {
                server_url: x.address(),
            },
        ))
        .await
        .expect("add server");
    assert_eq!(where_member(&b, &bob).await, vec![(x.address(), vec![])]);
}

#[tokio::test]
async fn receive_server_event_takes_only_the_callers_own_well_formed_events() {
    let (x, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let bob = register(&b, "Bob").await;
    let change = pb::MembershipChange {
        guild_id: "7".into(),
        user_id: bob.user.id.clone(),
        homeserver: b.address(),
        joined: false,
    }
    .encode_to_vec();
    let mut to_b = x.federation_client(&b).await;

    // Another server's event, delivered by X: refused (others' events travel by gossip).
    let stranger = SecretKey::generate();
    let theirs = ServerEvent::sign(&stranger, MEMBERSHIP_KIND, 1, now_ms(), change.clone());
    assert_status(
        to_b.receive_server_event(theirs.to_proto()).await,
        Code::PermissionDenied,
        "origin",
    );
    // X's own, but tampered with after signing; then malformed fields.
    let mut forged = ServerEvent::sign(
        &x.server_key(),
        MEMBERSHIP_KIND,
        1,
        now_ms(),
        change.clone(),
    )
    .to_proto();
    forged.payload = b"other bytes".to_vec();
    assert_status(
        to_b.receive_server_event(forged).await,
        Code::InvalidArgument,
        "event",
    );
    let mut no_sequence = ServerEvent::sign(
        &x.server_key(),
        MEMBERSHIP_KIND,
        1,
        now_ms(),
        change.clone(),
    )
    .to_proto();
    no_sequence.sequence = 0;
    assert_status(
        to_b.receive_server_event(no_sequence).await,
        Code::InvalidArgument,
        "sequence",
    );
    // Signed by X, but its payload breaks the kind's rules: rejected, so X's outbox gives up.
    let junk = ServerEvent::sign(
        &x.server_key(),
        MEMBERSHIP_KIND,
        1,
        now_ms(),
        b"junk".to_vec(),
    );
    assert_status(
        to_b.receive_server_event(junk.to_proto()).await,
        Code::FailedPrecondition,
        "payload",
    );
    let stats = b.node().server_events.stats();
    assert_eq!((stats.accepted, stats.rejected), (0, 1), "{stats:?}");
    // A good one from X for sequence 2 is taken (X is pinned by now; Bob never joined X, and a
    // leave needs no listing).
    let good = ServerEvent::sign(&x.server_key(), MEMBERSHIP_KIND, 2, now_ms(), change);
    to_b.receive_server_event(good.to_proto())
        .await
        .expect("accepted");
    assert_eq!(b.node().server_events.stats().accepted, 1);
}
