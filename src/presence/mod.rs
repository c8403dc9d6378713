//! Presence: who is online, busy or offline, and in which call.
//!
//! Presence is kept in memory (it describes connected clients, which a restart disconnects) and
//! announced as `presence` events to the guilds the user is in, so only co-members see it.
//! `GetPresence` likewise answers only for users who share a guild with the caller. Users of
//! other nodes are known by what their homeservers say ([`across`]), for as long as they keep
//! saying it.

pub mod across;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::events;
use crate::guilds::{Guilds, permissions};
use crate::identity::freshness::now_ms;
use crate::proto::guildhall::v1::{self as pb, PresenceStatus};
use crate::store::{SessionInfo, accounts, guilds as gdb};

/// `User.status` for a presence status: `"online"`, `"busy"` or `"offline"` (unspecified reads as
/// offline).
pub fn status_word(status: i32) -> &'static str {
    match PresenceStatus::try_from(status) {
        Ok(PresenceStatus::Online) => "online",
        Ok(PresenceStatus::Busy) => "busy",
        _ => "offline",
    }
}

/// Most users one `GetPresence` call may ask about.
pub const GET_PRESENCE_MAX: usize = 100;

#[derive(Debug, Clone, Default)]
struct State {
    status: i32,
    last_seen: u64,
    active_call_channel_id: String,
    /// A finer status a client chose (Harmony's `UserStatus` number), kept until the status is
    /// set again through any other path.
    detail: Option<i32>,
    /// Words the user left with a busy status (IRC's `AWAY :message`), kept until the status is
    /// set again through any path.
    note: Option<String>,
    /// Set when the state is a peer's word about one of its users, not this node's own.
    remote: Option<Remote>,
}

/// Where a user's state came from when their homeserver is another node, and who may see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Remote {
    /// The homeserver that said it (normalised address).
    origin: String,
    /// When it stops counting unless said again (ms).
    expires_at: u64,
    /// Users of this node who share a guild with the user on the homeserver.
    visible_to: HashSet<String>,
}

/// The presence of this node's users.
#[derive(Debug, Clone)]
pub struct Presence {
    guilds: Guilds,
    state: Arc<Mutex<HashMap<String, State>>>,
    /// Tells peers of this node's users' changes, once federation started it ([`across`]).
    sharing: Arc<OnceLock<across::Sharing>>,
}

impl Presence {
    /// Presence over the guild machinery (for visibility and events).
    pub fn new(guilds: Guilds) -> Self {
        Self {
            guilds,
            state: Arc::default(),
            sharing: Arc::default(),
        }
    }

    fn to_proto(user_id: &str, s: &State) -> pb::PresenceUpdate {
        pb::PresenceUpdate {
            user_id: user_id.to_owned(),
            status: s.status,
            last_seen: crate::convert::timestamp(s.last_seen),
            active_call_channel_id: s.active_call_channel_id.clone(),
        }
    }

    async fn set(
        &self,
        user_id: &str,
        status: i32,
        call: String,
        detail: Option<i32>,
        note: Option<String>,
    ) -> Result<()> {
        let now = now_ms();
        let update = {
            let mut map = self.lock_state();
            let s = map.entry(user_id.to_owned()).or_default();
            s.status = status;
            s.last_seen = now;
            s.active_call_channel_id = call;
            s.detail = detail;
            s.note = note;
            s.remote = None;
            Self::to_proto(user_id, s)
        };
        self.announce(user_id, update, Vec::new()).await?;
        if let Some(sharing) = self.sharing.get() {
            sharing.changed(user_id);
        }
        Ok(())
    }

    /// Writes a `presence` event for `user_id` to the guilds they are in here, to themselves, and
    /// to `also` (users who may see it without sharing a guild here).
    async fn announce(
        &self,
        user_id: &str,
        update: pb::PresenceUpdate,
        also: Vec<String>,
    ) -> Result<()> {
        let now = now_ms();
        let user = user_id.to_owned();
        self.guilds
            .events()
            .write(now, move |tx| {
                let mut scopes: Vec<String> = gdb::guild_ids_of(tx, &user)?
                    .iter()
                    .map(|g| events::guild_scope(g))
                    .collect();
                scopes.push(events::user_scope(&user));
                scopes.extend(also.iter().map(|u| events::user_scope(u)));
                Ok((
                    (),
                    vec![events::row(
                        scopes,
                        pb::stream_response::Event::Presence(update),
                    )],
                ))
            })
            .await?;
        Ok(())
    }

    /// This node's own users (not peers' word) who are not offline: what a refresh sends.
    pub(crate) fn present_users(&self) -> Vec<String> {
        self.lock_state()
            .iter()
            .filter(|(_, s)| s.remote.is_none() && s.status != PresenceStatus::Offline as i32)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A user's state as a peer is told it (offline if never seen).
    pub(crate) fn local_state(&self, user_id: &str) -> pb::RemotePresence {
        let map = self.lock_state();
        let s = map.get(user_id).cloned().unwrap_or(State {
            status: PresenceStatus::Offline as i32,
            ..State::default()
        });
        pb::RemotePresence {
            user_id: user_id.to_owned(),
            status: s.status,
            active_call_channel_id: s.active_call_channel_id,
            last_seen: s.last_seen,
            visible_to: Vec::new(),
        }
    }

    /// Whether a peer at `origin` may speak for a user this node has no record of: no other
    /// peer's word about them is still fresh.
    pub(crate) fn unclaimed_or_by(&self, user_id: &str, origin: &str, now: u64) -> bool {
        match self
            .lock_state()
            .get(user_id)
            .and_then(|s| s.remote.as_ref())
        {
            Some(remote) => remote.origin == origin || remote.expires_at <= now,
            None => true,
        }
    }

    /// Takes a peer's word about one of its users; announces it if the status or call changed.
    pub(crate) async fn apply_remote(
        &self,
        entry: &pb::RemotePresence,
        remote: Remote,
        now: u64,
    ) -> Result<()> {
        let audience: Vec<String> = remote.visible_to.iter().cloned().collect();
        let update = {
            let mut map = self.lock_state();
            let s = map.entry(entry.user_id.clone()).or_default();
            let changed = s.status != entry.status
                || s.active_call_channel_id != entry.active_call_channel_id
                || s.remote.is_none();
            s.status = entry.status;
            s.last_seen = if entry.last_seen == 0 {
                now
            } else {
                entry.last_seen.min(now)
            };
            s.active_call_channel_id = entry.active_call_channel_id.clone();
            s.detail = None;
            s.note = None;
            s.remote = Some(remote);
            changed.then(|| Self::to_proto(&entry.user_id, s))
        };
        match update {
            Some(update) => self.announce(&entry.user_id, update, audience).await,
            None => Ok(()),
        }
    }

    /// Peers' word that was not said again in time: those users read as offline now.
    pub(crate) async fn expire(&self, now: u64) {
        let expired: Vec<(String, pb::PresenceUpdate, Vec<String>)> = {
            let mut map = self.lock_state();
            map.iter_mut()
                .filter_map(|(id, s)| {
                    let remote = s.remote.as_ref()?;
                    if remote.expires_at > now || s.status == PresenceStatus::Offline as i32 {
                        return None;
                    }
                    let audience = remote.visible_to.iter().cloned().collect();
                    s.status = PresenceStatus::Offline as i32;
                    s.active_call_channel_id.clear();
                    Some((id.clone(), Self::to_proto(id, s), audience))
                })
                .collect()
        };
        for (user, update, audience) in expired {
            if let Err(e) = self.announce(&user, update, audience).await {
                tracing::warn!(error = %e, "presence: announcing an expiry failed");
            }
        }
    }

    /// `UpdatePresence`.
    pub async fn update(
        &self,
        caller: &SessionInfo,
        status: i32,
        active_call_channel_id: &str,
    ) -> Result<()> {
        match PresenceStatus::try_from(status) {
            Ok(PresenceStatus::Online | PresenceStatus::Offline | PresenceStatus::Busy) => {}
            _ => {
                return Err(Error::invalid(
                    "status",
                    "must be ONLINE (1), OFFLINE (3) or BUSY (4)",
                ));
            }
        }
        if !active_call_channel_id.is_empty() {
            let (_, access) = self
                .guilds
                .channel_access(active_call_channel_id, &caller.user_id)
                .await
                .map_err(|e| match e {
                    Error::NotFound(_) | Error::PermissionDenied(_) => {
                        Error::invalid("active_call_channel_id", "is not a channel you can see")
                    }
                    other => other,
                })?;
            access.require(permissions::MESSAGES_READ)?;
        }
        self.set(
            &caller.user_id,
            status,
            active_call_channel_id.to_owned(),
            None,
            None,
        )
        .await
    }

    /// Sets the user's status with a finer `detail` (Harmony's `UpdateProfile`), keeping the call
    /// they are in. `status` must already be a valid `PresenceStatus`.
    pub async fn set_status_detail(&self, user_id: &str, status: i32, detail: i32) -> Result<()> {
        let call = self.current_call(user_id);
        self.set(user_id, status, call, Some(detail), None).await
    }

    /// The call the user is in (empty for none).
    fn current_call(&self, user_id: &str) -> String {
        self.lock_state()
            .get(user_id)
            .map(|s| s.active_call_channel_id.clone())
            .unwrap_or_default()
    }

    /// Sets the user busy with `note` as the reason (IRC's `AWAY :message`: away is the nearest
    /// thing guildhall's statuses have to "not at the keyboard"), keeping the call they are in.
    /// Ends like any status: when it is set again through any path.
    pub async fn set_away(&self, user_id: &str, note: String) -> Result<()> {
        let call = self.current_call(user_id);
        let busy = PresenceStatus::Busy as i32;
        self.set(user_id, busy, call, None, Some(note)).await
    }

    /// The reason a busy user left (`set_away`), if they are still busy with it; no visibility
    /// check: callers decide who may see it.
    pub fn away_note(&self, user_id: &str) -> Option<String> {
        self.lock_state()
            .get(user_id)
            .filter(|s| s.status == PresenceStatus::Busy as i32)
            .and_then(|s| s.note.clone())
    }

    /// The user's status (offline if never seen) and finer detail if one was set, with no
    /// visibility check: callers decide who may see it.
    pub fn status_of(&self, user_id: &str) -> (i32, Option<i32>) {
        self.lock_state()
            .get(user_id)
            .map_or((PresenceStatus::Offline as i32, None), |s| {
                (s.status, s.detail)
            })
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the user as in a call in `channel_id`, keeping their status (online if unknown).
    pub async fn join_call(&self, user_id: &str, channel_id: &str) -> Result<()> {
        let status = {
            let map = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.get(user_id)
                .map(|s| s.status)
                .filter(|s| *s != PresenceStatus::Offline as i32 && *s != 0)
        };
        self.set(
            user_id,
            status.unwrap_or(PresenceStatus::Online as i32),
            channel_id.to_owned(),
            None,
            None,
        )
        .await
    }

    /// `SignalOnline` (the user's preferred status if they set one) / `SignalOffline`.
    pub async fn signal(&self, caller: &SessionInfo, online: bool) -> Result<()> {
        let status = if online {
            let me = caller.user_id.clone();
            let preferred = self
                .guilds
                .store()
                .read(move |c| accounts::load_user(c, &me))
                .await?
                .map(|u| u.presence_preference)
                .unwrap_or(0);
            if preferred == PresenceStatus::Busy as i32 {
                preferred
            } else {
                PresenceStatus::Online as i32
            }
        } else {
            PresenceStatus::Offline as i32
        };
        self.set(&caller.user_id, status, String::new(), None, None)
            .await
    }

    /// `GetPresence`: the presence of those among `user_ids` who share a guild with the caller
    /// (or are the caller); users never seen online read as offline.
    pub async fn get(
        &self,
        caller: &SessionInfo,
        user_ids: &[String],
    ) -> Result<Vec<pb::PresenceUpdate>> {
        if user_ids.len() > GET_PRESENCE_MAX {
            return Err(Error::invalid(
                "user_ids",
                format!("at most {GET_PRESENCE_MAX} per call"),
            ));
        }
        let (me, ids) = (caller.user_id.clone(), user_ids.to_vec());
        let visible: Vec<String> = self
            .guilds
            .store()
            .read(move |c| {
                let mut out = Vec::new();
                for id in ids {
                    if id == me || gdb::share_guild(c, &me, &id)? {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await?;
        let map = self.lock_state();
        let me = caller.user_id.clone();
        // Users of other nodes whose homeserver said the caller shares a guild with them there.
        let told: Vec<String> = user_ids
            .iter()
            .filter(|id| !visible.contains(id))
            .filter(|id| {
                map.get(*id)
                    .and_then(|s| s.remote.as_ref())
                    .is_some_and(|r| r.visible_to.contains(&me))
            })
            .cloned()
            .collect();
        Ok(visible
            .iter()
            .chain(told.iter())
            .map(|id| match map.get(id) {
                Some(s) => Self::to_proto(id, s),
                None => Self::to_proto(
                    id,
                    &State {
                        status: PresenceStatus::Offline as i32,
                        ..State::default()
                    },
                ),
            })
            .collect())
    }
}
