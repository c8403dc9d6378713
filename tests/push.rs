//! Push: registering distributors and FCM tokens (with refusals), and delivery of mentions and DMs
//! to offline users' distributors, received by a real HTTP server on loopback.

mod common;

use std::time::Duration;

use common::distributor::{Answer, Distributor as Receiver, register_distributor};
use common::*;
use guildhall::config::Config;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(15);

/// Short retries and loopback receivers allowed.
fn test_push(config: &mut Config) {
    config.allow_private_addresses = true;
    config.push.retry_initial_backoff_ms = 50;
    config.push.retry_max_backoff_ms = 200;
    config.push.request_timeout_ms = 5_000;
}

async fn distributors(node: &TestNode, who: &TestUser) -> Vec<String> {
    node.client()
        .await
        .list_push_distributors(authed(&who.token, pb::Empty {}))
        .await
        .expect("list distributors")
        .into_inner()
        .distributor_urls
}

async fn send(node: &TestNode, who: &TestUser, channel: &str, text: &str) -> pb::Message {
    send_text(node, &who.token, channel, text).await
}

fn mention(user: &TestUser) -> String {
    format!("<@{}>", user.user.id)
}

/// The body every push carries: ids only, never the text.
fn expected_body(kind: &str, guild: &str, message: &pb::Message) -> serde_json::Value {
    serde_json::json!({
        "type": kind,
        "guild_id": guild,
        "channel_id": message.channel_id,
        "message_id": message.id,
        "sender_id": message.sender_id,
    })
}

#[tokio::test]
async fn distributors_register_list_and_refuse() {
    let node = TestNode::spawn_with(|c| {
        test_push(c);
        c.push.max_distributors_per_user = 3;
    })
    .await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let mut c = node.client().await;

    assert!(distributors(&node, &ada).await.is_empty());
    register_distributor(&node, &ada, "https://push.example.org/up/1").await;
    register_distributor(&node, &ada, "http://push.example.org/up/2").await;
    register_distributor(&node, &ada, "https://push.example.org/up/1").await;
    assert_eq!(
        distributors(&node, &ada).await,
        [
            "https://push.example.org/up/1",
            "http://push.example.org/up/2"
        ],
        "registering twice keeps one"
    );
    assert!(distributors(&node, &bob).await.is_empty(), "per user");

    let long = format!("https://push.example.org/{}", "a".repeat(2048));
    for (bad, rule) in [
        ("", "http"),
        ("push.example.org/up", "http"),
        ("ftp://push.example.org/up", "http"),
        ("https://", "http"),
        ("https://exa mple.org/", "http"),
        (long.as_str(), "2048 bytes"),
    ] {
        assert_status(
            c.register_push_distributor(authed(
                &ada.token,
                pb::RegisterPushDistributorRequest {
                    distributor_url: bad.into(),
                },
            ))
            .await,
            Code::InvalidArgument,
            "distributor_url",
        );
        assert_status(
            c.register_push_distributor(authed(
                &ada.token,
                pb::RegisterPushDistributorRequest {
                    distributor_url: bad.into(),
                },
            ))
            .await,
            Code::InvalidArgument,
            rule,
        );
    }

    register_distributor(&node, &ada, "https://push.example.org/up/3").await;
    assert_status(
        c.register_push_distributor(authed(
            &ada.token,
            pb::RegisterPushDistributorRequest {
                distributor_url: "https://push.example.org/up/4".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        "distributor_url: at most 3",
    );
    // Already there: still fine when full.
    register_distributor(&node, &ada, "https://push.example.org/up/3").await;
    assert_eq!(distributors(&node, &ada).await.len(), 3);

    let my_data = c
        .get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner();
    assert_eq!(my_data.push_distributors.len(), 3);

    assert_status(
        c.list_push_distributors(pb::Empty {}).await,
        Code::Unauthenticated,
        "authorization",
    );
}

#[tokio::test]
async fn distributors_on_private_addresses_are_refused_by_default() {
    let node = TestNode::spawn_with(|c| c.allow_private_addresses = false).await;
    let ada = register(&node, "Ada").await;
    let mut c = node.client().await;
    // Every spelling of a non-public address, as the WHATWG URL parser reads them.
    for url in [
        "http://127.0.0.1:8080/up",
        "http://127.1:8080/up",
        "http://0x7f000001:8080/up",
        "http://2130706433:8080/up",
        "http://0177.0.0.1:8080/up",
        "http://[::ffff:127.0.0.1]:8080/up",
        "http://10.0.0.5/up",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/up",
    ] {
        assert_status(
            c.register_push_distributor(authed(
                &ada.token,
                pb::RegisterPushDistributorRequest {
                    distributor_url: url.into(),
                },
            ))
            .await,
            Code::InvalidArgument,
            "does not connect to those",
        );
    }
    assert!(distributors(&node, &ada).await.is_empty());
}

#[tokio::test]
async fn fcm_tokens_register_and_unregister() {
    let node = TestNode::spawn_with(|c| c.push.max_fcm_tokens_per_user = 2).await;
    let ada = register(&node, "Ada").await;
    let mut c = node.client().await;
    let fcm = |token: &str| {
        authed(
            &ada.token,
            pb::RegisterFcmTokenRequest {
                token: token.into(),
            },
        )
    };
    let unfcm = |token: &str| {
        authed(
            &ada.token,
            pb::UnregisterFcmTokenRequest {
                token: token.into(),
            },
        )
    };
    c.register_fcm_token(fcm("dGVzdA:APA91b-first_token"))
        .await
        .expect("register");
    c.register_fcm_token(fcm("dGVzdA:APA91b-first_token"))
        .await
        .expect("again: idempotent");
    c.register_fcm_token(fcm("second-token"))
        .await
        .expect("second");
    assert_status(
        c.register_fcm_token(fcm("third-token")).await,
        Code::FailedPrecondition,
        "token: at most 2 FCM tokens",
    );
    c.unregister_fcm_token(unfcm("second-token"))
        .await
        .expect("unregister");
    assert_status(
        c.unregister_fcm_token(unfcm("second-token")).await,
        Code::NotFound,
        "token: not registered",
    );
    c.register_fcm_token(fcm("third-token"))
        .await
        .expect("room again after unregistering");

    for (bad, rule) in [
        (String::new(), "token: is required"),
        ("with space".to_owned(), "token: must be visible ASCII"),
        (
            "tab\there".to_owned(),
            "token: must not contain control characters",
        ),
        ("é".to_owned(), "token: must be visible ASCII"),
        ("x".repeat(4097), "token: must be at most 4096 bytes"),
    ] {
        assert_status(
            c.register_fcm_token(fcm(&bad)).await,
            Code::InvalidArgument,
            rule,
        );
        assert_status(
            c.unregister_fcm_token(unfcm(&bad)).await,
            Code::InvalidArgument,
            rule,
        );
    }
    // Another user can't unregister Ada's token.
    let bob = register(&node, "Bob").await;
    assert_status(
        c.unregister_fcm_token(authed(
            &bob.token,
            pb::UnregisterFcmTokenRequest {
                token: "third-token".into(),
            },
        ))
        .await,
        Code::NotFound,
        "token",
    );
}

#[tokio::test]
async fn mentions_of_offline_users_are_pushed() {
    let receiver = Receiver::start(&[]).await;
    // One delivery at a time, in queue order, so "nothing else arrived" means nothing was queued.
    let node = TestNode::spawn_with(|c| {
        test_push(c);
        c.push.max_concurrent_deliveries = 1;
    })
    .await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let room = create_room(&node, &ada, "Pushers").await;
    join_room(&node, &bob, &room.invite).await;
    join_room(&node, &cy, &room.invite).await;
    register_distributor(&node, &bob, &receiver.url("/bob")).await;
    register_distributor(&node, &cy, &receiver.url("/cy")).await;
    // Ada's own distributor never hears about her own messages.
    register_distributor(&node, &ada, &receiver.url("/ada")).await;

    send(&node, &ada, &room.channel, "no mention here").await;
    let text = format!("secret plans for {}", mention(&bob));
    let first = send(&node, &ada, &room.channel, &text).await;
    let got = receiver.wait_for_count("/bob", 1).await;
    assert_eq!(got[0].body, expected_body("mention", &room.guild, &first));
    assert!(
        !got[0].body.to_string().contains("secret"),
        "no message text in pushes"
    );

    // The guild's default role (id = guild id) mentions everyone, from a sender allowed to.
    grant(
        &node,
        &ada.token,
        &room.guild,
        &bob.user.id,
        &["messages.mention_everyone"],
    )
    .await;
    let everyone = send(
        &node,
        &bob,
        &room.channel,
        &format!("<@&{}> hi", room.guild),
    )
    .await;
    let to_cy = receiver.wait_for_count("/cy", 1).await;
    assert_eq!(
        to_cy[0].body,
        expected_body("mention", &room.guild, &everyone)
    );
    let to_ada = receiver.wait_for_count("/ada", 1).await;
    assert_eq!(
        to_ada[0].body,
        expected_body("mention", &room.guild, &everyone)
    );
    // Cy's and Ada's arrived after Bob's single mention push; the plain message, and Bob's own
    // @everyone, pushed nothing to Bob.
    assert_eq!(receiver.at("/bob").len(), 1);
    assert_eq!(receiver.at("/cy").len(), 1);

    // Cy blocks Ada: Ada's mention of Cy pushes nothing, while her next mention of Bob does
    // (deliveries go one at a time in queue order, so Cy's would have come first).
    node.client()
        .await
        .block_user(authed(
            &cy.token,
            pb::RelationshipRequest {
                user_id: ada.user.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("block");
    send(&node, &ada, &room.channel, &format!("hey {}", mention(&cy))).await;
    send(
        &node,
        &ada,
        &room.channel,
        &format!("hey {}", mention(&bob)),
    )
    .await;
    receiver.wait_for_count("/bob", 2).await;
    assert_eq!(
        receiver.at("/cy").len(),
        1,
        "a blocked sender's mention pushes nothing"
    );
}

#[tokio::test]
async fn dms_to_offline_users_are_pushed() {
    let receiver = Receiver::start(&[]).await;
    let node = TestNode::spawn_with(test_push).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    register_distributor(&node, &bob, &receiver.url("/bob")).await;
    let mut c = node.client().await;
    let dm = c
        .create_dm(authed(
            &ada.token,
            pb::CreateDmRequest {
                target_user_id: bob.user.id.clone(),
            },
        ))
        .await
        .expect("dm")
        .into_inner()
        .guild
        .expect("guild");
    let invite_id = c
        .list_dm_invites(authed(&bob.token, pb::ListDmInvitesRequest {}))
        .await
        .expect("invites")
        .into_inner()
        .invites[0]
        .invite_id
        .clone();
    c.accept_dm_invite(authed(&bob.token, pb::AcceptDmInviteRequest { invite_id }))
        .await
        .expect("accept");
    let channel = c
        .list_channels(authed(
            &ada.token,
            pb::ListChannelsRequest {
                guild_id: dm.id.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels[0]
        .id
        .clone();

    let message = send(&node, &ada, &channel, "psst").await;
    let got = receiver.wait_for_count("/bob", 1).await;
    assert_eq!(got[0].body, expected_body("dm", &dm.id, &message));
}

#[tokio::test]
async fn online_users_get_no_push() {
    let receiver = Receiver::start(&[]).await;
    // One delivery at a time, in queue order: anything queued for Bob would reach the receiver
    // before Cy's push does.
    let node = TestNode::spawn_with(|c| {
        test_push(c);
        c.push.max_concurrent_deliveries = 1;
    })
    .await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let cy = register(&node, "Cy").await;
    let room = create_room(&node, &ada, "Live").await;
    join_room(&node, &bob, &room.invite).await;
    join_room(&node, &cy, &room.invite).await;
    register_distributor(&node, &bob, &receiver.url("/bob")).await;
    register_distributor(&node, &cy, &receiver.url("/cy")).await;

    let mut live = node
        .client()
        .await
        .subscribe_events(authed(&bob.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let to_bob = send(&node, &ada, &room.channel, &mention(&bob)).await;
    send(&node, &ada, &room.channel, &mention(&cy)).await;
    receiver.wait_for_count("/cy", 1).await;
    assert!(receiver.at("/bob").is_empty(), "Bob is online: no push");
    // Bob saw it live instead.
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            let event = live.message().await.expect("stream").expect("event");
            if let Some(pb::stream_response::Event::MessageCreated(m)) = event.event
                && m.message.as_ref().is_some_and(|m| m.id == to_bob.id)
            {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "Bob's stream carries the mention");
}

#[tokio::test]
async fn failed_pushes_are_retried() {
    let receiver =
        Receiver::start(&[("/bob", Answer::Status(500)), ("/bob", Answer::Status(503))]).await;
    let node = TestNode::spawn_with(test_push).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Flaky").await;
    join_room(&node, &bob, &room.invite).await;
    register_distributor(&node, &bob, &receiver.url("/bob")).await;

    let message = send(&node, &ada, &room.channel, &mention(&bob)).await;
    let got = receiver.wait_for_count("/bob", 3).await;
    let body = expected_body("mention", &room.guild, &message);
    assert!(
        got.iter().all(|r| r.body == body),
        "the same push each time"
    );
    assert_eq!(
        distributors(&node, &bob).await.len(),
        1,
        "a 5xx keeps the distributor"
    );
}

#[tokio::test]
async fn gone_distributors_are_removed() {
    let receiver = Receiver::start(&[
        ("/old", Answer::Status(410)),
        ("/older", Answer::Status(404)),
    ])
    .await;
    let node = TestNode::spawn_with(test_push).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Gone").await;
    join_room(&node, &bob, &room.invite).await;
    register_distributor(&node, &bob, &receiver.url("/old")).await;
    register_distributor(&node, &bob, &receiver.url("/older")).await;
    register_distributor(&node, &bob, &receiver.url("/current")).await;

    send(&node, &ada, &room.channel, &mention(&bob)).await;
    receiver.wait_for_count("/current", 1).await;
    wait_for(WAIT, || async {
        distributors(&node, &bob).await == [receiver.url("/current")]
    })
    .await;
    // The gone ones were answered once each and never retried.
    send(&node, &ada, &room.channel, &mention(&bob)).await;
    receiver.wait_for_count("/current", 2).await;
    assert_eq!(
        receiver.at("/old").len() + receiver.at("/older").len(),
        2,
        "one 410 and one 404, then nothing more"
    );
}

#[tokio::test]
async fn messaging_works_while_distributors_hang_or_are_down() {
    let hanging = Receiver::start(&[("/bob", Answer::Hang); 64]).await;
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let node = TestNode::spawn_with(|c| {
        test_push(c);
        c.push.max_concurrent_deliveries = 2;
        c.push.request_timeout_ms = 60_000;
    })
    .await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Outage").await;
    join_room(&node, &bob, &room.invite).await;
    register_distributor(&node, &bob, &hanging.url("/bob")).await;
    register_distributor(&node, &bob, &format!("http://{closed}/bob")).await;

    let mut sent = Vec::new();
    for i in 0..20 {
        let text = format!("{} #{i}", mention(&bob));
        sent.push(send(&node, &ada, &room.channel, &text).await.id);
    }
    // Deliveries are stuck on the hanging receiver, yet every message went through.
    hanging.wait_for_count("/bob", 1).await;
    let history = node
        .client()
        .await
        .get_history(authed(
            &bob.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                limit: 50,
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner();
    for id in &sent {
        assert!(history.messages.iter().any(|m| &m.id == id));
    }
}

#[tokio::test]
async fn queued_pushes_survive_a_restart() {
    // The first attempt hangs (the node stops during it); the restarted node tries again.
    let receiver = Receiver::start(&[("/bob", Answer::Hang)]).await;
    let mut node = TestNode::spawn_with(|c| {
        test_push(c);
        c.push.request_timeout_ms = 60_000;
    })
    .await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Restart").await;
    join_room(&node, &bob, &room.invite).await;
    register_distributor(&node, &bob, &receiver.url("/bob")).await;

    let message = send(&node, &ada, &room.channel, &mention(&bob)).await;
    receiver.wait_for_count("/bob", 1).await;
    node.restart().await;
    let got = receiver.wait_for_count("/bob", 2).await;
    assert_eq!(got[1].body, expected_body("mention", &room.guild, &message));
}
