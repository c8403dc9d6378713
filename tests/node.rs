//! Node-level behaviour: public methods, health, reflection, unimplemented methods, persistence.

mod common;

use common::{TestNode, assert_status, authed, register};
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn public_methods_answer_without_a_session() {
    let node = TestNode::spawn().await;
    let mut client = node.client().await;
    let hello = client
        .hello_grpc(pb::Empty {})
        .await
        .expect("hello")
        .into_inner();
    assert!(hello.message.starts_with("Hello from guildhall"));
    let before = now_ms();
    let pong = client
        .ping(pb::PingRequest { timestamp: before })
        .await
        .expect("ping")
        .into_inner();
    assert!(pong.timestamp >= before);
    let info = client
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.server_pubkey, node.audience().to_hex());
    assert!(info.peer_id.starts_with("12D3Koo"));
    assert_eq!(
        info.canonical_address,
        format!("http://{}", node.node().grpc_addr)
    );
    common::wait_for(std::time::Duration::from_secs(10), || {
        let addrs = node.node().p2p_addrs();
        async move { !addrs.is_empty() }
    })
    .await;
}

#[tokio::test]
async fn health_service_reports_serving() {
    let node = TestNode::spawn().await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", node.node().grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "guildhall.v1.GuildHall".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn accounts_and_key_survive_a_restart() {
    let mut node = TestNode::spawn().await;
    let server_id = node.audience();
    let ada = register(&node, "Ada").await;
    node.restart().await;
    assert_eq!(node.audience(), server_id, "the server key persists");
    let mut client = node.client().await;
    client
        .get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("session survives restart");
    let login = ada.identity.login_request(&node.audience(), now_ms());
    client.login(login).await.expect("login after restart");
}

#[tokio::test]
async fn replay_cache_survives_a_restart() {
    let mut node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let login = ada.identity.login_request(&node.audience(), now_ms());
    node.client()
        .await
        .login(login.clone())
        .await
        .expect("first");
    node.restart().await;
    assert_status(
        node.client().await.login(login).await,
        Code::Unauthenticated,
        "already used",
    );
}

#[tokio::test]
async fn a_node_dials_its_bootstrap_peers() {
    let first = TestNode::spawn().await;
    common::wait_for(std::time::Duration::from_secs(10), || {
        let addrs = first.node().p2p_addrs();
        async move { !addrs.is_empty() }
    })
    .await;
    let line = format!(
        "{}/p2p/{}\n",
        first.node().p2p_addrs()[0],
        first.node().info.peer_id
    );
    let peers = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(peers.path(), line).expect("write peers");
    let path = peers.path().to_path_buf();
    let second = TestNode::spawn_with(|c| c.bootstrap_file = path).await;
    common::wait_for(std::time::Duration::from_secs(10), || {
        let (a, b) = (
            first.node().p2p_peer_count(),
            second.node().p2p_peer_count(),
        );
        async move { a == 1 && b == 1 }
    })
    .await;

    let bad = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(bad.path(), "/ip4/127.0.0.1/tcp/1\n").expect("write");
    let dir = tempfile::tempdir().expect("dir");
    let config = guildhall::config::Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        bootstrap_file: bad.path().to_path_buf(),
        ..Default::default()
    };
    let err = guildhall::node::Node::start(config)
        .await
        .expect_err("bad bootstrap line");
    assert!(err.to_string().contains("line 1"), "{err}");
}
