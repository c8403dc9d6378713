//! Moderation from IRC: channel modes, KICK and MODE +b, through the node's own checks.

use super::*;

/// Most bans `MODE #channel b` lists.
pub const BAN_LIST_MAX: u32 = 100;

impl Conn {
    /// `MODE #channel`: its modes are `+nt` (no outside messages, topic set on the node); roles
    /// and permissions decide the rest, so no mode can be changed here, except `+b nick`, which
    /// bans the user from the guild (`BanUser`, with its permission checks).
    pub(super) async fn channel_mode(&mut self, name: &str, modes: Vec<Mode<ChannelMode>>) {
        let Some(channel) = self.resolve(name).await else {
            self.reply(
                Response::ERR_NOSUCHCHANNEL,
                vec![name.to_owned(), "No such channel".into()],
            );
            return;
        };
        let canonical = self.channel_name(&channel);
        match modes.as_slice() {
            [] => self.reply(Response::RPL_CHANNELMODEIS, vec![canonical, "+nt".into()]),
            // A ban list query (clients send it on joining): the guild's bans.
            [Mode::NoPrefix(ChannelMode::Ban)] | [Mode::Plus(ChannelMode::Ban, None)] => {
                self.ban_list(&channel.guild_id, &canonical).await;
            }
            [Mode::Minus(ChannelMode::Ban, _)] => self.reply(
                Response::ERR_CHANOPRIVSNEEDED,
                vec![
                    canonical,
                    "Guild bans are final on this node: there is no unban".into(),
                ],
            ),
            [Mode::Plus(ChannelMode::Ban, Some(mask))] => {
                let nick = mask.split('!').next().unwrap_or_default().to_owned();
                self.ban(&channel.guild_id, &canonical, &nick).await;
            }
            _ => self.reply(
                Response::ERR_CHANOPRIVSNEEDED,
                vec![
                    canonical,
                    "Modes follow the guild's roles and permissions; change them on the node"
                        .into(),
                ],
            ),
        }
    }

    /// `MODE #channel b`: the guild's bans as `nick!*@*` masks, newest first (at most
    /// [`BAN_LIST_MAX`]), for members who may ban; others see an empty list.
    pub(super) async fn ban_list(&mut self, guild_id: &str, canonical: &str) {
        let session = self.session();
        let bans = self
            .gateway
            .guilds
            .bans(&session, guild_id, BAN_LIST_MAX)
            .await
            .unwrap_or_default();
        for (user, by, at) in bans {
            let nick = self.nick_of(&user, "").await;
            let setter = self.nick_of(&by, "").await;
            self.reply(
                Response::RPL_BANLIST,
                vec![
                    canonical.to_owned(),
                    format!("{nick}!*@*"),
                    setter,
                    (at / 1000).to_string(),
                ],
            );
        }
        self.reply(
            Response::RPL_ENDOFBANLIST,
            vec![canonical.to_owned(), "End of channel ban list".into()],
        );
    }

    /// `KICK #channel nick`: removes the user from the channel's guild (`KickUser`: needs
    /// `members.kick` and a higher rank).
    pub(super) async fn kick(&mut self, name: &str, nick: &str, reason: &str) {
        let Some(channel) = self.resolve(name).await else {
            self.reply(
                Response::ERR_NOSUCHCHANNEL,
                vec![name.to_owned(), "No such channel".into()],
            );
            return;
        };
        let canonical = self.channel_name(&channel);
        let Some(user) = self.user_by_nick(nick).await else {
            self.reply(
                Response::ERR_NOSUCHNICK,
                vec![nick.to_owned(), "No such nick".into()],
            );
            return;
        };
        let session = self.session();
        let kicked = self
            .gateway
            .guilds
            .kick(&session, &channel.guild_id, &user.id, reason)
            .await;
        self.moderation_refusal(kicked, &canonical, nick);
    }

    /// `MODE #channel +b nick`: bans the user from the channel's guild (`BanUser`: needs
    /// `members.ban`; announced to other servers as a ban from gRPC is).
    pub(super) async fn ban(&mut self, guild_id: &str, canonical: &str, nick: &str) {
        let Some(user) = self.user_by_nick(nick).await else {
            self.reply(
                Response::ERR_NOSUCHNICK,
                vec![nick.to_owned(), "No such nick".into()],
            );
            return;
        };
        let Some(bans) = self.gateway.bans.clone() else {
            self.reply(
                Response::ERR_CHANOPRIVSNEEDED,
                vec![
                    canonical.to_owned(),
                    "Bans are not available on this node".into(),
                ],
            );
            return;
        };
        let session = self.session();
        let banned = bans.ban(&session, guild_id, &user.id, "").await;
        self.moderation_refusal(banned, canonical, nick);
    }

    /// Answers a refused kick or ban with the numeric that fits.
    pub(super) fn moderation_refusal(
        &mut self,
        outcome: crate::error::Result<()>,
        channel: &str,
        nick: &str,
    ) {
        match outcome {
            Ok(()) => {}
            Err(crate::error::Error::NotFound(_)) => self.reply(
                Response::ERR_USERNOTINCHANNEL,
                vec![
                    nick.to_owned(),
                    channel.to_owned(),
                    "They aren't a member of this guild".into(),
                ],
            ),
            Err(e) => self.reply(
                Response::ERR_CHANOPRIVSNEEDED,
                vec![channel.to_owned(), e.to_string()],
            ),
        }
    }
}
