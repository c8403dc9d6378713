//! Chunked uploads and stored files.
//!
//! A client asks for an upload token (`InitiateAvatarUpload` / `InitiateMediaUpload`), declares
//! the file (`UploadBegin`: name, type, size, chunk size), sends its chunks in any order, each with
//! its sha256 (`UploadChunk`), and ends with the whole file's sha256 (`UploadFinish`). Chunks go
//! straight to a partial file on disk at their offset, so the node never holds more than one
//! chunk of a file in memory. Finishing checks the whole hash, decodes images (size, blurhash,
//! thumbnail), moves the bytes to their content address and records the file; an avatar upload
//! also becomes the uploader's avatar. Uploads nobody touches for `upload_expiry_secs` are
//! removed with their bytes. Files are served over HTTP by `crate::api::http`.

pub mod blobs;
pub mod probe;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::limits::Limits;
use crate::store::media::{self as db, MediaFile, UploadKind, UploadPlan, UploadRecord};
use crate::store::{SessionInfo, StorageError, Store};
use blobs::Blobs;
use probe::{IMAGE_TYPES, ProbeError};

/// Smallest chunk size a client may declare (the last chunk may be shorter).
pub const MIN_CHUNK: u64 = 1024;

/// Largest chunk size: a chunk and its envelope stay well under gRPC's 4 MiB message limit.
pub const MAX_CHUNK: u64 = 2 * 1024 * 1024;

/// Uploads one user may have in progress at once.
pub const MAX_OPEN_UPLOADS: u32 = 8;

/// Longest file name, in bytes.
pub const MAX_FILENAME: usize = 255;

/// Longest type or subtype of a media type, in bytes (RFC 6838's limit for each).
pub const MIME_PART_MAX: usize = 63;

/// How many missing chunk indexes an unfinished `UploadFinish` lists.
const MISSING_SHOWN: usize = 8;

/// Settings the upload flow needs from the node.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Base of public file URLs (`<base>/media/<file id>`): the node's public address.
    pub public_base: String,
    /// How long an upload may sit without a new chunk before it is removed.
    pub upload_expiry_ms: u64,
}

/// A finished upload: the file and, for large images, its thumbnail.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The uploaded file.
    pub file: MediaFile,
    /// Its thumbnail, if one was made.
    pub thumb: Option<MediaFile>,
    /// Whether it became the uploader's avatar (an avatar upload): co-members are to be told.
    pub avatar: bool,
}

/// Upload and file operations.
#[derive(Debug, Clone)]
pub struct Media {
    store: Store,
    blobs: Blobs,
    limits: Arc<Limits>,
    config: Arc<MediaConfig>,
}

fn io_error(e: std::io::Error) -> Error {
    Error::Storage(StorageError::from(e))
}

fn task_error(e: tokio::task::JoinError) -> Error {
    Error::Storage(StorageError::Task(e.to_string()))
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

fn no_upload() -> Error {
    Error::NotFound(
        "upload_token: no upload in progress with this token (finished, aborted or expired)".into(),
    )
}

/// A sha256 as 64 hex digits (either case), normalised to lowercase.
fn sha256_field(field: &str, value: &str) -> Result<String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(Error::invalid(field, "must be 64 hex digits (a sha256)"))
    }
}

fn filename_rule(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FILENAME {
        return Err(Error::invalid(
            "filename",
            format!("must be 1 to {MAX_FILENAME} bytes"),
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(Error::invalid(
            "filename",
            "must not contain control characters, '/' or '\\'",
        ));
    }
    Ok(())
}

/// A media type `type/subtype` of RFC 6838 name characters, lowercased; parameters are refused.
fn mime_rule(mime: &str) -> Result<String> {
    let mime = mime.to_ascii_lowercase();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= MIME_PART_MAX
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match mime.split_once('/') {
        Some((kind, sub)) if ok_part(kind) && ok_part(sub) => {}
        _ => {
            return Err(Error::invalid(
                "mime_type",
                "must be a media type such as image/png (type/subtype, no parameters)",
            ));
        }
    }
    if mime.starts_with("image/") && !IMAGE_TYPES.contains(&mime.as_str()) {
        return Err(Error::invalid(
            "mime_type",
            format!(
                "{mime} is not accepted; images must be one of {}",
                IMAGE_TYPES.join(", ")
            ),
        ));
    }
    Ok(mime)
}

/// Checks an `UploadBegin` declaration against the field rules (file name, media type, a total
/// size of 1 to `max_upload_size` bytes, a chunk size of [`MIN_CHUNK`] to [`MAX_CHUNK`]) and
/// returns it with its media type normalised. Pure, so the upload fuzz target (`fuzz/`,
/// `tests/fuzz.rs`) runs the very rules `UploadBegin` does.
pub fn check_plan(plan: UploadPlan, max_upload_size: u64) -> Result<UploadPlan> {
    filename_rule(&plan.filename)?;
    let mime_type = mime_rule(&plan.mime_type)?;
    if plan.total_size == 0 || plan.total_size > max_upload_size {
        return Err(Error::invalid(
            "total_size",
            format!(
                "must be 1 to {max_upload_size} bytes (the server's max_upload_size); got {}",
                plan.total_size
            ),
        ));
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&plan.chunk_size) {
        return Err(Error::invalid(
            "chunk_size",
            format!("must be {MIN_CHUNK} to {MAX_CHUNK} bytes"),
        ));
    }
    Ok(UploadPlan { mime_type, ..plan })
}

/// Checks a chunk's or file's `sha256` field (64 hex digits, either case) and returns it in
/// lowercase, as `UploadChunk` and `UploadFinish` do. Public for the upload fuzz target.
pub fn check_sha256(field: &str, value: &str) -> Result<String> {
    sha256_field(field, value)
}

impl Media {
    /// Upload handling over the node's store and file area.
    pub fn new(store: Store, blobs: Blobs, limits: Arc<Limits>, config: MediaConfig) -> Self {
        Self {
            store,
            blobs,
            limits,
            config: Arc::new(config),
        }
    }

    /// The public URL of a stored file.
    pub fn public_url(&self, file_id: &str) -> String {
        format!(
            "{}/media/{file_id}",
            self.config.public_base.trim_end_matches('/')
        )
    }

    /// Where a stored file's bytes are.
    pub fn blob_path(&self, file: &MediaFile) -> Result<PathBuf> {
        self.blobs.blob_path(&file.sha256).map_err(io_error)
    }

    /// Where the bytes with this hex sha256 are (the data export reads files by their hash).
    pub fn blob_path_of(&self, sha256: &str) -> Result<PathBuf> {
        self.blobs.blob_path(sha256).map_err(io_error)
    }

    /// A stored file by id.
    pub async fn file(&self, file_id: &str) -> Result<Option<MediaFile>> {
        let id = file_id.to_owned();
        Ok(self.store.read(move |c| db::file(c, &id)).await?)
    }

    /// Quarantines an uploaded file for a server admin (`guildhall.admin.v1`, which checked who
    /// asks): no file with its bytes (or its thumbnail's) is served or found from now on, under
    /// this id or any other. The bytes stay on disk for the operator. Answers how many blobs
    /// were quarantined (the file's, and its thumbnail's if it has one).
    pub async fn quarantine(&self, file_id: &str, by: &str) -> Result<usize> {
        if file_id.is_empty() {
            return Err(Error::invalid("file_id", "is required"));
        }
        let (id, by) = (file_id.to_owned(), by.to_owned());
        let done = self
            .store
            .write(move |tx| db::quarantine(tx, &id, &by, crate::identity::freshness::now_ms()))
            .await?;
        if done.is_empty() {
            return Err(Error::NotFound(format!(
                "file_id: no file {file_id:?} is served here (unknown, or already quarantined)"
            )));
        }
        Ok(done.len())
    }

    /// `InitiateAvatarUpload` / `InitiateMediaUpload`: a new upload token.
    pub async fn initiate(&self, caller: &SessionInfo, kind: UploadKind) -> Result<String> {
        let now = now_ms();
        let record = UploadRecord {
            token: random_id(),
            user_id: caller.user_id.clone(),
            kind,
            plan: None,
            expires_at: now.saturating_add(self.config.upload_expiry_ms),
        };
        let token = record.token.clone();
        let created = self
            .store
            .write(move |tx| db::create_upload(tx, &record, now, MAX_OPEN_UPLOADS))
            .await?;
        if !created {
            return Err(Error::FailedPrecondition(format!(
                "upload_token: at most {MAX_OPEN_UPLOADS} uploads may be in progress; finish or \
                 abort one first"
            )));
        }
        Ok(token)
    }

    /// The caller's live upload with this token.
    async fn owned_upload(&self, caller: &SessionInfo, token: &str) -> Result<UploadRecord> {
        let key = token.to_owned();
        let upload = self
            .store
            .read(move |c| db::upload(c, &key))
            .await?
            .ok_or_else(no_upload)?;
        // Someone else's token looks exactly like an unknown one.
        if upload.user_id != caller.user_id || upload.expires_at < now_ms() {
            return Err(no_upload());
        }
        Ok(upload)
    }

    /// `UploadBegin`: declares the file. Repeating it with the same values is harmless.
    pub async fn begin(&self, caller: &SessionInfo, token: &str, plan: UploadPlan) -> Result<()> {
        let max = u64::from(self.limits.settings().max_upload_size);
        let plan = check_plan(plan, max)?;
        let upload = self.owned_upload(caller, token).await?;
        if upload.kind == UploadKind::Avatar && !IMAGE_TYPES.contains(&plan.mime_type.as_str()) {
            return Err(Error::invalid(
                "mime_type",
                format!("an avatar must be one of {}", IMAGE_TYPES.join(", ")),
            ));
        }
        match &upload.plan {
            Some(existing) if *existing == plan => return Ok(()),
            Some(_) => {
                return Err(Error::FailedPrecondition(
                    "upload_token: UploadBegin was already called with other values".into(),
                ));
            }
            None => {}
        }
        let blobs = self.blobs.clone();
        let key = token.to_owned();
        tokio::task::spawn_blocking(move || blobs.create_partial(&key))
            .await
            .map_err(task_error)?
            .map_err(io_error)?;
        let key = token.to_owned();
        let expires_at = now_ms().saturating_add(self.config.upload_expiry_ms);
        self.store
            .write(move |tx| db::begin(tx, &key, &plan, expires_at))
            .await?;
        Ok(())
    }

    /// `UploadChunk`: stores one chunk at its place. Chunks may arrive in any order; sending a
    /// chunk again with the same bytes is harmless, with other bytes it is refused.
    pub async fn chunk(
        &self,
        caller: &SessionInfo,
        token: &str,
        index: u32,
        data: Vec<u8>,
        sha256: &str,
    ) -> Result<()> {
        let sha256 = sha256_field("sha256", sha256)?;
        let upload = self.owned_upload(caller, token).await?;
        let plan = upload.plan.ok_or_else(|| {
            Error::FailedPrecondition("upload_token: call UploadBegin before UploadChunk".into())
        })?;
        let index = u64::from(index);
        let count = plan.chunk_count();
        if index >= count {
            return Err(Error::invalid(
                "chunk_index",
                format!("must be below {count} (the file has {count} chunks)"),
            ));
        }
        let expected = plan.chunk_len(index);
        if data.len() as u64 != expected {
            return Err(Error::invalid(
                "data",
                format!("chunk {index} must be {expected} bytes, got {}", data.len()),
            ));
        }
        let key = token.to_owned();
        let earlier = self
            .store
            .read(move |c| db::chunk_sha(c, &key, index))
            .await?;
        let blobs = self.blobs.clone();
        let key = token.to_owned();
        let claimed = sha256.clone();
        let offset = index * plan.chunk_size;
        let repeat = earlier.is_some();
        let written = tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            let actual = hex::encode(sha2::Sha256::digest(&data));
            if actual != claimed {
                return Ok(false);
            }
            if !repeat {
                blobs.write_chunk(&key, offset, &data)?;
            }
            Ok::<_, std::io::Error>(true)
        })
        .await
        .map_err(task_error)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => no_upload(),
            _ => io_error(e),
        })?;
        if !written {
            return Err(Error::invalid("sha256", "does not match the chunk's data"));
        }
        if let Some(earlier) = earlier {
            return if earlier == sha256 {
                Ok(())
            } else {
                Err(Error::FailedPrecondition(format!(
                    "chunk_index: chunk {index} was already received with other content"
                )))
            };
        }
        let key = token.to_owned();
        let expires_at = now_ms().saturating_add(self.config.upload_expiry_ms);
        let recorded = sha256.clone();
        // Another copy of this chunk may have been recorded meanwhile; same bytes are fine.
        match self
            .store
            .write(move |tx| db::record_chunk(tx, &key, index, &recorded, expires_at))
            .await?
        {
            Some(other) if other != sha256 => Err(Error::FailedPrecondition(format!(
                "chunk_index: chunk {index} was already received with other content"
            ))),
            _ => Ok(()),
        }
    }

    /// `UploadFinish`: checks the whole file against `sha256`, describes images, stores the
    /// file under its content address and records it. A refused finish changes nothing: the
    /// upload stays until it is aborted or expires.
    pub async fn finish(
        &self,
        caller: &SessionInfo,
        token: &str,
        sha256: &str,
    ) -> Result<Finished> {
        let sha256 = sha256_field("sha256", sha256)?;
        let upload = self.owned_upload(caller, token).await?;
        let plan = upload.plan.clone().ok_or_else(|| {
            Error::FailedPrecondition("upload_token: call UploadBegin before UploadFinish".into())
        })?;
        let key = token.to_owned();
        let count = plan.chunk_count();
        let missing = self
            .store
            .read(move |c| db::missing_chunks(c, &key, count, MISSING_SHOWN))
            .await?;
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(u64::to_string).collect();
            return Err(Error::FailedPrecondition(format!(
                "upload_token: chunks not received yet: {}{}",
                list.join(", "),
                if missing.len() == MISSING_SHOWN {
                    " (and maybe more)"
                } else {
                    ""
                }
            )));
        }
        let blobs = self.blobs.clone();
        let key = token.to_owned();
        let is_image = plan.mime_type.starts_with("image/");
        let (declared_type, total_size) = (plan.mime_type.clone(), plan.total_size);
        let checked = tokio::task::spawn_blocking(move || {
            let (actual, len) = blobs.hash_partial(&key)?;
            if actual != sha256 {
                return Ok(Err(Error::invalid(
                    "sha256",
                    format!("the uploaded bytes hash to {actual}, not to this"),
                )));
            }
            if len != total_size {
                return Ok(Err(Error::FailedPrecondition(format!(
                    "upload_token: {len} bytes stored, {total_size} declared"
                ))));
            }
            let facts = if is_image {
                match probe::probe(&blobs.partial_path(&key)?) {
                    Ok(facts) => Some(facts),
                    Err(ProbeError::Io(e)) => return Err(e),
                    Err(e) => {
                        return Ok(Err(Error::invalid(
                            "mime_type",
                            format!("declared {declared_type} but {e}"),
                        )));
                    }
                }
            } else {
                None
            };
            blobs.commit_partial(&key, &actual)?;
            let thumb = match facts.as_ref().and_then(|f| f.thumbnail.as_ref()) {
                Some(t) => Some(blobs.write_blob(&t.bytes)?),
                None => None,
            };
            Ok(Ok((actual, facts, thumb)))
        })
        .await
        .map_err(task_error)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => no_upload(),
            _ => io_error(e),
        })?;
        let (sha256, facts, thumb_sha) = checked?;
        let now = now_ms();
        let thumb = match (&facts, thumb_sha) {
            (Some(f), Some(sha)) => f.thumbnail.as_ref().map(|t| MediaFile {
                id: random_id(),
                sha256: sha,
                uploader_id: caller.user_id.clone(),
                filename: format!("thumb-{}", plan.filename),
                mime_type: t.mime_type.to_owned(),
                size: t.bytes.len() as u64,
                width: Some(t.width),
                height: Some(t.height),
                blurhash: None,
                thumb_id: None,
                created_at: now,
            }),
            _ => None,
        };
        let file = MediaFile {
            id: random_id(),
            sha256,
            uploader_id: caller.user_id.clone(),
            filename: plan.filename.clone(),
            // For images, the type the bytes really are.
            mime_type: facts
                .as_ref()
                .map_or(plan.mime_type.clone(), |f| f.mime_type.to_owned()),
            size: plan.total_size,
            width: facts.as_ref().map(|f| f.width),
            height: facts.as_ref().map(|f| f.height),
            blurhash: facts.as_ref().map(|f| f.blurhash.clone()),
            thumb_id: thumb.as_ref().map(|t| t.id.clone()),
            created_at: now,
        };
        let mut files = vec![file.clone()];
        files.extend(thumb.clone());
        let avatar = (upload.kind == UploadKind::Avatar)
            .then(|| (caller.user_id.clone(), self.public_url(&file.id)));
        let key = token.to_owned();
        let is_avatar = avatar.is_some();
        self.store
            .write(move |tx| {
                db::finish(
                    tx,
                    &key,
                    &files,
                    avatar.as_ref().map(|(u, url)| (u.as_str(), url.as_str())),
                )
            })
            .await?;
        Ok(Finished {
            file,
            thumb,
            avatar: is_avatar,
        })
    }

    /// `UploadAbort`: drops an upload and its bytes.
    pub async fn abort(&self, caller: &SessionInfo, token: &str) -> Result<()> {
        self.owned_upload(caller, token).await?;
        let key = token.to_owned();
        if !self
            .store
            .write(move |tx| db::delete_upload(tx, &key))
            .await?
        {
            return Err(no_upload());
        }
        let blobs = self.blobs.clone();
        let key = token.to_owned();
        tokio::task::spawn_blocking(move || blobs.remove_partial(&key))
            .await
            .map_err(task_error)?
            .map_err(io_error)?;
        Ok(())
    }

    /// Removes uploads past their expiry and partial files no upload owns; answers how many
    /// uploads were removed.
    pub async fn expire(&self) -> Result<usize> {
        let now = now_ms();
        let expired = self
            .store
            .write(move |tx| db::take_expired(tx, now))
            .await?;
        let live = self.store.read(db::upload_tokens).await?;
        let blobs = self.blobs.clone();
        let count = expired.len();
        tokio::task::spawn_blocking(move || blobs.sweep_partials(&live))
            .await
            .map_err(task_error)?
            .map_err(io_error)?;
        Ok(count)
    }

    /// Runs [`Media::expire`] until `cancel`, often enough that an abandoned upload's space is
    /// reclaimed within about half its expiry time.
    pub fn spawn_expiry(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let media = self.clone();
        let every =
            std::time::Duration::from_millis((self.config.upload_expiry_ms / 2).clamp(500, 60_000));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => match media.expire().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "expired abandoned uploads"),
                        Err(e) => tracing::warn!(error = %e, "upload expiry failed"),
                    },
                }
            }
        })
    }
}
