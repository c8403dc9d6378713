//! Secret material on disk (the server key, its rotation statement, a user's identity file):
//! written so that only the file's owner can read it, and synced before the write counts.

use std::path::Path;

/// Writes `contents` to `path` (created or replaced), readable and writable by its owner only.
///
/// The bytes go to a temporary file beside `path`, synced, then renamed over it: a reader (another
/// `guildhall` reading the identity file) sees the old file or the new one, never half of one,
/// and a crash mid-write leaves the old file whole.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?
        .to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    // The rename itself is durable once the directory is synced.
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_owner_only() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("identity.json");
        write_private(&path, "first").expect("write");
        write_private(&path, "second, longer").expect("replace");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "second, longer"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
