//! Test harness: whole nodes on loopback with ephemeral ports and a temporary data directory.
#![allow(dead_code)]

pub mod bans;
pub mod distributor;
pub mod fcm;
pub mod serve;
pub mod tls;
pub mod uploads;

use std::path::PathBuf;
use std::time::Duration;

use guildhall::client::ClientIdentity;
use guildhall::config::Config;
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use tonic::transport::Channel;

/// A node on 127.0.0.1 with its own temporary data directory, stopped on drop.
pub struct TestNode {
    pub node: Option<RunningNode>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

impl TestNode {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(edit: impl FnOnce(&mut Config)) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
            // Tests register and send a lot from one address; the rate-limit tests turn limits
            // on through the admin API.
            settings: guildhall::limits::Settings::default().unlimited(),
            // Test nodes federate with each other on loopback; the address-policy tests turn
            // this back off.
            allow_private_addresses: true,
            ..Config::default()
        };
        edit(&mut config);
        let node = Node::start(config.clone()).await.expect("node starts");
        Self {
            node: Some(node),
            dir,
            config,
        }
    }

    pub fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    /// The key signed requests must name as their audience.
    pub fn audience(&self) -> PublicKey {
        self.node().server_id
    }

    /// A client of the node at its canonical address (`https://` when it serves TLS, verified
    /// against its configured extra CA).
    pub async fn client(&self) -> GuildHallClient<Channel> {
        let outbound = guildhall::outbound::Outbound::unrestricted(self.config.tls.extra_ca())
            .expect("client TLS");
        let channel = outbound
            .channel(&self.address(), Duration::from_secs(5))
            .await
            .expect("connect");
        GuildHallClient::new(channel)
    }

    /// Stops the node and starts it again on the same data directory (new ports).
    pub async fn restart(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown();
            node.stopped().await;
        }
        let node = Node::start(self.config.clone())
            .await
            .expect("node restarts");
        self.node = Some(node);
    }

    /// Stops the node, keeping its data; returns the address to start it on again.
    pub async fn stop(&mut self) -> std::net::SocketAddr {
        let running = self.node.take().expect("running");
        let addr = running.grpc_addr;
        running.shutdown();
        running.stopped().await;
        addr
    }

    /// Starts a stopped node again on the same port, so its address (and its peers' pins and
    /// queued calls) hold.
    pub async fn start_on(&mut self, addr: std::net::SocketAddr) {
        self.config.listen = addr;
        self.restart().await;
    }

    /// A node whose federation outbox retries quickly, so tests don't wait out production
    /// backoffs.
    pub async fn spawn_fast_outbox() -> Self {
        Self::spawn_with(fast_outbox).await
    }

    /// Waits until this node's outbox has nothing pending.
    pub async fn outbox_drained(&self, timeout: Duration) {
        let outbox = self.node().outbox.clone();
        wait_for(timeout, || {
            let outbox = outbox.clone();
            async move { outbox.stats().await.expect("stats").pending == 0 }
        })
        .await;
    }

    /// Waits until the head of this node's outbox has failed at least once (its destination is
    /// down), and returns it.
    pub async fn outbox_head_failed(
        &self,
        timeout: Duration,
    ) -> guildhall::store::outbox::Delivery {
        let outbox = self.node().outbox.clone();
        let head = || {
            let outbox = outbox.clone();
            async move { outbox.pending(1).await.expect("pending").into_iter().next() }
        };
        wait_for(timeout, || async {
            head().await.is_some_and(|d| d.attempts >= 1)
        })
        .await;
        head().await.expect("a queued delivery")
    }

    /// Waits until this node has a gossip mesh peer for `kind`, so what it publishes next is
    /// gossiped.
    pub async fn meshed(&self, kind: &str) {
        let gossip = self.node().server_events.gossip().clone();
        wait_for(Duration::from_secs(20), || {
            let (gossip, kind) = (gossip.clone(), kind.to_owned());
            async move { gossip.mesh_peers(&kind).await >= 1 }
        })
        .await;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The node's canonical address: what peers pin its key under.
    pub fn address(&self) -> String {
        self.node().info.canonical_address.clone()
    }

    /// The node's secret server key, read from its key file (to forge calls in tests).
    pub fn server_key(&self) -> guildhall::identity::SecretKey {
        guildhall::node::load_or_create_key(&self.config.server_key_path()).expect("server key")
    }

    /// A client whose calls this node signs for `peer` (server-to-server calls).
    pub async fn federation_client(
        &self,
        peer: &TestNode,
    ) -> guildhall::federation::client::SignedClient {
        self.node()
            .federation
            .client()
            .connect(&peer.address())
            .await
            .expect("federation connect")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            node.shutdown();
        }
    }
}

/// Makes a node's federation outbox retry quickly (for [`TestNode::spawn_with`]).
pub fn fast_outbox(config: &mut Config) {
    config.outbox.base_delay_ms = 20;
    config.outbox.max_delay_ms = 200;
}

/// A registered user with a live session.
pub struct TestUser {
    pub identity: ClientIdentity,
    pub token: String,
    pub refresh_token: String,
    pub user: pb::User,
}

pub fn new_identity(device: &str) -> ClientIdentity {
    ClientIdentity::generate(device, now_ms() - 1000)
}

pub async fn register(node: &TestNode, name: &str) -> TestUser {
    let identity = new_identity("phone");
    let reply = node
        .client()
        .await
        .register(identity.register_request(&node.audience(), name, Some("Phone"), now_ms()))
        .await
        .expect("register succeeds")
        .into_inner();
    TestUser {
        identity,
        token: reply.token,
        refresh_token: reply.refresh_token,
        user: reply.user.expect("user in reply"),
    }
}

/// Wraps a message with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Waits for `check` to hold, polling; panics after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within {timeout:?}");
}

/// Asserts a call failed with `code` and a message mentioning `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    match result {
        Ok(v) => panic!("expected {code:?} ({needle}), got Ok({v:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "message: {}", status.message());
            assert!(
                status.message().contains(needle),
                "message {:?} should mention {needle:?}",
                status.message()
            );
        }
    }
}

/// A guild made for a test: its id, its first channel, and the invite it was created with.
pub struct Room {
    pub guild: String,
    pub channel: String,
    pub invite: String,
}

/// `owner` creates a guild named `name`; returns its id, `#general` and its invite.
pub async fn create_room(node: &TestNode, owner: &TestUser, name: &str) -> Room {
    let mut c = node.client().await;
    let reply = c
        .create_guild(authed(
            &owner.token,
            pb::CreateGuildRequest {
                name: name.into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create guild")
        .into_inner();
    let guild = reply.guild.expect("guild").id;
    let channel = c
        .list_channels(authed(
            &owner.token,
            pb::ListChannelsRequest {
                guild_id: guild.clone(),
            },
        ))
        .await
        .expect("list channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    Room {
        guild,
        channel,
        invite: reply.token,
    }
}

/// `who` joins with `invite` (a signed JoinInvite); returns the join's session token.
pub async fn join_room(node: &TestNode, who: &TestUser, invite: &str) -> String {
    node.client()
        .await
        .join_invite(
            who.identity
                .join_invite_request(&node.audience(), invite, "Member", now_ms()),
        )
        .await
        .expect("join")
        .into_inner()
        .token
}

/// Registers `identity` on `node` (one person may hold accounts on several nodes).
pub async fn register_as(node: &TestNode, identity: &ClientIdentity, name: &str) -> TestUser {
    let reply = node
        .client()
        .await
        .register(identity.register_request(&node.audience(), name, None, now_ms()))
        .await
        .expect("register")
        .into_inner();
    TestUser {
        identity: identity.clone(),
        token: reply.token,
        refresh_token: reply.refresh_token,
        user: reply.user.expect("user"),
    }
}

/// `node` meets `peer` in the gossip mesh as federation would: through `peer`'s published peer id
/// and addresses.
pub async fn meet(node: &TestNode, peer: &TestNode) {
    wait_for(Duration::from_secs(20), || async {
        !peer.node().p2p_addrs().is_empty()
    })
    .await;
    let info = peer
        .client()
        .await
        .get_server_info(pb::Empty {})
        .await
        .expect("server info")
        .into_inner();
    node.node().server_events.meet_peer(&info).await;
}

/// `who` (a user of the node at `home`) joins `host`'s guild with `invite`, naming `home` as
/// homeserver, so `host` asks `home` to vouch.
pub async fn remote_join(
    host: &TestNode,
    who: &TestUser,
    home: &str,
    invite: &str,
    name: &str,
) -> Result<pb::JoinInviteResponse, tonic::Status> {
    let request =
        who.identity
            .join_invite_request_from(&host.audience(), invite, name, home, now_ms());
    host.client()
        .await
        .join_invite(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Sends `text` to `channel` on `node` with the session `token`; returns the stored message.
pub async fn send_text(node: &TestNode, token: &str, channel: &str, text: &str) -> pb::Message {
    node.client()
        .await
        .send_message(authed(
            token,
            pb::SendMessageRequest {
                channel_id: channel.into(),
                text: text.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message")
}

/// `owner` (a user of `node`) opens a DM with `target_id`; returns the DM and its invite token.
pub async fn create_dm(node: &TestNode, owner: &TestUser, target_id: &str) -> pb::CreateDmResponse {
    node.client()
        .await
        .create_dm(authed(
            &owner.token,
            pb::CreateDmRequest {
                target_user_id: target_id.into(),
            },
        ))
        .await
        .expect("create DM")
        .into_inner()
}

/// `who`'s server list at their homeserver `home` (`GetMyData`), with the guilds listed there.
pub async fn my_servers(home: &TestNode, who: &TestUser) -> Vec<pb::UserServer> {
    home.client()
        .await
        .get_my_data(authed(&who.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner()
        .servers
}

/// The ids of `guild`'s members on `node`, as `token`'s holder sees them.
pub async fn member_ids(node: &TestNode, token: &str, guild: &str) -> Vec<String> {
    node.client()
        .await
        .list_guild_members(authed(
            token,
            pb::ListGuildMembersRequest {
                guild_id: guild.into(),
                limit: 100,
                offset: 0,
            },
        ))
        .await
        .expect("members")
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.user.expect("user").id)
        .collect()
}

/// One user as `token`'s holder sees them (`GetUsers`).
pub async fn get_user(node: &TestNode, token: &str, id: &str) -> pb::User {
    node.client()
        .await
        .get_users(authed(
            token,
            pb::GetUsersRequest {
                user_ids: vec![id.into()],
                guild_id: String::new(),
            },
        ))
        .await
        .expect("get users")
        .into_inner()
        .users
        .remove(0)
}

/// `owner` gives `user_id` a new role in `guild` that grants `permissions`.
pub async fn grant(
    node: &TestNode,
    owner_token: &str,
    guild: &str,
    user_id: &str,
    permissions: &[&str],
) {
    let mut c = node.client().await;
    let role = c
        .create_role(authed(
            owner_token,
            pb::CreateRoleRequest {
                guild_id: guild.into(),
                name: "granted".into(),
                position: 1,
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                ..Default::default()
            },
        ))
        .await
        .expect("role")
        .into_inner();
    c.assign_role(authed(
        owner_token,
        pb::AssignRoleRequest {
            guild_id: guild.into(),
            user_id: user_id.into(),
            role_id: role.id,
        },
    ))
    .await
    .expect("assign");
}

/// `token`'s event stream on `node`, from now on.
pub async fn subscribe(
    node: &TestNode,
    token: &str,
) -> tonic::codec::Streaming<pb::StreamResponse> {
    node.client()
        .await
        .subscribe_events(authed(token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner()
}

/// Skips events on `stream` until `pick` returns something; bounded in count (1000) and time
/// (10 s per event).
pub async fn until<T>(
    stream: &mut tonic::codec::Streaming<pb::StreamResponse>,
    mut pick: impl FnMut(&pb::stream_response::Event) -> Option<T>,
) -> T {
    for _ in 0..1000 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within the wait")
            .expect("stream ok")
            .expect("stream open");
        if let Some(found) = event.event.as_ref().and_then(&mut pick) {
            return found;
        }
    }
    panic!("no matching event among 1000");
}
