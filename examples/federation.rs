//! Three guildhall nodes on loopback, and what each of them sees as users of different homeservers
//! share a guild.
//!
//! Run it with
//!
//! ```sh
//! cargo run --example federation
//! ```
//!
//! It starts nodes A, B and C in this process (127.0.0.1, ephemeral ports, temporary data
//! directories that are removed at the end) and talks to them only through their gRPC API, with
//! the generated client and the request builders of `guildhall::client`, as any client would:
//!
//! 1. Ada registers on A, Bob on B, Cleo on C: each node is its user's *homeserver*.
//! 2. Ada creates a guild on A.
//! 3. Bob and Cleo join it from their homeservers: their `JoinInvite` names their homeserver, and
//!    A asks it to vouch for them (`Federate`) before signing them in (docs/PROTOCOL.md §11). A
//!    then announces each join (a signed `membership` server event, §13), and each homeserver
//!    lists the guild under A in `GetMyData`.
//! 4. Bob and Cleo exchange messages on A; each prints what arrives on their event stream.
//! 5. Bob renames himself at B; B forwards his signed change to A (`UpdateFederatedProfile`,
//!    through B's durable outbox) and Ada sees `user_updated`.
//! 6. Cleo moves her home from C to B: she signs a `homeserver-move-v2` statement and logs in at B
//!    with it; B tells A and C (`UpdateHomeServer`, through the outbox, §12).
//! 7. Ada bans Bob from her guild on A. A sends its signed ban notice to Bob's homeserver B
//!    (`PropagateBan`, §15), which keeps it as an advisory: B trusts A's *moderation list*
//!    (`trusted_ban_lists`), not every guild owner on A. Ada is also A's admin, so she puts Bob
//!    on A's moderation list (`AddServerBan`): A signs a `server-ban` entry and sends it to B
//!    (`ReceiveServerEvent`, besides gossip), B applies it to its own guilds, and Bob leaves the
//!    guild Cleo made on B. Bob can rejoin neither guild, and B no longer lists A's guild for him.
//!
//! Every wait is bounded (10 s); if a step does not happen, the program says which one and exits
//! with status 1, so it doubles as a smoke test of federation. `RUST_LOG=info` shows the nodes'
//! own logs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use guildhall::client::ClientIdentity;
use guildhall::config::{Config, TrustedBanList};
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, RunningNode, load_or_create_key};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Channel;

/// How long any one expected thing may take to happen.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match walk().await {
        Ok(()) => {
            println!("\nAll steps passed.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nFAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole walk-through; the first step that does not happen as expected ends it with an error.
async fn walk() -> Result<()> {
    step(0, "Start three nodes on loopback");
    // B must know A's server key to trust A's moderation list, so A's key is made before A
    // starts; Ada will be A's admin, so her identity is made first too.
    let a_dir = tempfile::tempdir()?;
    let a_key = load_or_create_key(&config_in(a_dir.path()).server_key_path())?;
    let ada_identity = ClientIdentity::generate("phone", now_ms() - 1000);
    let ada_id = ada_identity.user_id();
    let a = Hall::start("A", a_dir, |c| c.admins = vec![ada_id]).await?;
    let b = Hall::start("B", tempfile::tempdir()?, |c| {
        c.trusted_ban_lists = vec![TrustedBanList {
            server: a_key.public().to_hex(),
            guild: None,
        }];
    })
    .await?;
    let c = Hall::start("C", tempfile::tempdir()?, |_| {}).await?;
    for hall in [&a, &b, &c] {
        println!(
            "    node {} at {} (server key {}…)",
            hall.name,
            hall.address(),
            &hall.audience().to_hex()[..16]
        );
    }
    println!(
        "    node B trusts node A's moderation list (its admins' bans, not its guild owners')"
    );

    step(1, "Ada registers on A, Bob on B, Cleo on C");
    let ada = Person::register_as(&a, "Ada", ada_identity).await?;
    let bob = Person::register(&b, "Bob").await?;
    let cleo = Person::register(&c, "Cleo").await?;
    for p in [&ada, &bob, &cleo] {
        println!("    {} is user {}…", p.name, &p.id()[..16]);
    }

    step(2, "Ada creates a guild on A");
    let guild = a
        .client()
        .await?
        .create_guild(authed(
            &ada.token,
            pb::CreateGuildRequest {
                name: "Analytical Engines".into(),
                avatar_url: None,
            },
        ))
        .await
        .context("Ada creates a guild")?
        .into_inner();
    let invite = guild.token;
    let guild_id = guild.guild.context("the guild in the reply")?.id;
    let channel = first_channel(&a, &ada.token, &guild_id).await?;
    println!("    [A] guild {guild_id}, #general {channel}, invite {invite}");
    let mut ada_events = Watch::open(&a, "Ada", &ada.token).await?;

    step(3, "Bob and Cleo join it from their homeservers");
    let bob_on_a = remote_join(&a, &bob, &b, &invite).await?;
    let cleo_on_a = remote_join(&a, &cleo, &c, &invite).await?;
    for (who, home) in [(&bob, &b), (&cleo, &c)] {
        let joined = ada_events
            .until("member_joined", |e| match e {
                Event::MemberJoined(j) => j.user.as_ref().filter(|u| u.id == who.id()).cloned(),
                _ => None,
            })
            .await?;
        if joined.homeserver != home.address() {
            bail!(
                "A records {}'s homeserver as {}",
                who.name,
                joined.homeserver
            );
        }
        ada_events.saw(format!(
            "member_joined: {} (homeserver {} = node {})",
            joined.name, joined.homeserver, home.name
        ));
    }
    for (who, home) in [(&bob, &b), (&cleo, &c)] {
        let servers = server_list(home, &who.token).await?;
        if !servers.contains(&a.address()) {
            bail!(
                "{}'s server list at {} lacks A: {servers:?}",
                who.name,
                home.name
            );
        }
        println!(
            "    [{}] {}'s server list now includes A (A asked {} to vouch)",
            home.name, who.name, home.name
        );
        // A announces the remote member's join (a signed `membership` server event), straight
        // to the homeserver through its outbox and by gossip; the homeserver lists the guild.
        wait_until(
            &format!("{} to list {}'s guild on A", home.name, who.name),
            || async {
                Ok(guilds_at(home, &who.token, &a.address())
                    .await?
                    .contains(&guild_id))
            },
        )
        .await?;
        println!(
            "    [{}] lists {}'s guilds on A: {guild_id} (from A's signed membership event)",
            home.name, who.name
        );
    }

    step(4, "Bob and Cleo talk on A");
    let mut bob_events = Watch::open(&a, "Bob", &bob_on_a).await?;
    let mut cleo_events = Watch::open(&a, "Cleo", &cleo_on_a).await?;
    send(&a, &bob_on_a, &channel, "Hello from B!").await?;
    send(&a, &cleo_on_a, &channel, "Hi Bob, greetings from C.").await?;
    let authors = [&bob, &cleo];
    expect_message(&mut cleo_events, "Hello from B!", &authors).await?;
    expect_message(&mut bob_events, "Hi Bob, greetings from C.", &authors).await?;
    expect_message(&mut ada_events, "Hello from B!", &authors).await?;
    expect_message(&mut ada_events, "Hi Bob, greetings from C.", &authors).await?;

    step(5, "Bob renames himself to Robert at B");
    let mut update = pb::UpdateUserRequest {
        name: Some("Robert".into()),
        bio: Some("Bob, formally".into()),
        timestamp: now_ms(),
        ..Default::default()
    };
    bob.identity.sign_update(&mut update);
    b.client()
        .await?
        .update_user(authed(&bob.token, update))
        .await
        .context("Bob updates his profile at B")?;
    println!("    [B] accepted Bob's signed change and queued it for A");
    let renamed = ada_events
        .until("user_updated for Bob", |e| match e {
            Event::UserUpdated(u) => u.user.as_ref().filter(|u| u.id == bob.id()).cloned(),
            _ => None,
        })
        .await?;
    if renamed.name != "Robert" {
        bail!("A shows Bob's name as {:?}", renamed.name);
    }
    ada_events.saw(format!(
        "user_updated: Bob is now {:?} ({:?})",
        renamed.name, renamed.bio
    ));

    step(6, "Cleo moves her home from C to B");
    let cleo_at_b = Person::register_as(&b, "Cleo", cleo.identity.clone()).await?;
    println!("    [B] Cleo has an account on B");
    let statement = cleo
        .identity
        .homeserver_move(&b.address(), now_ms(), 1, Vec::new());
    let mut login = cleo.identity.login_request(&b.audience(), now_ms());
    statement.apply_to_login(&mut login);
    login.migration_targets = vec![c.address(), a.address()];
    cleo.identity.sign_login(&b.audience(), &mut login);
    let moved = b
        .client()
        .await?
        .login(login)
        .await
        .context("Cleo logs in at B with her signed move")?
        .into_inner();
    println!(
        "    [B] login with move #1 accepted: Cleo's homeserver is {}",
        moved.user.context("user in the login reply")?.homeserver
    );
    for (hall, token) in [(&a, &ada.token), (&c, &cleo.token)] {
        wait_until(&format!("{} to learn Cleo's move", hall.name), || async {
            Ok(homeserver_of(hall, token, &cleo.id()).await? == b.address())
        })
        .await?;
        println!(
            "    [{}] Cleo's homeserver is now {}",
            hall.name,
            b.address()
        );
    }

    step(
        7,
        "Ada bans Bob from her guild, then from A (its moderation list); B trusts that list",
    );
    // Cleo, at home on B now, makes a guild there, and Bob joins it.
    let corner = b
        .client()
        .await?
        .create_guild(authed(
            &cleo_at_b.token,
            pb::CreateGuildRequest {
                name: "Cleo's corner".into(),
                avatar_url: None,
            },
        ))
        .await
        .context("Cleo creates a guild on B")?
        .into_inner();
    let corner_id = corner.guild.context("the guild in the reply")?.id;
    local_join(&b, &bob, &corner.token)
        .await
        .context("Bob joins Cleo's corner on B")?;
    println!("    [B] Bob joined Cleo's corner ({corner_id})");
    let mut cleo_at_b_events = Watch::open(&b, "Cleo", &cleo_at_b.token).await?;

    a.client()
        .await?
        .ban_user(authed(
            &ada.token,
            pb::BanUserRequest {
                guild_id: guild_id.clone(),
                user_id: bob.id(),
                reason: "testing the ban".into(),
            },
        ))
        .await
        .context("Ada bans Bob")?;
    println!("    [A] Bob is banned from Analytical Engines; A signed a ban notice for B");
    let removed_from = |guild: String| {
        let bob_id = bob.id();
        move |e: &Event| match e {
            Event::MemberRemoved(r) if r.user_id == bob_id && r.guild_id == guild => Some(()),
            _ => None,
        }
    };
    ada_events
        .until("Bob's removal", removed_from(guild_id.clone()))
        .await?;
    ada_events.saw("member_removed: Bob left Analytical Engines");
    println!(
        "    (B keeps A's guild bans as advisories only: a guild owner's ban is not A's word)"
    );
    let entry = a
        .client()
        .await?
        .add_server_ban(authed(
            &ada.token,
            pb::ServerBanRequest {
                user_id: bob.id(),
                reason: "testing the moderation list".into(),
            },
        ))
        .await
        .context("Ada, A's admin, puts Bob on A's moderation list")?
        .into_inner();
    println!(
        "    [A] Bob is on A's moderation list; A signed a server-ban entry at {}",
        entry.timestamp
    );
    cleo_at_b_events
        .until(
            "Bob's removal from Cleo's corner",
            removed_from(corner_id.clone()),
        )
        .await?;
    cleo_at_b_events.saw("member_removed: Bob left Cleo's corner (B applied A's moderation list)");

    let again = a
        .client()
        .await?
        .join_invite(bob.identity.join_invite_request_from(
            &a.audience(),
            &invite,
            "Bob",
            &b.address(),
            now_ms(),
        ))
        .await;
    refused(&again, "A", "Bob rejoins Analytical Engines")?;
    let again = local_join(&b, &bob, &corner.token).await;
    refused(&again, "B", "Bob rejoins Cleo's corner")?;
    wait_until("B to drop Analytical Engines from Bob's list", || async {
        Ok(!guilds_at(&b, &bob.token, &a.address())
            .await?
            .contains(&guild_id))
    })
    .await?;
    println!("    [B] no longer lists Analytical Engines for Bob (A announced his removal)");

    for hall in [a, b, c] {
        hall.node.shutdown();
        hall.node.stopped().await;
    }
    Ok(())
}

/// A running node with a name to print and its temporary data directory.
struct Hall {
    name: &'static str,
    node: RunningNode,
    _dir: tempfile::TempDir,
}

/// A node's configuration with everything under `dir` and ephemeral loopback ports.
fn config_in(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // The three nodes are on loopback: let them reach each other (a node on the internet
        // leaves this off, see docs/OPERATING.md).
        allow_private_addresses: true,
        ..Config::default()
    }
}

impl Hall {
    /// Starts a node in `dir`, its configuration changed by `edit` (admins, trusted ban lists).
    async fn start(
        name: &'static str,
        dir: tempfile::TempDir,
        edit: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        let mut config = config_in(dir.path());
        edit(&mut config);
        let node = Node::start(config)
            .await
            .with_context(|| format!("node {name} starts"))?;
        Ok(Self {
            name,
            node,
            _dir: dir,
        })
    }

    /// The node's canonical address: how users and other nodes name it.
    fn address(&self) -> String {
        self.node.info.canonical_address.clone()
    }

    /// The node's server key, which signed requests to it name as their audience.
    fn audience(&self) -> PublicKey {
        self.node.server_id
    }

    async fn client(&self) -> Result<GuildHallClient<Channel>> {
        GuildHallClient::connect(format!("http://{}", self.node.grpc_addr))
            .await
            .with_context(|| format!("connect to node {}", self.name))
    }
}

/// A user: their keys (kept by their client) and a session at one node.
struct Person {
    name: &'static str,
    identity: ClientIdentity,
    token: String,
}

impl Person {
    /// A new identity registered at `hall`.
    async fn register(hall: &Hall, name: &'static str) -> Result<Self> {
        Self::register_as(
            hall,
            name,
            ClientIdentity::generate("phone", now_ms() - 1000),
        )
        .await
    }

    /// Registers `identity` at `hall` (a user may have accounts on several nodes).
    async fn register_as(
        hall: &Hall,
        name: &'static str,
        identity: ClientIdentity,
    ) -> Result<Self> {
        let reply = hall
            .client()
            .await?
            .register(identity.register_request(&hall.audience(), name, Some("Phone"), now_ms()))
            .await
            .with_context(|| format!("{name} registers on {}", hall.name))?
            .into_inner();
        Ok(Self {
            name,
            identity,
            token: reply.token,
        })
    }

    /// The user's global id (their identity key).
    fn id(&self) -> String {
        self.identity.user_id()
    }
}

/// `who` joins `host`'s guild with `invite`, naming `home` as their homeserver; returns their
/// session token on `host`.
async fn remote_join(host: &Hall, who: &Person, home: &Hall, invite: &str) -> Result<String> {
    let request = who.identity.join_invite_request_from(
        &host.audience(),
        invite,
        who.name,
        &home.address(),
        now_ms(),
    );
    let reply = host
        .client()
        .await?
        .join_invite(request)
        .await
        .with_context(|| format!("{} joins from {}", who.name, home.name))?
        .into_inner();
    println!(
        "    [{}] {} joined from {} (vouched for by {})",
        host.name, who.name, home.name, home.name
    );
    Ok(reply.token)
}

/// `who` joins a guild of their own homeserver `hall` with `invite`.
async fn local_join(
    hall: &Hall,
    who: &Person,
    invite: &str,
) -> Result<tonic::Response<pb::JoinInviteResponse>, tonic::Status> {
    let request = who
        .identity
        .join_invite_request(&hall.audience(), invite, who.name, now_ms());
    match hall.client().await {
        Ok(mut client) => client.join_invite(request).await,
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    }
}

/// Waits for the message `text` on `watch` and prints who sent it (one of `authors`).
async fn expect_message(watch: &mut Watch, text: &str, authors: &[&Person]) -> Result<()> {
    let sender = watch
        .until(&format!("message {text:?}"), |e| match e {
            Event::MessageCreated(m) => m
                .message
                .as_ref()
                .filter(|m| m.text == text)
                .map(|m| m.sender_id.clone()),
            _ => None,
        })
        .await?;
    let name = authors
        .iter()
        .find(|p| p.id() == sender)
        .map_or("someone else", |p| p.name);
    watch.saw(format!("message_created from {name}: {text:?}"));
    Ok(())
}

/// Checks that `result` is the refusal a banned user gets, and prints it.
fn refused<T>(result: &Result<T, tonic::Status>, node: &str, what: &str) -> Result<()> {
    match result {
        Ok(_) => bail!("{what}: node {node} let a banned user in"),
        Err(s) if s.code() == Code::PermissionDenied => {
            println!(
                "    [{node}] {what}: refused ({:?}: {})",
                s.code(),
                s.message()
            );
            Ok(())
        }
        Err(s) => bail!("{what}: expected PermissionDenied, got {s}"),
    }
}

async fn first_channel(hall: &Hall, token: &str, guild_id: &str) -> Result<String> {
    hall.client()
        .await?
        .list_channels(authed(
            token,
            pb::ListChannelsRequest {
                guild_id: guild_id.into(),
            },
        ))
        .await
        .context("list channels")?
        .into_inner()
        .channels
        .into_iter()
        .next()
        .map(|c| c.id)
        .context("a new guild has a channel")
}

async fn send(hall: &Hall, token: &str, channel: &str, text: &str) -> Result<()> {
    hall.client()
        .await?
        .send_message(authed(
            token,
            pb::SendMessageRequest {
                channel_id: channel.into(),
                text: text.into(),
                ..Default::default()
            },
        ))
        .await
        .with_context(|| format!("send {text:?}"))?;
    Ok(())
}

/// The servers a user listed at their homeserver, with the guilds they are in there
/// (`GetMyData`).
async fn my_servers(home: &Hall, token: &str) -> Result<Vec<pb::UserServer>> {
    Ok(home
        .client()
        .await?
        .get_my_data(authed(token, pb::Empty {}))
        .await
        .context("get my data")?
        .into_inner()
        .servers)
}

/// The servers a user listed at their homeserver.
async fn server_list(home: &Hall, token: &str) -> Result<Vec<String>> {
    let servers = my_servers(home, token).await?;
    Ok(servers.into_iter().map(|s| s.server_url).collect())
}

/// The guilds `home` lists for the caller on the server at `server`.
async fn guilds_at(home: &Hall, token: &str, server: &str) -> Result<Vec<String>> {
    let servers = my_servers(home, token).await?;
    Ok(servers
        .into_iter()
        .filter(|s| s.server_url == server)
        .flat_map(|s| s.guild_ids)
        .collect())
}

/// The homeserver `hall` records for `user_id`.
async fn homeserver_of(hall: &Hall, token: &str, user_id: &str) -> Result<String> {
    hall.client()
        .await?
        .get_users(authed(
            token,
            pb::GetUsersRequest {
                user_ids: vec![user_id.to_owned()],
                guild_id: String::new(),
            },
        ))
        .await
        .context("get users")?
        .into_inner()
        .users
        .into_iter()
        .next()
        .map(|u| u.homeserver)
        .with_context(|| format!("node {} knows the user", hall.name))
}

/// One user's event stream on one node.
struct Watch {
    label: String,
    stream: Streaming<pb::StreamResponse>,
}

impl Watch {
    /// Opens `who`'s event stream on `hall` with their session `token` there.
    async fn open(hall: &Hall, who: &str, token: &str) -> Result<Self> {
        let stream = hall
            .client()
            .await?
            .subscribe_events(authed(token, pb::SubscribeRequest::default()))
            .await
            .with_context(|| format!("{who} subscribes on {}", hall.name))?
            .into_inner();
        Ok(Self {
            label: format!("[{}] {who} sees", hall.name),
            stream,
        })
    }

    /// Skips events until `pick` returns something, for at most [`WAIT`].
    async fn until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..10_000 {
            let next = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .with_context(|| format!("{}: no {what} within {WAIT:?}", self.label))?
                .with_context(|| format!("{}: stream failed", self.label))?
                .with_context(|| format!("{}: stream ended", self.label))?;
            if let Some(found) = next.event.as_ref().and_then(&mut pick) {
                return Ok(found);
            }
        }
        bail!("{}: no {what} among 10000 events", self.label)
    }

    fn saw(&self, what: impl std::fmt::Display) {
        println!("    {} {what}", self.label);
    }
}

/// Polls `check` until it holds, for at most [`WAIT`].
async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("waited {WAIT:?} for {what}")
}

/// Wraps a message with `authorization: Bearer <token>`.
fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}
