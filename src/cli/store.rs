//! The CLI's identity file: the keys ([`IdentityFile`]) plus one saved session per server and the
//! user's remembered homeserver.
//!
//! A user of node B who joins a guild hosted on node A holds two sessions: one on B (their
//! homeserver) and one on A (the host, docs/PROTOCOL.md §11). Keeping only one would make every
//! switch a fresh login, and a join without the homeserver would make a second account on A.
//!
//! Compatibility: files written before this kept a single session in the top-level
//! `access_token`, `refresh_token` and `server` fields. Those are still read (as a session for
//! `server`, and `server` as the homeserver when none is remembered), and still written (as the
//! homeserver's session), so an older `guildhall` keeps working with the same file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guildhall::client::IdentityFile;
use serde::{Deserialize, Serialize};

use super::same_server;

/// One server's saved session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SavedSession {
    /// The server's gRPC address as the user dials it.
    pub(crate) server: String,
    /// The access token sent on every call.
    pub(crate) access_token: String,
    /// The refresh token that buys a new pair when the access token expires.
    pub(crate) refresh_token: String,
}

/// The identity file as the CLI reads and writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CliFile {
    /// The keys, and the legacy single-session fields.
    #[serde(flatten)]
    pub(crate) keys: IdentityFile,
    /// The user's homeserver (its gRPC address as dialled): where they registered, the server
    /// that vouches for them when they join guilds hosted elsewhere, and the default `--server`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) homeserver: String,
    /// Every server the user holds a session on, the homeserver included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) sessions: Vec<SavedSession>,
}

impl CliFile {
    /// A file for freshly made keys, with no session yet.
    pub(crate) fn new(keys: IdentityFile) -> Self {
        let mut file = Self {
            keys,
            homeserver: String::new(),
            sessions: Vec::new(),
        };
        file.adopt_legacy();
        file
    }

    /// Reads `path`, with a hint for a person who has no identity yet.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading {} (run `guildhall keygen` first)", path.display())
        })?;
        let file: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a guildhall identity file", path.display()))?;
        Ok(Self::new_from(file))
    }

    fn new_from(mut file: Self) -> Self {
        file.adopt_legacy();
        file
    }

    /// Folds the top-level single session (an old file's, or one an older `guildhall` wrote
    /// since) into the list: it is the newest word for its server.
    fn adopt_legacy(&mut self) {
        let legacy = SavedSession {
            server: self.keys.server.clone(),
            access_token: self.keys.access_token.clone(),
            refresh_token: self.keys.refresh_token.clone(),
        };
        if legacy.server.is_empty() {
            return;
        }
        if self.homeserver.is_empty() {
            self.homeserver = legacy.server.clone();
        }
        if !legacy.access_token.is_empty() {
            self.put(legacy);
        }
    }

    /// Writes the file (readable by its owner only); the homeserver's session also goes in the
    /// top-level fields, for older readers.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut out = self.clone();
        let home = self.session(&self.homeserver).cloned().unwrap_or_default();
        out.keys.server = home.server;
        out.keys.access_token = home.access_token;
        out.keys.refresh_token = home.refresh_token;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&out)?;
        guildhall::identity::key_file::write_private(path, &text)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The saved session for `server`, if any.
    pub(crate) fn session(&self, server: &str) -> Option<&SavedSession> {
        if server.is_empty() {
            return None;
        }
        self.sessions
            .iter()
            .find(|s| same_server(&s.server, server))
    }

    /// Saves `session`, replacing the one for its server.
    pub(crate) fn put(&mut self, session: SavedSession) {
        match self
            .sessions
            .iter_mut()
            .find(|s| same_server(&s.server, &session.server))
        {
            Some(old) => *old = session,
            None => self.sessions.push(session),
        }
    }

    /// Reads the file afresh, applies `change` and writes it back, holding the file's lock, so a
    /// session another `guildhall` saved meanwhile (a running `tail` that refreshed) is kept
    /// rather than overwritten with an older copy.
    pub(crate) async fn update(path: &Path, change: impl FnOnce(&mut CliFile)) -> Result<()> {
        let _held = FileLock::take(path).await?;
        let mut file = Self::load(path)?;
        change(&mut file);
        file.save(path)
    }

    /// Whether `server` is the remembered homeserver.
    pub(crate) fn is_home(&self, server: &str) -> bool {
        !self.homeserver.is_empty() && same_server(&self.homeserver, server)
    }
}

/// How long a command waits for another `guildhall` to finish with the identity file.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An exclusive hold, across processes, on an identity file's sessions (an OS file lock on
/// `<identity>.lock`, released when this is dropped or the process ends).
///
/// Why: spending a refresh token twice ends the whole login (docs/PROTOCOL.md §5). Two commands
/// that find the access token expired at the same moment (a `tail` and a `send`) must not both
/// spend it: the second waits here, then finds the new pair the first saved.
pub(crate) struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Takes the lock of the identity file at `path`, waiting at most [`LOCK_WAIT`].
    pub(crate) async fn take(path: &Path) -> Result<Self> {
        let lock_path = lock_path(path);
        tokio::task::spawn_blocking(move || Self::take_blocking(&lock_path))
            .await
            .context("waiting for the identity file's lock")?
    }

    fn take_blocking(lock_path: &Path) -> Result<Self> {
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                    "another guildhall has held {} for {LOCK_WAIT:?}; if none is running, \
                     try again",
                    lock_path.display()
                ),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", lock_path.display()));
                }
            }
        }
    }
}

/// The lock file beside an identity file.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall::client::ClientIdentity;

    fn keys() -> IdentityFile {
        ClientIdentity::generate("cli", 1).to_file()
    }

    #[tokio::test]
    async fn the_lock_is_held_by_one_taker_at_a_time_and_updates_keep_each_other() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("id.json");
        CliFile::new(keys()).save(&path).expect("save");
        let held = FileLock::take(&path).await.expect("first");
        // The same process opens the lock file again: an OS file lock excludes it too.
        let second = std::fs::OpenOptions::new()
            .write(true)
            .open(lock_path(&path))
            .expect("open");
        assert!(matches!(
            second.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);
        second.try_lock().expect("free once dropped");
        drop(second);
        // Two updates, each from a fresh read: both sessions are kept.
        for server in ["http://a", "http://b"] {
            CliFile::update(&path, |f| {
                f.put(SavedSession {
                    server: server.into(),
                    access_token: "t".into(),
                    refresh_token: "r".into(),
                })
            })
            .await
            .expect("update");
        }
        assert_eq!(CliFile::load(&path).expect("load").sessions.len(), 2);
    }

    #[test]
    fn an_old_single_session_file_reads_as_the_home_session() {
        let mut old = keys();
        old.server = "http://b:7400".into();
        old.access_token = "a1".into();
        old.refresh_token = "r1".into();
        let text = serde_json::to_string(&old).expect("json");
        let file = CliFile::new_from(serde_json::from_str(&text).expect("reads"));
        assert_eq!(file.homeserver, "http://b:7400");
        let home = file.session("http://b:7400/").expect("the old session");
        assert_eq!(
            (home.access_token.as_str(), home.refresh_token.as_str()),
            ("a1", "r1")
        );
    }

    #[test]
    fn sessions_for_two_servers_survive_a_round_trip_and_old_readers_see_home() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("id.json");
        let mut file = CliFile::new(keys());
        file.homeserver = "http://b".into();
        for (server, token) in [("http://b", "home"), ("http://a", "host")] {
            file.put(SavedSession {
                server: server.into(),
                access_token: token.into(),
                refresh_token: format!("{token}-r"),
            });
        }
        file.put(SavedSession {
            server: "http://a/".into(),
            access_token: "host2".into(),
            refresh_token: "host2-r".into(),
        });
        file.save(&path).expect("save");
        let back = CliFile::load(&path).expect("load");
        assert_eq!(back.sessions.len(), 2, "{:?}", back.sessions);
        assert_eq!(
            back.session("http://a").expect("host").access_token,
            "host2"
        );
        assert!(back.is_home("http://b/"));
        let old = IdentityFile::load(&path).expect("an older reader");
        assert_eq!(
            (old.server.as_str(), old.access_token.as_str()),
            ("http://b", "home")
        );
    }
}
