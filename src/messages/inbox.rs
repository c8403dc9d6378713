//! Recent mentions: the messages that mentioned a user across this node's guilds and DMs (by
//! their id, a role they hold, or the guild's default role, `@everyone`), newest first, paged;
//! each can be removed from the list, and the whole list acknowledged up to a message.
//!
//! The index (`store::mentions`) answers which messages name any of the user's targets; each
//! candidate is then judged as a reader would be: the user must be a member who may read its
//! channel now, it must not be their own, and its sender must not be someone they blocked.

use std::collections::HashMap;

use super::{Messages, parse_id};
use crate::error::{Error, Result};
use crate::guilds::{Guilds, permissions};
use crate::store::guilds as gdb;
use crate::store::mentions as db;
use crate::store::messages::{self as mdb, MessageView};
use crate::store::{SessionInfo, StorageError};

/// `ListRecentMentions` page when the request asks for 0.
pub const MENTIONS_PAGE_DEFAULT: u32 = 25;
/// Largest `ListRecentMentions` page.
pub const MENTIONS_PAGE_MAX: u32 = 100;
/// Index rows read for one page at most: candidates the caller may not see are skipped, and this
/// bounds the skipping (the page then ends early, with `next_before` to go on from).
const CANDIDATES_MAX: u32 = 2000;

/// A page of recent mentions.
#[derive(Debug, Clone)]
pub struct MentionPage {
    /// The messages, newest first.
    pub messages: Vec<MessageView>,
    /// Where the next page starts (`before_message_id`), empty when there is none.
    pub next_before: String,
}

/// The caller's mention targets: their id, and in each of their guilds (or only `guild_id`) the
/// guild's id (`@everyone`) and the roles they hold.
fn targets(
    c: &rusqlite::Connection,
    user_id: &str,
    guild_id: Option<&str>,
) -> std::result::Result<Vec<String>, StorageError> {
    let mut targets = vec![user_id.to_owned()];
    for guild in gdb::guilds_of(c, user_id)? {
        if guild_id.is_some_and(|g| g != guild.id) {
            continue;
        }
        if let Some(member) = gdb::member(c, &guild.id, user_id)? {
            targets.extend(member.role_ids);
        }
        targets.push(guild.id);
    }
    Ok(targets)
}

impl Messages {
    /// `ListRecentMentions`: up to `limit` messages below `before` (a message id; empty: from the
    /// newest), in one guild if `guild_id` is set.
    pub async fn recent_mentions(
        &self,
        caller: &SessionInfo,
        before: &str,
        limit: u32,
        guild_id: &str,
    ) -> Result<MentionPage> {
        let limit = match limit {
            0 => MENTIONS_PAGE_DEFAULT,
            1..=MENTIONS_PAGE_MAX => limit,
            _ => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be 0 (default {MENTIONS_PAGE_DEFAULT}) to {MENTIONS_PAGE_MAX}"),
                ));
            }
        };
        let before = if before.is_empty() {
            i64::MAX as u64
        } else {
            parse_id("before_message_id", before)?
        };
        let only = (!guild_id.is_empty()).then(|| guild_id.to_owned());
        let me = caller.user_id.clone();
        let page = self
            .store()
            .read(move |c| {
                let targets = targets(c, &me, only.as_deref())?;
                let elsewhere = |guild: &str| only.as_deref().is_some_and(|g| g != guild);
                let mut out = Vec::new();
                let mut cursor = before;
                let mut read = 0;
                let mut readable: HashMap<String, bool> = HashMap::new();
                while out.len() < limit as usize && read < CANDIDATES_MAX {
                    let batch = db::mentioning(c, &me, &targets, cursor, limit * 2)?;
                    if batch.is_empty() {
                        cursor = 0;
                        break;
                    }
                    read += batch.len() as u32;
                    for id in batch {
                        cursor = id;
                        let Some(view) = mdb::view(c, id)? else {
                            continue;
                        };
                        let m = &view.message;
                        if m.sender_id == me
                            || elsewhere(&m.guild_id)
                            || crate::store::people::blocked(c, &me, &m.sender_id)?
                        {
                            continue;
                        }
                        let may_read = match readable.get(&m.guild_id) {
                            Some(known) => *known,
                            None => {
                                let ok = match gdb::context(c, &m.guild_id, &me)? {
                                    Some(ctx) => Guilds::access_from(ctx, &me)
                                        .is_ok_and(|a| a.standing.has(permissions::MESSAGES_READ)),
                                    None => false,
                                };
                                readable.insert(m.guild_id.clone(), ok);
                                ok
                            }
                        };
                        if may_read {
                            out.push(view);
                            if out.len() == limit as usize {
                                break;
                            }
                        }
                    }
                }
                Ok(MentionPage {
                    next_before: if cursor == 0 {
                        String::new()
                    } else {
                        cursor.to_string()
                    },
                    messages: out,
                })
            })
            .await?;
        Ok(page)
    }

    /// `RemoveRecentMention`: takes one message out of the caller's recent mentions (it stays in
    /// its channel).
    pub async fn remove_mention(&self, caller: &SessionInfo, message_id: &str) -> Result<()> {
        let id = parse_id("message_id", message_id)?;
        let me = caller.user_id.clone();
        self.guilds
            .store()
            .write(move |tx| db::remove(tx, &me, id))
            .await?;
        Ok(())
    }

    /// `AckRecentMentions`: every mention up to `message_id` leaves the caller's list.
    pub async fn ack_mentions(&self, caller: &SessionInfo, message_id: &str) -> Result<()> {
        let id = parse_id("through_message_id", message_id)?;
        let me = caller.user_id.clone();
        self.guilds
            .store()
            .write(move |tx| db::acknowledge(tx, &me, id))
            .await?;
        Ok(())
    }
}
