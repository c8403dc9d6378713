//! SQLite storage behind a small typed API.
//!
//! [`Store`] is a cheap-`Clone` handle. Writes go to one thread that owns the write connection and
//! commits them in groups ([`writer`]; SQLite allows one writer at a time anyway); reads use a
//! small pool of their own connections, which WAL lets run beside the writer, in `spawn_blocking`.
//! The async runtime never waits on disk, and every multi-row change runs in one transaction.
//! Per-area methods live in the submodules and never hand `rusqlite` types to callers.

pub mod account_status;
pub mod accounts;
pub mod admin;
pub mod backup;
pub mod bans;
mod checkpointer;
pub mod dm_remote;
pub mod dms;
mod events;
pub mod export;
pub mod federation;
pub mod guilds;
pub mod harmony;
pub mod irc_accounts;
pub mod irc_tokens;
pub mod media;
pub mod memberships;
pub mod mentions;
pub mod messages;
pub mod moves;
pub mod outbox;
pub mod people;
pub mod push;
pub mod registration_tokens;
pub mod remote;
pub mod remote_push;
mod schema;
pub mod server_bans;
pub mod server_events;
mod sessions;
pub mod settings;
pub mod webhooks;
mod writer;

pub use accounts::{DeviceRecord, HomeserverMove, NewDevice, NewUser, ProfileChange, UserRecord};
pub use events::{EventRow, MembershipMark, StoredEvent};
pub use sessions::{NewSession, RefreshOutcome, SessionInfo, TokenPair};

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

/// How many read connections the pool keeps.
const READERS: usize = 4;

/// How long a connection waits for a lock held by another connection before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A storage failure. Callers see these as internal errors, except [`StorageError::Conflict`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite refused or failed.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// A rule of the stored state refused the change (a trigger raising [`REFUSED_PREFIX`], or a
    /// check in a storage function); the text names the field and the rule.
    #[error("{0}")]
    Refused(String),
    /// The schema could not be brought up to date.
    #[error("migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The database directory could not be created, or a file could not be written.
    #[error("io: {0}")]
    Io(std::io::Error),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
    /// A uniqueness rule was hit; the text names what already exists.
    #[error("{0}")]
    Conflict(String),
    /// A replayed signature: the replay cache already holds it.
    #[error("signature was already used")]
    Replay,
    /// The disk holding the database or the uploads is full (`SQLITE_FULL`, `ENOSPC`): nothing was
    /// written, and a retry can succeed once the operator frees space. Told apart from other
    /// failures so clients hear "try later" rather than "the node is broken".
    #[error("disk full: {0}")]
    DiskFull(String),
}

impl StorageError {
    /// Whether an I/O error means the disk is full.
    fn is_disk_full(e: &std::io::Error) -> bool {
        e.kind() == std::io::ErrorKind::StorageFull
    }
}

/// How a trigger's `RAISE(ABORT, …)` message marks a rule refusal rather than a failure: the rest
/// of the message is `"<field>: <rule>"` and reaches the client as `FAILED_PRECONDITION`.
pub const REFUSED_PREFIX: &str = "refused: ";

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(_, Some(message)) = &e
            && let Some(rule) = message.strip_prefix(REFUSED_PREFIX)
        {
            return StorageError::Refused(rule.to_owned());
        }
        if let rusqlite::Error::SqliteFailure(failure, _) = &e
            && failure.code == rusqlite::ErrorCode::DiskFull
        {
            return StorageError::DiskFull(e.to_string());
        }
        StorageError::Sqlite(e)
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        if Self::is_disk_full(&e) {
            StorageError::DiskFull(e.to_string())
        } else {
            StorageError::Io(e)
        }
    }
}

/// `PRAGMA synchronous` choice: `Normal` survives a killed process, `Full` survives power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Durable against process crashes (WAL default).
    #[default]
    Normal,
    /// Durable against power loss; slower commits.
    Full,
}

struct Inner {
    writer: writer::Writer,
    metrics: crate::metrics::Metrics,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// A cheap-`Clone` handle to the node's database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

impl Synchronous {
    /// The `PRAGMA synchronous` value.
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

fn configure(conn: &Connection, sync: Synchronous) -> Result<(), StorageError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    // No checkpoint inside a commit: the checkpoint thread keeps the WAL bounded (see
    // [`checkpointer`]).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path, sync: Synchronous) -> Result<Self, StorageError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, sync))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }

    fn open_blocking(path: &Path, sync: Synchronous) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer, sync)?;
        schema::migrations().to_latest(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            reader.busy_timeout(BUSY_TIMEOUT)?;
            readers.push(Mutex::new(reader));
        }
        let metrics = crate::metrics::Metrics::new();
        let checkpoints = checkpointer::start(path, sync)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: writer::Writer::start(writer, metrics.clone(), Some(checkpoints))?,
                metrics,
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// The node's metrics, made with the store so that every part holding it can record (see
    /// [`crate::metrics`]).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Runs `f` in the next group commit; returns only after the commit, so an acknowledged write
    /// is a committed write. If `f` fails, none of its changes are kept.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        self.inner.writer.write(f, |value| (value, None)).await
    }

    /// Runs `f` on a read connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let index = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[index]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Deletes expired sessions, spent refresh tokens past their expiry and replay-cache entries
    /// past their window, then checkpoints the WAL so the disk footprint stays bounded.
    pub async fn prune(&self, now_ms: u64) -> Result<usize, StorageError> {
        let removed = self.write(move |tx| sessions::prune(tx, now_ms)).await?;
        self.flush().await?;
        Ok(removed)
    }

    /// Proves the database takes writes (`/readyz`): one write through the group-commit writer
    /// that inserts a row into the replay cache and deletes it again. The commit writes the
    /// touched pages to the WAL, so a stopped writer, a lock held elsewhere, a read-only or full
    /// disk all fail it; the stored state is as before.
    pub async fn probe_write(&self) -> Result<(), StorageError> {
        self.write(|tx| {
            // Not a signature anyone made: 64 bytes of a marker text, expired since the epoch.
            let marker = [b'#'; 64];
            tx.execute(
                "INSERT OR REPLACE INTO replay_cache (signature, expires_at) VALUES (?1, 0)",
                [&marker[..]],
            )?;
            tx.execute(
                "DELETE FROM replay_cache WHERE signature = ?1",
                [&marker[..]],
            )?;
            Ok(())
        })
        .await
    }

    /// Waits until every write queued before this call is committed, then checkpoints the WAL
    /// into the database file: what a clean shutdown does last, so the data directory is whole
    /// without its `-wal` file.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.inner
            .writer
            .exclusive(
                |conn| Ok(conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?),
            )
            .await
    }
}

/// The write-ahead log beside the database at `path` (SQLite names it `<file>-wal`).
pub fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    std::path::PathBuf::from(name)
}

/// Records a signature in the replay cache inside the caller's transaction, refusing one already
/// there. Entries live until `expires_at`, the end of the signature's clock-skew window.
pub fn remember_signature(
    tx: &Connection,
    signature: &[u8; 64],
    expires_at: u64,
) -> Result<(), StorageError> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO replay_cache (signature, expires_at) VALUES (?1, ?2)",
        rusqlite::params![&signature[..], to_sql_int(expires_at)],
    )?;
    if inserted == 0 {
        return Err(StorageError::Replay);
    }
    Ok(())
}

/// SQLite integers are signed 64-bit; protocol timestamps are u64 milliseconds. Values past
/// `i64::MAX` (year 292 million) are clamped rather than wrapped.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The inverse of [`to_sql_int`]: negative values (never written) read as 0.
pub(crate) fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod disk_full_tests {
    use super::*;

    #[tokio::test]
    async fn a_full_database_is_told_apart_and_keeps_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite"), Synchronous::Normal)
            .await
            .expect("open");
        // SQLite's own page cap stands in for a full disk: it fails the same way (SQLITE_FULL).
        store
            .write(|c| {
                let pages: u64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                c.pragma_update(None, "max_page_count", pages)?;
                Ok(())
            })
            .await
            .expect("cap the database");
        let result = store
            .write(|c| {
                c.execute(
                    "INSERT INTO replay_cache (signature, expires_at) VALUES (zeroblob(1000000), 0)",
                    [],
                )?;
                Ok(())
            })
            .await;
        assert!(
            matches!(result, Err(StorageError::DiskFull(_))),
            "{result:?}"
        );
        let rows: u64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM replay_cache", [], |r| r.get(0))?))
            .await
            .expect("read");
        assert_eq!(rows, 0, "nothing of the failed write is kept");
        // A later write that fits still commits.
        store
            .probe_write()
            .await
            .expect("a small write still commits");
    }

    #[test]
    fn no_space_left_on_a_file_write_is_a_full_disk() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(matches!(
            StorageError::from(full),
            StorageError::DiskFull(_)
        ));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(StorageError::from(other), StorageError::Io(_)));
    }
}
