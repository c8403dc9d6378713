//! Calls: LiveKit tokens when configured (checked by verifying the JWT and its grants), a clear
//! refusal when not, and presence following the call.

mod common;

use common::{TestNode, TestUser, assert_status, authed, register};
use guildhall::calls::{Claims, room_of};
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

const SECRET: &str = "a-test-secret-of-decent-length";

async fn channel_of(node: &TestNode, owner: &TestUser) -> String {
    common::create_room(node, owner, "Call").await.channel
}

#[tokio::test]
async fn tokens_carry_livekit_grants_and_presence_follows() {
    let node = TestNode::spawn_with(|c| {
        c.livekit_url = "wss://livekit.example".into();
        c.livekit_api_key = "APIkey123".into();
        c.livekit_api_secret = SECRET.into();
    })
    .await;
    let ada = register(&node, "Ada").await;
    let eve = register(&node, "Eve").await;
    let channel = channel_of(&node, &ada).await;
    let mut c = node.client().await;
    assert!(
        c.get_server_info(pb::Empty {})
            .await
            .expect("info")
            .into_inner()
            .livekit_configured
    );

    let reply = c
        .get_call_token(authed(
            &ada.token,
            pb::GetCallTokenRequest {
                channel_id: channel.clone(),
            },
        ))
        .await
        .expect("token")
        .into_inner();
    assert_eq!(reply.url, "wss://livekit.example");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["APIkey123"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "nbf"]);
    let decoded = jsonwebtoken::decode::<Claims>(
        &reply.token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("a valid LiveKit token");
    let claims = decoded.claims;
    assert_eq!(claims.sub, ada.user.id);
    assert_eq!(claims.name, "Ada");
    assert_eq!(claims.video.room, room_of(&channel));
    assert!(claims.video.room_join && claims.video.can_publish && claims.video.can_subscribe);
    assert!(claims.exp > now_ms() / 1000);
    assert!(
        jsonwebtoken::decode::<Claims>(
            &reply.token,
            &jsonwebtoken::DecodingKey::from_secret(b"wrong"),
            &validation
        )
        .is_err()
    );

    let presence = c
        .get_presence(authed(
            &ada.token,
            pb::GetPresenceRequest {
                user_ids: vec![ada.user.id.clone()],
            },
        ))
        .await
        .expect("presence")
        .into_inner()
        .presence;
    assert_eq!(presence[0].active_call_channel_id, channel);

    assert_status(
        c.get_call_token(authed(
            &eve.token,
            pb::GetCallTokenRequest {
                channel_id: channel,
            },
        ))
        .await,
        Code::PermissionDenied,
        "not a member",
    );
}

#[tokio::test]
async fn without_livekit_calls_are_refused_clearly() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let channel = channel_of(&node, &ada).await;
    let mut c = node.client().await;
    assert!(
        !c.get_server_info(pb::Empty {})
            .await
            .expect("info")
            .into_inner()
            .livekit_configured
    );
    assert_status(
        c.get_call_token(authed(
            &ada.token,
            pb::GetCallTokenRequest {
                channel_id: channel,
            },
        ))
        .await,
        Code::FailedPrecondition,
        "not configured",
    );
}

#[test]
fn livekit_settings_go_together() {
    let config = guildhall::config::Config {
        livekit_url: "wss://x".into(),
        ..Default::default()
    };
    assert!(config.validate().is_err());
}
