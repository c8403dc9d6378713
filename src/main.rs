//! The `guildhall` command: run a node, or act as a small client against one.

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

async fn connect(server: &str) -> Result<(GuildHallClient<Channel>, PublicKey)> {
    let mut client = GuildHallClient::connect(server.to_owned())
        .await
        .with_context(|| format!("connecting to {server}"))?;
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
    let (file, _) = load(&target.id.identity)?;
    if file.access_token.is_empty() {
        bail!("not logged in: run `guildhall register` or `guildhall login`");
    }
    let (mut client, _) = connect(&target.server).await?;
    let mut request = tonic::Request::new(pb::Empty {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", file.access_token).parse()?,
    );
    let data = client.get_my_data(request).await?.into_inner();
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
    let mut client = GuildHallClient::connect(server.to_owned()).await?;
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
