//! Messages: sending (text, replies, mentions, components, typing, reactions), history, deletion,
//! pins, threads, receipts and search.
//!
//! Every change is written through [`Events::write`], so it and its event commit together. A
//! repeated `idempotency_key` from the same sender returns the first message and logs nothing.

pub mod components;
pub mod inbox;
pub mod mentions;

use std::collections::BTreeMap;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::events::{self, Events};
use crate::guilds::system::{self, Place};
use crate::guilds::{Guilds, permissions};
use crate::identity::freshness::now_ms;
use crate::ids::IdGenerator;
use crate::proto::guildhall::v1 as pb;
use crate::store::guilds::{self as gdb, ChannelRecord};
use crate::store::messages::{self as db, Attachment, Direction, MessageRecord, MessageView};
use crate::store::{EventRow, SessionInfo, StorageError, Store};

/// Longest idempotency key, bytes: a client's retry key (a UUID is 36), not a payload.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Longest emoji (a name or a sequence), characters: the longest ZWJ sequences are well under.
pub const MAX_EMOJI: usize = 64;
/// Most distinct emoji on one message, so one message's reaction list stays small to send.
pub const MAX_REACTION_KINDS: i64 = 50;
/// `GetHistory` page when the request asks for 0.
pub const HISTORY_PAGE_DEFAULT: u32 = 50;
/// Largest `GetHistory` page: bounds one read and one answer.
pub const HISTORY_PAGE_MAX: u32 = 100;
/// Most metadata entries on one message: metadata is for small machine-readable tags.
pub const METADATA_MAX_ENTRIES: usize = 32;
/// Longest metadata key, bytes.
pub const METADATA_KEY_MAX: usize = 64;
/// Longest metadata value, bytes.
pub const METADATA_VALUE_MAX: usize = 1024;
/// Most words in a search query: each becomes an FTS5 term, and terms multiply the work.
pub const SEARCH_MAX_WORDS: usize = 16;
/// Longest search query, bytes.
pub const SEARCH_QUERY_MAX: usize = 256;
/// `SearchMessages` page when the request asks for 0.
pub const SEARCH_PAGE_DEFAULT: u32 = 25;
/// Largest `SearchMessages` page.
pub const SEARCH_PAGE_MAX: u32 = 100;
/// Deepest `SearchMessages` offset: FTS5 reads and skips every result before it.
pub const SEARCH_MAX_OFFSET: u32 = 10_000;

/// What `SendMessage` asks for.
#[derive(Debug, Clone, Default)]
pub struct SendInput {
    /// Target channel or thread.
    pub channel_id: String,
    /// Client's key for retries.
    pub idempotency_key: String,
    /// Text.
    pub text: String,
    /// A typing indicator instead of a message.
    pub typing: Option<bool>,
    /// A reaction instead of a message: (message id, emoji, add?).
    pub reaction: Option<(String, String, bool)>,
    /// Components.
    pub components: Vec<pb::Component>,
    /// The message replied to.
    pub reply_to: String,
    /// Key/value data.
    pub metadata: BTreeMap<String, String>,
    /// A file the sender uploaded, to attach.
    pub media_file_id: String,
}

/// What a send produced.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A stored message (new, or the earlier one for a repeated idempotency key).
    Message(Box<MessageView>),
    /// A typing indicator (not stored as a message).
    Typing(Box<pb::Message>),
}

/// A history page.
#[derive(Debug, Clone)]
pub struct Page {
    /// The messages, in the order asked for.
    pub messages: Vec<MessageView>,
    /// Where the next page starts (empty if there is none).
    pub next_cursor: String,
    /// Whether there are more.
    pub has_more: bool,
}

/// The message operations of one node.
#[derive(Debug, Clone)]
pub struct Messages {
    guilds: Guilds,
    limits: std::sync::Arc<crate::limits::Limits>,
}

/// Parses a message id from a request field.
pub fn parse_id(field: &str, text: &str) -> Result<u64> {
    text.parse::<u64>()
        .map_err(|_| Error::invalid(field, "must be a message id"))
}

fn channel_scope(channel: &ChannelRecord) -> Vec<String> {
    vec![events::guild_scope(&channel.guild_id)]
}

fn created_event(channel: &ChannelRecord, view: &MessageView) -> EventRow {
    events::row(
        channel_scope(channel),
        pb::stream_response::Event::MessageCreated(pb::MessageEvent {
            message: Some(crate::convert::message(view)),
            idempotency_key: view.message.idempotency_key.clone().unwrap_or_default(),
        }),
    )
}

fn updated_event(guild_id: &str, view: &MessageView) -> EventRow {
    events::row(
        vec![events::guild_scope(guild_id)],
        pb::stream_response::Event::MessageUpdated(pb::MessageEvent {
            message: Some(crate::convert::message(view)),
            idempotency_key: String::new(),
        }),
    )
}

/// The `message_updated` row for a reaction added or removed: the whole message, with
/// `Message.reaction` saying which change this event is.
fn reaction_event(
    guild_id: &str,
    view: &MessageView,
    reactor: &str,
    emoji: &str,
    added: bool,
) -> EventRow {
    let mut message = crate::convert::message(view);
    message.reaction = Some(pb::ReactionIndicator {
        target_message_id: message.id.clone(),
        emoji: emoji.to_owned(),
        added,
        user_id: reactor.to_owned(),
    });
    events::row(
        vec![events::guild_scope(guild_id)],
        pb::stream_response::Event::MessageUpdated(pb::MessageEvent {
            message: Some(message),
            idempotency_key: String::new(),
        }),
    )
}

fn load(c: &rusqlite::Connection, id: u64) -> std::result::Result<MessageView, StorageError> {
    db::view(c, id)?.ok_or_else(|| StorageError::Task("message vanished".into()))
}

impl Messages {
    /// Message operations, checking access through `guilds`.
    pub fn new(guilds: Guilds, limits: std::sync::Arc<crate::limits::Limits>) -> Self {
        Self { guilds, limits }
    }

    fn store(&self) -> &Store {
        self.guilds.store()
    }

    fn events(&self) -> &Events {
        self.guilds.events()
    }

    fn ids(&self) -> &IdGenerator {
        self.guilds.ids()
    }

    /// Loads a message of a channel, refusing ids from elsewhere.
    async fn message_in(
        &self,
        channel: &ChannelRecord,
        field: &str,
        id: u64,
    ) -> Result<MessageView> {
        let view = self.store().read(move |c| db::view(c, id)).await?;
        match view {
            Some(v) if v.message.channel_id == channel.id => Ok(v),
            _ => Err(Error::NotFound(format!(
                "{field}: no such message in this channel"
            ))),
        }
    }

    /// `SendMessage`.
    pub async fn send(&self, caller: &SessionInfo, input: SendInput) -> Result<Sent> {
        // The per-user limit on messages, typing and reactions, here so every adapter (gRPC, IRC)
        // counts against the same one.
        self.limits
            .check(crate::limits::Limit::Message, &caller.user_id)?;
        let is_content = !input.text.is_empty()
            || !input.components.is_empty()
            || !input.media_file_id.is_empty();
        let kinds = usize::from(is_content)
            + usize::from(input.typing.is_some())
            + usize::from(input.reaction.is_some());
        if kinds != 1 {
            return Err(Error::invalid(
                "text",
                "send exactly one of: text, components and/or media_file_id; typing; reaction",
            ));
        }
        let (channel, access) = self
            .guilds
            .channel_access(&input.channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_SEND)?;
        if let Some(is_typing) = input.typing {
            return self.typing(caller, &channel, is_typing).await;
        }
        if let Some((message_id, emoji, add)) = input.reaction.clone() {
            return self
                .react(caller, &channel, &message_id, &emoji, add)
                .await
                .map(|v| Sent::Message(Box::new(v)));
        }
        self.post(caller, &channel, &access, input)
            .await
            .map(|v| Sent::Message(Box::new(v)))
    }

    async fn post(
        &self,
        caller: &SessionInfo,
        channel: &ChannelRecord,
        access: &crate::guilds::Access,
        input: SendInput,
    ) -> Result<MessageView> {
        self.check_length(&input.text)?;
        if input.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        if input.metadata.len() > METADATA_MAX_ENTRIES
            || input.metadata.iter().any(|(k, v)| {
                k.is_empty() || k.len() > METADATA_KEY_MAX || v.len() > METADATA_VALUE_MAX
            })
        {
            return Err(Error::invalid(
                "metadata",
                format!(
                    "at most {METADATA_MAX_ENTRIES} entries, keys 1-{METADATA_KEY_MAX} bytes, \
                     values at most {METADATA_VALUE_MAX} bytes"
                ),
            ));
        }
        components::validate(&input.components)?;
        if access.guild.is_dm {
            self.refuse_if_blocked(&channel.guild_id, &caller.user_id)
                .await?;
        }
        let reply_to = if input.reply_to.is_empty() {
            None
        } else {
            let id = parse_id("reply_to_message_id", &input.reply_to)?;
            self.message_in(channel, "reply_to_message_id", id).await?;
            Some(id)
        };
        let media = self.attachment(caller, &input.media_file_id).await?;
        let (users, mut roles) = mentions::parse(&input.text);
        mentions::keep_mentionable(&mut roles, access);
        let record = MessageRecord {
            id: self.ids().next(),
            channel_id: channel.id.clone(),
            guild_id: channel.guild_id.clone(),
            sender_id: caller.user_id.clone(),
            created_at: now_ms(),
            reply_to,
            text: input.text,
            components: crate::convert::encode_components(&input.components),
            metadata: input.metadata,
            mentioned_users: users,
            mentioned_roles: roles,
            idempotency_key: (!input.idempotency_key.is_empty()).then_some(input.idempotency_key),
            media,
            ..MessageRecord::default()
        };
        let channel = channel.clone();
        Ok(self
            .events()
            .write(record.created_at, move |tx| {
                if let Some(key) = &record.idempotency_key
                    && let Some(existing) = db::by_idempotency_key(tx, &record.sender_id, key)?
                {
                    return Ok((load(tx, existing)?, vec![]));
                }
                db::insert_message(tx, &record)?;
                let view = load(tx, record.id)?;
                let event = created_event(&channel, &view);
                Ok((view, vec![event]))
            })
            .await?)
    }

    /// Refuses a message in a DM where one member blocked the other: it would not be delivered.
    async fn refuse_if_blocked(&self, guild_id: &str, sender: &str) -> Result<()> {
        let (g, me) = (guild_id.to_owned(), sender.to_owned());
        let blocked = self
            .store()
            .read(move |c| {
                for other in gdb::member_user_ids(c, &g)? {
                    if other != me && crate::store::people::blocked_either(c, &me, &other)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await?;
        if blocked {
            return Err(Error::FailedPrecondition(
                "channel_id: one of you blocked the other in this DM; the message was not sent"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Refuses text longer than the node's `max_message_length`.
    fn check_length(&self, text: &str) -> Result<()> {
        let len = text.chars().count();
        let max = self.limits.max_message_length();
        if len > max {
            return Err(Error::invalid(
                "text",
                format!("must be at most {max} characters (got {len})"),
            ));
        }
        Ok(())
    }

    /// The file to attach: one the caller uploaded.
    async fn attachment(&self, caller: &SessionInfo, file_id: &str) -> Result<Option<Attachment>> {
        if file_id.is_empty() {
            return Ok(None);
        }
        let id = file_id.to_owned();
        let file = self
            .store()
            .read(move |c| crate::store::media::file(c, &id))
            .await?
            .ok_or_else(|| Error::NotFound("media_file_id: no such file".into()))?;
        if file.uploader_id != caller.user_id {
            return Err(Error::PermissionDenied(
                "media_file_id: only files you uploaded can be attached".into(),
            ));
        }
        Ok(Some(Attachment {
            file_id: file.id,
            mime_type: file.mime_type,
            size: file.size,
            blurhash: file.blurhash,
            width: file.width,
            height: file.height,
        }))
    }

    /// Posts a webhook's message to its channel, shown under the webhook's (or the given) name and
    /// marked as the webhook's (`Message.webhook_id`), so it never passes as a member's.
    pub async fn post_webhook(
        &self,
        webhook: &crate::store::webhooks::WebhookRecord,
        text: &str,
        name: String,
        avatar: String,
    ) -> Result<MessageView> {
        // The HTTP body bypasses the gRPC text check: the same rule for multi-line text here.
        rules::no_controls(text, rules::Lines::Multi)
            .map_err(|rule| Error::invalid("content", rule))?;
        let len = text.chars().count();
        let max = self.limits.max_message_length();
        if len == 0 || len > max {
            return Err(Error::invalid(
                "content",
                format!("must be 1-{max} characters (got {len})"),
            ));
        }
        self.limits.check(
            crate::limits::Limit::Message,
            &format!("webhook:{}", webhook.id),
        )?;
        let channel_id = webhook.channel_id.clone();
        let channel = self
            .store()
            .read(move |c| gdb::channel(c, &channel_id))
            .await?
            .ok_or_else(|| Error::NotFound("the webhook's channel is gone".into()))?;
        let (users, roles) = mentions::parse(text);
        let record = MessageRecord {
            id: self.ids().next(),
            channel_id: channel.id.clone(),
            guild_id: channel.guild_id.clone(),
            sender_id: webhook.id.clone(),
            created_at: now_ms(),
            text: text.to_owned(),
            mentioned_users: users,
            mentioned_roles: roles,
            sender_name: Some(name),
            sender_avatar: Some(avatar),
            webhook_id: Some(webhook.id.clone()),
            ..MessageRecord::default()
        };
        Ok(self
            .events()
            .write(record.created_at, move |tx| {
                db::insert_message(tx, &record)?;
                let view = load(tx, record.id)?;
                let event = created_event(&channel, &view);
                Ok((view, vec![event]))
            })
            .await?)
    }

    async fn typing(
        &self,
        caller: &SessionInfo,
        channel: &ChannelRecord,
        is_typing: bool,
    ) -> Result<Sent> {
        let now = now_ms();
        let message = pb::Message {
            channel_id: channel.id.clone(),
            sender_id: caller.user_id.clone(),
            created_at: crate::convert::timestamp(now),
            typing: Some(pb::TypingIndicator {
                channel_id: channel.id.clone(),
                is_typing,
                user_id: caller.user_id.clone(),
            }),
            ..Default::default()
        };
        let event = events::row(
            channel_scope(channel),
            pb::stream_response::Event::MessageCreated(pb::MessageEvent {
                message: Some(message.clone()),
                idempotency_key: String::new(),
            }),
        );
        self.events()
            .write(now, move |_| Ok(((), vec![event])))
            .await?;
        Ok(Sent::Typing(Box::new(message)))
    }

    async fn react(
        &self,
        caller: &SessionInfo,
        channel: &ChannelRecord,
        message_id: &str,
        emoji: &str,
        add: bool,
    ) -> Result<MessageView> {
        let id = parse_id("reaction.message_id", message_id)?;
        let emoji_len = emoji.chars().count();
        if emoji_len == 0 || emoji_len > MAX_EMOJI || emoji.chars().any(char::is_whitespace) {
            return Err(Error::invalid(
                "reaction.emoji",
                format!("must be 1-{MAX_EMOJI} characters with no spaces"),
            ));
        }
        self.message_in(channel, "reaction.message_id", id).await?;
        let (user, emoji, guild_id) = (
            caller.user_id.clone(),
            emoji.to_owned(),
            channel.guild_id.clone(),
        );
        let now = now_ms();
        self.events()
            .write(now, move |tx| {
                let fresh_emoji = !load(tx, id)?.reactions.iter().any(|(e, _)| *e == emoji);
                if add && fresh_emoji && db::reaction_kinds(tx, id)? >= MAX_REACTION_KINDS {
                    return Ok((Err(Error::FailedPrecondition(format!("reaction.emoji: a message has at most {MAX_REACTION_KINDS} different reactions"))), vec![]));
                }
                let changed = db::react(tx, id, &emoji, &user, add, now)?;
                let view = load(tx, id)?;
                let events = if changed { vec![reaction_event(&guild_id, &view, &user, &emoji, add)] } else { vec![] };
                Ok((Ok(view), events))
            })
            .await?
    }

    /// `GetHistory`.
    pub async fn history(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        cursor: &str,
        limit: i32,
        reverse: bool,
    ) -> Result<Page> {
        let (default, max) = (HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX);
        let limit = match limit {
            0 => default,
            1.. if limit <= max as i32 => limit as u32,
            _ => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be 0 (default {default}) to {max}"),
                ));
            }
        };
        let cursor = if cursor.is_empty() {
            None
        } else {
            Some(
                cursor
                    .strip_prefix('c')
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::invalid("cursor", "is not a cursor from GetHistory"))?,
            )
        };
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_READ)?;
        let direction = if reverse {
            Direction::Newer
        } else {
            Direction::Older
        };
        let id = channel.id.clone();
        let mut messages = self
            .store()
            .read(move |c| db::history(c, &id, cursor, limit + 1, direction))
            .await?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        let next_cursor = match (has_more, messages.last()) {
            (true, Some(last)) => format!("c{:x}", last.message.id),
            _ => String::new(),
        };
        Ok(Page {
            messages,
            next_cursor,
            has_more,
        })
    }

    /// `DeleteMessage`: one's own, or anyone's with `messages.manage`.
    pub async fn delete(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        message_id: &str,
    ) -> Result<()> {
        let id = parse_id("message_id", message_id)?;
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        let view = self.message_in(&channel, "message_id", id).await?;
        if view.message.sender_id != caller.user_id {
            access.require(permissions::MESSAGES_MANAGE)?;
        }
        self.remove(&channel, message_id, id, &caller.user_id).await
    }

    /// `EditMessage`: the author (who may still send in the channel) replaces the text of their
    /// message; mentions are parsed again from the new text, `edited_at` is stamped and readers
    /// get `message_updated` (members of other nodes too: they read through this host). Text
    /// equal to the current text changes nothing and announces nothing. A message can't be
    /// edited down to nothing: empty text needs components or an attachment to remain.
    pub async fn edit(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        message_id: &str,
        text: String,
    ) -> Result<MessageView> {
        self.limits
            .check(crate::limits::Limit::Message, &caller.user_id)?;
        let id = parse_id("message_id", message_id)?;
        self.check_length(&text)?;
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_SEND)?;
        let view = self.message_in(&channel, "message_id", id).await?;
        if view.message.sender_id != caller.user_id {
            return Err(Error::PermissionDenied(
                "message_id: only its author may edit a message".into(),
            ));
        }
        if view.message.text == text {
            return Ok(view);
        }
        if text.is_empty() && view.message.components.is_empty() && view.message.media.is_none() {
            return Err(Error::invalid(
                "text",
                "must not be empty: the message has no components or attachment (delete it instead)",
            ));
        }
        let (users, mut roles) = mentions::parse(&text);
        mentions::keep_mentionable(&mut roles, &access);
        let guild_id = channel.guild_id.clone();
        let now = now_ms();
        self.events()
            .write(now, move |tx| {
                if db::view(tx, id)?.is_none() {
                    let gone =
                        Error::NotFound("message_id: no such message in this channel".into());
                    return Ok((Err(gone), vec![]));
                }
                db::edit_text(tx, id, &text, &users, &roles, now)?;
                let view = load(tx, id)?;
                let event = updated_event(&guild_id, &view);
                Ok((Ok(view), vec![event]))
            })
            .await?
    }

    /// `DeleteMessage` for a server admin (`guildhall.admin.v1`, which checked who asks): no
    /// membership or permission in the guild is needed; the guild gets the same
    /// `message_deleted` event.
    pub async fn remove_as_admin(&self, channel_id: &str, message_id: &str) -> Result<()> {
        let id = parse_id("message_id", message_id)?;
        if channel_id.is_empty() {
            return Err(Error::invalid("channel_id", "is required"));
        }
        let c = channel_id.to_owned();
        let channel = self
            .store()
            .read(move |tx| crate::store::guilds::channel(tx, &c))
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "channel_id: no channel {channel_id:?} on this server"
                ))
            })?;
        self.message_in(&channel, "message_id", id).await?;
        self.remove(&channel, message_id, id, "").await
    }

    /// Deletes message `id` of `channel` and logs `message_deleted` with it, saying it was
    /// `deleted_by` that user (empty: a server admin).
    async fn remove(
        &self,
        channel: &ChannelRecord,
        message_id: &str,
        id: u64,
        deleted_by: &str,
    ) -> Result<()> {
        let event = events::row(
            channel_scope(channel),
            pb::stream_response::Event::MessageDeleted(pb::MessageDeletedEvent {
                channel_id: channel.id.clone(),
                message_id: message_id.to_owned(),
                deleted_by: deleted_by.to_owned(),
            }),
        );
        self.events()
            .write(now_ms(), move |tx| {
                Ok((
                    (),
                    if db::delete_message(tx, id)? {
                        vec![event]
                    } else {
                        vec![]
                    },
                ))
            })
            .await?;
        Ok(())
    }

    /// `PinMessage` / `UnpinMessage` (needs `messages.manage`).
    pub async fn pin(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        message_id: &str,
        pinned: bool,
    ) -> Result<()> {
        let id = parse_id("message_id", message_id)?;
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_MANAGE)?;
        let view = self.message_in(&channel, "message_id", id).await?;
        if view.message.is_pinned == pinned {
            return Ok(());
        }
        let (guild_id, channel_id, actor) = (
            channel.guild_id.clone(),
            channel.id.clone(),
            caller.user_id.clone(),
        );
        let (system_id, now) = (self.ids().next(), now_ms());
        self.events()
            .write(now, move |tx| {
                db::set_pinned(tx, id, pinned)?;
                let view = load(tx, id)?;
                let mut rows = vec![updated_event(&guild_id, &view)];
                if pinned {
                    let action =
                        system::action(system::MESSAGE_PINNED, &actor, &id.to_string(), "");
                    rows.extend(system::post_in(
                        tx,
                        Place::Channel(&channel_id),
                        system_id,
                        now,
                        action,
                    )?);
                }
                Ok(((), rows))
            })
            .await?;
        Ok(())
    }

    /// `GetPinnedMessages`.
    pub async fn pinned(&self, caller: &SessionInfo, channel_id: &str) -> Result<Vec<MessageView>> {
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_READ)?;
        Ok(self
            .store()
            .read(move |c| db::pinned(c, &channel.id))
            .await?)
    }

    /// `CreateThread`: a thread channel from a root message (one thread per message).
    pub async fn create_thread(
        &self,
        caller: &SessionInfo,
        parent_channel_id: &str,
        root_message_id: &str,
        name: &str,
    ) -> Result<ChannelRecord> {
        let name = crate::accounts::rules::name(name, crate::guilds::NAME_MAX)
            .map_err(|rule| Error::invalid("name", rule))?;
        let root = parse_id("root_message_id", root_message_id)?;
        let (parent, access) = self
            .guilds
            .channel_access(parent_channel_id, &caller.user_id)
            .await?;
        access.require(permissions::THREADS_CREATE)?;
        if parent.is_thread {
            return Err(Error::invalid(
                "parent_channel_id",
                "threads can't start threads",
            ));
        }
        let view = self.message_in(&parent, "root_message_id", root).await?;
        if !view.message.thread_id.is_empty() {
            return Err(Error::AlreadyExists(format!(
                "root_message_id: already has thread {}",
                view.message.thread_id
            )));
        }
        let thread = ChannelRecord {
            id: self.ids().next_string(),
            guild_id: parent.guild_id.clone(),
            folder_id: parent.folder_id.clone(),
            name,
            position: 0,
            latest_message_id: String::new(),
            irc_name: None,
            is_thread: true,
            parent_channel_id: parent.id.clone(),
            root_message_id: root_message_id.to_owned(),
        };
        let t = thread.clone();
        self.events()
            .write(now_ms(), move |tx| {
                if !load(tx, root)?.message.thread_id.is_empty() {
                    return Err(StorageError::Conflict(
                        "root_message_id: already has a thread".into(),
                    ));
                }
                gdb::insert_channel(tx, &t)?;
                db::set_thread(tx, root, &t.id)?;
                let view = load(tx, root)?;
                Ok((
                    (),
                    vec![
                        crate::guilds::channel_event(&t, true),
                        updated_event(&t.guild_id, &view),
                    ],
                ))
            })
            .await?;
        Ok(thread)
    }

    /// The users the caller blocked: history, search and pins mark their messages
    /// (`Message.sender_blocked`) so the caller's client can collapse them.
    pub async fn blocked_senders(
        &self,
        caller: &SessionInfo,
    ) -> Result<std::collections::HashSet<String>> {
        let user = caller.user_id.clone();
        let ids = self
            .store()
            .read(move |c| crate::store::people::blocked_ids(c, &user))
            .await?;
        Ok(ids.into_iter().collect())
    }

    /// `AckMessage`: marks the message of a `message_created` event delivered or read, and tells
    /// the guild with a delivery receipt.
    pub async fn ack(&self, caller: &SessionInfo, event_id: u64, read: bool) -> Result<()> {
        if event_id == 0 {
            return Err(Error::invalid("event_id", "is required"));
        }
        let guilds = {
            let user = caller.user_id.clone();
            self.store()
                .read(move |c| gdb::guild_ids_of(c, &user))
                .await?
        };
        let mut scopes: Vec<String> = guilds.iter().map(|g| events::guild_scope(g)).collect();
        scopes.push(events::user_scope(&caller.user_id));
        let found = self.store().events_after(event_id - 1, scopes, 1).await?;
        let event = found
            .into_iter()
            .find(|e| e.id == event_id)
            .ok_or_else(|| Error::NotFound("event_id: no such event visible to you".into()))?;
        let decoded = <pb::StreamResponse as prost::Message>::decode(event.payload.as_slice())
            .map_err(|e| StorageError::Task(e.to_string()))?;
        let Some(pb::stream_response::Event::MessageCreated(pb::MessageEvent {
            message: Some(message),
            ..
        })) = decoded.event
        else {
            return Err(Error::invalid("event_id", "is not a message_created event"));
        };
        let id = parse_id("event_id", &message.id).map_err(|_| {
            Error::invalid(
                "event_id",
                "is not a stored message (typing indicators can't be acknowledged)",
            )
        })?;
        let (channel, access) = self
            .guilds
            .channel_access(&message.channel_id, &caller.user_id)
            .await?;
        // Only a reader received the message, so only a reader acknowledges it.
        access.require(permissions::MESSAGES_READ)?;
        let now = now_ms();
        let status = if read {
            pb::ReceiptType::Read
        } else {
            pb::ReceiptType::Delivered
        };
        let receipt = events::row(
            channel_scope(&channel),
            pb::stream_response::Event::Delivery(pb::DeliveryReceipt {
                message_id: message.id.clone(),
                channel_id: channel.id.clone(),
                user_id: caller.user_id.clone(),
                status: status as i32,
                timestamp: crate::convert::timestamp(now),
            }),
        );
        let user = caller.user_id.clone();
        self.events()
            .write(now, move |tx| {
                db::mark(tx, &user, &channel.id, id, read)?;
                Ok(((), vec![receipt]))
            })
            .await?;
        Ok(())
    }

    /// Through which message the caller has read a channel they can read (0: nothing yet).
    pub async fn read_through(&self, caller: &SessionInfo, channel_id: &str) -> Result<u64> {
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_READ)?;
        let user = caller.user_id.clone();
        Ok(self
            .store()
            .read(move |c| db::read_through(c, &user, &channel.id))
            .await?)
    }

    /// Marks a channel read through its newest message with an id at most `bound` (read markers
    /// only move forward), telling the guild with a read receipt as `AckMessage` does. Returns
    /// the read marker as it now stands.
    pub async fn mark_read(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        bound: u64,
    ) -> Result<u64> {
        let (channel, access) = self
            .guilds
            .channel_access(channel_id, &caller.user_id)
            .await?;
        access.require(permissions::MESSAGES_READ)?;
        let now = now_ms();
        let user = caller.user_id.clone();
        let scopes = channel_scope(&channel);
        Ok(self
            .events()
            .write(now, move |tx| {
                let before = db::read_through(tx, &user, &channel.id)?;
                let newest = db::newest_at_most(tx, &channel.id, bound)?.unwrap_or(0);
                if newest <= before {
                    return Ok((before, vec![]));
                }
                db::mark(tx, &user, &channel.id, newest, true)?;
                let receipt = events::row(
                    scopes,
                    pb::stream_response::Event::Delivery(pb::DeliveryReceipt {
                        message_id: newest.to_string(),
                        channel_id: channel.id.clone(),
                        user_id: user.clone(),
                        status: pb::ReceiptType::Read as i32,
                        timestamp: crate::convert::timestamp(now),
                    }),
                );
                Ok((newest, vec![receipt]))
            })
            .await?)
    }

    /// `SearchMessages`: FTS5 over one channel, or every channel of the caller's guilds.
    pub async fn search(
        &self,
        caller: &SessionInfo,
        channel_id: &str,
        query: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<MessageView>, u64)> {
        let terms: Vec<String> = query
            .split_whitespace()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect();
        if terms.is_empty() || terms.len() > SEARCH_MAX_WORDS || query.len() > SEARCH_QUERY_MAX {
            return Err(Error::invalid(
                "query",
                format!(
                    "must have 1-{SEARCH_MAX_WORDS} words and at most {SEARCH_QUERY_MAX} bytes \
                     (got {} words, {} bytes)",
                    terms.len(),
                    query.len()
                ),
            ));
        }
        let limit = match limit {
            0 => SEARCH_PAGE_DEFAULT,
            1..=SEARCH_PAGE_MAX => limit,
            _ => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be 0 (default {SEARCH_PAGE_DEFAULT}) to {SEARCH_PAGE_MAX}"),
                ));
            }
        };
        if offset > SEARCH_MAX_OFFSET {
            return Err(Error::invalid(
                "offset",
                format!("must be at most {SEARCH_MAX_OFFSET}"),
            ));
        }
        let channels: Vec<String> = if channel_id.is_empty() {
            // Every readable channel of every guild the caller is in, in one read.
            let user = caller.user_id.clone();
            let guilds = self
                .store()
                .read(move |c| {
                    let mut out = Vec::new();
                    for guild_id in gdb::guild_ids_of(c, &user)? {
                        if let Some(ctx) = gdb::context(c, &guild_id, &user)? {
                            out.push((ctx, gdb::channels(c, &guild_id)?));
                        }
                    }
                    Ok(out)
                })
                .await?;
            guilds
                .into_iter()
                .filter(|(ctx, _)| {
                    Guilds::access_from(ctx.clone(), &caller.user_id)
                        .is_ok_and(|a| a.standing.has(permissions::MESSAGES_READ))
                })
                .flat_map(|(_, channels)| channels.into_iter().map(|c| c.id))
                .collect()
        } else {
            let (channel, access) = self
                .guilds
                .channel_access(channel_id, &caller.user_id)
                .await?;
            access.require(permissions::MESSAGES_READ)?;
            vec![channel.id]
        };
        let fts = terms.join(" ");
        Ok(self
            .store()
            .read(move |c| db::search(c, &channels, &fts, limit, offset))
            .await?)
    }

    /// `GetSearchStatus` figures: (indexed messages, database bytes, newest message time).
    pub async fn search_status(&self) -> Result<(u64, u64, u64)> {
        Ok(self.store().read(db::search_stats).await?)
    }

    /// `GetGuildMemberProfile`: a member, their message count, and their ten latest messages.
    pub async fn member_profile(
        &self,
        caller: &SessionInfo,
        guild_id: &str,
        user_id: &str,
    ) -> Result<(crate::guilds::members::MemberView, i64, Vec<MessageView>)> {
        let access = self.guilds.access(guild_id, &caller.user_id).await?;
        let member = self.guilds.member_of(&access, user_id).await?;
        let (g, u) = (guild_id.to_owned(), user_id.to_owned());
        let readable = access.standing.has(permissions::MESSAGES_READ);
        let (count, recent) = self
            .store()
            .read(move |c| {
                let channels: Vec<String> = if readable {
                    gdb::channels(c, &g)?.into_iter().map(|c| c.id).collect()
                } else {
                    Vec::new()
                };
                db::by_sender(c, &g, &u, &channels, 10)
            })
            .await?;
        Ok((member, count, recent))
    }
}
