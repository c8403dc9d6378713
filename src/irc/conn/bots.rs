//! IRCv3 bot mode (`BOT=B`): a user who says they are a bot is one on the node, in the flag
//! Harmony's `is_bot` keeps, so every client agrees. `MODE <own nick> +B` (or `-B`) sets it;
//! a bot's messages carry the `bot` tag, `WHOIS` says `335`, and `WHO` shows `B` in the flags.
//! A webhook's messages are always a bot's.

use super::*;
use crate::harmony::ProfileEdit;
use crate::store::harmony as hdb;
use irc_proto::mode::UserMode;

/// The bot user mode's letter (`BOT=B` in ISUPPORT).
pub(super) const BOT_MODE: char = 'B';

impl Conn {
    /// `MODE <nick> [modes]` for a user: one's own modes are `+B` or none; only `B` can be set.
    pub(super) async fn user_mode(&mut self, target: &str, modes: Vec<Mode<UserMode>>) {
        if !target.eq_ignore_ascii_case(&self.nick) {
            self.reply(
                Response::ERR_USERSDONTMATCH,
                vec!["Can't change or view modes of other users".into()],
            );
            return;
        }
        let me = self.me().id.clone();
        if modes.is_empty() {
            let shown = if self.is_bot(&me).await { "+B" } else { "+" };
            self.reply(Response::RPL_UMODEIS, vec![shown.into()]);
            return;
        }
        let mut wanted = None;
        for mode in &modes {
            match mode {
                Mode::Plus(UserMode::Unknown(BOT_MODE), _) => wanted = Some(true),
                Mode::Minus(UserMode::Unknown(BOT_MODE), _) => wanted = Some(false),
                _ => {
                    self.numeric_raw("501", vec!["Only +B (bot) can be set here".into()]);
                    return;
                }
            }
        }
        let Some(bot) = wanted else { return };
        if self.is_bot(&me).await == bot {
            return;
        }
        let edit = ProfileEdit {
            is_bot: Some(bot),
            ..ProfileEdit::default()
        };
        if let Err(e) = self
            .gateway
            .harmony
            .update_profile(&self.session(), edit)
            .await
        {
            self.fail("MODE", "CANNOT_CHANGE_MODE", vec![], &e.to_string());
            return;
        }
        self.set_bot(&me, bot);
        let sign = if bot { '+' } else { '-' };
        let from = self.user_prefix(&self.nick);
        self.send(Message {
            tags: None,
            prefix: Some(from),
            command: Command::Raw("MODE".into(), vec![self.nick.clone(), format!("{sign}B")]),
        });
    }

    /// Whether the user is a bot, from what this connection learnt or else the node.
    pub(super) async fn is_bot(&mut self, user_id: &str) -> bool {
        if let Some(known) = self.bots.get(user_id) {
            return *known;
        }
        let id = user_id.to_owned();
        let bot = self
            .gateway
            .guilds
            .store()
            .read(move |c| hdb::is_bot(c, &id))
            .await
            .unwrap_or(false);
        self.set_bot(user_id, bot);
        bot
    }

    /// Remembers whether a user is a bot (bounded like the nicks seen).
    pub(super) fn set_bot(&mut self, user_id: &str, bot: bool) {
        if self.bots.len() >= BOTS_REMEMBERED {
            self.bots.clear();
        }
        self.bots.insert(user_id.to_owned(), bot);
    }

    /// A Harmony profile change: a user's bot flag, if it changed.
    pub(super) async fn on_profile_updated(&mut self, num: u64, is_bot: Option<bool>) {
        let Some(bot) = is_bot else { return };
        let found = self
            .gateway
            .guilds
            .store()
            .read(move |c| hdb::user_by_num(c, num))
            .await;
        if let Ok(Some(user_id)) = found {
            self.set_bot(&user_id, bot);
        }
    }
}

/// Most users whose bot flag one connection remembers before it starts over.
const BOTS_REMEMBERED: usize = 4096;
