//! Pushes for remote members across three nodes on loopback: A hosts a guild, B and C are the
//! homeservers of its remote members. A homeserver hands the host a push delegation when it vouches
//! for a join; the host then pushes an offline member's mentions and DMs through the member's
//! homeserver (`PushNotification`, queued in its durable outbox), which delivers them to the
//! member's own distributors. Online members get none; a homeserver that is down gets the push when
//! it is back; a server the user dropped from their list can push no more.

mod common;

use std::time::Duration;

use common::distributor::{Distributor, register_distributor};
use common::*;
use guildhall::config::Config;
use guildhall::proto::guildhall::v1 as pb;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A homeserver that may POST to distributors on loopback, one delivery at a time (so "nothing
/// else arrived first" means nothing else was queued), and retries its outbox quickly.
fn homeserver(config: &mut Config) {
    config.allow_private_addresses = true;
    config.push.max_concurrent_deliveries = 1;
    config.push.retry_initial_backoff_ms = 50;
    config.push.retry_max_backoff_ms = 200;
    fast_outbox(config);
}

fn mention(user: &TestUser) -> String {
    format!("<@{}>", user.user.id)
}

/// What the member's distributor receives: ids only, and the host the message is on.
fn expected(kind: &str, host: &TestNode, guild: &str, message: &pb::Message) -> serde_json::Value {
    json!({
        "type": kind,
        "server": host.address(),
        "guild_id": guild,
        "channel_id": message.channel_id,
        "message_id": message.id,
        "sender_id": message.sender_id,
    })
}

/// Waits until `distributor` holds `n` bodies, and returns them.
async fn bodies(distributor: &Distributor, n: usize) -> Vec<serde_json::Value> {
    wait_for(WAIT, || async { distributor.bodies().len() >= n }).await;
    distributor.bodies()
}

#[tokio::test]
async fn offline_remote_members_are_pushed_through_their_homeservers() {
    let a = TestNode::spawn_fast_outbox().await;
    let b = TestNode::spawn_with(homeserver).await;
    let c = TestNode::spawn_with(homeserver).await;
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    let cy = register(&c, "Cy").await;
    let dee = register(&c, "Dee").await;
    let (to_b, to_c) = (Distributor::start(&[]).await, Distributor::start(&[]).await);
    register_distributor(&b, &bob, &to_b.url("/bob")).await;
    register_distributor(&c, &cy, &to_c.url("/cy")).await;
    register_distributor(&c, &dee, &to_c.url("/dee")).await;

    let room = create_room(&a, &ada, "Engines").await;
    let _bob_on_a = remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins A");
    let cy_on_a = remote_join(&a, &cy, &c.address(), &room.invite, "Cy")
        .await
        .expect("Cy joins A");
    remote_join(&a, &dee, &c.address(), &room.invite, "Dee")
        .await
        .expect("Dee joins A");

    // Cy has A's event stream open, so she is online there and sees the mention live.
    let _live = a
        .client()
        .await
        .subscribe_events(authed(&cy_on_a.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let both = send_text(
        &a,
        &ada.token,
        &room.channel,
        &format!("{} {}", mention(&bob), mention(&cy)),
    )
    .await;
    let to_dee = send_text(&a, &ada.token, &room.channel, &mention(&dee)).await;

    assert_eq!(
        bodies(&to_b, 1).await,
        vec![expected("mention", &a, &room.guild, &both)],
        "Bob, offline on A, is pushed through B"
    );
    // A delivers to C in order and C pushes one at a time: a push for Cy would come first.
    assert_eq!(
        bodies(&to_c, 1).await,
        vec![expected("mention", &a, &room.guild, &to_dee)],
        "only Dee is pushed through C: Cy is online on A"
    );

    // A DM from Ada to Bob on A: Bob joins it through B, and is pushed for Ada's message.
    let dm = create_dm(&a, &ada, &bob.user.id).await;
    remote_join(&a, &bob, &b.address(), &dm.token, "Bob")
        .await
        .expect("Bob joins the DM");
    let dm_guild = dm.guild.expect("guild").id;
    let dm_channel = a
        .client()
        .await
        .list_channels(authed(
            &ada.token,
            pb::ListChannelsRequest {
                guild_id: dm_guild.clone(),
            },
        ))
        .await
        .expect("DM channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    let hello = send_text(&a, &ada.token, &dm_channel, "hello, Bob").await;
    assert_eq!(
        bodies(&to_b, 2).await[1],
        expected("dm", &a, &dm_guild, &hello)
    );
    for body in to_b.bodies().iter().chain(to_c.bodies().iter()) {
        assert!(body.get("text").is_none(), "no message text in a push");
    }
}

#[tokio::test]
async fn a_push_waits_for_a_homeserver_that_is_down_and_stops_when_the_user_drops_the_host() {
    let a = TestNode::spawn_fast_outbox().await;
    let mut b = TestNode::spawn_with(homeserver).await;
    let ada = register(&a, "Ada").await;
    let bob = register(&b, "Bob").await;
    let to_b = Distributor::start(&[]).await;
    register_distributor(&b, &bob, &to_b.url("/bob")).await;
    let room = create_room(&a, &ada, "Engines").await;
    remote_join(&a, &bob, &b.address(), &room.invite, "Bob")
        .await
        .expect("Bob joins A");

    // B is down when Ada mentions Bob (after it got the news of his join): A keeps the push in
    // its outbox until B is back.
    a.outbox_drained(WAIT).await;
    let b_addr = b.stop().await;
    let first = send_text(&a, &ada.token, &room.channel, &mention(&bob)).await;
    assert_eq!(a.outbox_head_failed(WAIT).await.method, "PushNotification");
    b.start_on(b_addr).await;
    assert_eq!(
        bodies(&to_b, 1).await,
        vec![expected("mention", &a, &room.guild, &first)]
    );

    // Bob drops A from his server list on B: B revokes A's delegation and refuses its pushes.
    b.client()
        .await
        .remove_server(authed(
            &bob.token,
            pb::RemoveServerRequest {
                server_url: a.address(),
            },
        ))
        .await
        .expect("remove server");
    send_text(&a, &ada.token, &room.channel, &mention(&bob)).await;
    let outbox = a.node().outbox.clone();
    wait_for(WAIT, || {
        let outbox = outbox.clone();
        async move { outbox.stats().await.expect("stats").failed == 1 }
    })
    .await;
    let failed = a.node().outbox.failed(1).await.expect("failed");
    assert_eq!(failed[0].method, "PushNotification");
    assert!(
        failed[0].reason.contains("push_delegation_token"),
        "{failed:?}"
    );
    assert_eq!(to_b.bodies().len(), 1, "the refused push reached no one");
}
