//! `MONITOR`: a client watches nicks and hears when they come online or go offline. Online is
//! the node's presence (online, idle or busy, from any client, IRC or not), as `GetPresence`
//! shows it: a user who shares no guild with the watcher always reads as offline, so MONITOR
//! tells nothing `GetPresence` would not.

use super::*;

/// Most nicks one connection may watch (`ISUPPORT MONITOR=`).
pub const MONITOR_MAX: usize = 100;

impl Conn {
    /// `MONITOR +|-|C|L|S [targets]`.
    pub(super) async fn monitor(&mut self, sub: &str, targets: Option<&str>) {
        let nicks: Vec<String> = targets
            .unwrap_or_default()
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        match sub {
            "+" => {
                let mut added = Vec::new();
                for (i, nick) in nicks.iter().enumerate() {
                    if self.monitored.contains_key(nick) {
                        continue;
                    }
                    if self.monitored.len() >= MONITOR_MAX {
                        let rest = nicks[i..].join(",");
                        self.numeric_raw(
                            "734",
                            vec![MONITOR_MAX.to_string(), rest, "Monitor list is full".into()],
                        );
                        break;
                    }
                    self.monitored.insert(nick.clone(), false);
                    added.push(nick.clone());
                }
                self.monitor_status(&added).await;
            }
            "-" => {
                for nick in &nicks {
                    self.monitored.remove(nick);
                }
            }
            "C" | "c" => self.monitored.clear(),
            "L" | "l" => {
                let mut all: Vec<String> = self.monitored.keys().cloned().collect();
                all.sort_unstable();
                for chunk in all.chunks(20) {
                    self.numeric_raw("732", vec![chunk.join(",")]);
                }
                self.numeric_raw("733", vec!["End of MONITOR list".into()]);
            }
            "S" | "s" => {
                let all: Vec<String> = self.monitored.keys().cloned().collect();
                self.monitor_status(&all).await;
            }
            _ => self.reply(
                Response::ERR_UNKNOWNCOMMAND,
                vec!["MONITOR".into(), "Unknown MONITOR subcommand".into()],
            ),
        }
    }

    /// Tells whether each of `nicks` is online (730) or offline (731) now.
    async fn monitor_status(&mut self, nicks: &[String]) {
        if nicks.is_empty() {
            return;
        }
        let mut users = Vec::new();
        for nick in nicks {
            if let Some(user) = self.user_by_nick(nick).await {
                users.push((nick.clone(), user.id));
            }
        }
        let ids: Vec<String> = users.iter().map(|(_, id)| id.clone()).collect();
        let session = self.session();
        let seen = self
            .gateway
            .presence
            .get(&session, &ids)
            .await
            .unwrap_or_default();
        let online_ids: HashSet<String> = seen
            .into_iter()
            .filter(|p| p.status != pb::PresenceStatus::Offline as i32)
            .map(|p| p.user_id)
            .collect();
        let (mut online, mut offline) = (Vec::new(), Vec::new());
        for nick in nicks {
            let is_online = users
                .iter()
                .any(|(n, id)| n == nick && online_ids.contains(id));
            self.monitored.insert(nick.clone(), is_online);
            if is_online {
                online.push(nick.clone());
            } else {
                offline.push(nick.clone());
            }
        }
        self.monitor_lines(&online, true);
        self.monitor_lines(&offline, false);
    }

    /// 730 (online, as `nick!user@host`) or 731 (offline) for `nicks`.
    fn monitor_lines(&mut self, nicks: &[String], online: bool) {
        let server = self.gateway.server_name.clone();
        for chunk in nicks.chunks(10) {
            if online {
                let masks: Vec<String> =
                    chunk.iter().map(|n| format!("{n}!{n}@{server}")).collect();
                self.numeric_raw("730", vec![masks.join(",")]);
            } else {
                self.numeric_raw("731", vec![chunk.join(",")]);
            }
        }
    }

    /// A presence change of a watched nick: 730 or 731 if its online state changed.
    pub(super) fn monitor_presence(&mut self, nick: &str, online: bool) {
        let key = nick.to_ascii_lowercase();
        match self.monitored.get(&key) {
            Some(was) if *was != online => {
                self.monitored.insert(key.clone(), online);
                self.monitor_lines(&[key], online);
            }
            _ => {}
        }
    }
}
