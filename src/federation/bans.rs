//! Bans across servers: the host of a guild signs a `BanNotification` for every ban and sends it
//! to the servers that need it; a server's admins keep its own moderation list
//! ([`server_list`]); a server receiving either checks it itself and keeps it, applying it to its
//! own guilds only when its operator trusts the list it comes from
//! ([`crate::guilds::ban_lists::BanTrust`]).
//!
//! - A notice is self-certifying: signed by its origin's server key over the `ban` kind
//!   (`docs/PROTOCOL.md` §3), so it may arrive through any server, and applying it twice changes
//!   nothing. For one (origin, guild, user), only a newer notice replaces a stored one.
//! - A notice about a guild this node hosts, signed by any other server, is refused: only a
//!   guild's host bans from it.
//! - Other notices are the host's word about its own guild: kept (the banned user's homeserver
//!   and the servers of the guild's members learn of it), and, when that guild's bans are a
//!   trusted list here (`trusted_ban_lists` naming the server and the guild), applied as well:
//!   the user is removed from this node's guilds and can't join any. Trusting a server's
//!   moderation list does not trust its guilds' bans: any user of a server can own a guild there.
//!
//! Sending: in the ban's own transaction, the host queues `PropagateBan` in the durable outbox
//! for the banned user's homeserver and the homeservers of the guild's members. It also publishes
//! the notice as a server event of kind [`BAN_KIND`] (payload: the encoded `BanNotification`), so
//! every node in the gossip mesh learns of it, and nodes that were offline pull it when they
//! return; the validator for that kind runs the same checks as `PropagateBan`.

mod server_list;

pub use server_list::{SERVER_BAN_KIND, entry_message, verify_server_ban};

use std::sync::Arc;

use prost::Message;

use super::outbox::Outbox;
use crate::error::{Error, Result};
use crate::gossip::server_events::Subject;
use crate::guilds::Guilds;
use crate::guilds::ban_lists::BanTrust;
use crate::identity::freshness::now_ms;
use crate::identity::signing::{self, BanPayload};
use crate::identity::{PublicKey, SecretKey, Signature};
use crate::proto::guildhall::v1 as pb;
use crate::store::bans::BanNotice;

/// The server-event kind ban notices are gossiped as.
pub const BAN_KIND: &str = "ban";

/// Longest guild id a notice may name, in bytes.
pub const GUILD_ID_MAX: usize = 64;

/// Makes, sends and accepts ban notices; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bans {
    key: Arc<SecretKey>,
    own_address: String,
    outbox: Outbox,
    guilds: Guilds,
    trust: Arc<BanTrust>,
    clock_skew_ms: u64,
    gossip: Option<crate::gossip::ServerEvents>,
}

fn hex_key(field: &str, value: &str) -> Result<PublicKey> {
    PublicKey::from_hex(value).map_err(|e| Error::invalid(field, e))
}

/// A ban notice is about one user in one guild: a newer notice for them restates the ban.
fn ban_subject(payload: &[u8]) -> Option<Subject> {
    let notice = pb::BanNotification::decode(payload).ok()?;
    let mut key = notice.guild_id.into_bytes();
    key.push(b'\n');
    key.extend_from_slice(notice.banned_user_pubkey.as_bytes());
    Some(Subject { key, fields: 1 })
}

impl Bans {
    /// Ban handling for the node with `key` at `own_address`, enforcing the bans of the lists
    /// `trust` names (and this node's own moderation list).
    pub fn new(
        key: Arc<SecretKey>,
        own_address: String,
        outbox: Outbox,
        guilds: Guilds,
        trust: BanTrust,
        clock_skew_ms: u64,
    ) -> Self {
        Self {
            key,
            own_address,
            outbox,
            guilds,
            trust: Arc::new(trust),
            clock_skew_ms,
            gossip: None,
        }
    }

    /// Gossips this node's ban notices and moderation-list entries through `events` (both pruned
    /// down to the newest per subject, see [`ban_subject`]), and accepts
    /// (and relays) other nodes' notices gossiped as [`BAN_KIND`] after the same checks as
    /// `PropagateBan`, and their moderation-list entries ([`SERVER_BAN_KIND`]).
    pub async fn with_gossip(
        mut self,
        events: crate::gossip::ServerEvents,
    ) -> std::result::Result<Self, crate::gossip::event::EventError> {
        self.gossip = Some(events.clone());
        let bans = self.clone();
        events
            .register_pruned(BAN_KIND, ban_subject, move |event| {
                let bans = bans.clone();
                async move { bans.validate_gossiped(&event).await }
            })
            .await?;
        let bans = self.clone();
        events
            .register_pruned(SERVER_BAN_KIND, server_list::subject, move |event| {
                let bans = bans.clone();
                async move { bans.validate_gossiped_server_ban(&event).await }
            })
            .await?;
        Ok(self)
    }

    /// The verdict on a gossiped ban notice: it must be the event origin's own notice and pass
    /// the checks of [`Bans::receive`].
    async fn validate_gossiped(
        &self,
        event: &crate::gossip::VerifiedServerEvent,
    ) -> crate::gossip::Verdict {
        use crate::gossip::Verdict;
        let notice = match pb::BanNotification::decode(event.payload()) {
            Ok(n) => n,
            Err(e) => return Verdict::Reject(format!("payload: not a BanNotification: {e}")),
        };
        if notice.origin_server_id != event.origin().to_hex() {
            return Verdict::Reject("origin_server_id: not the event's origin".into());
        }
        match self.receive(notice).await {
            Ok(()) => Verdict::Accept,
            Err(e) => refusal_verdict(e),
        }
    }

    /// This node's signed notice for banning `user_id` from its guild `guild_id`.
    pub fn sign(&self, guild_id: &str, user_id: &str, reason: &str) -> Result<BanNotice> {
        let banned = hex_key("user_id", user_id)?;
        let payload = BanPayload {
            origin: self.key.public(),
            banned,
            guild_id: guild_id.to_owned(),
            reason: reason.to_owned(),
            evidence_hash: String::new(),
            timestamp: now_ms(),
        };
        let signature = signing::sign(&payload, &self.key).to_bytes();
        Ok(BanNotice {
            origin_key: payload.origin.to_hex(),
            guild_id: payload.guild_id,
            user_id: user_id.to_owned(),
            reason: payload.reason,
            evidence_hash: payload.evidence_hash,
            timestamp: payload.timestamp,
            signature,
        })
    }

    /// This node's canonical address (never a destination of its own notices).
    pub fn own_address(&self) -> &str {
        &self.own_address
    }

    /// `BanUser` on this node: bans through [`Guilds::ban`] with, in the same transaction, the
    /// signed notice stored, its deliveries queued in the outbox and its server event appended to
    /// the log; then wakes the outbox and gossips the event. A crash after the commit loses
    /// nothing: the outbox resumes, and peers find the event in the log when they catch up.
    pub async fn ban(
        &self,
        caller: &crate::store::SessionInfo,
        guild_id: &str,
        user_id: &str,
        reason: &str,
    ) -> Result<()> {
        let notice = self.sign(guild_id, user_id, reason)?;
        let outgoing = crate::store::bans::OutgoingBan {
            body: notice_message(&notice).encode_to_vec(),
            notice,
            own_address: self.own_address.clone(),
        };
        let gossip = self.gossip.clone();
        let (queued, event) = self
            .guilds
            .ban(caller, guild_id, user_id, reason, move |tx, now| {
                let queued = crate::store::bans::record_outgoing(tx, &outgoing, now)?;
                let event = match &gossip {
                    Some(events) => Some(events.append_in(tx, BAN_KIND, outgoing.body, now)?),
                    None => None,
                };
                Ok((queued, event))
            })
            .await?;
        if queued > 0 {
            self.outbox.wake();
        }
        if let (Some(events), Some(event)) = (&self.gossip, event) {
            events.announce(&event).await;
        }
        Ok(())
    }

    /// `PropagateBan`: checks a notice and keeps it (applying it here if its guild's bans are a
    /// trusted list). Answers OK for a notice already held, so senders may retry freely.
    pub async fn receive(&self, n: pb::BanNotification) -> Result<()> {
        let VerifiedNotice {
            origin,
            banned,
            signature,
        } = verify_notice(&n, now_ms(), self.clock_skew_ms)?;
        if origin == self.key.public() {
            // Our own notice coming back: we hold it already.
            return Ok(());
        }
        if self.guilds.guild_exists(&n.guild_id).await? {
            return Err(Error::PermissionDenied(format!(
                "origin_server_id: is not the host of guild {}; this server hosts it",
                n.guild_id
            )));
        }
        let apply = self.trust.trusts(&n.origin_server_id, Some(&n.guild_id));
        let notice = BanNotice {
            origin_key: origin.to_hex(),
            guild_id: n.guild_id,
            user_id: banned.to_hex(),
            reason: n.reason,
            evidence_hash: n.evidence_hash,
            timestamp: n.timestamp,
            signature: signature.to_bytes(),
        };
        let new = self.guilds.accept_ban_notice(notice, apply).await?;
        tracing::info!(
            origin = %origin.fmt_short(),
            user = %banned.fmt_short(),
            applied = apply,
            new,
            "ban notice accepted"
        );
        Ok(())
    }
}

/// Refuses a signed statement dated further ahead than `skew_ms` past `now`.
fn check_not_future(timestamp: u64, now: u64, skew_ms: u64) -> Result<()> {
    if timestamp > now.saturating_add(skew_ms) {
        return Err(Error::invalid(
            "timestamp",
            "is in the future beyond the clock-skew window",
        ));
    }
    Ok(())
}

/// A ban notice whose fields follow the rules and whose origin signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNotice {
    /// The signing server (the guild's host, if the notice is to be believed).
    pub origin: PublicKey,
    /// The banned user.
    pub banned: PublicKey,
    /// The origin's `ban` signature.
    pub signature: Signature,
}

/// The checks of a received `BanNotification` that need no storage (field rules, not dated past
/// `now` + `skew_ms`, the origin's `ban` signature), in the order `PropagateBan` and the `ban`
/// gossip validator run them. Public so the fuzz targets (`fuzz/`, `tests/fuzz.rs`) run these
/// very checks.
pub fn verify_notice(n: &pb::BanNotification, now: u64, skew_ms: u64) -> Result<VerifiedNotice> {
    let origin = hex_key("origin_server_id", &n.origin_server_id)?;
    let banned = hex_key("banned_user_pubkey", &n.banned_user_pubkey)?;
    if n.guild_id.is_empty() || n.guild_id.len() > GUILD_ID_MAX {
        return Err(Error::invalid(
            "guild_id",
            format!("must be 1 to {GUILD_ID_MAX} bytes"),
        ));
    }
    // The rule a ban's reason met on its host: no control characters, bounded length.
    crate::guilds::members::check_reason(&n.reason)?;
    if !(n.evidence_hash.is_empty()
        || (n.evidence_hash.len() == 64
            && n.evidence_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))))
    {
        return Err(Error::invalid(
            "evidence_hash",
            "must be empty or 64 lowercase hex digits (a SHA-256)",
        ));
    }
    check_not_future(n.timestamp, now, skew_ms)?;
    let signature =
        Signature::from_bytes(&n.signature).map_err(|e| Error::invalid("signature", e))?;
    let payload = BanPayload {
        origin,
        banned,
        guild_id: n.guild_id.clone(),
        reason: n.reason.clone(),
        evidence_hash: n.evidence_hash.clone(),
        timestamp: n.timestamp,
    };
    signing::verify(payload, &origin, &signature).map_err(|_| {
        Error::unauthenticated(
            "signature",
            "not a `ban` signature by origin_server_id over this notice",
        )
    })?;
    Ok(VerifiedNotice {
        origin,
        banned,
        signature,
    })
}

/// The verdict on a gossiped ban statement that its checks refused: a local failure is not the
/// sender's fault (ignore), anything else breaks a rule (reject, penalising the sender).
fn refusal_verdict(e: Error) -> crate::gossip::Verdict {
    use crate::gossip::Verdict;
    match e {
        Error::Storage(_) | Error::Unimplemented(_) => Verdict::Ignore(e.to_string()),
        _ => Verdict::Reject(e.to_string()),
    }
}

/// The wire form of a stored notice.
pub fn notice_message(notice: &BanNotice) -> pb::BanNotification {
    pb::BanNotification {
        origin_server_id: notice.origin_key.clone(),
        banned_user_pubkey: notice.user_id.clone(),
        guild_id: notice.guild_id.clone(),
        reason: notice.reason.clone(),
        evidence_hash: notice.evidence_hash.clone(),
        timestamp: notice.timestamp,
        signature: notice.signature.to_vec(),
    }
}
