//! Node configuration: one serde struct with embedded defaults.
//!
//! Precedence, lowest first: these defaults, the TOML file given with `--config`, environment
//! variables (`GUILDHALL_<KEY>` for every key, `__` between the parts of a nested one:
//! `GUILDHALL_TLS__CERT_FILE`), command-line flags. The layers are merged by `figment`
//! ([`Config::load`]). With no file and no flags the node runs on loopback with its data in
//! `./guildhall-data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::Synchronous;

/// Everything an operator can set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, the server key and uploads live.
    pub data_dir: PathBuf,
    /// gRPC listen address. Port 0 picks a free port (tests do this).
    pub listen: SocketAddr,
    /// libp2p listen multiaddr for server-to-server gossip.
    pub p2p_listen: String,
    /// The address clients and other servers use to reach this node (`ServerInfo.canonical_address`
    /// and the `homeserver` of local users). Empty means `http://<listen>`.
    pub public_url: String,
    /// Signed requests whose timestamp is further than this from the node's clock are refused;
    /// the replay cache remembers signatures for this long.
    pub clock_skew_ms: u64,
    /// Lifetime of an access token.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (and so of a login that keeps refreshing).
    pub refresh_token_ttl_secs: u64,
    /// User ids (hex K_id) that are server admins.
    pub admins: Vec<String>,
    /// Who may register (`"open"`, `"token"` or `"closed"`). Unset: `open` while the node can
    /// only be reached from this machine (it listens on loopback, has no non-loopback
    /// `public_url` and no `trusted_proxies`), else `token`, so a node put on the network is never
    /// open to anyone by accident. See [`Config::registration_policy`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<crate::accounts::registration::RegistrationPolicy>,
    /// SQLite durability: `normal` survives a killed process, `full` survives power loss.
    pub sqlite_synchronous: Synchronous,
    /// How long events stay in the log for clients resuming `SubscribeEvents`; a client further
    /// behind is told to reload (`OUT_OF_RANGE`).
    pub event_retention_secs: u64,
    /// How long a superseded server event (one a newer statement about the same subject made
    /// moot) stays in the gossip log before it is pruned; peers behind by less than this get every
    /// event, peers further behind get the live ones. 0 prunes at every pass.
    pub server_event_retention_secs: u64,
    /// Events the live fan-out holds before a slow subscriber falls back to reading the log.
    pub live_event_capacity: usize,
    /// Most `SubscribeEvents` streams one user may hold open on this node at once (all devices
    /// together): each costs a task and a buffer, so one account can't exhaust the node by
    /// opening streams. One more answers `RESOURCE_EXHAUSTED` naming this setting.
    pub max_event_streams_per_user: usize,
    /// The window every rate limit in `ServerSettings` counts over (their values are per window).
    pub rate_limit_window_secs: u64,
    /// Starting server settings (limits); admins' changes through `UpdateServerSettings` are
    /// stored and take precedence.
    pub settings: crate::limits::Settings,
    /// LiveKit server URL handed to clients with call tokens (`wss://…`); empty: calls are off.
    pub livekit_url: String,
    /// LiveKit API key (the tokens' issuer).
    pub livekit_api_key: String,
    /// LiveKit API secret that signs call tokens.
    pub livekit_api_secret: String,
    /// File of bootstrap peers (one multiaddr with `/p2p/<peer id>` per line); empty for none.
    pub bootstrap_file: PathBuf,
    /// An upload that receives no chunk for this long is removed with its bytes.
    pub upload_expiry_secs: u64,
    /// The ban lists this node enforces on its own guilds (`[[trusted_ban_lists]]`): a server's
    /// moderation list (its admins' bans), or one guild's bans (`server` + `guild`). Trusting a
    /// server names what of it is trusted: never every guild owner on it. Bans from other lists
    /// are kept as advisories that admins can see (`ListBanNotices`).
    pub trusted_ban_lists: Vec<TrustedBanList>,
    /// Older spelling, kept so existing files still load: each key (hex) trusts that server's
    /// **moderation list only**, like a `trusted_ban_lists` entry with no `guild`. (Before, it
    /// trusted every guild ban signed by the server, so any guild owner there could ban users
    /// from this node's guilds.)
    pub trusted_ban_origins: Vec<String>,
    /// Bounds of the device-linking mailbox (`SyncMailbox`): sizes, waits, expiry, memory.
    pub mailbox: crate::mailbox::MailboxConfig,
    /// Push registration and delivery (`[push]`).
    pub push: crate::push::PushConfig,
    /// The federation outbox's retry policy (`[outbox]`, see docs/OPERATING.md).
    pub outbox: crate::federation::outbox::OutboxConfig,
    /// `ProxiedUnread`: how long each queried server has to answer completely, ms.
    pub unread_proxy_timeout_ms: u64,
    /// Presence across nodes: every this long, the presence of this node's users who are not
    /// offline is sent again to the servers that share them, ms (docs/PROTOCOL.md §14.5).
    pub presence_refresh_ms: u64,
    /// Presence across nodes: how long a peer's word about its users lasts unless said again,
    /// ms; a peer silent this long has its users read as offline.
    pub presence_timeout_ms: u64,
    /// Where the IRC gateway listens (`docs/IRC.md`); unset: no IRC. Port 0 picks a free port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irc_listen: Option<SocketAddr>,
    /// A guild whose channels appear on IRC as plain `#name` (others are `#<guild id>/name`);
    /// empty: none.
    pub irc_default_guild: String,
    /// An IRC client silent this long is sent a `PING`, and disconnected if it stays silent
    /// half as long again, seconds.
    pub irc_ping_secs: u64,
    /// TLS on the node's port and the roots its outgoing `https://` connections trust (`[tls]`).
    pub tls: crate::tls::TlsConfig,
    /// Whether the node may connect to loopback, private, link-local and other non-public
    /// addresses that a request names (a homeserver, a DM invite's server, a push distributor, a
    /// server list entry). Off by default: otherwise anyone could make the node open connections
    /// into its own network. Turn on for a LAN-only deployment or tests.
    pub allow_private_addresses: bool,
    /// Reverse proxies (addresses or CIDR blocks, e.g. `"127.0.0.1"`, `"10.0.0.0/8"`) whose
    /// `X-Forwarded-For` names the real client, for per-address rate limits and connection caps.
    /// A client connecting from anywhere else can't choose its address by sending the header.
    pub trusted_proxies: Vec<String>,
    /// Most connections one client address may hold open at once (0: no cap); trusted proxies
    /// are not capped.
    pub max_connections_per_address: usize,
    /// On shutdown (SIGTERM, Ctrl-C), how long open connections get to finish their calls and
    /// acknowledge the close before they are dropped, ms.
    pub shutdown_grace_ms: u64,
    /// How `guildhall serve` writes its logs to stderr: `text` or `json` (one object per line);
    /// `--log-format` and `GUILDHALL_LOG_FORMAT` override it.
    pub log_format: crate::logging::LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("guildhall-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            p2p_listen: "/ip4/127.0.0.1/tcp/7401".into(),
            public_url: String::new(),
            clock_skew_ms: 5 * 60 * 1000,
            access_token_ttl_secs: 24 * 60 * 60,
            refresh_token_ttl_secs: 30 * 24 * 60 * 60,
            admins: Vec::new(),
            registration: None,
            sqlite_synchronous: Synchronous::Normal,
            event_retention_secs: 7 * 24 * 60 * 60,
            server_event_retention_secs: 30 * 24 * 60 * 60,
            live_event_capacity: crate::events::LIVE_CAPACITY,
            max_event_streams_per_user: crate::events::stream::STREAMS_PER_USER_DEFAULT,
            rate_limit_window_secs: 60,
            settings: crate::limits::Settings::default(),
            livekit_url: String::new(),
            livekit_api_key: String::new(),
            livekit_api_secret: String::new(),
            bootstrap_file: PathBuf::new(),
            upload_expiry_secs: 60 * 60,
            trusted_ban_lists: Vec::new(),
            trusted_ban_origins: Vec::new(),
            mailbox: crate::mailbox::MailboxConfig::default(),
            push: crate::push::PushConfig::default(),
            outbox: crate::federation::outbox::OutboxConfig::default(),
            unread_proxy_timeout_ms: 5_000,
            presence_refresh_ms: 30_000,
            presence_timeout_ms: 90_000,
            irc_listen: None,
            irc_default_guild: String::new(),
            irc_ping_secs: 120,
            tls: crate::tls::TlsConfig::default(),
            allow_private_addresses: false,
            trusted_proxies: Vec::new(),
            max_connections_per_address: 256,
            shutdown_grace_ms: 10_000,
            log_format: crate::logging::LogFormat::Text,
        }
    }
}

/// One trusted ban list (`[[trusted_ban_lists]]` in the file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrustedBanList {
    /// The server's key (lowercase hex, as `GetServerInfo.server_pubkey` shows it).
    pub server: String,
    /// Absent: the server's moderation list, which only its admins add to. Present: only the bans
    /// of that guild of the server (its id as the server names it), which the guild's moderators
    /// make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild: Option<String>,
}

/// Longest guild id a trusted list may name (a ban notice's longest).
const TRUSTED_GUILD_MAX: usize = 64;

/// What every setting's environment variable starts with.
pub const ENV_PREFIX: &str = "GUILDHALL_";

/// `GUILDHALL_*` variables that are not settings: the command line's own (which file to read,
/// the TLS flags' short names, the client commands' identity, server and CA) and the test
/// harness's. [`Config::load`] leaves them out; names are without the prefix, lowercase.
pub const CLI_ONLY_ENV: &[&str] = &[
    "config",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "identity",
    "server",
    "ca_file",
    "interop_python",
];

/// A configuration that can't be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A `GUILDHALL_*` variable does not fit [`Config`]; the text names the variable and the
    /// setting.
    #[error("config {}", describe_env_error(.0))]
    Env(Box<figment::Error>),
    /// A value breaks a rule.
    #[error("config {field}: {rule}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// The rule.
        rule: String,
    },
}

/// An environment layer's error as the operator set it: the variable, the setting, the rule.
fn describe_env_error(e: &figment::Error) -> String {
    use figment::error::Kind;
    let mut path = e.path.clone();
    if let Kind::UnknownField(name, _) = &e.kind
        && path.last() != Some(name)
    {
        path.push(name.clone());
    }
    if path.is_empty() {
        return format!("from the environment: {}", e.kind);
    }
    let variable = format!("{ENV_PREFIX}{}", path.join("__").to_uppercase());
    let setting = path.join(".").to_lowercase();
    match &e.kind {
        Kind::UnknownField(..) => format!(
            "{variable}: no setting {setting} (docs/OPERATING.md lists them; unset the variable \
             if it is not meant for guildhall)"
        ),
        kind => format!("{variable} (setting {setting}): {kind}"),
    }
}

impl Config {
    /// `public_url`, if set, is what other servers and clients are told to reach the node at and
    /// what it signs its calls as: an absolute `http://` or `https://` URL of a host (and port),
    /// nothing after it. `chat.example.org` would parse as a relative path and federate as
    /// nonsense, so it is refused at start rather than discovered by peers.
    fn check_public_url(&self) -> Result<(), ConfigError> {
        if self.public_url.is_empty() {
            return Ok(());
        }
        let invalid = |why: String| ConfigError::Invalid {
            field: "public_url",
            rule: format!(
                "must be an absolute http:// or https:// URL such as https://chat.example.org \
                 ({why}; got {:?})",
                self.public_url
            ),
        };
        crate::outbound::policy::Target::parse(&self.public_url)
            .map_err(|e| invalid(e.to_string()))?;
        let url = url::Url::parse(&self.public_url).map_err(|e| invalid(e.to_string()))?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("nothing may follow the host and port".into()));
        }
        Ok(())
    }

    /// The configuration from every layer: the defaults, then `file` (if given), then the
    /// `GUILDHALL_*` environment variables, each over the one before. Command-line flags are the
    /// caller's to apply last. Variables the command line reads itself ([`CLI_ONLY_ENV`]) are not
    /// settings and are left out; any other `GUILDHALL_` variable must name a key.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        use figment::Figment;
        use figment::providers::{Env, Format, Serialized, Toml};
        let mut layers = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // Parsed alone first, so a mistake in the file is reported with its line and column.
            Self::from_file(path)?;
            layers = layers.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| !CLI_ONLY_ENV.iter().any(|cli| key == *cli))
            .split("__");
        layers
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Env(Box::new(e)))
    }

    /// Reads a TOML file over the defaults (no environment).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Checks the values that can be checked without starting anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_public_url()?;
        if self.clock_skew_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "clock_skew_ms",
                rule: "must be greater than 0".into(),
            });
        }
        if self.irc_ping_secs < 2 {
            return Err(ConfigError::Invalid {
                field: "irc_ping_secs",
                rule: "must be at least 2".into(),
            });
        }
        if self.unread_proxy_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "unread_proxy_timeout_ms",
                rule: "must be greater than 0".into(),
            });
        }
        if self.presence_refresh_ms == 0
            || self.presence_timeout_ms <= self.presence_refresh_ms
            || self.presence_timeout_ms > crate::presence::across::MAX_PRESENCE_VALID_MS
        {
            return Err(ConfigError::Invalid {
                field: "presence_refresh_ms / presence_timeout_ms",
                rule: format!(
                    "the refresh must be greater than 0 and shorter than the timeout, which is at \
                     most {} ms",
                    crate::presence::across::MAX_PRESENCE_VALID_MS
                ),
            });
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "access_token_ttl_secs / refresh_token_ttl_secs",
                rule: "must be greater than 0".into(),
            });
        }
        self.trusted_lists()?;
        if self.max_event_streams_per_user == 0 {
            return Err(ConfigError::Invalid {
                field: "max_event_streams_per_user",
                rule: "must be greater than 0".into(),
            });
        }
        if self.live_event_capacity == 0
            || self.event_retention_secs == 0
            || self.rate_limit_window_secs == 0
            || self.upload_expiry_secs == 0
        {
            return Err(ConfigError::Invalid {
                field: "live_event_capacity / event_retention_secs / rate_limit_window_secs / \
                        upload_expiry_secs",
                rule: "must be greater than 0".into(),
            });
        }
        let livekit = [
            &self.livekit_url,
            &self.livekit_api_key,
            &self.livekit_api_secret,
        ];
        if livekit.iter().any(|v| v.is_empty()) && livekit.iter().any(|v| !v.is_empty()) {
            return Err(ConfigError::Invalid {
                field: "livekit_url / livekit_api_key / livekit_api_secret",
                rule: "set all three to enable calls, or none".into(),
            });
        }
        self.settings
            .validate()
            .map_err(|rule| ConfigError::Invalid {
                field: "settings",
                rule,
            })?;
        self.mailbox
            .validate()
            .map_err(|rule| ConfigError::Invalid {
                field: "mailbox",
                rule,
            })?;
        for admin in &self.admins {
            crate::identity::PublicKey::from_hex(admin).map_err(|e| ConfigError::Invalid {
                field: "admins",
                rule: format!("{admin:?} {e}"),
            })?;
        }
        self.push
            .validate()
            .map_err(|(field, rule)| ConfigError::Invalid { field, rule })?;
        self.outbox
            .validate()
            .map_err(|(field, rule)| ConfigError::Invalid { field, rule })?;
        self.tls
            .validate()
            .map_err(|(field, rule)| ConfigError::Invalid { field, rule })?;
        self.trusted_proxy_nets()?;
        if self.p2p_listen.parse::<libp2p::Multiaddr>().is_err() {
            return Err(ConfigError::Invalid {
                field: "p2p_listen",
                rule: format!("{:?} is not a multiaddr", self.p2p_listen),
            });
        }
        Ok(())
    }

    /// `trusted_proxies` read as address blocks (a bare address is a block of one).
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        field: "trusted_proxies",
                        rule: format!("{entry:?} is not an IP address or CIDR block"),
                    })
            })
            .collect()
    }

    /// The ban lists to trust: `trusted_ban_lists`, then each of `trusted_ban_origins` as that
    /// server's moderation list. A bad entry is an error naming the field, the entry and the rule.
    pub fn trusted_lists(&self) -> Result<Vec<crate::guilds::ban_lists::TrustedList>, ConfigError> {
        use crate::guilds::ban_lists::TrustedList;
        use crate::identity::PublicKey;
        let mut lists = Vec::new();
        for (i, list) in self.trusted_ban_lists.iter().enumerate() {
            let server = PublicKey::from_hex(&list.server).map_err(|e| ConfigError::Invalid {
                field: "trusted_ban_lists",
                rule: format!("entry {i}: server: {e}"),
            })?;
            if let Some(guild) = &list.guild
                && (guild.is_empty()
                    || guild.len() > TRUSTED_GUILD_MAX
                    || guild.chars().any(char::is_control))
            {
                return Err(ConfigError::Invalid {
                    field: "trusted_ban_lists",
                    rule: format!(
                        "entry {i}: guild: must be 1 to {TRUSTED_GUILD_MAX} bytes with no \
                         control characters (leave it out to trust the server's moderation list)"
                    ),
                });
            }
            lists.push(TrustedList {
                server,
                guild: list.guild.clone(),
            });
        }
        for (i, key) in self.trusted_ban_origins.iter().enumerate() {
            let server = PublicKey::from_hex(key).map_err(|e| ConfigError::Invalid {
                field: "trusted_ban_origins",
                rule: format!("entry {i}: {e}"),
            })?;
            lists.push(TrustedList {
                server,
                guild: None,
            });
        }
        Ok(lists)
    }

    /// The registration policy in force: `registration` when set, else `open` only while the
    /// node is reachable from this machine alone (loopback `listen`, no `public_url` naming
    /// another host, no reverse proxy in front) and `token` otherwise.
    pub fn registration_policy(&self) -> crate::accounts::registration::RegistrationPolicy {
        use crate::accounts::registration::RegistrationPolicy;
        if let Some(policy) = self.registration {
            return policy;
        }
        let public_is_local = self.public_url.is_empty()
            || url::Url::parse(&self.public_url)
                .ok()
                .and_then(|u| u.host().map(|h| h.to_owned()))
                .is_some_and(|host| match host {
                    url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
                    url::Host::Ipv4(ip) => ip.is_loopback(),
                    url::Host::Ipv6(ip) => ip.is_loopback(),
                });
        if self.listen.ip().is_loopback() && public_is_local && self.trusted_proxies.is_empty() {
            RegistrationPolicy::Open
        } else {
            RegistrationPolicy::Token
        }
    }

    /// The path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("guildhall.sqlite3")
    }

    /// The path of the node's secret key.
    pub fn server_key_path(&self) -> PathBuf {
        self.data_dir.join("server.key")
    }

    /// Where uploaded files live.
    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of a TOML table, recursively, as `section.key` paths.
    fn key_paths(value: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        if let toml::Value::Table(table) = value {
            for (key, inner) in table {
                let path = format!("{prefix}{key}");
                if let toml::Value::Table(_) = inner {
                    key_paths(inner, &format!("{path}."), out);
                } else {
                    out.insert(path);
                }
            }
        }
    }

    #[test]
    fn the_example_config_has_every_key_and_loads() {
        let text = include_str!("../deploy/guildhall.toml");
        let example: Config = toml::from_str(text).expect("deploy/guildhall.toml parses");
        example.validate().expect("deploy/guildhall.toml is valid");
        let (mut listed, mut known) = (Default::default(), Default::default());
        key_paths(&toml::from_str(text).expect("toml"), "", &mut listed);
        key_paths(
            &toml::Value::try_from(Config::default()).expect("serialise"),
            "",
            &mut known,
        );
        let missing: Vec<&String> = known.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "deploy/guildhall.toml is missing {missing:?}: add each with its default and a comment"
        );
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment::Jail's closure type, not ours"
    )]
    fn every_key_can_come_from_the_environment_over_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "guildhall.toml",
                "clock_skew_ms = 1000\npublic_url = \"https://from.file\"\n[tls]\ncert_file = \"a.pem\"\n",
            )?;
            jail.set_env("GUILDHALL_PUBLIC_URL", "https://chat.example.org");
            jail.set_env("GUILDHALL_ADMINS", r#"["ab", "cd"]"#);
            jail.set_env("GUILDHALL_TLS__KEY_FILE", "/etc/guildhall/key.pem");
            jail.set_env("GUILDHALL_SETTINGS__MAX_MESSAGE_LENGTH", "8000");
            jail.set_env("GUILDHALL_OUTBOX__CONCURRENCY", "3");
            // The command line's own variables are not settings.
            jail.set_env("GUILDHALL_CONFIG", "guildhall.toml");
            jail.set_env("GUILDHALL_TLS_CERT", "ignored.pem");
            let config = Config::load(Some(Path::new("guildhall.toml"))).expect("loads");
            assert_eq!(config.clock_skew_ms, 1000, "from the file");
            assert_eq!(
                config.public_url, "https://chat.example.org",
                "env over file"
            );
            assert_eq!(config.admins, vec!["ab".to_owned(), "cd".to_owned()]);
            assert_eq!(config.tls.cert_file, PathBuf::from("a.pem"));
            assert_eq!(config.tls.key_file, PathBuf::from("/etc/guildhall/key.pem"));
            assert_eq!(config.settings.max_message_length, 8000);
            assert_eq!(config.outbox.concurrency, 3);

            jail.set_env("GUILDHALL_CLOCK_SKEW", "5");
            let typo = Config::load(None).expect_err("unknown key").to_string();
            assert!(
                typo.starts_with("config GUILDHALL_CLOCK_SKEW: no setting clock_skew"),
                "{typo}"
            );
            jail.clear_env();
            jail.set_env("GUILDHALL_CLOCK_SKEW_MS", "soon");
            let wrong = Config::load(None).expect_err("wrong type").to_string();
            assert!(
                wrong.starts_with(
                    "config GUILDHALL_CLOCK_SKEW_MS (setting clock_skew_ms): invalid type"
                ),
                "{wrong}"
            );
            Ok(())
        });
    }

    #[test]
    fn public_url_must_be_an_absolute_http_url() {
        let with = |url: &str| Config {
            public_url: url.into(),
            ..Config::default()
        };
        for good in [
            "",
            "https://chat.example.org",
            "http://10.0.0.5:7400",
            "https://a.example/",
        ] {
            assert!(with(good).validate().is_ok(), "{good}");
        }
        for bad in [
            "chat.example.org",
            "chat.example.org:7400",
            "ftp://chat.example.org",
            "https://user@chat.example.org",
            "https://chat.example.org/guildhall",
            "https://chat.example.org/?x=1",
        ] {
            let err = with(bad).validate().expect_err(bad).to_string();
            assert!(
                err.starts_with("config public_url: must be an absolute http:// or https:// URL"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_file_overrides() {
        Config::default().validate().expect("defaults are valid");
        let parsed: Config =
            toml::from_str("listen = \"127.0.0.1:9000\"\nclock_skew_ms = 1000").expect("parses");
        assert_eq!(parsed.listen.port(), 9000);
        assert_eq!(parsed.clock_skew_ms, 1000);
        assert_eq!(parsed.data_dir, Config::default().data_dir);
        assert!(toml::from_str::<Config>("no_such_setting = 1").is_err());
        let with_settings: Config =
            toml::from_str("[settings]\nmessage_rate_limit = 5\nmax_message_length = 200")
                .expect("parses");
        assert_eq!(with_settings.settings.message_rate_limit, 5);
        assert_eq!(
            with_settings.settings.login_rate_limit, 30,
            "unset settings keep their defaults"
        );
        assert!(
            toml::from_str::<Config>("[settings]\nmax_message_length = 0")
                .expect("parses")
                .validate()
                .is_err()
        );
        let bad = Config {
            clock_skew_ms: 0,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn presence_and_irc_keepalive_settings_are_checked() {
        let refused = |edit: fn(&mut Config)| {
            let mut c = Config::default();
            edit(&mut c);
            c.validate().expect_err("refused").to_string()
        };
        assert!(refused(|c| c.irc_ping_secs = 1).contains("irc_ping_secs"));
        assert!(refused(|c| c.presence_refresh_ms = 0).contains("presence_refresh_ms"));
        assert!(
            refused(|c| c.presence_timeout_ms = c.presence_refresh_ms)
                .contains("presence_timeout_ms")
        );
        assert!(refused(|c| c.presence_timeout_ms = 600_001).contains("presence_timeout_ms"));
    }

    #[test]
    fn registration_is_open_only_on_loopback_unless_set() {
        use crate::accounts::registration::RegistrationPolicy as P;
        assert_eq!(Config::default().registration_policy(), P::Open);
        let parse = |text: &str| toml::from_str::<Config>(text).expect("parses");
        assert_eq!(
            parse("listen = \"0.0.0.0:7400\"").registration_policy(),
            P::Token
        );
        assert_eq!(
            parse("public_url = \"https://chat.example\"").registration_policy(),
            P::Token
        );
        assert_eq!(
            parse("trusted_proxies = [\"127.0.0.1\"]").registration_policy(),
            P::Token
        );
        assert_eq!(
            parse("public_url = \"http://localhost:7400\"").registration_policy(),
            P::Open
        );
        assert_eq!(
            parse("listen = \"0.0.0.0:7400\"\nregistration = \"open\"").registration_policy(),
            P::Open
        );
        assert_eq!(
            parse("registration = \"closed\"").registration_policy(),
            P::Closed
        );
        let err = toml::from_str::<Config>("registration = \"anyone\"").expect_err("bad value");
        assert!(err.to_string().contains("registration"), "{err}");
    }

    #[test]
    fn trusted_ban_lists_name_what_is_trusted_and_refuse_mistakes() {
        let key = crate::identity::SecretKey::generate().public();
        let text = format!(
            "trusted_ban_origins = [\"{key}\"]\n\
             [[trusted_ban_lists]]\nserver = \"{key}\"\n\
             [[trusted_ban_lists]]\nserver = \"{key}\"\nguild = \"777\"\n",
            key = key.to_hex()
        );
        let parsed: Config = toml::from_str(&text).expect("parses");
        parsed.validate().expect("valid");
        let lists = parsed.trusted_lists().expect("lists");
        let guilds: Vec<_> = lists.iter().map(|l| l.guild.as_deref()).collect();
        // The older spelling trusts the server's moderation list only.
        assert_eq!(guilds, vec![None, Some("777"), None]);
        assert!(lists.iter().all(|l| l.server == key));

        let invalid = |text: &str| match toml::from_str::<Config>(text).expect("parses").validate()
        {
            Err(ConfigError::Invalid { field, rule }) => format!("{field}: {rule}"),
            other => panic!("expected an invalid config, got {other:?}"),
        };
        assert!(
            invalid("[[trusted_ban_lists]]\nserver = \"zz\"")
                .starts_with("trusted_ban_lists: entry 0: server:")
        );
        let empty_guild = format!(
            "[[trusted_ban_lists]]\nserver = \"{}\"\nguild = \"\"",
            key.to_hex()
        );
        assert!(
            invalid(&empty_guild).starts_with("trusted_ban_lists: entry 0: guild: must be 1 to 64")
        );
        assert!(
            invalid("trusted_ban_origins = [\"zz\"]").starts_with("trusted_ban_origins: entry 0:")
        );
        // A misspelt key in an entry is refused when the file is read, naming the key.
        let typo = format!(
            "[[trusted_ban_lists]]\nserver = \"{}\"\nguid = \"777\"",
            key.to_hex()
        );
        let err = toml::from_str::<Config>(&typo).expect_err("unknown key");
        assert!(err.to_string().contains("guid"), "{err}");
        // A list with no server.
        let err = toml::from_str::<Config>("[[trusted_ban_lists]]\nguild = \"777\"")
            .expect_err("server is required");
        assert!(err.to_string().contains("server"), "{err}");
    }
}
