//! DM invites across nodes (signed by the inviter's device, checked by the target's homeserver),
//! push delegation (`VerifyUser` → `PushNotification`, tied to the calling server and the user),
//! and `ProxiedUnread` (one answer per server, a dead or hung server holding up no other).

mod common;

use std::time::Duration;

use common::distributor::Distributor;
use common::*;
use guildhall::identity::freshness::now_ms;
use guildhall::identity::signing::{self, DmInvitePayload};
use guildhall::identity::{DeviceCert, PublicKey, Signature};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::stream_response::Event;
use tonic::Code;
use tonic::codec::Streaming;

const WAIT: Duration = Duration::from_secs(15);

async fn next(stream: &mut Streaming<pb::StreamResponse>) -> pb::StreamResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an event within the wait")
        .expect("stream ok")
        .expect("stream open")
}

async fn events(node: &TestNode, who: &TestUser) -> Streaming<pb::StreamResponse> {
    node.client()
        .await
        .subscribe_events(authed(&who.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner()
}

/// `inviter` opens a DM on `host` with `target` and signs its invite for the key `audience`.
async fn signed_invite(
    host: &TestNode,
    inviter: &TestUser,
    target: &str,
    audience: &PublicKey,
) -> pb::DmInvite {
    let reply = host
        .client()
        .await
        .create_dm(authed(
            &inviter.token,
            pb::CreateDmRequest {
                target_user_id: target.into(),
            },
        ))
        .await
        .expect("create DM")
        .into_inner();
    let mut invite = pb::DmInvite {
        token: reply.token,
        guild_id: reply.guild.expect("guild").id,
        host_server_url: host.address(),
        timestamp: now_ms(),
        target_user_id: target.into(),
        ..Default::default()
    };
    inviter
        .identity
        .sign_dm_invite(audience, &mut invite)
        .expect("target is a key");
    invite
}

async fn send(
    host: &TestNode,
    inviter: &TestUser,
    invite: &pb::DmInvite,
    homeserver: &str,
) -> Result<tonic::Response<pb::Empty>, tonic::Status> {
    host.client()
        .await
        .send_dm_invite(authed(
            &inviter.token,
            pb::SendDmInviteRequest {
                target_user_id: invite.target_user_id.clone(),
                invite: Some(invite.clone()),
                target_homeserver_url: homeserver.into(),
            },
        ))
        .await
}

async fn list(node: &TestNode, who: &TestUser) -> Vec<pb::DmInvite> {
    node.client()
        .await
        .list_dm_invites(authed(&who.token, pb::ListDmInvitesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .invites
}

/// `who`'s invites on `node` once there are some: deliveries to another node go through the
/// sender's outbox, so they arrive a moment after `SendDMInvite` answers.
async fn arrived(node: &TestNode, who: &TestUser) -> Vec<pb::DmInvite> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let invites = list(node, who).await;
        if !invites.is_empty() {
            return invites;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invite arrived within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks an invite's signature the way any client can: cert chain, then `dm-invite` for
/// `audience`.
fn signature_holds(invite: &pb::DmInvite, audience: PublicKey) -> bool {
    let Some(cert) = &invite.device_cert else {
        return false;
    };
    let inviter = PublicKey::from_hex(&invite.inviter_pubkey).expect("inviter key");
    let cert = DeviceCert {
        device_key: PublicKey::from_hex(&cert.pubkey).expect("device key"),
        device_id: cert.device_id.clone(),
        issued_at: cert.issued_at,
        expiry: cert.expiry,
        signature: Signature::from_hex(&cert.signature).expect("cert signature"),
    };
    if cert.verify(&inviter, now_ms(), 300_000).is_err() {
        return false;
    }
    let Ok(signature) = Signature::from_bytes(&invite.signature) else {
        return false;
    };
    let payload = DmInvitePayload {
        audience,
        inviter_key: inviter,
        device_key: cert.device_key,
        target: PublicKey::from_hex(&invite.target_user_id).expect("target"),
        token: invite.token.clone(),
        guild_id: invite.guild_id.clone(),
        host_server_url: invite.host_server_url.clone(),
        timestamp: invite.timestamp,
    };
    signing::verify(payload, &cert.device_key, &signature).is_ok()
}

/// An address nothing listens on.
async fn dead_address() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

#[tokio::test]
async fn dm_invite_reaches_the_target_homeserver_and_answers_reach_the_host() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    let cy = register(&b, "Cy").await;
    let mut bob_events = events(&b, &bob).await;

    let invite = signed_invite(&a, &ada, &bob.user.id, &b.audience()).await;
    send(&a, &ada, &invite, &b.address())
        .await
        .expect("SendDMInvite to B");

    // Bob is told, and B lists the invite with the inviter's signature, which holds for B.
    let event = next(&mut bob_events).await;
    let Some(Event::DmInvite(told)) = event.event else {
        panic!("expected a dm_invite event, got {event:?}");
    };
    assert_eq!(told.status, "pending");
    let listed = list(&b, &bob).await;
    assert_eq!(listed.len(), 1);
    let got = &listed[0];
    assert_eq!(got.invite_id, told.invite_id);
    assert_eq!(got.inviter_id, ada.user.id);
    assert_eq!(got.host_server_url, a.address());
    assert_eq!(got.guild_id, invite.guild_id);
    assert!(got.guild_name.starts_with("Ada & "));
    assert!(signature_holds(got, b.audience()), "signature checks out");
    assert!(!signature_holds(got, a.audience()), "bound to B");

    // A repeated delivery (a retry) changes nothing.
    a.federation_client(&b)
        .await
        .receive_dm_invite(pb::ReceiveDmInviteRequest {
            invite: Some(pb::DmInvite {
                invite_id: "1".into(),
                guild_name: "x".into(),
                ..invite.clone()
            }),
        })
        .await
        .expect("repeat is accepted");
    assert_eq!(list(&b, &bob).await.len(), 1);

    // Accepting says where and how to join.
    let join = b
        .client()
        .await
        .accept_dm_invite(authed(
            &bob.token,
            pb::AcceptDmInviteRequest {
                invite_id: got.invite_id.clone(),
            },
        ))
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(join.host_server_url, a.address());
    assert_eq!(join.token, invite.token);
    assert_eq!(join.guild_id, invite.guild_id);
    assert!(list(&b, &bob).await.is_empty());

    // Cy rejects hers: A hears of it and tells Ada.
    let mut ada_events = events(&a, &ada).await;
    let invite = signed_invite(&a, &ada, &cy.user.id, &b.audience()).await;
    send(&a, &ada, &invite, &b.address())
        .await
        .expect("send to Cy");
    let id = arrived(&b, &cy).await[0].invite_id.clone();
    b.client()
        .await
        .reject_dm_invite(authed(
            &cy.token,
            pb::RejectDmInviteRequest {
                invite_id: id.clone(),
            },
        ))
        .await
        .expect("reject");
    assert!(list(&b, &cy).await.is_empty());
    let rejected = loop {
        if let Some(Event::DmInvite(i)) = next(&mut ada_events).await.event {
            break i;
        }
    };
    assert_eq!(rejected.status, "rejected");
    assert_eq!(rejected.target_user_id, cy.user.id);
    assert_eq!(rejected.token, invite.token);
    // A rejected invite is answered: a second reject is refused, and a new DM is a new guild.
    assert_status(
        b.client()
            .await
            .reject_dm_invite(authed(
                &cy.token,
                pb::RejectDmInviteRequest { invite_id: id },
            ))
            .await,
        Code::FailedPrecondition,
        "already rejected",
    );
    let again = signed_invite(&a, &ada, &cy.user.id, &b.audience()).await;
    assert_ne!(again.guild_id, invite.guild_id);
}

#[tokio::test]
async fn dm_invite_refusals_change_nothing() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    let invite = signed_invite(&a, &ada, &bob.user.id, &b.audience()).await;
    let mut from_a = a.federation_client(&b).await;

    // Forged: the token altered after signing; signed for another server; another device's key.
    let mut altered = invite.clone();
    altered.token = "0000000000000000".into();
    let mut for_c = invite.clone();
    ada.identity
        .sign_dm_invite(&c.audience(), &mut for_c)
        .expect("sign");
    let mallory = new_identity("laptop");
    let mut stolen = invite.clone();
    mallory
        .sign_dm_invite(&b.audience(), &mut stolen)
        .expect("sign");
    stolen.inviter_pubkey = ada.user.id.clone();
    stolen.inviter_id = ada.user.id.clone();
    for forged in [altered, for_c] {
        assert_status(
            from_a
                .receive_dm_invite(pb::ReceiveDmInviteRequest {
                    invite: Some(forged),
                })
                .await,
            Code::Unauthenticated,
            "invite.signature",
        );
    }
    assert_status(
        from_a
            .receive_dm_invite(pb::ReceiveDmInviteRequest {
                invite: Some(stolen),
            })
            .await,
        Code::Unauthenticated,
        "invite.device_cert",
    );
    // Only the DM's host may deliver its invite.
    assert_status(
        c.federation_client(&b)
            .await
            .receive_dm_invite(pb::ReceiveDmInviteRequest {
                invite: Some(invite.clone()),
            })
            .await,
        Code::PermissionDenied,
        "invite.host_server_url",
    );
    assert!(list(&b, &bob).await.is_empty(), "B stored nothing");

    // A target that is not B's user: B refuses, directly and when A's outbox delivers it (A
    // can't know; the outbox gives the delivery up at B's definitive answer).
    let stranger = new_identity("x").user_id();
    let other = signed_invite(&a, &ada, &stranger, &b.audience()).await;
    assert_status(
        from_a
            .receive_dm_invite(pb::ReceiveDmInviteRequest {
                invite: Some(other.clone()),
            })
            .await,
        Code::NotFound,
        "not a user of this server",
    );
    send(&a, &ada, &other, &b.address())
        .await
        .expect("queued for B");
    let outbox = a.node().outbox.clone();
    wait_for(WAIT, || {
        let outbox = outbox.clone();
        async move { !outbox.failed(10).await.expect("failed").is_empty() }
    })
    .await;
    let given_up = outbox.failed(10).await.expect("failed");
    assert_eq!(given_up[0].method, "ReceiveDMInvite");
    assert!(
        given_up[0].reason.contains("not a user of this server"),
        "{given_up:?}"
    );

    // Without a homeserver for an unknown target: refused at once. To an unreachable one: queued
    // (it waits in A's outbox for that server, holding up no other).
    assert_status(
        send(&a, &ada, &invite, "").await,
        Code::InvalidArgument,
        "target_homeserver_url",
    );
    let dead = dead_address().await;
    send(&a, &ada, &invite, &dead)
        .await
        .expect("queued for a server that is down");
    // Someone else's invite; an invite whose signer is not the caller.
    let eve = register(&a, "Eve").await;
    assert_status(
        send(&a, &eve, &invite, &b.address()).await,
        Code::InvalidArgument,
        "invite.inviter_pubkey",
    );
    // The refused sends changed nothing: the invite still goes out once, signed.
    send(&a, &ada, &invite, &b.address())
        .await
        .expect("send after the failures");
    let listed = arrived(&b, &bob).await;
    assert_eq!(listed.len(), 1);
    assert!(signature_holds(&listed[0], b.audience()));
}

#[tokio::test]
async fn dm_invites_and_rejections_wait_for_a_node_that_is_down() {
    let mut a = TestNode::spawn_fast_outbox().await;
    let mut b = TestNode::spawn_fast_outbox().await;
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    // Ada's client learnt B's key while B was up; then B goes down.
    let invite = signed_invite(&a, &ada, &bob.user.id, &b.audience()).await;
    let b_url = b.address();
    let b_addr = b.stop().await;

    // A accepts the invite and queues it; B gets it once it is back.
    send(&a, &ada, &invite, &b_url)
        .await
        .expect("queued while B is down");
    let head = a.outbox_head_failed(WAIT).await;
    assert_eq!(head.method, "ReceiveDMInvite");
    b.start_on(b_addr).await;
    let got = arrived(&b, &bob).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].token, invite.token);
    assert!(
        signature_holds(&got[0], b.audience()),
        "checked by B itself"
    );

    // Bob rejects while A is down: B records it and queues the notice; A hears when it is back.
    let a_addr = a.stop().await;
    b.client()
        .await
        .reject_dm_invite(authed(
            &bob.token,
            pb::RejectDmInviteRequest {
                invite_id: got[0].invite_id.clone(),
            },
        ))
        .await
        .expect("rejected while A is down");
    assert!(list(&b, &bob).await.is_empty());
    let head = b.outbox_head_failed(WAIT).await;
    assert_eq!(head.method, "ReceiveDMInviteRejection");
    a.start_on(a_addr).await;
    // Ada's stream replays from the start, so the notice counts whether it came before or after.
    let mut ada_events = a
        .client()
        .await
        .subscribe_events(authed(
            &ada.token,
            pb::SubscribeRequest {
                resume_from_event_id: "0".into(),
            },
        ))
        .await
        .expect("subscribe")
        .into_inner();
    let rejected = loop {
        if let Some(Event::DmInvite(i)) = next(&mut ada_events).await.event
            && i.status == "rejected"
        {
            break i;
        }
    };
    assert_eq!(rejected.token, invite.token);
    assert_eq!(rejected.target_user_id, bob.user.id);
    b.outbox_drained(WAIT).await;
    assert_eq!(b.node().outbox.stats().await.expect("stats").failed, 0);
}

#[tokio::test]
async fn dm_invite_between_users_of_one_node_is_signed_and_joins() {
    let a = TestNode::spawn().await;
    let ada = register(&a, "Ada").await;
    let cat = register(&a, "Cat").await;
    let dan = register(&a, "Dan").await;
    let mut cat_events = events(&a, &cat).await;
    let invite = signed_invite(&a, &ada, &cat.user.id, &a.audience()).await;
    send(&a, &ada, &invite, "").await.expect("local send");
    let event = next(&mut cat_events).await;
    assert!(matches!(event.event, Some(Event::DmInvite(_))), "{event:?}");
    let listed = list(&a, &cat).await;
    assert_eq!(listed.len(), 1);
    assert!(signature_holds(&listed[0], a.audience()));

    // The token admits Cat only.
    assert_status(
        a.client()
            .await
            .join_invite(dan.identity.join_invite_request(
                &a.audience(),
                &invite.token,
                "Dan",
                now_ms(),
            ))
            .await,
        Code::PermissionDenied,
        "another user",
    );
    let join = a
        .client()
        .await
        .accept_dm_invite(authed(
            &cat.token,
            pb::AcceptDmInviteRequest {
                invite_id: listed[0].invite_id.clone(),
            },
        ))
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(join.host_server_url, a.address());
    assert_eq!(join.guild_id, invite.guild_id);
    let guilds = a
        .client()
        .await
        .list_guilds(authed(&cat.token, pb::ListGuildsRequest {}))
        .await
        .expect("guilds")
        .into_inner()
        .guilds;
    assert!(guilds.iter().any(|g| g.id == invite.guild_id && g.is_dm));
}

fn notice(message_id: &str) -> String {
    format!(
        r#"{{"type":"dm","guild_id":"7","channel_id":"8","message_id":"{message_id}","sender_id":"9"}}"#
    )
}

#[tokio::test]
async fn push_delegation_reaches_the_distributor_only_from_its_server() {
    let a = TestNode::spawn().await;
    let b = TestNode::spawn_with(|c| c.allow_private_addresses = true).await;
    let c = TestNode::spawn().await;
    let bob = register(&b, "Bob").await;
    let cy = register(&b, "Cy").await;
    let distributor = Distributor::start(&[]).await;
    b.client()
        .await
        .register_push_distributor(authed(
            &bob.token,
            pb::RegisterPushDistributorRequest {
                distributor_url: format!("http://{}/up", distributor.addr),
            },
        ))
        .await
        .expect("register distributor");

    let mut from_a = a.federation_client(&b).await;
    let token = from_a
        .verify_user(pb::VerifyUserRequest {
            user_id: bob.user.id.clone(),
            challenge: bob.identity.verify_challenge(&b.audience(), now_ms()),
        })
        .await
        .expect("VerifyUser from A")
        .into_inner()
        .push_delegation_token;
    let push = |user: &str, message: &str| pb::PushNotificationRequest {
        target_user_id: user.into(),
        push_delegation_token: token.clone(),
        payload: notice(message),
    };
    from_a
        .push_notification(push(&bob.user.id, "100"))
        .await
        .expect("push from A");

    // Refused: the token from another server, for another user, a payload carrying text.
    assert_status(
        c.federation_client(&b)
            .await
            .push_notification(push(&bob.user.id, "200"))
            .await,
        Code::PermissionDenied,
        "push_delegation_token",
    );
    assert_status(
        from_a.push_notification(push(&cy.user.id, "201")).await,
        Code::PermissionDenied,
        "push_delegation_token",
    );
    let mut chatty = push(&bob.user.id, "202");
    chatty.payload = chatty.payload.replace('}', r#","text":"secret"}"#);
    assert_status(
        from_a.push_notification(chatty).await,
        Code::InvalidArgument,
        "payload",
    );
    from_a
        .push_notification(push(&bob.user.id, "101"))
        .await
        .expect("second push from A");

    wait_for(WAIT, || async { distributor.bodies().len() >= 2 }).await;
    let bodies = distributor.bodies();
    let ids: Vec<&str> = bodies
        .iter()
        .map(|b| b["message_id"].as_str().expect("message_id"))
        .collect();
    assert!(ids.contains(&"100") && ids.contains(&"101"), "{bodies:?}");
    assert_eq!(
        bodies.len(),
        2,
        "refused pushes were not queued: {bodies:?}"
    );
    for body in &bodies {
        assert_eq!(body["server"], a.address());
        assert_eq!(body["type"], "dm");
        assert!(body.get("text").is_none());
    }
}

/// A server that accepts connections and never answers, until released.
struct Hung {
    url: String,
    release: tokio::sync::oneshot::Sender<()>,
}

async fn hung_server() -> Hung {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut released = released;
        loop {
            tokio::select! {
                _ = &mut released => break,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => break,
                },
            }
        }
        // Dropping the listener and the sockets closes every connection.
    });
    Hung { url, release }
}

async fn answer(stream: &mut Streaming<pb::ProxiedUnreadResponse>) -> pb::ProxiedUnreadResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an answer within the wait")
        .expect("stream ok")
        .expect("an answer")
}

fn query(url: &str, token: &str) -> pb::ServerQuery {
    pb::ServerQuery {
        url: url.into(),
        token: token.into(),
    }
}

#[tokio::test]
async fn proxied_unread_streams_each_server_as_it_answers() {
    let (a, b, c) = (
        TestNode::spawn().await,
        TestNode::spawn().await,
        TestNode::spawn().await,
    );
    let ada = register(&a, "Ada").await;
    // Ada's sessions on her other servers.
    let (on_b, on_c) = (session(&ada, &b).await, session(&ada, &c).await);
    let lab = create_room_as(&b, &on_b, "Lab").await;
    let dead = dead_address().await;
    let hung = hung_server().await;

    assert_status(
        a.client()
            .await
            .proxied_unread(pb::ProxiedUnreadRequest::default())
            .await,
        Code::Unauthenticated,
        "authorization",
    );
    let mut stream = a
        .client()
        .await
        .proxied_unread(authed(
            &ada.token,
            pb::ProxiedUnreadRequest {
                queries: vec![
                    query(&hung.url, "t"),
                    query(&b.address(), &on_b),
                    query(&dead, "t"),
                    query(&c.address(), &on_c),
                    query(&c.address(), "not-a-session"),
                ],
            },
        ))
        .await
        .expect("ProxiedUnread")
        .into_inner();
    // Four answers arrive while the hung server still holds its connection.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(answer(&mut stream).await);
    }
    assert!(seen.iter().all(|r| r.server != hung.url), "{seen:?}");
    let at_b = seen.iter().find(|r| r.server == b.address()).expect("B");
    assert_eq!(at_b.error, None);
    assert!(at_b.guilds.iter().any(|g| g.id == lab));
    assert!(at_b.channels.iter().any(|ch| ch.guild_id == lab));
    let at_dead = seen.iter().find(|r| r.server == dead).expect("dead");
    assert!(
        at_dead
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not reachable from this server"))
    );
    let at_c: Vec<_> = seen.iter().filter(|r| r.server == c.address()).collect();
    assert_eq!(at_c.len(), 2);
    assert!(at_c.iter().any(|r| r.error.is_none()));
    assert!(at_c.iter().any(|r| {
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("Unauthenticated"))
    }));
    // Released, the hung server's answer comes last, as an error; then the stream ends.
    hung.release.send(()).expect("release");
    let last = answer(&mut stream).await;
    assert_eq!(last.server, hung.url);
    assert!(last.error.is_some());
    let end = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("end within the wait")
        .expect("stream ok");
    assert!(end.is_none());
}

#[tokio::test]
async fn proxied_unread_bounds_each_server_and_checks_queries() {
    let a = TestNode::spawn_with(|c| c.unread_proxy_timeout_ms = 200).await;
    let ada = register(&a, "Ada").await;
    let hung = hung_server().await;
    let mut stream = a
        .client()
        .await
        .proxied_unread(authed(
            &ada.token,
            pb::ProxiedUnreadRequest {
                queries: vec![query(&hung.url, "t")],
            },
        ))
        .await
        .expect("ProxiedUnread")
        .into_inner();
    let only = answer(&mut stream).await;
    assert!(
        only.error
            .as_deref()
            .is_some_and(|e| e.contains("within 200 ms")),
        "{only:?}"
    );
    drop(hung);

    let mut c = a.client().await;
    for (queries, needle) in [
        (vec![query("ftp://x", "t")], "queries[0].url"),
        (vec![query(&a.address(), "")], "queries[0].token"),
        (vec![query(&a.address(), "t"); 33], "queries"),
    ] {
        assert_status(
            c.proxied_unread(authed(&ada.token, pb::ProxiedUnreadRequest { queries }))
                .await,
            Code::InvalidArgument,
            needle,
        );
    }
}

/// A guild made with a bare session token on `node`; returns its id.
async fn create_room_as(node: &TestNode, token: &str, name: &str) -> String {
    node.client()
        .await
        .create_guild(authed(
            token,
            pb::CreateGuildRequest {
                name: name.into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create guild")
        .into_inner()
        .guild
        .expect("guild")
        .id
}

/// `who` registers their identity on `node` too; returns the session token there.
async fn session(who: &TestUser, node: &TestNode) -> String {
    node.client()
        .await
        .register(
            who.identity
                .register_request(&node.audience(), "Ada", None, now_ms()),
        )
        .await
        .expect("register elsewhere")
        .into_inner()
        .token
}
