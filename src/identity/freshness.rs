//! The clock-skew window for signed requests.
//!
//! A signed request carries its own timestamp. Refusing timestamps outside a window bounds how long
//! the replay cache has to remember a signature: a signature older than the window is refused for
//! its age, so the cache only keeps entries for the window's length.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of every timestamp in the protocol.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A timestamp outside the allowed window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleTimestamp {
    /// Too old.
    #[error("is {behind_ms} ms in the past; the allowed clock skew is {window_ms} ms")]
    Past {
        /// How far behind the server's clock.
        behind_ms: u64,
        /// The window.
        window_ms: u64,
    },
    /// Too far ahead.
    #[error("is {ahead_ms} ms in the future; the allowed clock skew is {window_ms} ms")]
    Future {
        /// How far ahead of the server's clock.
        ahead_ms: u64,
        /// The window.
        window_ms: u64,
    },
}

/// Accepts `timestamp` only if it is within `window_ms` of `now`, either way. The timestamp comes
/// from outside and may be any `u64`: the sums saturate, so a timestamp near `u64::MAX` is "in the
/// future", never an overflow.
pub fn check(timestamp: u64, now: u64, window_ms: u64) -> Result<(), StaleTimestamp> {
    if timestamp.saturating_add(window_ms) < now {
        Err(StaleTimestamp::Past {
            behind_ms: now - timestamp,
            window_ms,
        })
    } else if timestamp > now.saturating_add(window_ms) {
        Err(StaleTimestamp::Future {
            ahead_ms: timestamp - now,
            window_ms,
        })
    } else {
        Ok(())
    }
}

/// Accepts the `timestamp` of a statement delivered late by design (through another server's
/// outbox, which retries): at most `skew_ms` ahead of `now`, at most `max_age_ms` behind it. The
/// refusal is the rule broken, in words; `expiring` names what expires ("invites").
pub fn check_delivered(
    timestamp: u64,
    now: u64,
    skew_ms: u64,
    max_age_ms: u64,
    expiring: &str,
) -> Result<(), String> {
    if timestamp > now.saturating_add(skew_ms) {
        Err(format!(
            "is in the future beyond the allowed clock skew of {skew_ms} ms"
        ))
    } else if timestamp.saturating_add(max_age_ms) < now {
        Err(format!("is older than {max_age_ms} ms; {expiring} expire"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_inclusive_both_ways() {
        assert!(check(1000, 1000, 100).is_ok());
        assert!(check(900, 1000, 100).is_ok());
        assert!(check(1100, 1000, 100).is_ok());
        assert!(matches!(
            check(899, 1000, 100),
            Err(StaleTimestamp::Past { .. })
        ));
        assert!(matches!(
            check(1101, 1000, 100),
            Err(StaleTimestamp::Future { .. })
        ));
        assert!(check(u64::MAX / 2, 1000, 100).is_err());
        // Timestamps from outside may be any u64 (found while writing the fuzz targets: these
        // overflowed, a panic in debug builds).
        assert!(matches!(
            check(u64::MAX, 1000, 100),
            Err(StaleTimestamp::Future { .. })
        ));
        assert!(matches!(check(u64::MAX - 50, u64::MAX - 10, 100), Ok(())));
    }
}
