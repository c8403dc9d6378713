//! The IRC gateway (docs/IRC.md) spoken to over TCP, its lines read with an IRCv3 parser of the
//! tests' own (`ircv3_parse`), not the gateway's: IRC tokens minted, listed and revoked over gRPC;
//! registration with PASS and with SASL PLAIN (CAP negotiation), and their refusals; two IRC
//! clients and a gRPC client in one channel seeing each other; long and multi-line text
//! (`draft/multiline` both ways); private messages over DMs, started and accepted from IRC;
//! MODE, TOPIC, WHO (and WHOX), WHOIS, LIST, status prefixes; kicks, bans and the ban list; the
//! message rate limit; `draft/chathistory` after a restart; `labeled-response`; replies,
//! reactions, typing and REDACT; read markers; MONITOR; channels created by JOIN; what
//! `GetServerInfo` says.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use guildhall::identity::freshness::now_ms;
use guildhall::proto::guildhall::v1 as pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(10);
/// Most lines read while waiting for one.
const LINES_MAX: usize = 500;

/// One line from the gateway, as the tests' parser reads it.
#[derive(Debug, Clone)]
struct Line {
    source: Option<String>,
    command: String,
    params: Vec<String>,
    msgid: Option<String>,
    time: Option<String>,
    account: Option<String>,
    /// The whole line, for tags the fields above don't hold.
    raw: String,
}

impl Line {
    /// The value of the tag `key` (empty for a tag without one).
    fn tag(&self, key: &str) -> Option<String> {
        let message = ircv3_parse::parse(&self.raw).expect("parsed before");
        let tags = message.tags()?;
        if tags.get_flag(key) {
            return Some(String::new());
        }
        tags.get_unescaped(key)
    }

    fn parse(raw: &str) -> Line {
        let message = ircv3_parse::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        let mut params: Vec<String> = message
            .params()
            .middles
            .to_vec()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if message.params().trailing.is_some() {
            params.push(message.params().trailing.as_str().to_owned());
        }
        let tags = message.tags();
        Line {
            source: message.source().map(|s| s.name.to_owned()),
            command: message.command().as_str().to_owned(),
            params,
            msgid: tags.and_then(|t| t.get_unescaped("msgid")),
            time: tags.and_then(|t| t.get_unescaped("time")),
            account: tags.and_then(|t| t.get_unescaped("account")),
            raw: raw.to_owned(),
        }
    }

    fn last(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }
}

struct Irc {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Irc {
    async fn connect(addr: SocketAddr) -> Irc {
        let stream = TcpStream::connect(addr).await.expect("connect to IRC");
        let (read, write) = stream.into_split();
        Irc {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
    }

    /// The next line, or `None` when the gateway closed the connection.
    async fn next(&mut self) -> Option<Line> {
        let raw = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")?;
        Some(Line::parse(&raw))
    }

    /// Reads until a line with `command` (a verb or a numeric) arrives.
    async fn until(&mut self, command: &str) -> Line {
        for _ in 0..LINES_MAX {
            let line = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {command}"));
            if line.command == command {
                return line;
            }
        }
        panic!("no {command} in {LINES_MAX} lines");
    }

    /// Reads until a PRIVMSG to `target` arrives (skipping those to other targets).
    async fn privmsg_to(&mut self, target: &str) -> Line {
        for _ in 0..LINES_MAX {
            let line = self.until("PRIVMSG").await;
            if line.params[0] == target {
                return line;
            }
        }
        panic!("no PRIVMSG to {target} in {LINES_MAX} lines");
    }

    /// Reads until the gateway closes the connection; the lines it sent meanwhile.
    async fn until_closed(&mut self) -> Vec<Line> {
        let mut seen = Vec::new();
        for _ in 0..LINES_MAX {
            match self.next().await {
                Some(line) => seen.push(line),
                None => return seen,
            }
        }
        panic!("still open after {LINES_MAX} lines");
    }

    /// Registers with `PASS username:token`; returns the welcome's nick.
    async fn login_pass(addr: SocketAddr, nick: &str, pass: &str) -> (Irc, String) {
        let mut irc = Irc::connect(addr).await;
        irc.send(&format!("PASS {pass}")).await;
        irc.send(&format!("NICK {nick}")).await;
        irc.send("USER u 0 * :A user").await;
        let welcome = irc.until("001").await;
        (irc, welcome.params[0].clone())
    }
}

async fn irc_node() -> (TestNode, SocketAddr) {
    let node =
        TestNode::spawn_with(|c| c.irc_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let addr = node.node().irc_addr.expect("IRC listening");
    (node, addr)
}

/// `user` sets their username (a signed `UpdateUser`).
async fn set_username(node: &TestNode, user: &TestUser, username: &str) {
    let mut update = pb::UpdateUserRequest {
        irc_name: Some(username.into()),
        timestamp: now_ms(),
        ..Default::default()
    };
    user.identity.sign_update(&mut update);
    node.client()
        .await
        .update_user(authed(&user.token, update))
        .await
        .expect("set username");
}

/// Registers `name` with username `username` and an IRC token; returns the user and the token.
async fn irc_user(node: &TestNode, name: &str, username: &str) -> (TestUser, String) {
    let user = register(node, name).await;
    set_username(node, &user, username).await;
    let token = node
        .client()
        .await
        .create_irc_token(authed(
            &user.token,
            pb::CreateIrcTokenRequest {
                label: "laptop irssi".into(),
            },
        ))
        .await
        .expect("mint an IRC token")
        .into_inner()
        .token;
    (user, token)
}

#[tokio::test]
async fn irc_and_grpc_members_chat_in_one_channel() {
    let (node, addr) = irc_node().await;
    let info = node
        .client()
        .await
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner();
    assert!(info.irc_enabled);
    assert_eq!(info.irc_port, i32::from(addr.port()));
    assert_eq!(info.irc_server, "127.0.0.1");

    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (ada, ada_token) = irc_user(&node, "Ada", "ada").await;
    let (bob, bob_token) = irc_user(&node, "Bob", "bob").await;
    join_room(&node, &ada, &room.invite).await;
    join_room(&node, &bob, &room.invite).await;
    let channel = format!("#{}/general", room.guild);

    // Ada asks for another nick: her nick is her username.
    let (mut ada_irc, nick) = Irc::login_pass(addr, "someone", &format!("ada:{ada_token}")).await;
    assert_eq!(nick, "ada");
    let isupport = ada_irc.until("005").await;
    assert!(isupport.params.iter().any(|p| p == "CASEMAPPING=ascii"));
    assert!(isupport.params.iter().any(|p| p == "UTF8ONLY"));
    ada_irc.send(&format!("JOIN {channel}")).await;
    let joined = ada_irc.until("JOIN").await;
    assert_eq!(joined.source.as_deref(), Some("ada"));
    assert_eq!(joined.params[0], channel);
    let names = ada_irc.until("353").await;
    for nick in ["ada", "bob"] {
        assert!(names.last().split(' ').any(|n| n == nick), "{names:?}");
    }
    ada_irc.until("366").await;

    // Bob logs in with SASL PLAIN and asks for server-time, message-tags and echo-message.
    let mut bob_irc = Irc::connect(addr).await;
    bob_irc.send("CAP LS 302").await;
    let caps = bob_irc.until("CAP").await;
    assert!(
        caps.last().split(' ').any(|c| c == "sasl=PLAIN"),
        "{caps:?}"
    );
    bob_irc.send("NICK bob").await;
    bob_irc.send("USER bob 0 * :Bob").await;
    bob_irc
        .send("CAP REQ :sasl server-time message-tags echo-message account-tag extended-join userhost-in-names")
        .await;
    assert_eq!(bob_irc.until("CAP").await.params[1], "ACK");
    bob_irc.send("AUTHENTICATE PLAIN").await;
    assert_eq!(bob_irc.until("AUTHENTICATE").await.params[0], "+");
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0bob\0{bob_token}"));
    bob_irc.send(&format!("AUTHENTICATE {plain}")).await;
    bob_irc.until("903").await;
    bob_irc.send("CAP END").await;
    assert_eq!(bob_irc.until("001").await.params[0], "bob");
    bob_irc.send(&format!("JOIN {channel}")).await;
    // extended-join: the account and the real name; userhost-in-names: nick!user@host.
    let joined = bob_irc.until("JOIN").await;
    assert_eq!(joined.params, [channel.clone(), "bob".into(), "Bob".into()]);
    let names = bob_irc.until("353").await;
    assert!(
        names.last().split(' ').any(|n| n == "ada!ada@127.0.0.1"),
        "{names:?}"
    );
    bob_irc.until("366").await;

    // gRPC → IRC, with server-time and msgid for the client that asked.
    let mut owner_sees = subscribe(&node, &owner.token).await;
    let sent = send_text(&node, &owner.token, &room.channel, "hello from gRPC").await;
    let at_bob = bob_irc.until("PRIVMSG").await;
    assert_eq!(at_bob.params, [channel.clone(), "hello from gRPC".into()]);
    assert_eq!(at_bob.msgid.as_deref(), Some(sent.id.as_str()));
    assert!(at_bob.time.as_deref().is_some_and(|t| t.ends_with('Z')));
    let at_ada = ada_irc.until("PRIVMSG").await;
    assert_eq!(at_ada.last(), "hello from gRPC");
    assert_eq!(at_ada.msgid, None, "Ada asked for no tags");
    let owner_nick = at_ada.source.clone().expect("a source");
    assert!(owner_nick.starts_with('u'), "no username: {owner_nick}");

    // IRC → gRPC and the other IRC client; Bob hears his own echo (echo-message), Ada does not.
    ada_irc
        .send(&format!("PRIVMSG {channel} :hi from irssi"))
        .await;
    let created = until(&mut owner_sees, |e| match e {
        pb::stream_response::Event::MessageCreated(m) => {
            m.message.clone().filter(|m| m.text == "hi from irssi")
        }
        _ => None,
    })
    .await;
    assert_eq!(created.sender_id, ada.user.id);
    let at_bob = bob_irc.until("PRIVMSG").await;
    assert_eq!(at_bob.source.as_deref(), Some("ada"));
    assert_eq!(at_bob.last(), "hi from irssi");
    assert_eq!(at_bob.account.as_deref(), Some("ada"), "account-tag");
    bob_irc.send(&format!("PRIVMSG {channel} :echo me")).await;
    let echo = bob_irc.until("PRIVMSG").await;
    assert_eq!(
        (echo.source.as_deref(), echo.last()),
        (Some("bob"), "echo me")
    );
    assert!(echo.msgid.is_some());
    let at_ada = ada_irc.until("PRIVMSG").await;
    assert_eq!(
        at_ada.last(),
        "echo me",
        "Ada's own line was not echoed to her"
    );

    // Long and multi-line text: split on lines, then on spaces and characters; nothing lost.
    let word = "ü".repeat(120);
    let long = format!("{word} {word} {word}\nsecond line");
    send_text(&node, &owner.token, &room.channel, &long).await;
    let mut pieces = Vec::new();
    while pieces.concat() != format!("{word} {word} {word}second line") {
        let line = ada_irc.until("PRIVMSG").await;
        assert!(line.last().len() <= 400);
        pieces.push(line.last().to_owned());
        assert!(pieces.len() <= 5, "{pieces:?}");
    }
    assert_eq!(pieces.last().map(String::as_str), Some("second line"));

    // What clients ask on joining: modes, topic, who is there; and WHOIS, LIST.
    ada_irc.send(&format!("MODE {channel}")).await;
    assert_eq!(
        ada_irc.until("324").await.params[1..],
        [channel.clone(), "+nt".into()]
    );
    ada_irc.send(&format!("MODE {channel} +o bob")).await;
    ada_irc.until("482").await;
    ada_irc.send(&format!("TOPIC {channel}")).await;
    assert_eq!(ada_irc.until("332").await.last(), "general");
    ada_irc.send(&format!("WHO {channel}")).await;
    let mut who = Vec::new();
    loop {
        let line = ada_irc.next().await.expect("open");
        match line.command.as_str() {
            "352" => who.push(line.params[5].clone()),
            "315" => break,
            _ => {}
        }
        assert!(who.len() <= 10);
    }
    for nick in ["ada", "bob"] {
        assert!(who.iter().any(|n| n == nick), "{who:?}");
    }
    ada_irc.send("WHOIS bob").await;
    let whois = ada_irc.until("311").await;
    assert_eq!((whois.params[1].as_str(), whois.last()), ("bob", "Bob"));
    ada_irc.until("318").await;
    ada_irc.send("LIST").await;
    let listed = ada_irc.until("322").await;
    assert_eq!(listed.params[1], channel);
    ada_irc.until("323").await;

    // Someone joining the guild on gRPC shows as a JOIN.
    let cy = register(&node, "Cy").await;
    join_room(&node, &cy, &room.invite).await;
    let cy_joins = ada_irc.until("JOIN").await;
    assert_eq!(cy_joins.params[0], channel);
    assert_eq!(cy_joins.source, Some(format!("u{}", &cy.user.id[..8])));

    // Private messages travel in the DM the two share.
    ada_irc.send("PRIVMSG bob :psst").await;
    assert!(
        ada_irc
            .until("401")
            .await
            .last()
            .contains("Asked bob for a DM")
    );
    let dm = create_dm(&node, &ada, &bob.user.id).await;
    join_room(&node, &bob, &dm.token).await;
    ada_irc.send("PRIVMSG bob :psst").await;
    let private = bob_irc.privmsg_to("bob").await;
    assert_eq!(
        (
            private.source.as_deref(),
            private.params[0].as_str(),
            private.last()
        ),
        (Some("ada"), "bob", "psst")
    );
    bob_irc.send("PRIVMSG ada :hush").await;
    let echo = bob_irc.privmsg_to("ada").await;
    assert_eq!((echo.params[0].as_str(), echo.last()), ("ada", "hush"));
    let private = ada_irc.privmsg_to("ada").await;
    assert_eq!(
        (private.params[0].as_str(), private.last()),
        ("ada", "hush")
    );

    // Refusals: a channel that does not exist, one not joined, an unknown nick, an unknown
    // command.
    ada_irc.send("JOIN #nope").await;
    assert_eq!(ada_irc.until("403").await.params[1], "#nope");
    ada_irc.send(&format!("PART {channel}")).await;
    ada_irc.until("PART").await;
    ada_irc
        .send(&format!("PRIVMSG {channel} :not joined"))
        .await;
    assert_eq!(ada_irc.until("404").await.params[1], channel);
    ada_irc.send("PRIVMSG nobody :hello").await;
    assert!(ada_irc.until("401").await.last().contains("No such nick"));
    ada_irc.send("FROBNICATE").await;
    assert_eq!(ada_irc.until("421").await.params[1], "FROBNICATE");
    ada_irc.send("PING :still-there").await;
    assert_eq!(ada_irc.until("PONG").await.last(), "still-there");
}

#[tokio::test]
async fn irc_logins_are_refused_without_a_valid_token() {
    let (node, addr) = irc_node().await;
    let (ada, token) = irc_user(&node, "Ada", "ada").await;

    // No password at all.
    let mut irc = Irc::connect(addr).await;
    irc.send("NICK ada").await;
    irc.send("USER ada 0 * :Ada").await;
    let seen = irc.until_closed().await;
    assert!(seen.iter().any(|l| l.command == "464"), "{seen:?}");
    assert!(seen.iter().any(|l| l.command == "ERROR"));

    // Another user's name with Ada's token; a made-up token.
    for pass in [format!("bob:{token}"), "ada:ghirc_nothing".to_owned()] {
        let mut irc = Irc::connect(addr).await;
        irc.send(&format!("PASS {pass}")).await;
        irc.send("NICK ada").await;
        irc.send("USER ada 0 * :Ada").await;
        let seen = irc.until_closed().await;
        assert!(seen.iter().any(|l| l.command == "464"), "{seen:?}");
    }

    // SASL with a wrong token fails and leaves the connection open to try again.
    let mut irc = Irc::connect(addr).await;
    irc.send("CAP REQ :sasl").await;
    irc.until("CAP").await;
    irc.send("AUTHENTICATE PLAIN").await;
    irc.until("AUTHENTICATE").await;
    let wrong = base64::engine::general_purpose::STANDARD.encode("\0ada\0ghirc_wrong");
    irc.send(&format!("AUTHENTICATE {wrong}")).await;
    irc.until("904").await;

    // Listed without the token itself; once revoked it logs no one in.
    let mut c = node.client().await;
    let listed = c
        .list_irc_tokens(authed(&ada.token, pb::Empty {}))
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label, "laptop irssi");
    assert!(listed[0].token.is_empty());
    Irc::login_pass(addr, "ada", &format!("ada:{token}")).await;
    c.revoke_irc_token(authed(
        &ada.token,
        pb::RevokeIrcTokenRequest {
            id: listed[0].id.clone(),
        },
    ))
    .await
    .expect("revoke");
    let mut irc = Irc::connect(addr).await;
    irc.send(&format!("PASS ada:{token}")).await;
    irc.send("NICK ada").await;
    irc.send("USER ada 0 * :Ada").await;
    let seen = irc.until_closed().await;
    assert!(seen.iter().any(|l| l.command == "464"), "{seen:?}");
    assert_status(
        c.revoke_irc_token(authed(
            &ada.token,
            pb::RevokeIrcTokenRequest {
                id: listed[0].id.clone(),
            },
        ))
        .await,
        tonic::Code::NotFound,
        "no IRC token",
    );
}

/// Collects the PRIVMSG texts of one `chathistory` batch (the client took `batch`).
async fn history_batch(irc: &mut Irc) -> Vec<String> {
    let start = irc.until("BATCH").await;
    assert_eq!(start.params[1], "chathistory", "{start:?}");
    let reference = start.params[0].trim_start_matches('+').to_owned();
    let mut texts = Vec::new();
    for _ in 0..LINES_MAX {
        let line = irc.next().await.expect("open");
        match line.command.as_str() {
            "PRIVMSG" => texts.push(line.last().to_owned()),
            "BATCH" if line.params[0] == format!("-{reference}") => return texts,
            _ => {}
        }
    }
    panic!("batch {reference} never ended");
}

/// After a restart the IRC client reconnects and fills the gap with `draft/chathistory`: every
/// subcommand, references by msgid and by timestamp, and the refusals.
#[tokio::test]
async fn chathistory_fills_the_gap_after_a_restart() {
    let (mut node, addr) = irc_node().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (ada, token) = irc_user(&node, "Ada", "ada").await;
    join_room(&node, &ada, &room.invite).await;
    drop(ada);
    let channel = format!("#{}/general", room.guild);
    let connect = |addr| {
        let token = token.clone();
        let channel = channel.clone();
        async move {
            let mut irc = Irc::connect(addr).await;
            irc.send("CAP LS 302").await;
            irc.send(&format!("PASS ada:{token}")).await;
            irc.send("NICK ada").await;
            irc.send("USER ada 0 * :Ada").await;
            irc.send("CAP REQ :batch draft/chathistory server-time message-tags")
                .await;
            irc.until("CAP").await;
            irc.send("CAP END").await;
            let isupport = irc.until("005").await;
            assert!(isupport.params.iter().any(|p| p == "CHATHISTORY=100"));
            assert!(
                isupport
                    .params
                    .iter()
                    .any(|p| p == "MSGREFTYPES=msgid,timestamp")
            );
            irc.send(&format!("JOIN {channel}")).await;
            irc.until("366").await;
            irc
        }
    };
    let mut irc = connect(addr).await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(
            send_text(&node, &owner.token, &room.channel, &format!("m{i}"))
                .await
                .id,
        );
    }
    let mut m3_time = None;
    for _ in 0..3 {
        let line = irc.until("PRIVMSG").await;
        m3_time = line.time.clone();
    }
    let m3_time = m3_time.expect("server-time");

    // The same gRPC address (the users' homeserver); the IRC port is picked anew.
    let grpc = node.stop().await;
    node.start_on(grpc).await;
    let addr = node.node().irc_addr.expect("IRC listening again");
    for i in 4..=5 {
        ids.push(
            send_text(&node, &owner.token, &room.channel, &format!("m{i}"))
                .await
                .id,
        );
    }
    let mut irc2 = connect(addr).await;
    drop(irc);

    for (query, want) in [
        (
            format!("AFTER {channel} msgid={} 10", ids[2]),
            vec!["m4", "m5"],
        ),
        (
            format!("AFTER {channel} timestamp={m3_time} 10"),
            vec!["m4", "m5"],
        ),
        (format!("LATEST {channel} * 2"), vec!["m4", "m5"]),
        (format!("LATEST {channel} msgid={} 10", ids[3]), vec!["m5"]),
        (
            format!("BEFORE {channel} msgid={} 2", ids[3]),
            vec!["m2", "m3"],
        ),
        (
            format!("BETWEEN {channel} msgid={} msgid={} 10", ids[0], ids[4]),
            vec!["m2", "m3", "m4"],
        ),
        (
            format!("BETWEEN {channel} msgid={} msgid={} 10", ids[4], ids[0]),
            vec!["m2", "m3", "m4"],
        ),
        (
            format!("AROUND {channel} msgid={} 3", ids[2]),
            vec!["m2", "m3", "m4"],
        ),
    ] {
        irc2.send(&format!("CHATHISTORY {query}")).await;
        assert_eq!(history_batch(&mut irc2).await, want, "{query}");
    }

    irc2.send(
        "CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00Z timestamp=2100-01-01T00:00:00Z 10",
    )
    .await;
    let start = irc2.until("BATCH").await;
    assert_eq!(start.params[1], "draft/chathistory-targets");
    let target = irc2.until("CHATHISTORY").await;
    assert_eq!(target.params[..2], ["TARGETS".to_owned(), channel.clone()]);
    assert!(
        target.params[2].ends_with('Z') && !target.params[2].contains('='),
        "a bare timestamp: {target:?}"
    );

    irc2.send(&format!("CHATHISTORY BEFORE {channel} * 10"))
        .await;
    let fail = irc2.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["CHATHISTORY".to_owned(), "INVALID_PARAMS".into()]
    );
    irc2.send("CHATHISTORY LATEST #nope * 10").await;
    let fail = irc2.until("FAIL").await;
    assert_eq!(fail.params[1], "INVALID_TARGET");
    irc2.send(&format!("CHATHISTORY AFTER {channel} msgid=oops 10"))
        .await;
    assert_eq!(irc2.until("FAIL").await.params[1], "INVALID_PARAMS");
}

/// PRIVMSG counts against the same per-user message limit as SendMessage.
#[tokio::test]
async fn irc_messages_are_rate_limited_like_grpc_ones() {
    let node = TestNode::spawn_with(|c| {
        c.irc_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.settings.message_rate_limit = 2;
    })
    .await;
    let addr = node.node().irc_addr.expect("IRC listening");
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (ada, token) = irc_user(&node, "Ada", "ada").await;
    join_room(&node, &ada, &room.invite).await;
    let channel = format!("#{}/general", room.guild);
    let (mut irc, _) = Irc::login_pass(addr, "ada", &format!("ada:{token}")).await;
    irc.send(&format!("JOIN {channel}")).await;
    irc.until("366").await;
    for i in 0..3 {
        irc.send(&format!("PRIVMSG {channel} :line {i}")).await;
    }
    let refused = irc.until("404").await;
    assert!(refused.last().contains("message_rate_limit"), "{refused:?}");
}

#[tokio::test]
async fn a_node_without_irc_says_so() {
    let node = TestNode::spawn().await;
    let info = node
        .client()
        .await
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner();
    assert!(!info.irc_enabled);
    assert_eq!(info.irc_port, 0);
    assert!(node.node().irc_addr.is_none());
}

/// A node serving TLS serves IRC over TLS too, with the same certificate: a client that trusts
/// the CA registers and chats; a plaintext client gets nothing.
#[tokio::test]
async fn irc_is_served_over_tls_when_the_node_has_tls() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let ca = common::tls::TestCa::new("IRC test CA");
    let node = TestNode::spawn_with(|c| {
        ca.serve(c, "irc");
        c.irc_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let addr = node.node().irc_addr.expect("IRC listening");
    let (_ada, token) = irc_user(&node, "Ada", "ada").await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca.ca_file).expect("CA pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(format!("PASS ada:{token}\r\nNICK ada\r\nUSER ada 0 * :Ada\r\n").as_bytes())
        .await
        .expect("write");
    let mut welcomed = false;
    for _ in 0..LINES_MAX {
        let raw = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("open");
        if Line::parse(&raw).command == "001" {
            welcomed = true;
            break;
        }
    }
    assert!(welcomed);

    // Plaintext on the TLS port: the handshake fails (the node answers with a TLS alert) and the
    // connection closes; no IRC is served.
    let mut plain = Irc::connect(addr).await;
    plain.send("PASS ada:x").await;
    plain.send("NICK ada").await;
    plain.send("USER ada 0 * :Ada").await;
    for _ in 0..LINES_MAX {
        match tokio::time::timeout(WAIT, plain.lines.next_line()).await {
            Ok(Ok(Some(line))) => assert!(!line.contains(" 001 "), "IRC over plaintext: {line:?}"),
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => panic!("the plaintext connection stayed open"),
        }
    }
    panic!("the plaintext connection stayed open");
}

/// KICK and MODE +b act through the node's moderation, with its permission checks: a member
/// without `members.kick` is refused, the owner kicks and bans; the kicked member's client leaves
/// the channel, and the banned user can't come back through the invite.
#[tokio::test]
async fn kicks_and_bans_map_onto_moderation() {
    let (node, addr) = irc_node().await;
    let (owner, owner_token) = irc_user(&node, "Owner", "boss").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (bob, bob_token) = irc_user(&node, "Bob", "bob").await;
    let cy = register(&node, "Cy").await;
    set_username(&node, &cy, "cy").await;
    join_room(&node, &bob, &room.invite).await;
    join_room(&node, &cy, &room.invite).await;
    let channel = format!("#{}/general", room.guild);
    let (mut boss, _) = Irc::login_pass(addr, "boss", &format!("boss:{owner_token}")).await;
    let (mut bob_irc, _) = Irc::login_pass(addr, "bob", &format!("bob:{bob_token}")).await;
    for irc in [&mut boss, &mut bob_irc] {
        irc.send(&format!("JOIN {channel}")).await;
        irc.until("366").await;
    }

    bob_irc.send(&format!("KICK {channel} cy :out")).await;
    assert!(bob_irc.until("482").await.last().contains("members.kick"));
    boss.send(&format!("MODE {channel} b")).await;
    boss.until("368").await;
    boss.send(&format!("KICK {channel} nobody")).await;
    boss.until("401").await;

    boss.send(&format!("KICK {channel} bob :bye")).await;
    let parted = bob_irc.until("PART").await;
    assert_eq!(parted.params[0], channel);
    assert!(
        !member_ids(&node, &owner.token, &room.guild)
            .await
            .contains(&bob.user.id)
    );

    boss.send(&format!("MODE {channel} +b cy!*@*")).await;
    let mut cy_parted = false;
    for _ in 0..LINES_MAX {
        let line = boss.until("PART").await;
        if line.source.as_deref() == Some("cy") {
            cy_parted = true;
            break;
        }
    }
    assert!(cy_parted);
    assert!(
        !member_ids(&node, &owner.token, &room.guild)
            .await
            .contains(&cy.user.id)
    );
    let back = node
        .client()
        .await
        .join_invite(cy.identity.join_invite_request(
            &node.audience(),
            &room.invite,
            "Cy",
            now_ms(),
        ))
        .await;
    assert!(back.is_err(), "a banned user can't rejoin: {back:?}");
}

/// `of`'s presence status as `asker` sees it over gRPC (`GetPresence`).
async fn presence_status(node: &TestNode, asker: &TestUser, of: &TestUser) -> Option<i32> {
    node.client()
        .await
        .get_presence(authed(
            &asker.token,
            pb::GetPresenceRequest {
                user_ids: vec![of.user.id.clone()],
            },
        ))
        .await
        .expect("presence")
        .into_inner()
        .presence
        .first()
        .map(|p| p.status)
}

/// An IRC connection puts its user online for everyone who shares a guild with them, and offline
/// when it goes; with `away-notify`, other members' presence arrives as AWAY.
#[tokio::test]
async fn irc_clients_count_in_presence_and_hear_away_changes() {
    let (node, addr) = irc_node().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (ada, token) = irc_user(&node, "Ada", "ada").await;
    let (bob, _) = irc_user(&node, "Bob", "bob").await;
    join_room(&node, &ada, &room.invite).await;
    join_room(&node, &bob, &room.invite).await;
    let presence_of_ada = || presence_status(&node, &bob, &ada);
    assert_eq!(
        presence_of_ada().await,
        Some(pb::PresenceStatus::Offline as i32)
    );

    let mut irc = Irc::connect(addr).await;
    irc.send("CAP REQ :away-notify").await;
    irc.until("CAP").await;
    irc.send(&format!("PASS ada:{token}")).await;
    irc.send("NICK ada").await;
    irc.send("USER ada 0 * :Ada").await;
    irc.send("CAP END").await;
    irc.until("001").await;
    wait_for(WAIT, || async {
        presence_of_ada().await == Some(pb::PresenceStatus::Online as i32)
    })
    .await;

    node.client()
        .await
        .update_presence(authed(
            &bob.token,
            pb::UpdatePresenceRequest {
                status: pb::PresenceStatus::Busy as i32,
                active_call_channel_id: String::new(),
            },
        ))
        .await
        .expect("busy");
    let away = irc.until("AWAY").await;
    assert_eq!((away.source.as_deref(), away.last()), (Some("bob"), "Busy"));

    irc.send("QUIT :bye").await;
    irc.until_closed().await;
    wait_for(WAIT, || async {
        presence_of_ada().await == Some(pb::PresenceStatus::Offline as i32)
    })
    .await;
}

/// IRC tokens are bounded: a label over 64 characters, and a 21st token, are refused.
#[tokio::test]
async fn irc_token_refusals() {
    let node = TestNode::spawn().await;
    let (ada, _) = irc_user(&node, "Ada", "ada").await;
    let mut c = node.client().await;
    assert_status(
        c.create_irc_token(authed(
            &ada.token,
            pb::CreateIrcTokenRequest {
                label: "x".repeat(65),
            },
        ))
        .await,
        tonic::Code::InvalidArgument,
        "label: must be at most 64 characters",
    );
    for _ in 1..guildhall::accounts::irc::MAX_IRC_TOKENS {
        c.create_irc_token(authed(&ada.token, pb::CreateIrcTokenRequest::default()))
            .await
            .expect("within the bound");
    }
    assert_status(
        c.create_irc_token(authed(&ada.token, pb::CreateIrcTokenRequest::default()))
            .await,
        tonic::Code::FailedPrecondition,
        "20 IRC tokens",
    );
}

/// Registers with `PASS username:token` after asking for `caps`; the 005 lines seen.
async fn login_with_caps(
    addr: SocketAddr,
    nick: &str,
    token: &str,
    caps: &str,
) -> (Irc, Vec<Line>) {
    let mut irc = Irc::connect(addr).await;
    irc.send("CAP LS 302").await;
    irc.send(&format!("PASS {nick}:{token}")).await;
    irc.send(&format!("NICK {nick}")).await;
    irc.send(&format!("USER {nick} 0 * :{nick}")).await;
    irc.send(&format!("CAP REQ :{caps}")).await;
    let mut isupport = Vec::new();
    for _ in 0..LINES_MAX {
        let line = irc.next().await.expect("open");
        if line.command == "ERROR" || line.command == "464" {
            panic!("{line:?}");
        }
        if line.command == "CAP" && line.params[1] == "ACK" {
            irc.send("CAP END").await;
        }
        if line.command == "CAP" && line.params[1] == "NAK" {
            panic!("caps refused: {line:?}");
        }
        if line.command == "005" {
            isupport.push(line);
        } else if line.command == "422" {
            return (irc, isupport);
        }
    }
    panic!("no end of registration");
}

/// Reads lines until one satisfies `pick`.
async fn until_line(irc: &mut Irc, mut pick: impl FnMut(&Line) -> bool) -> Line {
    for _ in 0..LINES_MAX {
        let line = irc.next().await.expect("open");
        if pick(&line) {
            return line;
        }
    }
    panic!("no such line in {LINES_MAX}");
}

/// Sends `lines` to `#general` as the multiline batch `reference`, which is refused with `code`
/// (and its end, with no batch left open, too).
async fn multiline_refused(irc: &mut Irc, reference: &str, lines: &[String], code: &str) {
    irc.send(&format!("BATCH +{reference} draft/multiline #general"))
        .await;
    for line in lines {
        irc.send(&format!("@batch={reference} PRIVMSG #general :{line}"))
            .await;
    }
    let fail = irc.until("FAIL").await;
    assert_eq!(fail.params[..2], ["BATCH".to_owned(), code.to_owned()]);
    irc.send(&format!("BATCH -{reference}")).await;
    irc.until("FAIL").await;
}

/// A guild owned by `boss` (an IRC user) with `ada` (an IRC user) and `cy` (gRPC, username
/// `cy`) as members.
struct Hall {
    boss: TestUser,
    boss_token: String,
    room: Room,
    ada: TestUser,
    ada_token: String,
    cy: TestUser,
}

async fn hall(node: &TestNode) -> Hall {
    let (boss, boss_token) = irc_user(node, "Boss", "boss").await;
    let room = create_room(node, &boss, "Hall").await;
    let (ada, ada_token) = irc_user(node, "Ada", "ada").await;
    let cy = register(node, "Cy").await;
    set_username(node, &cy, "cy").await;
    join_room(node, &ada, &room.invite).await;
    join_room(node, &cy, &room.invite).await;
    Hall {
        boss,
        boss_token,
        room,
        ada,
        ada_token,
        cy,
    }
}

/// labeled-response (single lines, batches, ACK, the echo of a labeled PRIVMSG), status prefixes
/// with and without multi-prefix, WHOX, replies and reactions both ways, typing, REDACT,
/// read markers and SETNAME.
#[tokio::test]
async fn ircv3_labels_prefixes_reactions_redactions_and_read_markers() {
    let (node, addr) = irc_node().await;
    let Hall {
        boss,
        boss_token,
        room,
        ada,
        ada_token,
        cy,
    } = hall(&node).await;
    let channel = format!("#{}/general", room.guild);

    let mut ls = Irc::connect(addr).await;
    ls.send("CAP LS 302").await;
    let offered = ls.until("CAP").await;
    for cap in [
        "labeled-response",
        "multi-prefix",
        "draft/multiline=max-bytes=4096,max-lines=100",
        "draft/message-redaction",
        "draft/read-marker",
        "setname",
        "account-notify",
    ] {
        assert!(
            offered.last().split(' ').any(|c| c == cap),
            "{cap}: {offered:?}"
        );
    }
    drop(ls);

    let caps = "batch labeled-response message-tags echo-message multi-prefix \
                draft/message-redaction draft/read-marker server-time setname";
    let (mut boss_irc, isupport) = login_with_caps(addr, "boss", &boss_token, caps).await;
    for token in ["PREFIX=(qaoh)~&@%", "MONITOR=100", "WHOX"] {
        assert!(
            isupport.iter().any(|l| l.params.iter().any(|p| p == token)),
            "{token}: {isupport:?}"
        );
    }
    let (mut ada_irc, _) = login_with_caps(
        addr,
        "ada",
        &ada_token,
        "message-tags draft/message-redaction",
    )
    .await;

    // Joining: the read marker (nothing read yet), then names with every prefix of the owner.
    boss_irc.send(&format!("JOIN {channel}")).await;
    boss_irc.until("JOIN").await;
    let marker = boss_irc.until("MARKREAD").await;
    assert_eq!(marker.params, [channel.clone(), "*".into()]);
    let names = boss_irc.until("353").await;
    let listed: Vec<&str> = names.last().split(' ').collect();
    assert!(listed.contains(&"~&@%boss"), "{listed:?}");
    assert!(
        listed.contains(&"ada") && listed.contains(&"cy"),
        "{listed:?}"
    );
    boss_irc.until("366").await;
    // Without multi-prefix, only the highest.
    ada_irc.send(&format!("JOIN {channel}")).await;
    let names = ada_irc.until("353").await;
    assert!(names.last().split(' ').any(|n| n == "~boss"), "{names:?}");
    ada_irc.until("366").await;

    // labeled-response: one line carries the label; several come in a batch; none is an ACK.
    boss_irc.send("@label=l1 PING here").await;
    let pong = boss_irc.until("PONG").await;
    assert_eq!(pong.tag("label").as_deref(), Some("l1"));
    boss_irc.send(&format!("@label=l2 WHO {channel}")).await;
    let start = boss_irc.until("BATCH").await;
    assert_eq!(start.tag("label").as_deref(), Some("l2"));
    assert_eq!(start.params[1], "labeled-response");
    let reference = start.params[0].trim_start_matches('+').to_owned();
    let mut who = Vec::new();
    loop {
        let line = boss_irc.next().await.expect("open");
        if line.command == "BATCH" {
            assert_eq!(line.params[0], format!("-{reference}"));
            break;
        }
        assert_eq!(
            line.tag("batch").as_deref(),
            Some(reference.as_str()),
            "{line:?}"
        );
        who.push(line);
    }
    assert_eq!(who.last().map(|l| l.command.as_str()), Some("315"));
    assert!(
        who.iter()
            .any(|l| l.command == "352" && l.params[5] == "boss" && l.params[6] == "H~&@%")
    );
    boss_irc.send("@label=l3 PONG :nothing").await;
    let ack = boss_irc.until("ACK").await;
    assert_eq!(ack.tag("label").as_deref(), Some("l3"));
    // A labeled PRIVMSG is answered by its echo, labeled, with the message's id.
    boss_irc
        .send(&format!("@label=l4 PRIVMSG {channel} :first"))
        .await;
    let echo = boss_irc.until("PRIVMSG").await;
    assert_eq!(echo.tag("label").as_deref(), Some("l4"));
    assert_eq!(echo.last(), "first");
    let first = echo.msgid.clone().expect("msgid");
    // ... and not echoed a second time when its event arrives.
    boss_irc.send("PING after").await;
    let seen = until_line(&mut boss_irc, |l| {
        l.command == "PONG" || l.command == "PRIVMSG"
    })
    .await;
    assert_eq!(seen.command, "PONG", "{seen:?}");

    // WHOX: the fields asked for, in WHOX order, with the token.
    boss_irc.send(&format!("WHO {channel} %tnaf,42")).await;
    let mut whox = Vec::new();
    loop {
        let line = boss_irc.next().await.expect("open");
        match line.command.as_str() {
            "354" => whox.push(line.params[1..].to_vec()),
            "315" => break,
            _ => {}
        }
    }
    assert!(
        whox.contains(&vec!["42".into(), "ada".into(), "H".into(), "ada".into()]),
        "{whox:?}"
    );
    assert!(
        whox.contains(&vec![
            "42".into(),
            "boss".into(),
            "H~&@%".into(),
            "boss".into()
        ]),
        "{whox:?}"
    );

    // A role that lets Ada kick shows as a mode change to those who were shown her prefixes.
    grant(
        &node,
        &boss.token,
        &room.guild,
        &ada.user.id,
        &["members.kick"],
    )
    .await;
    let moded = until_line(&mut boss_irc, |l| l.command == "MODE").await;
    assert_eq!(moded.params, [channel.clone(), "+o".into(), "ada".into()]);

    // A reply from IRC is a reply on the node, and carries +draft/reply to IRC clients.
    let mut boss_sees = subscribe(&node, &boss.token).await;
    ada_irc
        .send(&format!("@+draft/reply={first} PRIVMSG {channel} :answer"))
        .await;
    let reply = until(&mut boss_sees, |e| match e {
        pb::stream_response::Event::MessageCreated(m) => {
            m.message.clone().filter(|m| m.text == "answer")
        }
        _ => None,
    })
    .await;
    assert_eq!(reply.reply_to_message_id, first);
    let at_boss = boss_irc.until("PRIVMSG").await;
    assert_eq!(at_boss.tag("+draft/reply").as_deref(), Some(first.as_str()));

    // A reaction from IRC is a reaction on the node, and comes back as a TAGMSG.
    ada_irc
        .send(&format!(
            "@+draft/react=👍;+draft/reply={first} TAGMSG {channel}"
        ))
        .await;
    let reacted = until(&mut boss_sees, |e| match e {
        pb::stream_response::Event::MessageUpdated(m) => {
            m.message.clone().filter(|m| m.reaction.is_some())
        }
        _ => None,
    })
    .await;
    let indicator = reacted.reaction.expect("reaction");
    assert_eq!(
        (
            indicator.emoji.as_str(),
            indicator.added,
            indicator.user_id.as_str()
        ),
        ("👍", true, ada.user.id.as_str())
    );
    let tagmsg = boss_irc.until("TAGMSG").await;
    assert_eq!(tagmsg.source.as_deref(), Some("ada"));
    assert_eq!(tagmsg.tag("+draft/react").as_deref(), Some("👍"));
    assert_eq!(tagmsg.tag("+draft/reply").as_deref(), Some(first.as_str()));
    // With echo-message, the reacting client's labeled TAGMSG is answered by its echo, once.
    boss_irc
        .send(&format!(
            "@label=l5;+draft/react=🎉;+draft/reply={first} TAGMSG {channel}"
        ))
        .await;
    let echoed = boss_irc.until("TAGMSG").await;
    assert_eq!(
        (
            echoed.source.as_deref(),
            echoed.tag("label").as_deref(),
            echoed.tag("+draft/react").as_deref()
        ),
        (Some("boss"), Some("l5"), Some("🎉"))
    );
    // The reaction's event has reached the node's subscribers (so, in all likelihood, boss's
    // IRC connection too) before the PING that would come after a second echo.
    until(&mut boss_sees, |e| match e {
        pb::stream_response::Event::MessageUpdated(m) => m
            .message
            .as_ref()
            .and_then(|m| m.reaction.as_ref())
            .filter(|r| r.emoji == "🎉")
            .map(|_| ()),
        _ => None,
    })
    .await;
    boss_irc.send("@label=l6 PING again").await;
    let after = until_line(&mut boss_irc, |l| {
        l.command == "TAGMSG" || l.command == "PONG"
    })
    .await;
    assert_eq!(after.command, "PONG", "echoed twice: {after:?}");
    // A reaction needs the message it reacts to.
    ada_irc
        .send(&format!("@+draft/react=👍 TAGMSG {channel}"))
        .await;
    let fail = ada_irc.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["TAGMSG".to_owned(), "INVALID_PARAMS".to_owned()]
    );

    // Typing from a gRPC client is a +typing TAGMSG; gRPC typing is never a blank PRIVMSG.
    node.client()
        .await
        .send_message(authed(
            &cy.token,
            pb::SendMessageRequest {
                channel_id: room.channel.clone(),
                typing: Some(pb::TypingContent { is_typing: true }),
                ..Default::default()
            },
        ))
        .await
        .expect("typing");
    let typing = until_line(&mut boss_irc, |l| {
        l.command == "TAGMSG" || l.command == "PRIVMSG"
    })
    .await;
    assert_eq!(typing.command, "TAGMSG", "{typing:?}");
    assert_eq!(
        (typing.source.as_deref(), typing.tag("+typing").as_deref()),
        (Some("cy"), Some("active"))
    );

    // REDACT: anyone's with messages.manage; not someone else's without; unknown ids named.
    let answer = reply.id.clone();
    ada_irc.send(&format!("REDACT {channel} {first}")).await;
    let fail = ada_irc.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["REDACT".to_owned(), "REDACT_FORBIDDEN".to_owned()]
    );
    boss_irc.send(&format!("REDACT {channel} 12345")).await;
    let fail = boss_irc.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["REDACT".to_owned(), "UNKNOWN_MSGID".to_owned()]
    );
    boss_irc
        .send(&format!("REDACT {channel} {answer} :off topic"))
        .await;
    let deleted = until(&mut boss_sees, |e| match e {
        pb::stream_response::Event::MessageDeleted(d) => {
            (d.message_id == answer).then(|| d.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(deleted.deleted_by, boss.user.id);
    // From who deleted it.
    let redacted = ada_irc.until("REDACT").await;
    assert_eq!(redacted.params, [channel.clone(), answer.clone()]);
    assert_eq!(redacted.source.as_deref(), Some("boss"));

    // Read markers: moved forward to a message's time, read back, never backwards.
    let at = echo.time.clone().expect("server-time");
    boss_irc
        .send(&format!("MARKREAD {channel} timestamp={at}"))
        .await;
    let marked = boss_irc.until("MARKREAD").await;
    assert_eq!(marked.params, [channel.clone(), format!("timestamp={at}")]);
    boss_irc
        .send(&format!(
            "MARKREAD {channel} timestamp=2000-01-01T00:00:00.000Z"
        ))
        .await;
    assert_eq!(
        boss_irc.until("MARKREAD").await.params[1],
        format!("timestamp={at}")
    );
    boss_irc.send(&format!("MARKREAD {channel}")).await;
    assert_eq!(
        boss_irc.until("MARKREAD").await.params[1],
        format!("timestamp={at}")
    );
    boss_irc
        .send(&format!("MARKREAD {channel} yesterday"))
        .await;
    let fail = boss_irc.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["MARKREAD".to_owned(), "INVALID_PARAMS".to_owned()]
    );
    // Asked about a target that has no marker (here: none at all): `*`; moving one: refused.
    boss_irc.send("MARKREAD #nowhere").await;
    assert_eq!(
        boss_irc.until("MARKREAD").await.params,
        ["#nowhere".to_owned(), "*".to_owned()]
    );
    boss_irc
        .send("MARKREAD #nowhere timestamp=2000-01-01T00:00:00.000Z")
        .await;
    assert_eq!(boss_irc.until("FAIL").await.params[1], "INVALID_PARAMS");

    // Typing, reactions and read markers to a nick work in an open DM only: they never ask for
    // one (only a message does).
    ada_irc.send("@+typing=active TAGMSG cy").await;
    let refused = ada_irc.until("401").await;
    assert!(refused.last().contains("No DM"), "{refused:?}");
    let asked = node
        .client()
        .await
        .list_dm_invites(authed(&cy.token, pb::ListDmInvitesRequest {}))
        .await
        .expect("invites")
        .into_inner()
        .invites;
    assert!(asked.is_empty(), "{asked:?}");

    // SETNAME: the real name is the signed display name.
    boss_irc.send("SETNAME :New Name").await;
    let fail = boss_irc.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["SETNAME".to_owned(), "CANNOT_CHANGE_REALNAME".to_owned()]
    );
}

/// draft/multiline both ways, MONITOR, starting and accepting a DM from IRC, creating a channel
/// by joining it in the default guild, and the ban list.
#[tokio::test]
async fn multiline_monitor_dms_channel_creation_and_ban_list() {
    let (mut node, _) = irc_node().await;
    let Hall {
        boss,
        boss_token,
        room,
        ada,
        ada_token,
        cy,
    } = hall(&node).await;
    node.config.irc_default_guild = room.guild.clone();
    // Same gRPC port: the node's address, where its users live, stays the same.
    let grpc = node.stop().await;
    node.start_on(grpc).await;
    let addr = node.node().irc_addr.expect("IRC listening");

    let (mut boss_irc, _) = login_with_caps(
        addr,
        "boss",
        &boss_token,
        "batch draft/multiline message-tags",
    )
    .await;
    let (mut ada_irc, _) = login_with_caps(
        addr,
        "ada",
        &ada_token,
        "batch draft/multiline echo-message labeled-response",
    )
    .await;
    for irc in [&mut boss_irc, &mut ada_irc] {
        irc.send("JOIN #general").await;
        irc.until("366").await;
    }

    // A multiline batch is one message on the node; a line with multiline-concat continues the
    // previous one.
    let mut boss_sees = subscribe(&node, &boss.token).await;
    ada_irc
        .send("@label=ml BATCH +m1 draft/multiline #general")
        .await;
    ada_irc.send("@batch=m1 PRIVMSG #general :first line").await;
    ada_irc.send("@batch=m1 PRIVMSG #general :second ").await;
    ada_irc
        .send("@batch=m1;draft/multiline-concat PRIVMSG #general :half")
        .await;
    ada_irc.send("BATCH -m1").await;
    let message = until(&mut boss_sees, |e| match e {
        pb::stream_response::Event::MessageCreated(m) => {
            m.message.clone().filter(|m| m.sender_id == ada.user.id)
        }
        _ => None,
    })
    .await;
    assert_eq!(message.text, "first line\nsecond half");
    // To a client with draft/multiline, a message of several lines is one batch.
    let start = boss_irc.until("BATCH").await;
    assert_eq!(
        start.params[1..],
        ["draft/multiline".to_owned(), "#general".to_owned()]
    );
    assert_eq!(start.msgid.as_deref(), Some(message.id.as_str()));
    let reference = start.params[0].trim_start_matches('+').to_owned();
    let mut lines = Vec::new();
    loop {
        let line = boss_irc.next().await.expect("open");
        if line.command == "BATCH" {
            break;
        }
        assert_eq!(line.tag("batch").as_deref(), Some(reference.as_str()));
        lines.push(line.last().to_owned());
    }
    assert_eq!(lines, ["first line", "second half"]);
    // The sender's echo is one batch: its start carries the label (not a batch around it).
    let echo = ada_irc.until("BATCH").await;
    assert_eq!(echo.tag("label").as_deref(), Some("ml"), "{echo:?}");
    assert_eq!(echo.params[1], "draft/multiline");
    // draft/multiline-concat can't continue with a blank line, and a line of another batch
    // can't come inside one: both end the batch with MULTILINE_INVALID.
    for (reference, line) in [
        ("m4", "@batch=m4;draft/multiline-concat PRIVMSG #general :"),
        ("m5", "@batch=elsewhere PRIVMSG #general :stray"),
    ] {
        ada_irc
            .send(&format!("BATCH +{reference} draft/multiline #general"))
            .await;
        ada_irc
            .send(&format!("@batch={reference} PRIVMSG #general :hi"))
            .await;
        ada_irc.send(line).await;
        let fail = ada_irc.until("FAIL").await;
        assert_eq!(
            fail.params[..2],
            ["BATCH".to_owned(), "MULTILINE_INVALID".to_owned()]
        );
        ada_irc.send(&format!("BATCH -{reference}")).await;
        assert_eq!(ada_irc.until("FAIL").await.params[1], "INVALID_BATCH");
    }
    // Over the line limit, or the byte limit: refused, nothing sent.
    let numbers: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    multiline_refused(&mut ada_irc, "m2", &numbers, "MULTILINE_MAX_LINES").await;
    let long = vec!["x".repeat(400); 11];
    multiline_refused(&mut ada_irc, "m3", &long, "MULTILINE_MAX_BYTES").await;

    // MONITOR: who is online now, and a change when it happens.
    boss_irc.send("MONITOR + ada,nobody").await;
    let mut online = None;
    let mut offline = None;
    while online.is_none() || offline.is_none() {
        let line = until_line(&mut boss_irc, |l| l.command == "730" || l.command == "731").await;
        if line.command == "730" {
            online = Some(line.last().to_owned());
        } else {
            offline = Some(line.last().to_owned());
        }
    }
    assert_eq!(online.as_deref(), Some("ada!ada@127.0.0.1"));
    assert_eq!(offline.as_deref(), Some("nobody"));
    boss_irc.send("MONITOR L").await;
    assert_eq!(boss_irc.until("732").await.last(), "ada,nobody");
    boss_irc.until("733").await;
    // At most 100 nicks: the rest are refused with 734.
    let many: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    boss_irc
        .send(&format!("MONITOR + {}", many.join(",")))
        .await;
    let full = boss_irc.until("734").await;
    assert_eq!(full.params[1], "100");
    assert!(full.params[2].starts_with("n98,n99"), "{full:?}");
    boss_irc
        .send(&format!("MONITOR - {}", many.join(",")))
        .await;

    // Creating a channel by joining it: for those who may create channels.
    ada_irc.send("JOIN #newroom").await;
    let refused = ada_irc.until("403").await;
    assert!(refused.last().contains("channels.manage"), "{refused:?}");
    boss_irc.send("JOIN #newroom").await;
    assert_eq!(boss_irc.until("JOIN").await.params[0], "#newroom");
    let channels = node
        .client()
        .await
        .list_channels(authed(
            &boss.token,
            pb::ListChannelsRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("channels")
        .into_inner()
        .channels;
    assert!(
        channels
            .iter()
            .any(|c| c.irc_name == "newroom" && c.name == "newroom"),
        "{channels:?}"
    );

    // A DM from IRC: the first message asks for it; messaging back accepts it.
    boss_irc.send("PRIVMSG ada :hello").await;
    let asked = boss_irc.until("401").await;
    assert!(asked.last().contains("Asked ada for a DM"), "{asked:?}");
    ada_irc.send("PRIVMSG boss :hi back").await;
    let echo = ada_irc.until("PRIVMSG").await;
    assert_eq!((echo.params[0].as_str(), echo.last()), ("boss", "hi back"));
    let dm = boss_irc.until("PRIVMSG").await;
    assert_eq!(
        (dm.source.as_deref(), dm.params[0].as_str(), dm.last()),
        (Some("ada"), "boss", "hi back")
    );
    boss_irc.send("PRIVMSG ada :hello again").await;
    let at_ada = ada_irc.privmsg_to("ada").await;
    assert_eq!(
        (at_ada.source.as_deref(), at_ada.last()),
        (Some("boss"), "hello again")
    );

    // The ban list: for those who may ban; bans are final.
    boss_irc.send("MODE #general +b cy").await;
    wait_for(WAIT, || async {
        !member_ids(&node, &boss.token, &room.guild)
            .await
            .contains(&cy.user.id)
    })
    .await;
    boss_irc.send("MODE #general b").await;
    let ban = boss_irc.until("367").await;
    assert_eq!(
        ban.params[1..4],
        [
            "#general".to_owned(),
            "cy!*@*".to_owned(),
            "boss".to_owned()
        ]
    );
    boss_irc.until("368").await;
    ada_irc.send("MODE #general b").await;
    let listed = until_line(&mut ada_irc, |l| l.command == "367" || l.command == "368").await;
    assert_eq!(listed.command, "368", "a member who can't ban sees no bans");
    boss_irc.send("MODE #general -b cy").await;
    assert!(boss_irc.until("482").await.last().contains("final"));

    // MONITOR hears Ada go.
    ada_irc.send("QUIT").await;
    ada_irc.until_closed().await;
    let gone = boss_irc.until("731").await;
    assert_eq!(gone.last(), "ada");

    // Someone with only an IRC client makes an account before connecting; it is node-held
    // (is_irc), logged in at once, and a member of the default guild.
    let mut zed = Irc::connect(addr).await;
    zed.send("CAP LS 302").await;
    let offered = zed.until("CAP").await;
    assert!(
        offered
            .last()
            .split(' ')
            .any(|c| c == "draft/account-registration=before-connect,custom-account-name"),
        "{offered:?}"
    );
    zed.send("CAP REQ :draft/account-registration").await;
    zed.until("CAP").await;
    zed.send("NICK zed").await;
    zed.send("USER zed 0 * :Zed").await;
    for (line, code) in [
        ("REGISTER boss * longenough1", "ACCOUNT_EXISTS"),
        ("REGISTER Zed! * longenough1", "BAD_ACCOUNT_NAME"),
        ("REGISTER * * short", "WEAK_PASSWORD"),
        ("REGISTER * * :two words here", "UNACCEPTABLE_PASSWORD"),
        ("REGISTER *", "NEED_MORE_PARAMS"),
    ] {
        zed.send(line).await;
        let fail = zed.until("FAIL").await;
        assert_eq!(
            fail.params[..2],
            ["REGISTER".to_owned(), code.to_owned()],
            "{line}"
        );
    }
    zed.send("REGISTER * * correct-horse-battery").await;
    let made = zed.until("REGISTER").await;
    assert_eq!(made.params[..2], ["SUCCESS".to_owned(), "zed".to_owned()]);
    assert_eq!(zed.until("900").await.params[2], "zed");
    zed.send("REGISTER other * correct-horse-battery").await;
    let fail = zed.until("FAIL").await;
    assert_eq!(fail.params[1], "ALREADY_AUTHENTICATED");
    zed.send("CAP END").await;
    assert_eq!(zed.until("001").await.params[0], "zed");
    zed.send("JOIN #general").await;
    assert_eq!(zed.until("JOIN").await.params[0], "#general");
    let user = node
        .client()
        .await
        .get_user_by_username(authed(
            &boss.token,
            pb::GetUserByUsernameRequest {
                username: "zed".into(),
            },
        ))
        .await
        .expect("zed exists")
        .into_inner();
    assert!(user.is_irc, "{user:?}");
    assert!(
        member_ids(&node, &boss.token, &room.guild)
            .await
            .contains(&user.id)
    );
    zed.send("QUIT").await;
    zed.until_closed().await;
    // The password logs in where a token does; a wrong one does not.
    let (_, nick) = Irc::login_pass(addr, "zed", "zed:correct-horse-battery").await;
    assert_eq!(nick, "zed");
    let mut wrong = Irc::connect(addr).await;
    wrong.send("PASS zed:wrong-horse-battery").await;
    wrong.send("NICK zed").await;
    wrong.send("USER zed 0 * :Zed").await;
    wrong.until("464").await;
}

/// A node whose registration is closed takes no accounts from IRC either.
#[tokio::test]
async fn irc_registration_follows_the_registration_policy() {
    let node = TestNode::spawn_with(|c| {
        c.irc_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.registration = Some(guildhall::accounts::registration::RegistrationPolicy::Closed);
    })
    .await;
    let addr = node.node().irc_addr.expect("IRC listening");
    let mut irc = Irc::connect(addr).await;
    irc.send("NICK zed").await;
    irc.send("REGISTER * * correct-horse-battery").await;
    let fail = irc.until("FAIL").await;
    assert_eq!(
        fail.params[..2],
        ["REGISTER".to_owned(), "TEMPORARILY_UNAVAILABLE".to_owned()]
    );
    assert!(fail.last().contains("closed"), "{fail:?}");
}

/// Who may not use IRC: an account its owner disabled (its open IRC connection ends too), one
/// they deleted (its tokens are gone), and a member from another node minting a token at the host.
#[tokio::test]
async fn disabled_deleted_and_remote_accounts_get_no_irc() {
    use guildhall::account_status::{self, Status};
    let (node, addr) = irc_node().await;
    let (ada, ada_token) = irc_user(&node, "Ada", "ada").await;
    let (bob, bob_token) = irc_user(&node, "Bob", "bob").await;

    // Disabling ends Ada's IRC connection and refuses her token until she enables the account.
    let (mut ada_irc, _) = Irc::login_pass(addr, "ada", &format!("ada:{ada_token}")).await;
    node.client()
        .await
        .set_account_status(account_status::sign(
            &ada.identity.id_key,
            Status::Disabled,
            now_ms(),
        ))
        .await
        .expect("disable");
    let seen = ada_irc.until_closed().await;
    assert!(seen.iter().any(|l| l.command == "ERROR"), "{seen:?}");
    let mut again = Irc::connect(addr).await;
    again.send(&format!("PASS ada:{ada_token}")).await;
    again.send("NICK ada").await;
    again.send("USER ada 0 * :Ada").await;
    let refused = again.until("464").await;
    assert!(refused.last().contains("disabled"), "{refused:?}");

    // Deleting wipes Bob's tokens.
    node.client()
        .await
        .set_account_status(account_status::sign(
            &bob.identity.id_key,
            Status::Deleted,
            now_ms(),
        ))
        .await
        .expect("delete");
    let mut gone = Irc::connect(addr).await;
    gone.send(&format!("PASS bob:{bob_token}")).await;
    gone.send("NICK bob").await;
    gone.send("USER bob 0 * :Bob").await;
    gone.until("464").await;

    // A member from another node uses the IRC gateway of their own homeserver.
    let home = TestNode::spawn().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let cy = register(&home, "Cy").await;
    let joined = remote_join(&node, &cy, &home.address(), &room.invite, "Cy")
        .await
        .expect("remote join");
    let minted = node
        .client()
        .await
        .create_irc_token(authed(
            &joined.token,
            pb::CreateIrcTokenRequest {
                label: "irssi".into(),
            },
        ))
        .await;
    assert_status(minted, tonic::Code::FailedPrecondition, "own users");
}

/// A silent client is pinged after `irc_ping_secs`; one that answers stays, one that stays silent
/// is dropped with `Ping timeout`.
#[tokio::test]
async fn silent_clients_are_pinged_and_dropped_if_they_stay_silent() {
    let node = TestNode::spawn_with(|c| {
        c.irc_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.irc_ping_secs = 2;
    })
    .await;
    let addr = node.node().irc_addr.expect("IRC listening");
    let (_, token) = irc_user(&node, "Ada", "ada").await;
    let (mut awake, _) = Irc::login_pass(addr, "ada", &format!("ada:{token}")).await;
    let (mut asleep, _) = Irc::login_pass(addr, "ada", &format!("ada:{token}")).await;
    let ping = awake.until("PING").await;
    awake.send(&format!("PONG :{}", ping.last())).await;
    let seen = asleep.until_closed().await;
    assert!(
        seen.iter()
            .any(|l| l.command == "ERROR" && l.last().contains("Ping timeout")),
        "{seen:?}"
    );
    // The one that answered is still served.
    awake.send("PING still-here").await;
    assert_eq!(awake.until("PONG").await.last(), "still-here");
}

/// An edit made over gRPC reaches IRC clients as a correction (`* new text`) tied to the message
/// by `+draft/reply`, with no `msgid` of its own; a pin of the edited message doesn't repeat it;
/// CHATHISTORY shows the message under its own id with the new text.
#[tokio::test]
async fn edits_reach_irc_as_corrections() {
    let (node, addr) = irc_node().await;
    let Hall {
        boss,
        boss_token,
        room,
        cy,
        ..
    } = hall(&node).await;
    let channel = format!("#{}/general", room.guild);
    let (mut irc, _) = login_with_caps(
        addr,
        "boss",
        &boss_token,
        "message-tags server-time batch draft/chathistory",
    )
    .await;
    irc.send(&format!("JOIN {channel}")).await;
    irc.until("366").await;

    let sent = send_text(&node, &cy.token, &room.channel, "helo wrld").await;
    let line = irc.privmsg_to(&channel).await;
    assert_eq!(line.last(), "helo wrld");
    assert_eq!(line.msgid.as_deref(), Some(sent.id.as_str()));

    let mut grpc = node.client().await;
    grpc.edit_message(authed(
        &cy.token,
        pb::EditMessageRequest {
            channel_id: room.channel.clone(),
            message_id: sent.id.clone(),
            text: "hello world".into(),
        },
    ))
    .await
    .expect("edit");
    let correction = irc.privmsg_to(&channel).await;
    assert_eq!(correction.last(), "* hello world");
    assert_eq!(correction.source.as_deref(), Some("cy"), "from its author");
    assert_eq!(
        correction.tag("+draft/reply").as_deref(),
        Some(sent.id.as_str())
    );
    assert_eq!(correction.msgid, None, "the message keeps its id");
    assert!(correction.time.is_some());

    // A pin updates the message too; it is not an edit and shows nothing.
    grpc.pin_message(authed(
        &boss.token,
        pb::PinMessageRequest {
            channel_id: room.channel.clone(),
            message_id: sent.id.clone(),
        },
    ))
    .await
    .expect("pin");
    send_text(&node, &cy.token, &room.channel, "after the pin").await;
    let next = irc.privmsg_to(&channel).await;
    assert_eq!(next.last(), "after the pin", "no second correction");

    // History has the message once, under its id, with the text as it is now.
    irc.send(&format!("CHATHISTORY LATEST {channel} * 10"))
        .await;
    let lines = history_batch(&mut irc).await;
    assert!(
        lines.iter().any(|l| l.ends_with("hello world")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("helo wrld")), "{lines:?}");
}

/// What a role grants changing (`UpdateRole`) or the role going (`DeleteRole`) reaches gRPC
/// subscribers as `role_updated` and IRC clients as `MODE` lines for the members it moves.
#[tokio::test]
async fn role_changes_move_status_prefixes_on_irc() {
    let (node, addr) = irc_node().await;
    let Hall {
        boss,
        boss_token,
        room,
        cy,
        ..
    } = hall(&node).await;
    let channel = format!("#{}/general", room.guild);
    grant(
        &node,
        &boss.token,
        &room.guild,
        &cy.user.id,
        &["messages.send"],
    )
    .await;
    let mut grpc = node.client().await;
    let role = grpc
        .list_roles(authed(
            &boss.token,
            pb::ListRolesRequest {
                guild_id: room.guild.clone(),
            },
        ))
        .await
        .expect("roles")
        .into_inner()
        .roles
        .into_iter()
        .find(|r| r.name == "granted")
        .expect("the granted role");
    let (mut irc, _) = login_with_caps(addr, "boss", &boss_token, "multi-prefix").await;
    irc.send(&format!("JOIN {channel}")).await;
    let names = irc.until("353").await;
    assert!(names.last().split(' ').any(|n| n == "cy"), "{names:?}");
    irc.until("366").await;
    let mut events = subscribe(&node, &cy.token).await;

    grpc.update_role(authed(
        &boss.token,
        pb::UpdateRoleRequest {
            role_id: role.id.clone(),
            guild_id: room.guild.clone(),
            name: role.name.clone(),
            color: role.color.clone(),
            position: role.position,
            permissions: vec!["messages.send".into(), "members.kick".into()],
            parent_role_ids: Vec::new(),
        },
    ))
    .await
    .expect("update role");
    let mode = irc.until("MODE").await;
    assert_eq!(mode.params, [channel.clone(), "+o".into(), "cy".into()]);
    let updated = until(&mut events, |e| match e {
        pb::stream_response::Event::RoleUpdated(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert!(!updated.deleted);
    let shown = updated.role.expect("role");
    assert_eq!(shown.id, role.id);
    assert!(shown.permissions.iter().any(|p| p == "members.kick"));

    grpc.delete_role(authed(
        &boss.token,
        pb::DeleteRoleRequest {
            guild_id: room.guild.clone(),
            role_id: role.id.clone(),
        },
    ))
    .await
    .expect("delete role");
    let mode = irc.until("MODE").await;
    assert_eq!(mode.params, [channel.clone(), "-o".into(), "cy".into()]);
    let deleted = until(&mut events, |e| match e {
        pb::stream_response::Event::RoleUpdated(r) if r.deleted => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(deleted.role.expect("role").id, role.id);
}

/// Bad lines get the reply the specifications name and the connection goes on (irctest's
/// `cap`, `connection_registration`, `utf8`, `messages`, `part` and `sasl` cases): an unknown
/// CAP subcommand is `410`, an empty real name `461`, a line that is not UTF-8 `FAIL …
/// INVALID_UTF8`, one over 512 bytes `417`, a PRIVMSG without text `412`, a NOTICE gets no error
/// back, a PART's reason comes back with it, and a SASL piece over 400 bytes is `905`.
#[tokio::test]
async fn bad_lines_get_the_reply_the_spec_names() {
    let (node, addr) = irc_node().await;
    let Hall {
        room, ada_token, ..
    } = hall(&node).await;
    let channel = format!("#{}/general", room.guild);

    let mut irc = Irc::connect(addr).await;
    irc.send("CAP NOTACOMMAND").await;
    let invalid = irc.until("410").await;
    assert_eq!(invalid.params[..2], ["*", "NOTACOMMAND"]);
    irc.send("CAP REQ :sasl").await;
    irc.until("CAP").await;
    irc.send("AUTHENTICATE PLAIN").await;
    irc.until("AUTHENTICATE").await;
    irc.send(&format!("AUTHENTICATE {}", "A".repeat(401))).await;
    irc.until("905").await;
    irc.send("CAP END").await;
    irc.send(&format!("PASS ada:{ada_token}")).await;
    irc.send("NICK ada").await;
    irc.send("USER ada 0 * :").await;
    let empty = irc.until("461").await;
    assert_eq!(empty.params[1], "USER");
    irc.send("USER ada 0 * :Ada").await;
    irc.until("001").await;
    irc.send(&format!("JOIN {channel}")).await;
    irc.until("366").await;

    let mut not_utf8 = format!("PRIVMSG {channel} :hi").into_bytes();
    not_utf8.extend_from_slice(b"\xaa\r\n");
    irc.write.write_all(&not_utf8).await.expect("write");
    let fail = irc.until("FAIL").await;
    assert_eq!(fail.params[..2], ["PRIVMSG", "INVALID_UTF8"]);
    irc.send(&format!("PING {}", "x".repeat(506))).await;
    irc.until("417").await;
    irc.send(&format!("PRIVMSG {channel} :")).await;
    irc.until("412").await;
    // A NOTICE to nowhere: no error, so the next thing heard is the answer to the PING.
    irc.send("NOTICE #nowhere :hello").await;
    irc.send("PING after-notice").await;
    let next = irc.next().await.expect("open");
    assert_eq!(
        (next.command.as_str(), next.last()),
        ("PONG", "after-notice")
    );
    irc.send(&format!("PART {channel} :bye everyone")).await;
    let part = irc.until("PART").await;
    assert_eq!(part.params, [channel.as_str(), "bye everyone"]);
}

/// AWAY is busy on the node (with its reason), answered by 306/305 and shown to others as
/// `away-notify`'s AWAY, `301` on a private message and in WHOIS, `-` in USERHOST; TIME, LUSERS
/// and INFO answer about the one server, and another server is `402`.
#[tokio::test]
async fn away_userhost_and_questions_about_the_server() {
    let (node, addr) = irc_node().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (ada, ada_token) = irc_user(&node, "Ada", "ada").await;
    let (bob, bob_token) = irc_user(&node, "Bob", "bob").await;
    join_room(&node, &ada, &room.invite).await;
    join_room(&node, &bob, &room.invite).await;
    let (mut ada_irc, _) = login_with_caps(addr, "ada", &ada_token, "away-notify").await;
    let (mut bob_irc, _) = login_with_caps(addr, "bob", &bob_token, "away-notify").await;
    let status_of_ada = || presence_status(&node, &bob, &ada);

    ada_irc.send("AWAY :gone for lunch").await;
    assert_eq!(ada_irc.until("306").await.params[0], "ada");
    let away = until_line(&mut bob_irc, |l| {
        l.command == "AWAY" && l.source.as_deref() == Some("ada")
    })
    .await;
    assert_eq!(away.params, ["gone for lunch"]);
    assert_eq!(status_of_ada().await, Some(pb::PresenceStatus::Busy as i32));

    bob_irc.send("PRIVMSG ada :are you there?").await;
    let told = bob_irc.until("301").await;
    assert_eq!(told.params, ["bob", "ada", "gone for lunch"]);
    bob_irc.send("WHOIS ada").await;
    assert_eq!(bob_irc.until("301").await.last(), "gone for lunch");
    bob_irc.until("318").await;
    bob_irc.send("USERHOST ada bob nobody").await;
    let host = "127.0.0.1";
    assert_eq!(
        bob_irc.until("302").await.last(),
        format!("ada=-ada@{host} bob=+bob@{host}")
    );

    ada_irc.send("AWAY").await;
    ada_irc.until("305").await;
    let back = until_line(&mut bob_irc, |l| {
        l.command == "AWAY" && l.source.as_deref() == Some("ada")
    })
    .await;
    assert!(back.params.is_empty(), "{back:?}");
    assert_eq!(
        status_of_ada().await,
        Some(pb::PresenceStatus::Online as i32)
    );
    bob_irc.send("USERHOST ada").await;
    assert_eq!(
        bob_irc.until("302").await.last(),
        format!("ada=+ada@{host}")
    );
    bob_irc.send("USERHOST").await;
    assert_eq!(bob_irc.until("461").await.params[1], "USERHOST");

    let before = now_ms() / 1000;
    bob_irc.send("TIME").await;
    let time = bob_irc.until("391").await;
    assert_eq!(time.params[1], host);
    let said: u64 = time.params[2].parse().expect("seconds");
    assert!((before..=now_ms() / 1000).contains(&said), "{time:?}");
    bob_irc.send("TIME elsewhere.example").await;
    assert_eq!(bob_irc.until("402").await.params[1], "elsewhere.example");

    bob_irc.send("LUSERS").await;
    assert_eq!(
        bob_irc.until("251").await.last(),
        "There are 2 users and 0 invisible on 1 servers"
    );
    let local = bob_irc.until("265").await;
    assert_eq!(local.params[1..3], ["2".to_owned(), "2".to_owned()]);

    bob_irc.send("INFO").await;
    assert!(bob_irc.until("371").await.last().starts_with("guildhall "));
    bob_irc.until("374").await;
    bob_irc.send("INFO *.example").await;
    bob_irc.until("402").await;
}

/// Bot mode (`BOT=B`): `MODE <nick> +B` marks the user a bot on the node (Harmony's `is_bot`);
/// their messages carry the `bot` tag, WHOIS says 335, WHO's flags have `B`; `-B` undoes it.
#[tokio::test]
async fn bot_mode_marks_a_user_as_a_bot() {
    let (node, addr) = irc_node().await;
    let owner = register(&node, "Owner").await;
    let room = create_room(&node, &owner, "Hall").await;
    let (ada, ada_token) = irc_user(&node, "Ada", "ada").await;
    let (bob, bob_token) = irc_user(&node, "Bob", "bob").await;
    join_room(&node, &ada, &room.invite).await;
    join_room(&node, &bob, &room.invite).await;
    let channel = format!("#{}/general", room.guild);
    let (mut ada_irc, isupport) = login_with_caps(addr, "ada", &ada_token, "message-tags").await;
    assert!(
        isupport
            .iter()
            .any(|l| l.params.iter().any(|p| p == "BOT=B")),
        "{isupport:?}"
    );
    let (mut bob_irc, _) = login_with_caps(addr, "bob", &bob_token, "message-tags").await;
    for irc in [&mut ada_irc, &mut bob_irc] {
        irc.send(&format!("JOIN {channel}")).await;
        irc.until("366").await;
    }

    bob_irc.send("MODE bob").await;
    assert_eq!(bob_irc.until("221").await.last(), "+");
    bob_irc.send("MODE bob +B").await;
    let mode = bob_irc.until("MODE").await;
    assert_eq!(
        (mode.source.as_deref(), mode.params.clone()),
        (Some("bob"), vec!["bob".to_owned(), "+B".to_owned()])
    );
    bob_irc.send("MODE bob").await;
    assert_eq!(bob_irc.until("221").await.last(), "+B");
    bob_irc.send("MODE bob +i").await;
    bob_irc.until("501").await;
    // Another user's modes are neither shown nor set.
    bob_irc.send("MODE ada +B").await;
    assert_eq!(bob_irc.until("502").await.params[0], "bob");

    bob_irc.send(&format!("PRIVMSG {channel} :beep boop")).await;
    let said = ada_irc.privmsg_to(&channel).await;
    assert_eq!(said.tag("bot").as_deref(), Some(""), "{said:?}");
    ada_irc.send("WHOIS bob").await;
    assert_eq!(ada_irc.until("335").await.params[1], "bob");
    ada_irc.until("318").await;
    ada_irc.send(&format!("WHO {channel}")).await;
    let listed = until_line(&mut ada_irc, |l| l.command == "352" && l.params[5] == "bob").await;
    assert!(listed.params[6].starts_with("HB"), "{listed:?}");

    bob_irc.send("MODE bob -B").await;
    assert_eq!(bob_irc.until("MODE").await.params[1], "-B");
    bob_irc.send(&format!("PRIVMSG {channel} :just me")).await;
    let said = ada_irc.privmsg_to(&channel).await;
    assert_eq!(said.last(), "just me");
    assert_eq!(said.tag("bot"), None, "{said:?}");
    ada_irc.send("WHOIS bob").await;
    let end = until_line(&mut ada_irc, |l| l.command == "335" || l.command == "318").await;
    assert_eq!(end.command, "318", "still a bot: {end:?}");

    // A webhook's messages are a bot's.
    let hook = node
        .client()
        .await
        .create_webhook(authed(
            &owner.token,
            pb::CreateWebhookRequest {
                channel_id: room.channel.clone(),
                name: "Deploys".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("webhook")
        .into_inner();
    let body = r#"{"content": "build 42 is green"}"#;
    let request = format!(
        "POST /webhooks/{}/{} HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        hook.id,
        hook.token,
        body.len()
    );
    let mut http = TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    http.write_all(request.as_bytes()).await.expect("post");
    let said = ada_irc.privmsg_to(&channel).await;
    assert_eq!(
        (
            said.source.as_deref(),
            said.last(),
            said.tag("bot").as_deref()
        ),
        (Some("Deploys"), "build 42 is green", Some(""))
    );
}

/// An account made from IRC can be taken to other clients: `ClaimIrcAccount` with its password
/// hands over K_id (once), the node forgets the keys and password and revokes its own device,
/// `is_irc` is cleared, and the key logs in from a new device like any identity.
#[tokio::test]
async fn an_irc_made_account_is_claimed_with_its_password() {
    let (node, addr) = irc_node().await;
    let owner = register(&node, "Owner").await;
    let mut zed = Irc::connect(addr).await;
    zed.send("NICK zed").await;
    zed.send("REGISTER * * correct-horse-battery").await;
    assert_eq!(zed.until("REGISTER").await.params[0], "SUCCESS");
    drop(zed);
    let zed_user = || async {
        node.client()
            .await
            .get_user_by_username(authed(
                &owner.token,
                pb::GetUserByUsernameRequest {
                    username: "zed".into(),
                },
            ))
            .await
            .expect("zed")
            .into_inner()
    };
    let before = zed_user().await;
    assert!(before.is_irc);
    let claim = |username: &str, password: &str| {
        let request = pb::ClaimIrcAccountRequest {
            username: username.into(),
            password: password.into(),
        };
        let node = &node;
        async move { node.client().await.claim_irc_account(request).await }
    };

    // A wrong password and a name that is no IRC-made account are the same refusal.
    for (username, password) in [("zed", "wrong-horse-battery"), ("owner", "whatever1")] {
        assert_status(
            claim(username, password).await,
            tonic::Code::Unauthenticated,
            "not an account made from IRC with that password",
        );
    }
    let claimed = claim("zed", "correct-horse-battery")
        .await
        .expect("claimed")
        .into_inner();
    let id_key = guildhall::identity::SecretKey::from_hex(&claimed.id_secret).expect("a K_id seed");
    assert_eq!(id_key.public().to_hex(), before.id);
    assert_eq!(claimed.user_id, before.id);
    // Once: the node no longer has the key, nor the password.
    assert_status(
        claim("zed", "correct-horse-battery").await,
        tonic::Code::Unauthenticated,
        "not an account made from IRC",
    );
    assert!(!zed_user().await.is_irc);
    let mut irc = Irc::connect(addr).await;
    irc.send("PASS zed:correct-horse-battery").await;
    irc.send("NICK zed").await;
    irc.send("USER zed 0 * :Zed").await;
    irc.until("464").await;

    // The key is the account: a new device it certifies logs in, and the node's own device is
    // gone from the account's devices.
    let identity = guildhall::client::ClientIdentity::from_keys(
        id_key,
        guildhall::identity::SecretKey::generate(),
        "laptop",
        now_ms() - 1000,
    );
    let aud = node.audience();
    let mut request = identity.login_request(&aud, now_ms());
    identity.sign_login(&aud, &mut request);
    let session = node
        .client()
        .await
        .login(request)
        .await
        .expect("the claimed key logs in")
        .into_inner();
    assert_eq!(session.user.expect("user").id, before.id);
    let devices = node
        .client()
        .await
        .get_my_data(authed(&session.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner()
        .device_certificates;
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["laptop"], "the node-held device (IRC) is revoked");
}

/// Two clients joining the same new channel of the default guild at once both join it: the one
/// whose create loses the race joins the channel the other made (it was a 403).
#[tokio::test]
async fn joining_a_new_channel_at_once_from_two_clients_joins_both() {
    let (mut node, _) = irc_node().await;
    let Hall {
        room, boss_token, ..
    } = hall(&node).await;
    node.config.irc_default_guild = room.guild.clone();
    let grpc = node.stop().await;
    node.start_on(grpc).await;
    let addr = node.node().irc_addr.expect("IRC listening");
    let (mut first, _) = login_with_caps(addr, "boss", &boss_token, "batch").await;
    let (mut second, _) = login_with_caps(addr, "boss", &boss_token, "batch").await;
    for round in 0..5 {
        let channel = format!("#race{round}");
        first.send(&format!("JOIN {channel}")).await;
        second.send(&format!("JOIN {channel}")).await;
        for irc in [&mut first, &mut second] {
            let answer = until_line(irc, |l| l.command == "JOIN" || l.command == "403").await;
            assert_eq!(
                (answer.command.as_str(), answer.params[0].as_str()),
                ("JOIN", channel.as_str()),
                "{answer:?}"
            );
        }
    }
}

/// `ClaimIrcAccount` counts against the caller's address like a login: passwords can't be tried
/// faster than `login_rate_limit` allows.
#[tokio::test]
async fn claiming_an_irc_account_is_rate_limited_like_a_login() {
    let node = TestNode::spawn_with(|c| {
        c.settings = guildhall::limits::Settings {
            login_rate_limit: 1,
            ..guildhall::limits::Settings::default()
        };
    })
    .await;
    let mut c = node.client().await;
    let guess = |password: &str| pb::ClaimIrcAccountRequest {
        username: "zed".into(),
        password: password.into(),
    };
    assert_status(
        c.claim_irc_account(guess("first-guess-1")).await,
        tonic::Code::Unauthenticated,
        "not an account made from IRC",
    );
    assert_status(
        c.claim_irc_account(guess("second-guess-2")).await,
        tonic::Code::ResourceExhausted,
        "login_rate_limit",
    );
}
