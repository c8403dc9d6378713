//! Remote members and profile propagation between three nodes on loopback: A hosts a guild, B and
//! C are homeservers. Users of B and C join A with invites (vouched for by their homeservers), talk,
//! and are subject to roles and kicks on A; refused joins leave nothing on A; a signed profile
//! change at B reaches A, and forged, older or misdirected changes are refused.

mod common;

use std::time::Duration;

use common::*;
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_server::{GuildHall, GuildHallServer};
use pb::stream_response::Event;
use tonic::Code;
use tonic::codec::Streaming;

const WAIT: Duration = Duration::from_secs(10);

async fn users(node: &TestNode, token: &str, ids: &[&str]) -> Vec<pb::User> {
    node.client()
        .await
        .get_users(authed(
            token,
            pb::GetUsersRequest {
                user_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
                guild_id: String::new(),
            },
        ))
        .await
        .expect("get users")
        .into_inner()
        .users
}

async fn server_list(home: &TestNode, who: &TestUser) -> Vec<String> {
    let servers = my_servers(home, who).await;
    servers.into_iter().map(|s| s.server_url).collect()
}

async fn subscribe(node: &TestNode, token: &str) -> Streaming<pb::StreamResponse> {
    node.client()
        .await
        .subscribe_events(authed(token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner()
}

/// Skips events until `pick` returns something; bounded in count and time.
async fn until<T>(
    stream: &mut Streaming<pb::StreamResponse>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    for _ in 0..1000 {
        let event = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an event within the wait")
            .expect("stream ok")
            .expect("stream open");
        if let Some(found) = event.event.as_ref().and_then(&mut pick) {
            return found;
        }
    }
    panic!("no matching event among 1000");
}

async fn send(
    node: &TestNode,
    token: &str,
    channel: &str,
    text: &str,
) -> Result<(), tonic::Status> {
    node.client()
        .await
        .send_message(authed(
            token,
            pb::SendMessageRequest {
                channel_id: channel.into(),
                text: text.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn remote_members_join_talk_and_are_moderated() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Federated").await;
    let bob = register(&b, "Bob").await;
    let carol = register(&c, "Carol").await;

    let bob_on_a = remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("B's user joins A");
    assert_eq!(bob_on_a.guild.expect("guild").id, room.guild);
    let carol_on_a = remote_join(&a, &carol, &c.address(), &room.invite, "Carol")
        .await
        .expect("C's user joins A");

    // A knows where each member lives; their homeservers list A among their servers.
    let seen = users(&a, &owner.token, &[&bob.user.id, &carol.user.id]).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].homeserver, b.address());
    assert_eq!(seen[1].homeserver, c.address());
    assert_eq!(seen[0].name, "Bob");
    assert!(server_list(&b, &bob).await.contains(&a.address()));
    assert!(server_list(&c, &carol).await.contains(&a.address()));
    let members = member_ids(&a, &owner.token, &room.guild).await;
    assert!(members.contains(&bob.user.id) && members.contains(&carol.user.id));

    // They talk on A with their host sessions and receive each other's events.
    let mut bob_events = subscribe(&a, &bob_on_a.token).await;
    let mut carol_events = subscribe(&a, &carol_on_a.token).await;
    send(&a, &carol_on_a.token, &room.channel, "hello from C")
        .await
        .expect("C's user sends on A");
    let author = until(&mut bob_events, |e| match e {
        Event::MessageCreated(m) => m
            .message
            .as_ref()
            .filter(|m| m.text == "hello from C")
            .map(|m| m.sender_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(author, carol.user.id);
    send(&a, &bob_on_a.token, &room.channel, "hello from B")
        .await
        .expect("B's user sends on A");
    until(&mut carol_events, |e| match e {
        Event::MessageCreated(m) => m
            .message
            .as_ref()
            .filter(|m| m.text == "hello from B")
            .map(|_| ()),
        _ => None,
    })
    .await;

    // Roles apply to a remote member: Bob gets kick rights on A and kicks Carol.
    let mut ca = a.client().await;
    let role = ca
        .create_role(authed(
            &owner.token,
            pb::CreateRoleRequest {
                guild_id: room.guild.clone(),
                name: "Moderators".into(),
                color: "#336699".into(),
                position: 1,
                permissions: vec!["members.kick".into()],
                parent_role_ids: vec![],
            },
        ))
        .await
        .expect("role")
        .into_inner();
    assert_status(
        ca.kick_user(authed(
            &bob_on_a.token,
            pb::KickUserRequest {
                guild_id: room.guild.clone(),
                user_id: carol.user.id.clone(),
                reason: String::new(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "members.kick",
    );
    ca.assign_role(authed(
        &owner.token,
        pb::AssignRoleRequest {
            guild_id: room.guild.clone(),
            user_id: bob.user.id.clone(),
            role_id: role.id,
        },
    ))
    .await
    .expect("assign role to the remote member");
    ca.kick_user(authed(
        &bob_on_a.token,
        pb::KickUserRequest {
            guild_id: room.guild.clone(),
            user_id: carol.user.id.clone(),
            reason: "testing".into(),
        },
    ))
    .await
    .expect("the remote moderator kicks");
    assert!(
        send(&a, &carol_on_a.token, &room.channel, "still here?")
            .await
            .is_err(),
        "a kicked remote member can't send"
    );
    let members = member_ids(&a, &owner.token, &room.guild).await;
    assert!(members.contains(&bob.user.id) && !members.contains(&carol.user.id));

    // A remote user signs in on A only as vouched for: a known device may log in, a new device
    // may not (it joins again, vouched anew), and neither a local join nor a registration works.
    ca.login(bob.identity.login_request(&a.audience(), now_ms()))
        .await
        .expect("a vouched device logs in on A");
    let laptop = bob.identity.new_device("laptop", now_ms() - 1000);
    assert_status(
        ca.login(laptop.login_request(&a.audience(), now_ms()))
            .await,
        Code::PermissionDenied,
        "JoinInvite",
    );
    assert_status(
        ca.join_invite(bob.identity.join_invite_request(
            &a.audience(),
            &room.invite,
            "Bob",
            now_ms(),
        ))
        .await,
        Code::FailedPrecondition,
        "homeserver_url",
    );
    assert_status(
        ca.register(
            bob.identity
                .register_request(&a.audience(), "Bob", None, now_ms()),
        )
        .await,
        Code::AlreadyExists,
        "public_key",
    );
    // The laptop is unknown to B too, so B does not vouch for it; once it logged in at B, it can.
    let laptop_user = TestUser {
        identity: laptop.clone(),
        token: String::new(),
        refresh_token: String::new(),
        user: bob.user.clone(),
    };
    assert_status(
        remote_join(&a, &laptop_user, &b.address(), &room.invite, "Bob").await,
        Code::Unauthenticated,
        "did not vouch",
    );
    b.client()
        .await
        .login(laptop.login_request(&b.audience(), now_ms()))
        .await
        .expect("the laptop logs in at B");
    remote_join(&a, &laptop_user, &b.address(), &room.invite, "Bob")
        .await
        .expect("vouched again, the laptop signs in on A");
}

/// What a refused join must not leave on A: no user, no membership (a session needs the user).
async fn assert_nothing_on(a: &TestNode, owner: &TestUser, guild: &str, who: &TestUser) {
    assert!(users(a, &owner.token, &[&who.user.id]).await.is_empty());
    assert!(
        !member_ids(a, &owner.token, guild)
            .await
            .contains(&who.user.id)
    );
    assert_status(
        a.client()
            .await
            .login(who.identity.login_request(&a.audience(), now_ms()))
            .await,
        Code::NotFound,
        "user_id",
    );
}

/// A homeserver that answers `Federate` with a yes for an identity other than the one asked.
struct LyingHomeserver {
    key: SecretKey,
    address: String,
}

#[tonic::async_trait]
impl GuildHall for LyingHomeserver {
    async fn get_server_info(
        &self,
        _: tonic::Request<pb::Empty>,
    ) -> Result<tonic::Response<pb::ServerInfoResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ServerInfoResponse {
            canonical_address: self.address.clone(),
            server_pubkey: self.key.public().to_hex(),
            key_valid_until: now_ms() + 3_600_000,
            ..Default::default()
        }))
    }

    async fn federate(
        &self,
        _: tonic::Request<pb::FederationRequest>,
    ) -> Result<tonic::Response<pb::FederationResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::FederationResponse {
            accepted: true,
            message: String::new(),
            user: Some(pb::User {
                id: SecretKey::generate().public().to_hex(),
                ..Default::default()
            }),
            push_delegation_token: String::new(),
        }))
    }
}

/// Serves a [`LyingHomeserver`] on loopback; returns its address and the serving task.
async fn spawn_liar() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let liar = LyingHomeserver {
        key: SecretKey::generate(),
        address: address.clone(),
    };
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(GuildHallServer::new(liar))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    (address, task)
}

#[tokio::test]
async fn refused_joins_leave_nothing_behind() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Guarded").await;

    // A forged join signature: refused before B is even asked.
    let dave = register(&b, "Dave").await;
    let mut forged = dave.identity.join_invite_request_from(
        &a.audience(),
        &room.invite,
        "Dave",
        &b.address(),
        now_ms(),
    );
    forged.display_name = "Mallory".into();
    assert_status(
        a.client().await.join_invite(forged).await,
        Code::Unauthenticated,
        "signature",
    );
    assert_nothing_on(&a, &owner, &room.guild, &dave).await;
    assert!(!server_list(&b, &dave).await.contains(&a.address()));

    // A user of C claiming B as homeserver: B doesn't know them and refuses to vouch.
    let erin = register(&c, "Erin").await;
    assert_status(
        remote_join(&a, &erin, &b.address(), &room.invite, "Erin").await,
        Code::Unauthenticated,
        "did not vouch",
    );
    assert_nothing_on(&a, &owner, &room.guild, &erin).await;
    assert!(server_list(&c, &erin).await.is_empty());

    // An unreachable homeserver (a port nobody listens on any more).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    assert_status(
        remote_join(&a, &erin, &nowhere, &room.invite, "Erin").await,
        Code::Unavailable,
        "not reachable from this server",
    );
    assert_nothing_on(&a, &owner, &room.guild, &erin).await;

    // A homeserver that vouches for a different key.
    let (liar, liar_task) = spawn_liar().await;
    assert_status(
        remote_join(&a, &erin, &liar, &room.invite, "Erin").await,
        Code::Unauthenticated,
        "another identity",
    );
    assert_nothing_on(&a, &owner, &room.guild, &erin).await;
    liar_task.abort();

    // A join for a guild's invite that does not exist never reaches the homeserver.
    assert_status(
        remote_join(&a, &dave, &b.address(), "nosuchinvite0000", "Dave").await,
        Code::NotFound,
        "token",
    );
    assert!(!server_list(&b, &dave).await.contains(&a.address()));
    assert_nothing_on(&a, &owner, &room.guild, &dave).await;
}

/// `who`'s signed `UpdateUserRequest` setting `name`, at `timestamp`.
fn signed_update(who: &TestUser, name: &str, timestamp: u64) -> pb::UpdateUserRequest {
    let mut update = pb::UpdateUserRequest {
        name: Some(name.into()),
        bio: Some(format!("I am {name}")),
        timestamp,
        ..Default::default()
    };
    who.identity.sign_update(&mut update);
    update
}

fn forwarded(who: &TestUser, update: pb::UpdateUserRequest) -> pb::UpdateFederatedProfileRequest {
    pb::UpdateFederatedProfileRequest {
        user_id: who.user.id.clone(),
        timestamp: update.timestamp,
        signature: update.signature.clone(),
        device_cert: update.device_cert.clone(),
        update: Some(update),
        ..Default::default()
    }
}

#[tokio::test]
async fn profile_changes_reach_the_hosts_of_a_user() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Profiles").await;
    let bob = register(&b, "Bob").await;
    remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("join");
    let mut owner_events = subscribe(&a, &owner.token).await;

    // Bob changes his profile at B; A's co-member sees it.
    let applied_at = now_ms();
    b.client()
        .await
        .update_user(authed(
            &bob.token,
            signed_update(&bob, "Robert", applied_at),
        ))
        .await
        .expect("update at the homeserver");
    let name = until(&mut owner_events, |e| match e {
        Event::UserUpdated(u) => u
            .user
            .as_ref()
            .filter(|u| u.id == bob.user.id)
            .map(|u| u.name.clone()),
        _ => None,
    })
    .await;
    assert_eq!(name, "Robert");
    let seen = &users(&a, &owner.token, &[&bob.user.id]).await[0];
    assert_eq!(
        (seen.name.as_str(), seen.bio.as_str()),
        ("Robert", "I am Robert")
    );
    assert_eq!(seen.homeserver, b.address());

    let unchanged = |u: &pb::User| u.name == "Robert" && u.bio == "I am Robert";

    // A forged change (the name altered after signing), sent by Bob's real homeserver.
    let mut forged = signed_update(&bob, "Robert", applied_at + 10);
    forged.name = Some("Mallory".into());
    let from_b = b.federation_client(&a).await;
    assert_status(
        from_b
            .clone()
            .update_federated_profile(forwarded(&bob, forged))
            .await,
        Code::Unauthenticated,
        "update.signature",
    );
    assert!(unchanged(
        &users(&a, &owner.token, &[&bob.user.id]).await[0]
    ));

    // The same change again (its direct delivery after gossip brought it) is already applied:
    // ALREADY_EXISTS, which the outbox counts as delivered.
    assert_status(
        from_b
            .clone()
            .update_federated_profile(forwarded(&bob, signed_update(&bob, "Robert", applied_at)))
            .await,
        Code::AlreadyExists,
        "already applied",
    );

    // An older statement is superseded: nothing changes, and the homeserver's outbox counts it
    // delivered.
    assert_status(
        from_b
            .clone()
            .update_federated_profile(forwarded(
                &bob,
                signed_update(&bob, "Old Bob", applied_at - 1000),
            ))
            .await,
        Code::AlreadyExists,
        "superseded",
    );
    assert!(unchanged(
        &users(&a, &owner.token, &[&bob.user.id]).await[0]
    ));

    // A valid, newer change sent by C, which is not Bob's homeserver.
    assert_status(
        c.federation_client(&a)
            .await
            .update_federated_profile(forwarded(
                &bob,
                signed_update(&bob, "Via C", applied_at + 20),
            ))
            .await,
        Code::PermissionDenied,
        "homeserver",
    );
    assert!(unchanged(
        &users(&a, &owner.token, &[&bob.user.id]).await[0]
    ));

    // Without the signed change the call is refused; a newer one from B applies.
    assert_status(
        from_b
            .clone()
            .update_federated_profile(pb::UpdateFederatedProfileRequest {
                user_id: bob.user.id.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "update",
    );
    from_b
        .clone()
        .update_federated_profile(forwarded(
            &bob,
            signed_update(&bob, "Bobby", applied_at + 30),
        ))
        .await
        .expect("a newer change from the homeserver applies");
    assert_eq!(
        users(&a, &owner.token, &[&bob.user.id]).await[0].name,
        "Bobby"
    );
}

/// The `Federate` request a host at `host` would send for `join`.
fn federate_request(host: &TestNode, join: pb::JoinInviteRequest) -> pb::FederationRequest {
    pb::FederationRequest {
        origin_server_id: host.address(),
        origin_server_pubkey: host.audience().to_hex(),
        user_pubkey: join.public_key.clone(),
        user_display_name: join.display_name.clone(),
        guild_id: "1".into(),
        timestamp: join.timestamp,
        signature: join.signature.clone(),
        join: Some(join),
    }
}

#[tokio::test]
async fn a_homeserver_vouches_only_for_joins_its_user_signed_for_the_caller() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let bob = register(&b, "Bob").await;
    let from_a = a.federation_client(&b).await;
    let join_for = |host: &TestNode, home: &str| {
        bob.identity.join_invite_request_from(
            &host.audience(),
            "0123456789abcdef",
            "Bob",
            home,
            now_ms(),
        )
    };

    // A claims a join Bob signed for C: the audience is not A, so B refuses.
    assert_status(
        from_a
            .clone()
            .federate(federate_request(&a, join_for(&c, &b.address())))
            .await,
        Code::Unauthenticated,
        "join.signature",
    );
    // A alters what Bob signed.
    let mut altered = join_for(&a, &b.address());
    altered.token = "another-invite00".into();
    assert_status(
        from_a.clone().federate(federate_request(&a, altered)).await,
        Code::Unauthenticated,
        "join.signature",
    );
    // A join naming another homeserver is not B's to vouch for.
    assert_status(
        from_a
            .clone()
            .federate(federate_request(&a, join_for(&a, &c.address())))
            .await,
        Code::PermissionDenied,
        "join.homeserver_url",
    );
    // The seed's fields must repeat the join and the caller.
    let mut request = federate_request(&a, join_for(&a, &b.address()));
    request.origin_server_id = c.address();
    assert_status(
        from_a.clone().federate(request).await,
        Code::InvalidArgument,
        "origin_server_id",
    );
    let mut request = federate_request(&a, join_for(&a, &b.address()));
    request.join = None;
    assert_status(
        from_a.clone().federate(request).await,
        Code::InvalidArgument,
        "join",
    );
    assert!(server_list(&b, &bob).await.is_empty(), "nothing recorded");

    // What Bob did sign for A is vouched for, and A joins his server list.
    let reply = from_a
        .clone()
        .federate(federate_request(&a, join_for(&a, &b.address())))
        .await
        .expect("vouched")
        .into_inner();
    assert!(reply.accepted);
    assert_eq!(reply.user.expect("user").id, bob.user.id);
    assert_eq!(server_list(&b, &bob).await, vec![a.address()]);
}

/// Stops `node` and starts it again on the same port (its peers' pins and queued calls hold)
/// once `meanwhile` has run.
async fn down_while<F: std::future::Future<Output = ()>>(node: &mut TestNode, meanwhile: F) {
    let addr = node.stop().await;
    meanwhile.await;
    node.start_on(addr).await;
}

#[tokio::test]
async fn a_node_that_was_down_gets_the_profile_change_and_the_ban_it_missed() {
    let (mut a, mut b) = (
        TestNode::spawn_fast_outbox().await,
        TestNode::spawn_fast_outbox().await,
    );
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Outages").await;
    let bob = register(&b, "Bob").await;
    remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("join");

    // The host is down while Bob changes his profile at home.
    let b_client = b.client().await;
    down_while(&mut a, async {
        b_client
            .clone()
            .update_user(authed(&bob.token, signed_update(&bob, "Robert", now_ms())))
            .await
            .expect("update at the homeserver");
    })
    .await;
    wait_for(WAIT, || async {
        users(&a, &owner.token, &[&bob.user.id]).await[0].name == "Robert"
    })
    .await;

    // Bob's homeserver is down while the host bans him.
    let a_client = a.client().await;
    let (guild, bob_id) = (room.guild.clone(), bob.user.id.clone());
    down_while(&mut b, async {
        a_client
            .clone()
            .ban_user(authed(
                &owner.token,
                pb::BanUserRequest {
                    guild_id: guild,
                    user_id: bob_id,
                    reason: "spam".into(),
                },
            ))
            .await
            .expect("ban on the host");
    })
    .await;
    let db = b.config.database_path();
    let host_key = a.audience().to_hex();
    wait_for(WAIT, || async {
        let db =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open");
        db.query_row(
            "SELECT count(*) FROM ban_notices WHERE origin_key = ?1 AND user_id = ?2",
            [&host_key, &bob.user.id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0)
            == 1
    })
    .await;
}

#[tokio::test]
async fn a_profile_change_reaches_a_host_missing_from_the_users_list_by_gossip() {
    let (a, b, e) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let bob = register(&b, "Bob").await;
    let mut owners = Vec::new();
    for host in [&a, &e] {
        let owner = register(host, "Owner").await;
        let room = create_room(host, &owner, "Hall").await;
        remote_join(host, &bob, &b.address(), &room.invite, "Bob")
            .await
            .expect("join");
        owners.push(owner);
    }
    // Bob drops E from his list at home: only gossip can tell E now.
    b.client()
        .await
        .remove_server(authed(
            &bob.token,
            pb::RemoveServerRequest {
                server_url: e.address(),
            },
        ))
        .await
        .expect("remove server");
    meet(&e, &b).await;
    let gossip = b.node().server_events.gossip().clone();
    wait_for(WAIT, || {
        let gossip = gossip.clone();
        async move {
            gossip
                .mesh_peers(guildhall::federation::gossiped::PROFILE_KIND)
                .await
                >= 1
        }
    })
    .await;
    b.client()
        .await
        .update_user(authed(&bob.token, signed_update(&bob, "Robert", now_ms())))
        .await
        .expect("update at the homeserver");
    for (host, owner) in [(&a, &owners[0]), (&e, &owners[1])] {
        wait_for(WAIT, || async {
            users(host, &owner.token, &[&bob.user.id]).await[0].name == "Robert"
        })
        .await;
    }
}
