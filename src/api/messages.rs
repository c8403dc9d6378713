//! Handlers for messages, history, pins, threads, receipts and search.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::convert;
use crate::guilds::Guilds;
use crate::messages::{Messages, SendInput, Sent};
use crate::proto::guildhall::v1 as pb;

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

pub async fn send(
    m: &Messages,
    r: Request<pb::SendMessageRequest>,
) -> Reply<pb::SendMessageResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let input = SendInput {
        channel_id: r.channel_id,
        idempotency_key: r.idempotency_key,
        text: r.text,
        typing: r.typing.map(|t| t.is_typing),
        reaction: r.reaction.map(|re| {
            (
                re.message_id,
                re.emoji,
                re.r#type != pb::ReactionType::Remove as i32,
            )
        }),
        components: r.components,
        reply_to: r.reply_to_message_id,
        metadata: r.metadata.into_iter().collect(),
        media_file_id: r.media_file_id,
    };
    let message = match m.send(&s, input).await? {
        Sent::Message(view) => convert::message(&view),
        Sent::Typing(message) => *message,
    };
    ok(pb::SendMessageResponse {
        message: Some(message),
    })
}

/// `views` as the caller sees them: a message whose sender the caller blocked carries
/// `sender_blocked`.
async fn for_caller(
    m: &Messages,
    s: &crate::store::SessionInfo,
    views: &[crate::store::messages::MessageView],
) -> Result<Vec<pb::Message>, Status> {
    let blocked = m.blocked_senders(s).await?;
    Ok(views
        .iter()
        .map(|v| {
            let mut message = convert::message(v);
            message.sender_blocked = blocked.contains(&message.sender_id);
            message
        })
        .collect())
}

pub async fn history(
    m: &Messages,
    r: Request<pb::GetHistoryRequest>,
) -> Reply<pb::GetHistoryResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let page = m
        .history(&s, &r.channel_id, &r.cursor, r.limit, r.reverse)
        .await?;
    ok(pb::GetHistoryResponse {
        messages: for_caller(m, &s, &page.messages).await?,
        next_cursor: page.next_cursor,
        has_more: page.has_more,
    })
}

/// `EditMessage` (guildhall addition).
pub async fn edit(m: &Messages, r: Request<pb::EditMessageRequest>) -> Reply<pb::Message> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let view = m.edit(&s, &r.channel_id, &r.message_id, r.text).await?;
    ok(convert::message(&view))
}

pub async fn delete(m: &Messages, r: Request<pb::DeleteMessageRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    m.delete(&s, &r.channel_id, &r.message_id).await?;
    ok(pb::Empty {})
}

pub async fn pin(
    m: &Messages,
    s: crate::store::SessionInfo,
    channel_id: &str,
    message_id: &str,
    pinned: bool,
) -> Reply<pb::Empty> {
    m.pin(&s, channel_id, message_id, pinned).await?;
    ok(pb::Empty {})
}

pub async fn pinned(
    m: &Messages,
    r: Request<pb::GetPinnedMessagesRequest>,
) -> Reply<pb::GetPinnedMessagesResponse> {
    let s = caller(&r)?;
    let views = m.pinned(&s, &r.get_ref().channel_id).await?;
    ok(pb::GetPinnedMessagesResponse {
        messages: for_caller(m, &s, &views).await?,
    })
}

pub async fn create_thread(
    m: &Messages,
    r: Request<pb::CreateThreadRequest>,
) -> Reply<pb::Channel> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let thread = m
        .create_thread(&s, &r.parent_channel_id, &r.root_message_id, &r.name)
        .await?;
    ok(convert::channel(&thread))
}

pub async fn ack(m: &Messages, r: Request<pb::AcknowledgeRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let read = match pb::ReceiptType::try_from(r.status) {
        Ok(pb::ReceiptType::Read) => true,
        Ok(_) => false,
        Err(_) => {
            return Err(Status::invalid_argument(
                "status: must be a ReceiptType (0, 1 or 2)",
            ));
        }
    };
    m.ack(&s, r.event_id, read).await?;
    ok(pb::Empty {})
}

pub async fn search(
    m: &Messages,
    r: Request<pb::SearchMessagesRequest>,
) -> Reply<pb::SearchMessagesResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let (views, total) = m
        .search(&s, &r.channel_id, &r.query, r.limit, r.offset)
        .await?;
    ok(pb::SearchMessagesResponse {
        messages: for_caller(m, &s, &views).await?,
        total: u32::try_from(total).unwrap_or(u32::MAX),
    })
}

pub async fn search_status(m: &Messages, r: Request<pb::Empty>) -> Reply<pb::SearchStatusResponse> {
    caller(&r)?;
    let (docs, bytes, newest) = m.search_status().await?;
    ok(pb::SearchStatusResponse {
        reachable: true,
        message: "SQLite FTS5 index, updated in the same transaction as each message".into(),
        index_count: 1,
        database_size: bytes,
        last_update_unix_ms: newest,
        indexed_documents: docs,
        is_indexing: false,
    })
}

pub async fn member_profile(
    m: &Messages,
    g: &Guilds,
    r: Request<pb::GetGuildMemberProfileRequest>,
) -> Reply<pb::GuildMemberProfile> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let (member, count, recent) = m.member_profile(&s, &r.guild_id, &r.user_id).await?;
    let admins = |id: &str| g.is_admin(id);
    ok(pb::GuildMemberProfile {
        summary: Some(convert::member(&member, &admins)),
        message_count: i32::try_from(count).unwrap_or(i32::MAX),
        recent_messages: recent.iter().map(convert::message).collect(),
    })
}

/// `ListRecentMentions` (guildhall addition).
pub async fn recent_mentions(
    m: &Messages,
    r: Request<pb::ListRecentMentionsRequest>,
) -> Reply<pb::ListRecentMentionsResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let limit = u32::try_from(r.limit)
        .map_err(|_| Status::invalid_argument("limit: must be 0 (default 25) to 100"))?;
    let page = m
        .recent_mentions(&s, &r.before_message_id, limit, &r.guild_id)
        .await?;
    ok(pb::ListRecentMentionsResponse {
        messages: page.messages.iter().map(convert::message).collect(),
        next_before_message_id: page.next_before,
    })
}

/// `RemoveRecentMention` (guildhall addition).
pub async fn remove_mention(
    m: &Messages,
    r: Request<pb::RemoveRecentMentionRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    m.remove_mention(&s, &r.get_ref().message_id).await?;
    ok(pb::Empty {})
}

/// `AckRecentMentions` (guildhall addition).
pub async fn ack_mentions(
    m: &Messages,
    r: Request<pb::AckRecentMentionsRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    m.ack_mentions(&s, &r.get_ref().through_message_id).await?;
    ok(pb::Empty {})
}
