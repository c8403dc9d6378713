//! The durable outbox, homeserver moves and device revocation between nodes on loopback.
//!
//! Outbox: a delivery to a node that is down arrives once it is back, deliveries to one
//! destination arrive in order, a node restarted with queued deliveries still delivers them, and a
//! definitive refusal is given up, not retried. Moves: between three nodes with the old homeserver
//! stopped; replayed, older, mis-chained and forged statements are refused and change nothing;
//! memberships and roles survive. Revocation: a revoked device is refused at its homeserver and at
//! the user's other servers; a new device's login is announced to the user's other sessions.

mod common;

use std::time::Duration;

use common::*;
use guildhall::client::ClientIdentity;
use guildhall::federation::moves::MoveStatement;
use guildhall::federation::revocation;
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use prost::Message;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// The homeserver `node` records for `user_id`, read with a session `token` there.
async fn homeserver_seen_by(node: &TestNode, token: &str, user_id: &str) -> String {
    node.client()
        .await
        .get_users(authed(
            token,
            pb::GetUsersRequest {
                user_ids: vec![user_id.to_owned()],
                guild_id: String::new(),
            },
        ))
        .await
        .expect("get users")
        .into_inner()
        .users
        .first()
        .expect("user known")
        .homeserver
        .clone()
}

/// `token`'s event stream on `node`, from now on.
async fn subscribe(node: &TestNode, token: &str) -> tonic::codec::Streaming<pb::StreamResponse> {
    node.client()
        .await
        .subscribe_events(authed(token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner()
}

/// Waits for a `user_updated` of `user_id` showing `homeserver` on `stream`; bounded in count and
/// time.
async fn sees_user_living_at(
    stream: &mut tonic::codec::Streaming<pb::StreamResponse>,
    user_id: &str,
    homeserver: &str,
) {
    for _ in 0..1000 {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an event within the wait")
            .expect("stream ok")
            .expect("stream open");
        if let Some(pb::stream_response::Event::UserUpdated(u)) = message.event
            && let Some(user) = u.user
            && user.id == user_id
            && user.homeserver == homeserver
        {
            return;
        }
    }
    panic!("no user_updated showing {homeserver} among 1000 events");
}

/// A chain of `n` statements moving `user` to `http://h<i>.example`, each chained to the last.
fn chain(user: &TestUser, n: u64) -> Vec<MoveStatement> {
    let mut prev = Vec::new();
    (1..=n)
        .map(|i| {
            let s = user.identity.homeserver_move(
                &format!("http://h{i}.example"),
                now_ms(),
                i,
                prev.clone(),
            );
            prev = s.hash().to_vec();
            s
        })
        .collect()
}

#[tokio::test]
async fn deliveries_wait_for_a_node_that_is_down_arrive_in_order_and_survive_a_restart() {
    let mut a = TestNode::spawn_fast_outbox().await;
    let mut b = TestNode::spawn_fast_outbox().await;
    let ada = register(&b, "Ada").await;
    let b_address = b.address();
    let b_port = b.stop().await;

    // A queues five chained statements for B while B is down. Applied out of order, B would
    // refuse the older ones (their sequence is not newer), and they would be given up.
    for statement in chain(&ada, 5) {
        a.node()
            .outbox
            .enqueue(
                &b_address,
                "UpdateHomeServer",
                statement.to_request().encode_to_vec(),
            )
            .await
            .expect("enqueue");
    }
    a.outbox_head_failed(WAIT).await;
    let pending = a.node().outbox.pending(10).await.expect("pending");
    assert_eq!(pending.len(), 5, "nothing is lost while B is down");
    assert_eq!(
        pending[0].attempts,
        pending.iter().map(|d| d.attempts).max().unwrap_or(0)
    );
    assert!(
        pending[1..].iter().all(|d| d.attempts == 0),
        "only the destination's head is tried"
    );

    // A restarts with its queue; then B comes back on the same address.
    let a_port = a.stop().await;
    a.start_on(a_port).await;
    b.start_on(b_port).await;

    a.outbox_drained(WAIT).await;
    let stats = a.node().outbox.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.failed), (0, 0), "all five accepted");
    let seen = homeserver_seen_by(&b, &ada.token, &ada.user.id).await;
    assert_eq!(seen, "http://h5.example", "B applied the newest, last");
}

#[tokio::test]
async fn a_definitive_refusal_is_given_up_and_the_next_delivery_goes_through() {
    let a = TestNode::spawn_fast_outbox().await;
    let b = TestNode::spawn_fast_outbox().await;
    let ada = register(&b, "Ada").await;
    let [first] = chain(&ada, 1).try_into().expect("one");

    // Malformed (sequence 0), and forged (someone else's signature): B refuses both for good.
    let mut malformed = first.to_request();
    malformed.sequence = 0;
    let mut forged = first.to_request();
    forged.new_homeserver = "http://evil.example".into();
    for body in [malformed, forged, first.to_request()] {
        a.node()
            .outbox
            .enqueue(&b.address(), "UpdateHomeServer", body.encode_to_vec())
            .await
            .expect("enqueue");
    }
    a.outbox_drained(WAIT).await;
    let stats = a.node().outbox.stats().await.expect("stats");
    assert_eq!(stats.failed, 2, "both refusals given up");
    let failed = a.node().outbox.failed(10).await.expect("failed");
    assert!(
        failed.iter().all(|f| f.attempts == 1),
        "tried once each: {failed:?}"
    );
    assert!(failed.iter().any(|f| f.reason.contains("sequence:")));
    assert!(failed.iter().any(|f| f.reason.contains("signature:")));
    // The refusals held back nothing: the good statement behind them was applied.
    let seen = homeserver_seen_by(&b, &ada.token, &ada.user.id).await;
    assert_eq!(seen, "http://h1.example");
}

#[tokio::test]
async fn a_move_reaches_the_other_servers_with_the_old_homeserver_down() {
    let mut old = TestNode::spawn_fast_outbox().await;
    let new = TestNode::spawn_fast_outbox().await;
    let other = TestNode::spawn_fast_outbox().await;
    let ada = register(&old, "Ada").await;
    // Ada also has an account on the other server, where she owns a guild with a role.
    let other_user = register_as(&other, &ada.identity, "Ada").await;
    let room = create_room(&other, &other_user, "Guild").await;
    let at_other = other_user.token.clone();
    let mut c = other.client().await;
    let role = c
        .create_role(authed(
            &at_other,
            pb::CreateRoleRequest {
                guild_id: room.guild.clone(),
                name: "mods".into(),
                color: "#00ff00".into(),
                position: 1,
                permissions: vec![],
                parent_role_ids: vec![],
            },
        ))
        .await
        .expect("role")
        .into_inner();
    c.assign_role(authed(
        &at_other,
        pb::AssignRoleRequest {
            guild_id: room.guild.clone(),
            user_id: ada.user.id.clone(),
            role_id: role.id.clone(),
        },
    ))
    .await
    .expect("assign");
    let members_before = members(&other, &at_other, &room.guild).await;
    // …and an account on the new homeserver, where she logs in with the move.
    register_as(&new, &ada.identity, "Ada").await;
    let old_address = old.address();
    let old_port = old.stop().await;

    let statement = ada
        .identity
        .homeserver_move(&new.address(), now_ms(), 1, Vec::new());
    let mut login = ada.identity.login_request(&new.audience(), now_ms());
    statement.apply_to_login(&mut login);
    login.migration_targets = vec![old_address.clone(), other.address()];
    ada.identity.sign_login(&new.audience(), &mut login);
    let reply = new
        .client()
        .await
        .login(login)
        .await
        .expect("login with the move")
        .into_inner();
    assert_eq!(reply.user.expect("user").homeserver, new.address());

    // The other server learns it although the old homeserver is down.
    let (other_node, token, id, new_address) =
        (&other, at_other.clone(), ada.user.id.clone(), new.address());
    wait_for(WAIT, || {
        let (token, id, new_address) = (token.clone(), id.clone(), new_address.clone());
        async move { homeserver_seen_by(other_node, &token, &id).await == new_address }
    })
    .await;
    // The other server's copy is acknowledged (once its answer is recorded); the old
    // homeserver's copy waits.
    let outbox = new.node().outbox.clone();
    wait_for(WAIT, || {
        let outbox = outbox.clone();
        async move { outbox.stats().await.expect("stats").pending == 1 }
    })
    .await;
    let waiting = outbox.pending(10).await.expect("pending");
    assert_eq!(waiting[0].destination, old_address);
    assert_eq!(outbox.stats().await.expect("stats").failed, 0);
    assert_eq!(
        members(&other, &at_other, &room.guild).await,
        members_before,
        "memberships and roles survive the move"
    );

    // Refusals, sent by a verified server (the new homeserver) straight to the other server.
    let mut peer = new.federation_client(&other).await;
    assert_status(
        peer.update_home_server(statement.to_request()).await,
        Code::AlreadyExists,
        "already applied",
    );
    let older = ada
        .identity
        .homeserver_move("http://evil.example", now_ms(), 1, Vec::new());
    assert_status(
        peer.update_home_server(older.to_request()).await,
        Code::FailedPrecondition,
        "sequence: 1 is not newer",
    );
    let unchained = ada
        .identity
        .homeserver_move("http://evil.example", now_ms(), 2, vec![7; 32]);
    assert_status(
        peer.update_home_server(unchained.to_request()).await,
        Code::FailedPrecondition,
        "prev:",
    );
    let mut forged = ada
        .identity
        .homeserver_move("http://x.example", now_ms(), 2, statement.hash().to_vec())
        .to_request();
    forged.new_homeserver = "http://evil.example".into();
    assert_status(
        peer.update_home_server(forged).await,
        Code::Unauthenticated,
        "signature:",
    );
    let mut zero = statement.to_request();
    zero.sequence = 0;
    assert_status(
        peer.update_home_server(zero).await,
        Code::InvalidArgument,
        "sequence:",
    );
    assert_eq!(
        homeserver_seen_by(&other, &at_other, &ada.user.id).await,
        new.address(),
        "no refusal changed anything"
    );
    // The same refusals hold at the new homeserver's own login: a replayed move is refused.
    let mut again = ada.identity.login_request(&new.audience(), now_ms() + 1);
    statement.apply_to_login(&mut again);
    ada.identity.sign_login(&new.audience(), &mut again);
    assert_status(
        new.client().await.login(again).await,
        Code::AlreadyExists,
        "already applied",
    );

    // The old homeserver comes back and receives the move too.
    old.start_on(old_port).await;
    new.outbox_drained(WAIT).await;
    assert_eq!(new.node().outbox.stats().await.expect("stats").failed, 0);
    assert_eq!(
        homeserver_seen_by(&old, &ada.token, &ada.user.id).await,
        new.address()
    );
    // A next move chains to this one.
    let next = ada.identity.homeserver_move(
        "http://later.example",
        now_ms(),
        2,
        statement.hash().to_vec(),
    );
    peer.update_home_server(next.to_request())
        .await
        .expect("the next statement in the chain");
}

#[tokio::test]
async fn a_revoked_device_is_refused_at_home_and_on_the_users_other_servers() {
    let home = TestNode::spawn_fast_outbox().await;
    let other = TestNode::spawn_fast_outbox().await;
    let ada = register(&home, "Ada").await;
    let laptop = ClientIdentity::from_keys(
        ada.identity.id_key.clone(),
        SecretKey::generate(),
        "laptop",
        now_ms() - 1000,
    );
    let laptop_key = laptop.device_key.public();

    // Ada's phone session hears about the laptop's first login at home.
    let mut events = home
        .client()
        .await
        .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let laptop_home = login(&home, &laptop).await;
    let notice = tokio::time::timeout(WAIT, events.message())
        .await
        .expect("in time")
        .expect("stream")
        .expect("event");
    match notice.event {
        Some(pb::stream_response::Event::DeviceAdded(d)) => {
            assert_eq!(d.device_pubkey, laptop_key.to_hex());
            assert_eq!(d.device_id, "laptop");
        }
        other => panic!("expected device_added, got {other:?}"),
    }
    // A device already seen logs in again without a notice: the next event is the tablet's.
    login(&home, &laptop).await;
    let tablet = ClientIdentity::from_keys(
        ada.identity.id_key.clone(),
        SecretKey::generate(),
        "tablet",
        now_ms() - 1000,
    );
    login(&home, &tablet).await;
    let notice = tokio::time::timeout(WAIT, events.message())
        .await
        .expect("in time")
        .expect("stream")
        .expect("event");
    match notice.event {
        Some(pb::stream_response::Event::DeviceAdded(d)) => {
            assert_eq!(d.device_pubkey, tablet.device_key.public().to_hex());
        }
        other => panic!("expected the tablet's device_added, got {other:?}"),
    }

    // Ada is also on the other server, with both devices, and lists it at home.
    register_as(&other, &ada.identity, "Ada").await;
    let laptop_other = login(&other, &laptop).await;
    assert_eq!(laptop_other.len(), 64);
    home.client()
        .await
        .add_server(authed(
            &ada.token,
            pb::AddServerRequest {
                server_url: other.address(),
            },
        ))
        .await
        .expect("add server");

    // Refusals first: someone else's revocation, and a forged one, change nothing.
    let mallory = new_identity("m");
    let mut c = home.client().await;
    assert_status(
        c.revoke_device(authed(
            &ada.token,
            revocation::sign(&mallory.id_key, &laptop_key, now_ms()),
        ))
        .await,
        Code::PermissionDenied,
        "user_id",
    );
    let mut forged = revocation::sign(&ada.identity.id_key, &laptop_key, now_ms());
    forged.timestamp += 1;
    assert_status(
        c.revoke_device(authed(&ada.token, forged)).await,
        Code::Unauthenticated,
        "signature",
    );
    c.get_my_data(authed(&laptop_home, pb::Empty {}))
        .await
        .expect("the laptop still works");

    // The phone revokes the laptop.
    c.revoke_device(authed(
        &ada.token,
        revocation::sign(&ada.identity.id_key, &laptop_key, now_ms()),
    ))
    .await
    .expect("revoke");
    assert_status(
        c.get_my_data(authed(&laptop_home, pb::Empty {})).await,
        Code::Unauthenticated,
        "authorization",
    );
    assert_status(
        home.client()
            .await
            .login(laptop.login_request(&home.audience(), now_ms()))
            .await,
        Code::FailedPrecondition,
        "device_cert.pubkey: this device was revoked",
    );
    c.get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("the phone still works");

    // The revocation reaches the other server through the outbox.
    home.outbox_drained(WAIT).await;
    assert_eq!(home.node().outbox.stats().await.expect("stats").failed, 0);
    assert_status(
        other
            .client()
            .await
            .get_my_data(authed(&laptop_other, pb::Empty {}))
            .await,
        Code::Unauthenticated,
        "authorization",
    );
    assert_status(
        other
            .client()
            .await
            .login(laptop.login_request(&other.audience(), now_ms()))
            .await,
        Code::FailedPrecondition,
        "device_cert.pubkey: this device was revoked",
    );
}

#[tokio::test]
async fn a_revoked_device_key_is_refused_for_every_identity_and_at_remote_hosts() {
    const REVOKED: &str = "device_cert.pubkey: this device was revoked by its owner";
    let home = TestNode::spawn_fast_outbox().await;
    let host = TestNode::spawn().await;
    let ada = register(&home, "Ada").await;
    let laptop = ClientIdentity::from_keys(
        ada.identity.id_key.clone(),
        SecretKey::generate(),
        "laptop",
        now_ms() - 1000,
    );
    login(&home, &laptop).await;
    // The laptop joins a guild on the host, vouched for by home (which lists the host for Ada).
    let olga = register(&host, "Olga").await;
    let room = create_room(&host, &olga, "Garden").await;
    let laptop_user = TestUser {
        identity: laptop.clone(),
        token: String::new(),
        refresh_token: String::new(),
        user: ada.user.clone(),
    };
    let laptop_on_host = remote_join(&host, &laptop_user, &home.address(), &room.invite, "Ada")
        .await
        .expect("remote join")
        .token;

    // Anyone can sign a revocation of a key that is not theirs: it binds the signer alone.
    let mallory = register(&home, "Mallory").await;
    home.client()
        .await
        .revoke_device(authed(
            &mallory.token,
            revocation::sign(
                &mallory.identity.id_key,
                &ada.identity.device_key.public(),
                now_ms(),
            ),
        ))
        .await
        .expect("accepted, for Mallory's own identity");
    login(&home, &ada.identity).await;

    // Ada revokes the laptop at home; the host hears of it through the outbox.
    home.client()
        .await
        .revoke_device(authed(
            &ada.token,
            revocation::sign(&ada.identity.id_key, &laptop.device_key.public(), now_ms()),
        ))
        .await
        .expect("revoke");
    home.outbox_drained(WAIT).await;

    // Whoever certifies the laptop's key now, as a new identity or another's device, is refused.
    let thief = ClientIdentity::from_keys(
        SecretKey::generate(),
        laptop.device_key.clone(),
        "laptop",
        now_ms() - 1000,
    );
    let as_mallorys = ClientIdentity::from_keys(
        mallory.identity.id_key.clone(),
        laptop.device_key.clone(),
        "laptop",
        now_ms() - 1000,
    );
    let mut anonymous = laptop.login_request(&home.audience(), now_ms());
    anonymous.user_id = None;
    laptop.sign_login(&home.audience(), &mut anonymous);
    for node in [&home, &host] {
        let mut c = node.client().await;
        assert_status(
            c.register(thief.register_request(&node.audience(), "Thief", None, now_ms()))
                .await,
            Code::FailedPrecondition,
            REVOKED,
        );
        assert_status(
            c.join_invite(thief.join_invite_request(
                &node.audience(),
                &room.invite,
                "Thief",
                now_ms(),
            ))
            .await,
            Code::FailedPrecondition,
            REVOKED,
        );
        assert_status(
            c.login(as_mallorys.login_request(&node.audience(), now_ms()))
                .await,
            Code::FailedPrecondition,
            REVOKED,
        );
    }
    assert_status(
        home.client().await.login(anonymous).await,
        Code::FailedPrecondition,
        REVOKED,
    );
    // At the host, the laptop's own login and join answer the revocation (PROTOCOL.md §12.2), not
    // a hint to be vouched for by the homeserver.
    assert_status(
        host.client()
            .await
            .login(laptop.login_request(&host.audience(), now_ms()))
            .await,
        Code::FailedPrecondition,
        REVOKED,
    );
    assert_status(
        remote_join(&host, &laptop_user, &home.address(), &room.invite, "Ada").await,
        Code::FailedPrecondition,
        REVOKED,
    );

    // Nothing changed: the thief is unknown on both nodes, the laptop's session on the host is
    // gone, Ada's phone and Mallory still work.
    for (node, token) in [(&home, &ada.token), (&host, &olga.token)] {
        let users = node
            .client()
            .await
            .get_users(authed(
                token,
                pb::GetUsersRequest {
                    user_ids: vec![thief.user_id()],
                    ..Default::default()
                },
            ))
            .await
            .expect("get users")
            .into_inner()
            .users;
        assert!(users.is_empty(), "{users:?}");
    }
    assert_status(
        host.client()
            .await
            .get_my_data(authed(&laptop_on_host, pb::Empty {}))
            .await,
        Code::Unauthenticated,
        "authorization",
    );
    login(&home, &ada.identity).await;
    login(&home, &mallory.identity).await;
}

/// Logs `identity`'s device in at `node`; returns the session token.
async fn login(node: &TestNode, identity: &ClientIdentity) -> String {
    node.client()
        .await
        .login(identity.login_request(&node.audience(), now_ms()))
        .await
        .expect("login")
        .into_inner()
        .token
}

/// A guild's members as `(user id, role ids)`, sorted.
async fn members(node: &TestNode, token: &str, guild: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = node
        .client()
        .await
        .list_guild_members(authed(
            token,
            pb::ListGuildMembersRequest {
                guild_id: guild.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .expect("members")
        .into_inner()
        .members
        .into_iter()
        .map(|m| {
            let mut roles = m.roles;
            roles.sort();
            (m.user.unwrap_or_default().id, roles)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn moves_and_revocations_are_gossiped_to_nodes_outside_the_targets() {
    let new = TestNode::spawn_fast_outbox().await;
    let bystander = TestNode::spawn_fast_outbox().await;
    let ada = register(&new, "Ada").await;
    let there = register_as(&bystander, &ada.identity, "Ada").await;
    meet(&bystander, &new).await;
    let gossip = new.node().server_events.gossip().clone();
    wait_for(WAIT, || {
        let gossip = gossip.clone();
        async move {
            gossip
                .mesh_peers(guildhall::federation::gossiped::MOVE_KIND)
                .await
                >= 1
        }
    })
    .await;

    // Her laptop is signed in at the bystander too.
    let laptop = ClientIdentity::from_keys(
        ada.identity.id_key.clone(),
        SecretKey::generate(),
        "laptop",
        now_ms() - 1000,
    );
    login(&bystander, &laptop).await;
    let mut at_bystander = subscribe(&bystander, &there.token).await;

    // A move to `new` naming no targets at all: only gossip can tell the bystander.
    let statement = ada
        .identity
        .homeserver_move(&new.address(), now_ms(), 1, Vec::new());
    let mut request = ada.identity.login_request(&new.audience(), now_ms());
    statement.apply_to_login(&mut request);
    request.migration_targets = Vec::new();
    ada.identity.sign_login(&new.audience(), &mut request);
    new.client()
        .await
        .login(request)
        .await
        .expect("login with the move");
    let (token, id, address) = (there.token.clone(), ada.user.id.clone(), new.address());
    wait_for(WAIT, || {
        let (token, id, address) = (token.clone(), id.clone(), address.clone());
        let node = &bystander;
        async move { homeserver_seen_by(node, &token, &id).await == address }
    })
    .await;
    // Her sessions there are told, as co-members would be.
    sees_user_living_at(&mut at_bystander, &ada.user.id, &new.address()).await;

    // The bystander still knows the laptop (it may sign in)…
    login(&bystander, &laptop).await;
    // …until a revocation of it, made at her (new) homeserver, reaches the bystander
    // the same way: the device is forgotten there and its login refused.
    let revocation = revocation::sign(&ada.identity.id_key, &laptop.device_key.public(), now_ms());
    new.client()
        .await
        .revoke_device(authed(&ada.token, revocation))
        .await
        .expect("revoke at home");
    wait_for(WAIT, || async {
        bystander
            .client()
            .await
            .login(laptop.login_request(&bystander.audience(), now_ms()))
            .await
            .is_err_and(|e| {
                e.code() == Code::PermissionDenied || e.code() == Code::FailedPrecondition
            })
    })
    .await;
}

/// A member known to a host as another node's user moves to that host with a `Login` there: the
/// login's answer already shows the host as the homeserver (it was once read before the move).
#[tokio::test]
async fn a_login_carrying_a_move_answers_with_the_new_homeserver() {
    let home = TestNode::spawn_fast_outbox().await;
    let host = TestNode::spawn_fast_outbox().await;
    let ada = register(&home, "Ada").await;
    let owner = register(&host, "Owner").await;
    let room = create_room(&host, &owner, "Guild").await;
    remote_join(&host, &ada, &home.address(), &room.invite, "Ada")
        .await
        .expect("remote join");

    let statement = ada
        .identity
        .homeserver_move(&host.address(), now_ms(), 1, Vec::new());
    let mut login = ada.identity.login_request(&host.audience(), now_ms());
    statement.apply_to_login(&mut login);
    login.migration_targets = vec![home.address()];
    ada.identity.sign_login(&host.audience(), &mut login);
    let reply = host
        .client()
        .await
        .login(login)
        .await
        .expect("login with the move")
        .into_inner();
    assert_eq!(reply.user.expect("user").homeserver, host.address());
    home.outbox_drained(WAIT).await;
    host.outbox_drained(WAIT).await;
    assert_eq!(
        homeserver_seen_by(&home, &ada.token, &ada.user.id).await,
        host.address()
    );
}

/// Co-members are told of a move (`user_updated` showing the new homeserver) on every node that
/// applies it: the new homeserver (the login carrying it) and a host it names as a target
/// (`UpdateHomeServer` from the outbox).
#[tokio::test]
async fn co_members_on_each_node_see_a_member_move() {
    let home = TestNode::spawn_fast_outbox().await;
    let host = TestNode::spawn_fast_outbox().await;
    let new = TestNode::spawn_fast_outbox().await;
    let ada = register(&home, "Ada").await;
    let mut streams = Vec::new();
    for node in [&host, &new] {
        let owner = register(node, "Owner").await;
        let room = create_room(node, &owner, "Guild").await;
        remote_join(node, &ada, &home.address(), &room.invite, "Ada")
            .await
            .expect("remote join");
        streams.push(subscribe(node, &owner.token).await);
    }

    let statement = ada
        .identity
        .homeserver_move(&new.address(), now_ms(), 1, Vec::new());
    let mut login = ada.identity.login_request(&new.audience(), now_ms());
    statement.apply_to_login(&mut login);
    login.migration_targets = vec![home.address(), host.address()];
    ada.identity.sign_login(&new.audience(), &mut login);
    new.client()
        .await
        .login(login)
        .await
        .expect("login with the move");
    for stream in &mut streams {
        sees_user_living_at(stream, &ada.user.id, &new.address()).await;
    }
}
