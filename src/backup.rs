//! `guildhall backup DEST`: a consistent copy of a node's data directory, taken while it runs.
//!
//! The copy is a data directory itself, so restoring is putting it where the node's was
//! (`docs/OPERATING.md`, "Backups"). It holds:
//! - the database, through SQLite's backup API ([`crate::store::backup`]): one committed state;
//! - the server key and its pending rotation statement, if any (owner-only, like the originals);
//! - every uploaded file the copied database refers to. Files are named by their content and
//!   never change once written, so copying them after the database is consistent with it; files
//!   uploaded after the copy began are left out, as their rows are.
//!
//! Uploads in progress are not copied: their clients start them again after a restore.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::media::blobs::Blobs;
use crate::store::StorageError;

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination is not a new or empty directory.
    #[error(
        "{0}: exists and is not an empty directory; give a new one (a backup never overwrites)"
    )]
    DestinationInUse(PathBuf),
    /// There is no node's data at the source.
    #[error(
        "no database at {0}: is the data directory (--data-dir or the config's data_dir) right?"
    )]
    NoDatabase(PathBuf),
    /// Copying the database failed.
    #[error("database: {0}")]
    Database(#[from] StorageError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a backup copied, for the operator.
#[derive(Debug, Clone, Default)]
pub struct BackupReport {
    /// Size of the copied database, bytes.
    pub database_bytes: u64,
    /// Key files copied (names within the data directory).
    pub key_files: Vec<String>,
    /// Uploaded files copied, and their bytes.
    pub blobs: usize,
    /// Their total size.
    pub blob_bytes: u64,
    /// Files the database refers to that were not on disk (removed after the copy began, or
    /// lost before it): their rows are in the copy, their bytes are not.
    pub missing_blobs: Vec<String>,
}

/// Copies the data directory of `config` into `dest`: a new directory, or an empty one.
pub fn run(config: &Config, dest: &Path) -> Result<BackupReport, BackupError> {
    let database = config.database_path();
    if !database.is_file() {
        return Err(BackupError::NoDatabase(database));
    }
    if dest.exists() {
        let empty = std::fs::read_dir(dest).map_err(io(dest))?.next().is_none();
        if !empty {
            return Err(BackupError::DestinationInUse(dest.to_owned()));
        }
    }
    create_private_dir(dest)?;
    let target = Config {
        data_dir: dest.to_owned(),
        ..Config::default()
    };
    let mut report = BackupReport::default();

    // The keys first: a database without the key it was signed with can't federate.
    for (from, to) in [
        (config.server_key_path(), target.server_key_path()),
        (
            crate::federation::local::rotation_path(&config.server_key_path()),
            crate::federation::local::rotation_path(&target.server_key_path()),
        ),
    ] {
        let contents = match std::fs::read_to_string(&from) {
            Ok(contents) => contents,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&from)(e)),
        };
        crate::identity::key_file::write_private(&to, &contents).map_err(io(&to))?;
        report.key_files.push(file_name(&to));
    }

    let snapshot = crate::store::backup::snapshot(&database, &target.database_path())?;
    report.database_bytes = snapshot.bytes;

    let (source_blobs, dest_blobs) = (
        Blobs::open(&config.media_dir()).map_err(io(&config.media_dir()))?,
        Blobs::open(&target.media_dir()).map_err(io(&target.media_dir()))?,
    );
    for sha256 in &snapshot.blobs {
        // Names come from the database; blob_path refuses any that is not plain hex.
        let (from, to) = match (source_blobs.blob_path(sha256), dest_blobs.blob_path(sha256)) {
            (Ok(from), Ok(to)) => (from, to),
            _ => {
                report.missing_blobs.push(sha256.clone());
                continue;
            }
        };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        match std::fs::copy(&from, &to) {
            Ok(bytes) => {
                std::fs::File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&to))?;
                report.blobs += 1;
                report.blob_bytes += bytes;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.missing_blobs.push(sha256.clone());
            }
            Err(e) => return Err(io(&from)(e)),
        }
    }
    Ok(report)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The backup holds the server key and everyone's messages: owner-only, like a data directory.
fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir))
}
