//! The outbound address policy: a request can't make the node connect to a non-public address in
//! any spelling (a join's homeserver, a DM invite's, `ProxiedUnread` servers, a server-list entry), and a peer
//! that can't be reached gets the same answer whatever the state of its port.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use guildhall::identity::freshness::now_ms;
use guildhall::outbound::UNREACHABLE;
use guildhall::proto::guildhall::v1 as pb;
use tokio::io::AsyncWriteExt;
use tonic::Code;

/// What a listener does with the connections it gets.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Closes at once.
    Close,
    /// Writes a plaintext HTTP/1 answer and closes (an open port that is not a guildhall node).
    Http1,
    /// Keeps the connection open and says nothing.
    Hang,
}

/// A port on loopback that counts the connections made to it.
struct Watched {
    port: u16,
    connections: Arc<AtomicUsize>,
}

async fn watched(behaviour: Behaviour) -> Watched {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            match behaviour {
                Behaviour::Close => drop(conn),
                Behaviour::Http1 => {
                    let _ = conn
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
                Behaviour::Hang => held.push(conn),
            }
        }
    });
    Watched { port, connections }
}

/// A signed join of `room` on `host` naming `homeserver_url`, by an identity nobody knows.
async fn join_naming(
    host: &TestNode,
    invite: &str,
    homeserver_url: &str,
) -> (
    Result<pb::JoinInviteResponse, tonic::Status>,
    guildhall::client::ClientIdentity,
) {
    let who = new_identity("phone");
    let request = who.join_invite_request_from(
        &host.audience(),
        invite,
        "Mallory",
        homeserver_url,
        now_ms(),
    );
    let result = host
        .client()
        .await
        .join_invite(request)
        .await
        .map(tonic::Response::into_inner);
    (result, who)
}

#[tokio::test]
async fn a_join_cannot_make_the_node_dial_a_private_address_in_any_spelling() {
    let host = TestNode::spawn_with(|c| c.allow_private_addresses = false).await;
    let owner = register(&host, "Owner").await;
    let room = create_room(&host, &owner, "Lobby").await;
    let target = watched(Behaviour::Close).await;
    let p = target.port;
    for url in [
        format!("http://127.0.0.1:{p}"),
        format!("http://127.1:{p}"),
        format!("http://0x7f000001:{p}"),
        format!("http://2130706433:{p}"),
        format!("http://0177.0.0.1:{p}"),
        format!("http://[::ffff:127.0.0.1]:{p}"),
        format!("http://[::ffff:7f00:1]:{p}"),
        // A name that resolves to loopback: checked after resolution, at connect time.
        format!("http://localhost:{p}"),
    ] {
        let (result, who) = join_naming(&host, &room.invite, &url).await;
        assert_status(result, Code::Unavailable, UNREACHABLE);
        // Nothing changed: no user, no member.
        assert_status(
            host.client()
                .await
                .login(who.login_request(&host.audience(), now_ms()))
                .await,
            Code::NotFound,
            "user_id",
        );
    }
    assert_eq!(
        member_ids(&host, &owner.token, &room.guild).await,
        vec![owner.user.id.clone()]
    );
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the node never connected to the loopback port"
    );
}

#[tokio::test]
async fn an_unreachable_peer_gets_one_answer_whatever_its_port_state() {
    // This node may dial loopback, so each kind of port is really tried.
    let host = TestNode::spawn().await;
    let owner = register(&host, "Owner").await;
    let room = create_room(&host, &owner, "Lobby").await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let close = watched(Behaviour::Close).await;
    let http1 = watched(Behaviour::Http1).await;
    let hang = watched(Behaviour::Hang).await;
    let mut answers = Vec::new();
    for port in [closed, close.port, http1.port, hang.port] {
        let url = format!("http://127.0.0.1:{port}");
        let (result, _) = join_naming(&host, &room.invite, &url).await;
        let status = result.expect_err("no homeserver there");
        assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
        answers.push(status.message().replace(&url, "<homeserver>"));
    }
    // And one the policy refuses, on a node that does not dial private addresses.
    let strict = TestNode::spawn_with(|c| c.allow_private_addresses = false).await;
    let strict_owner = register(&strict, "Owner").await;
    let strict_room = create_room(&strict, &strict_owner, "Lobby").await;
    let url = format!("http://127.0.0.1:{}", close.port);
    let (result, _) = join_naming(&strict, &strict_room.invite, &url).await;
    answers.push(
        result
            .expect_err("refused")
            .message()
            .replace(&url, "<homeserver>"),
    );
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "answers differ: {answers:#?}"
    );
    assert!(
        close.connections.load(Ordering::SeqCst) >= 1,
        "the open port was tried"
    );
}

#[tokio::test]
async fn proxied_unread_and_server_lists_follow_the_policy() {
    let home = TestNode::spawn_with(|c| c.allow_private_addresses = false).await;
    let ada = register(&home, "Ada").await;
    let target = watched(Behaviour::Close).await;
    let p = target.port;
    let urls = [
        format!("http://127.1:{p}"),
        format!("http://0x7f000001:{p}"),
        format!("http://localhost:{p}"),
    ];
    let mut answers = home
        .client()
        .await
        .proxied_unread(authed(
            &ada.token,
            pb::ProxiedUnreadRequest {
                queries: urls
                    .iter()
                    .map(|url| pb::ServerQuery {
                        url: url.clone(),
                        token: "session-token".into(),
                    })
                    .collect(),
            },
        ))
        .await
        .expect("proxied unread")
        .into_inner();
    let mut seen = 0;
    while let Some(answer) = tokio::time::timeout(Duration::from_secs(15), answers.message())
        .await
        .expect("answers in time")
        .expect("stream")
    {
        assert_eq!(answer.error.as_deref(), Some(UNREACHABLE), "{answer:?}");
        seen += 1;
    }
    assert_eq!(seen, urls.len());

    // A server-list entry the node would never reach is refused when added.
    let mut c = home.client().await;
    for url in [
        format!("http://0177.0.0.1:{p}"),
        "http://[fd00::1]/".to_owned(),
    ] {
        assert_status(
            c.add_server(authed(
                &ada.token,
                pb::AddServerRequest {
                    server_url: url.clone(),
                },
            ))
            .await,
            Code::InvalidArgument,
            "server_url: ",
        );
    }
    assert!(
        my_servers(&home, &ada)
            .await
            .iter()
            .all(|s| !s.server_url.contains(&p.to_string()) && !s.server_url.contains("fd00"))
    );
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_dm_invite_cannot_make_the_node_dial_a_private_address() {
    let host = TestNode::spawn_with(|c| {
        c.allow_private_addresses = false;
        fast_outbox(c);
    })
    .await;
    let ada = register(&host, "Ada").await;
    let target = watched(Behaviour::Close).await;
    let p = target.port;
    // Bo is unknown here; the invite names his (private) homeserver. Its key can't be fetched,
    // so the signature is left to that server: any audience will do.
    let bo = new_identity("phone");
    let bo_id = bo.user_id();
    for url in [
        format!("http://127.1:{p}"),
        format!("http://2130706433:{p}"),
        format!("http://[::ffff:127.0.0.1]:{p}"),
    ] {
        let reply = host
            .client()
            .await
            .create_dm(authed(
                &ada.token,
                pb::CreateDmRequest {
                    target_user_id: bo_id.clone(),
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
            target_user_id: bo_id.clone(),
            ..Default::default()
        };
        ada.identity
            .sign_dm_invite(&host.audience(), &mut invite)
            .expect("sign");
        // Queued (the outbox delivers when it can) or refused: either way, never dialled.
        let _ = host
            .client()
            .await
            .send_dm_invite(authed(
                &ada.token,
                pb::SendDmInviteRequest {
                    target_user_id: bo_id.clone(),
                    invite: Some(invite),
                    target_homeserver_url: url.clone(),
                },
            ))
            .await;
    }
    // Let the outbox try its deliveries, then check nothing reached the port.
    let head = host.outbox_head_failed(Duration::from_secs(10)).await;
    assert_eq!(head.method, "ReceiveDMInvite");
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "no DM invite delivery reached a private address"
    );
}
