//! `guildhall admin`: server administration over `guildhall.admin.v1` (registration tokens,
//! users, the audit log), as the identity file's
//! saved session (which must be one of the server's `admins`; anyone else is refused by the
//! server with `PERMISSION_DENIED`). See docs/OPERATING.md, "Server administration".

use anyhow::Result;
use clap::Subcommand;
use guildhall::proto::guildhall::admin::v1 as pb;
use guildhall::proto::guildhall::admin::v1::admin_client::AdminClient;
use tonic::transport::Channel;

use super::{Session, Target, when};

/// The `admin` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Registration tokens: create, list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Users: list and search, show one, deactivate, reactivate.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Delete a guild, a channel or a message; quarantine an uploaded file.
    #[command(subcommand)]
    Content(ContentCommand),
    /// The node's status: version, uptime, data size, counts, streams, peers.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Pinned federation peers: keys, last contact, outbox queue.
    Peers {
        #[command(flatten)]
        target: Target,
    },
    /// The federation outbox per destination; retry one now, or drop its queue.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// The gossip mesh: per server-event kind, the peers in this node's mesh.
    Mesh {
        #[command(flatten)]
        target: Target,
    },
    /// The ban lists this node enforces, and the bans it holds from lists.
    BanLists {
        #[command(flatten)]
        target: Target,
        /// Only held bans not applied here (advisories).
        #[arg(long)]
        advisories: bool,
        /// How many held bans (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: i32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: i32,
    },
    /// Show the audit log of admin actions, newest first.
    Audit {
        #[command(flatten)]
        target: Target,
        /// How many entries (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this admin's actions (user id).
        #[arg(long, default_value = "")]
        actor: String,
        /// Only this action (method name, e.g. CreateRegistrationToken).
        #[arg(long, default_value = "")]
        action: String,
        /// Only entries older than this id (the `next` printed after a page).
        #[arg(long, default_value_t = 0)]
        before: u64,
    },
}

/// `admin content …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ContentCommand {
    /// Delete a guild: its members are removed, then everything in it.
    DeleteGuild {
        #[command(flatten)]
        target: Target,
        /// The guild id.
        guild_id: String,
    },
    /// Delete a channel and its threads, with their messages.
    DeleteChannel {
        #[command(flatten)]
        target: Target,
        /// The channel id.
        channel_id: String,
    },
    /// Delete a message.
    DeleteMessage {
        #[command(flatten)]
        target: Target,
        /// The channel id.
        channel_id: String,
        /// The message id.
        message_id: String,
    },
    /// Quarantine an uploaded file: it is no longer served.
    Quarantine {
        #[command(flatten)]
        target: Target,
        /// The file id (from its /media/{file_id} URL).
        file_id: String,
    },
}

async fn content(command: ContentCommand) -> Result<()> {
    match command {
        ContentCommand::DeleteGuild { target, guild_id } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::DeleteGuildRequest { guild_id };
            let reply = rpc!(a.session, a.client, delete_guild, request)?.into_inner();
            println!("deleted; {} members removed", reply.members_removed);
        }
        ContentCommand::DeleteChannel { target, channel_id } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::DeleteChannelRequest { channel_id };
            let reply = rpc!(a.session, a.client, delete_channel, request)?.into_inner();
            println!("deleted: {}", reply.deleted_channel_ids.join(" "));
        }
        ContentCommand::DeleteMessage {
            target,
            channel_id,
            message_id,
        } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::DeleteMessageRequest {
                channel_id,
                message_id,
            };
            rpc!(a.session, a.client, delete_message, request)?;
            println!("deleted");
        }
        ContentCommand::Quarantine { target, file_id } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::QuarantineFileRequest { file_id };
            let reply = rpc!(a.session, a.client, quarantine_file, request)?.into_inner();
            println!("quarantined ({} blobs)", reply.blobs_quarantined);
        }
    }
    Ok(())
}

/// `admin outbox …`.
#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// Each destination's queue: depth, oldest, the head's last error.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Make everything queued for a destination due now.
    Retry {
        #[command(flatten)]
        target: Target,
        /// The destination's address, as `list` shows it.
        destination: String,
    },
    /// Give up everything queued for a destination.
    Drop {
        #[command(flatten)]
        target: Target,
        /// The destination's address, as `list` shows it.
        destination: String,
    },
}

/// `admin users …`.
#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// List users by id; --query matches an id prefix or part of a name.
    List {
        #[command(flatten)]
        target: Target,
        /// An id prefix, or a part of the display or IRC name.
        #[arg(long, default_value = "")]
        query: String,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this page token (printed after a full page).
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show one user: devices, servers, guilds, last seen.
    Show {
        #[command(flatten)]
        target: Target,
        /// The user id (hex K_id).
        user_id: String,
    },
    /// Deactivate an account: its sessions end and it can't log in until reactivated.
    Deactivate {
        #[command(flatten)]
        target: Target,
        /// The user id (hex K_id).
        user_id: String,
    },
    /// Reactivate a deactivated account.
    Reactivate {
        #[command(flatten)]
        target: Target,
        /// The user id (hex K_id).
        user_id: String,
    },
}

/// `admin tokens …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Make a registration token; prints the secret (shown only now) and its id.
    Create {
        #[command(flatten)]
        target: Target,
        /// How many accounts it may register (0 = unlimited).
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
        /// Seconds until it expires (default: 7 days; 0 = never).
        #[arg(long)]
        max_age_secs: Option<u64>,
        /// A note for the list (who it is for).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List registration tokens that can still register someone (--all: every one).
    List {
        #[command(flatten)]
        target: Target,
        /// Also revoked, expired and used-up tokens.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a registration token by its id.
    Revoke {
        #[command(flatten)]
        target: Target,
        /// The token's id (from `list`).
        id: String,
    },
}

/// An admin client acting as the identity file's saved session.
struct AdminSession {
    session: Session,
    client: AdminClient<Channel>,
}

impl AdminSession {
    async fn open(target: &Target) -> Result<Self> {
        let session = Session::open(target).await?;
        let client = AdminClient::new(session.channel.clone());
        Ok(Self { session, client })
    }
}

fn print_token(t: &pb::RegistrationToken) {
    let uses = match t.max_uses {
        0 => format!("{}/unlimited", t.uses),
        max => format!("{}/{max}", t.uses),
    };
    let expires = match t.expires_at {
        Some(at) => when(Some(at)),
        None => "never".into(),
    };
    let revoked = match t.revoked_at {
        Some(at) => format!("  revoked {}", when(Some(at))),
        None => String::new(),
    };
    println!(
        "{}  uses {uses}  expires {expires}{revoked}  {:?}",
        t.id, t.note
    );
}

fn print_user(u: &pb::UserSummary) {
    let mut notes = String::new();
    if u.is_server_admin {
        notes.push_str("  (admin)");
    }
    if let Some(at) = u.deactivated_at {
        notes.push_str(&format!("  (deactivated {})", when(Some(at))));
    }
    println!(
        "{}  {:?}  devices {}  guilds {}  last seen {}  home {}{notes}",
        u.id,
        u.name,
        u.device_count,
        u.guild_count,
        when(u.last_seen_at),
        u.homeserver
    );
}

fn print_details(d: &pb::UserDetails) {
    if let Some(u) = &d.user {
        print_user(u);
    }
    println!("open sessions: {}", d.open_sessions);
    for dev in &d.devices {
        println!(
            "device: {} {:?} {:?} last seen {}",
            dev.pubkey,
            dev.device_id,
            dev.name,
            when(dev.last_seen_at)
        );
    }
    for s in &d.servers {
        println!("server: {} (added {})", s.url, when(s.added_at));
    }
    for g in &d.guilds {
        let role = match (g.is_owner, g.is_dm) {
            (_, true) => "  (dm)",
            (true, false) => "  (owner)",
            _ => "",
        };
        println!("guild:  {}  {}{role}", g.guild_id, g.name);
    }
}

async fn users(command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::List {
            target,
            query,
            limit,
            page_token,
        } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListUsersRequest {
                query,
                page_token,
                limit,
            };
            let reply = rpc!(a.session, a.client, list_users, request)?.into_inner();
            reply.users.iter().for_each(print_user);
            if !reply.next_page_token.is_empty() {
                println!("next: --page-token {}", reply.next_page_token);
            }
        }
        UsersCommand::Show { target, user_id } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::UserRequest { user_id };
            print_details(&rpc!(a.session, a.client, get_user, request)?.into_inner());
        }
        UsersCommand::Deactivate { target, user_id } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::UserRequest { user_id };
            print_details(&rpc!(a.session, a.client, deactivate_user, request)?.into_inner());
        }
        UsersCommand::Reactivate { target, user_id } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::UserRequest { user_id };
            print_details(&rpc!(a.session, a.client, reactivate_user, request)?.into_inner());
        }
    }
    Ok(())
}

fn print_queue(q: &pb::OutboxDestination) {
    let error = if q.last_error.is_empty() {
        String::new()
    } else {
        format!("  last error: {}", q.last_error)
    };
    println!(
        "{}  depth {}  oldest {}  head {} (attempts {}, next {}){error}",
        q.destination,
        q.depth,
        when(q.oldest_created_at),
        q.head_method,
        q.head_attempts,
        when(q.next_attempt_at)
    );
}

async fn outbox(command: OutboxCommand) -> Result<()> {
    match command {
        OutboxCommand::List { target } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListOutboxRequest {};
            let reply = rpc!(a.session, a.client, list_outbox, request)?.into_inner();
            reply.destinations.iter().for_each(print_queue);
            println!("given up so far: {}", reply.failed);
        }
        OutboxCommand::Retry {
            target,
            destination,
        } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::OutboxDestinationRequest { destination };
            print_queue(&rpc!(a.session, a.client, retry_outbox, request)?.into_inner());
        }
        OutboxCommand::Drop {
            target,
            destination,
        } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::OutboxDestinationRequest { destination };
            let dropped = rpc!(a.session, a.client, drop_outbox, request)?
                .into_inner()
                .dropped;
            println!("dropped {dropped}");
        }
    }
    Ok(())
}

/// Runs one `guildhall admin` command.
pub(crate) async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Users(command) => return users(command).await,
        AdminCommand::Outbox(command) => return outbox(command).await,
        AdminCommand::Content(command) => return content(command).await,
        AdminCommand::Status { target } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::GetNodeStatusRequest {};
            let s = rpc!(a.session, a.client, get_node_status, request)?.into_inner();
            println!("version:   {}", s.version);
            println!("server id: {}", s.server_id);
            println!("address:   {}", s.canonical_address);
            println!("peer id:   {}", s.peer_id);
            println!("started:   {} (up {} s)", when(s.started_at), s.uptime_secs);
            println!(
                "data:      database {} bytes, media {} bytes",
                s.database_bytes, s.media_bytes
            );
            println!(
                "users:     {} ({} deactivated); guilds {}, dms {}, channels {}, messages {}, files {}",
                s.users, s.deactivated_users, s.guilds, s.dms, s.channels, s.messages, s.files
            );
            println!("streams:   {} open", s.event_streams);
            println!(
                "peers:     {} connected (p2p), {} pinned",
                s.p2p_peers, s.federation_peers
            );
            println!(
                "outbox:    {} pending for {} destinations, {} given up",
                s.outbox_pending, s.outbox_destinations, s.outbox_failed
            );
        }
        AdminCommand::Peers { target } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListPeersRequest {};
            for p in rpc!(a.session, a.client, list_peers, request)?
                .into_inner()
                .peers
            {
                println!(
                    "{}  key {}  valid until {}  last contact {}",
                    p.address,
                    p.server_key,
                    when(p.key_valid_until),
                    when(p.last_seen_at)
                );
                if let Some(q) = &p.outbox {
                    print!("  outbox: ");
                    print_queue(q);
                }
            }
        }
        AdminCommand::Mesh { target } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListGossipMeshRequest {};
            let reply = rpc!(a.session, a.client, list_gossip_mesh, request)?.into_inner();
            println!("connected peers: {}", reply.connected_peers);
            for t in reply.topics {
                println!("{}: {}", t.kind, t.peer_ids.join(" "));
            }
        }
        AdminCommand::BanLists {
            target,
            advisories,
            limit,
            offset,
        } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListBanListsRequest {
                advisories_only: advisories,
                limit,
                offset,
            };
            let reply = rpc!(a.session, a.client, list_ban_lists, request)?.into_inner();
            for l in &reply.trusted {
                let what = match (l.own, l.guild.is_empty()) {
                    (true, _) => "this node's moderation list".to_owned(),
                    (false, true) => "moderation list".to_owned(),
                    (false, false) => format!("guild {}", l.guild),
                };
                println!("trusted: {}  {what}", l.server);
            }
            for b in &reply.held {
                println!(
                    "held:    {} {} from {}{}  {}  {:?}",
                    b.user_id,
                    if b.banned { "banned" } else { "lifted" },
                    b.origin_server_id,
                    if b.guild_id.is_empty() {
                        String::new()
                    } else {
                        format!(" guild {}", b.guild_id)
                    },
                    if b.applied { "applied" } else { "advisory" },
                    b.reason
                );
            }
            println!("held total: {}", reply.total);
        }
        AdminCommand::Tokens(TokensCommand::Create {
            target,
            max_uses,
            max_age_secs,
            note,
        }) => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::CreateRegistrationTokenRequest {
                max_uses,
                max_age_secs,
                note,
            };
            let reply = a
                .client
                .create_registration_token(request)
                .await?
                .into_inner();
            println!("token: {}", reply.token);
            if let Some(info) = &reply.info {
                print_token(info);
            }
        }
        AdminCommand::Tokens(TokensCommand::List { target, all }) => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListRegistrationTokensRequest {
                include_inactive: all,
            };
            let reply = a
                .client
                .list_registration_tokens(request)
                .await?
                .into_inner();
            reply.tokens.iter().for_each(print_token);
        }
        AdminCommand::Tokens(TokensCommand::Revoke { target, id }) => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::RevokeRegistrationTokenRequest { id };
            print_token(
                &rpc!(a.session, a.client, revoke_registration_token, request)?.into_inner(),
            );
        }
        AdminCommand::Audit {
            target,
            limit,
            actor,
            action,
            before,
        } => {
            let mut a = AdminSession::open(&target).await?;
            let request = pb::ListAuditLogRequest {
                before_id: before,
                limit,
                actor,
                action,
            };
            let reply = rpc!(a.session, a.client, list_audit_log, request)?.into_inner();
            for e in &reply.entries {
                println!(
                    "{}  {}  {}  {}  {}  {}",
                    e.id,
                    when(e.at),
                    e.actor,
                    e.action,
                    if e.target.is_empty() { "-" } else { &e.target },
                    e.result
                );
            }
            if reply.next_before_id != 0 {
                println!("next: --before {}", reply.next_before_id);
            }
        }
    }
    Ok(())
}
