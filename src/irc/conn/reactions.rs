//! What IRCv3 carries beside text: reactions (`+draft/react`, `+draft/unreact` on a `TAGMSG`
//! replying to a message), typing (`+typing`), and deletions (`draft/message-redaction`'s
//! `REDACT`), both ways. Client-only tags reach only clients that took `message-tags`.

use super::messages::DmStart;
use super::*;

impl Conn {
    /// `TAGMSG <target>`: a reaction to the message its `+draft/reply` names, or a typing
    /// notice; other client tags are dropped (the node keeps no free-form tags).
    pub(super) async fn tagmsg(&mut self, target: &str, tags: &[Tag]) {
        if target.is_empty() {
            self.reply(
                Response::ERR_NEEDMOREPARAMS,
                vec!["TAGMSG".into(), "Not enough parameters".into()],
            );
            return;
        }
        let reaction = match (
            tag_value(tags, "+draft/react"),
            tag_value(tags, "+draft/unreact"),
        ) {
            (Some(emoji), _) => Some((emoji, true)),
            (None, Some(emoji)) => Some((emoji, false)),
            (None, None) => None,
        };
        let typing = tag_value(tags, "+typing");
        if reaction.is_none() && typing.is_none() {
            return;
        }
        let Some(channel_id) = self.target_channel(target, DmStart::Never).await else {
            return;
        };
        let input = if let Some((emoji, add)) = reaction {
            let Some(message_id) = tag_value(tags, "+draft/reply") else {
                self.fail(
                    "TAGMSG",
                    "INVALID_PARAMS",
                    vec![target.to_owned()],
                    "A reaction needs +draft/reply naming the message",
                );
                return;
            };
            SendInput {
                channel_id,
                reaction: Some((message_id, emoji, add)),
                ..SendInput::default()
            }
        } else {
            SendInput {
                channel_id,
                typing: Some(typing.as_deref() == Some("active")),
                ..SendInput::default()
            }
        };
        let echo = input
            .reaction
            .clone()
            .filter(|_| self.caps.contains("echo-message") && self.caps.contains("message-tags"));
        let session = self.session();
        if let Err(e) = self.gateway.messages.send(&session, input).await {
            self.fail(
                "TAGMSG",
                "INVALID_PARAMS",
                vec![target.to_owned()],
                &e.to_string(),
            );
            return;
        }
        // Echoed at once, as a message is, so a labeled TAGMSG's answer is its echo; the
        // reaction's event is then not echoed again.
        if let Some((message_id, emoji, added)) = echo {
            let (me, nick) = (self.me().id.clone(), self.nick.clone());
            self.remember_echo(reaction_key(&message_id, &emoji, added));
            let target = self.echo_target(target);
            self.send_reaction(&me, &nick, &target, emoji, message_id, added);
        }
    }

    /// `REDACT <target> <msgid> [:reason]`: deletes the message (one's own, or anyone's with
    /// `messages.manage`), as `DeleteMessage`.
    pub(super) async fn redact(&mut self, args: Vec<String>) {
        let [target, msgid, ..] = args.as_slice() else {
            self.fail("REDACT", "NEED_MORE_PARAMS", vec![], "Missing parameters");
            return;
        };
        let (target, msgid) = (target.clone(), msgid.clone());
        let Some(channel_id) = self.target_channel(&target, DmStart::Never).await else {
            return;
        };
        let session = self.session();
        let deleted = self
            .gateway
            .messages
            .delete(&session, &channel_id, &msgid)
            .await;
        match deleted {
            Ok(()) => {}
            Err(crate::error::Error::NotFound(_) | crate::error::Error::InvalidArgument { .. }) => {
                self.fail(
                    "REDACT",
                    "UNKNOWN_MSGID",
                    vec![target, msgid],
                    "No such message in this channel",
                );
            }
            Err(e) => self.fail(
                "REDACT",
                "REDACT_FORBIDDEN",
                vec![target, msgid],
                &e.to_string(),
            ),
        }
    }

    /// A typing indicator from the node, as a `TAGMSG` with `+typing` (for clients with
    /// `message-tags`).
    pub(super) async fn on_typing(&mut self, message: pb::Message) {
        let Some(typing) = message.typing else { return };
        if !self.caps.contains("message-tags") || typing.user_id == self.me().id {
            return;
        }
        let Some(target) = self.event_target(&message.channel_id, false).await else {
            return;
        };
        let nick = self.nick_of(&typing.user_id, "").await;
        let state = if typing.is_typing { "active" } else { "done" };
        let from = self.user_prefix(&nick);
        self.send(Message {
            tags: Some(vec![Tag("+typing".into(), Some(state.into()))]),
            prefix: Some(from),
            command: Command::Raw("TAGMSG".into(), vec![target]),
        });
    }

    /// A reaction added or removed, as a `TAGMSG` from the reacting user with `+draft/react`
    /// (or `+draft/unreact`) and `+draft/reply` naming the message.
    pub(super) async fn on_reaction(&mut self, message: pb::Message) {
        let Some(reaction) = message.reaction else {
            return;
        };
        if !self.caps.contains("message-tags") || reaction.user_id.is_empty() {
            return;
        }
        let mine = reaction.user_id == self.me().id;
        if mine && !self.caps.contains("echo-message") {
            return;
        }
        let key = reaction_key(&reaction.target_message_id, &reaction.emoji, reaction.added);
        if mine && self.echoed.remove(&key) {
            return;
        }
        let Some(target) = self.event_target(&message.channel_id, mine).await else {
            return;
        };
        let nick = self.nick_of(&reaction.user_id, "").await;
        self.send_reaction(
            &reaction.user_id,
            &nick,
            &target,
            reaction.emoji,
            reaction.target_message_id,
            reaction.added,
        );
    }

    /// A reaction as IRC shows it: `TAGMSG` from the reacting user with `+draft/react` (or
    /// `+draft/unreact`) and `+draft/reply` naming the message.
    fn send_reaction(
        &mut self,
        user_id: &str,
        nick: &str,
        target: &str,
        emoji: String,
        message_id: String,
        added: bool,
    ) {
        let key = if added {
            "+draft/react"
        } else {
            "+draft/unreact"
        };
        let mut tags = vec![
            Tag(key.into(), Some(emoji)),
            Tag("+draft/reply".into(), Some(message_id)),
        ];
        if self.caps.contains("account-tag") && self.accounts.contains(user_id) {
            tags.push(Tag("account".into(), Some(nick.to_owned())));
        }
        let from = self.user_prefix(nick);
        self.send(Message {
            tags: Some(tags),
            prefix: Some(from),
            command: Command::Raw("TAGMSG".into(), vec![target.to_owned()]),
        });
    }

    /// A deleted message, as `REDACT <target> <msgid>` from who deleted it (the server when a
    /// server admin did) for clients with `draft/message-redaction` (others have no way to show
    /// it).
    pub(super) async fn on_deleted(&mut self, deleted: pb::MessageDeletedEvent) {
        if !self.caps.contains("draft/message-redaction") {
            return;
        }
        let mine = deleted.deleted_by == self.me().id;
        let Some(target) = self.event_target(&deleted.channel_id, mine).await else {
            return;
        };
        let from = if deleted.deleted_by.is_empty() {
            self.server()
        } else {
            let nick = self.nick_of(&deleted.deleted_by, "").await;
            self.user_prefix(&nick)
        };
        self.send(Message {
            tags: None,
            prefix: Some(from),
            command: Command::Raw("REDACT".into(), vec![target, deleted.message_id]),
        });
    }
}

/// How an echoed reaction is remembered among echoed messages' ids (which are digits only, so
/// the two never meet).
fn reaction_key(message_id: &str, emoji: &str, added: bool) -> String {
    format!("react {message_id} {emoji} {added}")
}
