//! `guildhall account`: your own account's fate and data. `disable`, `enable` and `delete` sign a
//! statement with your identity key (docs/PEOPLE.md, "Accounts"), so they need the identity file
//! that holds K_id and no session; `export` downloads everything the server stores about you
//! (docs/PEOPLE.md, "Export") into a tar file, written as it arrives.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guildhall::account_status::{self, Status};
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
    }
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
