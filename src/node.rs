//! A running node: storage, keys, the swarm, and the gRPC server, started from one [`Config`].
//!
//! [`Node::start`] binds everything before it returns, so callers (the CLI, tests, examples) learn
//! the real addresses, which matters when a config asks for port 0.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
    /// The certificate, key or CA file could not be used.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Another process holds the data directory.
    #[error(transparent)]
    Locked(#[from] DataDirLockError),
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    /// Another guildhall process (a node, or `rotate-server-key`) holds it.
    #[error(
        "data directory {0} is in use by another guildhall process (it holds {0}/{LOCK_FILE}); \
         two nodes on one directory would share a key and corrupt each other's state"
    )]
    InUse(String),
    /// The lock file could not be opened or locked.
    #[error("locking data directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The file in the data directory that a running node (or `rotate-server-key`) holds locked.
pub const LOCK_FILE: &str = "lock";

/// An exclusive hold on a data directory; released when dropped (or when the process dies, since
/// it is an OS file lock, so a killed node never leaves a stale lock behind).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Takes the lock on `dir` (creating it if needed), or says who has it.
    pub fn acquire(dir: &Path) -> Result<Self, DataDirLockError> {
        let io = |source| DataDirLockError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(DataDirLockError::InUse(dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// A started node. Dropping it does not stop it; call [`RunningNode::shutdown`].
#[derive(Debug)]
pub struct RunningNode {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The IRC gateway's bound address, when it runs.
    pub irc_addr: Option<SocketAddr>,
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
    /// Who is online, here and (as their homeservers say) elsewhere.
    pub presence: crate::presence::Presence,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store: Store,
    lock: DataDirLock,
}

impl RunningNode {
    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Waits until every task has stopped (after [`RunningNode::shutdown`] or a fatal error):
    /// the server has stopped accepting and its open calls and event streams have ended, the
    /// outbox and push deliveries have stopped (what they had not delivered stays queued), and
    /// every acknowledged write is in the database file. Then the data directory is released.
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.store.flush().await {
            tracing::warn!(error = %e, "final WAL checkpoint failed (the WAL is replayed on next start)");
        }
        drop(self.lock);
    }

    /// The node's metrics, as `/metrics` serves them (benchmarks read them in process).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.store.metrics()
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
            crate::identity::key_file::write_private(path, &hex::encode(key.to_seed()))
                .map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Entry point for starting nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Opens storage, loads the key, binds gRPC and libp2p, and starts serving.
    pub async fn start(config: Config) -> Result<RunningNode, NodeError> {
        config.validate()?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
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
        let served_cert = if config.tls.serves_tls() {
            Some(crate::tls::ServerCert::load(
                &config.tls.cert_file,
                &config.tls.key_file,
            )?)
        } else {
            None
        };
        let scheme = if served_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let canonical_address = if config.public_url.is_empty() {
            format!("{scheme}://{grpc_addr}")
        } else {
            config.public_url.clone()
        };
        let outbound = crate::outbound::Outbound::new(
            crate::outbound::AddressPolicy::new(config.allow_private_addresses),
            crate::tls::ClientTls::new(config.tls.extra_ca())?,
        );
        let trusted_proxies = std::sync::Arc::new(config.trusted_proxy_nets()?);

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
        for warning in operator_warnings(&config, grpc_addr, &local_key, now_ms()) {
            tracing::warn!("{warning}");
        }
        let federation = crate::federation::Federation::new(
            store.clone(),
            key.clone(),
            canonical_address.clone(),
            config.clock_skew_ms,
            outbound.clone(),
        );
        let outbox = crate::federation::outbox::Outbox::new(
            store.clone(),
            federation.client().clone(),
            config.outbox,
        );
        let mut swarm_metrics = crate::metrics::Metrics::swarm_registry();
        let swarm = gossip::spawn(
            &key,
            &config.p2p_listen,
            bootstrap,
            &mut swarm_metrics,
            cancel.clone(),
        )?;
        store.metrics().attach_swarm(swarm_metrics);
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
        // The IRC gateway's socket, bound before the node reports itself (GetServerInfo says
        // where it is).
        let irc_listener = match config.irc_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Bind { addr, source })?,
            ),
            None => None,
        };
        let irc_addr = irc_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|source| NodeError::Bind {
                addr: config.irc_listen.unwrap_or(config.listen),
                source,
            })?;
        let irc_server_name = url::Url::parse(&canonical_address)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "guildhall".to_owned());
        let info = NodeInfo {
            irc: irc_addr.map(|a| (a.port(), irc_server_name.clone())),
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
                address_policy: crate::outbound::AddressPolicy::new(config.allow_private_addresses),
                registration: config.registration_policy(),
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
        let open_streams = events.open_streams().clone();
        let guilds = crate::guilds::Guilds::new(store.clone(), events, ids, config.admins.clone());

        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<GuildHallServer<GuildHallApi>>()
            .await;
        health_reporter
            .set_serving::<ProfileServiceServer<ProfileApi>>()
            .await;
        health_reporter
            .set_serving::<crate::proto::guildhall::admin::v1::admin_server::AdminServer<
                crate::api::admin::AdminApi,
            >>()
            .await;
        // Both reflection versions (grpcurl and older tools ask v1alpha), each describing the
        // node's services and the health service.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| NodeError::Reflection(e.to_string()))?;
        let reflection = reflection()
            .build_v1()
            .map_err(|e| NodeError::Reflection(e.to_string()))?;
        let window = std::time::Duration::from_secs(config.rate_limit_window_secs);
        let limits = std::sync::Arc::new(
            crate::limits::Limits::load(store.clone(), window, config.settings)
                .await
                .map_err(|e| NodeError::Settings(e.to_string()))?,
        );
        let limits_saver = tokio::spawn(save_limits_loop(limits.clone(), cancel.clone()));
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
            outbound,
            &cancel,
        )
        .map_err(NodeError::Push)?;
        let media_expiry = media.spawn_expiry(cancel.clone());
        let bans = crate::federation::bans::Bans::new(
            federation.key(),
            info.canonical_address.clone(),
            outbox.clone(),
            guilds.clone(),
            crate::guilds::ban_lists::BanTrust::new(&server_id, config.trusted_lists()?),
            config.clock_skew_ms,
        )
        .with_gossip(server_events.clone())
        .await
        .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        if !config.trusted_ban_origins.is_empty() {
            tracing::warn!(
                "trusted_ban_origins trusts only those servers' moderation lists, not their \
                 guilds' bans; name a guild in [[trusted_ban_lists]] to trust its bans"
            );
        }
        bans.reconcile().await?;
        crate::federation::gossiped::register(
            &server_events,
            store.clone(),
            accounts.clone(),
            guilds.clone(),
        )
        .await
        .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        crate::federation::gossiped::register_account_deletions(
            &server_events,
            crate::account_status::AccountStatuses::new(
                guilds.clone(),
                info.canonical_address.clone(),
                config.clock_skew_ms,
                None,
            ),
            accounts.clone(),
        )
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
        let admin = crate::admin::Admin::new(store.clone(), accounts.clone(), guilds.clone())
            .with_node(crate::admin::node::NodeView {
                server_id,
                canonical_address: info.canonical_address.clone(),
                peer_id: info.peer_id.clone(),
                p2p_peers: info.p2p_peers.clone(),
                database_path: config.database_path(),
                media_dir: config.media_dir(),
                started_at: now_ms(),
                trusted_lists: config.trusted_lists()?,
                outbox: outbox.clone(),
                server_events: server_events.clone(),
            })
            .with_content(crate::admin::content::ContentView {
                messages: crate::messages::Messages::new(guilds.clone(), limits.clone()),
                media: media.clone(),
            });
        let (irc_guilds, irc_limits, irc_bans) = (guilds.clone(), limits.clone(), bans.clone());
        let irc_address = info.canonical_address.clone();
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
        let presence = api.presence();
        let presence_task = crate::presence::across::start(
            &presence,
            federation.client().clone(),
            info.canonical_address.clone(),
            crate::presence::across::SharingConfig {
                refresh: Duration::from_millis(config.presence_refresh_ms),
                timeout: Duration::from_millis(config.presence_timeout_ms),
            },
            cancel.clone(),
        );
        let irc_task = irc_listener
            .map(|listener| {
                let gateway = crate::irc::Gateway::new(
                    accounts.clone(),
                    irc_guilds.clone(),
                    crate::messages::Messages::new(irc_guilds.clone(), irc_limits.clone()),
                    api.presence(),
                    irc_server_name.clone(),
                    &config.irc_default_guild,
                )
                .with_bans(irc_bans.clone())
                .with_limits(irc_limits.clone())
                .with_keepalive(Duration::from_secs(config.irc_ping_secs))
                .with_dms(crate::dms::Dms::new(
                    irc_guilds.clone(),
                    irc_address.clone(),
                ));
                let tls = served_cert
                    .as_ref()
                    .map(|cert| cert.irc_server_config())
                    .transpose()?;
                Ok::<_, NodeError>(tokio::spawn(gateway.serve(
                    listener,
                    tls,
                    Duration::from_millis(config.tls.handshake_timeout_ms),
                    cancel.clone(),
                )))
            })
            .transpose()?;
        crate::federation::gossiped::register_profiles(
            &server_events,
            accounts.clone(),
            harmony.clone(),
            federation.directory().clone(),
        )
        .await
        .map_err(|e| NodeError::ServerEvents(e.to_string()))?;
        let ops = crate::api::ops::Ops {
            store: store.clone(),
            database_files: vec![
                config.database_path(),
                crate::store::wal_path(&config.database_path()),
            ],
            streams: open_streams,
            gossip: swarm.handle.clone(),
            p2p_addrs: info.p2p_addrs.clone(),
            p2p_peers: info.p2p_peers.clone(),
            trusted_proxies: trusted_proxies.clone(),
        };
        let http = crate::api::http::router(api.webhooks())
            .merge(crate::api::files::router(media))
            .merge(crate::api::ops::router(ops))
            .merge(crate::api::web::router());
        let event_stream_route = api.event_stream_route();
        let mut services = tonic::service::Routes::builder();
        services
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(
                GuildHallServer::new(api).max_decoding_message_size(crate::api::MAX_REQUEST_BYTES),
            )
            .add_service(
                ProfileServiceServer::new(ProfileApi::new(harmony))
                    .max_decoding_message_size(crate::api::MAX_REQUEST_BYTES),
            )
            .add_service(crate::api::admin::service(admin, accounts.clone()));
        let routes = services
            .routes()
            .into_axum_router()
            // Shadows the generated service's SubscribeEvents (a static path wins over its
            // wildcard): same messages, each encoded once for every stream.
            .route_service(
                crate::api::event_stream::PATH,
                tower::ServiceExt::map_request(
                    event_stream_route,
                    |r: http::Request<axum::body::Body>| r.map(tonic::body::Body::new),
                ),
            )
            .merge(http)
            .fallback(crate::api::web::fallback);
        let (cors, grpc_web) = crate::api::web::grpc_web_layers();
        let router = tonic::transport::Server::builder()
            // HTTP/1.1 too, so programs can post to webhooks with any HTTP client, and browsers
            // can make gRPC-web calls.
            .accept_http1(true)
            // Outermost: browsers' CORS preflights, then gRPC-web turned into gRPC, so every
            // layer below sees one kind of call.
            .layer(cors)
            .layer(grpc_web)
            // Every call is counted, refused ones too.
            .layer(crate::api::observe::CallMetricsLayer::new(
                store.metrics().clone(),
            ))
            .layer(crate::listener::ClientAddressLayer::new(
                trusted_proxies.clone(),
            ))
            .layer(SessionLayer::new(accounts))
            .layer(federation.layer())
            // Innermost: every string field of every request is checked once callers are known.
            .layer(crate::api::text::TextCheckLayer::new())
            .add_routes(tonic::service::Routes::from(routes));
        let shutdown = cancel.clone();
        let listener_config = crate::listener::ListenerConfig {
            tls: served_cert
                .as_ref()
                .map(|c| c.server_config())
                .transpose()?,
            max_connections_per_address: config.max_connections_per_address,
            trusted_proxies,
            handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
        };
        let incoming = crate::listener::incoming(listener, listener_config, cancel.clone());
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        let server = tokio::spawn(async move {
            let serve =
                router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
            // A graceful HTTP/2 shutdown waits for every client to acknowledge it; a client that
            // never does must not keep the node from stopping.
            let deadline = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                result = serve => if let Err(e) = result {
                    tracing::error!(error = %e, "gRPC server stopped");
                },
                () = deadline => tracing::warn!(
                    ?grace,
                    "connections still open after the shutdown grace period; closing them"
                ),
            }
        });
        let pruner = tokio::spawn(prune_loop(
            store.clone(),
            federation.clone(),
            server_events.clone(),
            Retention {
                events_ms: config.event_retention_secs.saturating_mul(1000),
                server_events_ms: config.server_event_retention_secs.saturating_mul(1000),
            },
            cancel.clone(),
        ));
        tracing::info!(server = %server_id.fmt_short(), %grpc_addr, "node started");
        let mut tasks = vec![
            server,
            swarm.task,
            pruner,
            limits_saver,
            media_expiry,
            outbox.spawn(cancel.clone()),
            receiver,
            catch_up,
            presence_task,
        ];
        tasks.extend(push_tasks);
        tasks.extend(irc_task);
        if let Some(cert) = served_cert {
            tasks.push(cert.spawn_watch(cancel.clone()));
        }
        Ok(RunningNode {
            grpc_addr,
            irc_addr,
            server_id,
            info,
            federation,
            outbox,
            server_events,
            presence,
            cancel,
            tasks,
            store,
            lock,
        })
    }
}

/// Saves the rate-limit buckets every [`crate::limits::SAVE_EVERY`] and once more when the node
/// stops, so a restart hands nobody a fresh allowance.
async fn save_limits_loop(
    limits: std::sync::Arc<crate::limits::Limits>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(crate::limits::SAVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = cancel.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Err(e) = limits.save().await {
            tracing::warn!(error = %e, "saving the rate-limit buckets failed");
        }
        if stopping {
            break;
        }
    }
}

/// How long the pruned logs keep what they prune.
struct Retention {
    /// `SubscribeEvents`' log.
    events_ms: u64,
    /// Superseded server events.
    server_events_ms: u64,
}

async fn prune_loop(
    store: Store,
    federation: crate::federation::Federation,
    server_events: gossip::ServerEvents,
    retention: Retention,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {
                let now = now_ms();
                match store.prune_events(now.saturating_sub(retention.events_ms)).await {
                    Ok(n) => tracing::debug!(removed = n, "pruned old events"),
                    Err(e) => tracing::warn!(error = %e, "event prune failed"),
                }
                // `+ 1`: with a retention of 0, an event received this very millisecond is old
                // enough.
                let before = now.saturating_sub(retention.server_events_ms).saturating_add(1);
                if let Err(e) = server_events.prune(before).await {
                    tracing::warn!(error = %e, "server-event prune failed");
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

/// How long before the server key expires the node starts warning at every start.
const KEY_EXPIRY_WARNING_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// Warnings for settings that start but won't serve a community well: listening on every
/// interface while telling the world a non-address, and a server key about to expire (after
/// which peers refuse the node's calls). Logged at every start.
fn operator_warnings(
    config: &Config,
    grpc_addr: SocketAddr,
    key: &crate::federation::local::LocalKey,
    now: u64,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.public_url.is_empty() && config.listen.ip().is_unspecified() {
        warnings.push(format!(
            "listening on every interface without public_url: other servers and clients are \
             told http://{grpc_addr}, which reaches nothing; set public_url to the URL they reach \
             this node at"
        ));
    }
    let left = key.valid_until.saturating_sub(now);
    if left < KEY_EXPIRY_WARNING_MS {
        let days = left / (24 * 60 * 60 * 1000);
        warnings.push(format!(
            "the server key expires in {days} days, after which other servers refuse this node's \
             calls: stop the node and run `guildhall rotate-server-key` (docs/OPERATING.md, \
             \"The server key\")"
        ));
    }
    warnings
}

#[cfg(test)]
mod operator_warning_tests {
    use super::*;
    use crate::federation::local::LocalKey;

    const DAY: u64 = 24 * 60 * 60 * 1000;

    #[test]
    fn every_interface_without_public_url_and_a_key_near_expiry_warn() {
        let now = 1_000 * DAY;
        let fresh = LocalKey {
            valid_until: now + 200 * DAY,
            rotation: None,
        };
        let addr: SocketAddr = "0.0.0.0:7400".parse().expect("addr");
        let local = Config::default();
        assert!(operator_warnings(&local, local.listen, &fresh, now).is_empty());
        let mut open = Config {
            listen: addr,
            ..Config::default()
        };
        let warned = operator_warnings(&open, addr, &fresh, now);
        assert_eq!(warned.len(), 1);
        assert!(warned[0].contains("without public_url"), "{warned:?}");
        open.public_url = "https://chat.example.org".into();
        assert!(operator_warnings(&open, addr, &fresh, now).is_empty());
        let expiring = LocalKey {
            valid_until: now + 12 * DAY + 5,
            rotation: None,
        };
        let warned = operator_warnings(&open, addr, &expiring, now);
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].starts_with("the server key expires in 12 days"),
            "{warned:?}"
        );
    }
}
