//! The delivery worker: POSTs queued pushes to their distributors and records what happened.
//!
//! At most `max_concurrent_deliveries` POSTs run at once, each bounded by `request_timeout_ms`.
//! The network wait happens outside any storage call; only the short bookkeeping write after it
//! (delete, reschedule, or forget the distributor) goes through the writer. Pushes in the queue
//! survive restarts: an attempt cut short by shutdown is simply tried again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{Outcome, PushClient};
use super::config::PushConfig;
use crate::identity::freshness::now_ms;
use crate::store::Store;
use crate::store::push::QueuedPush;

/// How often pushes past `max_age_secs` are swept from the queue.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Longest sleep with nothing due, in case a clock jump hides a due time.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// The worker's state.
pub(crate) struct Delivery {
    pub(crate) store: Store,
    pub(crate) client: PushClient,
    pub(crate) config: Arc<PushConfig>,
    pub(crate) wake: Arc<Notify>,
}

impl Delivery {
    fn max_age_ms(&self) -> u64 {
        self.config.max_age_secs.saturating_mul(1000)
    }

    /// Delivers until `cancel` fires.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut running: JoinSet<()> = JoinSet::new();
        // Pushes being attempted, by the task attempting them.
        let mut busy: HashMap<tokio::task::Id, i64> = HashMap::new();
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                last_sweep = Some(tokio::time::Instant::now());
                let before = now_ms().saturating_sub(self.max_age_ms());
                match self.store.drop_pushes_before(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(dropped = n, "pushes past their age limit dropped"),
                    Err(e) => tracing::warn!(error = %e, "sweeping old pushes failed"),
                }
            }
            let free = self
                .config
                .max_concurrent_deliveries
                .saturating_sub(running.len());
            let mut next_due = None;
            if free > 0 {
                let now = now_ms();
                let oldest = now.saturating_sub(self.max_age_ms());
                let busy_ids: Vec<i64> = busy.values().copied().collect();
                match self.store.due_pushes(now, oldest, free, busy_ids).await {
                    Ok((due, next)) => {
                        next_due = next;
                        for push in due {
                            let id = push.id;
                            let task = running.spawn(attempt(
                                self.store.clone(),
                                self.client.clone(),
                                self.config.clone(),
                                push,
                            ));
                            busy.insert(task.id(), id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the push queue failed"),
                }
            }
            let sleep = next_due.map_or(IDLE_WAKE, |at| {
                Duration::from_millis(at.saturating_sub(now_ms())).min(IDLE_WAKE)
            });
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(e) => {
                            tracing::error!(error = %e, "push attempt failed unexpectedly");
                            e.id()
                        }
                    };
                    busy.remove(&task);
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep), if free > 0 => {}
            }
        }
        running.shutdown().await;
    }
}

/// One POST and its bookkeeping.
async fn attempt(store: Store, client: PushClient, config: Arc<PushConfig>, push: QueuedPush) {
    let outcome = client.post(&push.url, push.payload.clone()).await;
    let result = match &outcome {
        Outcome::Delivered => store.remove_push(push.id).await,
        Outcome::Gone(status) => {
            tracing::info!(user = %push.user_id, status, "distributor gone; forgetting it");
            store
                .remove_push_distributor(push.user_id.clone(), push.url.clone())
                .await
                .map(|_| ())
        }
        Outcome::Rejected(status) => {
            tracing::warn!(user = %push.user_id, status, "distributor refused a push; dropped");
            store.remove_push(push.id).await
        }
        Outcome::Refused(why) => {
            tracing::warn!(user = %push.user_id, why, "push not sent; dropped");
            store.remove_push(push.id).await
        }
        Outcome::Retry(why) => {
            let failed = push.attempts.saturating_add(1);
            let now = now_ms();
            let next = now.saturating_add(config.backoff_ms(failed));
            let deadline = push
                .created_at
                .saturating_add(config.max_age_secs.saturating_mul(1000));
            if failed >= config.max_attempts || next > deadline {
                tracing::warn!(user = %push.user_id, why, failed, "push given up");
                store.remove_push(push.id).await
            } else {
                tracing::debug!(user = %push.user_id, why, failed, "push will be retried");
                store.retry_push_at(push.id, next, why.clone()).await
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "recording a push attempt failed");
    }
}
