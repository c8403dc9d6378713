//! The client subcommands: a person can create an identity, register, log in, and use guilds,
//! channels, invites, messages and the live event stream without writing code.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use guildhall::client::{ClientIdentity, DeviceIdentity, IdentityFile};
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use pb::stream_response::Event;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod device;

#[derive(Debug, Args)]
pub(crate) struct IdentityArg {
    /// The identity file.
    #[arg(long, env = "GUILDHALL_IDENTITY", default_value_os_t = default_identity_path())]
    pub(crate) identity: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    #[command(flatten)]
    pub(crate) id: IdentityArg,
    /// The server's gRPC address.
    #[arg(
        long,
        env = "GUILDHALL_SERVER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub(crate) server: String,
    /// A PEM file of CA certificates to trust for https:// servers, besides the public roots.
    #[arg(long, env = "GUILDHALL_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
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
pub(crate) fn load(path: &Path) -> Result<(IdentityFile, DeviceIdentity)> {
    let file = IdentityFile::load(path)
        .with_context(|| format!("reading {} (run `guildhall keygen` first)", path.display()))?;
    let identity = file.identity()?.device();
    Ok((file, identity))
}

/// The identity file and its whole identity: for what K_id must sign (registering, linking).
pub(crate) fn load_full(path: &Path) -> Result<(IdentityFile, ClientIdentity)> {
    let file = IdentityFile::load(path)
        .with_context(|| format!("reading {} (run `guildhall keygen` first)", path.display()))?;
    let identity = ClientIdentity::from_file(&file)
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

/// A connection and the server's key, the audience signed requests must name.
pub(crate) async fn connect(target: &Target) -> Result<(GuildHallClient<Channel>, PublicKey)> {
    let mut client = dial(&target.server, target.ca_file.as_deref()).await?;
    let info = client.get_server_info(pb::Empty {}).await?.into_inner();
    let audience = PublicKey::from_hex(&info.server_pubkey).context("server_pubkey")?;
    Ok((client, audience))
}

pub(crate) fn save_session(
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

pub(crate) async fn register(
    target: &Target,
    name: &str,
    registration_token: Option<String>,
) -> Result<()> {
    let (file, identity) = load_full(&target.id.identity)?;
    let (mut client, audience) = connect(target).await?;
    let mut request = identity.register_request(&audience, name, Some("guildhall cli"), now_ms());
    request.registration_token = registration_token.unwrap_or_default();
    let reply = client.register(request).await?.into_inner();
    let user = reply.user.unwrap_or_default();
    println!("registered {} as {:?}", user.id, user.name);
    save_session(target, file, reply.token, reply.refresh_token)
}

pub(crate) async fn login(target: &Target) -> Result<()> {
    let (file, identity) = load(&target.id.identity)?;
    let (mut client, audience) = connect(target).await?;
    let reply = client
        .login(identity.login_request(&audience, now_ms()))
        .await?
        .into_inner();
    let user = reply.user.unwrap_or_default();
    println!("logged in as {} ({:?})", user.id, user.name);
    save_session(target, file, reply.token, reply.refresh_token)
}

pub(crate) async fn whoami(target: &Target) -> Result<()> {
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

/// A connection that acts as the user of the identity file's saved session.
pub(crate) struct Session {
    client: GuildHallClient<Channel>,
    /// The connection under `client`, for the node's other services.
    channel: Channel,
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
        let channel = open_channel(&target.server, target.ca_file.as_deref()).await?;
        Ok(Self {
            client: GuildHallClient::new(channel.clone()),
            channel,
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

pub(crate) fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A protobuf time as RFC 3339 UTC to the second.
pub(crate) fn when(time: Option<prost_types::Timestamp>) -> String {
    time.map(|t| prost_types::Timestamp { nanos: 0, ..t }.to_string())
        .unwrap_or_else(|| "-".into())
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

pub(crate) async fn guild_list(target: &Target) -> Result<()> {
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

pub(crate) async fn channel_create(target: &Target, guild_id: String, name: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::CreateChannelRequest {
        guild_id,
        name,
        ..Default::default()
    });
    print_channel(&s.client.create_channel(request).await?.into_inner());
    Ok(())
}

pub(crate) async fn channel_list(target: &Target, guild_id: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    s.channels(guild_id).await?.iter().for_each(print_channel);
    Ok(())
}

pub(crate) async fn invite_create(
    target: &Target,
    channel_id: String,
    max_uses: Option<i32>,
    max_age_secs: Option<u64>,
    allow_registration: bool,
) -> Result<()> {
    let mut s = Session::open(target).await?;
    let request = s.authed(pb::GenerateInviteRequest {
        channel_id,
        max_age_secs,
        max_uses,
        allow_registration,
    });
    println!(
        "{}",
        s.client.generate_invite(request).await?.into_inner().token
    );
    Ok(())
}

pub(crate) async fn join(
    target: &Target,
    token: &str,
    name: Option<String>,
    registration_token: Option<String>,
) -> Result<()> {
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
    let (mut client, audience) = connect(target).await?;
    let preview = client
        .preview_invite(pb::PreviewInviteRequest {
            token: token.to_owned(),
        })
        .await?
        .into_inner();
    let mut request = identity.join_invite_request(&audience, token, &name, now_ms());
    request.registration_token = registration_token.unwrap_or_default();
    let reply = client.join_invite(request).await?.into_inner();
    let guild = reply.guild.unwrap_or_default();
    println!("joined:  {}  {}", guild.id, guild.name);
    println!("channel: {}  #{}", preview.channel_id, preview.channel_name);
    save_session(target, file, reply.token, reply.refresh_token)
}

pub(crate) async fn send(target: &Target, channel_id: String, text: String) -> Result<()> {
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

pub(crate) async fn history(target: &Target, channel_id: String, limit: u32) -> Result<()> {
    const PAGE: u32 = guildhall::messages::HISTORY_PAGE_MAX;
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

pub(crate) async fn tail(target: &Target, resume: Option<u64>) -> Result<()> {
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
