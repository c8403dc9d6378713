//! Secret material on disk (the server key, its rotation statement, a user's identity file):
//! written so that only the file's owner can read it, and synced before the write counts.

use std::path::Path;

/// Writes `contents` to `path` (created or replaced), readable and writable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
