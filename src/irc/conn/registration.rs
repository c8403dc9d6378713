//! Registration: CAP negotiation, SASL PLAIN or PASS, NICK and USER, and the welcome.

use super::*;

impl Conn {
    pub(super) fn cap(&mut self, sub: CapSubCommand, arg: Option<String>, param: Option<String>) {
        match sub {
            CapSubCommand::LS => {
                if !self.registered {
                    self.cap_negotiating = true;
                }
                let v302 = arg.as_deref().and_then(|v| v.parse::<u32>().ok()) >= Some(302);
                let list: Vec<String> = CAPS
                    .iter()
                    .map(|c| match (*c, v302) {
                        ("sasl", true) => "sasl=PLAIN".to_owned(),
                        ("draft/multiline", true) => multiline::cap_value(),
                        ("draft/account-registration", true) => accounts::CAP_VALUE.to_owned(),
                        (c, _) => c.to_owned(),
                    })
                    .collect();
                self.send_cap("LS", list.join(" "));
            }
            CapSubCommand::LIST => {
                let mut list: Vec<&str> = self.caps.iter().copied().collect();
                list.sort_unstable();
                self.send_cap("LIST", list.join(" "));
            }
            CapSubCommand::REQ => {
                if !self.registered {
                    self.cap_negotiating = true;
                }
                let wanted = param.or(arg).unwrap_or_default();
                let mut ok = Vec::new();
                for cap in wanted.split_whitespace() {
                    let (remove, name) = match cap.strip_prefix('-') {
                        Some(name) => (true, name),
                        None => (false, cap),
                    };
                    match CAPS.iter().find(|c| **c == name) {
                        Some(known) => ok.push((remove, *known)),
                        None => {
                            self.send_cap("NAK", wanted.clone());
                            return;
                        }
                    }
                }
                for (remove, cap) in ok {
                    if remove {
                        self.caps.remove(cap);
                    } else {
                        self.caps.insert(cap);
                    }
                }
                self.send_cap("ACK", wanted);
            }
            CapSubCommand::END => self.cap_negotiating = false,
            _ => {
                let verb = sub.to_str().to_owned();
                self.numeric_raw("410", vec![verb, "Invalid CAP command".into()]);
            }
        }
    }

    pub(super) fn send_cap(&mut self, sub: &str, list: String) {
        let nick = self.nick.clone();
        self.send(Message {
            tags: None,
            prefix: Some(self.server()),
            command: Command::Raw("CAP".into(), vec![nick, sub.to_owned(), list]),
        });
    }

    pub(super) fn nick_command(&mut self, nick: String) {
        let valid = !nick.is_empty()
            && nick.len() <= NICK_LEN
            && !nick.starts_with(['$', ':', '#', '&', '@', '+', '%', '~'])
            && !nick.contains([' ', ',', '*', '?', '!', '@', '.']);
        if !valid {
            self.reply(
                Response::ERR_ERRONEOUSNICKNAME,
                vec![nick, "Erroneous nickname".into()],
            );
            return;
        }
        if self.registered {
            if !nick.eq_ignore_ascii_case(&self.nick) {
                self.reply(
                    Response::ERR_ERRONEOUSNICKNAME,
                    vec![
                        nick,
                        "Your nick is your username; change it with UpdateUser (irc_name)".into(),
                    ],
                );
            }
            return;
        }
        self.nick = nick;
    }

    pub(super) async fn authenticate(&mut self, data: &str) {
        if self.registered || self.account.is_some() {
            self.numeric_raw("907", vec!["You have already authenticated".into()]);
            return;
        }
        match std::mem::replace(&mut self.sasl, Sasl::Idle) {
            Sasl::Idle => {
                if data.eq_ignore_ascii_case("PLAIN") {
                    self.sasl = Sasl::Plain(String::new());
                    self.send(Message {
                        tags: None,
                        prefix: None,
                        command: Command::AUTHENTICATE("+".into()),
                    });
                } else {
                    self.numeric_raw(
                        "908",
                        vec!["PLAIN".into(), "are available SASL mechanisms".into()],
                    );
                    self.reply(
                        Response::ERR_SASLFAIL,
                        vec!["SASL authentication failed".into()],
                    );
                }
            }
            Sasl::Plain(mut gathered) => {
                if data == "*" {
                    self.numeric_raw("906", vec!["SASL authentication aborted".into()]);
                    return;
                }
                if data.len() > SASL_CHUNK {
                    // IRCv3 SASL: pieces are at most 400 bytes; a longer one is ERR_SASLTOOLONG.
                    self.numeric_raw("905", vec!["SASL message too long".into()]);
                    return;
                }
                if data != "+" {
                    gathered.push_str(data);
                }
                if gathered.len() > SASL_MAX * 2 {
                    self.reply(
                        Response::ERR_SASLFAIL,
                        vec!["SASL authentication failed: message too long".into()],
                    );
                    return;
                }
                if data.len() == SASL_CHUNK {
                    self.sasl = Sasl::Plain(gathered);
                    return;
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(gathered.as_bytes())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                let parts: Option<Vec<String>> =
                    decoded.map(|text| text.split('\0').map(str::to_owned).collect());
                let Some([_authzid, authcid, password]) =
                    parts.and_then(|p| <[String; 3]>::try_from(p).ok())
                else {
                    self.reply(
                        Response::ERR_SASLFAIL,
                        vec!["SASL authentication failed: malformed PLAIN message".into()],
                    );
                    return;
                };
                if let Err(why) = self.limit(crate::limits::Limit::Login) {
                    self.reply(
                        Response::ERR_SASLFAIL,
                        vec![format!("SASL authentication failed: {why}")],
                    );
                    return;
                }
                match self.gateway.accounts.irc_login(&authcid, &password).await {
                    Ok(user) => {
                        let name = user.irc_name.clone().unwrap_or_default();
                        let mask =
                            format!("{}!{}@{}", self.nick, self.nick, self.gateway.server_name);
                        self.reply(
                            Response::RPL_LOGGEDIN,
                            vec![
                                mask,
                                name.clone(),
                                format!("You are now logged in as {name}"),
                            ],
                        );
                        self.reply(
                            Response::RPL_SASLSUCCESS,
                            vec!["SASL authentication successful".into()],
                        );
                        self.account = Some(user);
                    }
                    Err(e) => self.reply(
                        Response::ERR_SASLFAIL,
                        vec![format!("SASL authentication failed: {e}")],
                    ),
                }
            }
        }
    }

    /// Completes registration once NICK and USER arrived and CAP negotiation ended: logs in
    /// with SASL's account or the PASS, then welcomes the client under the user's username.
    pub(super) async fn try_register(&mut self) -> Flow {
        if self.registered || self.nick == "*" || !self.user_given || self.cap_negotiating {
            return Flow::Continue;
        }
        let user = match self.account.take() {
            Some(user) => user,
            None => {
                let Some(pass) = self.pass.take() else {
                    self.reply(
                        Response::ERR_PASSWDMISMATCH,
                        vec![
                            "Password required: log in with SASL PLAIN or PASS username:token \
                             (mint a token with CreateIrcToken)"
                                .into(),
                        ],
                    );
                    return Flow::Quit("Password required".into());
                };
                let (username, token) = match pass.split_once(':') {
                    Some((user, token)) => (user.to_owned(), token.to_owned()),
                    None => (self.nick.clone(), pass),
                };
                if let Err(why) = self.limit(crate::limits::Limit::Login) {
                    self.reply(Response::ERR_PASSWDMISMATCH, vec![why]);
                    return Flow::Quit("Too many logins".into());
                }
                match self.gateway.accounts.irc_login(&username, &token).await {
                    Ok(user) => user,
                    Err(e) => {
                        self.reply(Response::ERR_PASSWDMISMATCH, vec![e.to_string()]);
                        return Flow::Quit("Bad password".into());
                    }
                }
            }
        };
        let Some(username) = user.irc_name.clone() else {
            return Flow::Quit("set a username first (UpdateUser irc_name)".into());
        };
        if self.nick != username {
            // Nicks are usernames: the client's requested nick becomes its username.
            let from = self.user_prefix(&self.nick);
            self.send(Message {
                tags: None,
                prefix: Some(from),
                command: Command::NICK(username.clone()),
            });
            self.nick = username.clone();
        }
        self.nicks.insert(user.id.clone(), username);
        self.accounts.insert(user.id.clone());
        self.account = Some(user);
        self.registered = true;
        // Counted in LUSERS before the welcome, so a client told it is welcome is counted.
        self.counted = Some(crate::irc::Registered::new(&self.gateway.counts));
        self.welcome();
        Flow::Continue
    }

    pub(super) fn welcome(&mut self) {
        let server = self.gateway.server_name.clone();
        let version = concat!("guildhall-", env!("CARGO_PKG_VERSION"));
        let nick = self.nick.clone();
        self.reply(
            Response::RPL_WELCOME,
            vec![format!("Welcome to guildhall on {server}, {nick}")],
        );
        self.reply(
            Response::RPL_YOURHOST,
            vec![format!("Your host is {server}, running {version}")],
        );
        self.reply(
            Response::RPL_CREATED,
            vec!["This server speaks for a guildhall node".into()],
        );
        self.reply(
            Response::RPL_MYINFO,
            vec![server, version.into(), "B".into(), "bnt".into()],
        );
        let tokens = [
            "CASEMAPPING=ascii".to_owned(),
            "CHANTYPES=#".to_owned(),
            format!("CHANNELLEN={}", names::CHANNEL_LEN),
            format!("NICKLEN={NICK_LEN}"),
            "NETWORK=guildhall".to_owned(),
            format!("PREFIX={}", roster::PREFIX),
            format!("MONITOR={}", monitor::MONITOR_MAX),
            "WHOX".to_owned(),
            format!("CHATHISTORY={}", history::CHATHISTORY_MAX),
            "MSGREFTYPES=msgid,timestamp".to_owned(),
            "UTF8ONLY".to_owned(),
            format!("BOT={}", bots::BOT_MODE),
        ];
        let mut args: Vec<String> = tokens.to_vec();
        args.push("are supported by this server".into());
        self.reply(Response::RPL_ISUPPORT, args);
        self.reply(Response::ERR_NOMOTD, vec!["MOTD File is missing".into()]);
    }
}
