//! Bans from lists: other servers' guild bans and servers' moderation lists, enforced on this
//! node's guilds only when its operator trusts the list they come from (docs/PROTOCOL.md §15).
//!
//! Trust names what is trusted, never a whole server: a server's **moderation list** (entries its
//! server key signs as `server-ban`, made only at the request of one of its admins) or **one guild's
//! bans** (`ban` notices its host signs for that guild). A guild owner on a trusted server signs
//! only `ban` notices for their own guild, so trusting the server's list gives them no say here.
//! This node's own moderation list is always trusted. A held ban from an untrusted list is an
//! advisory: kept and shown to admins (`ListBanNotices`), not enforced.
//!
//! Applying a ban removes the user from every guild of this node they are in (except one they
//! own) and keeps them from joining any, for as long as the entry is applied; a lift (or no longer
//! trusting the list) ends that, and the user may join again with an invite.

use std::collections::HashSet;

use super::Guilds;
use super::members::remove_and_announce;
use crate::error::{Error, Result};
use crate::identity::PublicKey;
use crate::identity::freshness::now_ms;
use crate::store::bans::BanNotice;
use crate::store::guilds as db;
use crate::store::server_bans::{self, HeldBan, ListBan, ServerBanEntry};
use crate::store::{EventRow, SessionInfo, StorageError};

/// One list an operator trusts: a server's moderation list, or one of its guilds' bans.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrustedList {
    /// The server whose list it is.
    pub server: PublicKey,
    /// `None`: the server's moderation list; `Some(guild)`: that guild's bans, signed by the
    /// server as its host.
    pub guild: Option<String>,
}

/// The lists whose bans this node enforces: the operator's `trusted_ban_lists`, plus this node's
/// own moderation list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BanTrust {
    lists: HashSet<(String, Option<String>)>,
}

impl BanTrust {
    /// Trust in `lists` and in the moderation list of the node whose key is `own`.
    pub fn new(own: &PublicKey, lists: impl IntoIterator<Item = TrustedList>) -> Self {
        let mut set: HashSet<_> = lists
            .into_iter()
            .map(|l| (l.server.to_hex(), l.guild))
            .collect();
        set.insert((own.to_hex(), None));
        Self { lists: set }
    }

    /// Whether the list of `origin` (hex key) is trusted: its moderation list with `guild` `None`,
    /// else that guild's bans.
    pub fn trusts(&self, origin: &str, guild: Option<&str>) -> bool {
        self.lists
            .contains(&(origin.to_owned(), guild.map(str::to_owned)))
    }

    fn trusts_ban(&self, ban: &ListBan) -> bool {
        self.trusts(&ban.origin_key, ban.guild_id.as_deref())
    }
}

/// What re-deciding the held bans at start changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Held bans now applied (their list became trusted).
    pub applied: usize,
    /// Applied bans now only advisories (their list is no longer trusted).
    pub released: usize,
}

/// Removes a banned user from every guild of this node they are in, except one they own; the
/// `member_removed` events to log with it.
fn remove_everywhere(
    tx: &rusqlite::Connection,
    user_id: &str,
) -> std::result::Result<Vec<EventRow>, StorageError> {
    let mut events = Vec::new();
    for guild_id in crate::store::bans::guilds_of(tx, user_id)? {
        if db::guild(tx, &guild_id)?.is_some_and(|g| g.owner_id == user_id) {
            continue;
        }
        events.extend(remove_and_announce(tx, &guild_id, user_id)?);
    }
    Ok(events)
}

impl Guilds {
    fn require_admin(&self, caller: &SessionInfo, what: &str) -> Result<()> {
        if self.is_admin(&caller.user_id) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "only server admins may {what} (this user is not in the server's `admins`)"
            )))
        }
    }

    /// Stores a ban notice accepted from another server; with `apply` (its guild's list is
    /// trusted here), also removes the user from this node's guilds and keeps them from joining
    /// any. One transaction; answers whether the notice was new (not older than one held).
    pub async fn accept_ban_notice(&self, notice: BanNotice, apply: bool) -> Result<bool> {
        let user = notice.user_id.clone();
        self.accept_held(user, apply, move |tx, now| {
            crate::store::bans::insert_notice(tx, &notice, apply, now)
        })
        .await
    }

    /// Stores a moderation-list entry accepted from another server; with `apply` (that server's
    /// list is trusted here) a ban is enforced (the user leaves this node's guilds and can't join
    /// any) and a lift ends it. Answers whether the entry was new (newer than the one held).
    pub async fn accept_server_ban(&self, entry: ServerBanEntry, apply: bool) -> Result<bool> {
        let (user, applied) = (entry.user_id.clone(), apply && entry.banned);
        self.accept_held(user, applied, move |tx, now| {
            server_bans::insert_entry(tx, &entry, applied, now)
        })
        .await
    }

    /// One transaction: `insert` stores a held ban (answering whether it was new); a new one that
    /// is `applied` removes `user_id` from this node's guilds.
    async fn accept_held<F>(&self, user_id: String, applied: bool, insert: F) -> Result<bool>
    where
        F: FnOnce(&rusqlite::Connection, u64) -> std::result::Result<bool, StorageError>
            + Send
            + 'static,
    {
        let now = now_ms();
        Ok(self
            .events()
            .write(now, move |tx| {
                if !insert(tx, now)? {
                    return Ok((false, vec![]));
                }
                let events = if applied {
                    remove_everywhere(tx, &user_id)?
                } else {
                    vec![]
                };
                Ok((true, events))
            })
            .await?)
    }

    /// `AddServerBan` (`banned`) / `RemoveServerBan`: a server admin changes this node's own
    /// moderation list. Checks the caller is an admin and the input, then, in one transaction:
    /// picks the entry's timestamp (now, and always after the user's previous entry, so the newest
    /// wins everywhere), has `make` sign the entry for the user's key and that timestamp and do
    /// its own writes (the server event that publishes it), stores it, and applies it here.
    /// Lifting a user who is not banned on the list is `NOT_FOUND`.
    pub async fn change_server_ban<T, F>(
        &self,
        caller: &SessionInfo,
        own_key: &PublicKey,
        user_id: &str,
        banned: bool,
        reason: &str,
        make: F,
    ) -> Result<(ServerBanEntry, T)>
    where
        T: Send + 'static,
        F: FnOnce(
                &rusqlite::Connection,
                &PublicKey,
                u64,
            ) -> std::result::Result<(ServerBanEntry, T), StorageError>
            + Send
            + 'static,
    {
        self.require_admin(caller, "change this server's moderation list")?;
        let user_key = PublicKey::from_hex(user_id).map_err(|e| Error::invalid("user_id", e))?;
        super::members::check_reason(reason)?;
        let now = now_ms();
        let (own, user) = (own_key.to_hex(), user_id.to_owned());
        let done = self
            .events()
            .write(now, move |tx| {
                let previous = server_bans::entry(tx, &own, &user)?;
                if !banned && !previous.as_ref().is_some_and(|(e, _)| e.banned) {
                    return Ok((
                        Err(Error::NotFound(
                            "user_id: not banned on this server's moderation list".into(),
                        )),
                        vec![],
                    ));
                }
                let timestamp = previous.map_or(now, |(e, _)| now.max(e.timestamp + 1));
                let (entry, value) = make(tx, &user_key, timestamp)?;
                server_bans::insert_entry(tx, &entry, banned, now)?;
                let events = if banned {
                    remove_everywhere(tx, &entry.user_id)?
                } else {
                    vec![]
                };
                Ok((Ok((entry, value)), events))
            })
            .await??;
        tracing::info!(
            user = user_id,
            banned,
            by = caller.user_id,
            "moderation list changed"
        );
        Ok(done)
    }

    /// `ListBanNotices` (server admins): a page of the bans held from lists, newest first, this
    /// node's own guild bans (`own_key`'s notices) left out; with `advisories_only`, only those not
    /// applied here. Answers the page and the total count.
    pub async fn held_bans(
        &self,
        caller: &SessionInfo,
        own_key: &PublicKey,
        advisories_only: bool,
        limit: i32,
        offset: i32,
    ) -> Result<(Vec<HeldBan>, u64)> {
        self.require_admin(caller, "list the bans this server holds")?;
        let (limit, offset) = super::page(limit, offset)?;
        let own = own_key.to_hex();
        Ok(self
            .store()
            .read(move |c| server_bans::held(c, &own, advisories_only, limit, offset))
            .await?)
    }

    /// Re-decides, in one transaction, which held bans are applied, from `trust` (run at start, so
    /// a change of the configured lists takes effect on the bans already held): an applied ban
    /// whose list is no longer trusted becomes an advisory (the user may join again); a held ban
    /// of a trusted list is applied (the user leaves this node's guilds).
    pub async fn reconcile_ban_lists(
        &self,
        trust: &BanTrust,
    ) -> std::result::Result<Reconciled, StorageError> {
        let trust = trust.clone();
        let now = now_ms();
        self.events()
            .write(now, move |tx| {
                let mut done = Reconciled::default();
                for ban in server_bans::applied(tx)? {
                    if !trust.trusts_ban(&ban) {
                        server_bans::set_applied(tx, &ban, false)?;
                        done.released += 1;
                    }
                }
                let mut events = Vec::new();
                for (origin, guild) in &trust.lists {
                    for user_id in server_bans::unapplied_of(tx, origin, guild.as_deref())? {
                        let ban = ListBan {
                            origin_key: origin.clone(),
                            guild_id: guild.clone(),
                            user_id,
                        };
                        server_bans::set_applied(tx, &ban, true)?;
                        events.extend(remove_everywhere(tx, &ban.user_id)?);
                        done.applied += 1;
                    }
                }
                Ok((done, events))
            })
            .await
    }
}
