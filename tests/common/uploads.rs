//! Uploading files and fetching them over HTTP, as a client does.

use bytes::Bytes;
use guildhall::proto::guildhall::v1 as pb;
use http_body_util::{BodyExt, Empty};
use sha2::{Digest, Sha256};

use super::{TestNode, TestUser, authed};

/// The hex SHA-256 of `data`, as uploads name chunks and files.
pub fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An HTTP/1.1 GET on the node's port; answers status, headers and body.
pub async fn get(
    node: &TestNode,
    path: &str,
    range: Option<&str>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(node.node().grpc_addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::get(path).header("host", "localhost");
    if let Some(range) = range {
        request = request.header("range", range);
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
    (status, headers, body.to_vec())
}

/// The path part of a public URL.
pub fn path_of(url: &str) -> &str {
    let start = url.find("/media/").expect("media url");
    &url[start..]
}

pub async fn start_upload(node: &TestNode, user: &TestUser, avatar: bool) -> String {
    let mut c = node.client().await;
    let reply = if avatar {
        c.initiate_avatar_upload(authed(&user.token, pb::InitiateAvatarUploadRequest {}))
            .await
    } else {
        c.initiate_media_upload(authed(&user.token, pb::InitiateMediaUploadRequest {}))
            .await
    };
    reply.expect("initiate").into_inner().upload_token
}

pub async fn begin(
    node: &TestNode,
    user: &TestUser,
    token: &str,
    mime: &str,
    total: u64,
    chunk: u32,
) -> Result<(), tonic::Status> {
    node.client()
        .await
        .upload_begin(authed(
            &user.token,
            pb::UploadBeginRequest {
                upload_token: token.into(),
                filename: "file.bin".into(),
                mime_type: mime.into(),
                total_size: total,
                chunk_size: chunk,
            },
        ))
        .await
        .map(|_| ())
}

pub async fn send_chunk(
    node: &TestNode,
    user: &TestUser,
    token: &str,
    index: u32,
    data: &[u8],
    hash: &str,
) -> Result<(), tonic::Status> {
    node.client()
        .await
        .upload_chunk(authed(
            &user.token,
            pb::UploadChunkRequest {
                upload_token: token.into(),
                chunk_index: index,
                data: data.to_vec(),
                sha256: hash.into(),
            },
        ))
        .await
        .map(|_| ())
}

pub async fn finish(
    node: &TestNode,
    user: &TestUser,
    token: &str,
    hash: &str,
) -> Result<pb::UploadMediaResponse, tonic::Status> {
    node.client()
        .await
        .upload_finish(authed(
            &user.token,
            pb::UploadFinishRequest {
                upload_token: token.into(),
                sha256: hash.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Uploads `data` whole, chunks in order.
pub async fn upload(
    node: &TestNode,
    user: &TestUser,
    data: &[u8],
    mime: &str,
    avatar: bool,
) -> Result<pb::UploadMediaResponse, tonic::Status> {
    const CHUNK: usize = 64 * 1024;
    let token = start_upload(node, user, avatar).await;
    begin(node, user, &token, mime, data.len() as u64, CHUNK as u32).await?;
    for (i, piece) in data.chunks(CHUNK).enumerate() {
        send_chunk(node, user, &token, i as u32, piece, &sha(piece)).await?;
    }
    finish(node, user, &token, &sha(data)).await
}
