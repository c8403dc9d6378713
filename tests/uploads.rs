//! Chunked uploads: chunks in any order with their hashes, the whole-file hash, size limits,
//! abort and expiry, images (type from the bytes, thumbnail, blurhash), avatars, and files served
//! over HTTP with range requests.

mod common;

use std::time::Duration;

use common::uploads::{begin, finish, get, path_of, send_chunk, sha, start_upload, upload};
use common::{TestNode, assert_status, authed, create_room, join_room, register};
use guildhall::proto::guildhall::v1 as pb;
use tonic::Code;

/// Deterministic non-repeating test bytes.
fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

fn partial_files(node: &TestNode) -> usize {
    std::fs::read_dir(node.data_dir().join("media/partial"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn chunks_in_any_order_make_a_file_served_with_ranges() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let data = bytes(10_000);
    let token = start_upload(&node, &ada, false).await;
    begin(&node, &ada, &token, "application/pdf", 10_000, 4096)
        .await
        .expect("begin");
    // Repeating UploadBegin with the same values is harmless.
    begin(&node, &ada, &token, "application/pdf", 10_000, 4096)
        .await
        .expect("begin again");
    let pieces: Vec<&[u8]> = data.chunks(4096).collect();
    assert_eq!(pieces.len(), 3);
    for i in [2usize, 0, 1, 0] {
        send_chunk(&node, &ada, &token, i as u32, pieces[i], &sha(pieces[i]))
            .await
            .unwrap_or_else(|e| panic!("chunk {i}: {e}"));
    }
    let done = finish(&node, &ada, &token, &sha(&data))
        .await
        .expect("finish");
    assert_eq!(done.file_id.len(), 32);
    assert!(done.thumb_file_id.is_none(), "no thumbnail for a pdf");
    assert_eq!(partial_files(&node), 0, "partial file moved away");

    let (status, headers, body) = get(&node, path_of(&done.public_url), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, data);
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;"),
        "non-media types download instead of rendering"
    );
    let (status, headers, body) =
        get(&node, path_of(&done.public_url), Some("bytes=100-199")).await;
    assert_eq!(status, 206);
    assert_eq!(body, &data[100..200]);
    assert_eq!(headers["content-range"], "bytes 100-199/10000");
    let (status, _, _) = get(&node, path_of(&done.public_url), Some("bytes=20000-")).await;
    assert_eq!(status, 416);
    let (status, _, _) = get(&node, "/media/00000000000000000000000000000000", None).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&node, "/media/..%2F..%2Fguildhall.sqlite3", None).await;
    assert_eq!(status, 404);

    // The same bytes uploaded again get a new id and share the stored blob.
    let again = upload(&node, &ada, &data, "application/pdf", false)
        .await
        .expect("second upload");
    assert_ne!(again.file_id, done.file_id);
    let (_, _, body) = get(&node, path_of(&again.public_url), None).await;
    assert_eq!(body, data);
}

#[tokio::test]
async fn images_get_their_real_type_a_thumbnail_and_survive_restarts() {
    let mut node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let image = png(800, 600);
    // Declared as jpeg; the bytes are png, and png is what is stored and served.
    let done = upload(&node, &ada, &image, "image/jpeg", false)
        .await
        .expect("upload");
    let thumb_url = done
        .thumb_public_url
        .clone()
        .expect("thumbnail for a large image");
    let (status, headers, body) = get(&node, path_of(&done.public_url), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );
    assert_eq!(body, image);
    let (status, headers, body) = get(&node, path_of(&thumb_url), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/jpeg");
    let thumb = image::load_from_memory(&body).expect("thumbnail decodes");
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    let small = upload(&node, &ada, &png(8, 8), "image/png", false)
        .await
        .expect("small image");
    assert!(
        small.thumb_file_id.is_none(),
        "small images need no thumbnail"
    );

    node.restart().await;
    let (status, _, body) = get(&node, path_of(&done.public_url), None).await;
    assert_eq!(status, 200, "files are kept across restarts");
    assert_eq!(body, image);
}

#[tokio::test]
async fn an_uploaded_avatar_becomes_the_users_avatar() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    // A co-member, watching.
    let bob = register(&node, "Bob").await;
    let room = create_room(&node, &bob, "Hall").await;
    join_room(&node, &ada, &room.invite).await;
    let mut bob_sees = node
        .client()
        .await
        .subscribe_events(authed(&bob.token, pb::SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let token = start_upload(&node, &ada, true).await;
    assert_status(
        begin(&node, &ada, &token, "application/pdf", 100, 4096).await,
        Code::InvalidArgument,
        "mime_type: an avatar must be one of",
    );
    let done = upload(&node, &ada, &png(64, 64), "image/png", true)
        .await
        .expect("avatar upload");
    let me = node
        .client()
        .await
        .get_my_data(authed(&ada.token, pb::Empty {}))
        .await
        .expect("my data")
        .into_inner();
    assert_eq!(me.user.expect("user").avatar_url, done.public_url);
    // The co-member is told.
    let mut told = false;
    for _ in 0..100 {
        let event = tokio::time::timeout(Duration::from_secs(10), bob_sees.message())
            .await
            .expect("an event within the wait")
            .expect("stream ok")
            .expect("stream open");
        if let Some(pb::stream_response::Event::UserUpdated(u)) = event.event
            && u.user
                .as_ref()
                .is_some_and(|u| u.avatar_url == done.public_url)
        {
            told = true;
            break;
        }
    }
    assert!(told, "a co-member gets user_updated with the new avatar");
}

#[tokio::test]
async fn bad_chunks_and_bad_totals_are_refused_and_change_nothing() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let data = bytes(5000);
    let token = start_upload(&node, &ada, false).await;

    assert_status(
        send_chunk(&node, &ada, &token, 0, &data[..4096], &sha(&data[..4096])).await,
        Code::FailedPrecondition,
        "call UploadBegin",
    );
    assert_status(
        begin(&node, &ada, &token, "image/svg+xml", 5000, 4096).await,
        Code::InvalidArgument,
        "mime_type: image/svg+xml is not accepted",
    );
    assert_status(
        begin(&node, &ada, &token, "not a type", 5000, 4096).await,
        Code::InvalidArgument,
        "mime_type",
    );
    for bad in ["", "a/b.txt", "tab\there"] {
        let refused = node
            .client()
            .await
            .upload_begin(authed(
                &ada.token,
                pb::UploadBeginRequest {
                    upload_token: token.clone(),
                    filename: bad.into(),
                    mime_type: "text/plain".into(),
                    total_size: 5000,
                    chunk_size: 4096,
                },
            ))
            .await;
        assert_status(refused, Code::InvalidArgument, "filename");
    }
    assert_status(
        begin(&node, &ada, &token, "text/plain", 5000, 100).await,
        Code::InvalidArgument,
        "chunk_size",
    );
    assert_status(
        begin(&node, &ada, &token, "text/plain", 0, 4096).await,
        Code::InvalidArgument,
        "total_size",
    );
    begin(&node, &ada, &token, "text/plain", 5000, 4096)
        .await
        .expect("begin");
    assert_status(
        begin(&node, &ada, &token, "text/plain", 5001, 4096).await,
        Code::FailedPrecondition,
        "already called with other values",
    );

    // A chunk whose hash does not match is refused and not recorded.
    assert_status(
        send_chunk(&node, &ada, &token, 0, &data[..4096], &sha(b"other")).await,
        Code::InvalidArgument,
        "sha256: does not match",
    );
    assert_status(
        send_chunk(&node, &ada, &token, 0, &data[..4096], "xyz").await,
        Code::InvalidArgument,
        "sha256: must be 64 hex digits",
    );
    assert_status(
        send_chunk(&node, &ada, &token, 1, &data[..4096], &sha(&data[..4096])).await,
        Code::InvalidArgument,
        "data: chunk 1 must be 904 bytes",
    );
    assert_status(
        send_chunk(&node, &ada, &token, 2, &data[..10], &sha(&data[..10])).await,
        Code::InvalidArgument,
        "chunk_index: must be below 2",
    );
    // Someone else's token looks like no token at all.
    assert_status(
        send_chunk(&node, &bob, &token, 0, &data[..4096], &sha(&data[..4096])).await,
        Code::NotFound,
        "upload_token",
    );
    assert_status(
        finish(&node, &ada, &token, &sha(&data)).await,
        Code::FailedPrecondition,
        "chunks not received yet: 0, 1",
    );

    send_chunk(&node, &ada, &token, 0, &data[..4096], &sha(&data[..4096]))
        .await
        .expect("chunk 0");
    let other = bytes(4097);
    assert_status(
        send_chunk(&node, &ada, &token, 0, &other[1..], &sha(&other[1..])).await,
        Code::FailedPrecondition,
        "chunk 0 was already received with other content",
    );
    send_chunk(&node, &ada, &token, 1, &data[4096..], &sha(&data[4096..]))
        .await
        .expect("chunk 1");

    // A wrong whole-file hash is refused; the upload stays and can still be finished.
    assert_status(
        finish(&node, &ada, &token, &sha(b"something else")).await,
        Code::InvalidArgument,
        "sha256: the uploaded bytes hash to",
    );
    assert_eq!(partial_files(&node), 1);
    let done = finish(&node, &ada, &token, &sha(&data))
        .await
        .expect("finish with the right hash");
    let (_, _, body) = get(&node, path_of(&done.public_url), None).await;
    assert_eq!(body, data);
    assert_status(
        finish(&node, &ada, &token, &sha(&data)).await,
        Code::NotFound,
        "upload_token",
    );
}

#[tokio::test]
async fn oversize_uploads_are_refused_before_anything_is_stored() {
    let node = TestNode::spawn_with(|c| c.settings.max_upload_size = 8192).await;
    let ada = register(&node, "Ada").await;
    let token = start_upload(&node, &ada, false).await;
    assert_status(
        begin(&node, &ada, &token, "text/plain", 8193, 4096).await,
        Code::InvalidArgument,
        "total_size: must be 1 to 8192 bytes (the server's max_upload_size)",
    );
    assert_eq!(
        partial_files(&node),
        0,
        "nothing written for a refused upload"
    );
    begin(&node, &ada, &token, "text/plain", 8192, 4096)
        .await
        .expect("exactly the limit is fine");
}

#[tokio::test]
async fn a_file_that_claims_to_be_an_image_and_is_not_is_refused() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    assert_status(
        upload(
            &node,
            &ada,
            b"#!/bin/sh\necho not a picture\n",
            "image/png",
            false,
        )
        .await,
        Code::InvalidArgument,
        "mime_type: declared image/png but the bytes are not a png, jpeg, gif or webp image",
    );
    let mut broken = png(100, 100);
    broken.truncate(broken.len() / 2);
    assert_status(
        upload(&node, &ada, &broken, "image/png", false).await,
        Code::InvalidArgument,
        "does not decode",
    );
}

#[tokio::test]
async fn aborted_and_abandoned_uploads_are_removed_with_their_bytes() {
    let node = TestNode::spawn_with(|c| c.upload_expiry_secs = 1).await;
    let ada = register(&node, "Ada").await;
    let data = bytes(2048);

    let token = start_upload(&node, &ada, false).await;
    begin(&node, &ada, &token, "text/plain", 2048, 1024)
        .await
        .expect("begin");
    send_chunk(&node, &ada, &token, 0, &data[..1024], &sha(&data[..1024]))
        .await
        .expect("chunk");
    assert_eq!(partial_files(&node), 1);
    node.client()
        .await
        .upload_abort(authed(
            &ada.token,
            pb::UploadAbortRequest {
                upload_token: token.clone(),
            },
        ))
        .await
        .expect("abort");
    assert_eq!(partial_files(&node), 0, "abort reclaims the space at once");
    assert_status(
        send_chunk(&node, &ada, &token, 1, &data[1024..], &sha(&data[1024..])).await,
        Code::NotFound,
        "upload_token",
    );

    let token = start_upload(&node, &ada, false).await;
    begin(&node, &ada, &token, "text/plain", 2048, 1024)
        .await
        .expect("begin");
    send_chunk(&node, &ada, &token, 0, &data[..1024], &sha(&data[..1024]))
        .await
        .expect("chunk");
    common::wait_for(Duration::from_secs(15), || async {
        partial_files(&node) == 0
    })
    .await;
    assert_status(
        send_chunk(&node, &ada, &token, 1, &data[1024..], &sha(&data[1024..])).await,
        Code::NotFound,
        "upload_token",
    );
}

#[tokio::test]
async fn a_user_has_a_bounded_number_of_uploads_in_progress() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    for _ in 0..guildhall::media::MAX_OPEN_UPLOADS {
        start_upload(&node, &ada, false).await;
    }
    assert_status(
        node.client()
            .await
            .initiate_media_upload(authed(&ada.token, pb::InitiateMediaUploadRequest {}))
            .await,
        Code::FailedPrecondition,
        "uploads may be in progress",
    );
}

#[tokio::test]
async fn messages_carry_uploaded_files_with_size_and_blurhash() {
    let node = TestNode::spawn().await;
    let ada = register(&node, "Ada").await;
    let bob = register(&node, "Bob").await;
    let room = common::create_room(&node, &ada, "Pics").await;
    common::join_room(&node, &bob, &room.invite).await;
    let done = upload(&node, &ada, &png(640, 480), "image/png", false)
        .await
        .expect("upload");
    let mut c = node.client().await;
    let send = |token: &str, file_id: &str| {
        authed(
            token,
            pb::SendMessageRequest {
                channel_id: room.channel.clone(),
                media_file_id: file_id.into(),
                ..Default::default()
            },
        )
    };
    let sent = c
        .send_message(send(&ada.token, &done.file_id))
        .await
        .expect("a file alone is a message")
        .into_inner()
        .message
        .expect("message");
    let media = sent.media.expect("media");
    assert_eq!(media.file_id, done.file_id);
    assert_eq!(media.mime_type, "image/png");
    assert_eq!((media.width, media.height), (640, 480));
    assert_eq!(media.blurhash.len(), 28, "a 4×3 blurhash");
    assert!(media.size_bytes > 0);

    let history = c
        .get_history(authed(
            &bob.token,
            pb::GetHistoryRequest {
                channel_id: room.channel.clone(),
                limit: 10,
                ..Default::default()
            },
        ))
        .await
        .expect("history")
        .into_inner();
    let shown = history
        .messages
        .iter()
        .find(|m| m.id == sent.id)
        .expect("in history");
    assert_eq!(
        shown.media.as_ref().map(|m| &m.blurhash),
        Some(&media.blurhash)
    );

    assert_status(
        c.send_message(send(&bob.token, &done.file_id)).await,
        Code::PermissionDenied,
        "media_file_id: only files you uploaded",
    );
    assert_status(
        c.send_message(send(&ada.token, "0123456789abcdef0123456789abcdef"))
            .await,
        Code::NotFound,
        "media_file_id: no such file",
    );
}
