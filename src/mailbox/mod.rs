//! The sync/handshake mailbox behind `SyncMailbox`: a short-lived drop box two devices use to
//! exchange a few small payloads under a session id both know, without either having a session.
//!
//! Each session id names one FIFO queue. A call with a payload appends it; a call without one
//! takes (removes) the oldest payload, and with `wait_for_data` waits for one, up to
//! [`MailboxConfig::max_wait_ms`]. Two parties that talk both ways use two ids (see [`link`] for
//! the device-linking convention), so nobody reads back their own payload.
//!
//! State lives in memory on purpose: a handshake lasts seconds to minutes, losing it on a restart
//! costs the user one retry, and nothing in it is worth a disk write. It is bounded in every
//! direction: payload size, payloads per session, live sessions, queued bytes, and time (unread
//! payloads expire [`MailboxConfig::ttl_secs`] after the session's last write). Expired sessions
//! are never served, and a sweep that runs at most every [`SWEEP_EVERY`] (on the next call)
//! reclaims them; the sweep visits each live session once, so its cost is bounded by
//! [`MailboxConfig::max_sessions`]. The wire rules are in `docs/PROTOCOL.md`, "Device linking
//! mailbox".

pub mod link;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Shortest session id: with the alphabet below, 32 characters hold at least 128 random bits
/// when the client makes them from a random source, too many to guess.
pub const MIN_SESSION_ID_LEN: usize = 32;
/// Longest session id.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// How often expired sessions are swept (at most; the sweep runs on the next call after this).
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The mailbox's bounds. Every one is finite, so a flood of calls costs bounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// Largest payload, bytes. A device-link request or cert is well under 1 KiB.
    pub max_payload_bytes: usize,
    /// Longest a `wait_for_data` call waits before answering with no payload, ms. Kept below the
    /// idle timeouts of common proxies so long polls are not cut off.
    pub max_wait_ms: u64,
    /// Unread payloads are dropped this long after their session's last write, seconds.
    pub ttl_secs: u64,
    /// Most payloads one session holds unread.
    pub max_payloads_per_session: usize,
    /// Most sessions alive at once (holding payloads or waited on).
    pub max_sessions: usize,
    /// Most payload bytes held across all sessions.
    pub max_queued_bytes: usize,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_wait_ms: 25_000,
            ttl_secs: 600,
            max_payloads_per_session: 8,
            max_sessions: 10_000,
            max_queued_bytes: 32 * 1024 * 1024,
        }
    }
}

impl MailboxConfig {
    /// Checks the values; the error names the setting and its rule.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=1024 * 1024).contains(&self.max_payload_bytes) {
            return Err("mailbox.max_payload_bytes must be 1 to 1048576".into());
        }
        if !(1..=60_000).contains(&self.max_wait_ms) {
            return Err("mailbox.max_wait_ms must be 1 to 60000".into());
        }
        if self.ttl_secs.saturating_mul(1000) <= self.max_wait_ms {
            return Err("mailbox.ttl_secs must be longer than mailbox.max_wait_ms".into());
        }
        if self.max_payloads_per_session == 0 || self.max_sessions == 0 {
            return Err(
                "mailbox.max_payloads_per_session and mailbox.max_sessions must be at least 1"
                    .into(),
            );
        }
        if self.max_queued_bytes < self.max_payload_bytes {
            return Err(
                "mailbox.max_queued_bytes must be at least mailbox.max_payload_bytes".into(),
            );
        }
        Ok(())
    }
}

/// Checks a session id: 32-128 characters of `A-Z a-z 0-9 - _`.
pub fn check_session_id(id: &str) -> Result<()> {
    let ok_len = (MIN_SESSION_ID_LEN..=MAX_SESSION_ID_LEN).contains(&id.len());
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(Error::invalid(
            "session_id",
            format!(
                "must be {MIN_SESSION_ID_LEN}-{MAX_SESSION_ID_LEN} characters of A-Z, a-z, 0-9, '-' and '_' (got {} characters)",
                id.chars().count()
            ),
        ))
    }
}

/// One session's queue.
#[derive(Debug)]
struct Session {
    payloads: VecDeque<Vec<u8>>,
    bytes: usize,
    /// When the unread payloads are dropped (last write + ttl).
    expires_at: Instant,
    /// Calls waiting on this session now; the session is kept while any wait.
    waiters: usize,
    /// Wakes the waiters when a payload arrives.
    notify: Arc<Notify>,
}

impl Session {
    fn new(now: Instant) -> Self {
        Self {
            payloads: VecDeque::new(),
            bytes: 0,
            expires_at: now,
            waiters: 0,
            notify: Arc::new(Notify::new()),
        }
    }

    /// A session with nothing to deliver and nobody waiting can go.
    fn is_idle(&self) -> bool {
        self.payloads.is_empty() && self.waiters == 0
    }
}

#[derive(Debug)]
struct State {
    sessions: HashMap<String, Session>,
    queued_bytes: usize,
    next_sweep: Instant,
}

impl State {
    /// Drops a session's payloads if they expired, so an expired payload is never served.
    fn expire(&mut self, id: &str, now: Instant) {
        if let Some(s) = self.sessions.get_mut(id)
            && !s.payloads.is_empty()
            && s.expires_at <= now
        {
            self.queued_bytes -= s.bytes;
            s.payloads.clear();
            s.bytes = 0;
        }
    }

    /// Drops every expired payload and every idle session. Visits each session once.
    fn sweep(&mut self, now: Instant) -> usize {
        let before = self.sessions.len();
        let mut freed = 0;
        self.sessions.retain(|_, s| {
            if !s.payloads.is_empty() && s.expires_at <= now {
                freed += s.bytes;
                s.payloads.clear();
                s.bytes = 0;
            }
            !s.is_idle()
        });
        self.queued_bytes -= freed;
        self.next_sweep = now + SWEEP_EVERY;
        before - self.sessions.len()
    }

    fn sweep_if_due(&mut self, now: Instant) -> bool {
        if now < self.next_sweep {
            return false;
        }
        let removed = self.sweep(now);
        if removed > 0 {
            tracing::debug!(removed, "mailbox sessions reclaimed");
        }
        true
    }

    /// The session `id`, made if absent (and there is room).
    fn session_or_new(&mut self, id: &str, now: Instant, max: usize) -> Result<&mut Session> {
        if !self.sessions.contains_key(id) {
            if self.sessions.len() >= max {
                self.sweep(now);
            }
            if self.sessions.len() >= max {
                return Err(Error::Exhausted(
                    "session_id: the server's mailbox holds as many sessions as it can; retry later"
                        .into(),
                ));
            }
            self.sessions.insert(id.to_owned(), Session::new(now));
        }
        Ok(self.sessions.get_mut(id).expect("present or just inserted"))
    }
}

/// The node's mailbox. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Mailbox {
    config: MailboxConfig,
    state: Arc<Mutex<State>>,
}

/// Counts one waiter on a session for as long as it lives; dropping it (the call ended, or the
/// client went away and tonic dropped the call) uncounts it and removes the session if idle.
struct WaitGuard {
    state: Arc<Mutex<State>>,
    id: String,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(s) = state.sessions.get_mut(&self.id) {
            s.waiters = s.waiters.saturating_sub(1);
            if s.is_idle() {
                state.sessions.remove(&self.id);
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent between statements (no panics inside the lock on input), so a
    // poisoned lock is still usable.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Mailbox {
    /// An empty mailbox with these bounds.
    pub fn new(config: MailboxConfig) -> Self {
        Self {
            config,
            state: Arc::new(Mutex::new(State {
                sessions: HashMap::new(),
                queued_bytes: 0,
                next_sweep: Instant::now() + SWEEP_EVERY,
            })),
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &MailboxConfig {
        &self.config
    }

    /// Runs the cleanup if it is due; returns whether it ran (callers prune related state then).
    pub fn sweep_if_due(&self) -> bool {
        self.sweep_if_due_at(Instant::now())
    }

    fn sweep_if_due_at(&self, now: Instant) -> bool {
        lock(&self.state).sweep_if_due(now)
    }

    /// How many sessions are alive (for tests and metrics).
    pub fn session_count(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    /// Appends `payload` to session `id` and wakes its waiters.
    pub fn put(&self, id: &str, payload: Vec<u8>) -> Result<()> {
        self.put_at(id, payload, Instant::now())
    }

    fn put_at(&self, id: &str, payload: Vec<u8>, now: Instant) -> Result<()> {
        check_session_id(id)?;
        let cfg = &self.config;
        if payload.is_empty() {
            return Err(Error::invalid("payload", "must not be empty"));
        }
        if payload.len() > cfg.max_payload_bytes {
            return Err(Error::invalid(
                "payload",
                format!(
                    "must be at most {} bytes (got {})",
                    cfg.max_payload_bytes,
                    payload.len()
                ),
            ));
        }
        let mut state = lock(&self.state);
        state.expire(id, now);
        if state.queued_bytes + payload.len() > cfg.max_queued_bytes {
            state.sweep(now);
            if state.queued_bytes + payload.len() > cfg.max_queued_bytes {
                return Err(Error::Exhausted(
                    "payload: the server's mailbox holds as many bytes as it can; retry later"
                        .into(),
                ));
            }
        }
        let ttl = Duration::from_secs(cfg.ttl_secs);
        let session = state.session_or_new(id, now, cfg.max_sessions)?;
        if session.payloads.len() >= cfg.max_payloads_per_session {
            let max = cfg.max_payloads_per_session;
            return Err(Error::Exhausted(format!(
                "session_id: this session already holds {max} unread payloads; take some first"
            )));
        }
        session.bytes += payload.len();
        let len = payload.len();
        session.payloads.push_back(payload);
        session.expires_at = now + ttl;
        session.notify.notify_waiters();
        state.queued_bytes += len;
        Ok(())
    }

    /// Takes the oldest payload of session `id`, if there is one now.
    pub fn take(&self, id: &str) -> Result<Option<Vec<u8>>> {
        check_session_id(id)?;
        Ok(self.take_checked(id, Instant::now()))
    }

    fn take_checked(&self, id: &str, now: Instant) -> Option<Vec<u8>> {
        let mut state = lock(&self.state);
        state.expire(id, now);
        let session = state.sessions.get_mut(id)?;
        let payload = session.payloads.pop_front()?;
        session.bytes -= payload.len();
        if session.is_idle() {
            state.sessions.remove(id);
        }
        state.queued_bytes -= payload.len();
        Some(payload)
    }

    /// Takes the oldest payload of session `id`, waiting up to `max_wait_ms` for one to arrive.
    /// `None` means nothing arrived in time: the client calls again.
    pub async fn take_or_wait(&self, id: &str) -> Result<Option<Vec<u8>>> {
        check_session_id(id)?;
        let deadline = Instant::now() + Duration::from_millis(self.config.max_wait_ms);
        let notify = {
            let mut state = lock(&self.state);
            let now = Instant::now();
            let session = state.session_or_new(id, now, self.config.max_sessions)?;
            session.waiters += 1;
            session.notify.clone()
        };
        let _guard = WaitGuard {
            state: self.state.clone(),
            id: id.to_owned(),
        };
        loop {
            // Registered before the check, so a put between the check and the wait still wakes
            // this call (`notify_waiters` only reaches enabled waiters).
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(payload) = self.take_checked(id, Instant::now()) {
                return Ok(Some(payload));
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests;
