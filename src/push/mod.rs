//! Push notifications: users register UnifiedPush distributors and FCM tokens, and the node sends a
//! small notice (ids only, never message text) to each of them for a user who is offline when they
//! are mentioned or sent a DM; a remote member's notice goes to their homeserver as
//! `PushNotification`.
//!
//! - [`config`]: the `[push]` settings.
//! - [`online`]: who has a live event stream open (the "online" rule).
//! - [`fanout`]: follows the event log and queues pushes in SQLite (`push_queue`).
//! - [`delivery`]: sends queued pushes with bounded concurrency, timeout and retries.
//! - [`client`]: the HTTP(S) client and its address policy.
//! - [`fcm`]: sending to FCM tokens (HTTP v1 API, OAuth with the operator's service account).
//!
//! FCM tokens get pushes only when the operator configured a service account of the app's
//! Firebase project (`push.fcm_service_account_file`, see `docs/OPERATING.md`); without one they
//! are stored and nothing is sent. Pushes that other servers ask for (`PushNotification`) are
//! queued with [`Push::enqueue`], for distributors and FCM tokens alike.

pub mod client;
pub mod config;
pub mod delegated;
mod delivery;
pub mod fanout;
pub mod fcm;
pub mod online;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::PushConfig;
pub use online::OnlineUsers;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::identity::freshness::now_ms;
use crate::store::push::AddOutcome;
use crate::store::{SessionInfo, Store};

/// Longest FCM token accepted (real ones are a few hundred bytes).
pub const FCM_TOKEN_MAX: usize = 4096;

/// The push operations of one node, and the handle its background tasks share.
#[derive(Debug, Clone)]
pub struct Push {
    store: Store,
    config: Arc<PushConfig>,
    online: OnlineUsers,
    wake_delivery: Arc<Notify>,
    outbound: crate::outbound::Outbound,
    /// Whether pushes are queued for FCM tokens (a service account is configured).
    with_fcm: bool,
}

impl Push {
    /// Starts the fan-out and delivery tasks over `events`; they stop when `cancel` fires.
    /// Pushes for remote members are queued in `outbox` (see [`fanout`]). Fails when the FCM
    /// service account file is configured but can't be used (the error names the setting).
    pub fn start(
        events: &Events,
        config: PushConfig,
        outbox: crate::federation::outbox::Outbox,
        outbound: crate::outbound::Outbound,
        cancel: &CancellationToken,
    ) -> std::result::Result<(Self, Vec<JoinHandle<()>>), String> {
        let client = client::PushClient::new(
            Duration::from_millis(config.request_timeout_ms),
            outbound.clone(),
        );
        let fcm = fcm::FcmSender::from_config(&config, client.clone())
            .map_err(|e| e.to_string())?
            .map(Arc::new);
        let push = Self {
            with_fcm: fcm.is_some(),
            store: events.store().clone(),
            config: Arc::new(config),
            outbound,
            online: OnlineUsers::new(events.open_streams().clone()),
            wake_delivery: Arc::new(Notify::new()),
        };
        let fanout = fanout::Fanout {
            events: events.clone(),
            online: push.online.clone(),
            wake_delivery: push.wake_delivery.clone(),
            outbox,
            max_age_ms: push.config.max_age_secs.saturating_mul(1000),
            with_fcm: push.with_fcm,
            dm_memo: HashMap::new(),
            cursor: 0,
            unsaved: false,
        };
        let delivery = delivery::Delivery {
            store: push.store.clone(),
            client,
            fcm,
            config: push.config.clone(),
            wake: push.wake_delivery.clone(),
        };
        let tasks = vec![
            tokio::spawn(fanout.run(cancel.clone())),
            tokio::spawn(delivery.run(cancel.clone())),
        ];
        Ok((push, tasks))
    }

    /// Who has a live stream open (counted by the event streams themselves).
    pub fn online(&self) -> &OnlineUsers {
        &self.online
    }

    /// `RegisterPushDistributor`: adds a UnifiedPush endpoint; registering it again changes
    /// nothing.
    pub async fn register_distributor(&self, caller: &SessionInfo, raw: &str) -> Result<()> {
        let url = self.distributor_url(raw)?;
        let cap = self.config.max_distributors_per_user;
        match self
            .store
            .add_push_distributor(caller.user_id.clone(), url, now_ms(), cap)
            .await?
        {
            AddOutcome::Added | AddOutcome::Existed => Ok(()),
            AddOutcome::Full => Err(Error::FailedPrecondition(format!(
                "distributor_url: at most {cap} push distributors per user; endpoints that answer \
                 404 or 410 are removed automatically"
            ))),
        }
    }

    fn distributor_url(&self, raw: &str) -> Result<String> {
        let url = rules::http_url(raw).map_err(|rule| Error::invalid("distributor_url", rule))?;
        // An address literal the node won't connect to is refused now; a name is checked on
        // every delivery, against every address it resolves to.
        self.outbound
            .policy()
            .check_url(&url)
            .map_err(|why| Error::invalid("distributor_url", why))?;
        Ok(url)
    }

    /// `ListPushDistributors`: the caller's endpoints, oldest first.
    pub async fn list_distributors(&self, caller: &SessionInfo) -> Result<Vec<String>> {
        Ok(self.store.push_distributors(caller.user_id.clone()).await?)
    }

    /// `RegisterFcmToken`: stores the token (idempotent). Pushes go to it when FCM is configured;
    /// see the module docs.
    pub async fn register_fcm_token(&self, caller: &SessionInfo, token: &str) -> Result<()> {
        check_fcm_token(token)?;
        let cap = self.config.max_fcm_tokens_per_user;
        match self
            .store
            .add_fcm_token(caller.user_id.clone(), token.to_owned(), now_ms(), cap)
            .await?
        {
            AddOutcome::Added | AddOutcome::Existed => Ok(()),
            AddOutcome::Full => Err(Error::FailedPrecondition(format!(
                "token: at most {cap} FCM tokens per user; unregister one first"
            ))),
        }
    }

    /// `UnregisterFcmToken`: forgets a token the caller registered, with its queued pushes.
    pub async fn unregister_fcm_token(&self, caller: &SessionInfo, token: &str) -> Result<()> {
        check_fcm_token(token)?;
        if self
            .store
            .remove_fcm_token(caller.user_id.clone(), token.to_owned())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(
                "token: not registered for you (nothing to unregister)".into(),
            ))
        }
    }

    /// Queues `payload` for every distributor of `user_id`, and every FCM token when FCM is on
    /// (for pushes that arrive from other servers); returns how many were queued. With
    /// `dedup_key`, repeats are queued once.
    pub async fn enqueue(
        &self,
        user_id: &str,
        payload: String,
        dedup_key: Option<String>,
    ) -> Result<usize> {
        let queued = self
            .store
            .enqueue_pushes(
                vec![user_id.to_owned()],
                payload,
                dedup_key,
                now_ms(),
                None,
                self.with_fcm,
            )
            .await?;
        if queued > 0 {
            self.wake_delivery.notify_one();
        }
        Ok(queued)
    }
}

/// An FCM registration token: 1 to [`FCM_TOKEN_MAX`] bytes of visible ASCII.
fn check_fcm_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::invalid("token", "is required"));
    }
    if token.len() > FCM_TOKEN_MAX {
        return Err(Error::invalid(
            "token",
            format!("must be at most {FCM_TOKEN_MAX} bytes"),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "token",
            "must be visible ASCII (no spaces or control characters)",
        ));
    }
    Ok(())
}
