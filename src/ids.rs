//! Time-ordered ids for guilds, channels, roles and messages.
//!
//! An id is `(milliseconds since the epoch << 16) | sequence`, written as a decimal string. Ids
//! from one node increase strictly, so history can be paged by id and two messages sent in the
//! same millisecond still have an order. The generator never goes backwards, even if the clock
//! does: it continues from the last id it handed out (seeded from storage at start).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::identity::freshness::now_ms;

/// Bits below the timestamp: 65,536 ids per millisecond before borrowing from the next one.
const SEQUENCE_BITS: u32 = 16;

/// Hands out strictly increasing, time-ordered ids.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator that will only hand out ids above `floor` (the largest id already stored).
    pub fn starting_after(floor: u64) -> Self {
        Self {
            last: AtomicU64::new(floor),
        }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        let candidate = now_ms() << SEQUENCE_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = candidate.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// The next id as the decimal string used in the API.
    pub fn next_string(&self) -> String {
        self.next().to_string()
    }
}

/// When an id was made (ms since the epoch).
pub fn timestamp_of(id: u64) -> u64 {
    id >> SEQUENCE_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_time_ordered() {
        let ids = IdGenerator::default();
        let mut last = 0;
        for _ in 0..100_000 {
            let id = ids.next();
            assert!(id > last);
            last = id;
        }
        assert!(timestamp_of(last) <= now_ms() + 2);
        let after = IdGenerator::starting_after(u64::MAX / 2);
        assert!(after.next() > u64::MAX / 2);
    }
}
