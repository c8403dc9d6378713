//! Channels: which IRC name is which channel, JOIN, PART, TOPIC, WHOIS and LIST.

use super::*;

impl Conn {
    /// The channel a name points at, if it exists and the user is a member of its guild.
    pub(super) async fn resolve(&self, name: &str) -> Option<gdb::ChannelRecord> {
        let (guild, irc_name) = names::parse_channel(name)?;
        let guild = guild.or_else(|| self.gateway.default_guild.clone())?;
        let me = self.me().id.clone();
        self.gateway
            .guilds
            .store()
            .read(move |c| {
                if gdb::member(c, &guild, &me)?.is_none() {
                    return Ok(None);
                }
                Ok(gdb::channels(c, &guild)?
                    .into_iter()
                    .find(|ch| !ch.is_thread && ch.irc_name.as_deref() == Some(irc_name.as_str())))
            })
            .await
            .ok()
            .flatten()
    }

    pub(super) fn channel_name(&self, channel: &gdb::ChannelRecord) -> String {
        names::channel_name(
            self.gateway.default_guild.as_deref(),
            &channel.guild_id,
            channel.irc_name.as_deref().unwrap_or_default(),
        )
    }

    pub(super) fn joined_id(&self, name: &str) -> Option<String> {
        self.joined
            .iter()
            .find(|(_, joined)| joined.name.eq_ignore_ascii_case(name))
            .map(|(id, _)| id.clone())
    }

    /// `JOIN #channel`: a channel of one of the user's guilds they may read; in the default
    /// guild, an unknown `#name` is created for users who may create channels.
    pub(super) async fn join(&mut self, name: &str) {
        let channel = match self.resolve(name).await {
            Some(channel) => channel,
            None => match self.create_by_join(name).await {
                Ok(channel) => channel,
                // Another client may have made it between the look and the create (two JOINs
                // of a new channel at once): then this one joins it.
                Err(why) => match self.resolve(name).await {
                    Some(channel) => channel,
                    None => {
                        self.reply(Response::ERR_NOSUCHCHANNEL, vec![name.to_owned(), why]);
                        return;
                    }
                },
            },
        };
        let access = self
            .gateway
            .guilds
            .channel_access(&channel.id, &self.me().id)
            .await
            .and_then(|(_, access)| access.require(permissions::MESSAGES_READ));
        if let Err(e) = access {
            self.reply(
                Response::ERR_NOSUCHCHANNEL,
                vec![name.to_owned(), e.to_string()],
            );
            return;
        }
        let canonical = self.channel_name(&channel);
        if self.joined.contains_key(&channel.id) {
            return;
        }
        self.joined.insert(
            channel.id.clone(),
            Joined {
                name: canonical.clone(),
                guild_id: channel.guild_id.clone(),
            },
        );
        let (nick, real) = (self.nick.clone(), self.me().display_name.clone());
        let join = self.join_line(&nick, Some(&nick), &real, &canonical);
        self.send(join);
        self.join_marker(&channel.id, &canonical).await;
        self.reply(
            Response::RPL_TOPIC,
            vec![canonical.clone(), channel.name.clone()],
        );
        self.names(&channel.guild_id, &canonical).await;
    }

    /// Creates the default guild's channel `#irc_name` (`CreateChannel`: needs
    /// `channels.manage`); the reason it can't be, for any other name.
    async fn create_by_join(&mut self, name: &str) -> Result<gdb::ChannelRecord, String> {
        const NONE: &str = "No such channel";
        let (Some((None, irc_name)), Some(guild)) = (
            names::parse_channel(name),
            self.gateway.default_guild.clone(),
        ) else {
            return Err(NONE.into());
        };
        let session = self.session();
        let created = self
            .gateway
            .guilds
            .create_channel(&session, &guild, "", &irc_name, Some(&irc_name))
            .await;
        match created {
            Ok(channel) => Ok(channel),
            Err(crate::error::Error::PermissionDenied(_)) => Err(format!(
                "{NONE}; creating one needs {} in the default guild",
                permissions::CHANNELS_MANAGE
            )),
            Err(crate::error::Error::NotFound(_)) => Err(NONE.into()),
            Err(e) => Err(format!("{NONE}: {e}")),
        }
    }

    /// A JOIN of `nick` to `channel`, with the account and real name when the client took
    /// `extended-join`.
    pub(super) fn join_line(
        &self,
        nick: &str,
        account: Option<&str>,
        real_name: &str,
        channel: &str,
    ) -> Message {
        let command = if self.caps.contains("extended-join") {
            let real = if real_name.is_empty() {
                nick
            } else {
                real_name
            };
            Command::JOIN(
                channel.to_owned(),
                Some(account.unwrap_or("*").to_owned()),
                Some(real.to_owned()),
            )
        } else {
            Command::JOIN(channel.to_owned(), None, None)
        };
        Message {
            tags: None,
            prefix: Some(self.user_prefix(nick)),
            command,
        }
    }

    /// `PART #channel [:reason]`: the reason comes back in the `PART`, as on any IRC server.
    pub(super) fn part(&mut self, name: &str, reason: Option<String>) {
        match self.joined_id(name) {
            Some(id) => {
                let canonical = self.joined.remove(&id).map(|j| j.name).unwrap_or_default();
                let me = self.user_prefix(&self.nick);
                let reason = reason.filter(|r| !r.is_empty());
                self.send(Message {
                    tags: None,
                    prefix: Some(me),
                    command: Command::PART(canonical, reason),
                });
            }
            None => self.reply(
                Response::ERR_NOTONCHANNEL,
                vec![name.to_owned(), "You're not on that channel".into()],
            ),
        }
    }

    /// `TOPIC #channel`: the channel's name on the node is its topic; it is changed there.
    pub(super) async fn topic(&mut self, name: &str, change: bool) {
        let Some(channel) = self.resolve(name).await else {
            self.reply(
                Response::ERR_NOSUCHCHANNEL,
                vec![name.to_owned(), "No such channel".into()],
            );
            return;
        };
        let canonical = self.channel_name(&channel);
        if change {
            self.reply(
                Response::ERR_CHANOPRIVSNEEDED,
                vec![
                    canonical,
                    "The topic is the channel's name; rename it on the node (UpdateChannel)".into(),
                ],
            );
        } else {
            self.reply(Response::RPL_TOPIC, vec![canonical, channel.name]);
        }
    }

    pub(super) async fn user_by_nick(&self, nick: &str) -> Option<UserRecord> {
        let name = nick.to_ascii_lowercase();
        self.gateway
            .guilds
            .store()
            .read(move |c| users::load_user_by_irc_name(c, &name))
            .await
            .ok()
            .flatten()
    }

    /// `WHOIS nick`: the user's username, display name and server.
    pub(super) async fn whois(&mut self, nick: &str) {
        match self.user_by_nick(nick).await {
            Some(user) => {
                let nick = names::nick(&user.id, user.irc_name.as_deref());
                let server = self.gateway.server_name.clone();
                self.reply(
                    Response::RPL_WHOISUSER,
                    vec![
                        nick.clone(),
                        nick.clone(),
                        server.clone(),
                        "*".into(),
                        user.display_name.clone(),
                    ],
                );
                self.reply(
                    Response::RPL_WHOISSERVER,
                    vec![nick.clone(), server, "guildhall".into()],
                );
                if let Some(reason) = self.away_reason(&user.id) {
                    self.reply(Response::RPL_AWAY, vec![nick.clone(), reason]);
                }
                if self.is_bot(&user.id).await {
                    self.numeric_raw("335", vec![nick.clone(), "is a bot".into()]);
                }
            }
            None => self.reply(
                Response::ERR_NOSUCHNICK,
                vec![nick.to_owned(), "No such nick".into()],
            ),
        }
        self.reply(
            Response::RPL_ENDOFWHOIS,
            vec![nick.to_owned(), "End of /WHOIS list".into()],
        );
    }

    /// `LIST`: the channels with an irc_name in the user's guilds (not DMs), with their members
    /// counted and their names as topics.
    pub(super) async fn list(&mut self) {
        let me = self.me().id.clone();
        let channels = self
            .gateway
            .guilds
            .store()
            .read(move |c| {
                let mut out = Vec::new();
                for guild in gdb::guilds_of(c, &me)? {
                    if guild.is_dm {
                        continue;
                    }
                    let (_, count) = gdb::members(c, &guild.id, 0, 0)?;
                    for channel in gdb::channels(c, &guild.id)? {
                        if channel.irc_name.is_some() && !channel.is_thread {
                            out.push((channel, count));
                        }
                    }
                }
                Ok(out)
            })
            .await
            .unwrap_or_default();
        for (channel, count) in channels {
            let readable = self
                .gateway
                .guilds
                .channel_access(&channel.id, &self.me().id)
                .await
                .is_ok_and(|(_, access)| access.require(permissions::MESSAGES_READ).is_ok());
            if readable {
                let name = self.channel_name(&channel);
                self.reply(
                    Response::RPL_LIST,
                    vec![name, count.to_string(), channel.name.clone()],
                );
            }
        }
        self.reply(Response::RPL_LISTEND, vec!["End of /LIST".into()]);
    }
}
