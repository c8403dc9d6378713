//! Seeing the node: `/metrics` scraped and parsed after traffic (the counts move), refused to
//! clients that are neither loopback nor a trusted proxy; `/healthz` and `/readyz` (503 naming the
//! database while it can't take a write); gRPC reflection v1 and v1alpha listing every service;
//! and the `guildhall` binary's logs: JSON lines that parse, no colour codes on a pipe, a config
//! error's cause printed once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use guildhall::proto::guildhall::v1 as pb;
use http_body_util::{BodyExt, Empty};

const BIN: &str = env!("CARGO_BIN_EXE_guildhall");

/// An HTTP/1.1 GET on the node's port with extra headers; answers status, headers and body.
async fn get(
    node: &TestNode,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

/// A scrape: each sample (`name{labels}`) and its value. Every line must be a comment, `# EOF`
/// last, or a sample that parses.
fn parse(text: &str) -> HashMap<String, f64> {
    assert_eq!(
        text.lines().last(),
        Some("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        // Label values here never hold a space, so the value is after the last one.
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels in {line:?}");
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(node: &TestNode) -> HashMap<String, f64> {
    let (status, headers, body) = get(node, "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text"),
    );
    parse(&body)
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

fn call(method: &str, code: &str) -> String {
    format!(
        "guildhall_grpc_requests_total{{method=\"guildhall.v1.GuildHall/{method}\",code=\"{code}\"}}"
    )
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let node = TestNode::spawn_with(|c| c.settings.ping_rate_limit = 1).await;
    let before = scrape(&node).await;
    for metric in [
        "guildhall_events_published_total",
        "guildhall_event_streams_open",
        "guildhall_store_writer_batch_size_count",
        "guildhall_database_size_bytes",
        "guildhall_p2p_peers",
    ] {
        assert!(
            before.contains_key(metric),
            "{metric} is served from the start"
        );
    }

    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "Engines").await;
    send_text(&node, &ada.token, &room.channel, "hello").await;
    let mut client = node.client().await;
    // Refused by the session layer, before any handler: counted with its code all the same.
    let refused = client
        .get_history(pb::GetHistoryRequest {
            channel_id: room.channel.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        refused.expect_err("no session").code(),
        tonic::Code::Unauthenticated
    );
    // Over ping_rate_limit (1 per window).
    let mut limited = 0;
    for _ in 0..2 {
        if client.ping(pb::PingRequest::default()).await.is_err() {
            limited += 1;
        }
    }
    assert_eq!(limited, 1);
    // A method the node does not have: counted under `other`, never under a name of the caller's.
    let channel = tonic::transport::Endpoint::from_shared(node.address())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    let unknown = raw
        .unary::<_, Bytes, _>(
            tonic::Request::new(Bytes::new()),
            http::uri::PathAndQuery::from_static("/guildhall.v1.GuildHall/NoSuchMethod"),
            guildhall::federation::raw_codec::RawCodec,
        )
        .await;
    // (Refused by the session layer first: methods of the service need a session.)
    assert_eq!(
        unknown.expect_err("no such method").code(),
        tonic::Code::Unauthenticated
    );
    let stream = client
        .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();

    let after = scrape(&node).await;
    assert_eq!(
        value(&after, &call("Register", "Ok")),
        value(&before, &call("Register", "Ok")) + 1.0
    );
    assert!(value(&after, &call("SendMessage", "Ok")) >= 1.0);
    assert!(value(&after, &call("GetHistory", "Unauthenticated")) >= 1.0);
    assert!(value(&after, &call("Ping", "ResourceExhausted")) >= 1.0);
    assert!(
        value(
            &after,
            "guildhall_grpc_request_duration_seconds_count{method=\"guildhall.v1.GuildHall/SendMessage\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "guildhall_rate_limited_total{limit=\"ping_rate_limit\"}"
        ) >= 1.0
    );
    assert!(
        value(&after, "guildhall_events_published_total")
            > value(&before, "guildhall_events_published_total")
    );
    assert!(
        value(&after, "guildhall_store_writer_batch_size_count")
            > value(&before, "guildhall_store_writer_batch_size_count")
    );
    assert!(value(&after, "guildhall_store_commit_duration_seconds_count") >= 1.0);
    assert!(value(&after, "guildhall_database_size_bytes") > 0.0);
    assert_eq!(value(&after, "guildhall_event_streams_open"), 1.0);
    assert!(!after.keys().any(|k| k.contains("NoSuchMethod")));
    assert!(
        value(
            &after,
            "guildhall_grpc_requests_total{method=\"other\",code=\"Unauthenticated\"}"
        ) >= 1.0
    );

    // The stream counts when it ends: the client went away, so Cancelled.
    drop(stream);
    drop(client);
    let subscribe_ended = call("SubscribeEvents", "Cancelled");
    wait_for(Duration::from_secs(10), || async {
        let now = scrape(&node).await;
        value(&now, &subscribe_ended) >= 1.0 && value(&now, "guildhall_event_streams_open") == 0.0
    })
    .await;
}

#[tokio::test]
async fn metrics_are_refused_to_clients_outside_loopback_and_trusted_proxies() {
    // The node sits behind a proxy on loopback that names its clients in X-Forwarded-For.
    let node =
        TestNode::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()]).await;
    let outsider = [("x-forwarded-for", "203.0.113.9")];
    let (status, _, body) = get(&node, "/metrics", &outsider).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("trusted_proxies"), "{body}");
    // Health stays public.
    assert_eq!(get(&node, "/healthz", &outsider).await.0, 200);
    assert_eq!(get(&node, "/readyz", &outsider).await.0, 200);
    // A client the proxy says is itself on the inside, and the proxy's own requests, may scrape.
    assert_eq!(
        get(&node, "/metrics", &[("x-forwarded-for", "127.0.0.1")])
            .await
            .0,
        200
    );
    assert_eq!(get(&node, "/metrics", &[]).await.0, 200);
}

#[tokio::test]
async fn health_and_readiness() {
    let node = TestNode::spawn().await;
    let (status, _, body) = get(&node, "/healthz", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // The swarm reports its address shortly after start.
    wait_for(Duration::from_secs(10), || async {
        get(&node, "/readyz", &[]).await.0 == 200
    })
    .await;
    assert_eq!(get(&node, "/readyz", &[]).await.2, "ready\n");

    // Another connection holds the database's write lock: no write can commit.
    let db = rusqlite::Connection::open(node.config.database_path()).expect("open");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let (status, _, body) = get(&node, "/readyz", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: database:"), "{body}");
    // Still alive: liveness checks nothing but the process.
    assert_eq!(get(&node, "/healthz", &[]).await.0, 200);
    db.execute_batch("ROLLBACK").expect("release");
    drop(db);
    wait_for(Duration::from_secs(20), || async {
        get(&node, "/readyz", &[]).await.0 == 200
    })
    .await;
}

/// Every service a reflection client of `version` is told about.
async fn reflected_services(node: &TestNode, v1: bool) -> Vec<String> {
    let channel = tonic::transport::Endpoint::from_shared(node.address())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    if v1 {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1")
            .into_inner();
        match answers
            .message()
            .await
            .expect("answer")
            .and_then(|a| a.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected answer {other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        match answers
            .message()
            .await
            .expect("answer")
            .and_then(|a| a.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service_including_health() {
    let node = TestNode::spawn().await;
    for v1 in [true, false] {
        let services = reflected_services(&node, v1).await;
        for wanted in [
            "guildhall.v1.GuildHall",
            "protocol.profile.v1.ProfileService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|s| s == wanted),
                "v1={v1}: {wanted} in {services:?}"
            );
        }
    }
}

/// Runs `guildhall serve` on loopback with `args`, waits for "node started" on stderr, stops it
/// with SIGTERM, and returns every stderr line.
fn serve_and_stop(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(dir)
        .args(args)
        // The default filter: what an operator sees.
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn guildhall serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("node started") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    let started = rx.recv_timeout(Duration::from_secs(60));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = reader.join().expect("reader");
    assert!(started.is_ok(), "the node did not start: {lines:#?}");
    lines
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = serve_and_stop(dir.path(), &["--log-format", "json"]);
    assert!(!lines.is_empty());
    let mut messages = Vec::new();
    for line in &lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        for field in ["timestamp", "level", "target"] {
            assert!(object.get(field).is_some(), "{field} in {line}");
        }
        // Fields sit at the top level beside the message (some library events have none).
        if let Some(message) = object.get("message") {
            messages.push(message.as_str().expect("a string message").to_owned());
        }
    }
    assert!(messages.iter().any(|m| m == "node started"), "{messages:?}");
    assert!(
        messages.iter().any(|m| m == "stopped cleanly"),
        "{messages:?}"
    );
}

#[test]
fn text_logs_on_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = serve_and_stop(dir.path(), &[]);
    assert!(lines.iter().any(|l| l.contains("node started")));
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "escape code in {line:?}");
    }
}

#[test]
fn the_config_file_sets_the_log_format_and_a_config_error_is_printed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("guildhall.toml");
    std::fs::write(&config, "log_format = \"json\"\n").expect("write");
    let data = dir.path().join("data");
    let lines = serve_and_stop(&data, &["--config", config.to_str().expect("utf-8")]);
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
    }

    std::fs::write(&config, "listen = 7\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: parsing "), "{stderr}");
    // The TOML error names the key; printed once, not again as the error's cause.
    assert_eq!(stderr.matches("invalid type").count(), 1, "{stderr}");
}
