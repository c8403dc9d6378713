//! `guildhall admin`: server administration over `guildhall.admin.v1`, as the identity file's
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

pub(crate) async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Tokens(TokensCommand::Create {
            target,
            max_uses,
            max_age_secs,
            note,
        }) => {
            let mut a = AdminSession::open(&target).await?;
            let request = a.session.authed(pb::CreateRegistrationTokenRequest {
                max_uses,
                max_age_secs,
                note,
            });
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
            let request = a.session.authed(pb::ListRegistrationTokensRequest {
                include_inactive: all,
            });
            let reply = a
                .client
                .list_registration_tokens(request)
                .await?
                .into_inner();
            reply.tokens.iter().for_each(print_token);
        }
        AdminCommand::Tokens(TokensCommand::Revoke { target, id }) => {
            let mut a = AdminSession::open(&target).await?;
            let request = a.session.authed(pb::RevokeRegistrationTokenRequest { id });
            print_token(
                &a.client
                    .revoke_registration_token(request)
                    .await?
                    .into_inner(),
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
            let request = a.session.authed(pb::ListAuditLogRequest {
                before_id: before,
                limit,
                actor,
                action,
            });
            let reply = a.client.list_audit_log(request).await?.into_inner();
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
