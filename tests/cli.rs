//! The `guildhall` client commands over the network against live nodes on loopback: a user of one
//! node joining a guild hosted on another keeps both sessions (one identity file, one user), an
//! old single-session identity file still works, expired access tokens are refreshed with the
//! saved refresh token, `tail` survives a server restart without gaps or repeats, and refusals
//! read as sentences.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use guildhall::client::IdentityFile;
use guildhall::proto::guildhall::v1 as pb;

const BIN: &str = env!("CARGO_BIN_EXE_guildhall");

/// How long one CLI command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A CLI process, killed if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CLI with `identity`, and no settings from the environment.
fn cli(identity: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .arg("--identity")
        .arg(identity)
        .env_remove("GUILDHALL_IDENTITY")
        .env_remove("GUILDHALL_SERVER")
        .env_remove("GUILDHALL_CA_FILE")
        // Times print in the local zone: UTC here, so lines read the same on every machine.
        .env("TZ", "UTC")
        .env("RUST_LOG", "warn");
    command
}

/// What a finished command printed.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs a command to its end (bounded) without blocking the nodes this test runs.
async fn run(identity: &Path, args: &[&str]) -> Output {
    let mut child = Running(
        cli(identity, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the CLI"),
    );
    let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`guildhall {}` did not finish",
            args.join(" ")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    };
    let stdout = read(child.0.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let stderr = read(child.0.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    Output {
        ok: status.success(),
        stdout,
        stderr,
    }
}

/// Runs a command that must succeed; its standard output.
async fn ok(identity: &Path, args: &[&str]) -> String {
    let out = run(identity, args).await;
    assert!(
        out.ok,
        "`guildhall {}` failed:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The identity file as JSON.
fn file_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

/// An identity file as the CLI wrote it before it kept one session per server: `user`'s keys
/// and their session on `server` in the top-level fields.
fn old_style_file(path: &Path, user: &TestUser, server: &str) {
    let mut file: IdentityFile = user.identity.to_file();
    file.access_token = user.token.clone();
    file.refresh_token = user.refresh_token.clone();
    file.server = server.to_owned();
    file.save(path).expect("save");
}

#[tokio::test]
async fn a_user_of_b_joins_a_guild_on_a_as_themselves_and_keeps_their_b_session() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Federated").await;
    let bob = register(&b, "Bob").await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    // Bob's file from an older CLI: one session, on B.
    old_style_file(&id, &bob, &b.address());

    // No --server: the remembered homeserver. No --homeserver: the same.
    let who = ok(&id, &["whoami"]).await;
    assert!(who.contains(&bob.user.id), "{who}");
    let joined = ok(&id, &["join", &room.invite, "--server", &a.address()]).await;
    assert!(joined.contains(&room.guild), "{joined}");
    assert!(joined.contains("as a user of"), "{joined}");

    let json = file_json(&id);
    assert_eq!(json["homeserver"], b.address());
    let sessions = json["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{json}");
    // An older reader still finds the home session where it always was.
    assert_eq!(json["server"], b.address());

    // Talking on A as the same user, whom A knows as B's.
    let words = "hello from B";
    ok(
        &id,
        &[
            "send",
            "--server",
            &a.address(),
            "--channel",
            &room.channel,
            words,
        ],
    )
    .await;
    let on_a = get_user(&a, &owner.token, &bob.user.id).await;
    assert_eq!(
        on_a.homeserver.trim_end_matches('/'),
        b.address().trim_end_matches('/')
    );
    let history = a
        .client()
        .await
        .get_history(authed(
            &owner.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                limit: 10,
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .messages;
    assert!(
        history
            .iter()
            .any(|m| m.text == words && m.sender_id == bob.user.id),
        "{history:?}"
    );
    // The CLI's own history on A shows it, with a readable time.
    let shown = ok(
        &id,
        &[
            "history",
            "--server",
            &a.address(),
            "--channel",
            &room.channel,
        ],
    )
    .await;
    assert!(shown.contains(&format!("Bob: {words}")), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.len() > 20 && l.as_bytes()[4] == b'-' && l[..20].ends_with('Z')),
        "{shown}"
    );

    // Without --server, a name is looked up on every server with a session: the guild lives
    // on A, so that is where this goes.
    ok(
        &id,
        &["send", "--channel", "Federated#general", "by", "name"],
    )
    .await;
    let shown = ok(&id, &["history", "--channel", "general"]).await;
    assert!(shown.contains("Bob: by name"), "{shown}");
    // A second #general, at home: now `general` alone is ambiguous across the two servers.
    ok(&id, &["guild", "create", "--name", "Home"]).await;
    let out = run(&id, &["history", "--channel", "general"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("names 2 channels")
            && out
                .stderr
                .contains(&format!("Federated#general  on {}", a.address()))
            && out
                .stderr
                .contains(&format!("Home#general  on {}", b.address())),
        "{}",
        out.stderr
    );

    // `guild list` shows the guilds of every server, saying where each is.
    let listed = ok(&id, &["guild", "list"]).await;
    assert!(
        listed.contains(&format!("Federated  on {}", a.address()))
            && listed.contains(&format!("Home  (owner)  on {}", b.address())),
        "{listed}"
    );

    // The B session was not lost: whoami still goes home and lists both sessions.
    let who = ok(&id, &["whoami"]).await;
    assert!(who.contains(&bob.user.id), "{who}");
    assert!(
        who.contains(&format!("session:    {}  (homeserver)", b.address())),
        "{who}"
    );
    assert!(
        who.contains(&format!("session:    {}\n", a.address())),
        "{who}"
    );
}

#[tokio::test]
async fn a_command_on_a_server_without_a_session_says_what_to_do() {
    let (a, b) = (TestNode::spawn().await, TestNode::spawn().await);
    let bob = register(&b, "Bob").await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    old_style_file(&id, &bob, &b.address());
    let out = run(&id, &["guild", "list", "--server", &a.address()]).await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains(&format!("no session on {}", a.address()))
            && out.stderr.contains("guildhall login"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_with_the_saved_refresh_token() {
    let node = TestNode::spawn_with(|c| c.access_token_ttl_secs = 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    ok(&id, &["keygen"]).await;
    ok(
        &id,
        &["register", "--server", &node.address(), "--name", "Ada"],
    )
    .await;
    let before = file_json(&id);
    let old_token = before["sessions"][0]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    // Wait (bounded) until the server no longer takes the saved access token.
    let client = node.client().await;
    wait_for(Duration::from_secs(20), || {
        let (mut client, token) = (client.clone(), old_token.clone());
        async move {
            client
                .get_my_data(authed(&token, pb::Empty {}))
                .await
                .is_err()
        }
    })
    .await;

    let out = ok(&id, &["guild", "create", "--name", "Refreshed"]).await;
    assert!(out.contains("Refreshed"), "{out}");
    let after = file_json(&id);
    let new_token = after["sessions"][0]["access_token"]
        .as_str()
        .expect("token");
    assert_ne!(new_token, old_token, "a new pair was saved");
    assert_ne!(
        after["sessions"][0]["refresh_token"],
        before["sessions"][0]["refresh_token"]
    );
    assert_eq!(after["access_token"], new_token, "and for older readers");
}

#[tokio::test]
async fn send_without_text_says_so_plainly() {
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    let out = run(&id, &["send", "--channel", "1", " "]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("nothing to send"), "{}", out.stderr);
}

/// Starts a stopped node again on `addr`. The data directory's lock can stay held for a moment by
/// a CLI process another test is starting (a forked child shares the lock's file until it execs),
/// so a refusal for that reason is retried, for a bounded time.
async fn start_again(node: &mut TestNode, addr: std::net::SocketAddr) {
    node.config.listen = addr;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match guildhall::node::Node::start(node.config.clone()).await {
            Ok(running) => {
                node.node = Some(running);
                return;
            }
            Err(guildhall::node::NodeError::Locked(_))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("the node did not start again: {err}"),
        }
    }
}

/// Lines a child process writes to a pipe, as they come.
fn lines_of(
    pipe: impl std::io::Read + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines (bounded) until one mentions `text`.
async fn until_text(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: &mut Vec<String>,
    text: &str,
) {
    let needle = format!("text={text:?}");
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no line with {needle} came; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("tail ended; saw {seen:#?}"));
        let found = line.contains(&needle);
        seen.push(line);
        if found {
            return;
        }
    }
}

#[tokio::test]
async fn tail_reconnects_after_a_restart_and_resumes_without_gaps_or_repeats() {
    let mut node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "Tailed").await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    old_style_file(&id, &ada, &node.address());

    let mut child = Running(
        cli(&id, &["tail"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tail"),
    );
    let mut lines = lines_of(child.0.stdout.take().expect("stdout"));
    let mut notes = lines_of(child.0.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    // The first message, sent until tail is surely subscribed (a message sent before it
    // subscribed is not replayed: tail starts from now).
    let mut n = 0;
    loop {
        n += 1;
        send_text(&node, &ada.token, &room.channel, &format!("warm-up {n}")).await;
        let next = tokio::time::timeout(Duration::from_millis(500), lines.recv()).await;
        if let Ok(Some(line)) = next {
            seen.push(line);
            break;
        }
        assert!(n < 60, "tail printed nothing");
    }
    send_text(&node, &ada.token, &room.channel, "one").await;
    until_text(&mut lines, &mut seen, "one").await;

    let addr = node.stop().await;
    // Once tail has failed to reconnect a few times it waits 2 s before the next attempt, so
    // what is sent as soon as the node is back is (most likely) sent while tail is away: only
    // resuming from the last event id brings it. Either way, it must be printed once.
    loop {
        let note = tokio::time::timeout(Duration::from_secs(60), notes.recv())
            .await
            .expect("tail says it is reconnecting")
            .expect("tail runs");
        assert!(note.starts_with("note: "), "{note}");
        if note.ends_with("reconnecting in 2s") {
            break;
        }
    }
    start_again(&mut node, addr).await;
    send_text(&node, &ada.token, &room.channel, "two").await;
    send_text(&node, &ada.token, &room.channel, "three").await;
    until_text(&mut lines, &mut seen, "three").await;
    drop(child);

    for word in ["one", "two", "three"] {
        let needle = format!("text={word:?}");
        let count = seen.iter().filter(|l| l.contains(&needle)).count();
        assert_eq!(count, 1, "{word} printed {count} times: {seen:#?}");
    }
    let ids: Vec<u64> = seen
        .iter()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), seen.len(), "every line starts with an id");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids only grow: {seen:#?}"
    );
}

#[tokio::test]
async fn guilds_and_channels_by_name_and_ambiguous_names_list_the_candidates() {
    let node = TestNode::spawn().await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    ok(&id, &["keygen"]).await;
    let server = node.address();
    ok(&id, &["register", "--server", &server, "--name", "Ada"]).await;
    ok(&id, &["guild", "create", "--name", "Engines"]).await;
    ok(
        &id,
        &[
            "channel", "create", "--guild", "Engines", "--name", "design",
        ],
    )
    .await;
    // `design` is unique: by name alone, or with a `#`.
    ok(&id, &["send", "--channel", "design", "by", "name"]).await;
    let shown = ok(&id, &["history", "--channel", "#design"]).await;
    assert!(shown.contains("Ada: by name"), "{shown}");

    // A second guild with a #general too: `general` alone is ambiguous, `Looms#general` is not.
    ok(&id, &["guild", "create", "--name", "Looms"]).await;
    let out = run(&id, &["send", "--channel", "general", "which?"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("names 2 channels")
            && out.stderr.contains("Engines#general")
            && out.stderr.contains("Looms#general"),
        "{}",
        out.stderr
    );
    ok(&id, &["send", "--channel", "Looms#general", "to", "looms"]).await;
    let looms = ok(&id, &["history", "--channel", "Looms#general"]).await;
    assert!(looms.contains("Ada: to looms"), "{looms}");
    let engines = ok(&id, &["history", "--channel", "Engines#general"]).await;
    assert!(!engines.contains("to looms"), "{engines}");
    let listed = ok(&id, &["channel", "list", "--guild", "engines"]).await;
    assert!(listed.contains("#design"), "{listed}");

    // Two guilds of one name: refused with both ids.
    ok(&id, &["guild", "create", "--name", "Looms"]).await;
    let out = run(&id, &["channel", "list", "--guild", "Looms"]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("names 2 guilds"), "{}", out.stderr);
    let out = run(&id, &["channel", "list", "--guild", "Nowhere"]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("no guild named"), "{}", out.stderr);
}

#[tokio::test]
async fn upload_react_edit_delete_dm_kick_ban_and_device_revoke() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let carol = register(&node, "Carol").await;
    let room = create_room(&node, &ada, "Engines").await;
    join_room(&node, &bob, &room.invite).await;
    join_room(&node, &carol, &room.invite).await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    old_style_file(&id, &ada, &node.address());

    // Upload: the attachment shows in history.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "the difference engine").expect("write");
    let path = notes.to_str().expect("utf-8 path");
    let sent = ok(
        &id,
        &["upload", "--channel", "general", path, "see", "attached"],
    )
    .await;
    assert!(sent.contains("sent notes.txt"), "{sent}");
    ok(&id, &["send", "--channel", "general", "first", "draft"]).await;
    let shown = ok(&id, &["history", "--channel", "general", "--ids"]).await;
    assert!(shown.contains("Ada: see attached"), "{shown}");
    assert!(shown.contains("text/plain 21 B]"), "{shown}");
    let draft = shown
        .lines()
        .find(|l| l.contains("first draft"))
        .and_then(|l| l.split(' ').next())
        .expect("the draft's id")
        .to_owned();

    // React, edit, then delete it.
    ok(&id, &["react", "--channel", "general", &draft, "👍"]).await;
    ok(
        &id,
        &["edit", "--channel", "general", &draft, "final", "text"],
    )
    .await;
    let shown = ok(&id, &["history", "--channel", "general"]).await;
    assert!(shown.contains("Ada: final text (edited)"), "{shown}");
    assert!(shown.contains("[reactions 👍 1]"), "{shown}");
    ok(&id, &["delete", "--channel", "general", &draft]).await;
    let shown = ok(&id, &["history", "--channel", "general"]).await;
    assert!(!shown.contains("final text"), "{shown}");

    // A DM with Bob: he accepts the invite from his own CLI and reads what was sent there.
    let dm = ok(&id, &["dm", &bob.user.id]).await;
    let dm_channel = dm
        .lines()
        .find_map(|l| l.strip_prefix("channel: "))
        .and_then(|l| l.split(' ').next())
        .expect("the DM's channel")
        .to_owned();
    ok(&id, &["send", "--channel", &dm_channel, "psst"]).await;
    let bob_id = dir.path().join("bob.json");
    old_style_file(&bob_id, &bob, &node.address());
    let waiting = ok(&bob_id, &["dm-invites"]).await;
    let invite = waiting
        .lines()
        .find(|l| l.contains(&ada.user.id))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("Ada's invite is listed: {waiting}"))
        .to_owned();
    ok(&bob_id, &["dm-accept", &invite]).await;
    let read = ok(&bob_id, &["history", "--channel", &dm_channel]).await;
    assert!(read.contains("Ada: psst"), "{read}");

    // Kick by user id, ban by name.
    ok(&id, &["kick", "--guild", "Engines", &bob.user.id]).await;
    let out = run(&id, &["ban", "--guild", "Engines", "Nobody"]).await;
    assert!(
        !out.ok && out.stderr.contains("no member"),
        "{}",
        out.stderr
    );
    ok(
        &id,
        &["ban", "--guild", "Engines", "carol", "--reason", "spam"],
    )
    .await;
    let members = member_ids(&node, &ada.token, &room.guild).await;
    assert!(
        !members.contains(&bob.user.id) && !members.contains(&carol.user.id),
        "{members:?}"
    );
    let again = node
        .client()
        .await
        .join_invite(carol.identity.join_invite_request(
            &node.audience(),
            &room.invite,
            "Carol",
            guildhall::identity::freshness::now_ms(),
        ))
        .await;
    assert!(again.is_err(), "the banned member can't come back");

    // Revoke a second device: its session ends.
    let laptop = ada
        .identity
        .new_device("laptop", guildhall::identity::freshness::now_ms() - 1000);
    let laptop_token = node
        .client()
        .await
        .login(laptop.login_request(&node.audience(), guildhall::identity::freshness::now_ms()))
        .await
        .expect("the laptop logs in")
        .into_inner()
        .token;
    let key = laptop.device_key.public().to_hex();
    ok(&id, &["device", "revoke", &key]).await;
    assert!(
        node.client()
            .await
            .get_my_data(authed(&laptop_token, pb::Empty {}))
            .await
            .is_err(),
        "the revoked device's session ended"
    );
    let out = run(
        &id,
        &[
            "device",
            "revoke",
            &ada.identity.device_key.public().to_hex(),
        ],
    )
    .await;
    assert!(
        !out.ok && out.stderr.contains("this device's own key"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn roles_and_webhooks_by_name() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Engines").await;
    join_room(&node, &bob, &room.invite).await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    old_style_file(&id, &ada, &node.address());

    let made = ok(
        &id,
        &[
            "role",
            "create",
            "--guild",
            "Engines",
            "--name",
            "Scribes",
            "--permission",
            "messages.manage",
        ],
    )
    .await;
    assert!(made.contains("Scribes  [messages.manage]"), "{made}");
    let listed = ok(&id, &["role", "list", "--guild", "Engines"]).await;
    assert!(listed.contains("Scribes"), "{listed}");
    ok(
        &id,
        &["role", "assign", "--guild", "Engines", "Bob", "scribes"],
    )
    .await;
    let role_id = made.split(' ').next().expect("role id").to_owned();
    let roles_of_bob = |members: pb::ListGuildMembersResponse| {
        members
            .members
            .into_iter()
            .find(|m| m.user.as_ref().is_some_and(|u| u.id == bob.user.id))
            .map(|m| m.roles)
            .unwrap_or_default()
    };
    let members = || async {
        node.client()
            .await
            .list_guild_members(authed(
                &ada.token,
                pb::ListGuildMembersRequest {
                    guild_id: room.guild.clone(),
                    limit: 50,
                    offset: 0,
                },
            ))
            .await
            .expect("members")
            .into_inner()
    };
    assert!(roles_of_bob(members().await).contains(&role_id));
    ok(
        &id,
        &["role", "unassign", "--guild", "Engines", "Bob", &role_id],
    )
    .await;
    assert!(!roles_of_bob(members().await).contains(&role_id));
    ok(&id, &["role", "delete", "--guild", "Engines", "Scribes"]).await;
    let out = run(&id, &["role", "delete", "--guild", "Engines", "Scribes"]).await;
    assert!(
        !out.ok && out.stderr.contains("no role named"),
        "{}",
        out.stderr
    );

    let hook = ok(
        &id,
        &["webhook", "create", "--channel", "general", "--name", "CI"],
    )
    .await;
    assert!(hook.contains("token:"), "{hook}");
    let hook_id = hook
        .lines()
        .find_map(|l| l.strip_prefix("webhook: "))
        .and_then(|l| l.split(' ').next())
        .expect("webhook id")
        .to_owned();
    let listed = ok(&id, &["webhook", "list", "--guild", "Engines"]).await;
    assert!(
        listed.contains(&hook_id) && listed.contains("CI"),
        "{listed}"
    );
    let updated = ok(&id, &["webhook", "update", &hook_id, "--name", "Builds"]).await;
    assert!(updated.contains("Builds"), "{updated}");
    let listed = ok(&id, &["webhook", "list", "--guild", "Engines"]).await;
    assert!(
        listed.contains(&hook_id) && listed.contains("Builds") && !listed.contains("CI"),
        "{listed}"
    );
    let out = run(&id, &["webhook", "update", &hook_id]).await;
    assert!(
        !out.ok && out.stderr.contains("nothing to change"),
        "{}",
        out.stderr
    );
    ok(&id, &["webhook", "delete", &hook_id]).await;
    let listed = ok(&id, &["webhook", "list", "--guild", "Engines"]).await;
    assert!(!listed.contains(&hook_id), "{listed}");
}

#[tokio::test]
async fn a_session_refreshed_by_one_command_is_taken_up_by_a_running_tail() {
    let mut node = TestNode::spawn_with(|c| c.access_token_ttl_secs = 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    ok(&id, &["keygen"]).await;
    let server = node.address();
    ok(&id, &["register", "--server", &server, "--name", "Ada"]).await;
    ok(&id, &["guild", "create", "--name", "Engines"]).await;
    let token_of = |path: &Path| {
        file_json(path)["sessions"][0]["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    };

    let mut child = Running(
        cli(&id, &["tail"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tail"),
    );
    let mut lines = lines_of(child.0.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        ok(
            &id,
            &["send", "--channel", "general", &format!("warm-up {n}")],
        )
        .await;
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(500), lines.recv()).await
        {
            seen.push(line);
            break;
        }
        assert!(n < 60, "tail printed nothing");
    }

    // The token tail holds expires; another command refreshes the session meanwhile, spending
    // the refresh token tail also knows.
    let held = token_of(&id);
    let client = node.client().await;
    wait_for(Duration::from_secs(20), || {
        let (mut client, token) = (client.clone(), held.clone());
        async move {
            client
                .get_my_data(authed(&token, pb::Empty {}))
                .await
                .is_err()
        }
    })
    .await;
    ok(&id, &["guild", "list"]).await;
    assert_ne!(token_of(&id), held, "guild list refreshed the session");

    // Tail reconnects with its stale token after a restart: it must take up the saved pair, not
    // spend the old refresh token again (which would end the whole login).
    let addr = node.stop().await;
    start_again(&mut node, addr).await;
    ok(&id, &["send", "--channel", "general", "after"]).await;
    until_text(&mut lines, &mut seen, "after").await;
    drop(child);
    let listed = ok(&id, &["guild", "list"]).await;
    assert!(listed.contains("Engines"), "{listed}");
}

#[tokio::test]
async fn a_remote_join_that_refreshed_the_home_session_keeps_the_new_pair() {
    let a = TestNode::spawn().await;
    let b = TestNode::spawn_with(|c| c.access_token_ttl_secs = 1).await;
    let owner = register(&a, "Owner").await;
    let room = create_room(&a, &owner, "Federated").await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    ok(&id, &["keygen"]).await;
    ok(
        &id,
        &["register", "--server", &b.address(), "--name", "Bob"],
    )
    .await;
    let held = file_json(&id)["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let client = b.client().await;
    wait_for(Duration::from_secs(20), || {
        let (mut client, token) = (client.clone(), held.clone());
        async move {
            client
                .get_my_data(authed(&token, pb::Empty {}))
                .await
                .is_err()
        }
    })
    .await;
    // No --name: join takes it from home, refreshing the home session on the way.
    ok(&id, &["join", &room.invite, "--server", &a.address()]).await;
    assert_ne!(file_json(&id)["access_token"], held);
    // Home still works: the refreshed pair was kept, not the spent one.
    let who = ok(&id, &["whoami"]).await;
    assert!(who.contains("name:       Bob"), "{who}");
}

#[tokio::test]
async fn commands_that_find_the_token_expired_together_spend_the_refresh_token_once() {
    let node = TestNode::spawn_with(|c| c.access_token_ttl_secs = 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("identity.json");
    ok(&id, &["keygen"]).await;
    let server = node.address();
    ok(&id, &["register", "--server", &server, "--name", "Ada"]).await;
    // Three rounds: each time the token has expired and four commands start at once. Each of
    // them refreshes or takes up the pair another saved; spending the same refresh token twice
    // would end the login (PROTOCOL.md §5) and fail every later command.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let runs: Vec<_> = (0..4).map(|_| run(&id, &["whoami"])).collect();
        for (i, out) in futures::future::join_all(runs)
            .await
            .into_iter()
            .enumerate()
        {
            assert!(out.ok, "round {round}, command {i}: {}", out.stderr);
        }
    }
    ok(&id, &["whoami"]).await;
}

/// `account claim-irc` takes an account made from IRC to an identity file: the password comes on
/// stdin, the key is saved, the CLI logs in, and the account is then the file's (`whoami`).
/// A wrong password is put in words and writes nothing.
#[tokio::test]
async fn claim_irc_takes_an_irc_made_account_to_an_identity_file() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let node =
        TestNode::spawn_with(|c| c.irc_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let irc_addr = node.node().irc_addr.expect("IRC");
    let stream = tokio::net::TcpStream::connect(irc_addr).await.expect("IRC");
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"NICK zed\r\nREGISTER * * correct-horse-battery\r\n")
        .await
        .expect("register");
    let mut lines = tokio::io::BufReader::new(read).lines();
    let answer = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("a line");
    assert!(answer.contains("REGISTER SUCCESS zed"), "{answer}");

    let dir = tempfile::tempdir().expect("dir");
    let id = dir.path().join("keys").join("identity.json");
    let claim = |password: &'static str| {
        let mut child = Running(
            cli(
                &id,
                &[
                    "account",
                    "claim-irc",
                    "--username",
                    "zed",
                    "--server",
                    &node.address(),
                ],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the CLI"),
        );
        async move {
            use std::io::{Read, Write};
            let mut stdin = child.0.stdin.take().expect("stdin");
            writeln!(stdin, "{password}").expect("password");
            drop(stdin);
            let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
            let status = loop {
                if let Some(status) = child.0.try_wait().expect("wait") {
                    break status;
                }
                assert!(tokio::time::Instant::now() < deadline, "claim-irc hangs");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let (mut out, mut err) = (String::new(), String::new());
            let _ = child.0.stdout.take().expect("out").read_to_string(&mut out);
            let _ = child.0.stderr.take().expect("err").read_to_string(&mut err);
            (status.success(), out, err)
        }
    };
    let (ok_, _, err) = claim("wrong-horse-battery").await;
    assert!(
        !ok_ && err.contains("not an account made from IRC"),
        "{err}"
    );
    assert!(!id.exists(), "nothing written on a refusal");

    let (ok_, out, err) = claim("correct-horse-battery").await;
    assert!(ok_, "{out}{err}");
    assert!(out.contains("logged in as"), "{out}");
    let user_id = file_json(&id)["user_id"]
        .as_str()
        .expect("user id")
        .to_owned();
    let whoami = ok(&id, &["whoami"]).await;
    assert!(
        whoami.contains(&format!("user id:    {user_id}")),
        "{whoami}"
    );
    let owner = register(&node, "Owner").await;
    let zed = node
        .client()
        .await
        .get_user_by_username(authed(
            &owner.token,
            pb::GetUserByUsernameRequest {
                username: "zed".into(),
            },
        ))
        .await
        .expect("zed")
        .into_inner();
    assert_eq!(zed.id, user_id);
    assert!(!zed.is_irc);
}
