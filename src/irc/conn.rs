//! One IRC connection: its read loop, its bounded write queue and the dispatch of each line.
//! What the lines do lives in the submodules: [`registration`] (CAP, SASL PLAIN or PASS, NICK,
//! USER), [`channels`] (JOIN, PART, TOPIC, WHOIS, LIST), [`roster`] (NAMES and WHO with status
//! prefixes, WHOX), [`moderation`] (MODE, KICK, bans), [`messages`] (PRIVMSG both ways, DMs,
//! events), [`multiline`], [`reactions`] (TAGMSG reactions and typing, REDACT), [`read_marker`],
//! [`realname`] (SETNAME), [`away`] (AWAY, USERHOST), [`bots`] (bot mode), [`server_queries`] (TIME, LUSERS, INFO),
//! [`monitor`], [`labels`] (`labeled-response`) and [`history`]
//! (`draft/chathistory`).

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
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;

mod accounts;
mod away;
mod bots;
mod channels;
mod edits;
mod history;
mod input;
mod labels;
mod messages;
mod moderation;
mod monitor;
mod multiline;
mod reactions;
mod read_marker;
mod realname;
mod registration;
mod roster;
mod server_queries;
mod shared_roster;

pub(super) use shared_roster::SharedRosters;

use super::names::{self, NICK_LEN};
use super::{Gateway, MAX_LINE, SENDQ_LINES};
use crate::events::stream::EventStream;
use crate::guilds::permissions;
use crate::messages::SendInput;
use crate::proto::guildhall::v1 as pb;
use crate::store::{SessionInfo, UserRecord, accounts as users, guilds as gdb};

/// The capabilities the gateway offers (`CAP LS`).
const CAPS: &[&str] = &[
    "account-notify",
    "account-tag",
    "away-notify",
    "batch",
    "cap-notify",
    "draft/account-registration",
    "draft/chathistory",
    "draft/message-redaction",
    "draft/multiline",
    "draft/read-marker",
    "echo-message",
    "extended-join",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
    "setname",
    "userhost-in-names",
];

/// Bytes the read buffer of a connection starts with.
const READ_BUFFER_START: usize = 1024;
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
    // Lines as bytes: one that is not UTF-8 is refused with a FAIL, not taken for a broken
    // connection.
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), MAX_LINE);
    // Lines are short: the buffer starts small and grows for a long one (8 KiB is the codec's
    // default, kept by every idle connection).
    let mut lines = FramedRead::with_capacity(read, codec, READ_BUFFER_START);
    let mut conn = Conn::new(gateway, tx, peer.ip());
    let mut events: Option<EventStream> = None;
    let deadline = tokio::time::sleep(REGISTRATION_TIMEOUT);
    tokio::pin!(deadline);
    // Silence from the client: first a PING, then, if that gets nothing either, the end.
    // Silent for `keepalive`: a PING; silent half as long again: the end.
    let (ping_after, ping_timeout) = (conn.gateway.keepalive, conn.gateway.keepalive / 2);
    let quiet = tokio::time::sleep(ping_after);
    tokio::pin!(quiet);
    let mut pinged = false;
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
            () = &mut quiet => {
                if pinged {
                    conn.error("Ping timeout");
                    break;
                }
                pinged = true;
                let server = conn.gateway.server_name.clone();
                conn.send(Message { tags: None, prefix: None, command: Command::PING(server, None) });
                quiet.as_mut().reset(tokio::time::Instant::now() + ping_timeout);
            }
            line = lines.next() => match line {
                None | Some(Err(AnyDelimiterCodecError::Io(_))) => break,
                Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                    conn.numeric_raw("417", vec!["Input line was too long".into()]);
                }
                Some(Ok(bytes)) => {
                    pinged = false;
                    quiet.as_mut().reset(tokio::time::Instant::now() + ping_after);
                    let bytes = bytes.strip_suffix(b"\r").unwrap_or(&bytes);
                    let line = match input::check(bytes) {
                        Ok(line) => line,
                        Err(refusal) => {
                            conn.refuse_line(bytes, refusal);
                            continue;
                        }
                    };
                    if let Flow::Quit(reason) = conn.handle(line).await {
                        conn.error(&reason);
                        break;
                    }
                    if conn.registered && events.is_none() {
                        match conn.subscribe().await {
                            Ok(stream) => {
                                events = Some(stream);
                                // A connected IRC client is its user online, as a gRPC client
                                // that signals it is; announced once the client hears events,
                                // so nothing said in answer is missed.
                                if let Err(e) = conn.gateway.presence.signal(&conn.session(), true).await {
                                    tracing::debug!(error = %e, "IRC: presence online");
                                }
                            }
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
    /// The client's address: logins and registrations are rate-limited by it.
    peer: std::net::IpAddr,
    out: mpsc::Sender<String>,
    /// The queue filled: the client is not reading.
    overflowed: bool,
    /// A NOTICE is being handled: numerics and `FAIL`s are not sent (no error answers one).
    quiet: bool,
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
    /// Lines gathered for a labeled command's answer (`labeled-response`).
    gathered: Option<Vec<Message>>,
    /// Messages this client sent and already saw echoed, so the event does not echo them again.
    echoed: HashSet<String>,
    /// Edits already shown as corrections.
    edits: edits::EditsShown,
    /// Nicks watched with `MONITOR` (lowercase), with whether each was last reported online.
    monitored: HashMap<String, bool>,
    /// A `draft/multiline` batch being received.
    multiline: Option<multiline::Incoming>,
    /// The read marker last sent for each target (lowercase), so a receipt for it is not
    /// repeated.
    markers: HashMap<String, u64>,
    /// Guilds whose members' prefixes this client was shown (`NAMES`): their role changes are
    /// shown as `MODE` lines.
    shown_guilds: HashSet<String>,
    /// Of those, the members who have any prefix, with them (everyone else has none).
    prefixes: HashMap<(String, String), String>,
    /// Counts the client in `LUSERS` from its registration until it goes.
    counted: Option<super::Registered>,
    /// Whether users seen are bots (`+B`), by id.
    bots: HashMap<String, bool>,
}

impl Conn {
    fn new(gateway: Gateway, out: mpsc::Sender<String>, peer: std::net::IpAddr) -> Self {
        Self {
            gateway,
            peer,
            out,
            overflowed: false,
            quiet: false,
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
            gathered: None,
            echoed: HashSet::new(),
            edits: edits::EditsShown::default(),
            monitored: HashMap::new(),
            multiline: None,
            markers: HashMap::new(),
            shown_guilds: HashSet::new(),
            prefixes: HashMap::new(),
            counted: None,
            bots: HashMap::new(),
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
        if let Some(gathered) = &mut self.gathered {
            gathered.push(message);
            return;
        }
        if self.overflowed {
            return;
        }
        if self.out.try_send(message.to_string()).is_err() {
            self.overflowed = true;
        }
    }

    fn reply(&mut self, response: Response, mut args: Vec<String>) {
        if self.quiet {
            return;
        }
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
        if self.quiet {
            return;
        }
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

    /// Handles one line from the client, its answer labeled if it asked.
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
        // A line inside a multiline batch is gathered, not handled.
        if self.multiline_line(&message) {
            return Flow::Continue;
        }
        let label = self.begin_label(message.tags.as_ref());
        let batch_was_open = self.multiline.is_some();
        let flow = self.dispatch(line, message).await;
        if let Some(label) = label {
            match self.multiline.as_mut() {
                // A labeled multiline batch is answered when it ends.
                Some(open) if !batch_was_open => {
                    open.label = Some(label);
                    for line in self.gathered.take().unwrap_or_default() {
                        self.send(line);
                    }
                }
                _ => self.end_label(label),
            }
        }
        if matches!(flow, Flow::Continue) && !self.registered {
            return self.try_register().await;
        }
        flow
    }

    /// Does what one parsed line asks.
    async fn dispatch(&mut self, line: &str, message: Message) -> Flow {
        let tags = message.tags.clone().unwrap_or_default();
        match message.command {
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
            Command::USER(username, _, real_name) => {
                if self.registered {
                    self.reply(
                        Response::ERR_ALREADYREGISTRED,
                        vec!["You may not reregister".into()],
                    );
                } else if username.is_empty() || real_name.is_empty() {
                    // Modern IRC: neither may be empty, even when the parameter is there.
                    self.reply(
                        Response::ERR_NEEDMOREPARAMS,
                        vec!["USER".into(), "Not enough parameters".into()],
                    );
                } else {
                    self.user_given = true;
                }
                Flow::Continue
            }
            Command::AUTHENTICATE(data) => {
                self.authenticate(&data).await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("REGISTER") => {
                self.register_account(args).await;
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
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("CAP") => {
                // A subcommand irc-proto does not know (IRCv3 capability negotiation).
                let sub = args.into_iter().next().unwrap_or_default();
                self.numeric_raw("410", vec![sub, "Invalid CAP command".into()]);
                Flow::Continue
            }
            Command::QUIT(reason) => Flow::Quit(format!("Quit: {}", reason.unwrap_or_default())),
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
            Command::PART(channels, reason) => {
                for name in channels.split(',').filter(|n| !n.is_empty()) {
                    self.part(name, reason.clone());
                }
                Flow::Continue
            }
            Command::PRIVMSG(target, text) => {
                if text.is_empty() {
                    self.reply(Response::ERR_NOTEXTTOSEND, vec!["No text to send".into()]);
                } else {
                    let reply_to = tag_value(&tags, "+draft/reply");
                    self.privmsg(&target, text, reply_to).await;
                }
                Flow::Continue
            }
            Command::NOTICE(target, text) => {
                // Modern IRC: a NOTICE is never answered with an error.
                self.quiet = true;
                if !text.is_empty() {
                    let reply_to = tag_value(&tags, "+draft/reply");
                    self.privmsg(&target, text, reply_to).await;
                }
                self.quiet = false;
                Flow::Continue
            }
            Command::BATCH(reference, kind, params) => {
                self.batch_command(&reference, kind, params.unwrap_or_default(), &tags)
                    .await;
                Flow::Continue
            }
            Command::MONITOR(sub, targets) => {
                self.monitor(&sub, targets.as_deref()).await;
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
                self.user_mode(&target, modes).await;
                Flow::Continue
            }
            Command::TOPIC(channel, topic) => {
                self.topic(&channel, topic.is_some()).await;
                Flow::Continue
            }
            Command::WHO(mask, _) => {
                // irc-proto keeps only whether the second parameter is "o"; WHOX needs it whole.
                let fields = raw_params(line).get(1).cloned();
                self.who(mask.as_deref().unwrap_or("*"), fields.as_deref())
                    .await;
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
            Command::AWAY(reason) => {
                self.away(reason).await;
                Flow::Continue
            }
            Command::USERHOST(nicks) => {
                if nicks.is_empty() {
                    self.reply(
                        Response::ERR_NEEDMOREPARAMS,
                        vec!["USERHOST".into(), "Not enough parameters".into()],
                    );
                } else {
                    self.userhost(nicks).await;
                }
                Flow::Continue
            }
            Command::TIME(target) => {
                self.time(target).await;
                Flow::Continue
            }
            Command::LUSERS(..) => {
                self.lusers();
                Flow::Continue
            }
            Command::INFO(target) => {
                self.info(target).await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("CHATHISTORY") => {
                self.chathistory(args).await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("TAGMSG") => {
                self.tagmsg(args.first().map_or("", String::as_str), &tags)
                    .await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("REDACT") => {
                self.redact(args).await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("MARKREAD") => {
                self.markread(args).await;
                Flow::Continue
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("SETNAME") => {
                self.setname(args);
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
        }
    }

    /// Sends a standard-replies `FAIL <command> <code> [context…] :<description>`.
    pub(super) fn fail(&mut self, command: &str, code: &str, context: Vec<String>, text: &str) {
        if self.quiet {
            return;
        }
        let mut args = vec![command.to_owned(), code.to_owned()];
        args.extend(context);
        args.push(text.to_owned());
        self.send(Message {
            tags: None,
            prefix: Some(self.server()),
            command: Command::Raw("FAIL".into(), args),
        });
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
}

/// The IRCv3 `server-time` format: ISO 8601 with milliseconds, `YYYY-MM-DDThh:mm:ss.sssZ`.
const SERVER_TIME: time::format_description::well_known::iso8601::EncodedConfig =
    time::format_description::well_known::iso8601::Config::DEFAULT
        .set_time_precision(
            time::format_description::well_known::iso8601::TimePrecision::Second {
                decimal_digits: std::num::NonZeroU8::new(3),
            },
        )
        .encode();

/// IRCv3 `server-time`: `YYYY-MM-DDThh:mm:ss.sssZ` in UTC.
fn server_time(at: &prost_types::Timestamp) -> String {
    let ms = i128::from(at.seconds) * 1000 + i128::from(at.nanos / 1_000_000);
    ms_time(u64::try_from(ms).unwrap_or(0))
}

/// A time in ms since the epoch as `server-time` writes it.
fn ms_time(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Iso8601::<SERVER_TIME>)
                .ok()
        })
        .unwrap_or_default()
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

/// The value of the tag `key`, if the line has it with a value.
fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|Tag(k, _)| k == key)
        .and_then(|Tag(_, value)| value.clone())
        .filter(|v| !v.is_empty())
}

/// Every parameter of `line`, for commands whose irc-proto shape drops some (`WHO`'s WHOX
/// fields): the line is parsed again under a verb irc-proto has no shape for, which keeps them
/// all.
fn raw_params(line: &str) -> Vec<String> {
    let mut rest = line.trim_start();
    for marker in ['@', ':'] {
        if rest.starts_with(marker) {
            rest = rest.split_once(' ').map_or("", |(_, r)| r).trim_start();
        }
    }
    let params = rest.split_once(' ').map_or("", |(_, r)| r);
    match format!("X-PARAMS {params}").parse::<Message>() {
        Ok(Message {
            command: Command::Raw(_, args),
            ..
        }) => args,
        _ => Vec::new(),
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
        "TAGMSG",
        "REDACT",
        "MARKREAD",
        "SETNAME",
        "MONITOR",
        "REGISTER",
        "KICK",
        "TOPIC",
        "WHOIS",
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
