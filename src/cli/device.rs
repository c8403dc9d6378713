//! `guildhall device`: link a new device to your identity through the server's mailbox.
//!
//! `link-request` runs on the new device (no identity yet): it makes a device key, shows a code
//! and the key's fingerprint, and waits for a cert. `link-approve CODE` runs on a device that has
//! the identity key: it shows the fingerprint of the key asking, and signs a cert for it once the
//! user confirms. The new device then keeps a device-only identity file and logs in. The protocol
//! is in `docs/PROTOCOL.md`, "Device linking mailbox".

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::mailbox::link::{LinkCode, PendingLink, ReceivedRequest, refusal_payload};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::store::CliFile;
use super::{Session, Target, connect, dial, load_full, save_session};

/// How long one long poll may take before the client gives up on it: above the server's longest
/// allowed wait (60 s), so a healthy server always answers first.
const POLL_TIMEOUT: Duration = Duration::from_secs(75);

/// Clock skew allowed on the cert's issue time when the new device checks it.
const CERT_SKEW_MS: u64 = 5 * 60 * 1000;

/// The `device` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// On a NEW device: ask to be linked to your identity; prints a code to approve elsewhere,
    /// then waits for the cert, saves this device's identity file and logs in.
    LinkRequest {
        #[command(flatten)]
        target: Target,
        /// Your user id (hex K_id, from `guildhall whoami` on a device you have): the cert must be
        /// signed by it.
        #[arg(long)]
        user_id: String,
        /// The device id to put in the cert.
        #[arg(long, default_value = "linked")]
        device_id: String,
        /// A name for this device, shown in your device list.
        #[arg(long)]
        name: Option<String>,
        /// How long to wait for the approval.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Replace an existing identity file.
        #[arg(long)]
        force: bool,
    },
    /// Revoke one of your devices for good (on a device that has your identity key): its
    /// sessions end on every server you use, and it can't sign in again. Run at your homeserver.
    Revoke {
        #[command(flatten)]
        target: Target,
        /// The device's key (hex K_dev, as `guildhall whoami` lists it).
        device_key: String,
    },
    /// On a device that has your identity key: approve a link request by its code.
    LinkApprove {
        #[command(flatten)]
        target: Target,
        /// The code the new device shows.
        code: String,
        /// The fingerprint the new device shows; when given, it is compared here instead of
        /// asking you to compare.
        #[arg(long)]
        fingerprint: Option<String>,
        /// How long to wait for the request to arrive.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

pub(crate) async fn run(command: DeviceCommand) -> Result<()> {
    match command {
        DeviceCommand::Revoke { target, device_key } => revoke(&target, &device_key).await,
        DeviceCommand::LinkRequest {
            target,
            user_id,
            device_id,
            name,
            timeout_secs,
            force,
        } => {
            let wait = Duration::from_secs(timeout_secs);
            link_request(&target, &user_id, &device_id, name, wait, force).await
        }
        DeviceCommand::LinkApprove {
            target,
            code,
            fingerprint,
            timeout_secs,
        } => {
            let wait = Duration::from_secs(timeout_secs);
            link_approve(&target, &code, fingerprint.as_deref(), wait).await
        }
    }
}

async fn put(
    client: &mut GuildHallClient<Channel>,
    session_id: String,
    payload: Vec<u8>,
) -> Result<()> {
    client
        .sync_mailbox(pb::SyncMailboxRequest {
            session_id,
            payload: Some(payload),
            wait_for_data: false,
        })
        .await?;
    Ok(())
}

/// Long-polls `session_id` until a payload arrives or `wait` has passed.
async fn take_within(
    client: &mut GuildHallClient<Channel>,
    session_id: &str,
    wait: Duration,
) -> Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let poll = client.sync_mailbox(pb::SyncMailboxRequest {
            session_id: session_id.to_owned(),
            payload: None,
            wait_for_data: true,
        });
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.min(POLL_TIMEOUT), poll).await {
            Ok(reply) => {
                if let Some(payload) = reply?.into_inner().payload {
                    return Ok(Some(payload));
                }
            }
            Err(_) => break,
        }
    }
    Ok(None)
}

async fn link_request(
    target: &Target,
    user_id: &str,
    device_id: &str,
    name: Option<String>,
    wait: Duration,
    force: bool,
) -> Result<()> {
    let path = &target.id.identity;
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let expected =
        PublicKey::from_hex(user_id).context("--user-id: must be a user id (hex K_id)")?;
    let pending = PendingLink::new(device_id, name.as_deref());
    let mut client = dial(&target.server(), target.ca_file.as_deref()).await?;
    put(
        &mut client,
        pending.code.request_box(),
        pending.request_payload(),
    )
    .await?;
    println!("link code:   {}", pending.code.as_str());
    println!("fingerprint: {}", pending.fingerprint());
    println!(
        "on a device with your identity, run: guildhall device link-approve {} --server {}",
        pending.code.as_str(),
        target.server()
    );
    println!("and check that it shows the same fingerprint; waiting up to {wait:?}");
    let answer = take_within(&mut client, &pending.code.cert_box(), wait)
        .await?
        .context("no approval arrived in time; run link-request again")?;
    let device = pending.accept(&answer, &expected, now_ms(), CERT_SKEW_MS)?;
    let file = CliFile::new(device.to_file());
    file.save(path)?;
    println!("identity:    {} (this device only)", path.display());

    let (mut client, audience) = connect(target).await?;
    let mut request = device.login_request(&audience, now_ms());
    request.device_name = name;
    device.sign_login(&audience, &mut request);
    let reply = client.login(request).await?.into_inner();
    let user = reply.user.unwrap_or_default();
    println!("logged in as {} ({:?})", user.id, user.name);
    save_session(
        path,
        None,
        &target.server(),
        reply.token,
        reply.refresh_token,
    )
    .await
}

/// Signs a `device-revocation` with K_id (docs/PROTOCOL.md §12.2) and hands it to the homeserver,
/// which tells the user's other servers.
async fn revoke(target: &Target, device_key: &str) -> Result<()> {
    let (_, identity) = load_full(&target.id.identity)?;
    let device = PublicKey::from_hex(device_key)
        .context("the device key must be 64 hex digits, as `guildhall whoami` lists it")?;
    if device == identity.device_key.public() {
        bail!(
            "that is this device's own key: revoke it from another device (a revoked key can't \
             be used again)"
        );
    }
    let statement = guildhall::federation::revocation::sign(&identity.id_key, &device, now_ms());
    let mut s = Session::open(target).await?;
    rpc!(s, revoke_device, statement)?;
    println!("revoked {device_key}: its sessions are ended here, and your other servers are told");
    Ok(())
}

/// Whether two fingerprints are the same, ignoring case, spaces and dashes.
fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

async fn link_approve(
    target: &Target,
    code: &str,
    fingerprint: Option<&str>,
    wait: Duration,
) -> Result<()> {
    let (_, identity) = load_full(&target.id.identity)?;
    let code = LinkCode::parse(code)?;
    let mut client = dial(&target.server(), target.ca_file.as_deref()).await?;
    let payload = take_within(&mut client, &code.request_box(), wait)
        .await?
        .context(
            "no link request with this code arrived in time (codes expire after 10 minutes)",
        )?;
    let request = ReceivedRequest::parse(&payload)?;
    let shown = request.fingerprint();
    println!("device id:   {}", request.device_id);
    if let Some(name) = &request.device_name {
        println!("device name: {name}");
    }
    println!("fingerprint: {shown}");
    let approved = match fingerprint {
        Some(given) => same_fingerprint(given, &shown),
        None => {
            print!("Does the new device show this fingerprint? Type yes to approve: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().eq_ignore_ascii_case("yes")
        }
    };
    if !approved {
        put(&mut client, code.cert_box(), refusal_payload()).await?;
        bail!("not approved: the fingerprints differ or you declined; nothing was signed");
    }
    let answer = request.approve(&identity, now_ms())?;
    put(&mut client, code.cert_box(), answer).await?;
    println!(
        "approved: {} is now a device of {}",
        request.device_id,
        identity.user_id()
    );
    Ok(())
}
