//! Files on disk: partial uploads under `partial/<token>`, finished files under
//! `blobs/<first two hex digits>/<sha256>`.
//!
//! Finished files are named by their content, so the same bytes uploaded twice are stored once,
//! and a blob never changes once written. Every function here blocks: call them from
//! `spawn_blocking`. Tokens and hashes are checked to be plain hex before they become paths.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Read buffer for hashing a finished upload: large enough to keep the disk busy, small enough
/// that a 100 MB upload never sits in memory.
const HASH_BUFFER: usize = 1 << 20;

/// The node's file area.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn bad_name(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} is not plain hex"),
    )
}

impl Blobs {
    /// The file area under `root` (created if missing).
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root.join("partial"))?;
        std::fs::create_dir_all(root.join("blobs"))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn partial(&self, token: &str) -> io::Result<PathBuf> {
        if !is_hex(token, 32) {
            return Err(bad_name("upload token"));
        }
        Ok(self.root.join("partial").join(token))
    }

    /// Where the blob with this hex sha256 lives.
    pub fn blob_path(&self, sha256: &str) -> io::Result<PathBuf> {
        if !is_hex(sha256, 64) {
            return Err(bad_name("sha256"));
        }
        Ok(self.root.join("blobs").join(&sha256[..2]).join(sha256))
    }

    /// Creates the empty partial file of a new upload.
    pub fn create_partial(&self, token: &str) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.partial(token)?)?;
        Ok(())
    }

    /// Writes one chunk at its offset. Chunks may come in any order; the partial file must exist
    /// (an aborted or expired upload's file is gone, and this answers `NotFound`).
    pub fn write_chunk(&self, token: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = OpenOptions::new().write(true).open(self.partial(token)?)?;
        file.write_all_at(data, offset)
    }

    /// The sha256 (hex) and length of a partial file, read in bounded pieces.
    pub fn hash_partial(&self, token: &str) -> io::Result<(String, u64)> {
        let mut file = File::open(self.partial(token)?)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; HASH_BUFFER];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            len += n as u64;
        }
        Ok((hex::encode(hasher.finalize()), len))
    }

    /// The partial file's path, for reading it (e.g. to decode an image).
    pub fn partial_path(&self, token: &str) -> io::Result<PathBuf> {
        self.partial(token)
    }

    /// Moves a complete partial file to its content address, flushed to disk first. If the same
    /// bytes are stored already, the partial file is dropped instead.
    pub fn commit_partial(&self, token: &str, sha256: &str) -> io::Result<()> {
        let from = self.partial(token)?;
        let to = self.blob_path(sha256)?;
        if to.exists() {
            return std::fs::remove_file(from);
        }
        File::open(&from)?.sync_all()?;
        self.place(&from, &to)
    }

    /// Stores bytes made by the node (thumbnails) and answers their hex sha256.
    pub fn write_blob(&self, bytes: &[u8]) -> io::Result<String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let to = self.blob_path(&sha256)?;
        if to.exists() {
            return Ok(sha256);
        }
        let staging = self
            .root
            .join("partial")
            .join(format!("{}.tmp", &sha256[..32]));
        let mut file = File::create(&staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        self.place(&staging, &to)?;
        Ok(sha256)
    }

    fn place(&self, from: &Path, to: &Path) -> io::Result<()> {
        let dir = to
            .parent()
            .ok_or_else(|| io::Error::other("blob path has no parent"))?;
        std::fs::create_dir_all(dir)?;
        std::fs::rename(from, to)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    }

    /// Deletes a partial file; a missing one is fine.
    pub fn remove_partial(&self, token: &str) -> io::Result<()> {
        match std::fs::remove_file(self.partial(token)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes partial files that belong to no upload in `live` (left by a crash or an expiry
    /// whose file removal failed); answers how many.
    pub fn sweep_partials(&self, live: &[String]) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("partial"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_in_any_order_hash_like_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let token = "0123456789abcdef0123456789abcdef";
        blobs.create_partial(token).unwrap();
        blobs.write_chunk(token, 3, b"def").unwrap();
        blobs.write_chunk(token, 0, b"abc").unwrap();
        let (sha, len) = blobs.hash_partial(token).unwrap();
        assert_eq!(len, 6);
        assert_eq!(sha, hex::encode(Sha256::digest(b"abcdef")));
        blobs.commit_partial(token, &sha).unwrap();
        assert_eq!(
            std::fs::read(blobs.blob_path(&sha).unwrap()).unwrap(),
            b"abcdef"
        );
        assert_eq!(blobs.write_blob(b"abcdef").unwrap(), sha);
    }

    #[test]
    fn names_that_are_not_hex_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        assert!(blobs.create_partial("../../etc/passwd").is_err());
        assert!(blobs.blob_path("../x").is_err());
    }

    #[test]
    fn sweep_keeps_live_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let live = "0123456789abcdef0123456789abcdef".to_string();
        let dead = "fedcba9876543210fedcba9876543210";
        blobs.create_partial(&live).unwrap();
        blobs.create_partial(dead).unwrap();
        assert_eq!(
            blobs.sweep_partials(std::slice::from_ref(&live)).unwrap(),
            1
        );
        assert!(blobs.write_chunk(&live, 0, b"x").is_ok());
        assert!(blobs.write_chunk(dead, 0, b"x").is_err());
    }
}
