//! Webhooks: management over gRPC (with permission checks and name rules) and posting over HTTP.

mod common;

use bytes::Bytes;
use common::{TestNode, TestUser, assert_status, authed, register};
use guildhall::proto::guildhall::v1 as pb;
use http_body_util::{BodyExt, Full};
use tonic::Code;

/// POSTs `body` to the node's HTTP side; returns the status and the JSON answer.
async fn post(node: &TestNode, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, _, answer) = post_full(node, path, body).await;
    (status, answer)
}

/// [`post`], with the answer's headers too.
async fn post_full(
    node: &TestNode,
    path: &str,
    body: &str,
) -> (u16, hyper::HeaderMap, serde_json::Value) {
    post_with(node, path, "application/json", body).await
}

/// POSTs `body` as `content_type`; returns the status, headers and JSON answer.
async fn post_with(
    node: &TestNode,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, hyper::HeaderMap, serde_json::Value) {
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
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// The channel's messages, oldest first, as `who` reads them.
/// What was said in `channel`, oldest first (system messages left out).
async fn history(node: &TestNode, who: &TestUser, channel: &str) -> Vec<pb::Message> {
    node.client()
        .await
        .get_history(authed(
            &who.token,
            pb::GetHistoryRequest {
                channel_id: channel.to_owned(),
                cursor: String::new(),
                limit: 0,
                reverse: true,
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages
        .into_iter()
        .filter(|m| m.action.is_none())
        .collect()
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
    let posted = history(&node, &bob, &channel).await;
    assert_eq!(posted.len(), 2);
    assert_eq!(
        (
            posted[0].text.as_str(),
            posted[0].sender_name.as_str(),
            posted[0].sender_id.as_str()
        ),
        ("build 42 is green", "Deploys", hook.id.as_str())
    );
    assert_eq!(posted[1].sender_name, "CI");
    assert_eq!(answer["id"], posted[0].id);

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
    let again = history(&node, &bob, &channel).await;
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

#[tokio::test]
async fn webhook_names_follow_the_display_name_rules_and_posts_are_marked_as_the_webhooks() {
    let node = TestNode::spawn_with(|c| c.settings.message_rate_limit = 3).await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let (guild, channel) = setup(&node, &ada, &bob).await;
    let mut c = node.client().await;

    // Names members can't take, webhooks can't either: at creation and at update.
    for name in ["everyone", "HERE", "System  Message", "a\u{200B}b"] {
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
            "name: ",
        );
    }
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
    assert_status(
        c.update_webhook(authed(
            &ada.token,
            pb::UpdateWebhookRequest {
                webhook_id: hook.id.clone(),
                name: Some("everyone".into()),
                avatar_url: None,
                channel_id: None,
            },
        ))
        .await,
        Code::InvalidArgument,
        "name: ",
    );
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
    assert_eq!(
        listed[0].name, "Deploys",
        "the refused update changed nothing"
    );

    // The per-post username follows the same rules; a refused post stores nothing.
    let path = format!("/webhooks/{}/{}", hook.id, hook.token);
    for username in ["everyone", "here", "system message", "Clyde", ""] {
        let body = serde_json::json!({ "content": "hi", "username": username }).to_string();
        let (status, answer) = post(&node, &path, &body).await;
        assert_eq!(status, 400, "{username:?}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("username: ")),
            "{answer}"
        );
    }
    // Content keeps line breaks and tabs, and nothing else that is a control character.
    let (status, answer) = post(&node, &path, r#"{"content": "nul\u0000"}"#).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("content: must not contain control characters")),
        "{answer}"
    );
    assert!(history(&node, &bob, &channel).await.is_empty());

    // A post under a member's name is still marked as the webhook's, in history and live; a
    // member's own message is not, whatever metadata it carries.
    let mut stream = c
        .subscribe_events(authed(&bob.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let (status, answer) = post(&node, &path, r#"{"content": "hi all", "username": "Ada"}"#).await;
    assert_eq!(status, 200, "{answer}");
    let live = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("stream")
        .expect("event");
    match live.event {
        Some(pb::stream_response::Event::MessageCreated(e)) => {
            let m = e.message.expect("message");
            assert_eq!(
                (m.sender_name.as_str(), m.webhook_id.as_str()),
                ("Ada", hook.id.as_str())
            );
        }
        other => panic!("expected message_created, got {other:?}"),
    }
    node.client()
        .await
        .send_message(authed(
            &ada.token,
            pb::SendMessageRequest {
                channel_id: channel.clone(),
                text: "the real Ada".into(),
                metadata: [("webhook_id".to_owned(), hook.id.clone())].into(),
                ..Default::default()
            },
        ))
        .await
        .expect("send");
    let messages = history(&node, &bob, &channel).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].webhook_id, hook.id);
    assert_eq!(messages[0].sender_id, hook.id);
    assert_eq!(messages[1].sender_name, "Ada");
    assert!(
        messages[1].webhook_id.is_empty(),
        "a member's message is never a webhook's"
    );

    // Over the rate limit: 429 with when to retry.
    let (mut status, mut headers, mut answer) = (0, hyper::HeaderMap::new(), Default::default());
    for _ in 0..4 {
        (status, headers, answer) = post_full(&node, &path, r#"{"content": "again"}"#).await;
    }
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(headers.contains_key("retry-after-ms"), "{headers:?}");
    assert!(
        answer["retry_after"].as_f64().is_some_and(|s| s > 0.0),
        "Discord's libraries read retry_after from the body: {answer}"
    );
}

/// POSTs `body` as `content_type`; returns the status and the JSON answer.
async fn post_as(
    node: &TestNode,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, _, answer) = post_with(node, path, content_type, body).await;
    (status, answer)
}

#[tokio::test]
async fn discord_and_slack_integrations_post_without_change() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let (_, channel) = setup(&node, &ada, &bob).await;
    let hook = node
        .client()
        .await
        .create_webhook(authed(
            &ada.token,
            pb::CreateWebhookRequest {
                channel_id: channel.clone(),
                name: "Alerts".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create")
        .into_inner();
    let path = format!("/webhooks/{}/{}", hook.id, hook.token);

    // What a Discord integration sends: embeds rendered, the rest accepted and ignored.
    let discord = r#"{"username": "Grafana", "tts": false, "allowed_mentions": {"parse": []},
        "embeds": [{"title": "CPU high", "url": "https://grafana.example/d/1",
                    "description": "db1 at 97%", "color": 15158332,
                    "fields": [{"name": "host", "value": "db1", "inline": true}],
                    "footer": {"text": "alertmanager"}}]}"#;
    assert_eq!(
        post_as(&node, &path, "application/json", discord).await.0,
        200
    );
    // Slack's JSON body, and its form encoding with the JSON in `payload`.
    let slack = r#"{"text": "backup done", "icon_emoji": ":floppy_disk:", "mrkdwn": true,
        "icon_url": "https://ci.example/i.png",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*nightly* ok"}}]}"#;
    assert_eq!(
        post_as(&node, &path, "application/json", slack).await.0,
        200
    );
    let form = "payload=%7B%22text%22%3A%22from%20a%20form%22%2C%22username%22%3A%22cron%22%7D";
    assert_eq!(
        post_as(&node, &path, "application/x-www-form-urlencoded", form)
            .await
            .0,
        200
    );

    let messages = history(&node, &bob, &channel).await;
    let shown: Vec<(&str, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m.text.as_str(),
                m.sender_name.as_str(),
                m.sender_avatar_url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                "**CPU high** <https://grafana.example/d/1>\ndb1 at 97%\n**host**: db1\n_alertmanager_",
                "Grafana",
                ""
            ),
            (
                "backup done\n\n*nightly* ok",
                "Alerts",
                "https://ci.example/i.png"
            ),
            ("from a form", "cron", ""),
        ]
    );
    assert!(messages.iter().all(|m| m.webhook_id == hook.id));

    // Refusals name the rule and post nothing.
    let (status, answer) = post_as(&node, &path, "text/plain", r#"{"content": "x"}"#).await;
    assert_eq!(status, 415, "{answer}");
    let (status, answer) = post_as(
        &node,
        &path,
        "application/json",
        r#"{"content": "x", "text": "y"}"#,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            400,
            Some("text: give `content` or Slack's `text`, not both")
        )
    );
    let (status, answer) = post_as(&node, &path, "application/json", r#"{"embeds": []}"#).await;
    assert_eq!(status, 400, "nothing to post: {answer}");
    let (status, answer) =
        post_as(&node, &path, "application/x-www-form-urlencoded", "text=hi").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("payload: ")),
        "{answer}"
    );
    assert_eq!(history(&node, &bob, &channel).await.len(), 3);
}
