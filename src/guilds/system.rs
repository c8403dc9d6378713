//! Messages the node posts about what happened in a guild (`Message.action`, a `SystemAction`):
//! a member joined or left, a message was pinned, a channel or the guild was renamed. They are
//! ordinary messages in history (so they page, count as unread and stay in order with what people
//! said), sent by the member who acted, with no text: clients render them from the action. DMs
//! get none. `docs/CHAT.md`, "System messages", lists the kinds.
//!
//! Each is written in the transaction of the change it reports, so there is never a join without
//! its message or a message about a rename that did not happen.

use crate::events;
use crate::proto::guildhall::v1 as pb;
use crate::store::guilds as db;
use crate::store::messages::{self as mdb, MessageRecord};
use crate::store::{EventRow, StorageError};
use prost::Message as _;

/// A member joined (actor and target: the member). Posted in the guild's system channel.
pub const MEMBER_JOINED: &str = "member_joined";
/// A member left with `LeaveGuild` (actor and target: the member). In the system channel.
pub const MEMBER_LEFT: &str = "member_left";
/// A message was pinned (target: the message's id). In the message's channel.
pub const MESSAGE_PINNED: &str = "message_pinned";
/// A channel was renamed (target: the channel, detail: its new name). In that channel.
pub const CHANNEL_RENAMED: &str = "channel_renamed";
/// The guild was renamed (target: the guild, detail: its new name). In the system channel.
pub const GUILD_RENAMED: &str = "guild_renamed";

/// Where a system message goes.
pub(crate) enum Place<'a> {
    /// The guild's system channel: its first channel (not a thread) by position.
    Guild(&'a str),
    /// This channel or thread.
    Channel(&'a str),
}

/// Posts a system message of `kind` by `actor` about `target` inside `tx`, with id `id` (taken
/// from the node's id generator before the write) and time `now`; answers the `message_created`
/// row to log with it, or nothing in a DM or a guild without a channel.
pub(crate) fn post_in(
    tx: &rusqlite::Connection,
    place: Place<'_>,
    id: u64,
    now: u64,
    action: pb::SystemAction,
) -> Result<Vec<EventRow>, StorageError> {
    let channel = match place {
        Place::Guild(guild_id) => db::channels(tx, guild_id)?
            .into_iter()
            .find(|c| !c.is_thread),
        Place::Channel(channel_id) => db::channel(tx, channel_id)?,
    };
    let Some(channel) = channel else {
        return Ok(Vec::new());
    };
    if db::guild(tx, &channel.guild_id)?.is_none_or(|g| g.is_dm) {
        return Ok(Vec::new());
    }
    let record = MessageRecord {
        id,
        channel_id: channel.id.clone(),
        guild_id: channel.guild_id.clone(),
        sender_id: action.actor_id.clone(),
        created_at: now,
        action: action.encode_to_vec(),
        ..MessageRecord::default()
    };
    mdb::insert_message(tx, &record)?;
    let Some(view) = mdb::view(tx, id)? else {
        return Ok(Vec::new());
    };
    Ok(vec![events::row(
        vec![events::guild_scope(&channel.guild_id)],
        pb::stream_response::Event::MessageCreated(pb::MessageEvent {
            message: Some(crate::convert::message(&view)),
            idempotency_key: String::new(),
        }),
    )])
}

/// The action of `kind` by `actor` about `target`, with `detail`.
pub(crate) fn action(kind: &str, actor: &str, target: &str, detail: &str) -> pb::SystemAction {
    pb::SystemAction {
        kind: kind.to_owned(),
        actor_id: actor.to_owned(),
        target_id: target.to_owned(),
        detail: detail.to_owned(),
    }
}
