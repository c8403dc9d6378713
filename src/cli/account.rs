//! `guildhall account`: your own account's fate and data. `disable`, `enable` and `delete` sign a
//! statement with your identity key (docs/PEOPLE.md, "Accounts"), so they need the identity file
//! that holds K_id and no session; `export` downloads everything the server stores about you
//! (docs/PEOPLE.md, "Export") into a tar file, written as it arrives; `claim-irc` takes an account
//! made from IRC to an identity file (docs/IRC.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guildhall::account_status::{self, Status};
use guildhall::client::ClientIdentity;
use guildhall::identity::SecretKey;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;

use super::{Session, Target, dial, load_full};

/// The `account` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Disable your account: every session ends, on every server you use, until you enable it.
    Disable {
        #[command(flatten)]
        target: Target,
    },
    /// Enable your account again after `disable`.
    Enable {
        #[command(flatten)]
        target: Target,
    },
    /// Delete your account for good, on every server you use. Your messages stay, shown as from
    /// a deleted user; everything else about you goes, and your identity key can't be used again.
    Delete {
        #[command(flatten)]
        target: Target,
        /// Confirm: without it, nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
    /// Take an account you made from an IRC client (`REGISTER`) to other clients: the server
    /// hands over its identity key, proven with the account's password (read from stdin, one
    /// line), and keeps nothing of it. Writes a new identity file with a fresh device and logs
    /// in. From then on you log in to IRC with a token (the password no longer works).
    ClaimIrc {
        #[command(flatten)]
        target: Target,
        /// The account's username (its IRC nick).
        #[arg(long)]
        username: String,
        /// Overwrite an existing identity file.
        #[arg(long)]
        force: bool,
    },
    /// Download everything the server stores about you as a tar archive.
    Export {
        #[command(flatten)]
        target: Target,
        /// The file to write (it must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
}

pub(crate) async fn run(command: AccountCommand) -> Result<()> {
    match command {
        AccountCommand::Disable { target } => set(&target, Status::Disabled).await,
        AccountCommand::Enable { target } => set(&target, Status::Enabled).await,
        AccountCommand::Delete { target, yes } => {
            if !yes {
                bail!(
                    "deleting your account can't be undone; run again with --yes to delete it \
                     (export your data first with `guildhall account export`)"
                );
            }
            set(&target, Status::Deleted).await
        }
        AccountCommand::Export { target, out } => export(&target, out).await,
        AccountCommand::ClaimIrc {
            target,
            username,
            force,
        } => claim_irc(&target, &username, force).await,
    }
}

async fn claim_irc(target: &Target, username: &str, force: bool) -> Result<()> {
    let path = &target.id.identity;
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    // Where the key will be written must exist before the server gives it up.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let server = target.server();
    let claimed = dial(&server, target.ca_file.as_deref())
        .await?
        .claim_irc_account(pb::ClaimIrcAccountRequest {
            username: username.to_owned(),
            password,
        })
        .await
        .map_err(|s| super::person(s, &format!("claiming {username} on {server}")))?
        .into_inner();
    let id_key = SecretKey::from_hex(&claimed.id_secret)
        .context("the server sent a malformed identity key")?;
    if id_key.public().to_hex() != claimed.user_id {
        bail!(
            "the server sent a key that is not the account's ({})",
            claimed.user_id
        );
    }
    // Written before anything else can fail: the server no longer has the key. Should the
    // file not be written, the key is printed rather than lost.
    let identity = ClientIdentity::from_keys(id_key, SecretKey::generate(), "cli", now_ms());
    if let Err(e) = identity.to_file().save(path) {
        bail!(
            "the server handed over your identity key but saving it to {} failed ({e}); it is \
             not stored anywhere else, so keep this secret (K_id's seed) now: {}",
            path.display(),
            claimed.id_secret
        );
    }
    println!(
        "identity: {} (keep it safe: it is your account)",
        path.display()
    );
    super::login(target).await
}

async fn set(target: &Target, status: Status) -> Result<()> {
    let (_, identity) = load_full(&target.id.identity)?;
    let server = target.server();
    let statement = account_status::sign(&identity.id_key, status, now_ms());
    dial(&server, target.ca_file.as_deref())
        .await?
        .set_account_status(statement)
        .await
        .with_context(|| format!("asking {} to mark your account {}", server, status.as_str()))?;
    println!(
        "your account is {} (your other servers are told)",
        status.as_str()
    );
    Ok(())
}

async fn export(target: &Target, out: PathBuf) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&out)
        .with_context(|| format!("creating {}", out.display()))?;
    let mut s = Session::open(target).await?;
    let mut stream = rpc!(s, export_my_data, pb::Empty {})?.into_inner();
    let mut written = 0u64;
    while let Some(chunk) = stream.message().await? {
        file.write_all(&chunk.data)
            .with_context(|| format!("writing {}", out.display()))?;
        written += chunk.data.len() as u64;
    }
    file.sync_all()?;
    println!("wrote {} ({written} bytes)", out.display());
    Ok(())
}
