//! Uploaded files, uploads in progress and the chunks they have received.
//!
//! The bytes live on disk (see `crate::media::blobs`); these tables say who uploaded what, under
//! which name and type, and how far each upload has come.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, to_sql_int};

/// What an upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// Becomes the uploader's avatar when finished; must be an image.
    Avatar,
    /// A file to attach to messages.
    Media,
}

impl UploadKind {
    fn as_str(self) -> &'static str {
        match self {
            UploadKind::Avatar => "avatar",
            UploadKind::Media => "media",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "avatar" {
            UploadKind::Avatar
        } else {
            UploadKind::Media
        }
    }
}

/// What `UploadBegin` declared about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// The file's name, as the uploader gave it.
    pub filename: String,
    /// The declared type (normalised to lowercase).
    pub mime_type: String,
    /// The whole file's size in bytes.
    pub total_size: u64,
    /// Every chunk but the last has exactly this many bytes.
    pub chunk_size: u64,
}

impl UploadPlan {
    /// How many chunks the file is cut into.
    pub fn chunk_count(&self) -> u64 {
        self.total_size.div_ceil(self.chunk_size)
    }

    /// How many bytes chunk `index` must hold.
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index.saturating_mul(self.chunk_size);
        self.total_size.saturating_sub(start).min(self.chunk_size)
    }
}

/// An upload in progress.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    /// The upload's token.
    pub token: String,
    /// Who started it; only they may continue it.
    pub user_id: String,
    /// Avatar or media.
    pub kind: UploadKind,
    /// Set by `UploadBegin`.
    pub plan: Option<UploadPlan>,
    /// When it is abandoned if no chunk arrives.
    pub expires_at: u64,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// Public id (32 hex characters).
    pub id: String,
    /// Hex sha256 of the bytes: the blob's name on disk.
    pub sha256: String,
    /// Who uploaded it.
    pub uploader_id: String,
    /// The uploader's name for it.
    pub filename: String,
    /// Its type (for images, the type the bytes really are).
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Pixel width, for images.
    pub width: Option<u32>,
    /// Pixel height, for images.
    pub height: Option<u32>,
    /// Blurhash placeholder, for images.
    pub blurhash: Option<String>,
    /// The thumbnail file, for images larger than a thumbnail.
    pub thumb_id: Option<String>,
    /// When it was stored (ms).
    pub created_at: u64,
}

/// Starts an upload unless the user already has `max_open` in progress; `false` if they do.
pub fn create_upload(
    tx: &Connection,
    record: &UploadRecord,
    now: u64,
    max_open: u32,
) -> Result<bool, StorageError> {
    let open: u32 = tx.query_row(
        "SELECT count(*) FROM uploads WHERE user_id = ?1",
        params![record.user_id],
        |r| r.get(0),
    )?;
    if open >= max_open {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO uploads (token, user_id, kind, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record.token,
            record.user_id,
            record.kind.as_str(),
            to_sql_int(now),
            to_sql_int(record.expires_at)
        ],
    )?;
    Ok(true)
}

/// The upload with this token.
pub fn upload(c: &Connection, token: &str) -> Result<Option<UploadRecord>, StorageError> {
    Ok(c.prepare_cached(
        "SELECT token, user_id, kind, filename, mime_type, total_size, chunk_size, expires_at
         FROM uploads WHERE token = ?1",
    )?
    .query_row(params![token], |r| {
        let filename: Option<String> = r.get(3)?;
        let plan = match filename {
            Some(filename) => Some(UploadPlan {
                filename,
                mime_type: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                total_size: from_sql(r.get::<_, Option<i64>>(5)?.unwrap_or(0)),
                chunk_size: from_sql(r.get::<_, Option<i64>>(6)?.unwrap_or(1)),
            }),
            None => None,
        };
        Ok(UploadRecord {
            token: r.get(0)?,
            user_id: r.get(1)?,
            kind: UploadKind::parse(&r.get::<_, String>(2)?),
            plan,
            expires_at: from_sql(r.get(7)?),
        })
    })
    .optional()?)
}

/// Records what `UploadBegin` declared.
pub fn begin(
    tx: &Connection,
    token: &str,
    plan: &UploadPlan,
    expires_at: u64,
) -> Result<(), StorageError> {
    tx.execute(
        "UPDATE uploads SET filename = ?2, mime_type = ?3, total_size = ?4, chunk_size = ?5,
                            expires_at = ?6
         WHERE token = ?1",
        params![
            token,
            plan.filename,
            plan.mime_type,
            to_sql_int(plan.total_size),
            to_sql_int(plan.chunk_size),
            to_sql_int(expires_at)
        ],
    )?;
    Ok(())
}

/// The hash recorded for a received chunk, if it was received.
pub fn chunk_sha(c: &Connection, token: &str, index: u64) -> Result<Option<String>, StorageError> {
    Ok(
        c.prepare_cached("SELECT sha256 FROM upload_chunks WHERE token = ?1 AND idx = ?2")?
            .query_row(params![token, to_sql_int(index)], |r| r.get(0))
            .optional()?,
    )
}

/// Records a received chunk and pushes the upload's expiry back. Answers the hash an earlier
/// copy of the same chunk was recorded with, if there was one (the new one is then not kept).
pub fn record_chunk(
    tx: &Connection,
    token: &str,
    index: u64,
    sha256: &str,
    expires_at: u64,
) -> Result<Option<String>, StorageError> {
    if let Some(earlier) = chunk_sha(tx, token, index)? {
        return Ok(Some(earlier));
    }
    tx.execute(
        "INSERT INTO upload_chunks (token, idx, sha256) VALUES (?1, ?2, ?3)",
        params![token, to_sql_int(index), sha256],
    )?;
    tx.execute(
        "UPDATE uploads SET expires_at = ?2 WHERE token = ?1",
        params![token, to_sql_int(expires_at)],
    )?;
    Ok(None)
}

/// Up to `limit` chunk indexes below `count` that have not been received.
pub fn missing_chunks(
    c: &Connection,
    token: &str,
    count: u64,
    limit: usize,
) -> Result<Vec<u64>, StorageError> {
    let mut stmt =
        c.prepare_cached("SELECT idx FROM upload_chunks WHERE token = ?1 ORDER BY idx")?;
    let received = stmt.query_map(params![token], |r| r.get::<_, i64>(0))?;
    let mut missing = Vec::new();
    let mut next = 0u64;
    for idx in received {
        let idx = from_sql(idx?);
        while next < idx.min(count) && missing.len() < limit {
            missing.push(next);
            next += 1;
        }
        next = idx + 1;
    }
    while next < count && missing.len() < limit {
        missing.push(next);
        next += 1;
    }
    Ok(missing)
}

/// Stores finished files and removes the upload, in one transaction; `avatar` also makes the
/// first file the user's avatar.
pub fn finish(
    tx: &Connection,
    token: &str,
    files: &[MediaFile],
    avatar: Option<(&str, &str)>,
) -> Result<(), StorageError> {
    // Thumbnails first: the main file refers to its thumbnail.
    for file in files.iter().rev() {
        tx.execute(
            "INSERT INTO media_files (id, sha256, uploader_id, filename, mime_type, size, width,
                                      height, blurhash, thumb_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                file.id,
                file.sha256,
                file.uploader_id,
                file.filename,
                file.mime_type,
                to_sql_int(file.size),
                file.width,
                file.height,
                file.blurhash,
                file.thumb_id,
                to_sql_int(file.created_at)
            ],
        )?;
    }
    tx.execute("DELETE FROM uploads WHERE token = ?1", params![token])?;
    if let Some((user_id, url)) = avatar {
        tx.execute(
            "UPDATE users SET avatar_url = ?2 WHERE id = ?1",
            params![user_id, url],
        )?;
    }
    Ok(())
}

/// Removes an upload and its chunk records; `false` if there was none.
pub fn delete_upload(tx: &Connection, token: &str) -> Result<bool, StorageError> {
    Ok(tx.execute("DELETE FROM uploads WHERE token = ?1", params![token])? > 0)
}

/// Removes uploads whose expiry has passed and answers their tokens (their partial files are
/// the caller's to delete).
pub fn take_expired(tx: &Connection, now: u64) -> Result<Vec<String>, StorageError> {
    let mut stmt =
        tx.prepare_cached("DELETE FROM uploads WHERE expires_at < ?1 RETURNING token")?;
    let tokens = stmt.query_map(params![to_sql_int(now)], |r| r.get(0))?;
    Ok(tokens.collect::<Result<_, _>>()?)
}

/// Every upload token in progress.
pub fn upload_tokens(c: &Connection) -> Result<Vec<String>, StorageError> {
    let mut stmt = c.prepare("SELECT token FROM uploads")?;
    let tokens = stmt.query_map([], |r| r.get(0))?;
    Ok(tokens.collect::<Result<_, _>>()?)
}

/// The file with this id, unless its bytes are quarantined (then it is as if there were none).
pub fn file(c: &Connection, id: &str) -> Result<Option<MediaFile>, StorageError> {
    Ok(c.prepare_cached(
        "SELECT id, sha256, uploader_id, filename, mime_type, size, width, height, blurhash,
                thumb_id, created_at
         FROM media_files
         WHERE id = ?1 AND sha256 NOT IN (SELECT sha256 FROM quarantined_media)",
    )?
    .query_row(params![id], |r| {
        Ok(MediaFile {
            id: r.get(0)?,
            sha256: r.get(1)?,
            uploader_id: r.get(2)?,
            filename: r.get(3)?,
            mime_type: r.get(4)?,
            size: from_sql(r.get(5)?),
            width: r.get(6)?,
            height: r.get(7)?,
            blurhash: r.get(8)?,
            thumb_id: r.get(9)?,
            created_at: from_sql(r.get(10)?),
        })
    })
    .optional()?)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Quarantines the bytes of file `id` and of its thumbnail: [`file`] finds no file with them from
/// now on. Answers the hashes quarantined (none if there is no such file, or it already was).
pub fn quarantine(
    tx: &Connection,
    id: &str,
    by: &str,
    now: u64,
) -> Result<Vec<String>, StorageError> {
    let Some(file) = file(tx, id)? else {
        return Ok(Vec::new());
    };
    let thumb = match &file.thumb_id {
        Some(thumb) => file_unchecked_sha(tx, thumb)?,
        None => None,
    };
    let mut done = Vec::new();
    for (sha, file_id) in std::iter::once((file.sha256.clone(), file.id.clone()))
        .chain(thumb.map(|sha| (sha, file.thumb_id.clone().unwrap_or_default())))
    {
        let n = tx.execute(
            "INSERT OR IGNORE INTO quarantined_media (sha256, file_id, quarantined_by, quarantined_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![sha, file_id, by, to_sql_int(now)],
        )?;
        if n > 0 {
            done.push(sha);
        }
    }
    Ok(done)
}

/// The hash of file `id`'s bytes, quarantined or not.
fn file_unchecked_sha(c: &Connection, id: &str) -> Result<Option<String>, StorageError> {
    Ok(
        c.query_row("SELECT sha256 FROM media_files WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?,
    )
}
