//! Conversions between protobuf messages and domain types. Parsing failures name the field.
//!
//! Below the domain and every adapter: the domain builds the events it logs from these, and the
//! gRPC service (and any other adapter, such as the IRC gateway) answers with them, so neither
//! reaches into the other.

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::identity::{DeviceCert, PublicKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::UserRecord;

/// Parses a required `DeviceCert` field.
pub fn device_cert(cert: Option<pb::DeviceCert>) -> Result<DeviceCert> {
    let cert = cert.ok_or_else(|| Error::invalid("device_cert", "is required"))?;
    if !crate::identity::cert::device_id_ok(&cert.device_id) {
        return Err(Error::invalid(
            "device_cert.device_id",
            format!(
                "must be 1-{} bytes with no control characters",
                crate::identity::cert::MAX_DEVICE_ID_LEN
            ),
        ));
    }
    Ok(DeviceCert {
        device_key: PublicKey::from_hex(&cert.pubkey)
            .map_err(|e| Error::invalid("device_cert.pubkey", e))?,
        device_id: cert.device_id,
        issued_at: cert.issued_at,
        expiry: cert.expiry,
        signature: Signature::from_hex(&cert.signature)
            .map_err(|e| Error::invalid("device_cert.signature", e))?,
    })
}

/// The protobuf form of a device cert.
pub fn device_cert_to_proto(cert: &DeviceCert) -> pb::DeviceCert {
    pb::DeviceCert {
        pubkey: cert.device_key.to_hex(),
        device_id: cert.device_id.clone(),
        issued_at: cert.issued_at,
        expiry: cert.expiry,
        signature: cert.signature.to_hex(),
    }
}

/// Parses a public key carried as hex in a string field.
pub fn public_key(field: &str, text: &str) -> Result<PublicKey> {
    PublicKey::from_hex(text).map_err(|e| Error::invalid(field, e))
}

/// Parses a signature carried as raw bytes in a `bytes` field.
pub fn signature_bytes(field: &str, bytes: &[u8]) -> Result<Signature> {
    Signature::from_bytes(bytes).map_err(|e| Error::invalid(field, e))
}

/// Parses a signature carried as hex in a string field.
pub fn signature_hex(field: &str, text: &str) -> Result<Signature> {
    Signature::from_hex(text).map_err(|e| Error::invalid(field, e))
}

/// A colour for a user's default avatar, derived from their id so every server shows the same.
pub fn avatar_color(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    format!("#{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
}

/// The protobuf `User` for a stored user.
pub fn user(record: &UserRecord, is_server_admin: bool) -> pb::User {
    pb::User {
        id: record.id.clone(),
        name: record.display_name.clone(),
        avatar_color: avatar_color(&record.id),
        status: String::new(),
        ephemeral: false,
        public_key: String::new(),
        presence_preference: record.presence_preference,
        is_server_admin,
        avatar_url: record.avatar_url.clone(),
        bio: record.bio.clone(),
        id_pubkey: record.id.clone(),
        homeserver: record.homeserver.clone(),
        is_irc: record.is_irc,
        guild_order: record.guild_order.clone(),
        is_profile_synced: record.is_profile_synced,
        irc_name: record.irc_name.clone().unwrap_or_default(),
        is_deactivated: record.deactivated_at.is_some(),
        pronouns: record.pronouns.clone(),
        banner_url: record.banner_url.clone(),
        accent_color: record.accent_color,
        is_deleted: record.deleted_at.is_some(),
        is_disabled: record.disabled_at.is_some(),
    }
}

/// A protobuf timestamp for milliseconds since the epoch.
pub fn timestamp(ms: u64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    })
}

/// The protobuf `Guild`.
pub fn guild(g: &crate::store::guilds::GuildRecord) -> pb::Guild {
    pb::Guild {
        id: g.id.clone(),
        name: g.name.clone(),
        owner_id: g.owner_id.clone(),
        avatar_url: g.avatar_url.clone(),
        latest_message_id: g.latest_message_id.clone(),
        is_dm: g.is_dm,
    }
}

/// The protobuf `Channel`.
pub fn channel(c: &crate::store::guilds::ChannelRecord) -> pb::Channel {
    pb::Channel {
        id: c.id.clone(),
        guild_id: c.guild_id.clone(),
        folder_id: c.folder_id.clone(),
        name: c.name.clone(),
        position: c.position,
        latest_message_id: c.latest_message_id.clone(),
        irc_name: c.irc_name.clone().unwrap_or_default(),
        is_thread: c.is_thread,
        parent_channel_id: c.parent_channel_id.clone(),
        root_message_id: c.root_message_id.clone(),
    }
}

/// The protobuf `Folder`.
pub fn folder(f: &crate::store::guilds::FolderRecord) -> pb::Folder {
    pb::Folder {
        id: f.id.clone(),
        guild_id: f.guild_id.clone(),
        parent_folder_id: f.parent_folder_id.clone(),
        name: f.name.clone(),
        position: f.position,
    }
}

/// The protobuf `Role`.
pub fn role(r: &crate::store::guilds::RoleRecord) -> pb::Role {
    pb::Role {
        id: r.id.clone(),
        guild_id: r.guild_id.clone(),
        name: r.name.clone(),
        color: r.color.clone(),
        position: r.position,
        permissions: r.permissions.clone(),
        parent_role_ids: r.parent_role_ids.clone(),
    }
}

/// The protobuf `Invite`.
pub fn invite(i: &crate::store::guilds::InviteRecord) -> pb::Invite {
    pb::Invite {
        token: i.token.clone(),
        channel_id: i.channel_id.clone(),
        created_at: timestamp(i.created_at),
        expires_at: if i.expires_at == 0 {
            None
        } else {
            timestamp(i.expires_at)
        },
        uses: i.uses,
        channel_name: i.channel_name.clone(),
        is_deactivated: i.deactivated,
        updated_at: timestamp(i.updated_at),
        max_uses: i.max_uses,
        allows_registration: i.allows_registration,
    }
}

/// The protobuf `GuildMemberSummary`.
pub fn member(
    view: &crate::store::guilds::MemberView,
    admins: &dyn Fn(&str) -> bool,
) -> pb::GuildMemberSummary {
    let id = &view.member.user_id;
    pb::GuildMemberSummary {
        user: Some(match &view.user {
            Some(u) => user(u, admins(id)),
            None => pb::User {
                id: id.clone(),
                id_pubkey: id.clone(),
                ..Default::default()
            },
        }),
        joined_at: timestamp(view.member.joined_at),
        roles: view.member.role_ids.clone(),
        nick: view.member.nick.clone().unwrap_or_default(),
    }
}

/// The protobuf `Message` for a stored message.
pub fn message(view: &crate::store::messages::MessageView) -> pb::Message {
    let m = &view.message;
    pb::Message {
        id: m.id.to_string(),
        channel_id: m.channel_id.clone(),
        sender_id: m.sender_id.clone(),
        created_at: timestamp(m.created_at),
        edited_at: m.edited_at.and_then(timestamp),
        reply_to_message_id: m.reply_to.map(|r| r.to_string()).unwrap_or_default(),
        text: m.text.clone(),
        media: m.media.as_ref().map(|a| pb::MediaAttachment {
            file_id: a.file_id.clone(),
            mime_type: a.mime_type.clone(),
            size_bytes: a.size,
            blurhash: a.blurhash.clone().unwrap_or_default(),
            width: a.width.unwrap_or(0),
            height: a.height.unwrap_or(0),
        }),
        action: (!m.action.is_empty())
            .then(|| pb::SystemAction::decode(m.action.as_slice()).ok())
            .flatten(),
        typing: None,
        reaction: None,
        reactions: view
            .reactions
            .iter()
            .map(|(emoji, users)| pb::Reaction {
                emoji: emoji.clone(),
                user_ids: users.clone(),
            })
            .collect(),
        metadata: m.metadata.clone().into_iter().collect(),
        is_pinned: m.is_pinned,
        sender_name: view.sender_name.clone(),
        mentioned_user_ids: m.mentioned_users.clone(),
        mentioned_role_ids: m.mentioned_roles.clone(),
        sender_avatar_url: view.sender_avatar_url.clone(),
        components: decode_components(&m.components),
        thread_id: m.thread_id.clone(),
        webhook_id: m.webhook_id.clone().unwrap_or_default(),
        sender_blocked: false,
    }
}

/// The protobuf form of a ban held from a list (`ListBanNotices`).
pub fn held_ban(ban: &crate::store::server_bans::HeldBan) -> pb::HeldBan {
    pb::HeldBan {
        origin_server_id: ban.origin_key.clone(),
        guild_id: ban.guild_id.clone(),
        user_id: ban.user_id.clone(),
        banned: ban.banned,
        reason: ban.reason.clone(),
        timestamp: ban.timestamp,
        applied: ban.applied,
        received_at: ban.received_at,
        signature: ban.signature.clone(),
    }
}

/// `err` with its field named inside `prefix` (`update` + `signature` → `update.signature`), for
/// messages nested in a request; other errors as they are.
pub fn nested(prefix: &str, err: Error) -> Error {
    match err {
        Error::InvalidArgument { field, rule } if !prefix.is_empty() => Error::InvalidArgument {
            field: format!("{prefix}.{field}"),
            rule,
        },
        other => other,
    }
}

/// How a message's components are stored: one protobuf message holding the list.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ComponentList {
    /// The components.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<pb::Component>,
}

/// Encodes a message's components for storage (empty for none).
pub fn encode_components(items: &[pb::Component]) -> Vec<u8> {
    if items.is_empty() {
        Vec::new()
    } else {
        ComponentList {
            items: items.to_vec(),
        }
        .encode_to_vec()
    }
}

/// Decodes a message's stored components (a damaged row reads as no components).
pub fn decode_components(bytes: &[u8]) -> Vec<pb::Component> {
    if bytes.is_empty() {
        return Vec::new();
    }
    ComponentList::decode(bytes)
        .map(|l| l.items)
        .unwrap_or_default()
}
