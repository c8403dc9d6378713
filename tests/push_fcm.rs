//! FCM delivery against a local stand-in for Google's FCM HTTP v1 API and OAuth endpoint
//! (`common::fcm`), which checks the JWT assertion (signature, header, claims, audience) and the
//! message shape as Google specifies them: delivery of data-only pushes with ids and no message
//! text, token removal on `UNREGISTERED` and on an invalid token, retries with backoff on 429 and
//! 503 (`Retry-After` honoured), a refused access token replaced, pushes for remote members
//! delegated to their homeserver, and an assertion the stand-in can't verify delivering nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::distributor::{Distributor, register_distributor};
use common::fcm::{FcmStandIn, OTHER_KEY, PRIVATE_KEY, Reply};
use common::*;
use guildhall::config::Config;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// FCM through `stand_in` with the service account key `key`; short retries.
fn fcm_on(config: &mut Config, stand_in: &FcmStandIn, key: &str) {
    config.push.retry_initial_backoff_ms = 50;
    config.push.retry_max_backoff_ms = 200;
    config.push.request_timeout_ms = 5_000;
    config.push.fcm_service_account_file = stand_in.key_file(key);
    config.push.fcm_endpoint = stand_in.endpoint();
    config.push.fcm_token_uri = stand_in.token_uri();
}

async fn register_fcm(node: &TestNode, who: &TestUser, token: &str) {
    node.client()
        .await
        .register_fcm_token(authed(
            &who.token,
            pb::RegisterFcmTokenRequest {
                token: token.into(),
            },
        ))
        .await
        .expect("register FCM token");
}

async fn unregister_fcm(node: &TestNode, who: &TestUser, token: &str) -> Result<(), tonic::Status> {
    node.client()
        .await
        .unregister_fcm_token(authed(
            &who.token,
            pb::UnregisterFcmTokenRequest {
                token: token.into(),
            },
        ))
        .await
        .map(|_| ())
}

fn mention(user: &TestUser) -> String {
    format!("<@{}>", user.user.id)
}

/// The data every push carries: the ids of the notice, as strings; never the text.
fn expected_data(kind: &str, guild: &str, message: &pb::Message) -> BTreeMap<String, String> {
    [
        ("type", kind),
        ("guild_id", guild),
        ("channel_id", &message.channel_id),
        ("message_id", &message.id),
        ("sender_id", &message.sender_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Ada, and Bob in her room, on `node`.
async fn room_with_bob(node: &TestNode) -> (TestUser, TestUser, Room) {
    let ada = register(node, "Ada").await;
    let bob = register(node, "Bob").await;
    let room = create_room(node, &ada, "Phones").await;
    join_room(node, &bob, &room.invite).await;
    (ada, bob, room)
}

#[tokio::test]
async fn fcm_tokens_get_data_only_pushes_without_text() {
    let stand_in = FcmStandIn::start(&[]).await;
    let distributor = Distributor::start(&[]).await;
    let node = TestNode::spawn_with(|c| fcm_on(c, &stand_in, PRIVATE_KEY)).await;
    let (ada, bob, room) = room_with_bob(&node).await;
    register_fcm(&node, &bob, "bob-phone").await;
    register_fcm(&node, &bob, "bob-tablet").await;
    register_distributor(&node, &bob, &distributor.url("/bob")).await;
    // Ada's own token never hears about her own messages.
    register_fcm(&node, &ada, "ada-phone").await;

    let text = format!("secret plans for {}", mention(&bob));
    let first = send_text(&node, &ada.token, &room.channel, &text).await;
    let want = expected_data("mention", &room.guild, &first);
    for token in ["bob-phone", "bob-tablet"] {
        let got = stand_in.wait_for_sends(token, 1).await;
        assert_eq!(got[0].data, want, "{token}");
        assert!(
            !got[0].raw.contains("secret"),
            "no message text: {}",
            got[0].raw
        );
    }
    // UnifiedPush gets the same notice, alongside.
    distributor.wait_for_count("/bob", 1).await;

    let second = send_text(&node, &ada.token, &room.channel, &mention(&bob)).await;
    let got = stand_in.wait_for_sends("bob-phone", 2).await;
    assert_eq!(got[1].data, expected_data("mention", &room.guild, &second));
    stand_in.wait_for_sends("bob-tablet", 2).await;

    assert_eq!(
        stand_in.problems(),
        Vec::<String>::new(),
        "as Google specifies"
    );
    assert_eq!(
        stand_in.assertions(),
        1,
        "one access token, cached for every push"
    );
    assert!(stand_in.sent_to("ada-phone").is_empty());
    assert!(
        stand_in.sent().iter().all(|s| !s.raw.contains("secret")),
        "no message text in any push"
    );
}

#[tokio::test]
async fn unregistered_and_invalid_tokens_are_forgotten() {
    let stand_in = FcmStandIn::start(&[
        ("uninstalled", Reply::unregistered()),
        ("malformed", Reply::invalid_token()),
        ("kept", Reply::invalid_message()),
    ])
    .await;
    let node = TestNode::spawn_with(|c| {
        fcm_on(c, &stand_in, PRIVATE_KEY);
        c.push.max_fcm_tokens_per_user = 3;
    })
    .await;
    let (ada, bob, room) = room_with_bob(&node).await;
    for token in ["uninstalled", "malformed", "kept"] {
        register_fcm(&node, &bob, token).await;
    }
    send_text(&node, &ada.token, &room.channel, &mention(&bob)).await;
    for token in ["uninstalled", "malformed", "kept"] {
        stand_in.wait_for_sends(token, 1).await;
    }
    // Bob is at his cap of 3: two slots free up once the dead tokens are forgotten.
    let mut c = node.client().await;
    for probe in ["new-1", "new-2"] {
        wait_for(WAIT, || {
            let mut c = c.clone();
            let token = bob.token.clone();
            async move {
                c.register_fcm_token(authed(
                    &token,
                    pb::RegisterFcmTokenRequest {
                        token: probe.into(),
                    },
                ))
                .await
                .is_ok()
            }
        })
        .await;
    }
    assert_status(
        c.register_fcm_token(authed(
            &bob.token,
            pb::RegisterFcmTokenRequest {
                token: "new-3".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        "token: at most 3",
    );

    // The next push goes to the live tokens only.
    send_text(&node, &ada.token, &room.channel, &mention(&bob)).await;
    for token in ["kept", "new-1", "new-2"] {
        stand_in
            .wait_for_sends(token, if token == "kept" { 2 } else { 1 })
            .await;
    }
    assert_eq!(stand_in.sent_to("uninstalled").len(), 1, "never again");
    assert_eq!(stand_in.sent_to("malformed").len(), 1, "never again");
    for gone in ["uninstalled", "malformed"] {
        assert_status(
            unregister_fcm(&node, &bob, gone).await,
            Code::NotFound,
            "token: not registered",
        );
    }
    unregister_fcm(&node, &bob, "kept")
        .await
        .expect("an error about the message keeps the token");
    assert_eq!(stand_in.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn quota_and_unavailable_answers_are_retried_with_backoff() {
    let stand_in = FcmStandIn::start(&[
        ("bob-phone", Reply::quota_exceeded(1)),
        ("bob-phone", Reply::unavailable()),
    ])
    .await;
    let node = TestNode::spawn_with(|c| fcm_on(c, &stand_in, PRIVATE_KEY)).await;
    let (ada, bob, room) = room_with_bob(&node).await;
    register_fcm(&node, &bob, "bob-phone").await;

    let message = send_text(&node, &ada.token, &room.channel, &mention(&bob)).await;
    let got = stand_in.wait_for_sends("bob-phone", 3).await;
    let want = expected_data("mention", &room.guild, &message);
    assert!(
        got.iter().all(|s| s.data == want),
        "the same push each time"
    );
    // The 429 said Retry-After: 1, far longer than the 50 ms backoff: it was waited out.
    let after_quota = got[1].at - got[0].at;
    assert!(
        after_quota >= Duration::from_millis(950),
        "retried {after_quota:?} after a 429 with Retry-After: 1"
    );
    // The 503 had no Retry-After: the second failure's backoff, 2 × 50 ms.
    let after_unavailable = got[2].at - got[1].at;
    assert!(
        after_unavailable >= Duration::from_millis(90),
        "retried {after_unavailable:?} after a 503"
    );
    // Delivered on the third try: nothing more comes, and the token stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stand_in.sent_to("bob-phone").len(), 3);
    unregister_fcm(&node, &bob, "bob-phone")
        .await
        .expect("retried answers keep the token");
    assert_eq!(stand_in.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_access_token_is_replaced_once() {
    let stand_in = FcmStandIn::start(&[("bob-phone", Reply::RevokeAccessToken)]).await;
    let node = TestNode::spawn_with(|c| fcm_on(c, &stand_in, PRIVATE_KEY)).await;
    let (ada, bob, room) = room_with_bob(&node).await;
    register_fcm(&node, &bob, "bob-phone").await;

    let message = send_text(&node, &ada.token, &room.channel, &mention(&bob)).await;
    let got = stand_in.wait_for_sends("bob-phone", 2).await;
    assert_eq!(got[1].data, expected_data("mention", &room.guild, &message));
    assert_eq!(stand_in.assertions(), 2, "a new token after the 401");
    assert_eq!(stand_in.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn an_assertion_signed_with_another_key_gets_no_token_and_sends_nothing() {
    let stand_in = FcmStandIn::start(&[]).await;
    let node = TestNode::spawn_with(|c| fcm_on(c, &stand_in, OTHER_KEY)).await;
    let (ada, bob, room) = room_with_bob(&node).await;
    register_fcm(&node, &bob, "bob-phone").await;

    send_text(&node, &ada.token, &room.channel, &mention(&bob)).await;
    // Retried with backoff: the stand-in refuses each assertion.
    wait_for(WAIT, || async { stand_in.assertions() >= 2 }).await;
    let problems = stand_in.problems();
    assert!(
        problems.iter().all(|p| p.contains("InvalidSignature")),
        "{problems:?}"
    );
    assert!(!problems.is_empty());
    assert!(stand_in.sent().is_empty(), "no message without a token");
}

#[tokio::test]
async fn an_unusable_service_account_file_stops_the_node() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.json");
    let not_rsa = dir.path().join("not-rsa.json");
    std::fs::write(
        &not_rsa,
        serde_json::json!({"type": "service_account", "project_id": "p",
            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "client_email": "a@p.iam.gserviceaccount.com"})
        .to_string(),
    )
    .expect("write");
    for (file, says) in [
        (missing, "reading"),
        (not_rsa, "private_key must be the RSA key"),
    ] {
        let data = tempfile::tempdir().expect("data");
        let mut config = Config {
            data_dir: data.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
            ..Config::default()
        };
        config.push.fcm_service_account_file = file;
        let err = guildhall::node::Node::start(config)
            .await
            .expect_err("unusable key file")
            .to_string();
        assert!(err.contains("push.fcm_service_account_file"), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[tokio::test]
async fn remote_members_are_pushed_to_fcm_through_their_homeserver() {
    let stand_in = FcmStandIn::start(&[]).await;
    let host = TestNode::spawn_fast_outbox().await;
    let home = TestNode::spawn_with(|c| {
        fcm_on(c, &stand_in, PRIVATE_KEY);
        fast_outbox(c);
    })
    .await;
    let ada = register(&host, "Ada").await;
    let bob = register(&home, "Bob").await;
    register_fcm(&home, &bob, "bob-phone").await;
    let room = create_room(&host, &ada, "Engines").await;
    remote_join(&host, &bob, &home.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins the host");

    let text = format!("secret engines for {}", mention(&bob));
    let message = send_text(&host, &ada.token, &room.channel, &text).await;
    let got = stand_in.wait_for_sends("bob-phone", 1).await;
    let mut want = expected_data("mention", &room.guild, &message);
    want.insert("server".into(), host.address());
    assert_eq!(got[0].data, want);
    assert!(!got[0].raw.contains("secret"), "no message text");
    assert_eq!(stand_in.problems(), Vec::<String>::new());
}
