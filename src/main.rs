//! The `guildhall` command: run a node, or act as a small client against one.

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use guildhall::client::{ClientIdentity, IdentityFile};
use guildhall::config::Config;
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::node::Node;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// A federated, peer-to-peer chat homeserver.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. With no flags: data in ./guildhall-data, gRPC on 127.0.0.1:7400, p2p on 7401.
    Serve(ServeArgs),
    /// Create an identity (K_id) and a certified device key (K_dev) in a local file.
    Keygen {
        #[command(flatten)]
        id: IdentityArg,
        /// Name of this device slot in the cert.
        #[arg(long, default_value = "cli")]
        device_id: String,
        /// Overwrite an existing identity file.
        #[arg(long)]
        force: bool,
    },
    /// Register the identity on a server (creates the user there) and save the session.
    Register {
        #[command(flatten)]
        target: Target,
        /// Display name (1-32 characters).
        #[arg(long)]
        name: String,
    },
    /// Log in to a server where the identity is registered and save the session.
    Login {
        #[command(flatten)]
        target: Target,
    },
    /// Show the logged-in user, their devices and servers.
    Whoami {
        #[command(flatten)]
        target: Target,
    },
    /// Show a server's public information (key, peer id, addresses).
    Info {
        /// The server's gRPC address.
        #[arg(
            long,
            env = "GUILDHALL_SERVER",
            default_value = "http://127.0.0.1:7400"
        )]
        server: String,
    },
    /// Create guilds and list yours.
    #[command(subcommand)]
    Guild(GuildCommand),
    /// Create and list a guild's channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Make invites to a channel's guild.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Join a guild with an invite token (registers you on the server if needed) and save the session.
    Join {
        #[command(flatten)]
        target: Target,
        /// The invite token.
        token: String,
        /// Display name to register with, if the server does not know you yet.
        #[arg(long)]
        name: Option<String>,
    },
    /// Send a text message to a channel.
    Send {
        #[command(flatten)]
        target: Target,
        /// The channel id.
        #[arg(long)]
        channel: String,
        /// The text (words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Show a channel's latest messages, oldest first.
    History {
        #[command(flatten)]
        target: Target,
        /// The channel id.
        #[arg(long)]
        channel: String,
        /// How many messages.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Print live events, one per line, until Ctrl-C.
    Tail {
        #[command(flatten)]
        target: Target,
        /// Replay the events after this event id first.
        #[arg(long, value_name = "EVENT_ID")]
        resume: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum GuildCommand {
    /// Create a guild; prints its id, its first channel and an invite.
    Create {
        #[command(flatten)]
        target: Target,
        /// The guild's name.
        #[arg(long)]
        name: String,
    },
    /// List the guilds you are a member of.
    List {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Create a channel in a guild.
    Create {
        #[command(flatten)]
        target: Target,
        /// The guild id.
        #[arg(long)]
        guild: String,
        /// The channel's name.
        #[arg(long)]
        name: String,
    },
    /// List a guild's channels.
    List {
        #[command(flatten)]
        target: Target,
        /// The guild id.
        #[arg(long)]
        guild: String,
    },
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Create an invite token for a channel.
    Create {
        #[command(flatten)]
        target: Target,
        /// The channel id.
        #[arg(long)]
        channel: String,
        /// How many joins it allows (default: unlimited).
        #[arg(long)]
        max_uses: Option<i32>,
        /// Seconds until it expires (default: 7 days; 0 = never).
        #[arg(long)]
        max_age_secs: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file (see docs/OPERATING.md); flags and environment override it.
    #[arg(long, env = "GUILDHALL_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database and server key live.
    #[arg(long, env = "GUILDHALL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (HOST:PORT).
    #[arg(long, env = "GUILDHALL_LISTEN")]
    listen: Option<SocketAddr>,
    /// libp2p listen multiaddr.
    #[arg(long, env = "GUILDHALL_P2P_LISTEN")]
    p2p_listen: Option<String>,
    /// The URL clients and other servers reach this node at.
    #[arg(long, env = "GUILDHALL_PUBLIC_URL")]
    public_url: Option<String>,
}

#[derive(Debug, Args)]
struct IdentityArg {
    /// The identity file.
    #[arg(long, env = "GUILDHALL_IDENTITY", default_value_os_t = default_identity_path())]
    identity: PathBuf,
}

#[derive(Debug, Args)]
struct Target {
    #[command(flatten)]
    id: IdentityArg,
    /// The server's gRPC address.
    #[arg(
        long,
        env = "GUILDHALL_SERVER",
        default_value = "http://127.0.0.1:7400"
    )]
    server: String,
}

fn default_identity_path() -> PathBuf {
    dirs::config_dir()
        .map(|d| d.join("guildhall").join("identity.json"))
        .unwrap_or_else(|| PathBuf::from("guildhall-identity.json"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Output piped into `head` and the like: the reader has all it wanted.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            match err.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {err:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,libp2p=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Keygen {
            id,
            device_id,
            force,
        } => keygen(&id.identity, &device_id, force),
        Command::Register { target, name } => register(&target, &name).await,
        Command::Login { target } => login(&target).await,
        Command::Whoami { target } => whoami(&target).await,
        Command::Info { server } => info(&server).await,
        Command::Guild(GuildCommand::Create { target, name }) => guild_create(&target, name).await,
        Command::Guild(GuildCommand::List { target }) => guild_list(&target).await,
        Command::Channel(ChannelCommand::Create {
            target,
            guild,
            name,
        }) => channel_create(&target, guild, name).await,
        Command::Channel(ChannelCommand::List { target, guild }) => {
            channel_list(&target, guild).await
        }
        Command::Invite(InviteCommand::Create {
            target,
            channel,
            max_uses,
            max_age_secs,
        }) => invite_create(&target, channel, max_uses, max_age_secs).await,
        Command::Join {
            target,
            token,
            name,
        } => join(&target, &token, name).await,
        Command::Send {
            target,
            channel,
            text,
        } => send(&target, channel, text.join(" ")).await,
        Command::History {
            target,
            channel,
            limit,
        } => history(&target, channel, limit).await,
        Command::Tail { target, resume } => tail(&target, resume).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.p2p_listen {
        config.p2p_listen = v;
    }
    if let Some(v) = args.public_url {
        config.public_url = v;
    }
    let node = Node::start(config.clone()).await?;
    // Give the swarm a moment to report its bound addresses before printing them.
    let mut addrs = node.info.p2p_addrs.clone();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), addrs.changed()).await;
    println!("guildhall {} is running", env!("CARGO_PKG_VERSION"));
    println!("  gRPC:      http://{}", node.grpc_addr);
    println!("  address:   {}", node.info.canonical_address);
    println!("  server id: {}", node.server_id);
    println!("  peer id:   {}", node.info.peer_id);
    for addr in node.p2p_addrs() {
        println!("  p2p:       {addr}/p2p/{}", node.info.peer_id);
    }
    println!("  data:      {}", config.data_dir.display());
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    node.shutdown();
    node.stopped().await;
    Ok(())
}

fn keygen(path: &Path, device_id: &str, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let identity = ClientIdentity::generate(device_id, now_ms());
    identity.to_file().save(path)?;
    println!("identity: {}", path.display());
    println!("user id:  {}", identity.user_id());
    println!("device:   {} ({})", identity.cert.device_key, device_id);
    Ok(())
}

fn load(path: &Path) -> Result<(IdentityFile, ClientIdentity)> {
    let file = IdentityFile::load(path)
        .with_context(|| format!("reading {} (run `guildhall keygen` first)", path.display()))?;
    let identity = ClientIdentity::from_file(&file)?;
    Ok((file, identity))
}

async fn dial(server: &str) -> Result<GuildHallClient<Channel>> {
    GuildHallClient::connect(server.to_owned())
        .await
        .with_context(|| format!("connecting to {server}"))
}

/// A connection and the server's key, the audience signed requests must name.
async fn connect(server: &str) -> Result<(GuildHallClient<Channel>, PublicKey)> {
    let mut client = dial(server).await?;
    let info = client.get_server_info(pb::Empty {}).await?.into_inner();
    let audience = PublicKey::from_hex(&info.server_pubkey).context("server_pubkey")?;
    Ok((client, audience))
}

fn save_session(
    target: &Target,
    mut file: IdentityFile,
    token: String,
    refresh: String,
) -> Result<()> {
    file.access_token = token;
    file.refresh_token = refresh;
    file.server = target.server.clone();
    file.save(&target.id.identity)?;
    Ok(())
}

async fn register(target: &Target, name: &str) -> Result<()> {
    let (file, identity) = load(&target.id.identity)?;
    let (mut client, audience) = connect(&target.server).await?;
    let request = identity.register_request(&audience, name, Some("guildhall cli"), now_ms());
    let reply = client.register(request).await?.into_inner();
    let user = reply.user.unwrap_or_default();
    println!("registered {} as {:?}", user.id, user.name);
    save_session(target, file, reply.token, reply.refresh_token)
}

async fn login(target: &Target) -> Result<()> {
    let (file, identity) = load(&target.id.identity)?;
    let (mut client, audience) = connect(&target.server).await?;
    let reply = client
        .login(identity.login_request(&audience, now_ms()))
        .await?
        .into_inner();
    let user = reply.user.unwrap_or_default();
    println!("logged in as {} ({:?})", user.id, user.name);
    save_session(target, file, reply.token, reply.refresh_token)
}

async fn whoami(target: &Target) -> Result<()> {
    let mut s = Session::open(target).await?;
    let data = s
        .client
        .get_my_data(s.authed(pb::Empty {}))
        .await?
        .into_inner();
    let user = data.user.unwrap_or_default();
    println!("user id:    {}", user.id);
    println!("name:       {}", user.name);
    println!("homeserver: {}", user.homeserver);
    println!("admin:      {}", user.is_server_admin);
    for device in data.device_certificates {
        println!(
            "device:     {} {:?} last seen {}",
            device.id, device.name, device.last_seen_at
        );
    }
    for server in data.servers {
        println!("server:     {}", server.server_url);
    }
    Ok(())
}

async fn info(server: &str) -> Result<()> {
    let mut client = dial(server).await?;
    let info = client.get_server_info(pb::Empty {}).await?.into_inner();
    println!("address:   {}", info.canonical_address);
    println!("server id: {}", info.server_pubkey);
    println!("peer id:   {}", info.peer_id);
    for addr in info.p2p_listen_addrs {
        println!("p2p:       {addr}");
    }
    println!("version:   {}", info.version);
    Ok(())
}

/// A connection that acts as the user of the identity file's saved session.
struct Session {
    client: GuildHallClient<Channel>,
    bearer: MetadataValue<Ascii>,
    user_id: String,
}

impl Session {
    async fn open(target: &Target) -> Result<Self> {
        let (file, identity) = load(&target.id.identity)?;
        if file.access_token.is_empty() {
            bail!("not logged in: run `guildhall register` or `guildhall login`");
        }
        if !same_server(&file.server, &target.server) {
            bail!(
                "the saved session is for {}, not {}: run `guildhall login` (or `register`) there first",
                file.server,
                target.server
            );
        }
        Ok(Self {
            client: dial(&target.server).await?,
            bearer: format!("Bearer {}", file.access_token).parse()?,
            user_id: identity.user_id(),
        })
    }

    /// `message` as a request carrying the session token.
    fn authed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    async fn channels(&mut self, guild_id: String) -> Result<Vec<pb::Channel>> {
        let request = self.authed(pb::ListChannelsRequest { guild_id });
        Ok(self
            .client
            .list_channels(request)
            .await?
            .into_inner()
            .channels)
    }
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A protobuf time as RFC 3339 UTC to the second.
fn when(time: Option<prost_types::Timestamp>) -> String {
    time.map(|t| prost_types::Timestamp { nanos: 0, ..t }.to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_channel(channel: &pb::Channel) {
    let thread = if channel.is_thread {
        format!("  (thread in {})", channel.parent_channel_id)
    } else {
        String::new()
    };
    println!("{}  #{}{thread}", channel.id, channel.name);
}

async fn guild_create(target: &Target, name: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::CreateGuildRequest {
        name,
        avatar_url: None,
    });
    let reply = s.client.create_guild(request).await?.into_inner();
    let guild = reply.guild.unwrap_or_default();
    println!("guild:   {}  {}", guild.id, guild.name);
    if let Some(channel) = s.channels(guild.id).await?.first() {
        println!("channel: {}  #{}", channel.id, channel.name);
    }
    println!("invite:  {}", reply.token);
    Ok(())
}

async fn guild_list(target: &Target) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::ListGuildsRequest {});
    for guild in s.client.list_guilds(request).await?.into_inner().guilds {
        let mut notes = String::new();
        if guild.owner_id == s.user_id {
            notes.push_str("  (owner)");
        }
        if guild.is_dm {
            notes.push_str("  (dm)");
        }
        println!("{}  {}{notes}", guild.id, guild.name);
    }
    Ok(())
}

async fn channel_create(target: &Target, guild_id: String, name: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::CreateChannelRequest {
        guild_id,
        name,
        ..Default::default()
    });
    print_channel(&s.client.create_channel(request).await?.into_inner());
    Ok(())
}

async fn channel_list(target: &Target, guild_id: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    s.channels(guild_id).await?.iter().for_each(print_channel);
    Ok(())
}

async fn invite_create(
    target: &Target,
    channel_id: String,
    max_uses: Option<i32>,
    max_age_secs: Option<u64>,
) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::GenerateInviteRequest {
        channel_id,
        max_age_secs,
        max_uses,
    });
    println!(
        "{}",
        s.client.generate_invite(request).await?.into_inner().token
    );
    Ok(())
}

async fn join(target: &Target, token: &str, name: Option<String>) -> Result<()> {
    let (file, identity) = load(&target.id.identity)?;
    // The server ignores the name for a user it knows, but it must still be a valid one.
    let name = match name {
        Some(name) => name,
        None if file.access_token.is_empty() || !same_server(&file.server, &target.server) => {
            bail!("pass --name: the name to register with on this server")
        }
        None => {
            let mut s = Session::open(target).await?;
            let request = s.authed(pb::Empty {});
            let data = s.client.get_my_data(request).await?.into_inner();
            data.user.unwrap_or_default().name
        }
    };
    let (mut client, audience) = connect(&target.server).await?;
    let preview = client
        .preview_invite(pb::PreviewInviteRequest {
            token: token.to_owned(),
        })
        .await?
        .into_inner();
    let request = identity.join_invite_request(&audience, token, &name, now_ms());
    let reply = client.join_invite(request).await?.into_inner();
    let guild = reply.guild.unwrap_or_default();
    println!("joined:  {}  {}", guild.id, guild.name);
    println!("channel: {}  #{}", preview.channel_id, preview.channel_name);
    save_session(target, file, reply.token, reply.refresh_token)
}

async fn send(target: &Target, channel_id: String, text: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::SendMessageRequest {
        channel_id,
        text,
        ..Default::default()
    });
    let reply = s.client.send_message(request).await?.into_inner();
    let message = reply.message.unwrap_or_default();
    println!("sent {} at {}", message.id, when(message.created_at));
    Ok(())
}

async fn history(target: &Target, channel_id: String, limit: u32) -> Result<()> {
    const PAGE: u32 = 100; // the most GetHistory returns at once
    let mut s = Session::open(target).await?;
    let mut messages = Vec::new();
    let mut cursor = String::new();
    while (messages.len() as u32) < limit {
        let request = s.authed(pb::GetHistoryRequest {
            channel_id: channel_id.clone(),
            cursor,
            limit: (limit - messages.len() as u32).min(PAGE) as i32,
            reverse: false,
        });
        let page = s.client.get_history(request).await?.into_inner();
        messages.extend(page.messages);
        if !page.has_more {
            break;
        }
        cursor = page.next_cursor;
    }
    // Pages come newest first.
    let mut out = std::io::stdout().lock();
    for m in messages.iter().rev() {
        let text = m.text.replace('\n', "\n    ");
        writeln!(out, "{}  {}: {text}", when(m.created_at), m.sender_name)?;
    }
    Ok(())
}

async fn tail(target: &Target, resume: Option<u64>) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::SubscribeRequest {
        resume_from_event_id: resume.map(|id| id.to_string()).unwrap_or_default(),
    });
    let mut stream = s.client.subscribe_events(request).await?.into_inner();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            event = stream.message() => match event? {
                Some(e) => writeln!(std::io::stdout(), "{} {}", e.event_id, describe(e.event))?,
                None => bail!("the server closed the stream"),
            },
        }
    }
}

/// An event's kind and its useful fields, on one line.
fn describe(event: Option<Event>) -> String {
    let message = |m: Option<pb::Message>| {
        let m = m.unwrap_or_default();
        format!(
            "channel={} id={} name={:?} text={:?} sender={}",
            m.channel_id, m.id, m.sender_name, m.text, m.sender_id
        )
    };
    let user = |u: Option<pb::User>| {
        let u = u.unwrap_or_default();
        format!("user={} name={:?}", u.id, u.name)
    };
    match event {
        Some(Event::MessageCreated(e)) => match e.message {
            Some(pb::Message {
                typing: Some(t), ..
            }) => format!(
                "typing channel={} user={} typing={}",
                t.channel_id, t.user_id, t.is_typing
            ),
            m => format!("message_created {}", message(m)),
        },
        Some(Event::MessageUpdated(e)) => format!("message_updated {}", message(e.message)),
        Some(Event::MessageDeleted(e)) => format!(
            "message_deleted channel={} id={}",
            e.channel_id, e.message_id
        ),
        Some(Event::Delivery(r)) => format!(
            "delivery channel={} id={} user={} status={:?}",
            r.channel_id,
            r.message_id,
            r.user_id,
            pb::ReceiptType::try_from(r.status).unwrap_or_default()
        ),
        Some(Event::Presence(p)) => format!(
            "presence user={} status={:?}",
            p.user_id,
            pb::PresenceStatus::try_from(p.status).unwrap_or_default()
        ),
        Some(Event::MemberJoined(j)) => {
            format!("member_joined guild={} {}", j.guild_id, user(j.user))
        }
        Some(Event::MemberRemoved(r)) => {
            format!("member_removed guild={} user={}", r.guild_id, r.user_id)
        }
        Some(Event::UserUpdated(u)) => format!("user_updated {}", user(u.user)),
        None => "unknown".into(),
    }
}
