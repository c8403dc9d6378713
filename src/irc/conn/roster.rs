//! Who is in a channel: NAMES and WHO (with WHOX), each member shown with the status prefixes
//! of their standing in the guild (`PREFIX=(qaoh)~&@%`): `~` the owner, `&` an administrator,
//! `@` who may kick or ban, `%` who may manage messages. Roles decide these; IRC only shows them.
//! With `multi-prefix` every prefix that applies is shown, highest first; without, the highest.

use super::*;
use crate::guilds::permissions::Standing;

/// The `PREFIX` ISUPPORT token: modes and their prefixes, highest first.
pub(super) const PREFIX: &str = "(qaoh)~&@%";

/// One member as NAMES and WHO show them.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) user_id: String,
    pub(super) nick: String,
    pub(super) real_name: String,
    /// Whether the nick is an account (a username), for WHOX's account field.
    pub(super) has_account: bool,
    /// Every status prefix that applies, highest first.
    pub(super) prefixes: String,
    /// Whether the member said they are a bot (`B` in `WHO`'s flags).
    pub(super) is_bot: bool,
}

/// The status prefixes of a standing, highest first.
pub(super) fn prefixes(standing: &Standing) -> String {
    let mut out = String::new();
    if standing.is_owner {
        out.push('~');
    }
    if standing.has(permissions::ADMINISTRATOR) {
        out.push('&');
    }
    if standing.has(permissions::MEMBERS_BAN) || standing.has(permissions::MEMBERS_KICK) {
        out.push('@');
    }
    if standing.has(permissions::MESSAGES_MANAGE) {
        out.push('%');
    }
    out
}

impl Conn {
    /// The members of a guild with their prefixes, at most [`NAMES_MAX`].
    pub(super) async fn roster(&self, guild_id: &str) -> Vec<Listed> {
        let guild = guild_id.to_owned();
        let bots = self
            .gateway
            .guilds
            .store()
            .read(move |c| crate::store::harmony::bots_in_guild(c, &guild))
            .await
            .unwrap_or_default();
        self.gateway
            .guilds
            .roster(guild_id, NAMES_MAX)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(row, standing)| Listed {
                nick: names::nick(&row.user_id, row.irc_name.as_deref()),
                has_account: row.irc_name.is_some(),
                is_bot: bots.contains(&row.user_id),
                user_id: row.user_id,
                real_name: row.display_name,
                prefixes: prefixes(&standing),
            })
            .collect()
    }

    /// The prefixes the client is shown: all of them with `multi-prefix`, else the highest.
    fn shown_prefixes(&self, prefixes: &str) -> String {
        if self.caps.contains("multi-prefix") {
            prefixes.to_owned()
        } else {
            prefixes.chars().take(1).collect()
        }
    }

    pub(super) async fn names(&mut self, guild_id: &str, name: &str) {
        let server = self.gateway.server_name.clone();
        let with_host = self.caps.contains("userhost-in-names");
        let roster = self.roster(guild_id).await;
        // Remembered to show role changes as MODE lines: that this guild's names were shown, and
        // the prefixes of the few who have any (not every member: a connection stays small).
        self.shown_guilds.insert(guild_id.to_owned());
        self.prefixes.retain(|(guild, _), _| guild != guild_id);
        for m in roster.iter().filter(|m| !m.prefixes.is_empty()) {
            self.prefixes
                .insert((guild_id.to_owned(), m.user_id.clone()), m.prefixes.clone());
        }
        let members: Vec<String> = roster
            .into_iter()
            .map(|m| {
                let prefix = self.shown_prefixes(&m.prefixes);
                if with_host {
                    format!("{prefix}{nick}!{nick}@{server}", nick = m.nick)
                } else {
                    format!("{prefix}{}", m.nick)
                }
            })
            .collect();
        let mut line = String::new();
        for entry in members {
            if line.len() + entry.len() + 1 > 350 {
                let full = std::mem::take(&mut line);
                self.reply(
                    Response::RPL_NAMREPLY,
                    vec!["=".into(), name.to_owned(), full],
                );
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&entry);
        }
        if !line.is_empty() {
            self.reply(
                Response::RPL_NAMREPLY,
                vec!["=".into(), name.to_owned(), line],
            );
        }
        self.reply(
            Response::RPL_ENDOFNAMES,
            vec![name.to_owned(), "End of /NAMES list".into()],
        );
    }

    /// `WHO #channel` (its members) or `WHO nick`; with a WHOX field list (`%fields[,token]`)
    /// the answer is `354` with those fields.
    pub(super) async fn who(&mut self, mask: &str, fields: Option<&str>) {
        let whox = fields.and_then(|f| f.strip_prefix('%')).map(|f| {
            let (letters, token) = f.split_once(',').unwrap_or((f, ""));
            (letters.to_owned(), token.to_owned())
        });
        let mut listed: Vec<(String, Listed)> = Vec::new();
        if mask.starts_with('#') {
            if let Some(channel) = self.resolve(mask).await {
                let canonical = self.channel_name(&channel);
                for member in self.roster(&channel.guild_id).await {
                    listed.push((canonical.clone(), member));
                }
            }
        } else if let Some(user) = self.user_by_nick(mask).await {
            let is_bot = self.is_bot(&user.id).await;
            listed.push((
                "*".to_owned(),
                Listed {
                    nick: names::nick(&user.id, user.irc_name.as_deref()),
                    has_account: user.irc_name.is_some(),
                    is_bot,
                    user_id: user.id,
                    real_name: user.display_name,
                    prefixes: String::new(),
                },
            ));
        }
        for (channel, member) in listed {
            match &whox {
                Some((letters, token)) => self.whox_line(&channel, &member, letters, token),
                None => self.who_line(&channel, &member),
            }
        }
        self.reply(
            Response::RPL_ENDOFWHO,
            vec![mask.to_owned(), "End of WHO list".into()],
        );
    }

    /// `WHO`'s flags: `H`ere or `G`one (away: busy on the node), `B` for a bot, then the
    /// status prefixes.
    fn who_flags(&self, member: &Listed) -> String {
        let here = if self.away_reason(&member.user_id).is_some() {
            'G'
        } else {
            'H'
        };
        let bot = if member.is_bot { "B" } else { "" };
        format!("{here}{bot}{}", self.shown_prefixes(&member.prefixes))
    }

    fn who_line(&mut self, channel: &str, member: &Listed) {
        let server = self.gateway.server_name.clone();
        let flags = self.who_flags(member);
        self.reply(
            Response::RPL_WHOREPLY,
            vec![
                channel.to_owned(),
                member.nick.clone(),
                server.clone(),
                server,
                member.nick.clone(),
                flags,
                format!("0 {}", member.real_name),
            ],
        );
    }

    /// One `RPL_WHOSPCRPL` (354): the fields asked for, in WHOX's fixed order
    /// (`t c u i h s n f d l a o r`).
    fn whox_line(&mut self, channel: &str, member: &Listed, letters: &str, token: &str) {
        let server = self.gateway.server_name.clone();
        let mut args = Vec::new();
        for field in [
            't', 'c', 'u', 'i', 'h', 's', 'n', 'f', 'd', 'l', 'a', 'o', 'r',
        ] {
            if !letters.contains(field) {
                continue;
            }
            args.push(match field {
                't' => token.to_owned(),
                'c' => channel.to_owned(),
                'u' | 'n' => member.nick.clone(),
                // Addresses are never shown.
                'i' => "255.255.255.255".to_owned(),
                'h' | 's' => server.clone(),
                'f' => self.who_flags(member),
                'd' | 'l' => "0".to_owned(),
                'a' if member.has_account => member.nick.clone(),
                'a' => "0".to_owned(),
                'o' => "n/a".to_owned(),
                _ => member.real_name.clone(),
            });
        }
        self.numeric_raw("354", args);
    }
}

/// The channel mode letter of a status prefix.
fn mode_letter(prefix: char) -> char {
    match prefix {
        '~' => 'q',
        '&' => 'a',
        '@' => 'o',
        _ => 'h',
    }
}

impl Conn {
    /// A member's roles changed: their new status prefixes, as `MODE #channel +o nick` (and the
    /// like) in each joined channel of the guild, against what this client was last shown.
    pub(super) async fn on_member_updated(&mut self, updated: pb::GuildMemberUpdated) {
        let Some(user) = updated.member.and_then(|m| m.user) else {
            return;
        };
        if !self.shown_guilds.contains(&updated.guild_id) {
            return;
        }
        let key = (updated.guild_id.clone(), user.id.clone());
        let before = self.prefixes.get(&key).cloned().unwrap_or_default();
        let Ok(access) = self
            .gateway
            .guilds
            .access(&updated.guild_id, &user.id)
            .await
        else {
            return;
        };
        let after = prefixes(&access.standing);
        let nick = names::nick(&user.id, Some(user.irc_name.as_str()));
        self.show_prefix_change(&updated.guild_id, &user.id, &nick, before, after);
    }

    /// A role of a shown guild changed or went (event `event_id`): every member's prefixes are
    /// worked out again (one read, shared by every connection handling the event) and each
    /// change is shown as a `MODE` line.
    pub(super) async fn on_role_updated(&mut self, event_id: u64, event: pb::RoleEvent) {
        if !self.shown_guilds.contains(&event.guild_id) {
            return;
        }
        let roster = self.roster_after(&event.guild_id, event_id).await;
        for member in roster.iter() {
            let key = (event.guild_id.clone(), member.user_id.clone());
            let before = self.prefixes.get(&key).cloned().unwrap_or_default();
            self.show_prefix_change(
                &event.guild_id,
                &member.user_id,
                &member.nick,
                before,
                member.prefixes.clone(),
            );
        }
    }

    /// Remembers a member's new prefixes and shows the difference as `MODE` lines in the
    /// guild's joined channels.
    fn show_prefix_change(
        &mut self,
        guild_id: &str,
        user_id: &str,
        nick: &str,
        before: String,
        after: String,
    ) {
        if after == before {
            return;
        }
        let key = (guild_id.to_owned(), user_id.to_owned());
        if after.is_empty() {
            self.prefixes.remove(&key);
        } else {
            self.prefixes.insert(key, after.clone());
        }
        let added: String = after
            .chars()
            .filter(|p| !before.contains(*p))
            .map(mode_letter)
            .collect();
        let removed: String = before
            .chars()
            .filter(|p| !after.contains(*p))
            .map(mode_letter)
            .collect();
        for channel in self.channels_of(guild_id) {
            for (sign, letters) in [('+', &added), ('-', &removed)] {
                if letters.is_empty() {
                    continue;
                }
                let mut args = vec![channel.clone(), format!("{sign}{letters}")];
                args.extend(std::iter::repeat_n(nick.to_owned(), letters.len()));
                let server = self.server();
                self.send(Message {
                    tags: None,
                    prefix: Some(server),
                    command: Command::Raw("MODE".into(), args),
                });
            }
        }
    }
}
