//! The delivery worker: sends queued pushes to their distributors (a POST) or FCM tokens (through
//! [`super::fcm`]) and records what happened.
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
use super::fcm::FcmSender;
use crate::identity::freshness::now_ms;
use crate::store::Store;
use crate::store::push::{PushTarget, QueuedPush};

/// How often pushes past `max_age_secs` are swept from the queue.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Longest sleep with nothing due, in case a clock jump hides a due time.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// The worker's state.
pub(crate) struct Delivery {
    pub(crate) store: Store,
    pub(crate) client: PushClient,
    /// The FCM sender, when a service account is configured.
    pub(crate) fcm: Option<Arc<FcmSender>>,
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
                                self.fcm.clone(),
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

/// One send and its bookkeeping.
async fn attempt(
    store: Store,
    client: PushClient,
    fcm: Option<Arc<FcmSender>>,
    config: Arc<PushConfig>,
    push: QueuedPush,
) {
    let outcome = match (&push.target, &fcm) {
        (PushTarget::Distributor(url), _) => client.post(url, push.payload.clone()).await,
        (PushTarget::Fcm(token), Some(fcm)) => fcm.send(token, &push.payload).await,
        (PushTarget::Fcm(_), None) => Outcome::Refused(
            "FCM is not configured (push.fcm_service_account_file) since this push was queued"
                .into(),
        ),
    };
    let result = match &outcome {
        Outcome::Delivered => store.remove_push(push.id).await,
        Outcome::Gone(status) => match &push.target {
            PushTarget::Distributor(url) => {
                tracing::info!(user = %push.user_id, status, "distributor gone; forgetting it");
                store
                    .remove_push_distributor(push.user_id.clone(), url.clone())
                    .await
                    .map(|_| ())
            }
            PushTarget::Fcm(token) => {
                tracing::info!(user = %push.user_id, status, "FCM token unregistered or invalid; forgetting it");
                store
                    .remove_fcm_token(push.user_id.clone(), token.clone())
                    .await
                    .map(|_| ())
            }
        },
        Outcome::Rejected(status) => {
            let to = match push.target {
                PushTarget::Distributor(_) => "distributor",
                PushTarget::Fcm(_) => "FCM",
            };
            tracing::warn!(user = %push.user_id, status, to, "push refused; dropped");
            store.remove_push(push.id).await
        }
        Outcome::Refused(why) => {
            tracing::warn!(user = %push.user_id, why, "push not sent; dropped");
            store.remove_push(push.id).await
        }
        Outcome::Retry { why, after } => {
            let failed = push.attempts.saturating_add(1);
            let now = now_ms();
            // The server's Retry-After, when it is longer than the backoff.
            let asked = after.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let next = now.saturating_add(config.backoff_ms(failed).max(asked));
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
