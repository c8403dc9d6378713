//! What the load program measures and how it keeps that in bounded memory: latency histograms
//! (HdrHistogram: fixed size whatever the number of samples), the per-message "farthest
//! subscriber" tracker (a few bytes per message, whatever the number of subscribers), and readings
//! of another process (`/proc/PID`: CPU time, peak memory) and of a directory (bytes on disk).

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Largest latency a histogram holds, µs (an hour): anything slower is clamped to it, which the
/// report's `max_ms` would show.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Messages per lazily allocated tracker segment.
const SEGMENT: u64 = 1 << 16;
/// Segments a tracker may allocate: 2^26 (67 million) messages, far more than a run of minutes
/// sends, at 16 bytes each only for segments actually used.
const MAX_SEGMENTS: u64 = 1 << 10;
/// The kernel's clock tick for `/proc/PID/stat` times (`USER_HZ`): 100 on every Linux
/// architecture this runs on (it is part of the user-space ABI, unlike the kernel's `HZ`).
const USER_HZ: u64 = 100;

/// A latency histogram in microseconds, 3 significant digits, from 1 µs to an hour.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("constant bounds are valid")
}

/// A histogram's count, p50, p99, max and mean in milliseconds, for the report; all zero when
/// empty, so the report's shape is the same whatever happened.
pub fn summary_ms(histogram: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "p50_ms": ms(histogram.value_at_quantile(0.50)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "max_ms": ms(histogram.max()),
        "mean_ms": histogram.mean().round() / 1000.0,
    })
}

/// One message's deliveries: the slowest so far and how many subscribers saw it.
#[derive(Default)]
struct Slot {
    farthest_us: AtomicU64,
    seen: AtomicU32,
}

/// Delivery bookkeeping shared by every subscriber task, lock-free.
///
/// Each message carries its sequence number and its send time (µs since [`Self::baseline`]); a
/// subscriber that receives it calls [`Self::record`]. Per message we keep the latency to the
/// *farthest* subscriber (the maximum over subscribers) and how many subscribers saw it, so memory
/// is O(messages), never O(messages × subscribers); per subscriber, a count of messages received.
pub struct DeliveryTracker {
    baseline: Instant,
    segments: Box<[OnceLock<Box<[Slot]>>]>,
    received: Box<[AtomicU64]>,
    deliveries: AtomicU64,
}

impl DeliveryTracker {
    /// A tracker for `subscribers` streams; its clock starts now.
    pub fn new(subscribers: usize) -> Self {
        Self {
            baseline: Instant::now(),
            segments: (0..MAX_SEGMENTS).map(|_| OnceLock::new()).collect(),
            received: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            deliveries: AtomicU64::new(0),
        }
    }

    /// The most messages one run can track: senders stop there.
    pub fn capacity() -> u64 {
        SEGMENT * MAX_SEGMENTS
    }

    /// `at` as microseconds since the tracker was made: the send time a message carries.
    pub fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.baseline).as_micros()).unwrap_or(u64::MAX)
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        let segment = self.segments.get(usize::try_from(seq / SEGMENT).ok()?)?;
        let slots =
            segment.get_or_init(|| (0..SEGMENT).map(|_| Slot::default()).collect::<Box<[_]>>());
        slots.get(usize::try_from(seq % SEGMENT).ok()?)
    }

    /// Subscriber `subscriber` received message `seq`, sent at `sent_us`, just now. Sequence
    /// numbers beyond [`Self::capacity`] (never sent by this run) are ignored.
    pub fn record(&self, subscriber: usize, seq: u64, sent_us: u64) {
        let latency = self.micros(Instant::now()).saturating_sub(sent_us);
        let (Some(slot), Some(count)) = (self.slot(seq), self.received.get(subscriber)) else {
            return;
        };
        slot.farthest_us.fetch_max(latency, Ordering::Relaxed);
        slot.seen.fetch_add(1, Ordering::Relaxed);
        count.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries recorded so far, over every subscriber.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// How many subscribers saw all `sent` messages, and the fewest and most any one saw.
    pub fn per_subscriber(&self, sent: u64) -> (usize, u64, u64) {
        let counts = self.received.iter().map(|c| c.load(Ordering::Relaxed));
        let complete = counts.clone().filter(|&c| c == sent).count();
        (
            complete,
            counts.clone().min().unwrap_or(0),
            counts.max().unwrap_or(0),
        )
    }

    /// Over messages `0..sent`: how many every one of the `subscribers` saw, and the histogram of
    /// those messages' latency to the farthest subscriber. A message some subscriber missed has no
    /// farthest latency, so it is counted out rather than guessed.
    pub fn farthest(&self, sent: u64, subscribers: usize) -> (u64, Histogram<u64>) {
        let mut histogram = latency_histogram();
        let mut seen_by_all = 0;
        for seq in 0..sent {
            let Some(slot) = self.slot(seq) else { break };
            if usize::try_from(slot.seen.load(Ordering::Relaxed)).ok() == Some(subscribers) {
                seen_by_all += 1;
                histogram.saturating_record(slot.farthest_us.load(Ordering::Relaxed).max(1));
            }
        }
        (seen_by_all, histogram)
    }
}

/// A reading of one process from `/proc/PID`.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// User plus system CPU time so far, ms.
    pub cpu_ms: u64,
    /// Peak resident memory since the process started (`VmHWM`), KiB.
    pub vm_hwm_kib: u64,
    /// Resident memory now (`VmRSS`), KiB.
    pub vm_rss_kib: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; `pid` "self" reads this process. The error names
/// the file, so a wrong `--pid` says so.
pub fn read_process(pid: &str) -> Result<ProcessSample> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path).with_context(|| format!("read {stat_path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces and ')': the fields after
    // the last ')' start at field 3, so utime (14) and stime (15) are the 12th and 13th of them.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{stat_path}: no ')' after the command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("{stat_path}: field {} is not a number", i + 3))
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;

    let status_path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&status_path).with_context(|| format!("read {status_path}"))?;
    let kib = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{status_path}: no {name} line"))
    };
    Ok(ProcessSample {
        cpu_ms: cpu_ticks * 1000 / USER_HZ,
        vm_hwm_kib: kib("VmHWM:")?,
        vm_rss_kib: kib("VmRSS:")?,
    })
}

/// Total length of the regular files under `dir`, recursively (symbolic links are not followed).
/// A file that disappears while we look (SQLite's journal) counts as empty.
pub fn directory_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries =
            std::fs::read_dir(&next).with_context(|| format!("list {}", next.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("list {}", next.display()))?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("stat {}", entry.path().display()));
                }
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
