//! Process safety: one node per data directory (a second node, or `rotate-server-key` while a node
//! runs, is refused), SIGTERM (what systemd and Docker send) stops the `guildhall` binary as
//! cleanly as Ctrl-C: open streams end, acknowledged writes are in the database, exit code 0; and
//! a killed node does not come back handing everyone a fresh rate-limit allowance.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use guildhall::identity::PublicKey;
use guildhall::identity::freshness::now_ms;
use guildhall::node::{Node, NodeError};
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;

const BIN: &str = env!("CARGO_BIN_EXE_guildhall");

#[tokio::test]
async fn a_second_node_on_the_same_data_directory_is_refused() {
    let first = TestNode::spawn().await;
    let err = Node::start(first.config.clone())
        .await
        .expect_err("the directory is taken");
    assert!(matches!(err, NodeError::Locked(_)), "{err}");
    assert!(
        err.to_string()
            .contains("in use by another guildhall process"),
        "{err}"
    );

    // rotate-server-key refuses too, and the key stays as it was.
    let key_before = std::fs::read_to_string(first.config.server_key_path()).expect("key");
    let out = Command::new(BIN)
        .args(["rotate-server-key", "--data-dir"])
        .arg(&first.config.data_dir)
        .output()
        .expect("run rotate-server-key");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another guildhall process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_after = std::fs::read_to_string(first.config.server_key_path()).expect("key");
    assert_eq!(key_before, key_after);
    assert!(
        first
            .client()
            .await
            .get_server_info(pb::Empty {})
            .await
            .is_ok(),
        "the first node keeps running"
    );
}

/// A `guildhall serve` child process on loopback.
struct Served {
    child: Child,
    address: String,
}

impl Served {
    fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// [`Served::start`] with settings in `GUILDHALL_…` environment variables.
    fn start_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn guildhall serve");
        let stdout = child.stdout.take().expect("stdout");
        // Read the address, then keep draining stdout so the node never writes to a closed pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.trim().strip_prefix("gRPC:") {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the node printed its gRPC address");
        Self { child, address }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; its exit code. Async, so this test's client
    /// connections keep answering the node's shutdown handshake meanwhile.
    async fn wait(mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("guildhall did not exit within {timeout:?}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = Served::start(dir.path());
    let mut client = GuildHallClient::connect(served.address.clone())
        .await
        .expect("connect");
    let info = client
        .get_server_info(pb::Empty {})
        .await
        .expect("info")
        .into_inner();
    let audience = PublicKey::from_hex(&info.server_pubkey).expect("key");
    let ada = new_identity("phone");
    let token = client
        .register(ada.register_request(&audience, "Ada", None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token;
    let guild = client
        .create_guild(authed(
            &token,
            pb::CreateGuildRequest {
                name: "Engines".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("guild")
        .into_inner()
        .guild
        .expect("guild")
        .id;
    let mut stream = client
        .subscribe_events(authed(&token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();

    served.signal("TERM");
    // The open stream ends rather than hanging the shutdown.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream did not end on SIGTERM");
    assert_eq!(
        served.wait(Duration::from_secs(20)).await,
        Some(0),
        "exit code"
    );

    // What was acknowledged is there when the node starts again (in this process, same dir).
    let config = guildhall::config::Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        ..guildhall::config::Config::default()
    };
    let node = Node::start(config)
        .await
        .expect("restarts: the lock was released");
    let mut client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect");
    let login = client
        .login(ada.login_request(&audience, now_ms()))
        .await
        .expect("login")
        .into_inner();
    let guilds = client
        .list_guilds(authed(&login.token, pb::ListGuildsRequest {}))
        .await
        .expect("guilds")
        .into_inner()
        .guilds;
    assert!(guilds.iter().any(|g| g.id == guild));
    node.shutdown();
    node.stopped().await;
}

#[tokio::test]
async fn a_crash_does_not_hand_out_fresh_rate_limit_allowances() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 120 pings per hour per address (the default count, over a window where nothing refills
    // while the test runs).
    let served = Served::start_with(dir.path(), &[("GUILDHALL_RATE_LIMIT_WINDOW_SECS", "3600")]);
    let mut client = GuildHallClient::connect(served.address.clone())
        .await
        .expect("connect");
    let mut allowed = 0;
    for _ in 0..200 {
        if client.ping(pb::PingRequest { timestamp: 0 }).await.is_err() {
            break;
        }
        allowed += 1;
    }
    assert_eq!(allowed, 120, "the default ping_rate_limit");
    // Long enough for a periodic save, then the process dies without a word.
    tokio::time::sleep(guildhall::limits::SAVE_EVERY + Duration::from_secs(1)).await;
    served.signal("KILL");
    served.wait(Duration::from_secs(20)).await;

    let config = guildhall::config::Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        rate_limit_window_secs: 3600,
        ..guildhall::config::Config::default()
    };
    let node = Node::start(config).await.expect("restarts");
    let mut client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect");
    assert_status(
        client.ping(pb::PingRequest { timestamp: 0 }).await,
        tonic::Code::ResourceExhausted,
        "ping_rate_limit",
    );
    node.shutdown();
    node.stopped().await;
}

#[tokio::test]
async fn a_client_that_never_acknowledges_does_not_hold_up_shutdown() {
    let mut node = TestNode::spawn_with(|c| c.shutdown_grace_ms = 300).await;
    // An HTTP/2 client that sends its preface and then never reads again: it can't acknowledge
    // the server's GOAWAY, so a graceful shutdown alone would wait for it forever.
    let mut silent = tokio::net::TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut silent,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    )
    .await
    .expect("preface");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(20), node.stop()).await;
    assert!(stopped.is_ok(), "the node did not stop");
    drop(silent);
}
