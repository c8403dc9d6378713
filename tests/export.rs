//! The data export (docs/PEOPLE.md, "Export"): a user's archive over gRPC, read as a tar stream,
//! holds their profile, memberships, notes, relationships, every message they sent (and nobody
//! else's) and the bytes of the files they uploaded; a deleted user can't export any more.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::uploads::upload;
use common::*;
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

/// `token`'s export as (path → bytes), and how many chunks it came in.
async fn export(
    node: &TestNode,
    token: &str,
) -> Result<(BTreeMap<String, Vec<u8>>, usize), tonic::Status> {
    let mut stream = node
        .client()
        .await
        .export_my_data(authed(token, pb::Empty {}))
        .await?
        .into_inner();
    let mut archive = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await? {
        assert!(chunk.data.len() <= 64 * 1024, "chunks are at most 64 KiB");
        archive.extend_from_slice(&chunk.data);
        chunks += 1;
    }
    let mut entries = BTreeMap::new();
    let mut tar = tar::Archive::new(archive.as_slice());
    for entry in tar.entries().expect("a tar archive") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        entries.insert(path, bytes);
    }
    Ok((entries, chunks))
}

fn json(entries: &BTreeMap<String, Vec<u8>>, path: &str) -> serde_json::Value {
    serde_json::from_slice(
        entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} in the archive")),
    )
    .expect("json")
}

#[tokio::test]
async fn the_export_holds_what_the_node_keeps_about_the_user_and_only_theirs() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &ada, "Room").await;
    join_room(&node, &bob, &room.invite).await;
    for text in ["first", "second", "third"] {
        send_text(&node, &ada.token, &room.channel, text).await;
    }
    send_text(&node, &bob.token, &room.channel, "bob's, not ada's").await;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let uploaded = upload(&node, &ada, &bytes, "application/octet-stream", false)
        .await
        .expect("upload");
    node.client()
        .await
        .set_user_note(authed(
            &ada.token,
            pb::SetUserNoteRequest {
                user_id: bob.user.id.clone(),
                note: "owes me lunch".into(),
            },
        ))
        .await
        .expect("note");
    node.client()
        .await
        .block_user(authed(
            &ada.token,
            pb::RelationshipRequest {
                user_id: bob.user.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("block");

    let (entries, chunks) = export(&node, &ada.token).await.expect("export");
    assert!(
        chunks > 3,
        "a 200 kB file arrives in 64 KiB pieces ({chunks})"
    );
    assert!(entries.contains_key("README.txt"));
    let user = json(&entries, "account/user.json");
    assert_eq!(user[0]["id"], ada.user.id.as_str());
    assert_eq!(user[0]["display_name"], "Ada");
    assert_eq!(
        json(&entries, "account/devices.json")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let guilds = json(&entries, "guilds.json");
    assert_eq!(guilds[0]["guild_id"], room.guild.as_str());
    assert_eq!(guilds[0]["is_owner"], 1);
    assert_eq!(json(&entries, "notes.json")[0]["note"], "owes me lunch");
    assert_eq!(json(&entries, "relationships.json")[0]["kind"], "blocked");

    let lines: Vec<serde_json::Value> = String::from_utf8(
        entries
            .get("messages/part-000001.jsonl")
            .expect("messages")
            .clone(),
    )
    .expect("utf-8")
    .lines()
    .map(|l| serde_json::from_str(l).expect("a JSON line"))
    .collect();
    let texts: Vec<&str> = lines.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(
        texts,
        ["first", "second", "third"],
        "hers only, oldest first"
    );

    let files = json(&entries, "files.json");
    assert_eq!(files.as_array().map(Vec::len), Some(1));
    assert_eq!(files[0]["id"], uploaded.file_id.as_str());
    let path = files[0]["path"].as_str().expect("path");
    assert_eq!(entries.get(path), Some(&bytes), "the file's bytes, whole");

    // Bob's archive has his message and nothing of Ada's.
    let (theirs, _) = export(&node, &bob.token).await.expect("bob's export");
    let bob_lines = String::from_utf8(theirs["messages/part-000001.jsonl"].clone()).expect("utf-8");
    assert_eq!(bob_lines.lines().count(), 1);
    assert!(bob_lines.contains("bob's, not ada's"));
    assert_eq!(
        json(&theirs, "files.json").as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        json(&theirs, "notes.json").as_array().map(Vec::len),
        Some(0)
    );

    // Without a session there is nothing to export.
    assert_status(
        node.client()
            .await
            .export_my_data(pb::Empty {})
            .await
            .map(|_| ()),
        Code::Unauthenticated,
        "",
    );
}
