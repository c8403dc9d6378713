//! A running node: storage, keys, the swarm, and the gRPC server, started from one [`Config`].
//!
//! [`Node::start`] binds everything before it returns, so callers (the CLI, tests, examples) learn
//! the real addresses, which matters when a config asks for port 0.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::accounts::{Accounts, AccountsConfig};
use crate::api::profile::ProfileApi;
use crate::api::session::SessionLayer;
use crate::api::{GuildHallApi, NodeInfo};
use crate::config::{Config, ConfigError};
use crate::identity::freshness::now_ms;
use crate::identity::{PublicKey, SecretKey};
use crate::proto::guildhall::v1::guild_hall_server::GuildHallServer;
use crate::proto::protocol::profile::v1::profile_service_server::ProfileServiceServer;
use crate::store::{StorageError, Store};
use crate::{gossip, proto};

/// How often expired sessions, replay-cache entries and old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The server key could not be read or written.
    #[error("server key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The swarm could not start.
    #[error(transparent)]
    Gossip(#[from] gossip::GossipError),
    /// The node's key validity could not be recorded.
    #[error("federation: {0}")]
    Federation(#[from] crate::federation::FederationError),
    /// The stored server settings could not be read.
    #[error("settings: {0}")]
    Settings(String),
    /// A server-event kind could not be registered.
    #[error("server events: {0}")]
    ServerEvents(String),
    /// The push client could not be set up.
    #[error("push: {0}")]
    Push(String),
    /// gRPC reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
}

/// A started node. Dropping it does not stop it; call [`RunningNode::shutdown`].
#[derive(Debug)]
pub struct RunningNode {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The node's public key.
    pub server_id: PublicKey,
    /// What the node reports about itself.
    pub info: NodeInfo,
    /// The peer directory and the client for signed calls to other servers.
    pub federation: crate::federation::Federation,
    /// The durable outbox of server calls that must arrive.
    pub outbox: crate::federation::outbox::Outbox,
    /// Gossiped server events: publish, register validators, catch up.
    pub server_events: gossip::ServerEvents,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Waits until every task has stopped (after [`RunningNode::shutdown`] or a fatal error).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// How many libp2p peers are connected now.
    pub fn p2p_peer_count(&self) -> usize {
        *self.info.p2p_peers.borrow()
    }

    /// The libp2p listen addresses bound so far.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.info.p2p_addrs.borrow().clone()
    }
}

/// Reads the node's key from `path`, or makes one there (readable only by its owner) on first start.
pub fn load_or_create_key(path: &Path) -> Result<SecretKey, NodeError> {
    let err = |reason: String| NodeError::Key {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => SecretKey::from_hex(text.trim()).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            write_private(path, &hex::encode(key.to_seed())).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Entry point for starting nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Opens storage, loads the key, binds gRPC and libp2p, and starts serving.
    pub async fn start(config: Config) -> Result<RunningNode, NodeError> {
        config.validate()?;
        let key = load_or_create_key(&config.server_key_path())?;
        let server_id = key.public();
        let store = Store::open(&config.database_path(), config.sqlite_synchronous).await?;
        let cancel = CancellationToken::new();

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?;
        let grpc_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let canonical_address = if config.public_url.is_empty() {
            format!("http://{grpc_addr}")
        } else {
            config.public_url.clone()
        };

        let bootstrap = if config.bootstrap_file.as_os_str().is_empty() {
            Vec::new()
        } else {
            let text = std::fs::read_to_string(&config.bootstrap_file).map_err(|e| {
                ConfigError::Invalid {
                    field: "bootstrap_file",
                    rule: format!("{}: {e}", config.bootstrap_file.display()),
                }
            })?;
            gossip::parse_bootstrap(&text)?
        };
        let local_key =
            crate::federation::local::load(&store, &key, &config.server_key_path()).await?;
        let federation = crate::federation::Federation::new(
            store.clone(),
            key.clone(),
            canonical_address.clone(),
            config.clock_skew_ms,
        );
        let outbox = crate::federation::outbox::Outbox::new(
            store.clone(),
            federation.client().clone(),
            config.outbox,
        );
        let swarm = gossip::spawn(&key, &config.p2p_listen, bootstrap, cancel.clone())?;
        let server_events = gossip::ServerEvents::new(
            key.clone(),
            store.clone(),
            swarm.handle.clone(),
            config.clock_skew_ms,
        );
        let receiver = server_events.spawn_receiver(swarm.events, cancel.clone());
        let catch_up = tokio::spawn(gossip::catchup::run(
            server_events.clone(),
            federation.clone(),
            cancel.clone(),
        ));
        let info = NodeInfo {
            server_id,
            peer_id: swarm.peer_id.to_string(),
            canonical_address: canonical_address.clone(),
            p2p_addrs: swarm.listen_addrs.clone(),
            p2p_peers: swarm.connected_peers.clone(),
            key_valid_until: local_key.valid_until,
            key_rotation: local_key.rotation,
        };
        let accounts = Accounts::new(
            store.clone(),
            AccountsConfig {
                server_id,
                canonical_address,
                clock_skew_ms: config.clock_skew_ms,
                access_ttl_ms: config.access_token_ttl_secs.saturating_mul(1000),
                refresh_ttl_ms: config.refresh_token_ttl_secs.saturating_mul(1000),
                admins: config.admins.clone(),
            },
        );

        let announcer = crate::federation::membership::MembershipAnnouncer::new(
            server_events.clone(),
            outbox.clone(),
            info.canonical_address.clone(),
        );
        let events =
            crate::events::Events::new(store.clone(), config.live_event_capacity, cancel.clone())
                .with_max_streams_per_user(config.max_event_streams_per_user)
                .with_read_gate(std::sync::Arc::new(
                    crate::guilds::permissions::ReadPermission,
                ))
                .with_hook(std::sync::Arc::new(announcer));
        // Continue after the largest stored id, so ids never repeat even if the clock went back.
        let floor = store.read(crate::store::messages::max_stored_id).await?;
        let ids = std::sync::Arc::new(crate::ids::IdGenerator::starting_after(floor));
        let guilds = crate::guilds::Guilds::new(store.clone(), events, ids, config.admins.clone());

        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<GuildHallServer<GuildHallApi>>()
            .await;
        health_reporter
            .set_serving::<ProfileServiceServer<ProfileApi>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| NodeError::Reflection(e.to_string()))?;
        let window = std::time::Duration::from_secs(config.rate_limit_window_secs);
        let limits = std::sync::Arc::new(
            crate::limits::Limits::load(store.clone(), window, config.settings)
                .await
                .map_err(|e| NodeError::Settings(e.to_string()))?,
        );
        let livekit = (!config.livekit_url.is_empty()).then(|| crate::calls::LiveKit {
            url: config.livekit_url.clone(),
            api_key: config.livekit_api_key.clone(),
            api_secret: config.livekit_api_secret.clone(),
        });
        let blobs = crate::media::blobs::Blobs::open(&config.media_dir()).map_err(|e| {
            ConfigError::Invalid {
                field: "data_dir",
                rule: format!("{}: {e}", config.media_dir().display()),
            }
        })?;
        let media = crate::media::Media::new(
            store.clone(),
            blobs,
            limits.clone(),
            crate::media::MediaConfig {
                public_base: info.canonical_address.clone(),
                upload_expiry_ms: config.upload_expiry_secs.saturating_mul(1000),
            },
        );
        let (push, push_tasks) = crate::push::Push::start(
            guilds.events(),
            config.push.clone(),
            outbox.clone(),
            &cancel,
        )
        .map_err(NodeError::Push)?;
        let media_expiry = media.spawn_expiry(cancel.clone());
        let bans = crate::federation::bans::Bans::new(
            federation.key(),
            info.canonical_address.clone(),
            outbox.clone(),
            guilds.clone(),
            config
                .trusted_ban_origins
                .iter()
                .filter_map(|k| crate::identity::PublicKey::from_hex(k).ok())
                .collect(),
            config.clock_skew_ms,
        )
        .with_gossip(server_events.clone())
        .await
        .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        crate::federation::gossiped::register(&server_events, store.clone(), accounts.clone())
            .await
            .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        crate::federation::membership::register(
            &server_events,
            store.clone(),
            federation.directory().clone(),
            info.canonical_address.clone(),
        )
        .await
        .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        let api = GuildHallApi::new(
            accounts.clone(),
            guilds,
            limits,
            livekit,
            media.clone(),
            push,
            info.clone(),
        )
        .with_mailbox(config.mailbox)
        .with_bans(bans)
        .with_outbox(outbox.clone())
        .with_federation(&federation, outbox.clone())
        .with_dm_federation(
            &federation,
            outbox.clone(),
            config.clock_skew_ms,
            std::time::Duration::from_millis(config.unread_proxy_timeout_ms),
        )
        .with_server_events(server_events.clone());
        let harmony = api.harmony();
        crate::federation::gossiped::register_profiles(
            &server_events,
            accounts.clone(),
            harmony.clone(),
            federation.directory().clone(),
        )
        .await
        .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        let http = crate::api::http::router(api.webhooks()).merge(crate::api::files::router(media));
        let mut services = tonic::service::Routes::builder();
        services
            .add_service(health)
            .add_service(reflection)
            .add_service(GuildHallServer::new(api))
            .add_service(ProfileServiceServer::new(ProfileApi::new(harmony)));
        let routes = services.routes().into_axum_router().merge(http);
        let router = tonic::transport::Server::builder()
            // HTTP/1.1 too, so programs can post to webhooks with any HTTP client.
            .accept_http1(true)
            .layer(SessionLayer::new(accounts))
            .layer(federation.layer())
            // Innermost: every string field of every request is checked once callers are known.
            .layer(crate::api::text::TextCheckLayer::new())
            .add_routes(tonic::service::Routes::from(routes));
        let shutdown = cancel.clone();
        let server = tokio::spawn(async move {
            // Without TCP_NODELAY, small gRPC replies wait out Nagle's algorithm and the peer's
            // delayed ACK (~40 ms per unary call).
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        });
        let retention_ms = config.event_retention_secs.saturating_mul(1000);
        let pruner = tokio::spawn(prune_loop(
            store,
            federation.clone(),
            retention_ms,
            cancel.clone(),
        ));
        tracing::info!(server = %server_id.fmt_short(), %grpc_addr, "node started");
        let mut tasks = vec![
            server,
            swarm.task,
            pruner,
            media_expiry,
            outbox.spawn(cancel.clone()),
            receiver,
            catch_up,
        ];
        tasks.extend(push_tasks);
        Ok(RunningNode {
            grpc_addr,
            server_id,
            info,
            federation,
            outbox,
            server_events,
            cancel,
            tasks,
        })
    }
}

async fn prune_loop(
    store: Store,
    federation: crate::federation::Federation,
    event_retention_ms: u64,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {
                let now = now_ms();
                match store.prune_events(now.saturating_sub(event_retention_ms)).await {
                    Ok(n) => tracing::debug!(removed = n, "pruned old events"),
                    Err(e) => tracing::warn!(error = %e, "event prune failed"),
                }
                if let Err(e) = federation.prune(now).await {
                    tracing::warn!(error = %e, "federation nonce prune failed");
                }
                match store.prune(now).await {
                    Ok(n) => tracing::debug!(removed = n, "pruned expired rows"),
                    Err(e) => tracing::warn!(error = %e, "prune failed"),
                }
            }
        }
    }
}
