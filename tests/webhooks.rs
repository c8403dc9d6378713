//! Webhooks: management over gRPC (with permission checks and name rules) and posting over HTTP.

mod common;

use bytes::Bytes;
use common::{TestNode, TestUser, assert_status, authed, register};
use guildhall::proto::guildhall::v1 as pb;
use http_body_util::{BodyExt, Full};
use tonic::Code;

/// POSTs `body` to the node's HTTP side; returns the status and the JSON answer.
async fn post(node: &TestNode, path: &str, body: &str) -> (u16, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn setup(node: &TestNode, owner: &TestUser, member: &TestUser) -> (String, String) {
    let room = common::create_room(node, owner, "Ops").await;
    common::join_room(node, member, &room.invite).await;
    (room.guild, room.channel)
}

#[tokio::test]
async fn webhooks_post_messages_over_http() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let (guild, channel) = setup(&node, &ada, &bob).await;
    let mut c = node.client().await;

    let hook = c
        .create_webhook(authed(
            &ada.token,
            pb::CreateWebhookRequest {
                channel_id: channel.clone(),
                name: "Deploys".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(hook.token.len(), 64);
    let path = format!("/webhooks/{}/{}", hook.id, hook.token);

    let (status, answer) = post(&node, &path, r#"{"content": "build 42 is green"}"#).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = post(
        &node,
        &path,
        r#"{"content": "from the pipeline", "username": "CI"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let history = c
        .get_history(authed(
            &bob.token,
            pb::GetHistoryRequest {
                channel_id: channel.clone(),
                cursor: String::new(),
                limit: 0,
                reverse: true,
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages;
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            history[0].text.as_str(),
            history[0].sender_name.as_str(),
            history[0].sender_id.as_str()
        ),
        ("build 42 is green", "Deploys", hook.id.as_str())
    );
    assert_eq!(history[1].sender_name, "CI");
    assert_eq!(answer["id"], history[0].id);

    // Refusals over HTTP change nothing.
    assert_eq!(
        post(
            &node,
            &format!("/webhooks/{}/{}", hook.id, "0".repeat(64)),
            r#"{"content": "x"}"#
        )
        .await
        .0,
        401
    );
    assert_eq!(post(&node, &path, r#"{"content": ""}"#).await.0, 400);
    assert_eq!(
        post(&node, &path, r#"{"content": "x", "username": "clyde"}"#)
            .await
            .0,
        400
    );
    assert_eq!(post(&node, &path, "not json").await.0, 400);
    assert_eq!(
        post(&node, &path, r#"{"content": "x", "extra": 1}"#)
            .await
            .0,
        400
    );
    let again = c
        .get_history(authed(
            &bob.token,
            pb::GetHistoryRequest {
                channel_id: channel.clone(),
                cursor: String::new(),
                limit: 0,
                reverse: true,
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages;
    assert_eq!(again.len(), 2);

    // Management: listing hides tokens; update; delete stops posting.
    let listed = c
        .list_webhooks(authed(
            &ada.token,
            pb::ListWebhooksRequest {
                guild_id: guild.clone(),
                channel_id: None,
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .webhooks;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].token.is_empty());
    let renamed = c
        .update_webhook(authed(
            &ada.token,
            pb::UpdateWebhookRequest {
                webhook_id: hook.id.clone(),
                name: Some("Releases".into()),
                avatar_url: None,
                channel_id: None,
            },
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(renamed.name, "Releases");
    c.delete_webhook(authed(
        &ada.token,
        pb::DeleteWebhookRequest {
            webhook_id: hook.id.clone(),
        },
    ))
    .await
    .expect("delete");
    assert_eq!(post(&node, &path, r#"{"content": "x"}"#).await.0, 401);
}

#[tokio::test]
async fn webhook_management_needs_the_permission_and_valid_names() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let (guild, channel) = setup(&node, &ada, &bob).await;
    let mut c = node.client().await;
    assert_status(
        c.create_webhook(authed(
            &bob.token,
            pb::CreateWebhookRequest {
                channel_id: channel.clone(),
                name: "Mine".into(),
                avatar_url: None,
            },
        ))
        .await,
        Code::PermissionDenied,
        "webhooks.manage",
    );
    assert_status(
        c.list_webhooks(authed(
            &bob.token,
            pb::ListWebhooksRequest {
                guild_id: guild.clone(),
                channel_id: None,
            },
        ))
        .await,
        Code::PermissionDenied,
        "webhooks.manage",
    );
    for (name, needle) in [
        ("Clyde helper", "clyde"),
        ("", "name"),
        (&*"w".repeat(81), "1-80"),
    ] {
        assert_status(
            c.create_webhook(authed(
                &ada.token,
                pb::CreateWebhookRequest {
                    channel_id: channel.clone(),
                    name: name.into(),
                    avatar_url: None,
                },
            ))
            .await,
            Code::InvalidArgument,
            needle,
        );
    }
    let hook = c
        .create_webhook(authed(
            &ada.token,
            pb::CreateWebhookRequest {
                channel_id: channel.clone(),
                name: "Ok".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create")
        .into_inner();
    assert_status(
        c.update_webhook(authed(
            &ada.token,
            pb::UpdateWebhookRequest {
                webhook_id: hook.id.clone(),
                name: None,
                avatar_url: None,
                channel_id: Some("nope".into()),
            },
        ))
        .await,
        Code::InvalidArgument,
        "channel_id",
    );
    assert_status(
        c.delete_webhook(authed(
            &bob.token,
            pb::DeleteWebhookRequest {
                webhook_id: hook.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "webhooks.manage",
    );
    assert_status(
        c.delete_webhook(authed(
            &ada.token,
            pb::DeleteWebhookRequest {
                webhook_id: "404".into(),
            },
        ))
        .await,
        Code::NotFound,
        "webhook_id",
    );
}
