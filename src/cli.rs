//! The client subcommands: a person can create an identity, register, log in, and use guilds,
//! channels, invites, messages and the live event stream without writing code.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use guildhall::client::{ClientIdentity, DeviceIdentity};
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// Sends `$request` with `$session`'s token through `$session.$client.$method` (or `$client`
/// given explicitly, for the node's other services); when the server says the access token has
/// expired, refreshes the session and sends it once more. Evaluates to the call's
/// `Result<tonic::Response<_>, anyhow::Error>`.
macro_rules! rpc {
    ($s:expr, $method:ident, $request:expr) => {
        rpc!($s, $s.client, $method, $request)
    };
    ($s:expr, $client:expr, $method:ident, $request:expr) => {{
        let request = $request;
        match $client.$method($s.authed(request.clone())).await {
            Err(status) if $crate::cli::Session::expired(&status) => {
                $s.refresh().await?;
                $client
                    .$method($s.authed(request))
                    .await
                    .map_err(|status| $s.explain(status))
            }
            other => other.map_err(|status| $s.explain(status)),
        }
    }};
}

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod chat;
pub(crate) mod device;
pub(crate) mod manage;
pub(crate) mod names;
pub(crate) mod store;

use store::{CliFile, FileLock, SavedSession};

#[derive(Debug, Clone, Args)]
pub(crate) struct IdentityArg {
    /// The identity file.
    #[arg(long, env = "GUILDHALL_IDENTITY", default_value_os_t = default_identity_path())]
    pub(crate) identity: PathBuf,
}

/// Where a client command goes: the identity file and the server.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    #[command(flatten)]
    pub(crate) id: IdentityArg,
    /// The server's gRPC address (default: your homeserver, as remembered in the identity file,
    /// else http://127.0.0.1:7400).
    #[arg(long, env = "GUILDHALL_SERVER")]
    pub(crate) server: Option<String>,
    /// A PEM file of CA certificates to trust for https:// servers, besides the public roots.
    #[arg(long, env = "GUILDHALL_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

/// The server a command goes to when neither `--server` nor a remembered homeserver names one.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:7400";

impl Target {
    /// The server to talk to: `--server`, else the homeserver the identity file remembers, else
    /// [`DEFAULT_SERVER`]. An unreadable identity file only loses the middle choice: the command
    /// itself says what is wrong with the file.
    pub(crate) fn server(&self) -> String {
        if let Some(server) = &self.server {
            return server.clone();
        }
        CliFile::load(&self.id.identity)
            .ok()
            .map(|f| f.homeserver)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVER.into())
    }
}

pub(crate) fn default_identity_path() -> PathBuf {
    dirs::config_dir()
        .map(|d| d.join("guildhall").join("identity.json"))
        .unwrap_or_else(|| PathBuf::from("guildhall-identity.json"))
}

pub(crate) fn keygen(path: &Path, device_id: &str, force: bool) -> Result<()> {
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

/// The identity file and its device keys (a full identity or a linked device's).
pub(crate) fn load(path: &Path) -> Result<(CliFile, DeviceIdentity)> {
    let file = CliFile::load(path)?;
    let identity = file
        .keys
        .identity()
        .with_context(|| format!("{} holds no usable keys", path.display()))?
        .device();
    Ok((file, identity))
}

/// The identity file and its whole identity: for what K_id must sign (registering, linking).
pub(crate) fn load_full(path: &Path) -> Result<(CliFile, ClientIdentity)> {
    let file = CliFile::load(path)?;
    let identity = ClientIdentity::from_file(&file.keys)
        .with_context(|| format!("{} can not sign with K_id", path.display()))?;
    Ok((file, identity))
}

/// How long the CLI waits for a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection to `server`: `https://` is verified TLS (the public roots plus `ca_file`), never
/// plaintext. The person at the keyboard names the server, so any address may be dialled.
pub(crate) async fn dial(server: &str, ca_file: Option<&Path>) -> Result<GuildHallClient<Channel>> {
    Ok(GuildHallClient::new(open_channel(server, ca_file).await?))
}

/// The connection [`dial`] makes, for clients of the node's other services (`guildhall admin`).
pub(crate) async fn open_channel(server: &str, ca_file: Option<&Path>) -> Result<Channel> {
    let outbound = guildhall::outbound::Outbound::unrestricted(ca_file)?;
    outbound
        .channel(server, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("connecting to {server}"))
}

/// A connection to `server` and its public information (its key is the audience signed requests
/// must name; its canonical address is what a remote join names as the homeserver).
pub(crate) async fn connect_to(
    server: &str,
    ca_file: Option<&Path>,
) -> Result<(GuildHallClient<Channel>, pb::ServerInfoResponse, PublicKey)> {
    let mut client = dial(server, ca_file).await?;
    let info = client
        .get_server_info(pb::Empty {})
        .await
        .with_context(|| format!("asking {server} who it is"))?
        .into_inner();
    let audience = PublicKey::from_hex(&info.server_pubkey)
        .with_context(|| format!("{server} answered with a malformed server key"))?;
    Ok((client, info, audience))
}

/// A connection and the server's key, the audience signed requests must name.
pub(crate) async fn connect(target: &Target) -> Result<(GuildHallClient<Channel>, PublicKey)> {
    let (client, _, audience) = connect_to(&target.server(), target.ca_file.as_deref()).await?;
    Ok((client, audience))
}

/// Saves a new session for `server` in the identity file at `path`; the first server the user
/// holds a session on becomes their remembered homeserver unless `home` names it.
pub(crate) async fn save_session(
    path: &Path,
    home: Option<String>,
    server: &str,
    token: String,
    refresh: String,
) -> Result<()> {
    CliFile::update(path, |file| {
        if file.homeserver.is_empty() {
            file.homeserver = home.unwrap_or_else(|| server.to_owned());
        }
        file.put(SavedSession {
            server: server.to_owned(),
            access_token: token,
            refresh_token: refresh,
        });
    })
    .await
}

pub(crate) async fn register(
    target: &Target,
    name: &str,
    registration_token: Option<String>,
) -> Result<()> {
    let (_, identity) = load_full(&target.id.identity)?;
    let server = target.server();
    let (mut client, audience) = connect(target).await?;
    let mut request = identity.register_request(&audience, name, Some("guildhall cli"), now_ms());
    request.registration_token = registration_token.unwrap_or_default();
    let reply = client
        .register(request)
        .await
        .map_err(|s| person(s, &format!("registering on {server}")))?
        .into_inner();
    let user = reply.user.unwrap_or_default();
    println!("registered {} as {:?}", user.id, user.name);
    save_session(
        &target.id.identity,
        None,
        &server,
        reply.token,
        reply.refresh_token,
    )
    .await
}

pub(crate) async fn login(target: &Target) -> Result<()> {
    let (_, identity) = load(&target.id.identity)?;
    let server = target.server();
    let (mut client, audience) = connect(target).await?;
    let reply = client
        .login(identity.login_request(&audience, now_ms()))
        .await
        .map_err(|s| person(s, &format!("logging in to {server}")))?
        .into_inner();
    let user = reply.user.unwrap_or_default();
    println!("logged in as {} ({:?})", user.id, user.name);
    save_session(
        &target.id.identity,
        None,
        &server,
        reply.token,
        reply.refresh_token,
    )
    .await
}

pub(crate) async fn whoami(target: &Target) -> Result<()> {
    let mut s = Session::open(target).await?;
    let data = rpc!(s, get_my_data, pb::Empty {})?.into_inner();
    let user = data.user.unwrap_or_default();
    println!("user id:    {}", user.id);
    println!("name:       {}", user.name);
    println!("homeserver: {}", user.homeserver);
    println!("admin:      {}", user.is_server_admin);
    for device in data.device_certificates {
        println!(
            "device:     {} {:?} last seen {}",
            device.id,
            device.name,
            when_ms(device.last_seen_at)
        );
    }
    for server in data.servers {
        println!("server:     {}", server.server_url);
    }
    let file = CliFile::load(&target.id.identity)?;
    for saved in &file.sessions {
        let home = if file.is_home(&saved.server) {
            "  (homeserver)"
        } else {
            ""
        };
        println!("session:    {}{home}", saved.server);
    }
    Ok(())
}

pub(crate) async fn info(server: &str, ca_file: Option<&Path>) -> Result<()> {
    let mut client = dial(server, ca_file).await?;
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

/// A connection that acts as the user of the identity file's saved session for one server.
pub(crate) struct Session {
    pub(crate) client: GuildHallClient<Channel>,
    /// The connection under `client`, for the node's other services.
    pub(crate) channel: Channel,
    bearer: MetadataValue<Ascii>,
    pub(crate) user_id: String,
    /// The server, as dialled and as the identity file names it.
    pub(crate) server: String,
    /// The identity file, reread and rewritten when the session is refreshed.
    path: PathBuf,
    saved: SavedSession,
}

impl Session {
    /// The saved session for the server `target` names; an error saying how to get one when
    /// there is none.
    pub(crate) async fn open(target: &Target) -> Result<Self> {
        let (file, identity) = load(&target.id.identity)?;
        let server = target.server();
        let Some(saved) = file.session(&server).cloned() else {
            let mut known: Vec<&str> = file.sessions.iter().map(|s| s.server.as_str()).collect();
            if known.is_empty() {
                bail!(
                    "not logged in: run `guildhall register`, `guildhall login` or `guildhall join`"
                );
            }
            known.sort_unstable();
            bail!(
                "no session on {server}: run `guildhall login --server {server}` or join a guild \
                 there with `guildhall join TOKEN --server {server}` (you have sessions on {})",
                known.join(", ")
            );
        };
        let channel = open_channel(&server, target.ca_file.as_deref()).await?;
        Ok(Self {
            client: GuildHallClient::new(channel.clone()),
            channel,
            bearer: bearer(&saved.access_token)?,
            user_id: identity.user_id(),
            server,
            path: target.id.identity.clone(),
            saved,
        })
    }

    /// `message` as a request carrying the session token.
    pub(crate) fn authed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    /// Whether `status` refuses the access token itself (expired, unknown or revoked), so a
    /// refresh may help; other refusals are about the call.
    pub(crate) fn expired(status: &tonic::Status) -> bool {
        status.code() == tonic::Code::Unauthenticated
            && status.message().starts_with("authorization")
            && !status.message().contains("deactivated")
            && !status.message().contains("disabled")
            && !status.message().contains("deleted")
    }

    /// Replaces the expired access token: with the one another `guildhall` already saved for
    /// this server, if it refreshed first (spending a refresh token twice would end the whole
    /// login, docs/PROTOCOL.md §5), else with a new pair bought with the saved refresh token.
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        // Held until the new pair is saved: another `guildhall` refreshing this server waits,
        // then takes up the pair saved here instead of spending the same refresh token.
        let _held = FileLock::take(&self.path).await?;
        let mut file = CliFile::load(&self.path)?;
        if let Some(newer) = file
            .session(&self.server)
            .filter(|s| s.access_token != self.saved.access_token)
        {
            self.saved = newer.clone();
            self.bearer = bearer(&self.saved.access_token)?;
            return Ok(());
        }
        let reply = self
            .client
            .refresh(pb::RefreshRequest {
                refresh_token: self.saved.refresh_token.clone(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated => anyhow::anyhow!(
                    "your session on {} has ended (it expired or was revoked): run `guildhall \
                     login --server {}` to start a new one",
                    self.server,
                    self.server
                ),
                _ => person(status, &format!("renewing your session on {}", self.server)),
            })?
            .into_inner();
        self.saved = SavedSession {
            server: self.saved.server.clone(),
            access_token: reply.token,
            refresh_token: reply.refresh_token,
        };
        self.bearer = bearer(&self.saved.access_token)?;
        file.put(self.saved.clone());
        file.save(&self.path)
    }

    /// A refusal of a call on this session, for a person.
    pub(crate) fn explain(&self, status: tonic::Status) -> anyhow::Error {
        if Self::expired(&status) {
            return anyhow::anyhow!(
                "{} no longer accepts your session: run `guildhall login --server {}`",
                self.server,
                self.server
            );
        }
        person(status, &format!("{} refused", self.server))
    }

    async fn channels(&mut self, guild_id: String) -> Result<Vec<pb::Channel>> {
        Ok(
            rpc!(self, list_channels, pb::ListChannelsRequest { guild_id })?
                .into_inner()
                .channels,
        )
    }
}

/// The `authorization` header for an access token.
fn bearer(token: &str) -> Result<MetadataValue<Ascii>> {
    format!("Bearer {token}")
        .parse()
        .context("the saved access token is malformed: log in again")
}

/// A server's refusal in words for a person: what was being done, and the server's reason with
/// its kind (unreachable, not allowed, not found…) said in words rather than as a gRPC code.
pub(crate) fn person(status: tonic::Status, doing: &str) -> anyhow::Error {
    use tonic::Code;
    let reason = status.message();
    let why = match status.code() {
        Code::Unavailable => format!("{doing}: the server could not be reached ({reason})"),
        Code::DeadlineExceeded => format!("{doing}: the server took too long to answer"),
        Code::PermissionDenied => format!("{doing}: not allowed: {reason}"),
        Code::NotFound => format!("{doing}: not found: {reason}"),
        Code::Unauthenticated => format!("{doing}: refused: {reason}"),
        Code::ResourceExhausted => {
            format!("{doing}: too many requests, try again later ({reason})")
        }
        _ => format!("{doing}: {reason}"),
    };
    anyhow::anyhow!(why)
}

pub(crate) fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The system's time zone (`TZ`, else `/etc/localtime`), read once; UTC if it can't be read.
fn local_zone() -> &'static jiff::tz::TimeZone {
    static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(jiff::tz::TimeZone::system)
}

/// A protobuf time for a person: date and time to the second in the local zone with the offset
/// in effect at that time written out (`2026-01-01 01:00:00+01:00`, daylight-saving time
/// included), or marked `Z` when that offset is zero.
pub(crate) fn when(time: Option<prost_types::Timestamp>) -> String {
    when_in(time, local_zone())
}

/// [`when`] in the zone `zone`.
fn when_in(time: Option<prost_types::Timestamp>, zone: &jiff::tz::TimeZone) -> String {
    let Some(t) = time else {
        return "-".into();
    };
    let Ok(at) = jiff::Timestamp::from_second(t.seconds) else {
        return format!("(a time out of range: {} s)", t.seconds);
    };
    let zoned = at.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%d %H:%M:%S%:z").to_string()
    }
}

/// A time in milliseconds since the epoch, as [`when`] shows it; 0 (never) as `never`.
pub(crate) fn when_ms(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    when(Some(prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: 0,
    }))
}

pub(crate) fn print_channel(channel: &pb::Channel) {
    let thread = if channel.is_thread {
        format!("  (thread in {})", channel.parent_channel_id)
    } else {
        String::new()
    };
    println!("{}  #{}{thread}", channel.id, channel.name);
}

pub(crate) async fn guild_create(target: &Target, name: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = pb::CreateGuildRequest {
        name,
        avatar_url: None,
    };
    let reply = rpc!(s, create_guild, request)?.into_inner();
    let guild = reply.guild.unwrap_or_default();
    println!("guild:   {}  {}", guild.id, guild.name);
    if let Some(channel) = s.channels(guild.id).await?.first() {
        println!("channel: {}  #{}", channel.id, channel.name);
    }
    println!("invite:  {}", reply.token);
    Ok(())
}

/// Lists the user's guilds: on `--server` when given, else on every server the identity file
/// holds a session for (each line then says which), so guilds joined on other nodes show too.
pub(crate) async fn guild_list(target: &Target) -> Result<()> {
    let servers = match &target.server {
        Some(server) => vec![server.clone()],
        None => {
            let file = CliFile::load(&target.id.identity)?;
            let mut servers: Vec<String> = file.sessions.iter().map(|s| s.server.clone()).collect();
            servers.sort_by_key(|s| !file.is_home(s));
            if servers.is_empty() {
                servers.push(target.server());
            }
            servers
        }
    };
    let several = servers.len() > 1;
    for server in servers {
        let on = Target {
            server: Some(server.clone()),
            ..target.clone()
        };
        let listed = async {
            let mut s = Session::open(&on).await?;
            let guilds = rpc!(s, list_guilds, pb::ListGuildsRequest {})?
                .into_inner()
                .guilds;
            Ok::<_, anyhow::Error>((s.user_id.clone(), guilds))
        };
        let (me, guilds) = match listed.await {
            Ok(found) => found,
            // One server down should not hide the others.
            Err(err) if several => {
                eprintln!("note: could not list your guilds on {server}: {err:#}");
                continue;
            }
            Err(err) => return Err(err),
        };
        for guild in guilds {
            let mut notes = String::new();
            if guild.owner_id == me {
                notes.push_str("  (owner)");
            }
            if guild.is_dm {
                notes.push_str("  (dm)");
            }
            if several {
                notes.push_str(&format!("  on {server}"));
            }
            println!("{}  {}{notes}", guild.id, guild.name);
        }
    }
    Ok(())
}

pub(crate) async fn channel_create(target: &Target, guild: String, name: String) -> Result<()> {
    let (mut s, guild_id) = names::open_guild(target, &guild).await?;
    let request = pb::CreateChannelRequest {
        guild_id,
        name,
        ..Default::default()
    };
    print_channel(&rpc!(s, create_channel, request)?.into_inner());
    Ok(())
}

pub(crate) async fn channel_list(target: &Target, guild: String) -> Result<()> {
    let (mut s, guild_id) = names::open_guild(target, &guild).await?;
    s.channels(guild_id).await?.iter().for_each(print_channel);
    Ok(())
}

pub(crate) async fn invite_create(
    target: &Target,
    channel: String,
    max_uses: Option<i32>,
    max_age_secs: Option<u64>,
    allow_registration: bool,
) -> Result<()> {
    let (mut s, channel_id) = names::open_channel(target, &channel).await?;
    let request = pb::GenerateInviteRequest {
        channel_id,
        max_age_secs,
        max_uses,
        allow_registration,
    };
    println!("{}", rpc!(s, generate_invite, request)?.into_inner().token);
    Ok(())
}

/// Joins a guild with an invite. For a user whose homeserver is another node (`--homeserver`,
/// else the homeserver the identity file remembers), this is a remote join (docs/PROTOCOL.md
/// §11): the host asks the homeserver to vouch, and the user gets a session on the host beside
/// their home one, as the same user, instead of a second account.
pub(crate) async fn join(
    target: &Target,
    token: &str,
    name: Option<String>,
    registration_token: Option<String>,
    homeserver: Option<String>,
) -> Result<()> {
    let (file, identity) = load(&target.id.identity)?;
    let server = target.server();
    let home = homeserver
        .or_else(|| Some(file.homeserver.clone()))
        .filter(|h| !h.is_empty() && !same_server(h, &server));
    // The server ignores the name for a user it knows, but it must still be a valid one: by
    // default, the name the user has where they already hold a session.
    let known_at = home.clone().unwrap_or_else(|| server.clone());
    let name = match name {
        Some(name) => name,
        None if file.session(&known_at).is_none() => {
            bail!(
                "pass --name: the name to join with (there is no session on {known_at} to take it from)"
            )
        }
        None => {
            let mut s = Session::open(&Target {
                server: Some(known_at.clone()),
                ..target.clone()
            })
            .await?;
            let data = rpc!(s, get_my_data, pb::Empty {})?.into_inner();
            data.user.unwrap_or_default().name
        }
    };
    let home_address = match &home {
        Some(home) => {
            let (_, info, _) = connect_to(home, target.ca_file.as_deref()).await?;
            Some(info.canonical_address)
        }
        None => None,
    };
    let (mut client, audience) = connect(target).await?;
    let preview = client
        .preview_invite(pb::PreviewInviteRequest {
            token: token.to_owned(),
        })
        .await
        .map_err(|s| person(s, "reading the invite"))?
        .into_inner();
    let mut request = match &home_address {
        Some(address) => {
            identity.join_invite_request_from(&audience, token, &name, address, now_ms())
        }
        None => identity.join_invite_request(&audience, token, &name, now_ms()),
    };
    request.registration_token = registration_token.unwrap_or_default();
    let reply = client
        .join_invite(request)
        .await
        .map_err(|s| person(s, &format!("joining on {server}")))?
        .into_inner();
    let guild = reply.guild.unwrap_or_default();
    println!("joined:  {}  {}", guild.id, guild.name);
    println!("channel: {}  #{}", preview.channel_id, preview.channel_name);
    if let Some(home) = &home {
        println!("as a user of {home} (your session there is kept)");
    }
    // Saved from a fresh read under the file's lock: taking the name from the home session may
    // have refreshed it meanwhile.
    save_session(
        &target.id.identity,
        home,
        &server,
        reply.token,
        reply.refresh_token,
    )
    .await
}

/// Sends text to a channel; empty text is refused here, in words, before anything is sent.
pub(crate) async fn send(target: &Target, channel: String, text: String) -> Result<()> {
    if text.trim().is_empty() {
        bail!(
            "nothing to send: give the message text after the options, e.g. `guildhall send --channel ID hello`"
        );
    }
    let (mut s, channel_id) = names::open_channel(target, &channel).await?;
    let request = pb::SendMessageRequest {
        channel_id,
        text,
        ..Default::default()
    };
    let reply = rpc!(s, send_message, request)?.into_inner();
    let message = reply.message.unwrap_or_default();
    println!("sent {} at {}", message.id, when(message.created_at));
    Ok(())
}

/// A file's size for a person: bytes, KiB or MiB.
fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// A message as `history` shows it: time, sender, text (continuation lines indented), then its
/// attachment and reactions on lines of their own.
fn message_lines(m: &pb::Message, zone: &jiff::tz::TimeZone) -> String {
    let sender = if m.webhook_id.is_empty() {
        m.sender_name.clone()
    } else {
        format!("{} [webhook]", m.sender_name)
    };
    let edited = if m.edited_at.is_some() {
        " (edited)"
    } else {
        ""
    };
    let text = m.text.replace('\n', "\n    ");
    let mut out = format!("{}  {sender}: {text}{edited}", when_in(m.created_at, zone));
    if let Some(media) = &m.media {
        let mut line = format!(
            "\n    [attachment {} {} {}",
            media.file_id,
            media.mime_type,
            size(media.size_bytes)
        );
        if media.width > 0 && media.height > 0 {
            line.push_str(&format!(" {}x{}", media.width, media.height));
        }
        line.push(']');
        out.push_str(&line);
    }
    if !m.reactions.is_empty() {
        let reactions: Vec<String> = m
            .reactions
            .iter()
            .map(|r| format!("{} {}", r.emoji, r.user_ids.len()))
            .collect();
        out.push_str(&format!("\n    [reactions {}]", reactions.join(", ")));
    }
    out
}

/// Prints a channel's latest messages, oldest first, as [`message_lines`] shows them.
pub(crate) async fn history(target: &Target, channel: String, limit: u32, ids: bool) -> Result<()> {
    const PAGE: u32 = guildhall::messages::HISTORY_PAGE_MAX;
    let (mut s, channel_id) = names::open_channel(target, &channel).await?;
    let mut messages = Vec::new();
    let mut cursor = String::new();
    while (messages.len() as u32) < limit {
        let request = pb::GetHistoryRequest {
            channel_id: channel_id.clone(),
            cursor,
            limit: (limit - messages.len() as u32).min(PAGE) as i32,
            reverse: false,
        };
        let page = rpc!(s, get_history, request)?.into_inner();
        messages.extend(page.messages);
        if !page.has_more {
            break;
        }
        cursor = page.next_cursor;
    }
    // Pages come newest first.
    let mut out = std::io::stdout().lock();
    for m in messages.iter().rev() {
        if ids {
            write!(out, "{}  ", m.id)?;
        }
        writeln!(out, "{}", message_lines(m, local_zone()))?;
    }
    Ok(())
}

/// The longest `tail` waits between attempts to reconnect.
const TAIL_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The first wait before `tail` reconnects; it doubles up to [`TAIL_BACKOFF_MAX`].
const TAIL_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(250);

/// Prints live events until Ctrl-C. When the stream breaks (the server restarts, the network
/// drops), it reconnects with a bounded backoff and resumes after the last event it printed, so
/// nothing is missed or printed twice (docs/EVENTS.md, "Ids and resuming").
pub(crate) async fn tail(target: &Target, resume: Option<u64>) -> Result<()> {
    let mut s = Session::open(target).await?;
    let mut last = resume;
    let mut backoff = TAIL_BACKOFF_MIN;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let request = pb::SubscribeRequest {
            resume_from_event_id: last.map(|id| id.to_string()).unwrap_or_default(),
        };
        let broke = match s.client.subscribe_events(s.authed(request)).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        event = stream.message() => match event {
                            Ok(Some(e)) => {
                                // Ids only grow; one not above the last printed is a repeat.
                                if last.is_some_and(|last| e.event_id <= last) {
                                    continue;
                                }
                                writeln!(std::io::stdout(), "{} {}", e.event_id, describe(e.event))?;
                                last = Some(e.event_id);
                                backoff = TAIL_BACKOFF_MIN;
                            }
                            Ok(None) => break None,
                            Err(status) => break Some(status),
                        },
                    }
                }
            }
            Err(status) => Some(status),
        };
        match broke {
            Some(status) if Session::expired(&status) => {
                s.refresh().await?;
                continue;
            }
            Some(status) if status.code() == tonic::Code::OutOfRange && last.is_some() => {
                eprintln!(
                    "note: the server no longer keeps the events after {}: some were missed; \
                     following from now on",
                    last.unwrap_or_default()
                );
                last = None;
                continue;
            }
            Some(status) if is_final(&status) => return Err(s.explain(status)),
            Some(status) => eprintln!(
                "note: the event stream broke ({}); reconnecting in {backoff:?}",
                status.message()
            ),
            None => {
                eprintln!("note: the server closed the event stream; reconnecting in {backoff:?}")
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(TAIL_BACKOFF_MAX);
    }
}

/// Whether a broken event stream should end `tail` rather than be retried: the server refused
/// the user or the request, which reconnecting does not change.
fn is_final(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::NotFound
    )
}

/// One line for a `channel_created` or `channel_updated` event.
fn channel_line(kind: &str, c: pb::ChannelEvent) -> String {
    let channel = c.channel.unwrap_or_default();
    format!(
        "{kind} guild={} channel={} name={:?}",
        c.guild_id, channel.id, channel.name
    )
}

/// An event's kind and its useful fields, on one line.
pub(crate) fn describe(event: Option<Event>) -> String {
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
        Some(Event::MessageDeleted(e)) if e.deleted_by.is_empty() => format!(
            "message_deleted channel={} id={} by=a server admin",
            e.channel_id, e.message_id
        ),
        Some(Event::MessageDeleted(e)) => format!(
            "message_deleted channel={} id={} by={}",
            e.channel_id, e.message_id, e.deleted_by
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
        Some(Event::ChannelDeleted(c)) => {
            format!(
                "channel_deleted guild={} channel={}",
                c.guild_id, c.channel_id
            )
        }
        Some(Event::GuildUpdated(g)) => {
            let g = g.guild.unwrap_or_default();
            format!(
                "guild_updated guild={} name={:?} owner={}",
                g.id, g.name, g.owner_id
            )
        }
        Some(Event::ChannelCreated(c)) => channel_line("channel_created", c),
        Some(Event::ChannelUpdated(c)) => channel_line("channel_updated", c),
        Some(Event::FolderUpdated(f)) => {
            let folder = f.folder.unwrap_or_default();
            if f.deleted {
                format!("folder_deleted guild={} folder={}", f.guild_id, folder.id)
            } else {
                format!(
                    "folder_updated guild={} folder={} {:?} parent={:?}",
                    f.guild_id, folder.id, folder.name, folder.parent_folder_id
                )
            }
        }
        Some(Event::RoleUpdated(r)) => {
            let role = r.role.unwrap_or_default();
            if r.deleted {
                format!("role_deleted guild={} role={}", r.guild_id, role.id)
            } else {
                format!(
                    "role_updated guild={} role={} {:?} permissions={}",
                    r.guild_id,
                    role.id,
                    role.name,
                    role.permissions.join(",")
                )
            }
        }
        Some(Event::MemberUpdated(m)) => {
            let member = m.member.unwrap_or_default();
            format!(
                "member_updated guild={} {} nick={:?}",
                m.guild_id,
                user(member.user),
                member.nick
            )
        }
        Some(Event::UserNoteUpdated(n)) => {
            format!("user_note_updated user={} note={:?}", n.user_id, n.note)
        }
        Some(Event::RelationshipUpdated(r)) => format!(
            "relationship_updated user={} type={:?}",
            r.user_id,
            pb::RelationshipType::try_from(r.r#type).unwrap_or_default()
        ),
        Some(Event::MemberRemoved(r)) => {
            format!("member_removed guild={} user={}", r.guild_id, r.user_id)
        }
        Some(Event::UserUpdated(u)) => format!("user_updated {}", user(u.user)),
        Some(Event::ProfileUpdated(p)) => format!(
            "profile_updated harmony_id={} name={:?} avatar={:?} status={:?} bot={:?}",
            p.user_id, p.new_username, p.new_avatar, p.new_status, p.new_is_bot
        ),
        Some(Event::AppDataUpdated(a)) => format!("app_data_updated app_id={}", a.app_id),
        Some(Event::DeviceAdded(d)) => format!(
            "device_added device={} device_id={:?} name={:?}",
            d.device_pubkey, d.device_id, d.device_name
        ),
        Some(Event::DmInvite(i)) => format!(
            "dm_invite id={} status={} from={} host={} guild={}",
            i.invite_id, i.status, i.inviter_id, i.host_server_url, i.guild_id
        ),
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_date_and_time_with_their_offset() {
        use jiff::tz::{Offset, TimeZone};
        let at = Some(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 500,
        });
        let fixed = |hours: i8, minutes: i8| {
            let seconds = i32::from(hours) * 3600 + i32::from(minutes) * 60;
            TimeZone::fixed(Offset::from_seconds(seconds).expect("offset"))
        };
        assert_eq!(when_in(at, &TimeZone::UTC), "2026-01-01 00:00:00Z");
        assert_eq!(when_in(at, &fixed(5, 30)), "2026-01-01 05:30:00+05:30");
        assert_eq!(when_in(at, &fixed(-3, -30)), "2025-12-31 20:30:00-03:30");
        // A zone with daylight-saving time shows each time with the offset it had then.
        let paris = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("posix zone");
        assert_eq!(when_in(at, &paris), "2026-01-01 01:00:00+01:00");
        let july = Some(prost_types::Timestamp {
            seconds: 1_782_864_000, // 2026-07-01 00:00:00 UTC
            nanos: 0,
        });
        assert_eq!(when_in(july, &paris), "2026-07-01 02:00:00+02:00");
        assert_eq!(when_in(None, &TimeZone::UTC), "-");
    }

    #[test]
    fn history_shows_attachments_edits_reactions_and_webhooks() {
        let m = pb::Message {
            sender_name: "Ada".into(),
            text: "look\nhere".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            edited_at: Some(prost_types::Timestamp::default()),
            media: Some(pb::MediaAttachment {
                file_id: "f1".into(),
                mime_type: "image/png".into(),
                size_bytes: 2048,
                width: 3,
                height: 4,
                ..Default::default()
            }),
            reactions: vec![pb::Reaction {
                emoji: "👍".into(),
                user_ids: vec!["a".into(), "b".into()],
            }],
            webhook_id: "w".into(),
            ..Default::default()
        };
        assert_eq!(
            message_lines(&m, &jiff::tz::TimeZone::UTC),
            "2026-01-01 00:00:00Z  Ada [webhook]: look\n    here (edited)\n    \
             [attachment f1 image/png 2.0 KiB 3x4]\n    [reactions 👍 2]"
        );
    }

    #[test]
    fn only_a_refused_token_counts_as_expired() {
        let expired =
            tonic::Status::unauthenticated("authorization: token is unknown, expired or revoked");
        assert!(Session::expired(&expired));
        let gone = tonic::Status::unauthenticated(
            "authorization: this account was deactivated by a server admin",
        );
        assert!(!Session::expired(&gone));
        assert!(!Session::expired(&tonic::Status::unauthenticated(
            "join.signature: bad"
        )));
    }
}
