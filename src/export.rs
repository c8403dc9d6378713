//! A user's data export (`ExportMyData`, docs/PEOPLE.md "Export"): everything this node stores
//! about the caller, as a tar archive streamed in chunks while it is written, so neither the
//! node nor the client ever holds the whole archive.
//!
//! The archive is written on a blocking thread: a [`tar::Builder`] over a writer that hands out
//! [`CHUNK`]-sized pieces through a bounded channel, so a slow client slows the export down
//! instead of letting it pile up in memory. Messages are read a page at a time
//! ([`MESSAGES_PER_PART`] per `messages/part-NNNNNN.jsonl`), files are copied from disk in the
//! builder's own small buffer. Memory stays at a page of messages plus a few chunks, whatever
//! the account's size.

use std::collections::HashSet;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::identity::freshness::now_ms;
use crate::media::Media;
use crate::store::export::{self as db, ExportFile};
use crate::store::{SessionInfo, StorageError, Store};

/// Bytes per chunk handed to the client.
pub const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the client at most; the writer waits beyond that.
pub const CHUNKS_QUEUED_MAX: usize = 4;
/// Messages per `messages/part-NNNNNN.jsonl` entry (and per read).
pub const MESSAGES_PER_PART: u32 = 1000;
/// Files listed per read.
const FILES_PER_READ: u32 = 200;

/// What the archive says about itself (`README.txt`).
const README: &str = "\
This is everything a guildhall node stores about you, as it was when you asked for it.

account/        your profile (user.json), devices, open sessions, your list of servers, push
                registrations, app data and your Harmony id
guilds.json     the guilds and DMs you are a member of here, with your roles and nickname
relationships.json, notes.json
                your friends, friend requests and blocks; the notes you keep about others
read_states.json, reactions.json, dm_invites.json
messages/       every message you sent on this node, oldest first, 1000 per part, one JSON
                object per line
files.json      the files you uploaded; their bytes are in files/<id>/<filename>

Times are milliseconds since 1970-01-01 UTC. Ids of other users are their public keys (hex).
";

/// The chunks of one export: the archive's bytes in order, or the error that ended it.
pub type Chunks = mpsc::Receiver<Result<Vec<u8>>>;

/// The exports running on this node: one at a time per user, so a client can't start many
/// archives of the same account at once.
#[derive(Debug, Clone, Default)]
pub struct Exports {
    running: Arc<Mutex<HashSet<String>>>,
}

/// Marks a user's export as running until dropped.
struct Running {
    exports: Exports,
    user_id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.exports.running.lock() {
            running.remove(&self.user_id);
        }
    }
}

impl Exports {
    /// Starts the export of `caller`'s data; the archive arrives on the returned channel.
    /// Refused while another export of theirs is running.
    pub fn start(&self, store: Store, media: Media, caller: &SessionInfo) -> Result<Chunks> {
        let user_id = caller.user_id.clone();
        let fresh = self
            .running
            .lock()
            .map(|mut running| running.insert(user_id.clone()))
            .unwrap_or(false);
        if !fresh {
            return Err(Error::FailedPrecondition(
                "an export of your data is running already; wait for it to finish".into(),
            ));
        }
        let guard = Running {
            exports: self.clone(),
            user_id,
        };
        Ok(start(store, media, guard))
    }
}

/// Runs one export on a blocking thread; `guard` ends with it.
fn start(store: Store, media: Media, guard: Running) -> Chunks {
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED_MAX);
    let user_id = guard.user_id.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let writer = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_archive(&handle, &store, &media, &user_id, writer);
        match result {
            Ok(()) => tracing::info!(user = %&user_id[..8], "data export finished"),
            // The client went away: nobody to tell.
            Err(Error::Unavailable(_)) => {
                tracing::debug!(user = %&user_id[..8], "data export abandoned by the client");
            }
            Err(e) => {
                tracing::warn!(user = %&user_id[..8], error = %e, "data export failed");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    rx
}

/// Hands out the archive in [`CHUNK`]-sized pieces, waiting while the client is behind.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A failure of the node's own (the client sees `INTERNAL`; the log has the detail).
fn internal(what: String) -> Error {
    Error::Storage(StorageError::Task(what))
}

/// An I/O error of the archive: the client leaving, or a file that can't be read.
fn io_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::Unavailable("the client stopped reading the export".into())
    } else {
        internal(format!("writing the export: {e}"))
    }
}

/// A regular-file entry header for `size` bytes, dated `mtime_ms`.
fn header(size: u64, mtime_ms: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime_ms / 1000);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Appends one in-memory entry.
fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    now: u64,
) -> Result<()> {
    let mut h = header(bytes.len() as u64, now);
    tar.append_data(&mut h, path, bytes).map_err(io_error)
}

/// A name for a file inside the archive: the uploader's name without path separators or
/// control characters (tar paths are the archive's own).
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.trim_matches('.') {
        "" => "file".to_owned(),
        _ => cleaned,
    }
}

fn write_archive(
    rt: &tokio::runtime::Handle,
    store: &Store,
    media: &Media,
    user_id: &str,
    writer: ChunkWriter,
) -> Result<()> {
    let now = now_ms();
    let mut tar = tar::Builder::new(writer);
    tar.mode(tar::HeaderMode::Deterministic);
    append_bytes(&mut tar, "README.txt", README.as_bytes(), now)?;

    for (path, sql) in db::SECTIONS {
        let (id, sql) = (user_id.to_owned(), *sql);
        let rows = rt.block_on(store.read(move |c| db::section(c, sql, &id)))?;
        let bytes = serde_json::to_vec_pretty(&rows)
            .map_err(|e| internal(format!("export {path}: {e}")))?;
        append_bytes(&mut tar, path, &bytes, now)?;
    }

    let mut after = 0i64;
    for part in 1u64.. {
        let id = user_id.to_owned();
        let page =
            rt.block_on(store.read(move |c| db::messages_after(c, &id, after, MESSAGES_PER_PART)))?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        let mut lines = Vec::new();
        for (_, message) in &page {
            serde_json::to_writer(&mut lines, message)
                .map_err(|e| internal(format!("export messages: {e}")))?;
            lines.push(b'\n');
        }
        append_bytes(
            &mut tar,
            &format!("messages/part-{part:06}.jsonl"),
            &lines,
            now,
        )?;
        if page.len() < MESSAGES_PER_PART as usize {
            break;
        }
    }

    let mut listed: Vec<Value> = Vec::new();
    let mut cursor: Option<(u64, String)> = None;
    loop {
        let (id, from) = (user_id.to_owned(), cursor.clone());
        let files =
            rt.block_on(store.read(move |c| db::files_after(c, &id, from, FILES_PER_READ)))?;
        for file in &files {
            listed.push(append_file(&mut tar, media, file)?);
        }
        match files.last() {
            Some(last) if files.len() == FILES_PER_READ as usize => {
                cursor = Some((last.created_at, last.id.clone()));
            }
            _ => break,
        }
    }
    let index = serde_json::to_vec_pretty(&listed)
        .map_err(|e| internal(format!("export files.json: {e}")))?;
    append_bytes(&mut tar, "files.json", &index, now)?;

    let mut writer = tar.into_inner().map_err(io_error)?;
    writer.flush().map_err(io_error)
}

/// Copies one uploaded file's bytes into the archive and answers its `files.json` entry (the
/// bytes missing on disk are listed with `"missing": true` rather than failing the export).
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    media: &Media,
    file: &ExportFile,
) -> Result<Value> {
    let path = format!("files/{}/{}", file.id, safe_name(&file.filename));
    let opened = media
        .blob_path_of(&file.sha256)
        .and_then(|p| std::fs::File::open(p).map_err(|e| internal(e.to_string())));
    let entry = json!({
        "id": file.id,
        "filename": file.filename,
        "mime_type": file.mime_type,
        "size": file.size,
        "sha256": file.sha256,
        "created_at": file.created_at,
        "path": path,
    });
    match opened {
        Ok(f) => {
            let mut h = header(file.size, file.created_at);
            tar.append_data(&mut h, &path, io::Read::take(f, file.size))
                .map_err(io_error)?;
            Ok(entry)
        }
        Err(e) => {
            tracing::warn!(file = %file.id, error = %e, "an exported file's bytes are missing");
            let mut entry = entry;
            entry["missing"] = Value::Bool(true);
            Ok(entry)
        }
    }
}
