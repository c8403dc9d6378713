//! Messages both ways: PRIVMSG to channels and DMs, and the events that become IRC lines.

use super::*;

/// Whether finding a DM may start or accept one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DmStart {
    /// A message: asks for a DM that does not exist yet, accepts one the other user asked for.
    Ask,
    /// Anything else (a reaction, typing, a redaction, a read marker): only an open DM.
    Never,
}

/// Ids of messages echoed at sending kept to skip their event; past this the set starts over
/// (an event not seen by then will not come: the sender can't read the channel).
const ECHOED_MAX: usize = 256;

impl Conn {
    /// `PRIVMSG`/`NOTICE` to a joined channel or a nick (a DM), as `SendMessage`; `reply_to` is
    /// the message a `+draft/reply` tag names.
    pub(super) async fn privmsg(&mut self, target: &str, text: String, reply_to: Option<String>) {
        if !target.starts_with('#') {
            self.tell_if_away(target).await;
        }
        let Some(channel_id) = self.target_channel(target, DmStart::Ask).await else {
            return;
        };
        let input = SendInput {
            channel_id,
            text,
            reply_to: reply_to.unwrap_or_default(),
            ..SendInput::default()
        };
        self.send_input(target, input).await;
    }

    /// Sends a message from this client and, with `echo-message`, echoes it at once (so a
    /// labeled command's answer carries the echo); the event that follows is then not echoed.
    pub(super) async fn send_input(&mut self, target: &str, input: SendInput) {
        let session = self.session();
        match self.gateway.messages.send(&session, input).await {
            Ok(crate::messages::Sent::Message(view)) => {
                if self.caps.contains("echo-message") {
                    let message = crate::convert::message(&view);
                    let echo_target = self.echo_target(target);
                    self.remember_echo(message.id.clone());
                    self.send_message_lines(&message, &echo_target, Vec::new())
                        .await;
                }
            }
            Ok(crate::messages::Sent::Typing(_)) => {}
            Err(e) => self.reply(
                Response::ERR_CANNOTSENDTOCHAN,
                vec![target.to_owned(), e.to_string()],
            ),
        }
    }

    /// Remembers that `key` (a message id) was echoed already, so its event is not echoed
    /// again; a bounded memory.
    pub(super) fn remember_echo(&mut self, key: String) {
        if self.echoed.len() >= ECHOED_MAX {
            self.echoed.clear();
        }
        self.echoed.insert(key);
    }

    /// The target an echo names: the channel's canonical name, or the nick written to.
    pub(super) fn echo_target(&self, target: &str) -> String {
        self.joined_id(target)
            .and_then(|id| self.joined.get(&id))
            .map_or_else(|| target.to_owned(), |j| j.name.clone())
    }

    /// The channel behind a message target: a joined channel, or the DM with a nick (asked for
    /// or accepted only when `start` says so: a message does, a reaction or typing does not);
    /// `None` after telling the client why there is none.
    pub(super) async fn target_channel(&mut self, target: &str, start: DmStart) -> Option<String> {
        let channel_id = if target.starts_with('#') {
            match self.joined_id(target) {
                Some(id) => id,
                None => {
                    let known = self.resolve(target).await.is_some();
                    let (code, why) = if known {
                        (Response::ERR_CANNOTSENDTOCHAN, "Join the channel first")
                    } else {
                        (Response::ERR_NOSUCHCHANNEL, "No such channel")
                    };
                    self.reply(code, vec![target.to_owned(), why.into()]);
                    return None;
                }
            }
        } else {
            match self.dm_channel(target, start).await {
                Ok(id) => id,
                Err(why) => {
                    self.reply(Response::ERR_NOSUCHNICK, vec![target.to_owned(), why]);
                    return None;
                }
            }
        };
        Some(channel_id)
    }

    /// The channel of the DM between the user and the user whose username is `nick`. With no DM
    /// yet, one is asked for (`CreateDM`, for users of this node) and the message is not sent;
    /// messaging back the user who asked accepts it (`AcceptDMInvite`).
    pub(super) async fn dm_channel(&self, nick: &str, start: DmStart) -> Result<String, String> {
        let (me, name) = (self.me().id.clone(), nick.to_ascii_lowercase());
        let found = self
            .gateway
            .guilds
            .store()
            .read(move |c| {
                let Some(them) = users::load_user_by_irc_name(c, &name)? else {
                    return Ok(None);
                };
                let Some(invite) = crate::store::dms::between(c, &me, &them.id)? else {
                    return Ok(Some((them, None, false)));
                };
                let both = gdb::member(c, &invite.guild_id, &me)?.is_some()
                    && gdb::member(c, &invite.guild_id, &them.id)?.is_some();
                Ok(Some((them, Some(invite), both)))
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some((them, invite, both)) = found else {
            return Err("No such nick".into());
        };
        let session = self.session();
        let invite = match invite {
            Some(invite) if both => invite,
            Some(invite)
                if start == DmStart::Ask
                    && invite.target_user_id == session.user_id
                    && invite.status == "pending" =>
            {
                let dms = self
                    .gateway
                    .dms
                    .as_ref()
                    .ok_or("DMs are not available here")?;
                dms.accept(&session, &invite.invite_id)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Some(_) => return Err("Your DM with this user is not accepted yet".into()),
            None if start == DmStart::Never => {
                return Err("No DM with this user yet; message them to ask for one".into());
            }
            None => {
                let dms = self
                    .gateway
                    .dms
                    .as_ref()
                    .ok_or("DMs are not available here")?;
                if them.homeserver != dms.address() {
                    return Err(
                        "No DM with this user yet; they live on another server: start one from \
                         a client (CreateDM)"
                            .into(),
                    );
                }
                dms.create(&session, &them.id)
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(format!(
                    "Asked {nick} for a DM; this message was not sent. The DM opens when they \
                     accept (from a client, or by messaging you back on IRC)"
                ));
            }
        };
        let guild = invite.guild_id.clone();
        let channel = self
            .gateway
            .guilds
            .store()
            .read(move |c| gdb::channels(c, &guild))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|ch| !ch.is_thread)
            .map(|ch| ch.id);
        channel.ok_or_else(|| "Your DM with this user has no channel".into())
    }

    /// Whether `channel_id` (not joined) is a DM of the user's, and with whom.
    pub(super) async fn dm_peer(&mut self, channel_id: &str) -> Option<String> {
        if let Some(known) = self.dms.get(channel_id) {
            return known.clone();
        }
        let (id, me) = (channel_id.to_owned(), self.me().id.clone());
        let peer = self
            .gateway
            .guilds
            .store()
            .read(move |c| {
                let Some(channel) = gdb::channel(c, &id)? else {
                    return Ok(None);
                };
                let Some(guild) = gdb::guild(c, &channel.guild_id)? else {
                    return Ok(None);
                };
                if !guild.is_dm {
                    return Ok(None);
                }
                let (members, _) = gdb::members(c, &guild.id, 2, 0)?;
                Ok(members.into_iter().map(|m| m.user_id).find(|u| *u != me))
            })
            .await
            .ok()
            .flatten();
        self.dms.insert(channel_id.to_owned(), peer.clone());
        peer
    }

    pub(super) async fn nick_of(&mut self, user_id: &str, fallback: &str) -> String {
        if let Some(nick) = self.nicks.get(user_id) {
            return nick.clone();
        }
        let id = user_id.to_owned();
        let name = self
            .gateway
            .guilds
            .store()
            .read(move |c| Ok(users::load_user(c, &id)?.and_then(|u| u.irc_name)))
            .await
            .ok()
            .flatten();
        let nick = match name {
            Some(name) => {
                self.accounts.insert(user_id.to_owned());
                name
            }
            // A webhook (or a sender this node has no record of) shows under its own name.
            None if !fallback.is_empty() => sanitize_nick(fallback),
            None => names::nick(user_id, None),
        };
        self.nicks.insert(user_id.to_owned(), nick.clone());
        nick
    }

    /// Turns one event of the user's subscription into what the client sees.
    pub(super) async fn on_event(&mut self, bytes: &[u8]) {
        use pb::stream_response::Event;
        let Ok(event) = pb::StreamResponse::decode(bytes) else {
            return;
        };
        match event.event {
            Some(Event::MessageCreated(created)) => {
                if let Some(message) = created.message {
                    if message.typing.is_some() {
                        self.on_typing(message).await;
                    } else {
                        self.on_message(message).await;
                    }
                }
            }
            Some(Event::MessageUpdated(updated)) => match updated.message {
                Some(message) if message.reaction.is_some() => self.on_reaction(message).await,
                Some(message) => self.on_updated(message).await,
                None => {}
            },
            Some(Event::MessageDeleted(deleted)) => self.on_deleted(deleted).await,
            Some(Event::ProfileUpdated(updated)) => {
                self.on_profile_updated(updated.user_id, updated.new_is_bot)
                    .await;
            }
            Some(Event::Delivery(receipt)) => self.on_receipt(receipt).await,
            Some(Event::MemberUpdated(updated)) => self.on_member_updated(updated).await,
            Some(Event::RoleUpdated(role)) => self.on_role_updated(event.event_id, role).await,
            Some(Event::UserUpdated(updated)) => {
                if let Some(user) = updated.user {
                    self.on_user_updated(user).await;
                }
            }
            Some(Event::MemberJoined(joined)) => {
                let Some(user) = joined.user else { return };
                if user.id == self.me().id {
                    return;
                }
                let nick = names::nick(&user.id, Some(user.irc_name.as_str()));
                self.nicks.insert(user.id.clone(), nick.clone());
                let account = (!user.irc_name.is_empty()).then_some(user.irc_name.as_str());
                if account.is_some() {
                    self.accounts.insert(user.id.clone());
                }
                for channel in self.channels_of(&joined.guild_id) {
                    let join = self.join_line(&nick, account, &user.name, &channel);
                    self.send(join);
                }
            }
            Some(Event::MemberRemoved(removed)) => {
                let channels = self.channels_of(&removed.guild_id);
                if removed.user_id == self.me().id {
                    self.joined.retain(|_, j| j.guild_id != removed.guild_id);
                    for channel in channels {
                        let me = self.user_prefix(&self.nick);
                        self.send(Message {
                            tags: None,
                            prefix: Some(me),
                            command: Command::PART(
                                channel,
                                Some("You are no longer a member of this guild".into()),
                            ),
                        });
                    }
                    return;
                }
                let nick = self.nick_of(&removed.user_id, "").await;
                for channel in channels {
                    let from = self.user_prefix(&nick);
                    self.send(Message {
                        tags: None,
                        prefix: Some(from),
                        command: Command::PART(channel, Some("Left the guild".into())),
                    });
                }
            }
            Some(Event::Presence(update)) => {
                if update.user_id == self.me().id {
                    return;
                }
                let watched = !self.monitored.is_empty();
                if !watched && !self.caps.contains("away-notify") {
                    return;
                }
                let nick = self.nick_of(&update.user_id, "").await;
                self.monitor_presence(&nick, update.status != pb::PresenceStatus::Offline as i32);
                if self.caps.contains("away-notify") {
                    self.show_away(&nick, &update.user_id, update.status);
                }
            }
            Some(Event::ChannelDeleted(deleted)) => {
                if let Some(joined) = self.joined.remove(&deleted.channel_id) {
                    let me = self.user_prefix(&self.nick);
                    self.send(Message {
                        tags: None,
                        prefix: Some(me),
                        command: Command::PART(joined.name, Some("Channel deleted".into())),
                    });
                }
            }
            _ => {}
        }
    }

    /// The names of the joined channels of `guild_id`.
    pub(super) fn channels_of(&self, guild_id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .joined
            .values()
            .filter(|j| j.guild_id == guild_id)
            .map(|j| j.name.clone())
            .collect();
        names.sort_unstable();
        names
    }

    /// A message in a joined channel, or in one of the user's DMs, as PRIVMSG lines.
    pub(super) async fn on_message(&mut self, message: pb::Message) {
        let mine = message.sender_id == self.me().id;
        if mine && (!self.caps.contains("echo-message") || self.echoed.remove(&message.id)) {
            return;
        }
        let Some(target) = self.event_target(&message.channel_id, mine).await else {
            return;
        };
        self.send_message_lines(&message, &target, Vec::new()).await;
    }

    /// Where an event of `channel_id` shows: a joined channel's name, or for a DM the user's
    /// nick (or, for what the user did themselves, the other member's); `None` if neither.
    pub(super) async fn event_target(&mut self, channel_id: &str, mine: bool) -> Option<String> {
        if let Some(joined) = self.joined.get(channel_id) {
            return Some(joined.name.clone());
        }
        match self.dm_peer(channel_id).await {
            Some(peer) if mine => Some(self.nick_of(&peer, "").await),
            Some(_) => Some(self.nick.clone()),
            None => None,
        }
    }

    /// Sends `message` to `target` as PRIVMSG lines from its sender, with `time` and `msgid` as
    /// the client asked, and `extra` tags (a batch).
    pub(super) async fn send_message_lines(
        &mut self,
        message: &pb::Message,
        target: &str,
        extra: Vec<Tag>,
    ) {
        let nick = if message.webhook_id.is_empty() {
            self.nick_of(&message.sender_id, "").await
        } else {
            sanitize_nick(&message.sender_name)
        };
        let mut tags = extra;
        if self.caps.contains("account-tag")
            && message.webhook_id.is_empty()
            && self.accounts.contains(&message.sender_id)
        {
            tags.push(Tag("account".into(), Some(nick.clone())));
        }
        if self.caps.contains("server-time")
            && let Some(at) = &message.created_at
        {
            tags.push(Tag("time".into(), Some(server_time(at))));
        }
        if self.caps.contains("message-tags") {
            let bot = !message.webhook_id.is_empty() || self.is_bot(&message.sender_id).await;
            if bot {
                tags.push(Tag("bot".into(), None));
            }
            tags.push(Tag("msgid".into(), Some(message.id.clone())));
            if !message.reply_to_message_id.is_empty() {
                tags.push(Tag(
                    "+draft/reply".into(),
                    Some(message.reply_to_message_id.clone()),
                ));
            }
        }
        let mut text = message.text.clone();
        if let Some(media) = &message.media {
            let note = format!("[attachment: {} {}]", media.mime_type, media.file_id);
            text = if text.is_empty() {
                note
            } else {
                format!("{text}\n{note}")
            };
        }
        self.send_text(&nick, target, tags, &text);
    }

    /// Sends `text` from `nick` to `target`: one `draft/multiline` batch where the client takes
    /// it and the text has several pieces, else a PRIVMSG per line, each with `tags`.
    pub(super) fn send_text(&mut self, nick: &str, target: &str, tags: Vec<Tag>, text: &str) {
        if self.caps.contains("draft/multiline") && names::text_pieces(text).len() > 1 {
            self.send_multiline(nick, target, tags, text);
            return;
        }
        for line in names::text_lines(text) {
            let from = self.user_prefix(nick);
            self.send(Message {
                tags: (!tags.is_empty()).then(|| tags.clone()),
                prefix: Some(from),
                command: Command::PRIVMSG(target.to_owned(), line),
            });
        }
    }
}
