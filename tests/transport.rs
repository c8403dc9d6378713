//! The node's listener: the served certificate is reloaded on SIGHUP; `X-Forwarded-For` sets the
//! rate-limit address only for connections from a trusted proxy; connections per client address
//! are capped.

mod common;

use std::time::Duration;

use common::tls::{TestCa, write_atomically};
use common::*;
use guildhall::outbound::Outbound;
use guildhall::proto::guildhall::v1 as pb;
use tokio::io::AsyncReadExt;
use tonic::Code;

async fn connects(node: &TestNode, ca: &std::path::Path) -> bool {
    Outbound::unrestricted(Some(ca))
        .expect("tls")
        .channel(&node.address(), Duration::from_secs(5))
        .await
        .is_ok()
}

#[tokio::test]
async fn the_certificate_is_reloaded_on_sighup() {
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let node = TestNode::spawn_with(|c| old_ca.serve(c, "node")).await;
    assert!(connects(&node, &old_ca.ca_file).await);
    assert!(!connects(&node, &new_ca.ca_file).await);

    // Renew: a certificate from another CA replaces the files in place.
    let (cert, key) = new_ca.issue("renewed", &["127.0.0.1", "localhost"]);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("read");
    write_atomically(&node.config.tls.key_file, &read(&key));
    write_atomically(&node.config.tls.cert_file, &read(&cert));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let ca = new_ca.ca_file.clone();
    wait_for(Duration::from_secs(10), || connects(&node, &ca)).await;
    assert!(!connects(&node, &old_ca.ca_file).await);
}

/// Pings `node` claiming to be `forwarded_for`.
async fn ping_as(node: &TestNode, forwarded_for: &str) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(pb::PingRequest { timestamp: 0 });
    request
        .metadata_mut()
        .insert("x-forwarded-for", forwarded_for.parse().expect("ascii"));
    node.client().await.ping(request).await.map(|_| ())
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // Behind a trusted proxy (the test's loopback connection), each client has its own limit.
    let proxied = TestNode::spawn_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
        c.settings.ping_rate_limit = 2;
    })
    .await;
    for _ in 0..2 {
        ping_as(&proxied, "203.0.113.7")
            .await
            .expect("within the limit");
    }
    assert_status(
        ping_as(&proxied, "203.0.113.7").await,
        Code::ResourceExhausted,
        "ping_rate_limit",
    );
    ping_as(&proxied, "198.51.100.9")
        .await
        .expect("another client behind the proxy has its own limit");

    // Without the setting, the header changes nothing: a client can't pick its own key.
    let direct = TestNode::spawn_with(|c| c.settings.ping_rate_limit = 2).await;
    ping_as(&direct, "203.0.113.1").await.expect("first");
    ping_as(&direct, "203.0.113.2").await.expect("second");
    assert_status(
        ping_as(&direct, "203.0.113.3").await,
        Code::ResourceExhausted,
        "ping_rate_limit",
    );
}

/// Whether the node closed `conn` (EOF) rather than keeping it open.
async fn closed_by_node(conn: &mut tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), conn.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let node = TestNode::spawn_with(|c| c.max_connections_per_address = 2).await;
    let addr = node.node().grpc_addr;
    let mut first = tokio::net::TcpStream::connect(addr).await.expect("first");
    let mut second = tokio::net::TcpStream::connect(addr).await.expect("second");
    let mut third = tokio::net::TcpStream::connect(addr)
        .await
        .expect("tcp accept");
    assert!(
        closed_by_node(&mut third).await,
        "the third connection is closed"
    );
    assert!(!closed_by_node(&mut first).await);
    assert!(!closed_by_node(&mut second).await);
    drop(first);
    // The freed slot is given back once the node sees the close.
    wait_for(Duration::from_secs(5), || async {
        let mut again = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        !closed_by_node(&mut again).await
    })
    .await;
}
