//! Messages both ways: PRIVMSG to channels and DMs, and the events that become IRC lines.

use super::*;

impl Conn {
    pub(super) async fn privmsg(&mut self, target: &str, text: String) {
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
                    return;
                }
            }
        } else {
            match self.dm_channel(target).await {
                Ok(id) => id,
                Err(why) => {
                    self.reply(Response::ERR_NOSUCHNICK, vec![target.to_owned(), why]);
                    return;
                }
            }
        };
        let input = SendInput {
            channel_id,
            idempotency_key: String::new(),
            text,
            typing: None,
            reaction: None,
            components: Vec::new(),
            reply_to: String::new(),
            metadata: Default::default(),
            media_file_id: String::new(),
        };
        let session = self.session();
        if let Err(e) = self.gateway.messages.send(&session, input).await {
            self.reply(
                Response::ERR_CANNOTSENDTOCHAN,
                vec![target.to_owned(), e.to_string()],
            );
        }
    }

    /// The channel of the DM between the user and the user whose username is `nick`: one they
    /// both joined (DMs are started from a client, `CreateDM`; IRC carries their messages).
    pub(super) async fn dm_channel(&self, nick: &str) -> Result<String, String> {
        let (me, name) = (self.me().id.clone(), nick.to_ascii_lowercase());
        let found = self
            .gateway
            .guilds
            .store()
            .read(move |c| {
                let Some(them) = users::load_user_by_irc_name(c, &name)? else {
                    return Ok(Err("No such nick"));
                };
                let Some(invite) = crate::store::dms::between(c, &me, &them.id)? else {
                    return Ok(Err(
                        "No DM with this user yet; start one from a client (CreateDM)",
                    ));
                };
                let both = gdb::member(c, &invite.guild_id, &me)?.is_some()
                    && gdb::member(c, &invite.guild_id, &them.id)?.is_some();
                if !both {
                    return Ok(Err("Your DM with this user is not accepted yet"));
                }
                Ok(gdb::channels(c, &invite.guild_id)?
                    .into_iter()
                    .find(|ch| !ch.is_thread)
                    .map(|ch| ch.id)
                    .ok_or("Your DM with this user has no channel"))
            })
            .await
            .map_err(|e| e.to_string())?;
        found.map_err(str::to_owned)
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
                    self.on_message(message).await;
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
                if !self.caps.contains("away-notify") || update.user_id == self.me().id {
                    return;
                }
                let nick = self.nick_of(&update.user_id, "").await;
                let away = match pb::PresenceStatus::try_from(update.status) {
                    Ok(pb::PresenceStatus::Online) => None,
                    Ok(pb::PresenceStatus::Busy) => Some("Busy"),
                    _ => Some("Offline"),
                };
                let from = self.user_prefix(&nick);
                self.send(Message {
                    tags: None,
                    prefix: Some(from),
                    command: Command::AWAY(away.map(str::to_owned)),
                });
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
        if mine && !self.caps.contains("echo-message") {
            return;
        }
        let target = match self.joined.get(&message.channel_id) {
            Some(joined) => joined.name.clone(),
            None => match self.dm_peer(&message.channel_id).await {
                // A DM: to the user's nick, or (their own, echoed) to the other member's.
                Some(peer) if mine => self.nick_of(&peer, "").await,
                Some(_) => self.nick.clone(),
                None => return,
            },
        };
        self.send_message_lines(&message, &target, Vec::new()).await;
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
            tags.push(Tag("msgid".into(), Some(message.id.clone())));
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
        for line in names::text_lines(&text) {
            let from = self.user_prefix(&nick);
            self.send(Message {
                tags: (!tags.is_empty()).then(|| tags.clone()),
                prefix: Some(from),
                command: Command::PRIVMSG(target.to_owned(), line),
            });
        }
    }
}
