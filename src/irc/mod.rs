//! The IRC gateway: a second adapter over the same domain as the gRPC API, so people on any IRC
//! client are members of the node's guilds (`docs/IRC.md`).
//!
//! A client logs in with a token its user minted over gRPC (`CreateIrcToken`), by SASL PLAIN or
//! `PASS username:token`; its nick is the user's username. Channels with an `irc_name` are IRC
//! channels ([`names`]). What the client sends goes through the same domain calls as gRPC (a
//! PRIVMSG is `SendMessage`, with its limits, events and pushes), and what it sees comes from the
//! same event subscription as `SubscribeEvents`, with the same read permissions.
//!
//! Each connection reads bounded lines and writes through a bounded queue: a client that stops
//! reading is disconnected when its queue fills ("SendQ exceeded"), so it never holds up others.

mod conn;
pub mod names;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::events::Events;
use crate::guilds::Guilds;
use crate::messages::Messages;
use crate::presence::Presence;

/// Longest line read from a client, in bytes: 8191 bytes of IRCv3 tags and the 512-byte rest.
pub const MAX_LINE: usize = 8191 + 512;
/// Lines queued for one client before it is disconnected as too slow to read them.
pub const SENDQ_LINES: usize = 1024;
/// Most IRC connections the gateway holds at once; more are told to come back later.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long a client may be silent before the gateway pings it, unless `irc_ping_secs` says.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(120);

/// What the gateway serves with; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    accounts: Accounts,
    guilds: Guilds,
    messages: Messages,
    /// The node's presence: a connected IRC client makes its user online.
    presence: Presence,
    /// Profile flags Harmony keeps that IRC shows too: a user's bot mode (`+B`).
    harmony: crate::harmony::Harmony,
    events: Events,
    /// The server's name on IRC (the host of the node's address).
    server_name: String,
    /// The guild whose channels are plain `#name`, if the operator named one.
    default_guild: Option<String>,
    /// Bans that reach other servers (`MODE +b`); `None` on a node without federation.
    bans: Option<crate::federation::bans::Bans>,
    /// DMs started and accepted from IRC; `None` where the node offers none.
    dms: Option<crate::dms::Dms>,
    /// The node's rate limits: logins and registrations count per client address, as on gRPC.
    limits: Option<Arc<crate::limits::Limits>>,
    /// A client silent this long is sent a `PING`; silent half as long again, it is dropped.
    keepalive: Duration,
    /// Open connections, registered or not.
    connections: Arc<AtomicUsize>,
    /// Registered clients now and at most (`LUSERS`).
    counts: Arc<Counts>,
    /// The last member list read per guild for a role change, shared by all connections.
    rosters: Arc<conn::SharedRosters>,
}

/// How many clients have registered, for `LUSERS`.
#[derive(Debug, Default)]
struct Counts {
    registered: AtomicUsize,
    most_registered: AtomicUsize,
}

/// One registered client in [`Counts`], for as long as it is held.
struct Registered(Arc<Counts>);

impl Registered {
    fn new(counts: &Arc<Counts>) -> Self {
        let now = counts.registered.fetch_add(1, Ordering::Relaxed) + 1;
        counts.most_registered.fetch_max(now, Ordering::Relaxed);
        Self(counts.clone())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.registered.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gateway {
    /// The gateway over the node's domain, counting its connections in `presence`, calling itself
    /// `server_name`, with `default_guild`'s channels unprefixed (empty: none).
    pub fn new(
        accounts: Accounts,
        guilds: Guilds,
        messages: Messages,
        presence: Presence,
        server_name: String,
        default_guild: &str,
    ) -> Self {
        Self {
            harmony: crate::harmony::Harmony::new(
                accounts.clone(),
                guilds.clone(),
                presence.clone(),
            ),
            accounts,
            presence,
            events: guilds.events().clone(),
            guilds,
            messages,
            server_name,
            default_guild: (!default_guild.is_empty()).then(|| default_guild.to_owned()),
            bans: None,
            dms: None,
            limits: None,
            keepalive: DEFAULT_KEEPALIVE,
            connections: Arc::new(AtomicUsize::new(0)),
            counts: Arc::default(),
            rosters: Arc::default(),
        }
    }

    /// The gateway banning through `bans` (signed, propagated like a `BanUser`).
    pub fn with_bans(mut self, bans: crate::federation::bans::Bans) -> Self {
        self.bans = Some(bans);
        self
    }

    /// The gateway starting and accepting DMs through `dms`.
    pub fn with_dms(mut self, dms: crate::dms::Dms) -> Self {
        self.dms = Some(dms);
        self
    }

    /// The gateway pinging clients silent for `keepalive` (`irc_ping_secs`), and dropping
    /// those that stay silent half as long again.
    pub fn with_keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive.max(Duration::from_secs(1));
        self
    }

    /// The gateway counting logins and registrations against the node's `limits`.
    pub fn with_limits(mut self, limits: Arc<crate::limits::Limits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Accepts IRC clients on `listener` until `cancel`, each on its own task; with `tls`, each
    /// connection is a TLS one (the node's certificate), its handshake bounded by
    /// `handshake_timeout`.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        handshake_timeout: Duration,
        cancel: CancellationToken,
    ) {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "IRC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let open = self.connections.fetch_add(1, Ordering::SeqCst);
            let (gateway, cancel, acceptor) = (self.clone(), cancel.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    None if open >= MAX_CONNECTIONS => {
                        conn::refuse(socket, &gateway.server_name).await;
                    }
                    None => conn::run(socket, peer, gateway.clone(), cancel).await,
                    // Over the limit on TLS: closed before the handshake.
                    Some(_) if open >= MAX_CONNECTIONS => drop(socket),
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await
                        {
                            Ok(Ok(stream)) => {
                                conn::run(stream, peer, gateway.clone(), cancel).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "IRC TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "IRC TLS handshake timed out"),
                        }
                    }
                }
                gateway.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}
