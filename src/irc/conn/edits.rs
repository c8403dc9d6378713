//! Message edits on IRC. IRC has no way to change a line already shown (IRCv3's message editing
//! is still a proposal), so an edit made elsewhere arrives as a correction: a `PRIVMSG` from the
//! author whose text is `* ` and the new text, as people type corrections by hand, tagged
//! `+draft/reply` with the edited message's `msgid` so clients that show replies tie it to the
//! original. It carries no `msgid` of its own (the message keeps its id; `CHATHISTORY` shows it
//! with its current text), and its `time` is the edit's.
//!
//! `message_updated` also announces pins and threads, which change nothing an IRC client shows:
//! an update is an edit to show only if its `edited_at` is new to this connection and recent
//! ([`SHOWN_WITHIN_MS`]): a pin of a message edited long ago doesn't repeat the old edit.

use std::collections::{HashMap, VecDeque};

use irc_proto::message::Tag;

use super::{Conn, server_time};
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1 as pb;

/// How recent an edit must be to be shown live, milliseconds: an update arrives within moments
/// of the edit, and a later update of the same message (a pin) carries an older `edited_at`.
pub const SHOWN_WITHIN_MS: u64 = 60_000;

/// Edits remembered per connection, so an update that repeats an edit already shown is skipped.
const REMEMBERED: usize = 256;

/// The edits this connection has shown: message id → the `edited_at` shown, oldest first.
#[derive(Debug, Default)]
pub(super) struct EditsShown {
    at: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl EditsShown {
    /// Records an edit; false if it was shown already.
    fn first_time(&mut self, message_id: &str, edited_at_ms: u64) -> bool {
        if self.at.get(message_id) == Some(&edited_at_ms) {
            return false;
        }
        if self
            .at
            .insert(message_id.to_owned(), edited_at_ms)
            .is_none()
        {
            self.order.push_back(message_id.to_owned());
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.at.remove(&oldest);
            }
        }
        true
    }
}

fn millis(at: &prost_types::Timestamp) -> u64 {
    let seconds = u64::try_from(at.seconds).unwrap_or_default();
    let nanos = u64::try_from(at.nanos).unwrap_or_default();
    seconds
        .saturating_mul(1000)
        .saturating_add(nanos / 1_000_000)
}

impl Conn {
    /// A `message_updated` event that is not a reaction: shown as a correction if it is a new
    /// edit.
    pub(super) async fn on_updated(&mut self, message: pb::Message) {
        let Some(edited_at) = message.edited_at.as_ref() else {
            return;
        };
        let at = millis(edited_at);
        if now_ms().saturating_sub(at) > SHOWN_WITHIN_MS || !self.edits.first_time(&message.id, at)
        {
            return;
        }
        let mine = message.sender_id == self.me().id;
        if mine && !self.caps.contains("echo-message") {
            return;
        }
        let Some(target) = self.event_target(&message.channel_id, mine).await else {
            return;
        };
        let nick = if message.webhook_id.is_empty() {
            self.nick_of(&message.sender_id, "").await
        } else {
            super::sanitize_nick(&message.sender_name)
        };
        let mut tags = Vec::new();
        if self.caps.contains("server-time") {
            tags.push(Tag("time".into(), Some(server_time(edited_at))));
        }
        if self.caps.contains("message-tags") {
            tags.push(Tag("+draft/reply".into(), Some(message.id.clone())));
        }
        self.send_text(&nick, &target, tags, &format!("* {}", message.text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_is_shown_once_and_memory_is_bounded() {
        let mut shown = EditsShown::default();
        assert!(shown.first_time("m1", 10));
        assert!(!shown.first_time("m1", 10), "the same edit again (a pin)");
        assert!(shown.first_time("m1", 20), "a second edit");
        for i in 0..1000 {
            shown.first_time(&format!("x{i}"), 1);
        }
        assert!(shown.at.len() <= REMEMBERED && shown.order.len() <= REMEMBERED);
    }
}
