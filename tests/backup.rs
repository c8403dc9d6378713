//! `guildhall backup`: a copy taken from a running node under write load restores to a node with
//! the same key, every message acknowledged before the copy began, and the uploaded files.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::uploads::{get, path_of, upload};
use common::{TestNode, authed, create_room, register, send_text};
use guildhall::proto::guildhall::v1 as pb;

/// Every message of a channel, oldest first, paging through history.
async fn all_messages(node: &TestNode, token: &str, channel: &str) -> Vec<pb::Message> {
    let mut client = node.client().await;
    let mut out: Vec<pb::Message> = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let page = client
            .get_history(authed(
                token,
                pb::GetHistoryRequest {
                    channel_id: channel.to_owned(),
                    cursor: cursor.clone(),
                    limit: 100,
                    reverse: true,
                },
            ))
            .await
            .expect("history")
            .into_inner();
        out.extend(page.messages);
        if !page.has_more {
            return out;
        }
        cursor = page.next_cursor;
    }
    panic!("history did not end within 1000 pages");
}

fn backup_command(data_dir: &std::path::Path, dest: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_guildhall"));
    command
        .arg("backup")
        .arg(dest)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("GUILDHALL_CONFIG")
        .env_remove("GUILDHALL_DATA_DIR");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_write() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let room = create_room(&node, &ada, "general").await;
    let file = b"the minutes of the last meeting".repeat(100);
    let uploaded = upload(&node, &ada, &file, "text/plain", false)
        .await
        .expect("upload");
    for i in 0..50 {
        send_text(&node, &ada.token, &room.channel, &format!("before {i}")).await;
    }

    // Writes keep coming while the copy is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, token, channel) = (stop.clone(), ada.token.clone(), room.channel.clone());
        let mut client = node.client().await;
        tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) && sent < 100_000 {
                client
                    .send_message(authed(
                        &token,
                        pb::SendMessageRequest {
                            channel_id: channel.clone(),
                            text: format!("during {sent}"),
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("send during backup");
                sent += 1;
            }
            sent
        })
    };
    // Let the load get going, then note what is acknowledged before the copy begins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acknowledged = all_messages(&node, &ada.token, &room.channel).await;
    let backups = tempfile::tempdir().expect("tempdir");
    let dest = backups.path().join("copy");
    let (data_dir, dest_for_task) = (node.data_dir(), dest.clone());
    let output = tokio::task::spawn_blocking(move || {
        backup_command(&data_dir, &dest_for_task)
            .output()
            .expect("run backup")
    })
    .await
    .expect("backup task");
    stop.store(true, Ordering::Relaxed);
    let during = writer.await.expect("writer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "backup failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("uploaded files: 1 "), "{stdout}");
    assert!(during > 0, "writes went on during the backup");
    let original = all_messages(&node, &ada.token, &room.channel).await;

    // Restore: the copy is a data directory; a node started on it is the same server.
    let restored = TestNode::spawn_with(|c| c.data_dir = dest.clone()).await;
    assert_eq!(restored.audience(), node.audience(), "same server key");
    let copied = all_messages(&restored, &ada.token, &room.channel).await;
    assert!(
        copied.len() >= acknowledged.len(),
        "every message acknowledged before the backup began is in it: {} < {}",
        copied.len(),
        acknowledged.len()
    );
    assert_eq!(
        copied[..],
        original[..copied.len()],
        "the copy is the original as of one moment: a prefix of its history, unchanged"
    );
    let (status, _, body) = get(&restored, path_of(&uploaded.public_url), None).await;
    assert_eq!((status, body), (200, file.clone()));

    // A backup never overwrites.
    let again = backup_command(&node.data_dir(), &dest)
        .output()
        .expect("run backup");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists and is not an empty directory"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let nothing = backup_command(&backups.path().join("no-node"), &backups.path().join("x"))
        .output()
        .expect("run backup");
    assert!(!nothing.status.success());
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("no database at"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
}
