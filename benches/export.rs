//! Load program for the data export (`ExportMyData`, docs/PEOPLE.md "Export"): one node and one
//! client in this process over loopback gRPC. The user sends 100,000 messages and uploads 100 MB
//! of files, then exports; the client reads the stream, counting bytes without keeping them, and
//! checks the archive's entries as it goes (a streaming tar reader). Prints one JSON object with
//! the setup's size, the export's bytes, time and MB/s, and the process's resident memory before
//! the export and at its peak during it (`VmHWM`, reset before the export where the kernel
//! allows). The archive is never held by the node or the client: the peak should grow by a few
//! chunks and one page of messages, not by the archive's size.
//!
//! Run: `cargo bench --bench export` (release build). `GUILDHALL_BENCH_MESSAGES=10000` and
//! `GUILDHALL_BENCH_MB=10` for a quicker run.

use std::io::Read;
use std::time::Instant;

use guildhall::config::Config;
use guildhall::identity::freshness::now_ms;
use guildhall::node::Node;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

const CHUNK: usize = 1024 * 1024;
const FILE_MB: usize = 10;
const SENDERS: usize = 8;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
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

/// Deterministic bytes, different per file and chunk.
fn chunk_bytes(seed: usize, len: usize) -> Vec<u8> {
    let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn upload(client: &GuildHallClient<Channel>, token: &str, file: usize) {
    let mut c = client.clone();
    let total = FILE_MB * CHUNK;
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
            filename: format!("file-{file}.bin"),
            mime_type: "application/octet-stream".into(),
            total_size: total as u64,
            chunk_size: CHUNK as u32,
        },
    ))
    .await
    .expect("begin");
    let mut whole = Sha256::new();
    for index in 0..FILE_MB {
        let data = chunk_bytes(file * 1000 + index, CHUNK);
        whole.update(&data);
        let sha256 = hex::encode(Sha256::digest(&data));
        c.upload_chunk(authed(
            token,
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
    c.upload_finish(authed(
        token,
        pb::UploadFinishRequest {
            upload_token,
            sha256: hex::encode(whole.finalize()),
        },
    ))
    .await
    .expect("finish");
}

/// The export's chunks as a blocking `Read`, fed from the gRPC stream through a bounded channel.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[tokio::main]
async fn main() {
    let messages = env_or("GUILDHALL_BENCH_MESSAGES", 100_000);
    let mb = env_or("GUILDHALL_BENCH_MB", 100);
    let files = mb.div_ceil(FILE_MB);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        p2p_listen: "/ip4/127.0.0.1/tcp/0".into(),
        allow_private_addresses: true,
        max_connections_per_address: 0,
        settings: guildhall::limits::Settings {
            max_upload_size: u32::try_from(FILE_MB * CHUNK).expect("fits u32"),
            ..guildhall::limits::Settings::default().unlimited()
        },
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node");
    let client = GuildHallClient::connect(format!("http://{}", node.grpc_addr))
        .await
        .expect("connect")
        .max_decoding_message_size(8 * 1024 * 1024);
    let identity = guildhall::client::ClientIdentity::generate("bench", now_ms());
    let token = client
        .clone()
        .register(identity.register_request(&node.server_id, "Bench", None, now_ms()))
        .await
        .expect("register")
        .into_inner()
        .token;
    let guild = client
        .clone()
        .create_guild(authed(
            &token,
            pb::CreateGuildRequest {
                name: "Export".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("guild")
        .into_inner()
        .guild
        .expect("guild")
        .id;
    let channel = client
        .clone()
        .list_channels(authed(&token, pb::ListChannelsRequest { guild_id: guild }))
        .await
        .expect("channels")
        .into_inner()
        .channels[0]
        .id
        .clone();

    let started = Instant::now();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (mut c, token, channel) = (client.clone(), token.clone(), channel.clone());
        senders.push(tokio::spawn(async move {
            for i in (s..messages).step_by(SENDERS) {
                c.send_message(authed(
                    &token,
                    pb::SendMessageRequest {
                        channel_id: channel.clone(),
                        text: format!("message {i}: the quick brown fox jumps over the lazy dog"),
                        ..Default::default()
                    },
                ))
                .await
                .expect("send");
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let send_secs = started.elapsed().as_secs_f64();
    for file in 0..files {
        upload(&client, &token, file).await;
    }

    reset_peak();
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    let mut stream = client
        .clone()
        .export_my_data(authed(&token, pb::Empty {}))
        .await
        .expect("export")
        .into_inner();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let reader = std::thread::spawn(move || {
        let mut archive = tar::Archive::new(ChannelReader {
            rx,
            current: Vec::new(),
            at: 0,
        });
        let (mut entries, mut message_lines, mut file_bytes, mut total) = (0u64, 0u64, 0u64, 0u64);
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let size = entry.size();
            entries += 1;
            total += size;
            if path.starts_with("messages/") {
                let mut text = String::new();
                entry.read_to_string(&mut text).expect("jsonl");
                message_lines += text.lines().count() as u64;
            } else {
                let copied = std::io::copy(&mut entry, &mut std::io::sink()).expect("copy");
                if path.starts_with("files/") {
                    file_bytes += copied;
                }
            }
        }
        (entries, message_lines, file_bytes, total)
    });
    let mut archive_bytes = 0u64;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        archive_bytes += chunk.data.len() as u64;
        if tx.send(chunk.data).is_err() {
            break;
        }
    }
    drop(tx);
    let (entries, message_lines, file_bytes, content_bytes) = reader.join().expect("reader");
    let export_secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    assert_eq!(message_lines, messages as u64, "every message exported");
    assert_eq!(
        file_bytes,
        (files * FILE_MB * CHUNK) as u64,
        "every file exported"
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "messages": messages,
            "messages_per_s_while_filling": (messages as f64 / send_secs).round(),
            "files": files,
            "file_mb_total": files * FILE_MB,
            "archive_bytes": archive_bytes,
            "archive_entries": entries,
            "archive_content_bytes": content_bytes,
            "export_secs": (export_secs * 100.0).round() / 100.0,
            "export_mb_per_s": (archive_bytes as f64 / 1048576.0 / export_secs * 10.0).round() / 10.0,
            "rss_before_export_mib": rss_before / 1024,
            "rss_peak_during_export_mib": peak / 1024,
        }))
        .expect("json")
    );
    node.shutdown();
}
