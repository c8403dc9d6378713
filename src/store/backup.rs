//! An online, consistent copy of the database while the node runs (`guildhall backup`).
//!
//! SQLite's backup API copies every page of the database inside one read transaction on a
//! connection of its own. In WAL mode a reader neither blocks the node's writer nor is blocked by
//! it, and sees one committed state throughout, so the copy is exactly the database as of one
//! commit: every write acknowledged before the copy began is in it, nothing half-written is.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::StorageError;

/// How long the copy waits out a lock it can't take (a checkpoint truncating the WAL), in total.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long between tries while the source is locked.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// What a snapshot holds, for the backup to copy the files it names and report.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Size of the copied database file, bytes.
    pub bytes: u64,
    /// The hex sha256 of every uploaded file the copy refers to: the blobs a restore needs.
    pub blobs: Vec<String>,
}

/// Copies the database at `source` to `dest` (which must not exist), checks the copy with
/// `PRAGMA quick_check`, and lists the blobs it refers to.
pub fn snapshot(source: &Path, dest: &Path) -> Result<Snapshot, StorageError> {
    if dest.exists() {
        return Err(StorageError::Conflict(format!(
            "{} already exists; a backup never overwrites",
            dest.display()
        )));
    }
    let source = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(LOCK_WAIT)?;
    let mut copy = Connection::open(dest)?;
    {
        let backup = Backup::new(&source, &mut copy)?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        // Every page in one step: one read transaction, so one committed state.
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if std::time::Instant::now() < deadline => {
                    std::thread::sleep(LOCK_RETRY);
                }
                StepResult::Busy | StepResult::Locked => {
                    return Err(StorageError::Refused(
                        "database: stayed locked for 30 s; try the backup again".into(),
                    ));
                }
                other => {
                    return Err(StorageError::Refused(format!(
                        "database: the backup stopped unexpectedly ({other:?})"
                    )));
                }
            }
        }
    }
    let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError::Refused(format!(
            "database: the copy failed its integrity check: {check}"
        )));
    }
    let blobs = copy
        .prepare("SELECT DISTINCT sha256 FROM media_files ORDER BY sha256")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    // The copy is in WAL mode like its source; fold everything into the one file.
    copy.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(copy);
    std::fs::File::open(dest)?.sync_all()?;
    Ok(Snapshot {
        bytes: std::fs::metadata(dest)?.len(),
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_taken_during_writes_holds_one_committed_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite3");
        let writer = Connection::open(&path).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE media_files (id TEXT, sha256 TEXT);
                 CREATE TABLE t (n INTEGER);
                 INSERT INTO media_files VALUES ('a', 'ff'), ('b', 'ff'), ('c', '00');",
            )
            .expect("schema");
        // A transaction open (uncommitted) while the copy runs: it must not appear.
        writer
            .execute_batch("BEGIN; INSERT INTO t VALUES (1);")
            .expect("begin");
        let dest = dir.path().join("copy.sqlite3");
        let snap = snapshot(&path, &dest).expect("snapshot");
        writer.execute_batch("COMMIT;").expect("commit");
        assert_eq!(snap.blobs, vec!["00".to_owned(), "ff".to_owned()]);
        let copy = Connection::open(&dest).expect("open copy");
        let rows: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 0, "the uncommitted row is not in the copy");
        assert!(matches!(
            snapshot(&path, &dest),
            Err(StorageError::Conflict(_))
        ));
    }
}
