//! Server settings and the rate limits they set.
//!
//! Every limit in `ServerSettings` is a count per rate window (`rate_limit_window_secs`, one minute
//! by default), kept per user for authenticated calls and per client address for the others; 0
//! turns a limit off. A request over its limit gets `RESOURCE_EXHAUSTED` naming the setting, with
//! `retry-after-ms` metadata saying when a retry can succeed. Limits refill smoothly (a bucket of
//! the limit's size, refilled over the window). Settings an admin changes are stored and survive
//! restarts; the rest keep the defaults below.
//!
//! The buckets survive restarts too: [`Limits::save`] writes every bucket that is not full (every
//! [`SAVE_EVERY`] and at shutdown), and [`Limits::load`] restores them, so stopping, restarting
//! or crashing the node hands nobody a fresh allowance (a crash forgets at most the last
//! [`SAVE_EVERY`] of counting).

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::{Error, Result};
use crate::store::{Store, settings as db};

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Messages, typing and reactions sent, per user.
    Message,
    /// Registrations, per client address.
    Register,
    /// Logins, per client address.
    Login,
    /// Invites made and joins, per user (joins: per client address).
    Invite,
    /// Invite previews and other lookups of what a server has, per client address.
    Discovery,
    /// Device-linking mailbox calls, per session id.
    SyncMailbox,
    /// Pings, per client address.
    Ping,
}

/// The node's settings (the `ServerSettings` message). The config file's `[settings]` table gives
/// the starting values; admins' changes (stored) take precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Largest upload, bytes.
    pub max_upload_size: u32,
    /// Messages per window per user.
    pub message_rate_limit: u32,
    /// Longest message text, characters.
    pub max_message_length: u32,
    /// Registrations per window per address.
    pub register_rate_limit: u32,
    /// Logins per window per address.
    pub login_rate_limit: u32,
    /// Invites and joins per window.
    pub invite_rate_limit: u32,
    /// Discovery lookups per window per address.
    pub discovery_rate_limit: u32,
    /// Mailbox calls per window per session.
    pub sync_mailbox_rate_limit: u32,
    /// Pings per window per address.
    pub ping_rate_limit: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_upload_size: 25 * 1024 * 1024,
            message_rate_limit: 120,
            max_message_length: 4000,
            register_rate_limit: 10,
            login_rate_limit: 30,
            invite_rate_limit: 30,
            discovery_rate_limit: 60,
            sync_mailbox_rate_limit: 60,
            ping_rate_limit: 120,
        }
    }
}

/// The settings by name, for storage and validation: (name, value, allowed range).
fn fields(s: &mut Settings) -> [(&'static str, &mut u32, u32, u32); 9] {
    [
        ("max_upload_size", &mut s.max_upload_size, 1024, u32::MAX),
        (
            "message_rate_limit",
            &mut s.message_rate_limit,
            0,
            1_000_000,
        ),
        ("max_message_length", &mut s.max_message_length, 1, 100_000),
        (
            "register_rate_limit",
            &mut s.register_rate_limit,
            0,
            1_000_000,
        ),
        ("login_rate_limit", &mut s.login_rate_limit, 0, 1_000_000),
        ("invite_rate_limit", &mut s.invite_rate_limit, 0, 1_000_000),
        (
            "discovery_rate_limit",
            &mut s.discovery_rate_limit,
            0,
            1_000_000,
        ),
        (
            "sync_mailbox_rate_limit",
            &mut s.sync_mailbox_rate_limit,
            0,
            1_000_000,
        ),
        ("ping_rate_limit", &mut s.ping_rate_limit, 0, 1_000_000),
    ]
}

impl Settings {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut copy = *self;
        for (name, value, min, max) in fields(&mut copy) {
            if !(min..=max).contains(value) {
                return Err(format!("{name} must be {min} to {max}"));
            }
        }
        Ok(())
    }

    /// These settings with every rate limit turned off (tests and load programs).
    pub fn unlimited(self) -> Self {
        Self {
            message_rate_limit: 0,
            register_rate_limit: 0,
            login_rate_limit: 0,
            invite_rate_limit: 0,
            discovery_rate_limit: 0,
            sync_mailbox_rate_limit: 0,
            ping_rate_limit: 0,
            ..self
        }
    }
}

/// A change to some settings: (name, new value).
pub type SettingsChange = Vec<(&'static str, u32)>;

/// How often the buckets are saved: what a crash can forget.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The buckets of one keyed limiter, readable so they can be saved and restored: per key, the
/// GCRA "theoretical arrival time" in nanoseconds since the limiter was made (0: never used),
/// updated the way governor's own in-memory store does (compare and swap).
#[derive(Debug, Clone, Default)]
struct Buckets(Arc<DashMap<String, AtomicU64>>);

impl StateStore for Buckets {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> std::result::Result<T, E>
    where
        F: Fn(Option<Nanos>) -> std::result::Result<(T, Nanos), E>,
    {
        let measure = |slot: &AtomicU64| {
            let mut prev = slot.load(Ordering::Acquire);
            loop {
                let (value, next) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
                match slot.compare_exchange_weak(
                    prev,
                    next.as_u64(),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(value),
                    Err(now) => prev = now,
                }
            }
        };
        if let Some(slot) = self.0.get(key) {
            return measure(&slot);
        }
        let slot = self.0.entry(key.clone()).or_default();
        measure(&slot)
    }
}

impl ShrinkableKeyedStateStore<String> for Buckets {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0
            .retain(|_, tat| tat.load(Ordering::Relaxed) > drop_below.as_u64());
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One limit's limiter, its buckets, and when it was made (ms since the epoch): the buckets count
/// from then, so a saved bucket is written as a wall-clock time and read back against the new
/// limiter's start.
struct Limiter {
    limiter: RateLimiter<String, Buckets, DefaultClock, NoOpMiddleware<ClockInstant>>,
    buckets: Buckets,
    made_at_ms: u64,
}

impl Limiter {
    fn new(quota: Quota) -> Self {
        let buckets = Buckets::default();
        let made_at_ms = wall_ms();
        Self {
            limiter: RateLimiter::new(quota, buckets.clone(), DefaultClock::default()),
            buckets,
            made_at_ms,
        }
    }

    /// The buckets not full at `now` (ms since the epoch): (key, when full again).
    fn not_full(&self, now: u64) -> Vec<(String, u64)> {
        self.buckets
            .0
            .iter()
            .filter_map(|entry| {
                let tat_ms = entry.value().load(Ordering::Relaxed) / 1_000_000;
                let until = self.made_at_ms.saturating_add(tat_ms);
                (until > now).then(|| (entry.key().clone(), until))
            })
            .collect()
    }

    /// Puts back a bucket saved as full again at `until` (ms since the epoch).
    fn restore(&self, key: String, until: u64) {
        let tat = until
            .saturating_sub(self.made_at_ms)
            .saturating_mul(1_000_000);
        if tat > 0 {
            self.buckets.0.insert(key, AtomicU64::new(tat));
        }
    }
}

type ClockInstant = <DefaultClock as Clock>::Instant;

/// Now, in ms since the epoch.
fn wall_ms() -> u64 {
    crate::identity::freshness::now_ms()
}

struct State {
    settings: Settings,
    limiters: HashMap<Limit, Arc<Limiter>>,
}

/// How often, at most, refusals over one limit are logged: a flood of refused requests must not
/// become a flood of log lines. Refusals in between are counted into the next line (and always
/// into the `guildhall_rate_limited_total` metric).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// When refusals over a limit were last logged, and how many went unlogged since.
#[derive(Debug, Default)]
struct RefusalLog(Mutex<HashMap<Limit, (Instant, u64)>>);

impl RefusalLog {
    /// Logs a refusal over `limit` by `key` at INFO, unless one was logged less than
    /// [`REFUSAL_LOG_EVERY`] before `now` (then it is only counted). Answers whether it logged,
    /// and how many refusals went unlogged before this one.
    fn refused(&self, limit: Limit, key: &str, now: Instant) -> Option<u64> {
        let mut log = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match log.get_mut(&limit) {
            Some((last, suppressed)) if now.duration_since(*last) < REFUSAL_LOG_EVERY => {
                *suppressed += 1;
                None
            }
            entry => {
                let suppressed = entry.map_or(0, |(_, n)| *n);
                log.insert(limit, (now, 0));
                tracing::info!(
                    limit = setting_name(limit),
                    key,
                    unlogged_since_last = suppressed,
                    "request refused over a rate limit (logged at most every {} s per limit)",
                    REFUSAL_LOG_EVERY.as_secs()
                );
                Some(suppressed)
            }
        }
    }
}

/// The node's settings and its rate limiters.
pub struct Limits {
    store: Store,
    window: Duration,
    state: RwLock<State>,
    refusals: RefusalLog,
    /// Whether the last save may have left rows; an idle node (every bucket full) then skips
    /// its saves instead of writing an empty table every few seconds.
    saved_rows: AtomicBool,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings())
            .finish()
    }
}

fn limiters(s: &Settings, window: Duration) -> HashMap<Limit, Arc<Limiter>> {
    let per_window = [
        (Limit::Message, s.message_rate_limit),
        (Limit::Register, s.register_rate_limit),
        (Limit::Login, s.login_rate_limit),
        (Limit::Invite, s.invite_rate_limit),
        (Limit::Discovery, s.discovery_rate_limit),
        (Limit::SyncMailbox, s.sync_mailbox_rate_limit),
        (Limit::Ping, s.ping_rate_limit),
    ];
    per_window
        .into_iter()
        .filter_map(|(limit, n)| {
            let n = NonZeroU32::new(n)?;
            let period = (window / n.get()).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period)?.allow_burst(n);
            Some((limit, Arc::new(Limiter::new(quota))))
        })
        .collect()
}

impl Limits {
    /// Loads the stored settings over `defaults` (the config's), and the buckets saved last;
    /// `window` is the rate window.
    pub async fn load(store: Store, window: Duration, defaults: Settings) -> Result<Self> {
        let stored = store.read(db::load).await?;
        let now = wall_ms();
        let buckets = store.read(move |c| db::load_rate_limits(c, now)).await?;
        let mut settings = defaults;
        for (key, value) in stored {
            if let Some((_, slot, min, max)) = fields(&mut settings)
                .into_iter()
                .find(|(name, ..)| *name == key)
            {
                let value = u32::try_from(value).unwrap_or(*slot);
                if (min..=max).contains(&value) {
                    *slot = value;
                }
            }
        }
        let limiters = limiters(&settings, window);
        let mut restored = 0usize;
        for (name, key, until) in buckets {
            let limiter = ALL
                .iter()
                .find(|l| setting_name(**l) == name)
                .and_then(|l| limiters.get(l));
            if let Some(limiter) = limiter {
                limiter.restore(key, until);
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::info!(buckets = restored, "rate-limit buckets restored");
        }
        Ok(Self {
            state: RwLock::new(State { limiters, settings }),
            store,
            window,
            refusals: RefusalLog::default(),
            saved_rows: AtomicBool::new(true),
        })
    }

    /// Saves every bucket that is not full, replacing the last save (nothing to write when every
    /// bucket was full then and is now); [`Limits::load`] restores them. Returns how many it
    /// saved.
    pub async fn save(&self) -> Result<usize> {
        let now = wall_ms();
        let buckets: Vec<(&'static str, String, u64)> = {
            let state = self
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state
                .limiters
                .iter()
                .flat_map(|(limit, limiter)| {
                    limiter
                        .not_full(now)
                        .into_iter()
                        .map(|(key, until)| (setting_name(*limit), key, until))
                })
                .collect()
        };
        let saved = buckets.len();
        if saved == 0 && !self.saved_rows.load(Ordering::Relaxed) {
            return Ok(0);
        }
        self.store
            .write(move |tx| db::save_rate_limits(tx, &buckets))
            .await?;
        self.saved_rows.store(saved > 0, Ordering::Relaxed);
        Ok(saved)
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .settings
    }

    /// Validates and stores a change, then applies it (new limits start with full buckets).
    pub async fn update(&self, change: SettingsChange) -> Result<Settings> {
        let mut next = self.settings();
        let mut stored = Vec::with_capacity(change.len());
        for (name, value) in change {
            let Some((_, slot, min, max)) =
                fields(&mut next).into_iter().find(|(n, ..)| *n == name)
            else {
                return Err(Error::invalid(name, "is not a setting"));
            };
            if !(min..=max).contains(&value) {
                return Err(Error::invalid(
                    name,
                    format!(
                        "must be {min} to {max}{}",
                        if min == 0 {
                            " (0 turns the limit off)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            *slot = value;
            stored.push((name.to_owned(), i64::from(value)));
        }
        self.store.write(move |c| db::save(c, &stored)).await?;
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.limiters = limiters(&next, self.window);
        state.settings = next;
        Ok(next)
    }

    /// Counts one request by `key` against `limit`; refuses it when over.
    pub fn check(&self, limit: Limit, key: &str) -> Result<()> {
        let limiter = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .limiters
            .get(&limit)
            .cloned();
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| {
                self.store.metrics().rate_limited(setting_name(limit));
                self.refusals.refused(limit, key, Instant::now());
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Error::ResourceExhausted {
                    what: setting_name(limit).to_owned(),
                    retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
                }
            })
    }

    /// Forgets the keys of every limiter whose bucket has refilled (idle for a window), so
    /// limits keyed by client-chosen values (mailbox session ids) keep bounded memory.
    pub fn retain_recent(&self) {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for limiter in state.limiters.values() {
            limiter.limiter.retain_recent();
        }
    }

    /// The longest message text allowed now.
    pub fn max_message_length(&self) -> usize {
        self.settings().max_message_length as usize
    }
}

/// Every limit.
const ALL: [Limit; 7] = [
    Limit::Message,
    Limit::Register,
    Limit::Login,
    Limit::Invite,
    Limit::Discovery,
    Limit::SyncMailbox,
    Limit::Ping,
];

/// The `ServerSettings` field that sets a limit.
fn setting_name(limit: Limit) -> &'static str {
    match limit {
        Limit::Message => "message_rate_limit",
        Limit::Register => "register_rate_limit",
        Limit::Login => "login_rate_limit",
        Limit::Invite => "invite_rate_limit",
        Limit::Discovery => "discovery_rate_limit",
        Limit::SyncMailbox => "sync_mailbox_rate_limit",
        Limit::Ping => "ping_rate_limit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_per_interval_per_limit() {
        let log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.refused(Limit::Login, "203.0.113.1", start), Some(0));
        assert_eq!(log.refused(Limit::Login, "203.0.113.2", start), None);
        assert_eq!(
            log.refused(Limit::Login, "203.0.113.3", start + Duration::from_secs(1)),
            None
        );
        // Another limit has its own interval.
        assert_eq!(log.refused(Limit::Ping, "203.0.113.1", start), Some(0));
        // The next line after the interval says how many went unlogged.
        assert_eq!(
            log.refused(Limit::Login, "203.0.113.4", start + REFUSAL_LOG_EVERY),
            Some(2)
        );
        assert_eq!(
            log.refused(Limit::Login, "203.0.113.5", start + REFUSAL_LOG_EVERY),
            None
        );
    }
}
