//! The device-linking mailbox (`SyncMailbox`) on real nodes over gRPC: exchanges, long polls,
//! refusals and limits, and a second device linked through it (in code and with the CLI) that
//! then logs in.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestNode, assert_status, authed, register, wait_for};
use guildhall::client::{IdentityFile, StoredIdentity};
use guildhall::identity::freshness::now_ms;
use guildhall::mailbox::link::{PendingLink, ReceivedRequest};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use tonic::Code;
use tonic::transport::Channel;

type Client = GuildHallClient<Channel>;

/// A valid session id (32+ characters) ending in `tag`.
fn sid(tag: &str) -> String {
    format!("{tag:x>40}")
}

async fn put(c: &mut Client, id: &str, payload: &[u8]) -> Result<(), tonic::Status> {
    c.sync_mailbox(pb::SyncMailboxRequest {
        session_id: id.to_owned(),
        payload: Some(payload.to_vec()),
        wait_for_data: false,
    })
    .await
    .map(|r| assert_eq!(r.into_inner().payload, None, "a put answers empty"))
}

async fn take(c: &mut Client, id: &str, wait: bool) -> Result<Option<Vec<u8>>, tonic::Status> {
    c.sync_mailbox(pb::SyncMailboxRequest {
        session_id: id.to_owned(),
        payload: None,
        wait_for_data: wait,
    })
    .await
    .map(|r| r.into_inner().payload)
}

#[tokio::test]
async fn two_parties_exchange_both_ways_and_reads_take() {
    let node = TestNode::spawn().await;
    let (mut a, mut b) = (node.client().await, node.client().await);
    put(&mut a, &sid("a-to-b"), b"hello b").await.expect("put");
    put(&mut a, &sid("a-to-b"), b"again").await.expect("put");
    put(&mut b, &sid("b-to-a"), b"hello a").await.expect("put");
    assert_eq!(
        take(&mut a, &sid("b-to-a"), false).await.expect("take"),
        Some(b"hello a".to_vec())
    );
    assert_eq!(
        take(&mut b, &sid("a-to-b"), true).await.expect("take"),
        Some(b"hello b".to_vec()),
        "oldest first"
    );
    assert_eq!(
        take(&mut b, &sid("a-to-b"), false).await.expect("take"),
        Some(b"again".to_vec())
    );
    for id in [sid("a-to-b"), sid("b-to-a")] {
        assert_eq!(
            take(&mut a, &id, false).await.expect("take"),
            None,
            "taken once"
        );
    }
}

#[tokio::test]
async fn a_long_poll_is_answered_by_a_put_from_elsewhere() {
    let node = TestNode::spawn().await;
    let mut waiter = node.client().await;
    let poll = tokio::spawn(async move { take(&mut waiter, &sid("wake"), true).await });
    let mut c = node.client().await;
    put(&mut c, &sid("wake"), b"ding").await.expect("put");
    let got = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .expect("the poll answers")
        .expect("task")
        .expect("take");
    assert_eq!(got, Some(b"ding".to_vec()));
}

#[tokio::test]
async fn a_long_poll_with_nothing_to_take_answers_empty() {
    let node = TestNode::spawn_with(|c| c.mailbox.max_wait_ms = 100).await;
    let mut c = node.client().await;
    assert_eq!(take(&mut c, &sid("quiet"), true).await.expect("take"), None);
    // And the session it waited on does not hold anything afterwards.
    put(&mut c, &sid("quiet"), b"late").await.expect("put");
    assert_eq!(
        take(&mut c, &sid("quiet"), true).await.expect("take"),
        Some(b"late".to_vec())
    );
}

#[tokio::test]
async fn payloads_over_the_cap_are_refused_and_not_stored() {
    let node = TestNode::spawn().await;
    let mut c = node.client().await;
    let cap = node.config.mailbox.max_payload_bytes;
    assert_status(
        put(&mut c, &sid("big"), &vec![7; cap + 1]).await,
        Code::InvalidArgument,
        "payload: must be at most 65536 bytes",
    );
    assert_eq!(take(&mut c, &sid("big"), false).await.expect("take"), None);
    assert_status(
        put(&mut c, &sid("big"), b"").await,
        Code::InvalidArgument,
        "payload: must not be empty",
    );
    put(&mut c, &sid("big"), &vec![7; cap])
        .await
        .expect("at the cap");
    let got = take(&mut c, &sid("big"), false).await.expect("take");
    assert_eq!(got.map(|p| p.len()), Some(cap));
}

#[tokio::test]
async fn bad_session_ids_and_combinations_are_refused() {
    let node = TestNode::spawn().await;
    let mut c = node.client().await;
    let too_long = "a".repeat(129);
    let bad_char = format!("{}.", "a".repeat(40));
    for id in ["", "short", too_long.as_str(), bad_char.as_str()] {
        assert_status(
            put(&mut c, id, b"x").await,
            Code::InvalidArgument,
            "session_id: must be 32-128 characters",
        );
        assert_status(
            take(&mut c, id, true).await,
            Code::InvalidArgument,
            "session_id",
        );
    }
    assert_status(
        c.sync_mailbox(pb::SyncMailboxRequest {
            session_id: sid("both"),
            payload: Some(b"x".to_vec()),
            wait_for_data: true,
        })
        .await,
        Code::InvalidArgument,
        "wait_for_data: must be false when payload is set",
    );
    assert_eq!(take(&mut c, &sid("both"), false).await.expect("take"), None);
}

#[tokio::test]
async fn the_rate_limit_is_per_session_and_recovers() {
    let node = TestNode::spawn_with(|c| {
        c.rate_limit_window_secs = 1;
        c.settings.sync_mailbox_rate_limit = 3;
    })
    .await;
    let mut c = node.client().await;
    let busy = sid("busy");
    for _ in 0..3 {
        take(&mut c, &busy, false).await.expect("within the limit");
    }
    assert_status(
        put(&mut c, &busy, b"x").await,
        Code::ResourceExhausted,
        "sync_mailbox_rate_limit",
    );
    // Another session has its own budget.
    put(&mut c, &sid("other"), b"x")
        .await
        .expect("other session");
    // The bucket refills within the one-second window.
    wait_for(Duration::from_secs(10), || {
        let mut c = c.clone();
        let busy = busy.clone();
        async move { put(&mut c, &busy, b"x").await.is_ok() }
    })
    .await;
    // What the recovered put stored is there once the next token comes.
    wait_for(Duration::from_secs(10), || {
        let mut c = c.clone();
        let busy = busy.clone();
        async move { matches!(take(&mut c, &busy, false).await, Ok(Some(p)) if p == b"x") }
    })
    .await;
}

#[tokio::test]
async fn memory_is_bounded_by_sessions_and_payloads_per_session() {
    let node = TestNode::spawn_with(|c| {
        c.mailbox.max_sessions = 2;
        c.mailbox.max_payloads_per_session = 2;
    })
    .await;
    let mut c = node.client().await;
    put(&mut c, &sid("one"), b"1").await.expect("put");
    put(&mut c, &sid("one"), b"2").await.expect("put");
    assert_status(
        put(&mut c, &sid("one"), b"3").await,
        Code::ResourceExhausted,
        "already holds 2 unread payloads",
    );
    put(&mut c, &sid("two"), b"1").await.expect("put");
    assert_status(
        put(&mut c, &sid("three"), b"1").await,
        Code::ResourceExhausted,
        "session_id: the server's mailbox holds as many sessions as it can",
    );
    // Taking everything from a session frees its slot.
    take(&mut c, &sid("two"), false).await.expect("take");
    put(&mut c, &sid("three"), b"1").await.expect("room again");
}

#[tokio::test]
async fn a_second_device_links_through_the_mailbox_and_logs_in() {
    let node = TestNode::spawn().await;
    let alice = register(&node, "Alice").await;

    // The new device: a key, a code, a request, and a wait for the cert.
    let pending = PendingLink::new("laptop", Some("Laptop"));
    let mut new_device = node.client().await;
    put(
        &mut new_device,
        &pending.code.request_box(),
        &pending.request_payload(),
    )
    .await
    .expect("request posted");
    let cert_box = pending.code.cert_box();
    let waiting = tokio::spawn({
        let mut c = new_device.clone();
        async move { take(&mut c, &cert_box, true).await }
    });

    // The existing device: takes the request, compares fingerprints, signs with K_id.
    let mut old_device = node.client().await;
    let payload = take(&mut old_device, &pending.code.request_box(), true)
        .await
        .expect("take")
        .expect("the request is there");
    let request = ReceivedRequest::parse(&payload).expect("a link request");
    assert_eq!(request.fingerprint(), pending.fingerprint());
    let answer = request
        .approve(&alice.identity, now_ms() - 1000)
        .expect("approved");
    put(&mut old_device, &pending.code.cert_box(), &answer)
        .await
        .expect("cert posted");

    // The new device checks the cert, keeps a device-only identity and logs in.
    let got = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("answered")
        .expect("task")
        .expect("take")
        .expect("the cert arrived");
    let device = pending
        .accept(&got, &alice.identity.id_key.public(), now_ms(), 300_000)
        .expect("a cert for this device by Alice's K_id");
    let file: IdentityFile =
        serde_json::from_str(&serde_json::to_string(&device.to_file()).expect("json"))
            .expect("parses");
    assert!(
        file.id_secret.is_empty(),
        "no K_id secret on the new device"
    );
    let StoredIdentity::Device(device) = file.identity().expect("identity") else {
        panic!("a device-only identity");
    };
    let login = new_device
        .login(device.login_request(&node.audience(), now_ms()))
        .await
        .expect("the linked device logs in")
        .into_inner();
    let data = new_device
        .get_my_data(authed(&login.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner();
    assert_eq!(data.user.expect("user").id, alice.identity.user_id());
    let keys: Vec<_> = data.device_certificates.iter().map(|d| &d.id).collect();
    assert!(keys.contains(&&pending.device_key.public().to_hex()));
    assert_eq!(data.device_certificates.len(), 2);
    // The mailbox kept nothing.
    for id in [pending.code.request_box(), pending.code.cert_box()] {
        assert_eq!(take(&mut old_device, &id, false).await.expect("take"), None);
    }
}

/// A CLI process, killed if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_guildhall"));
    command
        .args(args)
        .env_remove("GUILDHALL_IDENTITY")
        .env_remove("GUILDHALL_SERVER")
        .env("RUST_LOG", "warn");
    command
}

/// Starts `link-request` and returns it with a channel of its output lines.
fn start_link_request(
    server: &str,
    identity: &std::path::Path,
    user_id: &str,
) -> (Running, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut child = cli(&[
        "device",
        "link-request",
        "--server",
        server,
        "--user-id",
        user_id,
        "--device-id",
        "laptop",
        "--name",
        "Laptop",
        "--timeout-secs",
        "30",
    ])
    .arg("--identity")
    .arg(identity)
    .stdout(Stdio::piped())
    .spawn()
    .expect("run guildhall");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Reads until the process closes its output, so it never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// The value of the first line starting with `label`.
async fn field(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, label: &str) -> String {
    let deadline = Duration::from_secs(30);
    tokio::time::timeout(deadline, async {
        while let Some(line) = lines.recv().await {
            if let Some(value) = line.strip_prefix(label) {
                return value.trim().to_owned();
            }
        }
        panic!("output ended before {label:?}");
    })
    .await
    .expect("the line appears")
}

/// Runs a CLI command to completion off the async workers.
async fn output(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("run guildhall"))
        .await
        .expect("task")
}

async fn exit_ok(mut child: Running) -> bool {
    tokio::task::spawn_blocking(move || child.0.wait().map(|s| s.success()))
        .await
        .expect("task")
        .expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_links_a_device_and_refuses_a_wrong_fingerprint() {
    let node = TestNode::spawn().await;
    let server = format!("http://{}", node.node().grpc_addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = register(&node, "Alice").await;
    let old_path = dir.path().join("alice.json");
    alice.identity.to_file().save(&old_path).expect("saved");
    let user_id = alice.identity.user_id();
    let old_identity = old_path.to_str().expect("utf-8 path");

    // A wrong fingerprint: nothing is signed and the new device is told.
    let declined_path = dir.path().join("declined.json");
    let (declined, mut lines) = start_link_request(&server, &declined_path, &user_id);
    let code = field(&mut lines, "link code:").await;
    let approve = cli(&[
        "device",
        "link-approve",
        &code,
        "--fingerprint",
        "0000-0000-0000-0000-0000",
        "--server",
        &server,
        "--identity",
        old_identity,
        "--timeout-secs",
        "30",
    ]);
    let approve = output(approve).await;
    assert!(!approve.status.success());
    assert!(String::from_utf8_lossy(&approve.stderr).contains("not approved"));
    assert!(!exit_ok(declined).await, "the new device gives up");
    assert!(!declined_path.exists(), "and keeps no identity");

    // The matching fingerprint: linked, saved, logged in.
    let new_path = dir.path().join("laptop.json");
    let (request, mut lines) = start_link_request(&server, &new_path, &user_id);
    let code = field(&mut lines, "link code:").await;
    let fingerprint = field(&mut lines, "fingerprint:").await;
    let approve = cli(&[
        "device",
        "link-approve",
        &code,
        "--fingerprint",
        &fingerprint,
        "--server",
        &server,
        "--identity",
        old_identity,
        "--timeout-secs",
        "30",
    ]);
    let approve = output(approve).await;
    assert!(
        approve.status.success(),
        "approve failed: {}",
        String::from_utf8_lossy(&approve.stderr)
    );
    assert_eq!(
        field(&mut lines, "logged in as").await.split(' ').next(),
        Some(user_id.as_str())
    );
    assert!(exit_ok(request).await);

    let file = IdentityFile::load(&new_path).expect("identity file");
    assert!(file.id_secret.is_empty());
    assert_eq!(file.user_id, user_id);
    let mut whoami = cli(&["whoami", "--server", &server]);
    whoami.arg("--identity").arg(&new_path);
    let whoami = output(whoami).await;
    let out = String::from_utf8_lossy(&whoami.stdout);
    assert!(
        whoami.status.success(),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    assert!(out.contains(&user_id), "{out}");
    assert!(out.contains("Laptop"), "{out}");
    // A device-only identity can not register (that needs K_id).
    let mut register = cli(&["register", "--name", "Mallory", "--server", &server]);
    register.arg("--identity").arg(&new_path);
    let register = output(register).await;
    assert!(!register.status.success());
    assert!(String::from_utf8_lossy(&register.stderr).contains("K_id"));
}

#[test]
fn identity_files_old_full_and_device_only_all_read() {
    let full = guildhall::client::ClientIdentity::generate("phone", now_ms());
    // A file written before device linking: no `user_id`.
    let mut old = serde_json::to_value(full.to_file()).expect("json");
    old.as_object_mut().expect("object").remove("user_id");
    let old: IdentityFile = serde_json::from_value(old).expect("old files parse");
    assert!(matches!(old.identity(), Ok(StoredIdentity::Full(_))));
    // A full file whose user_id is not its K_id is refused.
    let mut wrong = full.to_file();
    wrong.user_id = guildhall::client::ClientIdentity::generate("x", now_ms()).user_id();
    assert!(wrong.identity().is_err());
    // A device-only file needs user_id.
    let mut device = full.device().to_file();
    assert!(matches!(device.identity(), Ok(StoredIdentity::Device(_))));
    assert!(
        !serde_json::to_string(&device)
            .expect("json")
            .contains("id_secret")
    );
    device.user_id.clear();
    assert!(device.identity().is_err());
}
