//! Load program for uploads: one node and one client in this process over loopback gRPC. Uploads a
//! 100 MB file in 1 MB chunks (sequentially, then with 4 chunks in flight), downloads it over
//! HTTP, and prints one JSON object with, per run: MB/s of the upload (initiate to finish,
//! including the server's whole-file hash check), MB/s of the download, and the process's resident
//! memory before and at its peak (`VmHWM`, reset per run where the kernel allows). The node never
//! holds the file in memory: the peak should grow by a few chunks, not by 100 MB.
//!
//! The client makes each chunk and its sha256 as it sends it (as a client reading a file would);
//! the whole file's hash is computed before the clock starts.
//!
//! Run: `cargo bench --bench uploads` (release build). `GUILDHALL_BENCH_MB=20` for a quicker run.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use guildhall::config::Config;
use guildhall::identity::freshness::now_ms;
use guildhall::node::Node;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use http_body_util::{BodyExt, Empty};
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

const CHUNK: usize = 1024 * 1024;

fn megabytes() -> usize {
    std::env::var("GUILDHALL_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// The bytes of chunk `index`: cheap, deterministic, and different for every chunk.
fn chunk_bytes(index: usize, len: usize) -> Vec<u8> {
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak-RSS counter (`VmHWM`) where the kernel allows it.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Uploads the whole file with `in_flight` chunks at a time; answers the public URL.
async fn upload(
    client: &GuildHallClient<Channel>,
    token: &str,
    total: usize,
    in_flight: usize,
    whole_sha256: String,
) -> String {
    let mut c = client.clone();
    let upload_token = c
        .initiate_media_upload(authed(token, pb::InitiateMediaUploadRequest {}))
        .await
        .expect("initiate")
        .into_inner()
        .upload_token;
    c.upload_begin(authed(
        token,
        pb::UploadBeginRequest {
            upload_token: upload_token.clone(),
            filename: "bench.bin".into(),
            mime_type: "application/octet-stream".into(),
            total_size: total as u64,
            chunk_size: CHUNK as u32,
        },
    ))
    .await
    .expect("begin");
    let chunks = total.div_ceil(CHUNK);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (mut c, token, upload_token, next) = (
            client.clone(),
            token.to_owned(),
            upload_token.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= chunks {
                    break;
                }
                let len = CHUNK.min(total - index * CHUNK);
                let data = chunk_bytes(index, len);
                let sha256 = hex::encode(Sha256::digest(&data));
                c.upload_chunk(authed(
                    &token,
                    pb::UploadChunkRequest {
                        upload_token: upload_token.clone(),
                        chunk_index: index as u32,
                        data,
                        sha256,
                    },
                ))
                .await
                .expect("chunk");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    c.upload_finish(authed(
        token,
        pb::UploadFinishRequest {
            upload_token,
            sha256: whole_sha256,
        },
    ))
    .await
    .expect("finish")
    .into_inner()
    .public_url
}

/// Downloads `path` over HTTP/1.1, counting bytes without keeping them; answers the byte count.
async fn download(addr: std::net::SocketAddr, path: &str) -> usize {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let mut body = sender
        .send_request(request)
        .await
        .expect("response")
        .into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            received += data.len();
        }
    }
    received
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mb = megabytes();
    let total = mb * 1024 * 1024;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        // Nodes on loopback reach each other; load comes from one address.
        allow_private_addresses: true,
        max_connections_per_address: 0,
        settings: guildhall::limits::Settings {
            max_upload_size: u32::try_from(total).expect("fits u32"),
            ..guildhall::limits::Settings::default().unlimited()
        },
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node");
    let mut client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect")
        .max_decoding_message_size(8 * 1024 * 1024);
    let identity = guildhall::client::ClientIdentity::generate("bench", now_ms());
    let token = client
        .register(identity.register_request(&node.server_id, "Bench", None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token;

    // A client knows its file's hash before it starts (it read the file); not part of the timing.
    let mut whole = Sha256::new();
    for index in 0..total.div_ceil(CHUNK) {
        whole.update(chunk_bytes(index, CHUNK.min(total - index * CHUNK)));
    }
    let whole_sha256 = hex::encode(whole.finalize());
    let mut runs = Vec::new();
    for in_flight in [1usize, 4] {
        reset_peak();
        let rss_before = status_kib("VmRSS:");
        let started = Instant::now();
        let url = upload(&client, &token, total, in_flight, whole_sha256.clone()).await;
        let upload_secs = started.elapsed().as_secs_f64();
        let upload_peak = status_kib("VmHWM:");
        let path = &url[url.find("/media/").expect("media path")..];
        let started = Instant::now();
        let received = download(node.grpc_addr, path).await;
        let download_secs = started.elapsed().as_secs_f64();
        assert_eq!(received, total, "downloaded the whole file");
        runs.push(json!({
            "chunks_in_flight": in_flight,
            "upload_mb_per_s": (mb as f64 / upload_secs * 10.0).round() / 10.0,
            "upload_secs": (upload_secs * 100.0).round() / 100.0,
            "download_mb_per_s": (mb as f64 / download_secs * 10.0).round() / 10.0,
            "rss_before_mib": rss_before / 1024,
            "rss_peak_during_upload_mib": upload_peak / 1024,
        }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "file_mb": mb,
            "chunk_bytes": CHUNK,
            "runs": runs,
        }))
        .expect("json")
    );
    node.shutdown();
}
