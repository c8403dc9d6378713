//! `AWAY` and `USERHOST`: away on IRC is busy on the node. `AWAY :reason` sets the user busy
//! with the reason as their presence's note (so every client of theirs, IRC or not, reads busy);
//! `AWAY` alone sets them back to online. A user busy from any client is away on IRC: their
//! reason, or `Busy` when they gave none, answers a private message (`301`), shows in `WHOIS`
//! and `USERHOST`, and reaches `away-notify` clients as `AWAY`.

use super::*;

/// What a busy user without a note is shown as leaving.
const BUSY: &str = "Busy";
/// Most nicks one `USERHOST` answers for (Modern IRC).
const USERHOST_NICKS: usize = 5;

impl Conn {
    /// `AWAY [:reason]`: busy with the reason, or (no reason, or an empty one) back online.
    pub(super) async fn away(&mut self, reason: Option<String>) {
        let me = self.me().id.clone();
        let result = match reason.filter(|r| !r.is_empty()) {
            Some(reason) => self.gateway.presence.set_away(&me, reason).await,
            None => self.gateway.presence.signal(&self.session(), true).await,
        };
        if let Err(e) = result {
            self.fail("AWAY", "CANNOT_SET_AWAY", vec![], &e.to_string());
            return;
        }
        match self.gateway.presence.status_of(&me).0 {
            s if s == pb::PresenceStatus::Busy as i32 => self.reply(
                Response::RPL_NOWAWAY,
                vec!["You have been marked as being away".into()],
            ),
            _ => self.reply(
                Response::RPL_UNAWAY,
                vec!["You are no longer marked as being away".into()],
            ),
        }
    }

    /// Why the user is away, if they are: their note, or `Busy`.
    pub(super) fn away_reason(&self, user_id: &str) -> Option<String> {
        let presence = &self.gateway.presence;
        if presence.status_of(user_id).0 != pb::PresenceStatus::Busy as i32 {
            return None;
        }
        Some(presence.away_note(user_id).unwrap_or_else(|| BUSY.into()))
    }

    /// `301` for a message or `WHOIS` naming `nick`, if its user is away.
    pub(super) async fn tell_if_away(&mut self, nick: &str) {
        let Some(user) = self.user_by_nick(nick).await else {
            return;
        };
        if let Some(reason) = self.away_reason(&user.id) {
            let nick = names::nick(&user.id, user.irc_name.as_deref());
            self.reply(Response::RPL_AWAY, vec![nick, reason]);
        }
    }

    /// `USERHOST nick…`: `nick=+nick@server` for each user found (`-` when away), at most five.
    pub(super) async fn userhost(&mut self, nicks: Vec<String>) {
        let mut found = Vec::new();
        for nick in nicks.iter().take(USERHOST_NICKS) {
            let Some(user) = self.user_by_nick(nick).await else {
                continue;
            };
            let nick = names::nick(&user.id, user.irc_name.as_deref());
            let here = if self.away_reason(&user.id).is_some() {
                '-'
            } else {
                '+'
            };
            found.push(format!("{nick}={here}{nick}@{}", self.gateway.server_name));
        }
        self.reply(Response::RPL_USERHOST, vec![found.join(" ")]);
    }

    /// A presence change seen as `away-notify`'s `AWAY`: with the reason when away, bare when
    /// back. Offline is away too (a client still shows the nick: the user is a guild member).
    pub(super) fn show_away(&mut self, nick: &str, user_id: &str, status: i32) {
        let away = match pb::PresenceStatus::try_from(status) {
            Ok(pb::PresenceStatus::Online) => None,
            Ok(pb::PresenceStatus::Busy) => self.away_reason(user_id).or_else(|| Some(BUSY.into())),
            _ => Some("Offline".into()),
        };
        let from = self.user_prefix(nick);
        self.send(Message {
            tags: None,
            prefix: Some(from),
            command: Command::AWAY(away),
        });
    }
}
