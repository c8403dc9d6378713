//! Handlers for the chunked upload API.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::media::Media;
use crate::proto::guildhall::v1 as pb;
use crate::store::media::{UploadKind, UploadPlan};

type Reply<T> = Result<Response<T>, Status>;

pub async fn initiate<T>(
    m: &Media,
    r: Request<T>,
    kind: UploadKind,
) -> Reply<pb::InitiateUploadResponse> {
    let s = caller(&r)?;
    let upload_token = m.initiate(&s, kind).await?;
    Ok(Response::new(pb::InitiateUploadResponse { upload_token }))
}

pub async fn begin(m: &Media, r: Request<pb::UploadBeginRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let plan = UploadPlan {
        filename: r.filename,
        mime_type: r.mime_type,
        total_size: r.total_size,
        chunk_size: u64::from(r.chunk_size),
    };
    m.begin(&s, &r.upload_token, plan).await?;
    Ok(Response::new(pb::Empty {}))
}

pub async fn chunk(m: &Media, r: Request<pb::UploadChunkRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    let r = r.into_inner();
    m.chunk(&s, &r.upload_token, r.chunk_index, r.data, &r.sha256)
        .await?;
    Ok(Response::new(pb::Empty {}))
}

/// `UploadFinish`; a finished avatar upload is the user's avatar at once, and their co-members
/// here get `user_updated` (other nodes learn it from the user's signed `UpdateUser` with the
/// new URL, docs/UPLOADS.md).
pub async fn finish(
    m: &Media,
    guilds: &crate::guilds::Guilds,
    r: Request<pb::UploadFinishRequest>,
) -> Reply<pb::UploadMediaResponse> {
    let s = caller(&r)?;
    let r = r.into_inner();
    let done = m.finish(&s, &r.upload_token, &r.sha256).await?;
    if done.avatar {
        guilds.announce_user_updated(&s.user_id).await;
    }
    Ok(Response::new(pb::UploadMediaResponse {
        public_url: m.public_url(&done.file.id),
        file_id: done.file.id,
        thumb_public_url: done.thumb.as_ref().map(|t| m.public_url(&t.id)),
        thumb_file_id: done.thumb.map(|t| t.id),
    }))
}

pub async fn abort(m: &Media, r: Request<pb::UploadAbortRequest>) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    m.abort(&s, &r.get_ref().upload_token).await?;
    Ok(Response::new(pb::Empty {}))
}
