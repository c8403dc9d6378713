//! A server's own moderation list: entries its server key signs (`server-ban`, docs/PROTOCOL.md
//! §3), made only when one of its admins asks (`AddServerBan`, `RemoveServerBan`), and published as
//! server events of kind [`SERVER_BAN_KIND`] (gossip, and the event log peers catch up from); the
//! banned user's homeserver, when it is another node this one knows, also gets the event straight
//! away (`ReceiveServerEvent` through the durable outbox).
//!
//! A node receiving an entry (by gossip, catch-up or `ReceiveServerEvent`) checks it itself and
//! keeps the newest per (origin, user); it enforces it only if it trusts the origin's moderation
//! list. The kind is distinct from `ban`, so a guild owner's ban on that server can never be
//! passed off as the server's own.

use prost::Message;

use super::{Bans, check_not_future, hex_key, refusal_verdict};
use crate::accounts::remote::normalise_address;
use crate::error::{Error, Result};
use crate::gossip::{Verdict, VerifiedServerEvent};
use crate::guilds::ban_lists::Reconciled;
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, ServerBanPayload};
use crate::identity::{PublicKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::accounts::load_user;
use crate::store::server_bans::{HeldBan, ServerBanEntry};
use crate::store::{SessionInfo, StorageError};

/// The server-event kind moderation-list entries are gossiped as (payload: an encoded
/// `ServerBanEntry`).
pub const SERVER_BAN_KIND: &str = "server-ban";

impl Bans {
    /// `AddServerBan` (`banned`) / `RemoveServerBan`: a server admin changes this node's
    /// moderation list. The entry is signed, stored, applied here, appended to the event log and
    /// queued for the user's homeserver in one transaction, then gossiped; answers the signed
    /// entry.
    pub async fn change_server_ban(
        &self,
        caller: &SessionInfo,
        user_id: &str,
        banned: bool,
        reason: &str,
    ) -> Result<ServerBanEntry> {
        let (key, gossip, reason_owned) =
            (self.key.clone(), self.gossip.clone(), reason.to_owned());
        let own_address = self.own_address.clone();
        let (entry, (event, queued)) = self
            .guilds
            .change_server_ban(
                caller,
                &self.key.public(),
                user_id,
                banned,
                reason,
                move |tx, user, timestamp| {
                    let payload = ServerBanPayload {
                        origin: key.public(),
                        user: *user,
                        banned,
                        reason: reason_owned,
                        timestamp,
                    };
                    let signature = signing::sign(&payload, &key).to_bytes();
                    let entry = ServerBanEntry {
                        origin_key: payload.origin.to_hex(),
                        user_id: payload.user.to_hex(),
                        banned,
                        reason: payload.reason,
                        timestamp,
                        signature,
                    };
                    let Some(events) = &gossip else {
                        return Ok((entry, (None, false)));
                    };
                    let event = events.append_in(
                        tx,
                        SERVER_BAN_KIND,
                        entry_message(&entry).encode_to_vec(),
                        timestamp,
                    )?;
                    // The user's homeserver, if another node, must have it: straight there
                    // through the outbox, besides gossip.
                    let home = load_user(tx, &entry.user_id)?
                        .map(|u| u.homeserver)
                        .filter(|h| {
                            !h.is_empty() && normalise_address(h) != normalise_address(&own_address)
                        });
                    if let Some(home) = &home {
                        crate::store::outbox::enqueue(
                            tx,
                            home,
                            "ReceiveServerEvent",
                            &event.to_proto().encode_to_vec(),
                            timestamp,
                        )?;
                    }
                    Ok((entry, (Some(event), home.is_some())))
                },
            )
            .await?;
        if queued {
            self.outbox.wake();
        }
        if let (Some(events), Some(event)) = (&self.gossip, event) {
            events.announce(&event).await;
        }
        Ok(entry)
    }

    /// Checks another server's moderation-list entry and keeps it (enforcing it here if that
    /// server's list is trusted). Answers whether it was new: an entry no newer than the one held
    /// changes nothing.
    pub async fn receive_server_ban(&self, n: pb::ServerBanEntry) -> Result<bool> {
        let (origin, user, signature, payload) =
            verify_server_ban(&n, now_ms(), self.clock_skew_ms)?;
        if origin == self.key.public() {
            // Our own entry coming back: we hold it already.
            return Ok(false);
        }
        let apply = self.trust.trusts(&n.origin_server_id, None);
        let entry = ServerBanEntry {
            origin_key: origin.to_hex(),
            user_id: user.to_hex(),
            banned: payload.banned,
            reason: payload.reason,
            timestamp: payload.timestamp,
            signature: signature.to_bytes(),
        };
        let new = self.guilds.accept_server_ban(entry, apply).await?;
        tracing::info!(
            origin = %origin.fmt_short(),
            user = %user.fmt_short(),
            banned = payload.banned,
            applied = apply,
            new,
            "moderation-list entry accepted"
        );
        Ok(new)
    }

    /// The verdict on a gossiped moderation-list entry: it must be the event origin's own list and
    /// pass the checks of [`Bans::receive_server_ban`]; an entry older than the one held is
    /// ignored.
    pub(super) async fn validate_gossiped_server_ban(
        &self,
        event: &VerifiedServerEvent,
    ) -> Verdict {
        let entry = match pb::ServerBanEntry::decode(event.payload()) {
            Ok(entry) => entry,
            Err(e) => return Verdict::Reject(format!("payload: not a ServerBanEntry: {e}")),
        };
        if entry.origin_server_id != event.origin().to_hex() {
            return Verdict::Reject("origin_server_id: not the event's origin".into());
        }
        match self.receive_server_ban(entry).await {
            Ok(true) => Verdict::Accept,
            Ok(false) => Verdict::Ignore("not newer than the entry held".into()),
            Err(e) => refusal_verdict(e),
        }
    }

    /// `ListBanNotices` (server admins): a page of the bans held from lists, newest first.
    pub async fn held(
        &self,
        caller: &SessionInfo,
        advisories_only: bool,
        limit: i32,
        offset: i32,
    ) -> Result<(Vec<HeldBan>, u64)> {
        self.guilds
            .held_bans(caller, &self.key.public(), advisories_only, limit, offset)
            .await
    }

    /// Re-decides which held bans are applied from the configured trust (at start, so a change of
    /// `trusted_ban_lists` applies to the bans already held).
    pub async fn reconcile(&self) -> std::result::Result<Reconciled, StorageError> {
        let done = self.guilds.reconcile_ban_lists(&self.trust).await?;
        if done != Reconciled::default() {
            tracing::info!(
                applied = done.applied,
                released = done.released,
                "held bans re-decided from trusted_ban_lists"
            );
        }
        Ok(done)
    }
}

/// A moderation-list entry is about one user: for one list the newest entry wins.
pub(super) fn subject(payload: &[u8]) -> Option<crate::gossip::server_events::Subject> {
    let entry = pb::ServerBanEntry::decode(payload).ok()?;
    Some(crate::gossip::server_events::Subject {
        key: entry.user_id.into_bytes(),
        fields: 1,
    })
}

/// The checks of a received moderation-list entry that need no storage (field rules, not dated
/// past `now` + `skew_ms`, the origin's `server-ban` signature); answers the origin, the user, the
/// signature and the verified fields. Public so the fuzz targets (`fuzz/`, `tests/fuzz.rs`) run
/// these very checks.
pub fn verify_server_ban(
    n: &pb::ServerBanEntry,
    now: u64,
    skew_ms: u64,
) -> Result<(PublicKey, PublicKey, Signature, ServerBanPayload)> {
    let origin = hex_key("origin_server_id", &n.origin_server_id)?;
    let user = hex_key("user_id", &n.user_id)?;
    crate::guilds::members::check_reason(&n.reason)?;
    check_not_future(n.timestamp, now, skew_ms)?;
    let signature =
        Signature::from_bytes(&n.signature).map_err(|e| Error::invalid("signature", e))?;
    let payload = ServerBanPayload {
        origin,
        user,
        banned: n.banned,
        reason: n.reason.clone(),
        timestamp: n.timestamp,
    };
    let payload = signing::verify(payload, &origin, &signature)
        .map_err(|_| {
            Error::unauthenticated(
                "signature",
                "not a `server-ban` signature by origin_server_id over this entry",
            )
        })?
        .into_inner();
    Ok((origin, user, signature, payload))
}

/// The wire form of a moderation-list entry.
pub fn entry_message(entry: &ServerBanEntry) -> pb::ServerBanEntry {
    pb::ServerBanEntry {
        origin_server_id: entry.origin_key.clone(),
        user_id: entry.user_id.clone(),
        banned: entry.banned,
        reason: entry.reason.clone(),
        timestamp: entry.timestamp,
        signature: entry.signature.to_vec(),
    }
}
