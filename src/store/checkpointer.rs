//! WAL checkpoints off the write path: a thread of its own copies committed pages from the
//! write-ahead log into the database file, so no commit waits for it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: with one
//! sender, about one commit in sixty took 13–50 ms instead of 0.3 ms (the copy of ~1,000 pages
//! and two fsyncs), and that was the sender's p99. Here the writer connection has
//! `wal_autocheckpoint=0` and tells this thread after each commit ([`Trigger::committed`], a
//! non-blocking signal); the thread lets commits gather for [`GATHER`], then runs a `PASSIVE`
//! checkpoint on its own connection, which never blocks the writer or readers (it copies what no
//! reader still needs and stops). Once a checkpoint has copied everything, the writer's next
//! transaction starts the log again from the beginning. Under writes that never pause, that
//! moment never comes (each checkpoint ends with newer commits in the log, and readers hold
//! snapshots in it), so once the log holds more than [`RESTART_PAGES`] the thread asks the
//! writer ([`Trigger::restart_wanted`]) for a `RESTART` checkpoint, run after its group's callers
//! are answered: it waits for readers to leave the log, copies the few pages this thread had not
//! (measured: 16 senders without it grew the log to 694 MB in 10 s), and the log starts again.
//!
//! Durability is unchanged: a commit is durable when it is in the log (the `synchronous` setting
//! decides whether that is fsynced); a checkpoint only moves committed pages. A crash mid-copy is
//! repaired from the log on the next open. The thread ends when the writer (the only holder of
//! the [`Trigger`]) stops.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, StorageError, Synchronous};

/// How long commits gather after the first one before a checkpoint copies them all: long
/// enough that one checkpoint (and its fsyncs) covers many commits under load, short enough
/// that the log stays a few MB.
pub const GATHER: Duration = Duration::from_millis(100);

/// Pages in the log (4 KiB each: 16 MiB) past which the writer restarts it.
pub const RESTART_PAGES: i64 = 4096;

/// The writer's side: tells the checkpoint thread that something was committed, and hears when
/// the log should be restarted.
#[derive(Debug)]
pub struct Trigger {
    wake: mpsc::SyncSender<()>,
    restart: Arc<AtomicBool>,
}

impl Trigger {
    /// A commit happened; never blocks (one pending signal covers any number of commits).
    pub fn committed(&self) {
        let _ = self.wake.try_send(());
    }

    /// Whether the writer should restart the log now (asked once per request).
    pub fn restart_wanted(&self) -> bool {
        self.restart.swap(false, Ordering::Relaxed)
    }
}

/// Run by the writer when [`Trigger::restart_wanted`]: copies what is left and starts the log
/// again, waiting (up to the busy timeout) for readers still in it.
pub fn restart(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL restart failed (asked again after the next checkpoint)");
    }
}

/// Starts the checkpoint thread for the database at `path` (already in WAL mode) and returns
/// the trigger the writer calls after each commit.
pub fn start(path: &Path, sync: Synchronous) -> Result<Trigger, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A checkpoint fsyncs the log before copying and the database after, as the writer's own
    // setting asks.
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    let (wake, woken) = mpsc::sync_channel(1);
    let restart = Arc::new(AtomicBool::new(false));
    let asked = restart.clone();
    std::thread::Builder::new()
        .name("guildhall-checkpoint".into())
        .spawn(move || run(&conn, &woken, &asked))?;
    Ok(Trigger { wake, restart })
}

fn run(conn: &Connection, woken: &mpsc::Receiver<()>, restart: &AtomicBool) {
    while woken.recv().is_ok() {
        std::thread::sleep(GATHER);
        // Commits that signalled while this one gathered are covered by the same checkpoint.
        while woken.try_recv().is_ok() {}
        let copied = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match copied {
            Ok((log, copied)) => {
                if log > RESTART_PAGES {
                    restart.store(true, Ordering::Relaxed);
                }
                if copied < log {
                    tracing::debug!(
                        log,
                        copied,
                        "checkpoint stopped at a page a reader still needs"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed (retried after the next commit)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in WAL mode without automatic checkpoints, with a table `t (n, v)`, and the
    /// connection that made it (the writer).
    fn wal_database(dir: &tempfile::TempDir) -> (std::path::PathBuf, Connection) {
        let path = dir.path().join("c.sqlite3");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t (n INTEGER PRIMARY KEY, v BLOB);",
        )
        .expect("schema");
        (path, conn)
    }

    /// With the writer's automatic checkpoints off, only this thread moves pages into the
    /// database file: it grows while the writer keeps writing.
    #[test]
    fn commits_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, writer) = wal_database(&dir);
        let trigger = start(&path, Synchronous::Normal).expect("start");
        let before = std::fs::metadata(&path).expect("db file").len();
        for n in 0..200i64 {
            writer
                .execute("INSERT INTO t (n, v) VALUES (?1, zeroblob(4096))", [n])
                .expect("insert");
            trigger.committed();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut size = before;
        while size < before + 200 * 4096 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            size = std::fs::metadata(&path).expect("db file").len();
        }
        assert!(
            size >= before + 200 * 4096,
            "the database file stayed at {size} bytes (was {before})"
        );
    }

    /// Writes that never pause, with a reader always inside the log: without the writer's
    /// restart the log would hold every page written (here ~80 MB); with it, it stays near
    /// [`RESTART_PAGES`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_written_without_pause_is_restarted_past_its_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, conn) = wal_database(&dir);
        let trigger = start(&path, Synchronous::Normal).expect("start");
        let writer = super::super::writer::Writer::start(
            conn,
            crate::metrics::Metrics::new(),
            Some(trigger),
        )
        .expect("writer");
        let stop = Arc::new(AtomicBool::new(false));
        let reading = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let reader = Connection::open(&path).expect("reader");
                while !stop.load(Ordering::Relaxed) {
                    let _ = reader.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0));
                }
            })
        };
        let mut writers = Vec::new();
        for _ in 0..8 {
            let writer = writer.clone();
            writers.push(tokio::spawn(async move {
                for _ in 0..1250 {
                    writer
                        .write(
                            |c| {
                                c.execute("INSERT INTO t (v) VALUES (zeroblob(4096))", [])?;
                                Ok(())
                            },
                            |v| (v, None),
                        )
                        .await
                        .expect("write");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer task");
        }
        stop.store(true, Ordering::Relaxed);
        reading.join().expect("reader");
        let log = std::fs::metadata(dir.path().join("c.sqlite3-wal"))
            .expect("log")
            .len();
        let bound = 3 * RESTART_PAGES as u64 * 4096;
        assert!(log < bound, "the log grew to {log} bytes (bound {bound})");
    }
}
