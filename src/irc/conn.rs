//! One IRC connection: registration (CAP, SASL PLAIN or PASS, NICK, USER), then channels and
//! messages, both ways.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use irc_proto::command::CapSubCommand;
use irc_proto::message::Tag;
use irc_proto::mode::{ChannelMode, Mode};
use irc_proto::{Command, Message, Prefix, Response};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

mod history;

use super::names::{self, NICK_LEN};
use super::{Gateway, MAX_LINE, SENDQ_LINES};
use crate::events::stream::EventStream;
use crate::guilds::permissions;
use crate::messages::SendInput;
use crate::proto::guildhall::v1 as pb;
use crate::store::{SessionInfo, UserRecord, accounts as users, guilds as gdb};

/// The capabilities the gateway offers (`CAP LS`).
const CAPS: &[&str] = &[
    "account-tag",
    "away-notify",
    "batch",
    "cap-notify",
    "draft/chathistory",
    "echo-message",
    "extended-join",
    "message-tags",
    "sasl",
    "server-time",
    "userhost-in-names",
];
/// How long a client may take to register before it is disconnected.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Base64 of a SASL message arrives in pieces of this many bytes; a shorter one ends it.
const SASL_CHUNK: usize = 400;
/// Longest decoded SASL PLAIN message accepted, in bytes.
const SASL_MAX: usize = 1024;
/// Most members listed in NAMES (the first joined).
const NAMES_MAX: u32 = 1000;

/// A channel the client joined.
#[derive(Debug, Clone)]
struct Joined {
    /// Its IRC name.
    name: String,
    guild_id: String,
}

/// What the handling of one line asks of the connection.
enum Flow {
    Continue,
    Quit(String),
}

/// Where SASL stands.
enum Sasl {
    Idle,
    /// `AUTHENTICATE PLAIN` was accepted; base64 pieces gathered so far.
    Plain(String),
}

/// Tells a client over the connection limit to come back later.
pub async fn refuse(mut socket: TcpStream, server: &str) {
    let line = format!("ERROR :Closing link: {server} is full, try again later\r\n");
    let _ = socket.write_all(line.as_bytes()).await;
}

/// Serves one client until it quits, its connection drops, it falls too far behind, or the node
/// stops.
pub async fn run<S>(socket: S, peer: SocketAddr, gateway: Gateway, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, mut write) = tokio::io::split(socket);
    let (tx, mut rx) = mpsc::channel::<String>(SENDQ_LINES);
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
    let mut conn = Conn::new(gateway, tx);
    let mut events: Option<EventStream> = None;
    let deadline = tokio::time::sleep(REGISTRATION_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        if conn.overflowed {
            tracing::debug!(%peer, "IRC client too slow: SendQ exceeded");
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => {
                conn.error("Server shutting down");
                break;
            }
            () = &mut deadline, if !conn.registered => {
                conn.error("Registration timed out");
                break;
            }
            line = lines.next() => match line {
                None | Some(Err(LinesCodecError::Io(_))) => break,
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                    conn.numeric_raw("417", vec!["Input line was too long".into()]);
                }
                Some(Ok(line)) => {
                    if let Flow::Quit(reason) = conn.handle(&line).await {
                        conn.error(&reason);
                        break;
                    }
                    if conn.registered && events.is_none() {
                        match conn.subscribe().await {
                            Ok(stream) => events = Some(stream),
                            Err(reason) => {
                                conn.error(&reason);
                                break;
                            }
                        }
                    }
                }
            },
            item = async { events.as_mut()?.next().await }, if events.is_some() => match item {
                Some(Ok(bytes)) => conn.on_event(&bytes).await,
                _ => {
                    conn.error("Your account's event stream ended");
                    break;
                }
            },
        }
    }
    if conn.registered
        && let Err(e) = conn.gateway.presence.signal(&conn.session(), false).await
    {
        tracing::debug!(error = %e, "IRC: presence offline");
    }
    drop(conn);
    let _ = writer.await;
    tracing::debug!(%peer, "IRC client gone");
}

/// The state of one connection.
struct Conn {
    gateway: Gateway,
    out: mpsc::Sender<String>,
    /// The queue filled: the client is not reading.
    overflowed: bool,
    /// The nick the client asked for before registering; then the user's username.
    nick: String,
    user_given: bool,
    pass: Option<String>,
    caps: HashSet<&'static str>,
    cap_negotiating: bool,
    sasl: Sasl,
    account: Option<UserRecord>,
    registered: bool,
    /// Joined channels by channel id.
    joined: HashMap<String, Joined>,
    /// For channels seen in events that are not joined: the other member if it is a DM.
    dms: HashMap<String, Option<String>>,
    /// Batches opened so far (their references are `b1`, `b2`, …).
    batches: u64,
    /// Nicks of users seen, by id.
    nicks: HashMap<String, String>,
    /// Of those, the users whose nick is their username (an account, for `account-tag`).
    accounts: HashSet<String>,
}

impl Conn {
    fn new(gateway: Gateway, out: mpsc::Sender<String>) -> Self {
        Self {
            gateway,
            out,
            overflowed: false,
            nick: "*".into(),
            user_given: false,
            pass: None,
            caps: HashSet::new(),
            cap_negotiating: false,
            sasl: Sasl::Idle,
            account: None,
            registered: false,
            joined: HashMap::new(),
            dms: HashMap::new(),
            batches: 0,
            nicks: HashMap::new(),
            accounts: HashSet::new(),
        }
    }

    /// A fresh batch reference.
    fn next_batch(&mut self) -> String {
        self.batches += 1;
        format!("b{}", self.batches)
    }

    fn server(&self) -> Prefix {
        Prefix::ServerName(self.gateway.server_name.clone())
    }

    /// `nick!nick@server`, how the gateway shows a user.
    fn user_prefix(&self, nick: &str) -> Prefix {
        Prefix::Nickname(
            nick.to_owned(),
            nick.to_owned(),
            self.gateway.server_name.clone(),
        )
    }

    fn send(&mut self, message: Message) {
        if self.overflowed {
            return;
        }
        if self.out.try_send(message.to_string()).is_err() {
            self.overflowed = true;
        }
    }

    fn reply(&mut self, response: Response, mut args: Vec<String>) {
        args.insert(0, self.nick.clone());
        let message = Message {
            tags: None,
            prefix: Some(self.server()),
            command: Command::Response(response, args),
        };
        self.send(message);
    }

    /// A numeric irc-proto has no name for.
    fn numeric_raw(&mut self, code: &str, mut args: Vec<String>) {
        args.insert(0, self.nick.clone());
        let message = Message {
            tags: None,
            prefix: Some(self.server()),
            command: Command::Raw(code.to_owned(), args),
        };
        self.send(message);
    }

    fn error(&mut self, reason: &str) {
        self.send(Message {
            tags: None,
            prefix: None,
            command: Command::ERROR(format!("Closing link: {reason}")),
        });
    }

    /// Handles one line from the client.
    async fn handle(&mut self, line: &str) -> Flow {
        if line.trim().is_empty() {
            return Flow::Continue;
        }
        let message: Message = match line.parse() {
            Ok(m) => m,
            Err(_) => {
                let verb = line.split(' ').find(|w| !w.starts_with(['@', ':']));
                let verb = verb.unwrap_or("").to_owned();
                self.reply(
                    Response::ERR_UNKNOWNCOMMAND,
                    vec![verb, "Malformed line".into()],
                );
                return Flow::Continue;
            }
        };
        let flow = match message.command {
            Command::CAP(_, sub, arg, param) => {
                self.cap(sub, arg, param);
                Flow::Continue
            }
            Command::PASS(pass) => {
                if self.registered {
                    self.reply(
                        Response::ERR_ALREADYREGISTRED,
                        vec!["You may not reregister".into()],
                    );
                } else {
                    self.pass = Some(pass);
                }
                Flow::Continue
            }
            Command::NICK(nick) => {
                self.nick_command(nick);
                Flow::Continue
            }
            Command::USER(..) => {
                if self.registered {
                    self.reply(
                        Response::ERR_ALREADYREGISTRED,
                        vec!["You may not reregister".into()],
                    );
                }
                self.user_given = true;
                Flow::Continue
            }
            Command::AUTHENTICATE(data) => {
                self.authenticate(&data).await;
                Flow::Continue
            }
            Command::PING(token, _) => {
                let server = self.gateway.server_name.clone();
                self.send(Message {
                    tags: None,
                    prefix: Some(self.server()),
                    command: Command::PONG(server, Some(token)),
                });
                Flow::Continue
            }
            Command::PONG(..) => Flow::Continue,
            Command::QUIT(reason) => {
                return Flow::Quit(format!("Quit: {}", reason.unwrap_or_default()));
            }
            command if !self.registered => {
                let verb = verb_of(&command);
                self.reply(
                    Response::ERR_NOTREGISTERED,
                    vec![verb, "You have not registered".into()],
                );
                Flow::Continue
            }
            Command::JOIN(channels, _, _) => {
                for name in channels.split(',').filter(|n| !n.is_empty()) {
                    self.join(name).await;
                }
                Flow::Continue
            }
            Command::PART(channels, _) => {
                for name in channels.split(',').filter(|n| !n.is_empty()) {
                    self.part(name);
                }
                Flow::Continue
            }
            Command::PRIVMSG(target, text) | Command::NOTICE(target, text) => {
                self.privmsg(&target, text).await;
                Flow::Continue
            }
            Command::NAMES(Some(channels), _) => {
                for name in channels.split(',').filter(|n| !n.is_empty()) {
                    let guild = self
                        .joined_id(name)
                        .and_then(|id| self.joined.get(&id))
                        .map(|j| j.guild_id.clone());
                    match guild {
                        Some(guild) => self.names(&guild, name).await,
                        None => self.reply(
                            Response::RPL_ENDOFNAMES,
                            vec![name.to_owned(), "End of /NAMES list".into()],
                        ),
                    }
                }
                Flow::Continue
            }
            Command::ChannelMODE(target, modes) => {
                self.channel_mode(&target, modes).await;
                Flow::Continue
            }
            Command::KICK(channels, nicks, reason) => {
                for (channel, nick) in channels.split(',').zip(nicks.split(',')) {
                    self.kick(channel, nick, reason.as_deref().unwrap_or_default())
                        .await;
                }
                Flow::Continue
            }
            Command::UserMODE(target, modes) => {
                if target.eq_ignore_ascii_case(&self.nick) {
                    if modes.is_empty() {
                        self.reply(Response::RPL_UMODEIS, vec!["+".into()]);
                    } else {
                        self.numeric_raw("501", vec!["No user modes can be set here".into()]);
                    }
                } else {
                    self.reply(
                        Response::ERR_USERSDONTMATCH,
                        vec!["Can't change or view modes of other users".into()],
                    );
                }
                Flow::Continue
            }
            Command::TOPIC(channel, topic) => {
                self.topic(&channel, topic.is_some()).await;
                Flow::Continue
            }
            Command::WHO(mask, _) => {
                self.who(mask.as_deref().unwrap_or("*")).await;
                Flow::Continue
            }
            Command::WHOIS(_, nicks) => {
                for nick in nicks.split(',').filter(|n| !n.is_empty()) {
                    self.whois(nick).await;
                }
                Flow::Continue
            }
            Command::LIST(..) => {
                self.list().await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("CHATHISTORY") => {
                self.chathistory(args).await;
                Flow::Continue
            }
            Command::Raw(verb, _) if known_verb(&verb) => {
                self.reply(
                    Response::ERR_NEEDMOREPARAMS,
                    vec![verb.to_ascii_uppercase(), "Not enough parameters".into()],
                );
                Flow::Continue
            }
            command => {
                let verb = verb_of(&command);
                self.reply(
                    Response::ERR_UNKNOWNCOMMAND,
                    vec![verb, "Unknown command".into()],
                );
                Flow::Continue
            }
        };
        if matches!(flow, Flow::Continue) && !self.registered {
            return self.try_register().await;
        }
        flow
    }

    fn cap(&mut self, sub: CapSubCommand, arg: Option<String>, param: Option<String>) {
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

    fn send_cap(&mut self, sub: &str, list: String) {
        let nick = self.nick.clone();
        self.send(Message {
            tags: None,
            prefix: Some(self.server()),
            command: Command::Raw("CAP".into(), vec![nick, sub.to_owned(), list]),
        });
    }

    fn nick_command(&mut self, nick: String) {
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

    async fn authenticate(&mut self, data: &str) {
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
                if data != "+" {
                    gathered.push_str(data);
                }
                if gathered.len() > SASL_MAX * 2 {
                    self.numeric_raw("905", vec!["SASL message too long".into()]);
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
    async fn try_register(&mut self) -> Flow {
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
        self.welcome();
        // A connected IRC client is its user online, as a gRPC client that signals it is.
        if let Err(e) = self.gateway.presence.signal(&self.session(), true).await {
            tracing::debug!(error = %e, "IRC: presence online");
        }
        Flow::Continue
    }

    fn welcome(&mut self) {
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
            vec![server, version.into(), "i".into(), "nt".into()],
        );
        let tokens = [
            "CASEMAPPING=ascii".to_owned(),
            "CHANTYPES=#".to_owned(),
            format!("CHANNELLEN={}", names::CHANNEL_LEN),
            format!("NICKLEN={NICK_LEN}"),
            "NETWORK=guildhall".to_owned(),
            "PREFIX=()".to_owned(),
            format!("CHATHISTORY={}", history::CHATHISTORY_MAX),
            "MSGREFTYPES=msgid,timestamp".to_owned(),
            "UTF8ONLY".to_owned(),
        ];
        let mut args: Vec<String> = tokens.to_vec();
        args.push("are supported by this server".into());
        self.reply(Response::RPL_ISUPPORT, args);
        self.reply(Response::ERR_NOMOTD, vec!["MOTD File is missing".into()]);
    }

    fn me(&self) -> &UserRecord {
        self.account
            .as_ref()
            .expect("registered connections have an account")
    }

    /// The session the domain sees for this connection's calls.
    fn session(&self) -> SessionInfo {
        SessionInfo {
            user_id: self.me().id.clone(),
            device_pubkey: String::new(),
            family_id: [0; 16],
            expires_at: u64::MAX,
        }
    }

    async fn subscribe(&mut self) -> Result<EventStream, String> {
        let user = self.me().id.clone();
        crate::events::stream::subscribe(&self.gateway.events, &user, None)
            .await
            .map_err(|e| e.to_string())
    }

    /// The channel a name points at, if it exists and the user is a member of its guild.
    async fn resolve(&self, name: &str) -> Option<gdb::ChannelRecord> {
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

    fn channel_name(&self, channel: &gdb::ChannelRecord) -> String {
        names::channel_name(
            self.gateway.default_guild.as_deref(),
            &channel.guild_id,
            channel.irc_name.as_deref().unwrap_or_default(),
        )
    }

    fn joined_id(&self, name: &str) -> Option<String> {
        self.joined
            .iter()
            .find(|(_, joined)| joined.name.eq_ignore_ascii_case(name))
            .map(|(id, _)| id.clone())
    }

    async fn join(&mut self, name: &str) {
        let Some(channel) = self.resolve(name).await else {
            self.reply(
                Response::ERR_NOSUCHCHANNEL,
                vec![name.to_owned(), "No such channel".into()],
            );
            return;
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
        self.reply(
            Response::RPL_TOPIC,
            vec![canonical.clone(), channel.name.clone()],
        );
        self.names(&channel.guild_id, &canonical).await;
    }

    /// A JOIN of `nick` to `channel`, with the account and real name when the client took
    /// `extended-join`.
    fn join_line(
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

    fn part(&mut self, name: &str) {
        match self.joined_id(name) {
            Some(id) => {
                let canonical = self.joined.remove(&id).map(|j| j.name).unwrap_or_default();
                let me = self.user_prefix(&self.nick);
                self.send(Message {
                    tags: None,
                    prefix: Some(me),
                    command: Command::PART(canonical, None),
                });
            }
            None => self.reply(
                Response::ERR_NOTONCHANNEL,
                vec![name.to_owned(), "You're not on that channel".into()],
            ),
        }
    }

    async fn names(&mut self, guild_id: &str, name: &str) {
        let server = self.gateway.server_name.clone();
        let with_host = self.caps.contains("userhost-in-names");
        let members: Vec<String> = self
            .members(guild_id)
            .await
            .into_iter()
            .map(|(nick, _)| {
                if with_host {
                    format!("{nick}!{nick}@{server}")
                } else {
                    nick
                }
            })
            .collect();
        let mut line = String::new();
        for nick in members {
            if line.len() + nick.len() + 1 > 350 {
                let full = std::mem::take(&mut line);
                self.reply(
                    Response::RPL_NAMREPLY,
                    vec!["=".into(), name.to_owned(), full],
                );
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&nick);
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

    /// `MODE #channel`: its modes are `+nt` (no outside messages, topic set on the node); roles
    /// and permissions decide the rest, so no mode can be changed here, except `+b nick`, which
    /// bans the user from the guild (`BanUser`, with its permission checks).
    async fn channel_mode(&mut self, name: &str, modes: Vec<Mode<ChannelMode>>) {
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
            // A ban list query (clients send it on joining): bans are kept by the guild.
            [Mode::NoPrefix(ChannelMode::Ban)] | [Mode::Plus(ChannelMode::Ban, None)] => {
                self.reply(
                    Response::RPL_ENDOFBANLIST,
                    vec![canonical, "End of channel ban list".into()],
                );
            }
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

    /// `KICK #channel nick`: removes the user from the channel's guild (`KickUser`: needs
    /// `members.kick` and a higher rank).
    async fn kick(&mut self, name: &str, nick: &str, reason: &str) {
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
    async fn ban(&mut self, guild_id: &str, canonical: &str, nick: &str) {
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
    fn moderation_refusal(&mut self, outcome: crate::error::Result<()>, channel: &str, nick: &str) {
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

    /// `TOPIC #channel`: the channel's name on the node is its topic; it is changed there.
    async fn topic(&mut self, name: &str, change: bool) {
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

    /// The members of a guild as (nick, display name), at most [`NAMES_MAX`], in one read.
    async fn members(&self, guild_id: &str) -> Vec<(String, String)> {
        let guild = guild_id.to_owned();
        self.gateway
            .guilds
            .store()
            .read(move |c| gdb::member_names(c, &guild, NAMES_MAX))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(id, irc_name, display)| (names::nick(&id, irc_name.as_deref()), display))
            .collect()
    }

    fn who_line(&mut self, channel: &str, nick: &str, real: &str) {
        let server = self.gateway.server_name.clone();
        self.reply(
            Response::RPL_WHOREPLY,
            vec![
                channel.to_owned(),
                nick.to_owned(),
                server.clone(),
                server,
                nick.to_owned(),
                "H".into(),
                format!("0 {real}"),
            ],
        );
    }

    /// `WHO #channel` (its members) or `WHO nick`.
    async fn who(&mut self, mask: &str) {
        if mask.starts_with('#') {
            if let Some(channel) = self.resolve(mask).await {
                let canonical = self.channel_name(&channel);
                for (nick, real) in self.members(&channel.guild_id).await {
                    self.who_line(&canonical, &nick, &real);
                }
            }
        } else if let Some(user) = self.user_by_nick(mask).await {
            let nick = names::nick(&user.id, user.irc_name.as_deref());
            self.who_line("*", &nick, &user.display_name);
        }
        self.reply(
            Response::RPL_ENDOFWHO,
            vec![mask.to_owned(), "End of WHO list".into()],
        );
    }

    async fn user_by_nick(&self, nick: &str) -> Option<UserRecord> {
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
    async fn whois(&mut self, nick: &str) {
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
    async fn list(&mut self) {
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

    async fn privmsg(&mut self, target: &str, text: String) {
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
        // The same per-user message limit as SendMessage over gRPC.
        let me = self.me().id.clone();
        if let Err(e) = self
            .gateway
            .limits
            .check(crate::limits::Limit::Message, &me)
        {
            self.reply(
                Response::ERR_CANNOTSENDTOCHAN,
                vec![target.to_owned(), e.to_string()],
            );
            return;
        }
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
    async fn dm_channel(&self, nick: &str) -> Result<String, String> {
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
    async fn dm_peer(&mut self, channel_id: &str) -> Option<String> {
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

    async fn nick_of(&mut self, user_id: &str, fallback: &str) -> String {
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
    async fn on_event(&mut self, bytes: &[u8]) {
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
    fn channels_of(&self, guild_id: &str) -> Vec<String> {
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
    async fn on_message(&mut self, message: pb::Message) {
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
    async fn send_message_lines(&mut self, message: &pb::Message, target: &str, extra: Vec<Tag>) {
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

/// IRCv3 `server-time`: `YYYY-MM-DDThh:mm:ss.sssZ` in UTC.
fn server_time(at: &prost_types::Timestamp) -> String {
    let secs = at.seconds.max(0);
    let millis = at.nanos.max(0) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A display name made into something IRC accepts as a nick.
fn sanitize_nick(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, ',' | '*' | '?' | '!' | '@' | '.' | ':'))
        .take(NICK_LEN)
        .collect();
    let cleaned = cleaned.trim_start_matches(['$', '#', '&', '+', '%', '~']);
    if cleaned.is_empty() {
        "webhook".into()
    } else {
        cleaned.to_owned()
    }
}

/// The verb of a command, for numerics that name it.
fn verb_of(command: &Command) -> String {
    match command {
        Command::Raw(verb, _) => verb.to_ascii_uppercase(),
        other => {
            let text = Message {
                tags: None,
                prefix: None,
                command: other.clone(),
            }
            .to_string();
            text.split([' ', '\r']).next().unwrap_or("").to_owned()
        }
    }
}

/// Commands the gateway knows, so one with too few parameters gets ERR_NEEDMOREPARAMS.
fn known_verb(verb: &str) -> bool {
    [
        "PASS",
        "NICK",
        "USER",
        "JOIN",
        "PART",
        "PRIVMSG",
        "NOTICE",
        "PING",
        "AUTHENTICATE",
        "CAP",
    ]
    .iter()
    .any(|v| v.eq_ignore_ascii_case(verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_is_iso_utc_with_millis() {
        let at = prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 5_000_000,
        };
        assert_eq!(server_time(&at), "2026-01-01T00:00:00.005Z");
        let leap = prost_types::Timestamp {
            seconds: 951_782_400, // 2000-02-29
            nanos: 0,
        };
        assert_eq!(server_time(&leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn nicks_from_display_names() {
        assert_eq!(sanitize_nick("Deploy bot"), "Deploybot");
        assert_eq!(sanitize_nick("#!@"), "webhook");
    }
}
