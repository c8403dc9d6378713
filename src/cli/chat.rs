//! The everyday commands beyond sending text: attach a file, react, edit and delete messages,
//! open a DM, and moderate members (kick, ban). Each acts through the saved session for the
//! server (refreshing it as needed) and takes guilds and channels by name or id
//! ([`super::names`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guildhall::proto::guildhall::v1 as pb;
use sha2::{Digest, Sha256};

use super::{Session, Target, connect_to, join, load, names, when, when_ms};
use guildhall::identity::freshness::now_ms;

/// The chunk size uploads are cut into: 1 MiB, inside the server's 1 KiB to 2 MiB range.
const UPLOAD_CHUNK: usize = 1024 * 1024;

/// The chat commands (top-level: `guildhall react …`).
#[derive(Debug, Subcommand)]
pub(crate) enum ChatCommand {
    /// Upload a file and send it to a channel as a message, with optional text.
    Upload {
        #[command(flatten)]
        target: Target,
        /// The channel: its id, `name`, `#name` or `Guild#name`.
        #[arg(long)]
        channel: String,
        /// The file to send.
        file: PathBuf,
        /// Its type (default: guessed from the file name's extension).
        #[arg(long)]
        mime_type: Option<String>,
        /// Text to go with it (words are joined with spaces).
        text: Vec<String>,
    },
    /// Add (or with --remove, take back) a reaction to a message.
    React {
        #[command(flatten)]
        target: Target,
        /// The channel: its id, `name`, `#name` or `Guild#name`.
        #[arg(long)]
        channel: String,
        /// The message id (shown by `history --ids`).
        message: String,
        /// The emoji.
        emoji: String,
        /// Take the reaction back instead.
        #[arg(long)]
        remove: bool,
    },
    /// Replace the text of a message you sent.
    Edit {
        #[command(flatten)]
        target: Target,
        /// The channel: its id, `name`, `#name` or `Guild#name`.
        #[arg(long)]
        channel: String,
        /// The message id (shown by `history --ids`).
        message: String,
        /// The new text (words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Delete a message (yours, or any with the right to manage messages).
    Delete {
        #[command(flatten)]
        target: Target,
        /// The channel: its id, `name`, `#name` or `Guild#name`.
        #[arg(long)]
        channel: String,
        /// The message id (shown by `history --ids`).
        message: String,
    },
    /// Open a direct-message conversation with a user (by user id) and invite them to it;
    /// prints its channel. They accept with `guildhall dm-accept`.
    Dm {
        #[command(flatten)]
        target: Target,
        /// The other user's id (hex K_id).
        user: String,
        /// Their homeserver's gRPC address, when it is not this server and this server has not
        /// met them.
        #[arg(long)]
        their_homeserver: Option<String>,
    },
    /// List the DM invites waiting for you.
    DmInvites {
        #[command(flatten)]
        target: Target,
    },
    /// Accept a DM invite (by the id `dm-invites` shows) and join the conversation, wherever it
    /// is hosted.
    DmAccept {
        #[command(flatten)]
        target: Target,
        /// The invite's id.
        invite: String,
    },
    /// Remove a member from a guild; they may join again with an invite.
    Kick {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
        /// The member: their user id, or their name if only one member has it.
        user: String,
        /// Why (kept in the guild's records).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Ban a member from a guild: removed, and refused if they try to come back.
    Ban {
        #[command(flatten)]
        target: Target,
        /// The guild: its id or name.
        #[arg(long)]
        guild: String,
        /// The member: their user id, or their name if only one member has it.
        user: String,
        /// Why (kept in the guild's records).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Runs one chat command.
pub(crate) async fn run(command: ChatCommand) -> Result<()> {
    match command {
        ChatCommand::Upload {
            target,
            channel,
            file,
            mime_type,
            text,
        } => upload(&target, &channel, &file, mime_type, text.join(" ")).await,
        ChatCommand::React {
            target,
            channel,
            message,
            emoji,
            remove,
        } => {
            let (mut s, channel_id) = names::open_channel(&target, &channel).await?;
            let r#type = if remove {
                pb::ReactionType::Remove
            } else {
                pb::ReactionType::Add
            };
            let request = pb::SendMessageRequest {
                channel_id,
                reaction: Some(pb::ReactionContent {
                    message_id: message.clone(),
                    emoji: emoji.clone(),
                    r#type: r#type as i32,
                }),
                ..Default::default()
            };
            rpc!(s, send_message, request)?;
            let done = if remove { "took back" } else { "reacted" };
            println!("{done} {emoji} on {message}");
            Ok(())
        }
        ChatCommand::Edit {
            target,
            channel,
            message,
            text,
        } => {
            let text = text.join(" ");
            if text.trim().is_empty() {
                bail!(
                    "no new text: give it after the message id (to remove a message, use `guildhall delete`)"
                );
            }
            let (mut s, channel_id) = names::open_channel(&target, &channel).await?;
            let request = pb::EditMessageRequest {
                channel_id,
                message_id: message,
                text,
            };
            let edited = rpc!(s, edit_message, request)?.into_inner();
            println!("edited {} at {}", edited.id, when(edited.edited_at));
            Ok(())
        }
        ChatCommand::Delete {
            target,
            channel,
            message,
        } => {
            let (mut s, channel_id) = names::open_channel(&target, &channel).await?;
            let request = pb::DeleteMessageRequest {
                channel_id,
                message_id: message.clone(),
            };
            rpc!(s, delete_message, request)?;
            println!("deleted {message}");
            Ok(())
        }
        ChatCommand::Dm {
            target,
            user,
            their_homeserver,
        } => dm(&target, user, their_homeserver).await,
        ChatCommand::DmInvites { target } => {
            let mut s = Session::open(&target).await?;
            let invites = rpc!(s, list_dm_invites, pb::ListDmInvitesRequest {})?
                .into_inner()
                .invites;
            if invites.is_empty() {
                println!("no DM invites are waiting for you");
            }
            for i in invites {
                println!(
                    "{}  from {}  {:?} on {}  {}  sent {}",
                    i.invite_id,
                    i.inviter_id,
                    i.guild_name,
                    i.host_server_url,
                    i.status,
                    when_ms(i.timestamp)
                );
            }
            Ok(())
        }
        ChatCommand::DmAccept { target, invite } => dm_accept(&target, invite).await,
        ChatCommand::Kick {
            target,
            guild,
            user,
            reason,
        } => {
            let (mut s, guild_id, user_id) = open_member(&target, &guild, &user).await?;
            let request = pb::KickUserRequest {
                guild_id,
                user_id: user_id.clone(),
                reason,
            };
            rpc!(s, kick_user, request)?;
            println!("kicked {user_id}");
            Ok(())
        }
        ChatCommand::Ban {
            target,
            guild,
            user,
            reason,
        } => {
            let (mut s, guild_id, user_id) = open_member(&target, &guild, &user).await?;
            let request = pb::BanUserRequest {
                guild_id,
                user_id: user_id.clone(),
                reason,
            };
            rpc!(s, ban_user, request)?;
            println!("banned {user_id}");
            Ok(())
        }
    }
}

/// A session on the server of `guild`, the guild's id, and the id of its member `user` (see
/// [`member`]): what every command acting on one member starts with.
pub(crate) async fn open_member(
    target: &Target,
    guild: &str,
    user: &str,
) -> Result<(Session, String, String)> {
    let (mut s, guild_id) = names::open_guild(target, guild).await?;
    let user_id = member(&mut s, &guild_id, user).await?;
    Ok((s, guild_id, user_id))
}

/// The member's user id: `user` is a user id (64 hex digits), or the name or nickname of
/// exactly one member of the guild.
pub(crate) async fn member(s: &mut Session, guild_id: &str, user: &str) -> Result<String> {
    if user.len() == 64 && user.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(user.to_owned());
    }
    const PAGE: i32 = 200;
    let mut members = Vec::new();
    loop {
        let request = pb::ListGuildMembersRequest {
            guild_id: guild_id.to_owned(),
            limit: PAGE,
            offset: members.len() as i32,
        };
        let page = rpc!(s, list_guild_members, request)?.into_inner();
        let got = page.members.len();
        members.extend(page.members);
        if got < PAGE as usize || members.len() as i32 >= page.total {
            break;
        }
    }
    let found: Vec<(String, String)> = members
        .iter()
        .filter_map(|m| {
            let u = m.user.as_ref()?;
            (u.name.eq_ignore_ascii_case(user) || m.nick.eq_ignore_ascii_case(user))
                .then(|| (u.id.clone(), format!("{} (nick {:?})", u.name, m.nick)))
        })
        .collect();
    match found.len() {
        0 => bail!("no member of this guild is named {user:?}: give their user id"),
        1 => Ok(found[0].0.clone()),
        n => {
            let list: Vec<String> = found
                .iter()
                .map(|(id, who)| format!("  {id}  {who}"))
                .collect();
            bail!(
                "{n} members are named {user:?}; give one of these user ids instead:\n{}",
                list.join("\n")
            )
        }
    }
}

/// Opens (or finds again) the DM with `user` and sends them its invite, signed for their
/// homeserver (docs/PROTOCOL.md §14.1).
async fn dm(target: &Target, user: String, their_homeserver: Option<String>) -> Result<()> {
    let (_, identity) = load(&target.id.identity)?;
    let mut s = Session::open(target).await?;
    let (_, here, here_key) = connect_to(&s.server, target.ca_file.as_deref()).await?;
    let audience = match &their_homeserver {
        Some(home) => connect_to(home, target.ca_file.as_deref()).await?.2,
        None => here_key,
    };
    let request = pb::CreateDmRequest {
        target_user_id: user.clone(),
    };
    let reply = rpc!(s, create_dm, request)?.into_inner();
    let guild = reply.guild.unwrap_or_default();
    let mut invite = pb::DmInvite {
        token: reply.token,
        guild_id: guild.id.clone(),
        host_server_url: here.canonical_address,
        timestamp: now_ms(),
        target_user_id: user.clone(),
        ..Default::default()
    };
    identity
        .sign_dm_invite(&audience, &mut invite)
        .context("the user id must be 64 hex digits")?;
    let request = pb::SendDmInviteRequest {
        target_user_id: user.clone(),
        invite: Some(invite),
        target_homeserver_url: their_homeserver.unwrap_or_default(),
    };
    rpc!(s, send_dm_invite, request)?;
    println!("dm:      {}  {}", guild.id, guild.name);
    if let Some(channel) = s.channels(guild.id).await?.first() {
        println!("channel: {}  #{}", channel.id, channel.name);
    }
    println!("invited: {user} (they accept with `guildhall dm-accept`)");
    Ok(())
}

/// Accepts a DM invite; a DM hosted elsewhere is then joined there as a user of this server.
async fn dm_accept(target: &Target, invite: String) -> Result<()> {
    let mut s = Session::open(target).await?;
    let accepted = rpc!(
        s,
        accept_dm_invite,
        pb::AcceptDmInviteRequest { invite_id: invite }
    )?
    .into_inner();
    let (_, here, _) = connect_to(&s.server, target.ca_file.as_deref()).await?;
    if super::same_server(&accepted.host_server_url, &here.canonical_address) {
        println!("joined the DM {}", accepted.guild_id);
        if let Some(channel) = s.channels(accepted.guild_id).await?.first() {
            println!("channel: {}  #{}", channel.id, channel.name);
        }
        return Ok(());
    }
    let host = Target {
        server: Some(accepted.host_server_url),
        ..target.clone()
    };
    join(&host, &accepted.token, None, None, Some(s.server.clone())).await
}

/// A file's type from its name's extension, for what a chat client commonly sends.
fn guess_mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "log" | "md" => "text/plain",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Uploads `file` (docs/UPLOADS.md: initiate, begin, chunks, finish) and sends it to `channel`.
async fn upload(
    target: &Target,
    channel: &str,
    file: &Path,
    mime_type: Option<String>,
    text: String,
) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty: there is nothing to send", file.display());
    }
    let filename = file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file's name is not valid UTF-8: rename it")?
        .to_owned();
    let mime_type = mime_type.unwrap_or_else(|| guess_mime(file).to_owned());
    let (mut s, channel_id) = names::open_channel(target, channel).await?;
    let upload_token = rpc!(s, initiate_media_upload, pb::InitiateMediaUploadRequest {})?
        .into_inner()
        .upload_token;
    let begin = pb::UploadBeginRequest {
        upload_token: upload_token.clone(),
        filename: filename.clone(),
        mime_type,
        total_size: bytes.len() as u64,
        chunk_size: UPLOAD_CHUNK as u32,
    };
    rpc!(s, upload_begin, begin)?;
    for (index, chunk) in bytes.chunks(UPLOAD_CHUNK).enumerate() {
        let request = pb::UploadChunkRequest {
            upload_token: upload_token.clone(),
            chunk_index: index as u32,
            data: chunk.to_vec(),
            sha256: hex::encode(Sha256::digest(chunk)),
        };
        rpc!(s, upload_chunk, request)?;
    }
    let finish = pb::UploadFinishRequest {
        upload_token,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let uploaded = rpc!(s, upload_finish, finish)?.into_inner();
    let request = pb::SendMessageRequest {
        channel_id,
        text,
        media_file_id: uploaded.file_id.clone(),
        ..Default::default()
    };
    let message = rpc!(s, send_message, request)?
        .into_inner()
        .message
        .unwrap_or_default();
    println!(
        "sent {filename} ({}) as {} at {}",
        uploaded.file_id,
        message.id,
        when(message.created_at)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_guessed_from_the_extension() {
        assert_eq!(guess_mime(Path::new("a/Cat.JPG")), "image/jpeg");
        assert_eq!(guess_mime(Path::new("notes.txt")), "text/plain");
        assert_eq!(guess_mime(Path::new("blob")), "application/octet-stream");
    }
}
