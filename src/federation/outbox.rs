//! The durable outbox: server calls that must arrive (homeserver moves, device revocations, and
//! whatever else other parts queue) are written to SQLite in the same transaction as the change
//! that owes them, then delivered by one worker as signed server calls, until acknowledged.
//!
//! - **Generic.** A queued call is a destination address, a GuildHall method name and the encoded
//!   request message ([`crate::store::outbox::enqueue`]); the worker sends the bytes as they are
//!   ([`super::raw_codec`]), signed like every server call ([`super::FederationClient`]).
//! - **In order per destination.** Only a destination's oldest queued call (its head) is ever in
//!   flight; a failing head holds back only its own destination. Up to
//!   [`OutboxConfig::concurrency`] destinations are served at once.
//! - **Retries.** A failed attempt is retried after a capped exponential backoff with jitter
//!   (`base · 2^attempts`, at most `max_delay_ms`, times a random factor in [0.5, 1]); the due time
//!   is stored, so retries continue across restarts.
//! - **Acknowledged** means the peer answered `OK`, or `ALREADY_EXISTS` (the peer had already
//!   applied it: receivers of idempotent calls answer that to a repeat, e.g. after a lost answer).
//! - **Given up** (moved to `federation_outbox_failed`, logged at `warn`, counted in
//!   [`Outbox::stats`]) when the peer refuses definitively ([`is_definitive`]: the call itself is
//!   wrong and would be refused again), or when a call has been failing for longer than
//!   `give_up_after_secs`. Everything else (unreachable, `UNAVAILABLE`, timeouts, `INTERNAL`,
//!   `RESOURCE_EXHAUSTED`, `UNAUTHENTICATED` from the peer's call verifier, which covers clock
//!   skew and key discovery) is retried.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::FederationClient;
use super::client::SigningService;
use super::raw_codec::RawCodec;
use crate::identity::freshness::now_ms;
use crate::store::outbox::{self as table, Delivery, FailedDelivery, OutboxStats};
use crate::store::{StorageError, Store};

/// The longest the worker sleeps without looking at the queue (a safety net: every enqueue also
/// wakes it).
const IDLE_POLL: Duration = Duration::from_secs(30);

/// The outbox's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Delay before the first retry, ms; doubles with each failed attempt.
    pub base_delay_ms: u64,
    /// Longest delay between two attempts, ms.
    pub max_delay_ms: u64,
    /// A call still failing this long after it was queued is given up, seconds.
    pub give_up_after_secs: u64,
    /// Most destinations served at once.
    pub concurrency: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            base_delay_ms: 1_000,
            max_delay_ms: 10 * 60 * 1000,
            give_up_after_secs: 7 * 24 * 60 * 60,
            concurrency: 16,
        }
    }
}

impl OutboxConfig {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.base_delay_ms == 0 || self.max_delay_ms < self.base_delay_ms {
            return Err((
                "outbox.base_delay_ms / outbox.max_delay_ms",
                "base must be > 0 and max ≥ base".into(),
            ));
        }
        if self.give_up_after_secs == 0 || self.concurrency == 0 {
            return Err((
                "outbox.give_up_after_secs / outbox.concurrency",
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}

/// Whether a peer's answer means the call would be refused again (so retrying is pointless):
/// the request is malformed, not allowed, not applicable to the peer's state, about something the
/// peer does not know, a method the peer does not serve, or carries a user signature that does not
/// verify. `UNAUTHENTICATED` from the peer's call verifier (messages starting with a
/// `guildhall-` header name: clock skew, nonce, the peer not reaching this node for its key) is
/// about the call, not its content, and is retried.
pub fn is_definitive(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::OutOfRange
        | Code::Unimplemented => true,
        Code::Unauthenticated => !status.message().starts_with("guildhall-"),
        _ => false,
    }
}

/// The delay before attempt `attempts + 1`: `base · 2^attempts`, capped, times `jitter` ∈ [0.5, 1].
pub fn backoff_ms(config: &OutboxConfig, attempts: u32, jitter: f64) -> u64 {
    let exp = config
        .base_delay_ms
        .saturating_mul(1u64.checked_shl(attempts.min(62)).unwrap_or(u64::MAX))
        .min(config.max_delay_ms);
    let factor = jitter.clamp(0.5, 1.0);
    // Delays are far below 2^53 ms, so the float round trip is exact enough.
    ((exp as f64) * factor) as u64
}

fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 1.0;
    }
    0.5 + f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX) / 2.0
}

/// What one attempt came to.
enum Outcome {
    Acknowledged,
    Retry(String),
    Refused(String),
}

/// The outbox: queue calls, wake the worker, read its counts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
    client: FederationClient,
    config: OutboxConfig,
    wake: Arc<Notify>,
}

impl Outbox {
    /// An outbox sending through `client`, with `config`'s policy.
    pub fn new(store: Store, client: FederationClient, config: OutboxConfig) -> Self {
        Self {
            store,
            client,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Tells the worker that something was queued (call after the enqueuing write committed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues one call on its own and wakes the worker. Callers with a change to commit should
    /// use [`crate::store::outbox::enqueue`] inside their own write instead, then [`Self::wake`].
    pub async fn enqueue(
        &self,
        destination: &str,
        method: &str,
        body: Vec<u8>,
    ) -> Result<i64, StorageError> {
        let id = self
            .store
            .enqueue_delivery(destination.to_owned(), method.to_owned(), body, now_ms())
            .await?;
        self.wake();
        Ok(id)
    }

    /// Pending, destinations and given-up counts.
    pub async fn stats(&self) -> Result<OutboxStats, StorageError> {
        self.store.read(table::stats).await
    }

    /// The queued calls, oldest first (at most `limit`), with their attempts so far.
    pub async fn pending(&self, limit: u32) -> Result<Vec<Delivery>, StorageError> {
        self.store.read(move |c| table::queued(c, limit)).await
    }

    /// The latest given-up calls, newest first.
    pub async fn failed(&self, limit: u32) -> Result<Vec<FailedDelivery>, StorageError> {
        self.store.read(move |c| table::failed(c, limit)).await
    }

    /// Starts the delivery worker; it stops when `cancel` fires.
    pub fn spawn(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move { outbox.run(cancel).await })
    }

    async fn run(self, cancel: CancellationToken) {
        match self.stats().await {
            Ok(s) if s.pending > 0 || s.failed > 0 => tracing::info!(
                pending = s.pending,
                destinations = s.destinations,
                given_up = s.failed,
                "federation outbox resumes"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "federation outbox: reading its counts failed"),
        }
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            let next_due = match self.dispatch(&mut tasks, &mut in_flight).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "federation outbox: reading the queue failed");
                    Some(now_ms().saturating_add(self.config.base_delay_ms))
                }
            };
            let wait = next_due
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                .unwrap_or(IDLE_POLL)
                .min(IDLE_POLL);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "federation outbox: a delivery task failed");
                            e.id()
                        }
                    };
                    in_flight.remove(&id);
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
        // A call in flight stays queued unless it was acknowledged: delivery is at least once.
        tasks.shutdown().await;
    }

    /// Starts a drain for every destination whose head is due and not in flight, within the
    /// concurrency bound; returns when the earliest waiting head falls due.
    async fn dispatch(
        &self,
        tasks: &mut JoinSet<()>,
        in_flight: &mut HashMap<tokio::task::Id, String>,
    ) -> Result<Option<u64>, StorageError> {
        let heads = self.store.read(table::heads).await?;
        let busy: HashSet<&String> = in_flight.values().collect();
        let now = now_ms();
        let mut next_due: Option<u64> = None;
        let mut start = Vec::new();
        for head in heads {
            if busy.contains(&head.destination) {
                continue;
            }
            if head.next_attempt_at <= now && tasks.len() + start.len() < self.config.concurrency {
                start.push(head.destination);
            } else if head.next_attempt_at > now {
                next_due =
                    Some(next_due.map_or(head.next_attempt_at, |d| d.min(head.next_attempt_at)));
            }
        }
        for destination in start {
            let outbox = self.clone();
            let name = destination.clone();
            let handle = tasks.spawn(async move { outbox.drain(&name).await });
            in_flight.insert(handle.id(), destination);
        }
        Ok(next_due)
    }

    /// Delivers `destination`'s queue in order until it is empty or its head must wait.
    async fn drain(&self, destination: &str) {
        let mut service: Option<SigningService<tonic::transport::Channel>> = None;
        loop {
            let dest = destination.to_owned();
            let head = match self.store.read(move |c| table::head(c, &dest)).await {
                Ok(Some(head)) if head.next_attempt_at <= now_ms() => head,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(%destination, error = %e, "federation outbox: reading a head failed");
                    return;
                }
            };
            let outcome = self.attempt(&mut service, &head).await;
            if let Err(e) = self.record(&head, outcome).await {
                tracing::warn!(%destination, error = %e, "federation outbox: recording an attempt failed");
                return;
            }
            // Retry-later leaves the head not yet due, which ends the loop on the next read.
        }
    }

    async fn attempt(
        &self,
        service: &mut Option<SigningService<tonic::transport::Channel>>,
        delivery: &Delivery,
    ) -> Outcome {
        let path = format!("/guildhall.v1.GuildHall/{}", delivery.method);
        let Ok(path) = http::uri::PathAndQuery::try_from(path) else {
            return Outcome::Refused(format!("method {:?} is not a valid name", delivery.method));
        };
        let channel = match service {
            Some(channel) => channel.clone(),
            None => match self.client.connect_service(&delivery.destination).await {
                Ok(channel) => {
                    *service = Some(channel.clone());
                    channel
                }
                Err(e) => return Outcome::Retry(e.to_string()),
            },
        };
        let mut grpc = tonic::client::Grpc::new(channel);
        if let Err(e) = grpc.ready().await {
            *service = None;
            return Outcome::Retry(format!("not ready: {e}"));
        }
        let request = tonic::Request::new(Bytes::from(delivery.body.clone()));
        match grpc.unary::<_, Bytes, _>(request, path, RawCodec).await {
            Ok(_) => Outcome::Acknowledged,
            Err(status) if status.code() == tonic::Code::AlreadyExists => Outcome::Acknowledged,
            Err(status) if is_definitive(&status) => {
                Outcome::Refused(format!("{:?}: {}", status.code(), status.message()))
            }
            Err(status) => {
                // The connection may be broken; make a fresh one next time.
                *service = None;
                Outcome::Retry(format!("{:?}: {}", status.code(), status.message()))
            }
        }
    }

    async fn record(&self, d: &Delivery, outcome: Outcome) -> Result<(), StorageError> {
        let now = now_ms();
        let id = d.id;
        let give_up_after_ms = self.config.give_up_after_secs.saturating_mul(1000);
        match outcome {
            Outcome::Acknowledged => {
                tracing::debug!(destination = %d.destination, method = %d.method, "delivered");
                self.store.write(move |tx| table::acknowledge(tx, id)).await
            }
            Outcome::Retry(error) if now.saturating_sub(d.created_at) < give_up_after_ms => {
                let next = now.saturating_add(backoff_ms(&self.config, d.attempts, jitter()));
                self.store.metrics().outbox_retry(&d.destination);
                tracing::debug!(destination = %d.destination, method = %d.method, attempts = d.attempts + 1, %error, "delivery failed; will retry");
                self.store
                    .write(move |tx| table::retry_later(tx, id, next, &error))
                    .await
            }
            Outcome::Retry(error) => {
                let reason = format!(
                    "still failing {} s after it was queued ({} attempts): {error}",
                    self.config.give_up_after_secs,
                    d.attempts + 1
                );
                self.give_up(d, now, reason).await
            }
            Outcome::Refused(error) => {
                self.give_up(d, now, format!("refused by the peer: {error}"))
                    .await
            }
        }
    }

    async fn give_up(&self, d: &Delivery, now: u64, reason: String) -> Result<(), StorageError> {
        let id = d.id;
        let logged = reason.clone();
        self.store
            .write(move |tx| table::give_up(tx, id, now, &reason))
            .await?;
        self.store.metrics().outbox_give_up(&d.destination);
        let given_up = self.stats().await.map(|s| s.failed).unwrap_or_default();
        tracing::warn!(
            destination = %d.destination,
            method = %d.method,
            reason = %logged,
            given_up_total = given_up,
            "federation outbox gave up a delivery (kept in federation_outbox_failed)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let c = OutboxConfig {
            base_delay_ms: 100,
            max_delay_ms: 1_000,
            ..OutboxConfig::default()
        };
        assert_eq!(backoff_ms(&c, 0, 1.0), 100);
        assert_eq!(backoff_ms(&c, 3, 1.0), 800);
        assert_eq!(backoff_ms(&c, 4, 1.0), 1_000);
        assert_eq!(backoff_ms(&c, 200, 1.0), 1_000);
        assert_eq!(backoff_ms(&c, 3, 0.5), 400);
        assert_eq!(
            backoff_ms(&c, 3, 0.1),
            400,
            "jitter never shortens below half"
        );
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j));
        }
    }

    #[test]
    fn definitive_codes() {
        use tonic::Status;
        assert!(is_definitive(&Status::invalid_argument("sequence: …")));
        assert!(is_definitive(&Status::failed_precondition("prev: …")));
        assert!(is_definitive(&Status::unauthenticated(
            "signature: not by K_id"
        )));
        assert!(!is_definitive(&Status::unauthenticated(
            "guildhall-timestamp: is 900000 ms in the past"
        )));
        assert!(!is_definitive(&Status::unavailable("down")));
        assert!(!is_definitive(&Status::already_exists("applied")));
    }
}
