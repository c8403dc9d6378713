//! Server settings (read by anyone, changed by admins, kept across restarts) and the limits they
//! set: message length, and rate limits hit, recovered, and still spent after a restart. The test node's rate window is one
//! second, so "recovered" takes at most about a second.

mod common;

use std::time::Duration;

use common::{TestNode, TestUser, assert_status, authed, new_identity, register};
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

async fn admin_node() -> (TestNode, TestUser) {
    let identity = new_identity("phone");
    let id = identity.user_id();
    let node = TestNode::spawn_with(|c| {
        c.admins = vec![id];
        c.rate_limit_window_secs = 1;
        c.settings = guildhall::limits::Settings::default();
    })
    .await;
    let reply = node
        .client()
        .await
        .register(identity.register_request(&node.audience(), "Root", None, now_ms()))
        .await
        .expect("register admin")
        .into_inner();
    let admin = TestUser {
        identity,
        token: reply.token,
        refresh_token: reply.refresh_token,
        user: reply.user.expect("user"),
    };
    (node, admin)
}

async fn set(
    node: &TestNode,
    admin: &TestUser,
    edit: impl FnOnce(&mut pb::UpdateServerSettingsRequest),
) -> Result<pb::ServerSettings, tonic::Status> {
    let mut request = pb::UpdateServerSettingsRequest::default();
    edit(&mut request);
    node.client()
        .await
        .update_server_settings(authed(&admin.token, request))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn settings_are_public_admin_only_to_change_and_persist() {
    let (mut node, admin) = admin_node().await;
    let mut c = node.client().await;
    let defaults = c
        .get_server_settings(pb::Empty {})
        .await
        .expect("public")
        .into_inner();
    assert_eq!(defaults.max_message_length, 4000);
    assert_eq!(defaults.message_rate_limit, 120);

    let bob = register(&node, "Bob").await;
    assert_status(
        set(&node, &bob, |r| r.max_message_length = Some(10)).await,
        Code::PermissionDenied,
        "admins",
    );
    assert_status(
        set(&node, &admin, |r| r.max_message_length = Some(0)).await,
        Code::InvalidArgument,
        "max_message_length",
    );
    assert_status(
        set(&node, &admin, |r| r.max_upload_size = Some(5)).await,
        Code::InvalidArgument,
        "max_upload_size",
    );
    let changed = set(&node, &admin, |r| {
        r.max_message_length = Some(10);
        r.invite_rate_limit = Some(7);
    })
    .await
    .expect("admin changes settings");
    assert_eq!(
        (
            changed.max_message_length,
            changed.invite_rate_limit,
            changed.message_rate_limit
        ),
        (10, 7, 120)
    );

    node.restart().await;
    let after = node
        .client()
        .await
        .get_server_settings(pb::Empty {})
        .await
        .expect("settings")
        .into_inner();
    assert_eq!(
        (after.max_message_length, after.invite_rate_limit),
        (10, 7),
        "settings survive a restart"
    );
}

#[tokio::test]
async fn message_length_and_rate_follow_the_settings() {
    let (node, admin) = admin_node().await;
    let mut c = node.client().await;
    let guild = c
        .create_guild(authed(
            &admin.token,
            pb::CreateGuildRequest {
                name: "G".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("guild")
        .into_inner()
        .guild
        .expect("guild")
        .id;
    let channel = c
        .list_channels(authed(
            &admin.token,
            pb::ListChannelsRequest { guild_id: guild },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    set(&node, &admin, |r| {
        r.max_message_length = Some(10);
        r.message_rate_limit = Some(3);
    })
    .await
    .expect("settings");
    let send = |text: &str| {
        authed(
            &admin.token,
            pb::SendMessageRequest {
                channel_id: channel.clone(),
                text: text.into(),
                ..Default::default()
            },
        )
    };

    assert_status(
        c.send_message(send("eleven chars")).await,
        Code::InvalidArgument,
        "text: must be at most 10",
    );
    for i in 0..2 {
        c.send_message(send(&format!("m{i}")))
            .await
            .expect("within the limit");
    }
    let refused = c
        .send_message(send("over"))
        .await
        .expect_err("rate limited");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().starts_with("message_rate_limit"),
        "{}",
        refused.message()
    );
    let retry: u64 = refused
        .metadata()
        .get("retry-after-ms")
        .expect("retry hint")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("ms");
    assert!(retry > 0 && retry <= 1000, "retry after {retry} ms");

    // Recovered after waiting (bounded polling; the window is one second).
    let mut recovered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if c.send_message(send("again")).await.is_ok() {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "sending works again after the window");

    // 0 turns a limit off.
    set(&node, &admin, |r| r.message_rate_limit = Some(0))
        .await
        .expect("off");
    for i in 0..10 {
        c.send_message(send(&format!("f{i}")))
            .await
            .expect("no limit");
    }
}

#[tokio::test]
async fn address_limits_cover_registration_and_ping() {
    let (node, admin) = admin_node().await;
    let mut c = node.client().await;
    set(&node, &admin, |r| {
        r.register_rate_limit = Some(1);
        r.ping_rate_limit = Some(2);
    })
    .await
    .expect("settings");
    register(&node, "First").await;
    let second = new_identity("x");
    assert_status(
        c.register(second.register_request(&node.audience(), "Second", None, now_ms()))
            .await,
        Code::ResourceExhausted,
        "register_rate_limit",
    );
    for _ in 0..2 {
        c.ping(pb::PingRequest { timestamp: 0 })
            .await
            .expect("ping");
    }
    assert_status(
        c.ping(pb::PingRequest { timestamp: 0 }).await,
        Code::ResourceExhausted,
        "ping_rate_limit",
    );
}

#[tokio::test]
async fn used_allowances_survive_a_restart() {
    let (mut node, admin) = admin_node().await;
    // A window long enough that nothing refills while the test runs.
    node.config.rate_limit_window_secs = 3600;
    node.restart().await;
    set(&node, &admin, |r| r.ping_rate_limit = Some(3))
        .await
        .expect("settings");
    let mut c = node.client().await;
    for _ in 0..3 {
        c.ping(pb::PingRequest { timestamp: 0 })
            .await
            .expect("within the limit");
    }
    assert_status(
        c.ping(pb::PingRequest { timestamp: 0 }).await,
        Code::ResourceExhausted,
        "ping_rate_limit",
    );
    node.restart().await;
    assert_status(
        node.client()
            .await
            .ping(pb::PingRequest { timestamp: 0 })
            .await,
        Code::ResourceExhausted,
        "ping_rate_limit",
    );
}
