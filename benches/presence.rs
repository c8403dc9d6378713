//! Load program for presence across nodes (docs/PROTOCOL.md §14.5): prints one JSON object.
//!
//! Two nodes on loopback in this process: a host with a guild, and the homeserver of one of its
//! members. The member changes status at their homeserver `GUILDHALL_BENCH_CHANGES` times (1,000
//! by default), alternating online and busy, each time waiting until the `presence` event
//! arrives on a `SubscribeEvents` stream at the host: the delay from the change to its arrival
//! (p50, p99), and what the homeserver sent for it (`ReceivePresence` calls and their encoded
//! bytes; HTTP/2 and signature headers come on top). Changes back to back like that are within
//! the 50 ms gap the homeserver keeps between batches, so their delay shows that gap; a tenth as
//! many changes spaced 100 ms apart (a person's pace) show the delay of a lone change. Then the
//! same number of changes as fast as they can be made, to show how changes close together share
//! calls.
//!
//! Run: `cargo bench --bench presence` (release build).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use guildhall::client::ClientIdentity;
use guildhall::config::Config;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::json;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

fn changes() -> usize {
    std::env::var("GUILDHALL_BENCH_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn start(dir: &std::path::Path) -> RunningNode {
    let config = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        allow_private_addresses: true,
        max_connections_per_address: 0,
        settings: guildhall::limits::Settings::default().unlimited(),
        ..Config::default()
    };
    Node::start(config).await.expect("node starts")
}

async fn client(node: &RunningNode) -> GuildHallClient<Channel> {
    GuildHallClient::connect(node.info.canonical_address.clone())
        .await
        .expect("connect")
}

/// Registers a user; returns their identity and session token.
async fn register(node: &RunningNode, name: &str) -> (ClientIdentity, String) {
    let identity = ClientIdentity::generate(name, now_ms() - 1000);
    let token = client(node)
        .await
        .register(identity.register_request(&node.server_id, name, None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token;
    (identity, token)
}

/// Sets the status of the user whose session is `token`.
async fn set_status(client: &mut GuildHallClient<Channel>, token: &str, status: i32) {
    client
        .update_presence(authed(
            token,
            pb::UpdatePresenceRequest {
                status,
                active_call_channel_id: String::new(),
            },
        ))
        .await
        .expect("update presence");
}

/// Waits on `events` for `user`'s presence to become `status`.
async fn presence_arrives(
    events: &mut tonic::codec::Streaming<pb::StreamResponse>,
    user: &str,
    status: i32,
) {
    loop {
        let item = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("event");
        if let Some(pb::stream_response::Event::Presence(p)) = item.event
            && p.user_id == user
            && p.status == status
        {
            return;
        }
    }
}

fn stats(node: &RunningNode) -> (u64, u64, u64) {
    let s = node.presence.sharing_stats().expect("sharing runs");
    (
        s.batches.load(Ordering::Relaxed),
        s.entries.load(Ordering::Relaxed),
        s.bytes.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let n = changes();
    let (dir_host, dir_home) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (host, home) = (start(dir_host.path()).await, start(dir_home.path()).await);
    let (_, alice) = register(&host, "alice").await;
    let guild = client(&host)
        .await
        .create_guild(authed(
            &alice,
            pb::CreateGuildRequest {
                name: "Hall".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("guild")
        .into_inner();
    let invite = guild.token.clone();
    let (bob_id, bob) = register(&home, "bob").await;
    client(&host)
        .await
        .join_invite(bob_id.join_invite_request_from(
            &host.server_id,
            &invite,
            "bob",
            &home.info.canonical_address,
            now_ms(),
        ))
        .await
        .expect("bob joins from his homeserver");
    let bob_user = bob_id.user_id();
    let mut events = client(&host)
        .await
        .subscribe_events(authed(&alice, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut home_client = client(&home).await;
    let status_of = |i: usize| {
        if i.is_multiple_of(2) {
            pb::PresenceStatus::Online
        } else {
            pb::PresenceStatus::Busy
        }
    };

    // Paced: one change, then its arrival at the host.
    let before = stats(&home);
    let mut delays = Vec::with_capacity(n);
    for i in 0..n {
        let status = status_of(i) as i32;
        let t = Instant::now();
        set_status(&mut home_client, &bob, status).await;
        presence_arrives(&mut events, &bob_user, status).await;
        delays.push(t.elapsed());
    }
    let paced = stats(&home);
    delays.sort();

    // Spaced: a change every 100 ms, each sent as soon as it is made.
    let mut spaced = Vec::with_capacity(n / 10);
    for i in 0..(n / 10).max(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The paced run ended busy (an even count of changes), so this starts with online.
        let status = status_of(i) as i32;
        let t = Instant::now();
        set_status(&mut home_client, &bob, status).await;
        presence_arrives(&mut events, &bob_user, status).await;
        spaced.push(t.elapsed());
    }
    spaced.sort();
    let after = stats(&home);

    // Burst: the same number of changes as fast as the homeserver takes them.
    let burst_start = Instant::now();
    for i in 0..n {
        set_status(&mut home_client, &bob, status_of(i + 1) as i32).await;
    }
    let burst_secs = burst_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let burst = stats(&home);

    println!(
        "{}",
        json!({
            "changes": n,
            "paced": {
                "delay_p50_ms": percentile(&delays, 0.5),
                "delay_p99_ms": percentile(&delays, 0.99),
                "calls": paced.0 - before.0,
                "entries": paced.1 - before.1,
                "message_bytes": paced.2 - before.2,
                "message_bytes_per_1000_changes": (paced.2 - before.2) as f64 * 1000.0 / n as f64,
            },
            "spaced_100ms": {
                "changes": spaced.len(),
                "delay_p50_ms": percentile(&spaced, 0.5),
                "delay_p99_ms": percentile(&spaced, 0.99),
            },
            "burst": {
                "seconds": burst_secs,
                "calls": burst.0 - after.0,
                "entries": burst.1 - after.1,
                "message_bytes": burst.2 - after.2,
            },
        })
    );
    host.shutdown();
    home.shutdown();
}
