//! Nodes federating over TLS on loopback, with a CA made in the test: joins, messages and the
//! homeserver's server list travel over verified TLS; a wrong certificate, a certificate for
//! another name, and an `https://` peer that speaks plaintext are all refused, and nothing
//! changes.

mod common;

use std::time::Duration;

use common::tls::TestCa;
use common::*;
use guildhall::outbound::{DialError, Outbound};
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

async fn tls_node(ca: &TestCa, name: &str) -> TestNode {
    TestNode::spawn_with(|c| {
        ca.serve(c, name);
        fast_outbox(c);
    })
    .await
}

/// Waits until `who`'s homeserver lists `host` in their server list.
async fn listed_at_home(home: &TestNode, who: &TestUser, host: &TestNode) {
    let host = host.address();
    wait_for(WAIT, || {
        let host = host.clone();
        async move {
            my_servers(home, who)
                .await
                .iter()
                .any(|s| s.server_url == host && !s.guild_ids.is_empty())
        }
    })
    .await;
}

#[tokio::test]
async fn two_nodes_federate_over_tls() {
    let ca = TestCa::new("guildhall test CA");
    let a = tls_node(&ca, "a").await;
    let b = tls_node(&ca, "b").await;
    assert!(
        a.address().starts_with("https://127.0.0.1:"),
        "{}",
        a.address()
    );

    let ada = register(&a, "Ada").await;
    let room = create_room(&a, &ada, "Engines").await;
    let bob = register(&b, "Bob").await;
    // A asks B (over TLS) to vouch for Bob.
    let joined = remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("remote join over TLS");
    let sent = send_text(&a, &joined.token, &room.channel, "hello over TLS").await;
    assert_eq!(sent.sender_id, bob.user.id);
    assert!(
        member_ids(&a, &ada.token, &room.guild)
            .await
            .contains(&bob.user.id)
    );
    // A's membership event reaches B through the outbox, over TLS.
    listed_at_home(&b, &bob, &a).await;
}

#[tokio::test]
async fn three_nodes_federate_over_tls() {
    let ca = TestCa::new("guildhall test CA");
    let a = tls_node(&ca, "a").await;
    let b = tls_node(&ca, "b").await;
    let c = tls_node(&ca, "c").await;
    let ada = register(&a, "Ada").await;
    let room = create_room(&a, &ada, "Engines").await;
    let bob = register(&b, "Bob").await;
    let cyd = register(&c, "Cyd").await;
    let bob_at_a = remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins from B");
    let cyd_at_a = remote_join(&a, &cyd, &c.address(), &room.invite, "Cyd")
        .await
        .expect("Cyd joins from C");
    send_text(&a, &bob_at_a.token, &room.channel, "from B").await;
    send_text(&a, &cyd_at_a.token, &room.channel, "from C").await;
    let members = member_ids(&a, &ada.token, &room.guild).await;
    assert!(members.contains(&bob.user.id) && members.contains(&cyd.user.id));
    listed_at_home(&b, &bob, &a).await;
    listed_at_home(&c, &cyd, &a).await;
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_or_for_another_name_is_refused() {
    let ours = TestCa::new("our CA");
    let theirs = TestCa::new("someone else's CA");
    let a = tls_node(&ours, "a").await;
    // B's certificate is signed by a CA that A does not trust.
    let b = tls_node(&theirs, "b").await;
    let ada = register(&a, "Ada").await;
    let room = create_room(&a, &ada, "Engines").await;
    let bob = register(&b, "Bob").await;
    assert_status(
        remote_join(&a, &bob, &b.address(), &room.invite, "Bob").await,
        Code::Unavailable,
        "not reachable from this server",
    );
    assert_eq!(
        member_ids(&a, &ada.token, &room.guild).await,
        vec![ada.user.id.clone()]
    );
    assert!(
        a.node()
            .federation
            .directory()
            .get(&b.address())
            .await
            .expect("read")
            .is_none()
    );

    // What the connection itself says (the operator's log and tools see this).
    let trusting_ours = Outbound::unrestricted(Some(&ours.ca_file)).expect("tls");
    let err = trusting_ours
        .channel(&b.address(), Duration::from_secs(5))
        .await
        .expect_err("untrusted issuer");
    assert!(matches!(err, DialError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A certificate from the trusted CA, but for another name.
    let c = TestNode::spawn_with(|config| {
        let (cert, key) = ours.issue("c", &["chat.example.org"]);
        config.tls.cert_file = cert;
        config.tls.key_file = key;
    })
    .await;
    let err = trusting_ours
        .channel(&c.address(), Duration::from_secs(5))
        .await
        .expect_err("wrong name");
    assert!(matches!(err, DialError::Tls { .. }), "{err}");
}

#[tokio::test]
async fn an_https_address_is_never_spoken_to_in_plaintext() {
    let ca = TestCa::new("guildhall test CA");
    let a = tls_node(&ca, "a").await;
    let plain = TestNode::spawn().await;
    let ada = register(&a, "Ada").await;
    let room = create_room(&a, &ada, "Engines").await;
    let bob = register(&plain, "Bob").await;
    // A plaintext node named by an https:// address: an error that says so, no fallback.
    let https_to_plain = format!("https://{}", plain.node().grpc_addr);
    let err = Outbound::unrestricted(None)
        .expect("tls")
        .channel(&https_to_plain, Duration::from_secs(5))
        .await
        .expect_err("no TLS there");
    assert!(matches!(err, DialError::NotTls { .. }), "{err}");
    assert!(err.to_string().contains("did not answer with TLS"), "{err}");
    assert_status(
        remote_join(&a, &bob, &https_to_plain, &room.invite, "Bob").await,
        Code::Unavailable,
        "not reachable from this server",
    );
    assert_eq!(
        member_ids(&a, &ada.token, &room.guild).await,
        vec![ada.user.id.clone()]
    );

    // And the TLS node does not answer plaintext.
    let http_to_tls = format!("http://{}", a.node().grpc_addr);
    let plaintext = Outbound::unrestricted(None).expect("tls");
    let reply = match plaintext
        .channel(&http_to_tls, Duration::from_secs(5))
        .await
    {
        Err(_) => None,
        Ok(channel) => Some(
            pb::guild_hall_client::GuildHallClient::new(channel)
                .get_server_info(pb::Empty {})
                .await,
        ),
    };
    assert!(
        !matches!(reply, Some(Ok(_))),
        "a TLS node answered plaintext: {reply:?}"
    );
}
