//! The `guildhall` command: run a node, or act as a small client against one.

mod cli;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use cli::{
    IdentityArg, Target, channel_create, channel_list, guild_create, guild_list, history, info,
    invite_create, join, keygen, login, register, send, tail, whoami,
};
use guildhall::config::Config;
use guildhall::logging::LogFormat;
use guildhall::node::Node;

/// jemalloc rather than glibc's malloc: a node's memory swings with its open event streams, and
/// glibc kept what 10,000 closed streams had used (still 174 MiB resident ten seconds after they
/// closed, against 53 MiB with jemalloc returning freed pages after a second, as
/// `.cargo/config.toml` configures it; docs/BENCHMARKS.md).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A federated, peer-to-peer chat homeserver.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr: `text` (colour only on a terminal) or `json` (one object per line).
    /// For `serve` it overrides `log_format` in the config file.
    #[arg(
        long,
        global = true,
        env = "GUILDHALL_LOG_FORMAT",
        value_name = "text|json"
    )]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. With no flags: data in ./guildhall-data, gRPC on 127.0.0.1:7400, p2p on 7401.
    Serve(ServeArgs),
    /// Replace the node's server key (run while the node is stopped). The old key signs a
    /// hand-over that the node publishes from its next start, so peers that pinned it follow.
    RotateServerKey(ServeArgs),
    /// Copy the node's data directory (database, server key, uploaded files) into a new
    /// directory, consistently, while the node runs. Restore: see docs/OPERATING.md, "Backups".
    Backup {
        /// The new (or empty) directory to write the copy to.
        dest: PathBuf,
        /// TOML config file naming the data directory.
        #[arg(long, env = "GUILDHALL_CONFIG")]
        config: Option<PathBuf>,
        /// The node's data directory (default: the config's, else ./guildhall-data).
        #[arg(long, env = "GUILDHALL_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
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
        /// A registration token from the server's admins (servers with `registration = "token"`).
        #[arg(long, env = "GUILDHALL_REGISTRATION_TOKEN")]
        registration_token: Option<String>,
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
        /// A PEM file of CA certificates to trust for https:// servers, besides the public roots.
        #[arg(long, env = "GUILDHALL_CA_FILE")]
        ca_file: Option<PathBuf>,
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
    /// Join a guild with an invite token and save the session: as a user of your homeserver when
    /// the guild is hosted elsewhere, else registering you on the server if needed.
    Join {
        #[command(flatten)]
        target: Target,
        /// The invite token.
        token: String,
        /// Display name to register with, if the server does not know you yet.
        #[arg(long)]
        name: Option<String>,
        /// A registration token from the server's admins, if it does not know you yet and
        /// registers only with one.
        #[arg(long, env = "GUILDHALL_REGISTRATION_TOKEN")]
        registration_token: Option<String>,
        /// Your homeserver's gRPC address, when the guild is hosted on another node: that node
        /// asks your homeserver to vouch for you, and you join as yourself rather than as a new
        /// account there. Default: the homeserver the identity file remembers.
        #[arg(long)]
        homeserver: Option<String>,
    },
    /// Send a text message to a channel.
    Send {
        #[command(flatten)]
        target: Target,
        /// The channel: its id, `name`, `#name`, or `Guild#name` (a name must be unambiguous
        /// among your guilds).
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
        /// The channel: its id, `name`, `#name`, or `Guild#name` (a name must be unambiguous
        /// among your guilds).
        #[arg(long)]
        channel: String,
        /// How many messages.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Show each message's id (for `react`, `edit` and `delete`).
        #[arg(long)]
        ids: bool,
    },
    #[command(flatten)]
    Chat(cli::chat::ChatCommand),
    /// A guild's roles: list, create, delete, assign and unassign.
    #[command(subcommand)]
    Role(cli::manage::RoleCommand),
    /// A guild's webhooks: create (prints the token), list, delete.
    #[command(subcommand)]
    Webhook(cli::manage::WebhookCommand),
    /// Your account: disable, enable or delete it (signed with your identity key), or export
    /// everything the server stores about you.
    #[command(subcommand)]
    Account(cli::account::AccountCommand),
    /// Link a new device to your identity through the server's mailbox.
    #[command(subcommand)]
    Device(cli::device::DeviceCommand),
    /// Server administration (server admins only): registration tokens, users, content, node
    /// status, federation, the audit log.
    #[command(subcommand)]
    Admin(cli::admin::AdminCommand),
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
        /// The guild: its id or its name (unambiguous among your guilds).
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
        /// The guild: its id or its name (unambiguous among your guilds).
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
        /// The channel: its id, `name`, `#name`, or `Guild#name` (a name must be unambiguous
        /// among your guilds).
        #[arg(long)]
        channel: String,
        /// How many joins it allows (default: unlimited).
        #[arg(long)]
        max_uses: Option<i32>,
        /// Seconds until it expires (default: 7 days; 0 = never).
        #[arg(long)]
        max_age_secs: Option<u64>,
        /// Let people new to the server register by joining with it, whatever its registration
        /// policy (server admins only).
        #[arg(long)]
        allow_registration: bool,
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
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "GUILDHALL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, env = "GUILDHALL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) to trust for outgoing https:// besides the public roots.
    #[arg(long, env = "GUILDHALL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Let requests make the node connect to loopback/private addresses (tests, LANs).
    #[arg(long, env = "GUILDHALL_ALLOW_PRIVATE_ADDRESSES")]
    allow_private_addresses: Option<bool>,
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
                // A refusal no command put in words: its kind in words, not as a gRPC code.
                Some(status) => eprintln!(
                    "error: {}",
                    cli::person(status.clone(), "the server refused")
                ),
                None => {
                    let err: &(dyn std::error::Error + 'static) = err.as_ref();
                    eprintln!("error: {}", guildhall::logging::report(err));
                }
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let Cli {
        log_format,
        command,
    } = Cli::parse();
    // `serve` starts logging once its config file (which may set the format) is read.
    if !matches!(command, Command::Serve(_)) {
        guildhall::logging::init(log_format.unwrap_or_default());
    }
    match command {
        Command::Serve(args) => serve(args, log_format).await,
        Command::RotateServerKey(args) => rotate_server_key(args),
        Command::Backup {
            dest,
            config,
            data_dir,
        } => backup(&dest, config, data_dir),
        Command::Keygen {
            id,
            device_id,
            force,
        } => keygen(&id.identity, &device_id, force),
        Command::Register {
            target,
            name,
            registration_token,
        } => register(&target, &name, registration_token).await,
        Command::Login { target } => login(&target).await,
        Command::Whoami { target } => whoami(&target).await,
        Command::Info { server, ca_file } => info(&server, ca_file.as_deref()).await,
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
            allow_registration,
        }) => invite_create(&target, channel, max_uses, max_age_secs, allow_registration).await,
        Command::Join {
            target,
            token,
            name,
            registration_token,
            homeserver,
        } => join(&target, &token, name, registration_token, homeserver).await,
        Command::Send {
            target,
            channel,
            text,
        } => send(&target, channel, text.join(" ")).await,
        Command::History {
            target,
            channel,
            limit,
            ids,
        } => history(&target, channel, limit, ids).await,
        Command::Tail { target, resume } => tail(&target, resume).await,
        Command::Chat(command) => cli::chat::run(command).await,
        Command::Role(command) => cli::manage::role_command(command).await,
        Command::Webhook(command) => cli::manage::webhook_command(command).await,
        Command::Device(command) => cli::device::run(command).await,
        Command::Account(command) => cli::account::run(command).await,
        Command::Admin(command) => cli::admin::run(command).await,
    }
}

fn rotate_server_key(args: ServeArgs) -> Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    // Not while a node runs on this directory: it would go on signing with the old key.
    let _lock = guildhall::node::DataDirLock::acquire(&config.data_dir)?;
    let path = config.server_key_path();
    let rotation = guildhall::federation::local::rotate_key_file(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    println!("old key: {}", rotation.old_key);
    println!("new key: {}", rotation.new_key);
    println!(
        "valid until: {} (ms since the epoch)",
        rotation.new_key_valid_until
    );
    Ok(())
}

fn backup(
    dest: &std::path::Path,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<()> {
    let mut config = Config::load(config.as_deref())?;
    if let Some(v) = data_dir {
        config.data_dir = v;
    }
    let started = std::time::Instant::now();
    let report = guildhall::backup::run(&config, dest)?;
    println!(
        "backed up {} to {} in {:.1} s",
        config.data_dir.display(),
        dest.display(),
        started.elapsed().as_secs_f64()
    );
    println!("  database:       {} bytes", report.database_bytes);
    println!("  keys:           {}", report.key_files.join(", "));
    println!(
        "  uploaded files: {} ({} bytes)",
        report.blobs, report.blob_bytes
    );
    if !report.missing_blobs.is_empty() {
        eprintln!(
            "warning: {} uploaded files the database refers to were not on disk (removed after \
             the copy began, or lost before): {}",
            report.missing_blobs.len(),
            report.missing_blobs.join(", ")
        );
    }
    Ok(())
}

async fn serve(args: ServeArgs, log_format: Option<LogFormat>) -> Result<()> {
    let stop = stop_signal()?;
    let mut config = Config::load(args.config.as_deref())?;
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
    if let Some(v) = args.tls_cert {
        config.tls.cert_file = v;
    }
    if let Some(v) = args.tls_key {
        config.tls.key_file = v;
    }
    if let Some(v) = args.tls_ca {
        config.tls.extra_ca_file = v;
    }
    if let Some(v) = args.allow_private_addresses {
        config.allow_private_addresses = v;
    }
    guildhall::logging::init(log_format.unwrap_or(config.log_format));
    let node = Node::start(config.clone()).await?;
    // Give the swarm a moment to report its bound addresses before printing them.
    let mut addrs = node.info.p2p_addrs.clone();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), addrs.changed()).await;
    // Written once and never fatally: a closed stdout (a supervisor that stopped reading) must
    // not take the node down.
    let scheme = if config.tls.serves_tls() {
        "https"
    } else {
        "http"
    };
    let mut banner = format!(
        "guildhall {} is running\n  gRPC:      {scheme}://{}\n  address:   {}\n  server id: {}\n  peer id:   {}\n",
        env!("CARGO_PKG_VERSION"),
        node.grpc_addr,
        node.info.canonical_address,
        node.server_id,
        node.info.peer_id
    );
    for addr in node.p2p_addrs() {
        banner.push_str(&format!("  p2p:       {addr}/p2p/{}\n", node.info.peer_id));
    }
    banner.push_str(&format!(
        "  data:      {}\nPress Ctrl-C to stop.\n",
        config.data_dir.display()
    ));
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    let signal = stop.await;
    tracing::info!(%signal, "stopping: no new connections; open calls and streams end; queued work stays queued");
    node.shutdown();
    node.stopped().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Starts listening for Ctrl-C (SIGINT) and SIGTERM (what systemd and Docker send) now; the future
/// names the first to arrive. Listening from the start of `serve` means a signal sent while the
/// node starts stops it cleanly once it has started, instead of killing it midway.
fn stop_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}
