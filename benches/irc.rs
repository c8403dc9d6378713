//! Load program for the IRC gateway (docs/IRC.md): one node with IRC on, in this process, and
//! 1,000 IRC clients over loopback, each a user of its own with an IRC token, registered with
//! `PASS` and joined to one channel. Prints one JSON object with the process's resident memory
//! once the users exist and after their clients connected (the difference per connection covers
//! the node's side and the bench's own small client side), and the latency of
//! messages both ways: gRPC `SendMessage` → a `PRIVMSG` at one IRC client, a `PRIVMSG` from an
//! IRC client → `message_created` on a gRPC `SubscribeEvents` stream (p50 and p99 over
//! `GUILDHALL_BENCH_ROUNDS` messages each), the time until every IRC client has a message, and
//! the time until every client shows a role change (`-o` on one member after `UpdateRole`).
//!
//! Run: `cargo bench --bench irc` (release build). `GUILDHALL_BENCH_CLIENTS=100` for a quicker run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use guildhall::config::Config;
use guildhall::identity::freshness::now_ms;
use guildhall::node::Node;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);
/// Users set up at once.
const SETUP_CONCURRENCY: usize = 16;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

struct Irc {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Irc {
    async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
    }

    /// Reads lines until one contains `needle`.
    async fn until(&mut self, needle: &str) {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self.lines.next_line().await.expect("read").expect("open");
                if line.contains(needle) {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} within {WAIT:?}"));
    }
}

/// A user with a username and an IRC token, a member of the guild: (username, IRC token).
async fn setup_user(
    client: &GuildHallClient<Channel>,
    node_key: &guildhall::identity::PublicKey,
    invite: &str,
    i: usize,
) -> (String, String, String) {
    let mut c = client.clone();
    let identity = guildhall::client::ClientIdentity::generate("bench", now_ms() - 1000);
    let token = c
        .register(identity.register_request(node_key, &format!("User {i}"), None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token;
    let username = format!("user{i}");
    let mut update = pb::UpdateUserRequest {
        irc_name: Some(username.clone()),
        timestamp: now_ms(),
        ..Default::default()
    };
    identity.sign_update(&mut update);
    c.update_user(authed(&token, update))
        .await
        .expect("username");
    c.join_invite(identity.join_invite_request(node_key, invite, "Member", now_ms()))
        .await
        .expect("join");
    let irc_token = c
        .create_irc_token(authed(&token, pb::CreateIrcTokenRequest::default()))
        .await
        .expect("IRC token")
        .into_inner()
        .token;
    (username, irc_token, identity.user_id())
}

/// The user's IRC client, registered with `PASS` and in `channel`.
async fn connect(irc: SocketAddr, username: &str, irc_token: &str, channel: &str) -> Irc {
    let stream = TcpStream::connect(irc).await.expect("connect IRC");
    let (read, write) = stream.into_split();
    let mut irc = Irc {
        lines: BufReader::new(read).lines(),
        write,
    };
    irc.send(&format!("PASS {username}:{irc_token}")).await;
    irc.send(&format!("NICK {username}")).await;
    irc.send(&format!("USER {username} 0 * :User")).await;
    irc.until(" 001 ").await;
    irc.send(&format!("JOIN {channel}")).await;
    irc.until(" 366 ").await;
    irc
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let clients = env_or("GUILDHALL_BENCH_CLIENTS", 1000);
    let rounds = env_or("GUILDHALL_BENCH_ROUNDS", 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        irc_listen: Some("127.0.0.1:0".parse().expect("addr")),
        max_connections_per_address: 0,
        settings: guildhall::limits::Settings::default().unlimited(),
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node");
    let irc_addr = node.irc_addr.expect("IRC on");
    let client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect");
    let owner_id = guildhall::client::ClientIdentity::generate("bench", now_ms() - 1000);
    let owner = client
        .clone()
        .register(owner_id.register_request(&node.server_id, "Owner", None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token;
    let reply = client
        .clone()
        .create_guild(authed(
            &owner,
            pb::CreateGuildRequest {
                name: "IRC".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("guild")
        .into_inner();
    let guild = reply.guild.clone().expect("guild").id;
    let channel_id = client
        .clone()
        .list_channels(authed(
            &owner,
            pb::ListChannelsRequest {
                guild_id: guild.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    let invite = reply.token;
    let channel = format!("#{guild}/general");

    // The users first (their rows, sessions and tokens), then their IRC connections, so the
    // memory the connections take is measured apart from the users'.
    let started = Instant::now();
    let mut users = Vec::with_capacity(clients);
    for batch in (0..clients).collect::<Vec<_>>().chunks(SETUP_CONCURRENCY) {
        let made = futures::future::join_all(
            batch
                .iter()
                .map(|&i| setup_user(&client, &node.server_id, &invite, i)),
        )
        .await;
        users.extend(made);
    }
    let users_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut all: Vec<Irc> = Vec::with_capacity(clients);
    for batch in users.chunks(SETUP_CONCURRENCY) {
        let made = futures::future::join_all(
            batch
                .iter()
                .map(|(name, token, _)| connect(irc_addr, name, token, &channel)),
        )
        .await;
        all.extend(made);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss_kib();

    // gRPC → IRC: one observer; and the time until every client has it.
    let mut to_irc = Vec::with_capacity(rounds);
    let mut c = client.clone();
    let mut observer = all.pop().expect("a client");
    for round in 0..rounds {
        let text = format!("grpc-{round}");
        let sent = Instant::now();
        c.send_message(authed(
            &owner,
            pb::SendMessageRequest {
                channel_id: channel_id.clone(),
                text: text.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("send");
        observer.until(&text).await;
        to_irc.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let fan_text = "fan-out-to-everyone";
    let sent = Instant::now();
    c.send_message(authed(
        &owner,
        pb::SendMessageRequest {
            channel_id: channel_id.clone(),
            text: fan_text.into(),
            ..Default::default()
        },
    ))
    .await
    .expect("send");
    observer.until(fan_text).await;
    for irc in all.iter_mut() {
        irc.until(fan_text).await;
    }
    let fan_out_ms = sent.elapsed().as_secs_f64() * 1000.0;

    // IRC → gRPC: the observer speaks, the owner's event stream hears.
    let mut events = c
        .subscribe_events(authed(&owner, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut from_irc = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let text = format!("irc-{round}");
        let sent = Instant::now();
        observer.send(&format!("PRIVMSG {channel} :{text}")).await;
        tokio::time::timeout(WAIT, async {
            loop {
                let event = events.message().await.expect("stream").expect("open");
                if let Some(pb::stream_response::Event::MessageCreated(m)) = event.event
                    && m.message.is_some_and(|m| m.text == text)
                {
                    return;
                }
            }
        })
        .await
        .expect("heard in time");
        from_irc.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    // A role change seen by every client: the observer's role loses `members.kick`, so each
    // connection works out the prefixes again (`role_updated`) and shows `-o`.
    let (observer_name, _, observer_id) = users.last().expect("a user").clone();
    let role = c
        .create_role(authed(
            &owner,
            pb::CreateRoleRequest {
                guild_id: guild.clone(),
                name: "mods".into(),
                position: 1,
                permissions: vec!["members.kick".into()],
                ..Default::default()
            },
        ))
        .await
        .expect("role")
        .into_inner();
    c.assign_role(authed(
        &owner,
        pb::AssignRoleRequest {
            guild_id: guild.clone(),
            user_id: observer_id,
            role_id: role.id.clone(),
        },
    ))
    .await
    .expect("assign");
    let opped = format!("+o {observer_name}");
    for irc in all.iter_mut().chain(std::iter::once(&mut observer)) {
        irc.until(&opped).await;
    }
    let sent = Instant::now();
    c.update_role(authed(
        &owner,
        pb::UpdateRoleRequest {
            role_id: role.id.clone(),
            guild_id: guild.clone(),
            name: role.name.clone(),
            color: role.color.clone(),
            position: role.position,
            permissions: vec!["messages.send".into()],
            parent_role_ids: Vec::new(),
        },
    ))
    .await
    .expect("update role");
    let deopped = format!("-o {observer_name}");
    for irc in all.iter_mut().chain(std::iter::once(&mut observer)) {
        irc.until(&deopped).await;
    }
    let role_change_ms = sent.elapsed().as_secs_f64() * 1000.0;

    to_irc.sort_by(f64::total_cmp);
    from_irc.sort_by(f64::total_cmp);
    let per_connection = (rss_connected.saturating_sub(rss_before)) as f64 / clients as f64;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "irc_clients": clients,
            "users_setup_secs": round2(users_secs),
            "irc_connect_and_join_secs": round2(connect_secs),
            "rss_users_made_mib": rss_before / 1024,
            "rss_connected_mib": rss_connected / 1024,
            "rss_per_connection_kib": round2(per_connection),
            "grpc_to_irc_ms_p50": round2(percentile(&to_irc, 0.5)),
            "grpc_to_irc_ms_p99": round2(percentile(&to_irc, 0.99)),
            "irc_to_grpc_ms_p50": round2(percentile(&from_irc, 0.5)),
            "irc_to_grpc_ms_p99": round2(percentile(&from_irc, 0.99)),
            "fan_out_to_all_clients_ms": round2(fan_out_ms),
            "role_change_to_all_clients_ms": round2(role_change_ms),
            "rounds": rounds,
        }))
        .expect("json")
    );
    node.shutdown();
    node.stopped().await;
}
