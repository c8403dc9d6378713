//! Questions about the server itself: `TIME`, `LUSERS` and `INFO`. The gateway is one server
//! with no links, so a target other than itself (or one of its users) is `402`.

use std::sync::atomic::Ordering;

use super::*;

impl Conn {
    /// Whether an optional `<target>` names this server: absent, its name (or a mask matching
    /// it), or a nick (every user is on this server). Otherwise says `402` and answers false.
    async fn is_this_server(&mut self, target: Option<&str>) -> bool {
        let Some(target) = target.filter(|t| !t.is_empty()) else {
            return true;
        };
        if mask_matches(target, &self.gateway.server_name)
            || self.user_by_nick(target).await.is_some()
        {
            return true;
        }
        self.reply(
            Response::ERR_NOSUCHSERVER,
            vec![target.to_owned(), "No such server".into()],
        );
        false
    }

    /// `TIME [target]`: `391` with the server's name, its clock in seconds and as text (UTC).
    pub(super) async fn time(&mut self, target: Option<String>) {
        if !self.is_this_server(target.as_deref()).await {
            return;
        }
        let now = crate::identity::freshness::now_ms();
        let server = self.gateway.server_name.clone();
        self.reply(
            Response::RPL_TIME,
            vec![server, format!("{}", now / 1000), "0".into(), ms_time(now)],
        );
    }

    /// `LUSERS`: the IRC clients connected to this gateway (users of gRPC clients are not
    /// counted: IRC has no way to show them apart) and the most connected at once since the node
    /// started. No channel count: the channels a client may see differ from client to client.
    pub(super) fn lusers(&mut self) {
        let counts = &self.gateway.counts;
        let registered = counts.registered.load(Ordering::Relaxed);
        let most = counts
            .most_registered
            .load(Ordering::Relaxed)
            .max(registered);
        let unknown = self
            .gateway
            .connections
            .load(Ordering::Relaxed)
            .saturating_sub(registered);
        self.reply(
            Response::RPL_LUSERCLIENT,
            vec![format!(
                "There are {registered} users and 0 invisible on 1 servers"
            )],
        );
        if unknown > 0 {
            self.reply(
                Response::RPL_LUSERUNKNOWN,
                vec![unknown.to_string(), "unknown connection(s)".into()],
            );
        }
        self.reply(
            Response::RPL_LUSERME,
            vec![format!("I have {registered} clients and 0 servers")],
        );
        for code in [Response::RPL_LOCALUSERS, Response::RPL_GLOBALUSERS] {
            self.reply(
                code,
                vec![
                    registered.to_string(),
                    most.to_string(),
                    format!("Current users {registered}, max {most}"),
                ],
            );
        }
    }

    /// `INFO [target]`: what this server is, then `374`.
    pub(super) async fn info(&mut self, target: Option<String>) {
        if !self.is_this_server(target.as_deref()).await {
            return;
        }
        let lines = [
            format!("guildhall {}", env!("CARGO_PKG_VERSION")),
            "A federated chat homeserver; this is its IRC gateway.".to_owned(),
            "Nicks are the node's usernames; channels are its guilds' channels.".to_owned(),
            "Log in with SASL PLAIN or PASS username:token (docs/IRC.md).".to_owned(),
        ];
        for line in lines {
            self.reply(Response::RPL_INFO, vec![line]);
        }
        self.reply(Response::RPL_ENDOFINFO, vec!["End of INFO list".into()]);
    }
}

/// Whether `mask` (`*` any run, `?` any one character, ASCII case ignored) matches `name`.
fn mask_matches(mask: &str, name: &str) -> bool {
    let (mask, name): (Vec<char>, Vec<char>) = (
        mask.to_ascii_lowercase().chars().collect(),
        name.to_ascii_lowercase().chars().collect(),
    );
    // The usual two-pointer glob walk, backtracking to the last `*`.
    let (mut m, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if m < mask.len() && (mask[m] == '?' || mask[m] == name[n]) {
            m += 1;
            n += 1;
        } else if m < mask.len() && mask[m] == '*' {
            star = Some((m, n));
            m += 1;
        } else if let Some((sm, sn)) = star {
            m = sm + 1;
            n = sn + 1;
            star = Some((sm, sn + 1));
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::mask_matches;

    #[test]
    fn server_masks() {
        assert!(mask_matches("chat.example.org", "chat.example.org"));
        assert!(mask_matches("Chat.Example.ORG", "chat.example.org"));
        assert!(mask_matches("*example*", "chat.example.org"));
        assert!(mask_matches("c?at.*", "chat.example.org"));
        assert!(mask_matches("*", "chat.example.org"));
        assert!(!mask_matches("invalid.server.example", "chat.example.org"));
        assert!(!mask_matches("chat", "chat.example.org"));
        assert!(!mask_matches("*.net", "chat.example.org"));
    }
}
